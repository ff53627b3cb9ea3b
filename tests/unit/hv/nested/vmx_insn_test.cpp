// L1 executes VMX instructions under L0 (hv::Vm): each instruction's success and failure paths
// with their exact outcome (SDM Vol. 3 Chapter 31): VMsucceed, VMfailInvalid (CF), VMfailValid
// (ZF, the error in vmcs12), #UD, #GP, #SS, #PF. L1 is a 64-bit program on an identity map; its
// flags after each instruction are recorded in memory, and exceptions leave through a port.
#include <gtest/gtest.h>

#include <string>

#include "arch/cr.h"
#include "arch/msr_index.h"
#include "arch/rflags.h"
#include "hv/nested/nested_caps.h"
#include "hv/nested/nested_vmx.h"
#include "hv/vcpu.h"
#include "hv/vm.h"
#include "unit/cpu/test_machine.h"
#include "vmm/bare_machine.h"

namespace nestvm::test {
namespace {

using namespace arch;
using hv::nested::kVmcs12Revision;

constexpr uint64_t kCode = 0x100000, kHandlers = 0x180000, kFlags = 0x200000, kFault = 0x201000;
constexpr uint64_t kVmxon = 0x300000, kVmcsA = 0x301000, kVmcsB = 0x302000, kScratch = 0x303000;
constexpr int kPassed = 0x21;

// Port 0xf4 ends the test (value 0x21: the program ran to its end); 0xf5 reports an exception.
class ExitPorts : public hv::PioDevice {
 public:
  explicit ExitPorts(hv::Vm& vm) : vm_(vm) {}
  uint32_t pio_read(uint16_t, unsigned) override { return 0xff; }
  void pio_write(uint16_t port, unsigned, uint32_t value) override {
    vm_.request_stop(hv::StopReason::kDebugExit, port == 0xf4 ? int(value) : 0x100 | int(value & 0xff));
  }

