// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0 format) for the tokenizer tests: a
// .inp file of cases separated by "\n__ggml_vocab_test__\n" and a .out file with one line of
// space-separated ids per case.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "util/mapped_file.h"

namespace cqkv::testing {

struct VectorCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::string IdList(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s.push_back(' ');
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

inline std::vector<VectorCase> ReadVectorCases(const std::string& gguf_path) {
  const std::string raw = ReadFile(gguf_path + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(gguf_path + ".out");
  std::vector<VectorCase> cases;
  for (std::string line; std::getline(out, line);) {
    VectorCase c;
    std::istringstream ss(line);
    for (int32_t id; ss >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(inputs.size(), cases.size()) << gguf_path;
  cases.resize(std::min(inputs.size(), cases.size()));
  for (size_t i = 0; i < cases.size(); ++i) cases[i].text = inputs[i];
  return cases;
}

}  // namespace cqkv::testing
