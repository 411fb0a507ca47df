// Blade runtime: binding a library's entry points opened with dlopen (the CUDA driver, cuBLASLt),
// so nothing here links CUDA at build time.
#pragma once

#include <dlfcn.h>

#include <string>

namespace blade {

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
