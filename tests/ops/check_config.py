#!/usr/bin/python3
"""check_config.py - mpbrokerd's configuration, through `mpbrokerd --check-config`:

- defaults, and for every setting: a config file value, overridden by its MPB_* variable,
  overridden by its flag (the printed source says which won);
- a bad value of every setting in every layer: exit 2 and a message naming the file and
  line, the variable or the flag; all of them reported at once, not only the first;
- the file's syntax: unknown keys, keys given twice, lines without '=', empty values, quotes,
  comments; a missing file; the cross-setting checks;
- the authkey: where it comes from is printed, the key itself never;
- deploy/mpbrokerd.conf passes, and --check-config's output is itself a valid config file;
- what would stop a broker from starting: a data-dir that cannot be made or written (and
  nothing left behind when it can), a listen endpoint or HTTP address that cannot be bound (a
  port in use, a missing directory), an unreadable key file (a directory, with the reason);
- warnings, not errors: MPB_* variables that are no setting (with a hint for a near name; the
  tools' own variables ignored), MPB_AUTHKEY when a key file wins over it;
- a broker started from a config file really uses it.

Every run gets MPB_LISTEN=tcp://127.0.0.1:0 unless it says otherwise, so that the trial binds
of --check-config never depend on port 5555 being free on this machine.

usage: check_config.py --mpbrokerd PATH --source DIR
"""
import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--mpbrokerd", required=True)
ap.add_argument("--source", required=True)
opts = ap.parse_args()

from opscheck import check, finish  # noqa: E402

