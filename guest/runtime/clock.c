#include "runtime/clock.h"

#include "runtime/pit.h"
#include "runtime/report.h"
#include "runtime/x86.h"

static uint64_t khz;

/* A sample of PIT channel 2: its latched count read between two RDTSCs, whose midpoint is the
 * sample's TSC and whose distance its uncertainty (the machine may lose the CPU at any point:
 * the host is shared). */
struct pit_sample {
  uint64_t tsc, spread;
  uint16_t count;
};

static struct pit_sample pit2_sample(void) {
  uint64_t a = rdtsc();
  outb(0x43, 0x80); /* counter latch, channel 2 */
  uint16_t lo = inb(0x42);
  uint16_t count = (uint16_t)(lo | inb(0x42) << 8);
  uint64_t b = rdtsc();
  return (struct pit_sample){a + (b - a) / 2, b - a, count};
}

/* One trial: channel 2 counts down from 0xffff in mode 0 until 10 ms of PIT time passed. It is
 * valid if both end samples are sharp (spread under 1% of the interval) and OUT2 is still low,
 * i.e. the count never passed zero while we were away (8254 data sheet, mode 0). */
static bool calibration_trial(uint64_t* khz_out) {
  outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01)); /* gate high, speaker off */
  outb(0x43, 0xb0);                                /* channel 2, lo/hi, mode 0 */
  outb(0x42, 0xff);
  outb(0x42, 0xff);
  struct pit_sample s0 = pit2_sample(), s1 = s0;
  while ((uint16_t)(s0.count - s1.count) < 11932) s1 = pit2_sample();
  bool wrapped = inb(0x61) & 0x20;
  uint64_t dt = s1.tsc - s0.tsc;
  if (wrapped || s0.spread * 100 > dt || s1.spread * 100 > dt) return false;
  *khz_out = dt * (PIT_HZ / 1000) / (uint16_t)(s0.count - s1.count);
  return true;
}

uint64_t tsc_khz(void) {
  if (!khz) {
    uint64_t f = irq_save();
    uint64_t sum = 0, k;
    int good = 0;
    for (int attempt = 0; attempt < 30 && good < 3; ++attempt) {
      if (calibration_trial(&k)) {
        sum += k;
        ++good;
      }
    }
    irq_restore(f);
    if (!good) report_abort("cannot calibrate the TSC against the PIT (30 trials disturbed)");
    khz = sum / (uint64_t)good;
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
