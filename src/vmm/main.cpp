// nestvm: the program. With -kernel it boots that kernel the way qemu-system-x86_64 does; without
// one it boots the built-in demo guest (guest/demo) as L2 under the built-in minivisor: the demo
// says what it is, runs a workload on every vCPU and stops, and nestvm prints L0's statistics
// per level.
#include <fmt/core.h>

#include <span>
#include <string>
#include <vector>

#include "guest/images.h"
#include "vmm/cpu_option.h"
#include "vmm/level.h"
#include "vmm/machine.h"
#include "vmm/options.h"

namespace {

using namespace nestvm::vmm;

constexpr const char* kVersion = "0.4";

int usage_error(const std::string& message) {
  fmt::print(stderr, "nestvm: {}\n", message);
  return exit_status::kUsage;
}

// The demo's machine: two vCPUs unless -smp says otherwise, statistics on, and the
// isa-debug-exit port the demo stops through (value 0, QEMU's status 1, means it passed: nestvm
// then exits 0 so that `make demo` succeeds). Unless --level says otherwise it runs at level 2,
// under the minivisor, when nested VMX can run it (VMX offered to L1, EPT in L0).
void configure_demo(Options& o) {
  if (!o.smp_given) o.smp = {2, 2, 1, 1, 1, 2, 1};
  if (!o.level_given) o.level = o.ept && o.model.has(nestvm::cpu::Feature::kVmx) ? 2 : 1;
  o.stats = true;
  bool has_exit = false;
  for (const DeviceOption& d : o.devices)
    if (d.kind == DeviceOption::Kind::kIsaDebugExit && d.iobase == 0xf4) has_exit = true;
  if (!has_exit) o.devices.push_back({DeviceOption::Kind::kIsaDebugExit, "demo-exit", 0xf4, 4});
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = parse_options(args);
  if (!parsed) return usage_error(parsed.error());
  Options& o = *parsed;
  switch (o.action) {
    case Options::Action::kHelp: fmt::print("{}", help_text()); return 0;
    case Options::Action::kVersion: fmt::print("nestvm version {}\n", kVersion); return 0;
    case Options::Action::kCpuHelp: fmt::print("{}", cpu_help_text()); return 0;
    case Options::Action::kMachineHelp: fmt::print("{}", machine_help_text()); return 0;
    case Options::Action::kDeviceHelp: fmt::print("{}", device_help_text()); return 0;
    case Options::Action::kRun: break;
  }
  for (const std::string& w : o.warnings) fmt::print(stderr, "nestvm: warning: {}\n", w);

  KernelImage kernel;
  const bool demo = o.kernel.empty();
  if (demo) {
    const nestvm::guest::Image* image = nestvm::guest::find("demo");
    if (!image) return usage_error("this build has no built-in demo guest; boot one with -kernel FILE");
    configure_demo(o);
    kernel.name = "demo";
    if (o.level == 2) o.append = "level=2";  // so that the demo says where it runs
    kernel.bytes.assign(image->bytes.begin(), image->bytes.end());
  } else {
    auto bytes = read_file(o.kernel);
    if (!bytes) return usage_error(bytes.error());
    kernel.name = o.kernel;
    kernel.bytes = std::move(*bytes);
    auto modules = read_modules(o.initrd);
    if (!modules) return usage_error(modules.error());
    kernel.modules = std::move(*modules);
  }

  if (o.level == 2) {
    // The built-in minivisor boots the kernel (or the demo) as L2 (vmm/level.h).
    if (!o.model.has(nestvm::cpu::Feature::kVmx)) return usage_error("--level 2: the minivisor needs VMX (-cpu ...,-vmx)");
    const nestvm::guest::Image* mv = nestvm::guest::find("minivisor");
    auto l1 = level_kernel(o.level, kernel, mv ? mv->bytes : std::span<const uint8_t>(), o.append);
    if (!l1) return usage_error(l1.error());
    kernel = std::move(*l1);
  }

  block_stop_signals();
  auto machine = Machine::create(o, kernel);
  if (!machine) return usage_error(machine.error());
  const int status = (*machine)->run();
  if (demo && status == 1) return 0;
  return status;
}
