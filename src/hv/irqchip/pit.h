// The 8254 programmable interval timer of a PC, as KVM's struct kvm_pit (arch/x86/kvm/i8254.c):
// three counters clocked at 1.193182 MHz from host time, programmed through 0x40-0x43
// (control words, counter latch, read-back, LSB/MSB/word access, binary or BCD), all six
// modes for reading counts and OUT, counter 0's OUT driving IRQ0 (modes 0-4; one pulse per
// expiry), counter 2's gate and OUT on port 0x61 (NMI status and control register: speaker
// gate, speaker data, refresh toggle, OUT2). Missed counter-0 periods are not replayed: as a
// real PIC input, IRQ0 coalesces while the guest has not taken the last one.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "hv/io_bus.h"

namespace nestvm::hv {

class PcIrqChip;

class Pit : public PioDevice {
 public:
  static constexpr uint64_t kHz = 1193182;
  // KVM's min_timer_period_us, for counter 0's periodic interrupts.
  static constexpr uint64_t kMinPeriodNs = 200000;

  explicit Pit(PcIrqChip& chip);
  void reset();

  // Counter 0's next interrupt in host TSC ticks (~0: none); lock-free for vCPU 0's loop.
  uint64_t deadline() const { return deadline_.load(std::memory_order_acquire); }
  // Raises IRQ0 if counter 0 expired by `now` and schedules the next period.
  void expire(uint64_t now);

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

 private:
  enum Access : uint8_t { kLatch = 0, kLsb = 1, kMsb = 2, kWord = 3, kWordMsb = 4 };
  struct Channel {
    uint32_t count = 0x10000;   // the loaded count (0 means 65536, or 10000 in BCD)
    uint64_t load_time = 0;     // host TSC at which counting started
    uint64_t held_ticks = 0;    // elapsed ticks frozen while the gate is low (modes 0, 2-4)
    uint16_t latched_count = 0;
    uint8_t count_latched = 0;  // Access still to read from the latch; 0: none
    bool status_latched = false;
    uint8_t status = 0;
    uint8_t read_state = kLsb;
    uint8_t write_state = kLsb;
    uint8_t write_latch = 0;
    uint8_t rw_mode = kLsb;
    uint8_t mode = 0;
    bool bcd = false;
    bool gate = false;
    bool null_count = true;     // a count is written but not loaded yet (status bit 6)
    bool counting = false;      // a count has been loaded since the last control word
  };
  uint64_t elapsed_ticks(const Channel& c, uint64_t now) const;
  uint32_t current_count(const Channel& c, uint64_t now) const;
  bool output(const Channel& c, uint64_t now) const;
  void load_count(unsigned channel, uint32_t value, uint64_t now);
  void latch_count(Channel& c, uint64_t now);
  void set_gate(Channel& c, bool gate, uint64_t now);
  void reschedule(uint64_t now);
  void set_deadline(uint64_t d);
  uint8_t read_counter(unsigned channel, uint64_t now);
  void write_counter(unsigned channel, uint8_t value, uint64_t now);
  void write_control(uint8_t value, uint64_t now);

  PcIrqChip& chip_;
  std::mutex mu_;
  std::array<Channel, 3> channels_{};
  bool speaker_data_on_ = false;
  uint64_t fired_periods_ = 0;  // counter 0 interrupts since its count was loaded
  std::atomic<uint64_t> deadline_{~0ull};
};

}  // namespace nestvm::hv
