// cuBLASLt's ABI as far as Blade uses it: opaque handles, the heuristic result's layout and the
// enum values (from cublasLt.h / library_types.h of CUDA 12 and 13, where they are the same).
// Declared here so the runtime builds without the CUDA toolkit; where the toolkit is installed,
// runtime/cpp/tests/check_cublaslt_abi.cpp checks every value below against NVIDIA's header at
// build time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blade {
namespace cublaslt_abi {

using Status = int;  // cublasStatus_t
using Handle = struct LtContext*;
using MatmulDesc = struct LtMatmulDesc*;
using Layout = struct LtLayout*;
using Preference = struct LtPreference*;

struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

constexpr Status kSuccess = 0;                 // CUBLAS_STATUS_SUCCESS
constexpr int kFloat32 = 0;                    // CUDA_R_32F
constexpr int kFloat16 = 2;                    // CUDA_R_16F
constexpr int kBFloat16 = 14;                  // CUDA_R_16BF
constexpr int kCompute32F = 68;                // CUBLAS_COMPUTE_32F
constexpr int kOpN = 0;                        // CUBLAS_OP_N
constexpr int kOpT = 1;                        // CUBLAS_OP_T
constexpr int kDescTransA = 3;                 // CUBLASLT_MATMUL_DESC_TRANSA
constexpr int kDescTransB = 4;                 // CUBLASLT_MATMUL_DESC_TRANSB
constexpr int kDescEpilogue = 7;               // CUBLASLT_MATMUL_DESC_EPILOGUE
constexpr int kDescBiasPointer = 8;            // CUBLASLT_MATMUL_DESC_BIAS_POINTER
constexpr int kDescBiasDataType = 26;          // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE
constexpr uint32_t kEpilogueDefault = 1;       // CUBLASLT_EPILOGUE_DEFAULT
constexpr uint32_t kEpilogueBias = 4;          // CUBLASLT_EPILOGUE_BIAS
constexpr int kLayoutBatchCount = 5;           // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT
constexpr int kLayoutStridedBatchOffset = 6;   // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET
constexpr int kPrefMaxWorkspaceBytes = 1;      // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
constexpr int kPrefMinAlignmentA = 5;          // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES
constexpr int kPrefMinAlignmentB = 6;          // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES
constexpr int kPrefMinAlignmentC = 7;          // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES
constexpr int kPrefMinAlignmentD = 8;          // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES

}  // namespace cublaslt_abi
}  // namespace blade
