// The JIT (src/cpu/jit): compiled blocks give exactly the interpreter's results (registers,
// flags, memory, RIP, retired instructions), including self-modifying code, faults in the middle
// of a block, interrupts and kicks during a compiled loop, the instruction budget, VM exits from
// compiled code and flushes of the code cache.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cpu/block_cache.h"
#include "cpu/jit/jit.h"
#include "unit/cpu/test_machine.h"
#include "unit/cpu/vmx/ept_tables.h"
#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using cpu::RunExit;

// JIT off, translated after 8 runs (the default), translated before the first run.
enum class Mode { kInterpreter, kHot, kAlways };

void configure(cpu::Cpu& c, Mode mode) {
  if (mode == Mode::kInterpreter) c.set_jit(false);
  else c.set_jit(true, mode == Mode::kAlways ? 0 : cpu::Cpu::kJitHotThreshold);
}

struct Outcome {
  RunExit exit{};
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0, rflags = 0, retired = 0;
  std::vector<uint8_t> data;
  bool has_event = false;
  uint8_t vector = 0;
  uint64_t fault_address = 0;
  uint64_t compiled = 0;
};

constexpr uint64_t kData = layout::kData;
constexpr size_t kDataBytes = 0x3000;

Outcome snapshot(TestMachine& m, RunExit e) {
  Outcome o;
  o.exit = e;
  o.gpr = m.cpu.state.gpr;
  o.rip = m.cpu.state.rip;
  o.rflags = m.cpu.rflags();
  o.retired = m.cpu.instructions_retired();
  o.data.resize(kDataBytes);
  m.ram.read(kData, o.data.data(), kDataBytes);
  o.has_event = m.cpu.has_pending_event();
  if (o.has_event) {
    o.vector = m.cpu.pending_event().vector;
    o.fault_address = m.cpu.pending_fault_address();
  }
  o.compiled = m.cpu.jit() ? m.cpu.jit()->stats().compiled : 0;
  return o;
}

Outcome run64(const std::string& src, Mode mode, uint64_t budget = 10'000'000) {
  TestMachine m;
  configure(m.cpu, mode);
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, src, 64);
  const RunExit e = m.run(budget);
  return snapshot(m, e);
}

void expect_same(const Outcome& jit, const Outcome& ref) {
  EXPECT_EQ(jit.exit, ref.exit);
  for (unsigned r = 0; r < 16; ++r) EXPECT_EQ(jit.gpr[r], ref.gpr[r]) << "GPR " << r;
  EXPECT_EQ(jit.rip, ref.rip);
  EXPECT_EQ(jit.rflags, ref.rflags);
  EXPECT_EQ(jit.retired, ref.retired);
  EXPECT_EQ(jit.data, ref.data);
  EXPECT_EQ(jit.has_event, ref.has_event);
  EXPECT_EQ(jit.vector, ref.vector);
  EXPECT_EQ(jit.fault_address, ref.fault_address);
}

// Every inline form (and handler calls in between) in a loop that runs long enough to be
// translated; the result is compared with the interpreter's.
constexpr const char* kMixedLoop = R"(
    mov rsi, 0x200000
    mov rcx, 300
    xor eax, eax
    mov rbx, 0x123456789
    mov r9, 5
  1:
    add rax, rcx
    sub ebx, ecx
    xor bl, 0x5a
    and bx, 0x7fff
    or rax, 0x10
    mov [rsi + rcx*8], rax
    mov edx, [rsi + rcx*8]
    add dword ptr [rsi + 8], ecx
    cmp dword ptr [rsi + 8], 20000
    setb r8b
    cmovae r9, rax
    cmovl r9w, bx
    movzx r10d, byte ptr [rsi + rcx*8]
    movsx r11, word ptr [rsi + rcx*8 + 1]
    movsxd r12, ebx
    lea r13, [rax + rbx*2 + 7]
    shr r13, 3
    sar r12d, 2
    shl r11, 1
    neg r10
    not r9d
    inc byte ptr [rsi + 16]
    dec qword ptr [rsi + 24]
    sub word ptr [rsi + 32], 7
    xor [rsi + 40], rax
    test al, 3
    jz 2f
    push rax
    push rbx
    call f
    pop rbx
    pop r14
  2:
    mov ah, cl
    add ah, bl
    adc rdx, 1
    imul r15, rax
    cmp r8b, 1
    sbb r14d, 3
    dec rcx
    jnz 1b
    pushfq
    pop rdi
    hlt
  f:
    add r14, 3
    inc r14
    jle 3f
    ret
  3:
    dec r14
    ret
)";

