# Sanitizer and fuzzing builds. CQKV_SANITIZE instruments every target with AddressSanitizer and
# UndefinedBehaviorSanitizer (any UB report aborts, so a test cannot pass over one); CQKV_FUZZ
# also adds libFuzzer's coverage instrumentation to the readers and builds the targets of
# fuzz/. Both are meant for their own build directory with CMAKE_BUILD_TYPE=Debug (asserts on;
# -O1 keeps it fast enough and the stack traces exact).
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
  # Coverage feedback only for what the fuzz targets explore (fuzz/fuzz_entries.cc): the readers
  # of files, flags and requests. Kernels, caches and the model stay uninstrumented: coverage
  # there guides no fuzz target, and its per-branch callbacks slowed every sanitizer test that
  # runs them. Only the fuzz targets link libFuzzer's main (fuzz/).
  file(GLOB CQKV_FUZZ_COVERAGE_SOURCES CONFIGURE_DEPENDS
       ${CMAKE_SOURCE_DIR}/fuzz/*.cc                     # the entries and their in-memory files
       ${CMAKE_SOURCE_DIR}/src/gguf/*.cc                 # GGUF files
       ${CMAKE_SOURCE_DIR}/src/tokenizer/*.cc            # vocabularies (.bin, .gguf, .json), text
       ${CMAKE_SOURCE_DIR}/src/loader/*.cc               # models: GGUF, llama2.c, HF safetensors
       ${CMAKE_SOURCE_DIR}/src/quant/codebook.cc         # .cqcb files
       ${CMAKE_SOURCE_DIR}/src/quant/value_basis.cc      # .cqcb value bases -> tables
       ${CMAKE_SOURCE_DIR}/src/kv/kv_spec.cc             # --kv specs and their parts
       ${CMAKE_SOURCE_DIR}/src/kv/mixed_spec.cc
       ${CMAKE_SOURCE_DIR}/src/kv/cq_spec.cc
       ${CMAKE_SOURCE_DIR}/src/kv/quant_cache.cc         # ParseQuantSpec
       ${CMAKE_SOURCE_DIR}/src/eval/dataset.cc           # --data specs and text/jsonl files
       ${CMAKE_SOURCE_DIR}/src/serve/openai_api.cc       # HTTP request bodies
       ${CMAKE_SOURCE_DIR}/src/serve/chat_template.cc
       ${CMAKE_SOURCE_DIR}/src/util/mapped_file.cc       # what every file reader goes through
       ${CMAKE_SOURCE_DIR}/src/util/input_file.cc
       ${CMAKE_SOURCE_DIR}/src/util/byte_size.cc
       ${CMAKE_SOURCE_DIR}/src/util/escape.cc
       ${CMAKE_SOURCE_DIR}/src/util/utf8.cc)
  set_property(SOURCE ${CQKV_FUZZ_COVERAGE_SOURCES} APPEND PROPERTY COMPILE_OPTIONS
               -fsanitize=fuzzer-no-link)
endif()
