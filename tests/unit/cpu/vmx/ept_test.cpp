// EPT as the silicon walks it (SDM Vol. 3 §29.3): translations with 4 KiB, 2 MiB and 1 GiB
// pages, read/write/execute and execute-only permissions, EPT violations for each access kind
// with the exact exit qualification (Table 28-7) and addresses, violations on guest
// paging-structure accesses and on the PDPTE loads of MOV to CR3, misconfigurations for each
// cause, accessed/dirty flags with and without EPTP[6], and EPT memory types.
#include <gtest/gtest.h>

#include <string>

#include "arch/cr.h"
#include "unit/cpu/vmx/ept_tables.h"

namespace nestvm::test {
namespace {

using arch::VmcsField;
using cpu::RunExit;
using namespace ept_bits;
namespace q = arch::exit_qual::ept;

constexpr uint32_t kVmreadExit = uint32_t(arch::ExitReason::VMREAD);
constexpr uint32_t kViolation = uint32_t(arch::ExitReason::EPT_VIOLATION);
constexpr uint32_t kMisconfig = uint32_t(arch::ExitReason::EPT_MISCONFIG);
constexpr uint64_t kFinal = q::kGlaValid | q::kGlaTranslation;  // bits 7 and 8

// A 64-bit guest on the bare machine's identity map, with EPT identity-mapping the 64 MiB of RAM.
class EptMachine {
 public:
  explicit EptMachine(cpu::CpuModel model = cpu::CpuModel::max()) : m(64ull << 20, std::move(model)), ept(m) {
    m.setup_guest64(vmx_layout::kGuestCode);
    ept.identity(64ull << 20);
  }
  // Loads `code` (64-bit) followed by an exiting instruction and runs it to the first VM exit.
  RunExit run(const std::string& code, bool ad = false) {
    enable_ept(m, ept.eptp(ad));
    m.load_code(vmx_layout::kGuestCode, code + "\n" + kExitInsn, 64);
    const RunExit r = m.launch_and_run();
    if (r == RunExit::kException)
      ADD_FAILURE() << "guest exception " << int(m.cpu.pending_event().vector) << " at " << std::hex << m.cpu.state.rip;
    return r;
  }
  // Past the exiting instruction, on to the next exit.
  RunExit resume() {
    m.skip_instruction();
    return m.resume_and_run();
  }
  uint64_t qual() { return m.exit_qualification(); }
  uint64_t gpa() { return m.vmread(VmcsField::GUEST_PHYSICAL_ADDRESS); }
  uint64_t gla() { return m.vmread(VmcsField::GUEST_LINEAR_ADDRESS); }
  // The guest address of the instruction after `prefix` (assembled at the guest's code).
  static uint64_t after(const std::string& prefix) {
    return vmx_layout::kGuestCode + assemble(prefix, 64, vmx_layout::kGuestCode).size();
  }

