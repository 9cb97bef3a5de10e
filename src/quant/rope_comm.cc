#include "quant/rope_comm.h"

#include <fmt/format.h>

#include "util/error.h"

namespace cqkv {

std::string RopeCommUnsupported(const CqConfig& config, int head_dim, bool neox) {
  if (config.channels % 2 != 0) {
    return fmt::format(
        "rope-comm keys need whole RoPE pairs per group: config {} has an odd "
        "group size",
        config.Name());
  }
  if (head_dim % config.channels != 0) {
    return fmt::format("rope-comm keys: group size {} does not divide head dim {}", config.channels,
                       head_dim);
  }
  if (neox) {
    return "rope-comm keys need NORM RoPE pairing (consecutive channel pairs); this model "
           "rotates (i, i + d/2) (NEOX), whose pairs straddle CQ groups";
  }
  return "";
}

KMeansResult FitRopeCommGroup(ConstMat x, std::span<const float> weights,
                              const KMeansParams& params) {
  CQKV_CHECK(x.cols % 2 == 0, "rope-comm fit: groups of {} channels are not whole RoPE pairs",
             x.cols);
  return KMeans(x, weights, params, nullptr);
}

}  // namespace cqkv
