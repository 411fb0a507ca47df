// Blade runtime: cubin launches through the CUDA driver API, loaded at run time (see cuda_driver.h).
#include "cuda_driver.h"

#include <dlfcn.h>

#include <cstring>
#include <stdexcept>

#include "dl_symbols.h"

namespace blade {

namespace {

// The driver's ABI, as far as Blade uses it (values from the CUDA driver API reference).
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
constexpr int kFuncAttrSharedSizeBytes = 1;             // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
constexpr int kFuncAttrMaxDynamicSharedBytes = 8;       // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
constexpr int kDevAttrMaxSharedPerBlockOptin = 97;      // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
constexpr int kFuncCachePreferShared = 1;               // CU_FUNC_CACHE_PREFER_SHARED
constexpr int64_t kDefaultSharedLimit = 49152;          // what a kernel gets without opting in
constexpr size_t kMaxParams = 256;                     // parameters of one launch (Triton kernels have tens)
constexpr int kMemoryTypeDevice = 2;                    // CU_MEMORYTYPE_DEVICE

struct Memcpy2D {  // CUDA_MEMCPY2D (v2)
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void* srcHost;
  uint64_t srcDevice;
  void* srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void* dstHost;
  uint64_t dstDevice;
  void* dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};

struct Driver {
  bool loaded = false;
  std::string why;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  CUresult (*cuCtxGetCurrent)(CUcontext*) = nullptr;
  CUresult (*cuCtxGetDevice)(CUdevice*) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuFuncGetAttribute)(int*, int, CUfunction) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int) = nullptr;
  CUresult (*cuFuncSetCacheConfig)(CUfunction, int) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void**, void**) = nullptr;
  CUresult (*cuMemcpy2DAsync)(const Memcpy2D*, CUstream) = nullptr;
};

template <typename F>
bool bind(void* lib, const char* name, F* fn, std::string* why) {
  return bind_symbol(lib, "libcuda.so.1", name, fn, why);
}

Driver load_driver() {
  Driver d;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    d.why = std::string("the CUDA driver (libcuda.so.1) cannot be opened: ") + (err ? err : "unknown error");
    return d;
  }
  bool ok = bind(lib, "cuInit", &d.cuInit, &d.why) && bind(lib, "cuGetErrorName", &d.cuGetErrorName, &d.why) &&
            bind(lib, "cuGetErrorString", &d.cuGetErrorString, &d.why) &&
            bind(lib, "cuCtxGetCurrent", &d.cuCtxGetCurrent, &d.why) &&
            bind(lib, "cuCtxGetDevice", &d.cuCtxGetDevice, &d.why) &&
            bind(lib, "cuCtxSetCurrent", &d.cuCtxSetCurrent, &d.why) &&
            bind(lib, "cuDeviceGet", &d.cuDeviceGet, &d.why) &&
            bind(lib, "cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain, &d.why) &&
            bind(lib, "cuModuleLoadData", &d.cuModuleLoadData, &d.why) &&
            bind(lib, "cuModuleGetFunction", &d.cuModuleGetFunction, &d.why) &&
            bind(lib, "cuDeviceGetAttribute", &d.cuDeviceGetAttribute, &d.why) &&
            bind(lib, "cuFuncGetAttribute", &d.cuFuncGetAttribute, &d.why) &&
            bind(lib, "cuFuncSetAttribute", &d.cuFuncSetAttribute, &d.why) &&
            bind(lib, "cuFuncSetCacheConfig", &d.cuFuncSetCacheConfig, &d.why) &&
            bind(lib, "cuLaunchKernel", &d.cuLaunchKernel, &d.why) &&
            bind(lib, "cuMemcpy2DAsync_v2", &d.cuMemcpy2DAsync, &d.why);
  if (!ok) return d;
  CUresult r = d.cuInit(0);
  if (r != 0) {
    d.why = "cuInit failed with CUDA error " + std::to_string(r) + " (no usable GPU?)";
    return d;
  }
  d.loaded = true;
  return d;
}

const Driver& driver() {
  static const Driver d = load_driver();  // thread-safe initialisation (C++11)
  return d;
}

