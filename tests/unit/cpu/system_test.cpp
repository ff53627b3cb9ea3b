// System instructions (insn/system.cpp) and the control-register rules behind them
// (control_regs.cpp): MOV CR/DR, TLB maintenance, mode switches, descriptor-table registers,
// MSW, CLI/STI, SWAPGS, MONITOR/MWAIT.
#include <gtest/gtest.h>

#include "test_machine.h"

namespace nestvm::test {
namespace {

using arch::SegReg;
using arch::Vector;
using cpu::RunExit;
namespace cr0 = arch::cr0;
namespace cr4 = arch::cr4;

// Snippets put the address of their faulting instruction (label `f`) in r15.
constexpr const char* kMarkFault = "lea r15, [rip + f]\n";

// 64-bit mode at CPL 0 running `src` at layout::kCode.
void start64(TestMachine& m, const std::string& src) {
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, src, 64);
}

// Switches the loaded 64-bit context to CPL 3 (user code and data selectors).
void to_ring3(TestMachine& m) {
  m.load_seg(SegReg::kCS, sel::kUserCode64);
  for (SegReg s : {SegReg::kSS, SegReg::kDS, SegReg::kES}) m.load_seg(s, sel::kUserData);
  m.cpu.refresh_mode();
}

// Expects run() to stop with exception `v` (error code `err` when it has one) at r15.
void expect_fault(TestMachine& m, Vector v, int err = -1) {
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(v));
  if (err >= 0) {
    EXPECT_EQ(m.cpu.pending_event().error, uint32_t(err));
  }
  EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15));
}

// ---- MOV CR ------------------------------------------------------------------------------

TEST(MovCr, ReadsAndWritesInLongMode) {
  TestMachine m;
  start64(m, R"(
    mov rax, cr0
    mov rbx, cr4
    mov rcx, cr3
    mov rdx, 9
    mov cr8, rdx
    mov rsi, cr8
    mov rdi, 0x1234567000
    mov cr2, rdi
    mov r8, cr2
    hlt
  )");
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), m.cpu.state.cr0);
  EXPECT_EQ(m.reg(cpu::kRbx), m.cpu.state.cr4);
  EXPECT_EQ(m.reg(cpu::kRcx), layout::kPml4);
  EXPECT_EQ(m.reg(cpu::kRsi), 9u);
  EXPECT_EQ(m.reg(cpu::kR8), 0x1234567000u);
}

TEST(MovCr, PrivilegedAtCpl3) {
  for (const char* insn : {"mov rax, cr0", "mov cr0, rax", "mov rax, cr3", "mov cr8, rax"}) {
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + insn + "\nhlt");
    to_ring3(m);
    expect_fault(m, Vector::kGP, 0);
  }
}

TEST(MovCr, UndefinedControlRegistersAreUd) {
  for (const char* bytes : {".byte 0x0f, 0x22, 0xc8", ".byte 0x0f, 0x20, 0xe8", ".byte 0x0f, 0x22, 0xf8"}) {
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + bytes + "\nhlt");
    expect_fault(m, Vector::kUD);
  }
}

struct BadWrite {
  const char* name;
  const char* code;  // sets rax, then `f: mov crN, rax`
};

