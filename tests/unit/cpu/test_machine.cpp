#include "test_machine.h"

#include "vmm/bare_machine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nestvm::test {

using arch::SegReg;

std::vector<uint8_t> assemble(std::string_view src, int bits, uint64_t origin) {
  char dir[] = "/tmp/nestvm-asm-XXXXXX";
  if (!mkdtemp(dir)) { ADD_FAILURE() << "mkdtemp failed"; return {}; }
  const std::string d = dir;
  {
    std::ofstream f(d + "/a.s");
    f << ".intel_syntax noprefix\n.code" << bits << "\n" << src << "\n";
  }
  const std::string as_flags = bits == 64 ? "--64" : "--32";
  std::ostringstream cmd;
  cmd << "as " << as_flags << " -o " << d << "/a.o " << d << "/a.s 2>" << d << "/err && "
      << "ld -m " << (bits == 64 ? "elf_x86_64" : "elf_i386") << " -Ttext=0x" << std::hex << origin
      << " --oformat=binary -e 0 -o " << d << "/a.bin " << d << "/a.o 2>>" << d << "/err";
  const int rc = std::system(cmd.str().c_str());
  std::vector<uint8_t> out;
  if (rc != 0) {
    std::ifstream e(d + "/err");
    std::stringstream ss;
    ss << e.rdbuf();
    ADD_FAILURE() << "assembly failed:\n" << ss.str() << "\nsource:\n" << src;
  } else {
    std::ifstream b(d + "/a.bin", std::ios::binary);
    out.assign(std::istreambuf_iterator<char>(b), {});
  }
  std::system(("rm -rf " + d).c_str());
  return out;
}

uint32_t TestIo::in(uint16_t port, unsigned size) {
  auto it = in_values.find(port);
  return it == in_values.end() ? (~0u >> (32 - 8 * size)) : it->second;
}

void TestIo::out(uint16_t port, unsigned size, uint32_t value) { outs.push_back({port, size, value}); }

TestMachine::TestMachine(uint64_t ram_bytes, cpu::CpuModel m) : ram(ram_bytes), model(std::move(m)), cpu(ram, model, &io) {
  cpu.intercept_exceptions = true;
}

void TestMachine::set_idt_gate64(uint8_t vector, uint64_t handler, uint16_t selector, unsigned dpl, unsigned ist,
                                 bool trap) {
  const uint64_t type = trap ? 0xf : 0xe;
  const uint64_t lo = (handler & 0xffff) | (uint64_t(selector) << 16) | (uint64_t(ist & 7) << 32) | (type << 40) |
                      (uint64_t(dpl & 3) << 45) | (1ull << 47) | (((handler >> 16) & 0xffff) << 48);
  poke<uint64_t>(layout::kIdt + vector * 16, lo);
  poke<uint64_t>(layout::kIdt + vector * 16 + 8, handler >> 32);
}

void TestMachine::set_idt_gate32(uint8_t vector, uint32_t handler, uint16_t selector, unsigned dpl, bool trap) {
  const uint64_t type = trap ? 0xf : 0xe;
  const uint64_t d = (handler & 0xffff) | (uint64_t(selector) << 16) | (type << 40) | (uint64_t(dpl & 3) << 45) |
                     (1ull << 47) | (uint64_t(handler >> 16) << 48);
  poke<uint64_t>(layout::kIdt + vector * 8, d);
}

void TestMachine::load_code(uint64_t pa, std::string_view src, int bits) {
  write_bytes(pa, assemble(src, bits, pa));
}

void TestMachine::write_gdt() {
  cpu.state.gdtr = {layout::kGdt, vmm::write_flat_gdt(ram, layout::kGdt, layout::kTss)};
}

void TestMachine::load_seg(SegReg s, uint16_t selector) {
  arch::Descriptor d{peek<uint64_t>(layout::kGdt + (selector & ~7))};
  arch::Segment& seg = cpu.state.seg[unsigned(s)];
  seg.selector = selector;
  seg.base = d.base();
  seg.limit = d.limit();
  seg.ar = d.ar() | arch::ar::kAccessed;
  if (arch::selector_is_null(selector)) seg.ar = arch::ar::kUnusable;
}

void TestMachine::enter_real_mode(uint16_t cs, uint16_t ip) {
  cpu.reset();
  cpu.state.cr0 = arch::cr0::kET;
  cpu.state.seg[unsigned(SegReg::kCS)].selector = cs;
  cpu.state.seg[unsigned(SegReg::kCS)].base = uint64_t(cs) << 4;
  cpu.state.rip = ip;
  cpu.state.idtr = {0, 0x3ff};
  cpu.state.gpr[cpu::kRsp] = 0x7000;
  cpu.refresh_mode();
}

void TestMachine::enter_protected32(uint32_t eip) {
  cpu.reset();
  write_gdt();
  cpu.state.cr0 = arch::cr0::kPE | arch::cr0::kET | arch::cr0::kNE;
  load_seg(SegReg::kCS, sel::kCode32);
  for (SegReg s : {SegReg::kSS, SegReg::kDS, SegReg::kES, SegReg::kFS, SegReg::kGS}) load_seg(s, sel::kData);
  cpu.state.idtr = {layout::kIdt, 0x7ff};
  cpu.state.rip = eip;
  cpu.state.gpr[cpu::kRsp] = layout::kStackTop;
  cpu.refresh_mode();
}

void TestMachine::enter_long64(uint64_t rip) { vmm::enter_long_mode(cpu, ram, rip, layout::kStackTop); }

cpu::RunExit TestMachine::run(uint64_t budget) { return cpu.run(budget); }

}  // namespace nestvm::test
