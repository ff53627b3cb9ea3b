// Runs one instruction in the core: a cpu::Cpu on flat RAM, in 64-bit mode at CPL 3, with 4-level
// paging that maps the code page and the scratch pages at the same linear addresses the native
// run uses (and leaves the guard pages not present). Exceptions are intercepted, so a fault comes
// back as a value with the event, and the instruction budget stops the core after one instruction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cpu/cpu.h"
#include "cpu/phys_mem.h"
#include "diff/machine_state.h"

namespace nestvm::diff {

struct UserSelectors {
  uint16_t ds = 0, es = 0, fs = 0, gs = 0;
};

class CoreRunner {
 public:
  CoreRunner(cpu::CpuModel model, UserSelectors sel);
  ~CoreRunner();

  const cpu::CpuModel& model() const { return model_; }
  void load_code(const uint8_t* bytes, size_t len);
  void run(const InputState& in, Outcome& out);

 private:
  void build_cpu();
  void write_page_tables();

  cpu::FlatRam ram_;
  cpu::CpuModel model_;
  UserSelectors sel_;
  std::unique_ptr<cpu::Cpu> cpu_;
};

}  // namespace nestvm::diff