TEST(MovCr, InvalidValuesAreGpAndChangeNothing) {
  const BadWrite cases[] = {
      {"CR0 bit 32", "mov rax, cr0\n mov rcx, 0x100000000\n or rax, rcx\n f: mov cr0, rax"},
      {"CR0.PG without PE", "mov rax, cr0\n and rax, -2\n f: mov cr0, rax"},
      {"CR0.NW without CD", "mov rax, cr0\n or eax, 0x20000000\n f: mov cr0, rax"},
      {"clear PG in 64-bit mode", "mov rax, cr0\n and eax, 0x7fffffff\n f: mov cr0, rax"},
      {"CR4 reserved bit 15", "mov rax, cr4\n or rax, 0x8000\n f: mov cr4, rax"},
      {"CR4.LA57 unsupported", "mov rax, cr4\n or rax, 0x1000\n f: mov cr4, rax"},
      {"CR4.VMXE without VMX", "mov rax, cr4\n or rax, 0x2000\n f: mov cr4, rax"},
      {"clear CR4.PAE in IA-32e mode", "mov rax, cr4\n and rax, -33\n f: mov cr4, rax"},
      {"CR4.PCIDE with CR3[11:0] != 0", "mov rax, cr3\n or rax, 0x18\n mov cr3, rax\n mov rax, cr4\n or rax, 0x20000\n f: mov cr4, rax"},
      {"CR3 bit 63 without PCIDE", "mov rax, cr3\n mov rcx, 0x8000000000000000\n or rax, rcx\n f: mov cr3, rax"},
      {"CR3 above MAXPHYADDR", "mov rax, cr3\n mov rcx, 0x10000000000\n or rax, rcx\n f: mov cr3, rax"},
      {"CR8 reserved bits", "mov eax, 16\n f: mov cr8, rax"},
  };
  for (const BadWrite& c : cases) {
    SCOPED_TRACE(c.name);
    TestMachine m;
    start64(m, std::string(kMarkFault) + c.code + "\nhlt");
    const uint64_t cr0 = m.cpu.state.cr0, cr4v = m.cpu.state.cr4;
    expect_fault(m, Vector::kGP, 0);
    EXPECT_EQ(m.cpu.state.cr0, cr0);
    EXPECT_EQ(m.cpu.state.cr4, cr4v);
    EXPECT_EQ(m.cpu.state.cr8, 0u);
    EXPECT_TRUE(m.cpu.in_64bit_mode());
  }
}

TEST(MovCr, Cr0ReservedLowBitsAreIgnoredAndEtReadsOne) {
  TestMachine m;
  start64(m, R"(
    mov rax, cr0
    or eax, 0x40     # bit 6: reserved
    and eax, -17     # ET cleared
    mov cr0, rax
    mov rbx, cr0
    hlt
  )");
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0x50, 0x10u);
}

// ---- TLB maintenance (SDM Vol. 3 §4.10.4) --------------------------------------------------
// A 4-KByte page table for the 2-MByte window at 4 MiB; frames A and B hold distinct values.
constexpr uint64_t kPt = 0x30000;
constexpr uint64_t kPd2 = layout::kPml4 + 0x2000 + 2 * 8;  // PDE of the window
constexpr uint64_t kFrameA = 0x300000, kFrameB = 0x301000, kFrameC = 0x302000;

void map_window(TestMachine& m) {
  m.poke<uint64_t>(kPd2, kPt | 7);
  m.poke<uint64_t>(kPt, kFrameA | 7);
  m.poke<uint64_t>(kPt + 8, kFrameC | 7);
  m.poke<uint64_t>(kFrameA, 0xaaaa);
  m.poke<uint64_t>(kFrameB, 0xbbbb);
  m.poke<uint64_t>(kFrameC, 0xcccc);
}

TEST(TlbFlush, StaleTranslationUntilMovCr3) {
  TestMachine m;
  start64(m, R"(
    mov rax, [0x400000]
    mov rcx, 0x301007
    mov [0x30000], rcx      # PTE -> frame B
    mov rbx, [0x400000]     # still the cached translation
    mov rcx, cr3
    mov cr3, rcx
    mov rdx, [0x400000]
    hlt
  )");
  map_window(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRdx), 0xbbbbu);
}

TEST(TlbFlush, InvlpgDropsOnlyItsPage) {
  TestMachine m;
  start64(m, R"(
    mov rax, [0x400000]
    mov rax, [0x401000]
    mov rcx, 0x301007
    mov [0x30000], rcx      # page 0 -> B
    mov rcx, 0x300007
    mov [0x30008], rcx      # page 1 -> A
    invlpg [0x400123]
    mov rbx, [0x400000]
    mov rdx, [0x401000]
    mov rsi, 0x8000000000000000
    invlpg [rsi]            # non-canonical: nothing happens, no fault
    hlt
  )");
  map_window(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xbbbbu);
  EXPECT_EQ(m.reg(cpu::kRdx), 0xccccu);  // stale
}

TEST(TlbFlush, InvlpgDropsAWholeLargePage) {
  TestMachine m;
  // The window is one 2-MByte page at 6 MiB, then remapped to 8 MiB; INVLPG names another
  // 4-KByte part of it than the one read.
  start64(m, R"(
    mov rax, [0x401000]
    mov rcx, 0x800087
    mov [0x12010], rcx
    mov rbx, [0x401000]
    invlpg [0x5ff000]
    mov rdx, [0x401000]
    hlt
  )");
  m.poke<uint64_t>(kPd2, 0x600000 | 0x87);
  m.poke<uint64_t>(0x601000, 0x6666);
  m.poke<uint64_t>(0x801000, 0x8888);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x6666u);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x6666u);
  EXPECT_EQ(m.reg(cpu::kRdx), 0x8888u);
}

