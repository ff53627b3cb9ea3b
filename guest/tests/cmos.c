/* The MC146818 RTC and CMOS RAM behind ports 0x70/0x71, as QEMU's pc machine sets them up: time
 * and date registers that agree with the host clock and advance, the status registers, the
 * data-mode (BCD/binary) and 12/24-hour format bits, the memory-size bytes firmware reads, general
 * CMOS RAM, and the periodic interrupt on IRQ 8 through the cascaded 8259.
 * Arguments: epoch=<host Unix time when the machine started> mem=<-m in MiB> cpus=<-smp>. */
#include "runtime/clock.h"
#include "runtime/libc.h"
#include "runtime/pic.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

#define RTC_SECONDS 0x00
#define RTC_MINUTES 0x02
#define RTC_HOURS 0x04
#define RTC_DAY_OF_WEEK 0x06
#define RTC_DAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32
#define REG_A_UIP 0x80
#define REG_B_PIE 0x40
#define REG_B_DM 0x04 /* 1: binary, 0: BCD */
#define REG_B_24H 0x02
#define REG_C_IRQF 0x80
#define REG_C_PF 0x40

static uint8_t cmos_read(uint8_t reg) {
  outb(0x70, reg);
  return inb(0x71);
}
static void cmos_write(uint8_t reg, uint8_t v) {
  outb(0x70, reg);
  outb(0x71, v);
}

struct rtc_time {
  unsigned sec, min, hour, dow, day, month, year, century;
  bool pm;
};

/* Reads the clock outside an update cycle (MC146818 data sheet: registers are stable for at
 * least 244 us after UIP reads 0), twice until two reads agree. */
static struct rtc_time read_raw(void) {
  struct rtc_time a, b;
  for (int tries = 0; tries < 10; ++tries) {
    for (int i = 0; i < 1000000 && (cmos_read(RTC_REG_A) & REG_A_UIP); ++i) pause();
    a = (struct rtc_time){cmos_read(RTC_SECONDS), cmos_read(RTC_MINUTES), cmos_read(RTC_HOURS),
                          cmos_read(RTC_DAY_OF_WEEK), cmos_read(RTC_DAY), cmos_read(RTC_MONTH),
                          cmos_read(RTC_YEAR), cmos_read(RTC_CENTURY), false};
    b = (struct rtc_time){cmos_read(RTC_SECONDS), cmos_read(RTC_MINUTES), cmos_read(RTC_HOURS),
                          cmos_read(RTC_DAY_OF_WEEK), cmos_read(RTC_DAY), cmos_read(RTC_MONTH),
                          cmos_read(RTC_YEAR), cmos_read(RTC_CENTURY), false};
    if (!memcmp(&a, &b, sizeof(a))) break;
  }
  return a;
}

static bool bcd_ok(unsigned v) { return (v & 0xf) <= 9 && (v >> 4) <= 9; }
static unsigned from_bcd(unsigned v) { return (v >> 4) * 10 + (v & 0xf); }

