// The 16550 through its ports: reset values, DLAB, transmit to a file descriptor, receive with
// and without FIFOs, every interrupt source and its acknowledgement, loopback with the modem
// status mapping and deltas, and host input read by the UART's thread with flow control.
#include "vmm/devices/uart16550.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

using namespace vmm::uart;
using std::chrono::milliseconds;

constexpr uint16_t kBase = kCom1;

class Uart16550Test : public DeviceTest {
 protected:
  Uart16550Test() {
    EXPECT_EQ(pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK), 0);
    EXPECT_EQ(pipe2(in_pipe, O_CLOEXEC), 0);
  }
  ~Uart16550Test() override {
    uart.reset();
    for (int fd : {out_pipe[0], out_pipe[1], in_pipe[0], in_pipe[1]}) close(fd);
  }
  vmm::Uart16550& make(bool with_input = false) {
    uart = std::make_unique<vmm::Uart16550>(vm, kBase, kCom1Irq, out_pipe[1], with_input ? in_pipe[0] : -1);
    return *uart;
  }
  uint8_t rd(unsigned reg) { return uint8_t(in(uint16_t(kBase + reg))); }
  void wr(unsigned reg, uint8_t v) { out(uint16_t(kBase + reg), v); }
  std::string output() {
    char buf[256];
    const ssize_t n = read(out_pipe[0], buf, sizeof buf);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
  }
  void receive(std::string_view s) {
    ASSERT_EQ(uart->receive(reinterpret_cast<const uint8_t*>(s.data()), s.size()), s.size());
  }

  int out_pipe[2] = {-1, -1};
  int in_pipe[2] = {-1, -1};
  std::unique_ptr<vmm::Uart16550> uart;
};

TEST_F(Uart16550Test, ResetValuesAsQemu) {
  make();
  EXPECT_EQ(rd(reg::kIER), 0);
  EXPECT_EQ(rd(reg::kIIR), iir::kNoInt);
  EXPECT_EQ(rd(reg::kLCR), 0);
  EXPECT_EQ(rd(reg::kMCR), mcr::kOUT2);
  EXPECT_EQ(rd(reg::kLSR), lsr::kTHRE | lsr::kTEMT);
  EXPECT_EQ(rd(reg::kMSR), msr::kDCD | msr::kDSR | msr::kCTS);
  wr(reg::kLCR, lcr::kDLAB);
  EXPECT_EQ(rd(reg::kDLL), 0x0c);  // 9600 baud
  EXPECT_EQ(rd(reg::kDLM), 0x00);
  EXPECT_FALSE(irq.level(kCom1Irq));
}

TEST_F(Uart16550Test, DivisorLatchHidesRbrAndIer) {
  make();
  wr(reg::kIER, 0x05);
  wr(reg::kLCR, 0x03 | lcr::kDLAB);
  wr(reg::kDLL, 0x34);
  wr(reg::kDLM, 0x12);
  EXPECT_EQ(rd(reg::kDLL), 0x34);
  EXPECT_EQ(rd(reg::kDLM), 0x12);
  wr(reg::kLCR, 0x03);
  EXPECT_EQ(rd(reg::kIER), 0x05);
  wr(reg::kIER, 0xff);
  EXPECT_EQ(rd(reg::kIER), 0x0f) << "IER bits 7:4 are always zero";
  wr(reg::kSCR, 0xa5);
  EXPECT_EQ(rd(reg::kSCR), 0xa5);
}

TEST_F(Uart16550Test, TransmittedBytesReachTheOutputDescriptor) {
  make();
  for (char c : std::string("hi!")) wr(reg::kTHR, uint8_t(c));
  EXPECT_EQ(output(), "hi!");
  EXPECT_EQ(rd(reg::kLSR) & (lsr::kTHRE | lsr::kTEMT), lsr::kTHRE | lsr::kTEMT);
  // A word write reaches THR and then IER, byte by byte as in QEMU.
  out(kBase, 0x0200 | 'x', 2);
  EXPECT_EQ(output(), "x");
  EXPECT_EQ(rd(reg::kIER), ier::kTHRI);
}

