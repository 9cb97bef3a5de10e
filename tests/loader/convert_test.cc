// The GGUF path against the llama2.c path: llama.cpp's own conversion of stories260K and our
// `convert` output must run identically to the checkpoint they came from.
#include "loader/convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "gguf/gguf.h"
#include "model/llama.h"
#include "test_util.h"

namespace cqkv {
namespace {

const char* kCkpt = "models/stories260K/model.bin";
const char* kLlamaCppGguf = "models/stories260K/stories260K.llamacpp.gguf";

std::vector<float> Logits(const Model& m, const std::vector<int32_t>& ids) {
  ThreadPool pool(2);
  LlamaForward fwd(m, pool);
  auto cache = MakeCacheFor(m, "fp32", static_cast<int>(ids.size()));
  std::vector<float> out(ids.size() * m.config.vocab_size);
  fwd.Forward(ids, *cache, Mat(out.data(), static_cast<int64_t>(ids.size()), m.config.vocab_size));
  return out;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, mx = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(double(a[i]) - b[i]));
    mx = std::max(mx, std::fabs(double(a[i])));
  }
  return d / mx;
}

std::vector<int32_t> StoryIds(const Model& m) {
  return m.tok().Encode("Once upon a time, there was a little dog named Max. He liked to run.",
                        true);
}

// Same weights, same RoPE pairing, same vocabulary: identical logits. (Only the context length
// differs: llama.cpp's converter records its own default of 128.)
TEST(Convert, LlamaCppGgufRunsLikeTheCheckpoint) {
  CQKV_REQUIRE_SHARED(kCkpt);
  CQKV_REQUIRE_SHARED(kLlamaCppGguf);
  auto a = LoadModel(testing::SharedPath(kCkpt));
  auto b = LoadModel(testing::SharedPath(kLlamaCppGguf));
  EXPECT_EQ(b->config.max_seq_len, 128);
  const auto ids = StoryIds(*a);
  EXPECT_EQ(ids, StoryIds(*b));  // tokenizer.bin and the GGUF vocabulary agree
  EXPECT_EQ(MaxRelDiff(Logits(*a, ids), Logits(*b, ids)), 0.0);
}

TEST(Convert, F32RoundTripIsExactAndUsesLlamaCppKeys) {
  CQKV_REQUIRE_SHARED(kCkpt);
  CQKV_REQUIRE_SHARED(kLlamaCppGguf);
  auto src = LoadModel(testing::SharedPath(kCkpt));
  const std::string out = ::testing::TempDir() + "/stories_f32.gguf";
  WriteModelAsGguf(*src, src->tok().vocab(), out, ConvertOptions{});
  auto dst = LoadModel(out);
  EXPECT_EQ(dst->config.max_seq_len, 512);
  const auto ids = StoryIds(*src);
  EXPECT_EQ(ids, StoryIds(*dst));
  EXPECT_EQ(MaxRelDiff(Logits(*src, ids), Logits(*dst, ids)), 0.0);
  // Every key and tensor llama.cpp's converter wrote is in ours too, with the same tensor shapes.
  auto theirs = GgufFile::Open(testing::SharedPath(kLlamaCppGguf));
  auto ours = GgufFile::Open(out);
  for (const auto& [key, value] : theirs->metadata()) {
    if (key.find("seperator") != std::string::npos || key.find("padding") != std::string::npos) {
      continue;  // llama.cpp writes "no such token" (-1) placeholders we omit
    }
    EXPECT_TRUE(ours->Has(key)) << key;
  }
  for (const auto& t : theirs->tensors()) {
    const GgufTensorInfo* o = ours->FindTensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    EXPECT_EQ(o->ne, t.ne) << t.name;
  }
}

// Quantised conversions stay close to the fp32 model. Q8_0 keeps ~0.4% relative error per weight
// and Q4_0 ~7%; through 5 layers that bounds the logits' relative deviation well under 5% / 30%.
TEST(Convert, QuantisedConversionsStayClose) {
  CQKV_REQUIRE_SHARED(kCkpt);
  auto src = LoadModel(testing::SharedPath(kCkpt));
  const auto ids = StoryIds(*src);
  const auto ref = Logits(*src, ids);
  for (auto [type, tol] : {std::pair{DType::kF16, 5e-3}, std::pair{DType::kBF16, 3e-2},
                           std::pair{DType::kQ8_0, 5e-2}, std::pair{DType::kQ4_0, 0.3}}) {
    const std::string out = ::testing::TempDir() + "/stories_q.gguf";
    ConvertOptions opt;
    opt.matrix_type = type;
    WriteModelAsGguf(*src, src->tok().vocab(), out, opt);
    auto q = LoadModel(out);
    const double d = MaxRelDiff(ref, Logits(*q, ids));
    EXPECT_LT(d, tol) << DTypeName(type);
    EXPECT_GT(d, 0.0) << DTypeName(type);
    std::printf("convert %s: max |logit diff| / max |logit| = %.3g\n",
                std::string(DTypeName(type)).c_str(), d);
  }
}

}  // namespace
}  // namespace cqkv
