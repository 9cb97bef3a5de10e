// Where calibration keeps each (layer, K/V) k-means problem's rows between the windows that
// produce them and the fit that consumes them: in memory (every layer at once), or in files
// under a private temporary directory so that only the problem being fitted is in memory.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cqkv {

class ActivationSpill {
 public:
  // `dir` empty: in memory. Otherwise a fresh directory DIR/cqkv-calibrate-XXXXXX (mkdtemp) is
  // created and, with everything in it, removed by the destructor, also when calibration
  // throws. Throws cqkv::Error naming `dir` when it cannot be created.
  ActivationSpill(int n_problems, const std::string& dir);
  ~ActivationSpill();
  ActivationSpill(const ActivationSpill&) = delete;
  ActivationSpill& operator=(const ActivationSpill&) = delete;

  // Appends rows to `problem`: x (activations) and w (their k-means weights; may be empty).
  // Throws naming the file when a write fails (e.g. the disk is full).
  void Append(int problem, std::span<const float> x, std::span<const float> w);
  // Moves everything appended to `problem` into x and w and releases it (memory or file), so
  // each problem can be taken once.
  void Take(int problem, std::vector<float>* x, std::vector<float>* w);

  // Part of a problem without taking all of it: the floats appended to `problem` so far, and
  // `out.size()` of them from float `offset` on, of the activations (`weights` false) or the
  // weights. Several threads may read at once (no Append meanwhile). Throws naming the file
  // when it is shorter than offset + out.size().
  int64_t Size(int problem, bool weights) const;
  void Read(int problem, bool weights, int64_t offset, std::span<float> out) const;
  // Drops what was appended to `problem` (memory or file) after its last Read.
  void Release(int problem);

  // The temporary directory ("" in memory) and the bytes written to it so far.
  const std::string& path() const { return path_; }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  std::string FileName(int problem, char kind) const;

  std::string path_;
  int64_t bytes_written_ = 0;
  std::vector<std::vector<float>> x_, w_;  // in memory only
};

}  // namespace cqkv
