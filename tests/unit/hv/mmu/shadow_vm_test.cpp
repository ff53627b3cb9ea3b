// Shadow paging end to end (VmConfig::ept = false, KVM with ept=0): a flat 32-bit L1 turns on
// 32-bit paging (with a 4 MiB page) or PAE paging (with a 2 MiB page), reads through read-only
// pages, rewrites page-table entries that L0 has shadowed (write-protected, emulated, zapped),
// uses INVLPG and CR3 reloads, turns paging off again, and stops. The shadow MMU's tables must
// agree with its reverse maps afterwards.
#include <gtest/gtest.h>

#include <string>

#include "arch/cr.h"
#include "arch/paging.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"
#include "unit/hv/flat32_state.h"

namespace nestvm::test {
namespace {

using namespace arch;

constexpr uint64_t P = pte::kP, RW = pte::kRW, US = pte::kUS, PS = pte::kPS, A = pte::kA, D = pte::kD;

class ExitPort : public hv::PioDevice {
 public:
  explicit ExitPort(hv::Vm& vm) : vm_(vm) {}
  uint32_t pio_read(uint16_t, unsigned) override { return 0xff; }
  void pio_write(uint16_t, unsigned, uint32_t value) override { vm_.request_stop(hv::StopReason::kDebugExit, int(value)); }

 private:
  hv::Vm& vm_;
};


// The part of the program common to both modes, once paging is on. The page at la 0x800000 is
// the first entry of a page table at `pt` (read-only, to 0x300000); its second entry is empty.
std::string paged_body(const std::string& large_la, const std::string& pte1, const std::string& pte0) {
  return R"(
    mov dword ptr [)" + large_la + R"( + 0x10], 0x1234
    mov ebx, [0x800000]
    mov dword ptr [)" + pte1 + R"(], 0x301000 | 7
    mov dword ptr [0x801000], 0x5678
    mov dword ptr [)" + pte0 + R"(], 0x302000 | 5
    invlpg [0x800000]
    mov ecx, [0x800000]
    mov eax, cr3
    mov cr3, eax
    mov edx, [0x801000]
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    mov esi, [0x600010]
    mov edi, [0x800010]
    mov al, 0x21
    out 0xf4, al
    hlt
  )";
}

class ShadowVmTest : public ::testing::Test {
 protected:
  ShadowVmTest() : vm_(config()), exit_(vm_) {
    vm_.mem().add_slot(0, 64ull << 20);
    vm_.io().add_pio(0xf4, 1, &exit_, "exit");
  }
  static hv::VmConfig config() {
    hv::VmConfig c;
    c.ram_bytes = 64ull << 20;
    c.ept = false;
    return c;
  }
  template <typename T> void poke(uint64_t gpa, T v) { ASSERT_TRUE(vm_.mem().write(gpa, &v, sizeof v)); }
  template <typename T> T peek(uint64_t gpa) {
    T v{};
    EXPECT_TRUE(vm_.mem().read(gpa, &v, sizeof v));
    return v;
  }
  void run(const std::string& program) {
    const auto code = assemble(program, 32, 0x100000);
    ASSERT_TRUE(vm_.mem().write(0x100000, code.data(), code.size()));
    poke<uint32_t>(0x300000, 0x1111);
    poke<uint32_t>(0x302000, 0xabcd);
    vm_.vcpu(0).set_initial_state(flat32_state(0x100000));
    ASSERT_EQ(vm_.run(), hv::StopReason::kDebugExit) << vm_.stop_message();
    EXPECT_EQ(vm_.exit_code(), 0x21);
  }
  uint64_t reg(cpu::Gpr r) { return vm_.vcpu(0).core().state.gpr[r] & 0xffffffff; }
  void expect_results() {
    EXPECT_EQ(reg(cpu::kRbx), 0x1111u);  // through the read-only page
    EXPECT_EQ(reg(cpu::kRcx), 0xabcdu);  // the entry rewritten, INVLPG
    EXPECT_EQ(reg(cpu::kRdx), 0x5678u);  // the entry L1 added to a shadowed table
    EXPECT_EQ(peek<uint32_t>(0x301000), 0x5678u);
    std::string why;
    EXPECT_TRUE(vm_.shadow().audit(&why)) << why;
    const hv::MmuStats& st = vm_.mmu_stats();
    EXPECT_GE(st.write_protect_faults.load(), 2u);  // the two entries L1 wrote
    EXPECT_GE(st.pte_writes_zapped.load(), 1u);     // the first one was shadowed
    EXPECT_GE(st.shadow_faults_fixed.load(), 4u);
    EXPECT_EQ(st.guest_page_faults.load(), 0u);
  }

