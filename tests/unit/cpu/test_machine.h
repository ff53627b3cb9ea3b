// A bare processor on flat RAM for unit tests: assemble a snippet with GNU as, put the
// processor in a mode with descriptor tables and page tables set up, run, inspect.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/memory.h"
#include "vmm/bare_machine.h"

namespace nestvm::test {

// Assembles Intel-syntax (noprefix) source for 16-, 32- or 64-bit code with GNU as, as if
// placed at `origin`. Fails the current test (and returns an empty vector) on errors.
std::vector<uint8_t> assemble(std::string_view src, int bits, uint64_t origin = 0);

// Port I/O recorder: every OUT is logged; IN returns a programmable value per port.
class TestIo : public cpu::IoBus {
 public:
  struct Out { uint16_t port; unsigned size; uint32_t value; };
  uint32_t in(uint16_t port, unsigned size) override;
  void out(uint16_t port, unsigned size, uint32_t value) override;
  int ack_interrupt() override { return pending_vector; }
  std::vector<Out> outs;
  std::map<uint16_t, uint32_t> in_values;
  int pending_vector = -1;
};

// Physical layout used by the mode helpers: the bare machine's (vmm/bare_machine.h).
namespace layout {
inline constexpr uint64_t kGdt = vmm::bare_layout::kGdt;
inline constexpr uint64_t kIdt = vmm::bare_layout::kIdt;
inline constexpr uint64_t kTss = vmm::bare_layout::kTss;
inline constexpr uint64_t kPml4 = vmm::bare_layout::kPml4;  // PML4, PDPT, 4 PDs (identity, 2 MiB pages)
inline constexpr uint64_t kStackTop = vmm::bare_layout::kStackTop;
inline constexpr uint64_t kCode = 0x100000;
inline constexpr uint64_t kData = 0x200000;
}  // namespace layout

// GDT selectors (Linux-like, so STAR works: SYSCALL 0x08/0x10, SYSRET base 0x20).
namespace sel {
inline constexpr uint16_t kCode64 = 0x08;
inline constexpr uint16_t kData = 0x10;
inline constexpr uint16_t kCode32 = 0x18;
inline constexpr uint16_t kUserCode32 = 0x23;
inline constexpr uint16_t kUserData = 0x2b;
inline constexpr uint16_t kUserCode64 = 0x33;
inline constexpr uint16_t kCode16 = 0x38;
inline constexpr uint16_t kTss = 0x40;
}  // namespace sel

// Exceptions are intercepted by default (cpu.intercept_exceptions): run() returns kException
// with the event in cpu.pending_event(). Tests of event delivery set it to false.
class TestMachine {
 public:
  explicit TestMachine(uint64_t ram_bytes = 64ull << 20, cpu::CpuModel model = cpu::CpuModel::max());

  cpu::FlatRam ram;
  cpu::CpuModel model;
  TestIo io;
  cpu::Cpu cpu;

  void write(uint64_t pa, const void* src, size_t len) { ram.write(pa, src, len); }
  void write_bytes(uint64_t pa, const std::vector<uint8_t>& b) { ram.write(pa, b.data(), b.size()); }
  template <typename T> void poke(uint64_t pa, T v) { ram.write(pa, &v, sizeof v); }
  template <typename T> T peek(uint64_t pa) const { T v{}; ram.read(pa, &v, sizeof v); return v; }

  // Assembles `src` for `bits`-bit code at physical (= linear) address pa and stores it.
  void load_code(uint64_t pa, std::string_view src, int bits);

  // Writes the standard GDT (see sel::) and a 64-bit TSS descriptor at layout::kTss.
  void write_gdt();
  // Loads a segment register's cache from the GDT entry of `selector`, as a MOV would.
  void load_seg(arch::SegReg s, uint16_t selector);

  void enter_real_mode(uint16_t cs, uint16_t ip);
  void enter_protected32(uint32_t eip);
  // 64-bit mode at CPL 0, identity map of the first 4 GiB with 2 MiB pages (U/S = 1).
  void enter_long64(uint64_t rip);

  // Runs until HLT, shutdown, or `budget` instructions.
  cpu::RunExit run(uint64_t budget = 10'000'000);
  uint64_t& reg(cpu::Gpr r) { return cpu.state.gpr[r]; }
  // Writes an IDT gate for `vector` (64-bit interrupt gate in long mode, 32-bit otherwise).
  void set_idt_gate64(uint8_t vector, uint64_t handler, uint16_t selector = 0x08, unsigned dpl = 0, unsigned ist = 0,
                      bool trap = false);
  void set_idt_gate32(uint8_t vector, uint32_t handler, uint16_t selector = 0x18, unsigned dpl = 0, bool trap = false);
};

}  // namespace nestvm::test
