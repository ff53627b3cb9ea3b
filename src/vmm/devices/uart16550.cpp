#include "vmm/devices/uart16550.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "hv/vm.h"

namespace nestvm::vmm {

using namespace uart;

namespace {
uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}
}  // namespace

Uart16550::Uart16550(hv::Vm& vm, uint16_t base, unsigned irq, int out_fd, int in_fd)
    : vm_(vm), base_(base), irq_(irq), out_fd_(out_fd), in_fd_(in_fd), log_("serial") {
  vm.io().add_pio(base, 8, this, "serial");
  // The thread delivers input and the FIFO's character timeout, which needs a clock even
  // without input (loopback).
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    log_.log("cannot create an eventfd ({}): no input and no character timeout", std::strerror(errno));
    return;
  }
  reader_ = std::thread([this] { reader_loop(); });
}

Uart16550::~Uart16550() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }
  if (reader_.joinable()) reader_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

// QEMU's serial_io_ops implement byte accesses only: a wider access reads or writes
// consecutive registers.
uint32_t Uart16550::pio_read(uint16_t port, unsigned size) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  for (unsigned i = 0; i < size; ++i) {
    const unsigned reg = unsigned(uint16_t(port - base_)) + i;
    v |= uint32_t(reg < 8 ? read_reg(reg) : 0xff) << (8 * i);
  }
  return v;
}

void Uart16550::pio_write(uint16_t port, unsigned size, uint32_t value) {
  std::lock_guard lock(mu_);
  for (unsigned i = 0; i < size; ++i) {
    const unsigned reg = unsigned(uint16_t(port - base_)) + i;
    if (reg < 8) write_reg(reg, uint8_t(value >> (8 * i)));
  }
}

uint8_t Uart16550::read_reg(unsigned r) {
  switch (r) {
    case reg::kRBR: {
      if (lcr_ & lcr::kDLAB) return uint8_t(divider_);
      uint8_t v;
      if (fcr_ & fcr::kFE) {
        v = 0;
        if (rx_count_) {
          v = rx_[rx_head_];
          rx_head_ = (rx_head_ + 1) % kFifoSize;
          --rx_count_;
        }
        if (rx_count_ == 0) lsr_ &= uint8_t(~(lsr::kDR | lsr::kBI));
        else arm_timeout();
        timeout_ipending_ = false;
      } else {
        v = rbr_;
        lsr_ &= uint8_t(~(lsr::kDR | lsr::kBI));
      }
      update_irq();
      wake_reader();
      return v;
    }
    case reg::kIER:
      return (lcr_ & lcr::kDLAB) ? uint8_t(divider_ >> 8) : ier_;
    case reg::kIIR: {
      const uint8_t v = iir_;
      // Reading IIR while it reports THR empty acknowledges that source (data sheet, Table 4).
      if ((v & iir::kID) == iir::kTHRI) {
        thr_ipending_ = false;
        update_irq();
      }
      return v;
    }
    case reg::kLCR:
      return lcr_;
    case reg::kMCR:
      return mcr_;
    case reg::kLSR: {
      const uint8_t v = lsr_;
      // Overrun and break indications clear when LSR is read.
      if (lsr_ & (lsr::kBI | lsr::kOE)) {
        lsr_ &= uint8_t(~(lsr::kBI | lsr::kOE));
        update_irq();
      }
      return v;
    }
    case reg::kMSR: {
      const uint8_t v = msr_;
      if (msr_ & msr::kAnyDelta) {
        msr_ &= 0xf0;
        update_irq();
      }
      return v;
    }
    default:
      return scr_;
  }
}

void Uart16550::write_reg(unsigned r, uint8_t v) {
  switch (r) {
    case reg::kTHR:
      if (lcr_ & lcr::kDLAB) {
        divider_ = uint16_t((divider_ & 0xff00) | v);
        update_parameters();
        return;
      }
      thr_ipending_ = false;
      lsr_ &= uint8_t(~(lsr::kTHRE | lsr::kTEMT));
      update_irq();
      transmit(v);
      return;
    case reg::kIER: {
      if (lcr_ & lcr::kDLAB) {
        divider_ = uint16_t((divider_ & 0x00ff) | (v << 8));
        update_parameters();
        return;
      }
      const uint8_t changed = (ier_ ^ v) & 0x0f;
      ier_ = v & 0x0f;
      // Enabling THRI while THR is empty raises the interrupt again, even after an IIR read
      // acknowledged it (not in the data sheet; Windows relies on it, QEMU and Bochs do it).
      if (changed & ier::kTHRI) thr_ipending_ = (ier_ & ier::kTHRI) && (lsr_ & lsr::kTHRE);
      if (changed) update_irq();
      return;
    }
    case reg::kFCR:
      write_fcr(v);
      return;
    case reg::kLCR:
      lcr_ = v;
      update_parameters();
      return;
    case reg::kMCR:
      write_mcr(v);
      return;
    case reg::kLSR:
    case reg::kMSR:
      return;  // read-only (factory test writes are not modelled, as in QEMU)
    default:
      scr_ = v;
      return;
  }
}

