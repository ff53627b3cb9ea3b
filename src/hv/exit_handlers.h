// L0's VM-exit handlers for L1, one per exit reason in a table (KVM's
// kvm_vmx_exit_handlers). Each returns false when the vCPU must stop.
#pragma once

namespace nestvm::hv {

class Vcpu;
bool handle_exit(Vcpu& vcpu, unsigned basic_reason);

}  // namespace nestvm::hv