 private:
  hv::Vm& vm_;
};

hv::VmConfig config(const cpu::CpuModel& model) {
  hv::VmConfig c;
  c.ram_bytes = 32ull << 20;
  c.model = model;
  return c;
}

cpu::CpuModel vmx_model() {
  cpu::CpuModel m = cpu::CpuModel::max();
  m.set(cpu::Feature::kVmx, true);
  return m;
}

// A VM whose one vCPU runs an L1 program once (run() may be called once per L1Machine).
class L1Machine {
 public:
  explicit L1Machine(const cpu::CpuModel& model = vmx_model()) : vm(config(model)), ports(vm) {
    vm.mem().add_slot(0, vm.config().ram_bytes);
    vm.io().add_pio(0xf4, 2, &ports, "exit");
    // GDT, TSS, identity map and the 64-bit state of the bare machine, copied into L1's RAM.
    cpu::FlatRam scratch(1 << 20);
    cpu::Cpu c(scratch, model);
    vmm::enter_long_mode(c, scratch, kCode, vmm::bare_layout::kStackTop);
    EXPECT_TRUE(vm.mem().write(0, scratch.data(), 1 << 20));
    state = c.state;
    state.cr4 |= cr4::kVMXE;
    // IDT: #UD, #SS, #GP and #PF go to stubs that record vector, error code and RIP.
    for (unsigned vec : {6u, 12u, 13u, 14u}) {
      const bool err = vec != 6;
      const uint64_t stub = kHandlers + vec * 0x40;
      const std::string src = std::string("mov qword ptr [") + std::to_string(kFault) + "], " + std::to_string(vec) + "\n" +
                              (err ? "pop rax\nmov [" + std::to_string(kFault + 8) + "], rax\n" : "") +
                              "pop rax\nmov [" + std::to_string(kFault + 16) + "], rax\n" +
                              "mov al, " + std::to_string(vec) + "\nout 0xf5, al\nhlt\n";
      const auto code = assemble(src, 64, stub);
      EXPECT_TRUE(vm.mem().write(stub, code.data(), code.size()));
      const uint64_t gate[2] = {(stub & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((stub >> 16 & 0xffff) << 48),
                                stub >> 32};
      EXPECT_TRUE(vm.mem().write(vmm::bare_layout::kIdt + vec * 16, gate, 16));
    }
    for (uint64_t region : {kVmxon, kVmcsA, kVmcsB}) poke32(region, kVmcs12Revision);
  }

  void poke32(uint64_t gpa, uint32_t v) { EXPECT_TRUE(vm.mem().write(gpa, &v, 4)); }
  void poke64(uint64_t gpa, uint64_t v) { EXPECT_TRUE(vm.mem().write(gpa, &v, 8)); }
  uint64_t peek64(uint64_t gpa) {
    uint64_t v = 0;
    EXPECT_TRUE(vm.mem().read(gpa, &v, 8));
    return v;
  }

  // Runs `body` as L1; returns the exit code (0x21 when it ran through, 0x100 | vector for an
  // exception).
  int run(const std::string& body) {
    const auto code = assemble(body + "\nmov al, 0x21\nout 0xf4, al\nhlt\n", 64, kCode);
    EXPECT_TRUE(vm.mem().write(kCode, code.data(), code.size()));
    vm.vcpu(0).set_initial_state(state);
    EXPECT_EQ(vm.run(), hv::StopReason::kDebugExit) << vm.stop_message();
    return vm.exit_code();
  }

  // Flags recorded by rec(k) after instruction k.
  static std::string rec(unsigned k) { return "\npushfq\npop rax\nmov [" + std::to_string(kFlags + 8 * k) + "], rax\n"; }
  uint64_t flags(unsigned k) { return peek64(kFlags + 8 * k) & (rflags::kCF | rflags::kZF | rflags::kPF | rflags::kAF | rflags::kSF | rflags::kOF); }
  uint32_t vm_instruction_error() { return uint32_t(nested().cached_vmcs12.read(VmcsField::VM_INSTRUCTION_ERROR)); }
  hv::nested::NestedVmx& nested() { return vm.vcpu(0).nested(); }
  uint64_t fault_vector() { return peek64(kFault); }
  uint64_t fault_error() { return peek64(kFault + 8); }

  // Locks IA32_FEATURE_CONTROL with "VMXON outside SMX", as firmware would, then VMXON.
  static std::string vmxon() {
    return "mov ecx, 0x3a\nmov eax, 5\nxor edx, edx\nwrmsr\n"
           "mov qword ptr [" + std::to_string(kScratch) + "], " + std::to_string(kVmxon) + "\n"
           "vmxon [" + std::to_string(kScratch) + "]\n";
  }
  static std::string ptr_insn(const char* insn, uint64_t ptr) {
    return "mov rax, " + std::to_string(ptr) + "\nmov [" + std::to_string(kScratch + 8) + "], rax\n" + insn + " [" +
           std::to_string(kScratch + 8) + "]\n";
  }

  hv::Vm vm;
  ExitPorts ports;
  cpu::CpuState state;
};

class VmxInsnTest : public ::testing::Test, public L1Machine {
 protected:
  explicit VmxInsnTest(const cpu::CpuModel& model = vmx_model()) : L1Machine(model) {}
};

constexpr uint64_t kSucceed = 0, kFailInvalid = rflags::kCF, kFailValid = rflags::kZF;

TEST_F(VmxInsnTest, VmxonSucceedsAndEntersVmxOperation) {
  ASSERT_EQ(run("push 0x8d7\npopfq\n" + vmxon() + rec(0)), kPassed);  // CF PF AF ZF SF OF were set
  EXPECT_EQ(flags(0), kSucceed);
  EXPECT_TRUE(nested().vmxon);
  EXPECT_EQ(nested().vmxon_ptr, kVmxon);
  EXPECT_EQ(nested().current_vmptr, hv::nested::kInvalidGpa);
}

TEST_F(VmxInsnTest, VmxonWithoutCr4VmxeIsUd) {
  state.cr4 &= ~cr4::kVMXE;
  EXPECT_EQ(run(vmxon()), 0x106);
  EXPECT_FALSE(nested().vmxon);
}

TEST_F(VmxInsnTest, VmxonWithFeatureControlUnlockedIsGp) {
  EXPECT_EQ(run("mov qword ptr [" + std::to_string(kScratch) + "], " + std::to_string(kVmxon) + "\nvmxon [" +
                std::to_string(kScratch) + "]\n"),
            0x10d);
  EXPECT_EQ(fault_error(), 0u);
  EXPECT_FALSE(nested().vmxon);
}

TEST_F(VmxInsnTest, VmxonWithLockedFeatureControlWithoutVmxBitIsGp) {
  EXPECT_EQ(run("mov ecx, 0x3a\nmov eax, 1\nxor edx, edx\nwrmsr\nvmxon [" + std::to_string(kScratch) + "]\n"), 0x10d);
}

TEST_F(VmxInsnTest, VmxonWithCr0NeClearIsGp) {
  state.cr0 &= ~cr0::kNE;
  EXPECT_EQ(run(vmxon()), 0x10d);
  EXPECT_FALSE(nested().vmxon);
}

TEST_F(VmxInsnTest, VmxonPointerChecksFailInvalid) {
  poke32(kVmcsB, kVmcs12Revision + 1);
  const std::string s = "mov ecx, 0x3a\nmov eax, 5\nxor edx, edx\nwrmsr\n" + ptr_insn("vmxon", kVmxon + 8) + rec(0) +
                        ptr_insn("vmxon", 1ull << 40) + rec(1) + ptr_insn("vmxon", kVmcsB) + rec(2);
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);  // not 4 KiB aligned
  EXPECT_EQ(flags(1), kFailInvalid);  // beyond the physical-address width
  EXPECT_EQ(flags(2), kFailInvalid);  // wrong revision
  EXPECT_FALSE(nested().vmxon);
}

TEST_F(VmxInsnTest, VmxonInVmxOperationFailsWith15) {
  ASSERT_EQ(run(vmxon() + ptr_insn("vmxon", kVmxon) + rec(0) + ptr_insn("vmptrld", kVmcsA) +
                ptr_insn("vmxon", kVmcsB) + rec(1)),
            kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);  // no current VMCS: VMfailInvalid
  EXPECT_EQ(flags(1), kFailValid);
  EXPECT_EQ(vm_instruction_error(), uint32_t(VmxError::VMXON_IN_VMX_ROOT_OPERATION));
  EXPECT_EQ(nested().vmxon_ptr, kVmxon);  // the first VMXON region stays
}

TEST_F(VmxInsnTest, InstructionsOutsideVmxOperationAreUd) {
  for (const char* insn : {"vmptrld [0x303000]", "vmclear [0x303000]", "vmptrst [0x303000]", "vmxoff", "vmcall",
                           "vmread rax, rbx", "vmwrite rax, rbx", "invept rax, [0x303000]", "invvpid rax, [0x303000]"}) {
    SCOPED_TRACE(insn);
    L1Machine m;
    EXPECT_EQ(m.run(insn), 0x106);
  }
  EXPECT_EQ(run("nop"), kPassed);
}

TEST_F(VmxInsnTest, VmptrldVmptrstAndTheirErrors) {
  poke32(kVmcsB, kVmcs12Revision | (1u << 31));  // a shadow VMCS: not offered
  const std::string s = vmxon() + ptr_insn("vmptrld", kVmcsA + 4) + rec(0) +  // no current: invalid
                        ptr_insn("vmptrld", kVmcsA) + rec(1) +
                        ptr_insn("vmptrld", kVmcsA + 0x800) + rec(2) + "mov rbx, 0x4400\nvmread [0x304000], rbx\n" +
                        ptr_insn("vmptrld", kVmxon) + rec(3) + "vmread [0x304008], rbx\n" +
                        ptr_insn("vmptrld", kVmcsB) + rec(4) + "vmread [0x304010], rbx\n" +
                        "vmptrst [0x304018]\n" + rec(5);
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);
  EXPECT_EQ(flags(1), kSucceed);
  EXPECT_EQ(flags(2), kFailValid);
  EXPECT_EQ(peek64(0x304000), uint64_t(VmxError::VMPTRLD_INVALID_ADDRESS));
  EXPECT_EQ(flags(3), kFailValid);
  EXPECT_EQ(peek64(0x304008), uint64_t(VmxError::VMPTRLD_VMXON_POINTER));
  EXPECT_EQ(flags(4), kFailValid);
  EXPECT_EQ(peek64(0x304010), uint64_t(VmxError::VMPTRLD_INCORRECT_VMCS_REVISION_ID));
  EXPECT_EQ(flags(5), kSucceed);
  EXPECT_EQ(peek64(0x304018), kVmcsA);
  EXPECT_EQ(nested().current_vmptr, kVmcsA);
}

TEST_F(VmxInsnTest, VmptrstWithoutCurrentVmcsStoresAllOnes) {
  poke64(0x304000, 0);
  ASSERT_EQ(run(vmxon() + "vmptrst [0x304000]\n" + rec(0)), kPassed);
  EXPECT_EQ(flags(0), kSucceed);
  EXPECT_EQ(peek64(0x304000), ~0ull);
}

TEST_F(VmxInsnTest, VmclearErrorsAndLaunchState) {
  // vmcs B was launched under this layout: VMCLEAR makes it clear in memory.
  const uint32_t launched_header[2] = {hv::nested::vmcs12_layout::kVersion, 1};
  ASSERT_TRUE(vm.mem().write(kVmcsB + 8, launched_header, 8));
  const std::string s = vmxon() + ptr_insn("vmclear", kVmcsA + 8) + rec(0) + ptr_insn("vmptrld", kVmcsA) +
                        ptr_insn("vmclear", kVmcsA + 8) + rec(1) + "mov rbx, 0x4400\nvmread [0x304000], rbx\n" +
                        ptr_insn("vmclear", kVmxon) + rec(2) + "vmread [0x304008], rbx\n" +
                        ptr_insn("vmclear", kVmcsB) + rec(3) + ptr_insn("vmclear", kVmcsA) + rec(4) +
                        "vmptrst [0x304010]\n";
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);
  EXPECT_EQ(flags(1), kFailValid);
  EXPECT_EQ(peek64(0x304000), uint64_t(VmxError::VMCLEAR_INVALID_ADDRESS));
  EXPECT_EQ(flags(2), kFailValid);
  EXPECT_EQ(peek64(0x304008), uint64_t(VmxError::VMCLEAR_VMXON_POINTER));
  EXPECT_EQ(flags(3), kSucceed);
  EXPECT_EQ(peek64(kVmcsB + 8) >> 32, 0u);  // launch state clear
  EXPECT_EQ(flags(4), kSucceed);
  EXPECT_EQ(peek64(0x304010), ~0ull);  // VMCLEAR of the current VMCS leaves none current
}

