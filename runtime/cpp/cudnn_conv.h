// Blade runtime: convolutions through cuDNN, opened at run time.
//
// Like cuBLASLt (cublaslt.h), libcudnn is opened with dlopen when first used, so the runtime builds
// and its tests run without CUDA; the types and enum values used are declared in cudnn_abi.h
// (runtime/cpp/tests/check_cudnn_abi.cpp holds them to cuDNN's headers where those are installed).
// The library is the one PyTorch already loaded (the Python side, runtime/cudnn_conv.py, finds its
// path), so Blade adds no second cuDNN to the process.
//
// One call is one convolution (cross-correlation, float32 accumulation, tensor-core math, `groups`
// groups) of a packed input into a packed output, plus a bias (one value per output channel): one
// `cudnnBackendExecute` of a conv + add graph, or `cudnnConvolutionForward` + `cudnnAddTensor`. Input, weight and
// output are all channels-last (`nhwc`: N, spatial..., C in memory; the weight K, spatial..., C/groups)
// or all channels-first (NCHW packed), or channels-last with a channels-first input
// (`x_channels_first`). One to three spatial dims (a 1-D convolution is given to
// cuDNN as a 2-D one of height 1).
//
// The plan of a problem is made on `prepare` and kept. With `graph_api`, through cuDNN's graph API
// where it makes one (the operation graph conv (+ bias add) built once, the first of cuDNN's
// heuristic engine configurations that makes an execution plan; a call then builds one variant
// pack and executes: PyTorch's own path; `search` does not apply; 10-39 us of host time per call
// on an H200), else through the legacy calls (42-86 us): descriptors and an algorithm, cuDNN's
// heuristic pick or, with `search`, the fastest of cuDNN's algorithms timed on the buffers given
// (cudnnFindConvolutionForwardAlgorithmEx: it synchronises the device and writes the output
// buffer; never inside a CUDA-graph capture). Only algorithms needing at most `workspace_limit`
// bytes of workspace are taken. A failure raises naming the problem and cuDNN's status.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace blade {

namespace cudnn {
class Handles;
}  // namespace cudnn

struct ConvProblem {
  int dtype = 2;  // cudnnDataType: 2 float16, 9 bfloat16
  bool nhwc = true;
  // channels-last problem whose input is packed channels-first (a model's NCHW input read by its
  // first convolution, which Blade runs channels-last): cuDNN reads the input through its strides
  bool x_channels_first = false;
  int spatial = 2;  // 1 to 3
  int64_t n = 0, c = 0, k = 0, groups = 1;
  std::array<int64_t, 3> in{}, kernel{}, pad{}, stride{}, dilation{};
};

// Whether cuDNN can be opened from `library` (a path or soname); `why` says why not.
bool cudnn_available(const std::string& library, std::string* why);

// The output's spatial sizes of a problem (what PyTorch computes: (in + 2 pad - dilation (kernel -
// 1) - 1) / stride + 1).
std::array<int64_t, 3> conv_output(const ConvProblem& p);

// The problem in words, for error messages and tests.
std::string describe(const ConvProblem& p);

// Throws std::invalid_argument when the description is not a valid problem (a size below 1, an
// empty output, channels not divisible by the groups, an unsupported dtype or spatial rank).
void validate(const ConvProblem& p);

class CudnnConv {
 public:
  // graph_api: plans through cuDNN's graph API where it makes one (else the legacy calls only).
  explicit CudnnConv(std::string library, bool graph_api = false);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // The id of the plan of a problem (made, or found among the kept plans of the same problem,
  // bias and workspace limit: a searched plan is found by later unsearched requests too). With
  // `search`, x, w and y are device buffers of the problem's sizes (y is written) and `workspace`
  // holds workspace_limit bytes; the search runs on `stream`.
  int64_t prepare(const ConvProblem& p, bool bias, int64_t workspace_limit, int64_t device, bool search = false,
                  uint64_t x = 0, uint64_t w = 0, uint64_t y = 0, uint64_t workspace = 0, uint64_t stream = 0);

  // Bytes of workspace a plan's algorithm needs (run's `workspace` holds at least that many).
  int64_t workspace_size(int64_t plan) const;
  // The plan's cuDNN algorithm number and whether it was timed (search) or the heuristic's pick.
  std::pair<int, bool> algorithm(int64_t plan) const;

  // Enqueue y = conv(x, w) (+ bias) on `stream` of CUDA device `device`; bias 0 means none.
  void run(int64_t plan, uint64_t x, uint64_t w, uint64_t y, uint64_t bias, uint64_t workspace, uint64_t stream,
           int64_t device);

  int64_t plans() const;

  // "graph" where the plan runs through cuDNN's graph API (an execution plan made once, one
  // variant pack per call), else "legacy (why not graph)".
  std::string api(int64_t plan) const;

 private:
  struct Plan;

  std::string library_;
  bool use_graph_ = false;
  mutable std::mutex mutex_;
  std::unique_ptr<cudnn::Handles> handles_;  // destroyed before the plans (the destructor)
  std::map<std::string, int64_t> by_key_;  // problem, bias, limit, device -> plan id
  std::vector<std::unique_ptr<Plan>> plans_;
};

}  // namespace blade
