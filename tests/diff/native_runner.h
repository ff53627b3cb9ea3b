// Runs one instruction on the host processor: a JIT prologue loads all GPRs and RFLAGS, jumps to
// the instruction at kInsn, and whatever happens next (the #UD of the filler byte after the
// instruction or at a branch target, or a fault of the instruction itself) arrives as a signal
// whose ucontext holds the complete register state. The handler records it and resumes the
// harness, so no state is lost to an epilogue and faults need no special path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "diff/machine_state.h"

namespace nestvm::diff {

class NativeRunner {
 public:
  // Maps the region at its fixed address and installs the signal handlers. Returns nullptr and
  // sets `error` if the address range is taken or a mapping fails.
  static std::unique_ptr<NativeRunner> create(std::string& error);
  ~NativeRunner();
  NativeRunner(const NativeRunner&) = delete;
  NativeRunner& operator=(const NativeRunner&) = delete;

  // Puts the instruction at kInsn, filler everywhere else on the code page.
  void load_code(const uint8_t* bytes, size_t len);
  void run(const InputState& in, Outcome& out);

  // Whether an access to [la, la + len) cannot touch the test process's own memory: inside the
  // test region or its reserved surroundings, non-canonical, or unmapped.
  static bool address_is_safe(uint64_t la, uint64_t len);

  // The data segment selectors the host runs user code with (the core is given the same).
  uint16_t ds() const { return ds_; }
  uint16_t es() const { return es_; }
  uint16_t fs() const { return fs_; }
  uint16_t gs() const { return gs_; }

 private:
  NativeRunner() = default;
  bool map_region(std::string& error);
  void emit_harness();

  uint8_t* harness_ = nullptr;  // prologue, resume path, input block
  void* alt_stack_ = nullptr;
  uint16_t ds_ = 0, es_ = 0, fs_ = 0, gs_ = 0;
};

}  // namespace nestvm::diff
