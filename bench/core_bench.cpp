// The core benchmark: compiled C workloads (sieve, sort, hash) run in nestvm's processor core
// and natively on the same host, alternating, with medians. Reports guest MIPS and the
// slowdown against native, and the geometric mean of the slowdowns.
//   core_bench [--runs N] [--scale S] [--json FILE]
#include <fmt/core.h>
#include <fmt/os.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "guest/images.h"
#include "vmm/bare_machine.h"

extern "C" {
uint64_t nestvm_native_sieve(uint64_t);
uint64_t nestvm_native_sort(uint64_t);
uint64_t nestvm_native_hash(uint64_t);
}

namespace {

using Clock = std::chrono::steady_clock;

struct Workload {
  const char* name;
  uint64_t (*native)(uint64_t);
  uint64_t rounds;
};

struct CoreRun {
  double seconds;
  uint64_t instructions;
  uint64_t result;
  bool ok;
};

CoreRun run_in_core(const nestvm::guest::Image& image, uint64_t rounds) {
  nestvm::vmm::BareMachine m(64ull << 20);
  m.ram().write(nestvm::guest::kWorkloadMailbox, &rounds, 8);
  m.load_and_enter(image.bytes, image.load_address);
  const auto t0 = Clock::now();
  const auto exit = m.run();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  uint64_t result = 0;
  m.ram().read(nestvm::guest::kWorkloadMailbox + 8, &result, 8);
  return {s, m.cpu().instructions_retired(), result, exit == nestvm::cpu::RunExit::kHalted};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  double scale = 1.0;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--scale" && i + 1 < argc) scale = std::max(0.01, std::atof(argv[++i]));
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else {
      fmt::print(stderr, "usage: core_bench [--runs N] [--scale S] [--json FILE]\n");
      return 2;
    }
  }
  const Workload workloads[] = {
      {"sieve", nestvm_native_sieve, 8},
      {"sort", nestvm_native_sort, 4},
      {"hash", nestvm_native_hash, 8},
  };
  fmt::print("{:<8} {:>12} {:>12} {:>14} {:>10} {:>9}\n", "workload", "native ms", "core ms", "guest insns",
             "MIPS", "slowdown");
  double log_sum = 0;
  std::string json_rows;
  bool all_ok = true;
  for (const Workload& w : workloads) {
    const auto* image = nestvm::guest::find(std::string("workload_") + w.name);
    const uint64_t rounds = std::max<uint64_t>(1, uint64_t(double(w.rounds) * scale));
    std::vector<double> native_s, core_s;
    uint64_t insns = 0;
    bool ok = true;
    for (int r = 0; r < runs; ++r) {  // alternate native and core runs
      const auto t0 = Clock::now();
      const uint64_t expect = w.native(rounds);
      native_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      const CoreRun c = run_in_core(*image, rounds);
      core_s.push_back(c.seconds);
      insns = c.instructions;
      if (!c.ok || c.result != expect) {
        ok = false;
        fmt::print(stderr, "{}: core result {:#x} (exit ok: {}) != native {:#x}\n", w.name, c.result, c.ok, expect);
      }
    }
    all_ok &= ok;
    const double n = median(native_s), c = median(core_s);
    const double slowdown = c / n;
    log_sum += std::log(slowdown);
    fmt::print("{:<8} {:>12.2f} {:>12.2f} {:>14} {:>10.1f} {:>8.1f}x\n", w.name, n * 1e3, c * 1e3, insns,
               double(insns) / c / 1e6, slowdown);
    json_rows += fmt::format("{}{{\"workload\":\"{}\",\"native_ms\":{:.3f},\"core_ms\":{:.3f},\"guest_instructions\":{},"
                             "\"mips\":{:.1f},\"slowdown\":{:.2f}}}",
                             json_rows.empty() ? "" : ",", w.name, n * 1e3, c * 1e3, insns, double(insns) / c / 1e6,
                             slowdown);
  }
  const double geo = std::exp(log_sum / std::size(workloads));
  fmt::print("geometric mean slowdown: {:.1f}x (medians of {} alternating runs)\n", geo, runs);
  if (!json.empty()) {
    auto f = fmt::output_file(json);
    f.print("{{\"runs\":{},\"geomean_slowdown\":{:.2f},\"workloads\":[{}]}}\n", runs, geo, json_rows);
  }
  return all_ok ? 0 : 1;
}
