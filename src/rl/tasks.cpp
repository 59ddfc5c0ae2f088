#include "rl/tasks.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"

namespace dsv3 {

TaskKind parse_task_kind(std::string_view name) {
  if (name == "arithmetic") return TaskKind::arithmetic;
  if (name == "parity") return TaskKind::parity;
  if (name == "countdown") return TaskKind::countdown;
  DSV3_FAIL("[tasks] unknown task \"", name, "\": choose arithmetic, parity or countdown");
}

const char* task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::arithmetic: return "arithmetic";
    case TaskKind::parity: return "parity";
    case TaskKind::countdown: return "countdown";
  }
  return "?";
}

TaskSplit parse_task_split(std::string_view name) {
  if (name == "train") return TaskSplit::train;
  if (name == "test") return TaskSplit::test;
  DSV3_FAIL("[tasks] unknown split \"", name, "\": choose train or test");
}

const char* task_split_name(TaskSplit split) { return split == TaskSplit::train ? "train" : "test"; }

void TaskOptions::validate() const {
  DSV3_CHECK(digits >= 1 && digits <= 9, "[tasks] --digits must be in [1, 9], got ", digits);
  DSV3_CHECK(bits >= 1 && bits <= 64, "[tasks] --bits must be in [1, 64], got ", bits);
  DSV3_CHECK(numbers >= 2 && numbers <= 6, "[tasks] --numbers must be in [2, 6], got ", numbers);
}

namespace {

// The problem stream (core/hash.h: the same on every platform).
class Stream {
 public:
  explicit Stream(uint64_t seed) : rng_(seed) {}
  uint64_t next() { return rng_.next(); }
  int64_t uniform(int64_t lo, int64_t hi) { return lo + int64_t(rng_.below(uint64_t(hi - lo + 1))); }  // [lo, hi]

 private:
  SplitMix64 rng_;
};

TaskSplit split_of(const std::string& prompt) {
  return fnv1a64(prompt) % 10 == 0 ? TaskSplit::test : TaskSplit::train;
}

const char* kFormat = "Think step by step inside <think> </think>, then give only the final answer inside "
                      "<answer> </answer>.";

std::string reply_of(const std::string& reasoning, const std::string& answer) {
  return cat("<think>\n", reasoning, "\n</think>\n<answer>", answer, "</answer>");
}

// ---- arithmetic ----

std::string digits_of(int64_t v) { return std::to_string(v); }

std::string add_steps(int64_t a, int64_t b) {
  const std::string x = digits_of(a), y = digits_of(b);
  std::string out;
  int64_t carry = 0;
  std::string result;
  for (size_t i = 0; i < std::max(x.size(), y.size()); ++i) {
    const int64_t dx = i < x.size() ? x[x.size() - 1 - i] - '0' : 0, dy = i < y.size() ? y[y.size() - 1 - i] - '0' : 0;
    const int64_t sum = dx + dy + carry;
    out += cat(dx, " + ", dy, carry ? " + 1" : "", " = ", sum, ", write ", sum % 10, sum >= 10 ? ", carry 1" : "", "\n");
    carry = sum / 10;
    result.insert(result.begin(), char('0' + sum % 10));
  }
  if (carry) result.insert(result.begin(), '1');
  return out + cat(a, " + ", b, " = ", result);
}

std::string subtract_steps(int64_t a, int64_t b) {  // a >= b
  const std::string x = digits_of(a), y = digits_of(b);
  std::string out, result;
  int64_t borrow = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const int64_t dx = x[x.size() - 1 - i] - '0', dy = i < y.size() ? y[y.size() - 1 - i] - '0' : 0;
    int64_t d = dx - borrow - dy;
    const bool borrows = d < 0;
    if (borrows) d += 10;
    out += cat(dx, borrow ? " - 1" : "", " - ", dy, borrows ? " + 10" : "", " = ", d, borrows ? ", borrow 1" : "", "\n");
    borrow = borrows ? 1 : 0;
    result.insert(result.begin(), char('0' + d));
  }
  const size_t nonzero = result.find_first_not_of('0');
  result = nonzero == std::string::npos ? "0" : result.substr(nonzero);
  return out + cat(a, " - ", b, " = ", result);
}

