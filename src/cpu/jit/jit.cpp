// The code cache and the entry into generated code (see jit.h).
#include "cpu/jit/jit.h"

#include <sys/mman.h>

#include <cassert>
#include <cstddef>
#include <new>

#include "cpu/block_cache.h"
#include "cpu/cpu.h"
#include "cpu/jit/emit.h"
#include "cpu/jit/translator.h"

namespace nestvm::cpu::jit {

namespace {
constexpr size_t kCodeCacheSize = 32u << 20;
constexpr size_t kMaxBlockCode = 64u << 10;  // room reserved for one block's translation
constexpr size_t kRecords = 1u << 17;
constexpr size_t kHostPage = 4096;

template <typename T>
int32_t offset_of(const Cpu& c, const T* field) {
  return int32_t(reinterpret_cast<const char*>(field) - reinterpret_cast<const char*>(&c));
}
}  // namespace

Jit::Jit(Cpu& cpu) : cpu_(cpu), records_(new ExitRecord[kRecords]) {
  Cpu& c = cpu;
  Layout& l = layout_;
  l.gpr = offset_of(c, c.state.gpr.data());
  l.rip = offset_of(c, &c.state.rip);
  l.lf = offset_of(c, &c.lf);
  l.retired = offset_of(c, &c.retired_);
  l.stop_at = offset_of(c, &c.jit_stop_at_);
  l.attention = offset_of(c, &c.attention_);
  l.stop_block = offset_of(c, &c.stop_block_);
  l.mmu_idx = offset_of(c, &c.mmu_idx_);
  l.tlb_tag = offset_of(c, c.tlb_.tag_address());
  l.tlb_epoch = offset_of(c, c.tlb_.epoch_address());
  l.tlb_entries = offset_of(c, &c.tlb_.entry(MmuIdx(0), 0));
  l.timer_armed = offset_of(c, &c.vmx_.events.timer_armed);
  l.seg_cache = offset_of(c, &c.seg_cache_[0]);
  l.fetch_limit = offset_of(c, &c.fetch_limit_);
  l.jit_last = offset_of(c, &c.jit_last_);
  l.jit_exit = offset_of(c, &c.jit_exit_);
  // The TLB is indexed in generated code as entries + (idx << 14) + (page index << 5).
  static_assert(sizeof(TlbEntry) == 32 && kTlbSize == 512);
  assert(offset_of(c, &c.tlb_.entry(MmuIdx(1), 0)) - l.tlb_entries == 32 * 512);
  assert(offset_of(c, &c.tlb_.entry(MmuIdx(0), kPageSize)) - l.tlb_entries == 32);
  static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(bool) == 1);

  void* p = mmap(nullptr, kCodeCacheSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  code_ = static_cast<uint8_t*>(p);
  code_size_ = kCodeCacheSize;
  emit_trampoline();
  protect(0, code_size_, false);
}

Jit::~Jit() { munmap(code_, code_size_); }

// W^X: the cache is executable and read-only, except for the pages a translation is being
// written to, which are writable and not executable until it is done.
void Jit::protect(size_t from, size_t to, bool writable) {
  from &= ~(kHostPage - 1);
  to = (to + kHostPage - 1) & ~(kHostPage - 1);
  if (to > code_size_) to = code_size_;
  [[maybe_unused]] const int r = mprotect(code_ + from, to - from, writable ? PROT_READ | PROT_WRITE : PROT_READ | PROT_EXEC);
  assert(r == 0);
}

// uint8_t enter(Cpu* cpu, const void* code, uint64_t rip): saves the callee-saved registers the
// generated code uses, sets RBX and R12, and jumps to the code; the epilogue returns the Status
// in AL. The stack stays 16-byte aligned at every call generated code makes.
void Jit::emit_trampoline() {
  Emitter e(code_, 256);
  const ZydisRegister saved[] = {ZYDIS_REGISTER_RBP, ZYDIS_REGISTER_RBX, ZYDIS_REGISTER_R12,
                                 ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};
  for (ZydisRegister r : saved) e.emit(ZYDIS_MNEMONIC_PUSH, {reg(r)});
  e.emit(ZYDIS_MNEMONIC_SUB, {reg(ZYDIS_REGISTER_RSP), imm(8)});
  e.emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_RBX), reg(ZYDIS_REGISTER_RDI)});
  e.emit(ZYDIS_MNEMONIC_MOV, {reg(ZYDIS_REGISTER_R12), reg(ZYDIS_REGISTER_RDX)});
  e.emit(ZYDIS_MNEMONIC_XOR, {reg(ZYDIS_REGISTER_EAX), reg(ZYDIS_REGISTER_EAX)});
  e.emit(ZYDIS_MNEMONIC_JMP, {reg(ZYDIS_REGISTER_RSI)});
  const size_t epilogue = e.size();
  e.emit(ZYDIS_MNEMONIC_ADD, {reg(ZYDIS_REGISTER_RSP), imm(8)});
  for (int k = 5; k >= 0; --k) e.emit(ZYDIS_MNEMONIC_POP, {reg(saved[k])});
  e.emit(ZYDIS_MNEMONIC_RET, {});
  [[maybe_unused]] const bool ok = e.finish();
  assert(ok);
  enter_ = reinterpret_cast<Entry>(code_);
  epilogue_ = code_ + epilogue;
  code_start_ = code_used_ = (e.size() + 63) & ~size_t(63);
}

ExitRecord* Jit::new_record() {
  if (records_used_ == kRecords) {
    wants_flush_ = true;
    return nullptr;
  }
  return &records_[records_used_++];
}

void Jit::compile(const Block& b) {
  if (code_used_ + kMaxBlockCode > code_size_ || records_used_ + 2 * kMaxBlockInsns + 2 > kRecords) {
    wants_flush_ = true;
    return;  // the block stays interpreted until the caches are flushed
  }
  const size_t start = code_used_;
  protect(start, start + kMaxBlockCode, true);
  Emitter e(code_ + start, kMaxBlockCode);
  Translator t(*this, b, e);
  const bool ok = t.translate();
  protect(start, start + kMaxBlockCode, false);
  if (!ok) {
    b.jit_refused = true;
    ++stats_.refused;
    return;
  }
  code_used_ = (start + e.size() + 15) & ~size_t(15);
  b.jit_code = code_ + start;
  ++stats_.compiled;
}

Status Jit::run(const Block& b) {
  cpu_.jit_last_ = nullptr;
  cpu_.jit_exit_ = nullptr;
  return Status(enter_(&cpu_, b.jit_code, cpu_.state.rip));
}

void Jit::link(ExitRecord* from, const Block& to, uint64_t rip, uint32_t epoch) {
  from->rip = rip;
  from->epoch = epoch;
  from->target = to.jit_code;
  ++from->links;
  ++stats_.links;
}

void Jit::flush() {
  code_used_ = code_start_;
  records_used_ = 0;
  wants_flush_ = false;
  ++stats_.flushes;
}

}  // namespace nestvm::cpu::jit
