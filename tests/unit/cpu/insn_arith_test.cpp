// Shifts, rotates, multiplication and division (src/cpu/insn/shift.cpp, muldiv.cpp): every form
// checked against the host processor on random and edge inputs (insn_arith_host.h), all six
// status flags included (the undefined ones match the host's, see the handlers' comments),
// plus #DE and the 16-bit forms.
#include <gtest/gtest.h>

#include "insn_arith_host.h"

namespace nestvm::test::arith {
namespace {

using cpu::RunExit;

const char* const kShiftOps[] = {"shl", "shr", "sar", "rol", "ror", "rcl", "rcr"};

TEST(InsnArithShift, RegisterFormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : kShiftOps)
    for (const char* dst : {"al", "ah", "r9b", "dx", "ebx", "rsi", "r10d", "r15"})
      for (const char* cnt : {"1", "cl", "0", "2", "5", "8", "9", "16", "17", "31", "32", "33", "63", "64", "200"})
        cases.emplace_back(std::string(op) + " " + dst + ", " + cnt);
  // SAL is SHL; the assembler's "sal" emits /4, this is the /6 alias.
  cases.emplace_back(".byte 0xd3, 0xf0");       // sal eax, cl (D3 /6)
  cases.emplace_back(".byte 0x48, 0xc1, 0xf3, 7");  // sal rbx, 7 (C1 /6)
  diff(cases);
}

TEST(InsnArithShift, MemoryFormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : kShiftOps)
    for (const char* size : {"byte", "word", "dword", "qword"})
      for (const char* cnt : {"1", "cl", "0", "3", "9", "17", "40"})
        cases.emplace_back(std::string(op) + " " + size + " ptr [0x200010], " + cnt);
  diff(cases);
}

TEST(InsnArithShift, ProtectedModeFormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : kShiftOps)
    for (const char* dst : {"cl", "bh", "si", "edi", "word ptr [0x200008]", "dword ptr [0x200008]"})
      for (const char* cnt : {"1", "cl", "4", "19"})
        if (std::string(dst) != "cl" || std::string(cnt) != "cl")
          cases.emplace_back(std::string(op) + " " + dst + ", " + cnt, 32);
  diff(cases);
}

TEST(InsnArithShift, DoubleShiftsMatchHost) {
  // Counts above 16 with 16-bit operands are undefined in the SDM; Intel's results are matched.
  std::vector<DiffCase> cases;
  for (const char* op : {"shld", "shrd"}) {
    for (const char* cnt : {"cl", "0", "1", "2", "7", "15", "16", "17", "24", "31", "32", "33", "63", "255"}) {
      const std::string c = cnt;
      cases.emplace_back(std::string(op) + " ax, bx, " + c);
      cases.emplace_back(std::string(op) + " r9w, si, " + c);
      cases.emplace_back(std::string(op) + " edx, edi, " + c);
      cases.emplace_back(std::string(op) + " r8, r11, " + c);
      cases.emplace_back(std::string(op) + " rax, rax, " + c);
      cases.emplace_back(std::string(op) + " word ptr [0x200011], dx, " + c);
      cases.emplace_back(std::string(op) + " dword ptr [0x200011], edx, " + c);
      cases.emplace_back(std::string(op) + " qword ptr [0x200011], rdx, " + c);
      cases.emplace_back(std::string(op) + " si, di, " + c, 32);
      cases.emplace_back(std::string(op) + " dword ptr [0x200004], ebx, " + c, 32);
    }
  }
  diff(cases);
}

// A masked count of 0 leaves every flag alone, even with a non-zero count register.
TEST(InsnArithShift, MaskedZeroCountKeepsFlags) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rcx, 0x140      # masks to 0 (5 bits) for 8/16/32-bit operands
    mov eax, 0xffffffff
    add eax, 1          # CF = ZF = PF = AF = 1
    mov eax, 0x80000001
    shl eax, cl
    pushfq
    mov rcx, 0xc0       # 64-bit: masks to 0 (6 bits)
    rol rax, cl
    rcr rax, cl
    pushfq
    pop rsi
    pop rdi
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax), 0x80000001u);
  const uint64_t kExpected = arch::rflags::kCF | arch::rflags::kZF | arch::rflags::kPF | arch::rflags::kAF;
  EXPECT_EQ(m.reg(cpu::kRdi) & kStatus, kExpected);
  EXPECT_EQ(m.reg(cpu::kRsi) & kStatus, kExpected);
}

