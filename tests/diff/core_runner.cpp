#include "diff/core_runner.h"

#include <cstring>
#include <vector>

#include "arch/cr.h"
#include "arch/segment.h"

namespace nestvm::diff {

namespace {

using arch::SegReg;

// Physical layout of the core's RAM.
constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kPml4 = 0x1000;  // PML4, PDPT, PD, PT: one table per level
constexpr uint64_t kGdt = 0x5000;
constexpr uint64_t kCodePa = 0x10000;
constexpr uint64_t kScratchPa = 0x11000;

constexpr unsigned kMaxChunks = 1 << 20;

constexpr uint64_t kPresent = 1, kWritable = 2, kUser = 4, kNx = 1ull << 63;

// The Linux-compatible user selectors: 0x2b data, 0x33 64-bit code (both DPL 3).
constexpr uint16_t kUserData = 0x2b;
constexpr uint16_t kUserCode64 = 0x33;
constexpr uint64_t kGdtEntries[] = {
    0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0x00cf9b000000ffffull,
    0x00cffb000000ffffull, 0x00cff3000000ffffull, 0x00affb000000ffffull,
};

unsigned level_index(uint64_t la, int level) { return unsigned(la >> (12 + 9 * level)) & 511; }

}  // namespace

CoreRunner::CoreRunner(cpu::CpuModel model, UserSelectors sel) : ram_(kRamSize), model_(std::move(model)), sel_(sel) {
  write_page_tables();
  ram_.write(kGdt, kGdtEntries, sizeof kGdtEntries);
  std::vector<uint8_t> filler(kPage, kFillerByte);
  ram_.write(kCodePa, filler.data(), filler.size());
  build_cpu();
}

CoreRunner::~CoreRunner() = default;

void CoreRunner::write_page_tables() {
  // The region lies within one 2 MiB page-table span, so one table per level maps all of it.
  static_assert((kBase >> 21) == ((kBase + kRegionSize - 1) >> 21));
  auto entry = [&](uint64_t table, unsigned idx, uint64_t value) { ram_.write(table + idx * 8, &value, 8); };
  const uint64_t pdpt = kPml4 + 0x1000, pd = kPml4 + 0x2000, pt = kPml4 + 0x3000;
  entry(kPml4, level_index(kBase, 3), pdpt | kPresent | kWritable | kUser);
  entry(pdpt, level_index(kBase, 2), pd | kPresent | kWritable | kUser);
  entry(pd, level_index(kBase, 1), pt | kPresent | kWritable | kUser);
  entry(pt, level_index(kCode, 0), kCodePa | kPresent | kWritable | kUser);
  for (uint64_t off = 0; off < kScratchSize; off += kPage)
    entry(pt, level_index(kScratch + off, 0), (kScratchPa + off) | kPresent | kWritable | kUser | kNx);
}

void CoreRunner::build_cpu() {
  cpu_ = std::make_unique<cpu::Cpu>(ram_, model_);
  cpu::Cpu& c = *cpu_;
  c.intercept_exceptions = true;
  using namespace arch;
  c.state.cr3 = kPml4;
  c.state.cr4 = cr4::kPAE | cr4::kOSFXSR | cr4::kOSXMMEXCPT;
  c.state.msr.efer = efer::kLME | efer::kLMA | efer::kNXE | efer::kSCE;
  c.state.cr0 = cr0::kPE | cr0::kMP | cr0::kET | cr0::kNE | cr0::kWP | cr0::kPG;
  c.state.gdtr = {kGdt, uint16_t(sizeof kGdtEntries - 1)};
  auto load = [&](SegReg s, uint16_t selector) {
    Segment& seg = c.state.seg[unsigned(s)];
    seg.selector = selector;
    if (selector_is_null(selector)) {
      seg.base = 0;
      seg.limit = 0;
      seg.ar = ar::kUnusable;
      return;
    }
    const Descriptor d{kGdtEntries[selector_index(selector)]};
    seg.base = d.base();
    seg.limit = d.limit();
    seg.ar = d.ar() | ar::kAccessed;
  };
  load(SegReg::kCS, kUserCode64);
  load(SegReg::kSS, kUserData);
  load(SegReg::kDS, sel_.ds);
  load(SegReg::kES, sel_.es);
  load(SegReg::kFS, sel_.fs);
  load(SegReg::kGS, sel_.gs);
  c.state.rip = kInsn;
  c.flush_tlb_all();
  c.refresh_mode();
}

void CoreRunner::load_code(const uint8_t* bytes, size_t len) {
  // Through FlatRam::write, so that blocks decoded from the old bytes are invalidated.
  std::vector<uint8_t> page(kPage, kFillerByte);
  std::memcpy(page.data() + (kInsn - kCode), bytes, len);
  ram_.write(kCodePa, page.data(), page.size());
}

void CoreRunner::run(const InputState& in, Outcome& out) {
  cpu::Cpu& c = *cpu_;
  c.state.gpr = in.gpr;
  c.state.rip = kInsn;
  c.set_rflags(in.rflags);
  std::memcpy(ram_.data() + kScratchPa, in.mem.data(), kScratchSize);
  // One instruction; a REP string instruction may stop after a chunk of iterations with RIP still
  // at itself (to let interrupts in), so the core runs until RIP leaves it or it faults. No
  // generated instruction branches to itself.
  cpu::RunExit exit = c.run(1);
  for (unsigned chunk = 0; exit == cpu::RunExit::kBudget && c.state.rip == kInsn && chunk < kMaxChunks; ++chunk)
    exit = c.run(1);
  out.gpr = c.state.gpr;
  out.rip = c.state.rip;
  out.rflags = c.rflags();
  std::memcpy(out.mem.data(), ram_.data() + kScratchPa, kScratchSize);
  out.faulted = false;
  out.abnormal = false;
  out.vector = 0;
  out.error = 0;
  out.has_error = false;
  if (exit == cpu::RunExit::kException) {
    const cpu::Event& e = c.pending_event();
    out.faulted = true;
    out.vector = e.vector;
    out.has_error = e.has_error;
    out.error = e.error;
    // A fresh processor for the next run: after an intercepted exception the Cpu does not
    // intercept the next one until it has delivered this one (Cpu::run, intercepted_).
    build_cpu();
  } else if (exit != cpu::RunExit::kBudget) {
    out.abnormal = true;
    build_cpu();
  }
}

}  // namespace nestvm::diff
