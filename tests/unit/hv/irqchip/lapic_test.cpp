// The local APIC model driven from C++: reset state, acceptance and priorities, TPR/PPR and
// CR8, EOI, errors, xAPIC/x2APIC modes and their transitions, relocation, IPIs between vCPUs.
#include "unit/hv/irqchip/irqchip_fixture.h"

namespace nestvm::test {
namespace {

using arch::ApicReg;

using LapicTest = IrqChipTest;

uint32_t icr(uint8_t vector, unsigned mode, bool logical = false, unsigned shorthand = 0, bool level = false) {
  return vector | (mode << 8) | (logical ? 1u << 11 : 0) | (1u << 14) | (level ? 1u << 15 : 0) | (shorthand << 18);
}

TEST_F(LapicTest, ResetStateMatchesTheSdmAndTheBspIsInVirtualWireMode) {
  EXPECT_EQ(chip.lapic(0).apic_base(), 0xfee00900u);  // enabled, BSP
  EXPECT_EQ(chip.lapic(1).apic_base(), 0xfee00800u);
  EXPECT_EQ(apic_read(0, ApicReg::kVersion), 0x50014u);
  EXPECT_EQ(apic_read(0, ApicReg::kId), 0u);
  EXPECT_EQ(apic_read(1, ApicReg::kId), 1u << 24);
  EXPECT_EQ(apic_read(1, ApicReg::kSvr), 0xffu);
  EXPECT_EQ(apic_read(1, ApicReg::kDfr), 0xffffffffu);
  EXPECT_EQ(apic_read(1, ApicReg::kLvtTimer), 0x10000u);
  EXPECT_EQ(apic_read(1, ApicReg::kLvtLint0), 0x10000u);
  EXPECT_EQ(apic_read(0, ApicReg::kLvtLint0), 0x700u);  // ExtINT, unmasked
  EXPECT_EQ(apic_read(0, ApicReg::kLvtLint1), 0x10000u);
  EXPECT_TRUE(chip.lapic(0).accepts_pic_interrupt());
  EXPECT_FALSE(chip.lapic(1).accepts_pic_interrupt());
}

TEST_F(LapicTest, SelfIpiIsAcceptedAcknowledgedAndRetiredByEoi) {
  software_enable(0);
  apic_write(0, ApicReg::kIcrLow, icr(0x40, 0, false, 1));
  EXPECT_TRUE(irr_has(0, 0x40));
  EXPECT_EQ(apic_read(0, ApicReg::kIcrLow) & (1u << 12), 0u);  // delivered: not pending
  EXPECT_TRUE(chip.has_interrupt(0));
  EXPECT_EQ(chip.acknowledge_interrupt(0), 0x40);
  EXPECT_FALSE(irr_has(0, 0x40));
  EXPECT_TRUE(isr_has(0, 0x40));
  EXPECT_EQ(apic_read(0, ApicReg::kPpr), 0x40u);
  EXPECT_FALSE(chip.has_interrupt(0));
  apic_write(0, ApicReg::kEoi, 0);
  EXPECT_FALSE(isr_has(0, 0x40));
  EXPECT_EQ(apic_read(0, ApicReg::kPpr), 0u);
}

TEST_F(LapicTest, PriorityClassesTprAndNesting) {
  software_enable(1);
  apic_write(0, ApicReg::kIcrHigh, 1u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x35, 0));
  apic_write(0, ApicReg::kIcrLow, icr(0x52, 0));
  apic_write(1, ApicReg::kTpr, 0x50);
  EXPECT_EQ(apic_read(1, ApicReg::kPpr), 0x50u);
  EXPECT_FALSE(chip.has_interrupt(1));  // class 5 is not above TPR class 5
  apic_write(1, ApicReg::kTpr, 0x4f);
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x52);
  EXPECT_EQ(apic_read(1, ApicReg::kPpr), 0x50u);  // ISRV class beats TPR
  EXPECT_EQ(chip.acknowledge_interrupt(1), -1);   // 0x35 waits for the EOI
  apic_write(0, ApicReg::kIcrLow, icr(0x61, 0));
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x61);  // a higher class nests
  apic_write(1, ApicReg::kEoi, 0);                 // retires 0x61, the highest in service
  EXPECT_TRUE(isr_has(1, 0x52));
  EXPECT_FALSE(isr_has(1, 0x61));
  apic_write(1, ApicReg::kEoi, 0);
  apic_write(1, ApicReg::kTpr, 0);
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x35);
}

