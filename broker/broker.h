/* broker.h - everything of mpbrokerd at once, for the files that want it all: each module
 * has its own header, which the lower modules include instead. Everything here is touched by
 * the loop thread only. */
#ifndef BROKER_BROKER_H
#define BROKER_BROKER_H

#include <stdarg.h> /* what the files that include this one used from it */

#include "anon.h"
#include "commands.h"
#include "http.h"
#include "kind.h"
#include "limits.h"
#include "mem.h"
#include "metrics.h"
#include "obj.h"
#include "out.h"
#include "pool.h"
#include "replay.h"
#include "req.h"
#include "reqlog.h"
#include "server.h"
#include "sess.h"
#include "store.h"
#include "transport.h"
#include "util.h"
#include "waiter.h"

#endif
