// Blade runtime core (see program_core.h): shape-program evaluation and the arena planner.
#include "program_core.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace blade {

namespace {

enum Op : int64_t {
  kConst = 0, kSym = 1, kAdd = 2, kSub = 3, kMul = 4, kFloorDiv = 5, kCeilDiv = 6, kMod = 7,
  kMax = 8, kMin = 9, kNeg = 10, kEq = 11, kNe = 12, kLt = 13, kLe = 14, kGt = 15, kGe = 16,
  kAnd = 17, kOr = 18, kNot = 19, kEmit = 20,
};

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) throw std::domain_error("shape program: division by zero");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

}  // namespace

std::vector<int64_t> run_shape_program(const std::vector<int64_t>& code, const std::vector<int64_t>& symbols) {
  std::vector<int64_t> stack, out;
  stack.reserve(32);
  auto pop = [&stack]() {
    if (stack.empty()) throw std::runtime_error("shape program: stack underflow");
    int64_t v = stack.back();
    stack.pop_back();
    return v;
  };
  for (size_t pc = 0; pc < code.size(); ++pc) {
    const int64_t op = code[pc];
    if (op == kConst) {
      stack.push_back(code.at(++pc));
      continue;
    }
    if (op == kSym) {
      const int64_t i = code.at(++pc);
      if (i < 0 || static_cast<size_t>(i) >= symbols.size())
        throw std::out_of_range("shape program: symbol index " + std::to_string(i) + " out of range");
      stack.push_back(symbols[i]);
      continue;
    }
    if (op == kEmit) {
      out.push_back(pop());
      continue;
    }
    if (op == kNeg || op == kNot) {
      const int64_t a = pop();
      stack.push_back(op == kNeg ? -a : (a == 0));
      continue;
    }
    const int64_t b = pop();
    const int64_t a = pop();
    int64_t r = 0;
    switch (op) {
      case kAdd: r = a + b; break;
      case kSub: r = a - b; break;
      case kMul: r = a * b; break;
      case kFloorDiv: r = floor_div(a, b); break;
      case kCeilDiv: r = -floor_div(-a, b); break;
      case kMod: r = floor_mod(a, b); break;
      case kMax: r = std::max(a, b); break;
      case kMin: r = std::min(a, b); break;
      case kEq: r = a == b; break;
      case kNe: r = a != b; break;
      case kLt: r = a < b; break;
      case kLe: r = a <= b; break;
      case kGt: r = a > b; break;
      case kGe: r = a >= b; break;
      case kAnd: r = (a != 0) && (b != 0); break;
      case kOr: r = (a != 0) || (b != 0); break;
      default: throw std::runtime_error("shape program: unknown opcode " + std::to_string(op));
    }
    stack.push_back(r);
  }
  if (!stack.empty()) throw std::runtime_error("shape program: values left on the stack");
  return out;
}

ArenaPlan first_fit(const std::vector<ArenaBuffer>& buffers, int64_t align) {
  if (align <= 0) throw std::invalid_argument("first_fit: alignment must be positive");
  const size_t n = buffers.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = buffers[a];
    const auto& y = buffers[b];
    if (x.first != y.first) return x.first < y.first;
    if (x.nbytes != y.nbytes) return x.nbytes > y.nbytes;
    return a < b;
  });
  ArenaPlan plan;
  plan.offsets.assign(n, 0);
  std::vector<size_t> placed;
  std::vector<std::pair<int64_t, int64_t>> busy;
  for (size_t i : order) {
    const ArenaBuffer& b = buffers[i];
    if (b.nbytes < 0) throw std::invalid_argument("first_fit: negative buffer size " + std::to_string(b.nbytes));
    if (b.nbytes == 0) continue;
    busy.clear();
    for (size_t j : placed) {
      const ArenaBuffer& o = buffers[j];
      if (!(o.last < b.first || b.last < o.first)) busy.emplace_back(plan.offsets[j], plan.offsets[j] + o.nbytes);
    }
    std::sort(busy.begin(), busy.end());
    int64_t off = 0;
    for (const auto& [lo, hi] : busy) {
      if (off + b.nbytes <= lo) break;
      off = std::max(off, (hi + align - 1) / align * align);
    }
    plan.offsets[i] = off;
    placed.push_back(i);
    plan.total = std::max(plan.total, off + b.nbytes);
  }
  return plan;
}