std::string error_text(CUresult r) {
  const Driver& d = driver();
  const char* name = nullptr;
  const char* text = nullptr;
  if (d.cuGetErrorName) d.cuGetErrorName(r, &name);
  if (d.cuGetErrorString) d.cuGetErrorString(r, &text);
  return std::string(name ? name : "CUDA error") + " (" + std::to_string(r) + "): " + (text ? text : "");
}

void check(CUresult r, const std::string& what) {
  if (r != 0) throw std::runtime_error(what + ": " + error_text(r));
}

}  // namespace

PackedParams pack_params(const std::string& codes, const std::vector<KernelArg>& args) {
  if (codes.size() != args.size()) {
    throw std::invalid_argument("pack_params: " + std::to_string(codes.size()) + " type codes for " +
                                std::to_string(args.size()) + " arguments");
  }
  PackedParams p;
  p.slots.assign(codes.size() + 2, 0);  // + global and profile scratch (null)
  for (size_t k = 0; k < codes.size(); ++k) {
    uint64_t& slot = p.slots[k];
    const KernelArg& a = args[k];
    switch (codes[k]) {
      case 'p': slot = static_cast<uint64_t>(a.i); break;
      case 'b': { int8_t v = static_cast<int8_t>(a.i); std::memcpy(&slot, &v, sizeof v); break; }
      case 'i': { int32_t v = static_cast<int32_t>(a.i); std::memcpy(&slot, &v, sizeof v); break; }
      case 'l': { int64_t v = a.i; std::memcpy(&slot, &v, sizeof v); break; }
      case 'f': { float v = static_cast<float>(a.f); std::memcpy(&slot, &v, sizeof v); break; }
      case 'd': { double v = a.f; std::memcpy(&slot, &v, sizeof v); break; }
      default:
        throw std::invalid_argument(std::string("pack_params: unknown type code '") + codes[k] + "'");
    }
  }
  p.pointers.reserve(p.slots.size());
  for (uint64_t& s : p.slots) p.pointers.push_back(&s);
  return p;
}

bool cuda_available(std::string* why) {
  const Driver& d = driver();
  if (!d.loaded && why) *why = d.why;
  return d.loaded;
}

CudaKernel::CudaKernel(std::string cubin, std::string entry, int64_t shared_bytes, int64_t num_warps)
    : cubin_(std::move(cubin)), entry_(std::move(entry)), shared_(shared_bytes), num_warps_(num_warps) {
  if (num_warps_ < 1 || shared_ < 0) {
    throw std::invalid_argument("CudaKernel " + entry_ + ": num_warps must be >= 1 and shared >= 0");
  }
}

