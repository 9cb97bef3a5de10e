// The safetensors files of a Hugging Face checkpoint folder: `model.safetensors`, or the shards
// listed by `model.safetensors.index.json`. Each shard stays mapped as long as the checkpoint
// (and the Model holding it) lives; tensors are looked up by name across all shards.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loader/safetensors.h"

namespace cqkv {

class HfCheckpoint {
 public:
  // Opens `dir`'s weights. With an index, every shard it names is opened (names must be plain
  // file names inside `dir`), every tensor must be in the shard the index says and every tensor
  // of a shard must be listed; a tensor name may occur in one shard only. Throws cqkv::Error
  // naming the file and tensor at fault.
  static std::shared_ptr<const HfCheckpoint> Open(const std::string& dir);

  // nullptr when absent.
  const SafetensorsTensor* Find(const std::string& name) const;
  // The shard file holding `name` (for error messages).
  const std::string& FileOf(const std::string& name) const;
  // Every tensor name, sorted.
  std::vector<std::string> Names() const;
  const std::string& dir() const { return dir_; }

  explicit HfCheckpoint(const std::string& dir);  // use Open

 private:
  void AddShard(const std::string& path);

  std::string dir_;
  std::vector<std::shared_ptr<const SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsTensor*> tensors_;
  std::map<std::string, const std::string*> file_of_;  // tensor name -> its shard's path
};

}  // namespace cqkv