TEST(TlbFlush, GlobalPagesSurviveCr3ButNotAPgeToggle) {
  TestMachine m;
  start64(m, R"(
    mov rcx, cr4
    or rcx, 0x80
    mov cr4, rcx            # CR4.PGE = 1
    mov rax, [0x400000]
    mov rcx, 0x301107
    mov [0x30000], rcx      # PTE -> frame B, global
    mov rcx, cr3
    mov cr3, rcx
    mov rbx, [0x400000]     # the global translation survived
    mov rcx, cr4
    and rcx, -129
    mov cr4, rcx
    or rcx, 0x80
    mov cr4, rcx
    mov rdx, [0x400000]
    hlt
  )");
  map_window(m);
  m.poke<uint64_t>(kPt, kFrameA | 0x107);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRdx), 0xbbbbu);
}

TEST(TlbFlush, PcidNoFlushBitKeepsTranslations) {
  TestMachine m;
  start64(m, R"(
    mov rcx, cr4
    or rcx, 0x20000
    mov cr4, rcx            # CR4.PCIDE = 1 (CR3[11:0] = 0)
    mov rax, [0x400000]
    mov rcx, 0x301007
    mov [0x30000], rcx
    mov rcx, 0x8000000000010000
    mov cr3, rcx            # same PCID, bit 63: no invalidation
    mov rbx, [0x400000]
    mov r8, cr3             # bit 63 is not stored
    mov rcx, 0x10000
    mov cr3, rcx            # PCID 0 flushed
    mov rdx, [0x400000]
    hlt
  )");
  map_window(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kR8), layout::kPml4);
  EXPECT_EQ(m.reg(cpu::kRdx), 0xbbbbu);
}

TEST(TlbFlush, PcidSwitchSeesItsOwnTranslations) {
  TestMachine m;
  start64(m, R"(
    mov rcx, cr4
    or rcx, 0x20000
    mov cr4, rcx
    mov rax, [0x400000]     # cached for PCID 0
    mov rcx, 0x301007
    mov [0x30000], rcx
    mov rcx, 0x8000000000010001
    mov cr3, rcx            # PCID 1, no flush: nothing cached for it
    mov rbx, [0x400000]
    hlt
  )");
  map_window(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0xaaaau);
  EXPECT_EQ(m.reg(cpu::kRbx), 0xbbbbu);
  EXPECT_EQ(m.cpu.pcid(), 1u);
}

// INVPCID with each type, on a non-global page 0 and a global page 1 of the window.
TEST(Invpcid, TypesInvalidateWhatTheyName) {
  struct Case { int type; uint64_t page0, page1; };
  const Case cases[] = {{0, 0xbbbb, 0xcccc}, {1, 0xbbbb, 0xcccc}, {2, 0xbbbb, 0xaaaa}, {3, 0xbbbb, 0xcccc}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.type);
    TestMachine m;
    start64(m, R"(
      mov rcx, cr4
      or rcx, 0x20080
      mov cr4, rcx            # PCIDE, PGE
      mov rax, [0x400000]
      mov rax, [0x401000]
      mov rcx, 0x301007
      mov [0x30000], rcx      # page 0 -> B
      mov rcx, 0x300107
      mov [0x30008], rcx      # page 1 (global) -> A
      lea rsi, [rip + desc]
      invpcid rdi, [rsi]
      mov rbx, [0x400000]
      mov rdx, [0x401000]
      hlt
    .balign 16
    desc: .quad 0, 0x400000
    )");
    map_window(m);
    m.poke<uint64_t>(kPt + 8, kFrameC | 0x107);
    m.reg(cpu::kRdi) = uint64_t(k.type);
    ASSERT_EQ(m.run(), RunExit::kHalted);
    EXPECT_EQ(m.reg(cpu::kRbx), k.page0);
    EXPECT_EQ(m.reg(cpu::kRdx), k.page1);
  }
}

