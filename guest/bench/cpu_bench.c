/* The CPU-bound machine benchmark image (docs/performance.md, "Machine: nestvm vs QEMU TCG"):
 * the sieve, sort and hash workloads of guest/workloads on the test-guest runtime, so that the
 * same multiboot ELF runs under nestvm and under qemu-system-x86_64 -accel tcg.
 * Arguments (-append): sieve=R sort=R hash=R set the rounds of each workload (0 skips it);
 * expect_sieve=V ... give the expected result for those rounds (bench/machine_bench computes
 * them natively from the same source). Without expect_<w>, the built-in values below apply to
 * the default rounds only; other rounds without an expected value are a failure, so that every
 * timed run is a checked run.
 * Output per workload: "BENCH: <w> rounds=R result=0x... tsc=T us=U" (TSC cycles and
 * microseconds of the workload alone, the TSC calibrated against the PIT after the timed
 * work), a PASS/FAIL line for the result, and the runtime's SUMMARY and isa-debug-exit.
 * With all rounds 0 it boots, calibrates and exits: the boot overhead of the timed runs. */
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/x86.h"
#include "workloads/workload.h"

struct workload {
  const char* name;
  uint64_t (*run)(uint64_t rounds);
  uint64_t default_rounds;
  uint64_t default_result; /* the native result for default_rounds */
};

/* Native results of the default rounds (the same as core_bench's), from nestvm_native_*. */
static const struct workload workloads[] = {
    {"sieve", sieve, 8, 0xa0348},
    {"sort", sort, 4, 0x6c7b25fc1a3d5f8eull},
    {"hash", hash, 8, 0x39f28a71e0060000ull},
};

struct timing {
  uint64_t rounds, result, tsc;
};

int main(int argc, char** argv) {
  struct timing t[ARRAY_SIZE(workloads)];
  for (unsigned i = 0; i < ARRAY_SIZE(workloads); ++i) {
    const struct workload* w = &workloads[i];
    t[i].rounds = arg_u64(w->name, w->default_rounds);
    if (!t[i].rounds) continue;
    uint64_t t0 = rdtsc();
    t[i].result = w->run(t[i].rounds);
    t[i].tsc = rdtsc() - t0;
  }
  /* Calibrating takes tens of milliseconds of PIT polling: after the timed work. */
  const uint64_t khz = tsc_khz();
  /* With no work (the benchmark's boot-overhead run) this is the one check: a TSC rate that a
   * real or emulated processor can have. */
  report_why(khz >= 100000 && khz <= 100000000, "TSC rate is 100 MHz-100 GHz", "%lu kHz", khz);
  for (unsigned i = 0; i < ARRAY_SIZE(workloads); ++i) {
    const struct workload* w = &workloads[i];
    if (!t[i].rounds) continue;
    printf("BENCH: %s rounds=%lu result=%#lx tsc=%lu us=%lu\n", w->name, t[i].rounds, t[i].result, t[i].tsc,
           t[i].tsc * 1000 / khz);
    char key[32];
    snprintf(key, sizeof(key), "expect_%s", w->name);
    const char* expect = arg_value(key);
    char check[64];
    snprintf(check, sizeof(check), "%s result for %lu rounds", w->name, t[i].rounds);
    if (expect) check_eq(check, t[i].result, strtou64(expect, NULL));
    else if (t[i].rounds == w->default_rounds) check_eq(check, t[i].result, w->default_result);
    else report_fail(check, "no %s= for non-default rounds", key);
  }
  return 0;
}
