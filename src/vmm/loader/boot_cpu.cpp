// The processor states a boot starts in, and the GDT, TSS and page tables behind them.
#include <array>

#include "arch/cr.h"
#include "arch/segment.h"
#include "vmm/loader/loader.h"

namespace nestvm::vmm {

using namespace arch;

namespace {

// An 8-byte code/data descriptor (SDM Vol. 3 §3.4.5) from VMX-format access rights.
uint64_t descriptor(uint32_t base, uint32_t limit_pages, uint32_t access) {
  const uint64_t type_byte = access & 0xff;           // type, S, DPL, P
  const uint64_t flags = (access >> 12) & 0xf;        // AVL, L, D/B, G
  return (uint64_t(limit_pages & 0xffff)) | (uint64_t(base & 0xffffff) << 16) | (type_byte << 40) |
         (uint64_t((limit_pages >> 16) & 0xf) << 48) | (flags << 52) | (uint64_t(base >> 24) << 56);
}

constexpr uint32_t kCode32Ar = ar::kP | ar::kS | ar::kCode | ar::kReadable | ar::kAccessed | ar::kDB | ar::kG;
constexpr uint32_t kDataAr = ar::kP | ar::kS | ar::kWritable | ar::kAccessed | ar::kDB | ar::kG;
constexpr uint32_t kCode64Ar = ar::kP | ar::kS | ar::kCode | ar::kReadable | ar::kAccessed | ar::kL | ar::kG;
constexpr uint32_t kTssAr = ar::kP | sys_type::kTss32Busy;  // 32-bit busy TSS; in IA-32e mode, 64-bit
constexpr uint32_t kTssLimit = 0x67;

// The boot GDT: null, 32-bit code, data, 64-bit code, and a 16-byte TSS descriptor (its upper
// half is a null slot in legacy mode and the high base in IA-32e mode).
Result<Ok> write_gdt(hv::GuestMemory& mem) {
  using namespace boot_layout;
  const std::array<uint64_t, 6> gdt = {
      0,
      descriptor(0, 0xfffff, kCode32Ar),
      descriptor(0, 0xfffff, kDataAr),
      descriptor(0, 0xfffff, kCode64Ar),
      descriptor(uint32_t(kTss), kTssLimit, kTssAr),
      0,
  };
  const std::array<uint8_t, kTssLimit + 1> tss{};
  if (!mem.write(kGdt, gdt.data(), sizeof(gdt)) || !mem.write(kTss, tss.data(), tss.size()))
    return Error{"cannot write the boot GDT: no RAM below 64 KiB"};
  return Ok{};
}

cpu::CpuState base_state() {
  using namespace boot_layout;
  cpu::CpuState s;
  s.gdtr = {kGdt, 6 * 8 - 1};
  s.idtr = {0, 0};
  s.tr = {kTssSel, kTss, kTssLimit, kTssAr};
  s.ldtr = {0, 0, 0, ar::kUnusable};
  // Multiboot: IF clear; bit 1 is reserved to 1 (SDM §3.4.3).
  s.rflags = 2;
  s.gpr[cpu::kRsp] = kStackTop;
  return s;
}

}  // namespace

Result<cpu::CpuState> boot_protected_mode(hv::GuestMemory& mem, uint32_t eip) {
  using namespace boot_layout;
  if (auto r = write_gdt(mem); !r) return Error{r.error()};
  cpu::CpuState s = base_state();
  s.cr0 = cr0::kPE | cr0::kET;
  s.seg[unsigned(SegReg::kCS)] = {kCode32, 0, 0xffffffff, kCode32Ar};
  for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
    s.seg[unsigned(r)] = {kData, 0, 0xffffffff, kDataAr};
  s.rip = eip;
  return s;
}

Result<cpu::CpuState> boot_long_mode(hv::GuestMemory& mem, uint64_t rip) {
  using namespace boot_layout;
  if (auto r = write_gdt(mem); !r) return Error{r.error()};
  // PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 2 MiB pages: 4 GiB, identity.
  constexpr uint64_t kPresentWritable = 0x3, kLargePage = 0x80;
  const uint64_t pml4e = kPdpt | kPresentWritable;
  std::array<uint64_t, 4> pdpt{};
  for (unsigned i = 0; i < 4; ++i) pdpt[i] = (kPageDirs + 0x1000 * i) | kPresentWritable;
  std::array<uint64_t, 2048> pd{};
  for (uint64_t i = 0; i < pd.size(); ++i) pd[i] = (i << 21) | kPresentWritable | kLargePage;
  std::array<uint8_t, 4096> zero{};
  bool ok = mem.write(kPml4, zero.data(), zero.size()) && mem.write(kPdpt, zero.data(), zero.size()) &&
            mem.write(kPml4, &pml4e, 8) && mem.write(kPdpt, pdpt.data(), sizeof(pdpt)) &&
            mem.write(kPageDirs, pd.data(), sizeof(pd));
  if (!ok) return Error{"cannot write the boot page tables: no RAM below 64 KiB"};
  cpu::CpuState s = base_state();
  s.cr0 = cr0::kPE | cr0::kET | cr0::kPG;
  s.cr3 = kPml4;
  s.cr4 = cr4::kPAE;
  s.msr.efer = efer::kLME | efer::kLMA;
  s.seg[unsigned(SegReg::kCS)] = {kCode64, 0, 0xffffffff, kCode64Ar};
  for (SegReg r : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS})
    s.seg[unsigned(r)] = {kData, 0, 0xffffffff, kDataAr};
  s.rip = rip;
  return s;
}

}  // namespace nestvm::vmm
