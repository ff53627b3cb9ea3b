// A processor acting as L0 from C++ for VMX tests: host-physical RAM, a VMCS set up for a 64-bit
// guest (identity-mapped, no EPT) or a real-mode unrestricted guest, and helpers to enter it and
// look at the exit.
#pragma once
#include <cstdint>
#include <string_view>

#include "arch/vmcs.h"
#include "arch/vmx.h"
#include "unit/cpu/test_machine.h"

namespace nestvm::test {

namespace vmx_layout {
inline constexpr uint64_t kVmcs = 0x8000;        // the VMCS L0 launches (vmcs01-like)
inline constexpr uint64_t kVmcs2 = 0x9000;       // a second VMCS
inline constexpr uint64_t kMsrArea = 0xa000;     // MSR-load/store areas
inline constexpr uint64_t kIoBitmapA = 0xb000;
inline constexpr uint64_t kIoBitmapB = 0xc000;
inline constexpr uint64_t kMsrBitmap = 0xd000;
inline constexpr uint64_t kEptRoot = 0x400000;   // EPT tables built by tests
inline constexpr uint64_t kGuestCode = layout::kCode;
}  // namespace vmx_layout

class VmxTestMachine : public TestMachine {
 public:
  explicit VmxTestMachine(uint64_t ram_bytes = 64ull << 20, cpu::CpuModel model = cpu::CpuModel::max());

  // Writes a VMCS region with the silicon's revision at hpa and makes it current.
  void make_current_vmcs(uint64_t hpa = vmx_layout::kVmcs);
  // Fills the current VMCS for a 64-bit CPL-0 guest at `rip` on the bare machine's identity map
  // and GDT, with a valid 64-bit host state and the minimal controls.
  void setup_guest64(uint64_t rip);

  void vmwrite(arch::VmcsField f, uint64_t v);
  uint64_t vmread(arch::VmcsField f);
  // Sets/clears bits in a 32-bit control field.
  void set_control(arch::VmcsField f, uint32_t bits, bool on = true);

  // VMLAUNCH (or VMRESUME) and run until a VM exit or `budget` instructions.
  cpu::VmxResult enter(bool resume = false);
  cpu::RunExit launch_and_run(uint64_t budget = 1'000'000);
  cpu::RunExit resume_and_run(uint64_t budget = 1'000'000);
  uint32_t exit_reason() { return uint32_t(vmread(arch::VmcsField::VM_EXIT_REASON)); }
  uint64_t exit_qualification() { return vmread(arch::VmcsField::EXIT_QUALIFICATION); }
  uint64_t guest_rip() { return vmread(arch::VmcsField::GUEST_RIP); }
  // Advances GUEST_RIP past the exiting instruction (as an L0 exit handler does).
  void skip_instruction() { vmwrite(arch::VmcsField::GUEST_RIP, guest_rip() + vmread(arch::VmcsField::VM_EXIT_INSTRUCTION_LEN)); }
};

}  // namespace nestvm::test