TEST_F(LapicTest, Cr8AndTprStayOneRegister) {
  cpu::CpuState& s = vm.vcpu(0).core().state;
  s.cr8 = 6;  // MOV CR8 by the guest
  EXPECT_EQ(apic_read(0, ApicReg::kTpr), 0x60u);
  apic_write(0, ApicReg::kTpr, 0x3c);
  EXPECT_FALSE(chip.has_interrupt(0));  // the vCPU loop's look reconciles
  EXPECT_EQ(s.cr8, 3u);
  EXPECT_EQ(apic_read(0, ApicReg::kTpr), 0x3cu);
}

TEST_F(LapicTest, SoftwareDisabledApicDropsFixedKeepsNmiAndForcesMasks) {
  apic_write(0, ApicReg::kIcrHigh, 1u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x40, 0));
  EXPECT_FALSE(irr_has(1, 0x40));
  apic_write(1, ApicReg::kLvtTimer, 0x30);
  EXPECT_EQ(apic_read(1, ApicReg::kLvtTimer), 0x10030u);
  apic_write(0, ApicReg::kIcrLow, icr(0, 4));  // NMI
  EXPECT_TRUE(chip.has_nmi(1));
  EXPECT_TRUE(chip.take_nmi(1));
  EXPECT_FALSE(chip.has_nmi(1));
  software_enable(1);
  apic_write(1, ApicReg::kLvtTimer, 0x30);
  EXPECT_EQ(apic_read(1, ApicReg::kLvtTimer), 0x30u);
  apic_write(1, ApicReg::kSvr, 0xff);  // disabling sets every mask
  EXPECT_EQ(apic_read(1, ApicReg::kLvtTimer), 0x10030u);
}

TEST_F(LapicTest, ErrorsLatchIntoEsrOnWriteAndRaiseTheErrorLvt) {
  software_enable(0);
  software_enable(1);
  apic_write(1, ApicReg::kLvtError, 0xfe);
  apic_write(0, ApicReg::kIcrHigh, 1u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x05, 0));  // illegal vector: not sent
  EXPECT_FALSE(irr_has(1, 0x05));
  EXPECT_EQ(apic_read(0, ApicReg::kEsr), 0u);  // not latched yet
  apic_write(0, ApicReg::kEsr, 0);
  EXPECT_EQ(apic_read(0, ApicReg::kEsr), 0x20u);  // send illegal vector
  apic_write(0, ApicReg::kEsr, 0);
  EXPECT_EQ(apic_read(0, ApicReg::kEsr), 0u);
  // An unimplemented register: illegal register address, and the error interrupt.
  apic_read(1, ApicReg::kLvtCmci);
  apic_write(1, ApicReg::kEsr, 0);
  EXPECT_EQ(apic_read(1, ApicReg::kEsr), 0x80u);
  EXPECT_TRUE(irr_has(1, 0xfe));
}

TEST_F(LapicTest, RegisterReadsOfPartsAndUnalignedWrites) {
  software_enable(0);
  hv::set_running_vcpu(&vm.vcpu(0));
  EXPECT_EQ(vm.io().mmio_read(0xfee00032, 2), 0x5u);  // version bits 31:16
  EXPECT_EQ(vm.io().mmio_read(0xfee00030, 1), 0x14u);
  vm.io().mmio_write(0xfee00082, 1, 0x70);  // not an aligned dword: ignored
  hv::set_running_vcpu(nullptr);
  EXPECT_EQ(apic_read(0, ApicReg::kTpr), 0u);
  // Off a vCPU thread the page is nobody's: the bus reads all ones.
  EXPECT_EQ(vm.io().mmio_read(0xfee00030, 4), 0xffffffffu);
}

