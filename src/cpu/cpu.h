// One logical processor: the architectural state, the derived state the fast paths use, and
// the execution loop. Instruction semantics live in cpu/insn/*.cpp, one instruction class per
// file; memory access fast paths are inline in cpu/memory.h; slow paths in their own files.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "arch/cr.h"
#include "arch/exception.h"
#include "arch/rflags.h"
#include "arch/segment.h"
#include "cpu/cpu_model.h"
#include "cpu/insn.h"
#include "cpu/lazy_flags.h"
#include "cpu/msr_file.h"
#include "cpu/phys_mem.h"
#include "cpu/state.h"
#include "cpu/tlb.h"
#include "cpu/vmx/ept_walk.h"
#include "cpu/vmx/vmx_state.h"

namespace nestvm::cpu {

class BlockCache;
struct Block;
namespace jit {
class Jit;
class Translator;
struct ExitRecord;
struct Runtime;
}  // namespace jit

// Port I/O and interrupt acknowledge, for a processor running without VMX (the bare machine
// used by unit tests and benchmarks). Under VMX, L0 intercepts I/O and injects interrupts.
class IoBus {
 public:
  virtual ~IoBus() = default;
  virtual uint32_t in(uint16_t port, unsigned size) { return ~0u >> (32 - 8 * size); }
  virtual void out(uint16_t port, unsigned size, uint32_t value) {}
  // The INTA cycle: the vector of the highest-priority pending interrupt, or -1 (spurious).
  virtual int ack_interrupt() { return -1; }
};

enum class AccessKind : uint8_t { kRead = 0, kWrite = 1, kExec = 2 };

enum class PagingMode : uint8_t { kNone, k32Bit, kPae, k4Level };

// Why Cpu::run returned.
enum class RunExit : uint8_t {
  kHalted,    // HLT (or MWAIT) with nothing to deliver; call run() again once an event is pending
  kShutdown,  // triple fault or a machine check with CR4.MCE = 0
  kBudget,    // the instruction budget ran out
  kKicked,    // another thread asked this vCPU to stop (Cpu::kick)
  kException, // an exception is pending and intercept_exceptions is set (not delivered yet)
  kVmExit,    // a VM exit left VMX non-root operation; the exit information is in the VMCS
};

// The outcome of a VMX operation the silicon performs for L0 (SDM Vol. 3 §31.2 conventions).
struct VmxResult {
  enum class Kind : uint8_t {
    kSucceed,
    kFailInvalid,  // no current VMCS
    kFailValid,    // error number in `error` (and in the VMCS's VM_INSTRUCTION_ERROR)
    kEntryFailed,  // VM entry failed with a VM exit (reason bit 31): run() not needed
  };
  Kind kind = Kind::kSucceed;
  arch::VmxError error{};
  const char* rule = "";  // for kFailValid/kEntryFailed from the entry checks: the rule broken
  bool ok() const { return kind == Kind::kSucceed; }
};

// The hidden part of a segment register turned into what the access fast path needs.
struct SegCache {
  uint64_t base = 0;    // effective base (0 for CS/DS/ES/SS in 64-bit mode)
  uint64_t rd_lo = 0;   // offsets an access may start/end in: [lo, hi]
  uint64_t rd_hi = 0;
  uint64_t wr_lo = 0;
  uint64_t wr_hi = 0;
};

// The result of a page walk (and, under VMX, of the EPT walk of its final address).
struct Translation {
  uint64_t pa = 0;
  bool user = true;      // U/S = 1 at every level
  bool writable = true;  // R/W = 1 at every level
  bool nx = false;       // XD = 1 at some level
  bool global = false;
  bool dirty = false;    // leaf D bit already set (and, under EPT with A/D flags, the EPT leaf's)
  uint8_t ept_rwx = 7;   // read/write/execute (bits 0-2) the EPT entries allow; 7 without EPT
  uint8_t pkey = 0;
  uint8_t page_shift = 12;  // 12, 21, 22 or 30: the size of the page that maps it
};

class Cpu {
 public:
  Cpu(PhysMem& mem, const CpuModel& model, IoBus* io = nullptr);
  ~Cpu();
  Cpu(const Cpu&) = delete;
  Cpu& operator=(const Cpu&) = delete;

