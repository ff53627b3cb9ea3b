// Differential checks for the integer arithmetic instruction tests: the same instruction text
// runs in the core (TestMachine, 64-bit or 32-bit protected mode) and natively on the host
// processor, on the same register, flag and memory inputs, and everything the instruction can
// change is compared.
//
// The host side maps its data area at the guest's data address (layout::kData), so that
// instructions with absolute memory operands mean the same on both sides. 32-bit code (for
// instructions that do not exist in 64-bit mode, e.g. DAA) runs on the host in compatibility
// mode through a far call to the 32-bit user code segment Linux provides (selector 0x23).
#pragma once
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "test_machine.h"

namespace nestvm::test::arith {

// Host layout, one fixed mapping below 4 GiB: data at the guest's data address, then the
// generated stub, the compatibility-mode stack, and the register block.
inline constexpr uint64_t kMapBase = layout::kData;      // 0x200000
inline constexpr uint64_t kMapSize = 0x200000;
inline constexpr uint64_t kDataSize = 0x4000;            // compared after every run
inline constexpr uint64_t kStub = kMapBase + 0x100000;   // generated code
inline constexpr uint64_t kStack32 = kMapBase + 0x1ef000;
inline constexpr uint64_t kRegBlock = kMapBase + 0x1f0000;

inline constexpr uint64_t kStatus = arch::rflags::kArith;

struct Regs {
  std::array<uint64_t, 16> gpr{};  // cpu::Gpr order; RSP is neither loaded nor compared
  uint64_t flags = 0x2;
};

inline const char* gpr_name(unsigned r) {
  static const char* const kNames[] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                       "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  return kNames[r];
}

// Runs instruction text natively. One stub at a time (tests run sequentially).
class HostCpu {
 public:
  // nullptr when the fixed mapping is unavailable (the differential checks are then skipped).
  static HostCpu* get() {
    static HostCpu* h = [] () -> HostCpu* {
      void* p = mmap(reinterpret_cast<void*>(kMapBase), kMapSize, PROT_READ | PROT_WRITE | PROT_EXEC,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p != reinterpret_cast<void*>(kMapBase)) return nullptr;
      return new HostCpu;
    }();
    return h;
  }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(kMapBase); }

  // Assembles one stub per instruction text (all for `bits`-bit code), at kStubSlot spacing.
  bool load(const std::vector<std::string>& insns, int bits) {
    std::string src = ".set R, " + std::to_string(kRegBlock) + "\n";
    for (size_t k = 0; k < insns.size(); ++k) src += stub(insns[k], bits, k);
    const std::vector<uint8_t> code = assemble(src, 64, kStub);
    if (code.empty() || code.size() > kMapSize - (kStub - kMapBase) - 0x10000) return false;
    std::memcpy(reinterpret_cast<void*>(kStub), code.data(), code.size());
    __builtin___clear_cache(reinterpret_cast<char*>(kStub), reinterpret_cast<char*>(kStub + code.size()));
    bits_ = bits;
    return true;
  }

  void select(size_t k) { entry_ = kStub + k * kStubSlot; }

  void run(Regs& r) {
    uint64_t* block = reinterpret_cast<uint64_t*>(kRegBlock);
    for (unsigned k = 0; k < 16; ++k) block[k] = r.gpr[k];
    block[16] = r.flags;
    reinterpret_cast<void (*)()>(entry_)();
    for (unsigned k = 0; k < 16; ++k)
      if (k != 4) r.gpr[k] = bits_ == 64 ? block[k] : uint32_t(block[k]);
    r.flags = bits_ == 64 ? block[16] : uint32_t(block[16]);
  }

 private:
  static constexpr uint64_t kStubSlot = 512;

