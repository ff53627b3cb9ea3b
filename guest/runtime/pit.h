/* The 8254 PIT (1.193182 MHz input): channel 0 drives IRQ0, channel 2 is gated through port
 * 0x61 and readable there, which makes it a clock that needs no interrupt. */
#pragma once
#include <stdint.h>

#define PIT_HZ 1193182u

/* Channel 0 in mode 2 (rate generator) at about `hz` interrupts per second. */
void pit_start_periodic(unsigned hz);
/* Channel 0 in mode 0 with count 0 and no more edges: IRQ0 stays quiet. */
void pit_stop(void);
/* Busy-waits `us` microseconds on channel 2 (mode 0, polled on port 0x61 bit 5). */
void pit_delay_us(uint64_t us);
/* Latches and reads channel 0's counter. */
uint16_t pit_read_counter0(void);
