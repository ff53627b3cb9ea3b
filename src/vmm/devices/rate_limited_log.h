// Anything a guest can make nestvm print is rate-limited (STYLE.md): a device's log lines pass
// in bursts of at most `burst` per interval; the rest are counted, and the count is reported in
// one line when the next interval opens.
#pragma once
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

namespace nestvm::vmm {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::string prefix, unsigned burst = 10,
                          std::chrono::nanoseconds interval = std::chrono::seconds(10))
      : prefix_(std::move(prefix)), burst_(burst), interval_(interval) {}

  template <typename... T>
  void log(fmt::format_string<T...> f, T&&... args) {
    if (admit()) emit(fmt::format(f, std::forward<T>(args)...));
  }

  uint64_t emitted() const;
  uint64_t suppressed() const;

 private:
  bool admit();
  void emit(const std::string& line);

  std::string prefix_;
  unsigned burst_;
  std::chrono::nanoseconds interval_;
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point window_start_{};
  unsigned in_window_ = 0;
  uint64_t dropped_in_window_ = 0;
  uint64_t emitted_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace nestvm::vmm
