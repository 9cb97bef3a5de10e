// Bad input to the cqkv tool: one clear error line naming the culprit and a non-zero exit,
// never a crash. Runs the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.h"

namespace cqkv {
namespace {

struct RunResult {
  int exit_code;
  std::string output;  // stdout + stderr
};

RunResult RunCqkv(const std::string& args) {
  const std::string cmd = std::string(CQKV_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// A failure must be reported by us (exit 1, "cqkv: error: ...") naming `needle`.
void ExpectCleanError(const RunResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cqkv: error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
}

const char* kStories = "models/stories260K/model.bin";

TEST(Cli, UnknownFlagIsRejected) {
  CQKV_REQUIRE_SHARED(kStories);
  const auto r =
      RunCqkv("perplexity -m " + testing::SharedPath(kStories) + " --data x.txt --bogus-flag 3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("cqkv: error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--bogus-flag"), std::string::npos) << r.output;
}

TEST(Cli, HelpListsSubcommands) {
  const auto r = RunCqkv("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"perplexity", "generate", "convert", "tokenize", "logits", "info"}) {
    EXPECT_NE(r.output.find(sub), std::string::npos) << sub;
  }
}

TEST(Cli, TruncatedOrForeignModelFiles) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string model = testing::SharedPath(kStories);
  std::ifstream in(model, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const auto trunc = WriteTemp("trunc.bin", bytes.substr(0, bytes.size() / 2));
  ExpectCleanError(RunCqkv("info -m " + trunc), "trunc.bin");
  const auto text = WriteTemp("notamodel.txt", "hello, I am plain text and not a model at all\n");
  ExpectCleanError(RunCqkv("info -m " + text), "notamodel.txt");
  const auto gguf_head = WriteTemp("trunc.gguf", std::string("GGUF\x03\0\0\0", 8));
  ExpectCleanError(RunCqkv("info -m " + gguf_head), "trunc.gguf");
  const std::string gguf = testing::SharedPath("models/stories260K/stories260K.llamacpp.gguf");
  if (std::filesystem::exists(gguf)) {
    std::ifstream gin(gguf, std::ios::binary);
    std::string gbytes((std::istreambuf_iterator<char>(gin)), {});
    const auto gtrunc = WriteTemp("half.gguf", gbytes.substr(0, gbytes.size() - 1000));
    ExpectCleanError(RunCqkv("info -m " + gtrunc), "half.gguf");
  }
}

TEST(Cli, ContextLongerThanModelIsAnError) {
  CQKV_REQUIRE_SHARED(kStories);
  const auto data = WriteTemp("story.txt", "Once upon a time there was a cat. ");
  ExpectCleanError(
      RunCqkv("perplexity -m " + testing::SharedPath(kStories) + " --data " + data + " --ctx 4096"),
      "--ctx 4096");
}

TEST(Cli, EmptyDataFileIsAnError) {
  CQKV_REQUIRE_SHARED(kStories);
  const auto data = WriteTemp("empty.txt", "");
  ExpectCleanError(RunCqkv("perplexity -m " + testing::SharedPath(kStories) + " --data " + data),
                   "empty.txt");
}

TEST(Cli, UnknownKvFormatIsAnError) {
  CQKV_REQUIRE_SHARED(kStories);
  ExpectCleanError(
      RunCqkv("generate -m " + testing::SharedPath(kStories) + " -p hi -n 2 --kv int3-bogus"),
      "int3-bogus");
}

TEST(Cli, PerplexityWritesJson) {
  CQKV_REQUIRE_SHARED(kStories);
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Once upon a time, there was a little girl named Lily. ";
  const auto data = WriteTemp("stories.txt", text);
  const std::string json = ::testing::TempDir() + "/ppl.json";
  const auto r = RunCqkv("perplexity -q -t 2 -m " + testing::SharedPath(kStories) + " --data " +
                         data + " --ctx 64 --kl-base fp32 --kv fp16 --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(json);
  std::string body((std::istreambuf_iterator<char>(in)), {});
  for (const char* key : {"\"ppl\"", "\"nll\"", "\"tokens\"", "\"windows\"", "\"ctx\"", "\"kv\"",
                          "\"model\"", "\"seconds\"", "\"kld\"", "\"top1_agree\""}) {
    EXPECT_NE(body.find(key), std::string::npos) << key << " missing in " << body;
  }
}

}  // namespace
}  // namespace cqkv

namespace cqkv {
namespace {

TEST(Cli, CalibrateRefusesEvaluationText) {
  CQKV_REQUIRE_SHARED("models/stories260K/model.bin");
  const std::string model = testing::SharedPath("models/stories260K/model.bin");
  const auto wiki = RunCqkv("calibrate -m " + model + " --data " +
                            testing::SharedPath("data/wikitext-2/wiki.test.raw") + " -o /dev/null");
  ExpectCleanError(wiki, "wiki.test.raw");
  const auto c4 =
      RunCqkv("calibrate -m " + model + " --data " +
              testing::SharedPath("data/c4/c4_validation_1900.jsonl:1700:1900") + " -o /dev/null");
  ExpectCleanError(c4, "hold-out");
}

TEST(Cli, CodebookForAnotherModelIsRefused) {
  CQKV_REQUIRE_SHARED("models/stories260K/model.bin");
  CQKV_REQUIRE_SHARED("models/cq-tiny/model.bin");
  const std::string stories = testing::SharedPath("models/stories260K/model.bin");
  const std::string tiny = testing::SharedPath("models/cq-tiny/model.bin");
  const std::string cb = ::testing::TempDir() + "/stories_8c8b.cqcb";
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Once upon a time, there was a little girl named Lily. ";
  const auto data = WriteTemp("calib.txt", text);
  const auto made = RunCqkv("calibrate -q -m " + stories + " --data " + data +
                            " --config 8c8b --tokens 2x64 -o " + cb);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto ok =
      RunCqkv("perplexity -q -m " + stories + " --data " + data + " --ctx 64 --kv cq:" + cb);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  const auto wrong = RunCqkv("perplexity -q -m " + tiny + " --tokenizer " +
                             testing::SharedPath("tokenizers/llama2.tokenizer.bin") + " --data " +
                             data + " --ctx 64 --kv cq:" + cb);
  ExpectCleanError(wrong, "stories_8c8b.cqcb");
}

}  // namespace
}  // namespace cqkv
