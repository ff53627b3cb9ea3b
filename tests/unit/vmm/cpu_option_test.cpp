// -cpu in QEMU's syntax: models, +/- and =on/off features, QEMU's order of application, VMX on
// by default, unsupported features dropped with a warning (or refused with enforce).
#include "vmm/cpu_option.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nestvm::test {
namespace {

using cpu::Feature;
using vmm::parse_cpu_option;

TEST(CpuOption, ModelsAdvertiseVmxByDefault) {
  for (const char* m : {"qemu64", "max", "host"}) {
    auto r = parse_cpu_option(m);
    ASSERT_TRUE(r) << r.error();
    EXPECT_TRUE(r->model.has(Feature::kVmx)) << m;
    EXPECT_TRUE(r->warnings.empty()) << m;
  }
  auto q = parse_cpu_option("qemu64");
  EXPECT_EQ(q->model.name(), "qemu64");
  EXPECT_FALSE(q->model.has(Feature::kSmep));
  auto m = parse_cpu_option("max");
  EXPECT_TRUE(m->model.has(Feature::kSmep));
  EXPECT_TRUE(m->model.has(Feature::kX2apic));
  EXPECT_TRUE(m->model.has(Feature::kTscDeadline));
  // CPUID.1:ECX bit 5 is what L1 reads.
  EXPECT_TRUE(q->model.cpuid(1, 0).ecx & (1u << 5));
}

TEST(CpuOption, FeatureSyntaxes) {
  auto r = parse_cpu_option("qemu64,+x2apic,-vmx,smep=on,pcid,tsc_deadline=on,nx=off");
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->model.has(Feature::kX2apic));
  EXPECT_FALSE(r->model.has(Feature::kVmx));
  EXPECT_TRUE(r->model.has(Feature::kSmep));
  EXPECT_TRUE(r->model.has(Feature::kPcid));
  EXPECT_TRUE(r->model.has(Feature::kTscDeadline));
  EXPECT_FALSE(r->model.has(Feature::kNx));
  auto off = parse_cpu_option("max,vmx=off,umip=off,invpcid=no,smap=false");
  ASSERT_TRUE(off) << off.error();
  EXPECT_FALSE(off->model.has(Feature::kVmx));
  EXPECT_FALSE(off->model.has(Feature::kUmip));
  EXPECT_FALSE(off->model.has(Feature::kInvpcid));
  EXPECT_FALSE(off->model.has(Feature::kSmap));
}

TEST(CpuOption, QemuOrderPlusThenMinusAfterProperties) {
  // feat=on|off first, then every +feat, then every -feat, wherever they appear.
  auto a = parse_cpu_option("qemu64,-smep,smep=on");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->model.has(Feature::kSmep));
  auto b = parse_cpu_option("qemu64,+smep,smep=off");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->model.has(Feature::kSmep));
  auto c = parse_cpu_option("qemu64,-smep,+smep");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->model.has(Feature::kSmep));
}

TEST(CpuOption, UnsupportedFeatureIsDroppedWithAWarningOrRefusedWithEnforce) {
  ASSERT_FALSE(vmm::feature_supported(Feature::kPku));
  auto r = parse_cpu_option("max,+pku");
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->model.has(Feature::kPku));
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_EQ(r->warnings[0], "nestvm doesn't support requested feature: CPUID.07H:ECX.pku [bit 3]");
  auto e = parse_cpu_option("max,+pku,enforce");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("pku"), std::string::npos);
  EXPECT_EQ(vmm::feature_description(Feature::kVmx), "CPUID.01H:ECX.vmx [bit 5]");
  EXPECT_EQ(vmm::feature_description(Feature::kSyscall), "CPUID.80000001H:EDX.syscall [bit 11]");
}

TEST(CpuOption, VendorAndModelId) {
  auto r = parse_cpu_option("qemu64,vendor=GenuineIntel,model-id=Test CPU");
  ASSERT_TRUE(r) << r.error();
  const auto v = r->model.cpuid(0, 0);
  char vendor[13] = {};
  std::memcpy(vendor, &v.ebx, 4);
  std::memcpy(vendor + 4, &v.edx, 4);
  std::memcpy(vendor + 8, &v.ecx, 4);
  EXPECT_STREQ(vendor, "GenuineIntel");
  const auto b = r->model.cpuid(0x80000002, 0);
  char brand[17] = {};
  std::memcpy(brand, &b.eax, 4);
  std::memcpy(brand + 4, &b.ebx, 4);
  std::memcpy(brand + 8, &b.ecx, 4);
  std::memcpy(brand + 12, &b.edx, 4);
  EXPECT_STREQ(brand, "Test CPU");
}

TEST(CpuOption, Errors) {
  struct Case {
    const char* spec;
    const char* message;
  };
  for (const Case& c : {Case{"pentium9", "unable to find CPU model 'pentium9'"},
                        Case{"", "missing CPU model name"},
                        Case{"max,+nosuch", "unknown CPU feature 'nosuch'"},
                        Case{"max,-nosuch", "unknown CPU feature 'nosuch'"},
                        Case{"max,nosuch=on", "unknown CPU feature or property 'nosuch'"},
                        Case{"max,vmx=maybe", "expects on or off"},
                        Case{"max,vendor=Short", "12-character"}}) {
    auto r = parse_cpu_option(c.spec);
    ASSERT_FALSE(r) << c.spec;
    EXPECT_NE(r.error().find(c.message), std::string::npos) << c.spec << ": " << r.error();
    EXPECT_EQ(r.error().find('\n'), std::string::npos);
  }
}

TEST(CpuOption, HelpListsModelsAndFeatures) {
  const std::string h = vmm::cpu_help_text();
  for (const char* s : {"qemu64", "max", "host", "vmx", "x2apic", "tsc-deadline", "pku(unsupported)"})
    EXPECT_NE(h.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace nestvm::test
