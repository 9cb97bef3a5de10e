// y = x W^T for a stored weight matrix W (rows = output features) of any supported type.
// Few tokens (decode): threads split W's rows and dequantise-in-register dot products, so each
// weight byte is read once: this is the memory-bound path. Many tokens (prefill): each thread
// widens a block of W's rows to fp32 scratch and calls single-threaded BLAS sgemm on it, so
// quantised weights are never expanded in full (a 7B model would not fit in fp32).
#pragma once

#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

// x: (n, w.cols), y: (n, w.rows). y must not alias x.
void MatMul(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool);

// Scalar reference (double accumulation) for tests.
void MatMulRef(ConstMat x, const WeightMatrix& w, Mat y);

// y = x W (+ y when `accumulate`), the input gradient of y' = x' W^T: x (n, w.rows),
// y (n, w.cols). Threads split W's columns; quantised weights are widened one block of rows at a
// time per thread (never in full) and multiplied with single-threaded BLAS sgemm.
void MatMulTransposed(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool,
                      bool accumulate = false);
// Scalar reference (double accumulation) for tests.
void MatMulTransposedRef(ConstMat x, const WeightMatrix& w, Mat y);

}  // namespace cqkv
