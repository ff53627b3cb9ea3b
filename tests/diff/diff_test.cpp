// Differential testing of the core against the host processor: every general-purpose form from
// Zydis's tables that is valid in 64-bit user mode runs with the same random inputs natively and
// in the core; registers, defined flags, RIP, faults and memory must agree.
//
// Environment: NESTVM_DIFF_SEED (default fixed), NESTVM_DIFF_DEEP=N (N times the input states),
// NESTVM_DIFF_FILTER=substring (forms whose name contains it), NESTVM_DIFF_STRICT=1 (forms the core
// does not implement yet fail the test), NESTVM_DIFF_VERBOSE=1 (one line per form).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "diff/core_runner.h"
#include "diff/form_catalog.h"
#include "diff/form_runner.h"
#include "diff/outcome_compare.h"
#include "diff/native_runner.h"

namespace nestvm::diff {
namespace {

constexpr uint64_t kDefaultSeed = 0x6e657374766d3031ull;
constexpr unsigned kInputsPerForm = 2000;
// A form the core leaves unimplemented (#UD where the host runs it) fails the test.
constexpr bool kStrictByDefault = true;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}
std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct Harness {
  std::unique_ptr<NativeRunner> native;
  std::unique_ptr<CoreRunner> core;
};

Harness make_harness() {
  Harness h;
  std::string error;
  h.native = NativeRunner::create(error);
  if (!h.native) {
    ADD_FAILURE() << error;
    return h;
  }
  h.core = std::make_unique<CoreRunner>(cpu::CpuModel::max(),
                                        UserSelectors{h.native->ds(), h.native->es(), h.native->fs(), h.native->gs()});
  return h;
}

// The harness itself must see an instruction's effect and a fault on both sides, or every
// comparison after it would be vacuous.
TEST(DiffHarness, BothSidesRunTheInstructionAndReportFaults) {
  Harness h = make_harness();
  ASSERT_TRUE(h.native);
  auto in = std::make_unique<InputState>();
  auto native = std::make_unique<Outcome>();
  auto core = std::make_unique<Outcome>();
  for (int r = 0; r < 16; ++r) in->gpr[r] = 0x1111111111111111ull * r;
  in->gpr[4] = kStackHigh;
  in->rflags = 0x202;

  const uint8_t add_rax_rbx[] = {0x48, 0x01, 0xd8};
  h.native->load_code(add_rax_rbx, sizeof add_rax_rbx);
  h.core->load_code(add_rax_rbx, sizeof add_rax_rbx);
  h.native->run(*in, *native);
  h.core->run(*in, *core);
  for (const Outcome* o : {native.get(), core.get()}) {
    EXPECT_FALSE(o->faulted);
    EXPECT_EQ(o->rip, kInsn + 3);
    EXPECT_EQ(o->gpr[0], 0x3333333333333333ull);
    EXPECT_EQ(o->gpr[3], 0x3333333333333333ull);
  }

  // mov [rsp], rbx: the store lands in the scratch memory on both sides.
  const uint8_t store[] = {0x48, 0x89, 0x1c, 0x24};
  h.native->load_code(store, sizeof store);
  h.core->load_code(store, sizeof store);
  h.native->run(*in, *native);
  h.core->run(*in, *core);
  for (const Outcome* o : {native.get(), core.get()}) {
    uint64_t v;
    std::memcpy(&v, o->mem.data() + (kStackHigh - kScratch), 8);
    EXPECT_EQ(v, 0x3333333333333333ull);
  }

  // mov rax, [rcx] with rcx on a guard page: #PF on both sides, nothing changed.
  const uint8_t load[] = {0x48, 0x8b, 0x01};
  in->gpr[1] = kScratch + kScratchSize;
  h.native->load_code(load, sizeof load);
  h.core->load_code(load, sizeof load);
  h.native->run(*in, *native);
  h.core->run(*in, *core);
  for (const Outcome* o : {native.get(), core.get()}) {
    EXPECT_TRUE(o->faulted);
    EXPECT_EQ(o->vector, 14);
    EXPECT_EQ(o->rip, kInsn);
    EXPECT_EQ(o->gpr[0], in->gpr[0]);
  }
  EXPECT_EQ(compare(*native, *core, CompareScope{}).what, "");

  // A difference is reported: the same outcome with one register changed.
  Outcome altered = *core;
  altered.gpr[5] ^= 1;
  EXPECT_EQ(compare(*native, altered, CompareScope{}).what, "rbp");
}

TEST(DiffCatalog, FormsComeFromZydisTables) {
  const cpu::CpuModel model = cpu::CpuModel::max();
  const Catalog cat = build_catalog(FeatureSupport(model));
  std::map<std::string, SkipReason> by_name;
  for (const Form& f : cat.forms) by_name[f.name] = f.skip;
  // One form of each instruction class is found and kept...
  for (const char* name : {"add r32, r32", "lock xadd m64, r64", "shl m8, cl", "rcr r16, 1", "imul r64, m64, imm8",
                           "div r8", "bsf r32, m32", "bextr r64, r64, r64", "adcx r32, r32", "rep movsb", "rep stosw",
                           "repne scasq", "cmpxchg16b m128", "push imm8 (o16)", "ret imm16", "jnz rel8",
                           "call m64", "movbe m32, r32", "popcnt r16, r16", "xlat", "enter imm16, imm8 (o64)"}) {
    auto it = by_name.find(name);
    ASSERT_NE(it, by_name.end()) << name;
    EXPECT_EQ(it->second, SkipReason::kNone) << name;
  }
  // ...and the forms that cannot be compared are left out for their reason.
  EXPECT_EQ(by_name.at("rdtsc"), SkipReason::kNondeterministic);
  EXPECT_EQ(by_name.at("cpuid"), SkipReason::kNondeterministic);
  EXPECT_EQ(by_name.at("syscall"), SkipReason::kLeavesSnippet);
  EXPECT_EQ(by_name.at("in al, dx"), SkipReason::kIo);
  EXPECT_EQ(by_name.at("hlt"), SkipReason::kPrivileged);
  EXPECT_EQ(by_name.at("addps xmm, xmm"), SkipReason::kFpuSimd);
  EXPECT_EQ(by_name.at("mov sreg, r16"), SkipReason::kHostState);
}

TEST(DiffForms, EveryGeneralPurposeFormMatchesTheHost) {
  const uint64_t seed = env_u64("NESTVM_DIFF_SEED", kDefaultSeed);
  const unsigned deep = unsigned(std::max<uint64_t>(1, env_u64("NESTVM_DIFF_DEEP", 1)));
  const bool strict = env_u64("NESTVM_DIFF_STRICT", kStrictByDefault) != 0;
  const bool verbose = env_u64("NESTVM_DIFF_VERBOSE", 0) != 0;
  const std::string filter = env_str("NESTVM_DIFF_FILTER");

  Harness h = make_harness();
  ASSERT_TRUE(h.native);
  const Catalog cat = build_catalog(FeatureSupport(h.core->model()));
  FormRunner runner(*h.native, *h.core);
  FormRunConfig cfg;
  cfg.seed = seed;
  cfg.inputs = kInputsPerForm * deep;
  cfg.instances = std::min(8u * deep, 64u);
  char rerun[96];
  std::snprintf(rerun, sizeof rerun, "NESTVM_DIFF_SEED=%#llx NESTVM_DIFF_DEEP=%u ", static_cast<unsigned long long>(seed),
                deep);
  cfg.rerun = rerun;

  std::map<SkipReason, unsigned> skipped;
  unsigned tested = 0, passed = 0;
  uint64_t runs = 0;
  std::vector<std::pair<const Form*, FormResult>> unimplemented, mismatching;
  const auto start = std::chrono::steady_clock::now();
  for (const Form& f : cat.forms) {
    if (f.skip != SkipReason::kNone) {
      ++skipped[f.skip];
      continue;
    }
    if (!filter.empty() && f.name.find(filter) == std::string::npos) continue;
    ++tested;
    FormResult r = runner.run(f, cfg);
    runs += r.runs;
    if (verbose)
      std::printf("%-44s %-13s %5llu runs (%3llu%% faulting) %u encodings %s\n", f.name.c_str(),
                  r.status == FormStatus::kPass ? "ok" : r.status == FormStatus::kMismatch ? "MISMATCH" : "unimplemented",
                  static_cast<unsigned long long>(r.runs),
                  static_cast<unsigned long long>(r.runs ? 100 * r.faulting_runs / r.runs : 0), r.instances,
                  r.what.c_str());
    if (verbose) std::fflush(stdout);
    switch (r.status) {
      case FormStatus::kPass: ++passed; break;
      case FormStatus::kUnimplemented: unimplemented.emplace_back(&f, std::move(r)); break;
      case FormStatus::kMismatch: mismatching.emplace_back(&f, std::move(r)); break;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\n[diff] seed %#llx, %u input states per form, %.1f s\n", static_cast<unsigned long long>(seed),
              cfg.inputs, secs);
  std::printf("[diff] forms found in Zydis's tables: %zu (%llu encodings decoded)\n", cat.forms.size(),
              static_cast<unsigned long long>(cat.candidates));
  for (const auto& [reason, n] : skipped) std::printf("[diff]   skipped, %s: %u\n", skip_reason_name(reason), n);
  std::printf("[diff] general-purpose forms tested: %u%s (%llu runs)\n", tested,
              filter.empty() ? "" : (" matching '" + filter + "'").c_str(), static_cast<unsigned long long>(runs));
  std::printf("[diff]   covered and matching the host: %u\n", passed);
  std::printf("[diff]   unimplemented in core (#UD where the host executes): %zu\n", unimplemented.size());
  std::printf("[diff]   mismatching: %zu\n", mismatching.size());
  for (const auto& [f, r] : mismatching)
    std::printf("[diff]     MISMATCH %-40s %llu/%llu runs differ: %s\n", f->name.c_str(),
                static_cast<unsigned long long>(r.mismatches), static_cast<unsigned long long>(r.runs), r.what.c_str());
  if (!unimplemented.empty()) {
    std::string names;
    for (const auto& [f, r] : unimplemented) names += (names.empty() ? "" : ", ") + f->name;
    std::printf("[diff]   unimplemented: %s\n", names.c_str());
  }
  for (const auto& [f, r] : mismatching) ADD_FAILURE() << r.report;
  if (strict && !unimplemented.empty())
    ADD_FAILURE() << unimplemented.size() << " forms are not implemented in the core (NESTVM_DIFF_STRICT)";
  EXPECT_GT(tested, 0u) << "no form matched the filter";
}

}  // namespace
}  // namespace nestvm::diff
