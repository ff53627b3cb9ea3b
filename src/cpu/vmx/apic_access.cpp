// "Virtualize APIC accesses" (SDM Vol. 3 §30.4): an access to the APIC-access page, the physical
// page at APIC_ACCESS_ADDR (the host-physical address a guest-physical address translates to
// when EPT is on), causes an APIC_ACCESS exit instead of touching memory. Cpu::translate checks
// every translation it makes and never caches this page in the TLB, so the fast paths cannot
// reach it. nestvm offers neither APIC-register virtualization nor virtual-interrupt delivery,
// so every access exits; linear accesses report the page offset and the access type
// (Table 28-6). The exit is fault-like: RIP stays at the instruction (RF is saved as 1,
// exit_event_info.cpp).
#include "arch/vmcs.h"
#include "cpu/cpu.h"

namespace nestvm::cpu {

using namespace arch;

Status Cpu::vmx_apic_access(uint64_t pa, AccessKind kind) {
  namespace aa = exit_qual::apic_access;
  // An access made by event delivery (IDT read, stack push) reports type 3 and the event in the
  // IDT-vectoring information (§28.2.4).
  const unsigned type = vmx_.events.delivering ? aa::kLinearEventDelivery
                      : kind == AccessKind::kWrite ? aa::kLinearWrite
                      : kind == AccessKind::kExec  ? aa::kLinearFetch
                                                   : aa::kLinearRead;
  VmExitInfo x;
  x.reason = uint32_t(ExitReason::APIC_ACCESS);
  x.qualification = aa::make(pa, type);
  return vm_exit(x);
}

}  // namespace nestvm::cpu
