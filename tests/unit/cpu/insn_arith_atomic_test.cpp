// Exchange-and-add and compare-and-exchange (src/cpu/insn/atomic.cpp): every form checked
// against the host processor (insn_arith_host.h); #GP for a misaligned CMPXCHG16B; #UD without
// CX16; and atomicity of LOCKed operations between two vCPUs on two threads sharing one RAM.
#include <gtest/gtest.h>

#include <thread>

#include "insn_arith_host.h"

namespace nestvm::test::arith {
namespace {

using cpu::RunExit;

// Makes the compare succeed in half of the runs: the accumulator (register `acc`, `n` bytes)
// equals the destination (register `dst`, or data at `off` when dst < 0).
Fix compare_equal_half(unsigned n, int dst, unsigned off = 0x10) {
  return [=](Regs& r, std::mt19937_64& rng, uint8_t* data) {
    if (rng() % 2) return;
    const uint64_t m = cpu::size_mask(n);
    uint64_t v = 0;
    if (dst < 0) std::memcpy(&v, data + off, n);
    else v = r.gpr[dst];
    r.gpr[cpu::kRax] = (r.gpr[cpu::kRax] & ~m) | (v & m);
  };
}

// CMPXCHG8B/16B: EDX:EAX (RDX:RAX) equal to the operand at `off` in half of the runs.
Fix pair_equal_half(unsigned half, unsigned off) {
  return [=](Regs& r, std::mt19937_64& rng, uint8_t* data) {
    if (rng() % 2) return;
    uint64_t lo = 0, hi = 0;
    std::memcpy(&lo, data + off, half);
    std::memcpy(&hi, data + off + half, half);
    r.gpr[cpu::kRax] = half == 8 ? lo : (r.gpr[cpu::kRax] & ~0xffffffffull) | lo;
    r.gpr[cpu::kRdx] = half == 8 ? hi : (r.gpr[cpu::kRdx] & ~0xffffffffull) | hi;
  };
}

TEST(InsnArithAtomic, XaddMatchesHost) {
  std::vector<DiffCase> cases;
  for (const char* f : {"xadd al, bl", "xadd ah, ch", "xadd r9b, al", "xadd cx, dx", "xadd eax, ebx", "xadd ecx, ecx",
                        "xadd rax, rax", "xadd r9, r10", "xadd byte ptr [0x200010], dl", "xadd byte ptr [0x200010], dh",
                        "xadd word ptr [0x200011], si", "xadd dword ptr [0x200010], edi", "xadd qword ptr [0x200010], r8",
                        "lock xadd byte ptr [0x200010], cl", "lock xadd word ptr [0x200010], cx",
                        "lock xadd dword ptr [0x200013], ecx", "lock xadd qword ptr [0x200010], rcx",
                        "xadd qword ptr [0x200ffc], rcx"})
    cases.emplace_back(f);
  for (const char* f : {"xadd bh, bl", "xadd si, di", "xadd edx, eax", "lock xadd dword ptr [0x200010], ebx"})
    cases.emplace_back(f, 32);
  diff(cases);
}

TEST(InsnArithAtomic, CmpxchgMatchesHost) {
  std::vector<DiffCase> cases;
  cases.push_back(DiffCase("cmpxchg bl, cl").with(compare_equal_half(1, 3)));
  cases.push_back(DiffCase("cmpxchg r10b, sil").with(compare_equal_half(1, 10)));
  cases.push_back(DiffCase("cmpxchg ch, ah").with([](Regs& r, std::mt19937_64& rng, uint8_t*) {
    if (rng() % 2) r.gpr[0] = (r.gpr[0] & ~0xffull) | ((r.gpr[1] >> 8) & 0xff);
  }));
  cases.push_back(DiffCase("cmpxchg dx, si").with(compare_equal_half(2, 2)));
  cases.push_back(DiffCase("cmpxchg ecx, edx").with(compare_equal_half(4, 1)));
  cases.push_back(DiffCase("cmpxchg eax, ecx").with(compare_equal_half(4, 0)));
  cases.push_back(DiffCase("cmpxchg ecx, eax").with(compare_equal_half(4, 1)));
  cases.push_back(DiffCase("cmpxchg r9, r10").with(compare_equal_half(8, 9)));
  cases.push_back(DiffCase("cmpxchg rbx, rbx").with(compare_equal_half(8, 3)));
  for (const char* lock : {"", "lock "}) {
    const std::string l = lock;
    cases.push_back(DiffCase(l + "cmpxchg byte ptr [0x200010], dl").with(compare_equal_half(1, -1)));
    cases.push_back(DiffCase(l + "cmpxchg word ptr [0x200010], dx").with(compare_equal_half(2, -1)));
    cases.push_back(DiffCase(l + "cmpxchg dword ptr [0x200010], edx").with(compare_equal_half(4, -1)));
    cases.push_back(DiffCase(l + "cmpxchg qword ptr [0x200010], rdx").with(compare_equal_half(8, -1)));
    cases.push_back(DiffCase(l + "cmpxchg dword ptr [0x200012], esi").with(compare_equal_half(4, -1, 0x12)));
    cases.push_back(DiffCase(l + "cmpxchg dword ptr [0x200010], ebx", 32).with(compare_equal_half(4, -1)));
  }
  cases.push_back(DiffCase("cmpxchg ecx, edx", 32).with(compare_equal_half(4, 1)));
  cases.push_back(DiffCase("cmpxchg bh, dl", 32).with([](Regs& r, std::mt19937_64& rng, uint8_t*) {
    if (rng() % 2) r.gpr[0] = (r.gpr[0] & ~0xffull) | ((r.gpr[3] >> 8) & 0xff);
  }));
  diff(cases);
}

TEST(InsnArithAtomic, Cmpxchg8b16bMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* lock : {"", "lock "}) {
    const std::string l = lock;
    cases.push_back(DiffCase(l + "cmpxchg8b qword ptr [0x200010]").with(pair_equal_half(4, 0x10)));
    cases.push_back(DiffCase(l + "cmpxchg8b qword ptr [0x20000b]").with(pair_equal_half(4, 0x0b)));   // misaligned
    cases.push_back(DiffCase(l + "cmpxchg16b xmmword ptr [0x200010]").with(pair_equal_half(8, 0x10)));
    cases.push_back(DiffCase(l + "cmpxchg16b xmmword ptr [0x200ff0]").with(pair_equal_half(8, 0xff0)));
    cases.push_back(DiffCase(l + "cmpxchg8b qword ptr [0x200018]", 32).with(pair_equal_half(4, 0x18)));
  }
  // Page-crossing operands without LOCK only: a LOCKed one would be a split lock on the host.
  cases.push_back(DiffCase("cmpxchg8b qword ptr [0x200ffc]").with(pair_equal_half(4, 0xffc)));
  for (DiffCase& c : cases) c.fresh_data(0, 0x1000).iterations(100);
  diff(cases);
}

// SDM CMPXCHG16B: #GP(0) if the operand is not 16-byte aligned, before any access.
TEST(InsnArithAtomic, Cmpxchg16bMisalignedRaisesGp) {
  for (const char* f : {"cmpxchg16b xmmword ptr [0x200008]", "lock cmpxchg16b xmmword ptr [0x200001]",
                        "cmpxchg16b xmmword ptr fs:[0x200000]"}) {
    SCOPED_TRACE(f);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.cpu.state.seg[unsigned(arch::SegReg::kFS)].base = 4;  // FS:0x200000 is linear 0x200004
    m.cpu.refresh_segment(arch::SegReg::kFS);
    m.load_code(layout::kCode, std::string(f) + "\nhlt", 64);
    m.poke<uint64_t>(0x200000, 0);
    m.reg(cpu::kRax) = 0;
    m.reg(cpu::kRdx) = 0;
    m.reg(cpu::kRbx) = 0x1111;
    m.reg(cpu::kRcx) = 0x2222;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kGP));
    EXPECT_EQ(m.cpu.pending_event().error, 0u);
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    EXPECT_EQ(m.peek<uint64_t>(0x200008), 0u);
  }
}

