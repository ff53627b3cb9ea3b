// Concrete encodings of a form. The prototype from the catalog is turned into a Zydis encoder
// request and re-encoded with random registers (often repeating one, to exercise aliasing),
// random addressing modes (base, index, scale, displacement, RIP-relative), random immediates and
// branch displacements that land on the code page. Every encoding is decoded again and kept only
// if it still belongs to the same form.
#pragma once
#include <cstdint>
#include <vector>

#include "diff/form_catalog.h"
#include "diff/rng.h"

namespace nestvm::diff {

struct Instance {
  std::vector<uint8_t> bytes;
  Decoded d;
};

// Up to `count` distinct instances; at least the prototype itself when nothing else encodes.
std::vector<Instance> make_instances(const Form& form, const ZydisDecoder& dec, Rng& rng, unsigned count);

// A 64-bit value biased toward the edges integer operations get wrong: 0, 1, -1, sign bits,
// powers of two and their neighbours, at a random operand width.
uint64_t edge_value(Rng& rng);

// A shift or rotate count: mostly the interesting ones (0, 1, width - 1, width, width + 1, ...).
uint8_t shift_count(Rng& rng);

// Whether the form's immediate operand is a shift/rotate count.
bool is_shift(const ZydisDecodedInstruction& zi);

}  // namespace nestvm::diff
