// nestvm's command line: the subset of qemu-system-x86_64's that test suites and people use,
// with QEMU's spelling and meaning, plus nestvm's own --stats and --stats-json. Every option may
// be written with one dash or two (QEMU accepts both); "--opt=value" is accepted too. The option
// table in options.cpp is the one place options are defined: the parser and --help both read it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cpu/cpu_model.h"
#include "vmm/result.h"

namespace nestvm::vmm {

// Where a serial port's output goes (QEMU's chardev backends that nestvm has).
struct SerialOption {
  enum class Backend : uint8_t { kStdio, kNull, kFile };
  Backend backend = Backend::kStdio;
  std::string path;  // kFile
};

struct DeviceOption {
  enum class Kind : uint8_t { kIsaDebugExit, kPcTestDev, kPciTestDev };
  Kind kind = Kind::kIsaDebugExit;
  std::string id;
  uint16_t iobase = 0x501;  // isa-debug-exit: QEMU's defaults
  uint16_t iosize = 0x02;
};

// -smp: the number of vCPUs started and the topology they are described with.
struct SmpOption {
  unsigned cpus = 1;
  unsigned maxcpus = 1;
  unsigned sockets = 1, dies = 1, clusters = 1, cores = 1, threads = 1;
};

enum class MachineType : uint8_t { kPc, kQ35 };

struct Options {
  enum class Action : uint8_t { kRun, kHelp, kVersion, kCpuHelp, kMachineHelp, kDeviceHelp };
  Action action = Action::kRun;

  std::string kernel;  // empty: the built-in demo guest
  std::string initrd;  // QEMU's text: modules separated by ',' (",," is a comma)
  std::string append;
  uint64_t ram_bytes = 128ull << 20;
  bool ram_given = false;
  SmpOption smp;
  bool smp_given = false;
  cpu::CpuModel model;  // -cpu (default: max, with VMX)
  MachineType machine = MachineType::kPc;
  bool ept = true;  // -accel nestvm,ept=off: L0 uses shadow paging
  unsigned level = 1;  // --level: 1 boots the kernel as L1; 2 under the built-in minivisor, as L2
  bool level_given = false;
  std::vector<SerialOption> serials;  // COM1, COM2, ... after QEMU's defaults are applied
  std::vector<DeviceOption> devices;
  bool nodefaults = false;
  bool nographic = false;
  bool no_reboot = false;
  std::string name;
  bool stats = false;
  std::string stats_json;
  std::vector<std::string> warnings;  // printed as "nestvm: warning: ..." before running
};

// Parses the arguments after argv[0]. A failure's message is the one line to print.
Result<Options> parse_options(std::span<const std::string> args);

// The --help text: every option, from the option table.
std::string help_text();
std::string machine_help_text();
std::string device_help_text();

}  // namespace nestvm::vmm
