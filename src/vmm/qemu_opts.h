// QEMU's option-string conventions (util/qemu-option.c, util/cutils.c), shared by every option
// that takes "value,key=value,...": ",," is a literal comma, booleans are on/off (yes/no,
// true/false), numbers take C prefixes (0x, leading 0 for octal), sizes take K/M/G/T/P/E
// suffixes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nestvm::vmm {

// "a,b=c,,d" -> {"a", "b=c,d"}: splits at single commas; ",," stands for ','.
std::vector<std::string> split_opts(std::string_view s);

struct KeyValue {
  std::string key;
  std::optional<std::string> value;  // nullopt for a bare "key"
};
KeyValue split_key_value(const std::string& item);

std::optional<bool> parse_bool(std::string_view s);
// An unsigned number in C syntax (decimal, 0x hex, 0 octal); nullopt on junk or overflow.
std::optional<uint64_t> parse_uint(std::string_view s);
// A size as qemu_strtosz: a number (fraction allowed) and an optional suffix B, K, M, G, T, P,
// E (either case); `default_suffix` applies when there is none. nullopt on junk or overflow.
std::optional<uint64_t> parse_size(std::string_view s, char default_suffix);

}  // namespace nestvm::vmm
