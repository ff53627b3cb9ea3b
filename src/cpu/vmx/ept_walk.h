// EPT as the silicon walks it (SDM Vol. 3 §29.3): guest-physical to host-physical translation
// through L0's EPT paging structures in host-physical memory, with EPT violations and
// misconfigurations as VM exits. The walk itself is Cpu::ept_translate (ept_walk.cpp).
#pragma once
#include <cstdint>

#include "arch/vmx.h"

namespace nestvm::cpu {

// Why the processor uses a guest-physical address: decides the permission needed, the access
// bits of an EPT violation's exit qualification and whether a linear address is reported
// (SDM §29.3.3.2, Table 28-7).
enum class EptAccess : uint8_t {
  kRead,         // a data read of the translation of a linear address
  kWrite,        // a data write of it
  kFetch,        // an instruction fetch from it
  kPagingRead,   // a read of a guest paging-structure entry during a page walk
  kPagingWrite,  // an accessed/dirty-flag update of a guest paging-structure entry
  kPdpteLoad,    // MOV to CR0/CR3/CR4 loading the PAE PDPTEs (no linear address)
};

struct EptTranslation {
  uint64_t hpa = 0;
  uint8_t rwx = 0;     // bits 2:0: read, write, execute allowed by every EPT entry used
  bool dirty = false;  // writes need no walk: the leaf's dirty flag is set, or EPT A/D is off
};

// The EP4TA that tags combined mappings (SDM §29.4.1): EPTP bits 51:12.
constexpr uint64_t eptp_ep4ta(uint64_t eptp) { return eptp & 0x000ffffffffff000ull; }

// Whether a VM entry with "enable EPT" would accept this EPTP (SDM §27.2.1.1): a supported
// memory type, a supported page-walk length, A/D only if supported, reserved bits 11:8 and

// EPT memory types 2, 3 and 7 are reserved (SDM §29.3.7).
constexpr bool ept_memory_type_valid(unsigned type) { return type != 2 && type != 3 && type != 7; }

}  // namespace nestvm::cpu
