#include "vmm/options.h"

#include <fmt/core.h>

#include <optional>
#include <string_view>

#include "vmm/cpu_option.h"
#include "vmm/qemu_opts.h"

namespace nestvm::vmm {

namespace {

// The most vCPUs a machine takes: xAPIC IDs are 8 bits and 0xff is the broadcast ID.
constexpr unsigned kMaxCpus = 255;
constexpr uint64_t kMinRam = 2ull << 20;
// maxphyaddr of the models (40 bits) bounds the guest-physical space.
constexpr uint64_t kMaxRam = 1ull << 40;

struct Parser {
  Options& o;
  std::string cpu_spec = "max";
  bool serial_given = false;
};

using Handler = std::optional<Error> (*)(Parser&, const std::string&);

struct OptionSpec {
  const char* name;
  const char* arg;  // nullptr: a flag without a value
  const char* help;
  Handler handle;
};

std::optional<Error> fail(std::string message) { return Error{std::move(message)}; }

std::optional<Error> parse_memory(Parser& p, const std::string& v) {
  const auto items = split_opts(v);
  std::string size_text;
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue kv = split_key_value(items[i]);
    if (i == 0 && !kv.value) size_text = kv.key;
    else if (kv.key == "size" && kv.value) size_text = *kv.value;
    else if (kv.key == "slots" || kv.key == "maxmem") return fail("-m: memory hotplug (slots, maxmem) is not supported");
    else return fail(fmt::format("-m: invalid parameter '{}'", items[i]));
  }
  // A number without a suffix is in MiB (QEMU's legacy format).
  const auto size = parse_size(size_text, 'M');
  if (!size) return fail(fmt::format("-m: invalid ram size '{}'", size_text));
  // QEMU rounds the RAM size up to 8 KiB; nestvm's memslots are made of 4 KiB pages anyway.
  const uint64_t bytes = (*size + 8191) & ~8191ull;
  if (bytes < kMinRam) return fail(fmt::format("-m: ram size '{}' too small (at least 2M)", size_text));
  if (bytes > kMaxRam) return fail(fmt::format("-m: ram size '{}' too large (at most 1T)", size_text));
  p.o.ram_bytes = bytes;
  p.o.ram_given = true;
  return std::nullopt;
}

// QEMU's machine_parse_smp_config (hw/core/machine-smp.c), for a machine that prefers cores
// over sockets (pc and q35 since QEMU 6.2).
std::optional<Error> parse_smp(Parser& p, const std::string& v) {
  unsigned cpus = 0, maxcpus = 0, sockets = 0, dies = 0, cores = 0, threads = 0;
  const auto items = split_opts(v);
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue kv = split_key_value(items[i]);
    std::string key = kv.key, value = kv.value.value_or("");
    if (i == 0 && !kv.value) {
      key = "cpus";
      value = kv.key;
    } else if (!kv.value) {
      return fail(fmt::format("-smp: invalid parameter '{}'", items[i]));
    }
    const auto n = parse_uint(value);
    if (!n || *n > 0xffffffffull) return fail(fmt::format("-smp: invalid number '{}' for {}", value, key));
    if (*n == 0) return fail(fmt::format("-smp: {} must be greater than zero", key));
    unsigned* slot = key == "cpus" ? &cpus : key == "maxcpus" ? &maxcpus : key == "sockets" ? &sockets
                   : key == "dies" ? &dies : key == "cores" ? &cores : key == "threads" ? &threads : nullptr;
    if (key == "clusters" || key == "books" || key == "drawers") {
      if (*n != 1) return fail(fmt::format("-smp: {} are not supported by this machine's CPU topology", key));
      continue;
    }
    if (!slot) return fail(fmt::format("-smp: invalid parameter '{}'", key));
    *slot = unsigned(*n);
  }
  dies = dies ? dies : 1;
  if (cpus == 0 && maxcpus == 0) {
    sockets = sockets ? sockets : 1;
    cores = cores ? cores : 1;
    threads = threads ? threads : 1;
  } else {
    maxcpus = maxcpus ? maxcpus : cpus;
    if (cores == 0) {
      sockets = sockets ? sockets : 1;
      threads = threads ? threads : 1;
      cores = maxcpus / (sockets * dies * threads);
    } else if (sockets == 0) {
      threads = threads ? threads : 1;
      sockets = maxcpus / (dies * cores * threads);
    }
    if (threads == 0) threads = maxcpus / (sockets * dies * cores);
  }
  const uint64_t total = uint64_t(sockets) * dies * cores * threads;
  maxcpus = maxcpus ? maxcpus : unsigned(total > 0xffffffffull ? 0 : total);
  cpus = cpus ? cpus : maxcpus;
  if (total != maxcpus || total == 0)
    return fail(fmt::format("-smp: invalid CPU topology: sockets ({}) * dies ({}) * cores ({}) * threads ({}) != "
                            "maxcpus ({})", sockets, dies, cores, threads, maxcpus));
  if (maxcpus < cpus)
    return fail(fmt::format("-smp: invalid CPU topology: maxcpus ({}) must be equal to or greater than cpus ({})",
                            maxcpus, cpus));
  if (maxcpus > kMaxCpus)
    return fail(fmt::format("-smp: invalid SMP CPUs {}: the max CPUs supported by machine 'pc' is {}", maxcpus,
                            kMaxCpus));
  p.o.smp = {cpus, maxcpus, sockets, dies, 1, cores, threads};
  p.o.smp_given = true;
  return std::nullopt;
}