def clean_env(**extra):
    """The environment without any MPB_* variable, plus extra; MPB_LISTEN is a free port unless
    extra says otherwise (MPB_LISTEN="" leaves listen to the file or the default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
    env["MPB_LISTEN"] = "tcp://127.0.0.1:0"
    env.update(extra)
    return env


def free_port(family=None):
    import socket
    s = socket.socket(family or socket.AF_INET)
    s.bind(("::1" if family else "127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def have_ipv6():
    import socket
    try:
        free_port(socket.AF_INET6)
        return True
    except OSError:
        return False


def run(args, env=None, cwd=None):
    p = subprocess.run([opts.mpbrokerd] + args, env=env if env is not None else clean_env(),
                       cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=20)
    return p.returncode, p.stdout, p.stderr


LINE = re.compile(r"^([a-z-]+) = (\"[^\"]*\"|\S+)  # (.+)$")


def parse(out):
    """--check-config output -> {key: [(value, source), ...]}"""
    got = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = LINE.match(line)
        if not m:
            raise AssertionError("unexpected --check-config line: %r" % line)
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1]
        got.setdefault(m.group(1), []).append((v, m.group(3)))
    return got


def one(got, key):
    vals = got.get(key, [])
    return vals[0] if len(vals) == 1 else (None, "%d values" % len(vals))


tmp = tempfile.mkdtemp(prefix="mpb-ops-config.")
atexit.register(lambda: subprocess.run(["rm", "-rf", tmp]))


def write(name, text, mode=0o644):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# ---- defaults ---------------------------------------------------------------------------

def port_free(host, port):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


if not port_free("127.0.0.1", 5555):  # someone's broker: then that is what it must say
    rc, out, err = run(["--check-config"], clean_env(MPB_LISTEN=""), cwd=tmp)
    check(rc == 2 and "listen tcp://127.0.0.1:5555 (default): cannot bind: Address already in "
          "use" in err, "defaults, port 5555 in use here: that is the one error: %r" % err)
    print("NOTE: port 5555 is in use on this machine: the defaults were checked with another")
rc, out, err = run(["--check-config", "--listen", "tcp://127.0.0.1:0"], clean_env(MPB_LISTEN=""),
                   cwd=tmp)
check(rc == 0, "defaults: exit 0 (got %d: %s)" % (rc, err))
got = parse(out)
if got.get("listen") == [("tcp://127.0.0.1:0", "flag --listen")]:
    got["listen"] = [("tcp://127.0.0.1:5555", "default")]  # the one setting given
rc, out5, err = run(["--check-config"], clean_env(MPB_LISTEN=""), cwd=tmp)
if rc == 0:
    check(parse(out5).get("listen") == [("tcp://127.0.0.1:5555", "default")],
          "default listen: %r" % out5)
DEFAULTS = {
    "listen": "tcp://127.0.0.1:5555", "data-dir": "./mpb-data", "http": "off",
    "max-frame": "8388608", "max-value": "1048576", "max-key": "65536",
    "heartbeat-ms": "1000", "session-ttl-ms": "5000", "log-level": "info",
    "log-format": "logfmt", "persist": "on", "fsync": "everysec", "spin-us": "50",
}
for k, v in DEFAULTS.items():
    check(one(got, k) == (v, "default"), "default %s: got %r" % (k, one(got, k)))
check("authkey-file" not in got and "endpoint-file" not in got, "unset settings are comments")
check("made in ./mpb-data/authkey" in out, "default authkey: generated in the data dir")
check(not os.path.exists(os.path.join(tmp, "mpb-data")), "--check-config creates nothing")

# ---- precedence, setting by setting: file < env < flag ------------------------------------

# key, env, (file value, env value, flag value), how each is printed
# --check-config binds what it is given, and makes the data-dir: free ports and paths in tmp.
H1, H2, H3 = free_port(), free_port(), free_port()
SETTINGS = [
    ("listen", "MPB_LISTEN", ("tcp://127.0.0.1:0", "unix://%s/mpb-ops-u.sock" % tmp,
                              "ipc://%s/mpb-ops.sock" % tmp), None),
    ("authkey-file", "MPB_AUTHKEY_FILE", None, None),  # below, it needs real files
    ("data-dir", "MPB_DATA_DIR", tuple(os.path.join(tmp, "dd-" + w) for w in
                                       ("file", "env", "flag")), None),
    ("endpoint-file", "MPB_ENDPOINT_FILE", ("/run/f", "/run/e", "/run/g"), None),
    ("http", "MPB_HTTP", ("127.0.0.1:%d" % H1, "0.0.0.0:%d" % H2,
                          ("[::1]:%d" % H3) if have_ipv6() else "127.0.0.1:%d" % H3), None),
    ("max-frame", "MPB_MAX_FRAME", ("2m", "3m", "4194304"), ("2097152", "3145728", "4194304")),
    ("max-value", "MPB_MAX_VALUE", ("1k", "2k", "3072"), ("1024", "2048", "3072")),
    ("max-key", "MPB_MAX_KEY", ("100", "200", "300"), None),
    ("heartbeat-ms", "MPB_HEARTBEAT_MS", ("100", "200", "300"), None),
    ("session-ttl-ms", "MPB_SESSION_TTL_MS", ("10000", "20000", "30000"), None),
    ("log-level", "MPB_LOG_LEVEL", ("debug", "warn", "error"), None),
    ("log-format", "MPB_LOG_FORMAT", ("json", "logfmt", "json"), None),
    ("persist", "MPB_PERSIST", ("off", "on", "off"), None),
    ("fsync", "MPB_FSYNC", ("always", "no", "everysec"), None),
    ("spin-us", "MPB_SPIN_US", ("0", "100", "10000"), None),
]
for key, env, vals, shown in SETTINGS:
    if vals is None:
        continue
    shown = shown or vals
    conf = write("prec-%s.conf" % key, "# precedence of %s\n\n%s = %s\n" % (key, key, vals[0]))
    cases = [
        ([], {}, 0, "%s:3" % conf),
        ([], {env: vals[1]}, 1, "env " + env),
        (["--" + key, vals[2]], {env: vals[1]}, 2, "flag --" + key),
        (["--" + key, vals[2]], {}, 2, "flag --" + key),
        ([], {env: ""}, 0, "%s:3" % conf),  # an empty variable counts as unset
    ]
    for flags, envs, want, src in cases:
        if key == "listen":
            envs = dict({"MPB_LISTEN": ""}, **envs)  # no free port given: the file's
        rc, out, err = run(["--check-config", "--config", conf] + flags, clean_env(**envs))
        what = "%s: file %s, env %s, flags %s" % (key, vals[0], envs, flags)
        check(rc == 0, what + ": exit 0 (got %d: %s)" % (rc, err.strip()))
        if rc == 0:
            g = one(parse(out), key)
            check(g == (shown[want], src), what + ": want %r from %r, got %r" %
                  (shown[want], src, g))

# The file named by MPB_CONFIG, and --config over MPB_CONFIG.
c1 = write("c1.conf", "log-level = debug\n")
c2 = write("c2.conf", "log-level = error\n")
rc, out, err = run(["--check-config"], clean_env(MPB_CONFIG=c1))
check(rc == 0 and one(parse(out), "log-level") == ("debug", c1 + ":1"), "MPB_CONFIG is read")
check("(env MPB_CONFIG)" in out, "the config file's source is printed")
rc, out, err = run(["--check-config", "--config", c2], clean_env(MPB_CONFIG=c1))
check(rc == 0 and one(parse(out), "log-level") == ("error", c2 + ":1"), "--config beats MPB_CONFIG")

# listen is a list: repeated in the file, comma-separated in MPB_LISTEN, repeated as a flag;
# a higher layer's list replaces a lower one's.
ipc_a = "ipc://%s/a.sock" % tmp
lc = write("listen.conf", "listen = tcp://0.0.0.0:0\nlisten = %s # comment\n" % ipc_a)
rc, out, err = run(["--check-config", "--config", lc], clean_env(MPB_LISTEN=""))
check(rc == 0 and [v for v, _ in parse(out).get("listen", [])] == ["tcp://0.0.0.0:0", ipc_a],
      "listen repeated in a file: both, in order (%s)" % err)
rc, out, err = run(["--check-config", "--config", lc],
                   clean_env(MPB_LISTEN="tcp://127.0.0.1:0, tcp://*:0"))
check(rc == 0 and parse(out).get("listen") == [("tcp://127.0.0.1:0", "env MPB_LISTEN"),
                                               ("tcp://*:0", "env MPB_LISTEN")],
      "MPB_LISTEN list replaces the file's (%s)" % err)
rc, out, err = run(["--check-config", "--config", lc, "-l", "tcp://127.0.0.1:*", "--listen",
                    "tcp://0.0.0.0:*"], clean_env(MPB_LISTEN="tcp://127.0.0.1:0"))
check(rc == 0 and [v for v, _ in parse(out).get("listen", [])] == ["tcp://127.0.0.1:*",
                                                                   "tcp://0.0.0.0:*"],
      "--listen flags replace MPB_LISTEN (%s)" % err)
many = ["--check-config"] + sum([["-l", "tcp://127.0.0.1:%d" % (100 + i)] for i in range(9)], [])
rc, out, err = run(many)
check(rc == 2 and "--listen: more than 8" in err, "a 9th endpoint is refused: %r" % err)

# ---- bad values, in every layer -------------------------------------------------------------

BAD = {
    "listen": ["udp://x:1", "tcp://nohost", "tcp://h:99999", "ipc://", "unix://", "5555"],
    "data-dir": [],  # any non-empty path is fine; empty is tested with the file syntax
    "endpoint-file": [],
    "http": ["8080", "localhost:8080", "0.0.0.0:", "0.0.0.0:70000", "[::1:80", "on"],
    "max-frame": ["0", "4095", "2g", "12q", "-1", "1.5m", "99999999999999999999999"],
    "max-value": ["15", "2g", "x"],
    "max-key": ["15", "17m", "k"],
    "heartbeat-ms": ["9", "600001", "1s", "1k"],
    "session-ttl-ms": ["49", "86400001", "5 s"],
    "log-level": ["loud", "", "INFO2"],
    "log-format": ["xml", "JSON "],
    "persist": ["yes", "1", "OFF"],
    "fsync": ["sometimes", "ALWAYS", "1"],
    "spin-us": ["-1", "10001", "50us", "x"],
}
for key, values in BAD.items():
    env = [e for k, e, _, _ in SETTINGS if k == key][0]
    for v in values:
        if v == "":
            continue
        # the config file
        f = write("bad.conf", "# a bad value\n%s = %s\n" % (key, v))
        rc, out, err = run(["--check-config", "--config", f])
        check(rc == 2, "file %s = %r: exit 2 (got %d)" % (key, v, rc))
        check(("%s:2: %s: " % (f, key)) in err, "file %s = %r names FILE:LINE: key: %r" %
              (key, v, err))
        # the environment (spaces inside are kept for MPB_LISTEN splitting: skip those)
        if not (key == "listen" and " " in v):
            rc, out, err = run(["--check-config"], clean_env(**{env: v}))
            check(rc == 2 and (env + ": ") in err, "%s=%r: exit 2, names %s: %r" %
                  (env, v, env, err))
        # the flag
        rc, out, err = run(["--check-config", "--" + key, v])
        check(rc == 2 and ("--%s: " % key) in err, "--%s %r: exit 2, names --%s: %r" %
              (key, v, key, err))
        check("'%s'" % v.strip() in err or "'%s'" % v in err, "the bad value is quoted: %r" % err)

# All bad values are reported, not just the first; a bad value is reported even when a higher
# layer overrides it.
f = write("many.conf", "max-frame = 1\nlog-level = loud\nhttp = nope\n")
rc, out, err = run(["--check-config", "--config", f, "--max-frame", "2", "--log-format", "x"],
                   clean_env(MPB_MAX_KEY="huge", MPB_LOG_LEVEL="debug"))
lines = [l for l in err.splitlines() if l.startswith("mpbrokerd: ")]
for want in ["%s:1: max-frame" % f, "%s:2: log-level" % f, "%s:3: http" % f, "MPB_MAX_KEY: ",
             "--max-frame: ", "--log-format: ", "6 bad settings"]:
    check(any(want in l for l in lines), "every bad value is reported: %r in %r" % (want, err))
check(rc == 2 and out == "", "no configuration printed when it is bad")

# An MPB_* variable that is no setting (a typo) is warned about, with the setting it is near,
# and changes nothing; the tools' own variables get no warning.
rc, out, err = run(["--check-config"],
                   clean_env(MPB_MAX_FRAMES="1m", MPB_MAXFRAME="2m", MPB_LOGLEVEL="debug",
                             MPB_ENDPIONT="tcp://x:1", MPB_ZZZ="1", MPB_ENDPOINT="tcp://x:1",
                             MPB_AUTHKEY_FILE="", MPB_TEST_CACHE="/x",
                             MPB_REQUIRE_CONTAINER="1"))
warns = sorted(l for l in err.splitlines() if l.startswith("mpbrokerd: warning: "))
want = sorted("mpbrokerd: warning: " + w for w in [
    "MPB_MAX_FRAMES is not a setting (ignored); did you mean MPB_MAX_FRAME?",
    "MPB_MAXFRAME is not a setting (ignored); did you mean MPB_MAX_FRAME?",
    "MPB_LOGLEVEL is not a setting (ignored); did you mean MPB_LOG_LEVEL?",
    "MPB_ENDPIONT is not a setting (ignored); did you mean MPB_ENDPOINT?",
    "MPB_ZZZ is not a setting of mpbrokerd (ignored)"])
check(rc == 0 and warns == want, "unknown MPB_* variables warned about, exit 0: %d %r" %
      (rc, err))
check(one(parse(out), "max-frame") == ("8388608", "default") if rc == 0 else False,
      "a misspelt variable changes nothing")
# and the warnings come with the errors too, when the configuration is bad
rc, out, err = run(["--check-config", "--max-frame", "1"], clean_env(MPB_MAXFRAME="2m"))
check(rc == 2 and "did you mean MPB_MAX_FRAME?" in err, "warnings beside errors: %r" % err)

# ---- the file's syntax ------------------------------------------------------------------------

SYNTAX = [
    ("bogus = 1\n", ":1: unknown key 'bogus'"),
    ("max_frame = 1m\n", ":1: unknown key 'max_frame' (did you mean 'max-frame'?)"),
    ("MPB_LOG_LEVEL = info\n", "did you mean 'log-level'?"),
    ("check-config = yes\n", ":1: unknown key 'check-config'"),
    ("config = /etc/other.conf\n", ":1: a config file cannot name another one"),
    ("authkey = hunter2\n", ":1: the authkey itself does not belong in a config file"),
    ("\n\nlisten\n", ":3: expected 'key = value'"),
    ("hunter2\n", ":1: expected 'key = value' (a line without '=')"),  # a pasted key: not echoed
    ("= value\n", ":1: no key before '='"),
    ("log-level =\n", ":1: log-level: empty value"),
    ("log-level = # only a comment\n", ":1: log-level: empty value"),
    ('data-dir = "/unterminated\n', ":1: data-dir: no closing"),
    ('data-dir = "/x" trailing\n', ":1: data-dir: unexpected 'trailing'"),
    ("log-level = info\nlog-level = debug\n", ":2: log-level: given twice (first on line 1)"),
    ("max-frame = 1m\nmax-value = 2m\n", "max-value (2097152, %s:2) plus max-key (65536, default)"),
    ("heartbeat-ms = 3000\n", "session-ttl-ms (5000, default) must be at least twice "
                              "heartbeat-ms (3000, %s:1)"),
]
for text, want in SYNTAX:
    f = write("syntax.conf", text)
    rc, out, err = run(["--check-config", "--config", f])
    want = want % f if "%s" in want else want
    check(rc == 2 and want in err, "syntax %r: exit 2 with %r, got %d %r" % (text, want, rc, err))
    # the authkey value never echoed back
    check("hunter2" not in err + out, "a misplaced authkey is not echoed")

# Comments, blanks, CRLF, quotes, '#' inside a value.
f = write("ok.conf", "# comment\n   \n\t# indented comment\r\nlog-level = warn   # why\r\n"
          "data-dir = /srv/a#b\nendpoint-file = \"/srv/with # hash \"  # quoted\n"
          "  max-key=   1k\n")
rc, out, err = run(["--check-config", "--config", f])
g = parse(out)
check(rc == 0, "comments, CRLF, quotes: exit 0 (%s)" % err)
check(one(g, "log-level") == ("warn", f + ":4"), "inline comment cut: %r" % (one(g, "log-level"),))
check(one(g, "data-dir") == ("/srv/a#b", f + ":5"), "'#' inside a value kept")
check(one(g, "endpoint-file") == ("/srv/with # hash ", f + ":6"), "quoted value kept whole")
check(one(g, "max-key") == ("1024", f + ":7"), "no blanks needed around '='")

# Not a text file; a missing file; a directory; an empty --config.
f = os.path.join(tmp, "nul.conf")
with open(f, "wb") as fh:
    fh.write(b"log-level = info\nlog\0-level = x\n")
rc, out, err = run(["--check-config", "--config", f])
check(rc == 2 and ":2: a NUL byte" in err, "NUL byte refused: %r" % err)
rc, out, err = run(["--check-config", "--config", os.path.join(tmp, "missing.conf")])
check(rc == 2 and "missing.conf" in err and "No such file" in err, "missing file: %r" % err)
rc, out, err = run(["--check-config"], clean_env(MPB_CONFIG=os.path.join(tmp, "gone.conf")))
check(rc == 2 and "env MPB_CONFIG" in err and "gone.conf" in err, "missing MPB_CONFIG file")
rc, out, err = run(["--check-config", "--config", tmp])
check(rc == 2, "a directory as config file: exit 2 (%r)" % err)
rc, out, err = run(["--check-config", "--config", ""])
check(rc == 2 and "--config: empty path" in err, "empty --config: %r" % err)
rc, out, err = run(["--check-config", "--data-dir", f])
check(rc == 2 and "is not a directory" in err, "data-dir that is a file: %r" % err)

# ---- what would stop a broker from starting ------------------------------------------------


def errors(err):
    return [l for l in err.splitlines() if l.startswith("mpbrokerd: ") and
            "warning:" not in l and "bad setting" not in l]


# The data-dir: made if it is not there, and written in, and all of it removed again.
made = os.path.join(tmp, "new-data")
rc, out, err = run(["--check-config", "--data-dir", made])
check(rc == 0 and not os.path.exists(made), "a data-dir that can be made: exit 0, nothing left "
      "(%d %s, exists: %s)" % (rc, err, os.path.exists(made)))
existing = os.path.join(tmp, "old-data")
os.mkdir(existing)
rc, out, err = run(["--check-config", "--data-dir", existing])
check(rc == 0 and os.listdir(existing) == [], "an existing data-dir: written in, nothing left: "
      "%s %r" % (os.listdir(existing), err))
# /sys/kernel and /sys refuse files and directories even to root
DATA_BAD = [
    (os.path.join(tmp, "no", "such", "data"),
     "data-dir %s (flag --data-dir) cannot be created: No such file or directory (the broker "
     "makes only the last directory: %s must exist)" % (os.path.join(tmp, "no", "such", "data"),
                                                         os.path.join(tmp, "no", "such"))),
    (os.path.join(f, "data"), "data-dir %s (flag --data-dir): Not a directory" %
     os.path.join(f, "data")),
]
if os.path.isdir("/sys/kernel"):
    DATA_BAD += [("/sys/kernel", "data-dir /sys/kernel (flag --data-dir) is not writable: "),
                 ("/sys/mpb-data", "data-dir /sys/mpb-data (flag --data-dir) cannot be created: ")]
for d, want in DATA_BAD:
    rc, out, err = run(["--check-config", "--data-dir", d])
    e = errors(err)
    check(rc == 2 and len(e) == 1 and e[0].startswith("mpbrokerd: " + want),
          "data-dir %s: one message %r, got %d %r" % (d, want, rc, err))
check(not os.path.exists(os.path.join(tmp, "no")), "nothing made on the way")

# Listen endpoints and the HTTP address: a port in use, a directory that is not there.
import socket  # noqa: E402
busy = socket.socket()
busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
busy.bind(("127.0.0.1", 0))
busy.listen(1)
bp = busy.getsockname()[1]
rc, out, err = run(["--check-config", "--listen", "tcp://127.0.0.1:%d" % bp])
check(rc == 2 and errors(err) == ["mpbrokerd: listen tcp://127.0.0.1:%d (flag --listen): cannot "
                                  "bind: Address already in use" % bp], "listen port in use: %r" % err)
rc, out, err = run(["--check-config"], clean_env(MPB_HTTP="127.0.0.1:%d" % bp))
check(rc == 2 and errors(err) == ["mpbrokerd: http 127.0.0.1:%d (env MPB_HTTP): cannot bind "
                                  "127.0.0.1:%d: Address already in use" % (bp, bp)],
      "HTTP port in use: %r" % err)
rc, out, err = run(["--check-config", "--http", "0.0.0.0:%d" % bp])
check(rc == 2 and "cannot bind 0.0.0.0:%d: Address already in use" % bp in err,
      "HTTP on every address, the port in use on loopback: %r" % err)
nodir = "ipc://%s/no-dir/broker.sock" % tmp
rc, out, err = run(["--check-config", "-l", nodir])
check(rc == 2 and errors(err) == ["mpbrokerd: listen %s (flag --listen): cannot bind: No such file "
                                  "or directory" % nodir], "ipc in a missing directory: %r" % err)
# an ipc socket a broker listens on is in use; a stale one (nobody listens) is not
live = os.path.join(tmp, "live.sock")
ls = socket.socket(socket.AF_UNIX)
ls.bind(live)
ls.listen(1)
rc, out, err = run(["--check-config", "-l", "ipc://" + live])
check(rc == 2 and "cannot bind: something listens there already" in err and os.path.exists(live),
      "ipc in use: %r, and the socket is left alone" % err)
ls.close()
rc, out, err = run(["--check-config", "-l", "ipc://" + live])
check(rc == 0 and os.path.exists(live), "a stale ipc socket is fine (%s)" % err)
os.unlink(live)
fresh = os.path.join(tmp, "fresh.sock")
rc, out, err = run(["--check-config", "-l", "ipc://" + fresh])
check(rc == 0 and not os.path.exists(fresh), "an ipc endpoint is bound and removed (%s)" % err)
# all of them at once, one message each
rc, out, err = run(["--check-config", "--data-dir", DATA_BAD[0][0], "--http", "127.0.0.1:%d" % bp,
                    "-l", "tcp://127.0.0.1:%d" % bp, "-l", nodir])
check(rc == 2 and len(errors(err)) == 4 and "4 bad settings" in err, "four problems, four "
      "messages: %r" % err)
busy.close()
# and once the port is free again, the same configuration passes
rc, out, err = run(["--check-config", "-l", "tcp://127.0.0.1:%d" % bp, "--http",
                    "127.0.0.1:%d" % bp])
check(rc == 0, "free again: exit 0 (%s)" % err)

# ---- the authkey: its source printed, the key never -------------------------------------

SECRET = "s3cr3t-ops-config-value"
keyf = write("authkey", SECRET + "\n", 0o600)
key2 = write("authkey2", SECRET + "-two\n", 0o600)
empty = write("emptykey", "\n", 0o600)
kc = write("key.conf", "authkey-file = %s\n" % keyf)
cases = [
    (["--config", kc], {}, "read from the file %s (%s:1)" % (keyf, kc)),
    (["--config", kc], {"MPB_AUTHKEY": SECRET}, "the value of the environment variable MPB_AUTHKEY"),
    (["--config", kc], {"MPB_AUTHKEY_FILE": key2, "MPB_AUTHKEY": SECRET},
     "read from the file %s (env MPB_AUTHKEY_FILE)" % key2),
    (["--config", kc, "-k", key2], {"MPB_AUTHKEY": SECRET},
     "read from the file %s (flag --authkey-file)" % key2),
    ([], {"MPB_AUTHKEY": SECRET}, "the value of the environment variable MPB_AUTHKEY"),
]
for flags, envs, want in cases:
    rc, out, err = run(["--check-config"] + flags, clean_env(**envs))
    check(rc == 0 and ("# authkey: " + want) in out, "authkey %s %s: %r in %r (%s)" %
          (flags, list(envs), want, out, err))
    check(SECRET not in out + err, "the authkey is never printed (%s %s)" % (flags, list(envs)))
rc, out, err = run(["--check-config", "-k", os.path.join(tmp, "nokey")])
check(rc == 2 and "authkey-file (flag --authkey-file): cannot read authkey file %s: No such file "
      "or directory" % os.path.join(tmp, "nokey") in err, "missing key: %r" % err)
rc, out, err = run(["--check-config", "-k", tmp])
check(rc == 2 and errors(err) == ["mpbrokerd: authkey-file (flag --authkey-file): cannot read "
                                  "authkey file %s: it is a directory" % tmp],
      "a directory as key file says so: %r" % err)
# Both MPB_AUTHKEY_FILE and MPB_AUTHKEY: the file wins, and that is said (not an error).
rc, out, err = run(["--check-config"], clean_env(MPB_AUTHKEY_FILE=keyf, MPB_AUTHKEY=SECRET))
check(rc == 0 and "# authkey: read from the file %s (env MPB_AUTHKEY_FILE)" % keyf in out and
      "mpbrokerd: warning: MPB_AUTHKEY is set too, and ignored: the authkey file (env "
      "MPB_AUTHKEY_FILE) wins over it" in err and SECRET not in out + err,
      "MPB_AUTHKEY_FILE over MPB_AUTHKEY is warned about: %r %r" % (out, err))
rc, out, err = run(["--check-config"], clean_env(MPB_AUTHKEY_FILE=keyf))
check(rc == 0 and "warning" not in err, "no warning without MPB_AUTHKEY: %r" % err)
rc, out, err = run(["--check-config"], clean_env(MPB_AUTHKEY_FILE=empty))
check(rc == 2 and "is empty" in err and "env MPB_AUTHKEY_FILE" in err, "empty key file: %r" % err)

# ---- the shipped example, and the output as input ------------------------------------------

example = os.path.join(opts.source, "deploy", "mpbrokerd.conf")
# its listen, http and data-dir (5555, 8080, /var/lib) are for a real host: tried elsewhere
EX_ENV = clean_env(MPB_HTTP="127.0.0.1:0", MPB_DATA_DIR=os.path.join(tmp, "ex-data"))
rc, out, err = run(["--check-config", "--config", example], EX_ENV)
check(rc == 0, "deploy/mpbrokerd.conf passes --check-config (%d: %s)" % (rc, err))
check(any(src.startswith(example + ":") for vals in parse(out).values() for _, src in vals)
      if rc == 0 else False, "deploy/mpbrokerd.conf sets something")
for name, conf_args, envs in [("example", ["--config", example],
                               {k: v for k, v in EX_ENV.items() if k.startswith("MPB_")}),
                              ("precedence", ["--config", kc, "--http", "127.0.0.1:0"],
                               {"MPB_MAX_FRAME": "16m",
                                "MPB_LISTEN": "tcp://*:0,ipc://%s/x.sock" % tmp})]:
    rc, out, err = run(["--check-config"] + conf_args, clean_env(**envs))
    again = write("again.conf", out)
    rc2, out2, err2 = run(["--check-config", "--config", again], clean_env(MPB_LISTEN=""))
    v1 = {k: [v for v, _ in vs] for k, vs in parse(out).items()}
    v2 = {k: [v for v, _ in vs] for k, vs in parse(out2).items()} if rc2 == 0 else None
    check(rc == 0 and rc2 == 0 and v1 == v2,
          "%s: --check-config output read back gives the same settings (%s %s)" %
          (name, err, err2))

# ---- help, version, bad flags -----------------------------------------------------------------

rc, out, err = run(["--help"])
check(rc == 0, "--help exits 0")
for key, env, _, _ in SETTINGS:
    check("--" + key in out and env in out, "--help names --%s and %s" % (key, env))
for w in ["--config", "MPB_CONFIG", "--check-config", "MPB_AUTHKEY"]:
    check(w in out, "--help names " + w)
rc, out, err = run(["-V"])
check(rc == 0 and out.startswith("mpbrokerd "), "-V prints the version")
rc, out, err = run(["--no-such-flag"])
check(rc == 2 and "--help" in err, "unknown flag: exit 2")
rc, out, err = run(["--check-config", "stray"])
check(rc == 2 and "unexpected argument 'stray'" in err, "stray argument: exit 2")

# ---- a broker started from a config file uses it ------------------------------------------

run_dir = os.path.join(tmp, "run")
os.mkdir(run_dir)
epf = os.path.join(run_dir, "endpoint")
rc_conf = write("run.conf", "listen = tcp://127.0.0.1:0\nendpoint-file = %s\n"
                "data-dir = %s/data\nlog-format = json\nlog-level = debug\n" % (epf, run_dir))
logf = open(os.path.join(run_dir, "log"), "w+")
p = subprocess.Popen([opts.mpbrokerd], env=clean_env(MPB_CONFIG=rc_conf,
                                                     MPB_LOG_LEVEL="info"),
                     stdout=subprocess.DEVNULL, stderr=logf)
try:
    for _ in range(500):
        if os.path.exists(epf) and os.path.getsize(epf) > 0:
            break
        time.sleep(0.01)
    check(os.path.exists(epf), "the broker wrote the endpoint file named in the config file")
    check(os.path.exists(os.path.join(run_dir, "data", "authkey")),
          "the broker made its key in the data-dir named in the config file")
    ep = open(epf).read().strip() if os.path.exists(epf) else ""
    check(re.match(r"tcp://127\.0\.0\.1:\d+$", ep) is not None, "bound as configured: %r" % ep)
finally:
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -9
check(rc == 0, "the broker stops on SIGTERM with 0 (got %s)" % rc)
logf.seek(0)
log = logf.read()
check(log.startswith('{"ts":"'), "log-format = json from the file: %r" % log[:80])
check('"level":"debug"' not in log, "MPB_LOG_LEVEL=info overrides the file's debug")
import json  # noqa: E402
conf_lines = [json.loads(l) for l in log.splitlines() if '"msg":"configuration"' in l]
check(len(conf_lines) == 1 and conf_lines[0].get("config_file") == rc_conf and
      conf_lines[0].get("config_file_from") == "env MPB_CONFIG",
      "the config file is logged, as fields: %r" % conf_lines)

# A bad configuration starts nothing.
bad_dir = os.path.join(tmp, "never")
rc, out, err = run(["--data-dir", bad_dir, "--max-frame", "1"])
check(rc == 2 and not os.path.exists(bad_dir), "a bad value: exit 2 before anything is made")

finish()
