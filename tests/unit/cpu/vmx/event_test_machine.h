// Helpers for the tests of events in VMX non-root operation and at VM entry: a guest whose
// exceptions go through VMX (not the test machine's interception), IDT handlers assembled next
// to it, control setters, injection, and the exit's event fields.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "arch/cr.h"
#include "arch/rflags.h"
#include "arch/segment.h"
#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {

namespace event_layout {
inline constexpr uint64_t kHandlers = 0x180000;   // handler for vector v at kHandlers + v * 0x100
inline constexpr uint64_t kUnmapped = 0x100000000;  // canonical, above the 4 GiB identity map
inline constexpr uint64_t kPd32 = 0x30000;        // 32-bit page directory (4 MiB pages)
}  // namespace event_layout

class EventMachine : public VmxTestMachine {
 public:
  // A 64-bit CPL-0 guest at layout::kCode running `src`.
  explicit EventMachine(std::string_view src, int bits = 64) {
    cpu.intercept_exceptions = false;  // exceptions meet the exception bitmap
    setup_guest64(vmx_layout::kGuestCode);
    if (bits == 32) guest_protected32();
    load_code(vmx_layout::kGuestCode, src, bits);
  }

  void pin(uint32_t bits, bool on = true) { set_control(arch::VmcsField::PIN_BASED_VM_EXEC_CONTROL, bits, on); }
  void proc(uint32_t bits, bool on = true) { set_control(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL, bits, on); }
  void proc2(uint32_t bits, bool on = true) {
    proc(arch::proc::kActivateSecondary);
    set_control(arch::VmcsField::SECONDARY_VM_EXEC_CONTROL, bits, on);
  }
  void exit_ctl(uint32_t bits, bool on = true) { set_control(arch::VmcsField::VM_EXIT_CONTROLS, bits, on); }
  void exception_bitmap(uint32_t bits) { vmwrite(arch::VmcsField::EXCEPTION_BITMAP, bits); }
  void guest_rflags(uint64_t v) { vmwrite(arch::VmcsField::GUEST_RFLAGS, v); }

  // An IDT handler for `vector` assembled at its slot; the gate matches the guest's mode.
  uint64_t handler(uint8_t vector, std::string_view src) {
    const uint64_t at = event_layout::kHandlers + uint64_t(vector) * 0x100;
    load_code(at, src, bits_);
    if (bits_ == 64) set_idt_gate64(vector, at);
    else set_idt_gate32(vector, uint32_t(at));
    return at;
  }
  static uint64_t handler_address(uint8_t vector) { return event_layout::kHandlers + uint64_t(vector) * 0x100; }

  // VM-entry event injection (SDM §25.8.3).
  void inject(uint8_t vector, arch::EventType type, bool error = false, uint32_t code = 0, uint32_t len = 0) {
    vmwrite(arch::VmcsField::VM_ENTRY_INTR_INFO_FIELD, arch::intr_info::make(vector, unsigned(type), error));
    vmwrite(arch::VmcsField::VM_ENTRY_EXCEPTION_ERROR_CODE, code);
    vmwrite(arch::VmcsField::VM_ENTRY_INSTRUCTION_LEN, len);
  }

  // VMLAUNCH the first time, VMRESUME after.
  cpu::RunExit go(uint64_t budget = 100'000) {
    const cpu::RunExit r = launched_ ? resume_and_run(budget) : launch_and_run(budget);
    launched_ = true;
    return r;
  }
  // Runs to the next exit and checks its reason.
  void expect_exit(arch::ExitReason reason, uint64_t budget = 100'000) {
    ASSERT_EQ(go(budget), cpu::RunExit::kVmExit);
    EXPECT_EQ(exit_reason(), uint32_t(reason)) << arch::exit_reason_name(exit_reason());
  }

  uint32_t intr_info() { return uint32_t(vmread(arch::VmcsField::VM_EXIT_INTR_INFO)); }
  uint32_t intr_error() { return uint32_t(vmread(arch::VmcsField::VM_EXIT_INTR_ERROR_CODE)); }
  uint32_t idt_info() { return uint32_t(vmread(arch::VmcsField::IDT_VECTORING_INFO_FIELD)); }
  uint32_t idt_error() { return uint32_t(vmread(arch::VmcsField::IDT_VECTORING_ERROR_CODE)); }
  uint64_t insn_len() { return vmread(arch::VmcsField::VM_EXIT_INSTRUCTION_LEN); }
  uint32_t interruptibility() { return uint32_t(vmread(arch::VmcsField::GUEST_INTERRUPTIBILITY_INFO)); }
  uint64_t saved_rflags() { return vmread(arch::VmcsField::GUEST_RFLAGS); }
  uint64_t rip_offset() { return guest_rip() - vmx_layout::kGuestCode; }

 private:
  // A 32-bit protected-mode guest with 32-bit paging (4 MiB pages identity-map 4 GiB; VMX
  // requires CR0.PG without unrestricted guest) on the bare machine's GDT.
  void guest_protected32() {
    using F = arch::VmcsField;
    bits_ = 32;
    for (uint64_t i = 0; i < 1024; ++i) poke<uint32_t>(event_layout::kPd32 + 4 * i, uint32_t(i << 22) | 0x87);
    vmwrite(F::GUEST_CR0, arch::cr0::kPE | arch::cr0::kPG | arch::cr0::kNE | arch::cr0::kET);
    vmwrite(F::GUEST_CR3, event_layout::kPd32);
    vmwrite(F::GUEST_CR4, arch::cr4::kPSE | arch::cr4::kVMXE);
    set_control(F::VM_ENTRY_CONTROLS, arch::entry_ctl::kIa32eModeGuest, false);
    vmwrite(F::GUEST_IA32_EFER, 0);
    for (unsigned k = 0; k < 6; ++k) {
      const uint16_t s = k == unsigned(arch::SegReg::kCS) ? sel::kCode32 : sel::kData;
      const arch::Descriptor d{peek<uint64_t>(layout::kGdt + s)};
      vmwrite(arch::kGuestSegmentFields[k].selector, s);
      vmwrite(arch::kGuestSegmentFields[k].base, d.base());
      vmwrite(arch::kGuestSegmentFields[k].limit, d.limit());
      vmwrite(arch::kGuestSegmentFields[k].ar, d.ar() | arch::ar::kAccessed);
    }
  }

  int bits_ = 64;
  bool launched_ = false;
};

}  // namespace nestvm::test
