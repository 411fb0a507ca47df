// Blade runtime core: the per-call arithmetic of a compiled Program, without Python or CUDA.
//
// * run_shape_program: evaluates the flat int64 bytecode that blade/runtime/shape_eval.py
//   documents (every size, grid, guard and variant predicate of a Program, from the input sizes).
// * first_fit: places a Program's arena buffers for one call. Each buffer has a byte size (from
//   the shape program) and a closed range of steps where it is live (computed at compile time);
//   a buffer goes to the lowest aligned offset that overlaps no buffer live at the same time.
//
// * CallPlanner: the whole per-call prelude of a Program in one native call: bind the size
//   symbols from the input shapes, evaluate the shape program, test the checks and the input dims,
//   and place the arena (cached per distinct buffer-size vector).
//
// The core links nothing but the C++ standard library, so the CPU-only CI builds and tests it
// (tests/test_program_core.cpp, run by ctest); the pybind11 module (shape_program.cpp) and the
// future CUDA executor use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace blade {

// Python semantics: floor division and modulo round toward negative infinity.
std::vector<int64_t> run_shape_program(const std::vector<int64_t>& code, const std::vector<int64_t>& symbols);

struct ArenaBuffer {
  int64_t nbytes;
  int64_t first;  // step that writes it
  int64_t last;   // last step that reads it
};

struct ArenaPlan {
  std::vector<int64_t> offsets;
  int64_t total = 0;
};

// Same order and tie-breaks as blade.runtime.program_executor.first_fit (tests hold them equal).
ArenaPlan first_fit(const std::vector<ArenaBuffer>& buffers, int64_t align);

struct Binding {
  int64_t symbol, input, dim, coeff, offset;  // symbol = (input.shape[dim] - offset) / coeff
};

struct PreparedCall {
  bool ok = false;
  std::vector<int64_t> slots;            // every shape-program value
  std::vector<int64_t> offsets;          // arena offset per buffer
  int64_t total = 0;                     // arena bytes
  std::vector<int64_t> failed_checks;    // indices into the Program's checks
  int64_t bad_input = -1;                // an input whose rank or dims do not fit (-1: none)
};

class CallPlanner {
 public:
  CallPlanner(int64_t num_symbols, std::vector<Binding> bindings, std::vector<int64_t> code,
              std::vector<int64_t> check_slots, std::vector<std::vector<int64_t>> input_dim_slots,
              std::vector<int64_t> buffer_size_slots, std::vector<ArenaBuffer> buffer_ranges, int64_t align);

  // input_shapes: the call's input sizes; device_values: the Program's device symbols, in order.
  PreparedCall prepare(const std::vector<std::vector<int64_t>>& input_shapes,
                       const std::vector<int64_t>& device_values);

  // Arena placements kept (one per distinct buffer-size vector met, at most kMaxPlans: a run over
  // ever new sizes starts over rather than growing without bound).
  static constexpr size_t kMaxPlans = 256;
  size_t cached_plans() const { return plans_.size(); }

 private:
  int64_t num_symbols_;
  std::vector<Binding> bindings_;
  std::vector<int64_t> code_;
  std::vector<int64_t> check_slots_;
  std::vector<std::vector<int64_t>> input_dim_slots_;
  std::vector<int64_t> buffer_size_slots_;
  std::vector<ArenaBuffer> buffer_ranges_;
  int64_t align_;
  std::map<std::vector<int64_t>, ArenaPlan> plans_;  // buffer sizes -> placement
};

}  // namespace blade
