#include "vmm/qemu_opts.h"

#include <cctype>
#include <cmath>

namespace nestvm::vmm {

std::vector<std::string> split_opts(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != ',') {
      cur += s[i];
    } else if (i + 1 < s.size() && s[i + 1] == ',') {
      cur += ',';
      ++i;
    } else {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  out.push_back(std::move(cur));
  return out;
}

KeyValue split_key_value(const std::string& item) {
  const size_t eq = item.find('=');
  if (eq == std::string::npos) return {item, std::nullopt};
  return {item.substr(0, eq), item.substr(eq + 1)};
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "on" || s == "yes" || s == "true" || s == "y") return true;
  if (s == "off" || s == "no" || s == "false" || s == "n") return false;
  return std::nullopt;
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  if (s.empty()) return std::nullopt;
  unsigned base = 10;
  size_t i = 0;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    i = 2;
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
    i = 1;
  }
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = char(std::tolower(static_cast<unsigned char>(s[i])));
    unsigned d;
    if (c >= '0' && c <= '9') d = unsigned(c - '0');
    else if (c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
    else return std::nullopt;
    if (d >= base) return std::nullopt;
    if (v > (~0ull - d) / base) return std::nullopt;
    v = v * base + d;
  }
  return v;
}

std::optional<uint64_t> parse_size(std::string_view s, char default_suffix) {
  size_t end = 0;
  while (end < s.size() && (std::isxdigit(static_cast<unsigned char>(s[end])) || s[end] == '.' || s[end] == 'x' ||
                            s[end] == 'X'))
    ++end;
  // A trailing 'b'/'e' is a suffix (bytes, exbibytes), not a hex digit, unless the number is hex.
  std::string_view number = s.substr(0, end);
  std::string_view suffix = s.substr(end);
  const bool hex = number.size() > 2 && number[0] == '0' && (number[1] == 'x' || number[1] == 'X');
  if (!hex && !number.empty() && suffix.empty()) {
    const char last = char(std::tolower(static_cast<unsigned char>(number.back())));
    if (last == 'b' || last == 'e') {
      suffix = number.substr(number.size() - 1);
      number.remove_suffix(1);
    }
  }
  if (number.empty() || suffix.size() > 1) return std::nullopt;
  const char unit = suffix.empty() ? default_suffix : char(std::toupper(static_cast<unsigned char>(suffix[0])));
  unsigned shift;
  switch (unit) {
    case 'B': shift = 0; break;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    case 'P': shift = 50; break;
    case 'E': shift = 60; break;
    default: return std::nullopt;
  }
  const size_t dot = number.find('.');
  if (dot == std::string_view::npos) {
    std::optional<uint64_t> v;
    if (hex) {
      v = parse_uint(number);
    } else {
      // Decimal, leading zeros included (qemu_strtosz reads base 10 unless "0x").
      uint64_t d = 0;
      for (char c : number) {
        if (!std::isdigit(static_cast<unsigned char>(c)) || d > (~0ull - 9) / 10) return std::nullopt;
        d = d * 10 + uint64_t(c - '0');
      }
      v = d;
    }
    if (!v || (shift && *v > (~0ull >> shift))) return std::nullopt;
    return *v << shift;
  }
  // A fraction: decimal only, as qemu_strtosz.
  if (hex) return std::nullopt;
  const std::string_view ip = number.substr(0, dot), fp = number.substr(dot + 1);
  if ((ip.empty() && fp.empty()) || fp.find('.') != std::string_view::npos) return std::nullopt;
  long double v = 0;
  for (char c : ip) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  long double scale = 0.1L;
  for (char c : fp) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v += (c - '0') * scale;
    scale /= 10;
  }
  v = std::ldexp(v, int(shift));
  if (v >= 18446744073709551615.0L) return std::nullopt;
  return uint64_t(v);
}

}  // namespace nestvm::vmm