// RCL/RCR of 8/16-bit operands rotate through 9/17 bits: SDM pseudo-code by hand.
TEST(InsnArithShift, RotateThroughCarryModulo) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    stc
    mov al, 0x81
    mov cl, 9          # 9 MOD 9 = 0: no change, CF kept
    rcl al, cl
    setc bl
    mov dl, 0x81
    clc
    rcl dl, 8          # CF:DL = 0:10000001 rotated left 8 = right 1: DL = 0x40, CF = 1
    setc bh
    mov si, 0x8001
    stc
    rcr si, 17         # 17 MOD 17 = 0
    setc ch
    mov di, 0x0001
    stc
    rcr di, 16         # rotate right 16 of 17 = left 1: DI = 0x0003, CF = 0
    setc dh
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xff, 0x81u);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xff, 1u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xff, 0x40u);
  EXPECT_EQ((m.reg(cpu::kRbx) >> 8) & 0xff, 1u);
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 0x8001u);
  EXPECT_EQ((m.reg(cpu::kRcx) >> 8) & 0xff, 1u);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 0x0003u);
  EXPECT_EQ((m.reg(cpu::kRdx) >> 8) & 0xff, 0u);
}

TEST(InsnArithShift, RealModeForms) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    mov ax, 0x8421
    mov cl, 4
    shl ax, cl        # 0x4210, CF = 0 (bit 12 of 0x8421)
    mov bx, 0x8001
    sar bx, 1         # 0xc000, CF = 1
    setc dl
    mov si, 0x1234
    mov di, 0x5678
    shld si, di, 4    # 0x2345
    mov word ptr [0x200], 0x00f0
    ror word ptr [0x200], 8
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x4210u);
  EXPECT_EQ(m.reg(cpu::kRbx) & 0xffff, 0xc000u);
  EXPECT_EQ(m.reg(cpu::kRdx) & 0xff, 1u);
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 0x2345u);
  EXPECT_EQ(m.peek<uint16_t>(0x200), 0xf000u);
}

// ---- MUL IMUL DIV IDIV -------------------------------------------------------------------------

TEST(InsnArithMul, FormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const char* op : {"mul", "imul"}) {
    for (const char* src : {"bl", "ah", "r10b", "cx", "r9w", "ecx", "edx", "eax", "rbx", "rdx", "r14",
                            "byte ptr [0x200008]", "word ptr [0x200008]", "dword ptr [0x200008]", "qword ptr [0x200008]"})
      cases.emplace_back(std::string(op) + " " + src);
    for (const char* src : {"bl", "ah", "cx", "ecx", "edx", "byte ptr [0x200008]", "dword ptr [0x200008]"})
      cases.emplace_back(std::string(op) + " " + src, 32);
  }
  for (const char* f : {"imul ax, cx", "imul cx, cx", "imul esi, edi", "imul r11d, eax", "imul rsi, rdi", "imul r8, r8",
                        "imul dx, word ptr [0x200010]", "imul edx, dword ptr [0x200010]", "imul rdx, qword ptr [0x200010]",
                        "imul ax, cx, 0x7fff", "imul ax, cx, -3", "imul ecx, ecx, 100", "imul ebx, esi, 0x12345678",
                        "imul rax, rbx, -1", "imul r9, r10, 0x7fffffff", "imul rdi, rdi, -0x80000000",
                        "imul si, word ptr [0x200020], 9", "imul edi, dword ptr [0x200020], -100",
                        "imul r12, qword ptr [0x200020], 3"})
    cases.emplace_back(f);
  for (const char* f : {"imul ax, cx", "imul esi, edi", "imul ebx, esi, -7", "imul edx, dword ptr [0x200010], 1000"})
    cases.emplace_back(f, 32);
  diff(cases);
}

// Whether DIV/IDIV of `hi:lo` (2n bytes) by `d` raises #DE.
bool div_faults(unsigned n, bool is_signed, uint64_t hi, uint64_t lo, uint64_t d) {
  const unsigned bits = 8 * n;
  const uint64_t m = cpu::size_mask(n);
  hi &= m, lo &= m, d &= m;
  if (d == 0) return true;
  if (!is_signed) return hi >= d;
  const unsigned __int128 u = (static_cast<unsigned __int128>(hi) << bits) | lo;
  const __int128 dividend = static_cast<__int128>(u << (128 - 2 * bits)) >> (128 - 2 * bits);
  const __int128 divisor = cpu::sign_extend(d, n);
  const __int128 max = (__int128(1) << (bits - 1)) - 1, min = -max - 1;
  if (divisor == -1) return dividend < -max || dividend > -min;  // no negation: -2^127 has no positive
  const __int128 q = dividend / divisor;
  return q > max || q < min;
}

