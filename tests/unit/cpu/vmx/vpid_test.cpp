// The TLB as VMX tags it (SDM Vol. 3 §29.4): translations tagged by VPID survive VM exits and
// entries and are invalidated exactly by INVVPID (each type), INVEPT (each type) and the guest's
// own INVLPG/MOV to CR3, which touch only the current VPID; without VPID every entry and exit
// invalidates them. A stale translation is observed by changing the guest's page tables (or EPT)
// from L0 without invalidating, then letting the guest read through the old mapping.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "unit/cpu/vmx/ept_tables.h"

namespace nestvm::test {
namespace {

using arch::VmcsField;
using arch::VmxError;
using cpu::RunExit;
using Kind = cpu::VmxResult::Kind;

constexpr uint32_t kVmreadExit = uint32_t(arch::ExitReason::VMREAD);
// Four linear addresses in the 2 MiB guest pages 0-3 at 1 GiB, whose 4 KiB pieces sit in sets 0-3
// of the direct-mapped TLB (two contexts that used one set would evict each other's entry), and
// the guest-physical pages that hold their old and new contents.
constexpr uint64_t kOffset[4] = {0x0008, 0x1008, 0x2008, 0x3008};
constexpr uint64_t kOldPage[4] = {0x200000, 0xe00000, 0x1000000, 0x1200000};
constexpr uint64_t kNewPage[4] = {0x600000, 0xa00000, 0x1400000, 0x1600000};
constexpr uint64_t linear(unsigned n) { return kLinear1G + n * 0x200000 + kOffset[n]; }
constexpr uint64_t kOldValue = 0x01d, kNewValue = 0x2e3;

std::string read_loop(unsigned first) {
  return "1: mov rax, [" + std::to_string(linear(first)) + "]\n mov rbx, [" + std::to_string(linear(first + 1)) + "]\n" +
         kExitInsn + "jmp 1b\n";
}
// VMCS 1 reads addresses 0 and 1 (into RAX, RBX), VMCS 2 addresses 2 and 3, then exit.
constexpr uint64_t kLoop1 = vmx_layout::kGuestCode, kLoop2 = vmx_layout::kGuestCode + 0x800;

class Vpid : public ::testing::Test {
 protected:
  void SetUp() override {
    m.setup_guest64(kLoop1);
    m.load_code(kLoop1, read_loop(0), 64);
    m.load_code(kLoop2, read_loop(2), 64);
    for (unsigned n = 0; n < 4; ++n) {
      guest_map_2m(m, n, kOldPage[n]);
      m.poke<uint64_t>(kOldPage[n] + kOffset[n], kOldValue);
      m.poke<uint64_t>(kNewPage[n] + kOffset[n], kNewValue);
    }
  }
  // L0 changes the guest's page tables without telling the TLB.
  void remap(uint64_t global = 0) {
    for (unsigned n = 0; n < 4; ++n) guest_map_2m(m, n, kNewPage[n], n == 0 ? global : 0);
  }
  // A second VMCS at vmx_layout::kVmcs2: a copy of the first, clear, made current, running loop 2.
  void make_second_vmcs(uint16_t vpid) {
    std::memcpy(m.ram.data() + vmx_layout::kVmcs2, m.ram.data() + vmx_layout::kVmcs, 4096);
    ASSERT_TRUE(m.cpu.vmclear(vmx_layout::kVmcs2).ok());
    ASSERT_TRUE(m.cpu.vmptrld(vmx_layout::kVmcs2).ok());
    m.vmwrite(VmcsField::VIRTUAL_PROCESSOR_ID, vpid);
    m.vmwrite(VmcsField::GUEST_RIP, kLoop2);
  }
  // Runs the current VMCS to its next exit (launch or resume).
  void run_loop(bool launch) {
    if (launch) {
      ASSERT_EQ(m.launch_and_run(), RunExit::kVmExit);
    } else {
      m.skip_instruction();
      ASSERT_EQ(m.resume_and_run(), RunExit::kVmExit);
    }
    ASSERT_EQ(m.exit_reason(), kVmreadExit);
  }
  uint64_t a() { return m.reg(cpu::kRax); }
  uint64_t b() { return m.reg(cpu::kRbx); }
  void select(uint64_t vmcs) { ASSERT_TRUE(m.cpu.vmptrld(vmcs).ok()); }

