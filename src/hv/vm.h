// A virtual machine, as KVM's struct kvm: host-physical memory, guest memory (memslots), the MMU,
// the I/O buses, the interrupt controllers, the vCPUs and the statistics. src/vmm builds one
// from the command line, attaches devices and loaders, and runs it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/cpu_model.h"
#include "hv/guest_memory.h"
#include "hv/host_memory.h"
#include "hv/io_bus.h"
#include "hv/irqchip.h"
#include "hv/mmu/shadow_mmu.h"
#include "hv/mmu/tdp_mmu.h"
#include "hv/stats.h"

namespace nestvm::hv {

class Vcpu;

struct VmConfig {
  uint64_t ram_bytes = 128ull << 20;
  unsigned vcpus = 1;
  cpu::CpuModel model = cpu::CpuModel::max();  // what L1 sees (CPUID, -cpu)
  bool ept = true;                             // TDP (EPT01); false: shadow paging
};

enum class StopReason : uint8_t {
  kRunning,
  kDebugExit,   // the guest wrote to isa-debug-exit
  kShutdown,    // triple fault (or a shutdown request from the guest)
  kSignal,      // Ctrl-C / SIGTERM
  kError,       // L0 could not continue (VM-entry failure, unexpected exit, out of memory)
};

class Vm {
 public:
  explicit Vm(VmConfig config);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  const VmConfig& config() const { return config_; }
  const cpu::CpuModel& model() const { return config_.model; }
  HostMemory& host() { return host_; }
  GuestMemory& mem() { return mem_; }
  IoBuses& io() { return io_; }
  TdpMmu& tdp() { return tdp_; }
  ShadowMmu& shadow() { return shadow_; }  // the MMU when !config().ept
  MmuStats& mmu_stats() { return mmu_stats_; }
  unsigned vcpu_count() const { return unsigned(vcpus_.size()); }
  Vcpu& vcpu(unsigned i) { return *vcpus_[i]; }

  // The interrupt controllers (set by the machine before run()).
  void set_irqchip(IrqChip* chip) { irqchip_ = chip; }
  IrqChip* irqchip() { return irqchip_; }

  // Runs every vCPU on its own thread until the VM stops; returns why.
  StopReason run();
  void request_stop(StopReason why, int exit_code = 0, std::string message = {});

  // Sets request bits (Vcpu req::) on every vCPU and kicks those in the guest; with `wait`,
  // returns only once each of those has left the guest, so that none runs again before it
  // has serviced the request (KVM's kvm_make_all_cpus_request with KVM_REQUEST_WAIT).
  void make_all_cpus_request(uint32_t request, bool wait);
  // Every vCPU drops its cached translations (KVM's kvm_flush_remote_tlbs).
  void flush_remote_tlbs();
  bool stopping() const { return stop_.load(std::memory_order_acquire) != StopReason::kRunning; }
  StopReason stop_reason() const { return stop_.load(); }
  int exit_code() const { return exit_code_; }
  const std::string& stop_message() const { return stop_message_; }

 private:
  VmConfig config_;
  HostMemory host_;
  GuestMemory mem_;
  IoBuses io_;
  MmuStats mmu_stats_;
  TdpMmu tdp_;
  ShadowMmu shadow_;
  IrqChip* irqchip_ = nullptr;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::atomic<StopReason> stop_{StopReason::kRunning};
  std::mutex stop_mu_;
  int exit_code_ = 0;
  std::string stop_message_;
};

}  // namespace nestvm::hv
