#include "eval/zeroshot_data.h"

#include <gtest/gtest.h>

#include "eval/zeroshot_tasks.h"
#include "test_util.h"

namespace cqkv {
namespace {

using testing::ExpectErrorMentioning;

TEST(ZeroShotData, QueryChoicesLines) {
  const auto r = ParseZeroShotRecords(
      "{\"query\": \"Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n\n"
      "{\"choices\": [\"x\", \"y\", \"z\"], \"gold\": 0, \"query\": \"Q2\"}\n",
      ZsFileFormat::kQueryChoices, "t.jsonl");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].context, "Q1");
  EXPECT_EQ(r[0].options, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r[0].gold, 1);
  EXPECT_EQ(r[1].line, 3);  // the blank line is skipped but counted
  EXPECT_EQ(r[1].options.size(), 3u);
}

TEST(ZeroShotData, WinograndeAndLambadaLines) {
  const auto w = ParseZeroShotRecords(
      "{\"context_options\": [\"A so X\", \"A so Y\"], \"continuation\": \"ran.\", \"gold\": 1}",
      ZsFileFormat::kContextOptions, "w.jsonl");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].options[1], "A so Y");
  EXPECT_EQ(w[0].continuation, "ran.");
  const auto l =
      ParseZeroShotRecords("{\"context\": \"He saw the\", \"continuation\": \"dog\"}\r\n",
                           ZsFileFormat::kContextContinuation, "l.jsonl");
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].context, "He saw the");
  EXPECT_EQ(l[0].gold, -1);
}

TEST(ZeroShotData, HellaswagTextSixLinesPerItem) {
  const std::string text =
      "Ctx one\n2\ne0\ne1\ne2\ne3\n"
      "Ctx two\n0\nf0\nf1\nf2\nf3\n";
  const auto r = ParseZeroShotRecords(text, ZsFileFormat::kHellaswagText, "h.txt");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].context, "Ctx one");
  EXPECT_EQ(r[0].gold, 2);
  EXPECT_EQ(r[1].options, (std::vector<std::string>{"f0", "f1", "f2", "f3"}));
  EXPECT_EQ(r[1].line, 7);
  EXPECT_EQ(ParseZeroShotRecords(text, ZsFileFormat::kHellaswagText, "h.txt", 1).size(), 1u);
  ExpectErrorMentioning(
      [&] { ParseZeroShotRecords(text + "x\n", ZsFileFormat::kHellaswagText, "h.txt"); },
      {"h.txt", "13 lines", "multiple of 6"});
  ExpectErrorMentioning(
      [] { ParseZeroShotRecords("C\n4\na\nb\nc\nd\n", ZsFileFormat::kHellaswagText, "h.txt"); },
      {"h.txt:2", "gold label '4'"});
}

TEST(ZeroShotData, MalformedLinesNameFileLineAndField) {
  const std::string ok = "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";
  ExpectErrorMentioning(
      [&] { ParseZeroShotRecords(ok + "{\"query\": \"Q\",", ZsFileFormat::kQueryChoices, "f"); },
      {"f:2", "not a JSON object"});
  ExpectErrorMentioning(
      [&] {
        ParseZeroShotRecords(ok + "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"]}",
                             ZsFileFormat::kQueryChoices, "f");
      },
      {"f:2", "field 'gold' is missing"});
  ExpectErrorMentioning(
      [&] {
        ParseZeroShotRecords("{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}",
                             ZsFileFormat::kQueryChoices, "f");
      },
      {"f:1", "'gold' is 2", "[0, 2)"});
  ExpectErrorMentioning(
      [&] {
        ParseZeroShotRecords("{\"query\": 3, \"choices\": [\"a\", \"b\"], \"gold\": 0}",
                             ZsFileFormat::kQueryChoices, "f");
      },
      {"f:1", "'query' must be a string"});
  ExpectErrorMentioning(
      [&] {
        ParseZeroShotRecords("{\"query\": \"Q\", \"choices\": [\"a\"], \"gold\": 0}",
                             ZsFileFormat::kQueryChoices, "f");
      },
      {"f:1", "'choices'", "at least 2"});
  ExpectErrorMentioning(
      [&] {
        ParseZeroShotRecords("{\"context\": \"c\", \"continuation\": \"\"}",
                             ZsFileFormat::kContextContinuation, "f");
      },
      {"f:1", "'continuation' is empty"});
  ExpectErrorMentioning([&] { ParseZeroShotRecords("\n\n", ZsFileFormat::kQueryChoices, "f"); },
                        {"f", "no items"});
  ExpectErrorMentioning(
      [&] { LoadZeroShotFile("/nonexistent/piqa.jsonl", ZsFileFormat::kQueryChoices); },
      {"/nonexistent/piqa.jsonl"});
}

// Every shared file parses with the format its task declares, with the documented item counts.
TEST(ZeroShotData, SharedFilesParse) {
  CQKV_REQUIRE_SHARED("data/zeroshot/piqa.jsonl");
  const std::map<std::string, size_t> expected = {
      {"piqa", 1838},       {"arc_easy", 2376},     {"arc_challenge", 1172}, {"winogrande", 1267},
      {"hellaswag", 10042}, {"hellaswag_small", 4}, {"boolq", 3270},         {"copa", 100},
      {"openbookqa", 500},  {"siqa", 1954},         {"lambada", 5153}};
  for (const ZsTask& t : ZeroShotTasks()) {
    const auto items = LoadZeroShotTask(t, testing::SharedPath("data/zeroshot"));
    EXPECT_EQ(items.size(), expected.at(std::string(t.name))) << t.name;
  }
}

}  // namespace
}  // namespace cqkv
