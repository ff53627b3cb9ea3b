#include "diff/outcome_compare.h"

#include <cstdio>
#include <initializer_list>
#include <string_view>

namespace nestvm::diff {

namespace {

const char* vector_name(unsigned v) {
  static const char* const kNames[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#9",
                                       "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM",
                                       "#VE", "#CP"};
  return v < sizeof kNames / sizeof kNames[0] ? kNames[v] : "#?";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// Concatenation by appending (GCC 12 misreports "literal" + std::string under -Wrestrict).
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s += p;
  return s;
}

void add(Difference& d, const std::string& what, const std::string& detail) {
  if (!d.what.empty()) d.what += " ";
  d.what += what;
  d.detail += cat({"  ", detail, "\n"});
}

}  // namespace

std::string flag_names(uint64_t bits) {
  static const struct { unsigned bit; const char* name; } kFlags[] = {
      {0, "CF"}, {2, "PF"}, {4, "AF"}, {6, "ZF"}, {7, "SF"}, {8, "TF"}, {9, "IF"}, {10, "DF"}, {11, "OF"},
      {12, "IOPL0"}, {13, "IOPL1"}, {14, "NT"}, {16, "RF"}, {17, "VM"}, {18, "AC"}, {19, "VIF"}, {20, "VIP"},
      {21, "ID"}};
  std::string s;
  for (const auto& f : kFlags)
    if ((bits >> f.bit) & 1) s += cat({s.empty() ? "" : ",", f.name});
  return s;
}

std::string describe_end(const Outcome& o) {
  if (o.abnormal) return "abnormal end";
  if (!o.faulted) return cat({"completed, rip ", hex(o.rip)});
  std::string s = vector_name(o.vector);
  if (o.has_error) s += cat({"(", hex(o.error), ")"});
  if (o.vector == 14 && o.fault_address) s += cat({" at ", hex(o.fault_address)});
  return s;
}

Difference compare(const Outcome& native, const Outcome& core, const CompareScope& scope) {
  Difference d;
  if (native.abnormal || core.abnormal || native.faulted != core.faulted) {
    add(d, "fault", cat({"native ", describe_end(native), ", core ", describe_end(core)}));
    return d;  // the rest of the state is not comparable
  }
  if (native.faulted) {
    if (native.vector != core.vector) add(d, "vector", cat({"native ", describe_end(native), ", core ", describe_end(core)}));
    // #PF: present, write, user, reserved, fetch (the host's kernel may add its own bits above).
    // For an address in the upper half Linux reports P = 1 whatever the hardware said, so as not
    // to reveal which kernel pages are mapped.
    uint32_t error_mask = native.vector == 14 ? 0x1f : ~0u;
    if (native.vector == 14 && native.fault_address >> 63) error_mask &= ~1u;
    if (native.vector == core.vector && native.has_error && core.has_error &&
        (native.error & error_mask) != (core.error & error_mask))
      add(d, "error-code", cat({"native ", describe_end(native), ", core ", describe_end(core)}));
  }
  if (native.rip != core.rip) add(d, "rip", cat({"rip: native ", hex(native.rip), ", core ", hex(core.rip)}));
  for (int r = 0; r < 16; ++r)
    if (!((scope.skip_gprs >> r) & 1) && native.gpr[r] != core.gpr[r])
      add(d, kGprNames[r], cat({kGprNames[r], ": native ", hex(native.gpr[r]), ", core ", hex(core.gpr[r])}));
  const uint64_t flags_diff = (native.rflags ^ core.rflags) & scope.rflags_mask;
  if (flags_diff) {
    d.flags |= flags_diff;
    add(d, "rflags",
        cat({"rflags: native ", hex(native.rflags), ", core ", hex(core.rflags), " (differ in ", flag_names(flags_diff), ")"}));
  }
  size_t first = kScratchSize, last = 0, count = 0;
  for (size_t k = 0; k < kScratchSize; ++k) {
    const uint64_t la = kScratch + k;
    if (la - scope.skip_mem_la < scope.skip_mem_size) continue;
    if (native.faulted && la - scope.fault_skip_la < scope.fault_skip_size) continue;
    if (native.mem[k] == core.mem[k]) continue;
    first = std::min(first, k);
    last = k;
    ++count;
  }
  if (count) {
    std::string n, c;
    for (size_t k = first; k <= last && k < first + 16; ++k) {
      char b[4];
      std::snprintf(b, sizeof b, "%02x", native.mem[k]);
      n += b;
      std::snprintf(b, sizeof b, "%02x", core.mem[k]);
      c += b;
    }
    add(d, "memory", cat({std::to_string(count), " bytes differ in [", hex(kScratch + first), ", ", hex(kScratch + last),
                          "]: native ", n, ", core ", c}));
  }
  return d;
}

}  // namespace nestvm::diff
