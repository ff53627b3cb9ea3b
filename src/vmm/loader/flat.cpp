#include "vmm/loader/flat.h"

#include <fmt/core.h>

#include "vmm/loader/multiboot.h"

namespace nestvm::vmm {

Result<BootState> load_flat(hv::GuestMemory& mem, const BootRequest& req) {
  if (req.kernel.empty()) return Error{"the kernel image is empty"};
  const uint64_t end = kFlatLoadAddress + req.kernel.size();
  if (end > req.ram.below_4g || !mem.write(kFlatLoadAddress, req.kernel.data(), req.kernel.size()))
    return Error{fmt::format("flat binary of {} bytes does not fit in guest RAM at {:#x}", req.kernel.size(),
                             kFlatLoadAddress)};
  auto info = write_multiboot_info(mem, req, kFlatLoadAddress, end);
  if (!info) return Error{info.error()};
  auto cpu = boot_protected_mode(mem, uint32_t(kFlatLoadAddress));
  if (!cpu) return Error{cpu.error()};
  BootState st;
  st.cpu = *cpu;
  st.cpu.gpr[cpu::kRax] = kMultibootBootloaderMagic;
  st.cpu.gpr[cpu::kRbx] = *info;
  st.protocol = "flat binary";
  st.info_addr = *info;
  st.image_low = kFlatLoadAddress;
  st.image_high = end;
  return st;
}

}  // namespace nestvm::vmm