TEST_F(LapicTest, ApicBaseTransitionsFollowTheSdm) {
  const uint64_t base = chip.lapic(1).apic_base();
  uint64_t v;
  EXPECT_FALSE(chip.msr_write(1, 0x1b, base | 0x1));             // reserved bit 0
  EXPECT_FALSE(chip.msr_write(1, 0x1b, base | (1ull << 45)));    // above MAXPHYADDR
  EXPECT_FALSE(chip.msr_write(1, 0x1b, (base & ~0x800ull) | 0x400));  // EXTD without EN
  EXPECT_TRUE(chip.msr_write(1, 0x1b, base | 0x400));            // xAPIC -> x2APIC
  EXPECT_TRUE(chip.lapic(1).x2apic_mode());
  EXPECT_FALSE(chip.msr_write(1, 0x1b, base));                   // x2APIC -> xAPIC
  EXPECT_TRUE(chip.msr_write(1, 0x1b, base & ~0xc00ull));        // x2APIC -> disabled
  EXPECT_FALSE(chip.msr_write(1, 0x1b, base | 0x400));           // disabled -> x2APIC
  EXPECT_TRUE(chip.msr_read(1, 0x1b, v));
  EXPECT_EQ(v, base & ~0xc00ull);
  EXPECT_TRUE(chip.lapic(1).accepts_pic_interrupt());  // no APIC: INTR goes straight in
  EXPECT_TRUE(chip.msr_write(1, 0x1b, base | 0x100));  // BSP is not the guest's to set
  EXPECT_EQ(chip.lapic(1).apic_base(), base);
  EXPECT_EQ(apic_read(1, ApicReg::kId), 1u << 24);
}

class LapicNoX2apicTest : public IrqChipTest {
 protected:
  LapicNoX2apicTest() : IrqChipTest(ChipOptions{2, false, false}) {}
};

TEST_F(LapicNoX2apicTest, ExtdIsReservedAndTscDeadlineMissing) {
  uint64_t v;
  EXPECT_FALSE(enable_x2apic(0));
  EXPECT_FALSE(chip.msr_read(0, 0x6e0, v));
  EXPECT_FALSE(chip.msr_write(0, 0x6e0, 1));
  software_enable(0);
  apic_write(0, ApicReg::kLvtTimer, 0x40040);  // TSC-deadline mode bit is reserved
  EXPECT_EQ(apic_read(0, ApicReg::kLvtTimer), 0x40u);
}

TEST_F(LapicTest, X2apicRegistersAndTheirGpCases) {
  uint64_t v = 0;
  EXPECT_FALSE(x2_read(1, ApicReg::kId, v));  // xAPIC mode: the MSRs are #GP
  ASSERT_TRUE(enable_x2apic(1));
  EXPECT_TRUE(x2_read(1, ApicReg::kId, v));
  EXPECT_EQ(v, 1u);
  EXPECT_TRUE(x2_read(1, ApicReg::kLdr, v));
  EXPECT_EQ(v, 0x2u);  // cluster 0, bit 1
  EXPECT_TRUE(x2_read(1, ApicReg::kVersion, v));
  EXPECT_EQ(v, 0x50014u);
  // Read-only, write-only and missing registers.
  EXPECT_FALSE(x2_write(1, ApicReg::kId, 5));
  EXPECT_FALSE(x2_write(1, ApicReg::kLdr, 5));
  EXPECT_FALSE(x2_write(1, ApicReg::kVersion, 0));
  EXPECT_FALSE(x2_write(1, ApicReg::kPpr, 0));
  EXPECT_FALSE(x2_write(1, ApicReg::kIrr, 0));
  EXPECT_FALSE(x2_read(1, ApicReg::kEoi, v));
  EXPECT_FALSE(x2_read(1, ApicReg::kSelfIpi, v));
  EXPECT_FALSE(x2_read(1, ApicReg::kDfr, v));
  EXPECT_FALSE(x2_read(1, ApicReg::kIcrHigh, v));
  EXPECT_FALSE(x2_read(1, ApicReg::kApr, v));
  EXPECT_FALSE(chip.msr_read(1, 0x8ff, v));
  // Reserved bits.
  EXPECT_FALSE(x2_write(1, ApicReg::kTpr, 0x100));
  EXPECT_FALSE(x2_write(1, ApicReg::kSvr, 0x1ff | (1u << 12)));
  EXPECT_FALSE(x2_write(1, ApicReg::kLvtError, 0x400fe));
  EXPECT_FALSE(x2_write(1, ApicReg::kTimerDivideConfig, 0x4));
  EXPECT_FALSE(x2_write(1, ApicReg::kEoi, 1));
  EXPECT_FALSE(x2_write(1, ApicReg::kEsr, 1));
  EXPECT_FALSE(x2_write(1, ApicReg::kTpr, 1ull << 32));
  EXPECT_FALSE(x2_write(1, ApicReg::kSelfIpi, 0x140));
  EXPECT_TRUE(x2_write(1, ApicReg::kSvr, 0x1ff));
  EXPECT_TRUE(x2_write(1, ApicReg::kTpr, 0x20));
  // SELF IPI and the 64-bit ICR.
  EXPECT_TRUE(x2_write(1, ApicReg::kSelfIpi, 0x44));
  EXPECT_EQ(chip.acknowledge_interrupt(1), 0x44);
  EXPECT_TRUE(x2_write(1, ApicReg::kEoi, 0));
  EXPECT_FALSE(x2_write(1, ApicReg::kIcrLow, (1u << 12) | 0x30));  // delivery status is reserved
  EXPECT_TRUE(x2_write(1, ApicReg::kIcrLow, (0x7ull << 32) | 0x4030));
  EXPECT_TRUE(x2_read(1, ApicReg::kIcrLow, v));
  EXPECT_EQ(v, (0x7ull << 32) | 0x4030);
  // The MMIO page is gone in x2APIC mode.
  EXPECT_EQ(apic_read(1, ApicReg::kVersion), 0xffffffffu);
}

