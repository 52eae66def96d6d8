/* frame.c - the fixed header every ZeroMQ message of the protocol starts with, and the first
 * gates an inbound frame passes (size, magic, version, type) before any MAC or msgpack work,
 * and the replay gate (sequence numbers) both sides apply once the MAC has verified. */
#include <stdio.h>
#include <string.h>

#include "mpbproto.h"

static const char *const op_names[MPB__OP_MAX] = {
#define XX(name, code, wire) [code] = wire,
#include "ops.def"
#undef XX
};

const char *mpb__op_name(unsigned op) {
    return op < MPB__OP_MAX ? op_names[op] : NULL;
}

const char *mpb__err_name(int code) {
    switch (code) {
#define XX(name, c, text)                                                                          \
    case c: return #name;
        MPB_ERRNO_MAP(XX)
#undef XX
    default: return NULL;
    }
}

void mpb__frame_header(uint8_t *out, uint8_t type, uint64_t seq) {
    out[0] = 'M';
    out[1] = 'B';
    out[2] = MPB__PROTO_VERSION;
    out[3] = type;
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

int mpb__seq_accept(uint64_t *last, uint64_t seq) {
    if (seq <= *last) return MPB_EREPLAY;
    *last = seq;
    return 0;
}

int mpb__frame_parse(const uint8_t *buf, size_t len, size_t max_frame, mpb__frame_t *f, char *err,
                     size_t errlen) {
    if (len > max_frame) {
        snprintf(err, errlen, "frame of %zu bytes > max_frame %zu", len, max_frame);
        return MPB_ETOOBIG;
    }
    if (len < 2 || buf[0] != 'M' || buf[1] != 'B') {
        snprintf(err, errlen, "not an mpbroker frame (%zu bytes, bad magic)", len);
        return MPB_EPROTO;
    }
    if (len < MPB__HDR_LEN) {
        snprintf(err, errlen, "frame of %zu bytes is shorter than its %d-byte header", len,
                 MPB__HDR_LEN);
        return MPB_EPROTO;
    }
    if (buf[2] != MPB__PROTO_VERSION) {
        snprintf(err, errlen, "protocol version %u not supported (this side speaks %u)", buf[2],
                 MPB__PROTO_VERSION);
        return MPB_EPROTO;
    }
    f->type = buf[3];
    if (f->type < MPB__T_HELLO || f->type > MPB__T_ERROR) {
        snprintf(err, errlen, "unknown frame type %u", f->type);
        return MPB_EPROTO;
    }
    f->seq = 0;
    for (int i = 0; i < 8; i++)
        f->seq = (f->seq << 8) | buf[4 + i];
    f->body = buf + MPB__HDR_LEN;
    f->bodylen = len - MPB__HDR_LEN;
    f->mac = NULL;
    if (mpb__type_sealed(f->type)) {
        if (f->bodylen < MPB__MAC_LEN) {
            snprintf(err, errlen, "sealed frame of %zu bytes has no room for its MAC", len);
            return MPB_EPROTO;
        }
        f->bodylen -= MPB__MAC_LEN;
        f->mac = f->body + f->bodylen;
    }
    return 0;
}

bool mpb__name_ok(const char *s, size_t n) {
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '/') return false;
    return true;
}

const char *mpb__strerror(int err) {
    switch (-err) {
#define XX(name, code, text)                                                                       \
    case code: return text;
        MPB_ERRNO_MAP(XX)
#undef XX
    case 0: return "success";
    default: return "unknown error";
    }
}
