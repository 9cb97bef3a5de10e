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
// while sgemm would first widen the block to fp32. F32 weights need no widening, so sgemm wins
// from 8 tokens (cq-tiny, batch of 16: 1640 vs 1160 tok/s); widened types keep the row-dot path
// longer (7B-shaped F16, batch of 8: 2.45x over one-after-another with row-dot, 1.65x with sgemm).
int64_t GemmMinTokens(DType t) { return t == DType::kF32 ? 8 : 16; }
// Rows of W widened per sgemm call: 64 rows x 4096 cols x 4 B = 1 MiB of scratch per thread.
constexpr int64_t kGemmRowBlock = 64;

// Columns of W per task: at most 512 (with 256-row blocks, 512 KiB of widened scratch per
// thread) and small enough to give every thread about four tasks.
constexpr int64_t kMaxColBlock = 512;
constexpr int64_t kTransposedRowBlock = 256;
void EnsureSingleThreadedBlas() {
  // We split W's rows (or columns) across our own threads; OpenBLAS threads on top would
  // oversubscribe -t N.
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
  if (n < GemmMinTokens(w.type)) {
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

void MatMulTransposed(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool, bool accumulate) {
  CQKV_CHECK(x.cols == w.rows && y.cols == w.cols && x.rows == y.rows,
             "transposed matmul shape mismatch for tensor '{}': x ({}x{}), W ({}x{}), y ({}x{})",
             w.name, x.rows, x.cols, w.rows, w.cols, y.rows, y.cols);
  const int64_t n = x.rows;
  if (n == 0 || w.cols == 0) return;
  EnsureSingleThreadedBlas();
  // Column chunks start on a quantisation block so a chunk of a row can be widened on its own.
  const int64_t align = std::max<int64_t>(DTypeBlockSize(w.type), 16);
  int64_t nc = (w.cols + 4 * pool.size() - 1) / (4 * pool.size());
  nc = std::min(kMaxColBlock, (nc + align - 1) / align * align);
  const int64_t n_chunks = (w.cols + nc - 1) / nc;
  pool.ParallelFor(n_chunks, 1, [&](int64_t ch0, int64_t ch1, int) {
    std::vector<float> scratch;
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t c0 = ch * nc;
      const int64_t ncols = std::min(nc, w.cols - c0);
      if (w.type == DType::kF32) {
        // y[:, c0:c0+ncols] = x (n x rows) * W[:, c0:c0+ncols] (rows x ncols)
        const float* wf = static_cast<const float*>(w.data) + c0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                    static_cast<int>(ncols), static_cast<int>(w.rows), 1.0f, x.data,
                    static_cast<int>(x.stride), wf, static_cast<int>(w.cols),
                    accumulate ? 1.0f : 0.0f, y.data + c0, static_cast<int>(y.stride));
        continue;
      }
      const int64_t col_bytes = DTypeRowBytes(w.type, c0);
      for (int64_t r0 = 0; r0 < w.rows; r0 += kTransposedRowBlock) {
        const int64_t nr = std::min(kTransposedRowBlock, w.rows - r0);
        scratch.resize(static_cast<size_t>(nr * ncols));  // (nr, ncols) widened block of W
        for (int64_t r = 0; r < nr; ++r) {
          DequantizeRow(w.type, w.RowPtr(r0 + r) + col_bytes, ncols, scratch.data() + r * ncols);
        }
        const float beta = (r0 == 0 && !accumulate) ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                    static_cast<int>(ncols), static_cast<int>(nr), 1.0f, x.data + r0,
                    static_cast<int>(x.stride), scratch.data(), static_cast<int>(ncols), beta,
                    y.data + c0, static_cast<int>(y.stride));
      }
    }
  });
}

void MatMulTransposedRef(ConstMat x, const WeightMatrix& w, Mat y) {
  CQKV_CHECK(x.cols == w.rows && y.cols == w.cols && x.rows == y.rows,
             "transposed matmul shape mismatch for tensor '{}'", w.name);
  std::vector<float> wf(static_cast<size_t>(w.rows * w.cols));  // (rows, cols)
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRowRef(w.type, w.RowPtr(r), w.cols, wf.data() + r * w.cols);
  }
  for (int64_t i = 0; i < x.rows; ++i) {
    for (int64_t c = 0; c < w.cols; ++c) {
      double s = 0;
      for (int64_t r = 0; r < w.rows; ++r) s += static_cast<double>(x(i, r)) * wf[r * w.cols + c];
      y(i, c) = static_cast<float>(s);
    }
  }
}

}  // namespace cqkv
