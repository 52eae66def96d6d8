/* mpbproto.h - the wire protocol shared by mpbrokerd and libmpb: frames, msgpack reading and
 * writing, validation, canonical keys, the authkey handshake and per-message MACs. Pure
 * functions over (buffer, length): no sockets, no globals. Never installed. */
#ifndef MPB_PROTO_H
#define MPB_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mpb/mpb.h"

#define MPB__PROTO_VERSION 1
#define MPB__HDR_LEN       12 /* 'M' 'B' version type seq(8, big-endian) */
#define MPB__MAC_LEN       16 /* HMAC-SHA256 truncated to 128 bits */
#define MPB__NONCE_LEN     32
#define MPB__PROOF_LEN     32
#define MPB__KEY_LEN       32
#define MPB__TOKEN_LEN     16
#define MPB__MAX_DEPTH     32
/* A whole frame's body: its own arrays (request, tasks, task, call) around such values. */
#define MPB__FRAME_DEPTH (MPB__MAX_DEPTH + 4)

enum {
    MPB__T_HELLO = 1,     /* client -> broker, plain */
    MPB__T_CHALLENGE = 2, /* broker -> client, plain */
    MPB__T_AUTH = 3,      /* client -> broker, plain */
    MPB__T_WELCOME = 4,   /* broker -> client, sealed */
    MPB__T_REQ = 5,       /* client -> broker, sealed: requests back to back */
    MPB__T_REP = 6,       /* broker -> client, sealed: replies back to back */
    MPB__T_ERROR = 7,     /* broker -> client, plain: {code, msg}, for peers without keys */
};

#ifndef MPB__OPS_DECLARED /* mpb/ops.h, made from the same ops.def, declares the same */
#define MPB__OPS_DECLARED
enum {
#define XX(name, code, wire) MPB_OP_##name = code,
#include "ops.def"
#undef XX
};
#endif
enum { MPB__OP_MAX = 256 };

/* The wire name of op ("dict.get"), or NULL if unknown. */
const char *mpb__op_name(unsigned op);
/* The name of a positive wire error code ("ENOKEY"), or NULL. */
const char *mpb__err_name(int code);
/* A static description of err (a negative MPB_E*): the broker's error replies. libmpb's
 * public mpb_strerror() says the same. */
const char *mpb__strerror(int err);

/* ---- frames ---- */

typedef struct mpb__frame {
    uint8_t type;
    uint64_t seq;
    const uint8_t *body; /* msgpack, between header and MAC */
    size_t bodylen;
    const uint8_t *mac; /* NULL for plain frames */
} mpb__frame_t;

static inline bool mpb__type_sealed(uint8_t t) {
    return t == MPB__T_WELCOME || t == MPB__T_REQ || t == MPB__T_REP;
}

/* Checks size, magic, version and type and splits the frame. Returns 0, MPB_ETOOBIG or
 * MPB_EPROTO with a reason in err. Does not check the MAC. */
int mpb__frame_parse(const uint8_t *buf, size_t len, size_t max_frame, mpb__frame_t *f, char *err,
                     size_t errlen);
/* Writes the 12-byte header. */
void mpb__frame_header(uint8_t *out, uint8_t type, uint64_t seq);
/* The replay gate of a sealed frame, on both sides: seq must be greater than *last, the last
 * accepted on that channel (numbers may skip, never repeat or go back). Returns 0 and sets
 * *last = seq, or MPB_EREPLAY with *last unchanged. Call it only for a frame whose MAC
 * verified, so that a forgery cannot move the window. */
int mpb__seq_accept(uint64_t *last, uint64_t seq);

/* ---- growable buffer and msgpack writer ---- */

typedef struct mpb__buf {
    uint8_t *p;
    size_t len, cap;
    bool oom; /* a write failed for memory: the content is incomplete */
} mpb__buf_t;

