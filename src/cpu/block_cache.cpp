#include "cpu/block_cache.h"

#include <cstring>

#include "cpu/cpu.h"
#include "cpu/jit/jit.h"
#include "cpu/memory.h"

namespace nestvm::cpu {

namespace {
constexpr size_t kTableSize = 1u << 15;
constexpr size_t kArenaSize = 16u << 20;

size_t block_size(unsigned n) { return (sizeof(Block) + (n - 1) * sizeof(Insn) + 15) & ~size_t(15); }

size_t hash(const uint8_t* host, uint8_t mode) {
  const uint64_t k = reinterpret_cast<uintptr_t>(host) ^ (uint64_t(mode) << 60);
  return (k * 0x9e3779b97f4a7c15ull) >> (64 - 15);
}

// Raises the fault for a decode error at the current RIP.
Status decode_fault(Cpu& cpu, DecodeError e) {
  return e == DecodeError::kTooLong ? cpu.fault(arch::Vector::kGP, 0) : cpu.fault(arch::Vector::kUD);
}
}  // namespace

BlockCache::BlockCache(const CpuModel& model)
    : decoder_(model), table_(kTableSize, nullptr), arena_(new uint8_t[kArenaSize]), arena_size_(kArenaSize),
      scratch_(new uint8_t[block_size(1)]) {}

BlockCache::~BlockCache() = default;

void BlockCache::flush() {
  std::fill(table_.begin(), table_.end(), nullptr);
  arena_used_ = 0;
  ++stats_.flushes;
  if (jit_) jit_->flush();  // generated code points into the blocks' Insns
}

Block* BlockCache::alloc(unsigned n) {
  const size_t sz = block_size(n);
  if (arena_used_ + sz > arena_size_) flush();  // the caller bumps the TLB epoch (links die)
  auto* b = reinterpret_cast<Block*>(arena_.get() + arena_used_);
  arena_used_ += sz;
  return b;
}

const Block* BlockCache::get(Cpu& cpu, uint64_t la, const uint8_t* host, uint64_t pa) {
  ++stats_.lookups;
  const uint8_t mode = cpu.decode_mode_;
  size_t h = hash(host, mode);
  Block** slot = nullptr;
  for (size_t probe = 0; probe < 8; ++probe, h = (h + 1) & (kTableSize - 1)) {
    Block* b = table_[h];
    if (!b) { if (!slot) slot = &table_[h]; break; }
    if (b->host == host && b->mode == mode) {
      if (b->gen == b->meta->code_gen.load(std::memory_order_acquire)) return b;
      ++stats_.invalidations;
      slot = &table_[h];
      break;
    }
  }
  if (!slot) slot = &table_[hash(host, mode)];  // evict the home slot
  ++stats_.misses;
  return build(cpu, la, host, pa, slot);
}

const Block* BlockCache::build(Cpu& cpu, uint64_t la, const uint8_t* host, uint64_t pa, Block** slot) {
  PageMeta& meta = cpu.mem().page_meta(pa);
  cpu.mem().code_tracker().mark_code(meta, pa & kPageMask);
  const uint32_t gen = meta.code_gen.load(std::memory_order_acquire);
  const uint8_t mode = cpu.decode_mode_;

  Insn insns[kMaxBlockInsns];
  unsigned n = 0;
  size_t off = pa & (kPageSize - 1);
  const uint8_t* page = host - off;
  unsigned bytes = 0;
  while (n < kMaxBlockInsns && off < kPageSize) {
    const size_t avail = kPageSize - off;
    DecodeError e = decoder_.decode(mode, page + off, avail, insns[n]);
    if (e == DecodeError::kNeedMore) {
      if (n > 0) break;  // the straddling instruction starts a block of its own
      // Straddles into the next page: fetch it (this may #PF, as the fetch would on hardware).
      uint8_t buf[16];
      std::memcpy(buf, page + off, avail);
      uint8_t* host2;
      uint64_t pa2;
      if (cpu.translate_fetch(la + avail, host2, pa2) != Status::kNext) return nullptr;
      const size_t more = 15 - avail;
      if (host2) std::memcpy(buf + avail, host2, more);
      else std::memset(buf + avail, 0xff, more);  // not RAM: the bus floats high
      e = decoder_.decode(mode, buf, 15, insns[0]);
      if (e != DecodeError::kNone) { decode_fault(cpu, e); return nullptr; }
      auto* b = reinterpret_cast<Block*>(scratch_.get());
      b->host = host; b->meta = &meta; b->gen = gen; b->mode = mode; b->n = 1; b->bytes = insns[0].len;
      b->linkable = false;
      b->links[0] = b->links[1] = BlockLink{};
      b->heat = 0;
      b->jit_refused = true;  // rebuilt at every use: never worth translating
      b->jit_code = nullptr;
      b->insns[0] = insns[0];
      b->insns[0].off = 0;
      return b;
    }
    if (e != DecodeError::kNone) {
      if (n > 0) break;  // end the block; the fault is raised when execution gets there
      decode_fault(cpu, e);
      return nullptr;
    }
    insns[n].off = uint16_t(bytes);
    off += insns[n].len;
    bytes += insns[n].len;
    ++n;
    if (insns[n - 1].flags & insn_flags::kEndsBlock) break;
  }
  const uint64_t flushes = stats_.flushes;
  Block* b = alloc(n);
  if (stats_.flushes != flushes) {
    slot = &table_[hash(host, mode)];  // the table is empty again
    cpu.tlb().bump_epoch();            // and every link pointed into the old arena
  }
  b->host = host; b->meta = &meta; b->gen = gen; b->mode = mode; b->n = uint16_t(n); b->bytes = uint16_t(bytes);
  b->linkable = true;
  b->links[0] = b->links[1] = BlockLink{};
  b->heat = 0;
  b->jit_refused = false;
  b->jit_code = nullptr;
  std::memcpy(static_cast<void*>(b->insns), insns, n * sizeof(Insn));
  *slot = b;
  return b;
}

}  // namespace nestvm::cpu
