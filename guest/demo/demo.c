/* nestvm's built-in demo, booted by `nestvm` without -kernel and by `make demo`: a multiboot
 * guest on the test-guest runtime that says what it runs on, brings up every vCPU with
 * INIT-SIPI-SIPI, runs the same workload on all of them at once (a sieve of Eratosthenes over
 * its own 256 KiB, so that each vCPU also faults its memory in through EPT01), checks every
 * answer, and stops through isa-debug-exit. nestvm then prints L0's exit statistics.
 * Arguments: rounds=<sieve passes per vCPU> (default 8). */
#include "runtime/acpi.h"
#include "runtime/libc.h"
#include "runtime/percpu.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/smp.h"
#include "runtime/x86.h"

#define SIEVE_N (1u << 18)
#define PRIMES_BELOW_SIEVE_N 23000 /* pi(2^18) */

static uint8_t composite[MAX_CPUS][SIEVE_N] __attribute__((aligned(4096)));

struct result {
  uint32_t apic_id;
  uint64_t primes;  /* per pass; every pass must agree */
  uint64_t passes_agreeing;
  uint64_t cycles;
};
static struct result results[MAX_CPUS];
static uint64_t rounds;

static uint64_t sieve(uint8_t* c) {
  for (uint32_t i = 0; i < SIEVE_N; ++i) c[i] = 0;
  uint64_t count = 0;
  for (uint32_t i = 2; i < SIEVE_N; ++i) {
    if (c[i]) continue;
    ++count;
    for (uint64_t j = (uint64_t)i * i; j < SIEVE_N; j += i) c[j] = 1;
  }
  return count;
}

static void work(void* arg) {
  (void)arg;
  struct result* r = &results[cpu_index()];
  r->apic_id = this_cpu()->apic_id;
  const uint64_t t0 = rdtsc();
  r->primes = sieve(composite[cpu_index()]);
  r->passes_agreeing = 1;
  for (uint64_t i = 1; i < rounds; ++i)
    if (sieve(composite[cpu_index()]) == r->primes) r->passes_agreeing++;
  r->cycles = rdtsc() - t0;
}

static void cpuid_string(uint32_t leaf, char* out, int regs_per_leaf_order) {
  struct cpuid_regs r = cpuid(leaf);
  uint32_t v[4];
  if (regs_per_leaf_order) { /* brand string: EAX, EBX, ECX, EDX */
    v[0] = r.a, v[1] = r.b, v[2] = r.c, v[3] = r.d;
    memcpy(out, v, 16);
  } else { /* vendor: EBX, EDX, ECX */
    v[0] = r.b, v[1] = r.d, v[2] = r.c;
    memcpy(out, v, 12);
  }
}

int main(int argc, char** argv) {
  (void)argc, (void)argv;
  rounds = arg_u64("rounds", 8);
  if (rounds == 0) rounds = 1;
  char vendor[13] = {0}, brand[49] = {0};
  cpuid_string(0, vendor, 0);
  if (cpuid(0x80000000).a >= 0x80000004)
    for (uint32_t i = 0; i < 3; ++i) cpuid_string(0x80000002 + i, brand + 16 * i, 1);
  const bool vmx = cpuid(1).c & (1u << 5);

  printf("\n");
  printf("Hello from the nestvm demo guest.\n");
  if (arg_u64("level", 1) == 2) {
    printf("I am an x86-64 multiboot kernel running as L2: the built-in minivisor, a hypervisor\n");
    printf("running as L1, runs me with VMX and EPT, and nestvm's L0 hypervisor runs it on nestvm's\n");
    printf("own processor. Each of my exits goes to L0 first, which handles it itself (ports, MMIO,\n");
    printf("HLT, EPT02 faults) or reflects it to the minivisor (CPUID, INIT, SIPI).\n");
  } else {
    printf("I am an x86-64 multiboot kernel running as L1 under nestvm's L0 hypervisor: every\n");
    printf("instruction here runs in VMX non-root operation on nestvm's own processor, and every\n");
    printf("port, MMIO access, CPUID and HLT you see below is a VM exit that L0 handles.\n");
  }
  printf("  CPU: %s (%s), VMX %s to me\n", brand[0] ? brand : "?", vendor, vmx ? "advertised" : "hidden");

  struct madt_info m;
  const bool have_madt = acpi_parse_madt(&m);
  const unsigned online = smp_start();
  printf("  vCPUs: %u online (ACPI MADT lists %u), started with INIT-SIPI-SIPI\n", online, have_madt ? m.cpus : 1);
  printf("  workload: a sieve of Eratosthenes below %u, %lu passes on every vCPU at once\n", SIEVE_N, rounds);

  on_all_cpus(work, NULL);

  for (unsigned i = 0; i < online; ++i) {
    const struct result* r = &results[i];
    printf("  vCPU %u (APIC ID %u): %lu primes, %lu of %lu passes agree, %lu Mcycles\n", i, r->apic_id, r->primes,
           r->passes_agreeing, rounds, r->cycles / 1000000);
  }
  if (have_madt) check_eq("every vCPU the MADT lists came online", online, m.cpus);
  for (unsigned i = 0; i < online; ++i) {
    report(results[i].primes == PRIMES_BELOW_SIEVE_N && results[i].passes_agreeing == rounds,
           "vCPU %u found the %u primes below 2^18 in every pass", i, PRIMES_BELOW_SIEVE_N);
  }
  printf("Goodbye: stopping through isa-debug-exit; nestvm prints its statistics next.\n");
  return 0;
}
