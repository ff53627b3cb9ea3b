// --level: the level the user's kernel runs at. Level 1 is nestvm's ordinary boot. Level 2 boots
// the built-in minivisor (guest/minivisor) as L1, and the minivisor boots the user's kernel as
// L2 exactly as nestvm would have booted it as L1.
//
// The hand-over from nestvm to the minivisor (a multiboot boot of the minivisor image, linked
// at 1 MiB like every test guest):
//   - module 0 is the user's kernel; its string is the kernel's name (-kernel's FILE);
//   - modules 1.. are the user's -initrd modules, in order, with their strings;
//   - the minivisor's command line is "minivisor private=<address>,<size> -- <-append>": what
//     follows the first " -- " is L2's -append, verbatim (empty included);
//   - the private range, kMinivisorSize bytes at kMinivisorBase in the hole below 4 GiB that no
//     PC device decodes (above the local APIC page, where QEMU's pc has only the BIOS ROM, which
//     nestvm does not have), is RAM for L1 alone: L1's memory map lists it as one more available
//     range. The rest of the map, mem_lower and mem_upper are the user's -m, which is what L2
//     gets: the minivisor's EPT12 maps L2's addresses to the same L1 addresses except where the
//     minivisor itself lives (its image, boot information, modules and pages from 1 MiB up),
//     which it maps to the private range instead, so that L2 sees the machine it would have
//     seen as L1 and cannot reach the minivisor.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "hv/guest_memory.h"
#include "vmm/loader/loader.h"
#include "vmm/machine.h"
#include "vmm/result.h"

namespace nestvm::vmm {

inline constexpr uint64_t kMinivisorBase = 0xff000000;
inline constexpr uint64_t kMinivisorSize = 16ull << 20;   // up to 4 GiB

// The private RAM L1 gets at this level (0 at level 1).
uint64_t level_private_ram(unsigned level);

// The image to boot as L1 at level 2: the minivisor with `user` as module 0 and its modules
// after; `append` becomes the minivisor's command line as described above. `minivisor` is the
// built-in image (guest::find("minivisor")). Level 1 returns `user` unchanged.
Result<KernelImage> level_kernel(unsigned level, const KernelImage& user, std::span<const uint8_t> minivisor,
                                 std::string& append);

// At level 2: adds the minivisor's RAM slot (before loading).
Result<Ok> add_level_ram(hv::GuestMemory& mem, unsigned level);

// At level 2: adds the minivisor's RAM to the memory map the multiboot loader wrote for L1
// (after loading), keeping the map sorted by address.
Result<Ok> describe_level_ram(hv::GuestMemory& mem, unsigned level, const BootState& boot);

}  // namespace nestvm::vmm