TEST_F(VmxInsnTest, VmreadVmwriteRegisterAndMemoryForms) {
  const std::string s = vmxon() + "mov rbx, 0x6c00\nvmread rax, rbx\n" + rec(0) +  // no current VMCS
                        ptr_insn("vmptrld", kVmcsA) +
                        "mov rbx, 0x6c00\nmov rax, 0x123456789a\nvmwrite rbx, rax\n" + rec(1) +  // HOST_CR0
                        "vmread rcx, rbx\nmov [0x304000], rcx\n" +
                        "mov qword ptr [0x304008], 0xabcd\nmov rbx, 0x6c02\nvmwrite rbx, [0x304008]\n" +  // HOST_CR3
                        "vmread [0x304010], rbx\n" +
                        "mov rbx, 0x2001\nmov rax, 0x11223344\nvmwrite rbx, rax\n" +  // IO_BITMAP_A high
                        "mov rbx, 0x2000\nvmread [0x304018], rbx\n" +
                        "mov rbx, 0x0800\nmov rax, 0x12345\nvmwrite rbx, rax\nvmread [0x304020], rbx\n" +  // 16-bit
                        "mov rbx, 0x7fff\nvmread rax, rbx\n" + rec(2) + "mov rbx, 0x4400\nvmread [0x304028], rbx\n" +
                        "mov rbx, 1\nshl rbx, 32\nvmwrite rbx, rax\n" + rec(3) +  // bits 63:32 set: unsupported
                        "mov rbx, 0x4402\nmov rax, 0x30\nvmwrite rbx, rax\n" + rec(4) +  // EXIT_REASON: MISC[29]
                        "vmread [0x304030], rbx\n";
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);
  EXPECT_EQ(flags(1), kSucceed);
  EXPECT_EQ(peek64(0x304000), 0x123456789aull);
  EXPECT_EQ(peek64(0x304010), 0xabcdull);
  EXPECT_EQ(peek64(0x304018), 0x1122334400000000ull);
  EXPECT_EQ(peek64(0x304020), 0x2345ull);  // truncated to 16 bits
  EXPECT_EQ(flags(2), kFailValid);
  EXPECT_EQ(peek64(0x304028), uint64_t(VmxError::UNSUPPORTED_VMCS_COMPONENT));
  EXPECT_EQ(flags(3), kFailValid);
  EXPECT_EQ(flags(4), kSucceed);
  EXPECT_EQ(peek64(0x304030), 0x30u);
  EXPECT_EQ(nested().cached_vmcs12.read(VmcsField::HOST_CR0), 0x123456789aull);
}

