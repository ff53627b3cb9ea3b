#include "vmm/devices/rate_limited_log.h"

#include <cstdio>

namespace nestvm::vmm {

bool RateLimitedLog::admit() {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= interval_) {
    if (dropped_in_window_)
      std::fprintf(stderr, "nestvm: %s: %llu similar messages suppressed\n", prefix_.c_str(),
                   static_cast<unsigned long long>(dropped_in_window_));
    window_start_ = now;
    in_window_ = 0;
    dropped_in_window_ = 0;
  }
  if (in_window_ < burst_) {
    ++in_window_;
    ++emitted_;
    return true;
  }
  ++dropped_in_window_;
  ++suppressed_;
  return false;
}

void RateLimitedLog::emit(const std::string& line) {
  std::fprintf(stderr, "nestvm: %s: %s\n", prefix_.c_str(), line.c_str());
}

uint64_t RateLimitedLog::emitted() const {
  std::lock_guard lock(mu_);
  return emitted_;
}

uint64_t RateLimitedLog::suppressed() const {
  std::lock_guard lock(mu_);
  return suppressed_;
}

}  // namespace nestvm::vmm
