// --stats and --stats-json per level: L1's exits, L2's exits handled by L0 and reflected to L1,
// the entries to L2; from a real L2 run (the counters hv::VcpuStats keeps) and from a snapshot.
#include <nlohmann/json.hpp>
#include <sstream>

#include "unit/hv/nested/nested_fixture.h"
#include "vmm/stats_report.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;

std::string row_of(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("  " + label, 0) == 0) return line;
  return "";
}

TEST_F(NestedTest, StatsReportEachLevelsExits) {
  load_l2("cpuid\n hlt\n");  // CPUID: reflected to L1 (unconditional); L1's host code stops
  w12(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL,
      r12(arch::VmcsField::CPU_BASED_VM_EXEC_CONTROL) & ~uint64_t(arch::proc::kHltExiting));
  ASSERT_EQ(run_l1(), 0x21);
  const vmm::StatsSnapshot s = vmm::take_stats(vm, 1, "debug-exit", 1);
  EXPECT_EQ(s.total.nested_entries, 1u);
  EXPECT_EQ(s.total.l2_exits_reflected[unsigned(ExitReason::CPUID)], 1u);
  EXPECT_EQ(s.total.total_l2_exits_reflected(), 1u);
  EXPECT_GE(s.total.l2_exits_l0[unsigned(ExitReason::EPT_VIOLATION)], 1u);  // EPT02 built for L2's code
  EXPECT_EQ(s.total.exits[unsigned(ExitReason::VMLAUNCH)], 1u);

  const std::string t = vmm::format_stats(s);
  EXPECT_TRUE(row_of(t, "VM exits from L1").ends_with(std::to_string(s.total.total_exits()))) << t;
  EXPECT_TRUE(row_of(t, "L2 entries (VMLAUNCH/RESUME)").ends_with(" 1")) << t;
  EXPECT_TRUE(row_of(t, "L2 exits reflected to L1").ends_with(" 1")) << t;
  EXPECT_TRUE(row_of(t, "L2 exits handled by L0").ends_with(std::to_string(s.total.total_l2_exits_l0()))) << t;
  const size_t reflected = t.find("L2 exits reflected to L1");
  ASSERT_NE(reflected, std::string::npos);
  EXPECT_NE(t.find("    CPUID", reflected), std::string::npos) << t;

  const auto j = nlohmann::json::parse(vmm::stats_json_text(s));
  EXPECT_EQ(j["total"]["l2_exits_reflected"]["CPUID"], 1);
  EXPECT_EQ(j["total"]["total_l2_exits_reflected"], 1);
  EXPECT_EQ(j["total"]["nested_entries"], 1);
  EXPECT_EQ(j["vcpus"][0]["total_l2_exits_l0"], s.total.total_l2_exits_l0());
}

TEST(NestedStatsReport, NoLevelRowsWithoutNesting) {
  vmm::StatsSnapshot s;
  vmm::VcpuFigures a;
  a.exits[unsigned(ExitReason::HLT)] = 2;
  s.vcpus = {a};
  s.total.add(a);
  const std::string t = vmm::format_stats(s);
  EXPECT_NE(row_of(t, "VM exits"), "") << t;
  EXPECT_EQ(t.find("L2 "), std::string::npos) << t;
  EXPECT_EQ(t.find("from L1"), std::string::npos) << t;
}

}  // namespace
}  // namespace nestvm::test
