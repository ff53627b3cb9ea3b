// Runs one form: its instances, each with its share of random input states, on the host and in
// the core, and compares every outcome. A form whose every run raises #UD in the core while the
// host executes it is "unimplemented in core"; any other disagreement is a mismatch.
#pragma once
#include <cstdint>
#include <string>

#include "diff/core_runner.h"
#include "diff/form_catalog.h"
#include "diff/native_runner.h"

namespace nestvm::diff {

enum class FormStatus : uint8_t { kPass, kMismatch, kUnimplemented };

struct FormResult {
  FormStatus status = FormStatus::kPass;
  uint64_t runs = 0;
  uint64_t mismatches = 0;
  uint64_t faulting_runs = 0;  // runs in which the host raised an exception
  unsigned instances = 0;
  std::string what;    // the kinds of differences seen, e.g. "rflags(OF) rdx"
  std::string report;  // the first failing run in full: instruction, inputs, both outcomes
};

struct FormRunConfig {
  uint64_t seed = 0;        // the run's seed; each form derives its own from it and its key
  unsigned inputs = 2000;   // input states per form
  unsigned instances = 8;   // encodings per form
  std::string rerun;        // the environment that reruns one form: "NESTVM_DIFF_SEED=... "
};

class FormRunner {
 public:
  FormRunner(NativeRunner& native, CoreRunner& core) : native_(native), core_(core), dec_(make_decoder()) {}
  FormResult run(const Form& form, const FormRunConfig& cfg);

 private:
  NativeRunner& native_;
  CoreRunner& core_;
  ZydisDecoder dec_;
};

// The seed a form's runs start from (printed with failures so one form can be rerun alone).
uint64_t form_seed(uint64_t seed, const std::string& key);

}  // namespace nestvm::diff