// An accelerator name: nestvm's L0 is the only one, and QEMU's names for theirs (kvm, tcg)
// are accepted as spellings of it so that test-suite command lines run unchanged.
bool known_accel(std::string_view a) { return a == "nestvm" || a == "kvm" || a == "tcg"; }

std::optional<Error> parse_accel_list(std::string_view list, const char* opt) {
  // QEMU's "kvm:tcg": the first that works; nestvm runs them all the same way.
  size_t start = 0;
  for (;;) {
    const size_t colon = list.find(':', start);
    const std::string_view a = list.substr(start, colon == std::string_view::npos ? colon : colon - start);
    if (!known_accel(a)) return fail(fmt::format("{}: invalid accelerator '{}' (nestvm, kvm or tcg)", opt, a));
    if (colon == std::string_view::npos) return std::nullopt;
    start = colon + 1;
  }
}

std::optional<Error> parse_accel(Parser& p, const std::string& v) {
  const auto items = split_opts(v);
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue kv = split_key_value(items[i]);
    if (i == 0 && !kv.value) {
      if (auto e = parse_accel_list(kv.key, "-accel")) return e;
    } else if (kv.key == "accel" && kv.value && i == 0) {
      if (auto e = parse_accel_list(*kv.value, "-accel")) return e;
    } else if (kv.key == "ept") {
      const auto on = kv.value ? parse_bool(*kv.value) : std::optional<bool>(true);
      if (!on) return fail(fmt::format("-accel: ept expects on or off, not '{}'", kv.value.value_or("")));
      p.o.ept = *on;
    } else {
      return fail(fmt::format("-accel: invalid property '{}' (nestvm's accelerator takes ept=on|off)", kv.key));
    }
  }
  return std::nullopt;
}

std::optional<Error> parse_machine(Parser& p, const std::string& v) {
  const auto items = split_opts(v);
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue kv = split_key_value(items[i]);
    if ((i == 0 && !kv.value) || (kv.key == "type" && kv.value)) {
      const std::string t = kv.value.value_or(kv.key);
      if (t == "pc" || t.starts_with("pc-i440fx-")) p.o.machine = MachineType::kPc;
      else if (t == "q35" || t.starts_with("pc-q35-")) p.o.machine = MachineType::kQ35;
      else return fail(fmt::format("-machine: unsupported machine type '{}' (pc or q35; try -machine help)", t));
    } else if (kv.key == "accel" && kv.value) {
      if (auto e = parse_accel_list(*kv.value, "-machine accel")) return e;
    } else if (kv.key == "kernel-irqchip" || kv.key == "kernel_irqchip") {
      // The interrupt controllers always live in L0, as KVM's in-kernel irqchip.
      if (kv.value != "on" && kv.value != "split")
        return fail("-machine: kernel-irqchip: nestvm's interrupt controllers are always in L0 (on)");
    } else if (kv.key == "usb" || kv.key == "smm" || kv.key == "vmport" || kv.key == "hpet") {
      // Devices nestvm does not have: turning them off is what it already is.
      const auto on = kv.value ? parse_bool(*kv.value) : std::nullopt;
      if (!on.has_value()) return fail(fmt::format("-machine: {} expects on or off", kv.key));
      if (*on) return fail(fmt::format("-machine: {}=on is not supported by nestvm", kv.key));
    } else {
      return fail(fmt::format("-machine: invalid property '{}'", kv.key));
    }
  }
  return std::nullopt;
}