// Where a division's operands live: the dividend in AX / rDX:rAX, the divisor in a register
// (`reg`, a GPR number, high byte for AH..BH) or at data offset 8.
Fix div_inputs(unsigned n, bool is_signed, int reg, bool high_byte = false) {
  return [=](Regs& r, std::mt19937_64& rng, uint8_t* data) {
    auto hi = [&]() -> uint64_t { return n == 1 ? (r.gpr[0] >> 8) & 0xff : r.gpr[2]; };
    auto set_hi = [&](uint64_t v) {
      if (n == 1) r.gpr[0] = (r.gpr[0] & ~0xff00ull) | ((v & 0xff) << 8);
      else r.gpr[2] = v;
    };
    auto divisor = [&]() -> uint64_t {
      if (reg < 0) { uint64_t v; std::memcpy(&v, data + 8, 8); return v; }
      return high_byte ? r.gpr[reg] >> 8 : r.gpr[reg];
    };
    for (int tries = 0; div_faults(n, is_signed, hi(), r.gpr[0], divisor()); ++tries) {
      if (tries == 0 && is_signed) {
        // Often just a sign-extended dividend.
        const uint64_t lo = n == 1 ? r.gpr[0] & 0xff : r.gpr[0];
        set_hi(cpu::sign_extend(lo, n) < 0 ? ~0ull : 0);
      } else if (tries <= 1) {
        set_hi(hi() % (rng() % 5 + 1));
      } else {
        const uint64_t d = rng() % 1000 + 2;
        if (reg < 0) std::memcpy(data + 8, &d, 8);
        else if (high_byte) r.gpr[reg] = (r.gpr[reg] & ~0xff00ull) | ((d & 0xff) << 8);
        else r.gpr[reg] = d;
        set_hi(0);
      }
    }
  };
}

TEST(InsnArithDiv, FormsMatchHost) {
  std::vector<DiffCase> cases;
  for (const bool s : {false, true}) {
    const std::string op = s ? "idiv " : "div ";
    cases.push_back(DiffCase(op + "bl").with(div_inputs(1, s, 3)));
    cases.push_back(DiffCase(op + "ch").with(div_inputs(1, s, 1, true)));
    cases.push_back(DiffCase(op + "r9b").with(div_inputs(1, s, 9)));
    cases.push_back(DiffCase(op + "cx").with(div_inputs(2, s, 1)));
    cases.push_back(DiffCase(op + "esi").with(div_inputs(4, s, 6)));
    cases.push_back(DiffCase(op + "r13").with(div_inputs(8, s, 13)));
    cases.push_back(DiffCase(op + "byte ptr [0x200008]").with(div_inputs(1, s, -1)));
    cases.push_back(DiffCase(op + "word ptr [0x200008]").with(div_inputs(2, s, -1)));
    cases.push_back(DiffCase(op + "dword ptr [0x200008]").with(div_inputs(4, s, -1)));
    cases.push_back(DiffCase(op + "qword ptr [0x200008]").with(div_inputs(8, s, -1)));
    cases.push_back(DiffCase(op + "bh", 32).with(div_inputs(1, s, 3, true)));
    cases.push_back(DiffCase(op + "di", 32).with(div_inputs(2, s, 7)));
    cases.push_back(DiffCase(op + "ebx", 32).with(div_inputs(4, s, 3)));
    cases.push_back(DiffCase(op + "dword ptr [0x200008]", 32).with(div_inputs(4, s, -1)));
  }
  for (DiffCase& c : cases) c.iterations(1000);
  diff(cases);
}

struct DivFault {
  const char* text;
  uint64_t rax, rdx, rcx;
};

