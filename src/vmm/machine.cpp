#include "vmm/machine.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "arch/vmx.h"
#include "hv/irqchip/pc_irqchip.h"
#include "hv/vcpu.h"
#include "vmm/devices/acpi.h"
#include "vmm/devices/cmos_rtc.h"
#include "vmm/devices/debug_exit.h"
#include "vmm/devices/fw_cfg.h"
#include "vmm/devices/pc_testdev.h"
#include "vmm/devices/pci.h"
#include "vmm/devices/pci_testdev.h"
#include "vmm/devices/pm_timer.h"
#include "vmm/devices/uart16550.h"
#include "vmm/level.h"
#include "vmm/memory_map.h"
#include "vmm/stats_report.h"
#include "vmm/vcpu_dump.h"

namespace nestvm::vmm {

namespace {

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// The PC's serial ports (COM1-COM4) and their ISA IRQs.
struct SerialPortAt {
  uint16_t base;
  unsigned irq;
};
constexpr SerialPortAt kSerialPorts[] = {{0x3f8, 4}, {0x2f8, 3}, {0x3e8, 4}, {0x2e8, 3}};

}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

const char* stop_reason_name(hv::StopReason why) {
  switch (why) {
    case hv::StopReason::kRunning: return "running";
    case hv::StopReason::kDebugExit: return "debug-exit";
    case hv::StopReason::kShutdown: return "shutdown";
    case hv::StopReason::kSignal: return "signal";
    case hv::StopReason::kError: return "error";
  }
  return "unknown";
}

Machine::Machine(const Options& options) : options_(options) {}

Machine::~Machine() {
  // Devices first (their threads: the UARTs' readers, the RTC's timer), then the VM they
  // registered with; the PCI host before the functions plugged into it.
  uarts_.clear();
  rtc_.reset();
  pci_.reset();
  pci_testdevs_.clear();
  pc_testdevs_.clear();
  debug_exits_.clear();
  acpi_pm1_.reset();
  pm_timer_.reset();
  fw_cfg_.reset();
  irqchip_.reset();
  vm_.reset();
  for (int fd : owned_fds_) close(fd);
}

Result<std::unique_ptr<Machine>> Machine::create(const Options& options, const KernelImage& kernel) {
  std::unique_ptr<Machine> m(new Machine(options));
  if (auto r = m->build(kernel); !r) return Error{r.error()};
  return m;
}

Result<Ok> Machine::build(const KernelImage& kernel) {
  const PcRamLayout ram = pc_ram_layout(options_.ram_bytes);
  hv::VmConfig cfg;
  cfg.ram_bytes = ram.total() + level_private_ram(options_.level);
  cfg.vcpus = options_.smp.cpus;
  cfg.model = options_.model;
  cfg.ept = options_.ept;
  try {
    vm_ = std::make_unique<hv::Vm>(cfg);
  } catch (const std::bad_alloc&) {
    return Error{fmt::format("cannot reserve host memory for {} MiB of guest RAM", ram.total() >> 20)};
  }
  hv::GuestMemory& mem = vm_->mem();
  mem.add_slot(0, ram.below_4g);
  if (ram.above_4g) mem.add_slot(PcRamLayout::kFourGiB, ram.above_4g);
  if (auto r = add_level_ram(mem, options_.level); !r) return r;

  irqchip_ = std::make_unique<hv::PcIrqChip>(*vm_);
  vm_->set_irqchip(irqchip_.get());
  if (auto r = add_serial_ports(); !r) return r;
  if (auto r = add_board_devices(); !r) return r;
  if (auto r = add_devices(); !r) return r;

  BootRequest req;
  req.kernel_name = kernel.name;
  req.kernel = kernel.bytes;
  req.append = options_.append;
  req.modules = kernel.modules;
  req.ram = ram;
  auto boot = load_kernel(mem, req);
  if (!boot) return Error{fmt::format("{}: {}", kernel.name, boot.error())};
  boot_ = std::move(*boot);
  if (auto r = describe_level_ram(mem, options_.level, boot_); !r) return r;
  for (const std::string& w : boot_.warnings) fmt::print(stderr, "nestvm: warning: {}\n", w);
  vm_->vcpu(0).set_initial_state(boot_.cpu);
  return Ok{};
}

Result<Ok> Machine::add_serial_ports() {
  for (size_t i = 0; i < options_.serials.size(); ++i) {
    const SerialOption& s = options_.serials[i];
    int out_fd = -1, in_fd = -1;
    switch (s.backend) {
      case SerialOption::Backend::kStdio:
        out_fd = STDOUT_FILENO;
        in_fd = STDIN_FILENO;
        break;
      case SerialOption::Backend::kNull:
        break;
      case SerialOption::Backend::kFile:
        out_fd = open(s.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (out_fd < 0) return Error{fmt::format("-serial file:{}: {}", s.path, std::strerror(errno))};
        owned_fds_.push_back(out_fd);
        break;
    }
    uarts_.push_back(std::make_unique<Uart16550>(*vm_, kSerialPorts[i].base, kSerialPorts[i].irq, out_fd, in_fd));
  }
  return Ok{};
}

// The files QEMU's pc machine publishes that describe this machine: "etc/e820", the RAM ranges
// as 20-byte little-endian {address, length, type} entries (pc_memory_init), and, when the CPU
// has VMX, "etc/msr_feature_control", the IA32_FEATURE_CONTROL value firmware is to lock in
// (pc.c, feature_control: locked, VMXON outside SMX).
void Machine::add_fw_cfg_files() {
  const PcRamLayout ram = pc_ram_layout(options_.ram_bytes);
  std::vector<uint8_t> e820;
  const auto put = [&e820](uint64_t v, unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i) e820.push_back(uint8_t(v >> (8 * i)));
  };
  const auto add_ram = [&put](uint64_t addr, uint64_t size) {
    put(addr, 8);
    put(size, 8);
    put(uint32_t(E820Type::kRam), 4);
  };
  add_ram(0, ram.below_4g);
  if (ram.above_4g) add_ram(PcRamLayout::kFourGiB, ram.above_4g);
  fw_cfg_->add_file("etc/e820", std::move(e820));
  if (options_.model.has(cpu::Feature::kVmx)) {
    constexpr uint64_t kFeatureControl = 0x1 | 0x4;  // LOCKED | VMXON_ENABLED_OUTSIDE_SMX
    std::vector<uint8_t> fc(8);
    for (unsigned i = 0; i < 8; ++i) fc[i] = uint8_t(kFeatureControl >> (8 * i));
    fw_cfg_->add_file("etc/msr_feature_control", std::move(fc));
  }
}

// What every PC of QEMU's pc machine has besides the serial ports, and the ACPI tables that
// describe it (nestvm has no firmware: the tables are written before the vCPUs start).
Result<Ok> Machine::add_board_devices() {
  fw_cfg_ = std::make_unique<FwCfg>(*vm_);
  add_fw_cfg_files();
  rtc_ = std::make_unique<CmosRtc>(*vm_);
  if (level_private_ram(options_.level)) {
    // At --level 2 the minivisor's private RAM is L1's alone (vmm/level.h): the RAM size fw_cfg
    // and the CMOS report is -m's, what L2 gets.
    const PcRamLayout ram = pc_ram_layout(options_.ram_bytes);
    fw_cfg_->add_i64(FwCfgKey::kFW_CFG_RAM_SIZE, ram.total());
    rtc_->set_memory_layout(ram.below_4g, ram.above_4g);
  }
  pm_timer_ = std::make_unique<PmTimer>(*vm_);
  acpi_pm1_ = std::make_unique<AcpiPm1>(*vm_, *pm_timer_);
  pci_ = std::make_unique<PciHost>(*vm_);
  auto acpi = build_acpi_tables(vm_->mem(), AcpiConfig::for_cpus(options_.smp.cpus));
  if (!acpi) return Error{acpi.error()};
  return Ok{};
}

Result<Ok> Machine::add_devices() {
  for (const DeviceOption& d : options_.devices) {
    switch (d.kind) {
      case DeviceOption::Kind::kIsaDebugExit:
        debug_exits_.push_back(std::make_unique<DebugExit>(*vm_, d.iobase, d.iosize));
        break;
      case DeviceOption::Kind::kPcTestDev:
        if (!pc_testdevs_.empty()) return Error{"-device pc-testdev: only one fits (its ports are fixed)"};
        pc_testdevs_.push_back(std::make_unique<PcTestDev>(*vm_));
        break;
      case DeviceOption::Kind::kPciTestDev:
        pci_testdevs_.push_back(std::make_unique<PciTestDev>(*pci_));
        if (pci_testdevs_.back()->devfn() < 0) return Error{"-device pci-testdev: PCI bus 0 is full"};
        break;
    }
  }
  return Ok{};
}

int Machine::exit_status_of(hv::StopReason why) {
  switch (why) {
    case hv::StopReason::kDebugExit:
      return vm_->exit_code();  // DebugExit stops with QEMU's (value << 1) | 1 already
    case hv::StopReason::kSignal:
      return exit_status::kSignalBase + vm_->exit_code();
    case hv::StopReason::kError:
      return exit_status::kL0Error;
    case hv::StopReason::kShutdown:
      for (unsigned i = 0; i < vm_->vcpu_count(); ++i)
        if ((vm_->vcpu(i).vmread(arch::VmcsField::VM_EXIT_REASON) & 0xffff) == unsigned(arch::ExitReason::TRIPLE_FAULT))
          return exit_status::kTripleFault;
      return exit_status::kPowerOff;
    case hv::StopReason::kRunning:
      break;
  }
  return exit_status::kL0Error;
}

int Machine::run() {
  std::atomic<bool> done{false};
  std::thread watcher([this, &done] {
    const sigset_t set = stop_signals();
    const timespec poll{0, 50'000'000};
    while (!done.load(std::memory_order_acquire)) {
      const int sig = sigtimedwait(&set, nullptr, &poll);
      if (sig <= 0) continue;
      fmt::print(stderr, "nestvm: terminating on signal {}\n", sig);
      vm_->request_stop(hv::StopReason::kSignal, sig);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  const hv::StopReason why = vm_->run();
  const uint64_t wall_ns =
      uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  done.store(true, std::memory_order_release);
  watcher.join();

  const int status = exit_status_of(why);
  if (why == hv::StopReason::kError) {
    fmt::print(stderr, "nestvm: L0 error: {}\n", vm_->stop_message());
  } else if (status == exit_status::kTripleFault) {
    for (unsigned i = 0; i < vm_->vcpu_count(); ++i) {
      hv::Vcpu& v = vm_->vcpu(i);
      if ((v.vmread(arch::VmcsField::VM_EXIT_REASON) & 0xffff) != unsigned(arch::ExitReason::TRIPLE_FAULT)) continue;
      fmt::print(stderr, "nestvm: vCPU {} triple fault (shutdown); its state:\n{}", i, dump_vcpu_state(v));
    }
  }
  if (options_.stats || !options_.stats_json.empty()) {
    const StatsSnapshot s = take_stats(*vm_, wall_ns, stop_reason_name(why), status);
    if (options_.stats) fmt::print(stderr, "{}", format_stats(s));
    if (!options_.stats_json.empty())
      if (auto r = write_stats_json(s, options_.stats_json); !r) fmt::print(stderr, "nestvm: {}\n", r.error());
  }
  return status;
}

}  // namespace nestvm::vmm
