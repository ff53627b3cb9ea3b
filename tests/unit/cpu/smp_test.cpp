// Several vCPUs over one guest memory: a write by one vCPU to code another vCPU has decoded
// invalidates that decode (cross-modifying code).
#include <gtest/gtest.h>

#include <thread>

#include "test_machine.h"
#include "vmm/bare_machine.h"

namespace nestvm::test {
namespace {

using cpu::RunExit;

TEST(Smp, CrossModifyingCodeIsSeenByTheOtherVcpu) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  // vCPU 0 calls f until it returns 2; f returns 1 until vCPU 1 patches its immediate.
  m.load_code(layout::kCode, R"(
  1:
    call 0x180000
    pause
    cmp eax, 2
    jne 1b
    hlt
  )", 64);
  m.load_code(0x180000, "mov eax, 1\nret", 64);
  m.load_code(0x190000, "mov byte ptr [0x180001], 2\nhlt", 64);

  cpu::Cpu patcher(m.ram, m.model, &m.io);
  vmm::enter_long_mode(patcher, m.ram, 0x190000, 0x70000);

  RunExit first = RunExit::kBudget;
  std::thread t([&] { first = m.cpu.run(200'000'000); });
  // Let vCPU 0 decode and run f for a while before patching it.
  while (m.cpu.instructions_retired() < 100000) std::this_thread::yield();
  EXPECT_EQ(patcher.run(1000), RunExit::kHalted);
  t.join();
  EXPECT_EQ(first, RunExit::kHalted);
  EXPECT_EQ(uint32_t(m.reg(cpu::kRax)), 2u);
}

}  // namespace
}  // namespace nestvm::test
