// CPU models: the CPUID table of each named model, feature lookup by QEMU name.
#include "cpu/cpu_model.h"

#include <algorithm>
#include <cstring>

namespace nestvm::cpu {

namespace {

constexpr FeatureInfo kFeatures[] = {
#define NESTVM_FEATURE(name, qemu_name, leaf, subleaf, reg, bit) {qemu_name, leaf, subleaf, reg, bit},
#include "cpu/features.def"
#undef NESTVM_FEATURE
};

uint32_t* reg_of(CpuidLeaf& l, uint8_t r) {
  switch (r) {
    case 0: return &l.eax;
    case 1: return &l.ebx;
    case 2: return &l.ecx;
    default: return &l.edx;
  }
}

void set_vendor(CpuModel& m, const char* vendor) {
  CpuidLeaf l{0, 0, false, 0, 0, 0, 0};
  std::memcpy(&l.ebx, vendor, 4);
  std::memcpy(&l.edx, vendor + 4, 4);
  std::memcpy(&l.ecx, vendor + 8, 4);
  m.set_leaf(l);
}

void set_brand(CpuModel& m, const char* brand) {
  char buf[48] = {};
  std::strncpy(buf, brand, 47);
  for (uint32_t i = 0; i < 3; ++i) {
    CpuidLeaf l{0x80000002 + i, 0, false, 0, 0, 0, 0};
    std::memcpy(&l.eax, buf + 16 * i, 4);
    std::memcpy(&l.ebx, buf + 16 * i + 4, 4);
    std::memcpy(&l.ecx, buf + 16 * i + 8, 4);
    std::memcpy(&l.edx, buf + 16 * i + 12, 4);
    m.set_leaf(l);
  }
}

// Family/model/stepping in the CPUID.1:EAX layout.
uint32_t signature(uint32_t family, uint32_t model, uint32_t stepping) {
  const uint32_t base_family = family > 15 ? 15 : family;
  const uint32_t ext_family = family > 15 ? family - 15 : 0;
  return stepping | ((model & 0xf) << 4) | (base_family << 8) | ((model >> 4) << 16) | (ext_family << 20);
}

}  // namespace

const FeatureInfo& feature_info(Feature f) { return kFeatures[unsigned(f)]; }

std::optional<Feature> feature_by_name(const std::string& name) {
  for (unsigned i = 0; i < unsigned(Feature::kCount); ++i)
    if (name == kFeatures[i].qemu_name) return Feature(i);
  return std::nullopt;
}

CpuidLeaf* CpuModel::find(uint32_t leaf, uint32_t subleaf) {
  for (auto& l : leaves_)
    if (l.leaf == leaf && (!l.has_subleaves || l.subleaf == subleaf)) return &l;
  return nullptr;
}

const CpuidLeaf* CpuModel::find(uint32_t leaf, uint32_t subleaf) const {
  return const_cast<CpuModel*>(this)->find(leaf, subleaf);
}

void CpuModel::set_leaf(const CpuidLeaf& l) {
  for (auto& e : leaves_)
    if (e.leaf == l.leaf && e.subleaf == l.subleaf) { e = l; return; }
  leaves_.push_back(l);
}

bool CpuModel::has(Feature f) const {
  const FeatureInfo& fi = feature_info(f);
  const CpuidLeaf* l = find(fi.leaf, fi.subleaf);
  if (!l) return false;
  return (*reg_of(const_cast<CpuidLeaf&>(*l), fi.reg) >> fi.bit) & 1;
}

void CpuModel::set(Feature f, bool on) {
  const FeatureInfo& fi = feature_info(f);
  CpuidLeaf* l = find(fi.leaf, fi.subleaf);
  if (!l) {
    set_leaf({fi.leaf, fi.subleaf, fi.leaf == 7 || fi.leaf == 0xd, 0, 0, 0, 0});
    l = find(fi.leaf, fi.subleaf);
  }
  uint32_t* r = reg_of(*l, fi.reg);
  *r = on ? (*r | (1u << fi.bit)) : (*r & ~(1u << fi.bit));
}

CpuidResult CpuModel::cpuid(uint32_t leaf, uint32_t subleaf) const {
  const CpuidLeaf* basic = find(0, 0);
  const uint32_t max_basic = basic ? basic->eax : 0;
  const CpuidLeaf* ext = find(0x80000000, 0);
  const uint32_t max_ext = ext ? ext->eax : 0;
  // Intel: a leaf above the maximum returns the highest basic leaf (SDM Vol. 2A, CPUID).
  if ((leaf < 0x40000000 && leaf > max_basic) || (leaf >= 0x80000000 && leaf > max_ext)) {
    leaf = max_basic;
    subleaf = 0;
  }
  const CpuidLeaf* l = find(leaf, subleaf);
  if (!l) return {};
  return {l->eax, l->ebx, l->ecx, l->edx};
}

// QEMU's "qemu64" (target/i386/cpu.c), less what nestvm does not implement yet (SSE3, SVM).
CpuModel CpuModel::qemu64() {
  CpuModel m;
  m.name_ = "qemu64";
  m.maxphyaddr_ = 40;
  set_vendor(m, "AuthenticAMD");
  m.find(0, 0)->eax = 0xd;
  m.set_leaf({1, 0, false, signature(15, 107, 1), 0x00000800, 0, 0});
  m.set_leaf({7, 0, true, 0, 0, 0, 0});
  m.set_leaf({0xd, 0, true, 0x3, 576, 576, 0});
  m.set_leaf({0xd, 1, true, 0, 0, 0, 0});
  m.set_leaf({0x80000000, 0, false, 0x8000000a, 0, 0, 0});
  m.set_leaf({0x80000001, 0, false, signature(15, 107, 1), 0, 0, 0});
  m.set_leaf({0x80000008, 0, false, 40 | (48 << 8), 0, 0, 0});
  for (Feature f : {Feature::kFpu, Feature::kDe, Feature::kPse, Feature::kTsc, Feature::kMsr, Feature::kPae,
                    Feature::kMce, Feature::kCx8, Feature::kApic, Feature::kSep, Feature::kMtrr, Feature::kPge,
                    Feature::kMca, Feature::kCmov, Feature::kPat, Feature::kPse36, Feature::kClflush,
                    Feature::kMmx, Feature::kFxsr, Feature::kSse, Feature::kSse2, Feature::kCx16,
                    Feature::kLm, Feature::kSyscall, Feature::kNx, Feature::kLahfLm})
    m.set(f, true);
  set_brand(m, "QEMU Virtual CPU version 2.5+");
  return m;
}

// Everything nestvm implements, on an Intel signature.
CpuModel CpuModel::max() {
  CpuModel m;
  m.name_ = "max";
  m.maxphyaddr_ = 40;
  set_vendor(m, "GenuineIntel");
  m.find(0, 0)->eax = 0xd;
  m.set_leaf({1, 0, false, signature(6, 0x55, 4), 0x00000800, 0, 0});
  m.set_leaf({7, 0, true, 0, 0, 0, 0});
  m.set_leaf({0xd, 0, true, 0x3, 576, 576, 0});
  m.set_leaf({0xd, 1, true, 0, 0, 0, 0});
  m.set_leaf({0x80000000, 0, false, 0x80000008, 0, 0, 0});
  m.set_leaf({0x80000001, 0, false, 0, 0, 0, 0});
  m.set_leaf({0x80000007, 0, false, 0, 0, 0, 0});
  m.set_leaf({0x80000008, 0, false, 40 | (48 << 8), 0, 0, 0});
  for (Feature f : {Feature::kFpu, Feature::kDe, Feature::kPse, Feature::kTsc, Feature::kMsr, Feature::kPae,
                    Feature::kMce, Feature::kCx8, Feature::kApic, Feature::kSep, Feature::kMtrr, Feature::kPge,
                    Feature::kMca, Feature::kCmov, Feature::kPat, Feature::kPse36, Feature::kClflush,
                    Feature::kMmx, Feature::kFxsr, Feature::kSse, Feature::kSse2, Feature::kCx16,
                    Feature::kPcid, Feature::kMovbe, Feature::kPopcnt, Feature::kXsave, Feature::kRdrand,
                    Feature::kHypervisor, Feature::kFsgsbase, Feature::kBmi1, Feature::kSmep, Feature::kBmi2,
                    Feature::kErms, Feature::kInvpcid, Feature::kRdseed, Feature::kAdx, Feature::kSmap,
                    Feature::kClflushopt, Feature::kUmip, Feature::kRdpid, Feature::kXsaveopt,
                    Feature::kLahfLm, Feature::kAbm, Feature::kPrefetchw, Feature::kSyscall, Feature::kNx,
                    Feature::kPdpe1gb, Feature::kRdtscp, Feature::kLm, Feature::kInvtsc})
    m.set(f, true);
  set_brand(m, "nestvm virtual CPU");
  return m;
}

std::optional<CpuModel> CpuModel::named(const std::string& name) {
  if (name == "qemu64") return qemu64();
  if (name == "max" || name == "host") return max();
  return std::nullopt;
}

}  // namespace nestvm::cpu
