/* cutproxy.h - a TCP proxy on loopback that a test can cut and resume: a network blip with
 * the broker still up. It runs in a process of its own (forked before the test connects any
 * client), relays bytes both ways, and on a cut closes every connection it carries and closes
 * each new one at once until it is resumed, as a link that is down would. */
#ifndef MPB_CUTPROXY_H
#define MPB_CUTPROXY_H

#include <sys/types.h>

typedef struct cutproxy {
    pid_t pid;
    int ctl;           /* our end of the control socket */
    int port;          /* where clients connect: 127.0.0.1:port */
    char endpoint[64]; /* tcp://127.0.0.1:port */
} cutproxy_t;

/* Starts relaying 127.0.0.1:port -> 127.0.0.1:upstream_port. 0 or -1. */
int cp_start(cutproxy_t *p, int upstream_port);
/* Closes every relayed connection and refuses new ones until cp_resume; returns once done.
 * Returns how many connections it closed, or -1. */
int cp_cut(cutproxy_t *p);
/* Relays new connections again. 0 or -1. */
int cp_resume(cutproxy_t *p);
/* Stops the proxy process and waits for it. Accepts a stopped proxy. */
void cp_stop(cutproxy_t *p);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int cp_free_port(void);

#endif
