// --level on nestvm's command line (vmm/options.h): 1 or 2, anything else one clear error.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vmm/options.h"

namespace nestvm::test {
namespace {

vmm::Result<vmm::Options> parse(std::vector<std::string> args) { return vmm::parse_options(args); }

TEST(LevelOption, OneOrTwo) {
  auto o = parse({"-kernel", "k.elf"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->level, 1u);
  o = parse({"-kernel", "k.elf", "--level", "2"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->level, 2u);
  o = parse({"--level=1"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->level, 1u);
  o = parse({"-level", "2"});  // one dash, as every option
  ASSERT_TRUE(o);
  EXPECT_EQ(o->level, 2u);
}

TEST(LevelOption, AnythingElseIsOneError) {
  for (const char* bad : {"0", "3", "", "2x", "02", "-1"}) {
    auto o = parse({"--level", bad});
    ASSERT_FALSE(o) << bad;
    EXPECT_NE(o.error().find("--level: invalid level"), std::string::npos) << o.error();
    EXPECT_EQ(o.error().find('\n'), std::string::npos);
  }
  EXPECT_FALSE(parse({"--level"}));
}

TEST(LevelOption, InTheHelp) { EXPECT_NE(vmm::help_text().find("-level 1|2"), std::string::npos); }

}  // namespace
}  // namespace nestvm::test