  static std::string stub(const std::string& insn, int bits, size_t k) {
    const std::string n = std::to_string(k);
    std::string src = ".org " + std::to_string(k * kStubSlot) + "\n";
    src += "push rbx\npush rbp\npush r12\npush r13\npush r14\npush r15\n";
    if (bits == 64) {
      src += "push qword ptr [R+128]\npopfq\n";
      for (unsigned r = 0; r < 16; ++r)
        if (r != 4) src += "mov " + std::string(gpr_name(r)) + ", [R+" + std::to_string(8 * r) + "]\n";
      src += insn + "\n";
      for (unsigned r = 0; r < 16; ++r)
        if (r != 4) src += "mov [R+" + std::to_string(8 * r) + "], " + gpr_name(r) + "\n";
      src += "pushfq\npop qword ptr [R+128]\n";
    } else {
      static const char* const k32[] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
      src += "mov [R+136], rsp\nmov rsp, " + std::to_string(kStack32) + "\n";
      src += "call fword ptr [farptr" + n + "]\nmov rsp, [R+136]\njmp done" + n + "\n";
      src += "farptr" + n + ": .long c32_" + n + "\n.word 0x23\n.code32\nc32_" + n + ":\n";
      src += "mov ax, 0x2b\nmov ds, ax\nmov es, ax\npush dword ptr [R+128]\npopfd\n";
      for (unsigned r = 0; r < 8; ++r)
        if (r != 4) src += "mov " + std::string(k32[r]) + ", [R+" + std::to_string(8 * r) + "]\n";
      src += insn + "\n";
      for (unsigned r = 0; r < 8; ++r)
        if (r != 4) src += "mov [R+" + std::to_string(8 * r) + "], " + k32[r] + "\n";
      src += "pushfd\npop dword ptr [R+128]\nxor eax, eax\nmov ds, ax\nmov es, ax\nretf\n.code64\ndone" + n + ":\n";
    }
    src += "pop r15\npop r14\npop r13\npop r12\npop rbp\npop rbx\nret\n";
    return src;
  }

  int bits_ = 64;
  uint64_t entry_ = kStub;
};

// The same in the core: a TestMachine in 64-bit or 32-bit protected mode running `insn; hlt`.
class CoreCpu {
 public:
  explicit CoreCpu(cpu::CpuModel model = cpu::CpuModel::max()) : m_(64ull << 20, std::move(model)) {}
  TestMachine& machine() { return m_; }

  // Places `insn; hlt` for each text at kSlot spacing from layout::kCode.
  void load(const std::vector<std::string>& insns, int bits) {
    bits_ = bits;
    if (bits == 64) m_.enter_long64(layout::kCode);
    else m_.enter_protected32(layout::kCode);
    std::string src;
    for (size_t k = 0; k < insns.size(); ++k)
      src += ".org " + std::to_string(k * kSlot) + "\n" + insns[k] + "\nhlt\n";
    m_.load_code(layout::kCode, src, bits);
  }
  void select(size_t k) { entry_ = layout::kCode + k * kSlot; }

  // Runs once; returns the run's exit (kHalted when the instruction completed).
  cpu::RunExit run(Regs& r) {
    cpu::Cpu& c = m_.cpu;
    c.clear_pending_event();
    c.state.activity = cpu::Activity::kActive;
    c.state.rip = entry_;
    for (unsigned k = 0; k < 16; ++k)
      if (k != 4) c.state.gpr[k] = bits_ == 64 ? r.gpr[k] : uint32_t(r.gpr[k]);
    c.state.gpr[cpu::kRsp] = layout::kStackTop;
    c.set_rflags(r.flags);
    const cpu::RunExit e = m_.run(100);
    for (unsigned k = 0; k < 16; ++k)
      if (k != 4) r.gpr[k] = bits_ == 64 ? c.state.gpr[k] : uint32_t(c.state.gpr[k]);
    r.flags = c.rflags();
    return e;
  }

 private:
  static constexpr uint64_t kSlot = 64;
  TestMachine m_;
  int bits_ = 64;
  uint64_t entry_ = layout::kCode;
};

// Random inputs biased to the values where arithmetic changes behaviour.
class Inputs {
 public:
  explicit Inputs(uint64_t seed) : rng_(seed) {}
  std::mt19937_64& rng() { return rng_; }
  uint64_t value() {
    static constexpr uint64_t kEdges[] = {
        0, 1, 2, 3, 7, 8, 9, 0xf, 0x10, 0x11, 0x1f, 0x20, 0x21, 0x3f, 0x40, 0x41, 0x7f, 0x80, 0x81, 0xfe, 0xff,
        0x100, 0x101, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0x80000001,
        0xfffffffe, 0xffffffff, 0x100000000, 0x7fffffffffffffff, 0x8000000000000000, 0x8000000000000001,
        0xfffffffffffffffe, 0xffffffffffffffff, 0xffffffff80000000, 0xffffffffffff8000, 0xffffffffffffff80};
    const uint64_t r = rng_();
    switch (r % 8) {
      case 0: case 1: return kEdges[(r >> 8) % std::size(kEdges)];
      case 2: return (r >> 8) % 72;
      case 3: return (r >> 8) & 0xff;
      case 4: return (r >> 8) & 0xffff;
      case 5: return rng_() & 0xffffffff;
      default: return rng_();
    }
  }
  Regs regs() {
    Regs r;
    for (unsigned k = 0; k < 16; ++k) r.gpr[k] = value();
    r.flags = 0x2 | (rng_() & kStatus);
    return r;
  }

 private:
  std::mt19937_64 rng_;
};

