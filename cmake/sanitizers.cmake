# Sanitizer and fuzzing builds. CQKV_SANITIZE instruments every target with AddressSanitizer and
# UndefinedBehaviorSanitizer (any UB report aborts, so a test cannot pass over one); CQKV_FUZZ
# also adds libFuzzer's coverage instrumentation and builds the targets of fuzz/. Both are meant
# for their own build directory with CMAKE_BUILD_TYPE=Debug (asserts on; -O1 keeps it fast
# enough and the stack traces exact).
option(CQKV_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(CQKV_FUZZ "Build the libFuzzer targets of fuzz/ (clang only; implies CQKV_SANITIZE)" OFF)

if(CQKV_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CQKV_FUZZ=ON needs clang (libFuzzer); configure with "
                        "-DCMAKE_CXX_COMPILER=clang++, got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  set(CQKV_SANITIZE ON)
endif()

if(CQKV_SANITIZE)
  set(CQKV_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
                           -fno-omit-frame-pointer)
  # Line tables are all a sanitizer report needs (function, file:line per frame); full debug
  # info (Debug's -g) makes compiling and linking the instrumented build much slower.
  set(CMAKE_CXX_FLAGS_DEBUG "")
  add_compile_options(-O1 -gline-tables-only ${CQKV_SANITIZER_FLAGS})
  add_link_options(${CQKV_SANITIZER_FLAGS})
  # Tests that need a small address space (ulimit -v) skip themselves under ASan; clang does not
  # define GCC's __SANITIZE_ADDRESS__, so the build says it explicitly.
  add_compile_definitions(CQKV_SANITIZE=1)
endif()

if(CQKV_FUZZ)
  # Coverage feedback for the library; only the fuzz targets link libFuzzer's main (fuzz/).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
