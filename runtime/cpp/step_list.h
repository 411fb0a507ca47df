// Blade runtime: the native step loop of a Program's call plan.
//
// A StepList holds the steps of one call plan (one size signature of a Program) that the C++
// runtime runs by itself: cubin launches of generated kernels (CudaKernel) and cuBLASLt GEMMs
// (CublasLt, a prepared plan). Everything a step needs is fixed when the list is made (kernel,
// grid, scalars, GEMM plan) except where its tensors are: a pointer argument names a *base*
// (the call's arena, an input, a weight, an output, a result a Python step made) and a byte
// offset into it. A call passes the bases' addresses and runs a range of steps; the executor
// (runtime/native_loop.py) runs the Python steps (library calls through torch, fallbacks)
// between ranges and fills in the bases those steps produce.
//
// `resolve` returns what each step of a range would pass (launch parameter slots; GEMM
// pointers) without touching CUDA, so CI checks the relocation on a CPU.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cublaslt.h"
#include "cudnn_attention.h"
#include "cudnn_conv.h"
#include "cuda_driver.h"

namespace blade {

class StepList {
 public:
  // A launch: `codes` as CudaKernel::launch takes them; for a pointer argument ('p') with
  // bases[k] >= 0 the value is bases[bases[k]] + args[k].i (a byte offset); bases[k] < 0 passes
  // args[k] as it is. `kernel` may be null for a list that is only resolved (CPU tests).
  void add_launch(std::shared_ptr<CudaKernel> kernel, int64_t gx, int64_t gy, int64_t gz, const std::string& codes,
                  const std::vector<int32_t>& bases, const std::vector<KernelArg>& args, std::string label);

  // A prepared cuBLASLt plan; operands a, b, d, bias, workspace as (base, byte offset); a bias
  // base < 0 means no bias. `lt` may be null for a list that is only resolved.
  void add_gemm(std::shared_ptr<CublasLt> lt, int64_t plan, const std::array<int32_t, 5>& bases,
                const std::array<int64_t, 5>& offsets, std::string label);

  // A prepared cuDNN convolution plan; operands x, w, y, bias, workspace as (base, byte offset); a
  // bias base < 0 means none, a workspace base < 0 none (the plan needs none). `conv` may be null
  // for a list that is only resolved.
  void add_conv(std::shared_ptr<CudnnConv> conv, int64_t plan, const std::array<int32_t, 5>& bases,
                const std::array<int64_t, 5>& offsets, std::string label);

  // A prepared cuDNN attention plan; operands q, k, v, o, workspace as (base, byte offset); a
  // workspace base < 0 means none. `attention` may be null for a list that is only resolved.
  void add_attention(std::shared_ptr<CudnnAttention> attention, int64_t plan, const std::array<int32_t, 5>& bases,
                     const std::array<int64_t, 5>& offsets, std::string label);

  // A device-to-device copy of `height` rows of `width` bytes (rows `src_pitch` / `dst_pitch` bytes
  // apart) from (src base, byte offset) to (dst base, byte offset): one input of a concatenation
  // into its slice of the result.
  void add_copy(const std::array<int32_t, 2>& bases, const std::array<int64_t, 2>& offsets, int64_t dst_pitch,
                int64_t src_pitch, int64_t width, int64_t height, std::string label);

  size_t size() const { return steps_.size(); }
  int64_t num_bases() const { return num_bases_; }

  // Per step of [begin, end): a launch's parameter slots (8 bytes each, scratch pointers left
  // out), a GEMM's, a convolution's or an attention's five pointers (0 for none), a copy's
  // destination and source.
  std::vector<std::vector<uint64_t>> resolve(const std::vector<uint64_t>& bases, size_t begin, size_t end) const;

  // Enqueue steps [begin, end) on `stream` of CUDA device `device`. Throws naming the step's label.
  void run(const std::vector<uint64_t>& bases, uint64_t stream, int64_t device, size_t begin, size_t end) const;

 private:
  enum class Kind { kLaunch, kGemm, kConv, kAttention, kCopy };
  struct Step {
    Kind kind = Kind::kLaunch;
    std::string label;
    // launch
    std::shared_ptr<CudaKernel> kernel;
    int64_t grid[3] = {1, 1, 1};
    std::vector<uint64_t> slots;                  // packed parameters, pointer slots hold offsets
    std::vector<std::pair<size_t, int32_t>> ptrs;  // (slot, base) of the relocated pointers
    // GEMM, convolution
    std::shared_ptr<CublasLt> lt;
    std::shared_ptr<CudnnConv> conv;
    std::shared_ptr<CudnnAttention> attention;
    int64_t plan = -1;
    std::array<int32_t, 5> bases{};
    std::array<int64_t, 5> offsets{};
    // copy: destination pitch, source pitch, width, height (bytes, bytes, bytes, rows)
    std::array<int64_t, 4> copy{};
  };
  // A library step's operands (bases, byte offsets); `optional[k]`: operand k may have no base (< 0).
  void add_library_step(Step s, int64_t plan, const std::array<int32_t, 5>& bases, const std::array<int64_t, 5>& offsets,
                        std::string label, const char* what, const std::array<bool, 5>& optional);
  void check_range(const std::vector<uint64_t>& bases, size_t begin, size_t end) const;
  uint64_t at(const std::vector<uint64_t>& bases, int32_t base, int64_t offset) const;

  std::vector<Step> steps_;
  int64_t num_bases_ = 0;  // 1 + the largest base index named
};

// One call's bases for a StepList: set once at the call's start, updated where a Python step
// makes a new root, read by each range the call runs (one conversion from Python per call, not
// one per range). Each call has its own, so two threads may run the same list.
class StepCall {
 public:
  StepCall(std::shared_ptr<const StepList> list, std::vector<uint64_t> bases);
  void set(int64_t base, uint64_t value);
  void run(uint64_t stream, int64_t device, size_t begin, size_t end) const {
    list_->run(bases_, stream, device, begin, end);
  }
  const std::vector<uint64_t>& bases() const { return bases_; }

 private:
  std::shared_ptr<const StepList> list_;
  std::vector<uint64_t> bases_;
};

}  // namespace blade
