// Micro-benchmarks of the core's hot paths (Google Benchmark): dispatch of register
// instructions, the memory fast path (TLB hit) for loads and stores, CMP+Jcc on lazy flags,
// and block-to-block links. Each runs a small guest loop; items/s is guest instructions/s.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "vmm/bare_machine.h"

namespace {

using nestvm::vmm::BareMachine;

// Guest loops, hand-assembled (64-bit): each iterates ECX times and ends with HLT.
// Bodies are listed with their instruction counts per iteration.
struct Loop {
  std::vector<uint8_t> code;
  unsigned insns_per_iter;
};

const Loop kRegisterAlu = {{
    0xb9, 0x00, 0x00, 0x00, 0x00,  // mov ecx, N (patched)
    0x48, 0x01, 0xc8,              // 1: add rax, rcx
    0x48, 0x31, 0xc3,              //    xor rbx, rax
    0x48, 0x21, 0xda,              //    and rdx, rbx
    0xff, 0xc9,                    //    dec ecx
    0x75, 0xf3,                    //    jnz 1b
    0xf4},                         // hlt
    5};

const Loop kLoadStore = {{
    0xb9, 0x00, 0x00, 0x00, 0x00,              // mov ecx, N
    0xbe, 0x00, 0x00, 0x30, 0x00,              // mov esi, 0x300000
    0x48, 0x8b, 0x06,                          // 1: mov rax, [rsi]
    0x48, 0x89, 0x46, 0x08,                    //    mov [rsi+8], rax
    0x48, 0x8b, 0x5e, 0x10,                    //    mov rbx, [rsi+16]
    0x48, 0x89, 0x5e, 0x18,                    //    mov [rsi+24], rbx
    0xff, 0xc9,                                //    dec ecx
    0x75, 0xed,                                //    jnz 1b
    0xf4},
    6};

const Loop kCompareBranch = {{
    0xb9, 0x00, 0x00, 0x00, 0x00,  // mov ecx, N
    0x39, 0xd8,                    // 1: cmp eax, ebx
    0x7c, 0x00,                    //    jl +0 (falls through either way)
    0x39, 0xca,                    //    cmp edx, ecx
    0x74, 0x00,                    //    je +0
    0xff, 0xc9,                    //    dec ecx
    0x75, 0xf4,                    //    jnz 1b
    0xf4},
    6};

// Two blocks jumping to each other: every iteration crosses two block links.
const Loop kBlockLinks = {{
    0xb9, 0x00, 0x00, 0x00, 0x00,  // mov ecx, N
    0xeb, 0x00,                    // 1: jmp 2f
    0xff, 0xc9,                    // 2: dec ecx
    0x75, 0xfa,                    //    jnz 1b
    0xf4},
    3};

void run_loop(benchmark::State& state, const Loop& loop) {
  constexpr uint32_t kIters = 1'000'000;
  std::vector<uint8_t> code = loop.code;
  std::memcpy(&code[1], &kIters, 4);
  BareMachine m(16ull << 20);
  uint64_t insns = 0;
  for (auto _ : state) {
    m.load_and_enter(code, 0x100000);
    const uint64_t before = m.cpu().instructions_retired();
    m.run();
    insns += m.cpu().instructions_retired() - before;
  }
  state.SetItemsProcessed(int64_t(insns));
  state.counters["ns/insn"] = benchmark::Counter(double(insns), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_RegisterAlu(benchmark::State& s) { run_loop(s, kRegisterAlu); }
void BM_LoadStoreTlbHit(benchmark::State& s) { run_loop(s, kLoadStore); }
void BM_CompareBranch(benchmark::State& s) { run_loop(s, kCompareBranch); }
void BM_BlockLinks(benchmark::State& s) { run_loop(s, kBlockLinks); }

BENCHMARK(BM_RegisterAlu)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadStoreTlbHit)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CompareBranch)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BlockLinks)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
