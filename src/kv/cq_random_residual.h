// Random residual value codebooks (ValueKind::kResidual, 8-bit codes: value = A[code >> 4] +
// B[code & 15]) installed into a CodebookSet, for tests and timing of the nibble-value kernels
// (kernels/attn_cq_nibble.h): attention cost depends on the code layout, not on the values.
#pragma once

#include <cstdint>

#include "quant/codebook.h"

namespace cqkv {

// Marks `set` (8-bit config, centroids sized) as having residual values: value_basis[layer]
// (n_groups, 32, c) of N(0, 1/2) stages and the V centroid tables their expansions A[i] + B[j]
// at code i * 16 + j. Throws cqkv::Error unless the codes have 8 bits.
void RandomResidualValues(CodebookSet& set, uint64_t seed);

}  // namespace cqkv