// #DE for a zero divisor and for quotients that do not fit, with nothing modified.
TEST(InsnArithDiv, DivideErrors) {
  const DivFault kCases[] = {
      {"div cl", 0x1234, 0, 0},
      {"div cl", 0x1234, 0, 0x12},                     // quotient 0x102 > 0xff
      {"div cx", 0, 0x10, 0x10},                       // DX = divisor
      {"div ecx", 0, 0xffffffff, 0xffffffff},
      {"div rcx", 0, 0, 0},
      {"div rcx", 5, 7, 7},
      {"idiv cl", 0x8000, 0, 0xff},                    // -32768 / -1
      {"idiv cl", 0xff80, 0, 0xff},                    // -128 / -1 = 128 > 127
      {"idiv cl", 0x0080, 0, 0x01},                    // 128 / 1
      {"idiv cx", 0x0000, 0x8000, 0xffff},             // -2^31 / -1
      {"idiv cx", 0x8000, 0xffff, 0xffff},             // -32768 / -1
      {"idiv ecx", 0x80000000, 0xffffffff, 0xffffffff},
      {"idiv ecx", 0, 0x80000000, 0xffffffff},         // -2^63 / -1 (host int64 overflow)
      {"idiv rcx", 0x8000000000000000, ~0ull, ~0ull},  // -2^63 / -1
      {"idiv rcx", 0, 0x8000000000000000, ~0ull},      // -2^127 / -1 (host int128 overflow)
      {"idiv rcx", 0, 0x8000000000000000, 1},
      {"idiv rcx", 0, 0, 0},
  };
  for (const DivFault& f : kCases) {
    SCOPED_TRACE(f.text);
    TestMachine m;
    m.enter_long64(layout::kCode);
    m.load_code(layout::kCode, std::string(f.text) + "\nhlt", 64);
    m.reg(cpu::kRax) = f.rax;
    m.reg(cpu::kRdx) = f.rdx;
    m.reg(cpu::kRcx) = f.rcx;
    m.cpu.set_rflags(0x2 | arch::rflags::kCF);
    ASSERT_EQ(m.run(), RunExit::kException);
    EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kDE));
    EXPECT_EQ(m.cpu.state.rip, layout::kCode);
    EXPECT_EQ(m.reg(cpu::kRax), f.rax);
    EXPECT_EQ(m.reg(cpu::kRdx), f.rdx);
    EXPECT_EQ(m.cpu.rflags() & kStatus, arch::rflags::kCF);
  }
}

// The edges right next to the faulting cases divide normally.
TEST(InsnArithDiv, LargestQuotients) {
  TestMachine m;
  m.enter_long64(layout::kCode);
  m.load_code(layout::kCode, R"(
    mov rax, 0x8000000000000000
    mov rdx, -1
    mov rcx, 1
    idiv rcx              # -2^63 / 1
    mov r8, rax
    mov rax, 0x8000000000000001
    mov rdx, -1
    mov rcx, -1
    idiv rcx              # (-2^63 + 1) / -1 = 2^63 - 1
    mov r9, rax
    mov rax, -1
    mov rdx, 0xfffffffffffffffe
    mov rcx, -1
    div rcx               # (2^128 - 2^64 - 1) / (2^64 - 1) = 2^64 - 1 rem 2^64 - 2
    mov r10, rax
    mov r11, rdx
    mov ax, 0xff81        # -127 / -1 = 127
    mov cl, 0xff
    idiv cl
    hlt
  )", 64);
  ASSERT_EQ(m.run(), RunExit::kHalted);
  EXPECT_EQ(m.reg(cpu::kR8), 0x8000000000000000u);
  EXPECT_EQ(m.reg(cpu::kR9), 0x7fffffffffffffffu);
  EXPECT_EQ(m.reg(cpu::kR10), ~0ull);
  EXPECT_EQ(m.reg(cpu::kR11), ~0ull - 1);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x007fu);
}

TEST(InsnArithDiv, RealModeDivideError) {
  TestMachine m;
  m.enter_real_mode(0x1000, 0);
  m.load_code(0x10000, R"(
    mov ax, 1000
    mov bl, 7
    div bl            # AL = 142, AH = 6
    mov si, ax
    mov ax, 0x1234
    mov dx, 0x0005
    mov cx, 0x100
    mul cx            # DX:AX = 0x123400 + 0 -> AX = 0x3400, DX = 0x12
    mov di, dx
    xor bl, bl
    div bl
    hlt
  )", 16);
  ASSERT_EQ(m.run(), RunExit::kException);
  EXPECT_EQ(m.cpu.pending_event().vector, uint8_t(arch::Vector::kDE));
  EXPECT_EQ(m.reg(cpu::kRsi) & 0xffff, 0x068eu);
  EXPECT_EQ(m.reg(cpu::kRdi) & 0xffff, 0x0012u);
  EXPECT_EQ(m.reg(cpu::kRax) & 0xffff, 0x3400u);
}

}  // namespace
}  // namespace nestvm::test::arith