  VmxTestMachine m;
};

TEST_F(Vpid, StaleTranslationSurvivesExitAndEntryWithVpid) {
  enable_vpid(m, 1);
  run_loop(true);
  EXPECT_EQ(a(), kOldValue);
  remap();
  run_loop(false);
  EXPECT_EQ(a(), kOldValue);  // tagged with VPID 1, not invalidated by the exit or the entry
  EXPECT_EQ(b(), kOldValue);
}

TEST_F(Vpid, WithoutVpidExitAndEntryInvalidate) {
  run_loop(true);
  EXPECT_EQ(a(), kOldValue);
  remap();
  run_loop(false);
  EXPECT_EQ(a(), kNewValue);  // VPID 0: the exit (and the entry) invalidated it
  EXPECT_EQ(b(), kNewValue);
}

TEST_F(Vpid, InvvpidIndividualAddressDropsOnlyThatPage) {
  enable_vpid(m, 1);
  run_loop(true);
  remap();
  ASSERT_TRUE(m.cpu.invvpid(0, 1, linear(0) + 0x100).ok());
  run_loop(false);
  EXPECT_EQ(a(), kNewValue);
  EXPECT_EQ(b(), kOldValue);
}

TEST_F(Vpid, InvvpidIndividualAddressDropsEveryPieceOfALargePage) {
  // The 2 MiB guest page is cached as 4 KiB pieces: an address anywhere in it drops the piece.
  enable_vpid(m, 1);
  run_loop(true);
  remap();
  ASSERT_TRUE(m.cpu.invvpid(0, 1, kLinear1G + 0x1ff000).ok());
  run_loop(false);
  EXPECT_EQ(a(), kNewValue);
  EXPECT_EQ(b(), kOldValue);
}

TEST_F(Vpid, InvvpidIndividualAddressForAnotherVpidDropsNothing) {
  enable_vpid(m, 1);
  run_loop(true);
  remap();
  ASSERT_TRUE(m.cpu.invvpid(0, 2, linear(0)).ok());
  run_loop(false);
  EXPECT_EQ(a(), kOldValue);
}

TEST_F(Vpid, InvvpidSingleContextDropsOneVpid) {
  enable_vpid(m, 1);
  make_second_vmcs(2);
  select(vmx_layout::kVmcs);
  run_loop(true);
  select(vmx_layout::kVmcs2);
  run_loop(true);
  remap();
  ASSERT_TRUE(m.cpu.invvpid(1, 1, 0).ok());
  select(vmx_layout::kVmcs);
  run_loop(false);
  EXPECT_EQ(a(), kNewValue);
  EXPECT_EQ(b(), kNewValue);
  select(vmx_layout::kVmcs2);
  run_loop(false);
  EXPECT_EQ(a(), kOldValue);  // VPID 2 keeps its translations
  EXPECT_EQ(b(), kOldValue);
}

TEST_F(Vpid, InvvpidAllContextDropsEveryVpid) {
  enable_vpid(m, 1);
  make_second_vmcs(2);
  select(vmx_layout::kVmcs);
  run_loop(true);
  select(vmx_layout::kVmcs2);
  run_loop(true);
  remap();
  ASSERT_TRUE(m.cpu.invvpid(2, 0, 0).ok());
  for (uint64_t vmcs : {vmx_layout::kVmcs, vmx_layout::kVmcs2}) {
    select(vmcs);
    run_loop(false);
    EXPECT_EQ(a(), kNewValue);
    EXPECT_EQ(b(), kNewValue);
  }
}

TEST_F(Vpid, InvvpidSingleContextRetainingGlobalsKeepsGlobalPages) {
  enable_vpid(m, 1);
  m.vmwrite(VmcsField::GUEST_CR4, m.vmread(VmcsField::GUEST_CR4) | arch::cr4::kPGE);
  guest_map_2m(m, 0, kOldPage[0], 0x100);  // address 0 is on a global page, address 1 is not
  run_loop(true);
  remap(0x100);
  ASSERT_TRUE(m.cpu.invvpid(3, 1, 0).ok());
  run_loop(false);
  EXPECT_EQ(a(), kOldValue);
  EXPECT_EQ(b(), kNewValue);
  // Single-context drops the global translation too.
  ASSERT_TRUE(m.cpu.invvpid(1, 1, 0).ok());
  run_loop(false);
  EXPECT_EQ(a(), kNewValue);
}

TEST_F(Vpid, InvvpidOperandChecks) {
  auto error = [&](uint64_t type, uint64_t vpid, uint64_t la) {
    const cpu::VmxResult r = m.cpu.invvpid(type, vpid, la);
    return r.kind == Kind::kFailValid ? uint32_t(r.error) : 0u;
  };
  constexpr uint32_t kInvalid = uint32_t(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID);
  EXPECT_EQ(error(4, 1, 0), kInvalid);                     // no such type
  EXPECT_EQ(error(1, 0x10001, 0), kInvalid);               // descriptor bits 63:16
  EXPECT_EQ(error(0, 0, 0), kInvalid);                     // VPID 0
  EXPECT_EQ(error(1, 0, 0), kInvalid);
  EXPECT_EQ(error(3, 0, 0), kInvalid);
  EXPECT_EQ(error(0, 1, 0x0000800000000000ull), kInvalid); // non-canonical address
  EXPECT_EQ(m.vmread(VmcsField::VM_INSTRUCTION_ERROR), 28u);
  EXPECT_EQ(error(2, 0, 0), 0u);                           // all-context ignores the VPID field
  ASSERT_TRUE(m.cpu.vmclear(vmx_layout::kVmcs).ok());
  EXPECT_EQ(m.cpu.invvpid(4, 1, 0).kind, Kind::kFailInvalid);  // no current VMCS
}

TEST_F(Vpid, GlobalTranslationsBelongToTheirVpid) {
  // Global pages are global across PCIDs, not across VPIDs: VMCS 2 (VPID 2) has its own page
  // tables, in which address 0 maps elsewhere, and must not use VPID 1's global translation.
  constexpr uint64_t kCopy = 0x20000;
  for (uint64_t off = 0; off < 0x6000; off += 8) m.poke<uint64_t>(kCopy + off, m.peek<uint64_t>(layout::kPml4 + off));
  m.poke<uint64_t>(kCopy, (kCopy + 0x1000) | 7);
  for (uint64_t i = 0; i < 4; ++i) m.poke<uint64_t>(kCopy + 0x1000 + 8 * i, (kCopy + 0x2000 + 0x1000 * i) | 7);
  m.poke<uint64_t>(kCopy + 0x3000, kNewPage[0] | 0x87 | 0x100);
  m.vmwrite(VmcsField::GUEST_CR4, m.vmread(VmcsField::GUEST_CR4) | arch::cr4::kPGE);
  guest_map_2m(m, 0, kOldPage[0], 0x100);
  enable_vpid(m, 1);
  make_second_vmcs(2);
  m.vmwrite(VmcsField::GUEST_CR3, kCopy);
  m.vmwrite(VmcsField::GUEST_RIP, kLoop1);
  select(vmx_layout::kVmcs);
  run_loop(true);
  EXPECT_EQ(a(), kOldValue);
  select(vmx_layout::kVmcs2);
  run_loop(true);
  EXPECT_EQ(a(), kNewValue);
}

// The guest's own invalidations reach only its VPID (SDM §29.4.3.1). VPID 2 caches address 0,
// VPID 1 invalidates it (without using that TLB set itself): VPID 2's stale translation
// survives. Then VPID 1 caches the address and its invalidation drops its own translation.
class VpidGuestInvalidation : public Vpid {
 protected:
  void check(const std::string& invalidate) {
    const std::string read0 = "mov rax, [" + std::to_string(linear(0)) + "]\n";
    enable_vpid(m, 1);
    m.load_code(kLoop1 + 0x100, invalidate + "\n" + kExitInsn + read0 + kExitInsn + invalidate + "\n" + read0 + kExitInsn, 64);
    m.vmwrite(VmcsField::GUEST_RIP, kLoop1 + 0x100);
    make_second_vmcs(2);
    m.load_code(kLoop2 + 0x100, "1: " + read0 + kExitInsn + "jmp 1b", 64);
    m.vmwrite(VmcsField::GUEST_RIP, kLoop2 + 0x100);
    run_loop(true);  // VPID 2 caches address 0
    EXPECT_EQ(a(), kOldValue);
    guest_map_2m(m, 0, kNewPage[0]);
    select(vmx_layout::kVmcs);
    run_loop(true);  // VPID 1 invalidates
    select(vmx_layout::kVmcs2);
    run_loop(false);
    EXPECT_EQ(a(), kOldValue) << "VPID 2's translation survives VPID 1's invalidation";

    guest_map_2m(m, 0, kOldPage[0]);
    select(vmx_layout::kVmcs);
    run_loop(false);  // VPID 1 caches address 0
    EXPECT_EQ(a(), kOldValue);
    guest_map_2m(m, 0, kNewPage[0]);
    run_loop(false);  // VPID 1 invalidates and reads again
    EXPECT_EQ(a(), kNewValue) << "VPID 1's own translation is invalidated";
  }
};

TEST_F(VpidGuestInvalidation, Invlpg) { check("invlpg [" + std::to_string(kLinear1G) + "]"); }
TEST_F(VpidGuestInvalidation, MovToCr3) { check("mov rcx, cr3\n mov cr3, rcx"); }
TEST_F(VpidGuestInvalidation, InvpcidAllContexts) {
  // Type 2 (all contexts, globals included) reaches every PCID, still of this VPID only.
  m.set_control(VmcsField::SECONDARY_VM_EXEC_CONTROL, arch::proc2::kEnableInvpcid);  // else #UD (SDM §26.3)
  m.poke<uint64_t>(0x7f000, 0);
  m.poke<uint64_t>(0x7f008, 0);
  check("mov ecx, 2\n invpcid rcx, [0x7f000]");
}

// ---- EPT: combined mappings tagged by EP4TA --------------------------------------------------------

class VpidEpt : public Vpid {
 protected:
  // Two EPT hierarchies, identity maps of RAM, one per VMCS (VPIDs 1 and 2).
  void SetUp() override {
    Vpid::SetUp();
    ept1.identity(64ull << 20);
    ept2.identity(64ull << 20);
    enable_vpid(m, 1);
    enable_ept(m, ept1.eptp());
    make_second_vmcs(2);
    m.vmwrite(VmcsField::EPT_POINTER, ept2.eptp());
    select(vmx_layout::kVmcs);
  }
  // L0 moves the guest-physical pages in both hierarchies, without INVEPT.
  void remap_ept() {
    for (unsigned n = 0; n < 4; ++n) {
      ept1.map(kOldPage[n], kNewPage[n], 21);
      ept2.map(kOldPage[n], kNewPage[n], 21);
    }
  }
  void run_both(bool launch) {
    select(vmx_layout::kVmcs);
    run_loop(launch);
    a1 = a();
    select(vmx_layout::kVmcs2);
    run_loop(launch);
    a2 = a();
  }
  EptTables ept1{m, vmx_layout::kEptRoot};
  EptTables ept2{m, vmx_layout::kEptRoot + 0x80000};
  uint64_t a1 = 0, a2 = 0;
};

TEST_F(VpidEpt, StaleCombinedMappingSurvivesEptChange) {
  run_both(true);
  EXPECT_EQ(a1, kOldValue);
  remap_ept();
  run_both(false);
  EXPECT_EQ(a1, kOldValue);
  EXPECT_EQ(a2, kOldValue);
}

TEST_F(VpidEpt, InveptSingleContextDropsOneEptp) {
  run_both(true);
  remap_ept();
  ASSERT_TRUE(m.cpu.invept(1, ept1.eptp()).ok());
  run_both(false);
  EXPECT_EQ(a1, kNewValue);
  EXPECT_EQ(a2, kOldValue);
}

TEST_F(VpidEpt, InveptAllContextDropsEveryEptp) {
  run_both(true);
  remap_ept();
  ASSERT_TRUE(m.cpu.invept(2, 0).ok());
  run_both(false);
  EXPECT_EQ(a1, kNewValue);
  EXPECT_EQ(a2, kNewValue);
}

TEST_F(VpidEpt, InvvpidDropsCombinedMappingsOfThatVpid) {
  run_both(true);
  remap_ept();
  ASSERT_TRUE(m.cpu.invvpid(1, 2, 0).ok());
  run_both(false);
  EXPECT_EQ(a1, kOldValue);
  EXPECT_EQ(a2, kNewValue);
}

TEST_F(VpidEpt, SameVpidDifferentEp4taDoNotShareTranslations) {
  // Both VMCSs use VPID 1 and run the same loop; EPT 2 puts the guest's pages elsewhere. A TLB
  // that ignored the EP4TA would hand VMCS 2 the translation VMCS 1 cached.
  select(vmx_layout::kVmcs2);
  m.vmwrite(VmcsField::VIRTUAL_PROCESSOR_ID, 1);
  m.vmwrite(VmcsField::GUEST_RIP, kLoop1);
  for (unsigned n = 0; n < 4; ++n) ept2.map(kOldPage[n], kNewPage[n], 21);
  run_both(true);
  EXPECT_EQ(a1, kOldValue);
  EXPECT_EQ(a2, kNewValue);
  run_both(false);
  EXPECT_EQ(a1, kOldValue);
  EXPECT_EQ(a2, kNewValue);
}

TEST_F(VpidEpt, InveptOperandChecks) {
  constexpr auto kInvalid = VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID;
  EXPECT_EQ(m.cpu.invept(0, ept1.eptp()).error, kInvalid);  // types 1 and 2 only
  EXPECT_EQ(m.cpu.invept(3, ept1.eptp()).error, kInvalid);
  EXPECT_EQ(m.cpu.invept(1, (ept1.eptp() & ~7ull) | 1).error, kInvalid);  // memory type WC
  EXPECT_EQ(m.cpu.invept(1, ept1.root() | 6 | (2 << 3)).error, kInvalid);  // 3-level walk
  EXPECT_EQ(m.cpu.invept(1, ept1.eptp() | (1ull << 8)).error, kInvalid);  // reserved bit 8
  EXPECT_EQ(m.cpu.invept(1, ept1.eptp() | (1ull << 45)).error, kInvalid);  // beyond MAXPHYADDR
  EXPECT_TRUE(m.cpu.invept(1, ept1.eptp(true)).ok());
  EXPECT_TRUE(m.cpu.invept(2, ~0ull).ok());  // all-context ignores the descriptor
}

}  // namespace
}  // namespace nestvm::test