TEST_F(VmxInsnTest, VmxoffWritesVmcs12BackAndLeavesVmxOperation) {
  const std::string s = vmxon() + ptr_insn("vmptrld", kVmcsA) +
                        "mov rbx, 0x681e\nmov rax, 0xfeedf00d\nvmwrite rbx, rax\n" +  // GUEST_RIP
                        "vmxoff\n" + rec(0) + "vmxoff\n";
  EXPECT_EQ(run(s), 0x106);  // the second VMXOFF: not in VMX operation
  EXPECT_EQ(flags(0), kSucceed);
  EXPECT_FALSE(nested().vmxon);
  hv::nested::Vmcs12 back;
  ASSERT_TRUE(back.load(vm.mem(), kVmcsA));
  EXPECT_EQ(back.read(VmcsField::GUEST_RIP), 0xfeedf00du);
  EXPECT_EQ(back.revision, kVmcs12Revision);
}

// SDM Vol. 3 §24.8: in VMX operation, clearing a bit IA32_VMX_CR0/CR4_FIXED0 fixes to 1 is #GP(0)
// (CR0.NE and CR4.VMXE here); bits not fixed still change, and after VMXOFF the fixed ones too.
TEST_F(VmxInsnTest, Cr0NeCannotBeClearedInVmxOperation) {
  EXPECT_EQ(run(vmxon() + "mov rax, cr0\nbtr rax, 5\nmov cr0, rax\n"), 0x10d);
  EXPECT_EQ(fault_error(), 0u);
  EXPECT_TRUE(nested().vmxon);
  EXPECT_TRUE(vm.vcpu(0).guest_cr0() & cr0::kNE);
}

