// Blade runtime: matrix multiplications through cuBLASLt, opened at run time.
//
// Like the driver (cuda_driver.h), libcublasLt is opened with dlopen when first used, so the
// runtime builds and its tests run without CUDA; the types and the few enum values used are
// declared in cublaslt.cpp (runtime/cpp/tests/check_cublaslt_abi.cpp holds them to NVIDIA's header
// where the CUDA toolkit is installed). The library is the one PyTorch already loaded (the Python
// side finds its path), so Blade adds no second copy of cuBLAS to the process.
//
// One call is one `cublasLtMatmul` in cuBLAS's own column-major terms (the Python side,
// runtime/cuda_library.py, maps a row-major `linear` or `matmul` onto it):
//
//   D (m x n) = op(A) (m x k) . op(B) (k x n)  [+ bias (m), broadcast over the columns]
//
// A is stored k x m when transposed, else m x k (column-major, leading dimension lda); B likewise;
// D is m x n with leading dimension ldd. `batch` > 1 repeats it with element strides stride_a,
// stride_b, stride_d between the matrices. Accumulation is in float32 (CUBLAS_COMPUTE_32F), inputs
// and result in `dtype` (float16 or bfloat16), as PyTorch computes them.
//
// The plan of a problem (descriptors and the heuristic's algorithm) is made on its first call and
// cached: the key holds every size and stride, the dtype, the bias, the workspace size and the
// pointers' alignments (cuBLASLt's kernels may assume up to 256-byte alignment: the heuristic is
// told the actual alignment, as PyTorch does). A failure raises naming the problem and cuBLAS's
// status.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace blade {

struct GemmProblem {
  int dtype = 2;  // cudaDataType: 2 float16, 14 bfloat16
  bool transa = false, transb = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldd = 0;
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_d = 0;
};

// Whether cuBLASLt can be opened from `library` (a path or soname); `why` says why not.
bool cublaslt_available(const std::string& library, std::string* why);

// The cuBLAS-level description of a problem, for error messages and tests.
std::string describe(const GemmProblem& p);

// Throws std::invalid_argument when the description is not a valid problem (a size below 0, a
// leading dimension smaller than the stored matrix's rows, an unsupported dtype).
void validate(const GemmProblem& p);

class CublasLt {
 public:
  explicit CublasLt(std::string library);
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // Enqueue D = op(A) op(B) (+ bias) on `stream` of CUDA device `device`. Pointers are device
  // addresses; bias 0 means none. The workspace must stay allocated until the work is done.
  void gemm(const GemmProblem& p, uint64_t a, uint64_t b, uint64_t d, uint64_t bias, uint64_t workspace,
            int64_t workspace_bytes, uint64_t stream, int64_t device);

  // The same in two halves, for callers that keep the plan of a problem: `prepare` makes (or
  // finds) the plan of a problem for pointers of at least these alignments (bytes, at most 256)
  // and returns its id; `run` enqueues it, and returns false without enqueuing anything when a
  // pointer is less aligned than the plan assumed (prepare again with the lower alignment).
  int64_t prepare(const GemmProblem& p, bool bias, int64_t workspace_bytes, int align_a, int align_b, int align_d,
                  int64_t device);
  bool run(int64_t plan, uint64_t a, uint64_t b, uint64_t d, uint64_t bias, uint64_t workspace,
           uint64_t stream, int64_t device);

  // Problems planned so far (descriptors and algorithm cached).
  int64_t plans() const;

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, bool, int64_t, int, int, int>;
  Plan& plan_for(const Key& key, const GemmProblem& p, bool bias, int64_t workspace_bytes, int align_a, int align_b,
                 int align_d, int64_t device);
  void* handle_for(int64_t device);

  std::string library_;
  mutable std::mutex mutex_;
  std::map<int64_t, void*> handles_;  // device -> cublasLtHandle_t
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::vector<Plan*> by_id_;  // plan ids of prepare(), in order of creation
};

}  // namespace blade
