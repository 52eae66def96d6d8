# pool.cmake - integration tests of the remote Pool against a real mpbrokerd, with real worker
# processes: mpb-worker started by fork/exec, and forked children serving through the worker
# API (included by CMakeLists.txt in this folder).

# libmpbtestfns.so: functions only the tests need (pad, sqsleep, crash, procinfo, initarg, conc,
# nap, big, testinit, slowchat, coop, ...).
add_library(mpbtestfns MODULE pool_testfns.c)
set_target_properties(mpbtestfns PROPERTIES PREFIX "lib" OUTPUT_NAME mpbtestfns
  C_VISIBILITY_PRESET hidden)
target_include_directories(mpbtestfns PRIVATE ${PROJECT_SOURCE_DIR}/client/include)
target_link_libraries(mpbtestfns PRIVATE mpb Threads::Threads mpb_warnings)

foreach(t test_pool test_pool_faults test_pool_worker test_pool_limits test_pool_sched
    test_pool_isolate test_pool_stream)
  mpb_integration_test(${t} ${t}.c TIMEOUT 180)
  set_property(TEST ${t} APPEND PROPERTY LABELS pool)
endforeach()
