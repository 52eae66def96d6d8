/* limits.h - the broker's settings as the loop and the handlers read them (config.c fills
 * them; g_limits is the running broker's copy). */
#ifndef BROKER_LIMITS_H
#define BROKER_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct limits {
    size_t max_frame;
    size_t max_value;
    size_t max_key;
    size_t max_scan;         /* items in one dict.scan / list.slice / obj.list page */
    size_t max_batch_reply;  /* reply bytes one REQ frame may ask for; later requests: ETOOBIG */
    size_t max_handshakes;   /* HMAC handshakes in progress (handshake.c) */
    int pool_max_attempts;   /* dispatches of a task before it fails (worker deaths) */
    size_t pool_max_results; /* result bytes held for one session before its dispatch waits */
    size_t pool_max_queued;  /* bytes of unfinished tasks one session may have */
    int handshake_ms;
    int heartbeat_ms;
    int session_ttl_ms;
    int anon_grace_ms;        /* how long an anonymous object outlives its last reference */
    size_t reply_cache;       /* replies kept per session for resends (replay.c); 0: none */
    size_t reply_cache_bytes; /* and the most bytes of them per session */
    size_t max_memory;  /* heap bytes past which growing requests get ENOMEM (mem.c); 0: none */
    size_t max_objects; /* objects the store may hold; 0: no limit */
    /* transport (transport.c) */
    size_t max_sessions;            /* sessions at once */
    size_t max_sessions_per_conn;   /* live sessions opened by one connection */
    size_t max_connections;         /* 0: the descriptor limit less 64 */
    size_t max_handshakes_per_addr; /* connections of one address still in a handshake; and
                                       its HMAC handshakes, at most half of max_handshakes */
    size_t max_unauth_memory;       /* bytes all peers without a session may pin */
    int idle_ms;                    /* a connection without a session is closed after it */
    size_t max_output;              /* unacknowledged reply bytes of one connection; 0: off */
    int64_t slowlog_slower_us;      /* requests served slower than this go to the slow log */
    size_t slowlog_max_len;         /* entries it keeps; 0: none */
    size_t spin_us;                 /* stream.c: how long the loop looks for more unix:// frames
                                       before it sleeps */
    const char *metrics_queues;     /* fnmatch patterns, comma-separated: queues /metrics
                                       always labels (metrics_render.c); NULL: none */
} limits_t;

enum { ENC_AUTO, ENC_ON, ENC_OFF }; /* --encryption; auto: on for tcp://, off for ipc:// */

typedef struct config {
    const char *listen[8];
    int nlisten;
    const char *authkey_file;
    const char *data_dir;
    const char *endpoint_file;
    const char *http;
    int log_level;
    bool log_json;
    bool persist;          /* log writes to data_dir and load them on start */
    int fsync;             /* FSYNC_NO, FSYNC_EVERYSEC, FSYNC_ALWAYS: persist.h */
    bool repair;           /* cut a damaged log at the damage instead of refusing to start */
    int encryption;        /* ENC_* */
    const char *http_auth; /* bearer token file for /metrics; NULL: open */
    limits_t limits;
} config_t;

extern limits_t g_limits;

/* One address's share of what is in progress without a session: max-handshakes-per-addr, and
 * at most half of max-handshakes, so that one address never fills the table (HELLOs renewed
 * faster than handshake-ms forgets them kept every real client out). handshake.c counts HMAC
 * handshakes against it, stream.c a host's mpb:// connections. */
static inline size_t limits_addr_share(void) {
    size_t half = g_limits.max_handshakes / 2;
    return g_limits.max_handshakes_per_addr < half ? g_limits.max_handshakes_per_addr : half;
}
extern int64_t g_started_ms; /* when the broker started (ms) */

#endif
