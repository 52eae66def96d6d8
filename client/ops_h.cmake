# ops_h.cmake - writes include/mpb/ops.h in the build tree from proto/ops.def: the op codes of
# the wire protocol as a public, installed header, so programs that call mpb_call()/mpb_send()
# (the bench, the CLI, tests, bindings) name ops instead of copying their numbers. Re-run when
# ops.def changes (a configure dependency). Included from client/CMakeLists.txt.
set(_ops_def ${PROJECT_SOURCE_DIR}/proto/ops.def)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_ops_def})
file(STRINGS ${_ops_def} _ops REGEX "^XX\\(")
set(_enum "")
set(_map "")
foreach(_l IN LISTS _ops)
  if(NOT _l MATCHES "^XX\\(([A-Z0-9_]+), *([0-9]+), *\"([^\"]+)\"\\)")
    message(FATAL_ERROR "ops.def: cannot read '${_l}'")
  endif()
  string(APPEND _enum "    MPB_OP_${CMAKE_MATCH_1} = ${CMAKE_MATCH_2},\n")
  string(APPEND _map "    XX(${CMAKE_MATCH_1}, ${CMAKE_MATCH_2}, \"${CMAKE_MATCH_3}\") \\\n")
endforeach()
set(MPB_OPS_H ${CMAKE_BINARY_DIR}/include/mpb/ops.h)
file(CONFIGURE OUTPUT ${MPB_OPS_H} CONTENT [=[
/* mpb/ops.h - the op codes of the wire protocol, for mpb_call() and mpb_send(): what each takes
 * and answers is in PROTOCOL.md. Generated from proto/ops.def by the build: do not edit. */
#ifndef MPB_OPS_H
#define MPB_OPS_H

/* XX(NAME, code, "wire name") for every op, for tables of one's own. */
#define MPB_OPS_MAP(XX) \
@_map@
#ifndef MPB__OPS_DECLARED /* the broker's own header declares the same */
#define MPB__OPS_DECLARED
enum {
@_enum@};
#endif

#endif
]=] @ONLY)
