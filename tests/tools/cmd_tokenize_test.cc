// `cqkv tokenize` on a tokenizer file alone (no -m): a vocabulary-only GGUF, a tokenizer.json and
// a llama2.c tokenizer.bin, checked against llama.cpp's test vectors and known ids; the
// --parse-special flag; clear errors. Runs the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>

#include "../tokenizer/vector_cases.h"
#include "test_util.h"

namespace cqkv {
namespace {

struct CliRun {
  int exit_code;
  std::string out;  // stdout only
  std::string all;  // stdout + stderr
};

CliRun Cqkv(const std::string& args) {
  const std::string err = ::testing::TempDir() + "/cmd_tokenize_stderr.txt";
  const std::string cmd = std::string(CQKV_BINARY) + " " + args + " 2>" + err;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  std::ifstream e(err);
  const std::string errs((std::istreambuf_iterator<char>(e)), {});
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out, out + errs};
}

std::vector<int32_t> Ids(const CliRun& r) {
  std::vector<int32_t> ids;
  for (const auto& v : nlohmann::json::parse(r.out)) ids.push_back(v.get<int32_t>());
  return ids;
}

std::string TextFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(CmdTokenize, VocabOnlyGgufMatchesVectors) {
  for (const std::string name : {"llama-bpe", "qwen2"}) {
    const std::string rel = "tests/tokenizer-vectors/ggml-vocab-" + name + ".gguf";
    if (!testing::HaveShared(rel)) GTEST_SKIP() << "shared tokenizer vectors absent";
    const auto cases = testing::ReadVectorCases(testing::SharedPath(rel));
    // Every fifth case keeps the test short; the in-process tests cover all of them.
    for (size_t i = 0; i < cases.size(); i += 5) {
      const std::string f = TextFile("case.txt", cases[i].text);
      const CliRun r = Cqkv("tokenize --tokenizer " + testing::SharedPath(rel) + " --text-file " +
                            f + " --no-bos");
      ASSERT_EQ(r.exit_code, 0) << r.all;
      EXPECT_EQ(testing::IdList(Ids(r)), testing::IdList(cases[i].ids))
          << name << " case " << i << ": '" << cases[i].text << "'";
    }
  }
}

TEST(CmdTokenize, ParseSpecialFlag) {
  const std::string rel = "tests/tokenizer-vectors/ggml-vocab-qwen2.gguf";
  if (!testing::HaveShared(rel)) GTEST_SKIP() << "shared tokenizer vectors absent";
  const std::string base = "tokenize --tokenizer " + testing::SharedPath(rel) + " --no-bos ";
  const CliRun special = Cqkv(base + "--parse-special --text '<|im_start|>user'");
  ASSERT_EQ(special.exit_code, 0) << special.all;
  const std::vector<int32_t> ids = Ids(special);
  ASSERT_EQ(ids.size(), 2u) << special.out;
  EXPECT_EQ(ids[0], 151644);
  const CliRun plain = Cqkv(base + "--text '<|im_start|>user'");
  ASSERT_EQ(plain.exit_code, 0) << plain.all;
  EXPECT_GT(Ids(plain).size(), 3u) << plain.out;
  EXPECT_NE(Ids(plain)[0], 151644);
}

TEST(CmdTokenize, TokenizerJsonAndLlama2cBin) {
  if (testing::HaveShared("tokenizers/smollm2.tokenizer.json")) {
    const CliRun r =
        Cqkv("tokenize --tokenizer " + testing::SharedPath("tokenizers/smollm2.tokenizer.json") +
             " --no-bos --pieces --text 'Hello world'");
    ASSERT_EQ(r.exit_code, 0) << r.all;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u) << r.out;
    EXPECT_EQ(j[1][1], " world");
  }
  if (testing::HaveShared("tokenizers/llama2.tokenizer.bin")) {
    const CliRun r =
        Cqkv("tokenize --tokenizer " + testing::SharedPath("tokenizers/llama2.tokenizer.bin") +
             " --text 'Hello world'");
    ASSERT_EQ(r.exit_code, 0) << r.all;
    EXPECT_EQ(testing::IdList(Ids(r)), "[1 15043 3186]");  // LLaMA-2's ids, BOS first
  }
}

TEST(CmdTokenize, NeedsModelOrTokenizer) {
  const CliRun r = Cqkv("tokenize --text hi");
  EXPECT_EQ(r.exit_code, 1) << r.all;
  EXPECT_NE(r.all.find("--tokenizer"), std::string::npos) << r.all;
}

}  // namespace
}  // namespace cqkv
