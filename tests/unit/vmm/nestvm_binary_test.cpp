// The built program end to end (build/nestvm, run as a subprocess): command-line errors are one
// line and status 2; small multiboot kernels assembled here boot, print their command line on
// COM1, and stop through isa-debug-exit with QEMU's status, triple-fault with the state dump,
// or are stopped by a signal; --stats-json writes the exits they caused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "unit/cpu/test_machine.h"
#include "unit/vmm/boot_images.h"
#include "vmm/loader/elf.h"
#include "vmm/options.h"

namespace nestvm::test {
namespace {

// The built program, next to the tests' directory (build/nestvm, build/tests/unit_tests).
std::string nestvm_binary() {
  return (std::filesystem::canonical("/proc/self/exe").parent_path().parent_path() / "nestvm").string();
}

struct RunResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::string s;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

// Runs the binary with stdin from /dev/null and stdout, stderr captured; sends `signal` after
// `signal_after` if it is still running then.
RunResult run_nestvm(const std::vector<std::string>& args, int signal = 0,
                     std::chrono::milliseconds signal_after = std::chrono::milliseconds(0)) {
  RunResult r;
  char out_path[] = "/tmp/nestvm_out_XXXXXX", err_path[] = "/tmp/nestvm_err_XXXXXX";
  const int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
  const std::string bin = nestvm_binary();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    const int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  if (signal) {
    std::this_thread::sleep_for(signal_after);
    kill(pid, signal);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  close(out_fd);
  close(err_fd);
  unlink(out_path);
  unlink(err_path);
  return r;
}

class NestvmBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(nestvm_binary())) GTEST_SKIP() << "no " << nestvm_binary();
    char t[] = "/tmp/nestvm_e2e_XXXXXX";
    dir_ = mkdtemp(t);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // An ELF32 multiboot kernel at 1 MiB whose code (32-bit, entered as multiboot says) follows
  // the header.
  std::string kernel(const std::string& name, const std::string& code) {
    const uint64_t base = 0x100000, entry = base + 12;
    std::vector<uint8_t> text = mb_header(0x3);
    const auto bytes = assemble(code, 32, entry);
    text.insert(text.end(), bytes.begin(), bytes.end());
    const auto img = make_elf(false, vmm::kEmI386, entry, {{base, base, text, 0x1000, 7}});
    const std::string path = dir_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(img.data(), 1, img.size(), f);
    std::fclose(f);
    return path;
  }
  std::string dir_;
};

// Prints the multiboot command line (EBX -> info, offset 16) on COM1, then writes `code` to
// port 0xf4.
std::string print_cmdline_and_exit(unsigned code) {
  return R"(
    mov esi, [ebx + 16]
  1:
    lodsb
    test al, al
    jz 2f
    mov dx, 0x3f8
    out dx, al
    jmp 1b
  2:
    mov al, )" + std::to_string(code) + R"(
    out 0xf4, al
    hlt
  )";
}

