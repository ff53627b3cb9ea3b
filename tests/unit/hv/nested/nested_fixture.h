// A VM whose L1 is a small hypervisor in flat 32-bit paged protected mode (4 MiB pages) with
// a vmcs12 already current (the VMX instructions that get it there are tested on their own):
// L1 runs VMLAUNCH/VMRESUME, and an L2 snippet runs on EPT12 (L2-physical [0, 2 MiB) mapped to
// L1-physical 8 MiB by default). L1's host code reports through port 0xf4 (the VM stops with
// the value): 0x21 when an exit from L2 reached it, its low EFLAGS byte when VMLAUNCH failed.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "arch/cr.h"
#include "arch/segment.h"
#include "arch/vmx.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"

namespace nestvm::test {

class NestedPorts : public hv::PioDevice {
 public:
  explicit NestedPorts(hv::Vm& vm) : vm_(vm) {}
  uint32_t pio_read(uint16_t, unsigned) override { return 0x5a; }
  void pio_write(uint16_t port, unsigned, uint32_t value) override {
    if (port == 0xf4) vm_.request_stop(hv::StopReason::kDebugExit, int(value));
    else writes.push_back({port, value});
  }
  struct Write {
    uint16_t port;
    uint32_t value;
  };
  std::vector<Write> writes;

 private:
  hv::Vm& vm_;
};

class NestedTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kGdt = 0x1000, kPd = 0x3000, kL1Code = 0x100000, kHostCode = 0x100800;
  static constexpr uint64_t kVmcs12 = 0x200000, kVmxon = 0x201000;
  static constexpr uint64_t kIoBitmapA = 0x210000, kIoBitmapB = 0x211000, kMsrBitmap = 0x212000;
  static constexpr uint64_t kEptPml4 = 0x220000, kEptPdpt = 0x221000, kEptPd = 0x222000, kEptPt = 0x223000;
  static constexpr uint64_t kL2Base = 0x800000;  // L1-physical backing of L2-physical 0
  static constexpr uint64_t kL2Code = 0x1000;    // L2-physical
  static constexpr uint64_t kEptMemWb = 6ull << 3;

  NestedTest() : vm(config()), ports(vm) {
    vm.mem().add_slot(0, vm.config().ram_bytes);
    for (uint16_t p : {0xf4, 0x80, 0x81, 0x3f8}) vm.io().add_pio(p, 1, &ports, "test");
    const uint64_t gdt[4] = {0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull, 0x00008b0050000067ull};
    EXPECT_TRUE(vm.mem().write(kGdt, gdt, sizeof gdt));
    for (uint32_t i = 0; i < 16; ++i) write32(kPd + 4 * i, (i << 22) | 0x83);  // P RW PS
    // L1: VMLAUNCH; on VMfail its flags leave through port 0xf4. Host code: 0x21.
    load(kL1Code, "vmlaunch\n pushfd\n pop eax\n out 0xf4, al\n hlt\n");
    load(kHostCode, "mov al, 0x21\n out 0xf4, al\n hlt\n");
    // EPT12: L2-physical [0, 2 MiB) -> L1-physical kL2Base, one 2 MiB page, RWX.
    write64(kEptPml4, kEptPdpt | 7);
    write64(kEptPdpt, kEptPd | 7);
    write64(kEptPd, kL2Base | 7 | kEptMemWb | arch::ept::kLargePage);
    default_vmcs12();
  }

  static hv::VmConfig config() {
    hv::VmConfig c;
    c.ram_bytes = 64ull << 20;
    c.model.set(cpu::Feature::kVmx, true);
    return c;
  }

  hv::nested::NestedVmx& nested() { return vm.vcpu(0).nested(); }
  hv::nested::Vmcs12& vmcs12() { return nested().cached_vmcs12; }
  uint64_t r12(arch::VmcsField f) { return vmcs12().read(f); }
  void w12(arch::VmcsField f, uint64_t v) { vmcs12().write(f, v); }
  const hv::VcpuStats& stats() { return vm.vcpu(0).stats(); }

  void write32(uint64_t gpa, uint32_t v) { ASSERT_TRUE(vm.mem().write(gpa, &v, 4)); }
  void write64(uint64_t gpa, uint64_t v) { ASSERT_TRUE(vm.mem().write(gpa, &v, 8)); }
  uint64_t read64(uint64_t gpa) {
    uint64_t v = 0;
    EXPECT_TRUE(vm.mem().read(gpa, &v, 8));
    return v;
  }
  void load(uint64_t gpa, const std::string& src) {
    const auto code = assemble(src, 32, gpa);
    ASSERT_FALSE(code.empty());
    ASSERT_TRUE(vm.mem().write(gpa, code.data(), code.size()));
  }
  // L2 code at L2-physical kL2Code (unrestricted guest, paging off: linear = L2-physical).
  void load_l2(const std::string& src) {
    const auto code = assemble(src, 32, kL2Code);
    ASSERT_FALSE(code.empty());
    ASSERT_TRUE(vm.mem().write(kL2Base + kL2Code, code.data(), code.size()));
  }
  // Replaces the 2 MiB page by 4 KiB pages with these EPT12 leaf bits (identity offsets).
  void use_4k_ept12(uint64_t leaf_bits) {
    write64(kEptPd, kEptPt | 7);
    for (uint64_t i = 0; i < 512; ++i) write64(kEptPt + 8 * i, (kL2Base + (i << 12)) | leaf_bits);
  }

