// VMX non-root operation: I/O instructions with unconditional I/O exiting and the I/O bitmaps,
// RDMSR/WRMSR with the MSR bitmaps and the x2APIC-mode virtualization of the TPR (SDM Vol. 3
// §26.1.3, §26.3, §25.6.4, §25.6.9); the I/O exit qualification (Table 28-5) and the INS/OUTS
// instruction information and guest-linear address (§28.2.1, §28.2.4).
#include <gtest/gtest.h>

#include "unit/cpu/vmx/nonroot_test_helpers.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;
using arch::Vector;
using arch::VmcsField;
using namespace arch::proc;
namespace ioq = arch::exit_qual::io;

// Sets the bitmap bit for `port` (A below 8000H, B above) and turns the bitmaps on.
void use_io_bitmaps(NonRootMachine& m) {
  m.proc(kUseIoBitmaps);
  m.vmwrite(VmcsField::IO_BITMAP_A, vmx_layout::kIoBitmapA);
  m.vmwrite(VmcsField::IO_BITMAP_B, vmx_layout::kIoBitmapB);
}
void set_io_bit(NonRootMachine& m, uint16_t port) {
  const uint64_t page = port < 0x8000 ? vmx_layout::kIoBitmapA : vmx_layout::kIoBitmapB;
  const uint64_t pa = page + (port & 0x7fff) / 8;
  m.poke<uint8_t>(pa, uint8_t(m.peek<uint8_t>(pa) | (1u << (port & 7))));
}

TEST(NonRootIo, UnconditionalIoExitingReportsSizeDirectionAndPort) {
  NonRootMachine m("in al, 0x60");
  m.proc(kUncondIoExiting);
  m.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), ioq::make(1, true, false, false, true, 0x60));
  EXPECT_EQ(m.insn_len(), 2u);
  NonRootMachine o("mov dx, 0x3f8\nout dx, eax");
  o.proc(kUncondIoExiting);
  o.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(o.exit_qualification(), ioq::make(4, false, false, false, false, 0x3f8));
  EXPECT_EQ(o.insn_len(), 1u);
  EXPECT_TRUE(o.io.outs.empty());
  // Without the control the port is accessed.
  NonRootMachine off("mov eax, 0x41\nmov dx, 0x3f8\nout dx, al\nvmcall");
  off.expect_exit(ExitReason::VMCALL);
  ASSERT_EQ(off.io.outs.size(), 1u);
  EXPECT_EQ(off.io.outs[0].port, 0x3f8);
}

TEST(NonRootIo, BitmapsSelectPortsAndOverrideUnconditionalExiting) {
  NonRootMachine m("out 0x81, al\nmov dx, 0x8002\nin ax, dx\nout 0x80, al");
  m.proc(kUncondIoExiting);  // ignored with the bitmaps
  use_io_bitmaps(m);
  set_io_bit(m, 0x80);
  set_io_bit(m, 0x8004);
  m.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), ioq::make(1, false, false, false, true, 0x80));
  EXPECT_EQ(m.io.outs.size(), 1u);  // port 81H went through
  NonRootMachine b("mov dx, 0x8003\nin ax, dx");
  use_io_bitmaps(b);
  set_io_bit(b, 0x8004);  // the second byte of the access
  b.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(b.exit_qualification(), ioq::make(2, true, false, false, false, 0x8003));
}

TEST(NonRootIo, AnAccessSpanningBitmapsAAndBChecksBoth) {
  NonRootMachine b("mov dx, 0x7fff\nin ax, dx\nvmcall");
  use_io_bitmaps(b);
  set_io_bit(b, 0x8000);
  b.expect_exit(ExitReason::IO_INSTRUCTION);
  NonRootMachine a("mov dx, 0x7ffe\nin eax, dx\nvmcall");
  use_io_bitmaps(a);
  set_io_bit(a, 0x7ffe);
  a.expect_exit(ExitReason::IO_INSTRUCTION);
  NonRootMachine none("mov dx, 0x7fff\nin ax, dx\nvmcall");
  use_io_bitmaps(none);
  set_io_bit(none, 0x7ffe);
  set_io_bit(none, 0x8001);
  none.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootIo, AnAccessWrappingPastFfffExits) {
  NonRootMachine m("mov dx, 0xffff\nin ax, dx\nvmcall");
  use_io_bitmaps(m);  // all bits clear
  m.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), ioq::make(2, true, false, false, false, 0xffff));
  NonRootMachine last("mov dx, 0xffff\nin al, dx\nvmcall");
  use_io_bitmaps(last);
  last.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootIo, TssPermissionCheckComesBeforeTheExit) {
  // CPL 3 > IOPL 0 and the TSS has no I/O bitmap that allows the port: #GP(0), not an exit.
  NonRootMachine m("in al, 0x60");
  m.poke<uint16_t>(layout::kTss + 0x66, 0x68);  // I/O map base past the TSS limit: every port denied
  m.proc(kUncondIoExiting);
  m.guest_cpl3();
  m.expect_exception(Vector::kGP);
  // With IOPL 3 the TSS is not consulted and the exit happens.
  NonRootMachine iopl("in al, 0x60");
  iopl.poke<uint16_t>(layout::kTss + 0x66, 0x68);
  iopl.proc(kUncondIoExiting);
  iopl.guest_cpl3();
  iopl.vmwrite(VmcsField::GUEST_RFLAGS, 0x3002);
  iopl.expect_exit(ExitReason::IO_INSTRUCTION);
}

