# Thin wrapper around CMake. `make` builds into build/, `make demo` runs the
# demo job, `make test` runs every test that needs no GPU, `make bench` the
# benchmarks. Missing Debian packages are installed (as root) or named.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DSL_WERROR=ON
endif
ifneq ($(SANITIZE),)
CMAKE_FLAGS += -DSL_SANITIZE=$(SANITIZE)
endif

.PHONY: all deps test-deps configure build demo test bench clean

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

demo: build test-deps
	@bash configs/make-demo-audio.sh demo-input
	$(BUILD)/stemline run configs/demo.yaml

test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE gpu

bench: build test-deps
	bash bench/run.sh

clean:
	rm -rf $(BUILD)
