// RFLAGS bits (SDM Vol. 1 §3.4.3, Vol. 3 §2.3).
#pragma once
#include <cstdint>

namespace nestvm::arch::rflags {
inline constexpr uint64_t kCF = 1ull << 0;
inline constexpr uint64_t kFixed1 = 1ull << 1;  // bit 1 always reads as 1
inline constexpr uint64_t kPF = 1ull << 2;
inline constexpr uint64_t kAF = 1ull << 4;
inline constexpr uint64_t kZF = 1ull << 6;
inline constexpr uint64_t kSF = 1ull << 7;
inline constexpr uint64_t kTF = 1ull << 8;
inline constexpr uint64_t kIF = 1ull << 9;
inline constexpr uint64_t kDF = 1ull << 10;
inline constexpr uint64_t kOF = 1ull << 11;
inline constexpr uint64_t kIOPL = 3ull << 12;
inline constexpr int kIoplShift = 12;
inline constexpr uint64_t kNT = 1ull << 14;
inline constexpr uint64_t kRF = 1ull << 16;
inline constexpr uint64_t kVM = 1ull << 17;
inline constexpr uint64_t kAC = 1ull << 18;
inline constexpr uint64_t kVIF = 1ull << 19;
inline constexpr uint64_t kVIP = 1ull << 20;
inline constexpr uint64_t kID = 1ull << 21;
// The six status flags, computed lazily by the core.
inline constexpr uint64_t kArith = kCF | kPF | kAF | kZF | kSF | kOF;
// Every bit software can set; the rest are reserved (read as 0, bit 1 reads as 1).
inline constexpr uint64_t kDefined = kArith | kTF | kIF | kDF | kIOPL | kNT | kRF | kVM | kAC | kVIF | kVIP | kID;
}  // namespace nestvm::arch::rflags