TEST(NonRootIo, OutsReportsRepStringInfoAndLinearAddress) {
  NonRootMachine m("mov rsi, 0x200010\nmov ecx, 5\nmov dx, 0x1234\nrep outsb");
  m.proc(kUncondIoExiting);
  m.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), ioq::make(1, false, true, true, false, 0x1234));
  EXPECT_EQ(m.insn_info(), (2u << 7) | (3u << 15));  // 64-bit addresses, DS
  EXPECT_EQ(m.guest_linear_address(), 0x200010u);
  EXPECT_EQ(m.insn_len(), 2u);
  EXPECT_EQ(m.reg(cpu::kRcx), 5u);
  // A segment override names the segment and adds its base.
  NonRootMachine fs("mov rsi, 0x10\nmov dx, 0x1234\nouts dx, word ptr fs:[rsi]");
  fs.proc(kUncondIoExiting);
  fs.vmwrite(VmcsField::GUEST_FS_BASE, 0x300000);
  fs.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(fs.exit_qualification(), ioq::make(2, false, true, false, false, 0x1234));
  EXPECT_EQ(fs.insn_info(), (2u << 7) | (4u << 15));
  EXPECT_EQ(fs.guest_linear_address(), 0x300010u);
}

TEST(NonRootIo, InsWith32BitAddressesExitsBeforeCountAndOperandChecks) {
  // rCX = 0 and a non-canonical RDI: the exit still comes first.
  NonRootMachine m("mov rdi, 0x8000000000000020\nxor ecx, ecx\nmov dx, 0x60\nrep insd\n"
                   ".byte 0x67\ninsd");
  use_io_bitmaps(m);
  set_io_bit(m, 0x63);
  m.expect_exit(ExitReason::IO_INSTRUCTION);
  EXPECT_EQ(m.exit_qualification(), ioq::make(4, true, true, true, false, 0x60));
  EXPECT_EQ(m.guest_linear_address(), 0x8000000000000020u);
  m.skip_instruction();
  ASSERT_EQ(m.resume_and_run(), cpu::RunExit::kVmExit);
  EXPECT_EQ(m.exit_qualification(), ioq::make(4, true, true, false, false, 0x60));
  EXPECT_EQ(m.insn_info() & ((7u << 7) | (7u << 15)), 1u << 7);  // 32-bit addresses, ES
  EXPECT_EQ(m.guest_linear_address(), 0x20u);                     // EDI
}

// ---- MSRs -------------------------------------------------------------------------------------

// The MSR bitmap page at vmx_layout::kMsrBitmap: read-low, read-high, write-low, write-high.
void use_msr_bitmaps(NonRootMachine& m) {
  m.proc(kUseMsrBitmaps);
  m.vmwrite(VmcsField::MSR_BITMAP, vmx_layout::kMsrBitmap);
}
void set_msr_bit(NonRootMachine& m, uint32_t msr, bool write) {
  const uint64_t base = vmx_layout::kMsrBitmap + (msr >= 0xc0000000u ? 0x400 : 0) + (write ? 0x800 : 0);
  const uint32_t n = msr & 0x1fff;
  m.poke<uint8_t>(base + n / 8, uint8_t(m.peek<uint8_t>(base + n / 8) | (1u << (n % 8))));
}

TEST(NonRootMsr, WithoutBitmapsEveryRdmsrAndWrmsrExits) {
  NonRootMachine r("mov ecx, 0x1234\nrdmsr");  // no such MSR: the exit comes before the #GP
  r.expect_exit(ExitReason::MSR_READ);
  EXPECT_EQ(r.reg(cpu::kRcx), 0x1234u);
  EXPECT_EQ(r.insn_len(), 2u);
  EXPECT_EQ(r.exit_qualification(), 0u);
  NonRootMachine w("mov ecx, 0xc0000080\nxor eax, eax\nxor edx, edx\nwrmsr");
  w.expect_exit(ExitReason::MSR_WRITE);
  EXPECT_EQ(w.reg(cpu::kRcx), 0xc0000080u);
}

TEST(NonRootMsr, RdmsrAtCpl3IsGpBeforeTheExit) {
  NonRootMachine m("mov ecx, 0x10\nrdmsr");
  m.guest_cpl3();
  m.expect_exception(Vector::kGP);
}

