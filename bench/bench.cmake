# bench.cmake - the benchmark's tests (included by bench/CMakeLists.txt when MPB_TESTS is on).
#
# bench_smoke: mpb-bench against a real mpbrokerd (and an mpb-worker, for pool.apply), every
# test with small -n (-c 2 -P 4 -n 2000); its --csv output must have redis-benchmark's header
# and one row per test with rps > 0; also -P 1 with --json, and --echo over tcp:// and ipc://.
# bench/compare --smoke starts the servers and stops them by PID.
#
# bench_compare_quick: the whole bench/compare --quick (it needs Redis and Python's Manager and
# takes about a minute): registered only when MPB_BENCH_COMPARE=1 is set at configure time.
find_program(MPB_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT MPB_PYTHON3)
  find_program(MPB_PYTHON3 python3)
endif()

if(MPB_PYTHON3)
  set(_mpb_bench_bins
    --mpb-bench $<TARGET_FILE:mpb_bench> --mpbrokerd $<TARGET_FILE:mpbrokerd>
    --worker $<TARGET_FILE:mpb_worker> --mpb $<TARGET_FILE:mpb_cli>
    --demo-lib $<TARGET_FILE:mpbdemo>)

  add_test(NAME bench_smoke
    COMMAND ${MPB_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/compare --smoke --no-build
      ${_mpb_bench_bins})
  set_tests_properties(bench_smoke PROPERTIES LABELS bench TIMEOUT 300)

  if("$ENV{MPB_BENCH_COMPARE}" STREQUAL "1")
    add_test(NAME bench_compare_quick
      COMMAND ${MPB_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/compare --quick --no-build
        --build-dir ${CMAKE_BINARY_DIR} ${_mpb_bench_bins})
    set_tests_properties(bench_compare_quick PROPERTIES LABELS bench TIMEOUT 600)
  endif()
else()
  message(STATUS "bench: no python3, bench_smoke not registered")
endif()
