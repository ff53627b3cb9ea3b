#include "diff/form_runner.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>

#include "diff/input_gen.h"
#include "diff/undefined_results.h"

namespace nestvm::diff {

namespace {

constexpr unsigned kProbeInputs = 4;      // per instance, before deciding "unimplemented"
constexpr uint64_t kMaxMismatches = 20;   // enough to characterize a broken form

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string disassemble(const Instance& inst) {
  ZydisFormatter f;
  ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
  char buf[128];
  ZydisFormatterFormatInstruction(&f, &inst.d.zi, inst.d.ops, inst.d.zi.operand_count_visible, buf, sizeof buf, kInsn,
                                  nullptr);
  std::string bytes;
  for (uint8_t b : inst.bytes) {
    char h[4];
    std::snprintf(h, sizeof h, "%02x ", b);
    bytes += h;
  }
  return std::string(buf) + "   [" + bytes.substr(0, bytes.size() - 1) + "]";
}

std::string describe_input(const InputState& in) {
  std::string s;
  for (int r = 0; r < 16; ++r) {
    char line[48];
    std::snprintf(line, sizeof line, "%s%-3s=%016llx", r % 4 ? "  " : "    ", kGprNames[r],
                  static_cast<unsigned long long>(in.gpr[r]));
    s += line;
    if (r % 4 == 3) s += "\n";
  }
  s += "    rflags=" + hex(in.rflags) + "\n";
  return s;
}

bool core_undefined_opcode(const Outcome& native, const Outcome& core) {
  return core.faulted && core.vector == 6 && !(native.faulted && native.vector == 6);
}

}  // namespace

uint64_t form_seed(uint64_t seed, const std::string& key) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
  return seed ^ h;
}

FormResult FormRunner::run(const Form& form, const FormRunConfig& cfg) {
  FormResult res;
  const uint64_t seed = form_seed(cfg.seed, form.key);
  Rng rng(seed);
  const std::vector<Instance> instances = make_instances(form, dec_, rng, cfg.instances);
  res.instances = unsigned(instances.size());
  auto in = std::make_unique<InputState>();
  auto native = std::make_unique<Outcome>();
  auto core = std::make_unique<Outcome>();
  std::set<std::string> what;
  uint64_t flags = 0;
  uint64_t core_executed = 0, core_ud_only = 0;

  // Phase 0 probes every instance with a few inputs; phase 1 spends the rest of the budget.
  const unsigned per_instance = std::max(1u, cfg.inputs / res.instances);
  for (int phase = 0; phase < 2; ++phase) {
    for (const Instance& inst : instances) {
      native_.load_code(inst.bytes.data(), inst.bytes.size());
      core_.load_code(inst.bytes.data(), inst.bytes.size());
      InputGen gen(inst, rng, &NativeRunner::address_is_safe);
      const unsigned n = phase == 0 ? std::min(kProbeInputs, per_instance) : per_instance - std::min(kProbeInputs, per_instance);
      for (unsigned k = 0; k < n; ++k) {
        gen.next(*in);
        native_.run(*in, *native);
        core_.run(*in, *core);
        ++res.runs;
        if (native->faulted) ++res.faulting_runs;
        if (core_undefined_opcode(*native, *core)) ++core_ud_only;
        else if (!(core->faulted && core->vector == 6)) ++core_executed;
        const Difference d = compare(*native, *core, compare_scope(inst, *in));
        if (d.what.empty()) continue;
        ++res.mismatches;
        flags |= d.flags;
        for (size_t pos = 0; pos < d.what.size();) {
          const size_t end = std::min(d.what.find(' ', pos), d.what.size());
          what.insert(d.what.substr(pos, end - pos));
          pos = end + 1;
        }
        if (res.report.empty()) {
          res.report = "form: " + form.name + "\n  instruction: " + disassemble(inst) + "\n  rerun: " + cfg.rerun +
                       "NESTVM_DIFF_FILTER='" + form.name + "'\n  input:\n" + describe_input(*in) +
                       "  native: " + describe_end(*native) + "\n  core:   " + describe_end(*core) + "\n" + d.detail;
        }
        if (res.mismatches >= kMaxMismatches) break;
      }
      if (res.mismatches >= kMaxMismatches) break;
    }
    if (phase == 0 && core_executed == 0 && core_ud_only > 0) {
      res.status = FormStatus::kUnimplemented;
      res.what = "core raises #UD";
      return res;
    }
    if (res.mismatches >= kMaxMismatches) break;
  }
  for (const std::string& w : what) {
    res.what += res.what.empty() ? "" : " ";
    res.what += w;
    if (w == "rflags") {
      res.what += "(";
      res.what += flag_names(flags);
      res.what += ")";
    }
  }
  if (res.mismatches) res.status = FormStatus::kMismatch;
  return res;
}

}  // namespace nestvm::diff