/* Decodes the registers per register B; false if a BCD digit is invalid. */
static bool decode(struct rtc_time* t, uint8_t reg_b) {
  t->pm = false;
  if (!(reg_b & REG_B_24H)) {
    t->pm = t->hour & 0x80;
    t->hour &= 0x7f;
  }
  if (!(reg_b & REG_B_DM)) {
    unsigned* f[] = {&t->sec, &t->min, &t->hour, &t->dow, &t->day, &t->month, &t->year, &t->century};
    for (size_t i = 0; i < ARRAY_SIZE(f); ++i) {
      if (!bcd_ok(*f[i])) return false;
      *f[i] = from_bcd(*f[i]);
    }
  }
  if (!(reg_b & REG_B_24H)) { /* 12-hour: 12 AM is 0, 12 PM is 12 */
    t->hour %= 12;
    if (t->pm) t->hour += 12;
  }
  return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static int64_t to_epoch(const struct rtc_time* t) {
  int64_t year = (int64_t)t->century * 100 + t->year;
  return days_from_civil(year, t->month, t->day) * 86400 + t->hour * 3600 + t->min * 60 + t->sec;
}

static void check_clock(void) {
  uint8_t a = cmos_read(RTC_REG_A), b = cmos_read(RTC_REG_B), d = cmos_read(RTC_REG_D);
  printf("register A %#x B %#x D %#x\n", a, b, d);
  check_eq("register A: 32.768 kHz time base (divider bits 6:4 = 010)", a & 0x70, 0x20);
  check_eq("register B: 24-hour mode, no interrupts enabled", b & (REG_B_24H | 0x70), REG_B_24H);
  check_eq("register D: valid RAM and time (VRT)", d & 0x80, 0x80);

  struct rtc_time t = read_raw();
  bool ok = decode(&t, b);
  report_why(ok, "time registers hold valid digits for the data mode", "raw %02x:%02x:%02x %02x/%02x/%02x%02x", t.hour,
             t.min, t.sec, t.day, t.month, t.century, t.year);
  printf("RTC: %02u%02u-%02u-%02u %02u:%02u:%02u (day of week %u)\n", t.century, t.year, t.month, t.day, t.hour, t.min,
         t.sec, t.dow);
  report_why(t.sec < 60 && t.min < 60 && t.hour < 24, "time of day in range", "%u:%u:%u", t.hour, t.min, t.sec);
  report_why(t.day >= 1 && t.day <= 31 && t.month >= 1 && t.month <= 12 && t.year <= 99,
             "date in range", "%u/%u/%u", t.day, t.month, t.year);
  check_eq("century register (0x32)", t.century, 20);
  int64_t days = days_from_civil((int64_t)t.century * 100 + t.year, t.month, t.day);
  check_eq("day of week agrees with the date (1 = Sunday)", t.dow, (unsigned)((days + 4) % 7) + 1);
  const char* epoch_text = arg_value("epoch");
  if (epoch_text) {
    int64_t host = (int64_t)strtou64(epoch_text, NULL), rtc = to_epoch(&t);
    report_why(rtc >= host - 2 && rtc <= host + 30, "RTC is the host's UTC time (within 30 s of the start)",
               "RTC %ld, host %ld at start", rtc, host);
  } else {
    report_fail("RTC is the host's UTC time", "no epoch= argument");
  }

  /* The clock runs: the seconds register moves on by one within about a second. */
  unsigned s0 = t.sec;
  uint64_t start = now_us();
  struct rtc_time u;
  do {
    u = read_raw();
    decode(&u, b);
  } while (u.sec == s0 && now_us() - start < 2500000);
  report_why(u.sec == (s0 + 1) % 60, "seconds advance by one within 2.5 s", "from %u to %u after %lu us", s0, u.sec,
             now_us() - start);
}

static void check_formats(void) {
  uint8_t b = cmos_read(RTC_REG_B);
  struct rtc_time bcd = read_raw();
  decode(&bcd, b);
  cmos_write(RTC_REG_B, (uint8_t)(b | REG_B_DM));
  struct rtc_time bin = read_raw();
  bool valid = decode(&bin, (uint8_t)(b | REG_B_DM));
  cmos_write(RTC_REG_B, (uint8_t)((b | REG_B_DM) & ~REG_B_24H));
  struct rtc_time h12 = read_raw();
  uint8_t raw_hour12 = (uint8_t)h12.hour;
  decode(&h12, (uint8_t)((b | REG_B_DM) & ~REG_B_24H));
  cmos_write(RTC_REG_B, b);
  struct rtc_time back = read_raw();
  decode(&back, b);
  int64_t e0 = to_epoch(&bcd), e1 = to_epoch(&bin), e2 = to_epoch(&h12), e3 = to_epoch(&back);
  report_why(valid && e1 >= e0 && e1 <= e0 + 1, "binary mode (DM = 1) reads the same time as BCD",
             "BCD %ld, binary %ld", e0, e1);
  report_why((raw_hour12 & 0x7f) >= 1 && (raw_hour12 & 0x7f) <= 12, "12-hour mode: hours 1..12 with bit 7 for PM",
             "raw hour %#x", raw_hour12);
  report_why(e2 >= e1 && e2 <= e1 + 1, "12-hour mode reads the same time", "24-hour %ld, 12-hour %ld", e1, e2);
  report_why(e3 >= e2 && e3 <= e2 + 1, "back in BCD 24-hour mode, the same time again", "%ld then %ld", e2, e3);
}

static void check_memory_bytes(void) {
  uint64_t mem = arg_u64("mem", 128) << 20;
  uint64_t below_4g = mem >= 0xe0000000ull ? 0xc0000000ull : mem, above_4g = mem - below_4g;
  /* What firmware reads (QEMU hw/i386/pc.c pc_cmos_init; SeaBIOS uses 0x34/0x35 and 0x5b-0x5d). */
  uint64_t base = below_4g / 1024 < 640 ? below_4g / 1024 : 640;
  uint64_t ext = below_4g > (1 << 20) ? (below_4g - (1 << 20)) / 1024 : 0;
  if (ext > 0xffff) ext = 0xffff;
  uint64_t above_16m = below_4g > (16 << 20) ? (below_4g - (16 << 20)) / 65536 : 0;
  if (above_16m > 0xffff) above_16m = 0xffff;
  check_eq("0x15/0x16: base memory in KiB", cmos_read(0x15) | cmos_read(0x16) << 8, base);
  check_eq("0x17/0x18: extended memory in KiB (at most 0xffff)", cmos_read(0x17) | cmos_read(0x18) << 8, ext);
  check_eq("0x30/0x31: extended memory in KiB, again", cmos_read(0x30) | cmos_read(0x31) << 8, ext);
  check_eq("0x34/0x35: memory from 16 MiB to the hole in 64 KiB units", cmos_read(0x34) | cmos_read(0x35) << 8,
           above_16m);
  check_eq("0x5b-0x5d: memory above 4 GiB in 64 KiB units",
           cmos_read(0x5b) | cmos_read(0x5c) << 8 | (uint32_t)cmos_read(0x5d) << 16, above_4g / 65536);
  check_eq("0x5f: CPU count - 1", cmos_read(0x5f), arg_u64("cpus", 1) - 1);

  static const uint8_t patterns[] = {0x00, 0xff, 0xa5, 0x5a};
  bool ok = true;
  uint8_t saved = cmos_read(0x7e);
  for (size_t i = 0; i < ARRAY_SIZE(patterns); ++i) {
    cmos_write(0x7e, patterns[i]);
    ok = ok && cmos_read(0x7e) == patterns[i];
  }
  cmos_write(0x7e, saved);
  report(ok, "CMOS RAM byte 0x7e holds what was written");
  outb(0x70, 0x80 | 0x15); /* bit 7 of the index port is the NMI mask, not part of the index */
  uint8_t with_nmi_bit = inb(0x71);
  outb(0x70, 0x15);
  check_eq("index bit 7 (NMI disable) does not change the register selected", with_nmi_bit, cmos_read(0x15));
}

static volatile uint32_t rtc_irqs;
static volatile uint8_t rtc_c;

static void rtc_irq(struct trap_frame* f) {
  rtc_c = cmos_read(RTC_REG_C); /* reading C acknowledges and lets IRQ 8 fire again */
  rtc_irqs++;
  pic_eoi(8);
}

static void check_periodic_interrupt(void) {
  set_trap_handler(PIC_VECTOR_BASE + 8, rtc_irq);
  uint8_t a = cmos_read(RTC_REG_A), b = cmos_read(RTC_REG_B);
  cmos_write(RTC_REG_A, (uint8_t)((a & 0xf0) | 0x06)); /* rate 6: 1024 Hz */
  (void)cmos_read(RTC_REG_C);
  pic_unmask(8);
  rtc_irqs = 0;
  cmos_write(RTC_REG_B, (uint8_t)(b | REG_B_PIE));
  sti();
  uint64_t t0 = now_us();
  bool got = wait_count(&rtc_irqs, 64, 2000);
  uint64_t dt = now_us() - t0;
  cli();
  cmos_write(RTC_REG_B, b);
  pic_mask(8);
  (void)cmos_read(RTC_REG_C);
  cmos_write(RTC_REG_A, a);
  report_why(got, "periodic interrupts arrive on IRQ 8 through the slave 8259", "%u in 2 s", rtc_irqs);
  check_eq("register C in the handler: IRQF and PF", rtc_c & (REG_C_IRQF | REG_C_PF), REG_C_IRQF | REG_C_PF);
  uint64_t hz = dt ? 64ull * 1000000 / dt : 0;
  printf("64 periodic interrupts in %lu us: %lu Hz\n", dt, hz);
  /* Not faster than 4 times the rate; slower only as far as a loaded host can delay us. */
  report_why(got && hz >= 100 && hz <= 4096, "periodic rate 6 is about 1024 Hz (100..4096)", "%lu Hz", hz);
}

int main(int argc, char** argv) {
  check_clock();
  check_formats();
  check_memory_bytes();
  check_periodic_interrupt();
  return 0;
}
