/* server.h - the broker's one loop (server.c). */
#ifndef BROKER_SERVER_H
#define BROKER_SERVER_H

#include "limits.h"
#include "transport.h"

/* Connections that speak for a live session. */
size_t server_peer_count(void);
/* Runs the broker until SIGTERM/SIGINT. authkey is borrowed. Returns the exit status. */
int server_main(const config_t *cfg, const uint8_t *authkey, size_t keylen);
void server_stop(void);
/* Whether the broker accepts clients (and its data is loaded). */
bool server_ready(void);
/* The loop's transport (NULL before the server starts), for info. */
transport_t *server_transport(void);

#endif
