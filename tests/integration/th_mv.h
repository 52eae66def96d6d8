/* th_mv.h - short names for the msgpack values test tables are written in (th_mv_t, th.h):
 * mv_t, RAW(bytes...), S("text") and I(integer). For the test files whose tables use them. */
#ifndef MPB_TH_MV_H
#define MPB_TH_MV_H

#include "th.h"

typedef th_mv_t mv_t;
#define RAW TH_RAW
#define S   th_mv_str
#define I   th_mv_int

#endif
