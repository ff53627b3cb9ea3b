#include "runtime/clock.h"

#include "runtime/pit.h"
#include "runtime/x86.h"

static uint64_t khz;

uint64_t tsc_khz(void) {
  if (!khz) {
    uint64_t f = irq_save();
    uint64_t t0 = rdtsc();
    pit_delay_us(20000);
    uint64_t t1 = rdtsc();
    irq_restore(f);
    khz = (t1 - t0) / 20;
    if (!khz) khz = 1;
  }
  return khz;
}

uint64_t now_us(void) {
  uint64_t t = rdtsc(), k = tsc_khz();
  return t / k * 1000 + t % k * 1000 / k; /* no overflow for a TSC that started long ago */
}

void udelay(uint64_t us) {
  uint64_t end = rdtsc() + us * tsc_khz() / 1000;
  while (rdtsc() < end) pause();
}

void mdelay(uint64_t ms) { udelay(ms * 1000); }

bool wait_flag(volatile uint32_t* flag, uint64_t timeout_ms) {
  uint64_t end = rdtsc() + timeout_ms * tsc_khz();
  while (!*flag) {
    if (rdtsc() > end) return *flag != 0;
    pause();
  }
  return true;
}

bool wait_count(volatile uint32_t* counter, uint32_t target, uint64_t timeout_ms) {
  uint64_t end = rdtsc() + timeout_ms * tsc_khz();
  while (*counter < target) {
    if (rdtsc() > end) return *counter >= target;
    pause();
  }
  return true;
}
