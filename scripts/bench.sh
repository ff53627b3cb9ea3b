#!/bin/sh
# The benchmarks of docs/performance.md: the core against the host (alternating runs, medians),
# the hot-path micro-benchmarks, then the machine against QEMU TCG on the benchmark images
# (alternating runs, medians, ratios; needs qemu-system-x86_64), which also runs the images at
# --level 2 against --level 1 (L2/L1 ratios and per-level exit counts).
set -eu
BUILD=${BUILD:-build}
"./$BUILD/core_bench" --runs 7 --json "$BUILD/core_bench.json"
"./$BUILD/core_micro"
"./$BUILD/machine_bench" --runs 5 --json "$BUILD/machine_bench.json"
