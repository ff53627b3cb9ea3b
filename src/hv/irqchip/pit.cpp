#include "hv/irqchip/pit.h"

#include <algorithm>

#include "hv/clock.h"
#include "hv/irqchip/pc_irqchip.h"

namespace nestvm::hv {

namespace {
constexpr uint16_t kCounter0 = 0x40;
constexpr uint16_t kControl = 0x43;
constexpr uint16_t kPortB = 0x61;  // NMI status and control (speaker, counter 2)
constexpr uint64_t kMinPeriodTicks = (Pit::kMinPeriodNs * Pit::kHz + 999999999) / 1000000000;

uint64_t tsc_to_ticks(uint64_t tsc) { return uint64_t((unsigned __int128)tsc * Pit::kHz / tsc_hz()); }
uint64_t ticks_to_tsc(uint64_t ticks) {
  return uint64_t(((unsigned __int128)ticks * tsc_hz() + Pit::kHz - 1) / Pit::kHz);
}
uint32_t from_bcd(uint32_t v) {
  return ((v >> 12) & 0xf) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
}
uint32_t to_bcd(uint32_t v) {
  return ((v / 1000 % 10) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10);
}
// Modes 1 and 5 count whatever the gate does after their trigger; the others stop while it is low.
bool gate_holds(uint8_t mode) { return mode != 1 && mode != 5; }
}  // namespace

Pit::Pit(PcIrqChip& chip) : chip_(chip) { reset(); }

// Reset: nothing counts until a count is written; gates 0 and 1 are wired high, gate 2 is port
// 0x61 bit 0 (KVM's pit_reset).
void Pit::reset() {
  std::lock_guard lock(mu_);
  for (unsigned i = 0; i < channels_.size(); ++i) {
    channels_[i] = Channel{};
    channels_[i].gate = i != 2;
  }
  speaker_data_on_ = false;
  fired_periods_ = 0;
  deadline_.store(~0ull);
}

uint64_t Pit::elapsed_ticks(const Channel& c, uint64_t now) const {
  if (!c.counting) return 0;
  if (!c.gate && gate_holds(c.mode)) return c.held_ticks;
  return c.held_ticks + tsc_to_ticks(now - c.load_time);
}

// The counting element (8254 datasheet, "Modes"): modes 0, 1, 4 and 5 count down once and wrap;
// mode 2 reloads at 1; mode 3 counts down by two twice per period (KVM's pit_get_count).
uint32_t Pit::current_count(const Channel& c, uint64_t now) const {
  const uint32_t modulus = c.bcd ? 10000 : 0x10000;
  uint32_t n;
  if (!c.counting) {
    n = c.count % modulus;
  } else {
    const uint64_t d = elapsed_ticks(c, now);
    switch (c.mode) {
      case 2: n = c.count - uint32_t(d % c.count); break;
      case 3: n = c.count - uint32_t((2 * d) % c.count); break;
      default: n = uint32_t((c.count + modulus - d % modulus) % modulus); break;
    }
    n %= modulus;
  }
  return c.bcd ? to_bcd(n) : n;
}

// OUT (8254 datasheet, Figure "Mode" waveforms): mode 0 rises at terminal count; mode 1 is low
// while the one-shot runs; mode 2 drops for the clock at count 1; mode 3 is high for the first
// half of each period; modes 4 and 5 drop for the clock at terminal count.
bool Pit::output(const Channel& c, uint64_t now) const {
  if (!c.counting) return c.mode != 0;
  if (!c.gate && (c.mode == 2 || c.mode == 3)) return true;
  const uint64_t d = elapsed_ticks(c, now);
  switch (c.mode) {
    case 0: return d >= c.count;
    case 1: return d >= c.count;
    case 2: return d % c.count != c.count - 1;
    case 3: return d % c.count < (c.count + 1) / 2;
    default: return d != c.count;
  }
}

void Pit::set_deadline(uint64_t d) {
  const uint64_t old = deadline_.exchange(d, std::memory_order_acq_rel);
  if (d < old) chip_.pit_deadline_changed();
}

// Counter 0's next rising edge of OUT (IRQ0): once at terminal count in modes 0, 1 and 4, every
// period in modes 2 and 3 (never faster than kMinPeriodNs).
void Pit::reschedule(uint64_t now) {
  const Channel& c = channels_[0];
  if (!c.counting || c.mode == 5) {
    set_deadline(~0ull);
    return;
  }
  uint64_t tick;
  if (c.mode == 2 || c.mode == 3) {
    tick = (fired_periods_ + 1) * std::max<uint64_t>(c.count, kMinPeriodTicks);
  } else {
    if (fired_periods_) {
      set_deadline(~0ull);
      return;
    }
    tick = c.count;
  }
  // Counter 0's gate is wired high: it has counted since load_time, plus held_ticks.
  set_deadline(tick > c.held_ticks ? c.load_time + ticks_to_tsc(tick - c.held_ticks) : now);
}

void Pit::expire(uint64_t now) {
  {
    std::lock_guard lock(mu_);
    if (deadline_.load(std::memory_order_relaxed) > now) return;
    const Channel& c = channels_[0];
    if (c.mode == 2 || c.mode == 3) {
      // Periods that went by unseen are not replayed.
      fired_periods_ = std::max(fired_periods_ + 1, elapsed_ticks(c, now) / std::max<uint64_t>(c.count, kMinPeriodTicks));
    } else {
      fired_periods_ = 1;
    }
    reschedule(now);
  }
  chip_.set_irq(0, true);
  chip_.set_irq(0, false);
}

void Pit::load_count(unsigned channel, uint32_t value, uint64_t now) {
  Channel& c = channels_[channel];
  uint32_t count = c.bcd ? from_bcd(value) : value;
  if (count == 0) count = c.bcd ? 10000 : 0x10000;
  c.count = count;
  c.load_time = now;
  c.held_ticks = 0;
  c.counting = true;
  c.null_count = false;
  if (channel == 0) {
    fired_periods_ = 0;
    reschedule(now);
  }
}

void Pit::latch_count(Channel& c, uint64_t now) {
  if (c.count_latched) return;  // a second latch before the read is ignored
  c.latched_count = uint16_t(current_count(c, now));
  c.count_latched = c.rw_mode;
}

// Gate (8254 datasheet, "Gate"): modes 0 and 4 pause while it is low; modes 2 and 3 pause with
// OUT high and restart on the rising edge; modes 1 and 5 (re)trigger on the rising edge.
void Pit::set_gate(Channel& c, bool gate, uint64_t now) {
  if (gate == c.gate) return;
  if (c.counting) {
    if (!gate && gate_holds(c.mode)) {
      c.held_ticks += tsc_to_ticks(now - c.load_time);
    } else if (gate) {
      if (c.mode != 0 && c.mode != 4) c.held_ticks = 0;
      c.load_time = now;
    }
  }
  c.gate = gate;
}

// Control word (8254 datasheet): SC in bits 7:6 (3: read-back), RW in 5:4 (0: counter latch),
// mode in 3:1 (6 and 7 are 2 and 3), BCD in bit 0. A new mode stops the counter until a count is
// written.
void Pit::write_control(uint8_t v, uint64_t now) {
  const unsigned channel = v >> 6;
  if (channel == 3) {
    // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 3:1 pick counters.
    for (unsigned i = 0; i < 3; ++i) {
      if (!(v & (2u << i))) continue;
      Channel& c = channels_[i];
      if (!(v & 0x20)) latch_count(c, now);
      if (!(v & 0x10) && !c.status_latched) {
        c.status = uint8_t((output(c, now) << 7) | (c.null_count << 6) | (c.rw_mode << 4) | (c.mode << 1) | c.bcd);
        c.status_latched = true;
      }
    }
    return;
  }
  Channel& c = channels_[channel];
  const uint8_t access = (v >> 4) & 3;
  if (access == kLatch) {
    latch_count(c, now);
    return;
  }
  c.rw_mode = c.read_state = c.write_state = access;
  c.mode = (v >> 1) & 7;
  if (c.mode > 5) c.mode -= 4;
  c.bcd = v & 1;
  c.counting = false;
  c.null_count = true;
  c.count_latched = 0;
  c.status_latched = false;
  if (channel == 0) reschedule(now);
}

uint8_t Pit::read_counter(unsigned channel, uint64_t now) {
  Channel& c = channels_[channel];
  if (c.status_latched) {
    c.status_latched = false;
    return c.status;
  }
  if (c.count_latched) {
    const uint16_t l = c.latched_count;
    switch (c.count_latched) {
      case kMsb: c.count_latched = 0; return uint8_t(l >> 8);
      case kWord: c.count_latched = kMsb; return uint8_t(l);
      default: c.count_latched = 0; return uint8_t(l);
    }
  }
  const uint32_t n = current_count(c, now);
  switch (c.read_state) {
    case kMsb: return uint8_t(n >> 8);
    case kWord: c.read_state = kWordMsb; return uint8_t(n);
    case kWordMsb: c.read_state = kWord; return uint8_t(n >> 8);
    default: return uint8_t(n);
  }
}

void Pit::write_counter(unsigned channel, uint8_t v, uint64_t now) {
  Channel& c = channels_[channel];
  switch (c.write_state) {
    case kMsb: load_count(channel, uint32_t(v) << 8, now); break;
    case kWord:
      c.write_latch = v;
      c.write_state = kWordMsb;
      // Mode 0: writing the first byte stops the count (8254 datasheet, Mode 0).
      if (c.mode == 0 && c.counting) {
        c.counting = false;
        if (channel == 0) reschedule(now);
      }
      break;
    case kWordMsb:
      c.write_state = kWord;
      load_count(channel, c.write_latch | (uint32_t(v) << 8), now);
      break;
    default: load_count(channel, v, now); break;
  }
}

uint32_t Pit::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  const uint64_t now = chip_.now();
  uint32_t value = 0;
  for (unsigned i = 0; i < size; ++i) {
    const uint16_t p = uint16_t(port + i);
    uint8_t b = 0xff;
    if (p >= kCounter0 && p < kControl) {
      b = read_counter(p - kCounter0, now);
    } else if (p == kControl) {
      b = 0;  // write-only; KVM and QEMU read 0
    } else if (p == kPortB) {
      // Bit 0 gate 2, bit 1 speaker data, bit 4 the refresh request toggling every 15.085 us,
      // bit 5 OUT2.
      const Channel& c2 = channels_[2];
      const bool refresh = (tsc_to_ns(now) / 15085) & 1;
      b = uint8_t(c2.gate | (speaker_data_on_ << 1) | (refresh << 4) | (output(c2, now) << 5));
    }
    value |= uint32_t(b) << (8 * i);
  }
  return value;
}

void Pit::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  const uint64_t now = chip_.now();
  for (unsigned i = 0; i < size; ++i) {
    const uint16_t p = uint16_t(port + i);
    const uint8_t b = uint8_t(value >> (8 * i));
    if (p >= kCounter0 && p < kControl) write_counter(p - kCounter0, b, now);
    else if (p == kControl) write_control(b, now);
    else if (p == kPortB) {
      speaker_data_on_ = b & 2;
      set_gate(channels_[2], b & 1, now);
    }
  }
}

}  // namespace nestvm::hv
