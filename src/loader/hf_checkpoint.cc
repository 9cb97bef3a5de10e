#include "loader/hf_checkpoint.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

// Shard names come from a file the user did not write: only plain names inside the folder.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

// tensor name -> shard file name, from model.safetensors.index.json.
std::map<std::string, std::string> ReadWeightMap(const std::string& path) {
  Json j;
  try {
    j = Json::parse(ReadFile(path));
  } catch (const Json::exception& e) {
    Fail("{}: not valid JSON: {}", path, e.what());
  }
  CQKV_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
             "{}: no \"weight_map\" object", path);
  std::map<std::string, std::string> map;
  for (const auto& [tensor, file] : j["weight_map"].items()) {
    CQKV_CHECK(file.is_string() && IsPlainFileName(file.get<std::string>()),
               "{}: tensor '{}' maps to {}, not a file name inside the folder", path, tensor,
               file.dump());
    map[tensor] = file.get<std::string>();
  }
  CQKV_CHECK(!map.empty(), "{}: \"weight_map\" is empty", path);
  return map;
}

}  // namespace

std::shared_ptr<const HfCheckpoint> HfCheckpoint::Open(const std::string& dir) {
  return std::make_shared<const HfCheckpoint>(dir);
}

HfCheckpoint::HfCheckpoint(const std::string& dir) : dir_(dir) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    AddShard(single.string());
    return;
  }
  CQKV_CHECK(fs::exists(index), "{}: neither model.safetensors nor model.safetensors.index.json",
             dir);
  const std::string index_path = index.string();
  const std::map<std::string, std::string> weight_map = ReadWeightMap(index_path);
  std::set<std::string> files;
  for (const auto& [tensor, file] : weight_map) files.insert(file);
  for (const std::string& file : files) {
    const fs::path p = fs::path(dir) / file;
    CQKV_CHECK(fs::exists(p), "{}: shard '{}' listed in the index is missing", index_path, file);
    AddShard(p.string());
  }
  for (const auto& [tensor, file] : weight_map) {
    CQKV_CHECK(tensors_.count(tensor) != 0,
               "{}: tensor '{}' is listed in the index for '{}' but that file does not have it",
               index_path, tensor, file);
    CQKV_CHECK(fs::path(*file_of_.at(tensor)).filename() == file,
               "{}: tensor '{}' is in {} but the index puts it in '{}'", index_path, tensor,
               *file_of_.at(tensor), file);
  }
  for (const auto& [tensor, path] : file_of_) {
    CQKV_CHECK(weight_map.count(tensor) != 0, "{}: tensor '{}' is not listed in {}", *path, tensor,
               index_path);
  }
}

void HfCheckpoint::AddShard(const std::string& path) {
  const auto& shard = shards_.emplace_back(SafetensorsFile::Open(path));
  for (const auto& [name, t] : shard->tensors()) {
    const auto [it, inserted] = tensors_.emplace(name, &t);
    CQKV_CHECK(inserted, "{}: tensor '{}' is also in {}", path, name, *file_of_.at(name));
    file_of_[name] = &shard->path();
  }
}

const SafetensorsTensor* HfCheckpoint::Find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

const std::string& HfCheckpoint::FileOf(const std::string& name) const {
  const auto it = file_of_.find(name);
  return it == file_of_.end() ? dir_ : *it->second;
}

std::vector<std::string> HfCheckpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

}  // namespace cqkv
