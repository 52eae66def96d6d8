/* limits.c - the running broker's settings, read by every module: one definition. */
#include "limits.h"

limits_t g_limits;
int64_t g_started_ms;