  VmxTestMachine m;
  EptTables ept;
};

class Ept : public ::testing::Test, public EptMachine {};

// ---- translations -------------------------------------------------------------------------------

TEST_F(Ept, TranslatesThrough4KPages) {
  ept.map(0x201000, 0x500000, 12);
  m.poke<uint64_t>(0x500008, 0x1122334455667788ull);
  ASSERT_EQ(run("mov rax, [0x201008]\n mov qword ptr [0x201010], 0x55"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.reg(cpu::kRax), 0x1122334455667788ull);
  EXPECT_EQ(m.peek<uint64_t>(0x500010), 0x55u);
  EXPECT_EQ(m.peek<uint64_t>(0x201010), 0u);  // the host-physical page of the same number is untouched
}

TEST_F(Ept, TranslatesThrough2MPages) {
  ept.map(0xc00000, 0x1000000, 21);
  m.poke<uint64_t>(0x1012340, 0xabcdef);
  ASSERT_EQ(run("mov rax, [0xc12340]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.reg(cpu::kRax), 0xabcdefu);
}

TEST_F(Ept, TranslatesThrough1GPages) {
  ept.map(0x40000000, 0, 30);  // guest-physical [1 GiB, 2 GiB) -> host-physical [0, 1 GiB)
  m.poke<uint64_t>(0x234568, 0x600d);
  ASSERT_EQ(run("mov rax, [0x40234568]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.reg(cpu::kRax), 0x600du);
}

TEST_F(Ept, GuestPagingStructuresAreGuestPhysical) {
  // The guest's PD for [1 GiB, 2 GiB) is read at guest-physical 0x13000: EPT puts it elsewhere.
  constexpr uint64_t kMovedPd = 0x600000;
  ept.map(kGuestPd1, kMovedPd, 12);
  m.poke<uint64_t>(kMovedPd, 0x800000 | 0x87);  // the moved PD maps linear 1 GiB to 0x800000
  m.poke<uint64_t>(0x800040, 0x77);
  ASSERT_EQ(run("mov rax, [0x40000040]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.reg(cpu::kRax), 0x77u);
  EXPECT_TRUE(m.peek<uint64_t>(kMovedPd) & 0x20);  // accessed flag set in the moved copy
  EXPECT_FALSE(m.peek<uint64_t>(kGuestPd1) & 0x20);
}

// ---- violations per access kind -------------------------------------------------------------------

TEST_F(Ept, ReadOfNotPresentPage) {
  guest_map_2m(m, 0, 0x200000);  // linear 0x40000000 -> guest-physical 0x200000
  ept.set_entry(0x203000, 1, 0);
  ASSERT_EQ(run("mov rax, [0x40003010]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kRead | kFinal);  // nothing allowed (bits 5:3 = 0)
  EXPECT_EQ(gpa(), 0x203010u);
  EXPECT_EQ(gla(), 0x40003010u);
  EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode);
}

TEST_F(Ept, WriteToReadOnlyPageAfterARead) {
  guest_map_2m(m, 0, 0x200000);
  ept.map(0x203000, 0x203000, 12, kR | kWb);
  const std::string first = "mov rax, [0x40003010]\n";
  ASSERT_EQ(run(first + "mov [0x40003018], rax"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kWrite | q::kReadable | kFinal);
  EXPECT_EQ(gpa(), 0x203018u);
  EXPECT_EQ(gla(), 0x40003018u);
  EXPECT_EQ(m.guest_rip(), after(first));  // the read went through; the TLB held no write right
}

TEST_F(Ept, FetchFromNonExecutablePage) {
  ept.map(0x105000, 0x105000, 12, kR | kW | kWb);
  m.load_code(0x105000, "nop", 64);
  ASSERT_EQ(run("mov rax, 0x105000\n jmp rax"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kFetch | q::kReadable | q::kWritable | kFinal);
  EXPECT_EQ(gpa(), 0x105000u);
  EXPECT_EQ(gla(), 0x105000u);
  EXPECT_EQ(m.guest_rip(), 0x105000u);
}

TEST_F(Ept, ExecuteOnlyPageRunsButCannotBeReadOrWritten) {
  ASSERT_TRUE(m.cpu.vmx_caps().ept_vpid_cap & arch::ept_vpid_cap::kExecuteOnly);
  ept.map(0x105000, 0x105000, 12, kX | kWb);
  // Code on the execute-only page runs, then reads its own page.
  m.load_code(0x105000, "mov rbx, 7\n mov rax, [0x105000]", 64);
  ASSERT_EQ(run("mov rax, 0x105000\n jmp rax"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(m.reg(cpu::kRbx), 7u);
  EXPECT_EQ(qual(), q::kRead | q::kExecutable | kFinal);
  EXPECT_EQ(gpa(), 0x105000u);
  EXPECT_EQ(m.guest_rip(), 0x105000u + assemble("mov rbx, 7", 64).size());

  EptMachine w;
  w.ept.map(0x105000, 0x105000, 12, kX | kWb);
  ASSERT_EQ(w.run("mov dword ptr [0x105008], 1"), RunExit::kVmExit);
  EXPECT_EQ(w.m.exit_reason(), kViolation);
  EXPECT_EQ(w.qual(), q::kWrite | q::kExecutable | kFinal);
  EXPECT_EQ(w.gpa(), 0x105008u);
}

TEST_F(Ept, ReadModifyWriteOnReadOnlyPageIsAWrite) {
  ept.map(0x203000, 0x203000, 12, kR | kX | kWb);
  ASSERT_EQ(run("add qword ptr [0x203000], 1"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kWrite | q::kReadable | q::kExecutable | kFinal);
}

TEST_F(Ept, PermissionsAreTheAndOfEveryLevel) {
  // Read-only at the PDE (a table), read/write/execute at the PTE: writes violate and the
  // qualification reports the combined permissions.
  const uint64_t pde = ept.entry(0x203000, 2);
  ept.set_entry(0x203000, 2, (pde & ~kRwx) | kR | kX);
  ASSERT_EQ(run("mov qword ptr [0x203000], 1"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kWrite | q::kReadable | q::kExecutable | kFinal);
}

TEST(EptNmi, ViolationInIretThatUnblockedNmisSetsBit12) {
  // IRET unblocks NMIs before it reads its frame (SDM §28.2.3): a violation on the frame
  // reports "NMI unblocking due to IRET" when NMIs were blocked, and only then.
  for (bool blocked : {true, false}) {
    EptMachine e;
    e.ept.set_entry(0x203000, 1, 0);
    e.m.vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_INFO, blocked ? arch::interruptibility::kBlockingByNmi : 0);
    ASSERT_EQ(e.run("mov rsp, 0x203000\n iretq"), RunExit::kVmExit);
    ASSERT_EQ(e.m.exit_reason(), kViolation);
    EXPECT_EQ(e.qual(), q::kRead | kFinal | (blocked ? q::kNmiUnblockingDueToIret : 0)) << blocked;
    EXPECT_EQ(e.gpa(), 0x203000u);
  }
}

TEST_F(Ept, ViolationInvalidatesTheCombinedMappingOfItsLinearAddress) {
  // SDM §29.4.3.1: the violation drops the cached translation of the linear address (here the
  // read right the first instruction cached), so L0 may move the page without INVEPT.
  enable_vpid(m, 1);  // no invalidation by the exit and the entry themselves
  ept.map(0x203000, 0x203000, 12, kR | kWb);
  m.poke<uint64_t>(0x203010, 0x11);
  m.poke<uint64_t>(0x503010, 0x22);
  const std::string read_write = "mov rax, [0x203010]\n mov [0x203010], rbx\n";
  ASSERT_EQ(run(read_write + "mov rcx, [0x203010]"), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(m.reg(cpu::kRax), 0x11u);
  // L0 moves the page and skips the write (as if it had emulated it): the next read walks again.
  ept.map(0x203000, 0x503000, 12);
  m.vmwrite(VmcsField::GUEST_RIP, after(read_write));
  ASSERT_EQ(m.resume_and_run(), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.reg(cpu::kRcx), 0x22u);
}

// ---- violations on guest paging-structure accesses ---------------------------------------------

TEST_F(Ept, ViolationOnPageWalkReportsPagingStructureAccess) {
  ept.set_entry(kGuestPd1, 1, 0);  // the guest's PD for [1 GiB, 2 GiB) is not mapped
  ASSERT_EQ(run("mov rax, [0x40000000]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kRead | q::kGlaValid);  // a data read; bit 8 clear: not the final translation
  EXPECT_EQ(gpa(), kGuestPd1);
  EXPECT_EQ(gla(), kLinear1G);
}

TEST_F(Ept, PageWalkReadsForAFetchAreDataReads) {
  ept.set_entry(kGuestPd1 + 0x0, 1, 0);
  ASSERT_EQ(run("mov rax, 0x40200000\n jmp rax"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kRead | q::kGlaValid);
  EXPECT_EQ(gpa(), kGuestPd1 + 8);
  EXPECT_EQ(gla(), 0x40200000u);
}

TEST_F(Ept, PageWalkWithAdFlagsIsAWrite) {
  ept.map(kGuestPd1, kGuestPd1, 12, kR | kWb);
  ASSERT_EQ(run("mov rax, [0x40000000]", /*ad=*/true), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kRead | q::kWrite | q::kReadable | q::kGlaValid);
  EXPECT_EQ(gpa(), kGuestPd1);
}

TEST_F(Ept, AccessedFlagUpdateOnReadOnlyPagingStructureIsAWrite) {
  ept.map(kGuestPd1, kGuestPd1, 12, kR | kWb);
  ASSERT_EQ(run("mov rax, [0x40000000]"), RunExit::kVmExit);
  EXPECT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kWrite | q::kReadable | q::kGlaValid);
  EXPECT_EQ(gpa(), kGuestPd1);
  EXPECT_EQ(gla(), kLinear1G);
  EXPECT_FALSE(m.peek<uint64_t>(kGuestPd1) & 0x20);  // the guest PDE's accessed flag stays clear

  // With the flag already set there is nothing to write: the read-only PD is enough.
  EptMachine ok;
  ok.ept.map(kGuestPd1, kGuestPd1, 12, kR | kWb);
  ok.m.poke<uint64_t>(kGuestPd1, 0x200000 | 0xa7);
  ASSERT_EQ(ok.run("mov rax, [0x40000000]"), RunExit::kVmExit);
  EXPECT_EQ(ok.m.exit_reason(), kVmreadExit);
}

// ---- the PDPTE loads of MOV to CR3 (PAE paging) ----------------------------------------------------

// A 32-bit protected-mode guest with PAE paging: PDPT at 0x30000, PD at 0x31000 with 2 MiB
// identity pages for the first GiB; the VMCS holds the PDPTEs (EPT is on).
class EptPae : public ::testing::Test, public EptMachine {
 protected:
  void SetUp() override {
    m.poke<uint64_t>(0x30000, 0x31000 | 1);
    for (uint64_t j = 0; j < 512; ++j) m.poke<uint64_t>(0x31000 + 8 * j, (j << 21) | 0x83);
    using arch::SegReg;
    m.load_seg(SegReg::kCS, sel::kCode32);
    m.load_seg(SegReg::kSS, sel::kData);
    const auto& cs = m.cpu.state.seg[unsigned(SegReg::kCS)];
    const auto& ds = m.cpu.state.seg[unsigned(SegReg::kSS)];
    m.vmwrite(VmcsField::GUEST_CS_SELECTOR, sel::kCode32);
    m.vmwrite(VmcsField::GUEST_CS_AR_BYTES, cs.ar);
    m.vmwrite(VmcsField::GUEST_CS_LIMIT, cs.limit);
    m.vmwrite(VmcsField::GUEST_CS_BASE, 0);
    const VmcsField data_ar[] = {VmcsField::GUEST_SS_AR_BYTES, VmcsField::GUEST_DS_AR_BYTES, VmcsField::GUEST_ES_AR_BYTES,
                                 VmcsField::GUEST_FS_AR_BYTES, VmcsField::GUEST_GS_AR_BYTES};
    const VmcsField data_limit[] = {VmcsField::GUEST_SS_LIMIT, VmcsField::GUEST_DS_LIMIT, VmcsField::GUEST_ES_LIMIT,
                                    VmcsField::GUEST_FS_LIMIT, VmcsField::GUEST_GS_LIMIT};
    for (unsigned k = 0; k < 5; ++k) {
      m.vmwrite(data_ar[k], ds.ar);
      m.vmwrite(data_limit[k], ds.limit);
    }
    m.vmwrite(VmcsField::GUEST_CR4, arch::cr4::kPAE | arch::cr4::kVMXE | arch::cr4::kOSFXSR);
    m.vmwrite(VmcsField::GUEST_CR3, 0x30000);
    m.vmwrite(VmcsField::GUEST_IA32_EFER, 0);
    m.set_control(VmcsField::VM_ENTRY_CONTROLS, arch::entry_ctl::kIa32eModeGuest, false);
    m.vmwrite(VmcsField::GUEST_PDPTR0, 0x31000 | 1);
    for (VmcsField f : {VmcsField::GUEST_PDPTR1, VmcsField::GUEST_PDPTR2, VmcsField::GUEST_PDPTR3}) m.vmwrite(f, 0);
  }
  RunExit run32(const std::string& code, bool ad = false) {
    enable_ept(m, ept.eptp(ad));
    m.load_code(vmx_layout::kGuestCode, code + "\n vmread eax, eax", 32);
    return m.launch_and_run();
  }
};

TEST_F(EptPae, PdpteLoadViolationHasNoLinearAddress) {
  ept.set_entry(0x32000, 1, 0);
  ASSERT_EQ(run32("mov eax, 0x32000\n mov cr3, eax"), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kViolation);
  EXPECT_EQ(qual(), q::kRead);  // bit 7 clear: no guest-linear address
  EXPECT_EQ(gpa(), 0x32000u);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR3), 0x30000u);  // MOV to CR3 did not complete
}

TEST_F(EptPae, PdpteLoadGoesThroughEptAsAReadEvenWithAdFlags) {
  ept.map(0x32000, 0x30000, 12, kR | kWb);  // read-only, and the real PDPT lies elsewhere
  ASSERT_EQ(run32("mov eax, 0x32000\n mov cr3, eax\n mov eax, [0x200000]", /*ad=*/true), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_CR3), 0x32000u);
  EXPECT_EQ(m.vmread(VmcsField::GUEST_PDPTR0), 0x31001u);
  const uint64_t leaf = ept.entry(0x32000, 1);
  EXPECT_TRUE(leaf & kA);
  EXPECT_FALSE(leaf & kD);  // PDPTE loads are reads (SDM §29.3.5)
}

TEST_F(EptPae, PdpteWithReservedBitsIsGp) {
  m.poke<uint64_t>(0x32000, 0x31000 | 1 | (1ull << 5));  // bit 5 of a PDPTE is reserved
  m.cpu.intercept_exceptions = true;
  enable_ept(m, ept.eptp());
  m.load_code(vmx_layout::kGuestCode, "mov eax, 0x32000\n mov cr3, eax", 32);
  ASSERT_EQ(m.launch_and_run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
}

// ---- misconfigurations ----------------------------------------------------------------------------

// Guest linear 0x40000000 maps (2 MiB guest page) to guest-physical `gpa`; the guest reads it.
RunExit probe(EptMachine& e, uint64_t gpa) {
  guest_map_2m(e.m, 0, gpa);
  return e.run("mov rax, [0x40000008]");
}

void expect_misconfig(EptMachine& e, uint64_t gpa) {
  EXPECT_EQ(e.m.exit_reason(), kMisconfig);
  EXPECT_EQ(e.gpa(), gpa);
  EXPECT_EQ(e.qual(), 0u);
}

TEST(EptMisconfig, WriteWithoutRead) {
  EptMachine e;
  e.ept.set_entry(0x200000, 1, 0x200000 | kW | kWb);
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  expect_misconfig(e, 0x200008);
}

TEST(EptMisconfig, WriteExecuteWithoutReadInATable) {
  EptMachine e;
  const uint64_t pde = e.ept.entry(0x200000, 2);
  e.ept.set_entry(0x200000, 2, (pde & ~kRwx) | kW | kX);
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  expect_misconfig(e, 0x200008);
}

TEST(EptMisconfig, Bit7OfPml4e) {
  EptMachine e;
  constexpr uint64_t kGpa = 0x8000000000ull;  // 512 GiB: PML4E 1
  e.ept.map(kGpa, 0x200000, 21);
  e.ept.set_entry(kGpa, 4, e.ept.entry(kGpa, 4) | 0x80);
  ASSERT_EQ(probe(e, kGpa), RunExit::kVmExit);
  expect_misconfig(e, kGpa + 8);
}

TEST(EptMisconfig, Bits6To3OfNonLeafEntries) {
  for (uint64_t bit : {3, 4, 5, 6}) {
    EptMachine e;  // a PDPTE that references a page directory
    constexpr uint64_t kGpa = 0x80000000ull;
    e.ept.map(kGpa, 0x200000, 21);
    e.ept.set_entry(kGpa, 3, e.ept.entry(kGpa, 3) | (1ull << bit));
    ASSERT_EQ(probe(e, kGpa), RunExit::kVmExit);
    expect_misconfig(e, kGpa + 8);
  }
  EptMachine e;  // a PDE that references a page table
  e.ept.set_entry(0x200000, 2, e.ept.entry(0x200000, 2) | (1ull << 6));
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  expect_misconfig(e, 0x200008);
}

TEST(EptMisconfig, AddressBitsAboveMaxphyaddr) {
  EptMachine e;
  ASSERT_EQ(e.m.cpu.model().maxphyaddr(), 40);
  e.ept.set_entry(0x200000, 1, 0x200000 | (1ull << 45) | kRwx | kWb);
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  expect_misconfig(e, 0x200008);
  EptMachine f;  // bit 51, in a table entry
  f.ept.set_entry(0x200000, 2, f.ept.entry(0x200000, 2) | (1ull << 51));
  ASSERT_EQ(probe(f, 0x200000), RunExit::kVmExit);
  expect_misconfig(f, 0x200008);
}

TEST(EptMisconfig, ReservedAddressBitsOfLargePages) {
  EptMachine e;  // 2 MiB page: bits 20:12 reserved
  e.ept.map(0x600000, 0x600000 | (1ull << 12), 21);
  ASSERT_EQ(probe(e, 0x600000), RunExit::kVmExit);
  expect_misconfig(e, 0x600008);
  EptMachine f;  // 1 GiB page: bits 29:12 reserved
  f.ept.map(0x40000000, 1ull << 21, 30);
  ASSERT_EQ(probe(f, 0x40000000), RunExit::kVmExit);
  expect_misconfig(f, 0x40000008);
}

TEST(EptMisconfig, OneGigabytePageWithoutSupport) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kPdpe1gb, false);
  EptMachine e(model);
  ASSERT_FALSE(e.m.cpu.vmx_caps().ept_vpid_cap & arch::ept_vpid_cap::kPdpte1G);
  e.ept.map(0x40000000, 0, 30);
  ASSERT_EQ(probe(e, 0x40000000), RunExit::kVmExit);
  expect_misconfig(e, 0x40000008);
}

TEST(EptMisconfig, ReservedMemoryTypesInLeaves) {
  for (unsigned type = 0; type < 8; ++type) {
    EptMachine e;
    e.ept.set_entry(0x200000, 1, 0x200000 | kRwx | (uint64_t(type) << 3));
    e.m.poke<uint64_t>(0x200008, 0x1234);
    ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit) << type;
    if (type == 2 || type == 3 || type == 7) {
      expect_misconfig(e, 0x200008);
    } else {
      EXPECT_EQ(e.m.exit_reason(), kVmreadExit) << type;  // UC, WC, WT, WP, WB
      EXPECT_EQ(e.m.reg(cpu::kRax), 0x1234u) << type;
    }
  }
  EptMachine e;  // a 2 MiB leaf too
  e.ept.map(0x600000, 0x600000, 21, kRwx | (7ull << 3));
  ASSERT_EQ(probe(e, 0x600000), RunExit::kVmExit);
  expect_misconfig(e, 0x600008);
}

TEST(EptMisconfig, NotPresentEntryIsAViolationWhateverItsOtherBits) {
  EptMachine e;
  e.ept.set_entry(0x200000, 1, 0x200000 | (7ull << 3) | (1ull << 45));
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  EXPECT_EQ(e.m.exit_reason(), kViolation);
  EXPECT_EQ(e.qual(), q::kRead | kFinal);
}

TEST(EptMisconfig, ComesBeforePermissionViolation) {
  // The PDE allows no read, but the PTE below it is misconfigured: the walk finds the
  // misconfiguration before the permission check at its end.
  EptMachine e;
  const uint64_t pde = e.ept.entry(0x200000, 2);
  e.ept.set_entry(0x200000, 2, (pde & ~kRwx) | kX);
  e.ept.set_entry(0x200000, 1, 0x200000 | kRwx | (2ull << 3));
  ASSERT_EQ(probe(e, 0x200000), RunExit::kVmExit);
  expect_misconfig(e, 0x200008);
}

// ---- accessed and dirty flags ---------------------------------------------------------------------

TEST_F(Ept, AccessedAndDirtyFlagsWithEptpBit6) {
  ASSERT_EQ(run("mov rax, [0x201008]\n" + std::string(kExitInsn) + "mov [0x201010], rax", /*ad=*/true), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  for (int level = 4; level >= 2; --level) {
    EXPECT_TRUE(ept.entry(0x201000, level) & kA) << level;
    EXPECT_FALSE(ept.entry(0x201000, level) & kD) << level;
  }
  EXPECT_TRUE(ept.entry(0x201000, 1) & kA);
  EXPECT_FALSE(ept.entry(0x201000, 1) & kD);  // read only so far
  // Guest paging-structure accesses are writes with A/D flags on: the pages holding the guest's
  // PML4, PDPT and PD are dirty.
  for (uint64_t pt : {layout::kPml4, layout::kPml4 + 0x1000, layout::kPml4 + 0x2000})
    EXPECT_TRUE(ept.entry(pt, 1) & kD) << std::hex << pt;
  EXPECT_FALSE(ept.entry(0x203000, 1) & (kA | kD));  // untouched pages stay clean

  ASSERT_EQ(resume(), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_TRUE(ept.entry(0x201000, 1) & kD);  // the write set the leaf's dirty flag
  EXPECT_FALSE(ept.entry(0x201000, 2) & kD);  // only the leaf's
}

TEST_F(Ept, DirtyFlagOfALargePageLeaf) {
  ASSERT_EQ(run("mov qword ptr [0xc00000], 1", /*ad=*/true), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  EXPECT_TRUE(ept.entry(0xc00000, 2) & kA);
  EXPECT_TRUE(ept.entry(0xc00000, 2) & kD);
}

TEST_F(Ept, NoAccessedOrDirtyFlagsWithoutEptpBit6) {
  ASSERT_EQ(run("mov rax, [0x201008]\n mov [0x201010], rax"), RunExit::kVmExit);
  ASSERT_EQ(m.exit_reason(), kVmreadExit);
  for (int level = 4; level >= 1; --level) EXPECT_FALSE(ept.entry(0x201000, level) & (kA | kD)) << level;
  EXPECT_FALSE(ept.entry(layout::kPml4, 1) & (kA | kD));
}

}  // namespace
}  // namespace nestvm::test
