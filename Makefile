# Thin driver over CMake. The README's two commands: `make demo` and `make check`.
# Everything builds into build/; the fuzz build (clang + libFuzzer) into build-fuzz/.

BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
CTEST_ARGS ?=

.PHONY: all bootstrap configure build demo check check-unit check-e2e check-valgrind check-debian13 fuzz soak bench lint format clean

all: build

bootstrap:
	@scripts/bootstrap

$(BUILD)/CMakeCache.txt:
	@scripts/bootstrap
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

configure: $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: bootstrap build
	scripts/demo

check: bootstrap build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 900 $(CTEST_ARGS)

check-unit: bootstrap build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure -L unit $(CTEST_ARGS)

check-e2e: bootstrap build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure -L e2e $(CTEST_ARGS)

# The end-to-end suite with both programs under valgrind memcheck (slow; not part of `make check`).
check-valgrind: bootstrap build
	scripts/check-valgrind $(BUILD)

# libFuzzer: every tests/fuzz/fuzz_*.c, FUZZ_SECONDS each, starting from its corpus.
fuzz: bootstrap build
	scripts/fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Long sweeps and load tests, not part of `make check`.
soak: bootstrap build
	MF_SOAK=1 scripts/soak $(BUILD)

# The README's two commands in a fresh Debian 13 chroot (root; debootstrap). Not part of `check`.
check-debian13:
	scripts/check-debian13

bench: bootstrap build
	scripts/bench $(BUILD)

lint: bootstrap build
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
	  --inline-suppr -I core -I host core host programs

format:
	clang-format -i core/*.[ch] host/*.[ch] programs/*/*.[ch] tests/*/*.[ch] bench/*.c

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