TEST(Invpcid, InvalidRequestsAreGp) {
  struct Case { const char* name; uint64_t type, d0, d1; bool pcide; };
  const Case cases[] = {
      {"type 4", 4, 0, 0, true},
      {"reserved descriptor bits", 1, 0x1000, 0, true},
      {"non-canonical address", 0, 0, 0x0000800000000000ull, true},
      {"PCID without CR4.PCIDE (type 0)", 0, 1, 0x400000, false},
      {"PCID without CR4.PCIDE (type 1)", 1, 1, 0, false},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TestMachine m;
    start64(m, std::string(kMarkFault) + "mov rsi, 0x200000\n f: invpcid rdi, [rsi]\nhlt");
    if (k.pcide) m.cpu.state.cr4 |= cr4::kPCIDE;
    m.poke<uint64_t>(layout::kData, k.d0);
    m.poke<uint64_t>(layout::kData + 8, k.d1);
    m.reg(cpu::kRdi) = k.type;
    m.cpu.refresh_mode();
    expect_fault(m, Vector::kGP, 0);
  }
  TestMachine m;
  start64(m, std::string(kMarkFault) + "mov rsi, 0x200000\n f: invpcid rdi, [rsi]\nhlt");
  to_ring3(m);
  expect_fault(m, Vector::kGP, 0);
}

// ---- Mode switches through MOV CR0/CR4 -------------------------------------------------------

// 32-bit paging with a 4-MByte alias of the first 4 MiB at 8 MiB.
constexpr uint64_t kPd32 = 0x20000;
void write_pd32(TestMachine& m) {
  m.poke<uint32_t>(kPd32, 0x00000083);      // 0-4M identity, PS
  m.poke<uint32_t>(kPd32 + 2 * 4, 0x00000083);  // 8M -> 0
  m.poke<uint32_t>(0x5000, 0x5a5a5a5a);
}

TEST(ModeSwitch, EnablePagingIn32BitProtectedMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr4
    or eax, 0x10          # PSE
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov ebx, [0x805000]
    hlt
  )", 32);
  write_pd32(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x5a5a5a5au);
  EXPECT_EQ(m.cpu.paging_mode(), cpu::PagingMode::k32Bit);
}

TEST(ModeSwitch, From32BitPagingToPae) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  // PAE tables: PDPT at 0x21000 (PDPTE 0 -> PD at 0x22000), 2-MByte pages, 12 MiB -> 0.
  m.poke<uint64_t>(0x21000, 0x22000 | 1);
  m.poke<uint64_t>(0x22000, 0x83);
  m.poke<uint64_t>(0x22000 + 6 * 8, 0x83);
  m.load_code(layout::kCode, R"(
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax          # 32-bit paging
    mov ebx, [0x805000]
    and eax, 0x7fffffff
    mov cr0, eax          # paging off
    mov ecx, cr4
    or ecx, 0x20
    mov cr4, ecx          # PAE
    mov ecx, 0x21000
    mov cr3, ecx
    or eax, 0x80000000
    mov cr0, eax          # PAE paging: PDPTEs loaded
    mov edx, [0xc05000]
    hlt
  )", 32);
  write_pd32(m);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x5a5a5a5au);
  EXPECT_EQ(m.reg(cpu::kRdx), 0x5a5a5a5au);
  EXPECT_EQ(m.cpu.paging_mode(), cpu::PagingMode::kPae);
  EXPECT_EQ(m.cpu.state.pdpte[0], 0x22001u);
}

TEST(ModeSwitch, PdpteWithReservedBitsFaultsTheLoadingInstruction) {
  // Setting CR0.PG with CR4.PAE = 1, and MOV to CR3 under PAE paging, both load the PDPTEs.
  const char* const cases[] = {
      "mov ecx, 0x21020\n mov cr3, ecx\n mov eax, cr0\n or eax, 0x80000000\n f: mov cr0, eax",
      "mov ecx, 0x21000\n mov cr3, ecx\n mov eax, cr0\n or eax, 0x80000000\n mov cr0, eax\n"
      "mov ecx, 0x21020\n f: mov cr3, ecx",
  };
  for (const char* tail : cases) {
    TestMachine m;
    m.enter_protected32(layout::kCode);
    m.poke<uint64_t>(0x21000, 0x22000 | 1);
    m.poke<uint64_t>(0x22000, 0x83);
    m.poke<uint64_t>(0x21020, 0x22000 | 1 | (1ull << 5));  // PDPTE bit 5 is reserved
    m.load_code(layout::kCode, std::string("mov edi, offset f\n mov ecx, cr4\n or ecx, 0x20\n mov cr4, ecx\n") + tail +
                                   "\nhlt", 32);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
    EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kRdi));
  }
}