  CpuState state;
  // Initial APIC ID (CPUID.1:EBX[31:24], CPUID.0BH:EDX), set by whoever creates the vCPU.
  uint32_t apic_id = 0;
  // Stop before delivering any exception (run() returns kException with the event still
  // pending): a debugger's view, and how unit tests observe faults. Like a VMX exception
  // bitmap of all ones; clear_pending_event() discards it, run() again delivers it.
  bool intercept_exceptions = false;
  // MSRs added by later layers (x2APIC, VMX capability MSRs), consulted before the
  // architectural file by every MSR access (cpu/msr_file.h).
  MsrHooks msr_hooks;

  // ---- running --------------------------------------------------------------------------
  // Runs until an exit or until about `budget` instructions have retired.
  RunExit run(uint64_t budget = ~0ull);
  // Runs exactly one instruction (or delivers the pending event): run() stops only at block
  // boundaries, L0's instruction emulator must not go past the instruction that exited.
  RunExit run_one();
  // Power-on / INIT state (SDM Vol. 3 Table 10-1). init = true keeps what INIT keeps.
  void reset(bool init = false);
  uint64_t instructions_retired() const { return retired_; }

  // ---- events from other threads ---------------------------------------------------------
  void set_intr_line(bool asserted);
  void raise_nmi();
  // Makes run() return kKicked at the next block boundary. In VMX non-root operation with
  // "external-interrupt exiting" the kick is an EXTERNAL_INTERRUPT exit instead, as the host's
  // IPI is under KVM; it has no vector of the guest's interrupt controller, so the exit
  // interruption information is invalid even with "acknowledge interrupt on exit".
  void kick();
  // INIT and start-up IPI (SIPI) signals. INIT is blocked in VMX root operation (SDM §24.8;
  // the silicon's root operation is L0's) and causes an INIT_SIGNAL exit in non-root operation;
  // a SIPI causes a SIPI exit in the wait-for-SIPI state and is otherwise dropped (SDM §26.2).
  void raise_init();
  void raise_sipi(uint8_t vector);

  // ---- derived state ---------------------------------------------------------------------
  // Recomputes everything derived from CR0/CR4/EFER/CS/SS/RFLAGS: call after changing them
  // (directly in state, as the loaders and tests do, or from a handler).
  void refresh_mode();
  void refresh_segment(SegReg s);
  unsigned cpl() const { return cpl_; }
  unsigned code_size() const { return code_size_; }  // 2, 4 or 8
  unsigned stack_size() const { return stack_size_; }
  bool long_mode() const { return state.msr.efer & arch::efer::kLMA; }
  bool in_64bit_mode() const { return code_size_ == 8; }
  bool protected_mode() const { return state.cr0 & arch::cr0::kPE; }
  bool v86_mode() const { return state.rflags & arch::rflags::kVM; }
  bool real_mode() const { return !protected_mode(); }
  PagingMode paging_mode() const { return paging_mode_; }
  const CpuModel& model() const { return model_; }
  PhysMem& mem() { return mem_; }
  IoBus* io() { return io_; }
  Tlb& tlb() { return tlb_; }

  // ---- flags ------------------------------------------------------------------------------
  LazyFlags lf;
  uint64_t rflags() const { return (state.rflags & ~arch::rflags::kArith) | lazy::status_flags(lf, state.rflags); }
  // Writes every RFLAGS bit (no privilege rules: callers apply POPF/IRET rules first).
  void set_rflags(uint64_t v);
  // Writes only the six status flags.
  void set_status_flags(uint64_t v) {
    state.rflags = (state.rflags & ~arch::rflags::kArith) | (v & arch::rflags::kArith);
    lf.op = FlagOp::kMaterialized;
  }
  bool cf() const { return lazy::cf(lf, state.rflags); }
  bool condition(unsigned cc) const { return lazy::condition(lf, state.rflags, cc); }
  void set_lazy(FlagOp op, unsigned size, uint64_t res, uint64_t s1, uint64_t s2, bool carry = false) {
    lf.op = op; lf.size = uint8_t(size); lf.res = res; lf.src1 = s1; lf.src2 = s2; lf.carry = carry;
  }