/* Makes room for extra more bytes. MPB_ENOMEM (and b->oom set, content kept) if it cannot. */
int mpb__buf_reserve(mpb__buf_t *b, size_t extra);
/* Called when a buffer cannot grow, before it gives up: a program that keeps memory in reserve
 * (the broker, mem.c) gives it back and returns true, and the growth is tried once more. */
extern bool (*mpb__buf_on_oom)(void);
void mpb__buf_free(mpb__buf_t *b);
static inline void mpb__buf_reset(mpb__buf_t *b) {
    b->len = 0;
    b->oom = false;
}
void mpb__w_raw(mpb__buf_t *b, const void *p, size_t n);
void mpb__w_nil(mpb__buf_t *b);
void mpb__w_bool(mpb__buf_t *b, bool v);
void mpb__w_int(mpb__buf_t *b, int64_t v);
void mpb__w_uint(mpb__buf_t *b, uint64_t v);
void mpb__w_double(mpb__buf_t *b, double v);
void mpb__w_str(mpb__buf_t *b, const char *s, size_t n);
void mpb__w_cstr(mpb__buf_t *b, const char *s);
void mpb__w_bin(mpb__buf_t *b, const void *p, size_t n);
void mpb__w_array(mpb__buf_t *b, uint32_t n);
void mpb__w_map(mpb__buf_t *b, uint32_t n);
/* Encoders into a fixed buffer (>= 9 bytes); return the length. */
size_t mpb__enc_int(uint8_t *out, int64_t v);
size_t mpb__enc_uint(uint8_t *out, uint64_t v);
size_t mpb__enc_double(uint8_t *out, double v); /* always float64 (0xcb), 9 bytes */

/* ---- msgpack reader over validated bytes ---- */

typedef struct mpb__rd {
    const uint8_t *p, *end;
} mpb__rd_t;

enum {
    MPB__MT_NIL,
    MPB__MT_BOOL,
    MPB__MT_INT,
    MPB__MT_FLOAT,
    MPB__MT_STR,
    MPB__MT_BIN,
    MPB__MT_ARRAY,
    MPB__MT_MAP,
    MPB__MT_EXT,
    MPB__MT_BAD
};

/* The type of the next value, MPB__MT_BAD at the end or on a reserved byte. */
int mpb__rd_type(const mpb__rd_t *r);
bool mpb__rd_more(const mpb__rd_t *r);
/* Each returns 0 or MPB_ETYPE (wrong type, r unchanged) / MPB_EPROTO (truncated). */
int mpb__rd_nil(mpb__rd_t *r);
int mpb__rd_bool(mpb__rd_t *r, bool *v);
int mpb__rd_int(mpb__rd_t *r, int64_t *v);   /* also uint64 <= INT64_MAX */
int mpb__rd_uint(mpb__rd_t *r, uint64_t *v); /* non-negative only */
int mpb__rd_double(mpb__rd_t *r, double *v); /* float32/64, or an integer */
int mpb__rd_str(mpb__rd_t *r, const char **s, uint32_t *n);
int mpb__rd_bin(mpb__rd_t *r, const uint8_t **p, uint32_t *n);
int mpb__rd_array(mpb__rd_t *r, uint32_t *n);
int mpb__rd_map(mpb__rd_t *r, uint32_t *n);
/* The next whole value as raw bytes (skips it). */
int mpb__rd_span(mpb__rd_t *r, const uint8_t **v, size_t *n);
/* Looks key up in the map that starts at r (not consumed); on success *val is positioned on
 * its value. MPB_ENOKEY if absent. */
int mpb__rd_mapget(const mpb__rd_t *r, const char *key, mpb__rd_t *val);

/* ---- validation ---- */

/* Validates one msgpack value at the start of buf: every length within the bytes, depth <=
 * max_depth, no reserved byte. Returns its length (> 0) or MPB_EPROTO. */
long mpb__mp_check1(const uint8_t *buf, size_t len, int max_depth);
/* Validates that buf is a sequence of whole values (zero or more). 0 or MPB_EPROTO. */
int mpb__mp_check(const uint8_t *buf, size_t len, int max_depth);

