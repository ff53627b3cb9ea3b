// Helpers for the tests of VMX non-root execution of instructions (nonroot_*_test.cpp): a 64-bit
// guest running one snippet, control setters, moves of the guest to CPL 3 or compatibility mode,
// and the exit information fields.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>

#include "arch/cr.h"
#include "arch/segment.h"
#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {

class NonRootMachine : public VmxTestMachine {
 public:
  // A guest at layout::kCode running `src`, assembled for `bits`-bit code (64 unless the test
  // moves the guest to compatibility mode with guest_compat()).
  explicit NonRootMachine(std::string_view src, int bits = 64, cpu::CpuModel model = cpu::CpuModel::max())
      : VmxTestMachine(64ull << 20, std::move(model)) {
    setup_guest64(vmx_layout::kGuestCode);
    if (!src.empty()) load_code(vmx_layout::kGuestCode, src, bits);  // empty: guest_real_mode() loads it
  }

  void proc(uint32_t bits, bool on = true) { set_control(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL, bits, on); }
  void proc2(uint32_t bits, bool on = true) {
    proc(arch::proc::kActivateSecondary);
    set_control(arch::VmcsField::SECONDARY_VM_EXEC_CONTROL, bits, on);
  }

  // Loads a guest segment register from the GDT entry of `selector` (as a MOV would).
  void set_guest_segment(arch::SegReg s, uint16_t selector) {
    const arch::Descriptor d{peek<uint64_t>(layout::kGdt + (selector & ~7))};
    const auto k = unsigned(s);
    vmwrite(arch::kGuestSegmentFields[k].selector, selector);
    vmwrite(arch::kGuestSegmentFields[k].base, d.base());
    vmwrite(arch::kGuestSegmentFields[k].limit, d.limit());
    vmwrite(arch::kGuestSegmentFields[k].ar, d.ar() | arch::ar::kAccessed);
  }
  // 64-bit user code and stack (CPL 3).
  void guest_cpl3() {
    set_guest_segment(arch::SegReg::kCS, sel::kUserCode64);
    set_guest_segment(arch::SegReg::kSS, sel::kUserData);
  }
  // 32-bit code at CPL 0 in IA-32e mode: compatibility mode.
  void guest_compat() { set_guest_segment(arch::SegReg::kCS, sel::kCode32); }

  // Turns the guest into a real-mode unrestricted guest at cs:0000 running 16-bit `src`, on an
  // identity EPT (1-GiB pages) that this helper builds at vmx_layout::kEptRoot.
  void guest_real_mode(uint16_t cs, std::string_view src) {
    using F = arch::VmcsField;
    constexpr uint64_t kPml4 = vmx_layout::kEptRoot, kPdpt = vmx_layout::kEptRoot + 0x1000;
    constexpr uint64_t kRwx = 7, kWb = 6ull << 3, kLarge = 1ull << 7;
    poke<uint64_t>(kPml4, kPdpt | kRwx);
    for (uint64_t g = 0; g < 4; ++g) poke<uint64_t>(kPdpt + 8 * g, (g << 30) | kRwx | kWb | kLarge);
    vmwrite(F::EPT_POINTER, kPml4 | 6 | (3u << 3));
    proc2(arch::proc2::kEnableEpt | arch::proc2::kUnrestrictedGuest);
    set_control(F::VM_ENTRY_CONTROLS, arch::entry_ctl::kIa32eModeGuest, false);
    vmwrite(F::GUEST_CR0, arch::cr0::kET | arch::cr0::kNE);
    vmwrite(F::GUEST_CR3, 0);
    vmwrite(F::GUEST_CR4, arch::cr4::kVMXE);
    vmwrite(F::GUEST_IA32_EFER, 0);
    for (unsigned k = 0; k < arch::kNumSegRegs; ++k) {
      const bool code = k == unsigned(arch::SegReg::kCS);
      vmwrite(arch::kGuestSegmentFields[k].selector, code ? cs : 0);
      vmwrite(arch::kGuestSegmentFields[k].base, code ? uint64_t(cs) << 4 : 0);
      vmwrite(arch::kGuestSegmentFields[k].limit, 0xffff);
      vmwrite(arch::kGuestSegmentFields[k].ar, code ? 0x9b : 0x93);
    }
    vmwrite(F::GUEST_RIP, 0);
    vmwrite(F::GUEST_RSP, 0x8000);
    load_code(uint64_t(cs) << 4, src, 16);
  }

  // Runs until the guest's first VM exit and checks it has `reason`.
  void expect_exit(arch::ExitReason reason, uint64_t budget = 100'000) {
    ASSERT_EQ(launch_and_run(budget), cpu::RunExit::kVmExit);
    EXPECT_EQ(exit_reason(), uint32_t(reason)) << arch::exit_reason_name(exit_reason());
  }
  // Runs until the guest's first exception (intercepted, not delivered) and checks its vector.
  void expect_exception(arch::Vector v, uint64_t budget = 100'000) {
    ASSERT_EQ(launch_and_run(budget), cpu::RunExit::kException);
    EXPECT_EQ(cpu.pending_event().vector, uint8_t(v));
    EXPECT_TRUE(cpu.vmx_non_root());
  }

  uint64_t insn_len() { return vmread(arch::VmcsField::VM_EXIT_INSTRUCTION_LEN); }
  uint64_t insn_info() { return vmread(arch::VmcsField::VMX_INSTRUCTION_INFO); }
  uint64_t guest_linear_address() { return vmread(arch::VmcsField::GUEST_LINEAR_ADDRESS); }
  uint64_t rip_offset() { return guest_rip() - vmx_layout::kGuestCode; }
};

// The max model with MONITOR/MWAIT (which it does not offer by default).
inline cpu::CpuModel model_with_monitor() {
  cpu::CpuModel m = cpu::CpuModel::max();
  m.set(cpu::Feature::kMonitor, true);
  return m;
}

// The length of one instruction as GNU as encodes it.
inline uint64_t encoded_length(std::string_view insn, int bits = 64) { return assemble(insn, bits).size(); }

}  // namespace nestvm::test
