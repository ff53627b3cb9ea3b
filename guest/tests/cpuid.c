/* CPUID sanity: the leaves an x86-64 operating system relies on say what a 64-bit PC with a
 * local APIC must have, agree with each other, and agree with what the CPU does. */
#include "runtime/apic.h"
#include "runtime/libc.h"
#include "runtime/report.h"
#include "runtime/runtime.h"
#include "runtime/smp.h"
#include "runtime/traps.h"
#include "runtime/x86.h"

static bool printable(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (s[i] < 0x20 || s[i] > 0x7e) return false;
  return true;
}

static void rdtscp_insn(void* arg) {
  uint32_t lo, hi, aux;
  __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
}

static uint32_t initial_apic_id[MAX_CPUS], live_apic_id[MAX_CPUS];

static void record_initial_apic_id(void* arg) {
  initial_apic_id[cpu_index()] = cpuid(1).b >> 24;
  live_apic_id[cpu_index()] = lapic_id();
}

int main(int argc, char** argv) {
  struct cpuid_regs r0 = cpuid(0);
  char vendor[13];
  memcpy(vendor + 0, &r0.b, 4);
  memcpy(vendor + 4, &r0.d, 4);
  memcpy(vendor + 8, &r0.c, 4);
  vendor[12] = 0;
  printf("vendor \"%s\", max basic leaf %#x\n", vendor, r0.a);
  report_why(printable(vendor, 12), "vendor string is 12 printable characters", "got \"%s\"", vendor);
  report_why(r0.a >= 1, "max basic leaf >= 1", "got %#x", r0.a);

  struct cpuid_regs r1 = cpuid(1);
  unsigned family = (r1.a >> 8) & 0xf;
  if (family == 0xf) family += (r1.a >> 20) & 0xff;
  report_why(family >= 6, "family >= 6", "family %u (eax %#x)", family, r1.a);
  /* A 64-bit processor has these (AMD64 APM Vol. 3 and SDM Vol. 2 CPUID: long mode requires
   * FPU, PSE, TSC, MSR, PAE, CX8, APIC, PGE, CMOV, FXSR, SSE, SSE2). */
  static const struct {
    int bit;
    const char* name;
  } required[] = {{0, "FPU"}, {3, "PSE"}, {4, "TSC"}, {5, "MSR"}, {6, "PAE"}, {8, "CX8"}, {9, "APIC"},
                  {13, "PGE"}, {15, "CMOV"}, {24, "FXSR"}, {25, "SSE"}, {26, "SSE2"}};
  for (size_t i = 0; i < ARRAY_SIZE(required); ++i) {
    char name[64];
    snprintf(name, sizeof(name), "CPUID.1:EDX.%s", required[i].name);
    report_why((r1.d >> required[i].bit) & 1, name, "bit %d is clear in %#x", required[i].bit, r1.d);
  }
  report_eq("CPUID.1:EDX.APIC agrees with IA32_APIC_BASE.EN", (r1.d >> 9) & 1, (rdmsr(MSR_APIC_BASE) >> 11) & 1);
  report_why((r1.c >> 31) & 1, "CPUID.1:ECX.hypervisor is set", "ecx %#x", r1.c);

  struct cpuid_regs e0 = cpuid(0x80000000);
  report_why(e0.a >= 0x80000008, "max extended leaf >= 0x80000008", "got %#x", e0.a);
  struct cpuid_regs e1 = cpuid(0x80000001);
  report_why((e1.d >> 29) & 1, "CPUID.80000001H:EDX.LM", "edx %#x", e1.d);
  report_why((e1.d >> 11) & 1, "CPUID.80000001H:EDX.SYSCALL", "edx %#x", e1.d);
  report_eq("EFER.LMA is set (we run in long mode)", (rdmsr(MSR_EFER) >> 10) & 1, 1);
  report_eq("EFER.NXE follows CPUID.80000001H:EDX.NX", (rdmsr(MSR_EFER) >> 11) & 1, (e1.d >> 20) & 1);

  struct cpuid_regs e8 = cpuid(0x80000008);
  unsigned phys = e8.a & 0xff, virt = (e8.a >> 8) & 0xff;
  printf("physical address bits %u, linear address bits %u\n", phys, virt);
  report_why(phys >= 36 && phys <= 52, "MAXPHYADDR in [36, 52]", "got %u", phys);
  report_why(virt == 48 || virt == 57, "linear address width 48 or 57", "got %u", virt);

  if (e0.a >= 0x80000004) {
    char brand[49];
    for (int i = 0; i < 3; ++i) {
      struct cpuid_regs b = cpuid(0x80000002 + i);
      memcpy(brand + 16 * i + 0, &b.a, 4);
      memcpy(brand + 16 * i + 4, &b.b, 4);
      memcpy(brand + 16 * i + 8, &b.c, 4);
      memcpy(brand + 16 * i + 12, &b.d, 4);
    }
    brand[48] = 0;
    printf("brand \"%s\"\n", brand);
    report_why(printable(brand, strlen(brand)), "brand string is printable", "\"%s\"", brand);
  }

  /* Advertised instructions work; RDTSCP raises #UD when it is not advertised (SDM Vol. 2
   * RDTSCP). */
  bool has_rdtscp = (e1.d >> 27) & 1;
  int v = trap_run(rdtscp_insn, NULL, NULL);
  report_why(has_rdtscp ? v == -1 : v == UD_VECTOR, "RDTSCP behaves as CPUID.80000001H:EDX.RDTSCP says",
             "advertised %d, raised vector %d", has_rdtscp, v);

  /* Every CPU reports its own APIC ID in CPUID.1:EBX[31:24]. */
  unsigned n = smp_start();
  on_all_cpus(record_initial_apic_id, NULL);
  for (unsigned c = 0; c < n; ++c) {
    char name[80];
    snprintf(name, sizeof(name), "CPU %u: CPUID.1:EBX[31:24] == LAPIC ID", c);
    report_eq(name, initial_apic_id[c], live_apic_id[c]);
  }
  return 0;
}