TEST(Jit, CompiledLoopMatchesInterpreter) {
  const Outcome ref = run64(kMixedLoop, Mode::kInterpreter);
  ASSERT_EQ(ref.exit, RunExit::kHalted);
  for (Mode mode : {Mode::kHot, Mode::kAlways}) {
    const Outcome jit = run64(kMixedLoop, mode);
    EXPECT_GT(jit.compiled, 0u);
    expect_same(jit, ref);
  }
}

TEST(Jit, FlagsOfEveryArithmeticFormMatchInterpreter) {
  // Each operation leaves its flags to a Jcc/SETcc that reads them in the same block, from the
  // host flags or from LazyFlags, and to PUSHFQ after a handler call.
  std::string src = "mov rsi, 0x200000\n mov rcx, 64\n mov rbx, 0x8000000000000001\n 1:\n";
  const char* ops[] = {"add ebx, ecx", "sub bl, cl", "cmp bx, cx", "and rbx, rcx", "or bl, 0x80",
                       "xor ebx, 0xffff", "test rbx, rcx", "inc bl", "dec bx", "neg ebx", "shr rbx, 1",
                       "sar bl, 3", "shl ebx, 1", "cmp rbx, rcx"};
  unsigned slot = 0;
  for (const char* op : ops) {
    src += std::string(op) + "\n";
    for (unsigned cc = 0; cc < 16; cc += 3) {
      static const char* kCc[16] = {"o", "no", "b", "nb", "z", "nz", "be", "nbe", "s", "ns", "p", "np", "l", "nl", "le", "nle"};
      src += std::string("set") + kCc[cc] + " byte ptr [rsi + " + std::to_string(slot++ % 4096) + "]\n";
    }
    src += "pushfq\n pop rax\n mov [rsi + " + std::to_string(4096 + 8 * (slot++ % 512)) + "], rax\n";
    src += "rol rbx, 7\n";  // a handler in between (materialized flags)
  }
  src += "add rbx, rcx\n dec rcx\n jnz 1b\n hlt\n";
  const Outcome ref = run64(src, Mode::kInterpreter);
  ASSERT_EQ(ref.exit, RunExit::kHalted);
  expect_same(run64(src, Mode::kAlways), ref);
  expect_same(run64(src, Mode::kHot), ref);
}

TEST(Jit, SelfModifyingStoreEndsTheCompiledBlock) {
  // The store patches the immediate of the next instruction in the same block: the block must
  // end after the store (stop_block_) and the new immediate be used at once.
  const std::string later = R"(
    mov ecx, 50
    xor eax, eax
    lea rdi, [rip + 2f + 1]
  1:
    mov dword ptr [rdi], ecx
  2:
    add eax, 0x1000
    dec ecx
    jnz 1b
    hlt
  )";
  // The store patches an instruction of the block that already ran this iteration.
  const std::string earlier = R"(
    mov ecx, 50
    xor eax, eax
    lea rdi, [rip + 2f + 1]
  1:
  2:
    add eax, 0x1000
    mov dword ptr [rdi], ecx
    dec ecx
    jnz 1b
    hlt
  )";
  for (Mode mode : {Mode::kInterpreter, Mode::kHot, Mode::kAlways}) {
    const Outcome a = run64(later, mode);
    EXPECT_EQ(a.exit, RunExit::kHalted);
    EXPECT_EQ(a.gpr[cpu::kRax], 1275u);  // 50 + 49 + ... + 1
    const Outcome b = run64(earlier, mode);
    EXPECT_EQ(b.exit, RunExit::kHalted);
    EXPECT_EQ(b.gpr[cpu::kRax], 0x1000u + 1274u);  // 0x1000 + 50 + ... + 2
  }
  expect_same(run64(later, Mode::kAlways), run64(later, Mode::kInterpreter));
  expect_same(run64(earlier, Mode::kHot), run64(earlier, Mode::kInterpreter));
}