TEST(NonRootMsr, BitmapsSeparateReadsWritesAndLowHighRanges) {
  struct Case { uint32_t msr; bool write_bit; const char* code; ExitReason reason; };
  const Case cases[] = {
      {0x174, false, "mov ecx, 0x174\nrdmsr", ExitReason::MSR_READ},           // read-low
      {0x174, true, "mov ecx, 0x174\nwrmsr", ExitReason::MSR_WRITE},           // write-low
      {0xc0000081, false, "mov ecx, 0xc0000081\nrdmsr", ExitReason::MSR_READ},  // read-high
      {0xc0000081, true, "mov ecx, 0xc0000081\nwrmsr", ExitReason::MSR_WRITE},  // write-high
      {0x1fff, false, "mov ecx, 0x1fff\nrdmsr", ExitReason::MSR_READ},         // last low
      {0xc0001fff, true, "mov ecx, 0xc0001fff\nwrmsr", ExitReason::MSR_WRITE},  // last high
  };
  for (const Case& k : cases) {
    NonRootMachine m(k.code);
    use_msr_bitmaps(m);
    set_msr_bit(m, k.msr, k.write_bit);
    m.expect_exit(k.reason);
    EXPECT_EQ(m.reg(cpu::kRcx), k.msr);
  }
  // The other three bitmaps' bits for the same MSR do not make the access exit: it executes.
  NonRootMachine m("mov ecx, 0xc0000081\nrdmsr\nmov rbx, rax\nmov ecx, 0x174\nxor eax, eax\nxor edx, edx\nwrmsr\nvmcall");
  use_msr_bitmaps(m);
  set_msr_bit(m, 0xc0000081, true);
  set_msr_bit(m, 0x174, false);
  set_msr_bit(m, 0x81, false);         // low bitmap, same offset as C0000081H
  set_msr_bit(m, 0xc0000174, true);    // high bitmap, same offset as 174H
  m.expect_exit(ExitReason::VMCALL);
}

TEST(NonRootMsr, IndicesOutsideBothRangesAlwaysExit) {
  for (uint32_t msr : {0x2000u, 0x40000000u, 0xbfffffffu, 0xc0002000u}) {
    NonRootMachine m("rdmsr");
    use_msr_bitmaps(m);  // all clear
    m.cpu.state.gpr[cpu::kRcx] = msr;  // RCX is not in the VMCS: entry leaves GPRs alone
    m.expect_exit(ExitReason::MSR_READ);
    EXPECT_EQ(m.reg(cpu::kRcx), msr);
  }
}

TEST(NonRootMsr, ClearBitLetsANonexistentMsrFault) {
  NonRootMachine m("mov ecx, 0x1234\nrdmsr");
  use_msr_bitmaps(m);
  m.expect_exception(Vector::kGP);
}

TEST(NonRootMsr, VirtualizeX2apicModeVirtualizesTheTprMsr) {
  constexpr uint64_t kVapic = 0xe000;
  NonRootMachine m("mov ecx, 0x808\nmov eax, 0x70\nxor edx, edx\nwrmsr\nmov eax, -1\nmov edx, -1\nrdmsr\nvmcall");
  m.proc(kUseTprShadow);
  m.proc2(arch::proc2::kVirtualizeX2apic);
  use_msr_bitmaps(m);
  m.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVapic);
  m.poke<uint64_t>(kVapic + 0x80, 0xffffffff000000ffull);
  m.expect_exit(ExitReason::VMCALL);
  EXPECT_EQ(m.peek<uint64_t>(kVapic + 0x80), 0x70u);  // bytes 84H-87H cleared
  EXPECT_EQ(m.reg(cpu::kRax), 0x70u);
  EXPECT_EQ(m.reg(cpu::kRdx), 0u);
  // EAX[31:8] set: #GP(0).
  NonRootMachine bad("mov ecx, 0x808\nmov eax, 0x170\nxor edx, edx\nwrmsr");
  bad.proc(kUseTprShadow);
  bad.proc2(arch::proc2::kVirtualizeX2apic);
  use_msr_bitmaps(bad);
  bad.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVapic);
  bad.expect_exception(Vector::kGP);
  // Below the TPR threshold: a trap-like exit after the WRMSR.
  NonRootMachine low("mov ecx, 0x808\nmov eax, 0x20\nxor edx, edx\nwrmsr\nvmcall");
  low.proc(kUseTprShadow);
  low.proc2(arch::proc2::kVirtualizeX2apic);
  use_msr_bitmaps(low);
  low.vmwrite(VmcsField::VIRTUAL_APIC_PAGE_ADDR, kVapic);
  low.vmwrite(VmcsField::TPR_THRESHOLD, 3);
  low.poke<uint32_t>(kVapic + 0x80, 0x30);
  low.expect_exit(ExitReason::TPR_BELOW_THRESHOLD);
  EXPECT_EQ(low.rip_offset(), encoded_length("mov ecx, 0x808\nmov eax, 0x20\nxor edx, edx\nwrmsr"));
}

}  // namespace
}  // namespace nestvm::test
