// Parsing of mixed-precision `--kv` specs (kv/mixed_spec.h): the grammar's valid forms, how the
// layers resolve for a model, and one error naming the part at fault for every malformed form.
#include "kv/mixed_spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kv/quant_cache_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

using testing::ExpectErrorNaming;

TEST(MixedSpec, RecognisesMixedSpecsOnly) {
  for (const char* s : {"int2-token;fp16@0", "fp16@first2", "K=int4-token,V=int2-token",
                        "v=fp16,k=int4-token", "cq:a.cqcb:r32;fp16@0,5"}) {
    EXPECT_TRUE(IsMixedKvSpec(s)) << s;
    EXPECT_EQ(ParseKvSpec(s).family, KvFamily::kMixed) << s;
  }
  for (const char* s : {"fp16", "cq:/m/K=1,2.cqcb", "int4-token:g64", "kivi2:r32"}) {
    EXPECT_FALSE(IsMixedKvSpec(s)) << s;
  }
}

TEST(MixedSpec, ParsesPartsLayersAndKvPairs) {
  const KvSpec spec = ParseKvSpec("int2-token;fp16@first1,last2;K=int4-token,V=nf2@3-4,7");
  ASSERT_TRUE(spec.mixed);
  const MixedSpec& m = *spec.mixed;
  EXPECT_EQ(m.text, spec.text);
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_TRUE(m.parts[0].layers.empty());
  EXPECT_EQ(m.parts[0].k.family, KvFamily::kIntToken);
  EXPECT_FALSE(m.parts[0].split());
  EXPECT_EQ(m.parts[1].k.family, KvFamily::kFp16);
  ASSERT_EQ(m.parts[1].layers.size(), 2u);
  EXPECT_EQ(m.parts[1].layers[0].kind, MixedLayerSel::Kind::kFirst);
  EXPECT_EQ(m.parts[1].layers[1].kind, MixedLayerSel::Kind::kLast);
  EXPECT_EQ(m.parts[1].layers[1].a, 2);
  EXPECT_TRUE(m.parts[2].split());
  EXPECT_EQ(m.parts[2].k.text, "int4-token");
  EXPECT_EQ(m.parts[2].v.text, "nf2");
  EXPECT_EQ(m.parts[2].v.bits, 2);
  // 10 layers: 0 first1; 8, 9 last2; 3, 4, 7 the K/V part; the rest the default.
  EXPECT_EQ(ResolveMixedLayers(m, 10), (std::vector<int>{1, 0, 0, 2, 2, 0, 0, 2, 1, 1}));
}

TEST(MixedSpec, KvPairInEitherOrderAndCqPathsWithColons) {
  const MixedSpec m = ParseMixedSpec("V=int2-token,K=cq:/x/a:b.cqcb:r32");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].k.family, KvFamily::kCq);
  EXPECT_EQ(m.parts[0].k.path, "/x/a:b.cqcb");
  EXPECT_EQ(m.parts[0].k.window, 32);
  EXPECT_EQ(m.parts[0].v.text, "int2-token");
  // The same format for K and V is not a split; a path may hold ',' when it is not ",V=".
  EXPECT_FALSE(ParseMixedSpec("K=fp16,V=fp16").parts[0].split());
  EXPECT_EQ(ParseMixedSpec("K=cq:a,b.cqcb,V=fp16").parts[0].k.path, "a,b.cqcb");
  // Without a default every layer needs a part.
  EXPECT_EQ(ResolveMixedLayers(ParseMixedSpec("fp16@0;int4-token@1-2"), 3),
            (std::vector<int>{0, 1, 1}));
}

TEST(MixedSpec, EachErrorNamesThePartAtFault) {
  const struct {
    const char* spec;
    const char* needle;
  } bad[] = {
      {"int2-token;", "empty part"},
      {"int2-token;;fp16@0", "empty part"},
      {"int2-token;fp16", "part 'fp16' is a second default"},
      {"fp16@", "part 'fp16@': no layers"},
      {"fp16@1,", "part 'fp16@1,': empty item"},
      {"fp16@x", "'x' is not a layer number"},
      {"fp16@-1", "'' is not a layer number"},
      {"fp16@first0", "'first0' names no layer"},
      {"fp16@lastx", "'x' is not a layer number"},
      {"fp16@3-1", "layer range '3-1' is empty"},
      {"cq:/a@b/c.cqcb@0", "more than one '@'"},
      {"cq:/a@b/c.cqcb", "'b/c.cqcb' is not a layer number"},
      {"@0", "part '@0': missing format"},
      {"K=int4-token", "part 'K=int4-token': K= needs a matching ',V='"},
      {"K=int4-token,V=fp16,V=fp32", "more than one ',V='"},
      {"K=,V=fp16", "missing format"},
      {"K=int4-token,V=K=fp16", "'K=fp16' is not a single format"},
      {"int2-token;fp16=x@0", "'fp16=x' is not a single format"},
      {"int3-token;fp16@0", "part 'int3-token': KV format 'int3-token': '3' is not"},
      {"int2-token@0;bogus@1", "part 'bogus@1': unknown KV cache format 'bogus'"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.spec);
    ExpectErrorNaming([&] { ParseKvSpec(b.spec); }, b.needle);
  }
}

TEST(MixedSpec, ResolveErrorsNameLayerAndParts) {
  ExpectErrorNaming([] { ResolveMixedLayers(ParseMixedSpec("fp16@6;int2-token"), 6); },
                    "part 'fp16@6': layer 6 is past the model's 6 layers");
  ExpectErrorNaming([] { ResolveMixedLayers(ParseMixedSpec("fp16@last7;int2-token"), 6); },
                    "'last7' but the model has 6 layers");
  ExpectErrorNaming(
      [] { ResolveMixedLayers(ParseMixedSpec("fp16@first2;nf4@last5;int2-token"), 6); },
      "layer 1 is named by both 'fp16@first2' and 'nf4@last5'");
  ExpectErrorNaming([] { ResolveMixedLayers(ParseMixedSpec("fp16@0;nf4@2"), 3); },
                    "layer 1 has no format");
}

}  // namespace
}  // namespace cqkv