TEST_F(VmxInsnTest, Cr4VmxeCannotBeClearedInVmxOperation) {
  EXPECT_EQ(run(vmxon() + "mov rax, cr4\nbtr rax, 13\nmov cr4, rax\n"), 0x10d);
  EXPECT_TRUE(vm.vcpu(0).guest_cr4() & cr4::kVMXE);
}

TEST_F(VmxInsnTest, UnfixedCrBitsChangeInVmxOperationAndFixedOnesAfterVmxoff) {
  const std::string s = vmxon() + "mov rax, cr0\nbts rax, 3\nmov cr0, rax\nmov rax, cr4\nbts rax, 10\nmov cr4, rax\n" +
                        "vmxoff\nmov rax, cr0\nbtr rax, 5\nmov cr0, rax\nmov rax, cr4\nbtr rax, 13\nmov cr4, rax\n";
  ASSERT_EQ(run(s), kPassed);
  EXPECT_FALSE(nested().vmxon);
  EXPECT_TRUE(vm.vcpu(0).guest_cr0() & cr0::kTS);
  EXPECT_FALSE(vm.vcpu(0).guest_cr0() & cr0::kNE);
  EXPECT_TRUE(vm.vcpu(0).guest_cr4() & cr4::kOSXMMEXCPT);
  EXPECT_FALSE(vm.vcpu(0).guest_cr4() & cr4::kVMXE);
}

TEST_F(VmxInsnTest, InveptTypesAndEptp) {
  const std::string s = vmxon() + "mov rax, 3\ninvept rax, [0x304000]\n" + rec(0) +  // unsupported type, no VMCS
                        ptr_insn("vmptrld", kVmcsA) + "mov rax, 3\ninvept rax, [0x304000]\n" + rec(1) +
                        "mov qword ptr [0x304000], 0x7\nmov rax, 1\ninvept rax, [0x304000]\n" + rec(2) +  // walk 1
                        "mov qword ptr [0x304000], 0x5e\nmov rax, 1\ninvept rax, [0x304000]\n" + rec(3) +
                        "mov rax, 2\ninvept rax, [0x304000]\n" + rec(4);
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);
  EXPECT_EQ(flags(1), kFailValid);
  EXPECT_EQ(flags(2), kFailValid);
  EXPECT_EQ(vm_instruction_error(), uint32_t(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID));
  EXPECT_EQ(flags(3), kSucceed);  // WB, 4-level walk, A/D
  EXPECT_EQ(flags(4), kSucceed);
}