/* ---- canonical values ---- */

/* Whether v (one valid value) is already in canonical encoding: shortest integer, str, bin,
 * array and map headers; float32 widened to float64. */
bool mpb__canon_is(const uint8_t *v, size_t n);
/* Appends the canonical encoding of v (one valid value) to out. */
void mpb__canon(const uint8_t *v, size_t n, mpb__buf_t *out);
/* Orders a and b as Python would for sort(): numbers (int, float, bool), str (by code point),
 * bin, and arrays of those element-wise. Returns 0 and sets *cmp, or MPB_ETYPE with the two
 * type names in err when they are not comparable. */
int mpb__mp_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int *cmp,
                    char *err, size_t errlen);
/* A short printable rendering of a value (for logs and errors), NUL-terminated. */
void mpb__mp_sample(const uint8_t *v, size_t n, char *out, size_t outlen);
/* SipHash-1-3 of bytes under mpb__hash_key (hash.c): the hash of every table keyed by client
 * input. mpb__hash_init() draws the key from RAND_bytes (0, or MPB_ENOMEM); the broker calls it
 * once at start, before any table exists. mpb__siphash() is the core with its round counts
 * (2, 4: SipHash-2-4, for its published test vectors). */
extern uint8_t mpb__hash_key[16];
int mpb__hash_init(void);
uint64_t mpb__hash(const void *p, size_t n);
uint64_t mpb__siphash(const uint8_t key[16], const void *data, size_t n, int crounds, int drounds);

/* ---- authentication ---- */

int mpb__random(void *out, size_t n);
/* proof = HMAC-SHA256(authkey, label || nonce_c || nonce_b), label "mpb1 server" / "mpb1 client" */
int mpb__auth_proof(const void *authkey, size_t keylen, bool server, const uint8_t *nonce_c,
                    const uint8_t *nonce_b, uint8_t out[MPB__PROOF_LEN]);
/* Constant-time check of a received proof. */
bool mpb__auth_verify(const void *authkey, size_t keylen, bool server, const uint8_t *nonce_c,
                      const uint8_t *nonce_b, const uint8_t *proof, size_t prooflen);
/* HKDF-SHA256(ikm authkey, salt nonce_c || nonce_b, info "mpb1 c2s" / "mpb1 s2c"). */
/* HKDF-SHA256 (RFC 5869) of ikm with salt and info into out: the session keys and the CURVE
 * keys are both derived by it. 0, or MPB_ENOMEM. */
int mpb__hkdf(const void *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen, const char *info,
              uint8_t *out, size_t outlen);
int mpb__auth_keys(const void *authkey, size_t keylen, const uint8_t *nonce_c,
                   const uint8_t *nonce_b, uint8_t c2s[MPB__KEY_LEN], uint8_t s2c[MPB__KEY_LEN]);

/* The ZeroMQ CURVE key pairs of the transport, derived from the authkey (PROTOCOL.md 1):
 * secret = HKDF-SHA256(ikm authkey, salt "mpb1 curve", info "mpb1 curve broker" / "mpb1 curve
 * client"), 32 bytes; public = X25519(secret, 9). */
#define MPB__CURVE_LEN 32
typedef struct mpb__curve {
    uint8_t broker_sec[MPB__CURVE_LEN], broker_pub[MPB__CURVE_LEN];
    uint8_t client_sec[MPB__CURVE_LEN], client_pub[MPB__CURVE_LEN];
} mpb__curve_t;
/* Returns 0 or MPB_ENOMEM (then *out is wiped). */
int mpb__curve_keys(const void *authkey, size_t keylen, mpb__curve_t *out);
/* Overwrites the keys with zeros (the compiler may not skip it). */
void mpb__curve_wipe(mpb__curve_t *k);

/* ---- mpb:// encryption (seal.c, PROTOCOL.md 1.2) ---- */

