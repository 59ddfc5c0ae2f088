// Stop strings over a stream of generated text (OpenAI's `stop`): the text is emitted as it comes,
// except a tail that could still become a stop string — held until the next piece decides it — and
// everything from the first stop string on, which is dropped (the stop string is not part of the reply).
// A stop string may span any number of tokens. Input pieces are whole UTF-8 characters
// (TokenStreamDecoder), and so is every output piece, since a stop string starts on a character.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // empty strings are ignored

  // Appends generated text; returns the text that can be emitted now. After a stop string has
  // appeared, stopped() is true and nothing more is returned.
  std::string push(std::string_view text);
  // At the end of generation: the held tail (no stop string completed).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dsv3
