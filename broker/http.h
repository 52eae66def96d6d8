/* http.h - /healthz, /readyz, /metrics, polled by the loop, no thread of its own (http.c). */
#ifndef BROKER_HTTP_H
#define BROKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct http http_t;
/* Listens on "ADDR:PORT" (e.g. 0.0.0.0:8080, 127.0.0.1:0). NULL with a reason in err. */
http_t *http_start(const char *addr, char *err, size_t errlen);
/* The one descriptor the loop polls for it, and how long it may wait (-1: no limit). */
int http_fd(http_t *h);
long http_timeout_ms(http_t *h);
/* Serves what is ready, without blocking. */
void http_run(http_t *h);
/* The port it listens on (useful with port 0). */
int http_port(http_t *h);
/* Stops it and removes the address file. */
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
