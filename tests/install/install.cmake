# install.cmake - the installation test: `cmake --install` this build into a temporary prefix,
# then build tests/install/hello.c against it with pkg-config (shared and --static) and as an
# outside CMake project (find_package(mpb), mpb::mpb), and run each. Included by
# tests/CMakeLists.txt. Under MPB_SANITIZE the installed library needs the sanitizer runtime,
# so the outside programs are built with the same -fsanitize flags.
set(MPB_INSTALL_TEST_FLAGS "")
if(MPB_SANITIZE)
  set(MPB_INSTALL_TEST_FLAGS "-fsanitize=address,undefined")
endif()
add_test(NAME install_pkgconfig_cmake
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/run.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR}
          "${MPB_INSTALL_TEST_FLAGS}")
set_tests_properties(install_pkgconfig_cmake PROPERTIES LABELS integration TIMEOUT 300
  ENVIRONMENT "CC=${CMAKE_C_COMPILER};CMAKE=${CMAKE_COMMAND}")