TEST(ModeSwitch, ActivateIa32eThroughCr0) {
  TestMachine m;
  m.enter_long64(layout::kCode);  // builds the 4-level tables at layout::kPml4
  m.enter_protected32(layout::kCode);
  m.cpu.state.msr.efer = arch::efer::kLME;
  m.load_code(layout::kCode, R"(
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax          # IA-32e mode, compatibility mode (CS.L = 0)
    mov ebx, 7
    hlt
  )", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 7u);
  EXPECT_TRUE(m.cpu.long_mode());
  EXPECT_FALSE(m.cpu.in_64bit_mode());
  EXPECT_EQ(m.cpu.paging_mode(), cpu::PagingMode::k4Level);
}

TEST(ModeSwitch, Ia32eActivationNeedsPae) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.enter_protected32(layout::kCode);
  m.cpu.state.msr.efer = arch::efer::kLME;
  m.load_code(layout::kCode, "mov edi, offset f\n mov eax, 0x10000\n mov cr3, eax\n mov eax, cr0\n or eax, 0x80000000\n f: mov cr0, eax\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
  EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kRdi));
  EXPECT_FALSE(m.cpu.long_mode());
}

TEST(ModeSwitch, ClearingPeEntersRealMode) {
  TestMachine m;
  m.enter_protected32(0x8000);  // from a 16-bit code segment, as software must
  m.load_seg(SegReg::kCS, sel::kCode16);
  m.cpu.refresh_mode();
  m.load_code(0x8000, "mov eax, cr0\n and eax, -2\n mov cr0, eax\n mov bx, 3\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 3u);
  EXPECT_TRUE(m.cpu.real_mode());
}

// ---- MOV DR --------------------------------------------------------------------------------

TEST(MovDr, ValuesAliasesAndFixedBits) {
  TestMachine m;
  start64(m, R"(
    mov rax, 0x123456789a
    mov dr0, rax
    mov rbx, dr0
    xor eax, eax
    mov dr6, rax
    mov rcx, dr6
    mov dr7, rax
    mov rdx, dr7
    mov eax, 0xffffdfff   # all but GD
    mov dr7, rax
    mov rsi, dr5          # DR5 is DR7 with CR4.DE = 0
    mov eax, 0x4001
    mov dr4, rax          # DR4 is DR6
    mov rdi, dr6
    hlt
  )");
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x123456789au);
  EXPECT_EQ(m.reg(cpu::kRcx), 0xffff0ff0u);
  EXPECT_EQ(m.reg(cpu::kRdx), 0x400u);
  EXPECT_EQ(m.reg(cpu::kRsi), 0xffff07ffu);
  EXPECT_EQ(m.reg(cpu::kRdi), 0xffff4ff1u);
}

TEST(MovDr, Dr4WithCr4DeIsUd) {
  for (const char* insn : {"mov rax, dr4", "mov dr5, rax"}) {
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + insn + "\nhlt");
    m.cpu.state.cr4 |= cr4::kDE;
    expect_fault(m, Vector::kUD);
  }
}

TEST(MovDr, UpperBitsOfDr6AndDr7AreGp) {
  for (const char* insn : {"mov dr6, rax", "mov dr7, rax"}) {
    TestMachine m;
    start64(m, std::string(kMarkFault) + "mov rax, 0x100000400\n f: " + insn + "\nhlt");
    expect_fault(m, Vector::kGP, 0);
    EXPECT_EQ(m.cpu.state.dr7, 0x400u);
  }
}

TEST(MovDr, GeneralDetectRaisesDbWithBd) {
  TestMachine m;
  start64(m, std::string(kMarkFault) + "f: mov rax, dr0\nhlt");
  m.cpu.state.dr7 = 0x400 | arch::dr7::kGD;
  m.cpu.state.dr6 = 0xffff0ff0 | 0x3;
  expect_fault(m, Vector::kDB);
  EXPECT_EQ(m.cpu.state.dr6, 0xffff0ff0u | arch::dr6::kBD);
}

TEST(MovDr, PrivilegedAtCpl3) {
  TestMachine m;
  start64(m, std::string(kMarkFault) + "f: mov rax, dr7\nhlt");
  to_ring3(m);
  m.cpu.state.dr7 = 0x400 | arch::dr7::kGD;  // #GP has priority over general detect
  expect_fault(m, Vector::kGP, 0);
}