std::optional<Error> parse_serial(Parser& p, const std::string& v) {
  p.serial_given = true;
  if (v == "none") return std::nullopt;  // no port for this index (QEMU's serial_parse)
  if (v == "stdio" || v == "mon:stdio") {
    for (const SerialOption& s : p.o.serials)
      if (s.backend == SerialOption::Backend::kStdio) return fail("-serial stdio: stdio is already in use by a serial port");
    p.o.serials.push_back({SerialOption::Backend::kStdio, {}});
  } else if (v == "null") {
    p.o.serials.push_back({SerialOption::Backend::kNull, {}});
  } else if (v.starts_with("file:") && v.size() > 5) {
    p.o.serials.push_back({SerialOption::Backend::kFile, v.substr(5)});
  } else {
    return fail(fmt::format("-serial: unsupported backend '{}' (stdio, null, none or file:PATH)", v));
  }
  if (p.o.serials.size() > 4) return fail("-serial: at most 4 serial ports (COM1-COM4)");
  return std::nullopt;
}

std::optional<Error> parse_device(Parser& p, const std::string& v) {
  const auto items = split_opts(v);
  DeviceOption d;
  std::string driver;
  for (size_t i = 0; i < items.size(); ++i) {
    const KeyValue kv = split_key_value(items[i]);
    if (i == 0 && !kv.value) {
      driver = kv.key;
      continue;
    }
    if (i == 0 && kv.key == "driver" && kv.value) {
      driver = *kv.value;
      continue;
    }
    if (i == 0) return fail("-device: the first item must be the driver name");
    if (kv.key == "id" && kv.value) {
      d.id = *kv.value;
    } else if (driver == "isa-debug-exit" && (kv.key == "iobase" || kv.key == "iosize") && kv.value) {
      const auto n = parse_uint(*kv.value);
      const uint64_t max = kv.key == "iobase" ? 0xffff : 4;
      if (!n || *n > max || (kv.key == "iosize" && *n == 0))
        return fail(fmt::format("-device isa-debug-exit: invalid {} '{}'", kv.key, *kv.value));
      (kv.key == "iobase" ? d.iobase : d.iosize) = uint16_t(*n);
    } else {
      return fail(fmt::format("-device {}: property '{}' not found", driver, kv.key));
    }
  }
  if (driver == "help" || driver == "?") {
    p.o.action = Options::Action::kDeviceHelp;
    return std::nullopt;
  }
  if (driver == "isa-debug-exit") d.kind = DeviceOption::Kind::kIsaDebugExit;
  else if (driver == "pc-testdev") d.kind = DeviceOption::Kind::kPcTestDev;
  else if (driver == "pci-testdev") d.kind = DeviceOption::Kind::kPciTestDev;
  else return fail(fmt::format("-device: '{}' is not a valid device model name (try -device help)", driver));
  if (d.kind == DeviceOption::Kind::kIsaDebugExit && uint32_t(d.iobase) + d.iosize > 0x10000)
    return fail("-device isa-debug-exit: iobase + iosize beyond the I/O space");
  p.o.devices.push_back(d);
  return std::nullopt;
}

std::optional<Error> only_none(const char* opt, const std::string& v, const char* why) {
  if (v == "none") return std::nullopt;
  return fail(fmt::format("-{}: only 'none' is supported ({})", opt, why));
}