  // ---- faults -----------------------------------------------------------------------------
  Status fault(arch::Vector v) { return raise({uint8_t(v), arch::EventType::kHardwareException, false, 0, 0}); }
  Status fault(arch::Vector v, uint32_t error) {
    return raise({uint8_t(v), arch::EventType::kHardwareException, true, error, 0});
  }
  Status page_fault(uint64_t la, uint32_t pfec) { pending_cr2_ = la; return fault(arch::Vector::kPF, pfec); }
  // #GP(0) or, for SS-relative accesses, #SS(0).
  Status seg_fault(SegReg s) { return fault(s == SegReg::kSS ? arch::Vector::kSS : arch::Vector::kGP, 0); }
  Status raise(const Event& e) { pending_event_ = e; has_pending_event_ = true; return Status::kFault; }
  // Software interrupts (INT n, INT3, INTO, INT1) are delivered as events too: RIP is at the
  // instruction, and delivery pushes RIP + insn_len.
  Status software_interrupt(uint8_t vector, arch::EventType type, uint8_t len) {
    return raise({vector, type, false, 0, len});
  }
  bool has_pending_event() const { return has_pending_event_; }
  void clear_pending_event() { has_pending_event_ = false; intercepted_ = false; pending_dr6_set_ = pending_dr6_clear_ = 0; }
  const Event& pending_event() const { return pending_event_; }
  // The linear address a pending #PF reports (CR2 is loaded from it when the #PF is delivered;
  // a VM exit for the #PF reports it as the exit qualification instead).
  uint64_t pending_fault_address() const { return pending_cr2_; }
  // A debug exception (#DB) that clears `dr6_clear` and sets `dr6_set` in DR6. In VMX non-root
  // operation DR6 changes only when the #DB is delivered: one that causes a VM exit reports the
  // bits in the exit qualification instead (SDM §28.1, Table 28-1).
  Status debug_exception(uint64_t dr6_set, uint64_t dr6_clear = 0) {
    if (vmx_.non_root) {
      pending_dr6_set_ = dr6_set;
      pending_dr6_clear_ = dr6_clear;
    } else {
      state.dr6 = (state.dr6 & ~dr6_clear) | dr6_set;
    }
    return fault(arch::Vector::kDB);
  }
  // IRET's effect on NMI blocking (SDM Vol. 2 IRET: NMIs are unblocked even if IRET faults; in
  // VMX non-root operation per "NMI exiting" and "virtual NMIs", SDM §26.3), and the end of a
  // successful IRET.
  void iret_unblock_nmis();
  void iret_completed() { vmx_.events.iret_unblocked_nmi = false; }
  // Delivers the pending event (or an external event) through the IDT, applying the
  // double-fault rules. Returns false on triple fault (the processor shuts down).
  bool deliver_pending_event();
  bool deliver_event(const Event& e);
  // Delivery of one event through the IVT (real mode) or the IDT (protected, virtual-8086 and
  // IA-32e mode). A fault during delivery is left pending and reported as kFault.
  Status deliver_real(const Event& e);
  Status deliver_protected(const Event& e);

