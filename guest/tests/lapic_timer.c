/* The local APIC timer (SDM Vol. 3 11.5.4): one-shot mode counts down once and interrupts
 * once, periodic mode reloads, a masked LVT counts without interrupting, the divide
 * configuration scales the rate, writing 0 to the initial count stops it, and TSC-deadline mode
 * (when CPUID.01H:ECX[24] says so) fires at the deadline and clears IA32_TSC_DEADLINE.
 * Arguments: tsc_deadline=1 makes a missing TSC-deadline timer a failure instead of a skip. */
#include "runtime/apic.h"
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define TIMER_VECTOR 0x50
#define DIV_1 0xb
#define DIV_16 0x3

static volatile uint32_t fired;
static volatile uint64_t fired_tsc;
static volatile uint32_t count_in_handler;

static void timer_irq(struct trap_frame* f) {
  fired_tsc = rdtsc();
  count_in_handler = lapic_read(APIC_TIMER_CURRENT);
  fired++;
  lapic_eoi();
}

static void timer_stop(void) {
  lapic_write(APIC_TIMER_INITIAL, 0);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | TIMER_VECTOR);
}

/* Timer counts per millisecond at a divide setting, against the TSC. Each end is a timer read
 * between two RDTSCs; a trial whose ends were not sharp (the host took the CPU away right
 * there) is repeated. */
static uint64_t counts_per_ms(uint32_t divide) {
  lapic_write(APIC_TIMER_DIVIDE, divide);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | TIMER_VECTOR);
  uint64_t rate = 0;
  for (int attempt = 0; attempt < 20; ++attempt) {
    lapic_write(APIC_TIMER_INITIAL, 0xffffffffu);
    uint64_t a0 = rdtsc();
    uint32_t c0 = lapic_read(APIC_TIMER_CURRENT);
    uint64_t b0 = rdtsc();
    udelay(5000);
    uint64_t a1 = rdtsc();
    uint32_t c1 = lapic_read(APIC_TIMER_CURRENT);
    uint64_t b1 = rdtsc();
    uint64_t dt = (a1 + b1) / 2 - (a0 + b0) / 2;
    rate = (uint64_t)(c0 - c1) * tsc_khz() / (dt ? dt : 1);
    if ((b0 - a0) * 100 < dt && (b1 - a1) * 100 < dt) break;
  }
  lapic_write(APIC_TIMER_INITIAL, 0);
  return rate;
}

static void check_version(void) {
  uint32_t v = lapic_read(APIC_VERSION);
  printf("LAPIC version %#x, %u LVT entries\n", v & 0xff, ((v >> 16) & 0xff) + 1);
  report_why((v & 0xff) >= 0x10 && (v & 0xff) <= 0x15, "LAPIC version is an integrated APIC (0x10-0x15)", "%#x", v);
  report_why(((v >> 16) & 0xff) >= 3, "at least 4 LVT entries", "max LVT %u", (v >> 16) & 0xff);
}

static void check_divide(uint64_t* per_ms16) {
  uint64_t d16 = counts_per_ms(DIV_16), d1 = counts_per_ms(DIV_1);
  printf("timer: %lu counts/ms at divide 16, %lu at divide 1\n", d16, d1);
  report_why(d16 > 0, "the timer counts down", "no counts in 10 ms");
  report_why(d16 && d1 >= d16 * 12 && d1 <= d16 * 20, "divide by 1 counts 16 times faster than divide by 16",
             "ratio %lu.%02lu", d16 ? d1 / d16 : 0, d16 ? d1 * 100 / d16 % 100 : 0);
  *per_ms16 = d16 ? d16 : 1;
}

static void check_oneshot(uint64_t per_ms) {
  uint32_t initial = (uint32_t)(per_ms * 5); /* 5 ms */
  fired = 0;
  lapic_write(APIC_TIMER_DIVIDE, DIV_16);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_TIMER_ONESHOT | TIMER_VECTOR);
  check_eq("LVT timer reads back (one-shot, vector 0x50)", lapic_read(APIC_LVT_TIMER) & 0x700ff,
           APIC_LVT_TIMER_ONESHOT | TIMER_VECTOR);
  uint64_t t0 = now_us();
  lapic_write(APIC_TIMER_INITIAL, initial);
  uint32_t c1 = lapic_read(APIC_TIMER_CURRENT), c2 = c1;
  for (int i = 0; i < 100000 && c2 == c1; ++i) c2 = lapic_read(APIC_TIMER_CURRENT);
  check_eq("initial count reads back", lapic_read(APIC_TIMER_INITIAL), initial);
  report_why(c1 <= initial && c2 < c1, "current count starts at the initial count and decreases",
             "initial %u, then %u, %u", initial, c1, c2);
  sti();
  bool got = wait_flag(&fired, 1000);
  uint64_t dt = now_us() - t0;
  mdelay(15); /* three more periods: a one-shot timer must not fire again */
  cli();
  report_why(got, "one-shot timer interrupts", "nothing within 1 s");
  report_why(dt >= 2500, "one-shot fires after its count (5 ms), not before", "after %lu us", dt);
  check_eq("one-shot fires exactly once", fired, 1);
  check_eq("current count is 0 once a one-shot expired", lapic_read(APIC_TIMER_CURRENT), 0);
  check_eq("current count was 0 in the handler", count_in_handler, 0);
  timer_stop();
}

