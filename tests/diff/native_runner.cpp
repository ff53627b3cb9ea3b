#include "diff/native_runner.h"

#include <Zydis/Zydis.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

namespace nestvm::diff {

namespace {

constexpr size_t kHarnessSize = 0x1000;
constexpr size_t kResumeOffset = 0x400;
constexpr size_t kDataOffset = 0x800;
constexpr size_t kAltStackSize = 256 * 1024;
// PROT_NONE reservations around the region: near misses fault without a mapping lookup.
constexpr uint64_t kReserve = 64ull << 20;
constexpr uint64_t kReserveLow = kBase - kReserve;
constexpr uint64_t kReserveHigh = kBase + kRegionSize + kReserve;
bool g_reserved_below = false, g_reserved_above = false;

// The input block the prologue reads (RIP-relative) and the host stack pointer it saves.
struct HarnessData {
  uint64_t gpr[16];
  uint64_t rflags;
  uint64_t host_rsp;
  uint64_t target;  // kInsn, for an absolute indirect jump
};

// Signal-side state. The handler runs on the alternate stack while the snippet owns every
// register; g_out is non-null exactly while a snippet runs.
Outcome* volatile g_out = nullptr;
HarnessData* g_data = nullptr;
uint64_t g_resume = 0;
constexpr int kSignals[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP};
struct sigaction g_old_actions[sizeof kSignals / sizeof kSignals[0]];

// Hardware exceptions that push an error code (SDM Vol. 3 Table 6-1).
bool vector_has_error(unsigned v) { return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21; }

void on_signal(int sig, siginfo_t* info, void* context) {
  Outcome* out = g_out;
  if (!out) {
    // Not ours: put the previous handler back and let the access fault again.
    for (size_t k = 0; k < sizeof kSignals / sizeof kSignals[0]; ++k)
      if (kSignals[k] == sig) sigaction(sig, &g_old_actions[k], nullptr);
    return;
  }
  auto* uc = static_cast<ucontext_t*>(context);
  greg_t* g = uc->uc_mcontext.gregs;
  static constexpr int kOrder[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                     REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
  for (int r = 0; r < 16; ++r) out->gpr[r] = uint64_t(g[kOrder[r]]);
  out->rip = uint64_t(g[REG_RIP]);
  out->rflags = uint64_t(g[REG_EFL]);
  // The filler byte's #UD (or a fetch fault at a branch target) means the instruction completed;
  // only a fault with RIP still at the instruction is the instruction's own.
  out->faulted = out->rip == kInsn;
  out->vector = uint8_t(g[REG_TRAPNO]);
  out->has_error = vector_has_error(out->vector);
  out->error = out->has_error ? uint32_t(g[REG_ERR]) : 0;
  out->fault_address = reinterpret_cast<uintptr_t>(info->si_addr);
  out->abnormal = false;
  g_out = nullptr;
  g[REG_RIP] = greg_t(g_resume);
  g[REG_RSP] = greg_t(g_data->host_rsp);
  g[REG_EFL] = 0x202;
}

// Encodes the harness with Zydis rather than by hand.
class Assembler {
 public:
  explicit Assembler(uint8_t* at) : at_(at) {}
  uint8_t* here() const { return at_; }
  void op(ZydisMnemonic m) { emit(request(m, 0)); }
  void reg(ZydisMnemonic m, ZydisRegister r) {
    ZydisEncoderRequest q = request(m, 1);
    set_reg(q.operands[0], r);
    emit(q);
  }
  void reg_mem(ZydisMnemonic m, ZydisRegister r, const void* mem) {
    ZydisEncoderRequest q = request(m, 2);
    set_reg(q.operands[0], r);
    set_mem(q.operands[1], mem);
    emit(q);
  }
  void mem_reg(ZydisMnemonic m, const void* mem, ZydisRegister r) {
    ZydisEncoderRequest q = request(m, 2);
    set_mem(q.operands[0], mem);
    set_reg(q.operands[1], r);
    emit(q);
  }
  void mem(ZydisMnemonic m, const void* mem) {
    ZydisEncoderRequest q = request(m, 1);
    set_mem(q.operands[0], mem);
    emit(q);
  }

 private:
  static ZydisEncoderRequest request(ZydisMnemonic m, unsigned n) {
    ZydisEncoderRequest q;
    std::memset(&q, 0, sizeof q);
    q.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
    q.mnemonic = m;
    q.operand_count = uint8_t(n);
    return q;
  }
  static void set_reg(ZydisEncoderOperand& o, ZydisRegister r) {
    o.type = ZYDIS_OPERAND_TYPE_REGISTER;
    o.reg.value = r;
  }
  // An absolute address, encoded RIP-relative by ZydisEncoderEncodeInstructionAbsolute.
  static void set_mem(ZydisEncoderOperand& o, const void* p) {
    o.type = ZYDIS_OPERAND_TYPE_MEMORY;
    o.mem.base = ZYDIS_REGISTER_RIP;
    o.mem.displacement = int64_t(reinterpret_cast<uintptr_t>(p));
    o.mem.size = 8;
  }
  void emit(ZydisEncoderRequest q) {
    ZyanUSize len = ZYDIS_MAX_INSTRUCTION_LENGTH;
    const ZyanStatus st = ZydisEncoderEncodeInstructionAbsolute(&q, at_, &len, reinterpret_cast<uintptr_t>(at_));
    assert(ZYAN_SUCCESS(st));
    (void)st;
    at_ += len;
  }
  uint8_t* at_;
};

constexpr ZydisRegister kGprRegs[16] = {
    ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_RCX, ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_RBX,
    ZYDIS_REGISTER_RSP, ZYDIS_REGISTER_RBP, ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_RDI,
    ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9,  ZYDIS_REGISTER_R10, ZYDIS_REGISTER_R11,
    ZYDIS_REGISTER_R12, ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};
constexpr ZydisRegister kCalleeSaved[] = {ZYDIS_REGISTER_RBX, ZYDIS_REGISTER_RBP, ZYDIS_REGISTER_R12,
                                          ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};

void* map_fixed(uint64_t addr, size_t len, int prot) {
  void* p = mmap(reinterpret_cast<void*>(addr), len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (p != reinterpret_cast<void*>(addr)) {  // old kernels treat the flag as a hint
    munmap(p, len);
    return nullptr;
  }
  return p;
}

}  // namespace

std::unique_ptr<NativeRunner> NativeRunner::create(std::string& error) {
  if (g_data) {
    error = "only one NativeRunner may exist at a time";
    return nullptr;
  }
  std::unique_ptr<NativeRunner> r(new NativeRunner);
  if (!r->map_region(error)) return nullptr;
  r->emit_harness();
  asm volatile("mov %%ds, %0" : "=r"(r->ds_));
  asm volatile("mov %%es, %0" : "=r"(r->es_));
  asm volatile("mov %%fs, %0" : "=r"(r->fs_));
  asm volatile("mov %%gs, %0" : "=r"(r->gs_));

  r->alt_stack_ = mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  stack_t ss{};
  ss.ss_sp = r->alt_stack_;
  ss.ss_size = kAltStackSize;
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = &on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (size_t k = 0; k < sizeof kSignals / sizeof kSignals[0]; ++k) sigaction(kSignals[k], &sa, &g_old_actions[k]);
  return r;
}

bool NativeRunner::map_region(std::string& error) {
  // Guards are PROT_NONE reservations: nothing else may be mapped there, and any access faults
  // with a not-present #PF, as the core's not-present page-table entries do.
  struct Piece { uint64_t addr; size_t len; int prot; };
  const Piece pieces[] = {
      {kBase, kPage, PROT_NONE},
      {kCode, kPage, PROT_READ | PROT_WRITE | PROT_EXEC},
      {kCode + kPage, kPage, PROT_NONE},
      {kScratch, kScratchSize, PROT_READ | PROT_WRITE},
      {kScratch + kScratchSize, kPage, PROT_NONE},
  };
  for (const Piece& p : pieces) {
    if (!map_fixed(p.addr, p.len, p.prot)) {
      error = "cannot map the fixed test region at " + std::to_string(p.addr) + ": " + std::strerror(errno);
      munmap(reinterpret_cast<void*>(kBase), kRegionSize);
      return false;
    }
  }
  // Best effort: an address range someone else holds is checked page by page instead.
  g_reserved_below = map_fixed(kReserveLow, kReserve, PROT_NONE) != nullptr;
  g_reserved_above = map_fixed(kBase + kRegionSize, kReserve, PROT_NONE) != nullptr;
  void* h = mmap(nullptr, kHarnessSize, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (h == MAP_FAILED) {
    error = "cannot map the harness page";
    munmap(reinterpret_cast<void*>(kBase), kRegionSize);
    return false;
  }
  harness_ = static_cast<uint8_t*>(h);
  return true;
}

void NativeRunner::emit_harness() {
  auto* d = reinterpret_cast<HarnessData*>(harness_ + kDataOffset);
  g_data = d;
  d->target = kInsn;
  // Prologue: save the host's callee-saved registers and stack pointer, load RFLAGS and the 16
  // GPRs from the input block (RSP last), jump to the instruction.
  Assembler a(harness_);
  for (ZydisRegister r : kCalleeSaved) a.reg(ZYDIS_MNEMONIC_PUSH, r);
  a.mem_reg(ZYDIS_MNEMONIC_MOV, &d->host_rsp, ZYDIS_REGISTER_RSP);
  a.mem(ZYDIS_MNEMONIC_PUSH, &d->rflags);
  a.op(ZYDIS_MNEMONIC_POPFQ);
  for (int r = 0; r < 16; ++r)
    if (r != 4) a.reg_mem(ZYDIS_MNEMONIC_MOV, kGprRegs[r], &d->gpr[r]);
  a.reg_mem(ZYDIS_MNEMONIC_MOV, ZYDIS_REGISTER_RSP, &d->gpr[4]);
  a.mem(ZYDIS_MNEMONIC_JMP, &d->target);
  assert(a.here() <= harness_ + kResumeOffset);
  // Resume path: the signal handler points RSP at the saved host stack and RIP here.
  Assembler b(harness_ + kResumeOffset);
  for (int k = 5; k >= 0; --k) b.reg(ZYDIS_MNEMONIC_POP, kCalleeSaved[k]);
  b.op(ZYDIS_MNEMONIC_RET);
  g_resume = reinterpret_cast<uintptr_t>(harness_ + kResumeOffset);
}

NativeRunner::~NativeRunner() {
  for (size_t k = 0; k < sizeof kSignals / sizeof kSignals[0]; ++k) sigaction(kSignals[k], &g_old_actions[k], nullptr);
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
  if (alt_stack_) munmap(alt_stack_, kAltStackSize);
  if (harness_) munmap(harness_, kHarnessSize);
  munmap(reinterpret_cast<void*>(kBase), kRegionSize);
  if (g_reserved_below) munmap(reinterpret_cast<void*>(kReserveLow), kReserve);
  if (g_reserved_above) munmap(reinterpret_cast<void*>(kBase + kRegionSize), kReserve);
  g_reserved_below = g_reserved_above = false;
  g_data = nullptr;
}

bool NativeRunner::address_is_safe(uint64_t la, uint64_t len) {
  const uint64_t first = la & ~(kPage - 1), last = (la + std::max<uint64_t>(len, 1) - 1) & ~(kPage - 1);
  for (uint64_t page = first, n = (last - first) / kPage + 1; n--; page += kPage) {
    if (uint64_t((int64_t(page) >> 47) + 1) > 1) continue;  // non-canonical: #GP, never an access
    if (page >= kBase && page < kBase + kRegionSize) continue;
    if (g_reserved_below && page >= kReserveLow && page < kBase) continue;
    if (g_reserved_above && page >= kBase + kRegionSize && page < kReserveHigh) continue;
    // msync fails with ENOMEM exactly when the page is not mapped.
    if (msync(reinterpret_cast<void*>(page), 1, MS_ASYNC) == 0 || errno != ENOMEM) return false;
  }
  return true;
}

void NativeRunner::load_code(const uint8_t* bytes, size_t len) {
  auto* page = reinterpret_cast<uint8_t*>(kCode);
  std::memset(page, kFillerByte, kPage);
  std::memcpy(page + (kInsn - kCode), bytes, len);
}

void NativeRunner::run(const InputState& in, Outcome& out) {
  std::memcpy(g_data->gpr, in.gpr.data(), sizeof g_data->gpr);
  g_data->rflags = in.rflags;
  std::memcpy(reinterpret_cast<void*>(kScratch), in.mem.data(), kScratchSize);
  out.abnormal = true;  // cleared by the handler
  g_out = &out;
  asm volatile("" ::: "memory");
  reinterpret_cast<void (*)()>(harness_)();
  asm volatile("" ::: "memory");
  g_out = nullptr;
  std::memcpy(out.mem.data(), reinterpret_cast<const void*>(kScratch), kScratchSize);
}

}  // namespace nestvm::diff
