// --stats text and --stats-json contents from a snapshot; the PC memory map; QEMU's option
// string helpers.
#include "vmm/stats_report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "vmm/memory_map.h"
#include "vmm/qemu_opts.h"

namespace nestvm::test {
namespace {

using arch::ExitReason;

vmm::StatsSnapshot sample() {
  vmm::StatsSnapshot s;
  vmm::VcpuFigures a, b;
  a.exits[unsigned(ExitReason::IO_INSTRUCTION)] = 10;
  a.exits[unsigned(ExitReason::EPT_VIOLATION)] = 7;
  a.instructions = 1000;
  a.guest_ns = 3'000'000'000;
  a.l0_ns = 1'000'000'000;
  b.exits[unsigned(ExitReason::HLT)] = 2;
  b.exits[unsigned(ExitReason::EPT_VIOLATION)] = 1;
  b.instructions = 500;
  b.halted_ns = 500'000'000;
  b.injected_interrupts = 3;
  s.vcpus = {a, b};
  s.total.add(a);
  s.total.add(b);
  s.mmu[size_t(vmm::MmuCounter::kEptViolations)] = 8;
  s.mmu[size_t(vmm::MmuCounter::kTdpMappedPages)] = 42;
  s.mmu[size_t(vmm::MmuCounter::kTdpTablePages)] = 5;
  s.ram_bytes = 128ull << 20;
  s.backed_pages = 50;
  s.wall_ns = 4'200'000'000;
  s.stop_reason = "debug-exit";
  s.exit_status = 1;
  return s;
}

TEST(StatsReport, TotalsAddUpPerReason) {
  const auto s = sample();
  EXPECT_EQ(s.total.exits[unsigned(ExitReason::EPT_VIOLATION)], 8u);
  EXPECT_EQ(s.total.total_exits(), 20u);
  EXPECT_EQ(s.total.instructions, 1500u);
}

TEST(StatsReport, TextNamesEachReasonWithPerVcpuColumns) {
  const std::string t = vmm::format_stats(sample());
  EXPECT_NE(t.find("2 vCPUs"), std::string::npos) << t;
  EXPECT_NE(t.find("debug-exit"), std::string::npos);
  EXPECT_NE(t.find("vCPU0"), std::string::npos);
  EXPECT_NE(t.find("vCPU1"), std::string::npos);
  // One row per reason that occurred, with both vCPUs' counts and the total.
  const size_t io = t.find("IO_INSTRUCTION");
  ASSERT_NE(io, std::string::npos);
  const std::string io_row = t.substr(io, t.find('\n', io) - io);
  EXPECT_NE(io_row.find(" 10 "), std::string::npos) << io_row;
  EXPECT_NE(io_row.find(" 0 "), std::string::npos) << io_row;
  const size_t ept = t.find("EPT_VIOLATION");
  ASSERT_NE(ept, std::string::npos);
  const std::string ept_row = t.substr(ept, t.find('\n', ept) - ept);
  EXPECT_TRUE(ept_row.ends_with(" 8")) << ept_row;
  EXPECT_EQ(t.find("CPUID"), std::string::npos);  // reasons that never happened are left out
  EXPECT_NE(t.find("42 guest pages mapped"), std::string::npos);
  EXPECT_NE(t.find("75/25/0"), std::string::npos) << t;  // vCPU0: guest / L0 / halted
}

TEST(StatsReport, JsonHasTheSameFigures) {
  const auto j = nlohmann::json::parse(vmm::stats_json_text(sample()));
  ASSERT_EQ(j["vcpus"].size(), 2u);
  EXPECT_EQ(j["vcpus"][0]["exits"]["IO_INSTRUCTION"], 10);
  EXPECT_EQ(j["vcpus"][1]["exits"]["HLT"], 2);
  EXPECT_FALSE(j["vcpus"][1]["exits"].contains("IO_INSTRUCTION"));
  EXPECT_EQ(j["total"]["exits"]["EPT_VIOLATION"], 8);
  EXPECT_EQ(j["total"]["total_exits"], 20);
  EXPECT_EQ(j["total"]["instructions"], 1500);
  EXPECT_EQ(j["total"]["halted_ns"], 500'000'000);
  EXPECT_EQ(j["mmu"]["mode"], "tdp");
  EXPECT_EQ(j["mmu"]["ept_violations"], 8);
  EXPECT_EQ(j["mmu"]["tdp_mapped_pages"], 42);
  EXPECT_EQ(j["memory"]["backed_pages"], 50);
  EXPECT_EQ(j["stop_reason"], "debug-exit");
  EXPECT_EQ(j["exit_status"], 1);
}

TEST(StatsReport, ShadowPagingAndEpt02Counters) {
  auto s = sample();
  s.ept = false;
  s.mmu[size_t(vmm::MmuCounter::kShadowPageFaults)] = 300;
  s.mmu[size_t(vmm::MmuCounter::kShadowFaultsFixed)] = 250;
  s.mmu[size_t(vmm::MmuCounter::kWriteProtectFaults)] = 17;
  s.mmu[size_t(vmm::MmuCounter::kEpt02Violations)] = 9;
  const std::string t = vmm::format_stats(s);
  EXPECT_NE(t.find("shadow paging: 300 #PF exits (250 fixed by L0"), std::string::npos) << t;
  EXPECT_NE(t.find("17 writes to write-protected page tables"), std::string::npos) << t;
  EXPECT_NE(t.find("nested EPT (EPT02): 9 EPT violations from L2"), std::string::npos) << t;
  EXPECT_EQ(t.find("TDP (EPT01)"), std::string::npos) << t;
  const auto j = nlohmann::json::parse(vmm::stats_json_text(s));
  EXPECT_EQ(j["mmu"]["mode"], "shadow");
  EXPECT_EQ(j["mmu"]["shadow_page_faults"], 300);
  EXPECT_EQ(j["mmu"]["write_protect_faults"], 17);
  EXPECT_EQ(j["mmu"]["ept02_violations"], 9);
}

TEST(StatsReport, WritesJsonFileAndReportsFailureAsOneLine) {
  char path[] = "/tmp/nestvm_stats_XXXXXX";
  const int fd = mkstemp(path);
  close(fd);
  ASSERT_TRUE(vmm::write_stats_json(sample(), path));
  FILE* f = std::fopen(path, "rb");
  std::string text(4096 * 4, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), f));
  std::fclose(f);
  unlink(path);
  EXPECT_EQ(nlohmann::json::parse(text)["total"]["instructions"], 1500);
  auto bad = vmm::write_stats_json(sample(), "/nonexistent/dir/s.json");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().find('\n'), std::string::npos);
}