TEST_F(VmxInsnTest, InvvpidTypesAndDescriptor) {
  const std::string s = vmxon() + ptr_insn("vmptrld", kVmcsA) + "mov qword ptr [0x304000], 0\n" +
                        "mov rax, 1\ninvvpid rax, [0x304000]\n" + rec(0) +  // VPID 0
                        "mov rax, 2\ninvvpid rax, [0x304000]\n" + rec(1) +  // all contexts
                        "mov qword ptr [0x304000], 0x10005\nmov rax, 1\ninvvpid rax, [0x304000]\n" + rec(2) +
                        "mov qword ptr [0x304000], 5\nmov rax, 1\ninvvpid rax, [0x304000]\n" + rec(3) +
                        "mov rax, 0x800000000000\nmov [0x304008], rax\nmov rax, 0\ninvvpid rax, [0x304000]\n" + rec(4) +
                        "mov rax, 4\ninvvpid rax, [0x304000]\n" + rec(5);
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(flags(0), kFailValid);
  EXPECT_EQ(flags(1), kSucceed);
  EXPECT_EQ(flags(2), kFailValid);  // bits 63:16 of the descriptor set
  EXPECT_EQ(flags(3), kSucceed);
  EXPECT_EQ(flags(4), kFailValid);  // non-canonical address
  EXPECT_EQ(flags(5), kFailValid);  // type 4
  EXPECT_EQ(vm_instruction_error(), uint32_t(VmxError::INVALID_OPERAND_TO_INVEPT_INVVPID));
}

TEST_F(VmxInsnTest, InvalidationHooksSeeTheOperands) {
  std::vector<uint64_t> seen;
  nested().on_invept = [&](InveptType t, uint64_t eptp) { seen.insert(seen.end(), {uint64_t(t), eptp}); };
  nested().on_invvpid = [&](InvvpidType t, uint16_t vpid, uint64_t la) { seen.insert(seen.end(), {uint64_t(t), vpid, la}); };
  const std::string s = vmxon() + "mov qword ptr [0x304000], 0x1e\nmov qword ptr [0x304008], 0x5000\n" +
                        "mov rax, 1\ninvept rax, [0x304000]\nmov qword ptr [0x304000], 9\nmov rax, 0\ninvvpid rax, [0x304000]\n";
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 0x1e, 0, 9, 0x5000}));
}

TEST_F(VmxInsnTest, VmcallInVmxRootFailsWith1) {
  ASSERT_EQ(run(vmxon() + "vmcall\n" + rec(0) + ptr_insn("vmptrld", kVmcsA) + "vmcall\n" + rec(1)), kPassed);
  EXPECT_EQ(flags(0), kFailInvalid);
  EXPECT_EQ(flags(1), kFailValid);
  EXPECT_EQ(vm_instruction_error(), uint32_t(VmxError::VMCALL_IN_VMX_ROOT));
}

TEST_F(VmxInsnTest, MemoryOperandFaults) {
  // The 2 MiB page at 16 MiB is not present: #PF with CR2 at the operand.
  poke64(vmm::bare_layout::kPml4 + 0x2000 + 8 * 8, 0);
  EXPECT_EQ(run(vmxon() + "mov rax, 0x1000008\nvmptrld [rax]\n"), 0x10e);
  EXPECT_EQ(fault_error(), 0u);  // supervisor read of a not-present page
  EXPECT_EQ(vm.vcpu(0).core().state.cr2, 0x1000008u);
  EXPECT_EQ(nested().current_vmptr, hv::nested::kInvalidGpa);
}

TEST_F(VmxInsnTest, NonCanonicalOperandIsGpOrSsThroughRbp) {
  EXPECT_EQ(run(vmxon() + "mov rax, 0x800000000000\nvmptrld [rax]\n"), 0x10d);
  L1Machine m;
  EXPECT_EQ(m.run(vmxon() + "mov rbp, 0x800000000000\nvmptrld [rbp]\n"), 0x10c);
}

TEST_F(VmxInsnTest, CplAboveZeroIsGp) {
  // In VMX operation, VMXOFF at CPL 3 is #GP(0); so is VMXON there (before its operand is read).
  const std::string to_ring3 =
      "mov qword ptr [0x3004], 0x70000\npush 0x2b\npush 0x60000\npushfq\npush 0x33\nlea rax, [rip + 1f]\n"
      "push rax\niretq\n1:\n";
  EXPECT_EQ(run(vmxon() + to_ring3 + "vmxoff\n"), 0x10d);
  EXPECT_EQ(fault_error(), 0u);
  EXPECT_TRUE(nested().vmxon);
}

