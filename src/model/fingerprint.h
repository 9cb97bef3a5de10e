// A 64-bit identity of a model's weights, so artefacts learned on one model (CQ codebooks) are
// refused for another of the same shape. Hashes the configuration and a sample of every layer's
// K and V projection bytes (the weights that produce the cached activations).
#pragma once

#include <cstdint>

#include "model/model.h"

namespace cqkv {

uint64_t ModelFingerprint(const Model& model);

}  // namespace cqkv
