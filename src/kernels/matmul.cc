#include "kernels/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/dequant.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Below this many tokens the row-dot path wins: it streams each weight row once for all tokens,
// while sgemm would first widen the block to fp32.
constexpr int64_t kGemmMinTokens = 8;
// Rows of W widened per sgemm call: 64 rows x 4096 cols x 4 B = 1 MiB of scratch per thread.
constexpr int64_t kGemmRowBlock = 64;

void EnsureSingleThreadedBlas() {
  // We parallelise across W's rows ourselves; OpenBLAS threads on top would oversubscribe -t N.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void CheckShapes(ConstMat x, const WeightMatrix& w, Mat y) {
  CQKV_CHECK(x.cols == w.cols && y.cols == w.rows && x.rows == y.rows,
             "matmul shape mismatch for tensor '{}': x ({}x{}), W ({}x{}), y ({}x{})", w.name,
             x.rows, x.cols, w.rows, w.cols, y.rows, y.cols);
}

}  // namespace

void MatMul(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool) {
  CheckShapes(x, w, y);
  const int64_t n = x.rows;
  if (n < kGemmMinTokens) {
    pool.ParallelFor(w.rows, 16, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = w.RowPtr(r);
        for (int64_t i = 0; i < n; ++i) y(i, r) = DotRow(w.type, row, x.Row(i), w.cols);
      }
    });
    return;
  }
  EnsureSingleThreadedBlas();
  const int64_t n_blocks = (w.rows + kGemmRowBlock - 1) / kGemmRowBlock;
  pool.ParallelFor(n_blocks, 1, [&](int64_t b0, int64_t b1, int) {
    std::vector<float> scratch;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kGemmRowBlock;
      const int64_t nr = std::min(kGemmRowBlock, w.rows - r0);
      const float* wf;
      if (w.type == DType::kF32) {
        wf = reinterpret_cast<const float*>(w.RowPtr(r0));
      } else {
        scratch.resize(static_cast<size_t>(nr * w.cols));
        for (int64_t r = 0; r < nr; ++r) {
          DequantizeRow(w.type, w.RowPtr(r0 + r), w.cols, scratch.data() + r * w.cols);
        }
        wf = scratch.data();
      }
      // y[:, r0:r0+nr] = x (n x cols) * wf^T (cols x nr)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                  static_cast<int>(nr), static_cast<int>(w.cols), 1.0f, x.data,
                  static_cast<int>(x.stride), wf, static_cast<int>(w.cols), 0.0f, y.data + r0,
                  static_cast<int>(y.stride));
    }
  });
}

void MatMulRef(ConstMat x, const WeightMatrix& w, Mat y) {
  CheckShapes(x, w, y);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRowRef(w.type, w.RowPtr(r), w.cols, row.data());
    for (int64_t i = 0; i < x.rows; ++i) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c) s += static_cast<double>(row[c]) * x(i, c);
      y(i, r) = static_cast<float>(s);
    }
  }
}

}  // namespace cqkv