  // ---- memory (cpu/memory.h holds the inline fast paths) ---------------------------------
  const SegCache& seg_cache(SegReg s) const { return seg_cache_[unsigned(s)]; }
  // Effective address of the memory operand (offset in its segment), truncated to asz.
  uint64_t effective_address(const Insn& i) const;
  template <typename T> Status read(SegReg s, uint64_t off, T& out);
  template <typename T> Status write(SegReg s, uint64_t off, T v);
  template <typename T> Status read_linear(uint64_t la, T& out);
  template <typename T> Status write_linear(uint64_t la, T v);
  // Supervisor accesses to system structures (GDT, LDT, IDT, TSS), whatever the CPL.
  template <typename T> Status read_system(uint64_t la, T& out);
  template <typename T> Status write_system(uint64_t la, T v);
  // A reference for a read-modify-write operand: write access checked once, then host memory
  // (when `host` is set) or MMIO through load/store.
  template <typename T> struct RmwRef { T* host = nullptr; uint64_t la = 0; };
  template <typename T> Status rmw_ref(SegReg s, uint64_t off, RmwRef<T>& ref);
  template <typename T> T rmw_load(const RmwRef<T>& r);
  template <typename T> void rmw_store(const RmwRef<T>& r, T v);
  // Stack: push/pop of 2, 4 or 8 bytes at SS:RSP with the stack-address size.
  template <typename T> Status push(T v);
  template <typename T> Status pop(T& v);
  template <typename T> Status read_stack(uint64_t rsp_offset, T& v);  // no RSP update

  // Slow paths (memory_slow.cpp).
  Status access_slow(uint64_t la, void* buf, unsigned size, AccessKind kind, MmuIdx idx, SegReg seg);
  Status segment_check_slow(SegReg s, uint64_t off, unsigned size, AccessKind kind);
  // Translates la for an access, filling the TLB. host = nullptr: not RAM (MMIO) at pa.
  Status translate(uint64_t la, AccessKind kind, MmuIdx idx, SegReg seg, uint8_t*& host, uint64_t& pa);
  // Page walk of the current paging mode (paging.cpp). Faults are raised on the Cpu.
  Status walk(uint64_t la, AccessKind kind, MmuIdx idx, Translation& t);
  // Loads the four PDPTEs for PAE paging from CR3 in physical memory (VM entry and exit);
  // false if one has reserved bits set.
  bool load_pdptes(uint64_t cr3);
  // The PDPTE load of MOV to CR0/CR3/CR4 (SDM Vol. 3 §4.4.1): through EPT in VMX non-root
  // operation (an EPT violation or misconfiguration is a VM exit, kExit), #GP(0) (kFault) if a
  // PDPTE has reserved bits set.
  Status load_pdptes_checked(uint64_t cr3);
  // Drops every cached translation of every address space (loaders, RESET).
  void flush_tlb_all() { tlb_.flush_everything(); }
  void flush_tlb_for_cr3_write(uint64_t new_cr3);
  MmuIdx mmu_idx() const { return mmu_idx_; }
  uint16_t pcid() const { return pcid_; }  // the architectural PCID (TLB keys hold tlb().tag())
  // Fetch: host pointer to the code byte at la (cpu/memory_slow.cpp).
  Status translate_fetch(uint64_t la, uint8_t*& host, uint64_t& pa);

  // Control-register and EFER/XCR0 writes with their architectural checks and side effects
  // (TLB flushes, PDPTE loads, mode changes), shared by MOV CR, LMSW, CLTS, WRMSR, XSETBV and
  // the loaders (control_regs.cpp). They return kFault with #GP(0) pending on a bad value.
  Status set_cr0(uint64_t v);
  Status set_cr3(uint64_t v);
  Status set_cr4(uint64_t v);
  Status set_cr8(uint64_t v);
  Status set_efer(uint64_t v);
  Status set_xcr0(uint64_t v);
  // CR4 bits the model allows software to set.
  uint64_t cr4_valid_bits() const;
  uint64_t efer_valid_bits() const;

