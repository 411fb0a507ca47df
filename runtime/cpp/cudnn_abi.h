// cuDNN's ABI as far as Blade's convolution uses it: opaque handles, the algorithm-result layout
// and the enum values (cudnn_graph.h / cudnn_ops.h / cudnn_cnn.h of cuDNN 9, the "legacy" calls
// PyTorch's own v7 convolution path still makes). Declared here so the runtime builds without
// cuDNN's headers; where they are installed (the GPU machine's nvidia-cudnn wheel),
// runtime/cpp/tests/check_cudnn_abi.cpp checks every value below against them at build time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blade {
namespace cudnn_abi {

using Status = int;  // cudnnStatus_t
using Handle = struct CudnnContext*;
using TensorDesc = struct CudnnTensorStruct*;
using FilterDesc = struct CudnnFilterStruct*;
using ConvDesc = struct CudnnConvolutionStruct*;

struct FwdAlgoPerf {  // cudnnConvolutionFwdAlgoPerf_t
  int algo;
  Status status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};

constexpr Status kSuccess = 0;          // CUDNN_STATUS_SUCCESS
constexpr int kFloat = 0;               // CUDNN_DATA_FLOAT
constexpr int kHalf = 2;                // CUDNN_DATA_HALF
constexpr int kBFloat16 = 9;            // CUDNN_DATA_BFLOAT16
constexpr int kNCHW = 0;                // CUDNN_TENSOR_NCHW
constexpr int kNHWC = 1;                // CUDNN_TENSOR_NHWC
constexpr int kCrossCorrelation = 1;    // CUDNN_CROSS_CORRELATION
constexpr int kTensorOpMath = 1;        // CUDNN_TENSOR_OP_MATH
constexpr int kAlgoCount = 8;           // CUDNN_CONVOLUTION_FWD_ALGO_COUNT

}  // namespace cudnn_abi
}  // namespace blade
