#include "eval/zeroshot_tasks.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace cqkv {
namespace {

using testing::ExpectErrorMentioning;

ZsItem Format(std::string_view task, std::string context, std::vector<std::string> options,
              std::string continuation = "", int gold = 0) {
  ZsRecord r;
  r.line = 1;
  r.context = std::move(context);
  r.options = std::move(options);
  r.continuation = std::move(continuation);
  r.gold = gold;
  return FormatZeroShotItem(FindZeroShotTask(task), r);
}

TEST(ZeroShotTasks, PromptsFollowTheHarness) {
  // PIQA: llm-foundry's query is "Question: {goal}\n"; the harness's prompt ends in "Answer:".
  ZsItem p = Format("piqa", "Question: open a jar\n", {"twist the lid", "eat it"});
  EXPECT_EQ(p.requests[0].context, "Question: open a jar\nAnswer:");
  EXPECT_EQ(p.requests[1].continuation, " eat it");
  EXPECT_EQ(p.requests[0].norm_len, 13);
  ZsItem a = Format("arc_challenge", "Question: Why?", {"x", "y", "z", "w"}, "", 3);
  EXPECT_EQ(a.requests[2].context, "Question: Why?\nAnswer:");
  EXPECT_EQ(a.gold, 3);
  ZsItem b = Format("boolq", "Passage: P\nQuestion: is it?", {"no", "yes"});
  EXPECT_EQ(b.requests[1].context, "Passage: P\nQuestion: is it?\nAnswer:");
  EXPECT_EQ(b.requests[1].continuation, " yes");
  // OpenBookQA, COPA and SIQA queries are used as stored.
  EXPECT_EQ(Format("openbookqa", "Predators eat", {"a", "b"}).requests[0].context, "Predators eat");
  EXPECT_EQ(Format("siqa", "Context: c\nAnswer:", {"A", "B"}).requests[1].continuation, " B");
  // WinoGrande: one request per context option, all with the same continuation.
  ZsItem w = Format("winogrande", "", {"Ann so Ann", "Ann so Bo"}, "ran.", 1);
  ASSERT_EQ(w.requests.size(), 2u);
  EXPECT_EQ(w.requests[1].context, "Ann so Bo");
  EXPECT_EQ(w.requests[0].continuation, " ran.");
  // LAMBADA: the last word after the target delimiter.
  ZsItem l = Format("lambada", "He saw the", {}, "dog", -1);
  ASSERT_EQ(l.requests.size(), 1u);
  EXPECT_EQ(l.requests[0].continuation, " dog");
}

TEST(ZeroShotTasks, HellaswagPreprocessing) {
  // " [title]" -> ". " leaves a double space, which the last step makes single.
  EXPECT_EQ(HellaswagPreprocess("  Do it [title] Then go.  "), "Do it. Then go.");
  EXPECT_EQ(HellaswagPreprocess("Visit [www.x.org] now [step] ok"), "Visit now ok");
  EXPECT_EQ(HellaswagPreprocess("a   b"), "a  b");  // one pass of "  " -> " ", as Python's
  EXPECT_EQ(HellaswagPreprocess("keep [this"), "keep [this");
  ZsItem h = Format("hellaswag", "Cars: A man [title] drives.", {" goes [x] home.", "b", "c", "d"});
  EXPECT_EQ(h.requests[0].context, "Cars: A man. drives.");
  EXPECT_EQ(h.requests[0].continuation, " goes home.");
}

TEST(ZeroShotTasks, CodePointsCountCharactersNotBytes) {
  EXPECT_EQ(CodePoints("abc"), 3);
  EXPECT_EQ(CodePoints("caf\xc3\xa9"), 4);       // é is 2 bytes
  EXPECT_EQ(CodePoints("\xf0\x9f\x98\x80"), 1);  // one 4-byte emoji
}

TEST(ZeroShotTasks, TaskListParsing) {
  const auto t = ParseZeroShotTaskList("piqa,lambada");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1]->name, "lambada");
  EXPECT_EQ(ParseZeroShotTaskList("all").size(), ZeroShotTasks().size() - 1);
  ExpectErrorMentioning([] { ParseZeroShotTaskList("piqa,hellaswog"); },
                        {"unknown task 'hellaswog'", "known: piqa, arc_easy", "lambada"});
  ExpectErrorMentioning([] { ParseZeroShotTaskList("piqa,,copa"); }, {"empty task name"});
  ExpectErrorMentioning([] { ParseZeroShotTaskList("copa,copa"); }, {"copa named twice"});
}

}  // namespace
}  // namespace cqkv
