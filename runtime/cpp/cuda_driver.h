// Blade runtime: launching generated kernels (cubins) through the CUDA driver API.
//
// The driver library (libcuda.so.1) is opened at run time, as Triton's own launcher does, so the
// runtime builds, and its tests run, on machines without CUDA (the CI box): there `available()`
// says why not, and nothing else touches the driver. The few driver types and entry points used
// are declared here (no cuda.h needed to build).
//
// * pack_params: a kernel's arguments as the driver's `void** kernelParams`: one 8-byte slot per
//   argument holding its value in the kernel's parameter type, then Triton's two scratch pointers
//   (global and profile scratch; Blade's kernels use neither, so both are null). Type codes, one
//   per argument: 'p' device pointer, 'b' int8, 'i' int32, 'l' int64, 'f' float32, 'd' float64.
// * CudaKernel: one cubin entry point, loaded once per CUDA context on first launch (the module
//   load and the shared-memory opt-in Triton's launcher does; the device's primary context is made
//   current first where it is not), launched with cuLaunchKernel on the caller's stream; a failure
//   raises naming the entry point, the grid and the driver's error.
// * copy_2d: a device-to-device copy of rows (cuMemcpy2DAsync): a concatenation's inputs copied into
//   their slices of the result.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace blade {

// A kernel argument: integers (pointers too) or floating-point values, by type code.
struct KernelArg {
  int64_t i = 0;
  double f = 0.0;
};

struct PackedParams {
  std::vector<uint64_t> slots;    // one 8-byte slot per parameter (scratch pointers included)
  std::vector<void*> pointers;    // &slots[k], what the driver reads
};

// Throws std::invalid_argument on an unknown type code or a count mismatch.
PackedParams pack_params(const std::string& codes, const std::vector<KernelArg>& args);

// Whether the CUDA driver can be used here; `why` says why not.
bool cuda_available(std::string* why);

// Make the primary context of CUDA device `device` current on this thread where the current
// context is another device's (or none); returns the context. Throws where CUDA is unavailable.
void* current_context(int64_t device);

// Enqueue on `stream` of CUDA device `device` a copy of `height` rows of `width` bytes from device
// address `src` (rows `src_pitch` bytes apart) to `dst` (rows `dst_pitch` apart). Throws where a
// pitch is below the width, or naming the driver's error.
void copy_2d(uint64_t dst, int64_t dst_pitch, uint64_t src, int64_t src_pitch, int64_t width, int64_t height,
             uint64_t stream, int64_t device);

class CudaKernel {
 public:
  CudaKernel(std::string cubin, std::string entry, int64_t shared_bytes, int64_t num_warps);

  // grid: (x, y, z) programs; stream: a CUstream handle (0: the legacy default stream) of CUDA
  // device `device` (the runtime's ordinal), whose primary context is made current if it is not.
  void launch(int64_t gx, int64_t gy, int64_t gz, uint64_t stream, const std::string& codes,
              const std::vector<KernelArg>& args, int64_t device = 0);

  // The same with the parameters already packed (pack_params' slots, scratch pointers included);
  // `slots` is read during the call only.
  void launch_slots(int64_t gx, int64_t gy, int64_t gz, uint64_t stream, uint64_t* slots, size_t count,
                    int64_t device = 0);

  const std::string& entry() const { return entry_; }

 private:
  void* function_for_device(int64_t device);

  std::string cubin_, entry_;
  int64_t shared_, num_warps_;
  std::mutex mutex_;
  std::map<void*, std::pair<void*, void*>> loaded_;  // CUcontext -> (CUmodule, CUfunction)
};

}  // namespace blade
