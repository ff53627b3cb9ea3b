# The minivisor (guest/minivisor): the L1 hypervisor `nestvm --level 2` boots (src/vmm/level.h).
# Linked like a guest test on the test-guest runtime and embedded in nestvm as
# guest_image_minivisor. Its loader is also built for the host, for the unit tests that compare
# it with nestvm's (tests/unit/vmm/minivisor_loader_test.cpp).
set(minivisor_sources minivisor/main.c minivisor/vcpu.c minivisor/ept.c minivisor/loader.c minivisor/entry.S)
list(TRANSFORM minivisor_sources PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/)
add_library(guest_minivisor OBJECT ${minivisor_sources})
target_compile_options(guest_minivisor PRIVATE ${NESTVM_GUEST_TEST_FLAGS})
# arch/vmcs_fields.def: the VMCS field encodings.
target_include_directories(guest_minivisor PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/src)
set(minivisor_elf ${CMAKE_CURRENT_BINARY_DIR}/minivisor/minivisor.elf)
set(minivisor_cpp ${CMAKE_CURRENT_BINARY_DIR}/image_minivisor.cpp)
add_custom_command(
  OUTPUT ${minivisor_elf}
  COMMAND ${CMAKE_C_COMPILER} -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack
          -Wl,--no-warn-rwx-segments -T ${CMAKE_CURRENT_SOURCE_DIR}/runtime/link.ld -o ${minivisor_elf}.64
          $<TARGET_OBJECTS:nestvm_guest_runtime> $<TARGET_OBJECTS:guest_minivisor>
  COMMAND objcopy -O elf32-i386 ${minivisor_elf}.64 ${minivisor_elf}
  DEPENDS nestvm_guest_runtime guest_minivisor $<TARGET_OBJECTS:nestvm_guest_runtime>
          $<TARGET_OBJECTS:guest_minivisor> ${CMAKE_CURRENT_SOURCE_DIR}/runtime/link.ld
  COMMENT "Linking the minivisor minivisor.elf"
  COMMAND_EXPAND_LISTS
  VERBATIM)
add_custom_command(
  OUTPUT ${minivisor_cpp}
  COMMAND ${CMAKE_COMMAND} -DINPUT=${minivisor_elf} -DOUTPUT=${minivisor_cpp} -DSYMBOL=guest_image_minivisor
          -P ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${minivisor_elf} ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  VERBATIM)
target_sources(nestvm_guest_images PRIVATE ${minivisor_cpp})

add_library(nestvm_minivisor_loader STATIC ${CMAKE_CURRENT_SOURCE_DIR}/minivisor/loader.c)
target_include_directories(nestvm_minivisor_loader PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(nestvm_minivisor_loader PRIVATE -Wall -Wextra $<$<BOOL:${NESTVM_WERROR}>:-Werror>)
target_link_libraries(nestvm_minivisor_loader PUBLIC nestvm_options)
