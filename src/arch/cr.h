// Control registers, EFER and XCR0: bit definitions from SDM Vol. 3 §2.5 and §2.2.1.
#pragma once
#include <cstdint>

namespace nestvm::arch {

namespace cr0 {
inline constexpr uint64_t kPE = 1ull << 0;   // protection enable
inline constexpr uint64_t kMP = 1ull << 1;   // monitor coprocessor
inline constexpr uint64_t kEM = 1ull << 2;   // emulation
inline constexpr uint64_t kTS = 1ull << 3;   // task switched
inline constexpr uint64_t kET = 1ull << 4;   // extension type (hardwired 1)
inline constexpr uint64_t kNE = 1ull << 5;   // numeric error
inline constexpr uint64_t kWP = 1ull << 16;  // write protect
inline constexpr uint64_t kAM = 1ull << 18;  // alignment mask
inline constexpr uint64_t kNW = 1ull << 29;  // not write-through
inline constexpr uint64_t kCD = 1ull << 30;  // cache disable
inline constexpr uint64_t kPG = 1ull << 31;  // paging
// Bits that MOV to CR0 may set; any other bit set in the source is #GP(0) (SDM §2.5, "MOV-Move to/from Control Registers").
inline constexpr uint64_t kDefined = kPE | kMP | kEM | kTS | kET | kNE | kWP | kAM | kNW | kCD | kPG;
}  // namespace cr0

namespace cr3 {
inline constexpr uint64_t kPWT = 1ull << 3;
inline constexpr uint64_t kPCD = 1ull << 4;
inline constexpr uint64_t kPcidMask = 0xfff;
inline constexpr uint64_t kNoFlush = 1ull << 63;  // MOV to CR3 with CR4.PCIDE=1 (SDM §4.10.4.1)
}  // namespace cr3

namespace cr4 {
inline constexpr uint64_t kVME = 1ull << 0;
inline constexpr uint64_t kPVI = 1ull << 1;
inline constexpr uint64_t kTSD = 1ull << 2;
inline constexpr uint64_t kDE = 1ull << 3;
inline constexpr uint64_t kPSE = 1ull << 4;
inline constexpr uint64_t kPAE = 1ull << 5;
inline constexpr uint64_t kMCE = 1ull << 6;
inline constexpr uint64_t kPGE = 1ull << 7;
inline constexpr uint64_t kPCE = 1ull << 8;
inline constexpr uint64_t kOSFXSR = 1ull << 9;
inline constexpr uint64_t kOSXMMEXCPT = 1ull << 10;
inline constexpr uint64_t kUMIP = 1ull << 11;
inline constexpr uint64_t kLA57 = 1ull << 12;
inline constexpr uint64_t kVMXE = 1ull << 13;
inline constexpr uint64_t kSMXE = 1ull << 14;
inline constexpr uint64_t kFSGSBASE = 1ull << 16;
inline constexpr uint64_t kPCIDE = 1ull << 17;
inline constexpr uint64_t kOSXSAVE = 1ull << 18;
inline constexpr uint64_t kSMEP = 1ull << 20;
inline constexpr uint64_t kSMAP = 1ull << 21;
inline constexpr uint64_t kPKE = 1ull << 22;
// MOV to CR4 that changes any of these flushes all TLB entries, global ones included (SDM §4.10.4.1).
inline constexpr uint64_t kFlushAll = kPAE | kPGE | kPSE | kSMEP | kSMAP | kLA57 | kPKE;
}  // namespace cr4

namespace efer {
inline constexpr uint64_t kSCE = 1ull << 0;    // SYSCALL enable
inline constexpr uint64_t kLME = 1ull << 8;    // long mode enable
inline constexpr uint64_t kLMA = 1ull << 10;   // long mode active
inline constexpr uint64_t kNXE = 1ull << 11;   // execute-disable enable
inline constexpr uint64_t kSVME = 1ull << 12;  // AMD secure virtual machine enable
inline constexpr uint64_t kFFXSR = 1ull << 14; // AMD fast FXSAVE/FXRSTOR
}  // namespace efer

namespace xcr0 {
inline constexpr uint64_t kX87 = 1ull << 0;
inline constexpr uint64_t kSSE = 1ull << 1;
inline constexpr uint64_t kAVX = 1ull << 2;
}  // namespace xcr0

namespace dr7 {
inline constexpr uint64_t kGD = 1ull << 13;  // general detect
inline constexpr uint64_t kEnableMask = 0xff; // L0-L3/G0-G3
}  // namespace dr7

namespace dr6 {
inline constexpr uint64_t kBD = 1ull << 13;  // debug register access detected
inline constexpr uint64_t kBS = 1ull << 14;  // single step
inline constexpr uint64_t kBT = 1ull << 15;  // task switch
inline constexpr uint64_t kRTM = 1ull << 16; // reads as 1 when RTM is not in use
inline constexpr uint64_t kFixed1 = 0xffff0ff0ull;
}  // namespace dr6

}  // namespace nestvm::arch
