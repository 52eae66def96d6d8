# Every public call of mpb.h with a NULL handle: the test is generated from the header at build
# time, so a call added there is checked without being listed here.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(_mpb_h ${PROJECT_SOURCE_DIR}/client/include/mpb/mpb.h)
file(GLOB _mpb_parts ${PROJECT_SOURCE_DIR}/client/include/mpb/*.h)
add_custom_command(OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/test_null_handles.c
  COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/gen_null_calls.py ${_mpb_h}
          ${CMAKE_CURRENT_BINARY_DIR}/test_null_handles.c
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gen_null_calls.py ${_mpb_parts}
  COMMENT "Generating test_null_handles.c from mpb.h")
mpb_unit_test(test_null_handles ${CMAKE_CURRENT_BINARY_DIR}/test_null_handles.c LIBS mpb_static)
