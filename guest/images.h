// Guest images built from guest/ and embedded in the program (see guest/CMakeLists.txt).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace nestvm::guest {

struct Image {
  std::string_view name;
  std::span<const uint8_t> bytes;
  uint64_t load_address;
};

// Every embedded image; find() by name returns nullptr if there is none.
std::span<const Image> images();
const Image* find(std::string_view name);

// Bare workload images (workload_sieve, ...): 64-bit code linked at kWorkloadBase; the round
// count goes at kWorkloadMailbox, the result comes back at kWorkloadMailbox + 8.
inline constexpr uint64_t kWorkloadBase = 0x100000;
inline constexpr uint64_t kWorkloadMailbox = 0x7000;

}  // namespace nestvm::guest
