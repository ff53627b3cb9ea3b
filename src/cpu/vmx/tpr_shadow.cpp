// The TPR shadow (SDM Vol. 3 Chapter 30, "APIC Virtualization and Virtual Interrupts"): VTPR on
// the virtual-APIC page, written by MOV to CR8 and, with "virtualize x2APIC mode", by WRMSR to the
// x2APIC TPR (808H); TPR virtualization and its trap-like "TPR below threshold" VM exit. No
// virtual-interrupt delivery or APIC-register virtualization is offered (capabilities.cpp), so
// the TPR threshold always applies and every other x2APIC MSR is left to the MSR bitmap and the
// normal MSR path.
#include <cstring>

#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu::vmx {

using namespace arch;

namespace {

constexpr uint64_t kVtprOffset = 0x80;

// The virtual-APIC page is a host-physical address the processor accesses directly; an address
// that is not RAM goes to the bus like any physical access.
uint64_t vapic_read(Cpu& c, uint64_t offset, unsigned size) {
  const uint64_t pa = c.vmx_controls().virtual_apic_page + offset;
  if (const uint8_t* page = c.mem().ram_page(pa)) {
    uint64_t v = 0;
    std::memcpy(&v, page + (pa & (kPageSize - 1)), size);
    return v;
  }
  return c.mem().mmio_read(pa, size);
}

void vapic_write(Cpu& c, uint64_t offset, unsigned size, uint64_t v) {
  const uint64_t pa = c.vmx_controls().virtual_apic_page + offset;
  if (uint8_t* page = c.mem().ram_page(pa)) {
    std::memcpy(page + (pa & (kPageSize - 1)), &v, size);
    c.mem().note_host_write(pa, size);  // the page may hold decoded code, however unlikely
    return;
  }
  c.mem().mmio_write(pa, size, v);
}

}  // namespace

uint32_t read_vtpr(Cpu& c) { return uint32_t(vapic_read(c, kVtprOffset, 4)); }

Status write_vtpr(Cpu& c, const Insn& i, uint32_t v, bool clear_high) {
  if (clear_high) vapic_write(c, kVtprOffset, 8, v);
  else vapic_write(c, kVtprOffset, 4, v);
  // TPR virtualization without virtual-interrupt delivery ("TPR Virtualization"): a VM exit when
  // VTPR[7:4] is below TPR_THRESHOLD[3:0]. The exit is trap-like: the instruction completes and
  // the saved RIP is that of the next instruction; no instruction length is reported.
  if (((v >> 4) & 0xf) < (c.vmx_controls().tpr_threshold & 0xf)) {
    c.state.rip = c.next_rip(i);
    VmExitInfo e;
    e.reason = uint32_t(ExitReason::TPR_BELOW_THRESHOLD);
    return c.vm_exit(e);
  }
  return Status::kEndBlock;
}

// "Virtualizing MSR-Based APIC Accesses", with APIC-register virtualization 0: RDMSR of 808H reads
// the 8 bytes at offset 80H of the virtual-APIC page into EDX:EAX, whether or not the local APIC
// is in x2APIC mode.
uint64_t read_x2apic_vtpr(Cpu& c) { return vapic_read(c, kVtprOffset, 8); }

// WRMSR of 808H: #GP(0) if EDX or EAX[31:8] is not 0; otherwise EAX goes to offset 80H, bytes
// 84H-87H are cleared, and TPR virtualization follows.
Status write_x2apic_vtpr(Cpu& c, const Insn& i, uint64_t value) {
  if (value >> 8) return c.fault(Vector::kGP, 0);
  return write_vtpr(c, i, uint32_t(value), true);
}

}  // namespace nestvm::cpu::vmx
