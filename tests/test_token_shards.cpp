// Token shards (train/token_shards.h): writing, validation of damaged directories, deterministic
// batches; and the progress display (core/progress.h) they use.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/progress.h"
#include "io/tokenizer.h"
#include "test_support.h"
#include "train/bpe_trainer.h"
#include "train/token_shards.h"

namespace dsv3 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using testing::TempDir;
using testing::error_of;

std::vector<std::string> documents(int n, uint32_t seed) {
  static const char* words[] = {"alpha", "beta", "gamma", "delta", "the", "a", "of", "run", "ran", "42", "!"};
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n; ++d) {
    std::string text;
    const int length = 5 + int(rng() % 60);
    for (int w = 0; w < length; ++w) text += std::string(w ? " " : "") + words[rng() % 11];
    docs.push_back(text);
  }
  return docs;
}

// A small trained tokenizer written to `dir`/tokenizer.json (+ tokenizer_config.json).
std::string write_tokenizer(const TempDir& dir, int64_t extra_id = -1) {
  BpeTrainerOptions options;
  options.vocab_size = 320;
  BpeTrainer trainer(options);
  trainer.add_texts(documents(30, 1));
  TrainedTokenizer t = trainer.train();
  if (extra_id >= 0) {  // an added token with a large id, to push the vocabulary past 65536
    json j = json::parse(t.tokenizer_json);
    j["added_tokens"].push_back({{"id", extra_id}, {"content", "<big>"}, {"special", true}, {"normalized", false}});
    t.tokenizer_json = j.dump();
  }
  write_trained_tokenizer(t, dir.sub("tokenizer.json"));
  return dir.sub("tokenizer.json");
}

struct Shards {
  TempDir dir{"shards"};
  std::string tokenizer_path;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<std::string> docs;
  TokenShardsManifest manifest;

  explicit Shards(int n_docs = 40, double val_fraction = 0.1, int64_t extra_id = -1) {
    tokenizer_path = write_tokenizer(dir, extra_id);
    tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_file(tokenizer_path));
    docs = documents(n_docs, 2);
    TokenShardsWriteOptions options;
    options.val_fraction = val_fraction;
    options.seed = 77;
    options.tokenizer_path = tokenizer_path;
    options.source = "test";
    manifest = write_token_shards(docs, *tokenizer, dir.sub("out"), options);
  }
  std::string out() const { return dir.sub("out"); }
};

TEST(TokenShards, CountsAndContentsMatchTheDocuments) {
  Shards s;
  const std::vector<bool> is_val = choose_val_documents(int64_t(s.docs.size()), 0.1, 77);
  std::vector<int32_t> expected[2];
  for (size_t i = 0; i < s.docs.size(); ++i) {
    std::vector<int32_t>& out = expected[is_val[i] ? 1 : 0];
    out.push_back(0);  // BOS
    for (int32_t id : s.tokenizer->encode(s.docs[i], false)) out.push_back(id);
    out.push_back(1);  // EOS
  }
  EXPECT_EQ(s.manifest.train.documents, 36);
  EXPECT_EQ(s.manifest.val.documents, 4);
  EXPECT_EQ(s.manifest.dtype, TokenDtype::u16);
  EXPECT_EQ(s.manifest.document_layout, "BOS text EOS");

  const TokenShards shards = TokenShards::open(s.out());
  EXPECT_EQ(shards.vocab_size(), s.tokenizer->vocab_size());
  EXPECT_EQ(shards.manifest().tokenizer_hash, file_fingerprint(s.tokenizer_path));
  EXPECT_EQ(shards.manifest().source, "test");
  for (TokenSplit split : {TokenSplit::train, TokenSplit::val}) {
    const std::vector<int32_t>& want = expected[split == TokenSplit::train ? 0 : 1];
    ASSERT_EQ(shards.num_tokens(split), int64_t(want.size()));
    EXPECT_EQ(fs::file_size(fs::path(s.out()) / shards.manifest().split(split).file), want.size() * 2);
    std::vector<int32_t> got(want.size());
    shards.copy_tokens(split, 0, got);
    EXPECT_EQ(got, want) << token_split_name(split);
    EXPECT_EQ(shards.token(split, 3), want[3]);
  }
  EXPECT_THROW(shards.token(TokenSplit::val, shards.num_tokens(TokenSplit::val)), Error);
  std::vector<int32_t> too_many(5);
  EXPECT_THROW(shards.copy_tokens(TokenSplit::val, shards.num_tokens(TokenSplit::val) - 4, too_many), Error);
}

