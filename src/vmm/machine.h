// The machine, as QEMU's pc board: a Vm (RAM, vCPUs, CPU model, EPT or shadow paging for L0),
// the interrupt controllers in L0 (PcIrqChip), the devices every PC has and test suites rely
// on, the -device ones, and the kernel loaded into it. run() starts the vCPUs (the BSP at the
// loader's entry state, the APs waiting for INIT-SIPI-SIPI), waits for the VM to stop, and
// turns the reason into nestvm's exit status:
//   isa-debug-exit   (value << 1) | 1, as QEMU
//   power-off        0
//   triple fault     4, after printing the vCPU's state on stderr. QEMU with -no-reboot exits 0
//                    on a guest shutdown; nestvm makes it a failure, and an even status that no
//                    isa-debug-exit value produces, so that a crash never reads as a pass.
//   L0 error         6, after L0's message (failed VM entry, unexpected exit, no memory)
//   signal N         128 + N (SIGINT, SIGTERM, SIGHUP stop the VM cleanly). QEMU prints
//                    "terminating on signal N" and exits 0; nestvm prints the same line but
//                    reports the interruption in its status, as a shell does.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hv/vm.h"
#include "vmm/loader/loader.h"
#include "vmm/options.h"
#include "vmm/result.h"

namespace nestvm::hv {
class PcIrqChip;
}

namespace nestvm::vmm {

class AcpiPm1;
class CmosRtc;
class DebugExit;
class FwCfg;
class PciHost;
class PciTestDev;
class PcTestDev;
class PmTimer;
class Uart16550;

namespace exit_status {
inline constexpr int kPowerOff = 0;
inline constexpr int kUsage = 2;
inline constexpr int kTripleFault = 4;
inline constexpr int kL0Error = 6;
inline constexpr int kSignalBase = 128;
}  // namespace exit_status

// The kernel and modules to boot: from files (-kernel, -initrd) or built in (the demo).
struct KernelImage {
  std::string name;  // the first word of the command line
  std::vector<uint8_t> bytes;
  std::vector<BootModule> modules;
};

class Machine {
 public:
  // Builds the VM and its devices and loads the kernel; a failure is the one line to print.
  static Result<std::unique_ptr<Machine>> create(const Options& options, const KernelImage& kernel);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Runs until the VM stops; prints the vCPU state on a triple fault and the statistics when
  // asked (--stats, --stats-json); returns nestvm's exit status. SIGINT, SIGTERM and SIGHUP
  // must be blocked in every thread (block_stop_signals()) before the machine is created.
  int run();

  hv::Vm& vm() { return *vm_; }
  const BootState& boot() const { return boot_; }

 private:
  explicit Machine(const Options& options);
  Result<Ok> build(const KernelImage& kernel);
  Result<Ok> add_serial_ports();
  Result<Ok> add_board_devices();
  void add_fw_cfg_files();
  Result<Ok> add_devices();
  int exit_status_of(hv::StopReason why);

  Options options_;
  std::unique_ptr<hv::Vm> vm_;
  std::unique_ptr<hv::PcIrqChip> irqchip_;
  // The PC board's devices.
  std::vector<std::unique_ptr<Uart16550>> uarts_;
  std::unique_ptr<FwCfg> fw_cfg_;
  std::unique_ptr<CmosRtc> rtc_;
  std::unique_ptr<PmTimer> pm_timer_;
  std::unique_ptr<AcpiPm1> acpi_pm1_;
  std::unique_ptr<PciHost> pci_;
  // -device ones.
  std::vector<std::unique_ptr<DebugExit>> debug_exits_;
  std::vector<std::unique_ptr<PcTestDev>> pc_testdevs_;
  std::vector<std::unique_ptr<PciTestDev>> pci_testdevs_;
  std::vector<int> owned_fds_;
  BootState boot_;
};

// The stop reason's name in messages and statistics: "debug-exit", "shutdown", ...
const char* stop_reason_name(hv::StopReason why);

// Blocks the signals that stop the VM, so that a watcher thread in run() takes them with
// sigtimedwait (every thread created afterwards inherits the mask).
void block_stop_signals();

}  // namespace nestvm::vmm