  // ---- VMX: the silicon, driven by L0 from C++ (cpu/vmx/) --------------------------------
  // VMCS regions are 4 KiB pages of the physical space (PhysMem) at host-physical addresses.
  VmxResult vmclear(uint64_t hpa);
  VmxResult vmptrld(uint64_t hpa);
  uint64_t vmptrst() const { return vmx_.current_vmcs; }
  VmxResult vmread(uint64_t encoding, uint64_t& value);
  VmxResult vmwrite(uint64_t encoding, uint64_t value);
  // VM entry with the current VMCS (VMLAUNCH, or VMRESUME when `resume`): the checks of SDM
  // Chapter 27, guest-state and MSR loading, event injection. On kSucceed the processor is in
  // VMX non-root operation and run() executes the guest until a VM exit (RunExit::kVmExit).
  VmxResult vm_enter(bool resume);
  bool vmx_non_root() const { return vmx_.non_root; }
  const VmxControls& vmx_controls() const { return vmx_.ctl; }
  VmcsRegion& current_vmcs() { return vmx_.current; }
  // The guest-state area of a VMCS to and from this processor's state, as VM entry loads it and
  // VM exit saves it (no checks, no MSR lists, no mode change): L0's instruction emulator uses
  // them to run one guest instruction outside VMX on a processor of its own.
  void load_guest_state_from(VmcsRegion& v) { vmx_load_guest_state(v); }
  void save_guest_state_to(VmcsRegion& v) { vmx_save_guest_state(v); }
  // The silicon's VMX capabilities (what its capability MSRs would report).
  const arch::VmxCapabilities& vmx_caps() const { return vmx_caps_; }
  // INVEPT and INVVPID for L0 (SDM Vol. 2; invalidation rules of Vol. 3 §29.4.3): `type` is the
  // register operand; the descriptor is {EPTP} for INVEPT and {VPID in bits 15:0 of the first
  // quadword, linear address} for INVVPID. VMfail(28) for a type the capabilities lack or an
  // invalid operand (cpu/vmx/tlb_context.cpp).
  VmxResult invept(uint64_t type, uint64_t eptp);
  VmxResult invvpid(uint64_t type, uint64_t desc_vpid, uint64_t desc_linear_address);
  // Events in non-root operation (cpu/vmx/nonroot_events.cpp): virtual-NMI blocking, and
  // whether the IRET being executed unblocked NMIs (bit 12 of an EPT-violation qualification).
  bool vmx_virtual_nmi_blocking() const { return vmx_.events.virtual_nmi_blocking; }
  bool vmx_nmi_unblocked_by_iret() const { return vmx_.events.iret_unblocked_nmi; }
  // An access to the APIC-access page (SDM §30.4): the APIC_ACCESS exit, from translate().
  bool vmx_is_apic_access(uint64_t pa) const { return (pa & ~0xfffull) == vmx_.events.apic_access_page; }
  Status vmx_apic_access(uint64_t pa, AccessKind kind);
  // PAUSE-loop exiting's timing state (cpu/vmx/pause_loop.cpp).
  PauseLoop& vmx_pause_loop() { return vmx_.pause_loop; }
  // A VM exit now, from non-root operation (SDM Chapter 28): saves guest state, writes the exit
  // information, loads host state and the exit MSR-load list. Returns Status::kExit so that a
  // handler can `return c.vm_exit(...)`; RIP/state are those the exit saves.
  Status vm_exit(const VmExitInfo& info);
  // An exit caused by the instruction `i` (RIP at the instruction; VM_EXIT_INSTRUCTION_LEN).
  Status vm_exit_for(const Insn& i, arch::ExitReason reason, uint64_t qualification = 0, uint32_t insn_info = 0) {
    VmExitInfo e;
    e.reason = uint32_t(reason);
    e.qualification = qualification;
    e.instruction_len = i.len;
    e.instruction_info = insn_info;
    return vm_exit(e);
  }

  // Port I/O with the TSS I/O-permission-bitmap check done by the caller (insn/io.cpp).
  uint32_t io_in(uint16_t port, unsigned size);
  void io_out(uint16_t port, unsigned size, uint32_t v);

  // Ends the current block after this instruction (self-modifying code, shadows, ...).
  void stop_block() { stop_block_ = true; }

