// isa-debug-exit: the write's value becomes exit status (v << 1) | 1 for the write's width.
#include "vmm/devices/debug_exit.h"

#include "unit/vmm/devices/device_test.h"

namespace nestvm::test {
namespace {

class DebugExitTest : public DeviceTest {};

TEST_F(DebugExitTest, ByteWriteStopsTheVmWithQemusStatus) {
  vmm::DebugExit dev(vm, 0xf4, 4);
  EXPECT_EQ(in(0xf4), 0u) << "reads return 0";
  EXPECT_FALSE(vm.stopping());
  out(0xf4, 0x21);
  EXPECT_TRUE(vm.stopping());
  EXPECT_EQ(vm.stop_reason(), hv::StopReason::kDebugExit);
  EXPECT_EQ(vm.exit_code(), 0x43);
}

TEST_F(DebugExitTest, WiderWritesUseTheirWholeValue) {
  vmm::DebugExit dev(vm, 0xf4, 4);
  out(0xf4, 0x1234, 2);
  EXPECT_EQ(vm.exit_code(), 0x2469);
}

TEST_F(DebugExitTest, EveryPortOfTheRangeExitsAndNoOtherDoes) {
  vmm::DebugExit dev(vm);  // QEMU's default iobase 0x501, iosize 2
  out(0x500, 7);
  out(0x503, 7);
  EXPECT_FALSE(vm.stopping());
  out(0x502, 0);
  EXPECT_EQ(vm.stop_reason(), hv::StopReason::kDebugExit);
  EXPECT_EQ(vm.exit_code(), 1) << "value 0 exits with status 1, never 0";
}

TEST(DebugExitStatus, MatchesQemu) {
  EXPECT_EQ(vmm::DebugExit::exit_status(0), 1);
  EXPECT_EQ(vmm::DebugExit::exit_status(1), 3);
  EXPECT_EQ(vmm::DebugExit::exit_status(0x7f), 0xff);
  EXPECT_EQ(vmm::DebugExit::exit_status(0x80000000u), 1) << "the shift drops bit 31 as QEMU's int exit code";
}

}  // namespace
}  // namespace nestvm::test
