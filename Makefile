# Thin wrapper around CMake. `make` builds into build/, `make demo` runs the
# demo job, `make test` runs every test that needs no GPU, `make bench` the
# benchmarks. Missing Debian packages are installed (as root) or named.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# `override`: flags given on the command line (make CMAKE_FLAGS=...) are kept and
# these are added to them, instead of being silently dropped.
CMAKE_FLAGS ?=
ifeq ($(CI),true)
override CMAKE_FLAGS += -DSL_WERROR=ON
endif
ifneq ($(SANITIZE),)
override CMAKE_FLAGS += -DSL_SANITIZE=$(SANITIZE)
endif

.PHONY: all deps test-deps configure build demo test test-slurm bench clean fuzz tsan install

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
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE 'gpu|slow'

# make install PREFIX=/opt/stemline (default /usr/local; DESTDIR=... for staging):
# PREFIX/bin/stemline, PREFIX/share/stemline/{data,configs}, PREFIX/share/doc/stemline.
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# configs/slurm-array.sh under a real single-node Slurm started by the test (as
# root; installs slurmctld, slurmd and munge): the `slow` test slow.slurm_array
test-slurm: test-deps build
	@scripts/deps.sh slurm
	cd $(BUILD) && ctest --output-on-failure -R '^slow\.slurm_array$$'

# Benchmarks (bench/run: catalog with ground truth, throughput, memory, SDR, baselines; RESULTS.md).
# `make bench` is quick mode (< 10 min on 2 cores); full: make bench BENCH_ARGS="--full --tracks 1000"
BENCH_ARGS ?=
bench: build test-deps
	STEMLINE=$(BUILD)/stemline BENCH_DSP=$(BUILD)/bench_dsp BENCH_UMX=$(BUILD)/bench_umx bench/run $(BENCH_ARGS)

# Fuzzes the safetensors reader with libFuzzer (clang, from Debian: clang and
# libclang-rt-14-dev) for FUZZ_SECONDS on a seed corpus made by the target's own
# case list; crashes land in $(BUILD)/fuzz/. CI runs the same cases without
# libFuzzer (ctest unit.fuzz_safetensors).
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SRC = tests/fuzz/fuzz_safetensors.c io/safetensors.c common/sl_error.c
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -I. -g -O1 $(shell pkg-config --cflags libavutil)
FUZZ_LIBS = $(shell pkg-config --libs libavutil)
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs clang: apt-get install -y clang libclang-rt-14-dev"; exit 1; }
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $(BUILD)/fuzz/fuzz_safetensors $(FUZZ_SRC) $(FUZZ_LIBS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DSL_FUZZ_SEED_MAIN -o $(BUILD)/fuzz/fuzz_seeds $(FUZZ_SRC) $(FUZZ_LIBS)
	rm -rf $(BUILD)/fuzz/corpus && $(BUILD)/fuzz/fuzz_seeds $(BUILD)/fuzz/corpus
	cd $(BUILD)/fuzz && ./fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 corpus

# ThreadSanitizer: builds into $(TSAN_BUILD) with SL_SANITIZE=thread and runs the
# runner's tests there (tests/slow/test_tsan.sh, also ctest slow.tsan); fails on
# any data race, lock-order inversion or signal-unsafe call reported.
TSAN_BUILD ?= $(BUILD)-tsan
tsan: test-deps
	bash tests/slow/test_tsan.sh $(TSAN_BUILD)

clean:
	rm -rf $(BUILD)
