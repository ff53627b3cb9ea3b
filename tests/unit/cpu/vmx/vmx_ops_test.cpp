// The silicon's VMCS operations for L0 and VM entry/exit round trips.
#include <gtest/gtest.h>

#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {
namespace {

using arch::VmcsField;
using arch::VmxError;
using cpu::RunExit;
using Kind = cpu::VmxResult::Kind;

TEST(VmxOps, VmreadWithoutCurrentVmcsFailsInvalid) {
  VmxTestMachine m;
  uint64_t v;
  EXPECT_EQ(m.cpu.vmread(arch::encoding_of(VmcsField::GUEST_RIP), v).kind, Kind::kFailInvalid);
  EXPECT_EQ(m.cpu.vmptrst(), ~0ull);
}

TEST(VmxOps, VmptrldChecksAlignmentAndRevision) {
  VmxTestMachine m;
  EXPECT_EQ(m.cpu.vmptrld(0x8010).kind, Kind::kFailInvalid);  // no current VMCS: VMfailInvalid
  m.poke<uint32_t>(0x9000, 0x1234);
  m.make_current_vmcs(vmx_layout::kVmcs);
  const auto r = m.cpu.vmptrld(0x9000);
  EXPECT_EQ(r.kind, Kind::kFailValid);
  EXPECT_EQ(r.error, VmxError::VMPTRLD_INCORRECT_VMCS_REVISION_ID);
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), 11u);
  EXPECT_EQ(m.cpu.vmptrld(0x8001).error, VmxError::VMPTRLD_INVALID_ADDRESS);
  EXPECT_EQ(m.cpu.vmptrst(), vmx_layout::kVmcs);
}

TEST(VmxOps, VmreadVmwriteHonourWidthsAndHighAccess) {
  VmxTestMachine m;
  m.make_current_vmcs();
  m.vmwrite(VmcsField::TSC_OFFSET, 0x1122334455667788ull);
  uint64_t hi = 0;
  ASSERT_TRUE(m.cpu.vmread(arch::encoding_of(VmcsField::TSC_OFFSET) + 1, hi).ok());
  EXPECT_EQ(hi, 0x11223344u);
  ASSERT_TRUE(m.cpu.vmwrite(arch::encoding_of(VmcsField::TSC_OFFSET) + 1, 0xaabbccdd).ok());
  EXPECT_EQ(m.vmread(VmcsField::TSC_OFFSET), 0xaabbccdd55667788ull);
  m.vmwrite(VmcsField::GUEST_CS_SELECTOR, 0x12345678);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CS_SELECTOR), 0x5678u);
  uint64_t v;
  const auto r = m.cpu.vmread(0x6c18, v);  // HOST_S_CET: not supported
  EXPECT_EQ(r.error, VmxError::UNSUPPORTED_VMCS_COMPONENT);
  EXPECT_EQ(m.cpu.vmread(0x4001, v).error, VmxError::UNSUPPORTED_VMCS_COMPONENT);  // high access to a 32-bit field
}

TEST(VmxOps, VmclearResetsLaunchStateAndCurrentPointer) {
  VmxTestMachine m;
  m.make_current_vmcs();
  ASSERT_TRUE(m.cpu.vmclear(vmx_layout::kVmcs).ok());
  EXPECT_EQ(m.cpu.vmptrst(), ~0ull);
}

TEST(VmxEntry, LaunchRunsTheGuestAndLaunchStateRules) {
  VmxTestMachine m;
  m.setup_guest64(vmx_layout::kGuestCode);
  m.load_code(vmx_layout::kGuestCode, "mov eax, 42\n1: jmp 1b", 64);
  EXPECT_EQ(m.launch_and_run(1000), RunExit::kBudget);
  EXPECT_TRUE(m.cpu.vmx_non_root());
  EXPECT_EQ(m.reg(cpu::kRax), 42u);
  // A second VMLAUNCH of the now-launched VMCS is VMfailValid(4); VMRESUME of a clear one (5).
  EXPECT_EQ(m.cpu.vm_enter(false).error, VmxError::VMLAUNCH_NONCLEAR_VMCS);
  VmxTestMachine n;
  n.setup_guest64(vmx_layout::kGuestCode);
  EXPECT_EQ(n.cpu.vm_enter(true).error, VmxError::VMRESUME_NONLAUNCHED_VMCS);
}

}  // namespace
}  // namespace nestvm::test
