/* isa-debug-exit (QEMU hw/misc/debugexit.c): a write of any width to the device ends the
 * machine with exit status (value << 1) | 1. The guest cannot see its own exit status: the
 * runner asserts it (tests/guest/CMakeLists.txt gives each variant's expected status).
 * Arguments: code=<value to write> width=<1, 2 or 4 bytes>. */
#include "runtime/config.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

int main(int argc, char** argv) {
  const char* code_text = arg_value("code");
  uint64_t code = arg_u64("code", 0), width = arg_u64("width", 4);
  report_why(code_text != NULL, "the exit code is on the command line", "no code= argument");
  report_why(width == 1 || width == 2 || width == 4, "the access width is 1, 2 or 4", "width=%lu", width);
  report_why(code <= 0x7f, "the code fits an exit status ((code << 1) | 1 <= 255)", "code=%lu", code);
  printf("writing %#lx to port %#x with a %lu-byte OUT: the exit status must be %lu\n", code, DEBUG_EXIT_PORT, width,
         (code << 1) | 1);
  report_summary();
  if (report_failures() == 0) {
    if (width == 1) outb(DEBUG_EXIT_PORT, (uint8_t)code);
    else if (width == 2) outw(DEBUG_EXIT_PORT, (uint16_t)code);
    else outl(DEBUG_EXIT_PORT, (uint32_t)code);
  }
  report_fail("debug exit", "still running after the write to port %#x", DEBUG_EXIT_PORT);
  debug_exit((uint32_t)report_summary());
}
