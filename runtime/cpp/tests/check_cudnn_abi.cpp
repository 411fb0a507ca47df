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

namespace be = blade::cudnn_backend;
static_assert(be::kPointwiseDesc == CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "CUDNN_BACKEND_POINTWISE_DESCRIPTOR");
static_assert(be::kConvolutionDesc == CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR");
static_assert(be::kEngineCfgDesc == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "CUDNN_BACKEND_ENGINECFG_DESCRIPTOR");
static_assert(be::kEngineHeurDesc == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR");
static_assert(be::kExecutionPlanDesc == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR");
static_assert(be::kConvForwardOpDesc == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, "CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR");
static_assert(be::kPointwiseOpDesc == CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR");
static_assert(be::kOperationGraphDesc == CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR");
static_assert(be::kVariantPackDesc == CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR");
static_assert(be::kTensorDesc == CUDNN_BACKEND_TENSOR_DESCRIPTOR, "CUDNN_BACKEND_TENSOR_DESCRIPTOR");
static_assert(be::kTypeHandle == CUDNN_TYPE_HANDLE, "CUDNN_TYPE_HANDLE");
static_assert(be::kTypeDataType == CUDNN_TYPE_DATA_TYPE, "CUDNN_TYPE_DATA_TYPE");
static_assert(be::kTypeBoolean == CUDNN_TYPE_BOOLEAN, "CUDNN_TYPE_BOOLEAN");
static_assert(be::kTypeInt64 == CUDNN_TYPE_INT64, "CUDNN_TYPE_INT64");
static_assert(be::kTypeFloat == CUDNN_TYPE_FLOAT, "CUDNN_TYPE_FLOAT");
static_assert(be::kTypeVoidPtr == CUDNN_TYPE_VOID_PTR, "CUDNN_TYPE_VOID_PTR");
static_assert(be::kTypeConvolutionMode == CUDNN_TYPE_CONVOLUTION_MODE, "CUDNN_TYPE_CONVOLUTION_MODE");
static_assert(be::kTypeHeurMode == CUDNN_TYPE_HEUR_MODE, "CUDNN_TYPE_HEUR_MODE");
static_assert(be::kTypePointwiseMode == CUDNN_TYPE_POINTWISE_MODE, "CUDNN_TYPE_POINTWISE_MODE");
static_assert(be::kTypeDescriptor == CUDNN_TYPE_BACKEND_DESCRIPTOR, "CUDNN_TYPE_BACKEND_DESCRIPTOR");
static_assert(be::kPointwiseMode == CUDNN_ATTR_POINTWISE_MODE, "CUDNN_ATTR_POINTWISE_MODE");
static_assert(be::kPointwiseMathPrec == CUDNN_ATTR_POINTWISE_MATH_PREC, "CUDNN_ATTR_POINTWISE_MATH_PREC");
static_assert(be::kConvCompType == CUDNN_ATTR_CONVOLUTION_COMP_TYPE, "CUDNN_ATTR_CONVOLUTION_COMP_TYPE");
static_assert(be::kConvMode == CUDNN_ATTR_CONVOLUTION_CONV_MODE, "CUDNN_ATTR_CONVOLUTION_CONV_MODE");
static_assert(be::kConvDilations == CUDNN_ATTR_CONVOLUTION_DILATIONS, "CUDNN_ATTR_CONVOLUTION_DILATIONS");
static_assert(be::kConvFilterStrides == CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, "CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES");
static_assert(be::kConvPostPaddings == CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, "CUDNN_ATTR_CONVOLUTION_POST_PADDINGS");
static_assert(be::kConvPrePaddings == CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, "CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS");
static_assert(be::kConvSpatialDims == CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, "CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS");
static_assert(be::kHeurMode == CUDNN_ATTR_ENGINEHEUR_MODE, "CUDNN_ATTR_ENGINEHEUR_MODE");
static_assert(be::kHeurOperationGraph == CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, "CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH");
static_assert(be::kHeurResults == CUDNN_ATTR_ENGINEHEUR_RESULTS, "CUDNN_ATTR_ENGINEHEUR_RESULTS");
static_assert(be::kPlanHandle == CUDNN_ATTR_EXECUTION_PLAN_HANDLE, "CUDNN_ATTR_EXECUTION_PLAN_HANDLE");
static_assert(be::kPlanEngineConfig == CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, "CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG");
static_assert(be::kPlanWorkspaceSize == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, "CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE");
static_assert(be::kConvFwdAlpha == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA");
static_assert(be::kConvFwdBeta == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA");
static_assert(be::kConvFwdConvDesc == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC");
static_assert(be::kConvFwdW == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W");
static_assert(be::kConvFwdX == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X");
static_assert(be::kConvFwdY == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y");
static_assert(be::kPointwisePwDesc == CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, "CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR");
static_assert(be::kPointwiseX == CUDNN_ATTR_OPERATION_POINTWISE_XDESC, "CUDNN_ATTR_OPERATION_POINTWISE_XDESC");
static_assert(be::kPointwiseB == CUDNN_ATTR_OPERATION_POINTWISE_BDESC, "CUDNN_ATTR_OPERATION_POINTWISE_BDESC");
static_assert(be::kPointwiseY == CUDNN_ATTR_OPERATION_POINTWISE_YDESC, "CUDNN_ATTR_OPERATION_POINTWISE_YDESC");
static_assert(be::kGraphHandle == CUDNN_ATTR_OPERATIONGRAPH_HANDLE, "CUDNN_ATTR_OPERATIONGRAPH_HANDLE");
static_assert(be::kGraphOps == CUDNN_ATTR_OPERATIONGRAPH_OPS, "CUDNN_ATTR_OPERATIONGRAPH_OPS");
static_assert(be::kTensorByteAlignment == CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, "CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT");
static_assert(be::kTensorDataType == CUDNN_ATTR_TENSOR_DATA_TYPE, "CUDNN_ATTR_TENSOR_DATA_TYPE");
static_assert(be::kTensorDimensions == CUDNN_ATTR_TENSOR_DIMENSIONS, "CUDNN_ATTR_TENSOR_DIMENSIONS");
static_assert(be::kTensorStrides == CUDNN_ATTR_TENSOR_STRIDES, "CUDNN_ATTR_TENSOR_STRIDES");
static_assert(be::kTensorUniqueId == CUDNN_ATTR_TENSOR_UNIQUE_ID, "CUDNN_ATTR_TENSOR_UNIQUE_ID");
static_assert(be::kTensorIsVirtual == CUDNN_ATTR_TENSOR_IS_VIRTUAL, "CUDNN_ATTR_TENSOR_IS_VIRTUAL");
static_assert(be::kTensorIsByValue == CUDNN_ATTR_TENSOR_IS_BY_VALUE, "CUDNN_ATTR_TENSOR_IS_BY_VALUE");
static_assert(be::kVariantPackUniqueIds == CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, "CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS");
static_assert(be::kVariantPackDataPointers == CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, "CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS");
static_assert(be::kVariantPackWorkspace == CUDNN_ATTR_VARIANT_PACK_WORKSPACE, "CUDNN_ATTR_VARIANT_PACK_WORKSPACE");
static_assert(be::kHeurModeInstant == CUDNN_HEUR_MODE_INSTANT, "CUDNN_HEUR_MODE_INSTANT");
static_assert(be::kHeurModeFallback == CUDNN_HEUR_MODE_FALLBACK, "CUDNN_HEUR_MODE_FALLBACK");
static_assert(be::kPointwiseAdd == CUDNN_POINTWISE_ADD, "CUDNN_POINTWISE_ADD");

int main() { return 0; }
// the fused attention operation (cuDNN 9.13.1 and later; the GPU machine's cuDNN has it)
#if CUDNN_VERSION >= 91301
static_assert(be::kSdpaFwdOpDesc == CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, "CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR");
static_assert(be::kSdpaFwdQ == CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, "CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC");
static_assert(be::kSdpaFwdK == CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, "CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC");
static_assert(be::kSdpaFwdV == CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, "CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC");
static_assert(be::kSdpaFwdO == CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, "CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC");
static_assert(be::kSdpaFwdScale == CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, "CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC");
#endif
