// Decoded blocks: straight-line runs of decoded instructions, keyed by the host address of
// their first byte (which names the physical page) and the decode mode. A block never spans
// two pages, except a single instruction that straddles a page boundary, which is decoded on
// its own and not cached. Blocks are invalidated by the generation of their page (PageMeta).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/decoder.h"
#include "cpu/insn.h"
#include "cpu/phys_mem.h"

namespace nestvm::cpu {

class Cpu;
namespace jit { class Jit; }

inline constexpr unsigned kMaxBlockInsns = 64;

// A direct link from the end of one block to the block that followed it at `rip`, valid while
// the TLB epoch is unchanged (no flush, no mode change since it was made).
struct BlockLink {
  uint64_t rip = ~0ull;
  const struct Block* to = nullptr;
  uint32_t epoch = ~0u;
};

struct Block {
  const uint8_t* host = nullptr;  // host address of the first byte
  PageMeta* meta = nullptr;
  uint32_t gen = 0;
  uint8_t mode = 0;
  bool linkable = true;  // false for the scratch block of a page-straddling instruction
  uint16_t n = 0;      // number of instructions
  uint16_t bytes = 0;  // bytes covered
  mutable BlockLink links[2];
  // The JIT (cpu/jit/): how often the interpreter ran the block, and its translation (valid
  // while the block is: generated code checks the page's generation on entry).
  mutable uint16_t heat = 0;
  mutable bool jit_refused = false;
  mutable const void* jit_code = nullptr;
  Insn insns[1];       // n entries (allocated in place)
};

struct BlockCacheStats {
  uint64_t lookups = 0;
  uint64_t misses = 0;
  uint64_t invalidations = 0;
  uint64_t flushes = 0;
};

class BlockCache {
 public:
  explicit BlockCache(const CpuModel& model);
  ~BlockCache();

  // The block starting at la (host pointer `host`, physical address pa) in the current mode,
  // decoding it if needed. Returns nullptr with a fault pending on the Cpu.
  const Block* get(Cpu& cpu, uint64_t la, const uint8_t* host, uint64_t pa);
  // Drops every block, and every translation of them when a JIT is attached.
  void flush();
  void attach_jit(jit::Jit* jit) { jit_ = jit; }
  const BlockCacheStats& stats() const { return stats_; }
  const Decoder& decoder() const { return decoder_; }

 private:
  const Block* build(Cpu& cpu, uint64_t la, const uint8_t* host, uint64_t pa, Block** slot);
  Block* alloc(unsigned n);

  Decoder decoder_;
  std::vector<Block*> table_;
  std::unique_ptr<uint8_t[]> arena_;
  size_t arena_used_ = 0;
  size_t arena_size_ = 0;
  // Scratch block for an instruction that straddles a page boundary (never cached).
  std::unique_ptr<uint8_t[]> scratch_;
  BlockCacheStats stats_;
  jit::Jit* jit_ = nullptr;
};

}  // namespace nestvm::cpu
