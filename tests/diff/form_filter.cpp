#include "diff/form_filter.h"

#include <cpuid.h>

#include <optional>

#include "diff/form_catalog.h"

namespace nestvm::diff {

namespace {

using cpu::Feature;

// A CPUID feature bit that announces an ISA set: leaf, sub-leaf, register (0 = EAX ... 3 = EDX),
// bit, and the core model's name for it (none: the core model never offers it).
struct IsaFeature {
  ZydisISASet set;
  uint32_t leaf, subleaf;
  uint8_t reg, bit;
  std::optional<Feature> model;
};

// SDM Vol. 2A, CPUID, Tables 3-8 to 3-11.
const IsaFeature kIsaFeatures[] = {
    {ZYDIS_ISA_SET_CMOV, 1, 0, 3, 15, Feature::kCmov},
    {ZYDIS_ISA_SET_CMPXCHG16B, 1, 0, 2, 13, Feature::kCx16},
    {ZYDIS_ISA_SET_LAHF, 0x80000001, 0, 2, 0, Feature::kLahfLm},
    {ZYDIS_ISA_SET_MOVBE, 1, 0, 2, 22, Feature::kMovbe},
    {ZYDIS_ISA_SET_POPCNT, 1, 0, 2, 23, Feature::kPopcnt},
    {ZYDIS_ISA_SET_LZCNT, 0x80000001, 0, 2, 5, Feature::kAbm},
    {ZYDIS_ISA_SET_BMI1, 7, 0, 1, 3, Feature::kBmi1},
    {ZYDIS_ISA_SET_BMI2, 7, 0, 1, 8, Feature::kBmi2},
    {ZYDIS_ISA_SET_ADOX_ADCX, 7, 0, 1, 19, Feature::kAdx},
    {ZYDIS_ISA_SET_SSE, 1, 0, 3, 25, Feature::kSse},
    {ZYDIS_ISA_SET_SSE2, 1, 0, 3, 26, Feature::kSse2},
    {ZYDIS_ISA_SET_SSE_PREFETCH, 1, 0, 3, 25, Feature::kSse},
    {ZYDIS_ISA_SET_SSE42, 1, 0, 2, 20, Feature::kSse42},
    {ZYDIS_ISA_SET_CLFSH, 1, 0, 3, 19, Feature::kClflush},
    {ZYDIS_ISA_SET_CLFLUSHOPT, 7, 0, 1, 23, Feature::kClflushopt},
    {ZYDIS_ISA_SET_CLWB, 7, 0, 1, 24, std::nullopt},
    {ZYDIS_ISA_SET_MOVDIR, 7, 0, 2, 27, std::nullopt},
    {ZYDIS_ISA_SET_SERIALIZE, 7, 0, 3, 14, std::nullopt},
};

// Sets every x86-64 processor has.
bool is_base_set(ZydisISASet s) {
  switch (s) {
    case ZYDIS_ISA_SET_I86: case ZYDIS_ISA_SET_I186: case ZYDIS_ISA_SET_I286REAL: case ZYDIS_ISA_SET_I386:
    case ZYDIS_ISA_SET_I486: case ZYDIS_ISA_SET_I486REAL: case ZYDIS_ISA_SET_PENTIUMREAL: case ZYDIS_ISA_SET_PPRO:
    case ZYDIS_ISA_SET_LONGMODE: case ZYDIS_ISA_SET_FAT_NOP: case ZYDIS_ISA_SET_PAUSE:
    case ZYDIS_ISA_SET_PREFETCH_NOP:
      return true;
    default:
      return false;
  }
}

bool host_has(const IsaFeature& f) {
  unsigned r[4] = {};
  if (!__get_cpuid_count(f.leaf, f.subleaf, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[f.reg] >> f.bit) & 1;
}

bool is_fpu_simd_ext(ZydisISAExt e) {
  switch (e) {
    case ZYDIS_ISA_EXT_X87: case ZYDIS_ISA_EXT_MMX: case ZYDIS_ISA_EXT_AMD3DNOW: case ZYDIS_ISA_EXT_AVX:
    case ZYDIS_ISA_EXT_AVX2: case ZYDIS_ISA_EXT_AVX2GATHER: case ZYDIS_ISA_EXT_AVX512EVEX:
    case ZYDIS_ISA_EXT_AVX512VEX: case ZYDIS_ISA_EXT_AVXAES: case ZYDIS_ISA_EXT_AVX_VNNI: case ZYDIS_ISA_EXT_F16C:
    case ZYDIS_ISA_EXT_FMA: case ZYDIS_ISA_EXT_FMA4: case ZYDIS_ISA_EXT_AES: case ZYDIS_ISA_EXT_SHA:
    case ZYDIS_ISA_EXT_PCLMULQDQ: case ZYDIS_ISA_EXT_GFNI: case ZYDIS_ISA_EXT_VAES: case ZYDIS_ISA_EXT_VPCLMULQDQ:
    case ZYDIS_ISA_EXT_XSAVE: case ZYDIS_ISA_EXT_XSAVEC: case ZYDIS_ISA_EXT_XSAVEOPT: case ZYDIS_ISA_EXT_XSAVES:
    case ZYDIS_ISA_EXT_AMX_BF16: case ZYDIS_ISA_EXT_AMX_INT8: case ZYDIS_ISA_EXT_AMX_TILE: case ZYDIS_ISA_EXT_KNC:
    case ZYDIS_ISA_EXT_KNCE: case ZYDIS_ISA_EXT_KNCV: case ZYDIS_ISA_EXT_XOP: case ZYDIS_ISA_EXT_KEYLOCKER:
    case ZYDIS_ISA_EXT_KEYLOCKER_WIDE:
      return true;
    default:
      return false;
  }
}

// Virtualization, secure-mode and enclave extensions: system software only.
bool is_system_ext(ZydisISAExt e) {
  switch (e) {
    case ZYDIS_ISA_EXT_SVM: case ZYDIS_ISA_EXT_VTX: case ZYDIS_ISA_EXT_SMX: case ZYDIS_ISA_EXT_SGX:
    case ZYDIS_ISA_EXT_SGX_ENCLV: case ZYDIS_ISA_EXT_TDX: case ZYDIS_ISA_EXT_SNP: case ZYDIS_ISA_EXT_PCONFIG:
    case ZYDIS_ISA_EXT_VMFUNC: case ZYDIS_ISA_EXT_UINTR:
      return true;
    default:
      return false;
  }
}

// Results come from the model (CPUID), a clock, an entropy source or transactional hardware.
bool is_nondeterministic(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_CPUID: case ZYDIS_MNEMONIC_RDTSC: case ZYDIS_MNEMONIC_RDTSCP: case ZYDIS_MNEMONIC_RDPMC:
    case ZYDIS_MNEMONIC_RDRAND: case ZYDIS_MNEMONIC_RDSEED: case ZYDIS_MNEMONIC_RDPID: case ZYDIS_MNEMONIC_RDPRU:
    case ZYDIS_MNEMONIC_XGETBV: case ZYDIS_MNEMONIC_RDPKRU: case ZYDIS_MNEMONIC_WRPKRU: case ZYDIS_MNEMONIC_XBEGIN:
    case ZYDIS_MNEMONIC_XEND: case ZYDIS_MNEMONIC_XABORT: case ZYDIS_MNEMONIC_XTEST: case ZYDIS_MNEMONIC_XSUSLDTRK:
    case ZYDIS_MNEMONIC_XRESLDTRK: case ZYDIS_MNEMONIC_MONITOR: case ZYDIS_MNEMONIC_MWAIT:
    case ZYDIS_MNEMONIC_MONITORX: case ZYDIS_MNEMONIC_MWAITX: case ZYDIS_MNEMONIC_UMONITOR:
    case ZYDIS_MNEMONIC_UMWAIT: case ZYDIS_MNEMONIC_TPAUSE:
      return true;
    default:
      return false;
  }
}

// Transfers that leave the snippet for the OS or another code segment.
bool leaves_snippet(const ZydisDecodedInstruction& zi) {
  switch (zi.meta.category) {
    case ZYDIS_CATEGORY_SYSCALL: case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_INTERRUPT:
      return true;
    default:
      break;
  }
  if (zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) return true;
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_IRET: case ZYDIS_MNEMONIC_IRETD: case ZYDIS_MNEMONIC_IRETQ:
    case ZYDIS_MNEMONIC_SYSENTER: case ZYDIS_MNEMONIC_SYSEXIT: case ZYDIS_MNEMONIC_INT:
    case ZYDIS_MNEMONIC_INT1: case ZYDIS_MNEMONIC_INT3: case ZYDIS_MNEMONIC_INTO:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* skip_reason_name(SkipReason r) {
  switch (r) {
    case SkipReason::kNone: return "tested";
    case SkipReason::kFpuSimd: return "x87/MMX/SSE/AVX";
    case SkipReason::kPrivileged: return "privileged/system";
    case SkipReason::kIo: return "I/O";
    case SkipReason::kNondeterministic: return "non-deterministic";
    case SkipReason::kLeavesSnippet: return "leaves the snippet (needs an OS)";
    case SkipReason::kHostState: return "depends on host descriptor tables/segment state";
    case SkipReason::kOtherEncoding: return "3DNow!/XOP/EVEX/MVEX encoding";
    case SkipReason::kHostLacks: return "host lacks the extension";
    case SkipReason::kModelLacks: return "core CPU model lacks the extension";
    case SkipReason::kUnmappedIsa: return "ISA set without a CPUID mapping";
    case SkipReason::kCount: break;
  }
  return "?";
}

SkipReason FeatureSupport::check(ZydisISASet set, std::string& detail) const {
  if (is_base_set(set)) return SkipReason::kNone;
  detail = ZydisISASetGetString(set);
  for (const IsaFeature& f : kIsaFeatures) {
    if (f.set != set) continue;
    if (!host_has(f)) return SkipReason::kHostLacks;
    if (!f.model || !model_.has(*f.model)) return SkipReason::kModelLacks;
    detail.clear();
    return SkipReason::kNone;
  }
  return SkipReason::kUnmappedIsa;
}

SkipReason classify(const Decoded& d, const FeatureSupport& features, std::string& detail) {
  const ZydisDecodedInstruction& zi = d.zi;
  detail.clear();
  if (zi.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY && zi.encoding != ZYDIS_INSTRUCTION_ENCODING_VEX)
    return SkipReason::kOtherEncoding;
  if (is_fpu_simd_ext(zi.meta.isa_ext) ||
      (zi.attributes & (ZYDIS_ATTRIB_FPU_STATE_CR | ZYDIS_ATTRIB_FPU_STATE_CW | ZYDIS_ATTRIB_XMM_STATE_CR |
                        ZYDIS_ATTRIB_XMM_STATE_CW))) {
    detail = ZydisISAExtGetString(zi.meta.isa_ext);
    return SkipReason::kFpuSimd;
  }
  if (is_system_ext(zi.meta.isa_ext)) {
    detail = ZydisISAExtGetString(zi.meta.isa_ext);
    return SkipReason::kPrivileged;
  }
  bool writes_segment = false;
  for (unsigned k = 0; k < zi.operand_count; ++k) {
    const ZydisDecodedOperand& op = d.ops[k];
    // SSE conversions with a GPR destination and a memory source have no XMM operand, but a
    // floating-point element type (and they read MXCSR).
    if (op.element_type >= ZYDIS_ELEMENT_TYPE_FLOAT16 && op.element_type <= ZYDIS_ELEMENT_TYPE_LONGBCD) {
      detail = ZydisISAExtGetString(zi.meta.isa_ext);
      return SkipReason::kFpuSimd;
    }
    if (op.type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
    switch (ZydisRegisterGetClass(op.reg.value)) {
      case ZYDIS_REGCLASS_GPR8: case ZYDIS_REGCLASS_GPR16: case ZYDIS_REGCLASS_GPR32: case ZYDIS_REGCLASS_GPR64:
      case ZYDIS_REGCLASS_FLAGS: case ZYDIS_REGCLASS_IP:
        break;
      case ZYDIS_REGCLASS_SEGMENT:
        if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) writes_segment = true;
        break;
      case ZYDIS_REGCLASS_X87: case ZYDIS_REGCLASS_MMX: case ZYDIS_REGCLASS_XMM: case ZYDIS_REGCLASS_YMM:
      case ZYDIS_REGCLASS_ZMM: case ZYDIS_REGCLASS_TMM: case ZYDIS_REGCLASS_MASK:
        detail = ZydisRegisterGetString(op.reg.value);
        return SkipReason::kFpuSimd;
      case ZYDIS_REGCLASS_CONTROL: case ZYDIS_REGCLASS_DEBUG: case ZYDIS_REGCLASS_TABLE: case ZYDIS_REGCLASS_TEST:
        detail = ZydisRegisterGetString(op.reg.value);
        return SkipReason::kPrivileged;
      default:
        // MXCSR, the x87 control/status words, PKRU, XCR0, SSP, MSRs: not general-purpose state.
        switch (op.reg.value) {
          case ZYDIS_REGISTER_MXCSR: case ZYDIS_REGISTER_X87CONTROL: case ZYDIS_REGISTER_X87STATUS:
          case ZYDIS_REGISTER_X87TAG:
            detail = ZydisRegisterGetString(op.reg.value);
            return SkipReason::kFpuSimd;
          default:
            detail = ZydisRegisterGetString(op.reg.value);
            return SkipReason::kPrivileged;
        }
    }
  }
  if (zi.attributes & ZYDIS_ATTRIB_IS_PRIVILEGED) return SkipReason::kPrivileged;
  if (zi.meta.category == ZYDIS_CATEGORY_IO || zi.meta.category == ZYDIS_CATEGORY_IOSTRINGOP) return SkipReason::kIo;
  if (is_nondeterministic(zi.mnemonic)) return SkipReason::kNondeterministic;
  if (leaves_snippet(zi)) return SkipReason::kLeavesSnippet;
  // SGDT/SIDT/SLDT/STR/SMSW (UMIP), LAR/LSL/VERR/VERW read the host's descriptor tables; segment
  // loads and FS/GS base accesses would change the host thread's state.
  if (writes_segment || zi.meta.category == ZYDIS_CATEGORY_SYSTEM || zi.meta.category == ZYDIS_CATEGORY_RDWRFSGS ||
      zi.meta.category == ZYDIS_CATEGORY_SEGOP)
    return SkipReason::kHostState;
  return features.check(zi.meta.isa_set, detail);
}

}  // namespace nestvm::diff
