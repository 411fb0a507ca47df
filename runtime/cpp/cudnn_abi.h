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
constexpr int kInt32 = 4;               // CUDNN_DATA_INT32
constexpr int kBoolean = 11;            // CUDNN_DATA_BOOLEAN
constexpr int kNCHW = 0;                // CUDNN_TENSOR_NCHW
constexpr int kNHWC = 1;                // CUDNN_TENSOR_NHWC
constexpr int kCrossCorrelation = 1;    // CUDNN_CROSS_CORRELATION
constexpr int kTensorOpMath = 1;        // CUDNN_TENSOR_OP_MATH
constexpr int kAlgoCount = 8;           // CUDNN_CONVOLUTION_FWD_ALGO_COUNT

}  // namespace cudnn_abi
}  // namespace blade

// cuDNN's graph ("backend") API, as far as a convolution (+ bias) graph and the fused attention
// operation use it (cudnn_graph.h).
namespace blade {
namespace cudnn_backend {

using Desc = void*;  // cudnnBackendDescriptor_t

// cudnnBackendDescriptorType_t
constexpr int kPointwiseDesc = 0;        // CUDNN_BACKEND_POINTWISE_DESCRIPTOR
constexpr int kConvolutionDesc = 1;      // CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR
constexpr int kEngineCfgDesc = 3;        // CUDNN_BACKEND_ENGINECFG_DESCRIPTOR
constexpr int kEngineHeurDesc = 4;       // CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR
constexpr int kExecutionPlanDesc = 5;    // CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
constexpr int kConvForwardOpDesc = 10;   // CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
constexpr int kPointwiseOpDesc = 13;     // CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
constexpr int kOperationGraphDesc = 15;  // CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR
constexpr int kVariantPackDesc = 16;     // CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR
constexpr int kTensorDesc = 17;          // CUDNN_BACKEND_TENSOR_DESCRIPTOR
constexpr int kMatmulDesc = 18;         // CUDNN_BACKEND_MATMUL_DESCRIPTOR
constexpr int kMatmulOpDesc = 19;       // CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR
constexpr int kReductionDesc = 21;      // CUDNN_BACKEND_REDUCTION_DESCRIPTOR
constexpr int kReductionOpDesc = 22;    // CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR
constexpr int kSdpaFwdOpDesc = 41;       // CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (cuDNN >= 9.13.1)

// cudnnBackendAttributeType_t
constexpr int kTypeHandle = 0;           // CUDNN_TYPE_HANDLE
constexpr int kTypeDataType = 1;         // CUDNN_TYPE_DATA_TYPE
constexpr int kTypeBoolean = 2;          // CUDNN_TYPE_BOOLEAN
constexpr int kTypeInt64 = 3;            // CUDNN_TYPE_INT64
constexpr int kTypeFloat = 4;            // CUDNN_TYPE_FLOAT
constexpr int kTypeVoidPtr = 6;          // CUDNN_TYPE_VOID_PTR
constexpr int kTypeConvolutionMode = 7;  // CUDNN_TYPE_CONVOLUTION_MODE
constexpr int kTypeHeurMode = 8;         // CUDNN_TYPE_HEUR_MODE
constexpr int kTypePointwiseMode = 14;   // CUDNN_TYPE_POINTWISE_MODE
constexpr int kTypeDescriptor = 15;      // CUDNN_TYPE_BACKEND_DESCRIPTOR
constexpr int kTypeReductionOp = 18;     // CUDNN_TYPE_REDUCTION_OPERATOR_TYPE

// cudnnBackendAttributeName_t
constexpr int kPointwiseMode = 0;             // CUDNN_ATTR_POINTWISE_MODE
constexpr int kPointwiseMathPrec = 1;         // CUDNN_ATTR_POINTWISE_MATH_PREC
constexpr int kPointwiseAxis = 9;             // CUDNN_ATTR_POINTWISE_AXIS
constexpr int kConvCompType = 100;            // CUDNN_ATTR_CONVOLUTION_COMP_TYPE
constexpr int kConvMode = 101;                // CUDNN_ATTR_CONVOLUTION_CONV_MODE
constexpr int kConvDilations = 102;           // CUDNN_ATTR_CONVOLUTION_DILATIONS
constexpr int kConvFilterStrides = 103;       // CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES
constexpr int kConvPostPaddings = 104;        // CUDNN_ATTR_CONVOLUTION_POST_PADDINGS
constexpr int kConvPrePaddings = 105;         // CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS
constexpr int kConvSpatialDims = 106;         // CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS
constexpr int kHeurMode = 200;                // CUDNN_ATTR_ENGINEHEUR_MODE
constexpr int kHeurOperationGraph = 201;      // CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH
constexpr int kHeurResults = 202;             // CUDNN_ATTR_ENGINEHEUR_RESULTS
constexpr int kPlanHandle = 400;              // CUDNN_ATTR_EXECUTION_PLAN_HANDLE
constexpr int kPlanEngineConfig = 401;        // CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG
constexpr int kPlanWorkspaceSize = 402;       // CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE
constexpr int kConvFwdAlpha = 700;            // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA
constexpr int kConvFwdBeta = 701;             // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA
constexpr int kConvFwdConvDesc = 702;         // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC
constexpr int kConvFwdW = 703;                // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W
constexpr int kConvFwdX = 704;                // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X
constexpr int kConvFwdY = 705;                // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y
constexpr int kPointwisePwDesc = 750;         // CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR
constexpr int kPointwiseX = 751;              // CUDNN_ATTR_OPERATION_POINTWISE_XDESC
constexpr int kPointwiseB = 752;              // CUDNN_ATTR_OPERATION_POINTWISE_BDESC
constexpr int kPointwiseY = 753;              // CUDNN_ATTR_OPERATION_POINTWISE_YDESC
constexpr int kPointwiseT = 758;              // CUDNN_ATTR_OPERATION_POINTWISE_TDESC
constexpr int kGraphHandle = 800;             // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
constexpr int kGraphOps = 801;                // CUDNN_ATTR_OPERATIONGRAPH_OPS
constexpr int kTensorByteAlignment = 900;     // CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT
constexpr int kTensorDataType = 901;          // CUDNN_ATTR_TENSOR_DATA_TYPE
constexpr int kTensorDimensions = 902;        // CUDNN_ATTR_TENSOR_DIMENSIONS
constexpr int kTensorStrides = 903;           // CUDNN_ATTR_TENSOR_STRIDES
constexpr int kTensorUniqueId = 906;          // CUDNN_ATTR_TENSOR_UNIQUE_ID
constexpr int kTensorIsVirtual = 907;         // CUDNN_ATTR_TENSOR_IS_VIRTUAL
constexpr int kTensorIsByValue = 908;         // CUDNN_ATTR_TENSOR_IS_BY_VALUE
constexpr int kVariantPackUniqueIds = 1000;   // CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS
constexpr int kVariantPackDataPointers = 1001;  // CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS
constexpr int kVariantPackWorkspace = 1003;   // CUDNN_ATTR_VARIANT_PACK_WORKSPACE
constexpr int kMatmulCompType = 1500;        // CUDNN_ATTR_MATMUL_COMP_TYPE
constexpr int kMatmulA = 1520;                // CUDNN_ATTR_OPERATION_MATMUL_ADESC
constexpr int kMatmulB = 1521;                // CUDNN_ATTR_OPERATION_MATMUL_BDESC
constexpr int kMatmulC = 1522;                // CUDNN_ATTR_OPERATION_MATMUL_CDESC
constexpr int kMatmulOpMatmul = 1523;         // CUDNN_ATTR_OPERATION_MATMUL_DESC
constexpr int kReductionOperator = 1600;      // CUDNN_ATTR_REDUCTION_OPERATOR
constexpr int kReductionCompType = 1601;      // CUDNN_ATTR_REDUCTION_COMP_TYPE
constexpr int kReductionX = 1610;             // CUDNN_ATTR_OPERATION_REDUCTION_XDESC
constexpr int kReductionY = 1611;             // CUDNN_ATTR_OPERATION_REDUCTION_YDESC
constexpr int kReductionOpReduction = 1612;   // CUDNN_ATTR_OPERATION_REDUCTION_DESC
constexpr int kSdpaFwdQ = 2800;               // CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC
constexpr int kSdpaFwdK = 2801;               // CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC
constexpr int kSdpaFwdV = 2802;               // CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC
constexpr int kSdpaFwdO = 2803;               // CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC
constexpr int kSdpaFwdScale = 2805;           // CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC

constexpr int kHeurModeInstant = 0;           // CUDNN_HEUR_MODE_INSTANT
constexpr int kHeurModeFallback = 2;          // CUDNN_HEUR_MODE_FALLBACK
constexpr int kPointwiseAdd = 0;              // CUDNN_POINTWISE_ADD
constexpr int kPointwiseMul = 1;              // CUDNN_POINTWISE_MUL
constexpr int kPointwiseDiv = 6;              // CUDNN_POINTWISE_DIV
constexpr int kPointwiseSub = 9;              // CUDNN_POINTWISE_SUB
constexpr int kPointwiseExp = 13;             // CUDNN_POINTWISE_EXP
constexpr int kPointwiseLog = 15;             // CUDNN_POINTWISE_LOG
constexpr int kPointwiseCmpGe = 303;          // CUDNN_POINTWISE_CMP_GE
constexpr int kPointwiseGenIndex = 501;       // CUDNN_POINTWISE_GEN_INDEX
constexpr int kPointwiseBinarySelect = 601;   // CUDNN_POINTWISE_BINARY_SELECT
constexpr int kReduceAdd = 0;                 // CUDNN_REDUCE_TENSOR_ADD
constexpr int kReduceMax = 3;                 // CUDNN_REDUCE_TENSOR_MAX

}  // namespace cudnn_backend
}  // namespace blade
