// The 8259A programmable interrupt controller pair of a PC, as KVM's struct kvm_pic
// (arch/x86/kvm/i8259.c): master at 0x20/0x21 (IRQ0-7), slave at 0xa0/0xa1 (IRQ8-15) cascaded
// on the master's IRQ2, edge/level per IRQ through the ELCR at 0x4d0/0x4d1 (PIIX/ICH), the
// ICW1-ICW4 initialization sequence, OCW1 (IMR), OCW2 (EOI, specific EOI, rotation) and OCW3
// (IRR/ISR read, poll, special mask), fully nested priority with rotation, auto-EOI, and the
// INTA cycle with spurious IRQ7/IRQ15. Special fully nested mode and buffered mode, which
// only matter to multi-level cascades, are accepted and have no effect.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "hv/io_bus.h"

namespace nestvm::hv {

class PcIrqChip;

class Pic : public PioDevice {
 public:
  explicit Pic(PcIrqChip& chip);
  void reset();

  // A device's line into IRQ `irq` (0-15).
  void set_irq(unsigned irq, bool level);
  // The INTR output to the processors' LINT0 (lock-free: the vCPU loop polls it).
  bool intr() const { return intr_.load(std::memory_order_acquire); }
  // The INTA cycle: the vector of the highest-priority request, marked in service (a spurious
  // IRQ7 of the master, or IRQ15 of the slave, if the request went away).
  int acknowledge();

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

 private:
  // One 8259A (KVM's struct kvm_kpic_state).
  struct Chip {
    uint8_t last_irr = 0;  // input levels as last seen (edge detection)
    uint8_t irr = 0;
    uint8_t imr = 0;
    uint8_t isr = 0;
    uint8_t priority_add = 0;  // the IRQ with the highest priority (rotation)
    uint8_t irq_base = 0;      // ICW2
    uint8_t elcr = 0;
    uint8_t elcr_mask = 0;
    uint8_t init_state = 0;  // 0: operational; 1-3: expecting ICW2-ICW4
    bool read_isr = false;   // OCW3 RR/RIS
    bool poll = false;
    bool special_mask = false;
    bool init4 = false;  // ICW1 IC4: ICW4 follows
    bool single = false;  // ICW1 SNGL: no ICW3
    bool auto_eoi = false;
    bool rotate_on_auto_eoi = false;
    bool special_fully_nested = false;
  };
  static bool set_line(Chip& c, unsigned irq, bool level);
  static int priority(const Chip& c, uint8_t mask);
  int highest_request(unsigned index) const;
  static void intack(Chip& c, unsigned irq);
  void init_reset(Chip& c);
  void write_command(Chip& c, uint8_t value);
  void write_data(Chip& c, uint8_t value);
  uint8_t poll_read(unsigned chip);
  // Recomputes the cascade and INTR; true if INTR rose. Called locked.
  bool update();
  void raised(bool rose);

  PcIrqChip& chip_;
  std::mutex mu_;
  std::array<Chip, 2> pics_{};
  std::atomic<bool> intr_{false};
};

}  // namespace nestvm::hv
