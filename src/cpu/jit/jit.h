// The JIT: hot decoded blocks translated into host x86-64 code that behaves exactly as the
// interpreter's loop over the same Insns (cpu.cpp execute_block), with the guest state kept in
// CpuState and LazyFlags so that any handler or C++ code can run in between. See docs/core.md,
// "The JIT".
//
// Generated code runs with RBX = the Cpu, R12 = the guest RIP of the block being run (its first
// instruction). A block's code starts by checking its page's code generation, ends in exits that
// either chain to the next block's code (through an ExitRecord, the JIT's form of a BlockLink) or
// return to Cpu::run with a Status, RIP stored and the retired count updated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/insn.h"

namespace nestvm::cpu {
class Cpu;
struct Block;
}  // namespace nestvm::cpu

namespace nestvm::cpu::jit {

// Where an exit of generated code goes when the next RIP is `rip` in TLB epoch `epoch`: the
// code of the block found there (data, not code, so linking never writes to executable pages).
struct ExitRecord {
  uint64_t rip = 0;
  const void* target = nullptr;  // initially the exit's own path back to Cpu::run
  uint32_t epoch = 0;
  uint32_t links = 0;            // how many times it was (re)linked
};

// Offsets from the Cpu (RBX) of everything generated code touches.
struct Layout {
  int32_t gpr, rip, lf, retired, stop_at, attention, stop_block, mmu_idx;
  int32_t tlb_tag, tlb_epoch, tlb_entries, timer_armed, seg_cache, fetch_limit;
  int32_t jit_last, jit_exit;
};

struct JitStats {
  uint64_t compiled = 0;
  uint64_t refused = 0;   // blocks left to the interpreter (code cache full, encoder refusal)
  uint64_t flushes = 0;
  uint64_t links = 0;
};

class Jit {
 public:
  explicit Jit(Cpu& cpu);
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;

  // Translates `b` (sets b.jit_code on success; b.jit_refused otherwise).
  void compile(const Block& b);
  // Runs b's code (and whatever it chains to) from RIP = state.rip. Returns the Status of the
  // last block run, as execute_block would; Cpu::jit_last_ names that block (nullptr: b's code
  // was stale and nothing ran), Cpu::jit_exit_ the exit it left through (nullptr: not linkable).
  Status run(const Block& b);
  // Makes the exit `from` jump straight to `to`'s code when leaving at `rip` in `epoch`.
  void link(ExitRecord* from, const Block& to, uint64_t rip, uint32_t epoch);
  // Drops every translation (with the block cache, whose blocks the code refers to).
  void flush();
  // The code cache or the exit records ran out: the owner should flush the block cache.
  bool wants_flush() const { return wants_flush_; }

  const Layout& layout() const { return layout_; }
  const JitStats& stats() const { return stats_; }
  Cpu& cpu() { return cpu_; }
  const void* epilogue() const { return epilogue_; }
  ExitRecord* new_record();

 private:
  void emit_trampoline();
  void protect(size_t from, size_t to, bool writable);

  Cpu& cpu_;
  Layout layout_{};
  uint8_t* code_ = nullptr;   // the code cache: writable only while a block is emitted
  size_t code_size_ = 0;
  size_t code_used_ = 0;
  size_t code_start_ = 0;     // first byte after the trampoline
  using Entry = uint8_t (*)(Cpu*, const void*, uint64_t);
  Entry enter_ = nullptr;
  const void* epilogue_ = nullptr;
  std::unique_ptr<ExitRecord[]> records_;
  size_t records_used_ = 0;
  bool wants_flush_ = false;
  JitStats stats_;
};

}  // namespace nestvm::cpu::jit
