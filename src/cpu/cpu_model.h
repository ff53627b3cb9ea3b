// A CPU model: the CPUID leaves the processor reports and the features the core enables
// accordingly. The core consults it for CPUID and for whether an optional instruction exists.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nestvm::cpu {

struct CpuidLeaf {
  uint32_t leaf = 0;
  uint32_t subleaf = 0;
  bool has_subleaves = false;  // ECX selects a sub-leaf
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

struct CpuidResult {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// CPUID feature bits by (leaf, register, bit), with the names QEMU and Linux use.
enum class Feature : uint16_t {
#define NESTVM_FEATURE(name, qemu_name, leaf, subleaf, reg, bit) name,
#include "cpu/features.def"
#undef NESTVM_FEATURE
  kCount
};

struct FeatureInfo {
  const char* qemu_name;
  uint32_t leaf;
  uint32_t subleaf;
  uint8_t reg;  // 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX
  uint8_t bit;
};
const FeatureInfo& feature_info(Feature f);
std::optional<Feature> feature_by_name(const std::string& qemu_name);

class CpuModel {
 public:
  // Named models ("qemu64", "max", ...); nullopt if the name is unknown.
  static std::optional<CpuModel> named(const std::string& name);
  static CpuModel qemu64();
  static CpuModel max();

  CpuidResult cpuid(uint32_t leaf, uint32_t subleaf) const;
  bool has(Feature f) const;
  void set(Feature f, bool on);

  const std::string& name() const { return name_; }
  int maxphyaddr() const { return maxphyaddr_; }
  int maxlinaddr() const { return 48; }
  void set_leaf(const CpuidLeaf& l);

  // VMX capabilities nested VMX must not offer (QEMU's FEAT_VMX_* feature words turned off on
  // the command line, -cpu max,-vmx-ept): bits per feature word, numbered as
  // hv/nested/nested_caps.h's VmxFeatureWord. VMX is no CPUID leaf, so it is kept beside them.
  static constexpr unsigned kVmxFeatureWords = 9;
  uint64_t vmx_features_removed(unsigned word) const { return vmx_removed_[word]; }
  void remove_vmx_features(unsigned word, uint64_t bits) { vmx_removed_[word] |= bits; }

 private:
  CpuidLeaf* find(uint32_t leaf, uint32_t subleaf);
  const CpuidLeaf* find(uint32_t leaf, uint32_t subleaf) const;

  std::string name_;
  int maxphyaddr_ = 40;
  std::vector<CpuidLeaf> leaves_;
  std::array<uint64_t, kVmxFeatureWords> vmx_removed_{};
};

}  // namespace nestvm::cpu
