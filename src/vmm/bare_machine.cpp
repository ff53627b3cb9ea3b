#include "vmm/bare_machine.h"

#include "arch/cr.h"

namespace nestvm::vmm {

using arch::SegReg;

uint16_t write_flat_gdt(cpu::FlatRam& ram, uint64_t gdt, uint64_t tss) {
  const uint64_t entries[] = {
      0,
      0x00af9b000000ffffull,  // 0x08 code64 DPL0
      0x00cf93000000ffffull,  // 0x10 data DPL0
      0x00cf9b000000ffffull,  // 0x18 code32 DPL0
      0x00cffb000000ffffull,  // 0x20 code32 DPL3
      0x00cff3000000ffffull,  // 0x28 data DPL3
      0x00affb000000ffffull,  // 0x30 code64 DPL3
      0x00009b000000ffffull,  // 0x38 code16 DPL0
      // 0x40: available 64-bit TSS, limit 0x67 (16-byte descriptor)
      0x67 | ((tss & 0xffffff) << 16) | (0x89ull << 40) | (((tss >> 24) & 0xff) << 56),
      tss >> 32,
  };
  ram.write(gdt, entries, sizeof entries);
  return sizeof entries - 1;
}

void write_identity_map(cpu::FlatRam& ram, uint64_t pml4) {
  const uint64_t pdpt = pml4 + 0x1000;
  const uint64_t pml4e = pdpt | 7;
  ram.write(pml4, &pml4e, 8);
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t pd = pml4 + 0x2000 + i * 0x1000;
    const uint64_t pdpte = pd | 7;
    ram.write(pdpt + i * 8, &pdpte, 8);
    for (uint64_t j = 0; j < 512; ++j) {
      const uint64_t pde = ((i << 30) | (j << 21)) | 0x87;  // P, RW, US, PS
      ram.write(pd + j * 8, &pde, 8);
    }
  }
}

namespace {
arch::Segment segment_from_gdt(cpu::FlatRam& ram, uint64_t gdt, uint16_t selector) {
  arch::Descriptor d;
  ram.read(gdt + (selector & ~7), &d.raw, 8);
  return {selector, d.base(), d.limit(), d.ar() | arch::ar::kAccessed};
}
}  // namespace

void enter_long_mode(cpu::Cpu& cpu, cpu::FlatRam& ram, uint64_t rip, uint64_t rsp) {
  using namespace arch;
  cpu.reset();
  const uint16_t limit = write_flat_gdt(ram, bare_layout::kGdt, bare_layout::kTss);
  write_identity_map(ram, bare_layout::kPml4);
  auto& s = cpu.state;
  s.gdtr = {bare_layout::kGdt, limit};
  s.idtr = {bare_layout::kIdt, 0xfff};
  s.cr3 = bare_layout::kPml4;
  s.cr4 = cr4::kPAE | cr4::kOSFXSR | cr4::kOSXMMEXCPT;
  s.msr.efer = efer::kLME | efer::kLMA | efer::kNXE | efer::kSCE;
  s.cr0 = cr0::kPE | cr0::kMP | cr0::kET | cr0::kNE | cr0::kWP | cr0::kPG;
  s.seg[unsigned(SegReg::kCS)] = segment_from_gdt(ram, bare_layout::kGdt, 0x08);
  for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
    s.seg[unsigned(r)] = segment_from_gdt(ram, bare_layout::kGdt, 0x10);
  s.tr = {0x40, bare_layout::kTss, 0x67, ar::kP | sys_type::kTss32Busy};
  s.rip = rip;
  s.gpr[cpu::kRsp] = rsp;
  cpu.flush_tlb_all();
  cpu.refresh_mode();
}

BareMachine::BareMachine(uint64_t ram_bytes, cpu::CpuModel model)
    : ram_(ram_bytes), model_(std::move(model)), cpu_(ram_, model_) {}

bool BareMachine::load_and_enter(std::span<const uint8_t> image, uint64_t base) {
  if (!ram_.write(base, image.data(), image.size())) return false;
  enter_long_mode(cpu_, ram_, base, bare_layout::kStackTop);
  return true;
}

}  // namespace nestvm::vmm