#define MPB__GREET_LEN   36     /* "MPB1" and an X25519 public key */
#define MPB__GREET_MAGIC "MPB1" /* the first 4 bytes of a greeting */
#define MPB__SEAL_TAG    16     /* Poly1305 */
typedef struct mpb__seal {
    struct evp_pkey_st *eph;           /* our ephemeral key, until the keys are made */
    struct evp_cipher_ctx_st *tx, *rx; /* ChaCha20-Poly1305, one key per direction */
    uint64_t ntx, nrx;                 /* the frames sealed and opened: the nonces */
    uint8_t mine[32];                  /* our ephemeral public key */
} mpb__seal_t;
/* A new ephemeral key and the greeting that carries it. 0 or MPB_ENOMEM. */
int mpb__seal_greet(mpb__seal_t *s, uint8_t out[MPB__GREET_LEN]);
/* The same with a given X25519 secret key (the test vectors of PROTOCOL.md). */
int mpb__seal_greet_with(mpb__seal_t *s, const uint8_t sec[32], uint8_t out[MPB__GREET_LEN]);
/* The keys of both directions from the peer's greeting (after mpb__seal_greet()). 0, or
 * MPB_EPROTO for a greeting that is not one. */
int mpb__seal_keys(mpb__seal_t *s, const void *authkey, size_t keylen, bool broker,
                   const uint8_t peer[MPB__GREET_LEN]);
/* Seals n bytes into out: length (u32 big-endian, n + 16), ciphertext, tag (4 + n + 16). */
int mpb__seal(mpb__seal_t *s, const uint8_t *pt, size_t n, uint8_t *out);
/* Opens a sealed frame of n bytes (length included) in place: the plaintext is at p + 4, n -
 * 20 bytes. 0, or MPB_EPROTO if it was not sealed by the peer's key or was changed. */
int mpb__seal_open(mpb__seal_t *s, uint8_t *p, size_t n);
void mpb__seal_free(mpb__seal_t *s);
/* Both ends of an mpb:// connection: no delay for small frames, and keepalive (60 s, then 3
 * probes 10 s apart, PROTOCOL.md 1) so that a peer that vanished is closed. */
void mpb__seal_tcp_opts(int fd);

/* ---- authkey files (keyfile.c) ---- */

#define MPB__KEY_MIN_LEN 16 /* shorter keys get a warning: guessable offline */
/* Reads the authkey (or another secret: what names it in messages, "authkey file") in the
 * file at path (trailing newlines are not part of it) into a new
 * malloc'd buffer (*key, *len; the caller wipes and frees it). Refuses a directory and a
 * regular file that group or others can write; a file they can read, and a key shorter than
 * MPB__KEY_MIN_LEN bytes, give a warning in warn ("" if none; several joined by "; "; warn may
 * be NULL). Returns 0, MPB_EINVAL (err says why) or MPB_ENOMEM. */
int mpb__key_file_read(const char *what, const char *path, uint8_t **key, size_t *len, char *err,
                       size_t errlen, char *warn, size_t warnlen);
/* Appends the warning for a key of len bytes to warn, if it is shorter than MPB__KEY_MIN_LEN. */
void mpb__key_check_len(size_t len, char *warn, size_t warnlen);

/* A keyed MAC context, re-used for every message of one direction of one channel. */
typedef struct mpb__mac mpb__mac_t;
mpb__mac_t *mpb__mac_new(const uint8_t key[MPB__KEY_LEN]);
void mpb__mac_free(mpb__mac_t **m);
/* out = HMAC-SHA256(key, data)[0:16]. Returns 0 or MPB_ENOMEM. */
int mpb__mac_sign(mpb__mac_t *m, const uint8_t *data, size_t n, uint8_t out[MPB__MAC_LEN]);
/* Constant-time verification of the 16-byte MAC that follows data. */
bool mpb__mac_verify(mpb__mac_t *m, const uint8_t *data, size_t n, const uint8_t *mac);

/* Object names: 1..255 bytes, printable ASCII, no '/', no spaces. */
bool mpb__name_ok(const char *s, size_t n);

#endif