std::string multiply_steps(int64_t a, int64_t b) {
  const std::string y = digits_of(b);
  std::string out;
  int64_t total = 0, place = 1;
  std::vector<int64_t> parts;
  for (size_t i = 0; i < y.size(); ++i, place *= 10) {
    const int64_t d = y[y.size() - 1 - i] - '0', part = a * d * place;
    out += cat(a, " × ", d * place, " = ", part, "\n");
    parts.push_back(part);
    total += part;
  }
  std::string sum;
  for (size_t i = 0; i < parts.size(); ++i) sum += cat(i ? " + " : "", parts[i]);
  return out + cat(sum, " = ", total);
}

TaskProblem arithmetic_problem(const TaskOptions& o, Stream& rng) {
  int64_t lo = 1;
  for (int64_t i = 1; i < o.digits; ++i) lo *= 10;
  const int64_t hi = lo * 10 - 1;
  if (o.digits == 1) lo = 0;
  int64_t a = rng.uniform(lo, hi), b = rng.uniform(lo, hi);
  const int64_t op = rng.uniform(0, 2);
  TaskProblem p;
  p.kind = TaskKind::arithmetic;
  if (op == 1 && a < b) std::swap(a, b);
  const char* sign = op == 0 ? "+" : op == 1 ? "-" : "×";
  const int64_t value = op == 0 ? a + b : op == 1 ? a - b : a * b;
  p.prompt = cat("Compute ", a, " ", sign, " ", b, ". ", kFormat);
  p.answer = std::to_string(value);
  p.solution = reply_of(op == 0 ? add_steps(a, b) : op == 1 ? subtract_steps(a, b) : multiply_steps(a, b), p.answer);
  return p;
}

// ---- parity ----

TaskProblem parity_problem(const TaskOptions& o, Stream& rng) {
  std::string bits, running;
  int64_t parity = 0;
  for (int64_t i = 0; i < o.bits; ++i) {
    const int64_t bit = int64_t(rng.next() >> 63);
    parity ^= bit;
    bits += cat(i ? " " : "", bit);
    running += cat(i ? " " : "", parity);
  }
  TaskProblem p;
  p.kind = TaskKind::parity;
  p.prompt = cat("What is the parity (the sum modulo 2) of the bits ", bits, "? ", kFormat);
  p.answer = std::to_string(parity);
  p.solution = reply_of(cat("running parity: ", running), p.answer);
  return p;
}

// ---- countdown ----

struct Fraction {
  int64_t num = 0, den = 1;
};

bool normalise(Fraction& f) {
  if (f.den == 0) return false;
  if (f.den < 0) {
    if (f.num == INT64_MIN || f.den == INT64_MIN) return false;
    f.num = -f.num;
    f.den = -f.den;
  }
  const int64_t g = std::gcd(f.num < 0 ? -f.num : f.num, f.den);
  if (g > 1) {
    f.num /= g;
    f.den /= g;
  }
  return true;
}

// a ∘ b exactly; false on overflow or division by zero.
bool apply(char op, Fraction a, Fraction b, Fraction& out) {
  int64_t x = 0, y = 0;
  switch (op) {
    case '+':
    case '-':
      if (__builtin_mul_overflow(a.num, b.den, &x) || __builtin_mul_overflow(b.num, a.den, &y) ||
          (op == '+' ? __builtin_add_overflow(x, y, &out.num) : __builtin_sub_overflow(x, y, &out.num)) ||
          __builtin_mul_overflow(a.den, b.den, &out.den))
        return false;
      break;
    case '*':
      if (__builtin_mul_overflow(a.num, b.num, &out.num) || __builtin_mul_overflow(a.den, b.den, &out.den)) return false;
      break;
    case '/':
      if (b.num == 0 || __builtin_mul_overflow(a.num, b.den, &out.num) ||
          __builtin_mul_overflow(a.den, b.num, &out.den))
        return false;
      break;
    default:
      return false;
  }
  return normalise(out);
}

// Recursive descent: expr = term {(+|-) term}; term = factor {(*|/) factor}; factor = int | ( expr ).
class ExpressionParser {
 public:
  ExpressionParser(std::string_view text, std::vector<int64_t>* numbers) : s_(text), numbers_(numbers) {}
  bool parse(Fraction& value) {
    if (!expression(value, 0)) return false;
    skip();
    return at_ == s_.size();
  }

