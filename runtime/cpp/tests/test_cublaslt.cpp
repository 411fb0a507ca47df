// ctest: the cuBLASLt GEMM's parts that need no GPU: problem validation and descriptions, and a
// clear "cannot be opened" where the library is missing (the CI machine) instead of a crash.
#include <stdexcept>
#include <string>

#include "check.h"
#include "../cublaslt.h"

namespace {

using blade_test::check;
using blade_test::failures;

bool rejects(const blade::GemmProblem& p, const std::string& needle) {
  try {
    blade::validate(p);
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

void test_validate() {
  blade::GemmProblem p;  // a linear layer: D (n_out x rows) = W^T (stored k x n_out) . X (stored k x rows)
  p.dtype = 2;
  p.transa = true;
  p.m = 320, p.n = 8192, p.k = 640, p.lda = 640, p.ldb = 640, p.ldd = 320;
  blade::validate(p);
  check(blade::describe(p).find("A^T stored 640x320 ld 640") != std::string::npos, "describe names A's storage");
  blade::GemmProblem bad = p;
  bad.lda = 320;  // transposed A is stored k x m: its leading dimension is at least k
  check(rejects(bad, "leading dimension"), "a leading dimension below the stored rows is refused");
  bad = p;
  bad.dtype = 0;
  check(rejects(bad, "float16 and bfloat16"), "float32 is refused by name");
  bad = p;
  bad.m = -1;
  check(rejects(bad, "negative size"), "a negative size is refused");
  bad = p;
  bad.batch = 4, bad.stride_d = 0;
  check(rejects(bad, "batch strides"), "a batch writing one matrix over another is refused");
}

void test_missing_library() {
  std::string why;
  check(!blade::cublaslt_available("/nonexistent/libcublasLt.so.13", &why), "a missing library is not available");
  check(why.find("cannot be opened") != std::string::npos, "and says why: " + why);
  bool threw = false;
  try {
    blade::CublasLt lt("/nonexistent/libcublasLt.so.13");
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("cannot be opened") != std::string::npos;
  }
  check(threw, "constructing on a missing library raises saying so");
}

void test_prepare_checks_before_cuda() {
  // argument errors are reported before anything touches CUDA (so here, without a GPU, too)
  blade::GemmProblem p;
  p.m = 8, p.n = 8, p.k = 8, p.lda = 8, p.ldb = 8, p.ldd = 8;
  std::string why;
  if (!blade::cublaslt_available("libcublasLt.so.13", &why) && !blade::cublaslt_available("libcublasLt.so.12", &why)) {
    return;  // no library to construct a CublasLt from (the CI machine): nothing more to check here
  }
  blade::CublasLt lt(blade::cublaslt_available("libcublasLt.so.13", nullptr) ? "libcublasLt.so.13" : "libcublasLt.so.12");
  bool threw = false;
  try {
    lt.prepare(p, false, 1 << 20, 3, 256, 256, 0);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("powers of two") != std::string::npos;
  }
  check(threw, "an alignment that is not a power of two is refused");
  threw = false;
  p.k = 0;
  try {
    lt.prepare(p, false, 1 << 20, 256, 256, 256, 0);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("k = 0") != std::string::npos;
  }
  check(threw, "k = 0 is refused naming it");
}

}  // namespace

int main() {
  test_validate();
  test_missing_library();
  test_prepare_checks_before_cuda();
  return failures ? 1 : 0;
}
