// Paging-structure entry formats (SDM Vol. 3 §4.3-4.5, Tables 4-4 to 4-20).
#pragma once
#include <cstdint>

namespace nestvm::arch::pte {
inline constexpr uint64_t kP = 1ull << 0;
inline constexpr uint64_t kRW = 1ull << 1;
inline constexpr uint64_t kUS = 1ull << 2;
inline constexpr uint64_t kPWT = 1ull << 3;
inline constexpr uint64_t kPCD = 1ull << 4;
inline constexpr uint64_t kA = 1ull << 5;
inline constexpr uint64_t kD = 1ull << 6;
inline constexpr uint64_t kPS = 1ull << 7;    // page size (in PDE/PDPTE)
inline constexpr uint64_t kPAT4K = 1ull << 7; // PAT bit of a 4 KiB PTE
inline constexpr uint64_t kG = 1ull << 8;
inline constexpr uint64_t kPATLarge = 1ull << 12;  // PAT bit of a 2M/4M/1G page
inline constexpr uint64_t kXD = 1ull << 63;
inline constexpr int kPkeyShift = 59;
inline constexpr uint64_t kPkeyMask = 0xfull << 59;
inline constexpr uint64_t kPageMask4K = ~0xfffull;
constexpr uint64_t phys_mask(int maxphyaddr) { return ((1ull << maxphyaddr) - 1) & ~0xfffull; }
}  // namespace nestvm::arch::pte
