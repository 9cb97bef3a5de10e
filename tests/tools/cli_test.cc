// Bad input to the cqkv tool: one clear error line naming the culprit and a non-zero exit,
// never a crash. Runs the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
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

// Issue 12: flags and inputs a hostile or careless user gives. Each is one "cqkv: error:" line
// naming the flag or file, exit 1 (our check) or 2 (the parser's), never "internal error".
namespace cqkv {
namespace {

void ExpectFlagError(const RunResult& r, const std::string& needle) {
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << r.exit_code << " " << r.output;
  EXPECT_NE(r.output.find("cqkv: error: "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "'" << needle << "' not in " << r.output;
}

TEST(CliHardening, NumericFlagsAreRangeChecked) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string m = "-m " + testing::SharedPath(kStories);
  const auto data = WriteTemp("hard.txt", "Once upon a time there was a cat. Once upon a time. ");
  const std::string ppl = "perplexity " + m + " --data " + data + " --ctx 8 ";
  ExpectFlagError(RunCqkv(ppl + "--max-windows 0"), "--max-windows");
  ExpectFlagError(RunCqkv(ppl + "--max-windows -5"), "--max-windows");
  ExpectFlagError(RunCqkv(ppl + "-b 0"), "--batch");
  const std::string gen = "generate " + m + " -p hi ";
  ExpectFlagError(RunCqkv(gen + "--temp nan"), "--temp");
  ExpectFlagError(RunCqkv(gen + "--temp -1"), "--temp");
  ExpectFlagError(RunCqkv(gen + "--top-p 2"), "--top-p");
  ExpectFlagError(RunCqkv(gen + "--top-k -5"), "--top-k");
  ExpectFlagError(RunCqkv(gen + "-n -1"), "-n");
  ExpectFlagError(RunCqkv(gen + "-n 0"), "-n");
  ExpectFlagError(RunCqkv(gen + "-t 100000"), "--threads");
  ExpectFlagError(RunCqkv(gen + "-t -1"), "--threads");
  ExpectFlagError(RunCqkv(gen + "-t 2x"), "--threads");
  ExpectFlagError(RunCqkv("serve " + m + " --port 0 --page-tokens 100"), "--page-tokens");
}

TEST(CliHardening, TokenListsAreStrict) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string base =
      "logits -m " + testing::SharedPath(kStories) + " -o " + ::testing::TempDir() + "/l.bin ";
  ExpectFlagError(RunCqkv(base + "--tokens 1x,2"), "--tokens: '1x'");
  ExpectFlagError(RunCqkv(base + "--tokens 1,,2"), "--tokens: ''");
  ExpectFlagError(RunCqkv(base + "--tokens 1,-2"), "--tokens: '-2'");
  ExpectFlagError(RunCqkv(base + "--tokens 99999999999"), "--tokens");
  ExpectFlagError(RunCqkv(base + "--tokens 1,512"), "token id 512 is outside the vocabulary");
  EXPECT_EQ(RunCqkv(base + "--tokens 1,2").exit_code, 0);
}

TEST(CliHardening, EmptyOutputPathsAndDirectoriesAsData) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string m = "-m " + testing::SharedPath(kStories);
  ExpectFlagError(RunCqkv("logits " + m + " --tokens 1,2 -o ''"), "--out");
  ExpectFlagError(RunCqkv("convert " + m + " -o ''"), "--out");
  ExpectFlagError(RunCqkv("perplexity " + m + " --data " + ::testing::TempDir()), "is a directory");
  ExpectFlagError(RunCqkv("perplexity " + m + " --data 'x.jsonl:99999999999999999999:'"), "--data");
}

// Each of these read /dev/zero until memory ran out.
TEST(CliHardening, DevicesAreRefusedNotReadForever) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string m = "-m " + testing::SharedPath(kStories);
  ExpectFlagError(RunCqkv("perplexity " + m + " --data /dev/zero"), "not a regular file");
  ExpectFlagError(RunCqkv("tokenize " + m + " --text-file /dev/zero"), "not a regular file");
  ExpectFlagError(RunCqkv("tokenize " + m + " --tokenizer /dev/zero --text hi"),
                  "not a regular file");
  const auto data = WriteTemp("dz.txt", "Once upon a time there was a cat. Once upon a time. ");
  ExpectFlagError(RunCqkv("perplexity " + m + " --data " + data + " --ctx 8 --kv cq:/dev/zero"),
                  "not a regular file");
  // '-' is the explicit stream.
  const auto r = RunCqkv("tokenize " + m + " --text-file - < " + data);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A newline in a file's string used to forge a second "cqkv: error:" line; a NUL cut it short.
TEST(CliHardening, FileStringsCannotForgeErrorLines) {
  std::string b = "GGUF";
  auto put32 = [&b](uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  auto put64 = [&b](uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); };
  const std::string key = std::string("evil\ncqkv: error: forged\0tail", 29);
  put32(3);
  put64(0);
  put64(2);
  for (int i = 0; i < 2; ++i) {  // a duplicate key, so the error quotes it
    put64(key.size());
    b += key;
    put32(4);
    put32(1);
  }
  const auto path = WriteTemp("forge.gguf", b);
  const auto r = RunCqkv("info -m " + path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.find("\ncqkv: error: forged"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("evil\\ncqkv: error: forged\\x00tail"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

// The old writer opened PATH.tmp with truncation, following a symlink planted there.
TEST(CliHardening, PlantedTempSymlinkIsNotFollowed) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string dir = ::testing::TempDir() + "/planted";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string victim = dir + "/victim.txt";
  std::ofstream(victim) << "precious";
  std::filesystem::create_symlink(victim, dir + "/out.bin.tmp");
  const auto r = RunCqkv("logits -m " + testing::SharedPath(kStories) + " --tokens 1,2 -o " + dir +
                         "/out.bin");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(victim);
  std::string body((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(body, "precious");
  EXPECT_EQ(std::filesystem::file_size(dir + "/out.bin"), 2u * 512u * 4u);
}

// A model claiming a 2^30-token context: runs allocate for what they use (a pre-RoPE CQ cache's
// RoPE table was sized by the claim: 2^30 x head_dim floats, std::bad_alloc), and asking for more
// context than the model has is an error naming it.
TEST(CliHardening, HugeClaimedContextDoesNotSizeAllocations) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string dir = ::testing::TempDir();
  const std::string gguf = dir + "/bigctx.gguf";
  ASSERT_EQ(RunCqkv("convert -m " + testing::SharedPath(kStories) + " -o " + gguf).exit_code, 0);
  std::string bytes;
  {
    std::ifstream in(gguf, std::ios::binary);
    bytes.assign((std::istreambuf_iterator<char>(in)), {});
  }
  const std::string key = "llama.context_length";
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const uint32_t huge = 1u << 30;
  std::memcpy(bytes.data() + at + key.size() + 4, &huge, 4);  // after the uint32 type tag
  {
    std::ofstream(gguf, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::string text;
  for (int i = 0; i < 20; ++i) text += "Once upon a time, there was a little girl named Lily. ";
  const auto data = WriteTemp("bigctx.txt", text);
  const std::string cb = dir + "/bigctx_pre.cqcb";
  const auto cal = RunCqkv("calibrate -q -m " + gguf + " --data " + data +
                           " --config 4c4b --tokens 2x32 --keys pre-rope -o " + cb);
  ASSERT_EQ(cal.exit_code, 0) << cal.output;
  const auto gen = RunCqkv("generate -m " + gguf + " -p Once -n 4 --kv cq:" + cb);
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
  const auto info = RunCqkv("info -m " + gguf + " --kv int4-channel");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  ExpectFlagError(RunCqkv("serve -m " + testing::SharedPath(kStories) + " --ctx 100000 --port 0"),
                  "context of 100000 tokens was requested");
}

// Running out of memory is the user's request being too large, not an internal error. (Skipped
// under AddressSanitizer, which cannot run in a small address space.)
#if !defined(__SANITIZE_ADDRESS__) && !defined(CQKV_SANITIZE)
TEST(CliHardening, OutOfMemoryIsAClearError) {
  const std::string cmd = "ulimit -v 1000000; " + std::string(CQKV_BINARY) +
                          " bench-attn --ctx 100000000 --batch 4 --formats fp16 --reps 1 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << out;
  EXPECT_NE(out.find("cqkv: error: out of memory"), std::string::npos) << out;
  EXPECT_EQ(out.find("internal error"), std::string::npos) << out;
}
#endif

}  // namespace
}  // namespace cqkv

// Issue 11.4: `calibrate` takes a --data list (each item checked against the evaluation text),
// spills per layer by default with the same codebooks as --in-memory, and reports peak RSS.
namespace cqkv {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(Cli, CalibrateDataListSpillEqualsInMemoryAndReportsPeakRss) {
  CQKV_REQUIRE_SHARED(kStories);
  const std::string model = testing::SharedPath(kStories);
  std::string a, b;
  for (int i = 0; i < 30; ++i) a += "Once upon a time, there was a little girl named Lily. ";
  for (int i = 0; i < 30; ++i) b += "The dog ran to the park and played with a red ball. ";
  const std::string list = WriteTemp("calib_a.txt", a) + "," + WriteTemp("calib_b.txt", b);
  const std::string dir = ::testing::TempDir();
  const std::string common = "calibrate -q -m " + model + " --data " + list +
                             " --config 2c4b --tokens 3x64 --fisher --spill-dir " + dir;
  const auto spilled =
      RunCqkv(common + " -o " + dir + "/list_spill.cqcb --json " + dir + "/list_spill.json");
  ASSERT_EQ(spilled.exit_code, 0) << spilled.output;
  EXPECT_NE(spilled.output.find("peak RSS"), std::string::npos) << spilled.output;
  const auto kept = RunCqkv(common + " --in-memory -o " + dir + "/list_mem.cqcb");
  ASSERT_EQ(kept.exit_code, 0) << kept.output;
  EXPECT_EQ(ReadAll(dir + "/list_spill.cqcb"), ReadAll(dir + "/list_mem.cqcb"));
  const std::string json = ReadAll(dir + "/list_spill.json");
  EXPECT_NE(json.find("\"peak_rss_bytes\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"spill_bytes\""), std::string::npos) << json;
  // Every listed file is checked, and the synthetic model excludes -m.
  ExpectCleanError(RunCqkv("calibrate -m " + model + " --data " + list + "," +
                           testing::SharedPath("data/wikitext-2/wiki.test.raw") + " -o /dev/null"),
                   "wiki.test.raw");
  ExpectCleanError(
      RunCqkv("calibrate -m " + model + " --synthetic 7b --data " + list + " -o /dev/null"),
      "--synthetic");
  ExpectCleanError(RunCqkv("calibrate -m " + model + " --data " + list + ", -o /dev/null"),
                   "empty item");
}

}  // namespace
}  // namespace cqkv