TEST(PcMemoryMap, SplitAndE820AsQemuPc) {
  auto small = vmm::pc_ram_layout(128ull << 20);
  EXPECT_EQ(small.below_4g, 128ull << 20);
  EXPECT_EQ(small.above_4g, 0u);
  auto just_below = vmm::pc_ram_layout(0xdff00000);
  EXPECT_EQ(just_below.below_4g, 0xdff00000u);
  auto big = vmm::pc_ram_layout(8ull << 30);
  EXPECT_EQ(big.below_4g, 3ull << 30);
  EXPECT_EQ(big.above_4g, 5ull << 30);
  EXPECT_EQ(big.top(), 9ull << 30);
  const auto map = vmm::pc_e820_map(big);
  uint64_t ram = 0, prev_end = 0;
  for (const auto& e : map) {
    EXPECT_GE(e.addr, prev_end);  // sorted, no overlap
    prev_end = e.addr + e.size;
    if (e.type == vmm::E820Type::kRam) ram += e.size;
  }
  // All RAM but the EBDA and the 640K-1M hole is reported available.
  EXPECT_EQ(ram, (8ull << 30) - (1ull << 20) + 0x9fc00);
  EXPECT_EQ(map.front().addr, 0u);
  EXPECT_EQ(map.front().size, 0x9fc00u);
  EXPECT_EQ(map.back().addr, 1ull << 32);
}

TEST(QemuOpts, SplitBoolsNumbersSizes) {
  EXPECT_EQ(vmm::split_opts("a,b=c,,d,"), (std::vector<std::string>{"a", "b=c,d", ""}));
  EXPECT_EQ(vmm::parse_bool("on"), true);
  EXPECT_EQ(vmm::parse_bool("no"), false);
  EXPECT_FALSE(vmm::parse_bool("1"));
  EXPECT_EQ(vmm::parse_uint("0xf4"), 0xf4u);
  EXPECT_EQ(vmm::parse_uint("010"), 8u);
  EXPECT_EQ(vmm::parse_uint("42"), 42u);
  EXPECT_FALSE(vmm::parse_uint("0x"));
  EXPECT_FALSE(vmm::parse_uint("99999999999999999999"));
  EXPECT_EQ(vmm::parse_size("010", 'M'), 10ull << 20);  // decimal, as qemu_strtosz
  EXPECT_EQ(vmm::parse_size("0x1000", 'B'), 0x1000u);
  EXPECT_EQ(vmm::parse_size("2T", 'M'), 2ull << 40);
  EXPECT_EQ(vmm::parse_size("0.5k", 'M'), 512u);
  EXPECT_FALSE(vmm::parse_size("", 'M'));
  EXPECT_FALSE(vmm::parse_size("1.2.3G", 'M'));
  EXPECT_FALSE(vmm::parse_size("16E", 'M'));
}

}  // namespace
}  // namespace nestvm::test
