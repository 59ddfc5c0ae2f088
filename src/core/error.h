// Errors: one exception type for everything a user can cause (bad files, bad config, bad arguments).
// Messages say what failed, where, and what to do; the CLI prints them and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Concatenates any streamable values into one string: cat("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

}  // namespace dsv3

// DSV3_CHECK(cond, "parts", of, "the message") throws dsv3::Error when cond is false.
#define DSV3_CHECK(cond, ...)                              \
  do {                                                     \
    if (!(cond)) throw ::dsv3::Error(::dsv3::cat(__VA_ARGS__)); \
  } while (0)

#define DSV3_FAIL(...) throw ::dsv3::Error(::dsv3::cat(__VA_ARGS__))