TEST_F(LapicTest, RelocatedPageIsPerVcpu) {
  software_enable(0);
  ASSERT_TRUE(chip.msr_write(0, 0x1b, 0xfed40000u | 0x900));
  EXPECT_EQ(apic_read(0, ApicReg::kVersion, 0xfed40000), 0x50014u);
  EXPECT_EQ(apic_read(0, ApicReg::kVersion), 0xffffffffu);  // vCPU 0's page moved
  EXPECT_EQ(apic_read(1, ApicReg::kVersion), 0x50014u);     // vCPU 1's did not
  EXPECT_EQ(apic_read(1, ApicReg::kVersion, 0xfed40000), 0xffffffffu);
  EXPECT_EQ(apic_read(0, ApicReg::kSvr, 0xfed40000), 0x1ffu);  // the same registers
}

TEST_F(LapicTest, PhysicalLogicalAndBroadcastDestinations) {
  software_enable(0);
  software_enable(1);
  // Physical.
  apic_write(0, ApicReg::kIcrHigh, 1u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x41, 0));
  EXPECT_TRUE(irr_has(1, 0x41));
  EXPECT_FALSE(irr_has(0, 0x41));
  // Logical, flat model: LDR bits.
  apic_write(0, ApicReg::kLdr, 0x01000000);
  apic_write(1, ApicReg::kLdr, 0x02000000);
  apic_write(0, ApicReg::kIcrHigh, 0x03u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x42, 0, true));
  EXPECT_TRUE(irr_has(0, 0x42));
  EXPECT_TRUE(irr_has(1, 0x42));
  apic_write(0, ApicReg::kIcrHigh, 0x02u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x43, 0, true));
  EXPECT_FALSE(irr_has(0, 0x43));
  EXPECT_TRUE(irr_has(1, 0x43));
  // Logical, cluster model: cluster 1 member bit 2 (LDR 0x12).
  apic_write(1, ApicReg::kDfr, 0x0fffffff);
  apic_write(1, ApicReg::kLdr, 0x12000000);
  EXPECT_EQ(apic_read(1, ApicReg::kDfr), 0x0fffffffu);
  apic_write(0, ApicReg::kIcrHigh, 0x22u << 24);  // cluster 2: no
  apic_write(0, ApicReg::kIcrLow, icr(0x44, 0, true));
  EXPECT_FALSE(irr_has(1, 0x44));
  apic_write(0, ApicReg::kIcrHigh, 0x13u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x45, 0, true));
  EXPECT_TRUE(irr_has(1, 0x45));
  // Broadcast and shorthands.
  apic_write(0, ApicReg::kIcrHigh, 0xffu << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x46, 0));
  EXPECT_TRUE(irr_has(0, 0x46));
  EXPECT_TRUE(irr_has(1, 0x46));
  apic_write(1, ApicReg::kIcrLow, icr(0x47, 0, false, 3));  // all excluding self
  EXPECT_TRUE(irr_has(0, 0x47));
  EXPECT_FALSE(irr_has(1, 0x47));
  apic_write(1, ApicReg::kIcrLow, icr(0x48, 0, false, 2));  // all including self
  EXPECT_TRUE(irr_has(0, 0x48));
  EXPECT_TRUE(irr_has(1, 0x48));
}