TEST(InsnArithAtomic, Cmpxchg16bNeedsCx16) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kCx16, false);
  TestMachine m(64ull << 20, model);
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "cmpxchg8b qword ptr [0x200000]\ncmpxchg16b xmmword ptr [0x200000]\nhlt", 64);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
  EXPECT_EQ(m.cpu.state.rip, layout::kCode + 8);  // CMPXCHG8B (8 bytes) ran
}

TEST(InsnArithAtomic, Cmpxchg8bNeedsCx8) {
  cpu::CpuModel model = cpu::CpuModel::max();
  model.set(cpu::Feature::kCx8, false);
  TestMachine m(64ull << 20, model);
  m.enter_protected32(layout::kCode);
  m.load_code(layout::kCode, "cmpxchg8b qword ptr [0x200000]\nhlt", 32);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kUD));
}

// A page fault on the operand changes nothing (fault atomicity), for each memory form.
TEST(InsnArithAtomic, PageFaultChangesNothing) {
  for (const char* f : {"lock xadd qword ptr [rsi], rcx", "lock cmpxchg dword ptr [rsi], ecx",
                        "lock cmpxchg8b qword ptr [rsi]", "lock cmpxchg16b xmmword ptr [rsi]"}) {
    SCOPED_TRACE(f);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(f) + "\nhlt", 64);
    m.reg(cpu::kRsi) = 0x100000000000;  // beyond the 4 GiB identity map: not present
    m.reg(cpu::kRax) = 1;
    m.reg(cpu::kRcx) = 2;
    m.reg(cpu::kRdx) = 3;
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kPF));
    EXPECT_EQ(m.cpu.pending_event().error & 2, 2u);  // a write access
    EXPECT_EQ(m.reg(cpu::kRax), 1u);
    EXPECT_EQ(m.reg(cpu::kRcx), 2u);
    EXPECT_EQ(m.reg(cpu::kRdx), 3u);
  }
}