static void check_periodic(uint64_t per_ms) {
  uint32_t initial = (uint32_t)per_ms; /* 1 ms */
  fired = 0;
  lapic_write(APIC_TIMER_DIVIDE, DIV_16);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_TIMER_PERIODIC | TIMER_VECTOR);
  uint64_t t0 = now_us();
  lapic_write(APIC_TIMER_INITIAL, initial);
  sti();
  bool got = wait_count(&fired, 20, 2000);
  uint64_t dt = now_us() - t0;
  uint32_t current = lapic_read(APIC_TIMER_CURRENT);
  cli();
  report_why(got, "periodic timer interrupts repeatedly", "%u interrupts in 2 s", fired);
  report_why(got && dt >= 10000, "20 periods of 1 ms take at least 10 ms", "%lu us", dt);
  report_why(current > 0 && current <= initial, "periodic mode reloads the count", "current %u, initial %u", current,
             initial);
  /* Writing 0 to the initial count stops the timer (SDM 11.5.4). */
  lapic_write(APIC_TIMER_INITIAL, 0);
  sti();
  mdelay(2);
  uint32_t before = fired;
  mdelay(10);
  uint32_t after = fired;
  cli();
  check_eq("initial count 0 stops a periodic timer", after, before);
  check_eq("current count is 0 once stopped", lapic_read(APIC_TIMER_CURRENT), 0);
  timer_stop();
}

static void check_masked(uint64_t per_ms) {
  fired = 0;
  lapic_write(APIC_TIMER_DIVIDE, DIV_16);
  lapic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | APIC_LVT_TIMER_ONESHOT | TIMER_VECTOR);
  lapic_write(APIC_TIMER_INITIAL, (uint32_t)per_ms);
  sti();
  mdelay(10);
  cli();
  check_eq("a masked timer does not interrupt", fired, 0);
  check_eq("a masked one-shot timer still counts to 0", lapic_read(APIC_TIMER_CURRENT), 0);
  report(!lapic_requested(TIMER_VECTOR), "a masked timer leaves nothing in the IRR");
  timer_stop();
}

static void check_tsc_deadline(void) {
  if (!((cpuid(1).c >> 24) & 1)) {
    if (arg_u64("tsc_deadline", 0)) report_fail("TSC-deadline timer", "CPUID.01H:ECX.TSC_Deadline[24] is clear");
    else report_skip("TSC-deadline timer", "CPUID.01H:ECX.TSC_Deadline[24] is clear");
    return;
  }
  fired = 0;
  lapic_write(APIC_LVT_TIMER, APIC_LVT_TIMER_TSC_DEADLINE | TIMER_VECTOR);
  uint64_t deadline = rdtsc() + tsc_khz() * 5; /* 5 ms */
  wrmsr(MSR_TSC_DEADLINE, deadline);
  check_eq("IA32_TSC_DEADLINE reads back while armed", rdmsr(MSR_TSC_DEADLINE), deadline);
  sti();
  bool got = wait_flag(&fired, 1000);
  cli();
  report_why(got, "TSC-deadline timer interrupts", "nothing within 1 s");
  report_why(got && fired_tsc >= deadline, "the interrupt comes at or after the deadline", "%ld TSC ticks early",
             (long)(deadline - fired_tsc));
  check_eq("IA32_TSC_DEADLINE is 0 after it fired", rdmsr(MSR_TSC_DEADLINE), 0);
  /* Writing 0 disarms (SDM 11.5.4.1). */
  fired = 0;
  wrmsr(MSR_TSC_DEADLINE, rdtsc() + tsc_khz() * 5);
  wrmsr(MSR_TSC_DEADLINE, 0);
  sti();
  mdelay(15);
  cli();
  check_eq("writing 0 disarms the TSC-deadline timer", fired, 0);
  /* A deadline in the past fires at once. */
  wrmsr(MSR_TSC_DEADLINE, 1);
  sti();
  got = wait_flag(&fired, 1000);
  cli();
  report(got, "a deadline already past fires at once");
  timer_stop();
}

int main(int argc, char** argv) {
  set_trap_handler(TIMER_VECTOR, timer_irq);
  check_version();
  uint64_t per_ms;
  check_divide(&per_ms);
  check_oneshot(per_ms);
  check_periodic(per_ms);
  check_masked(per_ms);
  check_tsc_deadline();
  return 0;
}