const std::vector<std::string> kQemuArgs = {"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
                                            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

TEST_F(NestvmBinary, ErrorsAreOneLineAndStatus2) {
  const std::vector<std::vector<std::string>> cases = {
      {"-nosuch"},
      {"-m", "lots"},
      {"-smp", "0"},
      {"-cpu", "pentium9"},
      {"-device", "virtio-blk"},
      {"-kernel"},
      {"-kernel", "/nonexistent/kernel.elf"},
      {"-append", "x"},
      {"-kernel", kernel("k.elf", "hlt"), "-initrd", "/nonexistent/module"},
  };
  for (const auto& args : cases) {
    const RunResult r = run_nestvm(args);
    EXPECT_EQ(r.status, 2) << args[0] << " " << r.err;
    EXPECT_TRUE(r.err.starts_with("nestvm: ")) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(NestvmBinary, HelpListsEveryOptionAndExits0) {
  const RunResult r = run_nestvm({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, vmm::help_text());
  const RunResult c = run_nestvm({"-cpu", "help"});
  EXPECT_EQ(c.status, 0);
  EXPECT_NE(c.out.find("qemu64"), std::string::npos);
}

TEST_F(NestvmBinary, DebugExitStatusAndCommandLineOnCom1) {
  const std::string k = kernel("cmdline.elf", print_cmdline_and_exit(0x2a));
  const RunResult r = run_nestvm(with(kQemuArgs, {"-kernel", k, "-append", "hello world"}));
  EXPECT_EQ(r.status, (0x2a << 1) | 1) << r.err;
  EXPECT_EQ(r.out, k + " hello world");
  EXPECT_TRUE(r.err.empty()) << r.err;
  // Value 0 is status 1, as QEMU: a guest cannot fake a clean 0.
  const RunResult z = run_nestvm(with(kQemuArgs, {"-kernel", kernel("zero.elf", print_cmdline_and_exit(0))}));
  EXPECT_EQ(z.status, 1) << z.err;
}

TEST_F(NestvmBinary, SerialNoneAndNullProduceNoOutput) {
  const std::string k = kernel("quiet.elf", print_cmdline_and_exit(3));
  for (const char* backend : {"none", "null"}) {
    const RunResult r = run_nestvm({"-kernel", k, "-serial", backend, "-device", "isa-debug-exit,iobase=0xf4,iosize=4"});
    EXPECT_EQ(r.status, 7) << backend << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << backend;
  }
  const std::string log = dir_ + "/com1.log";
  const RunResult f = run_nestvm({"-kernel", k, "-serial", "file:" + log, "-device", "isa-debug-exit,iobase=0xf4,iosize=4"});
  EXPECT_EQ(f.status, 7) << f.err;
  EXPECT_EQ(slurp(log), k + " ");
}

TEST_F(NestvmBinary, TripleFaultPrintsTheStateAndExits4) {
  // No IDT: the breakpoint cannot be delivered (#GP, then #DF, then shutdown).
  const std::string k = kernel("crash.elf", R"(
    mov eax, 0x12345678
    lidt [zero_idt]
    int3
    hlt
  zero_idt:
    .word 0
    .long 0
  )");
  const RunResult r = run_nestvm(with(kQemuArgs, {"-kernel", k}));
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_NE(r.err.find("triple fault"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("RAX=0000000012345678"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CS =0008"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CR0="), std::string::npos) << r.err;
}

TEST_F(NestvmBinary, SigtermStopsCleanlyWithStatus143) {
  const std::string k = kernel("spin.elf", "1: jmp 1b");
  const RunResult r = run_nestvm(with(kQemuArgs, {"-kernel", k, "--stats"}), SIGTERM, std::chrono::milliseconds(500));
  EXPECT_EQ(r.status, 128 + SIGTERM) << r.err;
  EXPECT_NE(r.err.find("terminating on signal 15"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopped by signal"), std::string::npos) << r.err;  // the statistics still come
}

TEST_F(NestvmBinary, StatsJsonCountsTheGuestsExits) {
  const std::string k = kernel("stats.elf", print_cmdline_and_exit(1));
  const std::string json = dir_ + "/stats.json";
  const RunResult r = run_nestvm(with(kQemuArgs, {"-kernel", k, "-append", "abc", "--stats-json", json, "--stats"}));
  EXPECT_EQ(r.status, 3) << r.err;
  const auto j = nlohmann::json::parse(slurp(json));
  // One OUT per command-line byte plus the exit: every one is an I/O exit.
  const uint64_t io = j["total"]["exits"]["IO_INSTRUCTION"];
  EXPECT_EQ(io, (k + " abc").size() + 1);
  EXPECT_EQ(j["vcpus"].size(), 1u);
  EXPECT_GT(j["total"]["instructions"].get<uint64_t>(), 4 * io);
  EXPECT_GE(j["total"]["exits"]["EPT_VIOLATION"].get<uint64_t>(), 2u);
  EXPECT_EQ(j["stop_reason"], "debug-exit");
  EXPECT_EQ(j["exit_status"], 3);
  EXPECT_NE(r.err.find("IO_INSTRUCTION"), std::string::npos) << r.err;
}

TEST_F(NestvmBinary, ApplicationProcessorsWaitForSipi) {
  // With -smp 4 only the BSP runs the kernel; it exits alone.
  const std::string k = kernel("smp.elf", print_cmdline_and_exit(5));
  const RunResult r = run_nestvm(with(kQemuArgs, {"-kernel", k, "-smp", "4", "--stats-json", dir_ + "/s.json"}));
  EXPECT_EQ(r.status, 11) << r.err;
  const auto j = nlohmann::json::parse(slurp(dir_ + "/s.json"));
  ASSERT_EQ(j["vcpus"].size(), 4u);
  for (unsigned i = 1; i < 4; ++i) EXPECT_EQ(j["vcpus"][i]["instructions"], 0) << i;
}

}  // namespace
}  // namespace nestvm::test
