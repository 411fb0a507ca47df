// The ctest programs' one assertion: count a failed check, say what it was, keep going; main
// returns non-zero when any failed.
#pragma once

#include <cstdio>
#include <string>

namespace blade_test {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

}  // namespace blade_test
