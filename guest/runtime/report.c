#include "runtime/report.h"

#include "runtime/config.h"
#include "runtime/libc.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"

static volatile unsigned passed, failed, skipped;

static void count(volatile unsigned* c) { __atomic_add_fetch(c, 1, __ATOMIC_RELAXED); }

bool report(bool ok, const char* check_fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, check_fmt);
  vsnprintf(name, sizeof(name), check_fmt, ap);
  va_end(ap);
  printf("%s: %s\n", ok ? "PASS" : "FAIL", name);
  count(ok ? &passed : &failed);
  return ok;
}

bool report_why(bool ok, const char* check, const char* why_fmt, ...) {
  if (ok) {
    printf("PASS: %s\n", check);
    count(&passed);
    return true;
  }
  char why[256];
  va_list ap;
  va_start(ap, why_fmt);
  vsnprintf(why, sizeof(why), why_fmt, ap);
  va_end(ap);
  printf("FAIL: %s: %s\n", check, why);
  count(&failed);
  return false;
}

bool report_eq(const char* check, uint64_t got, uint64_t want) {
  return report_why(got == want, check, "got %#lx, want %#lx", got, want);
}

void report_skip(const char* check, const char* why_fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, why_fmt);
  vsnprintf(why, sizeof(why), why_fmt, ap);
  va_end(ap);
  printf("SKIP: %s: %s\n", check, why);
  count(&skipped);
}

void report_fail(const char* check, const char* why_fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, why_fmt);
  vsnprintf(why, sizeof(why), why_fmt, ap);
  va_end(ap);
  printf("FAIL: %s: %s\n", check, why);
  count(&failed);
}

unsigned report_failures(void) { return failed; }

int report_summary(void) {
  printf("SUMMARY: %s: %u passed, %u failed, %u skipped\n", program_name(), passed, failed, skipped);
  return failed == 0 && passed > 0 ? 0 : 1;
}

void report_abort(const char* why_fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, why_fmt);
  vsnprintf(why, sizeof(why), why_fmt, ap);
  va_end(ap);
  printf("FAIL: %s\n", why);
  count(&failed);
  debug_exit((uint32_t)report_summary());
}

void debug_exit(uint32_t code) {
  outl(DEBUG_EXIT_PORT, code);
  for (;;) {
    cli();
    halt();
  }
}