// 16-bit code: XADD and CMPXCHG with their real-mode operand sizes.
TEST(InsnArithAtomic, RealModeForms) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    mov word ptr [0x400], 10
    mov ax, 5
    lock xadd word ptr [0x400], ax    # [0x400] = 15, AX = 10
    mov bx, ax
    mov cx, 99
    lock cmpxchg word ptr [0x400], cx # 10 != 15: AX = 15
    mov dx, ax
    mov ax, 15
    cmpxchg word ptr [0x400], cx      # equal: [0x400] = 99
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 10u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xffff, 15u);
  EXPECT_EQ(m.peek<uint16_t>(0x400), 99u);
}

// ---- atomicity between vCPUs ---------------------------------------------------------------

// Runs `code` (64-bit, ending in HLT) on two vCPUs sharing one RAM, each on its own thread,
// starting with RDI = the vCPU's index; returns the machine to inspect memory.
void run_on_two_cpus(TestMachine& m, const std::string& code) {
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, code, 64);
  cpu::Cpu second(m.ram, m.model, &m.io);
  second.intercept_exceptions = true;
  second.state = m.cpu.state;
  second.state.gpr[cpu::kRsp] = layout::kStackTop - 0x1000;
  second.state.gpr[cpu::kRdi] = 1;
  second.refresh_mode();
  m.cpu.state.gpr[cpu::kRdi] = 0;
  RunExit e0 = RunExit::kBudget, e1 = RunExit::kBudget;
  std::thread t([&] { e1 = second.run(); });
  e0 = m.cpu.run();
  t.join();
  EXPECT_EQ(e0, RunExit::kHalted);
  EXPECT_EQ(e1, RunExit::kHalted);
}

// Lost updates between unLOCKed read-modify-writes show within a few hundred thousand
// iterations even when the two threads share a busy core; the split-lock paths are slower.
constexpr int kLoops = 1000000;
constexpr int kSplitLoops = 200000;

// `body` runs `loops` times on each vCPU (R15 counts). The vCPUs first meet at a barrier, so
// that their loops overlap.
std::string loop(const std::string& body, int loops = kLoops) {
  return "lock inc dword ptr [0x200f00]\n0:\ncmp dword ptr [0x200f00], 2\njne 0b\n"
         "mov r15d, " + std::to_string(loops) + "\n1:\n" + body + "\ndec r15d\njnz 1b\nhlt\n";
}

