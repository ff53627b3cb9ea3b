// nestvm: the program. Until the full machine exists (src/hv, src/vmm), running it with no
// arguments runs the built-in workloads on the processor core and reports its speed.
#include <fmt/core.h>

#include <chrono>
#include <cstring>

#include "guest/images.h"
#include "vmm/bare_machine.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      fmt::print("usage: nestvm\n  With no arguments: run the built-in workloads on nestvm's processor core.\n");
      return 0;
    }
    fmt::print(stderr, "nestvm: unknown option '{}' (try --help)\n", argv[i]);
    return 2;
  }
  fmt::print("nestvm: x86-64 processor core demo (the machine and hypervisor come next)\n");
  for (const char* name : {"workload_sieve", "workload_sort", "workload_hash"}) {
    const auto* image = nestvm::guest::find(name);
    nestvm::vmm::BareMachine m(64ull << 20);
    const uint64_t rounds = 2;
    m.ram().write(nestvm::guest::kWorkloadMailbox, &rounds, 8);
    m.load_and_enter(image->bytes, image->load_address);
    const auto t0 = std::chrono::steady_clock::now();
    const auto exit = m.run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t result = 0;
    m.ram().read(nestvm::guest::kWorkloadMailbox + 8, &result, 8);
    const uint64_t insns = m.cpu().instructions_retired();
    fmt::print("  {:<16} {} result={:#x}  {} instructions in {:.3f} s = {:.0f} MIPS\n", name,
               exit == nestvm::cpu::RunExit::kHalted ? "halted" : "STOPPED", result, insns, s, insns / s / 1e6);
  }
  return 0;
}
