// VMCS shadowing (SDM Vol. 3 §25.10) and guest VMREAD/VMWRITE: exit-less accesses to the shadow
// VMCS for fields whose bitmap bit is clear, VM exits with the instruction information of
// Table 28-14 for the others, the VMfail conventions, the CPL and mode checks.
#include <gtest/gtest.h>

#include <string>

#include "arch/rflags.h"
#include "arch/segment.h"
#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {
namespace {

using arch::VmcsField;
using cpu::RunExit;
namespace rf = arch::rflags;

constexpr uint64_t kShadow = vmx_layout::kVmcs2;
constexpr uint64_t kReadBitmap = 0xe000, kWriteBitmap = 0xf000;
constexpr uint32_t kVmread = uint32_t(arch::ExitReason::VMREAD), kVmwrite = uint32_t(arch::ExitReason::VMWRITE);
constexpr uint32_t enc(VmcsField f) { return arch::encoding_of(f); }

class Shadowing : public ::testing::Test {
 protected:
  void SetUp() override {
    m.setup_guest64(vmx_layout::kGuestCode);
    // A shadow VMCS (revision with bit 31) referenced by the link pointer; bitmaps all ones.
    m.poke<uint32_t>(kShadow, arch::kVmcsRevision | arch::vmcs_layout::kShadowIndicator);
    std::string ones(4096, '\xff');
    m.write(kReadBitmap, ones.data(), ones.size());
    m.write(kWriteBitmap, ones.data(), ones.size());
    m.set_control(VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kActivateSecondary);
    m.set_control(VmcsField::SECONDARY_VM_EXEC_CONTROL, arch::proc2::kVmcsShadowing);
    m.vmwrite(VmcsField::VMCS_LINK_POINTER, kShadow);
    m.vmwrite(VmcsField::VMREAD_BITMAP, kReadBitmap);
    m.vmwrite(VmcsField::VMWRITE_BITMAP, kWriteBitmap);
  }
  // Clears the bitmap bit of `encoding` (bits 14:0): the guest accesses it without exiting.
  void allow(uint64_t bitmap, uint32_t encoding) {
    const uint64_t pa = bitmap + ((encoding & 0x7fff) >> 3);
    m.poke<uint8_t>(pa, uint8_t(m.peek<uint8_t>(pa) & ~(1u << (encoding & 7))));
  }
  cpu::VmcsRegion shadow() { return cpu::VmcsRegion(m.ram.data() + kShadow); }
  // Runs `code` (64-bit) to the first exit (or exception); `stop` ends it with an exit that
  // shadowing never completes (an encoding with bit 15 set).
  RunExit run(const std::string& code, bool stop = true) {
    m.load_code(vmx_layout::kGuestCode, code + (stop ? "\nmov r14, 0x8000\n vmread r15, r14" : ""), 64);
    return m.launch_and_run();
  }
  uint64_t guest_flags() { return m.vmread(VmcsField::GUEST_RFLAGS) & rf::kArith; }
  uint32_t insn_info() { return uint32_t(m.vmread(VmcsField::VMX_INSTRUCTION_INFO)); }

  VmxTestMachine m;
};

// ---- exit-less accesses ------------------------------------------------------------------------------

TEST_F(Shadowing, VmreadOfAllowedFieldReadsTheShadowVmcs) {
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));
  shadow().write(VmcsField::GUEST_RIP, 0x1234567890ull);
  ASSERT_EQ(run("mov rcx, 0x681e\n stc\n vmread rax, rcx"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);
  EXPECT_EQ(m.reg(cpu::kR14), 0x8000u);  // the exit is the final one, not the first VMREAD
  EXPECT_EQ(m.reg(cpu::kRax), 0x1234567890ull);
  EXPECT_EQ(guest_flags(), 0u);  // VMsucceed clears CF, PF, AF, ZF, SF, OF
}

TEST_F(Shadowing, VmreadHighAndNarrowFields) {
  allow(kReadBitmap, enc(VmcsField::TSC_OFFSET) + 1);
  allow(kReadBitmap, enc(VmcsField::GUEST_CS_SELECTOR));
  shadow().write(VmcsField::TSC_OFFSET, 0xaabbccdd11223344ull);
  shadow().write(VmcsField::GUEST_CS_SELECTOR, 0x33);
  ASSERT_EQ(run("mov rcx, 0x2011\n vmread rax, rcx\n mov rcx, 0x802\n mov rbx, -1\n vmread rbx, rcx"), RunExit::kVmExit);
  EXPECT_EQ(m.reg(cpu::kRax), 0xaabbccddu);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x33u);  // a 16-bit field zero-extends into the 64-bit destination
}

