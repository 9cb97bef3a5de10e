#include "kv/kv_spec.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace cqkv {
namespace {

TEST(KvSpec, ParsesEveryFamilyIntoTypedFields) {
  EXPECT_EQ(ParseKvSpec("fp32").family, KvFamily::kFp32);
  EXPECT_EQ(ParseKvSpec("fp16").family, KvFamily::kFp16);
  const KvSpec cq = ParseKvSpec("cq:/m/a.cqcb:r32");
  EXPECT_EQ(cq.family, KvFamily::kCq);
  EXPECT_EQ(cq.path, "/m/a.cqcb");
  EXPECT_EQ(cq.window, 32);
  const KvSpec it = ParseKvSpec("int4-token:g64");
  EXPECT_EQ(it.family, KvFamily::kIntToken);
  EXPECT_EQ(it.bits, 4);
  EXPECT_EQ(it.group, 64);
  const KvSpec ic = ParseKvSpec("int2-channel");
  EXPECT_EQ(ic.family, KvFamily::kIntChannel);
  EXPECT_EQ(ic.group, 0);  // the format's default
  const KvSpec nf = ParseKvSpec("nf3:g32");
  EXPECT_EQ(nf.family, KvFamily::kNf);
  EXPECT_EQ(nf.bits, 3);
  const KvSpec kivi = ParseKvSpec("kivi2:g32:r0");
  EXPECT_EQ(kivi.family, KvFamily::kKivi);
  EXPECT_EQ(kivi.window, 0);
  EXPECT_EQ(ParseKvSpec("kivi4").window, -1);
  EXPECT_EQ(kivi.text, "kivi2:g32:r0");
}

TEST(KvSpec, MalformedSpecsFailQuotingTheSpec) {
  for (const char* bad :
       {"fp8", "int3-token", "int4-diagonal", "int4", "nf5", "kivi3", "int4-token:g0",
        "int4-token:x4", "kivi2:r-1", "nf4:g4:g8", "cq:", "", "kivi2:r99999999"}) {
    try {
      ParseKvSpec(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
      EXPECT_EQ(std::string(e.what()).find("--kv"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cqkv