const OptionSpec kOptions[] = {
    {"kernel", "FILE", "boot FILE: a multiboot v1 image (ELF32, ELF64 or a.out kludge), a plain ELF, or a flat binary",
     [](Parser& p, const std::string& v) { p.o.kernel = v; return std::optional<Error>(); }},
    {"initrd", "FILE", "multiboot modules: 'file1 args,file2 args,...' (',,' is a literal comma)",
     [](Parser& p, const std::string& v) { p.o.initrd = v; return std::optional<Error>(); }},
    {"append", "CMDLINE", "the kernel's command line (multiboot: after the kernel's file name and a space)",
     [](Parser& p, const std::string& v) { p.o.append = v; return std::optional<Error>(); }},
    {"m", "[size=]SIZE", "guest RAM (default 128M; a number without suffix is MiB; K, M, G, T suffixes)",
     parse_memory},
    {"smp", "[cpus=]N[,maxcpus=N][,sockets=N][,dies=N][,cores=N][,threads=N]",
     "number of vCPUs (default 1; the built-in demo defaults to 2)", parse_smp},
    {"cpu", "MODEL[,+feat|-feat|feat=on|off...]",
     "CPU model L1 sees: qemu64, max (default), host; VMX is on unless -vmx (try -cpu help)",
     [](Parser& p, const std::string& v) {
       if (v == "help" || v == "?") p.o.action = Options::Action::kCpuHelp;
       else p.cpu_spec = v;
       return std::optional<Error>();
     }},
    {"machine", "[type=]pc|q35[,accel=A][,kernel-irqchip=on]",
     "machine type (both build nestvm's PC board; try -machine help)",
     [](Parser& p, const std::string& v) {
       if (v == "help" || v == "?") {
         p.o.action = Options::Action::kMachineHelp;
         return std::optional<Error>();
       }
       return parse_machine(p, v);
     }},
    {"M", "TYPE", "the same as -machine", [](Parser& p, const std::string& v) {
       if (v == "help" || v == "?") {
         p.o.action = Options::Action::kMachineHelp;
         return std::optional<Error>();
       }
       return parse_machine(p, v);
     }},
    {"accel", "nestvm[,ept=on|off]",
     "nestvm's L0 hypervisor (kvm and tcg are accepted as its names); ept=off: shadow paging", parse_accel},
    {"enable-kvm", nullptr, "the same as -accel kvm (nestvm's L0)",
     [](Parser&, const std::string&) { return std::optional<Error>(); }},
    {"serial", "stdio|null|none|file:PATH",
     "the next serial port (COM1, COM2, ...): to stdout (input from stdin), discarded, absent, or to a file",
     parse_serial},
    {"nographic", nullptr, "no display; the default serial port goes to stdio (as -serial stdio -display none)",
     [](Parser& p, const std::string&) { p.o.nographic = true; return std::optional<Error>(); }},
    {"display", "none", "no display (nestvm never has one)",
     [](Parser&, const std::string& v) { return only_none("display", v, "nestvm has no display"); }},
    {"vnc", "none", "no VNC server (nestvm never has one)",
     [](Parser&, const std::string& v) { return only_none("vnc", v, "nestvm has no VNC server"); }},
    {"monitor", "none", "no monitor (nestvm never has one)",
     [](Parser&, const std::string& v) { return only_none("monitor", v, "nestvm has no monitor"); }},
    {"parallel", "none", "no parallel port (nestvm never has one)",
     [](Parser&, const std::string& v) { return only_none("parallel", v, "nestvm has no parallel port"); }},
    {"nodefaults", nullptr, "no default devices: no serial port unless -serial asks for one",
     [](Parser& p, const std::string&) { p.o.nodefaults = true; return std::optional<Error>(); }},
    {"no-reboot", nullptr, "exit instead of rebooting (nestvm never reboots: a triple fault always stops it)",
     [](Parser& p, const std::string&) { p.o.no_reboot = true; return std::optional<Error>(); }},
    {"device", "DRIVER[,prop=value...]",
     "isa-debug-exit[,iobase=0x501][,iosize=0x2], pc-testdev, pci-testdev (try -device help)", parse_device},
    {"name", "NAME", "the guest's name (in messages)", [](Parser& p, const std::string& v) {
       const auto items = split_opts(v);
       const KeyValue kv = split_key_value(items[0]);
       p.o.name = kv.key == "guest" && kv.value ? *kv.value : items[0];
       return std::optional<Error>();
     }},
    {"level", "1|2",
     "the level the kernel runs at: 1 (default) as L1; 2 as L2 under the built-in minivisor, an L1 hypervisor "
     "that boots it with the same command line, modules, memory map and devices (the built-in demo runs at 2 "
     "unless -accel nestvm,ept=off or -cpu ...,-vmx)",
     [](Parser& p, const std::string& v) {
       if (v != "1" && v != "2")
         return fail(fmt::format("--level: invalid level '{}' (1: the kernel runs as L1; 2: as L2 under the "
                                 "built-in minivisor)", v));
       p.o.level = unsigned(v[0] - '0');
       p.o.level_given = true;
       return std::optional<Error>();
     }},
    {"stats", nullptr, "at exit, print L0's statistics on stderr: exits by reason, MMU, time, instructions",
     [](Parser& p, const std::string&) { p.o.stats = true; return std::optional<Error>(); }},
    {"stats-json", "FILE", "at exit, write the same statistics as JSON to FILE",
     [](Parser& p, const std::string& v) {
       if (v.empty()) return fail("--stats-json: empty file name");
       p.o.stats_json = v;
       return std::optional<Error>();
     }},
    {"version", nullptr, "print nestvm's version and exit",
     [](Parser& p, const std::string&) { p.o.action = Options::Action::kVersion; return std::optional<Error>(); }},
    {"help", nullptr, "print this help and exit (also -h)",
     [](Parser& p, const std::string&) { p.o.action = Options::Action::kHelp; return std::optional<Error>(); }},
};

