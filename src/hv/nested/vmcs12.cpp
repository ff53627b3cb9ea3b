#include "hv/nested/vmcs12.h"

#include <cstring>

#include "hv/guest_memory.h"

namespace nestvm::hv::nested {

using namespace arch;

size_t Vmcs12::index_of(VmcsField f) { return size_t(&vmcs_field_info(f) - vmcs_fields().data()); }

void Vmcs12::write(VmcsField f, uint64_t v) {
  const size_t i = index_of(f);
  fields_[i] = v & vmcs_fields()[i].mask();
  dirty_.set(i);
}

void Vmcs12::to_page(uint8_t* page) const {
  std::memset(page, 0, vmcs12_layout::kSize);
  const uint32_t version = vmcs12_layout::kVersion, launch = launched ? 1 : 0;
  std::memcpy(page + vmcs12_layout::kRevisionOffset, &revision, 4);
  std::memcpy(page + vmcs12_layout::kAbortOffset, &abort, 4);
  std::memcpy(page + vmcs12_layout::kVersionOffset, &version, 4);
  std::memcpy(page + vmcs12_layout::kLaunchStateOffset, &launch, 4);
  const auto fields = vmcs_fields();
  for (size_t i = 0; i < fields.size(); ++i) std::memcpy(page + fields[i].offset, &fields_[i], 8);
}

bool Vmcs12::from_page(const uint8_t* page) {
  uint32_t version = 0, launch = 0;
  std::memcpy(&version, page + vmcs12_layout::kVersionOffset, 4);
  std::memcpy(&revision, page + vmcs12_layout::kRevisionOffset, 4);
  std::memcpy(&abort, page + vmcs12_layout::kAbortOffset, 4);
  std::memcpy(&launch, page + vmcs12_layout::kLaunchStateOffset, 4);
  launched = launch == 1;
  const auto fields = vmcs_fields();
  for (size_t i = 0; i < fields.size(); ++i) {
    std::memcpy(&fields_[i], page + fields[i].offset, 8);
    fields_[i] &= fields[i].mask();
  }
  dirty_.set();
  // A page L1 never VMCLEARed under this layout (version 0: fresh memory) reads as it is: the
  // SDM leaves a VMCS not initialized by VMCLEAR undefined; only another version is foreign.
  return version == vmcs12_layout::kVersion || version == 0;
}

bool Vmcs12::load(GuestMemory& mem, uint64_t gpa) {
  uint8_t page[vmcs12_layout::kSize];
  if (!mem.read(gpa, page, sizeof page)) return false;
  from_page(page);
  return true;
}

bool Vmcs12::store(GuestMemory& mem, uint64_t gpa) const {
  uint8_t page[vmcs12_layout::kSize];
  to_page(page);
  return mem.write(gpa, page, sizeof page);
}

}  // namespace nestvm::hv::nested
