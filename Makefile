# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
BUILD ?= build
JOBS ?= $(shell nproc)
SHARED ?= $(abspath ../shared)
CMAKE_FLAGS ?=

.PHONY: setup configure build build-cli demo test bench clean format

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

bench: build
	@bash scripts/bench.sh $(BUILD) $(SHARED)

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
