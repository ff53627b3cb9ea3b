// The core's decoded form of one instruction: a handler chosen at decode time for the exact
// form (operation, operand kinds, operand size) plus the operand fields it needs. Zydis decodes
// once; the block cache keeps these; execution is a call through `fn`.
#pragma once
#include <cstdint>

namespace nestvm::cpu {

class Cpu;
struct Insn;

// What a handler tells the execution loop. Handlers never throw: a guest fault is recorded in
// the Cpu (Cpu::fault) and reported as kFault, with RIP still at the faulting instruction and
// no architectural state modified by the instruction (handlers do every access that can fault
// before they write registers or flags).
enum class Status : uint8_t {
  kNext = 0,   // done: RIP advances by the instruction length; the block continues
  kJumped,     // done: the handler set RIP (control transfer); the block ends
  kEndBlock,   // done: RIP advances, but state that decoding or the fast paths depend on changed
  kFault,      // an exception is pending (Cpu::pending_event); RIP is at the instruction
  kExit,       // leave the run loop (HLT, shutdown, VM exit); RIP is as the handler left it
};

using Handler = Status (*)(Cpu&, const Insn&);

// Register operands: for 1-byte operands, `reg`/`rm` hold a byte offset into the GPR array
// (AL = 0, AH = 1, CL = 8, ..., SPL = 32, R15B = 120); otherwise a GPR number 0-15.
inline constexpr uint8_t kRegNone = 16;  // no base / no index (reads as zero)
inline constexpr uint8_t kRegRip = 17;   // RIP-relative base (address of next instruction)

namespace insn_flags {
inline constexpr uint8_t kLock = 1u << 0;
inline constexpr uint8_t kRep = 1u << 1;     // F3 (REP / REPE)
inline constexpr uint8_t kRepne = 1u << 2;   // F2 (REPNE)
inline constexpr uint8_t kHasMem = 1u << 3;  // has a memory operand (base/index/scale/disp/seg)
inline constexpr uint8_t kSegOverride = 1u << 4;
inline constexpr uint8_t kRexW = 1u << 5;
inline constexpr uint8_t kMemIsDst = 1u << 6; // the memory operand is the first operand
inline constexpr uint8_t kEndsBlock = 1u << 7; // decoding stops after it (unconditional transfer)
}  // namespace insn_flags

struct Insn {
  Handler fn = nullptr;
  uint64_t imm = 0;     // first immediate (sign- or zero-extended as the form defines) or moffs
  int32_t disp = 0;     // memory displacement, sign-extended
  uint16_t imm2 = 0;    // second immediate (ENTER level, far-pointer selector)
  uint8_t len = 0;      // instruction length in bytes
  uint8_t osz = 4;      // effective operand size in bytes (1, 2, 4, 8)
  uint8_t asz = 8;      // effective address size in bytes (2, 4, 8)
  uint8_t seg = 3;      // segment of the memory operand (SegReg), default or overridden
  uint8_t reg = 0;      // ModRM.reg operand (or opcode-embedded register)
  uint8_t rm = 0;       // ModRM.rm register operand (register forms)
  uint8_t base = kRegNone;
  uint8_t index = kRegNone;
  uint8_t scale = 0;    // log2 of the scale factor
  uint8_t flags = 0;    // insn_flags
  uint8_t cond = 0;     // condition code (Jcc/SETcc/CMOVcc) or form-specific extra
  uint8_t aux = 0;      // form-specific extra
  uint16_t off = 0;     // offset from the start of its block (the loop sets RIP from it)
};

}  // namespace nestvm::cpu