TEST_F(Shadowing, VmwriteOfAllowedFieldWritesTheShadowVmcs) {
  allow(kWriteBitmap, enc(VmcsField::TSC_OFFSET));
  allow(kWriteBitmap, enc(VmcsField::GUEST_CS_LIMIT));
  m.vmwrite(VmcsField::TSC_OFFSET, 0x77);
  ASSERT_EQ(run("mov rcx, 0x2010\n mov rax, 0x1122334455667788\n vmwrite rcx, rax\n"
                "mov rcx, 0x4802\n mov rax, 0x1ffffffff\n stc\n vmwrite rcx, rax"),
            RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);
  EXPECT_EQ(shadow().read(VmcsField::TSC_OFFSET), 0x1122334455667788ull);
  EXPECT_EQ(shadow().read(VmcsField::GUEST_CS_LIMIT), 0xffffffffu);  // high bits of the source ignored
  EXPECT_EQ(m.vmread(VmcsField::TSC_OFFSET), 0x77u);  // the current VMCS is untouched
  EXPECT_EQ(guest_flags(), 0u);
}

TEST_F(Shadowing, MemoryOperandsWithoutExit) {
  allow(kReadBitmap, enc(VmcsField::GUEST_RSP));
  allow(kWriteBitmap, enc(VmcsField::GUEST_RSP));
  m.poke<uint64_t>(layout::kData, 0x5151);
  ASSERT_EQ(run("mov rcx, 0x681c\n mov rbx, 0x200000\n vmwrite rcx, [rbx]\n vmread [rbx + 8], rcx"), RunExit::kVmExit);
  EXPECT_EQ(shadow().read(VmcsField::GUEST_RSP), 0x5151u);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData + 8), 0x5151u);
}

TEST_F(Shadowing, VmwriteToReadOnlyFieldFollowsMiscBit29) {
  ASSERT_TRUE(m.cpu.vmx_caps().misc & (1ull << 29));
  allow(kWriteBitmap, enc(VmcsField::EXIT_QUALIFICATION));
  ASSERT_EQ(run("mov rcx, 0x6400\n mov rax, 0x99\n vmwrite rcx, rax"), RunExit::kVmExit);
  EXPECT_EQ(shadow().read(VmcsField::EXIT_QUALIFICATION), 0x99u);
  EXPECT_EQ(guest_flags(), 0u);
}

// ---- VMfail ------------------------------------------------------------------------------------------

TEST_F(Shadowing, UnsupportedFieldIsVmfailValid) {
  constexpr uint32_t kHostSCet = 0x6c18;  // not a field nestvm supports
  allow(kReadBitmap, kHostSCet);
  ASSERT_EQ(run("mov rcx, 0x6c18\n mov rax, 5\n vmread rax, rcx\n pushfq\n pop rdx"), RunExit::kVmExit);
  EXPECT_EQ(m.reg(cpu::kRdx) & rf::kArith, rf::kZF);
  EXPECT_EQ(m.reg(cpu::kRax), 5u);  // the destination is not written
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), uint64_t(arch::VmxError::UNSUPPORTED_VMCS_COMPONENT));
}

TEST_F(Shadowing, InvalidLinkPointerIsVmfailInvalid) {
  m.vmwrite(VmcsField::VMCS_LINK_POINTER, ~0ull);
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));
  allow(kWriteBitmap, enc(VmcsField::GUEST_RIP));
  m.vmwrite(VmcsField::VM_INSTRUCTION_ERROR, 0);
  ASSERT_EQ(run("mov rcx, 0x681e\n mov rax, 5\n vmread rax, rcx\n pushfq\n pop rdx\n"
                "vmwrite rcx, rax\n pushfq\n pop rsi"),
            RunExit::kVmExit);
  EXPECT_EQ(m.reg(cpu::kRdx) & rf::kArith, rf::kCF);
  EXPECT_EQ(m.reg(cpu::kRsi) & rf::kArith, rf::kCF);
  EXPECT_EQ(m.reg(cpu::kRax), 5u);
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), 0u);
}

// ---- exits -----------------------------------------------------------------------------------------

TEST_F(Shadowing, BitmapBitSetExitsWithRegisterInstructionInformation) {
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));  // the write bitmap still has the bit
  ASSERT_EQ(run("mov r10, 0x681e\n vmwrite r10, r9", false), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmwrite);
  EXPECT_EQ(m.exit_qualification(), 0u);
  EXPECT_EQ(m.vmread(VmcsField::VM_EXIT_INSTRUCTION_LEN), 4u);
  // Table 28-14: bits 6:3 Reg1 (the value's register), bit 10 register operand, bits 31:28 Reg2
  // (the encoding's register).
  EXPECT_EQ(insn_info(), (9u << 3) | (1u << 10) | (10u << 28));
  EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode + assemble("mov r10, 0x681e", 64).size());
}

