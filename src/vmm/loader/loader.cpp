#include "vmm/loader/loader.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "vmm/loader/elf.h"
#include "vmm/loader/flat.h"
#include "vmm/loader/multiboot.h"
#include "vmm/qemu_opts.h"

namespace nestvm::vmm {

Result<BootState> load_kernel(hv::GuestMemory& mem, const BootRequest& req) {
  if (auto h = find_multiboot_header(req.kernel)) return load_multiboot(mem, req, *h);
  if (is_elf(req.kernel)) {
    auto elf = parse_elf(req.kernel);
    if (!elf) return Error{elf.error()};
    return load_plain_elf(mem, req, *elf);
  }
  // The Linux boot protocol's signature "HdrS" at 0x202 (Documentation/arch/x86/boot.rst).
  if (req.kernel.size() >= 0x206 && std::memcmp(req.kernel.data() + 0x202, "HdrS", 4) == 0)
    return Error{"a Linux kernel (bzImage): the Linux boot protocol is not supported yet"};
  return load_flat(mem, req);
}

Result<std::vector<uint8_t>> read_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) return Error{fmt::format("could not open '{}': {}", path, std::strerror(errno))};
  std::vector<uint8_t> bytes;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f.get())) > 0) bytes.insert(bytes.end(), buf, buf + n);
  if (std::ferror(f.get())) return Error{fmt::format("could not read '{}': {}", path, std::strerror(errno))};
  return bytes;
}

Result<std::vector<BootModule>> read_modules(const std::string& initrd) {
  std::vector<BootModule> mods;
  if (initrd.empty()) return mods;
  for (const std::string& entry : split_opts(initrd)) {
    // QEMU's load_multiboot: the file name ends at the first space; the module's string is the
    // whole entry.
    const std::string file = entry.substr(0, entry.find(' '));
    if (file.empty()) return Error{fmt::format("-initrd: empty module file name in '{}'", initrd)};
    auto bytes = read_file(file);
    if (!bytes) return Error{"-initrd: " + bytes.error()};
    mods.push_back({entry, std::move(*bytes)});
  }
  return mods;
}

}  // namespace nestvm::vmm
