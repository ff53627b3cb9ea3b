#include "hv/vm.h"

#include <thread>

#include "hv/vcpu.h"

namespace nestvm::hv {

namespace {
// Host-physical space: guest RAM plus room for L0's structures (VMCSs, EPT tables, bitmaps,
// shadow pages) and, later, nested guests' structures.
uint64_t host_space_for(const VmConfig& c) { return c.ram_bytes + (c.ram_bytes / 8) + (256ull << 20); }
}  // namespace

Vm::Vm(VmConfig config)
    : config_(std::move(config)),
      host_(host_space_for(config_)),
      mem_(host_),
      tdp_(host_, mem_, mmu_stats_, [this] { flush_remote_tlbs(); }),
      shadow_(host_, mem_, mmu_stats_, config_.ept ? 0 : config_.vcpus, [this] { flush_remote_tlbs(); },
              [this] { make_all_cpus_request(req::kMmuReload, false); }) {
  for (unsigned i = 0; i < config_.vcpus; ++i) vcpus_.push_back(std::make_unique<Vcpu>(*this, i));
  for (unsigned i = 1; i < config_.vcpus; ++i) vcpus_[i]->set_wait_for_sipi(true);
}

Vm::~Vm() = default;

StopReason Vm::run() {
  std::vector<std::thread> threads;
  for (auto& v : vcpus_) threads.emplace_back([&v] { v->run(); });
  for (auto& t : threads) t.join();
  return stop_.load();
}

void Vm::make_all_cpus_request(uint32_t request, bool wait) {
  std::vector<uint64_t> modes(vcpus_.size());
  for (size_t i = 0; i < vcpus_.size(); ++i) modes[i] = vcpus_[i]->make_request(request);
  if (wait)
    for (size_t i = 0; i < vcpus_.size(); ++i) vcpus_[i]->wait_for_exit(modes[i]);
}

void Vm::flush_remote_tlbs() {
  make_all_cpus_request(req::kTlbFlush, true);
}

void Vm::request_stop(StopReason why, int exit_code, std::string message) {
  {
    std::lock_guard lock(stop_mu_);
    if (stop_.load() != StopReason::kRunning) return;  // the first reason wins
    exit_code_ = exit_code;
    stop_message_ = std::move(message);
    stop_.store(why, std::memory_order_release);
  }
  for (auto& v : vcpus_) v->kick();
}

}  // namespace nestvm::hv
