// Value bases inside a CodebookSet, whatever their kind (additive: quant/additive.h; residual:
// quant/residual.h): sizing them, and installing one group's basis together with the V centroid
// table it expands to, so the two can never disagree.
#pragma once

#include "quant/codebook.h"

namespace cqkv {

// The 2^b x c centroid table of one group's basis (value_basis_rows(kind) x c) of `kind`
// (additive or residual), bit for bit as the file check and the kernels expect.
void ExpandValueBasis(ValueKind kind, int bits, int c, const float* basis, float* centroids);

// Marks `set` (config, n_layers, shape and centroids already sized) as having `kind` values and
// sizes its bases, all zero. Throws cqkv::Error (naming the kind and config) when b > 12, or b is
// odd for residual values.
void InitValueBasis(CodebookSet& set, ValueKind kind);

// Copies `basis` (value_basis_rows() x c) into group `group` of `layer` and writes its expansion
// into that group's V table. Different groups touch disjoint memory, so calls for different
// groups may run concurrently.
void SetValueBasis(CodebookSet& set, int layer, int group, const float* basis);

}  // namespace cqkv
