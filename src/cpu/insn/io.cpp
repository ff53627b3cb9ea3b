// Instruction class: IN OUT (SDM Vol. 2 IN, OUT): AL/AX/EAX with an imm8 or DX port, after the
// I/O permission check (insn/io_permission.h). INS and OUTS are string instructions (string.cpp).
#include "cpu/insn/io_permission.h"
#include "cpu/insn/operand.h"
#include "cpu/vmx/nonroot.h"

namespace nestvm::cpu {

namespace {

template <bool Imm>
inline uint16_t port_of(const Cpu& c, const Insn& i) {
  return Imm ? uint16_t(uint8_t(i.imm)) : uint16_t(c.state.gpr[kRdx]);
}

// Device accesses may raise or lower interrupt lines and stop the machine (debug-exit ports):
// both end the block so that the run loop sees it before the next instruction. In VMX non-root
// operation the I/O exits come after the TSS I/O-permission check (SDM §26.1.1).
template <unsigned N, bool Imm> struct In {
  static Status run(Cpu& c, const Insn& i) {
    const uint16_t port = port_of<Imm>(c, i);
    const Status st = check_io_permission(c, port, N);
    if (st != Status::kNext) return st;
    if (c.vmx_non_root() && vmx::io_exiting(c, port, N)) return vmx::io_exit(c, i, port, N, true, Imm);
    c.set_reg(N, kRax, c.io_in(port, N));  // IN EAX zero-extends into RAX
    return Status::kEndBlock;
  }
};

template <unsigned N, bool Imm> struct Out {
  static Status run(Cpu& c, const Insn& i) {
    const uint16_t port = port_of<Imm>(c, i);
    const Status st = check_io_permission(c, port, N);
    if (st != Status::kNext) return st;
    if (c.vmx_non_root() && vmx::io_exiting(c, port, N)) return vmx::io_exit(c, i, port, N, false, Imm);
    c.io_out(port, N, uint32_t(c.get_reg(N, kRax)));
    return Status::kEndBlock;
  }
};

template <template <unsigned, bool> class H>
Handler by_size(unsigned bytes, bool imm) {
  switch (bytes) {
    case 1: return imm ? &H<1, true>::run : &H<1, false>::run;
    case 2: return imm ? &H<2, true>::run : &H<2, false>::run;
    case 4: return imm ? &H<4, true>::run : &H<4, false>::run;
    default: return nullptr;
  }
}

// IN AL/AX/EAX, imm8 | DX
Handler select_in(const DecodeInput& in, Insn&) {
  if (in.visible() != 2 || !is_reg(in.ops[0])) return nullptr;
  return by_size<In>(in.ops[0].size / 8, is_imm(in.ops[1]));
}

// OUT imm8 | DX, AL/AX/EAX
Handler select_out(const DecodeInput& in, Insn&) {
  if (in.visible() != 2 || !is_reg(in.ops[1])) return nullptr;
  return by_size<Out>(in.ops[1].size / 8, is_imm(in.ops[0]));
}

}  // namespace

void register_io(SelectorTable& t) {
  t.add(ZYDIS_MNEMONIC_IN, &select_in);
  t.add(ZYDIS_MNEMONIC_OUT, &select_out);
}

}  // namespace nestvm::cpu