  void default_vmcs12() {
    using F = arch::VmcsField;
    using namespace arch;
    const VmxCapabilities& caps = nested().caps();
    hv::nested::NestedVmx& n = nested();
    n.vmxon = true;
    n.vmxon_ptr = kVmxon;
    n.current_vmptr = kVmcs12;
    vmcs12().launched = false;
    w12(F::PIN_BASED_VM_EXEC_CONTROL, caps.pin.allowed0);
    w12(F::CPU_BASED_VM_EXEC_CONTROL, caps.proc.allowed0 | proc::kHltExiting | proc::kUncondIoExiting | proc::kActivateSecondary);
    w12(F::SECONDARY_VM_EXEC_CONTROL, proc2::kEnableEpt | proc2::kUnrestrictedGuest);
    w12(F::VM_EXIT_CONTROLS, caps.exit.allowed0);
    w12(F::VM_ENTRY_CONTROLS, caps.entry.allowed0);
    w12(F::EPT_POINTER, kEptPml4 | eptp::kMemTypeWb | (3u << eptp::kWalkLengthShift));
    w12(F::VMCS_LINK_POINTER, ~0ull);
    w12(F::CR3_TARGET_COUNT, 0);
    // Host state: L1's flat 32-bit paged world.
    w12(F::HOST_CR0, cr0::kPE | cr0::kNE | cr0::kET | cr0::kPG);
    w12(F::HOST_CR3, kPd);
    w12(F::HOST_CR4, cr4::kPSE | cr4::kVMXE);
    w12(F::HOST_CS_SELECTOR, 0x08);
    for (F f : {F::HOST_SS_SELECTOR, F::HOST_DS_SELECTOR, F::HOST_ES_SELECTOR}) w12(f, 0x10);
    w12(F::HOST_TR_SELECTOR, 0x18);
    w12(F::HOST_TR_BASE, 0x5000);
    w12(F::HOST_GDTR_BASE, kGdt);
    w12(F::HOST_IDTR_BASE, 0x2000);
    w12(F::HOST_RSP, 0x90000);
    w12(F::HOST_RIP, kHostCode);
    // Guest state: L2 flat 32-bit, paging off (unrestricted guest).
    w12(F::GUEST_CR0, cr0::kPE | cr0::kNE | cr0::kET);
    w12(F::GUEST_CR4, cr4::kVMXE);
    w12(F::CR0_READ_SHADOW, cr0::kPE | cr0::kET);
    w12(F::CR4_READ_SHADOW, 0);
    w12(F::GUEST_DR7, 0x400);
    w12(F::GUEST_RFLAGS, 2);
    w12(F::GUEST_RIP, kL2Code);
    w12(F::GUEST_RSP, 0x8000);
    for (int r = 0; r < 6; ++r) {
      const VmcsSegmentFields& s = kGuestSegmentFields[r];
      const bool cs = r == int(SegReg::kCS);
      w12(s.selector, cs ? 0x08 : 0x10);
      w12(s.base, 0);
      w12(s.limit, 0xffffffff);
      w12(s.ar, cs ? 0xc09b : 0xc093);
    }
    w12(F::GUEST_TR_SELECTOR, 0x18);
    w12(F::GUEST_TR_LIMIT, 0x67);
    w12(F::GUEST_TR_AR_BYTES, 0x8b);
    w12(F::GUEST_LDTR_AR_BYTES, ar::kUnusable);
    w12(F::GUEST_GDTR_LIMIT, 0x1f);
    w12(F::GUEST_IDTR_LIMIT, 0x3ff);
  }

  // Runs L1 from its VMLAUNCH with a 32-bit paged state; returns what reached port 0xf4.
  int run_l1(uint64_t rip = kL1Code) {
    cpu::CpuState s;
    using namespace arch;
    s.cr0 = cr0::kPE | cr0::kET | cr0::kNE | cr0::kPG;
    s.cr3 = kPd;
    s.cr4 = cr4::kPSE | cr4::kVMXE;
    s.seg[unsigned(SegReg::kCS)] = {0x08, 0, 0xffffffff, 0xc09b};
    for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
      s.seg[unsigned(r)] = {0x10, 0, 0xffffffff, 0xc093};
    s.tr = {0x18, 0x5000, 0x67, ar::kP | sys_type::kTss32Busy};
    s.ldtr = {0, 0, 0, ar::kUnusable};
    s.gdtr = {kGdt, 0x1f};
    s.idtr = {0x2000, 0x3ff};
    s.rip = rip;
    s.gpr[cpu::kRsp] = 0x80000;
    s.rflags = 2;
    vm.vcpu(0).set_initial_state(s);
    const hv::StopReason why = vm.run();
    EXPECT_EQ(why, hv::StopReason::kDebugExit) << vm.stop_message();
    return why == hv::StopReason::kDebugExit ? vm.exit_code() : -1;
  }

  hv::Vm vm;
  NestedPorts ports;
};

}  // namespace nestvm::test
