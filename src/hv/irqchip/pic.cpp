#include "hv/irqchip/pic.h"

#include "hv/irqchip/pc_irqchip.h"

namespace nestvm::hv {

namespace {
constexpr uint16_t kMasterCommand = 0x20;
constexpr uint16_t kSlaveCommand = 0xa0;
constexpr uint16_t kElcrMaster = 0x4d0;
constexpr uint16_t kElcrSlave = 0x4d1;
constexpr unsigned kCascadeIrq = 2;
}  // namespace

Pic::Pic(PcIrqChip& chip) : chip_(chip) { reset(); }

// Power-on: nothing programmed, every IRQ edge-triggered. The ELCR can make IRQ0-2 (timer,
// keyboard, cascade) and IRQ8/13 (RTC, FPU) nothing but edge-triggered (PIIX ELCR1/ELCR2).
void Pic::reset() {
  std::lock_guard lock(mu_);
  pics_[0] = Chip{};
  pics_[1] = Chip{};
  pics_[0].elcr_mask = 0xf8;
  pics_[1].elcr_mask = 0xde;
  intr_.store(false);
}

// An input line (KVM's pic_set_irq1): a level-triggered request follows the line; an
// edge-triggered one latches on a rising edge and stays until acknowledged.
bool Pic::set_line(Chip& c, unsigned irq, bool level) {
  const uint8_t mask = uint8_t(1u << irq);
  const bool had = c.irr & mask;
  if (c.elcr & mask) {
    if (level) c.irr |= mask, c.last_irr |= mask;
    else c.irr &= uint8_t(~mask), c.last_irr &= uint8_t(~mask);
  } else if (level) {
    if (!(c.last_irr & mask)) c.irr |= mask;
    c.last_irr |= mask;
  } else {
    c.last_irr &= uint8_t(~mask);
  }
  return !had && (c.irr & mask);
}

// Fully nested priority with rotation: 0 is the highest, relative to priority_add; 8 is none.
int Pic::priority(const Chip& c, uint8_t mask) {
  if (!mask) return 8;
  int p = 0;
  while (!(mask & (1u << ((p + c.priority_add) & 7)))) ++p;
  return p;
}

// The IRQ this 8259 would raise INT for: the highest unmasked request above everything in
// service. Special mask mode lets masked in-service levels not block (8259A datasheet, OCW3);
// in special fully nested mode the master lets the slave interrupt its own in-service IRQ2.
int Pic::highest_request(unsigned index) const {
  const Chip& c = pics_[index];
  const int p = priority(c, uint8_t(c.irr & ~c.imr));
  if (p == 8) return -1;
  uint8_t in_service = c.isr;
  if (c.special_mask) in_service &= uint8_t(~c.imr);
  if (index == 0 && c.special_fully_nested) in_service &= uint8_t(~(1u << kCascadeIrq));
  return p < priority(c, in_service) ? (p + c.priority_add) & 7 : -1;
}

void Pic::intack(Chip& c, unsigned irq) {
  const uint8_t mask = uint8_t(1u << irq);
  c.isr |= mask;
  // A level-triggered request stays while its line is high.
  if (!(c.elcr & mask)) c.irr &= uint8_t(~mask);
  if (c.auto_eoi) {
    if (c.rotate_on_auto_eoi) c.priority_add = uint8_t((irq + 1) & 7);
    c.isr &= uint8_t(~mask);
  }
}

// The slave's INT is the master's IRQ2 input, edge-triggered; the master's INT is INTR.
bool Pic::update() {
  if (highest_request(1) >= 0) {
    set_line(pics_[0], kCascadeIrq, true);
    set_line(pics_[0], kCascadeIrq, false);
  }
  const bool out = highest_request(0) >= 0;
  const bool was = intr_.exchange(out, std::memory_order_acq_rel);
  return out && !was;
}

void Pic::raised(bool rose) {
  if (rose) chip_.pic_intr_raised();
}

void Pic::set_irq(unsigned irq, bool level) {
  if (irq >= 16 || irq == kCascadeIrq) return;
  bool rose;
  {
    std::lock_guard lock(mu_);
    set_line(pics_[irq >> 3], irq & 7, level);
    rose = update();
  }
  raised(rose);
}

// The INTA cycle (KVM's kvm_pic_read_irq). With no request left the 8259 answers IRQ7 without
// setting it in service (a spurious interrupt); the slave does the same with its IRQ7 (IRQ15).
int Pic::acknowledge() {
  int vector;
  bool rose;
  {
    std::lock_guard lock(mu_);
    const int irq = highest_request(0);
    if (irq < 0) {
      vector = pics_[0].irq_base | 7;
    } else {
      intack(pics_[0], unsigned(irq));
      if (irq == int(kCascadeIrq)) {
        const int irq2 = highest_request(1);
        if (irq2 >= 0) intack(pics_[1], unsigned(irq2));
        vector = pics_[1].irq_base | (irq2 >= 0 ? irq2 : 7);
      } else {
        vector = pics_[0].irq_base | irq;
      }
    }
    rose = update();
  }
  raised(rose);
  return vector;
}

// ICW1 (8259A datasheet, "Initialization Command Words"): the edge-sense circuit is reset, the
// IMR cleared, IRQ7 gets the lowest priority, special mask mode is cleared, reads give the IRR
// and, without IC4, ICW4's functions are cleared.
void Pic::init_reset(Chip& c) {
  const uint8_t elcr = c.elcr, elcr_mask = c.elcr_mask, irr = c.irr;
  c = Chip{};
  c.elcr = elcr;
  c.elcr_mask = elcr_mask;
  c.irr = irr & elcr;  // level-triggered requests are still asserted
}

void Pic::write_command(Chip& c, uint8_t v) {
  if (v & 0x10) {  // ICW1; LTIM (bit 3) yields to the ELCR on a PC
    init_reset(c);
    c.init4 = v & 0x01;
    c.single = v & 0x02;
    c.init_state = 1;
  } else if (v & 0x08) {  // OCW3
    if (v & 0x04) c.poll = true;
    if (v & 0x02) c.read_isr = v & 0x01;
    if (v & 0x40) c.special_mask = v & 0x20;
  } else {  // OCW2: R, SL, EOI in bits 7:5, the level in 2:0
    const unsigned cmd = v >> 5, level = v & 7;
    switch (cmd) {
      case 0:  // rotate in automatic EOI mode: clear / set
      case 4: c.rotate_on_auto_eoi = cmd == 4; break;
      case 1:  // non-specific EOI: the highest level in service; 5: and rotate
      case 5: {
        const int p = priority(c, c.isr);
        if (p == 8) break;
        const unsigned irq = (unsigned(p) + c.priority_add) & 7;
        if (cmd == 5) c.priority_add = uint8_t((irq + 1) & 7);
        c.isr &= uint8_t(~(1u << irq));
        break;
      }
      case 3: c.isr &= uint8_t(~(1u << level)); break;         // specific EOI
      case 6: c.priority_add = uint8_t((level + 1) & 7); break;  // set priority: `level` lowest
      case 7:                                                   // rotate on specific EOI
        c.priority_add = uint8_t((level + 1) & 7);
        c.isr &= uint8_t(~(1u << level));
        break;
      default: break;  // 2: no operation
    }
  }
}

void Pic::write_data(Chip& c, uint8_t v) {
  switch (c.init_state) {
    case 0: c.imr = v; break;  // OCW1
    case 1:                    // ICW2: the vector base; ICW3 follows unless single
      c.irq_base = v & 0xf8;
      c.init_state = c.single ? (c.init4 ? 3 : 0) : 2;
      break;
    case 2: c.init_state = c.init4 ? 3 : 0; break;  // ICW3: the PC's cascade is fixed wiring
    default:                                        // ICW4: SFNM (bit 4), AEOI (bit 1)
      c.special_fully_nested = v & 0x10;
      c.auto_eoi = v & 0x02;
      c.init_state = 0;
      break;
  }
}

// Poll (OCW3 P): the read is an interrupt acknowledge of this 8259, answering 0x80 | level, or
// 0 with no request.
uint8_t Pic::poll_read(unsigned index) {
  const int irq = highest_request(index);
  if (irq < 0) return 0;
  intack(pics_[index], unsigned(irq));
  return uint8_t(0x80 | irq);
}

uint32_t Pic::pio_read(uint16_t port, unsigned size) {
  uint32_t value = 0;
  bool rose = false;
  {
    std::lock_guard lock(mu_);
    for (unsigned i = 0; i < size; ++i) {
      const uint16_t p = uint16_t(port + i);
      uint8_t b = 0xff;
      if (p == kMasterCommand || p == kMasterCommand + 1 || p == kSlaveCommand || p == kSlaveCommand + 1) {
        const unsigned index = p >= kSlaveCommand ? 1 : 0;
        Chip& c = pics_[index];
        if (c.poll) {
          c.poll = false;
          b = poll_read(index);
          rose |= update();
        } else {
          b = (p & 1) ? c.imr : c.read_isr ? c.isr : c.irr;
        }
      } else if (p == kElcrMaster || p == kElcrSlave) {
        b = pics_[p & 1].elcr;
      }
      value |= uint32_t(b) << (8 * i);
    }
  }
  raised(rose);
  return value;
}

void Pic::pio_write(uint16_t port, unsigned size, uint32_t value) {
  bool rose = false;
  {
    std::lock_guard lock(mu_);
    for (unsigned i = 0; i < size; ++i) {
      const uint16_t p = uint16_t(port + i);
      const uint8_t b = uint8_t(value >> (8 * i));
      if (p == kMasterCommand || p == kSlaveCommand) write_command(pics_[p == kSlaveCommand], b);
      else if (p == kMasterCommand + 1 || p == kSlaveCommand + 1) write_data(pics_[p == kSlaveCommand + 1], b);
      else if (p == kElcrMaster || p == kElcrSlave) pics_[p & 1].elcr = b & pics_[p & 1].elcr_mask;
      else continue;
      rose |= update();
    }
  }
  raised(rose);
}

}  // namespace nestvm::hv
