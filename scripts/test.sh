#!/bin/sh
# test.sh - the whole suite, as CI runs it: installs dependencies, builds with warnings as
# errors, runs every test (unit, integration against a real broker, ops, the container image),
# then builds again under AddressSanitizer + UndefinedBehaviorSanitizer and runs the suite
# there too (the container image is built once, in the first pass).
set -eu
cd "$(dirname "$0")/.."
export MPB_REQUIRE_CONTAINER=1 # CI has podman: a container test that cannot run fails
./scripts/deps.sh
JOBS=$(nproc 2>/dev/null || echo 2)

echo "== format (.clang-format; fix with: git ls-files '*.c' '*.h' | xargs clang-format -i)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

echo "== build (release -O3, -Werror: the optimiser finds warnings the debug build does not)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMPB_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
echo "== tests"
(cd build && ctest -j"$JOBS" --output-on-failure --timeout 900)

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMPB_WERROR=ON -DMPB_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$JOBS"
echo "== tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
(cd build-asan && ctest -j"$JOBS" --output-on-failure --timeout 900 -LE container)