TEST_F(Uart16550Test, ThrEmptyInterruptIsAcknowledgedByIirAndRearmedByThr) {
  make();
  wr(reg::kIER, ier::kTHRI);
  EXPECT_TRUE(irq.level(kCom1Irq)) << "enabling THRI while THR is empty interrupts at once";
  EXPECT_EQ(rd(reg::kIIR), iir::kTHRI);
  EXPECT_FALSE(irq.level(kCom1Irq)) << "reading IIR acknowledges THR empty";
  EXPECT_EQ(rd(reg::kIIR), iir::kNoInt);
  const unsigned edges = irq.rising(kCom1Irq);
  wr(reg::kTHR, 'a');
  EXPECT_TRUE(irq.level(kCom1Irq));
  EXPECT_EQ(irq.rising(kCom1Irq), edges + 1) << "each transmitted byte is a new edge";
  wr(reg::kIER, 0);
  EXPECT_FALSE(irq.level(kCom1Irq));
  EXPECT_EQ(output(), "a");
}

TEST_F(Uart16550Test, ReceiveWithoutFifoHoldsOneByte) {
  auto& u = make();
  wr(reg::kIER, ier::kRDI);
  EXPECT_EQ(u.room(), 1u);
  receive("k");
  EXPECT_EQ(u.room(), 0u) << "the holding register is full";
  EXPECT_EQ(u.receive(reinterpret_cast<const uint8_t*>("z"), 1), 0u);
  EXPECT_TRUE(rd(reg::kLSR) & lsr::kDR);
  EXPECT_TRUE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kIIR), iir::kRDI);
  EXPECT_EQ(rd(reg::kRBR), 'k');
  EXPECT_FALSE(rd(reg::kLSR) & lsr::kDR);
  EXPECT_FALSE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kIIR), iir::kNoInt);
}

TEST_F(Uart16550Test, FifoInterruptsAtTheTriggerLevel) {
  auto& u = make();
  wr(reg::kFCR, fcr::kFE | 0x80);  // trigger level 8
  EXPECT_EQ(rd(reg::kIIR) & iir::kFE, iir::kFE);
  wr(reg::kIER, ier::kRDI);
  EXPECT_EQ(u.room(), 8u) << "below the trigger level the receiver offers what reaches it";
  receive("abcdefg");
  EXPECT_FALSE(irq.level(kCom1Irq)) << "7 bytes are below the trigger level";
  receive("h");
  EXPECT_TRUE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kIIR), iir::kFE | iir::kRDI);
  std::string got;
  while (rd(reg::kLSR) & lsr::kDR) got += char(rd(reg::kRBR));
  EXPECT_EQ(got, "abcdefgh");
  EXPECT_FALSE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kRBR), 0) << "an empty FIFO reads 0";
}

TEST_F(Uart16550Test, FifoBelowTriggerLevelRaisesCharacterTimeout) {
  make();
  wr(reg::kLCR, 0x03 | lcr::kDLAB);
  wr(reg::kDLL, 1);  // 115200 baud: four characters take ~350 us
  wr(reg::kLCR, 0x03);
  wr(reg::kFCR, fcr::kFE | 0xc0);  // trigger level 14
  wr(reg::kIER, ier::kRDI);
  receive("xyz");
  ASSERT_TRUE(irq.wait_level(kCom1Irq, true, milliseconds(2000))) << "no character timeout";
  EXPECT_EQ(rd(reg::kIIR), iir::kFE | iir::kCTI);
  EXPECT_EQ(rd(reg::kRBR), 'x');
  EXPECT_NE(rd(reg::kIIR) & iir::kID, iir::kCTI) << "reading RBR clears the timeout indication";
  EXPECT_EQ(rd(reg::kRBR), 'y');
  EXPECT_EQ(rd(reg::kRBR), 'z');
  EXPECT_EQ(rd(reg::kIIR), iir::kFE | iir::kNoInt);
}

TEST_F(Uart16550Test, FcrClearsTheReceiveFifo) {
  make();
  wr(reg::kFCR, fcr::kFE);
  receive("q");
  wr(reg::kFCR, fcr::kFE | fcr::kRFR);
  EXPECT_FALSE(rd(reg::kLSR) & lsr::kDR);
  receive("r");
  wr(reg::kFCR, 0);  // turning the FIFOs off clears them too
  EXPECT_FALSE(rd(reg::kLSR) & lsr::kDR);
  EXPECT_EQ(rd(reg::kIIR) & iir::kFE, 0);
}