TEST_F(Shadowing, MemoryOperandExitReportsDisplacementAndAddressing) {
  ASSERT_EQ(run("mov rdx, 0x681e\n mov rbx, 0x200000\n xor esi, esi\n vmread [rbx + rsi * 4 + 0x40], rdx", false),
            RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);
  EXPECT_EQ(m.exit_qualification(), 0x40u);  // the displacement
  // Scaling 2 (x4), address size 2 (64-bit), memory, segment DS (3), index RSI (6), base RBX (3),
  // Reg2 RDX (2).
  EXPECT_EQ(insn_info(), 2u | (2u << 7) | (3u << 15) | (6u << 18) | (3u << 23) | (2u << 28));
}

TEST_F(Shadowing, VmwriteMemoryOperandExitWithSegmentOverride) {
  ASSERT_EQ(run("mov rdx, 0x681e\n vmwrite rdx, fs:[rax - 8]", false), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmwrite);
  EXPECT_EQ(m.exit_qualification(), ~uint64_t(7));  // the displacement, sign-extended
  // Address size 64-bit, segment FS (4), no index (bit 22), base RAX (0), Reg2 RDX (2).
  EXPECT_EQ(insn_info(), (2u << 7) | (4u << 15) | (1u << 22) | (0u << 23) | (2u << 28));
}

TEST_F(Shadowing, EncodingBeyondBit14Exits) {
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));
  ASSERT_EQ(run("mov rcx, 0x10000681e\n vmread rax, rcx", false), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);
  EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode + assemble("mov rcx, 0x10000681e", 64).size());
}

TEST_F(Shadowing, WithoutTheControlEveryAccessExits) {
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));
  m.set_control(VmcsField::SECONDARY_VM_EXEC_CONTROL, arch::proc2::kVmcsShadowing, false);
  m.vmwrite(VmcsField::VMCS_LINK_POINTER, ~0ull);  // a shadow VMCS there would fail VM entry now
  ASSERT_EQ(run("mov rcx, 0x681e\n vmread rax, rcx", false), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);
  EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode + assemble("mov rcx, 0x681e", 64).size());
}

// ---- privilege and mode -------------------------------------------------------------------------------

// The guest at CPL 3 (64-bit user code and stack segments).
void guest_cpl3(VmxTestMachine& m) {
  using arch::SegReg;
  for (auto [s, sel_value] : {std::pair{SegReg::kCS, sel::kUserCode64}, std::pair{SegReg::kSS, sel::kUserData}}) {
    m.load_seg(s, sel_value);
    const auto& seg = m.cpu.state.seg[unsigned(s)];
    const bool cs = s == SegReg::kCS;
    m.vmwrite(cs ? VmcsField::GUEST_CS_SELECTOR : VmcsField::GUEST_SS_SELECTOR, sel_value);
    m.vmwrite(cs ? VmcsField::GUEST_CS_AR_BYTES : VmcsField::GUEST_SS_AR_BYTES, seg.ar);
  }
}

TEST_F(Shadowing, Cpl3ExitsWhenTheBitIsSet) {
  guest_cpl3(m);
  ASSERT_EQ(run("mov rcx, 0x681e\n vmread rax, rcx", false), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmread);  // the exit comes before the CPL check
}

TEST_F(Shadowing, Cpl3FaultsWhenTheBitIsClear) {
  guest_cpl3(m);
  allow(kReadBitmap, enc(VmcsField::GUEST_RIP));
  m.cpu.intercept_exceptions = true;
  ASSERT_EQ(run("mov rcx, 0x681e\n vmread rax, rcx", false), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
  EXPECT_EQ(m.cpu.pending_event().error, 0u);
}

TEST(ShadowingRoot, VmreadAndVmwriteOutsideVmxOperationAreUndefined) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  for (const char* insn : {"vmread rax, rcx", "vmwrite rcx, rax", "vmread [rax], rcx"}) {
    m.cpu.clear_pending_event();
    m.cpu.state.rip = layout::kCode;
    m.load_code(layout::kCode, insn, 64);
    ASSERT_EQ(m.run(10), RunExit::kException) << insn;
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD)) << insn;
  }
}

}  // namespace
}  // namespace nestvm::test
