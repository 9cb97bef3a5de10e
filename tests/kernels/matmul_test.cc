#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
#include "kernels/random_blocks.h"
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

// The block formats (256-element super-blocks and the 32-element fallbacks) through both MatMul
// paths and MatMulTransposed (calibration's backward pass), whose column chunks must start on a
// block: 768 columns = 3 super-blocks, split over 3 threads. Weights are random bytes with finite
// scales; same tolerances as above (fp32 reordering over <= 768 terms, far below 1e-5).
TEST(MatMul, BlockFormatsThroughEveryPath) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  const int64_t rows = 70, cols = 768;
  ThreadPool pool(3);
  for (const auto& f : testing::BlockFormats()) {
    std::vector<uint8_t> bytes;
    for (int64_t r = 0; r < rows; ++r) {
      const auto row = testing::RandomBlockRow(f, cols, rng);
      bytes.insert(bytes.end(), row.begin(), row.end());
    }
    const WeightMatrix w{f.type, rows, cols, bytes.data(), "w"};
    for (int64_t n : {1, 20}) {  // row dots, then widened blocks + sgemm
      std::vector<float> x(static_cast<size_t>(n * cols)), y(static_cast<size_t>(n * rows)),
          ref(y.size());
      for (auto& v : x) v = nd(rng);
      MatMul(ConstMat(x.data(), n, cols), w, Mat(y.data(), n, rows), pool);
      MatMulRef(ConstMat(x.data(), n, cols), w, Mat(ref.data(), n, rows));
      double max_diff = 0, max_ref = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(double(y[i]) - ref[i]));
        max_ref = std::max(max_ref, std::fabs(double(ref[i])));
      }
      EXPECT_LT(max_diff / max_ref, 1e-5) << DTypeName(f.type) << " n=" << n;

      std::vector<float> xt(static_cast<size_t>(n * rows)), yt(static_cast<size_t>(n * cols)),
          reft(yt.size());
      for (auto& v : xt) v = nd(rng);
      MatMulTransposed(ConstMat(xt.data(), n, rows), w, Mat(yt.data(), n, cols), pool);
      MatMulTransposedRef(ConstMat(xt.data(), n, rows), w, Mat(reft.data(), n, cols));
      max_diff = max_ref = 0;
      for (size_t i = 0; i < yt.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(double(yt[i]) - reft[i]));
        max_ref = std::max(max_ref, std::fabs(double(reft[i])));
      }
      EXPECT_LT(max_diff / max_ref, 1e-5) << DTypeName(f.type) << " transposed n=" << n;
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