CallPlanner::CallPlanner(int64_t num_symbols, std::vector<Binding> bindings, std::vector<int64_t> code,
                         std::vector<int64_t> check_slots, std::vector<std::vector<int64_t>> input_dim_slots,
                         std::vector<int64_t> buffer_size_slots, std::vector<ArenaBuffer> buffer_ranges,
                         int64_t align)
    : num_symbols_(num_symbols), bindings_(std::move(bindings)), code_(std::move(code)),
      check_slots_(std::move(check_slots)), input_dim_slots_(std::move(input_dim_slots)),
      buffer_size_slots_(std::move(buffer_size_slots)), buffer_ranges_(std::move(buffer_ranges)), align_(align) {
  if (buffer_size_slots_.size() != buffer_ranges_.size())
    throw std::invalid_argument("CallPlanner: one size slot per buffer");
}

PreparedCall CallPlanner::prepare(const std::vector<std::vector<int64_t>>& input_shapes,
                                  const std::vector<int64_t>& device_values) {
  PreparedCall r;
  if (input_shapes.size() != input_dim_slots_.size()) {
    r.bad_input = static_cast<int64_t>(std::min(input_shapes.size(), input_dim_slots_.size()));
    return r;
  }
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    if (input_shapes[i].size() != input_dim_slots_[i].size()) {
      r.bad_input = static_cast<int64_t>(i);
      return r;
    }
  }
  std::vector<int64_t> symbols(num_symbols_, 0);
  std::vector<bool> bound(num_symbols_, false);
  for (const Binding& b : bindings_) {
    const int64_t n = input_shapes.at(b.input).at(b.dim) - b.offset;
    if (b.coeff <= 0 || n % b.coeff != 0) {
      r.bad_input = b.input;
      return r;
    }
    if (!bound.at(b.symbol)) {
      symbols[b.symbol] = n / b.coeff;
      bound[b.symbol] = true;
    }
  }
  for (int64_t s = 0; s < num_symbols_; ++s)
    if (!bound[s]) throw std::runtime_error("CallPlanner: symbol " + std::to_string(s) + " has no binding");
  symbols.insert(symbols.end(), device_values.begin(), device_values.end());
  r.slots = run_shape_program(code_, symbols);
  for (size_t c = 0; c < check_slots_.size(); ++c)
    if (r.slots.at(check_slots_[c]) == 0) r.failed_checks.push_back(static_cast<int64_t>(c));
  if (!r.failed_checks.empty()) return r;
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    for (size_t d = 0; d < input_shapes[i].size(); ++d) {
      if (input_shapes[i][d] != r.slots.at(input_dim_slots_[i][d])) {
        r.bad_input = static_cast<int64_t>(i);
        return r;
      }
    }
  }
  std::vector<int64_t> sizes(buffer_size_slots_.size());
  for (size_t b = 0; b < sizes.size(); ++b) sizes[b] = r.slots.at(buffer_size_slots_[b]);
  auto hit = plans_.find(sizes);
  if (hit == plans_.end()) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    std::vector<ArenaBuffer> bufs = buffer_ranges_;
    for (size_t b = 0; b < bufs.size(); ++b) bufs[b].nbytes = sizes[b];
    hit = plans_.emplace(sizes, first_fit(bufs, align_)).first;
  }
  r.offsets = hit->second.offsets;
  r.total = hit->second.total;
  r.ok = true;
  return r;
}

}  // namespace blade