TEST(TokenShards, ValDocumentChoice) {
  const std::vector<bool> a = choose_val_documents(500, 0.05, 1234);
  EXPECT_EQ(std::count(a.begin(), a.end(), true), 25);
  EXPECT_EQ(choose_val_documents(500, 0.05, 1234), a);  // deterministic
  EXPECT_NE(choose_val_documents(500, 0.05, 1235), a);  // seeded
  const std::vector<bool> tiny = choose_val_documents(3, 0.01, 1);
  EXPECT_EQ(std::count(tiny.begin(), tiny.end(), true), 1);  // at least one
  const std::vector<bool> most = choose_val_documents(3, 0.99, 1);
  EXPECT_EQ(std::count(most.begin(), most.end(), true), 2);  // never all
  const std::vector<bool> none = choose_val_documents(10, 0.0, 1);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
  const std::vector<bool> one_doc = choose_val_documents(1, 0.5, 1);
  EXPECT_EQ(std::count(one_doc.begin(), one_doc.end(), true), 0);
  EXPECT_THROW(choose_val_documents(10, 1.0, 1), Error);
}

TEST(TokenShards, BatchesAreDeterministicWindows) {
  Shards s;
  const TokenShards shards = TokenShards::open(s.out());
  const int64_t batch = 4, seq = 16;
  const std::vector<int32_t> b0 = shards.batch(TokenSplit::train, 0, batch, seq, 9);
  ASSERT_EQ(b0.size(), size_t(batch * (seq + 1)));
  EXPECT_EQ(shards.batch(TokenSplit::train, 0, batch, seq, 9), b0);  // same step, same seed
  EXPECT_NE(shards.batch(TokenSplit::train, 1, batch, seq, 9), b0);  // next step
  EXPECT_NE(shards.batch(TokenSplit::train, 0, batch, seq, 10), b0);  // other seed
  // Rows are the windows at window_offset(); reopening gives the same (resume by step index).
  const TokenShards again = TokenShards::open(s.out());
  std::set<int64_t> offsets;
  for (int64_t step = 0; step < 50; ++step) {
    const std::vector<int32_t> b = again.batch(TokenSplit::train, step, batch, seq, 9);
    for (int64_t r = 0; r < batch; ++r) {
      const int64_t offset = shards.window_offset(TokenSplit::train, 9, step, r, seq);
      ASSERT_GE(offset, 0);
      ASSERT_LE(offset + seq + 1, shards.num_tokens(TokenSplit::train));
      offsets.insert(offset);
      std::vector<int32_t> window(size_t(seq + 1));
      shards.copy_tokens(TokenSplit::train, offset, window);
      ASSERT_EQ(std::vector<int32_t>(b.begin() + r * (seq + 1), b.begin() + (r + 1) * (seq + 1)), window);
    }
  }
  EXPECT_GT(offsets.size(), 150u);  // 200 draws over ~1400 positions rarely collide
  std::vector<int32_t> wrong(7);
  EXPECT_THROW(shards.batch_into(TokenSplit::train, 0, batch, seq, 9, wrong), Error);
  const std::string long_seq = error_of([&] { shards.batch(TokenSplit::val, 0, 1, 100000, 9); });
  EXPECT_NE(long_seq.find("val split"), std::string::npos) << long_seq;
}

