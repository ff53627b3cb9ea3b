#include "runtime/pit.h"

#include "runtime/x86.h"

#define PIT_CH0 0x40
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PORT_B 0x61

void pit_start_periodic(unsigned hz) {
  uint32_t count = PIT_HZ / hz;
  if (count > 0xffff) count = 0xffff;
  if (count < 2) count = 2;
  outb(PIT_CMD, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
  outb(PIT_CH0, (uint8_t)count);
  outb(PIT_CH0, (uint8_t)(count >> 8));
}

void pit_stop(void) {
  outb(PIT_CMD, 0x30); /* channel 0, lobyte/hibyte, mode 0: OUT stays low until the count */
  outb(PIT_CH0, 0xff);
  outb(PIT_CH0, 0xff);
}

uint16_t pit_read_counter0(void) {
  outb(PIT_CMD, 0x00); /* counter latch, channel 0 */
  uint16_t lo = inb(PIT_CH0);
  uint16_t hi = inb(PIT_CH0);
  return (uint16_t)(lo | (hi << 8));
}

static void delay_ticks(uint32_t ticks) {
  /* Gate high, speaker off; mode 0 raises OUT2 when the count reaches zero. */
  outb(PORT_B, (uint8_t)((inb(PORT_B) & ~0x02) | 0x01));
  outb(PIT_CMD, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
  outb(PIT_CH2, (uint8_t)ticks);
  outb(PIT_CH2, (uint8_t)(ticks >> 8));
  while (!(inb(PORT_B) & 0x20)) pause();
}

void pit_delay_us(uint64_t us) {
  uint64_t ticks = us * PIT_HZ / 1000000;
  while (ticks) {
    uint32_t t = ticks > 0xffff ? 0xffff : (uint32_t)ticks;
    if (t < 2) t = 2;
    delay_ticks(t);
    ticks -= ticks > t ? t : ticks;
  }
}