TEST_F(Uart16550Test, LoopbackWiresOutputsToInputsAndSignalsModemStatus) {
  auto& u = make();
  wr(reg::kMCR, mcr::kLOOP);
  (void)rd(reg::kMSR);  // entering loopback changed the inputs: clear the deltas
  EXPECT_EQ(rd(reg::kMSR), 0);
  const std::pair<uint8_t, uint8_t> wiring[] = {
      {mcr::kDTR, msr::kDSR}, {mcr::kRTS, msr::kCTS}, {mcr::kOUT1, msr::kRI}, {mcr::kOUT2, msr::kDCD}};
  for (auto [out_bit, in_bit] : wiring) {
    wr(reg::kMCR, mcr::kLOOP | out_bit);
    EXPECT_EQ(rd(reg::kMSR) & 0xf0, in_bit);
    wr(reg::kMCR, mcr::kLOOP);
    (void)rd(reg::kMSR);
  }
  wr(reg::kIER, ier::kMSI);
  EXPECT_FALSE(irq.level(kCom1Irq));
  wr(reg::kMCR, mcr::kLOOP | mcr::kRTS);
  EXPECT_TRUE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kIIR), iir::kMSI);
  EXPECT_EQ(rd(reg::kMSR), msr::kCTS | msr::kDCTS);
  EXPECT_FALSE(irq.level(kCom1Irq)) << "reading MSR clears the deltas";
  wr(reg::kMCR, mcr::kLOOP | mcr::kOUT1);
  EXPECT_EQ(rd(reg::kMSR) & msr::kAnyDelta, msr::kDCTS) << "RI rising is no TERI";
  wr(reg::kMCR, mcr::kLOOP);
  EXPECT_EQ(rd(reg::kMSR) & msr::kAnyDelta, msr::kTERI) << "RI's trailing edge";
  wr(reg::kIER, 0);

  // Transmitted bytes come back and nothing reaches the host; the line is disconnected.
  EXPECT_EQ(u.room(), 0u);
  wr(reg::kFCR, fcr::kFE);
  for (char c : std::string("loop")) wr(reg::kTHR, uint8_t(c));
  std::string got;
  while (rd(reg::kLSR) & lsr::kDR) got += char(rd(reg::kRBR));
  EXPECT_EQ(got, "loop");
  EXPECT_EQ(output(), "");
}

TEST_F(Uart16550Test, OverrunRaisesLineStatusUntilLsrIsRead) {
  make();
  wr(reg::kMCR, mcr::kLOOP);
  wr(reg::kIER, ier::kRLSI);
  wr(reg::kTHR, '1');
  EXPECT_FALSE(irq.level(kCom1Irq));
  wr(reg::kTHR, '2');  // no FIFO: the second byte overruns the first
  EXPECT_TRUE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kIIR), iir::kRLSI);
  EXPECT_TRUE(rd(reg::kLSR) & lsr::kOE);
  EXPECT_FALSE(rd(reg::kLSR) & lsr::kOE) << "reading LSR clears OE";
  EXPECT_FALSE(irq.level(kCom1Irq));
  EXPECT_EQ(rd(reg::kRBR), '2');
}

TEST_F(Uart16550Test, HostInputArrivesInOrderWithoutLoss) {
  make(true);
  wr(reg::kFCR, fcr::kFE | 0xc0);
  std::string sent;
  for (int i = 0; i < 100; ++i) sent += char('A' + i % 26);
  ASSERT_EQ(write(in_pipe[1], sent.data(), sent.size()), ssize_t(sent.size()));
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
    if (rd(reg::kLSR) & lsr::kOE) FAIL() << "input overran the FIFO";
    if (rd(reg::kLSR) & lsr::kDR) got += char(rd(reg::kRBR));
    else std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_EQ(got, sent);
}

TEST_F(Uart16550Test, InputRaisesTheInterruptFromTheReaderThread) {
  make(true);
  wr(reg::kIER, ier::kRDI);
  ASSERT_EQ(write(in_pipe[1], "!", 1), 1);
  ASSERT_TRUE(irq.wait_level(kCom1Irq, true, milliseconds(2000)));
  EXPECT_EQ(rd(reg::kRBR), '!');
  EXPECT_FALSE(irq.level(kCom1Irq));
}

TEST(Uart16550NoIrqChip, WorksWithoutAnInterruptController) {
  hv::Vm vm(small_vm_config());
  vmm::Uart16550 u(vm, kBase, kCom1Irq, -1, -1);
  vm.io().pio_write(kBase + reg::kIER, 1, ier::kTHRI);
  EXPECT_TRUE(u.irq_level());
  EXPECT_EQ(vm.io().pio_read(kBase + reg::kIIR, 1), iir::kTHRI);
}

}  // namespace
}  // namespace nestvm::test
