// The state of a vCPU in the layout of QEMU's "info registers" (x86_cpu_dump_state): printed
// when the guest triple-faults, from vmcs01's guest-state area and the silicon's registers.
#pragma once
#include <string>

namespace nestvm::hv {
class Vcpu;
}

namespace nestvm::vmm {

// Reads vmcs01 and the core: call it only while the vCPU is not running.
std::string dump_vcpu_state(hv::Vcpu& v);

}  // namespace nestvm::vmm
