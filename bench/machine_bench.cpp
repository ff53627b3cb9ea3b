// The machine benchmark (docs/performance.md, "Machine: nestvm vs QEMU TCG"): the benchmark
// images of guest/bench booted by build/nestvm and by qemu-system-x86_64 -accel tcg with the same
// command line, alternating within each round, wall-clock medians and the ratio; plus nestvm
// with -accel nestvm,ept=off (shadow paging in L0) against the default (EPT01); plus nestvm with
// --level 2 (the image runs as L2 under the built-in minivisor) against --level 1 (docs/performance.md,
// "Nested: L2 vs L1"), with the exit counts of each level from -stats-json of each image's first run.
//   machine_bench [--runs N] [--scale S] [--nestvm PATH] [--qemu PATH] [--images DIR]
//                 [--timeout SEC] [--json FILE]
// Every run must exit through isa-debug-exit with status 1 and report no failure; the CPU-bound
// results are checked in the guest against values computed here natively from the same source.
// A configuration whose run fails is reported as such (status, last stderr line) and not run
// again. Besides wall-clock, each guest reports the TSC time of its work alone, so the boot and
// exit overhead (also measured: the "boot" row runs the CPU image with no work) can be taken out.
#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/os.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
uint64_t nestvm_native_sieve(uint64_t);
uint64_t nestvm_native_sort(uint64_t);
uint64_t nestvm_native_hash(uint64_t);
}
extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// The machine both programs are asked for, as the guest tests spell it
// (tests/guest/run_guest_test.py); the accelerator comes from the configuration.
const std::vector<std::string> kMachineArgs = {"-machine", "pc", "-nodefaults", "-display", "none", "-serial", "stdio",
                                               "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
                                               "-m", "512M"};

struct Config {
  std::string name;     // "nestvm", "qemu", "nestvm-shadow", "nestvm-l2"
  std::string program;  // resolved from the options
  std::string accel;
  std::vector<std::string> extra;  // nestvm's own options (--level)
  bool stats = false;              // collect -stats-json from each image's first run
  std::map<std::string, std::string> failure;  // by image: why its first failed run failed
};

struct Image {
  std::string name;  // row name
  std::string file;  // guest/bench/<file>.elf
  std::string append;
};

