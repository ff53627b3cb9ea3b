// A processor on flat RAM with no hypervisor and no devices, started directly in 64-bit mode
// with an identity map: what the core benchmark and the demo run on until the full machine
// (src/hv + src/vmm) exists. Unit tests use the same setup.
#pragma once
#include <cstdint>
#include <span>

#include "cpu/cpu.h"

namespace nestvm::vmm {

// Physical layout of the bare machine.
namespace bare_layout {
inline constexpr uint64_t kGdt = 0x1000;
inline constexpr uint64_t kIdt = 0x2000;
inline constexpr uint64_t kTss = 0x3000;
inline constexpr uint64_t kPml4 = 0x10000;  // PML4, PDPT, 4 page directories (2 MiB pages)
inline constexpr uint64_t kStackTop = 0x80000;
}  // namespace bare_layout

// Writes a GDT at `gdt` with flat code/data segments (Linux-like selector layout: 0x08 code64,
// 0x10 data, 0x18 code32, 0x23 user code32, 0x2b user data, 0x33 user code64, 0x38 code16,
// 0x40 64-bit TSS at `tss`) and returns the GDT limit.
uint16_t write_flat_gdt(cpu::FlatRam& ram, uint64_t gdt, uint64_t tss);
// Identity-maps the first 4 GiB with 2 MiB pages (present, writable, user) at `pml4`.
void write_identity_map(cpu::FlatRam& ram, uint64_t pml4);
// Puts the processor in 64-bit mode at CPL 0 using the tables above.
void enter_long_mode(cpu::Cpu& cpu, cpu::FlatRam& ram, uint64_t rip, uint64_t rsp);

class BareMachine {
 public:
  explicit BareMachine(uint64_t ram_bytes, cpu::CpuModel model = cpu::CpuModel::max());
  cpu::FlatRam& ram() { return ram_; }
  cpu::Cpu& cpu() { return cpu_; }
  // Loads a 64-bit image at `base` and starts at it in long mode.
  bool load_and_enter(std::span<const uint8_t> image, uint64_t base);
  cpu::RunExit run(uint64_t budget = ~0ull) { return cpu_.run(budget); }

 private:
  cpu::FlatRam ram_;
  cpu::CpuModel model_;
  cpu::Cpu cpu_;
};

}  // namespace nestvm::vmm