void* current_context(int64_t device) {
  std::string why;
  if (!cuda_available(&why)) throw std::runtime_error(why);
  const Driver& d = driver();
  CUcontext ctx = nullptr;
  check(d.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  CUdevice want = 0;
  check(d.cuDeviceGet(&want, static_cast<int>(device)), "cuDeviceGet");
  CUdevice have = -1;
  if (ctx != nullptr) check(d.cuCtxGetDevice(&have), "cuCtxGetDevice");
  if (ctx == nullptr || have != want) {
    // a thread that has not touched this device through the runtime API yet: its primary context
    // (the one PyTorch and Triton use), made current, as Triton's launcher does
    check(d.cuDevicePrimaryCtxRetain(&ctx, want), "retaining the primary context of device " + std::to_string(device));
    check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  }
  return ctx;
}

void copy_2d(uint64_t dst, int64_t dst_pitch, uint64_t src, int64_t src_pitch, int64_t width, int64_t height,
             uint64_t stream, int64_t device) {
  if (width < 0 || height < 0 || (height > 1 && (src_pitch < width || dst_pitch < width))) {
    throw std::invalid_argument("copy of " + std::to_string(height) + " rows of " + std::to_string(width) +
                                " bytes: a pitch (source " + std::to_string(src_pitch) + ", destination " +
                                std::to_string(dst_pitch) + ") below the width, or a negative size");
  }
  if (width == 0 || height == 0) return;
  current_context(device);
  Memcpy2D c{};
  c.srcMemoryType = c.dstMemoryType = kMemoryTypeDevice;
  c.srcDevice = src;
  c.dstDevice = dst;
  // one row: the driver still checks the pitches against the width
  c.srcPitch = static_cast<size_t>(height > 1 ? src_pitch : width);
  c.dstPitch = static_cast<size_t>(height > 1 ? dst_pitch : width);
  c.WidthInBytes = static_cast<size_t>(width);
  c.Height = static_cast<size_t>(height);
  check(driver().cuMemcpy2DAsync(&c, reinterpret_cast<CUstream>(stream)),
        "copying " + std::to_string(height) + " rows of " + std::to_string(width) + " bytes (pitches " +
            std::to_string(src_pitch) + " -> " + std::to_string(dst_pitch) + ")");
}

void* CudaKernel::function_for_device(int64_t device) {
  std::string why;
  if (!cuda_available(&why)) throw std::runtime_error("cannot launch " + entry_ + ": " + why);
  const Driver& d = driver();
  CUcontext ctx = current_context(device);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = loaded_.find(ctx);
  if (it != loaded_.end()) return it->second.second;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
  check(d.cuModuleLoadData(&module, cubin_.data()), "loading the cubin of " + entry_);
  check(d.cuModuleGetFunction(&fn, module, entry_.c_str()), "finding " + entry_ + " in its cubin");
  if (shared_ > kDefaultSharedLimit) {  // opt in to more shared memory, as Triton's launcher does
    CUdevice dev = 0;
    int optin = 0, statics = 0;
    check(d.cuCtxGetDevice(&dev), "cuCtxGetDevice");
    check(d.cuDeviceGetAttribute(&optin, kDevAttrMaxSharedPerBlockOptin, dev), "reading the shared memory limit");
    if (shared_ > optin) {
      throw std::runtime_error(entry_ + " needs " + std::to_string(shared_) + " bytes of shared memory; this GPU "
                               "allows " + std::to_string(optin) + " per block");
    }
    check(d.cuFuncSetCacheConfig(fn, kFuncCachePreferShared), "cuFuncSetCacheConfig");
    check(d.cuFuncGetAttribute(&statics, kFuncAttrSharedSizeBytes, fn), "cuFuncGetAttribute");
    check(d.cuFuncSetAttribute(fn, kFuncAttrMaxDynamicSharedBytes, optin - statics), "cuFuncSetAttribute");
  }
  loaded_[ctx] = {module, fn};
  return fn;
}

void CudaKernel::launch(int64_t gx, int64_t gy, int64_t gz, uint64_t stream, const std::string& codes,
                        const std::vector<KernelArg>& args, int64_t device) {
  PackedParams p = pack_params(codes, args);
  launch_slots(gx, gy, gz, stream, p.slots.data(), p.slots.size(), device);
}

void CudaKernel::launch_slots(int64_t gx, int64_t gy, int64_t gz, uint64_t stream, uint64_t* slots, size_t count,
                              int64_t device) {
  if (gx < 0 || gy < 0 || gz < 0) {
    throw std::invalid_argument("launch " + entry_ + ": negative grid");
  }
  if (gx == 0 || gy == 0 || gz == 0) return;  // nothing to do (Triton's launcher skips it too)
  if (gx > 0x7fffffff || gy > 65535 || gz > 65535) {
    throw std::invalid_argument("launch " + entry_ + ": grid (" + std::to_string(gx) + ", " + std::to_string(gy) +
                                ", " + std::to_string(gz) + ") exceeds CUDA's limits (2^31-1, 65535, 65535)");
  }
  void* fn = function_for_device(device);
  void* pointers[kMaxParams];
  if (count > kMaxParams) {
    throw std::invalid_argument("launch " + entry_ + ": " + std::to_string(count) + " parameters (at most " +
                                std::to_string(kMaxParams) + ")");
  }
  for (size_t k = 0; k < count; ++k) pointers[k] = &slots[k];
  CUresult r = driver().cuLaunchKernel(fn, static_cast<unsigned>(gx), static_cast<unsigned>(gy),
                                       static_cast<unsigned>(gz), static_cast<unsigned>(32 * num_warps_), 1, 1,
                                       static_cast<unsigned>(shared_), reinterpret_cast<CUstream>(stream),
                                       pointers, nullptr);
  if (r != 0) {
    throw std::runtime_error("launching " + entry_ + " on grid (" + std::to_string(gx) + ", " + std::to_string(gy) +
                             ", " + std::to_string(gz) + "): " + error_text(r));
  }
}

}  // namespace blade
