# nestvm's front door. `make demo` runs the main job; `make test` builds and runs every test.
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_FLAGS ?=

.PHONY: all deps build demo test check test-asan bench clean

all: build

deps:
	@./scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DNESTVM_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)

demo: build
	./$(BUILD)/nestvm

# Every test: the release build's tests, then the unit tests under ASan+UBSan.
test: check test-asan

check: build
	ctest --test-dir $(BUILD) --output-on-failure -j2

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNESTVM_SANITIZE=ON \
	  -DNESTVM_WERROR=ON -DNESTVM_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) --target unit_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(ASAN_BUILD)/tests/unit_tests --gtest_brief=1

bench: build
	./scripts/bench.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
