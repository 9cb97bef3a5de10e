# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
BUILD ?= build
JOBS ?= $(shell nproc)
SHARED ?= $(abspath ../shared)
CMAKE_FLAGS ?=

# Sanitizer and fuzzing build (clang): unit tests under ASan + UBSan, libFuzzer targets of fuzz/.
ASAN_BUILD ?= build-asan
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
# Tests left out of the sanitizer run, with why (each is run by `make test`):
#   install.find_package: links the instrumented static libraries into an uninstrumented outside
#   project, which cannot link without the sanitizer runtime (it tests packaging, not memory).
#   py.layering_test: reads sources with Python only, no instrumented code runs.
ASAN_EXCLUDE ?= ^(install\.find_package|py\.layering_test)$$
# The sanitizer build takes ~15 CPU-minutes; ccache, where installed, makes rebuilds cheap.
CCACHE_FLAG := $(if $(shell command -v ccache 2>/dev/null),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

.PHONY: setup configure build build-cli demo test bench clean format configure-asan test-asan fuzz

setup:
	@bash scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCQKV_SHARED_DIR=$(SHARED) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The demo needs only the tool, not the tests and benchmarks.
build-cli: configure
	@cmake --build $(BUILD) -j $(JOBS) --target cqkv_cli

demo: build-cli
	@bash scripts/demo.sh $(BUILD)/cqkv $(SHARED)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

configure-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
	  -DCQKV_FUZZ=ON -DCQKV_BUILD_BENCH=OFF -DCQKV_SHARED_DIR=$(SHARED) $(CCACHE_FLAG) \
	  $(CMAKE_FLAGS) >/dev/null

test-asan: configure-asan
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -E '$(ASAN_EXCLUDE)'

# Each fuzz target for FUZZ_SECONDS on its corpus ($(ASAN_BUILD)/fuzz-corpus; FUZZ_TARGETS=name
# picks some); findings land in $(ASAN_BUILD)/fuzz-findings.
fuzz: configure-asan
	@cmake --build $(ASAN_BUILD) -j $(JOBS) --target fuzz_targets cqkv_cli
	@bash scripts/fuzz.sh $(ASAN_BUILD) $(SHARED) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: build
	@bash scripts/bench.sh $(BUILD) $(SHARED)

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
