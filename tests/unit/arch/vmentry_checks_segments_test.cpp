// VM-entry checks on the guest segment registers (SDM §27.3.1.2) for virtual-8086, unrestricted
// and ordinary guests: each single violation is a VM-entry failure (exit reason 33 | bit 31) with
// its rule.
#include "unit/arch/vmentry_fake_vmcs.h"

namespace nestvm::arch::vmentry_test {
namespace {

// §27.3.1.2
void usable_ldtr(FakeVmcs& f) { f.ldtr(0x50, 0x5000, 0xff, 0x82); }

const Violation kGuestSegmentViolations[] = {
    guest("TrTi", [](FakeVmcs& f) { f.set(F::GUEST_TR_SELECTOR, 0x44); }, "guest TR selector TI must be 0"),
    guest("LdtrTi",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_SELECTOR, 0x54);
          },
          "guest LDTR selector TI must be 0 when LDTR is usable"),
    guest("SsRplNotCsRpl", [](FakeVmcs& f) { f.set(F::GUEST_SS_SELECTOR, 0x13); },
          "guest SS selector RPL must equal CS selector RPL when not virtual-8086 and not unrestricted"),
    guest("V86DsBase",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.set(F::GUEST_DS_BASE, 0x20010);
          },
          "guest DS base must be the selector shifted left 4 bits in virtual-8086 mode"),
    guest("V86CsLimit",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.set(F::GUEST_CS_LIMIT, 0xfffff);
          },
          "guest CS limit must be FFFFH in virtual-8086 mode"),
    guest("V86EsAccessRights",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.set(F::GUEST_ES_AR_BYTES, 0xf1);
          },
          "guest ES.AR must be F3H in virtual-8086 mode"),
    guest("V86GsAccessRightsDpl0",
          [](FakeVmcs& f) {
            f.seed_v86();
            f.set(F::GUEST_GS_AR_BYTES, 0x93);
          },
          "guest GS.AR must be F3H in virtual-8086 mode"),
    guest("TrBase", [](FakeVmcs& f) { f.set(F::GUEST_TR_BASE, 1ull << 47); }, "guest TR base must be canonical"),
    guest("FsBase", [](FakeVmcs& f) { f.set(F::GUEST_FS_BASE, 1ull << 60); }, "guest FS base must be canonical"),
    guest("GsBaseEvenWhenUnusable",
          [](FakeVmcs& f) {
            f.set(F::GUEST_GS_AR_BYTES, ar::kUnusable);
            f.set(F::GUEST_GS_BASE, 1ull << 48);
          },
          "guest GS base must be canonical"),
    guest("LdtrBase",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_BASE, 1ull << 56);
          },
          "guest LDTR base must be canonical when LDTR is usable"),
    guest("CsBaseHigh", [](FakeVmcs& f) { f.set(F::GUEST_CS_BASE, 1ull << 32); }, "guest CS base bits 63:32 must be 0"),
    guest("SsBaseHigh", [](FakeVmcs& f) { f.set(F::GUEST_SS_BASE, 1ull << 35); },
          "guest SS base bits 63:32 must be 0 when SS is usable"),
    guest("DsBaseHigh", [](FakeVmcs& f) { f.set(F::GUEST_DS_BASE, 1ull << 32); },
          "guest DS base bits 63:32 must be 0 when DS is usable"),
    guest("EsBaseHigh", [](FakeVmcs& f) { f.set(F::GUEST_ES_BASE, 1ull << 40); },
          "guest ES base bits 63:32 must be 0 when ES is usable"),
    guest("CsTypeData", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa093); },
          "guest CS.AR type must be 9, 11, 13 or 15 when not unrestricted"),
    guest("CsTypeNotAccessed", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa09a); },
          "guest CS.AR type must be 9, 11, 13 or 15 when not unrestricted"),
    guest("CsTypeUnrestricted",
          [](FakeVmcs& f) {
            f.seed_unrestricted_real_mode();
            f.set(F::GUEST_CS_AR_BYTES, 0x91);
          },
          "guest CS.AR type must be 3, 9, 11, 13 or 15 for an unrestricted guest"),
    guest("SsTypeCode", [](FakeVmcs& f) { f.set(F::GUEST_SS_AR_BYTES, 0xc09b); },
          "guest SS.AR type must be 3 or 7 when SS is usable"),
    guest("SsTypeReadOnly", [](FakeVmcs& f) { f.set(F::GUEST_SS_AR_BYTES, 0xc091); },
          "guest SS.AR type must be 3 or 7 when SS is usable"),
    guest("DsNotAccessed", [](FakeVmcs& f) { f.set(F::GUEST_DS_AR_BYTES, 0xc092); },
          "guest DS.AR type must have the accessed bit (bit 0) set when DS is usable"),
    guest("GsExecuteOnlyCode", [](FakeVmcs& f) { f.set(F::GUEST_GS_AR_BYTES, 0xc099); },
          "guest GS.AR type must be readable (bit 1) if it is a code segment when GS is usable"),
    guest("CsSystemSegment", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa08b); }, "guest CS.AR.S must be 1"),
    guest("FsSystemSegment", [](FakeVmcs& f) { f.set(F::GUEST_FS_AR_BYTES, 0xc083); },
          "guest FS.AR.S must be 1 when FS is usable"),
    guest("CsDplType3",
          [](FakeVmcs& f) {
            f.seed_unrestricted_real_mode();
            f.set(F::GUEST_CS_AR_BYTES, 0xb3);
          },
          "guest CS.AR.DPL must be 0 when CS type is 3 (unrestricted guest)"),
    guest("CsDplNonConforming", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa0bb); },
          "guest CS.AR.DPL must equal SS.AR.DPL for a non-conforming code segment"),
    guest("CsDplConforming", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa0ff); },
          "guest CS.AR.DPL must not exceed SS.AR.DPL for a conforming code segment"),
    guest("SsDplNotRpl",
          [](FakeVmcs& f) {
            f.set(F::GUEST_CS_AR_BYTES, 0xa09f);  // conforming: DPL 0 <= SS.DPL 3
            f.set(F::GUEST_SS_AR_BYTES, 0xc0f3);
          },
          "guest SS.AR.DPL must equal the SS selector RPL when not unrestricted"),
    guest("SsDplInRealMode",
          [](FakeVmcs& f) {
            f.seed_unrestricted_real_mode();
            f.set(F::GUEST_CS_AR_BYTES, 0x9f);
            f.set(F::GUEST_SS_AR_BYTES, 0xf3);
          },
          "guest SS.AR.DPL must be 0 when CS type is 3 or CR0.PE is 0"),
    guest("DsDplBelowRpl", [](FakeVmcs& f) { f.set(F::GUEST_DS_SELECTOR, 0x13); },
          "guest DS.AR.DPL must not be less than the selector RPL for a data or non-conforming code segment (not "
          "unrestricted) when DS is usable"),
    guest("CsNotPresent", [](FakeVmcs& f) { f.set(F::GUEST_CS_AR_BYTES, 0xa01b); }, "guest CS.AR.P must be 1"),
    guest("SsNotPresent", [](FakeVmcs& f) { f.set(F::GUEST_SS_AR_BYTES, 0xc013); },
          "guest SS.AR.P must be 1 when SS is usable"),
    guest("CsReserved11to8", [](FakeVmcs& f) { f.on(F::GUEST_CS_AR_BYTES, 0x100); }, "guest CS.AR bits 11:8 must be 0"),
    guest("EsReserved11to8", [](FakeVmcs& f) { f.on(F::GUEST_ES_AR_BYTES, 0x800); },
          "guest ES.AR bits 11:8 must be 0 when ES is usable"),
    guest("CsLongWithDb", [](FakeVmcs& f) { f.on(F::GUEST_CS_AR_BYTES, ar::kDB); },
          "guest CS.AR.D/B must be 0 when CS.L is 1 in an IA-32e mode guest"),
    guest("CsGranularWithShortLimit", [](FakeVmcs& f) { f.set(F::GUEST_CS_LIMIT, 0xfffff000); },
          "guest CS.AR.G must be 0 if any of limit bits 11:0 is 0"),
    guest("DsByteGranularWithLongLimit", [](FakeVmcs& f) { f.off(F::GUEST_DS_AR_BYTES, ar::kG); },
          "guest DS.AR.G must be 1 if any of limit bits 31:20 is 1 when DS is usable"),
    guest("GsReserved31to17", [](FakeVmcs& f) { f.on(F::GUEST_GS_AR_BYTES, 1u << 17); },
          "guest GS.AR bits 31:17 must be 0 when GS is usable"),
    guest("CsReserved31to17", [](FakeVmcs& f) { f.on(F::GUEST_CS_AR_BYTES, 1u << 20); },
          "guest CS.AR bits 31:17 must be 0"),
    guest("TrType16BitInIa32eGuest", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x83); },
          "guest TR.AR type must be 11 (busy 64-bit TSS) for an IA-32e mode guest"),
    guest("TrTypeAvailableTss",
          [](FakeVmcs& f) {
            f.seed_pae32(false);
            f.set(F::GUEST_TR_AR_BYTES, 0x89);
          },
          "guest TR.AR type must be 3 or 11 (busy TSS) when not an IA-32e mode guest"),
    guest("TrCodeDataSegment", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x9b); }, "guest TR.AR.S must be 0"),
    guest("TrNotPresent", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x0b); }, "guest TR.AR.P must be 1"),
    guest("TrReserved11to8", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x48b); }, "guest TR.AR bits 11:8 must be 0"),
    guest("TrGranularWithShortLimit", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x808b); },
          "guest TR.AR.G must be 0 if any of limit bits 11:0 is 0"),
    guest("TrByteGranularWithLongLimit", [](FakeVmcs& f) { f.set(F::GUEST_TR_LIMIT, 0x100000); },
          "guest TR.AR.G must be 1 if any of limit bits 31:20 is 1"),
    guest("TrUnusable", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x1008b); },
          "guest TR must be usable (AR bit 16 must be 0)"),
    guest("TrReserved31to17", [](FakeVmcs& f) { f.set(F::GUEST_TR_AR_BYTES, 0x2008b); },
          "guest TR.AR bits 31:17 must be 0"),
    guest("LdtrType",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x83);
          },
          "guest LDTR.AR type must be 2 (LDT) when LDTR is usable"),
    guest("LdtrCodeDataSegment",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x92);
          },
          "guest LDTR.AR.S must be 0 when LDTR is usable"),
    guest("LdtrNotPresent",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x02);
          },
          "guest LDTR.AR.P must be 1 when LDTR is usable"),
    guest("LdtrReserved11to8",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x182);
          },
          "guest LDTR.AR bits 11:8 must be 0 when LDTR is usable"),
    guest("LdtrGranularWithShortLimit",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x8082);
          },
          "guest LDTR.AR.G must be 0 if any of limit bits 11:0 is 0 when LDTR is usable"),
    guest("LdtrByteGranularWithLongLimit",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_LIMIT, 0x200000);
          },
          "guest LDTR.AR.G must be 1 if any of limit bits 31:20 is 1 when LDTR is usable"),
    guest("LdtrReserved31to17",
          [](FakeVmcs& f) {
            usable_ldtr(f);
            f.set(F::GUEST_LDTR_AR_BYTES, 0x40082);
          },
          "guest LDTR.AR bits 31:17 must be 0 when LDTR is usable"),
};
INSTANTIATE_TEST_SUITE_P(GuestSegments, VmEntryChecksViolation, ::testing::ValuesIn(kGuestSegmentViolations),
                         kCaseName);

}  // namespace
}  // namespace nestvm::arch::vmentry_test
