// The VMX capabilities offered to L1: constant, what the issue requires, narrowed by the CPU
// model (QEMU's vmx-* names on -cpu) with the dependencies between them.
#include <gtest/gtest.h>

#include "arch/msr_index.h"
#include "hv/nested/nested_caps.h"
#include "hv/nested/vmcs12.h"
#include "vmm/cpu_option.h"

namespace nestvm::test {
namespace {

using namespace arch;
using namespace hv::nested;

VmxCapabilities caps_for(const char* spec) {
  auto sel = vmm::parse_cpu_option(spec);
  EXPECT_TRUE(sel.ok()) << spec;
  return nested_vmx_capabilities(sel.value().model);
}

TEST(NestedCaps, OfferTheRequiredSetOnMax) {
  const VmxCapabilities c = caps_for("max");
  EXPECT_EQ(c.basic & 0x7fffffff, kVmcs12Revision);
  EXPECT_TRUE(c.basic & vmx_basic::kTrueControls);
  for (uint32_t p2 : {proc2::kEnableEpt, proc2::kEnableVpid, proc2::kUnrestrictedGuest})
    EXPECT_TRUE(c.proc2.allowed1 & p2) << p2;
  for (uint32_t p : {proc::kUseTprShadow, proc::kUseMsrBitmaps, proc::kUseIoBitmaps, proc::kActivateSecondary})
    EXPECT_TRUE(c.proc.allowed1 & p) << p;
  using namespace ept_vpid_cap;
  const uint64_t want = kExecuteOnly | kPageWalk4 | kMemTypeWb | kPde2M | kPdpte1G | kAccessedDirty | kInvept |
                        kInveptSingleContext | kInveptAllContext | kInvvpid | kInvvpidIndividualAddr |
                        kInvvpidSingleContext | kInvvpidAllContext | kInvvpidSingleContextRetainGlobals;
  EXPECT_EQ(c.ept_vpid_cap & want, want);
  EXPECT_FALSE(c.proc2.allowed1 & proc2::kVmcsShadowing);
}

TEST(NestedCaps, AreConstant) {
  const VmxCapabilities a = caps_for("max"), b = caps_for("max");
  EXPECT_EQ(a.proc.msr(), b.proc.msr());
  EXPECT_EQ(a.proc2.msr(), b.proc2.msr());
  EXPECT_EQ(a.ept_vpid_cap, b.ept_vpid_cap);
  EXPECT_EQ(a.basic, b.basic);
}

TEST(NestedCaps, QemuNamesNarrowThemWithDependencies) {
  const VmxCapabilities c = caps_for("max,-vmx-ept,-vmx-vpid,-vmx-flexpriority,-vmx-cr3-load-noexit");
  EXPECT_FALSE(c.proc2.allowed1 & proc2::kEnableEpt);
  EXPECT_FALSE(c.proc2.allowed1 & proc2::kUnrestrictedGuest);  // depends on EPT
  EXPECT_FALSE(c.proc2.allowed1 & proc2::kEnableVpid);
  EXPECT_EQ(c.ept_vpid_cap, 0u);  // neither EPT nor VPID capabilities remain
  EXPECT_FALSE(c.proc.allowed1 & proc::kUseTprShadow);
  EXPECT_TRUE(c.proc.allowed0 & proc::kCr3LoadExiting);  // CR3-load exiting can no longer be 0
  uint64_t v = 0;
  EXPECT_FALSE(nested_vmx_capability_msr(c, msr_index(Msr::kIA32_VMX_EPT_VPID_CAP), v));
  EXPECT_TRUE(nested_vmx_capability_msr(c, msr_index(Msr::kIA32_VMX_PROCBASED_CTLS2), v));

  const VmxCapabilities d = caps_for("max,vmx-secondary-ctls=off,-vmx-invvpid-single-addr");
  EXPECT_EQ(d.proc2.allowed1, 0u);
  EXPECT_FALSE(nested_vmx_capability_msr(d, msr_index(Msr::kIA32_VMX_PROCBASED_CTLS2), v));
  const VmxCapabilities e = caps_for("max,-vmx-invvpid-single-addr,-vmx-ept-1gb");
  EXPECT_FALSE(e.ept_vpid_cap & ept_vpid_cap::kInvvpidIndividualAddr);
  EXPECT_FALSE(e.ept_vpid_cap & ept_vpid_cap::kPdpte1G);
  EXPECT_TRUE(e.ept_vpid_cap & ept_vpid_cap::kInvvpidSingleContext);
}

TEST(NestedCaps, WithoutTrueControlsTheTrueMsrsAreGone) {
  const VmxCapabilities c = caps_for("max,-vmx-true-ctls");
  uint64_t v = 0;
  EXPECT_FALSE(nested_vmx_capability_msr(c, msr_index(Msr::kIA32_VMX_TRUE_PROCBASED_CTLS), v));
  ASSERT_TRUE(nested_vmx_capability_msr(c, msr_index(Msr::kIA32_VMX_PROCBASED_CTLS), v));
  EXPECT_EQ(uint32_t(v) & proc::kDefault1, proc::kDefault1);
  EXPECT_FALSE(nested_vmx_capability_msr(c, msr_index(Msr::kIA32_VMX_VMFUNC), v));
}

TEST(NestedCaps, CpuModelFeaturesNarrowThem) {
  const VmxCapabilities c = caps_for("max,-rdtscp,-pdpe1gb,-smap");
  EXPECT_FALSE(c.proc2.allowed1 & proc2::kEnableRdtscp);
  EXPECT_FALSE(c.ept_vpid_cap & ept_vpid_cap::kPdpte1G);
  EXPECT_FALSE(c.cr4_fixed1 & (1ull << 21));  // CR4.SMAP
  EXPECT_TRUE(c.cr4_fixed1 & (1ull << 13));   // CR4.VMXE
}

TEST(NestedCaps, UnknownAndUnofferedNames) {
  EXPECT_FALSE(vmm::parse_cpu_option("max,-vmx-nonsense").ok());
  const auto sel = vmm::parse_cpu_option("max,+vmx-shadow-vmcs");
  ASSERT_TRUE(sel.ok());
  ASSERT_EQ(sel.value().warnings.size(), 1u);
  EXPECT_NE(sel.value().warnings[0].find("vmx-shadow-vmcs"), std::string::npos);
  EXPECT_FALSE(vmm::parse_cpu_option("max,+vmx-shadow-vmcs,enforce").ok());
  EXPECT_TRUE(vmm::parse_cpu_option("max,+vmx-ept,enforce").ok());
}

}  // namespace
}  // namespace nestvm::test
