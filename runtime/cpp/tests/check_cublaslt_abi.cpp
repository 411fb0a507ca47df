// Compile-time check of runtime/cpp/cublaslt_abi.h against NVIDIA's cublasLt.h: built only where
// the CUDA toolkit's headers are found (CMakeLists.txt), which is the GPU machine, not CI. A
// mismatch fails the build naming the value.
#include <cublasLt.h>

#include "cublaslt_abi.h"

namespace abi = blade::cublaslt_abi;

static_assert(sizeof(abi::Algo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t size");
static_assert(sizeof(abi::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t), "heuristic result size");
static_assert(offsetof(abi::HeuristicResult, workspaceSize) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize),
              "heuristic result: workspaceSize offset");
static_assert(offsetof(abi::HeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state),
              "heuristic result: state offset");
static_assert(abi::kSuccess == CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS");
static_assert(abi::kFloat32 == CUDA_R_32F, "CUDA_R_32F");
static_assert(abi::kFloat16 == CUDA_R_16F, "CUDA_R_16F");
static_assert(abi::kBFloat16 == CUDA_R_16BF, "CUDA_R_16BF");
static_assert(abi::kCompute32F == CUBLAS_COMPUTE_32F, "CUBLAS_COMPUTE_32F");
static_assert(abi::kOpN == CUBLAS_OP_N && abi::kOpT == CUBLAS_OP_T, "cublasOperation_t");
static_assert(abi::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA, "CUBLASLT_MATMUL_DESC_TRANSA");
static_assert(abi::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB, "CUBLASLT_MATMUL_DESC_TRANSB");
static_assert(abi::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE, "CUBLASLT_MATMUL_DESC_EPILOGUE");
static_assert(abi::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER, "CUBLASLT_MATMUL_DESC_BIAS_POINTER");
static_assert(abi::kDescBiasDataType == CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, "CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE");
static_assert(abi::kEpilogueDefault == CUBLASLT_EPILOGUE_DEFAULT, "CUBLASLT_EPILOGUE_DEFAULT");
static_assert(abi::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS, "CUBLASLT_EPILOGUE_BIAS");
static_assert(abi::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT");
static_assert(abi::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
              "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET");
static_assert(abi::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
              "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES");
static_assert(abi::kPrefMinAlignmentA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, "MIN_ALIGNMENT_A_BYTES");
static_assert(abi::kPrefMinAlignmentB == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, "MIN_ALIGNMENT_B_BYTES");
static_assert(abi::kPrefMinAlignmentC == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, "MIN_ALIGNMENT_C_BYTES");
static_assert(abi::kPrefMinAlignmentD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, "MIN_ALIGNMENT_D_BYTES");

int main() { return 0; }