const OptionSpec* find_option(std::string_view name) {
  if (name == "h") name = "help";
  for (const OptionSpec& s : kOptions)
    if (name == s.name) return &s;
  return nullptr;
}

}  // namespace

Result<Options> parse_options(std::span<const std::string> args) {
  Options o;
  Parser p{o};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-')
      return Error{fmt::format("'{}' is not an option (options start with '-'; the kernel goes after -kernel)", a)};
    const bool two_dashes = a[1] == '-';
    std::string name = a.substr(two_dashes ? 2 : 1);
    std::optional<std::string> inline_value;
    if (const size_t eq = name.find('='); two_dashes && eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    const OptionSpec* spec = find_option(name);
    if (!spec) return Error{fmt::format("invalid option '{}' (try --help)", a)};
    std::string value;
    if (spec->arg) {
      if (inline_value) {
        value = *inline_value;
      } else {
        if (i + 1 >= args.size()) return Error{fmt::format("'{}' requires an argument: {}", a, spec->arg)};
        value = args[++i];
      }
    } else if (inline_value) {
      return Error{fmt::format("'{}' takes no argument", a)};
    }
    if (auto e = spec->handle(p, value)) return *e;
    if (o.action == Options::Action::kHelp || o.action == Options::Action::kVersion) return o;
  }
  if (o.action != Options::Action::kRun) return o;

  if (o.kernel.empty() && !o.initrd.empty()) return Error{"-initrd only allowed with -kernel option"};
  if (o.kernel.empty() && !o.append.empty()) return Error{"-append only allowed with -kernel option"};
  auto cpu = parse_cpu_option(p.cpu_spec);
  if (!cpu) return Error{cpu.error()};
  o.model = std::move(cpu->model);
  for (auto& w : cpu->warnings) o.warnings.push_back(std::move(w));
  // QEMU's default serial port (qemu_create_default_devices): none with -nodefaults or any
  // -serial; otherwise stdio with -nographic, else a virtual console, which nestvm (no display)
  // also puts on stdio.
  if (!p.serial_given && !o.nodefaults) o.serials.push_back({SerialOption::Backend::kStdio, {}});
  return o;
}

std::string help_text() {
  std::string s =
      "usage: nestvm [options]\n"
      "\n"
      "nestvm runs an x86-64 guest as L1 under its own L0 hypervisor, on a processor that implements\n"
      "VMX, with the command line of qemu-system-x86_64. Without -kernel it boots its built-in demo.\n"
      "Options take one dash or two ('--opt=value' works too):\n\n";
  for (const OptionSpec& o : kOptions) {
    std::string head = fmt::format("  -{}{}{}", o.name, o.arg ? " " : "", o.arg ? o.arg : "");
    if (head.size() > 30) s += head + "\n" + std::string(32, ' ');
    else s += fmt::format("{:<32}", head);
    s += o.help;
    s += "\n";
  }
  s +=
      "\n"
      "Exit status:\n"
      "  (value << 1) | 1  the guest wrote value to isa-debug-exit (as QEMU)\n"
      "  0                 the guest stopped without isa-debug-exit (e.g. ACPI power-off)\n"
      "  2                 invalid command line, or a file or image that cannot be loaded\n"
      "  4                 the guest triple-faulted (shutdown); the vCPU state is printed on stderr\n"
      "  6                 L0 could not continue (failed VM entry, unexpected exit, out of memory)\n"
      "  128 + N           stopped by signal N (SIGINT 130, SIGTERM 143, SIGHUP 129)\n";
  return s;
}

std::string machine_help_text() {
  return "Supported machines are:\n"
         "pc                   Standard PC (i440FX + PIIX), nestvm's PC board (default)\n"
         "q35                  accepted as the same PC board (nestvm has one)\n";
}

std::string device_help_text() {
  return "Devices nestvm has beyond the PC board (-device):\n"
         "name \"isa-debug-exit\", bus ISA: iobase (default 0x501), iosize (default 0x2); writing value\n"
         "    exits nestvm with status (value << 1) | 1\n"
         "name \"pc-testdev\", bus ISA: the test device of kvm-unit-tests\n"
         "name \"pci-testdev\", bus PCI: the PCI test device of kvm-unit-tests\n";
}

}  // namespace nestvm::vmm
