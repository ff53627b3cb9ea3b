#include "vmm/stats_report.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hv/vcpu.h"
#include "hv/vm.h"

namespace nestvm::vmm {

namespace {

constexpr unsigned kEptViolation = unsigned(arch::ExitReason::EPT_VIOLATION);

// hv::MmuStats by name (the JSON keys), the one list the snapshot and the JSON read.
struct MmuCounterInfo {
  MmuCounter id;
  const char* name;
  std::atomic<uint64_t> hv::MmuStats::*field;
};
constexpr MmuCounterInfo kMmuCounters[] = {
    {MmuCounter::kEptViolations, "ept_violations", &hv::MmuStats::ept_violations},
    {MmuCounter::kTdpMappedPages, "tdp_mapped_pages", &hv::MmuStats::tdp_mapped_pages},
    {MmuCounter::kTdpTablePages, "tdp_table_pages", &hv::MmuStats::tdp_table_pages},
    {MmuCounter::kTdpZappedPages, "tdp_zapped_pages", &hv::MmuStats::tdp_zapped_pages},
    {MmuCounter::kShadowPages, "shadow_pages", &hv::MmuStats::shadow_pages},
    {MmuCounter::kShadowMappedPages, "shadow_mapped_pages", &hv::MmuStats::shadow_mapped_pages},
    {MmuCounter::kShadowPagesCreated, "shadow_pages_created", &hv::MmuStats::shadow_pages_created},
    {MmuCounter::kShadowPagesZapped, "shadow_pages_zapped", &hv::MmuStats::shadow_pages_zapped},
    {MmuCounter::kShadowPageFaults, "shadow_page_faults", &hv::MmuStats::shadow_page_faults},
    {MmuCounter::kShadowFaultsFixed, "shadow_faults_fixed", &hv::MmuStats::shadow_faults_fixed},
    {MmuCounter::kGuestPageFaults, "guest_page_faults", &hv::MmuStats::guest_page_faults},
    {MmuCounter::kMmioPageFaults, "mmio_page_faults", &hv::MmuStats::mmio_page_faults},
    {MmuCounter::kWriteProtectFaults, "write_protect_faults", &hv::MmuStats::write_protect_faults},
    {MmuCounter::kPteWritesZapped, "pte_writes_zapped", &hv::MmuStats::pte_writes_zapped},
    {MmuCounter::kInvlpg, "invlpg", &hv::MmuStats::invlpg},
    {MmuCounter::kCr3Loads, "cr3_loads", &hv::MmuStats::cr3_loads},
    {MmuCounter::kRemoteTlbFlushes, "remote_tlb_flushes", &hv::MmuStats::remote_tlb_flushes},
    {MmuCounter::kEmulatedBlocks, "emulated_blocks", &hv::MmuStats::emulated_blocks},
    {MmuCounter::kEpt02Violations, "ept02_violations", &hv::MmuStats::ept02_violations},
    {MmuCounter::kEpt02MappedPages, "ept02_mapped_pages", &hv::MmuStats::ept02_mapped_pages},
    {MmuCounter::kEpt02TablePages, "ept02_table_pages", &hv::MmuStats::ept02_table_pages},
    {MmuCounter::kEpt02Roots, "ept02_roots", &hv::MmuStats::ept02_roots},
};
static_assert(std::size(kMmuCounters) == size_t(MmuCounter::kCount), "one entry per MmuCounter");

double seconds(uint64_t ns) { return double(ns) / 1e9; }

double share(uint64_t part, uint64_t whole) { return whole ? 100.0 * double(part) / double(whole) : 0.0; }

nlohmann::json by_reason(const std::array<uint64_t, arch::kNumExitReasons>& counts) {
  nlohmann::json j = nlohmann::json::object();
  for (unsigned r = 0; r < arch::kNumExitReasons; ++r)
    if (counts[r]) j[arch::exit_reason_name(r)] = counts[r];
  return j;
}

uint64_t sum(const std::array<uint64_t, arch::kNumExitReasons>& counts) {
  uint64_t n = 0;
  for (uint64_t e : counts) n += e;
  return n;
}

nlohmann::json figures_json(const VcpuFigures& f) {
  return {
      {"exits", by_reason(f.exits)},
      {"total_exits", f.total_exits()},
      {"ept_violations", f.exits[kEptViolation]},
      {"instructions", f.instructions},
      {"guest_ns", f.guest_ns},
      {"l0_ns", f.l0_ns},
      {"halted_ns", f.halted_ns},
      {"injected_interrupts", f.injected_interrupts},
      {"emulated_instructions", f.emulated_instructions},
      {"l2_exits_l0", by_reason(f.l2_exits_l0)},
      {"total_l2_exits_l0", f.total_l2_exits_l0()},
      {"l2_exits_reflected", by_reason(f.l2_exits_reflected)},
      {"total_l2_exits_reflected", f.total_l2_exits_reflected()},
      {"nested_entries", f.nested_entries},
  };
}

}  // namespace

uint64_t VcpuFigures::total_exits() const { return sum(exits); }
uint64_t VcpuFigures::total_l2_exits_l0() const { return sum(l2_exits_l0); }
uint64_t VcpuFigures::total_l2_exits_reflected() const { return sum(l2_exits_reflected); }

void VcpuFigures::add(const VcpuFigures& o) {
  for (unsigned r = 0; r < arch::kNumExitReasons; ++r) {
    exits[r] += o.exits[r];
    l2_exits_l0[r] += o.l2_exits_l0[r];
    l2_exits_reflected[r] += o.l2_exits_reflected[r];
  }
  nested_entries += o.nested_entries;
  instructions += o.instructions;
  guest_ns += o.guest_ns;
  l0_ns += o.l0_ns;
  halted_ns += o.halted_ns;
  injected_interrupts += o.injected_interrupts;
  emulated_instructions += o.emulated_instructions;
}

StatsSnapshot take_stats(hv::Vm& vm, uint64_t wall_ns, std::string stop_reason, int exit_status) {
  StatsSnapshot s;
  for (unsigned i = 0; i < vm.vcpu_count(); ++i) {
    const hv::VcpuStats& st = vm.vcpu(i).stats();
    VcpuFigures f;
    for (unsigned r = 0; r < arch::kNumExitReasons; ++r) {
      f.exits[r] = st.exits[r].load();
      f.l2_exits_l0[r] = st.l2_exits_l0[r].load();
      f.l2_exits_reflected[r] = st.l2_exits_reflected[r].load();
    }
    f.nested_entries = st.nested_entries.load();
    f.instructions = st.instructions.load();
    f.guest_ns = st.guest_ns.load();
    f.l0_ns = st.l0_ns.load();
    f.halted_ns = st.halted_ns.load();
    f.injected_interrupts = st.injected_interrupts.load();
    f.emulated_instructions = st.emulated_instructions.load();
    s.total.add(f);
    s.vcpus.push_back(f);
  }
  s.ept = vm.config().ept;
  for (const auto& c : kMmuCounters) s.mmu[size_t(c.id)] = (vm.mmu_stats().*c.field).load();
  s.ram_bytes = vm.mem().ram_size();
  s.backed_pages = vm.mem().backed_pages();
  s.host_pages = vm.host().allocated_pages();
  s.wall_ns = wall_ns;
  s.stop_reason = std::move(stop_reason);
  s.exit_status = exit_status;
  return s;
}

std::string format_stats(const StatsSnapshot& s) {
  const size_t n = s.vcpus.size();
  std::string out = fmt::format("nestvm statistics: {} vCPU{}, {:.3f} s, stopped by {}, exit status {}\n", n,
                                n == 1 ? "" : "s", seconds(s.wall_ns), s.stop_reason, s.exit_status);
  // One column per vCPU, then the total (only the total when there is one vCPU).
  std::vector<const VcpuFigures*> cols;
  std::string header = fmt::format("  {:<28}", "");
  if (n > 1)
    for (size_t i = 0; i < n; ++i) {
      cols.push_back(&s.vcpus[i]);
      header += fmt::format("{:>14}", fmt::format("vCPU{}", i));
    }
  cols.push_back(&s.total);
  header += fmt::format("{:>14}", "total");
  out += header + "\n";
  auto row = [&](const std::string& label, auto value_of) {
    std::string line = fmt::format("  {:<28}", label);
    for (const VcpuFigures* c : cols) line += fmt::format("{:>14}", value_of(*c));
    out += line + "\n";
  };
  // With nested VMX, the exits per level: L1's (to L0), then L2's by who handled them.
  const bool nested = s.total.nested_entries || s.total.total_l2_exits_l0() || s.total.total_l2_exits_reflected();
  auto exit_rows = [&](const char* label, std::array<uint64_t, arch::kNumExitReasons> VcpuFigures::*counts) {
    row(label, [counts](const VcpuFigures& f) { return fmt::format("{}", sum(f.*counts)); });
    for (unsigned r = 0; r < arch::kNumExitReasons; ++r)
      if ((s.total.*counts)[r])
        row(std::string("  ") + arch::exit_reason_name(r), [r, counts](const VcpuFigures& f) { return fmt::format("{}", (f.*counts)[r]); });
  };
  exit_rows(nested ? "VM exits from L1" : "VM exits", &VcpuFigures::exits);
  if (nested) {
    row("L2 entries (VMLAUNCH/RESUME)", [](const VcpuFigures& f) { return fmt::format("{}", f.nested_entries); });
    exit_rows("L2 exits handled by L0", &VcpuFigures::l2_exits_l0);
    exit_rows("L2 exits reflected to L1", &VcpuFigures::l2_exits_reflected);
  }
  row("instructions retired", [](const VcpuFigures& f) { return fmt::format("{}", f.instructions); });
  row("injected interrupts", [](const VcpuFigures& f) { return fmt::format("{}", f.injected_interrupts); });
  row("emulated instructions", [](const VcpuFigures& f) { return fmt::format("{}", f.emulated_instructions); });
  row("time in guest (s)", [](const VcpuFigures& f) { return fmt::format("{:.3f}", seconds(f.guest_ns)); });
  row("time in L0 (s)", [](const VcpuFigures& f) { return fmt::format("{:.3f}", seconds(f.l0_ns)); });
  row("time halted (s)", [](const VcpuFigures& f) { return fmt::format("{:.3f}", seconds(f.halted_ns)); });
  row("guest / L0 / halted (%)", [](const VcpuFigures& f) {
    const uint64_t all = f.guest_ns + f.l0_ns + f.halted_ns;
    return fmt::format("{:.0f}/{:.0f}/{:.0f}", share(f.guest_ns, all), share(f.l0_ns, all), share(f.halted_ns, all));
  });
  if (s.ept)
    out += fmt::format("  MMU: TDP (EPT01): {} EPT violations, {} guest pages mapped, {} EPT table pages\n",
                       s.mmu_counter(MmuCounter::kEptViolations), s.mmu_counter(MmuCounter::kTdpMappedPages),
                       s.mmu_counter(MmuCounter::kTdpTablePages));
  else
    out += fmt::format(
        "  MMU: shadow paging: {} #PF exits ({} fixed by L0, {} L1's own, {} MMIO), {} writes to "
        "write-protected page tables emulated, {} shadow entries zapped by them, {} shadow pages "
        "({} created, {} zapped), {} INVLPG, {} CR3 loads\n",
        s.mmu_counter(MmuCounter::kShadowPageFaults), s.mmu_counter(MmuCounter::kShadowFaultsFixed),
        s.mmu_counter(MmuCounter::kGuestPageFaults), s.mmu_counter(MmuCounter::kMmioPageFaults),
        s.mmu_counter(MmuCounter::kWriteProtectFaults), s.mmu_counter(MmuCounter::kPteWritesZapped),
        s.mmu_counter(MmuCounter::kShadowPages), s.mmu_counter(MmuCounter::kShadowPagesCreated),
        s.mmu_counter(MmuCounter::kShadowPagesZapped), s.mmu_counter(MmuCounter::kInvlpg),
        s.mmu_counter(MmuCounter::kCr3Loads));
  if (s.mmu_counter(MmuCounter::kEpt02Violations) || s.mmu_counter(MmuCounter::kEpt02Roots))
    out += fmt::format("  MMU: nested EPT (EPT02): {} EPT violations from L2, {} pages mapped, {} table pages, {} cached roots\n",
                       s.mmu_counter(MmuCounter::kEpt02Violations), s.mmu_counter(MmuCounter::kEpt02MappedPages),
                       s.mmu_counter(MmuCounter::kEpt02TablePages), s.mmu_counter(MmuCounter::kEpt02Roots));
  out += fmt::format("  memory: {} MiB of RAM, {} pages backed ({:.1f} MiB), {} host pages in use by L0 and RAM\n",
                     s.ram_bytes >> 20, s.backed_pages, double(s.backed_pages) * 4096 / (1 << 20), s.host_pages);
  return out;
}

std::string stats_json_text(const StatsSnapshot& s) {
  nlohmann::json vcpus = nlohmann::json::array();
  for (size_t i = 0; i < s.vcpus.size(); ++i) {
    nlohmann::json v = figures_json(s.vcpus[i]);
    v["index"] = i;
    vcpus.push_back(std::move(v));
  }
  nlohmann::json mmu = {{"mode", s.ept ? "tdp" : "shadow"}};
  for (const auto& c : kMmuCounters) mmu[c.name] = s.mmu[size_t(c.id)];
  const nlohmann::json j = {
      {"vcpus", vcpus},
      {"total", figures_json(s.total)},
      {"mmu", mmu},
      {"memory", {{"ram_bytes", s.ram_bytes}, {"backed_pages", s.backed_pages}, {"host_pages", s.host_pages}}},
      {"wall_ns", s.wall_ns},
      {"stop_reason", s.stop_reason},
      {"exit_status", s.exit_status},
  };
  return j.dump(2) + "\n";
}

Result<Ok> write_stats_json(const StatsSnapshot& s, const std::string& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Error{fmt::format("--stats-json: could not open '{}': {}", path, std::strerror(errno))};
  f << stats_json_text(s);
  f.close();
  if (!f) return Error{fmt::format("--stats-json: could not write '{}'", path)};
  return Ok{};
}

}  // namespace nestvm::vmm
