#include "eval/zeroshot_scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "test_util.h"

namespace cqkv {
namespace {

ZsItem Item(std::vector<std::pair<std::string, int64_t>> conts, int gold,
            const std::string& context = "ctx") {
  ZsItem item;
  item.gold = gold;
  for (auto& [c, len] : conts) item.requests.push_back(ZsRequest{context, c, len});
  return item;
}

TEST(ZeroShotScoring, AccTakesRawLoglikAccNormDividesByLength) {
  const ZsTask& arc = FindZeroShotTask("arc_easy");
  // Choice 0: -2 over 1 char (-2 per char); choice 1: -5 over 10 chars (-0.5 per char).
  const ZsItem item = Item({{" a", 1}, {" bbbbbbbbbb", 10}}, 1);
  const std::vector<ZsLoglik> lls = {{-2.0, false, 1}, {-5.0, false, 3}};
  const ZsItemScore s = ScoreZeroShotItem(arc, item, lls);
  EXPECT_EQ(s.pred, 0);
  EXPECT_EQ(s.pred_norm, 1);
  EXPECT_EQ(s.acc, 0);
  EXPECT_EQ(s.acc_norm, 1);
}

TEST(ZeroShotScoring, TiesGoToTheFirstChoiceAsNumpyArgmax) {
  const ZsTask& piqa = FindZeroShotTask("piqa");
  const ZsItem item = Item({{" x", 2}, {" y", 2}, {" z", 2}}, 1);
  const std::vector<ZsLoglik> lls = {{-3.0, false, 1}, {-1.0, false, 1}, {-1.0, false, 1}};
  const ZsItemScore s = ScoreZeroShotItem(piqa, item, lls);
  EXPECT_EQ(s.pred, 1);
  EXPECT_EQ(s.pred_norm, 1);
  EXPECT_EQ(s.acc, 1);
}

TEST(ZeroShotScoring, WrongNumberOfLogliksIsAnError) {
  const ZsTask& copa = FindZeroShotTask("copa");
  const ZsItem item = Item({{" x", 1}, {" y", 1}}, 0);
  const std::vector<ZsLoglik> lls = {{-1.0, false, 1}};
  testing::ExpectErrorMentioning([&] { ScoreZeroShotItem(copa, item, lls); },
                                 {"copa", "1 log-likelihoods for 2 requests"});
}

TEST(ZeroShotScoring, StderrIsTheHarnessSampleStderr) {
  EXPECT_DOUBLE_EQ(BinaryMeanStderr(0.5, 5), 0.25);  // sqrt(0.25 / 4)
  EXPECT_DOUBLE_EQ(BinaryMeanStderr(1.0, 9), 0.0);
  EXPECT_DOUBLE_EQ(BinaryMeanStderr(0.5, 1), 0.0);
}

// A fake model: log-likelihoods from a table keyed by (context, continuation), so every task's
// figures are known in closed form.
TEST(ZeroShotScoring, TaskFiguresFromAFakeLoglikProvider) {
  const std::map<std::pair<std::string, std::string>, double> table = {
      // WinoGrande partial scoring: the same continuation after two context options.
      {{"The cup fell so Anna", " caught it."}, -4.0},
      {{"The cup fell so the cup", " caught it."}, -9.0},
      {{"Tom beat Sam so Tom", " was sad."}, -6.0},
      {{"Tom beat Sam so Sam", " was sad."}, -7.0},
      {{"Tom beat Sam so Tom", " won."}, -2.0},
      {{"Tom beat Sam so Sam", " won."}, -2.5},
  };
  auto fake = [&](const ZsItem& item) {
    std::vector<ZsLoglik> out;
    for (const ZsRequest& r : item.requests) {
      out.push_back({table.at({r.context, r.continuation}), false, 2});
    }
    return out;
  };
  const ZsTask& wg = FindZeroShotTask("winogrande");
  auto wg_item = [](const std::string& a, const std::string& b, const std::string& cont, int gold) {
    ZsRecord r;
    r.options = {a, b};
    r.continuation = cont;
    r.gold = gold;
    return FormatZeroShotItem(FindZeroShotTask("winogrande"), r);
  };
  const std::vector<ZsItem> items = {
      wg_item("The cup fell so Anna", "The cup fell so the cup", "caught it.", 0),  // right
      wg_item("Tom beat Sam so Tom", "Tom beat Sam so Sam", "was sad.", 1),         // wrong
      wg_item("Tom beat Sam so Tom", "Tom beat Sam so Sam", "won.", 0),             // right
  };
  int64_t calls = 0;
  const ZsTaskResult r = EvalZeroShotTask(wg, items, fake, [&](int64_t done, int64_t n) {
    ++calls;
    EXPECT_EQ(n, 3);
    EXPECT_EQ(done, calls);
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.n, 3);
  EXPECT_DOUBLE_EQ(r.acc, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.acc_stderr, std::sqrt(2.0 / 9.0 / 2.0));
  EXPECT_FALSE(r.has_acc_norm);
  EXPECT_FALSE(r.has_ppl);
  EXPECT_EQ(r.requests, 6);
}

TEST(ZeroShotScoring, LambadaIsGreedyAccuracyAndPerItemPerplexity) {
  const ZsTask& lambada = FindZeroShotTask("lambada");
  const std::vector<ZsItem> items = {Item({{" dog", 3}}, -1), Item({{" elephant", 8}}, -1)};
  auto fake = [](const ZsItem& item) {
    if (item.requests[0].continuation == " dog") return std::vector<ZsLoglik>{{-1.0, true, 1}};
    return std::vector<ZsLoglik>{{-3.0, false, 3}};
  };
  const ZsTaskResult r = EvalZeroShotTask(lambada, items, fake);
  EXPECT_DOUBLE_EQ(r.acc, 0.5);
  ASSERT_TRUE(r.has_ppl);
  EXPECT_NEAR(r.ppl, std::exp(2.0), 1e-12);        // exp(-mean(-1, -3))
  EXPECT_NEAR(r.token_ppl, std::exp(1.0), 1e-12);  // exp(4 nats / 4 tokens)
  EXPECT_EQ(r.tokens, 4);
}

}  // namespace
}  // namespace cqkv
