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
- a broker started from a config file really uses it.

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

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def clean_env(**extra):
    """The environment without any MPB_* variable, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
    env.update(extra)
    return env


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

rc, out, err = run(["--check-config"], cwd=tmp)
check(rc == 0, "defaults: exit 0 (got %d: %s)" % (rc, err))
got = parse(out)
DEFAULTS = {
    "listen": "tcp://127.0.0.1:5555", "data-dir": "./mpb-data", "http": "off",
    "max-frame": "8388608", "max-value": "1048576", "max-key": "65536",
    "heartbeat-ms": "1000", "session-ttl-ms": "5000", "log-level": "info",
    "log-format": "logfmt",
}
for k, v in DEFAULTS.items():
    check(one(got, k) == (v, "default"), "default %s: got %r" % (k, one(got, k)))
check("authkey-file" not in got and "endpoint-file" not in got, "unset settings are comments")
check("made in ./mpb-data/authkey" in out, "default authkey: generated in the data dir")
check(not os.path.exists(os.path.join(tmp, "mpb-data")), "--check-config creates nothing")

# ---- precedence, setting by setting: file < env < flag ------------------------------------

# key, env, (file value, env value, flag value), how each is printed
SETTINGS = [
    ("listen", "MPB_LISTEN", ("tcp://127.0.0.1:1001", "tcp://127.0.0.1:1002",
                              "ipc:///tmp/mpb-ops.sock"), None),
    ("authkey-file", "MPB_AUTHKEY_FILE", None, None),  # below, it needs real files
    ("data-dir", "MPB_DATA_DIR", ("/srv/file", "/srv/env", "/srv/flag"), None),
    ("endpoint-file", "MPB_ENDPOINT_FILE", ("/run/f", "/run/e", "/run/g"), None),
    ("http", "MPB_HTTP", ("127.0.0.1:8081", "0.0.0.0:8082", "[::1]:8083"), None),
    ("max-frame", "MPB_MAX_FRAME", ("2m", "3m", "4194304"), ("2097152", "3145728", "4194304")),
    ("max-value", "MPB_MAX_VALUE", ("1k", "2k", "3072"), ("1024", "2048", "3072")),
    ("max-key", "MPB_MAX_KEY", ("100", "200", "300"), None),
    ("heartbeat-ms", "MPB_HEARTBEAT_MS", ("100", "200", "300"), None),
    ("session-ttl-ms", "MPB_SESSION_TTL_MS", ("10000", "20000", "30000"), None),
    ("log-level", "MPB_LOG_LEVEL", ("debug", "warn", "error"), None),
    ("log-format", "MPB_LOG_FORMAT", ("json", "logfmt", "json"), None),
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
lc = write("listen.conf", "listen = tcp://0.0.0.0:1\nlisten = ipc:///tmp/a.sock # comment\n")
rc, out, err = run(["--check-config", "--config", lc])
check([v for v, _ in parse(out).get("listen", [])] == ["tcp://0.0.0.0:1", "ipc:///tmp/a.sock"],
      "listen repeated in a file: both, in order")
rc, out, err = run(["--check-config", "--config", lc],
                   clean_env(MPB_LISTEN="tcp://127.0.0.1:2, tcp://*:3"))
check(parse(out).get("listen") == [("tcp://127.0.0.1:2", "env MPB_LISTEN"),
                                   ("tcp://*:3", "env MPB_LISTEN")], "MPB_LISTEN list replaces the file's")
rc, out, err = run(["--check-config", "--config", lc, "-l", "tcp://127.0.0.1:4", "--listen",
                    "tcp://127.0.0.1:5"], clean_env(MPB_LISTEN="tcp://127.0.0.1:2"))
check([v for v, _ in parse(out).get("listen", [])] == ["tcp://127.0.0.1:4", "tcp://127.0.0.1:5"],
      "--listen flags replace MPB_LISTEN")
many = ["--check-config"] + sum([["-l", "tcp://127.0.0.1:%d" % (100 + i)] for i in range(9)], [])
rc, out, err = run(many)
check(rc == 2 and "--listen: more than 8" in err, "a 9th endpoint is refused: %r" % err)

# ---- bad values, in every layer -------------------------------------------------------------

BAD = {
    "listen": ["udp://x:1", "tcp://nohost", "tcp://h:99999", "ipc://", "5555"],
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

# An MPB_* variable that is no setting (a typo) is pointed out, and changes nothing.
rc, out, err = run(["--check-config"], clean_env(MPB_MAX_FRAMES="1m", MPB_ENDPOINT="tcp://x:1"))
check(rc == 0 and "# note: MPB_MAX_FRAMES is not a setting of mpbrokerd (ignored)" in out and
      "MPB_ENDPOINT" not in out, "unknown MPB_* variables noted: %r" % out)

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
check(rc == 2 and "authkey-file (flag --authkey-file): cannot read" in err, "missing key: %r" % err)
rc, out, err = run(["--check-config"], clean_env(MPB_AUTHKEY_FILE=empty))
check(rc == 2 and "is empty" in err and "env MPB_AUTHKEY_FILE" in err, "empty key file: %r" % err)

# ---- the shipped example, and the output as input ------------------------------------------

example = os.path.join(opts.source, "deploy", "mpbrokerd.conf")
rc, out, err = run(["--check-config", "--config", example])
check(rc == 0, "deploy/mpbrokerd.conf passes --check-config (%d: %s)" % (rc, err))
check(any(src.startswith(example + ":") for vals in parse(out).values() for _, src in vals)
      if rc == 0 else False, "deploy/mpbrokerd.conf sets something")
for name, conf_args, envs in [("example", ["--config", example], {}),
                              ("precedence", ["--config", kc, "--http", "[::]:9"],
                               {"MPB_MAX_FRAME": "16m", "MPB_LISTEN": "tcp://*:1,ipc:///x"})]:
    rc, out, err = run(["--check-config"] + conf_args, clean_env(**envs))
    again = write("again.conf", out)
    rc2, out2, err2 = run(["--check-config", "--config", again])
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
check("configuration: file %s (env MPB_CONFIG)" % rc_conf in log, "the config file is logged")

# A bad configuration starts nothing.
bad_dir = os.path.join(tmp, "never")
rc, out, err = run(["--data-dir", bad_dir, "--max-frame", "1"])
check(rc == 2 and not os.path.exists(bad_dir), "a bad value: exit 2 before anything is made")

if failures:
    print("%d of %d checks failed" % (len(failures), checks), file=sys.stderr)
    sys.exit(1)
print("ok: %d checks" % checks)
