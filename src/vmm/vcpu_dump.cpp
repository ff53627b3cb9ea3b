#include "vmm/vcpu_dump.h"

#include <fmt/core.h>

#include "arch/vmcs.h"
#include "arch/vmx.h"
#include "hv/vcpu.h"

namespace nestvm::vmm {

using arch::VmcsField;

std::string dump_vcpu_state(hv::Vcpu& v) {
  static constexpr const char* kGprNames[16] = {"RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
                                                "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14", "R15"};
  // QEMU's order: RAX RBX RCX RDX / RSI RDI RBP RSP / R8-R11 / R12-R15.
  static constexpr cpu::Gpr kOrder[16] = {cpu::kRax, cpu::kRbx, cpu::kRcx, cpu::kRdx, cpu::kRsi, cpu::kRdi,
                                          cpu::kRbp, cpu::kRsp, cpu::kR8,  cpu::kR9,  cpu::kR10, cpu::kR11,
                                          cpu::kR12, cpu::kR13, cpu::kR14, cpu::kR15};
  std::string s;
  for (unsigned i = 0; i < 16; ++i)
    s += fmt::format("{}={:016x}{}", kGprNames[kOrder[i]], v.reg(kOrder[i]), i % 4 == 3 ? "\n" : " ");
  const uint64_t rflags = v.vmread(VmcsField::GUEST_RFLAGS);
  const uint32_t cs_ar = uint32_t(v.vmread(VmcsField::GUEST_CS_AR_BYTES));
  s += fmt::format("RIP={:016x} RFL={:08x} CPL={} II={} ACT={}\n", v.vmread(VmcsField::GUEST_RIP), rflags,
                   (cs_ar >> 5) & 3, v.vmread(VmcsField::GUEST_INTERRUPTIBILITY_INFO),
                   v.vmread(VmcsField::GUEST_ACTIVITY_STATE));
  static constexpr const char* kSegNames[8] = {"ES ", "CS ", "SS ", "DS ", "FS ", "GS ", "LDT", "TR "};
  for (unsigned i = 0; i < 8; ++i) {
    const arch::VmcsSegmentFields& f = arch::kGuestSegmentFields[i];
    s += fmt::format("{}={:04x} {:016x} {:08x} {:08x}\n", kSegNames[i], v.vmread(f.selector), v.vmread(f.base),
                     v.vmread(f.limit), v.vmread(f.ar));
  }
  s += fmt::format("GDT=     {:016x} {:08x}\n", v.vmread(VmcsField::GUEST_GDTR_BASE),
                   v.vmread(VmcsField::GUEST_GDTR_LIMIT));
  s += fmt::format("IDT=     {:016x} {:08x}\n", v.vmread(VmcsField::GUEST_IDTR_BASE),
                   v.vmread(VmcsField::GUEST_IDTR_LIMIT));
  s += fmt::format("CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}\n", v.guest_cr0(), v.core().state.cr2,
                   v.vmread(VmcsField::GUEST_CR3), v.guest_cr4());
  s += fmt::format("DR7={:016x} EFER={:016x}\n", v.vmread(VmcsField::GUEST_DR7),
                   v.vmread(VmcsField::GUEST_IA32_EFER));
  const uint32_t reason = uint32_t(v.vmread(VmcsField::VM_EXIT_REASON));
  s += fmt::format("last exit: {} qualification={:#x} IDT-vectoring={:#x} error={:#x}\n",
                   arch::exit_reason_name(reason & 0xffff), v.vmread(VmcsField::EXIT_QUALIFICATION),
                   v.vmread(VmcsField::IDT_VECTORING_INFO_FIELD), v.vmread(VmcsField::IDT_VECTORING_ERROR_CODE));
  return s;
}

}  // namespace nestvm::vmm