struct RunResult {
  bool ok = false;
  double wall_s = 0;
  double guest_s = 0;  // sum of the guest's BENCH us= figures
  double cpu_s = 0;    // user + system time of the process (all its threads)
  double user_s = 0;   // its user time alone: without the host kernel's page zeroing (THP) for fresh RAM
  std::string why;
  nlohmann::json stats;  // nestvm's -stats-json, when asked for
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string last_line(const std::string& s) {
  std::istringstream in(s);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// Runs argv with stdin from /dev/null, collecting stdout and stderr; kills it after timeout_s.
// Returns the wait status (or -1 if it could not start or timed out); *cpu_s gets its CPU time
// (user + system), *user_s its user time.
int run_process(const std::vector<std::string>& args, double timeout_s, std::string& out, std::string& err,
                double* cpu_s, double* user_s) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC)) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    err = fmt::format("cannot run {}: {}", args[0], strerror(rc));
    return -1;
  }
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&out, &err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, int(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, size_t(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  *cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  *user_s = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6;
  if (timed_out) {
    err += fmt::format("\nno exit within {:g} s", timeout_s);
    return -1;
  }
  return status;
}

RunResult run_once(const Config& c, const Image& img, const std::string& image_dir, double timeout_s,
                   const std::string& stats_file) {
  std::vector<std::string> args = {c.program, "-accel", c.accel};
  args.insert(args.end(), c.extra.begin(), c.extra.end());
  args.insert(args.end(), kMachineArgs.begin(), kMachineArgs.end());
  args.insert(args.end(), {"-kernel", image_dir + "/" + img.file + ".elf", "-append", img.append});
  if (!stats_file.empty()) {
    unlink(stats_file.c_str());
    args.insert(args.end(), {"-stats-json", stats_file});
  }
  std::string out, err;
  RunResult r;
  const auto t0 = Clock::now();
  const int status = run_process(args, timeout_s, out, err, &r.cpu_s, &r.user_s);
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // isa-debug-exit with 0 (nothing failed) is status 1 in both programs.
  if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 1) {
    const std::string how = status < 0 ? "did not finish"
                            : WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                : fmt::format("signal {}", WTERMSIG(status));
    const std::string detail = last_line(err).empty() ? last_line(out) : last_line(err);
    r.why = fmt::format("{} ({})", how, detail);
    return r;
  }
  static const std::regex bench_re(R"(^BENCH: .* us=(\d+)\r?$)"), summary_re(R"(^SUMMARY: .*: (\d+) passed, 0 failed)");
  std::istringstream in(out);
  std::string line;
  bool summary = false;
  for (std::smatch m; std::getline(in, line);) {
    if (line.rfind("FAIL:", 0) == 0) r.why = line;
    if (std::regex_search(line, m, bench_re)) r.guest_s += std::stod(m[1]) / 1e6;
    if (std::regex_search(line, m, summary_re) && std::stoi(m[1]) > 0) summary = true;
  }
  if (r.why.empty() && !summary) r.why = "no passing SUMMARY line";
  if (r.why.empty() && !stats_file.empty()) {
    std::ifstream f(stats_file);
    r.stats = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (r.stats.is_discarded() || !r.stats.contains("total")) r.why = "no statistics in " + stats_file;
    unlink(stats_file.c_str());
  }
  r.ok = r.why.empty();
  return r;
}

// The per-level exit counts of one run's -stats-json (src/vmm/stats_report.cpp): exits from L1,
// L2 exits handled by L0 and reflected to L1 (each by reason), EPT02 violations.
nlohmann::json level_counts(const nlohmann::json& stats) {
  const nlohmann::json& t = stats["total"];
  return {{"exits_from_l1", t.value("total_exits", uint64_t(0))},
          {"exits_from_l1_by_reason", t.value("exits", nlohmann::json::object())},
          {"l2_exits_l0", t.value("total_l2_exits_l0", uint64_t(0))},
          {"l2_exits_l0_by_reason", t.value("l2_exits_l0", nlohmann::json::object())},
          {"l2_exits_reflected", t.value("total_l2_exits_reflected", uint64_t(0))},
          {"l2_exits_reflected_by_reason", t.value("l2_exits_reflected", nlohmann::json::object())},
          {"l2_entries", t.value("nested_entries", uint64_t(0))},
          {"ept02_violations", stats["mmu"].value("ept02_violations", uint64_t(0))},
          {"ept_violations", t.value("ept_violations", uint64_t(0))},
          {"guest_ns", t.value("guest_ns", uint64_t(0))},
          {"l0_ns", t.value("l0_ns", uint64_t(0))}};
}

