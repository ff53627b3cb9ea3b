// I/O instructions and RDMSR/WRMSR in VMX non-root operation (SDM Vol. 3 §26.1.3, §26.3): the
// unconditional I/O exiting control, the I/O bitmaps A (ports 0000H-7FFFH) and B (8000H-FFFFH),
// the MSR bitmaps (§25.6.9), and the exit information of I/O instructions (§28.2.1 Table 28-5,
// §28.2.4 for INS/OUTS).
#include "arch/msr_index.h"
#include "arch/vmx_insn_info.h"
#include "cpu/msr_file.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu::vmx {

using namespace arch;

namespace {

// Bit n of a 4-KiB bitmap at host-physical address pa. The processor reads the bitmaps from
// physical memory; an address that is not RAM reads as all ones (the bus floats high).
bool bitmap_bit(Cpu& c, uint64_t pa, uint32_t n) {
  const uint64_t byte_pa = pa + (n >> 3);
  const uint8_t* page = c.mem().ram_page(byte_pa);
  const uint8_t b = page ? page[byte_pa & (kPageSize - 1)] : uint8_t(c.mem().mmio_read(byte_pa, 1));
  return (b >> (n & 7)) & 1;
}

constexpr uint32_t kX2apicTpr = 0x808;

}  // namespace

bool io_exiting(Cpu& c, uint16_t port, unsigned size) {
  const VmxControls& ctl = c.vmx_controls();
  // "unconditional I/O exiting" is ignored when the I/O bitmaps are used.
  if (!ctl.has(proc::kUseIoBitmaps)) return ctl.has(proc::kUncondIoExiting);
  // An access that wraps around the 16-bit port space (FFFFH then 0000H) always exits.
  if (uint32_t(port) + size - 1 > 0xffff) return true;
  // Every port the access touches is looked up, across the A/B boundary too.
  for (unsigned k = 0; k < size; ++k) {
    const uint16_t p = uint16_t(port + k);
    if (bitmap_bit(c, p < 0x8000 ? ctl.io_bitmap_a : ctl.io_bitmap_b, p & 0x7fff)) return true;
  }
  return false;
}

Status io_exit(Cpu& c, const Insn& i, uint16_t port, unsigned size, bool in, bool imm) {
  return c.vm_exit_for(i, ExitReason::IO_INSTRUCTION, exit_qual::io::make(size, in, false, false, imm, port));
}

// INS/OUTS: the guest-linear address is that of the first element (ES:rDI for INS, the source
// segment:rSI for OUTS); the instruction information gives the address size and the segment.
Status string_io_exit(Cpu& c, const Insn& i, unsigned size, unsigned address_size, bool in, bool rep) {
  const uint16_t port = uint16_t(c.state.gpr[kRdx]);
  const SegReg s = in ? SegReg::kES : SegReg(i.seg);
  const uint64_t off = c.state.gpr[in ? kRdi : kRsi] & size_mask(address_size);
  uint64_t la = c.seg_cache(s).base + off;
  if (!c.in_64bit_mode()) la &= 0xffffffffull;
  const uint32_t info =
      (c.vmx_caps().basic & vmx_basic::kInsOutsInfo) ? insn_info::string_io(address_size, unsigned(s)) : 0;
  return exit_with_linear_address(c, i, ExitReason::IO_INSTRUCTION,
                                  exit_qual::io::make(size, in, true, rep, false, port), info, la);
}

// The MSR bitmap page: read bitmap for low MSRs at byte 0, for high MSRs (C0000000H-C0001FFFH) at
// 400H, write bitmaps at 800H and C00H. Without MSR bitmaps every RDMSR/WRMSR exits.
bool msr_exiting(Cpu& c, uint32_t index, bool write) {
  const VmxControls& ctl = c.vmx_controls();
  if (!ctl.has(proc::kUseMsrBitmaps)) return true;
  uint32_t byte_offset;
  if (index <= 0x1fff) byte_offset = 0;
  else if (index - 0xc0000000u <= 0x1fff) byte_offset = 0x400;
  else return true;
  if (write) byte_offset += 0x800;
  return bitmap_bit(c, ctl.msr_bitmap, byte_offset * 8 + (index & 0x1fff));
}

// Exit before any other check of the index or value: "RDMSR of a non-existent MSR with CPL = 0
// generates a VM exit and not a general-protection exception" (SDM §26.1.1). The exit
// qualification is 0; the index is in the guest's RCX.
Status rdmsr(Cpu& c, const Insn& i, uint32_t index, uint64_t& value) {
  if (msr_exiting(c, index, false)) return c.vm_exit_for(i, ExitReason::MSR_READ);
  if (index == kX2apicTpr && c.vmx_controls().has2(proc2::kVirtualizeX2apic)) {
    value = read_x2apic_vtpr(c);
    return Status::kNext;
  }
  if (read_msr(c, index, value) != MsrResult::kOk) return c.fault(Vector::kGP, 0);
  // SDM §26.3 RDMSR: IA32_TIME_STAMP_COUNTER reads are offset like RDTSC.
  if (index == msr_index(Msr::kIA32_TIME_STAMP_COUNTER)) value += guest_tsc_offset(c);
  return Status::kNext;
}

// WRMSR of IA32_TIME_STAMP_COUNTER writes the TSC itself: TSC offsetting changes only reads.
Status wrmsr(Cpu& c, const Insn& i, uint32_t index, uint64_t value) {
  if (msr_exiting(c, index, true)) return c.vm_exit_for(i, ExitReason::MSR_WRITE);
  if (index == kX2apicTpr && c.vmx_controls().has2(proc2::kVirtualizeX2apic)) return write_x2apic_vtpr(c, i, value);
  if (write_msr(c, index, value) != MsrResult::kOk) return c.fault(Vector::kGP, 0);
  return Status::kEndBlock;
}

}  // namespace nestvm::cpu::vmx