TEST(TokenShards, OffsetsCoverTheWholeRange) {
  Shards s;
  const TokenShards shards = TokenShards::open(s.out());
  const int64_t n = shards.num_tokens(TokenSplit::val), seq = n - 3;  // offsets 0, 1, 2 only
  std::set<int64_t> seen;
  for (int64_t step = 0; step < 64; ++step) seen.insert(shards.window_offset(TokenSplit::val, 1, step, 0, seq));
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1, 2}));
  EXPECT_EQ(shards.window_offset(TokenSplit::val, 1, 0, 0, n - 1), 0);  // exactly one window
}

TEST(TokenShards, SequentialWindows) {
  Shards s;
  const TokenShards shards = TokenShards::open(s.out());
  const int64_t n = shards.num_tokens(TokenSplit::val), seq = 8;
  EXPECT_EQ(shards.num_sequential_windows(TokenSplit::val, seq), (n - 1) / seq);
  const std::vector<int32_t> b = shards.sequential_batch(TokenSplit::val, 1, 2, seq);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t i = 0; i <= seq; ++i)
      EXPECT_EQ(b[size_t(r * (seq + 1) + i)], shards.token(TokenSplit::val, (1 + r) * seq + i));
  EXPECT_THROW(shards.sequential_batch(TokenSplit::val, shards.num_sequential_windows(TokenSplit::val, seq), 1, seq),
               Error);
}

TEST(TokenShards, LargeVocabularyUsesUint32) {
  Shards s(10, 0.2, /*extra_id=*/70000);
  EXPECT_EQ(s.manifest.dtype, TokenDtype::u32);
  EXPECT_EQ(s.manifest.vocab_size, 70001);
  const TokenShards shards = TokenShards::open(s.out());
  EXPECT_EQ(fs::file_size(fs::path(s.out()) / "train.bin"), size_t(shards.num_tokens(TokenSplit::train)) * 4);
  EXPECT_EQ(shards.token(TokenSplit::train, 0), 0);
  // The first train document is the first document not in val.
  const std::vector<bool> is_val = choose_val_documents(10, 0.2, 77);
  const size_t first = size_t(std::find(is_val.begin(), is_val.end(), false) - is_val.begin());
  const std::vector<int32_t> first_ids = s.tokenizer->encode(s.docs[first], false);
  for (size_t i = 0; i < first_ids.size(); ++i) ASSERT_EQ(shards.token(TokenSplit::train, int64_t(i) + 1), first_ids[i]);
}

TEST(TokenShards, ManifestRoundTrips) {
  TokenShardsManifest m;
  m.dtype = TokenDtype::u32;
  m.vocab_size = 129280;
  m.bos_id = 0;
  m.eos_id = 1;
  m.tokenizer_path = "/x/tokenizer.json";
  m.tokenizer_hash = "fnv1a64:0123456789abcdef";
  m.source = "brown";
  m.val_fraction = 0.05;
  m.seed = 18446744073709551615ull;
  m.train = {"train.bin", 100, 3};
  m.val = {"val.bin", 7, 1};
  const TokenShardsManifest r = TokenShardsManifest::from_json(m.to_json(), "test");
  EXPECT_EQ(r.to_json(), m.to_json());
  EXPECT_EQ(r.seed, m.seed);
  EXPECT_EQ(r.val.tokens, 7);
}

