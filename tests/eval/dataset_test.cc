#include "eval/dataset.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

TEST(ParseTextSourceList, SplitsOnCommasAndParsesEachSpec) {
  const auto one = ParseTextSourceList("wiki.train.raw", "--data");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].path, "wiki.train.raw");
  EXPECT_EQ(one[0].doc_end, -1);
  const auto three = ParseTextSourceList("a.txt,c4.jsonl:0:200,d/c4.jsonl:5:", "--data");
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[0].path, "a.txt");
  EXPECT_EQ(three[1].path, "c4.jsonl");
  EXPECT_EQ(three[1].doc_begin, 0);
  EXPECT_EQ(three[1].doc_end, 200);
  EXPECT_EQ(three[2].path, "d/c4.jsonl");
  EXPECT_EQ(three[2].doc_begin, 5);
  EXPECT_EQ(three[2].doc_end, -1);
}

TEST(ParseTextSourceList, EmptyItemsAndBadRangesNameTheFlag) {
  for (const char* bad : {"", ",a.txt", "a.txt,", "a.txt,,b.txt"}) {
    testing::ExpectErrorMentioning([&] { ParseTextSourceList(bad, "--data"); },
                                   {"--data", "empty item"});
  }
  testing::ExpectErrorMentioning([&] { ParseTextSourceList("a.txt,c4.jsonl:9:3", "--data"); },
                                 {"c4.jsonl:9:3", "empty document range"});
}

TEST(LoadText, ListedFilesLoadEachAsBefore) {
  const std::string raw = ::testing::TempDir() + "/dataset_list.txt";
  const std::string jsonl = ::testing::TempDir() + "/dataset_list.jsonl";
  std::ofstream(raw) << "plain text";
  std::ofstream(jsonl) << "{\"text\": \"doc0\"}\n{\"text\": \"doc1\"}\n{\"text\": \"doc2\"}\n";
  const auto src = ParseTextSourceList(raw + "," + jsonl + ":1:3", "--data");
  ASSERT_EQ(src.size(), 2u);
  EXPECT_EQ(LoadText(src[0]), "plain text");
  EXPECT_EQ(LoadText(src[1]), "doc1\n\ndoc2");
}

}  // namespace
}  // namespace cqkv
