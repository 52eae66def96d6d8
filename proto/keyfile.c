/* keyfile.c - the one reader of authkey files, for mpbrokerd and libmpb alike, with the checks
 * ssh makes of a private key file: a file that group or others can write is refused (whoever
 * can write it can make every broker and client trust their key), one that they can read is
 * used with a warning (whoever can read it can be any client, or the broker), unless the
 * group is how this process reads a file it does not own. The bytes pass
 * through one stack buffer, wiped before return, and the key's own buffer is the caller's to
 * wipe. A key shorter than MPB__KEY_MIN_LEN gets a warning too: the broker's CHALLENGE carries
 * an HMAC of the key over nonces the client chose, and the CURVE public key of the broker is
 * derived from it, so one connection gives an attacker what they need to guess a short or
 * chosen key offline (a weak one fell in 0.02 s). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "mpbproto.h"

/* Appends msg to warn ("; " between warnings), as much of it as fits. */
static void add_warning(char *warn, size_t warnlen, const char *msg) {
    if (!warn || !warnlen) return;
    size_t k = strnlen(warn, warnlen - 1);
    snprintf(warn + k, warnlen - k, "%s%s", k ? "; " : "", msg);
}

void mpb__key_check_len(size_t len, char *warn, size_t warnlen) {
    if (len >= MPB__KEY_MIN_LEN) return;
    char msg[320];
    snprintf(msg, sizeof msg,
             "the authkey is %zu bytes, shorter than %d: one connection to the broker (its "
             "CHALLENGE, its CURVE public key) lets anyone guess a short key offline; use 32 "
             "random bytes (mpbrokerd makes such a key when it has none)",
             len, MPB__KEY_MIN_LEN);
    add_warning(warn, warnlen, msg);
}

/* A file of another owner, readable only by its group, which is one of ours: the group is how
 * this process reads it (a Kubernetes Secret mounted with defaultMode 0440 and the pod's
 * fsGroup), not a leak to be warned about. */
static bool group_is_how(const struct stat *st) {
    if ((st->st_mode & S_IROTH) || st->st_uid == geteuid()) return false;
    if (st->st_gid == getegid()) return true;
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == st->st_gid) return true;
    return false;
}

int mpb__key_file_read(const char *what, const char *path, uint8_t **key, size_t *len, char *err,
                       size_t errlen, char *warn, size_t warnlen) {
    *key = NULL;
    *len = 0;
    if (warn && warnlen) warn[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return MPB_EINVAL;
    }
    /* the file as opened, not as a second look at the path might find it */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        close(fd);
        return MPB_EINVAL;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s %s: it is a directory", what, path);
        close(fd);
        return MPB_EINVAL;
    }
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(err, errlen,
                 "%s %s is writable by %s (mode %04o): refused, as anyone who can write it can "
                 "replace the key; chmod 600 it",
                 what, path, (st.st_mode & S_IWOTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return MPB_EINVAL;
    }
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_IRGRP | S_IROTH)) && !group_is_how(&st)) {
        char msg[4400];
        snprintf(msg, sizeof msg,
                 "%s %s is readable by %s (mode %04o): anyone who can read it holds the key; "
                 "chmod 600 it",
                 what, path, (st.st_mode & S_IROTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777));
        add_warning(warn, warnlen, msg);
    }
    uint8_t buf[4096];
    size_t n = 0;
    int rerr = 0;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rerr = errno;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    int rc = 0;
    if (rerr) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(rerr));
        rc = MPB_EINVAL;
    } else if (n == 0) {
        snprintf(err, errlen, "%s %s is empty", what, path);
        rc = MPB_EINVAL;
    } else if (!(*key = malloc(n))) {
        snprintf(err, errlen, "out of memory");
        rc = MPB_ENOMEM;
    } else {
        memcpy(*key, buf, n);
        *len = n;
        mpb__key_check_len(n, warn, warnlen);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}