  hv::Vm vm_;
  ExitPort exit_;
};

TEST_F(ShadowVmTest, Bit32PagingWithALargePage) {
  // Page directory at 0x10000: PDE 0 -> identity page table at 0x11000 (0-4 MiB), PDE 1 -> a
  // 4 MiB page at 0x800000 (CR4.PSE), PDE 2 -> the page table at 0x12000.
  poke<uint32_t>(0x10000, 0x11000 | P | RW);
  poke<uint32_t>(0x10004, 0x800000 | P | RW | PS);
  poke<uint32_t>(0x10008, 0x12000 | P | RW | US);
  for (uint32_t i = 0; i < 1024; ++i) poke<uint32_t>(0x11000 + 4 * i, (i << 12) | P | RW);
  poke<uint32_t>(0x12000, 0x300000 | P);
  run(R"(
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    jmp 1f
  1:
  )" + paged_body("0x400000", "0x12004", "0x12000"));
  expect_results();
  EXPECT_EQ(peek<uint32_t>(0x800010), 0x1234u);  // the 4 MiB page
  EXPECT_EQ(reg(cpu::kRdi), 0x1234u);             // read with paging off: linear = physical
  // The processor's A/D updates, made by L0 for the shadowed accesses (SDM §4.8).
  EXPECT_EQ(peek<uint32_t>(0x12004), 0x301000u | P | RW | US | A | D);
  EXPECT_EQ(peek<uint32_t>(0x10004) & (A | D), A | D);
  EXPECT_EQ(peek<uint32_t>(0x10008) & (A | D), A);
  EXPECT_EQ(peek<uint32_t>(0x12000), 0x302000u | P | US | A);
}

TEST_F(ShadowVmTest, PaePagingWithALargePage) {
  // PDPT at 0x10000: PDPTE 0 -> page directory at 0x11000. PDE 0 -> identity page table at
  // 0x12000 (0-2 MiB), PDE 2 -> a 2 MiB page at 0x600000, PDE 4 -> the page table at 0x13000.
  poke<uint64_t>(0x10000, 0x11000 | P);
  poke<uint64_t>(0x11000, 0x12000 | P | RW);
  poke<uint64_t>(0x11000 + 2 * 8, 0x600000 | P | RW | PS);
  poke<uint64_t>(0x11000 + 4 * 8, 0x13000 | P | RW | US);
  for (uint64_t i = 0; i < 512; ++i) poke<uint64_t>(0x12000 + 8 * i, (i << 12) | P | RW);
  poke<uint64_t>(0x13000, 0x300000 | P);
  run(R"(
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    jmp 1f
  1:
  )" + paged_body("0x400000", "0x13008", "0x13000"));
  expect_results();
  EXPECT_EQ(peek<uint32_t>(0x600010), 0x1234u);  // the 2 MiB page
  EXPECT_EQ(reg(cpu::kRsi), 0x1234u);
  EXPECT_EQ(peek<uint64_t>(0x13008), 0x301000u | P | RW | US | A | D);
  EXPECT_EQ(peek<uint64_t>(0x11000 + 2 * 8) & (A | D), A | D);
  EXPECT_EQ(peek<uint64_t>(0x13000), 0x302000u | P | US | A);
}

}  // namespace
}  // namespace nestvm::test
