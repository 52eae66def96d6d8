# install.cmake - what `cmake --install` puts under the prefix for programs that use libmpb:
#
#   lib/libmpb.so.0.1.0, libmpb.so.0, libmpb.so   the shared library (SOVERSION = major)
#   lib/libmpb.a                                  the static library
#   include/mpb/mpb.h                             the public header, which includes its parts:
#   include/mpb/{client,msgpack,objects,containers,sync,pipe,worker,pool}.h
#   include/mpb/ops.h                             op codes for mpb_call/mpb_send (ops_h.cmake)
#   lib/pkgconfig/mpb.pc                          pkg-config --cflags --libs [--static] mpb
#   lib/cmake/mpb/mpb-config{,-version}.cmake     find_package(mpb) -> imported target mpb::mpb
#
# ("lib" is CMAKE_INSTALL_LIBDIR: lib64 or lib/<multiarch> on some systems.) Both package files
# are written by hand rather than by install(EXPORT), because the PkgConfig:: targets that libmpb
# links privately cannot be exported. Both are relocatable: they find the prefix from where they
# are installed, so `cmake --install build --prefix /elsewhere` and copied trees work.
# Checked by tests/install/. Included at the end of client/CMakeLists.txt.

include(CMakePackageConfigHelpers)

install(TARGETS mpb
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime NAMELINK_COMPONENT Development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime)
install(TARGETS mpb_static
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development)
set(MPB_PUBLIC_HEADERS)
foreach(h mpb client msgpack objects containers sync pipe worker pool)
  list(APPEND MPB_PUBLIC_HEADERS ${CMAKE_CURRENT_SOURCE_DIR}/include/mpb/${h}.h)
endforeach()
install(FILES ${MPB_PUBLIC_HEADERS} ${MPB_OPS_H}
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mpb COMPONENT Development)

# ---- pkg-config: mpb.pc ------------------------------------------------------------------------
# prefix is ${pcfiledir} plus as many ".." as the .pc file sits below the prefix. A directory
# given as an absolute path stays absolute (and then that part is not relocatable).
set(MPB_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(MPB_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(MPB_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH mpb_up "/mpb-prefix/${MPB_PKGCONFIG_DIR}" "/mpb-prefix")
  string(REGEX REPLACE "/$" "" mpb_up "${mpb_up}") # "../../" -> "../.."
  set(MPB_PC_PREFIX "\${pcfiledir}/${mpb_up}")
  set(MPB_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(MPB_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(MPB_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/mpb.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mpb.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpb.pc
  DESTINATION ${MPB_PKGCONFIG_DIR} COMPONENT Development)

# ---- CMake: mpb-config.cmake, mpb-config-version.cmake ----------------------------------------
# configure_package_config_file() turns the PATH_VARS into ${PACKAGE_PREFIX_DIR}-relative
# paths; file(GENERATE) then fills in the library's real file names (libmpb.so.0.1.0 and its
# soname) from the target, so they never drift from VERSION/SOVERSION.
set(MPB_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mpb)
set(MPB_CONFIG_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(MPB_CONFIG_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
set(MPB_SHARED_FILE "$<TARGET_FILE_NAME:mpb>")
set(MPB_SHARED_SONAME "$<TARGET_SONAME_FILE_NAME:mpb>")
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/mpb-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mpb-config.cmake.in.gen
  INSTALL_DESTINATION ${MPB_CMAKE_DIR}
  PATH_VARS MPB_CONFIG_LIBDIR MPB_CONFIG_INCLUDEDIR
  NO_SET_AND_CHECK_MACRO)
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/mpb-config.cmake
  INPUT ${CMAKE_CURRENT_BINARY_DIR}/mpb-config.cmake.in.gen)
# The soname promises ABI compatibility within a major version; the package version says the
# same, so find_package(mpb 0.1) accepts any 0.x at or above 0.1.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mpb-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mpb-config.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/mpb-config-version.cmake
  DESTINATION ${MPB_CMAKE_DIR} COMPONENT Development)