TEST(InsnArithAtomic, LockedXaddIsAtomicAcrossCpus) {
  TestMachine m;
  run_on_two_cpus(m, loop("mov eax, 3\nlock xadd qword ptr [0x200000], rax"));
  EXPECT_EQ(m.peek<uint64_t>(0x200000), 2ull * 3 * kLoops);
}

TEST(InsnArithAtomic, LockedSplitXaddIsAtomicAcrossCpus) {
  // The word crosses a page boundary: the split-lock path.
  TestMachine m;
  run_on_two_cpus(m, loop("mov eax, 1\nlock xadd word ptr [0x201fff], ax", kSplitLoops));
  EXPECT_EQ(m.peek<uint16_t>(0x201fff), uint16_t(2 * kSplitLoops));
}

TEST(InsnArithAtomic, LockedIncIsAtomicAcrossCpus) {
  TestMachine m;
  run_on_two_cpus(m, loop("lock inc dword ptr [0x200040]"));
  EXPECT_EQ(m.peek<uint32_t>(0x200040), 2u * kLoops);
}

// Increments by compare-exchange retry loops.
TEST(InsnArithAtomic, LockedCmpxchgIsAtomicAcrossCpus) {
  TestMachine m;
  run_on_two_cpus(m, loop(R"(
    mov eax, dword ptr [0x200100]
  2:
    lea edx, [rax + 1]
    lock cmpxchg dword ptr [0x200100], edx
    jnz 2b)"));
  EXPECT_EQ(m.peek<uint32_t>(0x200100), uint32_t(2 * kLoops));
}

TEST(InsnArithAtomic, LockedCmpxchg8bIsAtomicAcrossCpus) {
  // Across a page boundary (the split-lock path); the low dword carries into the high one.
  TestMachine m;
  m.poke<uint64_t>(0x200ffc, 0xffffff00);
  run_on_two_cpus(m, loop(R"(
    mov eax, dword ptr [0x200ffc]
    mov edx, dword ptr [0x201000]
  3:
    lea ebx, [rax + 1]
    mov ecx, edx
    cmp ebx, 0
    jne 4f
    inc ecx
  4:
    lock cmpxchg8b qword ptr [0x200ffc]
    jnz 3b)", kSplitLoops));
  EXPECT_EQ(m.peek<uint64_t>(0x200ffc), 0xffffff00ull + 2 * kSplitLoops);
}

TEST(InsnArithAtomic, LockedCmpxchg16bIsAtomicAcrossCpus) {
  TestMachine m;
  m.poke<uint64_t>(0x200200, uint64_t(-1000));
  run_on_two_cpus(m, loop(R"(
    mov rax, qword ptr [0x200200]
    mov rdx, qword ptr [0x200208]
  5:
    mov rbx, rax
    mov rcx, rdx
    add rbx, 1
    adc rcx, 0
    lock cmpxchg16b xmmword ptr [0x200200]
    jnz 5b)"));
  EXPECT_EQ(m.peek<uint64_t>(0x200200), uint64_t(-1000) + 2 * kLoops);  // wrapped
  EXPECT_EQ(m.peek<uint64_t>(0x200208), 1u);
}

// LOCK BTS as a spinlock around a plain (non-atomic) increment.
TEST(InsnArithAtomic, LockedBtsSpinlockProtectsACriticalSection) {
  TestMachine m;
  run_on_two_cpus(m, loop(R"(
  6:
    lock bts dword ptr [0x200300], 0
    jc 6b
    mov eax, dword ptr [0x200304]
    inc eax
    mov dword ptr [0x200304], eax
    lock btr dword ptr [0x200300], 0)"));
  EXPECT_EQ(m.peek<uint32_t>(0x200304), uint32_t(2 * kLoops));
  EXPECT_EQ(m.peek<uint32_t>(0x200300), 0u);
}

}  // namespace
}  // namespace nestvm::test::arith
