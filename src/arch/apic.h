// Local APIC and I/O APIC definitions (SDM Vol. 3 Chapter 11 "Advanced Programmable Interrupt
// Controller"; Intel 82093AA I/O APIC datasheet), with the manual's names.
#pragma once
#include <cstdint>

namespace nestvm::arch {

// Local APIC register offsets in the xAPIC page (SDM Table 11-1). In x2APIC mode register
// `offset` is MSR 0x800 + offset / 16 (SDM §11.12.1.2, Table 11-6).
enum class ApicReg : uint16_t {
  kId = 0x020,
  kVersion = 0x030,
  kTpr = 0x080,
  kApr = 0x090,
  kPpr = 0x0a0,
  kEoi = 0x0b0,
  kRrd = 0x0c0,
  kLdr = 0x0d0,
  kDfr = 0x0e0,
  kSvr = 0x0f0,
  kIsr = 0x100,  // 8 registers, 0x100-0x170
  kTmr = 0x180,  // 8 registers, 0x180-0x1f0
  kIrr = 0x200,  // 8 registers, 0x200-0x270
  kEsr = 0x280,
  kLvtCmci = 0x2f0,
  kIcrLow = 0x300,
  kIcrHigh = 0x310,
  kLvtTimer = 0x320,
  kLvtThermal = 0x330,
  kLvtPerf = 0x340,
  kLvtLint0 = 0x350,
  kLvtLint1 = 0x360,
  kLvtError = 0x370,
  kTimerInitialCount = 0x380,
  kTimerCurrentCount = 0x390,
  kTimerDivideConfig = 0x3e0,
  kSelfIpi = 0x3f0,  // x2APIC only
};

constexpr uint32_t apic_reg_msr(ApicReg r) { return 0x800u + uint32_t(r) / 16; }
constexpr uint16_t apic_msr_reg(uint32_t msr) { return uint16_t((msr - 0x800u) * 16); }

// Delivery modes of the ICR, the LVT entries and the I/O APIC redirection entries
// (SDM §11.5.1, §11.6.1).
enum class ApicDeliveryMode : uint8_t {
  kFixed = 0,
  kLowestPriority = 1,
  kSmi = 2,
  kNmi = 4,
  kInit = 5,
  kStartup = 6,
  kExtInt = 7,
};

// Bits shared by LVT entries, the ICR and redirection entries (SDM Figures 11-8 and 11-12).
namespace apic {
inline constexpr uint32_t kVectorMask = 0xff;
inline constexpr unsigned kDeliveryModeShift = 8;
inline constexpr uint32_t kDeliveryModeMask = 7u << 8;
inline constexpr uint32_t kDestModeLogical = 1u << 11;
inline constexpr uint32_t kDeliveryStatus = 1u << 12;  // send pending; read-only
inline constexpr uint32_t kPolarityLow = 1u << 13;
inline constexpr uint32_t kRemoteIrr = 1u << 14;      // LVT LINT0/1, redirection entries
inline constexpr uint32_t kLevelAssert = 1u << 14;    // ICR
inline constexpr uint32_t kLevelTriggered = 1u << 15;
inline constexpr uint32_t kMasked = 1u << 16;
inline constexpr unsigned kShorthandShift = 18;  // ICR destination shorthand
inline constexpr uint32_t kShorthandMask = 3u << 18;
inline constexpr unsigned kTimerModeShift = 17;  // LVT timer mode (SDM Table 11-2)
inline constexpr uint32_t kTimerModeMask = 3u << 17;

enum class Shorthand : uint8_t { kNone = 0, kSelf = 1, kAllIncludingSelf = 2, kAllExcludingSelf = 3 };
enum class TimerMode : uint8_t { kOneShot = 0, kPeriodic = 1, kTscDeadline = 2 };

// Spurious-interrupt vector register (SDM Figure 11-23).
inline constexpr uint32_t kSvrEnable = 1u << 8;
inline constexpr uint32_t kSvrFocusDisable = 1u << 9;

// Error status register bits (SDM Figure 11-9).
inline constexpr uint32_t kEsrSendIllegalVector = 1u << 5;
inline constexpr uint32_t kEsrReceiveIllegalVector = 1u << 6;
inline constexpr uint32_t kEsrIllegalRegisterAddress = 1u << 7;

// Destination format register models (SDM §11.6.2.2).
inline constexpr uint32_t kDfrFlat = 0xffffffffu;
inline constexpr uint32_t kDfrCluster = 0x0fffffffu;
}  // namespace apic

// I/O APIC (82093AA datasheet §3): the indirect register window and the registers behind it.
namespace ioapic {
inline constexpr uint64_t kDefaultBase = 0xfec00000;
inline constexpr unsigned kIoRegSel = 0x00;
inline constexpr unsigned kIoWin = 0x10;
inline constexpr unsigned kRegId = 0x00;
inline constexpr unsigned kRegVersion = 0x01;
inline constexpr unsigned kRegArbitration = 0x02;
inline constexpr unsigned kRegRedirectionTable = 0x10;  // entry n: 0x10 + 2n (low), 0x11 + 2n (high)
inline constexpr unsigned kNumPins = 24;
}  // namespace ioapic

}  // namespace nestvm::arch
