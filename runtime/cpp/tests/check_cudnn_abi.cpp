// Compile-time check of runtime/cpp/cudnn_abi.h against cuDNN's headers: built only where they are
// found (CMakeLists.txt: the GPU machine), not in CI. A mismatch fails this test naming the value.
#include <cudnn.h>

#include <cstddef>

#include "cudnn_abi.h"

namespace abi = blade::cudnn_abi;

static_assert(sizeof(abi::FwdAlgoPerf) == sizeof(cudnnConvolutionFwdAlgoPerf_t), "cudnnConvolutionFwdAlgoPerf_t size");
static_assert(offsetof(abi::FwdAlgoPerf, status) == offsetof(cudnnConvolutionFwdAlgoPerf_t, status), "perf: status");
static_assert(offsetof(abi::FwdAlgoPerf, memory) == offsetof(cudnnConvolutionFwdAlgoPerf_t, memory), "perf: memory");
static_assert(offsetof(abi::FwdAlgoPerf, mathType) == offsetof(cudnnConvolutionFwdAlgoPerf_t, mathType), "perf: mathType");
static_assert(abi::kSuccess == CUDNN_STATUS_SUCCESS, "CUDNN_STATUS_SUCCESS");
static_assert(abi::kFloat == CUDNN_DATA_FLOAT, "CUDNN_DATA_FLOAT");
static_assert(abi::kHalf == CUDNN_DATA_HALF, "CUDNN_DATA_HALF");
static_assert(abi::kBFloat16 == CUDNN_DATA_BFLOAT16, "CUDNN_DATA_BFLOAT16");
static_assert(abi::kNCHW == CUDNN_TENSOR_NCHW, "CUDNN_TENSOR_NCHW");
static_assert(abi::kNHWC == CUDNN_TENSOR_NHWC, "CUDNN_TENSOR_NHWC");
static_assert(abi::kCrossCorrelation == CUDNN_CROSS_CORRELATION, "CUDNN_CROSS_CORRELATION");
static_assert(abi::kTensorOpMath == CUDNN_TENSOR_OP_MATH, "CUDNN_TENSOR_OP_MATH");
static_assert(abi::kAlgoCount == CUDNN_CONVOLUTION_FWD_ALGO_COUNT, "CUDNN_CONVOLUTION_FWD_ALGO_COUNT");

int main() { return 0; }
