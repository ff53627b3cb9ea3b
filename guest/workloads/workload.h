/* CPU-bound workloads shared by the guest images and the native side of the benchmark.
 * The same source is compiled freestanding for the guest and normally for the host; WL(name)
 * gives each copy its own symbol. No libc: everything they need is here. */
#ifndef NESTVM_WORKLOAD_H
#define NESTVM_WORKLOAD_H
#include <stdint.h>

#ifdef NESTVM_NATIVE
#define WL(name) nestvm_native_##name
#else
#define WL(name) name
#endif

uint64_t WL(sieve)(uint64_t n);
uint64_t WL(sort)(uint64_t n);
uint64_t WL(hash)(uint64_t n);

#endif