TEST_F(VmxInsnTest, VmxonAtCpl3IsGp) {
  const std::string s =
      "mov ecx, 0x3a\nmov eax, 5\nxor edx, edx\nwrmsr\nmov qword ptr [0x3004], 0x70000\npush 0x2b\npush 0x60000\n"
      "pushfq\npush 0x33\nlea rax, [rip + 1f]\npush rax\niretq\n1:\nvmxon [0x1000008]\n";
  poke64(vmm::bare_layout::kPml4 + 0x2000 + 8 * 8, 0);  // the operand would #PF: #GP comes first
  EXPECT_EQ(run(s), 0x10d);
  EXPECT_FALSE(nested().vmxon);
}

TEST_F(VmxInsnTest, CapabilityMsrsAndFeatureControl) {
  const std::string s = "mov ecx, 0x480\nrdmsr\nmov [0x304000], eax\nmov [0x304004], edx\n"
                        "mov ecx, 0x3a\nrdmsr\nmov [0x304008], eax\n"
                        "mov eax, 5\nxor edx, edx\nwrmsr\nrdmsr\nmov [0x30400c], eax\n"
                        "mov eax, 1\nwrmsr\n";  // locked: #GP
  EXPECT_EQ(run(s), 0x10d);
  EXPECT_EQ(peek64(0x304000) & 0x7fffffff, kVmcs12Revision);
  EXPECT_EQ(peek64(0x304000) >> 55 & 1, 1u);  // TRUE controls
  EXPECT_EQ(peek64(0x304008) & 0xffffffff, 0u);  // L0 starts IA32_FEATURE_CONTROL at 0
  EXPECT_EQ(peek64(0x30400c) & 0xffffffff, 5u);
  EXPECT_EQ(nested().feature_control(), 5u);
}

class VmxInsnNarrowedTest : public VmxInsnTest {
 protected:
  static cpu::CpuModel narrowed() {
    cpu::CpuModel m = vmx_model();
    m.remove_vmx_features(unsigned(hv::nested::VmxFeatureWord::kMisc), 1ull << 29);  // -vmx-vmwrite-vmexit-fields
    m.remove_vmx_features(unsigned(hv::nested::VmxFeatureWord::kSecondary), 1ull << 1);  // -vmx-ept
    return m;
  }
  VmxInsnNarrowedTest() : VmxInsnTest(narrowed()) {}
};

TEST_F(VmxInsnNarrowedTest, VmwriteReadOnlyFieldFailsWith13) {
  ASSERT_EQ(run(vmxon() + ptr_insn("vmptrld", kVmcsA) + "mov rbx, 0x4402\nmov rax, 0x30\nvmwrite rbx, rax\n" + rec(0)),
            kPassed);
  EXPECT_EQ(flags(0), kFailValid);
  EXPECT_EQ(vm_instruction_error(), uint32_t(VmxError::VMWRITE_READ_ONLY_VMCS_COMPONENT));
}

TEST_F(VmxInsnNarrowedTest, InveptWithoutEptIsUd) {
  EXPECT_EQ(run(vmxon() + "mov rax, 2\ninvept rax, [0x304000]\n"), 0x106);
}

TEST_F(VmxInsnNarrowedTest, MsrsReflectTheNarrowing) {
  const std::string s = "mov ecx, 0x48b\nrdmsr\nmov [0x304000], edx\nmov ecx, 0x485\nrdmsr\nmov [0x304004], eax\n";
  ASSERT_EQ(run(s), kPassed);
  EXPECT_EQ(peek64(0x304000) & 0xffffffff & proc2::kEnableEpt, 0u);
  EXPECT_EQ(peek64(0x304000) & 0xffffffff & proc2::kUnrestrictedGuest, 0u);  // needs EPT
  EXPECT_NE(peek64(0x304000) & 0xffffffff & proc2::kEnableVpid, 0u);
  EXPECT_EQ(peek64(0x304000) >> 32 & (1u << 29), 0u);
}

}  // namespace
}  // namespace nestvm::test
