#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Both paths (row dots for few tokens, blocked sgemm for many) against the double-accumulating
// reference, for every stored type. fp32 reordering over cols <= 200 keeps relative error far
// below 1e-5 of the row's magnitude.
TEST(MatMul, MatchesReferenceForEveryTypeAndPath) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int64_t rows = 130, cols = 192;  // rows not a multiple of the 64-row gemm block
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (auto& v : wf) v = nd(rng);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    std::vector<uint8_t> bytes(static_cast<size_t>(DTypeRowBytes(t, cols) * rows));
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = wf.data() + r * cols;
      uint8_t* dst = bytes.data() + r * DTypeRowBytes(t, cols);
      QuantizeRow(t, src, cols, dst);
    }
    WeightMatrix w{t, rows, cols, bytes.data(), "w"};
    ThreadPool pool(2);
    for (int64_t n : {1, 3, 8, 33}) {
      std::vector<float> x(static_cast<size_t>(n * cols)), y(static_cast<size_t>(n * rows)),
          y_ref(y.size());
      for (auto& v : x) v = nd(rng);
      MatMul(ConstMat(x.data(), n, cols), w, Mat(y.data(), n, rows), pool);
      MatMulRef(ConstMat(x.data(), n, cols), w, Mat(y_ref.data(), n, rows));
      double max_diff = 0, max_ref = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(double(y[i]) - y_ref[i]));
        max_ref = std::max(max_ref, std::fabs(double(y_ref[i])));
      }
      EXPECT_LT(max_diff / max_ref, 1e-5) << DTypeName(t) << " n=" << n;
    }
  }
}

TEST(MatMul, ShapeMismatchNamesTensor) {
  std::vector<float> w(6), x(4), y(2);
  WeightMatrix wm{DType::kF32, 2, 3, w.data(), "blk.0.attn_q.weight"};
  ThreadPool pool(1);
  try {
    MatMul(ConstMat(x.data(), 1, 4), wm, Mat(y.data(), 1, 2), pool);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos);
  }
}

}  // namespace
}  // namespace cqkv
