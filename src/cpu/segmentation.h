// Segmentation shared by the segment-load instructions, far transfers, IRET, task switches and
// event delivery (SDM Vol. 3 §3.4-3.5, §5.5-5.10; Vol. 2 "MOV—Move", "POP", "LDS/LES/LFS/LGS/LSS"):
// descriptor-table lookups with their limit checks, the accessed and busy bits, the hidden part a
// selector loads, and the protected-mode checks of loading DS/ES/FS/GS/SS.
#pragma once
#include <array>
#include <cstdint>

#include "cpu/memory.h"

namespace nestvm::cpu {

// Error code naming a selector (SDM Vol. 3 §6.13): index and TI, RPL dropped, plus EXT (bit 0).
constexpr uint32_t selector_error(uint16_t sel, uint32_t ext = 0) { return (sel & 0xfffcu) | ext; }

// Supervisor accesses to system structures (GDT, LDT, IDT, TSS) at a full linear address. In
// compatibility mode the tables still live at 64-bit addresses (SDM Vol. 3 §2.4), which the
// 32-bit address mask of ordinary accesses would cut off.
template <typename T> inline Status sys_read(Cpu& c, uint64_t la, T& v) {
  if (__builtin_expect(c.long_mode() && !c.in_64bit_mode() && (la >> 32), 0))
    return c.access_slow(la, &v, sizeof(T), AccessKind::kRead, kMmuSupervisor, SegReg::kNone);
  return c.read_system<T>(la, v);
}
template <typename T> inline Status sys_write(Cpu& c, uint64_t la, T v) {
  if (__builtin_expect(c.long_mode() && !c.in_64bit_mode() && (la >> 32), 0))
    return c.access_slow(la, &v, sizeof(T), AccessKind::kWrite, kMmuSupervisor, SegReg::kNone);
  return c.write_system<T>(la, v);
}

// Sized pushes and stack reads for frames whose element size is chosen at run time (gate size,
// operand size). Values are zero-extended ("padded", SDM Vol. 2 CALL) to the element size.
Status push_sized(Cpu& c, unsigned size, uint64_t v);
Status read_stack_sized(Cpu& c, unsigned size, uint64_t offset, uint64_t& v);

// What a control transfer that switches CS, SS, RSP (or leaves virtual-8086 mode) changes
// before its pushes are known to succeed. If a push faults, restore() puts the processor back as
// it was before the transfer (fault atomicity; for events, SDM Vol. 3 §6.15 delivers the second
// fault from that state). RFLAGS is restored raw: only VM may have changed, the lazy arithmetic
// flags stay valid.
struct TransferUndo {
  explicit TransferUndo(const Cpu& c) : seg(c.state.seg), rsp(c.state.gpr[kRsp]), rflags(c.state.rflags) {}
  void restore(Cpu& c) const {
    c.state.seg = seg;
    c.state.gpr[kRsp] = rsp;
    c.state.rflags = rflags;
    c.refresh_mode();
  }
  std::array<Segment, arch::kNumSegRegs> seg;
  uint64_t rsp;
  uint64_t rflags;
};
// Pushes `n` values of `size` bytes; if one faults, `undo` is restored.
Status push_all(Cpu& c, const TransferUndo& undo, unsigned size, const uint64_t* v, unsigned n);

// Linear address of the descriptor `sel` selects, if its `bytes` bytes lie within the GDT or
// LDT limit (SDM Vol. 3 §3.5.1); false otherwise (also for TI = 1 with an unusable LDTR).
bool descriptor_address(const Cpu& c, uint16_t sel, unsigned bytes, uint64_t& la);

// Reads the 8-byte descriptor `sel` selects. Outside the table: fault `v`(selector + ext).
Status fetch_descriptor(Cpu& c, uint16_t sel, arch::Vector v, uint32_t ext, arch::Descriptor& d, uint64_t& la);
// The upper 8 bytes of a 16-byte system descriptor in IA-32e mode (SDM Vol. 3 §3.5.2): the
// whole descriptor must be within the limit, else `v`(selector + ext).
Status fetch_descriptor_high(Cpu& c, uint16_t sel, arch::Vector v, uint32_t ext, uint64_t& hi);
// Bits 12:8 of the upper dword of a 16-byte descriptor must be 0 (SDM Vol. 3 Figure 5-9).
constexpr bool high_half_type_ok(uint64_t hi) { return ((hi >> 40) & 0x1f) == 0; }

// Sets the accessed bit of the code/data descriptor at `la` (a locked update, as the processor
// does, SDM Vol. 3 §3.4.5.1) if `d` has it clear, and in `d`.
Status set_accessed(Cpu& c, uint64_t la, arch::Descriptor& d);
// Sets (busy = true) or clears the busy bit of the TSS descriptor at `la` with a locked update;
// `old_busy` is the bit before the update.
Status update_tss_busy(Cpu& c, uint64_t la, bool busy, bool& old_busy);

// The hidden part loaded from a code or data descriptor.
inline Segment segment_from(uint16_t sel, const arch::Descriptor& d) { return {sel, d.base(), d.limit(), d.ar()}; }
// A null selector in protected mode: the register becomes unusable (VMX access-rights bit 16).
// SS keeps a DPL, which is the CPL.
inline Segment null_segment(uint16_t sel, unsigned dpl = 0) {
  return {sel, 0, 0, arch::ar::kUnusable | (dpl << arch::ar::kDplShift)};
}
// Real-address and virtual-8086 loads: base = selector << 4. Real mode keeps the limit and
// attributes (SDM Vol. 3 §21.1.1: "unreal" limits survive); virtual-8086 mode has 64-KiB
// read/write DPL-3 segments (SDM Vol. 3 §21.2.1, the attributes VMX requires in §27.3.1.2).
Segment real_mode_segment(const Cpu& c, SegReg s, uint16_t sel);

// MOV, POP or LDS/LES/LFS/LGS/LSS into DS, ES, FS, GS or SS with every check of SDM Vol. 2
// "MOV—Move" (and real/virtual-8086 loads). `out` is the new register; nothing in the Cpu
// changes except the descriptor's accessed bit.
Status check_segment_load(Cpu& c, SegReg s, uint16_t sel, Segment& out);
// Installs a segment register and refreshes what depends on it (CPL and modes for CS and SS).
void install_segment(Cpu& c, SegReg s, const Segment& seg);
inline Status load_segment(Cpu& c, SegReg s, uint16_t sel) {
  Segment seg;
  const Status st = check_segment_load(c, s, sel, seg);
  if (st == Status::kNext) install_segment(c, s, seg);
  return st;
}

// After a return to an outer privilege level (RET far, IRET): ES, DS, FS and GS holding a data
// or non-conforming code segment with DPL < CPL become null (SDM Vol. 2 RET, IRET).
void null_segments_above_cpl(Cpu& c);

// Whether `bytes` bytes pushed below `sp` fit in the stack segment `ss` (limit, expand-down and
// B flag as SDM Vol. 3 §5.3 defines them; legacy and compatibility modes only).
bool stack_fits(const Segment& ss, uint64_t sp, unsigned bytes);

// Whether `ip` is a valid target in the code segment `cs`: canonical for 64-bit code, within
// the limit otherwise (SDM Vol. 2 JMP/CALL/RET/IRET: #GP(0) if not).
inline bool code_target_ok(const Cpu& c, const Segment& cs, uint64_t ip) {
  if (c.long_mode() && (cs.ar & arch::ar::kL)) return is_canonical(ip);
  return ip <= cs.limit;
}

// The stack for a privilege change to `dpl` from the current 16- or 32-bit TSS (SDM Vol. 2
// CALL "MORE-PRIVILEGE", INT n "INTER-PRIVILEGE-LEVEL-INTERRUPT"): #TS(TR selector + ext) if the
// TSS is too short.
Status read_tss_stack(Cpu& c, unsigned dpl, uint32_t ext, uint16_t& ss, uint64_t& sp);
// An 8-byte stack pointer at `offset` in the 64-bit TSS (RSPn at 4 + 8n, ISTn at 0x24 + 8(n - 1),
// SDM Vol. 3 Figure 8-11): #TS(TR selector + ext) if beyond its limit.
Status read_tss_rsp(Cpu& c, unsigned offset, uint32_t ext, uint64_t& rsp);
// Checks and loads the stack segment taken from a TSS for a change to privilege `dpl`:
// #TS(ext) if null; #TS(selector + ext) unless a writable data segment with RPL = DPL = dpl;
// #SS(selector + ext) if not present. Sets the accessed bit.
Status load_tss_stack_segment(Cpu& c, uint16_t sel, unsigned dpl, uint32_t ext, Segment& out);

// Hardware task switch (task_switch.cpp, SDM Vol. 3 §7.3), legacy protected mode only.
enum class TaskSwitchSource : uint8_t { kJmp, kCall, kIret, kInterrupt };
// `tss_sel`/`tss` name the new task's TSS descriptor (at `tss_la`). For kCall/kJmp/kIret the
// outgoing EIP is the next instruction's; for kInterrupt, `ret_rip` (the event's return
// address). `error`/`has_error` is pushed on the new task's stack for exceptions.
Status task_switch(Cpu& c, uint16_t tss_sel, const arch::Descriptor& tss, uint64_t tss_la, TaskSwitchSource src,
                   uint64_t ret_rip, bool has_error = false, uint32_t error = 0, uint32_t ext = 0);

}  // namespace nestvm::cpu
