// Event delivery common to every mode: the double-fault rules (SDM Vol. 3 §6.15, Tables 6-4
// and 6-5), triple fault -> shutdown, CR2 loading, and real-mode delivery through the IVT
// (SDM Vol. 3 §21.1.4). Protected- and IA-32e-mode delivery is in events_protected.cpp.
#include "cpu/memory.h"

namespace nestvm::cpu {

using namespace arch;

bool Cpu::deliver_pending_event() {
  has_pending_event_ = false;
  return deliver_event(pending_event_);
}

namespace {

bool is_exception(const Event& e) { return e.type == EventType::kHardwareException; }

// Table 6-5: whether a second exception raised while delivering `first` becomes #DF.
bool makes_double_fault(const Event& first, const Event& second) {
  if (!is_exception(first) || !is_exception(second)) return false;
  const ExceptionClass a = exception_class(first.vector), b = exception_class(second.vector);
  if (a == ExceptionClass::kContributory) return b == ExceptionClass::kContributory;
  if (a == ExceptionClass::kPageFault)
    return b == ExceptionClass::kContributory || b == ExceptionClass::kPageFault;
  return false;
}

}  // namespace

bool Cpu::deliver_event(const Event& event) {
  Event cur = event;
  state.activity = Activity::kActive;
  // VMX non-root operation: the exception bitmap turns an exception into a VM exit (SDM §26.2).
  if (vmx_.non_root && vmx_exception_exit(cur, nullptr)) return true;
  for (;;) {
    // A #PF injected by VM entry leaves CR2 as the VMM set it (SDM §27.6.1.2).
    if (is_exception(cur) && cur.vector == uint8_t(Vector::kPF) && !cur.injected) state.cr2 = pending_cr2_;
    if (is_exception(cur) && cur.vector == uint8_t(Vector::kDB)) {
      state.dr7 &= ~dr7::kGD;
      if (!cur.injected) state.dr6 = (state.dr6 & ~pending_dr6_clear_) | pending_dr6_set_;
      pending_dr6_set_ = pending_dr6_clear_ = 0;
    }
    if (vmx_.non_root) vmx_begin_delivery(cur);  // for a VM exit during delivery (SDM §28.2.4)
    const Status st = real_mode() ? deliver_real(cur) : deliver_protected(cur);
    vmx_.events.delivering = nullptr;
    if (st == Status::kExit) return true;  // delivery caused a VM exit (EPT, APIC access, task gate)
    if (st != Status::kFault) {
      // Delivery clears the interrupt shadows; NMI delivery blocks further NMIs until IRET.
      state.sti_blocking = state.movss_blocking = false;
      if (cur.type == EventType::kNmi) state.nmi_blocking = true;
      if (vmx_.non_root) vmx_event_delivered(cur);
      return true;
    }
    Event second = pending_event_;
    has_pending_event_ = false;
    // SDM §26.2: the exception bitmap applies to an exception raised during delivery before the
    // double-fault rules do.
    if (vmx_.non_root && vmx_exception_exit(second, &cur)) return true;
    if (is_exception(cur) && cur.vector == uint8_t(Vector::kDF)) {
      // A fault while delivering #DF: triple fault, the processor shuts down (SDM §6.15, #DF),
      // or, in VMX non-root operation, exits (SDM §26.2).
      if (vmx_.non_root) {
        vmx_triple_fault();
        return true;
      }
      state.activity = Activity::kShutdown;
      return false;
    }
    if (makes_double_fault(cur, second)) {
      if (second.vector == uint8_t(Vector::kPF)) state.cr2 = pending_cr2_;
      cur = Event{uint8_t(Vector::kDF), EventType::kHardwareException, true, 0, 0};
      if (vmx_.non_root && vmx_exception_exit(cur, nullptr)) return true;
    } else {
      cur = second;  // handled serially
    }
  }
}

Status Cpu::deliver_real(const Event& e) {
  // SDM Vol. 3 §21.1.4: the IVT holds 4-byte IP:CS pointers; the frame is FLAGS, CS, IP.
  const uint64_t entry = uint64_t(e.vector) * 4;
  if (entry + 3 > state.idtr.limit) return fault(Vector::kGP, uint32_t(e.vector) * 8 + 2);
  uint16_t ip, cs;
  Status st = read_system<uint16_t>(state.idtr.base + entry, ip);
  if (st != Status::kNext) return st;
  st = read_system<uint16_t>(state.idtr.base + entry + 2, cs);
  if (st != Status::kNext) return st;
  const bool soft = e.type == EventType::kSoftwareInterrupt || e.type == EventType::kSoftwareException ||
                    e.type == EventType::kPrivilegedSoftwareException;
  const uint16_t ret_ip = uint16_t(state.rip + (soft ? e.insn_len : 0));
  const uint64_t sp0 = state.gpr[kRsp];
  const uint16_t flags = uint16_t(rflags());
  if ((st = push<uint16_t>(flags)) != Status::kNext ||
      (st = push<uint16_t>(state.seg[unsigned(SegReg::kCS)].selector)) != Status::kNext ||
      (st = push<uint16_t>(ret_ip)) != Status::kNext) {
    if (st == Status::kFault) state.gpr[kRsp] = sp0;  // after a VM exit (kExit) RSP is the host's
    return st;
  }
  Segment& c = state.seg[unsigned(SegReg::kCS)];
  c.selector = cs;
  c.base = uint64_t(cs) << 4;
  state.rip = ip;
  state.rflags &= ~(rflags::kIF | rflags::kTF | rflags::kAC | rflags::kRF);
  refresh_mode();
  return Status::kNext;
}

}  // namespace nestvm::cpu
