// EPT paging structures built by a test acting as L0, in the test machine's host-physical RAM,
// and the guest-side helpers the EPT and VPID tests share.
#pragma once
#include <cstdint>

#include "arch/vmx.h"
#include "unit/cpu/vmx/vmx_test_machine.h"

namespace nestvm::test {

namespace ept_bits {
inline constexpr uint64_t kR = arch::ept::kRead;
inline constexpr uint64_t kW = arch::ept::kWrite;
inline constexpr uint64_t kX = arch::ept::kExec;
inline constexpr uint64_t kRwx = arch::ept::kRwxMask;
inline constexpr uint64_t kWb = 6ull << arch::ept::kMemTypeShift;  // leaf memory type write-back
inline constexpr uint64_t kA = arch::ept::kAccessed;
inline constexpr uint64_t kD = arch::ept::kDirty;
}  // namespace ept_bits

class EptTables {
 public:
  // Tables are allocated from `root` upwards, one 4 KiB page each.
  explicit EptTables(TestMachine& m, uint64_t root = vmx_layout::kEptRoot) : m_(m), root_(root), next_(root + 0x1000) {
    zero(root_);
  }

  uint64_t root() const { return root_; }
  // A valid EPTP: write-back paging structures, 4-level walk, A/D flags if `ad`.
  uint64_t eptp(bool ad = false) const { return root_ | (3ull << arch::eptp::kWalkLengthShift) | 6 | (ad ? arch::eptp::kAdEnable : 0); }

  // Maps the page of 2^shift bytes (12, 21 or 30) at gpa to hpa with leaf bits `flags`; the
  // tables on the way are created readable, writable and executable.
  void map(uint64_t gpa, uint64_t hpa, unsigned shift, uint64_t flags = ept_bits::kRwx | ept_bits::kWb) {
    const int leaf_level = int((shift - 12) / 9) + 1;
    const uint64_t pa = entry_pa(gpa, leaf_level, true);
    m_.poke<uint64_t>(pa, hpa | flags | (leaf_level > 1 ? arch::ept::kLargePage : 0));
  }
  // Identity map of [0, size): 4 KiB pages below 4 MiB (so that tests can change single pages),
  // 2 MiB pages above.
  void identity(uint64_t size) {
    for (uint64_t a = 0; a < size; a += (a < (4ull << 20) ? 0x1000 : 0x200000)) map(a, a, a < (4ull << 20) ? 12 : 21);
  }
  // The host-physical address of the entry at `level` (4 = PML4E ... 1 = PTE) for gpa, creating
  // missing tables on the way when `create`.
  uint64_t entry_pa(uint64_t gpa, int level, bool create = false) {
    uint64_t table = root_;
    for (int l = 4; l > level; --l) {
      const uint64_t pa = table + ((gpa >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
      uint64_t e = m_.peek<uint64_t>(pa);
      if (!(e & ept_bits::kRwx) || (e & arch::ept::kLargePage)) {
        if (!create) return 0;
        e = next_ | ept_bits::kRwx;
        zero(next_);
        next_ += 0x1000;
        m_.poke<uint64_t>(pa, e);
      }
      table = e & 0x000ffffffffff000ull;
    }
    return table + ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
  }
  uint64_t entry(uint64_t gpa, int level) { return m_.peek<uint64_t>(entry_pa(gpa, level)); }
  void set_entry(uint64_t gpa, int level, uint64_t v) { m_.poke<uint64_t>(entry_pa(gpa, level, true), v); }

 private:
  void zero(uint64_t pa) {
    static const uint8_t kZero[4096] = {};
    m_.write(pa, kZero, sizeof kZero);
  }
  TestMachine& m_;
  uint64_t root_;
  uint64_t next_;
};

// Turns on EPT with `eptp` in the current VMCS.
inline void enable_ept(VmxTestMachine& m, uint64_t eptp) {
  m.set_control(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kActivateSecondary);
  m.set_control(arch::VmcsField::SECONDARY_VM_EXEC_CONTROL, arch::proc2::kEnableEpt);
  m.vmwrite(arch::VmcsField::EPT_POINTER, eptp);
}

// Turns on VPID `vpid` in the current VMCS.
inline void enable_vpid(VmxTestMachine& m, uint16_t vpid) {
  m.set_control(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL, arch::proc::kActivateSecondary);
  m.set_control(arch::VmcsField::SECONDARY_VM_EXEC_CONTROL, arch::proc2::kEnableVpid);
  m.vmwrite(arch::VmcsField::VIRTUAL_PROCESSOR_ID, vpid);
}

// The guest's page directory for linear [1 GiB, 2 GiB) in the identity map enter_long64 builds
// (2 MiB pages): tests point its entries elsewhere to give a linear address another
// guest-physical one.
inline constexpr uint64_t kGuestPd1 = layout::kPml4 + 0x3000;
inline constexpr uint64_t kLinear1G = 0x40000000;
// Maps the 2 MiB guest page at linear kLinear1G + n * 2 MiB to guest-physical `gpa`.
inline void guest_map_2m(TestMachine& m, unsigned n, uint64_t gpa, uint64_t extra = 0) {
  m.poke<uint64_t>(kGuestPd1 + 8 * n, gpa | 0x87 | extra);  // P, RW, US, PS
}

// A VM exit the guest asks for: VMREAD without VMCS shadowing always exits (SDM §26.1.3).
inline constexpr const char* kExitInsn = "vmread r15, r15\n";

}  // namespace nestvm::test