TEST(Jit, FaultInTheMiddleOfACompiledBlockIsPrecise) {
  // The loads walk 1 GiB at a time up to 4 GiB, which the identity map does not cover: #PF at
  // the load, with RIP at it, the instructions before it retired and its destination unchanged.
  const std::string src = R"(
    xor ebx, ebx
    mov rsi, 0x200000
    xor r8d, r8d
  1:
    inc r8
    mov [rsi], r8
    mov rax, [rbx + 8]
    add r9, rax
    mov rdx, 0x40000000
    add rbx, rdx
    jmp 1b
  )";
  const Outcome ref = run64(src, Mode::kInterpreter);
  ASSERT_EQ(ref.exit, RunExit::kException);
  EXPECT_EQ(ref.vector, uint8_t(arch::Vector::kPF));
  EXPECT_EQ(ref.fault_address, 0x100000008u);
  EXPECT_EQ(ref.rip, layout::kCode + assemble("xor ebx, ebx\nmov rsi, 0x200000\nxor r8d, r8d\ninc r8\nmov [rsi], r8", 64).size());
  for (Mode mode : {Mode::kHot, Mode::kAlways}) expect_same(run64(src, mode), ref);
  // A non-canonical address once the block is hot: #GP(0) from the inline path's canonical check.
  const std::string gp = R"(
    mov rbx, 0x300000
    mov rdx, 0x800000000000
    mov rsi, 0x200000
    mov ecx, 20
  1:
    mov rax, [rsi]
    mov [rbx], rax
    dec ecx
    cmovz rbx, rdx
    jmp 1b
  )";
  const Outcome gref = run64(gp, Mode::kInterpreter);
  ASSERT_EQ(gref.exit, RunExit::kException);
  EXPECT_EQ(gref.vector, uint8_t(arch::Vector::kGP));
  for (Mode mode : {Mode::kHot, Mode::kAlways}) expect_same(run64(gp, mode), gref);
}

TEST(Jit, BudgetStopsAtTheSameBlockBoundaries) {
  for (uint64_t budget : {1ull, 7ull, 100ull, 1001ull, 54321ull}) {
    TestMachine a, b;
    configure(a.cpu, Mode::kInterpreter);
    configure(b.cpu, Mode::kAlways);
    for (TestMachine* m : {&a, &b}) {
      m->enter_long64(layout::kCode);
      m->load_code(layout::kCode, kMixedLoop, 64);
    }
    for (int round = 0; round < 5; ++round) {
      const RunExit ea = a.run(budget), eb = b.run(budget);
      expect_same(snapshot(b, eb), snapshot(a, ea));
      if (ea != RunExit::kBudget) break;
    }
  }
}

constexpr uint64_t kHandler = layout::kCode + 0x1000;

TEST(Jit, InterruptFromAnotherThreadIsTakenInACompiledLoop) {
  for (Mode mode : {Mode::kHot, Mode::kAlways}) {
    TestMachine m;
    configure(m.cpu, mode);
    m.enter_long64(layout::kCode);
    m.set_idt_gate64(0x40, kHandler);
    m.load_code(layout::kCode, "sti\n xor eax, eax\n 1:\n add rax, 1\n cmp rax, rbx\n jne 1b\n hlt", 64);
    m.load_code(kHandler, "mov rbx, rax\n pop rcx\n hlt", 64);
    m.reg(cpu::kRbx) = ~0ull;
    m.io.pending_vector = 0x40;
    std::thread t([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      m.cpu.set_intr_line(true);
    });
    const RunExit e = m.run(~0ull);
    t.join();
    ASSERT_EQ(e, RunExit::kHalted);
    EXPECT_GT(m.cpu.jit()->stats().compiled, 0u);
    EXPECT_EQ(m.reg(cpu::kRbx), m.reg(cpu::kRax));
    EXPECT_GT(m.reg(cpu::kRax), 1000u);  // it ran a while in the loop first
    // The interrupted RIP is an instruction boundary of the loop (a block boundary).
    const uint64_t loop = layout::kCode + assemble("sti\n xor eax, eax", 64).size();
    EXPECT_EQ(m.reg(cpu::kRcx), loop);
  }
}

TEST(Jit, KickStopsACompiledLoop) {
  TestMachine m;
  configure(m.cpu, Mode::kAlways);
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, "1:\n inc rax\n jmp 1b", 64);
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m.cpu.kick();
  });
  const RunExit e = m.run(~0ull);
  t.join();
  EXPECT_EQ(e, RunExit::kKicked);
  EXPECT_EQ(m.reg(cpu::kRax), m.cpu.instructions_retired() / 2);
}