TEST_F(LapicTest, LowestPriorityReachesExactlyOneEnabledTarget) {
  software_enable(0);
  software_enable(1);
  apic_write(0, ApicReg::kIcrHigh, 0xffu << 24);
  for (uint8_t v : {0x50, 0x51}) {
    apic_write(0, ApicReg::kIcrLow, icr(v, 1));
    EXPECT_NE(irr_has(0, v), irr_has(1, v)) << int(v);
  }
  // Vector hashing spreads consecutive vectors over the two.
  EXPECT_NE(irr_has(0, 0x50), irr_has(0, 0x51));
  // A software-disabled APIC is no candidate.
  apic_write(1, ApicReg::kSvr, 0xff);
  for (uint8_t v : {0x52, 0x53}) {
    apic_write(0, ApicReg::kIcrLow, icr(v, 1));
    EXPECT_TRUE(irr_has(0, v));
  }
}

TEST_F(LapicTest, LevelTriggeredIpiSetsTmr) {
  software_enable(1);
  apic_write(0, ApicReg::kIcrHigh, 1u << 24);
  apic_write(0, ApicReg::kIcrLow, icr(0x60, 0, false, 0, true));
  EXPECT_TRUE(tmr_has(1, 0x60));
  apic_write(0, ApicReg::kIcrLow, icr(0x60, 0));
  EXPECT_FALSE(tmr_has(1, 0x60));
}

TEST_F(LapicTest, X2apicDestinations) {
  ASSERT_TRUE(enable_x2apic(0));
  ASSERT_TRUE(enable_x2apic(1));
  ASSERT_TRUE(x2_write(0, ApicReg::kSvr, 0x1ff));
  ASSERT_TRUE(x2_write(1, ApicReg::kSvr, 0x1ff));
  ASSERT_TRUE(x2_write(0, ApicReg::kIcrLow, (1ull << 32) | icr(0x70, 0)));
  EXPECT_TRUE(irr_has_x2(1, 0x70));
  ASSERT_TRUE(x2_write(0, ApicReg::kIcrLow, (0x3ull << 32) | icr(0x71, 0, true)));  // cluster 0, IDs 0 and 1
  EXPECT_TRUE(irr_has_x2(0, 0x71));
  EXPECT_TRUE(irr_has_x2(1, 0x71));
  ASSERT_TRUE(x2_write(0, ApicReg::kIcrLow, (0x10002ull << 32) | icr(0x72, 0, true)));  // cluster 1: nobody
  EXPECT_FALSE(irr_has_x2(1, 0x72));
  ASSERT_TRUE(x2_write(0, ApicReg::kIcrLow, (0xffffffffull << 32) | icr(0x73, 0)));
  EXPECT_TRUE(irr_has_x2(0, 0x73));
  EXPECT_TRUE(irr_has_x2(1, 0x73));
  ASSERT_TRUE(x2_write(0, ApicReg::kIcrLow, (0xffull << 32) | icr(0x74, 0)));  // 0xff is an ID here
  EXPECT_FALSE(irr_has_x2(1, 0x74));
}

TEST_F(LapicTest, NmiThroughLint1) {
  chip.inject_nmi();
  EXPECT_FALSE(chip.has_nmi(1));  // LINT1 masked
  software_enable(1);
  apic_write(1, ApicReg::kLvtLint1, 0x400);  // NMI
  chip.inject_nmi();
  EXPECT_TRUE(chip.has_nmi(1));
}

}  // namespace
}  // namespace nestvm::test
