// Blade runtime: opening a library with dlopen and binding its entry points (the CUDA driver,
// cuBLASLt, cuDNN), so nothing here links CUDA at build time.
#pragma once

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace blade {

// dlopen(path) for a library Blade calls by name (`library`, for the message); null and `why`
// ("<library> (<path>) cannot be opened: <dlerror>") where it cannot be opened.
inline void* open_shared_library(const std::string& path, const char* library, std::string* why) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    *why = std::string(library) + " (" + path + ") cannot be opened: " + (err ? err : "unknown error");
  }
  return lib;
}

// The T made by open(path) the first time a path is asked for, kept for the process (a process
// normally opens one copy of each library: PyTorch's). One table per T.
template <typename T>
const T& opened_once(const std::string& path, T (*open)(const std::string&)) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<T>> opened;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = opened[path];
  if (!slot) slot = std::make_unique<T>(open(path));
  return *slot;
}

// *fn = the symbol `name` of `lib`; false (and `why` naming the library and the symbol) where the
// library has no such symbol.
template <typename F>
bool bind_symbol(void* lib, const char* library, const char* name, F* fn, std::string* why) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (*fn == nullptr) {
    *why = std::string(library) + " has no " + name;
    return false;
  }
  return true;
}

}  // namespace blade
