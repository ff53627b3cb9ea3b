/* Time for tests: the TSC, calibrated once against the PIT. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* TSC ticks per millisecond (calibrated on first use against PIT channel 2). */
uint64_t tsc_khz(void);
uint64_t now_us(void);
void udelay(uint64_t us);
void mdelay(uint64_t ms);

/* Spins (with PAUSE) until *flag != 0 or `timeout_ms` pass; returns whether it was set. */
bool wait_flag(volatile uint32_t* flag, uint64_t timeout_ms);
/* Spins until *counter >= target or the timeout passes. */
bool wait_count(volatile uint32_t* counter, uint32_t target, uint64_t timeout_ms);