 private:
  void skip() {
    while (at_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[at_]))) ++at_;
  }
  // × and ÷ as the model may write them (UTF-8), folded to * and /.
  char peek_operator() {
    skip();
    if (at_ >= s_.size()) return 0;
    const char c = s_[at_];
    if (c == '+' || c == '-' || c == '*' || c == '/') return c;
    if (s_.substr(at_, 2) == "\xc3\x97") return 'x';  // ×
    if (s_.substr(at_, 2) == "\xc3\xb7") return 'd';  // ÷
    return 0;
  }
  char take_operator(char c) {
    at_ += (c == 'x' || c == 'd') ? 2 : 1;
    return c == 'x' ? '*' : c == 'd' ? '/' : c;
  }
  bool expression(Fraction& value, int depth) {
    if (depth > 64 || !term(value, depth)) return false;
    for (char c = peek_operator(); c == '+' || c == '-'; c = peek_operator()) {
      take_operator(c);
      Fraction rhs;
      if (!term(rhs, depth) || !apply(c, value, rhs, value)) return false;
    }
    return true;
  }
  bool term(Fraction& value, int depth) {
    if (!factor(value, depth)) return false;
    for (char c = peek_operator(); c == '*' || c == '/' || c == 'x' || c == 'd'; c = peek_operator()) {
      const char op = take_operator(c);
      Fraction rhs;
      if (!factor(rhs, depth) || !apply(op, value, rhs, value)) return false;
    }
    return true;
  }
  bool factor(Fraction& value, int depth) {
    skip();
    if (at_ < s_.size() && s_[at_] == '(') {
      ++at_;
      if (!expression(value, depth + 1)) return false;
      skip();
      if (at_ >= s_.size() || s_[at_] != ')') return false;
      ++at_;
      return true;
    }
    const size_t start = at_;
    while (at_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at_])) && at_ - start < 12) ++at_;
    if (at_ == start || (at_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at_])))) return false;
    value = Fraction{std::strtoll(std::string(s_.substr(start, at_ - start)).c_str(), nullptr, 10), 1};
    if (numbers_) numbers_->push_back(value.num);
    return true;
  }

  std::string_view s_;
  std::vector<int64_t>* numbers_;
  size_t at_ = 0;
};

TaskProblem countdown_problem(const TaskOptions& o, Stream& rng) {
  for (;;) {
    // Numbers in [1, 50], combined in a random order by random operations that keep every intermediate
    // a positive integer; the target is the result, kept when it lies in [1, 999].
    std::vector<int64_t> given;
    for (int64_t i = 0; i < o.numbers; ++i) given.push_back(rng.uniform(1, 50));
    std::vector<int64_t> order(given.size());
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.uniform(0, int64_t(i) - 1))]);
    int64_t value = given[size_t(order[0])];
    std::string expression = std::to_string(value), steps;
    bool ok = true;
    for (size_t i = 1; i < order.size() && ok; ++i) {
      const int64_t x = given[size_t(order[i])];
      const int64_t op = rng.uniform(0, 3);
      int64_t next = 0;
      std::string sign;
      if (op == 0) { next = value + x; sign = "+"; }
      else if (op == 1 && value > x) { next = value - x; sign = "-"; }
      else if (op == 2) { next = value * x; sign = "*"; }
      else if (op == 3 && value % x == 0) { next = value / x; sign = "/"; }
      else { next = value + x; sign = "+"; }
      steps += cat(value, " ", sign, " ", x, " = ", next, "\n");
      expression = cat(i > 1 ? "(" : "", expression, i > 1 ? ")" : "", " ", sign, " ", x);
      value = next;
      ok = value >= 1 && value <= 999;
    }
    if (!ok) continue;
    TaskProblem p;
    p.kind = TaskKind::countdown;
    p.given = given;
    std::string list;
    for (size_t i = 0; i < given.size(); ++i) list += cat(i ? ", " : "", given[i]);
    p.prompt = cat("Using the numbers ", list, ", each exactly once, and + - * / with parentheses, make ", value,
                   ". ", kFormat, " The answer is the equation's left side, for example (1 + 2) * 3.");
    p.answer = std::to_string(value);
    steps.pop_back();
    p.solution = reply_of(steps, expression);
    return p;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

std::vector<TaskProblem> make_task_problems(TaskKind kind, const TaskOptions& options, TaskSplit split, int64_t n,
                                            uint64_t seed) {
  options.validate();
  DSV3_CHECK(n >= 0, "[tasks] --n must be >= 0, got ", n);
  Stream rng(seed * 0x9e3779b97f4a7c15ull + uint64_t(kind) + 1);
  std::vector<TaskProblem> out;
  // The test tenth of the problem space can be small (parity with few bits): give up, with a message,
  // rather than loop forever.
  for (int64_t tries = 0; int64_t(out.size()) < n; ++tries) {
    DSV3_CHECK(tries < 1000 * (n + 10), "[tasks] could not draw ", n, " ", task_split_name(split), " problems of ",
               task_kind_name(kind), " at this difficulty (too few distinct problems): raise ",
               kind == TaskKind::arithmetic ? "--digits" : kind == TaskKind::parity ? "--bits" : "--numbers");
    TaskProblem p = kind == TaskKind::arithmetic ? arithmetic_problem(options, rng)
                    : kind == TaskKind::parity   ? parity_problem(options, rng)
                                                 : countdown_problem(options, rng);
    if (split_of(p.prompt) == split) out.push_back(std::move(p));
  }
  return out;
}