// Damaged directories fail at open with a message naming the problem and the fix.
TEST(TokenShards, RejectsDamagedDirectories) {
  Shards s;
  const fs::path out(s.out());
  std::stringstream original;
  original << std::ifstream(out / "manifest.json").rdbuf();
  const json manifest = json::parse(original.str());
  auto write_manifest = [&](const std::string& text) { std::ofstream(out / "manifest.json") << text; };
  auto expect_error = [&](const char* what, const std::vector<std::string>& parts) {
    const std::string e = error_of([&] { TokenShards::open(s.out()); });
    for (const std::string& p : parts) EXPECT_NE(e.find(p), std::string::npos) << what << ": " << e;
    write_manifest(original.str());
  };

  write_manifest("{ not json");
  expect_error("not JSON", {"manifest.json", "not valid JSON"});
  json m = manifest;
  m["splits"]["train"]["tokens"] = int64_t(manifest["splits"]["train"]["tokens"]) + 1;
  write_manifest(m.dump());
  expect_error("token count", {"train.bin", "bytes", "dsv3 data"});
  m = manifest;
  m.erase("vocab_size");
  write_manifest(m.dump());
  expect_error("missing field", {"\"vocab_size\""});
  m = manifest;
  m["format"] = "something-else";
  write_manifest(m.dump());
  expect_error("format", {"something-else"});
  m = manifest;
  m["dtype"] = "float32";
  write_manifest(m.dump());
  expect_error("dtype", {"float32"});
  m = manifest;
  m["vocab_size"] = 100000;  // does not fit uint16
  write_manifest(m.dump());
  expect_error("vocab vs dtype", {"uint16"});
  m = manifest;
  m["splits"]["val"]["file"] = "../val.bin";
  write_manifest(m.dump());
  expect_error("file name", {"../val.bin"});
  m = manifest;
  m["vocab_size"] = 5;  // ids in the files are >= 5
  write_manifest(m.dump());
  expect_error("ids vs vocab", {"vocab_size 5", "train.bin"});
  EXPECT_NO_THROW(TokenShards::open(s.out(), /*check_ids=*/true));

  // A file truncated on disk.
  fs::resize_file(out / "val.bin", fs::file_size(out / "val.bin") - 2);
  expect_error("truncated file", {"val.bin", "bytes"});
  fs::remove(out / "val.bin");
  expect_error("missing file", {"val.bin"});
  fs::remove(out / "manifest.json");
  const std::string e = error_of([&] { TokenShards::open(s.out()); });
  EXPECT_NE(e.find("dsv3 data"), std::string::npos) << e;
}

TEST(TokenShards, RequiresAnEosToken) {
  TempDir dir("shards_no_eos");
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = {};
  BpeTrainer trainer(options);
  trainer.add_text("some text");
  const TrainedTokenizer t = trainer.train();
  const Tokenizer tok = Tokenizer::from_json_text(t.tokenizer_json, "", "no-eos.json");
  const std::string e = error_of([&] { write_token_shards({"doc"}, tok, dir.sub("out"), {}); });
  EXPECT_NE(e.find("EOS"), std::string::npos) << e;
}

// ---------------------------------------------------------------------------------------------
// Progress display

TEST(TokenShardsProgressBar, PrintsOnlyTheFinalLineWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar("encoding", 1000, "bytes", true, f);
    EXPECT_FALSE(bar.is_terminal());
    for (int i = 0; i < 10; ++i) bar.add(100);
    bar.set_note("42 tokens");
  }  // the destructor finishes
  std::rewind(f);
  char buffer[512] = {};
  const size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, f);
  std::fclose(f);
  const std::string text(buffer, n);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(text.rfind("encoding  100.0%  1.00k bytes in ", 0), 0u) << text;
  EXPECT_NE(text.find("42 tokens\n"), std::string::npos) << text;

  std::FILE* quiet = std::tmpfile();
  {
    ProgressBar bar("x", 10, "", /*enabled=*/false, quiet);
    bar.add(10);
    bar.finish();
  }
  EXPECT_EQ(std::ftell(quiet), 0);
  std::fclose(quiet);
}

TEST(TokenShardsProgressBar, Formats) {
  EXPECT_EQ(format_count(0), "0");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_count(1234), "1.23k");
  EXPECT_EQ(format_count(12345), "12.3k");
  EXPECT_EQ(format_count(999999), "1.00M");
  EXPECT_EQ(format_count(1.5e9), "1.50G");
  EXPECT_EQ(format_count(2.5), "2.5");
  EXPECT_EQ(format_duration(7), "0:07");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

}  // namespace
}  // namespace dsv3
