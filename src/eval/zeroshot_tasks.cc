#include "eval/zeroshot_tasks.h"

#include <algorithm>
#include <array>

#include "util/error.h"
#include "util/escape.h"

namespace cqkv {
namespace {

// The llm-foundry files already carry part of the harness's prompt in "query" (ARC and PIQA
// start with "Question: ", BoolQ with "Passage: ...\nQuestion: ...?", SIQA is a whole
// lettered-choice prompt ending in "Answer:", COPA ends in ", because"/", therefore");
// query_suffix adds what the harness has after it.
constexpr std::array kTasks = {
    ZsTask{"piqa", "piqa.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, true,
           "Answer:", "Question: {goal}\\nAnswer: {solution}"},
    ZsTask{"arc_easy", "arc_easy.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, true,
           "\nAnswer:", "Question: {question}\\nAnswer: {choice}"},
    ZsTask{"arc_challenge", "arc_challenge.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice,
           true, "\nAnswer:", "Question: {question}\\nAnswer: {choice}"},
    ZsTask{"winogrande", "winogrande.jsonl", ZsFileFormat::kContextOptions, ZsScoring::kPartial,
           false, "",
           "{sentence up to the blank, with option i} {rest of the sentence} (partial scoring: "
           "only the shared rest is scored)"},
    ZsTask{
        "hellaswag", "hellaswag_val_full.txt", ZsFileFormat::kHellaswagText, ZsScoring::kChoice,
        true, "",
        "{activity}: {ctx_a} {ctx_b} {ending} (harness preprocessing applied to both; llama.cpp's "
        "file does not capitalise ctx_b as the harness does)"},
    ZsTask{"hellaswag_small", "hellaswag_small.jsonl", ZsFileFormat::kQueryChoices,
           ZsScoring::kChoice, true, "",
           "{activity}: {ctx_a} {Ctx_b} {ending} (the 4-item llm-foundry sample)"},
    ZsTask{"boolq", "boolq.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, false,
           "\nAnswer:", "Passage: {passage}\\nQuestion: {question}?\\nAnswer: {no|yes}"},
    ZsTask{"copa", "copa.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, false, "",
           "{premise without its final period}, {because|therefore} {lower-cased choice}"},
    ZsTask{"openbookqa", "openbook_qa.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, true,
           "", "{question_stem} {choice}"},
    ZsTask{"siqa", "siqa.jsonl", ZsFileFormat::kQueryChoices, ZsScoring::kChoice, false, "",
           "Context: {context}\\nQuestion: {question}\\nChoices:\\nA. {a}\\nB. {b}\\nAnswer: "
           "{A|B}"},
    ZsTask{"lambada", "lambada_openai.jsonl", ZsFileFormat::kContextContinuation,
           ZsScoring::kLastWord, false, "", "{text without its last word} {last word}"},
};

std::string KnownNames() {
  std::string s;
  for (const ZsTask& t : kTasks) {
    if (!s.empty()) s += ", ";
    s += t.name;
  }
  return s;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t b = 0;
  for (size_t p = s.find(from); p != std::string_view::npos; p = s.find(from, b)) {
    out.append(s.substr(b, p - b)).append(to);
    b = p + from.size();
  }
  return out.append(s.substr(b));
}

}  // namespace

std::span<const ZsTask> ZeroShotTasks() { return kTasks; }

const ZsTask& FindZeroShotTask(std::string_view name) {
  for (const ZsTask& t : kTasks) {
    if (t.name == name) return t;
  }
  Fail("--tasks: unknown task '{}' (known: {}, or all)", Escaped(name), KnownNames());
}

std::vector<const ZsTask*> ParseZeroShotTaskList(std::string_view csv) {
  std::vector<const ZsTask*> out;
  size_t b = 0;
  while (b <= csv.size()) {
    size_t e = csv.find(',', b);
    if (e == std::string_view::npos) e = csv.size();
    const std::string_view name = csv.substr(b, e - b);
    CQKV_CHECK(!name.empty(), "--tasks '{}': empty task name (known: {}, or all)", Escaped(csv),
               KnownNames());
    std::vector<const ZsTask*> add;
    if (name == "all") {
      for (const ZsTask& t : kTasks) {
        if (t.name != "hellaswag_small") add.push_back(&t);
      }
    } else {
      add.push_back(&FindZeroShotTask(name));
    }
    for (const ZsTask* t : add) {
      CQKV_CHECK(std::find(out.begin(), out.end(), t) == out.end(),
                 "--tasks '{}': task {} named twice", Escaped(csv), t->name);
      out.push_back(t);
    }
    b = e + 1;
  }
  return out;
}

std::string HellaswagPreprocess(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\n\r\f\v");
  if (first == std::string_view::npos) return "";
  const std::string s = ReplaceAll(
      text.substr(first, text.find_last_not_of(" \t\n\r\f\v") - first + 1), " [title]", ". ");
  // re.sub("\\[.*?\\]", "", text): each "[" up to the nearest "]" after it.
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      const size_t close = s.find(']', i + 1);
      if (close != std::string::npos) {
        i = close;
        continue;
      }
    }
    out += s[i];
  }
  // Python's str.replace("  ", " ") is one left-to-right pass: "   " becomes "  ".
  std::string once;
  for (size_t i = 0; i < out.size(); ++i) {
    once += out[i];
    if (out[i] == ' ' && i + 1 < out.size() && out[i + 1] == ' ') ++i;
  }
  return once;
}

int64_t CodePoints(std::string_view s) {
  // Every byte that is not a UTF-8 continuation byte (10xxxxxx) starts a code point.
  return std::count_if(s.begin(), s.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

ZsItem FormatZeroShotItem(const ZsTask& task, const ZsRecord& r) {
  ZsItem item;
  item.line = r.line;
  item.gold = r.gold;
  auto add = [&item](std::string context, std::string_view choice) {
    ZsRequest q;
    q.context = std::move(context);
    q.continuation = std::string(" ").append(choice);
    q.norm_len = std::max<int64_t>(1, CodePoints(choice));
    item.requests.push_back(std::move(q));
  };
  switch (task.scoring) {
    case ZsScoring::kChoice: {
      const bool hs = task.format == ZsFileFormat::kHellaswagText || task.name == "hellaswag_small";
      const std::string context =
          (hs ? HellaswagPreprocess(r.context) : r.context) + std::string(task.query_suffix);
      for (const std::string& o : r.options) add(context, hs ? HellaswagPreprocess(o) : o);
      break;
    }
    case ZsScoring::kPartial:
      for (const std::string& o : r.options) add(o, r.continuation);
      break;
    case ZsScoring::kLastWord:
      add(r.context, r.continuation);
      break;
  }
  return item;
}

std::vector<ZsItem> LoadZeroShotTask(const ZsTask& task, const std::string& data_dir,
                                     int64_t limit) {
  const std::string path = data_dir + "/" + std::string(task.file);
  std::vector<ZsItem> items;
  for (const ZsRecord& r : LoadZeroShotFile(path, task.format, limit)) {
    items.push_back(FormatZeroShotItem(task, r));
  }
  return items;
}

}  // namespace cqkv
