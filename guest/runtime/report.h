/* The PASS/FAIL convention of the guest tests (docs/guest-tests.md):
 *   PASS: <check>
 *   FAIL: <check>: <why>
 *   SKIP: <check>: <why>
 *   SUMMARY: <program>: <p> passed, <f> failed, <s> skipped
 * and then exit through isa-debug-exit with 0 when nothing failed and at least one check
 * passed (QEMU reports status 1), 1 otherwise (status 3). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

bool report(bool ok, const char* check_fmt, ...) __attribute__((format(printf, 2, 3)));
/* As report(), with a reason on failure. */
bool report_why(bool ok, const char* check, const char* why_fmt, ...) __attribute__((format(printf, 3, 4)));
bool report_eq(const char* check, uint64_t got, uint64_t want);
void report_skip(const char* check, const char* why_fmt, ...) __attribute__((format(printf, 2, 3)));
void report_fail(const char* check, const char* why_fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the summary line; returns the exit code. */
int report_summary(void);
unsigned report_failures(void);

/* Prints a failure, the summary, and exits. For states a test cannot continue from. */
void report_abort(const char* why_fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Writes code to isa-debug-exit; halts forever if the machine has none. */
void debug_exit(uint32_t code) __attribute__((noreturn));

#define check_eq(check, got, want) report_eq(check, (uint64_t)(got), (uint64_t)(want))