// "NAME n, NAME n, ..." by decreasing count: the reasons of one by-reason object.
std::string reasons(const nlohmann::json& by_reason) {
  std::vector<std::pair<uint64_t, std::string>> v;
  for (const auto& [name, n] : by_reason.items()) v.emplace_back(n.get<uint64_t>(), name);
  std::sort(v.rbegin(), v.rend());
  std::string s;
  for (const auto& [n, name] : v) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", name, n);
  return s.empty() ? "-" : s;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  double scale = 1.0, timeout_s = 300;
  std::string nestvm = NESTVM_BENCH_NESTVM, qemu = "qemu-system-x86_64", image_dir = NESTVM_BENCH_IMAGE_DIR, json;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--runs" && has) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--scale" && has) scale = std::max(0.01, std::atof(argv[++i]));
    else if (a == "--nestvm" && has) nestvm = argv[++i];
    else if (a == "--qemu" && has) qemu = argv[++i];
    else if (a == "--images" && has) image_dir = argv[++i];
    else if (a == "--timeout" && has) timeout_s = std::atof(argv[++i]);
    else if (a == "--json" && has) json = argv[++i];
    else {
      fmt::print(stderr,
                 "usage: machine_bench [--runs N] [--scale S] [--nestvm PATH] [--qemu PATH] [--images DIR] "
                 "[--timeout SEC] [--json FILE]\n");
      return 2;
    }
  }
  auto scaled = [&](uint64_t n) { return std::max<uint64_t>(1, uint64_t(double(n) * scale)); };
  // Sized so that one nestvm run of each image takes 1-2 s on the reference machine.
  const uint64_t sieve = scaled(32), sort = scaled(16), hash = scaled(32), pf_rounds = scaled(16);
  const std::string cpu_append =
      fmt::format("sieve={} sort={} hash={} expect_sieve={:#x} expect_sort={:#x} expect_hash={:#x}", sieve, sort,
                  hash, nestvm_native_sieve(sieve), nestvm_native_sort(sort), nestvm_native_hash(hash));
  const std::vector<Image> images = {
      {"cpu", "cpu_bench", cpu_append},
      {"pagefault", "pf_bench", fmt::format("rounds={} pages=4096 frames=61440", pf_rounds)},
      {"boot", "cpu_bench", "sieve=0 sort=0 hash=0"},
  };
  // nestvm (--level 1) and nestvm-l2 also write -stats-json on each image's first run: the counters
  // run anyway, and writing them at exit costs well under a millisecond.
  std::vector<Config> configs = {{"nestvm", nestvm, "tcg", {"--level", "1"}, true, {}},
                                 {"qemu", qemu, "tcg", {}, false, {}},
                                 {"nestvm-shadow", nestvm, "nestvm,ept=off", {}, false, {}},
                                 {"nestvm-l2", nestvm, "tcg", {"--level", "2"}, true, {}}};
  const std::string stats_file = fmt::format("/tmp/machine_bench.{}.stats.json", getpid());

  double load[3] = {};
  getloadavg(load, 3);
  const double load_before = load[0];
  // wall[image][config], ... (seconds)
  std::map<std::string, std::map<std::string, std::vector<double>>> wall, guest, cpu, user;
  std::map<std::string, std::map<std::string, nlohmann::json>> counts;  // [image][config]
  for (int r = 0; r < runs; ++r) {
    for (const Image& img : images) {
      for (Config& c : configs) {
        if (c.failure.count(img.name)) continue;
        const bool want_stats = c.stats && !counts[img.name].count(c.name);
        const RunResult res = run_once(c, img, image_dir, timeout_s, want_stats ? stats_file : std::string());
        if (!res.ok) {
          c.failure[img.name] = fmt::format("round {}: {}", r + 1, res.why);
          fmt::print(stderr, "{} on the {} image: FAILED in {}; not run again\n", c.name, img.name,
                     c.failure[img.name]);
          continue;
        }
        wall[img.name][c.name].push_back(res.wall_s);
        guest[img.name][c.name].push_back(res.guest_s);
        cpu[img.name][c.name].push_back(res.cpu_s);
        user[img.name][c.name].push_back(res.user_s);
        if (want_stats) counts[img.name][c.name] = level_counts(res.stats);
      }
    }
  }
  getloadavg(load, 3);
  std::fflush(stderr);

  nlohmann::json out;
  out["runs"] = runs;
  out["scale"] = scale;
  out["date"] = std::time(nullptr);
  out["loadavg_before"] = load_before;
  out["loadavg_after"] = load[0];
  out["command"] = kMachineArgs;
  bool all_ok = true;
  for (const Config& c : configs) {
    out["configs"][c.name] = {{"program", c.program}, {"accel", c.accel}, {"failures", c.failure}};
    // The shadow MMU is allowed to fail (it is reported); the two peers and level 2 must not.
    if (!c.failure.empty() && c.name != "nestvm-shadow") all_ok = false;
  }
  auto ms = [](double s) { return s > 0 ? fmt::format("{:.0f}", s * 1e3) : std::string("-"); };
  auto ratio = [](double a, double b) { return a > 0 && b > 0 ? fmt::format("{:.2f}", a / b) : std::string("-"); };
  fmt::print("\nmedians of {} alternating runs (load average {:.2f} before, {:.2f} after)\n", runs, load_before,
             load[0]);
  static constexpr char row[] = "{:<10} {:>7} {:>7} {:>5} {:>7} {:>7} {:>5} {:>7} {:>7} {:>5} {:>7} {:>7} {:>5} {:>5}\n";
  fmt::print(row, "", "wall ms", "", "speed", "guest", "ms", "speed", "CPU ms", "", "speed", "shadow", "shadow", "EPT",
             "EPT");
  fmt::print(row, "image", "nestvm", "qemu", "n/q", "nestvm", "qemu", "n/q", "nestvm", "qemu", "n/q", "wall ms",
             "CPU ms", "wall", "CPU");
  for (const Image& img : images) {
    auto& w = wall[img.name];
    auto& g = guest[img.name];
    auto& u = cpu[img.name];
    const double n = median(w["nestvm"]), q = median(w["qemu"]), s = median(w["nestvm-shadow"]);
    const double gn = median(g["nestvm"]), gq = median(g["qemu"]);
    const double un = median(u["nestvm"]), uq = median(u["qemu"]), us = median(u["nestvm-shadow"]);
    fmt::print(row, img.name, ms(n), ms(q), ratio(q, n), ms(gn), ms(gq), ratio(gq, gn), ms(un), ms(uq), ratio(uq, un),
               ms(s), ms(us), ratio(s, n), ratio(us, un));
    auto& j = out["images"][img.name];
    j["append"] = img.append;
    for (const Config& c : configs) {
      j[c.name]["wall_s"] = w[c.name];
      j[c.name]["guest_s"] = g[c.name];
      j[c.name]["cpu_s"] = u[c.name];
      j[c.name]["median_wall_s"] = median(w[c.name]);
      j[c.name]["median_guest_s"] = median(g[c.name]);
      j[c.name]["median_cpu_s"] = median(u[c.name]);
      j[c.name]["user_s"] = user[img.name][c.name];
      j[c.name]["median_user_s"] = median(user[img.name][c.name]);
    }
    // Speeds relative to nestvm with EPT01: > 1 means nestvm is faster.
    j["nestvm_speed_vs_qemu_wall"] = n > 0 && q > 0 ? q / n : 0;
    j["nestvm_speed_vs_qemu_guest"] = gn > 0 && gq > 0 ? gq / gn : 0;
    j["nestvm_speed_vs_qemu_cpu"] = un > 0 && uq > 0 ? uq / un : 0;
    j["ept_speed_vs_shadow_wall"] = n > 0 && s > 0 ? s / n : 0;
    j["ept_speed_vs_shadow_cpu"] = un > 0 && us > 0 ? us / un : 0;
  }
  // Nested: the same images at --level 2 against --level 1.
  fmt::print("\nnested: --level 2 (under the minivisor) against --level 1, same rounds\n");
  static constexpr char nrow[] =
      "{:<10} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6}\n";
  fmt::print(nrow, "", "wall ms", "", "", "guest", "ms", "", "CPU ms", "", "", "user", "ms", "");
  fmt::print(nrow, "image", "L1", "L2", "L2/L1", "L1", "L2", "L2/L1", "L1", "L2", "L2/L1", "L1", "L2", "L2/L1");
  for (const Image& img : images) {
    auto& w = wall[img.name];
    auto& g = guest[img.name];
    auto& u = cpu[img.name];
    const double w1 = median(w["nestvm"]), w2 = median(w["nestvm-l2"]);
    const double g1 = median(g["nestvm"]), g2 = median(g["nestvm-l2"]);
    const double u1 = median(u["nestvm"]), u2 = median(u["nestvm-l2"]);
    const double s1 = median(user[img.name]["nestvm"]), s2 = median(user[img.name]["nestvm-l2"]);
    fmt::print(nrow, img.name, ms(w1), ms(w2), ratio(w2, w1), ms(g1), ms(g2), ratio(g2, g1), ms(u1), ms(u2),
               ratio(u2, u1), ms(s1), ms(s2), ratio(s2, s1));
    auto& j = out["images"][img.name];
    j["l2_over_l1_wall"] = w1 > 0 && w2 > 0 ? w2 / w1 : 0;
    j["l2_over_l1_guest"] = g1 > 0 && g2 > 0 ? g2 / g1 : 0;
    j["l2_over_l1_cpu"] = u1 > 0 && u2 > 0 ? u2 / u1 : 0;
    j["l2_over_l1_user"] = s1 > 0 && s2 > 0 ? s2 / s1 : 0;
    for (const char* level : {"nestvm", "nestvm-l2"})
      if (counts[img.name].count(level)) j[level]["exit_counts"] = counts[img.name][level];
  }
  fmt::print("\nexit counts of each image's first run (-stats-json)\n");
  static constexpr char crow[] = "{:<10} {:>5} {:>12} {:>12} {:>12} {:>12}\n";
  fmt::print(crow, "image", "level", "exits L1", "L2 exits L0", "L2 refl. L1", "EPT02 viol.");
  for (const Image& img : images)
    for (const auto& [level, name] : {std::pair{"L1", "nestvm"}, std::pair{"L2", "nestvm-l2"}}) {
      if (!counts[img.name].count(name)) continue;
      const nlohmann::json& k = counts[img.name][name];
      fmt::print(crow, img.name, level, k["exits_from_l1"].get<uint64_t>(), k["l2_exits_l0"].get<uint64_t>(),
                 k["l2_exits_reflected"].get<uint64_t>(), k["ept02_violations"].get<uint64_t>());
    }
  for (const Image& img : images)
    for (const auto& [level, name] : {std::pair{"L1", "nestvm"}, std::pair{"L2", "nestvm-l2"}}) {
      if (!counts[img.name].count(name)) continue;
      const nlohmann::json& k = counts[img.name][name];
      fmt::print("{} {}: exits from L1: {}\n", img.name, level, reasons(k["exits_from_l1_by_reason"]));
      if (name == std::string("nestvm-l2")) {
        fmt::print("{} {}: L2 exits handled by L0: {}\n", img.name, level, reasons(k["l2_exits_l0_by_reason"]));
        fmt::print("{} {}: L2 exits reflected to L1: {}\n", img.name, level,
                   reasons(k["l2_exits_reflected_by_reason"]));
      }
    }
  for (const Config& c : configs)
    for (const auto& [image, why] : c.failure) fmt::print("{} on the {} image: failed in {}\n", c.name, image, why);
  fmt::print("speed n/q: QEMU's time over nestvm's, i.e. nestvm's speed relative to QEMU TCG (target >= 0.5 on cpu);\n"
             "EPT: shadow (ept=off) time over EPT time; guest ms: the guest's TSC-timed work (boot has none);\n"
             "CPU ms: user + system time of the whole process, the figure least disturbed by a loaded host;\n"
             "L2/L1: --level 2 time over --level 1 time (target <= 1.05 on cpu); user ms: user time alone, without\n"
             "the host kernel's zeroing of fresh guest RAM (system time), which varies from run to run\n");
  if (!json.empty()) {
    auto f = fmt::output_file(json);
    f.print("{}\n", out.dump(2));
  }
  return all_ok ? 0 : 1;
}