TEST(MovDr, OperandIs32BitOutside64BitMode) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "mov eax, 0x89abcdef\n mov dr1, eax\n mov ebx, dr1\n hlt", 32);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.dr[1], 0x89abcdefu);
  EXPECT_EQ(m.reg(cpu::kRbx), 0x89abcdefu);
}

// ---- LGDT/LIDT/SGDT/SIDT, UMIP ------------------------------------------------------------

TEST(DescriptorTables, LoadAndStoreIn64BitMode) {
  TestMachine m;
  start64(m, R"(
    mov rsi, 0x200000
    lidt [rsi]
    sgdt [rsi + 16]
    sidt [rsi + 32]
    hlt
  )");
  m.poke<uint16_t>(layout::kData, 0x0fff);
  m.poke<uint64_t>(layout::kData + 2, 0xffff800012345000ull);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.idtr.base, 0xffff800012345000ull);
  EXPECT_EQ(m.cpu.state.idtr.limit, 0x0fffu);
  EXPECT_EQ(m.peek<uint16_t>(layout::kData + 16), 0x4fu);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData + 18), layout::kGdt);
  EXPECT_EQ(m.peek<uint16_t>(layout::kData + 32), 0x0fffu);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData + 34), 0xffff800012345000ull);
}

TEST(DescriptorTables, NonCanonicalBaseAndCpl3AreGp) {
  TestMachine m;
  start64(m, std::string(kMarkFault) + "mov rsi, 0x200000\n f: lgdt [rsi]\nhlt");
  m.poke<uint64_t>(layout::kData + 2, 0x0000800000000000ull);
  expect_fault(m, Vector::kGP, 0);
  EXPECT_EQ(m.cpu.state.gdtr.base, layout::kGdt);

  TestMachine u;
  start64(u, std::string(kMarkFault) + "mov rsi, 0x200000\n f: lidt [rsi]\nhlt");
  to_ring3(u);
  expect_fault(u, Vector::kGP, 0);
}

TEST(DescriptorTables, SixteenBitOperandSizeLoads24BitBase) {
  TestMachine m;
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov esi, 0x200000
    data16 lgdt [esi]
    lidt [esi]
    data16 sgdt [esi + 16]
    hlt
  )", 32);
  m.poke<uint16_t>(layout::kData, 0x1ff);
  m.poke<uint32_t>(layout::kData + 2, 0x12345678);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.gdtr.base, 0x345678u);
  EXPECT_EQ(m.cpu.state.idtr.base, 0x12345678u);
  EXPECT_EQ(m.peek<uint32_t>(layout::kData + 18), 0x345678u);  // SGDT stores the whole base
}

TEST(DescriptorTables, RealModeLidt) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, "lidt [0x500]\n hlt", 16);
  m.poke<uint16_t>(0x500, 0x7ff);
  m.poke<uint32_t>(0x502, 0xabcdef);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.cpu.state.idtr.base, 0xabcdefu);
  EXPECT_EQ(m.cpu.state.idtr.limit, 0x7ffu);
}

TEST(Umip, StoresAtCpl3FaultOnlyWithUmip) {
  for (const char* insn : {"sgdt [rsi]", "sidt [rsi]", "smsw eax", "smsw [rsi]"}) {
    SCOPED_TRACE(insn);
    for (bool umip : {false, true}) {
      TestMachine m;
      start64(m, std::string(kMarkFault) + "mov rsi, 0x200000\n f: " + insn + "\nhlt");
      // After the instruction, HLT at CPL 3 faults: both outcomes are exceptions.
      to_ring3(m);
      if (umip) m.cpu.state.cr4 |= cr4::kUMIP;
      m.cpu.refresh_mode();
      ASSERT_EQ(m.run(), RunExit::kException);
      EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
      EXPECT_EQ(m.cpu.state.rip == m.reg(cpu::kR15), umip);
    }
  }
}

// ---- CLTS, LMSW, SMSW -------------------------------------------------------------------