void Uart16550::write_fcr(uint8_t v) {
  // Turning the FIFOs on or off clears both of them.
  if ((v ^ fcr_) & fcr::kFE) v |= fcr::kXFR | fcr::kRFR;
  if (v & fcr::kRFR) {
    lsr_ &= uint8_t(~(lsr::kDR | lsr::kBI));
    timeout_deadline_ns_ = 0;
    timeout_ipending_ = false;
    rx_head_ = rx_count_ = 0;
  }
  if (v & fcr::kXFR) {
    lsr_ |= lsr::kTHRE;
    thr_ipending_ = true;
  }
  fcr_ = v & (fcr::kFE | fcr::kDMS | fcr::kITL);
  static constexpr unsigned kTrigger[4] = {1, 4, 8, 14};
  rx_trigger_ = kTrigger[fcr_ >> 6];
  update_irq();
  wake_reader();
}

// The modem status inputs: in loopback the outputs are wired back (DTR->DSR, RTS->CTS,
// OUT1->RI, OUT2->DCD); otherwise the line is a null modem with the peer always ready, as
// QEMU's stdio backend reports.
uint8_t Uart16550::modem_inputs() const {
  if (!(mcr_ & mcr::kLOOP)) return msr::kDCD | msr::kDSR | msr::kCTS;
  return uint8_t(((mcr_ & 0x0c) << 4) | ((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5));
}

void Uart16550::write_mcr(uint8_t v) {
  const uint8_t before = modem_inputs();
  const bool was_loop = mcr_ & mcr::kLOOP;
  mcr_ = v & 0x1f;
  const uint8_t after = modem_inputs();
  // Delta bits as the data sheet defines them (also in loopback, where the modem status
  // interrupt is "fully operational"); TERI is RI's trailing edge.
  const uint8_t changed = before ^ after;
  uint8_t delta = 0;
  if (changed & msr::kCTS) delta |= msr::kDCTS;
  if (changed & msr::kDSR) delta |= msr::kDDSR;
  if (changed & msr::kDCD) delta |= msr::kDDCD;
  if ((before & msr::kRI) && !(after & msr::kRI)) delta |= msr::kTERI;
  msr_ = uint8_t(after | (msr_ & msr::kAnyDelta) | delta);
  if (delta) update_irq();
  if (was_loop != bool(mcr_ & mcr::kLOOP)) wake_reader();
}

// serial_update_irq: one source at a time, in the data sheet's priority order.
void Uart16550::update_irq() {
  uint8_t id = iir::kNoInt;
  if ((ier_ & ier::kRLSI) && (lsr_ & lsr::kIntAny)) {
    id = iir::kRLSI;
  } else if ((ier_ & ier::kRDI) && timeout_ipending_) {
    id = iir::kCTI;
  } else if ((ier_ & ier::kRDI) && (lsr_ & lsr::kDR) && (!(fcr_ & fcr::kFE) || rx_count_ >= rx_trigger_)) {
    id = iir::kRDI;
  } else if ((ier_ & ier::kTHRI) && thr_ipending_) {
    id = iir::kTHRI;
  } else if ((ier_ & ier::kMSI) && (msr_ & msr::kAnyDelta)) {
    id = iir::kMSI;
  }
  iir_ = uint8_t(id | ((fcr_ & fcr::kFE) ? iir::kFE : 0));
  const bool level = id != iir::kNoInt;
  if (level == irq_level_) return;
  irq_level_ = level;
  // Lock order: device, then irqchip (the irqchip never calls back into devices).
  if (hv::IrqChip* chip = vm_.irqchip()) chip->set_irq(irq_, level);
}

void Uart16550::update_parameters() {
  if (divider_ == 0) return;
  const unsigned frame = 1 + ((lcr_ & lcr::kPEN) ? 1 : 0) + (lcr_ & lcr::kWLS) + 5 + ((lcr_ & lcr::kSTB) ? 2 : 1);
  char_time_ns_ = 1000000000ull * divider_ / kBaudBase * frame;
}

void Uart16550::transmit(uint8_t byte) {
  // The shift register empties at once: THR is free again before the byte is on the wire.
  lsr_ |= lsr::kTHRE;
  if (!thr_ipending_) {
    thr_ipending_ = true;
    update_irq();
  }
  if (mcr_ & mcr::kLOOP) receive_byte(byte);
  else write_out(byte);
  lsr_ |= lsr::kTEMT;
}

void Uart16550::write_out(uint8_t byte) {
  if (out_fd_ < 0) return;
  for (;;) {
    const ssize_t n = write(out_fd_, &byte, 1);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{out_fd_, POLLOUT, 0};
      poll(&p, 1, -1);
      continue;
    }
    log_.log("output to fd {} failed: {}", out_fd_, n < 0 ? std::strerror(errno) : "short write");
    return;
  }
}

