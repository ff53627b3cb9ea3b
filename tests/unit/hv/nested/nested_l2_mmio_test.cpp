// L0's emulator running L2's device accesses (KVM's nested MMU): the instruction is fetched, its
// page walk done and its operands read at L2-physical addresses translated through EPT12 (here
// never the identity: L2-physical [0, 2 MiB) is L1-physical 8 MiB, and L2's device window
// 0xc0000000 is L1-physical 0xd0000000), and an access EPT12 refuses is L1's EPT violation.
#include <vector>

#include "unit/hv/nested/nested_fixture.h"

namespace nestvm::test {
namespace {

using namespace arch;
using F = VmcsField;
namespace q = exit_qual::ept;

class L2Device : public hv::MmioDevice {
 public:
  uint64_t mmio_read(uint64_t gpa, unsigned size) override {
    reads.push_back({gpa, size, 0});
    return 0xcafe0000u | (gpa & 0xffff);
  }
  void mmio_write(uint64_t gpa, unsigned size, uint64_t value) override { writes.push_back({gpa, size, value}); }
  struct Access {
    uint64_t gpa;
    unsigned size;
    uint64_t value;
  };
  std::vector<Access> reads, writes;
};

class NestedL2MmioTest : public NestedTest {
 protected:
  static constexpr uint64_t kL2Window = 0xc0000000, kL1Window = 0xd0000000;
  static constexpr uint64_t kEptPd3 = 0x224000;  // EPT12 PD for L2-physical [3 GiB, 4 GiB)
  static constexpr uint64_t kL2Pd = 0x10000;     // L2's 32-bit page directory (L2-physical)

  NestedL2MmioTest() {
    vm.io().add_mmio(kL1Window, 0x1000, &dev, "l2-device");
    write64(kEptPdpt + 3 * 8, kEptPd3 | 7);
    write64(kEptPd3, kL1Window | 7 | ept::kLargePage);  // no memory type: not RAM for L1
  }
  uint64_t l2_reg(cpu::Gpr r) { return vm.vcpu(0).reg(r); }

  L2Device dev;
};

// Paging off in L2: the code L0 decodes is L2's (L1-physical 8 MiB + RIP), not what L1 has at
// RIP, and the store reaches the device at the L1-physical address EPT12 gives.
TEST_F(NestedL2MmioTest, StoreAndLoadThroughNonIdentityEpt12) {
  load(kL2Code, "ud2\n");  // what L1 has at L2's RIP: decoding it here would #UD
  load_l2("mov eax, 0x12345678\n mov [0xc0000010], eax\n mov ebx, [0xc0000024]\n hlt\n");
  ASSERT_EQ(run_l1(), 0x21);
  ASSERT_EQ(dev.writes.size(), 1u);
  EXPECT_EQ(dev.writes[0].gpa, kL1Window + 0x10);
  EXPECT_EQ(dev.writes[0].size, 4u);
  EXPECT_EQ(dev.writes[0].value, 0x12345678u);
  ASSERT_EQ(dev.reads.size(), 1u);
  EXPECT_EQ(dev.reads[0].gpa, kL1Window + 0x24);
  EXPECT_EQ(l2_reg(cpu::kRbx), 0xcafe0024u);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::HLT));
  EXPECT_GE(stats().l2_exits_l0[unsigned(ExitReason::EPT_VIOLATION)], 2u);
}

// Paging on in L2: L0's page walk reads L2's page directory at its L2-physical address through
// EPT12 (L1-physical 8 MiB + kL2Pd), where L1's memory at kL2Pd holds nothing.
TEST_F(NestedL2MmioTest, L2PageWalkGoesThroughEpt12) {
  // L2's PD: linear [0, 4 MiB) identity, linear 0x40000000 -> L2-physical 0xc0000000 (4 MiB).
  write32(kL2Base + kL2Pd, 0x83);
  write32(kL2Base + kL2Pd + 4 * (0x40000000 >> 22), uint32_t(kL2Window) | 0x83);
  w12(F::GUEST_CR0, cr0::kPE | cr0::kNE | cr0::kET | cr0::kPG);
  w12(F::GUEST_CR4, cr4::kVMXE | cr4::kPSE);
  w12(F::GUEST_CR3, kL2Pd);
  load_l2("mov dword ptr [0x40000008], 0xabcd\n hlt\n");
  ASSERT_EQ(run_l1(), 0x21);
  ASSERT_EQ(dev.writes.size(), 1u);
  EXPECT_EQ(dev.writes[0].gpa, kL1Window + 8);
  EXPECT_EQ(dev.writes[0].value, 0xabcdu);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::HLT));
}

// The emulated instruction reads the device, then pushes onto a stack EPT12 does not map: L1
// gets the EPT violation hardware would give (a write at the stack's L2-physical address), and
// the instruction has not completed (ESP unchanged).
TEST_F(NestedL2MmioTest, Ept12ViolationDuringEmulationExitsToL1) {
  w12(F::GUEST_RSP, 0x300000);  // L2-physical 3 MiB: beyond EPT12's 2 MiB page
  load_l2("push dword ptr [0xc0000010]\n hlt\n");
  ASSERT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::EPT_VIOLATION));
  EXPECT_EQ(r12(F::GUEST_PHYSICAL_ADDRESS), 0x300000u - 4);
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION) & 7, q::kWrite);
  EXPECT_EQ(r12(F::EXIT_QUALIFICATION) & 0x38, 0u);  // EPT12 allowed nothing there
  EXPECT_EQ(r12(F::GUEST_RSP), 0x300000u);
  EXPECT_EQ(r12(F::GUEST_RIP), kL2Code);
  EXPECT_EQ(stats().l2_exits_reflected[unsigned(ExitReason::EPT_VIOLATION)], 1u);
}

// A MOV to CR0 of L2 that only L0 intercepts (CR0.NE, which L0 keeps set in VMX operation) is
// emulated as L2's: L2 reads back the NE it wrote, the silicon keeps NE set, and L2's other
// bits are its own, not L1's.
TEST_F(NestedTest, L2CrWriteOnlyL0InterceptsIsEmulatedForL2) {
  load_l2("mov eax, cr0\n and eax, ~0x20\n mov cr0, eax\n mov ebx, cr0\n hlt\n");
  ASSERT_EQ(run_l1(), 0x21);
  EXPECT_EQ(r12(F::VM_EXIT_REASON), uint64_t(ExitReason::HLT));
  const uint64_t ebx = vm.vcpu(0).reg(cpu::kRbx);
  EXPECT_EQ(ebx & cr0::kNE, 0u);
  EXPECT_EQ(ebx & (cr0::kPE | cr0::kPG), cr0::kPE);
  EXPECT_GE(stats().l2_exits_l0[unsigned(ExitReason::CR_ACCESS)], 1u);
  EXPECT_EQ(stats().l2_exits_reflected[unsigned(ExitReason::CR_ACCESS)], 0u);
}

}  // namespace
}  // namespace nestvm::test