TEST(Jit, CodeCacheFlushAndSwitchingOffKeepResultsExact) {
  const Outcome ref = run64(kMixedLoop, Mode::kInterpreter);
  TestMachine m;
  configure(m.cpu, Mode::kHot);
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, kMixedLoop, 64);
  ASSERT_EQ(m.run(3000), RunExit::kBudget);
  const uint64_t compiled = m.cpu.jit()->stats().compiled;
  EXPECT_GT(compiled, 0u);
  m.cpu.blocks().flush();  // drops the translations with the blocks
  EXPECT_EQ(m.cpu.jit()->stats().flushes, 1u);
  m.cpu.tlb().bump_epoch();
  ASSERT_EQ(m.run(3000), RunExit::kBudget);
  EXPECT_GT(m.cpu.jit()->stats().compiled, compiled);  // translated again
  m.cpu.set_jit(false);
  ASSERT_EQ(m.run(3000), RunExit::kBudget);
  m.cpu.set_jit(true, 0);
  const RunExit e = m.run();
  expect_same(snapshot(m, e), ref);
}

// ---- VMX non-root operation -------------------------------------------------------------------

TEST(Jit, CpuidExitsFromTheMiddleOfACompiledBlock) {
  const char* src = "mov ecx, 20\n 1:\n add rbx, rcx\n mov eax, 0\n cpuid\n dec ecx\n jnz 1b\n hlt";
  for (Mode mode : {Mode::kInterpreter, Mode::kAlways}) {
    NonRootMachine m(src);
    configure(m.cpu, mode);
    m.proc(arch::proc::kHltExiting);
    m.expect_exit(arch::ExitReason::CPUID);
    EXPECT_EQ(m.rip_offset(), encoded_length("mov ecx, 20\n add rbx, rcx\n mov eax, 0"));
    unsigned exits = 1;
    for (; exits < 100; ++exits) {
      m.skip_instruction();
      if (m.resume_and_run() != RunExit::kVmExit) break;
      if (m.exit_reason() != uint32_t(arch::ExitReason::CPUID)) break;
    }
    EXPECT_EQ(exits, 20u);
    EXPECT_EQ(m.exit_reason(), uint32_t(arch::ExitReason::HLT));
    EXPECT_EQ(m.reg(cpu::kRbx), 210u);  // 20 + 19 + ... + 1
  }
}

TEST(Jit, EptViolationOnACompiledLoadExitsAtTheLoad) {
  for (Mode mode : {Mode::kInterpreter, Mode::kAlways}) {
    VmxTestMachine m;
    m.setup_guest64(vmx_layout::kGuestCode);
    configure(m.cpu, mode);
    EptTables ept(m);
    ept.identity(64ull << 20);
    guest_map_2m(m, 0, 0x200000);  // linear 0x40000000 -> guest-physical 0x200000
    ept.set_entry(0x203000, 1, 0);
    enable_ept(m, ept.eptp(false));
    m.load_code(vmx_layout::kGuestCode, "mov rbx, 0x40000000\n xor edx, edx\n 1:\n add rdx, 1\n mov rax, [rbx + 16]\n add rbx, 0x1000\n jmp 1b", 64);
    ASSERT_EQ(m.launch_and_run(), RunExit::kVmExit);
    EXPECT_EQ(m.exit_reason(), uint32_t(arch::ExitReason::EPT_VIOLATION));
    EXPECT_EQ(m.vmread(arch::VmcsField::GUEST_PHYSICAL_ADDRESS), 0x203010u);
    EXPECT_EQ(m.guest_rip(), vmx_layout::kGuestCode + encoded_length("mov rbx, 0x40000000\n xor edx, edx\n add rdx, 1"));
    EXPECT_EQ(m.reg(cpu::kRbx), 0x40003000u);
    EXPECT_EQ(m.reg(cpu::kRdx), 4u);
  }
}

TEST(Jit, EnvironmentSwitchesItOff) {
  {
    TestMachine m;
    EXPECT_TRUE(m.cpu.jit_enabled() || std::getenv("NESTVM_JIT"));
  }
  setenv("NESTVM_JIT", "0", 1);
  TestMachine off;
  unsetenv("NESTVM_JIT");
  EXPECT_FALSE(off.cpu.jit_enabled());
}

}  // namespace
}  // namespace nestvm::test
