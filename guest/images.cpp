#include "guest/images.h"

#include <array>

extern const uint8_t guest_image_workload_sieve[];
extern const size_t guest_image_workload_sieve_size;
extern const uint8_t guest_image_workload_sort[];
extern const size_t guest_image_workload_sort_size;
extern const uint8_t guest_image_workload_hash[];
extern const size_t guest_image_workload_hash_size;
extern const uint8_t guest_image_demo[];
extern const size_t guest_image_demo_size;
extern const uint8_t guest_image_minivisor[];
extern const size_t guest_image_minivisor_size;

namespace nestvm::guest {

std::span<const Image> images() {
  static const std::array<Image, 5> all = {{
      {"workload_sieve", {guest_image_workload_sieve, guest_image_workload_sieve_size}, kWorkloadBase},
      {"workload_sort", {guest_image_workload_sort, guest_image_workload_sort_size}, kWorkloadBase},
      {"workload_hash", {guest_image_workload_hash, guest_image_workload_hash_size}, kWorkloadBase},
      // The demo is a multiboot ELF image: its loader decides where it goes.
      {"demo", {guest_image_demo, guest_image_demo_size}, 0},
      // The L1 hypervisor of --level 2 (src/vmm/level.h), a multiboot ELF image too.
      {"minivisor", {guest_image_minivisor, guest_image_minivisor_size}, 0},
  }};
  return all;
}

const Image* find(std::string_view name) {
  for (const Image& i : images())
    if (i.name == name) return &i;
  return nullptr;
}

}  // namespace nestvm::guest