// Adjusts the random inputs: registers and the data area (kDataSize bytes at layout::kData).
using Fix = std::function<void(Regs&, std::mt19937_64&, uint8_t* data)>;

struct DiffCase {
  DiffCase(std::string t, int b = 64) : text(std::move(t)), bits(b) {}
  DiffCase& mask(uint64_t f) { flags = f; return *this; }
  DiffCase& with(Fix f) { fix = std::move(f); return *this; }
  DiffCase& iterations(int n) { iters = n; return *this; }
  DiffCase& fresh_data(size_t at, size_t n) { fresh_at = at; fresh = n; return *this; }

  std::string text;              // Intel syntax; memory operands at absolute addresses in the data area
  int bits = 64;                 // 64: 64-bit mode; 32: 32-bit protected mode (compatibility mode on the host)
  uint64_t flags = kStatus;      // status flags to compare
  int iters = 300;
  Fix fix;                       // adjusts random inputs (e.g. avoids #DE)
  size_t fresh_at = 0, fresh = 64;  // data bytes re-randomized before each run (the rest once per case)
};

inline std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%#llx", static_cast<unsigned long long>(v));
  return b;
}

// One case on the selected stub and snippet.
inline void run_case(const DiffCase& c, HostCpu& host, CoreCpu& core) {
  SCOPED_TRACE(c.text + " (" + std::to_string(c.bits) + "-bit)");
  Inputs in(std::hash<std::string>{}(c.text) ^ uint64_t(c.bits));
  std::vector<uint8_t> data(kDataSize), guest(kDataSize);
  for (auto& b : data) b = uint8_t(in.rng()());
  int failures = 0;
  for (int it = 0; it < c.iters && failures < 3; ++it) {
    Regs r = in.regs();
    for (size_t k = 0; k < c.fresh; ++k) data[c.fresh_at + k] = uint8_t(in.rng()() % 3 == 0 ? 0xff : in.rng()());
    if (c.fix) c.fix(r, in.rng(), data.data());
    std::memcpy(host.data(), data.data(), kDataSize);
    core.machine().ram.write(layout::kData, data.data(), kDataSize);
    Regs hr = r, cr = r;
    host.run(hr);
    const cpu::RunExit e = core.run(cr);
    core.machine().ram.read(layout::kData, guest.data(), kDataSize);
    std::string diffs;
    if (e != cpu::RunExit::kHalted) {
      diffs += " run exit " + std::to_string(int(e));
      if (core.machine().cpu.has_pending_event())
        diffs += " vector " + std::to_string(core.machine().cpu.pending_event().vector);
    }
    for (unsigned k = 0; k < 16; ++k)
      if (k != 4 && hr.gpr[k] != cr.gpr[k])
        diffs += std::string(" ") + gpr_name(k) + ": host " + hex(hr.gpr[k]) + " core " + hex(cr.gpr[k]);
    if ((hr.flags ^ cr.flags) & c.flags)
      diffs += " flags: host " + hex(hr.flags & c.flags) + " core " + hex(cr.flags & c.flags);
    if (std::memcmp(host.data(), guest.data(), kDataSize) != 0) {
      size_t k = 0;
      while (host.data()[k] == guest[k]) ++k;
      diffs += " memory at +" + hex(k) + ": host " + hex(host.data()[k]) + " core " + hex(guest[k]);
    }
    if (!diffs.empty()) {
      ++failures;
      std::string inputs;
      for (unsigned k = 0; k < 16; ++k)
        if (k != 4) inputs += std::string(" ") + gpr_name(k) + "=" + hex(r.gpr[k]);
      ADD_FAILURE() << "inputs:" << inputs << " flags=" << hex(r.flags) << "\n differences:" << diffs;
    }
  }
}

// Runs every case on both sides with random inputs and random data; reports the first
// mismatches of each. Cases of one call share one assembly per side (assembling dominates).
inline void diff(const std::vector<DiffCase>& cases) {
  HostCpu* host = HostCpu::get();
  if (!host) GTEST_SKIP() << "cannot map the host data area at " << kMapBase;
  for (int bits : {64, 32}) {
    std::vector<const DiffCase*> group;
    std::vector<std::string> texts;
    for (const DiffCase& c : cases)
      if (c.bits == bits) { group.push_back(&c); texts.push_back(c.text); }
    if (group.empty()) continue;
    CoreCpu core;
    core.load(texts, bits);
    ASSERT_TRUE(host->load(texts, bits));
    for (size_t k = 0; k < group.size(); ++k) {
      core.select(k);
      host->select(k);
      run_case(*group[k], *host, core);
    }
  }
}

inline void diff(const DiffCase& c) { diff(std::vector<DiffCase>{c}); }

}  // namespace nestvm::test::arith