std::string extract_answer(std::string_view reply, bool* well_formed) {
  if (well_formed) *well_formed = false;
  const size_t close = reply.rfind("</think>");
  if (close == std::string_view::npos) return "";
  std::string_view rest = trim(reply.substr(close + 8));
  const std::string_view open_tag = "<answer>", close_tag = "</answer>";
  if (rest.substr(0, open_tag.size()) != open_tag) return "";
  rest.remove_prefix(open_tag.size());
  const size_t end = rest.find(close_tag);
  if (end == std::string_view::npos || !trim(rest.substr(end + close_tag.size())).empty()) return "";
  const std::string_view inner = rest.substr(0, end);
  if (inner.find(open_tag) != std::string_view::npos) return "";
  if (well_formed) *well_formed = true;
  return std::string(trim(inner));
}

bool evaluate_countdown(std::string_view expression, int64_t* numerator, int64_t* denominator,
                        std::vector<int64_t>* numbers) {
  Fraction value;
  if (numbers) numbers->clear();
  if (!ExpressionParser(expression, numbers).parse(value)) return false;
  *numerator = value.num;
  *denominator = value.den;
  return true;
}

TaskReward score_task_reply(const TaskProblem& problem, std::string_view reply) {
  // A reply opens its reasoning itself, or R1's generation prompt opened it; either way at most once.
  std::string_view body = trim(reply);
  if (body.substr(0, 7) == "<think>") body.remove_prefix(7);
  TaskReward r;
  bool well_formed = false;
  const std::string answer = extract_answer(body, &well_formed);
  if (!well_formed || body.find("<think>") != std::string_view::npos) return r;
  r.format = 1;
  bool correct = false;
  if (problem.kind == TaskKind::countdown) {
    int64_t num = 0, den = 1;
    std::vector<int64_t> used;
    if (evaluate_countdown(answer, &num, &den, &used)) {
      std::vector<int64_t> given = problem.given;
      std::sort(used.begin(), used.end());
      std::sort(given.begin(), given.end());
      correct = used == given && den == 1 && std::to_string(num) == problem.answer;
    }
  } else {
    correct = answer == problem.answer;
  }
  r.accuracy = correct ? 1 : 0;
  r.total = correct ? 1.0 : 0.1;
  return r;
}

nlohmann::json task_problem_json(const TaskProblem& p, bool with_solution) {
  nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", p.prompt}}});
  if (with_solution) messages.push_back({{"role", "assistant"}, {"content", p.solution}});
  nlohmann::json j = {{"task", task_kind_name(p.kind)}, {"prompt", p.prompt}, {"messages", messages},
                      {"answer", p.answer}, {"solution", p.solution}};
  if (p.kind == TaskKind::countdown) j["numbers"] = p.given;
  return j;
}

TaskProblem task_problem_from_json(const nlohmann::json& j, const std::string& where) {
  const auto text = [&](const char* key) {
    DSV3_CHECK(j.is_object() && j.contains(key) && j[key].is_string(), "[tasks] ", where, ": field \"", key,
               "\" is missing or not a string (write the file with dsv3 tasks)");
    return j[key].get<std::string>();
  };
  TaskProblem p;
  p.kind = parse_task_kind(text("task"));
  p.prompt = text("prompt");
  p.answer = text("answer");
  if (j.contains("solution") && j["solution"].is_string()) p.solution = j["solution"].get<std::string>();
  if (p.kind == TaskKind::countdown) {
    DSV3_CHECK(j.contains("numbers") && j["numbers"].is_array() && !j["numbers"].empty(), "[tasks] ", where,
               ": a countdown problem needs its \"numbers\"");
    for (const nlohmann::json& v : j["numbers"]) {
      DSV3_CHECK(v.is_number_integer(), "[tasks] ", where, ": \"numbers\" must hold integers");
      p.given.push_back(v.get<int64_t>());
    }
  }
  return p;
}

}  // namespace dsv3
