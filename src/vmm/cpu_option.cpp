#include "vmm/cpu_option.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "hv/nested/nested_caps.h"
#include "vmm/qemu_opts.h"

namespace nestvm::vmm {

using cpu::Feature;

namespace {

constexpr const char* kRegNames[] = {"EAX", "EBX", "ECX", "EDX"};

// Features L0 emulates itself rather than passing through from the silicon.
constexpr Feature kL0Features[] = {Feature::kApic, Feature::kVmx, Feature::kX2apic, Feature::kTscDeadline};

std::optional<Feature> feature_named(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  if (auto f = cpu::feature_by_name(name)) return f;
  // Linux's spellings that differ from QEMU's ("sse3" for "pni", ...), as QEMU accepts them.
  static constexpr std::pair<const char*, Feature> kAliases[] = {
      {"sse3", Feature::kSse3}, {"sse4-1", Feature::kSse41}, {"sse4-2", Feature::kSse42}};
  for (const auto& [alias, f] : kAliases)
    if (name == alias) return f;
  return std::nullopt;
}

// Sets a string across CPUID registers, 4 bytes each, as the vendor (EBX, EDX, ECX) and brand
// (EAX..EDX of leaves 0x80000002-4) strings are laid out.
void set_vendor(cpu::CpuModel& m, const std::string& vendor) {
  cpu::CpuidLeaf l{0, 0, false, m.cpuid(0, 0).eax, 0, 0, 0};
  std::memcpy(&l.ebx, vendor.data(), 4);
  std::memcpy(&l.edx, vendor.data() + 4, 4);
  std::memcpy(&l.ecx, vendor.data() + 8, 4);
  m.set_leaf(l);
}

void set_brand(cpu::CpuModel& m, const std::string& brand) {
  char buf[48] = {};
  std::memcpy(buf, brand.data(), std::min<size_t>(brand.size(), 47));
  for (uint32_t i = 0; i < 3; ++i) {
    cpu::CpuidLeaf l{0x80000002 + i, 0, false, 0, 0, 0, 0};
    std::memcpy(&l.eax, buf + 16 * i, 4);
    std::memcpy(&l.ebx, buf + 16 * i + 4, 4);
    std::memcpy(&l.ecx, buf + 16 * i + 8, 4);
    std::memcpy(&l.edx, buf + 16 * i + 12, 4);
    m.set_leaf(l);
  }
  // The brand leaves exist only up to the maximum extended leaf (SDM Vol. 2A, CPUID).
  const cpu::CpuidResult ext = m.cpuid(0x80000000, 0);
  if (ext.eax < 0x80000004) m.set_leaf({0x80000000, 0, false, 0x80000004, ext.ebx, ext.ecx, ext.edx});
}

// QEMU's VMX feature names (vmx-ept, vmx-vpid, ...): capabilities nested VMX offers L1.
const hv::nested::VmxFeatureName* vmx_feature_named(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return hv::nested::vmx_feature_by_name(name);
}

// QEMU's description of a VMX feature bit: the capability MSR of its feature word.
std::string vmx_feature_description(const hv::nested::VmxFeatureName& f) {
  static constexpr uint32_t kMsrOfWord[] = {0x48e, 0x48b, 0x48d, 0x48f, 0x490, 0x485, 0x48c, 0x480, 0x491};
  return fmt::format("MSR({:02X}H).{} [bit {}]", kMsrOfWord[unsigned(f.word)], f.name, f.bit);
}

}  // namespace

bool feature_supported(Feature f) {
  static const cpu::CpuModel silicon = cpu::CpuModel::max();
  if (silicon.has(f)) return true;
  return std::find(std::begin(kL0Features), std::end(kL0Features), f) != std::end(kL0Features);
}

std::string feature_description(Feature f) {
  // QEMU's wording (target/i386/cpu.c, feature_word_description, as in QEMU 7.2).
  const cpu::FeatureInfo& fi = cpu::feature_info(f);
  return fmt::format("CPUID.{:02X}H:{}.{} [bit {}]", fi.leaf, kRegNames[fi.reg], fi.qemu_name, fi.bit);
}

Result<CpuSelection> parse_cpu_option(std::string_view spec) {
  const std::vector<std::string> items = split_opts(spec);
  const std::string& model_name = items[0];
  if (model_name.empty()) return Error{"-cpu: missing CPU model name"};
  std::optional<cpu::CpuModel> model = cpu::CpuModel::named(model_name);
  if (!model) return Error{fmt::format("-cpu: unable to find CPU model '{}' (try -cpu help)", model_name)};
  // Nested virtualization is the product: VMX is on unless the command line turns it off.
  model->set(Feature::kVmx, true);
  // Every model has the local APIC, which L0 provides (QEMU's models all list "apic").
  model->set(Feature::kApic, true);
  // QEMU sets CPUID.1:ECX.hypervisor for every model (x86_cpu_load_model).
  model->set(Feature::kHypervisor, true);
  if (model_name == "max" || model_name == "host")
    for (Feature f : kL0Features) model->set(f, true);

  std::vector<Feature> plus, minus;
  std::vector<std::pair<const hv::nested::VmxFeatureName*, bool>> vmx_settings;  // in QEMU's order
  std::vector<const hv::nested::VmxFeatureName*> vmx_plus, vmx_minus;
  bool enforce = false;
  for (size_t i = 1; i < items.size(); ++i) {
    const std::string& item = items[i];
    if (item.empty()) continue;
    if (item[0] == '+' || item[0] == '-') {
      if (const auto* vf = vmx_feature_named(item.substr(1))) {
        (item[0] == '+' ? vmx_plus : vmx_minus).push_back(vf);
        continue;
      }
      const auto f = feature_named(item.substr(1));
      if (!f) return Error{fmt::format("-cpu: unknown CPU feature '{}'", item.substr(1))};
      (item[0] == '+' ? plus : minus).push_back(*f);
      continue;
    }
    const KeyValue kv = split_key_value(item);
    if (kv.key == "enforce" || kv.key == "check") {
      const auto on = kv.value ? parse_bool(*kv.value) : std::optional<bool>(true);
      if (!on) return Error{fmt::format("-cpu: '{}' expects on or off, not '{}'", kv.key, *kv.value)};
      if (kv.key == "enforce") enforce = *on;
      continue;
    }
    if (kv.key == "vendor") {
      if (!kv.value || kv.value->size() != 12)
        return Error{"-cpu: vendor= needs a 12-character string (e.g. GenuineIntel)"};
      set_vendor(*model, *kv.value);
      continue;
    }
    if (kv.key == "model-id") {
      if (!kv.value) return Error{"-cpu: model-id= needs a string"};
      set_brand(*model, *kv.value);
      continue;
    }
    if (const auto* vf = vmx_feature_named(kv.key)) {
      const auto on = kv.value ? parse_bool(*kv.value) : std::optional<bool>(true);
      if (!on) return Error{fmt::format("-cpu: feature '{}' expects on or off, not '{}'", kv.key, *kv.value)};
      vmx_settings.emplace_back(vf, *on);
      continue;
    }
    const auto f = feature_named(kv.key);
    if (!f) return Error{fmt::format("-cpu: unknown CPU feature or property '{}'", kv.key)};
    // A bare "feat" means feat=on (QEMU's legacy syntax).
    const auto on = kv.value ? parse_bool(*kv.value) : std::optional<bool>(true);
    if (!on) return Error{fmt::format("-cpu: feature '{}' expects on or off, not '{}'", kv.key, *kv.value)};
    model->set(*f, *on);
  }
  for (Feature f : plus) model->set(f, true);
  for (Feature f : minus) model->set(f, false);

  // VMX features: nested VMX offers its constant set, so "on" asks for no more than that and
  // "off" takes a capability away from L1 (cpu::CpuModel::remove_vmx_features).
  for (const auto* vf : vmx_plus) vmx_settings.emplace_back(vf, true);
  for (const auto* vf : vmx_minus) vmx_settings.emplace_back(vf, false);
  std::array<uint64_t, cpu::CpuModel::kVmxFeatureWords> vmx_removed{};
  std::vector<std::string> vmx_warnings;
  for (const auto& [vf, on] : vmx_settings) {
    const uint64_t bit = 1ull << vf->bit;
    if (!on) {
      vmx_removed[unsigned(vf->word)] |= bit;
      continue;
    }
    vmx_removed[unsigned(vf->word)] &= ~bit;
    if (!hv::nested::vmx_feature_offered(*vf)) {
      const std::string what =
          fmt::format("nestvm doesn't support requested feature: {}", vmx_feature_description(*vf));
      if (enforce) return Error{fmt::format("-cpu: {} (enforce)", what)};
      vmx_warnings.push_back(what);
    }
  }
  for (unsigned w = 0; w < cpu::CpuModel::kVmxFeatureWords; ++w) model->remove_vmx_features(w, vmx_removed[w]);

  CpuSelection sel{std::move(*model), std::move(vmx_warnings)};
  for (unsigned i = 0; i < unsigned(Feature::kCount); ++i) {
    const Feature f = Feature(i);
    if (!sel.model.has(f) || feature_supported(f)) continue;
    const std::string what = fmt::format("nestvm doesn't support requested feature: {}", feature_description(f));
    if (enforce) return Error{fmt::format("-cpu: {} (enforce)", what)};
    sel.warnings.push_back(what);
    sel.model.set(f, false);
  }
  return sel;
}

std::string cpu_help_text() {
  std::string s =
      "Available CPU models:\n"
      "  qemu64   QEMU's default model (AMD signature), as far as nestvm implements it\n"
      "  max      everything nestvm implements (Intel signature)\n"
      "  host     the same as max\n"
      "VMX is advertised by every model unless -vmx is given.\n"
      "\nRecognized CPUID flags (+flag, -flag, flag=on|off):\n";
  size_t column = 0;
  for (unsigned i = 0; i < unsigned(Feature::kCount); ++i) {
    const Feature f = Feature(i);
    const std::string name =
        fmt::format("{}{}", cpu::feature_info(f).qemu_name, feature_supported(f) ? "" : "(unsupported)");
    if (column && column + name.size() + 1 > 78) {
      s += '\n';
      column = 0;
    }
    s += fmt::format(" {}", name);
    column += name.size() + 1;
  }
  s += '\n';
  s += "\nRecognized VMX features (capabilities nested VMX offers L1; -feat takes one away):\n";
  column = 0;
  for (const hv::nested::VmxFeatureName& f : hv::nested::vmx_feature_names()) {
    const std::string name = fmt::format("{}{}", f.name, hv::nested::vmx_feature_offered(f) ? "" : "(unsupported)");
    if (column && column + name.size() + 1 > 78) {
      s += '\n';
      column = 0;
    }
    s += fmt::format(" {}", name);
    column += name.size() + 1;
  }
  s += '\n';
  s += "\nProperties: enforce, check, vendor=STRING, model-id=STRING\n";
  return s;
}

}  // namespace nestvm::vmm
