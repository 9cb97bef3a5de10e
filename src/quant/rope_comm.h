// RoPE-commutative key codebooks ("rope-comm", CommVQ's idea for CQ): pre-RoPE key centroids
// over groups made of whole RoPE channel pairs, so that rotating a decoded key to its position
// commutes with the code and can be folded into the query per block of tokens
// (kernels/attn_cq_ropecomm.h).
//
// The constraint and its fit. RoPE turns pair p of a head by the 2x2 block
// [[cos, -sin], [sin, cos]] of angle t w_p; a 2x2 block commutes with it exactly when it has the
// form [[a, -b], [b, a]], i.e. acts on the pair as a complex scalar a + ib. A centroid's pair
// (z_2p, z_2p+1) is that complex scalar applied to the unit pair (1, 0), so every centroid whose
// group is a union of whole pairs satisfies R(t) z = z R(t): the constraint is on the grouping
// (c even, NORM pairing so pairs are consecutive channels), not on the centroid values. Within
// it, the Fisher-weighted objective sum_i w_i ||x_i - z(i)||^2 of pre-RoPE keys is minimised by
// weighted k-means itself (Lloyd's E and M steps, the EM of CommVQ without its additive
// structure), and since RoPE is orthogonal the same error holds after rotation at every
// position. With NORM pairing a rope-comm codebook of c channels therefore equals the pre-RoPE
// k-means codebook of the same config and seed; what changes is how the cache scores it.
// NEOX models pair (i, i + d/2), which contiguous groups split; they are refused.
#pragma once

#include <span>
#include <string>

#include "quant/codebook.h"
#include "quant/kmeans.h"
#include "util/tensor.h"

namespace cqkv {

// Why a rope-comm codebook of `config` cannot serve heads of `head_dim` channels whose RoPE
// pairs (i, i + d/2) when `neox`, else (2i, 2i + 1) (kernels/rope.h, above this layer): odd group
// size, group not dividing the head, NEOX pairing; or "" when it can.
std::string RopeCommUnsupported(const CqConfig& config, int head_dim, bool neox);

// Fits one group's rope-comm centroids to pre-RoPE key rows x (n, c) with per-row Fisher
// weights (empty = uniform): the constrained optimum above, weighted k-means. Throws
// cqkv::Error when c is odd.
KMeansResult FitRopeCommGroup(ConstMat x, std::span<const float> weights,
                              const KMeansParams& params);

}  // namespace cqkv