TEST(Msw, CltsLmswSmsw) {
  TestMachine m;
  start64(m, R"(
    mov eax, 0xe          # MP, EM, TS; PE clear
    lmsw ax
    mov rbx, cr0
    clts
    mov rcx, cr0
    mov rdx, -1
    smsw dx
    smsw esi
    smsw rdi
    smsw [0x200000]
    hlt
  )");
  m.poke<uint64_t>(layout::kData, ~0ull);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  const uint64_t cr0v = m.cpu.state.cr0;
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xf, 0xfu);  // PE stays set
  EXPECT_EQ(m.reg(cpu::kRcx) & 0xf, 0x7u);
  EXPECT_EQ(m.reg(cpu::kRdx), 0xffffffffffff0000ull | (cr0v & 0xffff));
  EXPECT_EQ(m.reg(cpu::kRsi), cr0v & 0xffffffff);
  EXPECT_EQ(m.reg(cpu::kRdi), cr0v);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData), 0xffffffffffff0000ull | (cr0v & 0xffff));
}

TEST(Msw, LmswEntersProtectedModeFromRealMode) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, "mov ax, 1\n lmsw ax\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_TRUE(m.cpu.protected_mode());
}

TEST(Msw, CltsAndLmswArePrivileged) {
  for (const char* insn : {"clts", "lmsw ax", "wbinvd", "invd", "hlt", "invlpg [rax]"}) {
    SCOPED_TRACE(insn);
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + insn + "\nhlt");
    to_ring3(m);
    expect_fault(m, Vector::kGP, 0);
  }
}

// ---- CLI/STI -----------------------------------------------------------------------------

// CLI starts with IF = VIF = 1, STI with IF = VIF = 0; `gp` cases fault at the instruction,
// the others complete (and the HLT after them faults at CPL 3).
struct IfCase {
  const char* insn;
  unsigned iopl;
  bool pvi, vip, gp;
  uint64_t if_after, vif_after;
};

TEST(CliSti, IoplAndPviRulesAtCpl3) {
  using namespace arch::rflags;
  const IfCase cases[] = {
      {"cli", 0, false, false, true, 0, 0},
      {"cli", 3, false, false, false, 0, kVIF},
      {"cli", 0, true, false, false, kIF, 0},
      {"cli", 2, true, true, false, kIF, 0},
      {"sti", 0, false, false, true, 0, 0},
      {"sti", 3, false, false, false, kIF, 0},
      {"sti", 0, true, false, false, 0, kVIF},
      {"sti", 2, true, true, true, 0, 0},  // a virtual interrupt is pending
  };
  for (const IfCase& k : cases) {
    SCOPED_TRACE(std::string(k.insn) + " iopl " + std::to_string(k.iopl) + (k.pvi ? " pvi" : "") + (k.vip ? " vip" : ""));
    const bool cli = std::string(k.insn) == "cli";
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + k.insn + "\nhlt");
    to_ring3(m);
    m.cpu.set_rflags(0x2 | (uint64_t(k.iopl) << kIoplShift) | (cli ? kIF | kVIF : 0) | (k.vip ? kVIP : 0));
    if (k.pvi) m.cpu.state.cr4 |= cr4::kPVI;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(Vector::kGP));
    EXPECT_EQ(m.cpu.state.rip, m.reg(cpu::kR15) + (k.gp ? 0 : 1));
    if (!k.gp) {
      EXPECT_EQ(m.cpu.rflags() & kIF, k.if_after);
      EXPECT_EQ(m.cpu.rflags() & kVIF, k.vif_after);
    }
  }
}

TEST(CliSti, RealModeAlwaysChangesIf) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, "sti\n nop\n pushf\n cli\n pushf\n hlt", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint16_t>(0x7000 - 2) & arch::rflags::kIF, arch::rflags::kIF);
  EXPECT_EQ(m.peek<uint16_t>(0x7000 - 4) & arch::rflags::kIF, 0u);
}

// An interrupt pending when STI sets IF is taken after the next instruction, not before it
// (SDM Vol. 2 STI). Real mode: the IVT handler records AX and BX.
TEST(CliSti, StiShadowDelaysAPendingInterrupt) {
  TestMachine m;
  m.cpu.intercept_exceptions = false;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    xor ax, ax
    xor bx, bx
    sti
    mov ax, 1
    mov bx, 2
    hlt
  )", 16);
  m.load_code(0x10100, "mov [0x600], ax\n mov [0x602], bx\n hlt", 16);
  m.poke<uint16_t>(0x20 * 4, 0x100);
  m.poke<uint16_t>(0x20 * 4 + 2, 0x1000);
  m.poke<uint16_t>(0x600, 0xffff);
  m.poke<uint16_t>(0x602, 0xffff);
  m.io.pending_vector = 0x20;
  m.cpu.set_intr_line(true);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint16_t>(0x600), 1u);  // MOV AX after STI completed
  EXPECT_EQ(m.peek<uint16_t>(0x602), 0u);  // MOV BX did not run yet
}

