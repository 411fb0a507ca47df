// Blade runtime core: the per-call arithmetic of a compiled Program, without Python or CUDA.
//
// * run_shape_program: evaluates the flat int64 bytecode that blade/runtime/shape_eval.py
//   documents (every size, grid, guard and variant predicate of a Program, from the input sizes).
// * first_fit: places a Program's arena buffers for one call. Each buffer has a byte size (from
//   the shape program) and a closed range of steps where it is live (computed at compile time);
//   a buffer goes to the lowest aligned offset that overlaps no buffer live at the same time.
//
// The core links nothing but the C++ standard library, so the CPU-only CI builds and tests it
// (tests/test_program_core.cpp, run by ctest); the pybind11 module (shape_program.cpp) and the
// future CUDA executor use it.
#pragma once

#include <cstdint>
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

}  // namespace blade
