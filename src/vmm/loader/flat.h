// Flat binaries: the file's bytes at 1 MiB, entered there in 32-bit protected mode with the
// multiboot machine state and information structure (EAX = 0x2BADB002, EBX = the structure),
// as if the image were a multiboot kernel whose header nestvm did not need.
#pragma once
#include <cstdint>

#include "vmm/loader/loader.h"

namespace nestvm::vmm {

inline constexpr uint64_t kFlatLoadAddress = 0x100000;

Result<BootState> load_flat(hv::GuestMemory& mem, const BootRequest& req);

}  // namespace nestvm::vmm