// serial_receive1 for one byte.
void Uart16550::receive_byte(uint8_t byte) {
  if (fcr_ & fcr::kFE) {
    // Receive overruns do not overwrite FIFO contents.
    if (rx_count_ < kFifoSize) {
      rx_[(rx_head_ + rx_count_) % kFifoSize] = byte;
      ++rx_count_;
    } else {
      lsr_ |= lsr::kOE;
    }
    lsr_ |= lsr::kDR;
    arm_timeout();
  } else {
    if (lsr_ & lsr::kDR) lsr_ |= lsr::kOE;
    rbr_ = byte;
    lsr_ |= lsr::kDR;
  }
  update_irq();
}

// serial_can_receive: below the trigger level, offer what fills the FIFO up to it (offering
// more would fill it before the guest can react, overriding the trigger level); above, one.
size_t Uart16550::room_locked() const {
  if (mcr_ & mcr::kLOOP) return 0;
  if (!(fcr_ & fcr::kFE)) return (lsr_ & lsr::kDR) ? 0 : 1;
  if (rx_count_ >= kFifoSize) return 0;
  return rx_count_ <= rx_trigger_ ? std::max<size_t>(rx_trigger_ - rx_count_, 1) : 1;
}

size_t Uart16550::room() {
  std::lock_guard lock(mu_);
  return room_locked();
}

bool Uart16550::irq_level() {
  std::lock_guard lock(mu_);
  return irq_level_;
}

size_t Uart16550::receive(const uint8_t* data, size_t len) {
  std::lock_guard lock(mu_);
  size_t taken = 0;
  while (taken < len && room_locked() > 0) receive_byte(data[taken++]);
  return taken;
}

// The character timeout fires four character times after the last byte moved in or out of
// the receive FIFO while it holds data below the trigger level.
void Uart16550::arm_timeout() {
  timeout_deadline_ns_ = now_ns() + 4 * char_time_ns_;
  wake_reader();
}

void Uart16550::wake_reader() {
  if (wake_fd_ < 0) return;
  bool poke = false;
  if (reader_blocked_ && room_locked() > 0) {
    reader_blocked_ = false;
    poke = true;
  }
  if (timeout_deadline_ns_ && (reader_deadline_ns_ == 0 || timeout_deadline_ns_ < reader_deadline_ns_)) {
    reader_deadline_ns_ = timeout_deadline_ns_;
    poke = true;
  }
  if (poke) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }
}

void Uart16550::reader_loop() {
  uint8_t pending[kFifoSize];
  size_t pending_len = 0, pending_off = 0;
  for (;;) {
    bool poll_input;
    timespec ts{};
    bool has_deadline;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      const uint64_t now = now_ns();
      if (timeout_deadline_ns_ && now >= timeout_deadline_ns_) {
        timeout_deadline_ns_ = 0;
        if (rx_count_) {
          timeout_ipending_ = true;
          update_irq();
        }
      }
      while (pending_off < pending_len && room_locked() > 0) receive_byte(pending[pending_off++]);
      const bool input_open = in_fd_ >= 0 && !input_closed_;
      const bool room = room_locked() > 0;
      poll_input = input_open && room && pending_off == pending_len;
      reader_blocked_ = input_open && !room;
      reader_deadline_ns_ = timeout_deadline_ns_;
      has_deadline = timeout_deadline_ns_ != 0;
      if (has_deadline) {
        const uint64_t d = timeout_deadline_ns_ - now;
        ts.tv_sec = time_t(d / 1000000000u);
        ts.tv_nsec = long(d % 1000000000u);
      }
    }
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {in_fd_, POLLIN, 0}};
    const int n = ppoll(fds, poll_input ? 2 : 1, has_deadline ? &ts : nullptr, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_.log("waiting for input failed: {}", std::strerror(errno));
      std::lock_guard lock(mu_);
      input_closed_ = true;
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof v);
    }
    if (!poll_input || !(fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
    const ssize_t got = read(in_fd_, pending, sizeof pending);
    if (got > 0) {
      pending_len = size_t(got);
      pending_off = 0;
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      if (got < 0) log_.log("input from fd {} failed: {}", in_fd_, std::strerror(errno));
      std::lock_guard lock(mu_);
      input_closed_ = true;
    }
  }
}

}  // namespace nestvm::vmm