  // Register helpers. 1-byte operands are addressed by byte offset (see insn.h).
  uint64_t reg8(uint8_t off) const { return reinterpret_cast<const uint8_t*>(state.gpr.data())[off]; }
  void set_reg8(uint8_t off, uint64_t v) { reinterpret_cast<uint8_t*>(state.gpr.data())[off] = uint8_t(v); }
  // Reads a GPR operand of `size` bytes (zero-extended).
  uint64_t get_reg(unsigned size, uint8_t r) const {
    return size == 1 ? reg8(r) : state.gpr[r] & size_mask(size);
  }
  // Writes with the architectural rules: 32-bit writes zero the upper half, 8/16-bit writes merge.
  void set_reg(unsigned size, uint8_t r, uint64_t v) {
    switch (size) {
      case 1: set_reg8(r, v); break;
      case 2: state.gpr[r] = (state.gpr[r] & ~0xffffull) | (v & 0xffff); break;
      case 4: state.gpr[r] = uint32_t(v); break;
      default: state.gpr[r] = v; break;
    }
  }
  // RSP as the stack-address size sees it, and its update.
  uint64_t sp() const { return state.gpr[kRsp] & size_mask(stack_size_); }
  void set_sp(uint64_t v) { set_reg(stack_size_, kRsp, v); }
  // RIP of the next instruction, wrapped to the code size outside 64-bit mode.
  uint64_t next_rip(const Insn& i) const { return (state.rip + i.len) & ip_mask_; }
  uint64_t ip_mask() const { return ip_mask_; }
  // Whether a near branch may go to `target`: canonical in 64-bit mode, within the CS limit
  // otherwise (SDM Vol. 2, JMP/CALL/RET: #GP(0) if the target is outside).
  bool near_target_ok(uint64_t target) const {
    return code_size_ == 8 ? uint64_t((int64_t(target) >> 47) + 1) <= 1 : target <= fetch_limit_;
  }

  // Hook for the decoder: the decoded-block cache of this vCPU.
  BlockCache& blocks() { return *blocks_; }

  // The JIT (cpu/jit/): blocks that ran `hot_threshold` times in the interpreter run as host
  // code (0: every block is translated before it first runs). On by default; NESTVM_JIT=0 in
  // the environment turns it off for every Cpu created afterwards. Turning it off drops every
  // translation (and the decoded blocks with them).
  static constexpr unsigned kJitHotThreshold = 8;
  void set_jit(bool on, unsigned hot_threshold = kJitHotThreshold);
  bool jit_enabled() const { return jit_ != nullptr; }
  const jit::Jit* jit() const { return jit_.get(); }

 private:
  friend class BlockCache;
  friend class jit::Jit;
  friend class jit::Translator;
  friend struct jit::Runtime;
  template <typename T> Status access_linear(uint64_t la, T* v, AccessKind kind, MmuIdx idx, SegReg s);
  const Block* find_block(uint64_t& fetch_la);
  bool service_attention(RunExit& exit);
  Status execute_block(const Block& b);
  const Block* next_linked_block(const Block& from);
  void step_one();
  void on_fault_in_block();

