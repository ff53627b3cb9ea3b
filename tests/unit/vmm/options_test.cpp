// The command line: every option with QEMU's spelling and meaning, QEMU's defaults, and every
// error as one line.
#include "vmm/options.h"

#include <gtest/gtest.h>

#include <initializer_list>

namespace nestvm::test {
namespace {

using vmm::DeviceOption;
using vmm::Options;
using vmm::SerialOption;

vmm::Result<Options> parse(std::initializer_list<const char*> args) {
  std::vector<std::string> v(args.begin(), args.end());
  return vmm::parse_options(v);
}

Options ok(std::initializer_list<const char*> args) {
  auto r = parse(args);
  EXPECT_TRUE(r) << r.error();
  return r ? *r : Options{};
}

std::string error_of(std::initializer_list<const char*> args) {
  auto r = parse(args);
  EXPECT_FALSE(r);
  if (r) return {};
  EXPECT_EQ(r.error().find('\n'), std::string::npos) << r.error();
  EXPECT_FALSE(r.error().empty());
  return r.error();
}

TEST(Options, Defaults) {
  const Options o = ok({});
  EXPECT_EQ(o.action, Options::Action::kRun);
  EXPECT_TRUE(o.kernel.empty());
  EXPECT_EQ(o.ram_bytes, 128ull << 20);
  EXPECT_EQ(o.smp.cpus, 1u);
  EXPECT_EQ(o.model.name(), "max");
  EXPECT_TRUE(o.model.has(cpu::Feature::kVmx));
  EXPECT_TRUE(o.ept);
  EXPECT_EQ(o.machine, vmm::MachineType::kPc);
  // QEMU's default serial port; nestvm has no display, so it goes to stdio.
  ASSERT_EQ(o.serials.size(), 1u);
  EXPECT_EQ(o.serials[0].backend, SerialOption::Backend::kStdio);
  EXPECT_FALSE(o.stats);
}

TEST(Options, KernelInitrdAppendNameAndBothDashSpellings) {
  const Options o = ok({"-kernel", "k.elf", "--initrd", "m1 a,m2", "-append", "x y", "--name", "guest=vm1,debug-threads=on"});
  EXPECT_EQ(o.kernel, "k.elf");
  EXPECT_EQ(o.initrd, "m1 a,m2");
  EXPECT_EQ(o.append, "x y");
  EXPECT_EQ(o.name, "vm1");
  EXPECT_EQ(ok({"--kernel=k2", "-name", "plain"}).kernel, "k2");
  EXPECT_EQ(ok({"-name", "plain"}).name, "plain");
}

TEST(Options, MemorySizes) {
  EXPECT_EQ(ok({"-m", "512"}).ram_bytes, 512ull << 20);
  EXPECT_EQ(ok({"-m", "1G"}).ram_bytes, 1ull << 30);
  EXPECT_EQ(ok({"-m", "2g"}).ram_bytes, 2ull << 30);
  EXPECT_EQ(ok({"-m", "size=256M"}).ram_bytes, 256ull << 20);
  EXPECT_EQ(ok({"-m", "1.5G"}).ram_bytes, 3ull << 29);
  EXPECT_EQ(ok({"-m", "4096k"}).ram_bytes, 4ull << 20);
  EXPECT_EQ(ok({"-m", "3000001b"}).ram_bytes, (3000001ull + 8191) & ~8191ull);  // rounded up to 8 KiB
  EXPECT_NE(error_of({"-m", "12Q"}).find("invalid ram size '12Q'"), std::string::npos);
  EXPECT_NE(error_of({"-m", "1"}).find("too small"), std::string::npos);
  EXPECT_NE(error_of({"-m", "2048G"}).find("too large"), std::string::npos);
  EXPECT_NE(error_of({"-m", "1G,slots=2,maxmem=4G"}).find("hotplug"), std::string::npos);
  EXPECT_NE(error_of({"-m"}).find("requires an argument"), std::string::npos);
}

TEST(Options, SmpCountAndTopology) {
  EXPECT_EQ(ok({"-smp", "4"}).smp.cpus, 4u);
  EXPECT_EQ(ok({"-smp", "cpus=3"}).smp.cpus, 3u);
  const Options t = ok({"-smp", "sockets=2,cores=2,threads=2"});
  EXPECT_EQ(t.smp.cpus, 8u);
  EXPECT_EQ(t.smp.maxcpus, 8u);
  const Options m = ok({"-smp", "2,maxcpus=4"});
  EXPECT_EQ(m.smp.cpus, 2u);
  EXPECT_EQ(m.smp.maxcpus, 4u);
  EXPECT_EQ(m.smp.cores, 4u);  // QEMU 6.2+ prefers cores
  const Options c = ok({"-smp", "6,sockets=2"});
  EXPECT_EQ(c.smp.cores, 3u);
  EXPECT_TRUE(c.smp_given);
  EXPECT_NE(error_of({"-smp", "0"}).find("greater than zero"), std::string::npos);
  EXPECT_NE(error_of({"-smp", "4,sockets=3"}).find("invalid CPU topology"), std::string::npos);
  EXPECT_NE(error_of({"-smp", "4,maxcpus=2"}).find("maxcpus"), std::string::npos);
  EXPECT_NE(error_of({"-smp", "300"}).find("max CPUs"), std::string::npos);
  EXPECT_NE(error_of({"-smp", "two"}).find("invalid number"), std::string::npos);
  EXPECT_NE(error_of({"-smp", "2,sockts=2"}).find("invalid parameter 'sockts'"), std::string::npos);
}

TEST(Options, CpuModelAndWarnings) {
  const Options o = ok({"-cpu", "qemu64,+x2apic,-vmx"});
  EXPECT_EQ(o.model.name(), "qemu64");
  EXPECT_TRUE(o.model.has(cpu::Feature::kX2apic));
  EXPECT_FALSE(o.model.has(cpu::Feature::kVmx));
  const Options w = ok({"-cpu", "max,+pku"});
  ASSERT_EQ(w.warnings.size(), 1u);
  EXPECT_NE(w.warnings[0].find("pku"), std::string::npos);
  // The last -cpu wins, as in QEMU.
  EXPECT_EQ(ok({"-cpu", "qemu64", "-cpu", "max"}).model.name(), "max");
  EXPECT_NE(error_of({"-cpu", "486"}).find("unable to find CPU model '486'"), std::string::npos);
  EXPECT_EQ(ok({"-cpu", "help"}).action, Options::Action::kCpuHelp);
}

TEST(Options, MachineAndAccel) {
  EXPECT_EQ(ok({"-machine", "q35"}).machine, vmm::MachineType::kQ35);
  EXPECT_EQ(ok({"-machine", "type=pc,accel=kvm"}).machine, vmm::MachineType::kPc);
  EXPECT_EQ(ok({"-M", "pc-i440fx-8.0"}).machine, vmm::MachineType::kPc);
  ok({"-machine", "accel=kvm:tcg,kernel-irqchip=split,usb=off,smm=off"});
  ok({"-machine", "pc,accel=nestvm"});
  EXPECT_FALSE(ok({"-accel", "nestvm,ept=off"}).ept);
  EXPECT_TRUE(ok({"-accel", "kvm"}).ept);
  EXPECT_FALSE(ok({"-accel", "tcg,ept=off"}).ept);
  ok({"-enable-kvm"});
  EXPECT_EQ(ok({"-machine", "help"}).action, Options::Action::kMachineHelp);
  EXPECT_NE(error_of({"-machine", "microvm"}).find("unsupported machine type 'microvm'"), std::string::npos);
  EXPECT_NE(error_of({"-machine", "pc,accel=hvf"}).find("invalid accelerator 'hvf'"), std::string::npos);
  EXPECT_NE(error_of({"-machine", "pc,usb=on"}).find("usb=on"), std::string::npos);
  EXPECT_NE(error_of({"-machine", "pc,nosuch=1"}).find("invalid property 'nosuch'"), std::string::npos);
  EXPECT_NE(error_of({"-accel", "xen"}).find("invalid accelerator 'xen'"), std::string::npos);
  EXPECT_NE(error_of({"-accel", "nestvm,ept=sometimes"}).find("ept expects on or off"), std::string::npos);
  EXPECT_NE(error_of({"-accel", "nestvm,npt=off"}).find("invalid property 'npt'"), std::string::npos);
}

TEST(Options, SerialPortsAsQemu) {
  // -nodefaults: no serial port unless asked for.
  EXPECT_TRUE(ok({"-nodefaults"}).serials.empty());
  EXPECT_TRUE(ok({"-nodefaults", "-nographic"}).serials.empty());
  const Options s = ok({"-nodefaults", "-serial", "stdio"});
  ASSERT_EQ(s.serials.size(), 1u);
  EXPECT_EQ(s.serials[0].backend, SerialOption::Backend::kStdio);
  // -serial none: no port for that index, and no default.
  EXPECT_TRUE(ok({"-serial", "none"}).serials.empty());
  const Options two = ok({"-serial", "null", "-serial", "file:/tmp/x.log"});
  ASSERT_EQ(two.serials.size(), 2u);
  EXPECT_EQ(two.serials[0].backend, SerialOption::Backend::kNull);
  EXPECT_EQ(two.serials[1].backend, SerialOption::Backend::kFile);
  EXPECT_EQ(two.serials[1].path, "/tmp/x.log");
  EXPECT_EQ(ok({"-nographic"}).serials.size(), 1u);
  EXPECT_EQ(ok({"-serial", "mon:stdio"}).serials[0].backend, SerialOption::Backend::kStdio);
  EXPECT_NE(error_of({"-serial", "stdio", "-serial", "stdio"}).find("already in use"), std::string::npos);
  EXPECT_NE(error_of({"-serial", "pty"}).find("unsupported backend 'pty'"), std::string::npos);
  EXPECT_NE(error_of({"-serial", "null", "-serial", "null", "-serial", "null", "-serial", "null", "-serial", "null"})
                .find("at most 4"),
            std::string::npos);
}

TEST(Options, Devices) {
  const Options o = ok({"-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-device", "pc-testdev", "-device",
                        "pci-testdev", "-device", "driver=isa-debug-exit,id=d2"});
  ASSERT_EQ(o.devices.size(), 4u);
  EXPECT_EQ(o.devices[0].kind, DeviceOption::Kind::kIsaDebugExit);
  EXPECT_EQ(o.devices[0].iobase, 0xf4);
  EXPECT_EQ(o.devices[0].iosize, 4);
  EXPECT_EQ(o.devices[1].kind, DeviceOption::Kind::kPcTestDev);
  EXPECT_EQ(o.devices[2].kind, DeviceOption::Kind::kPciTestDev);
  EXPECT_EQ(o.devices[3].iobase, 0x501);  // QEMU's defaults
  EXPECT_EQ(o.devices[3].iosize, 2);
  EXPECT_EQ(o.devices[3].id, "d2");
  EXPECT_EQ(ok({"-device", "help"}).action, Options::Action::kDeviceHelp);
  EXPECT_NE(error_of({"-device", "virtio-net-pci"}).find("'virtio-net-pci' is not a valid device model name"),
            std::string::npos);
  EXPECT_NE(error_of({"-device", "isa-debug-exit,iobase=0x10000"}).find("invalid iobase"), std::string::npos);
  EXPECT_NE(error_of({"-device", "isa-debug-exit,iosize=0"}).find("invalid iosize"), std::string::npos);
  EXPECT_NE(error_of({"-device", "pc-testdev,iobase=1"}).find("property 'iobase' not found"), std::string::npos);
}

TEST(Options, DisplaysAndFlags) {
  const Options o = ok({"-display", "none", "-vnc", "none", "-monitor", "none", "-parallel", "none", "-no-reboot",
                        "-nographic", "--stats", "--stats-json", "/tmp/s.json"});
  EXPECT_TRUE(o.no_reboot);
  EXPECT_TRUE(o.nographic);
  EXPECT_TRUE(o.stats);
  EXPECT_EQ(o.stats_json, "/tmp/s.json");
  EXPECT_EQ(ok({"--stats-json=/tmp/t.json"}).stats_json, "/tmp/t.json");
  EXPECT_NE(error_of({"-display", "gtk"}).find("only 'none'"), std::string::npos);
  EXPECT_NE(error_of({"-vnc", ":0"}).find("only 'none'"), std::string::npos);
  EXPECT_NE(error_of({"--stats=yes"}).find("takes no argument"), std::string::npos);
}

TEST(Options, HelpVersionAndUnknown) {
  EXPECT_EQ(ok({"--help"}).action, Options::Action::kHelp);
  EXPECT_EQ(ok({"-h"}).action, Options::Action::kHelp);
  EXPECT_EQ(ok({"-help", "-nosuch"}).action, Options::Action::kHelp);  // help stops parsing, as QEMU
  EXPECT_EQ(ok({"-version"}).action, Options::Action::kVersion);
  EXPECT_NE(error_of({"-nosuch"}).find("invalid option '-nosuch'"), std::string::npos);
  EXPECT_NE(error_of({"kernel.elf"}).find("not an option"), std::string::npos);
  EXPECT_NE(error_of({"-initrd", "m"}).find("-initrd only allowed with -kernel"), std::string::npos);
  EXPECT_NE(error_of({"-append", "x"}).find("-append only allowed with -kernel"), std::string::npos);
  // --help names every option.
  const std::string h = vmm::help_text();
  for (const char* opt : {"-kernel", "-initrd", "-append", "-m ", "-smp", "-cpu", "-machine", "-accel", "-serial",
                          "-nographic", "-display", "-vnc", "-nodefaults", "-no-reboot", "-device", "-name",
                          "-stats", "-stats-json", "-help", "-enable-kvm", "-version"})
    EXPECT_NE(h.find(opt), std::string::npos) << opt;
}

}  // namespace
}  // namespace nestvm::test
