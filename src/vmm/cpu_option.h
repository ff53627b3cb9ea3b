// -cpu in QEMU's syntax: MODEL[,+feat][,-feat][,feat=on|off][,feat][,enforce][,check]
// [,vendor=STR][,model-id=STR] turned into the CPU model L1 sees (hv::VmConfig::model).
//
// Models: qemu64, max, host (= max: nestvm has no host processor to copy). Features by their
// QEMU/Linux names (src/cpu/features.def; '_' is accepted for '-', as QEMU does). VMX is
// advertised by default, since nested virtualization is what nestvm is for: -vmx or vmx=off
// hides it. Order as in QEMU: the model, then feat=on|off in order, then every +feat, then
// every -feat. A feature nestvm cannot provide is dropped with a warning, as QEMU's TCG does,
// or is an error with `enforce`.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "cpu/cpu_model.h"
#include "vmm/result.h"

namespace nestvm::vmm {

struct CpuSelection {
  cpu::CpuModel model;
  std::vector<std::string> warnings;  // without the "nestvm: warning: " prefix
};

Result<CpuSelection> parse_cpu_option(std::string_view spec);

// Whether nestvm can offer the feature to L1: the silicon implements it (cpu::CpuModel::max())
// or L0 provides it (VMX through nested virtualization; x2APIC and the TSC-deadline timer
// through its local APIC).
bool feature_supported(cpu::Feature f);

// QEMU's description of a feature bit: "CPUID.01H:ECX.vmx [bit 5]", "CPUID.07H:ECX.pku [bit 3]".
std::string feature_description(cpu::Feature f);

// The text of `-cpu help`: the models and every feature name.
std::string cpu_help_text();

}  // namespace nestvm::vmm
