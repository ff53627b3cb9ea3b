// A 16550A UART, as QEMU's hw/char/serial.c: the full register set (RBR/THR, IER, IIR/FCR with
// 16-byte FIFOs and trigger levels, LCR with DLAB, MCR with loopback, LSR, MSR, SCR) and its
// interrupts (line status, received data and character timeout, THR empty, modem status) on
// one ISA IRQ. Transmitted bytes go to a host file descriptor at once (the transmitter is never
// busy); received bytes come from another, read by a thread of the UART's own that honours the
// receiver's room, so host input is never dropped.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

#include "hv/io_bus.h"
#include "vmm/devices/rate_limited_log.h"

namespace nestvm::hv {
class Vm;
}

namespace nestvm::vmm {

// Register bits, with the names of the 16550 data sheet (and Linux's serial_reg.h).
namespace uart {
inline constexpr uint16_t kCom1 = 0x3f8;
inline constexpr unsigned kCom1Irq = 4;
inline constexpr unsigned kFifoSize = 16;
inline constexpr uint32_t kBaudBase = 115200;  // 1.8432 MHz / 16
namespace reg {
inline constexpr unsigned kRBR = 0, kTHR = 0, kDLL = 0, kIER = 1, kDLM = 1, kIIR = 2, kFCR = 2, kLCR = 3,
                          kMCR = 4, kLSR = 5, kMSR = 6, kSCR = 7;
}
namespace ier {
inline constexpr uint8_t kRDI = 0x01, kTHRI = 0x02, kRLSI = 0x04, kMSI = 0x08;
}
namespace iir {
inline constexpr uint8_t kNoInt = 0x01, kMSI = 0x00, kTHRI = 0x02, kRDI = 0x04, kRLSI = 0x06, kCTI = 0x0c,
                         kID = 0x0e, kFE = 0xc0;
}
namespace fcr {
inline constexpr uint8_t kFE = 0x01, kRFR = 0x02, kXFR = 0x04, kDMS = 0x08, kITL = 0xc0;
}
namespace lcr {
inline constexpr uint8_t kWLS = 0x03, kSTB = 0x04, kPEN = 0x08, kSBC = 0x40, kDLAB = 0x80;
}
namespace mcr {
inline constexpr uint8_t kDTR = 0x01, kRTS = 0x02, kOUT1 = 0x04, kOUT2 = 0x08, kLOOP = 0x10;
}
namespace lsr {
inline constexpr uint8_t kDR = 0x01, kOE = 0x02, kPE = 0x04, kFE = 0x08, kBI = 0x10, kTHRE = 0x20, kTEMT = 0x40,
                         kIntAny = 0x1e;
}
namespace msr {
inline constexpr uint8_t kDCTS = 0x01, kDDSR = 0x02, kTERI = 0x04, kDDCD = 0x08, kCTS = 0x10, kDSR = 0x20,
                         kRI = 0x40, kDCD = 0x80, kAnyDelta = 0x0f;
}
}  // namespace uart

class Uart16550 : public hv::PioDevice {
 public:
  // out_fd < 0 discards output; in_fd < 0 means no input. The UART does not own the descriptors.
  Uart16550(hv::Vm& vm, uint16_t base, unsigned irq, int out_fd, int in_fd);
  ~Uart16550() override;
  Uart16550(const Uart16550&) = delete;
  Uart16550& operator=(const Uart16550&) = delete;

  uint32_t pio_read(uint16_t port, unsigned size) override;
  void pio_write(uint16_t port, unsigned size, uint32_t value) override;

  // Bytes arriving on the serial line (the reader thread, tests). Takes at most room() bytes
  // and returns how many it took; none while in loopback, where the line is disconnected.
  size_t receive(const uint8_t* data, size_t len);
  // How many bytes the receiver takes now (QEMU's serial_can_receive).
  size_t room();
  // The level of the interrupt line.
  bool irq_level();

 private:
  uint8_t read_reg(unsigned reg);
  void write_reg(unsigned reg, uint8_t value);
  void update_irq();  // serial_update_irq: IIR and the line from the pending sources
  void update_parameters();
  void transmit(uint8_t byte);
  void receive_byte(uint8_t byte);
  size_t room_locked() const;
  uint8_t modem_inputs() const;
  void write_mcr(uint8_t value);
  void write_fcr(uint8_t value);
  void arm_timeout();
  void wake_reader();
  void reader_loop();
  void write_out(uint8_t byte);

  hv::Vm& vm_;
  uint16_t base_;
  unsigned irq_;
  int out_fd_;
  int in_fd_;

  std::mutex mu_;
  uint8_t rbr_ = 0, ier_ = 0, iir_ = uart::iir::kNoInt, fcr_ = 0, lcr_ = 0, mcr_ = uart::mcr::kOUT2;
  uint8_t lsr_ = uart::lsr::kTHRE | uart::lsr::kTEMT, msr_ = uart::msr::kDCD | uart::msr::kDSR | uart::msr::kCTS;
  uint8_t scr_ = 0;
  uint16_t divider_ = 0x0c;  // 9600 baud
  bool thr_ipending_ = false;
  bool timeout_ipending_ = false;
  bool irq_level_ = false;
  std::array<uint8_t, uart::kFifoSize> rx_{};
  unsigned rx_head_ = 0, rx_count_ = 0;
  unsigned rx_trigger_ = 1;
  uint64_t char_time_ns_ = 1000000000ull / 9600 * 10;
  uint64_t timeout_deadline_ns_ = 0;  // character timeout; 0 = not armed

  // The reader thread sleeps on in_fd_ and wake_fd_ (an eventfd) until its deadline.
  int wake_fd_ = -1;
  bool stop_ = false;
  bool reader_blocked_ = false;         // waiting for room, not for input
  uint64_t reader_deadline_ns_ = 0;     // when the thread wakes by itself (0 = never)
  bool input_closed_ = false;
  std::thread reader_;
  RateLimitedLog log_;
};

}  // namespace nestvm::vmm
