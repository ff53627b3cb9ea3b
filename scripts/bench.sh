#!/bin/sh
# The benchmarks of docs/performance.md: the core against the host (alternating runs, medians),
# then the hot-path micro-benchmarks.
set -eu
BUILD=${BUILD:-build}
"./$BUILD/core_bench" --runs 7 --json "$BUILD/core_bench.json"
"./$BUILD/core_micro"
