/* http.h - /healthz, /readyz, /metrics, served by a thread of their own; the loop renders the
 * /metrics pages (http.c). */
#ifndef BROKER_HTTP_H
#define BROKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct http http_t;
/* Listens on "ADDR:PORT" (e.g. 0.0.0.0:8080, 127.0.0.1:0) and starts its thread. NULL with a
 * reason in err. */
http_t *http_start(const char *addr, char *err, size_t errlen);
/* The descriptor the loop polls (for reading): a /metrics page is wanted. */
int http_fd(http_t *h);
/* Called by the loop before each poll: it notes the turn (for /healthz) and whether the broker
 * is ready (for /readyz). Returns how long the loop may wait for it: -1, no limit. */
long http_timeout_ms(http_t *h);
/* Called by the loop after each poll: renders the /metrics pages wanted, without blocking. */
void http_run(http_t *h);
/* The port it listens on (useful with port 0). */
int http_port(http_t *h);
/* Stops it (from the loop) and removes the address file. */
void http_stop(http_t **h);
/* A file that http_start() fills with "HOST:PORT", the port it got (for port 0): health checks
 * and tests read it. NULL: none. Set before http_start(). */
void http_set_addr_file(const char *path);
/* --http-auth: /metrics asks for "Authorization: Bearer TOKEN", the token being the one line
 * in the file at path (read now, with the authkey file's checks); NULL: /metrics is open.
 * Returns 0, or -1 with the reason in err. Set before http_start(). */
int http_set_auth(const char *path, char *err, size_t errlen);
/* Whether "ADDR:PORT" can be bound now (--check-config): binds a socket and closes it at once.
 * 0, or -1 with the reason in err. */
int http_check_bind(const char *addr, char *err, size_t errlen);

#endif