  // VMX (cpu/vmx/)
  void vmx_load_guest_state(VmcsRegion& v);
  void vmx_save_guest_state(VmcsRegion& v);
  void vmx_load_host_state(VmcsRegion& v);
  bool vmx_process_msr_list(uint64_t addr, uint32_t count, bool store, uint32_t& failed_index);
  VmxResult vmx_fail(arch::VmxError e);
  // The TLB's address space at VM entry into `v` and at VM exit (cpu/vmx/tlb_context.cpp).
  void vmx_tlb_enter(VmcsRegion& v);
  void vmx_tlb_exit(VmcsRegion& v);
  // EPT (cpu/vmx/ept_walk.cpp): guest-physical -> host-physical, or the VM exit.
  bool ept_active() const { return vmx_.non_root && vmx_.ctl.has2(arch::proc2::kEnableEpt); }
  Status ept_translate(uint64_t gpa, EptAccess access, uint64_t gla, EptTranslation& out);
  Status ept_violation(uint64_t gpa, EptAccess access, uint64_t gla, unsigned rwx);
  Status ept_misconfig(uint64_t gpa);
  // Events of non-root operation (cpu/vmx/): the instruction-boundary checks in their SDM
  // priority, the exception bitmap, triple faults, delivery bookkeeping, entry and exit.
  bool vmx_service_events(RunExit& exit);
  bool vmx_exception_exit(const Event& e, const Event* vectoring);
  void vmx_triple_fault();
  void vmx_begin_delivery(const Event& e);
  void vmx_event_delivered(const Event& e);
  void vmx_iret_unblock_nmis();
  void vmx_enter_events(VmcsRegion& v);
  void vmx_exit_events(VmcsRegion& v, const VmExitInfo& e);
  void vmx_update_event_attention();
  bool vmx_timer_due() { return __builtin_expect(vmx_.events.timer_armed, 0) && vmx_timer_expired(); }
  bool vmx_timer_expired() const;
  void vmx_arm_timer(uint32_t value);
  uint32_t vmx_timer_value() const;
  void vmx_wait_halted();
  VmxState vmx_;
  arch::VmxCapabilities vmx_caps_;

  PhysMem& mem_;
  const CpuModel& model_;
  IoBus* io_;
  Tlb tlb_;
  std::unique_ptr<BlockCache> blocks_;
  std::unique_ptr<jit::Jit> jit_;

  // derived state (refresh_mode)
  SegCache seg_cache_[arch::kNumSegRegs];
  uint64_t la_mask_ = 0xffffffff;
  uint64_t ip_mask_ = 0xffff;
  uint64_t fetch_limit_ = 0xffff;  // highest CS offset an instruction byte may occupy
  uint8_t cpl_ = 0;
  uint8_t code_size_ = 2;
  uint8_t stack_size_ = 2;
  uint8_t decode_mode_ = 0;
  MmuIdx mmu_idx_ = kMmuSupervisor;
  PagingMode paging_mode_ = PagingMode::kNone;
  uint16_t pcid_ = 0;

  // execution
  bool stop_block_ = false;
  bool has_pending_event_ = false;
  bool intercepted_ = false;  // the pending exception was already reported as kException
  Event pending_event_{};
  uint64_t pending_cr2_ = 0;
  uint64_t pending_dr6_set_ = 0, pending_dr6_clear_ = 0;  // DR6 change of a pending #DB (non-root)
  uint64_t retired_ = 0;
  // JIT (cpu/jit/jit.h): run()'s budget limit, read by generated code at block boundaries; the
  // last block generated code ran and the exit it left through.
  uint64_t jit_stop_at_ = ~0ull;
  uint16_t jit_threshold_ = kJitHotThreshold;
  const Block* jit_last_ = nullptr;
  jit::ExitRecord* jit_exit_ = nullptr;
  std::atomic<uint32_t> attention_{0};
  std::atomic<bool> intr_line_{false};
  bool nmi_pending_ = false;
  std::atomic<uint8_t> sipi_vector_{0};

  friend struct CpuTestAccess;
};

// Attention bits (Cpu::attention_), set by other threads or by the core itself.
namespace attention {
inline constexpr uint32_t kIntr = 1u << 0;
inline constexpr uint32_t kNmi = 1u << 1;
inline constexpr uint32_t kKick = 1u << 2;
inline constexpr uint32_t kStep = 1u << 3;  // single-instruction mode (TF, shadows, pending RF...)
inline constexpr uint32_t kInit = 1u << 4;  // an INIT signal is pending
inline constexpr uint32_t kSipi = 1u << 5;  // a start-up IPI is pending (vector in sipi_vector_)
inline constexpr uint32_t kVmx = 1u << 6;   // VMX non-root events to check at every boundary (MTF, windows)
}  // namespace attention

}  // namespace nestvm::cpu