// The same in 64-bit mode, through an IDT interrupt gate.
TEST(CliSti, StiShadowDelaysAPendingInterruptIn64BitMode) {
  TestMachine m;
  m.cpu.intercept_exceptions = false;
  start64(m, R"(
    xor eax, eax
    xor ebx, ebx
    sti
    mov eax, 1
    mov ebx, 2
    hlt
  )");
  m.load_code(layout::kCode + 0x100, "mov [0x200000], rax\n mov [0x200008], rbx\n hlt", 64);
  m.set_idt_gate64(0x30, layout::kCode + 0x100);
  m.poke<uint64_t>(layout::kData, ~0ull);
  m.poke<uint64_t>(layout::kData + 8, ~0ull);
  m.io.pending_vector = 0x30;
  m.cpu.set_intr_line(true);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData), 1u);
  EXPECT_EQ(m.peek<uint64_t>(layout::kData + 8), 0u);
}

// ---- SWAPGS, MONITOR/MWAIT ---------------------------------------------------------------

TEST(Swapgs, ExchangesGsBaseWithKernelGsBase) {
  TestMachine m;
  start64(m, "swapgs\n mov rax, gs:[0]\n hlt");
  m.cpu.state.msr.kernel_gs_base = layout::kData;
  m.cpu.state.seg[unsigned(SegReg::kGS)].base = 0x1234;
  m.poke<uint64_t>(layout::kData, 0x77);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x77u);
  EXPECT_EQ(m.cpu.state.msr.kernel_gs_base, 0x1234u);
  EXPECT_EQ(m.cpu.state.seg[unsigned(SegReg::kGS)].base, layout::kData);
}

TEST(Swapgs, Cpl3IsGpAndCompatibilityModeIsUd) {
  TestMachine m;
  start64(m, std::string(kMarkFault) + "f: swapgs\nhlt");
  to_ring3(m);
  expect_fault(m, Vector::kGP, 0);

  TestMachine c;
  c.enter_long64(layout::kCode);
  c.load_seg(SegReg::kCS, sel::kCode32);
  c.cpu.refresh_mode();
  c.load_code(layout::kCode, ".byte 0x0f, 0x01, 0xf8\n hlt", 32);
  ASSERT_EQ(c.run(), RunExit::kException);
  EXPECT_EQ(c.cpu.pending_event().vector, uint8_t(Vector::kUD));
  EXPECT_EQ(c.cpu.state.rip, layout::kCode);
}

TEST(MonitorMwait, UndefinedWithoutTheFeature) {
  for (const char* insn : {"monitor rax, ecx, edx", "mwait eax, ecx"}) {
    TestMachine m;
    start64(m, std::string(kMarkFault) + "f: " + insn + "\nhlt");
    expect_fault(m, Vector::kUD);
  }
}

cpu::CpuModel with_monitor() {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kMonitor, true);
  return model;
}

TEST(MonitorMwait, MwaitWaitsOnlyWhenArmed) {
  TestMachine m(64ull << 20, with_monitor());
  start64(m, R"(
    xor ecx, ecx
    mwait eax, ecx        # nothing armed: falls through
    mov ebx, 1
    mov eax, 0x200000
    monitor rax, ecx, edx
    mwait eax, ecx
    mov ebx, 2
    hlt
  )");
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx), 1u);  // stopped in MWAIT
  EXPECT_EQ(m.cpu.state.activity, cpu::Activity::kHlt);
}

TEST(MonitorMwait, ExtensionsAreGpAndCpl3IsUd) {
  for (const char* insn : {"monitor rax, ecx, edx", "mwait eax, ecx"}) {
    TestMachine m(64ull << 20, with_monitor());
    start64(m, std::string(kMarkFault) + "mov ecx, 1\n f: " + insn + "\nhlt");
    expect_fault(m, Vector::kGP, 0);
    TestMachine u(64ull << 20, with_monitor());
    start64(u, std::string(kMarkFault) + "xor ecx, ecx\n f: " + insn + "\nhlt");
    to_ring3(u);
    expect_fault(u, Vector::kUD);
  }
}

}  // namespace
}  // namespace nestvm::test
