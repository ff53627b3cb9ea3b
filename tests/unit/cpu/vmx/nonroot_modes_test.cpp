// VMX non-root operation outside 64-bit mode: a real-mode guest under "unrestricted guest"
// (which runs natively, SDM Vol. 3 "Unrestricted Guests"), whose CR0.PE may change in VMX
// operation (§26.3 MOV to CR0), and how the VMX instructions' mode checks and the instruction
// information of 16-bit addressing look there. XSAVES/XRSTORS, which no model offers, stay #UD.
#include <gtest/gtest.h>

#include "arch/vmx_insn_info.h"
#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::Vector;
using arch::VmcsField;
namespace ii = arch::insn_info;

constexpr uint16_t kRealCs = 0x2000;

TEST(NonRootModes, RealModeGuestRunsAndVmcallExits) {
  NonRootMachine m("");
  m.guest_real_mode(kRealCs, "mov ax, 0x1234\nadd ax, 1\nvmcall");
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x1235u);
  EXPECT_EQ(m.guest_rip(), 3u + 3u);  // past "mov ax, imm16" and "add ax, 1"
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CS_BASE), uint64_t(kRealCs) << 4);
}

TEST(NonRootModes, VmxInstructionsOtherThanVmcallAreUndefinedInRealMode) {
  for (const char* text : {"vmclear [0x100]", "vmptrld [bx]", "vmxon [0x100]", "vmlaunch", "vmxoff", "invvpid eax, [si]"}) {
    NonRootMachine m("");
    m.guest_real_mode(kRealCs, text);
    m.expect_exception(Vector::kUD);
  }
}

TEST(NonRootModes, CpuidExitsInRealMode) {
  NonRootMachine m("");
  m.guest_real_mode(kRealCs, "cpuid");
  m.expect_exit(ExitReason::CPUID);
  EXPECT_EQ(m.insn_len(), 2u);
}

TEST(NonRootModes, DescriptorTableExitReportsSixteenBitAddressing) {
  NonRootMachine m("");
  m.guest_real_mode(kRealCs, "lgdt [bx + si + 4]");
  m.proc2(arch::proc2::kDescriptorTableExiting);
  m.expect_exit(ExitReason::GDTR_IDTR);
  EXPECT_EQ(m.exit_qualification(), 4u);
  // 16-bit addresses (0), DS, index SI (6), base BX (3), 16-bit operand size (bit 11 clear).
  EXPECT_EQ(m.insn_info(), (0u << 7) | (3u << 15) | (6u << 18) | (3u << 23) |
                               ii::identity(ii::DescriptorTableInsn::kLgdt));
  // In real mode SLDT is #UD before any exit.
  NonRootMachine s("");
  s.guest_real_mode(kRealCs, "sldt ax");
  s.proc2(arch::proc2::kDescriptorTableExiting);
  s.expect_exception(Vector::kUD);
}

TEST(NonRootModes, UnrestrictedGuestMayClearCr0Pe) {
  NonRootMachine m("");
  m.guest_real_mode(kRealCs, "mov eax, cr0\nor al, 1\nmov cr0, eax\nand al, 0xfe\nmov cr0, eax\nvmcall");
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_FALSE(m.vmread(VmcsField::GUEST_CR0) & arch::cr0::kPE);
  // The same write with PE host-owned and shadowed as 1 exits instead.
  NonRootMachine h("");
  h.guest_real_mode(kRealCs, "mov eax, cr0\nor al, 1\nmov cr0, eax\nand al, 0xfe\nmov cr0, eax\nvmcall");
  h.vmwrite(VmcsField::CR0_GUEST_HOST_MASK, arch::cr0::kPE);
  h.vmwrite(VmcsField::CR0_READ_SHADOW, arch::cr0::kPE);
  h.expect_exit(ExitReason::CR_ACCESS);
  // The first MOV to CR0 (PE = 1, as the shadow says) went through without changing PE; the
  // second (PE = 0) exits.
  EXPECT_EQ(h.guest_rip(), encoded_length("mov eax, cr0\nor al, 1\nmov cr0, eax\nand al, 0xfe", 16));
  EXPECT_EQ(h.exit_qualification(), arch::exit_qual::cr::make(0, arch::exit_qual::cr::kAccessMovTo, 0));
  EXPECT_FALSE(h.vmread(VmcsField::GUEST_CR0) & arch::cr0::kPE);
}

TEST(NonRootModes, XsavesAndXrstorsAreUndefined) {
  for (const char* text : {"xsaves [rax]", "xrstors [rax]"}) {
    NonRootMachine m(std::string("mov rax, 0x200000\n") + text);
    m.proc2(arch::proc2::kEnableXsaves);
    m.expect_exception(Vector::kUD);
  }
}

}  // namespace
}  // namespace nestvm::test
