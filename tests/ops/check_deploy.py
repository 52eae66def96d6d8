#!/usr/bin/python3
"""check_deploy.py - the deploy/ files other than the Kubernetes base, offline:

- deploy/ holds no C: the health probe the image builds is tools/mpb-healthcheck.c;
- Dockerfile/Containerfile: one file (Containerfile is the same); ARG BASE defaulting to
  debian:bookworm-slim, both stages FROM ${BASE}; tests off in the build; the runtime stage
  installs exactly the packages whose libraries the built programs need (readelf NEEDED ->
  dpkg -S), no compilers nor -dev packages, no apt caches, docs, manual pages or translations
  (a dpkg path-exclude before apt-get install); non-root USER, no VOLUME (each container of the
  image, workers too, would get an anonymous volume: the broker's /data is mounted by whoever
  runs it), EXPOSE 5555 8080, the MPB_* ENV, a HEALTHCHECK, ENTRYPOINT ["mpbrokerd"]; the
  build stage installs its packages before it copies the sources (the layer is reused);
  .dockerignore keeps build trees, .git and authkeys out of the context;
- compose.yaml: a broker, two workers and a demo client; the authkey a file secret read
  through MPB_AUTHKEY_FILE by every service; the broker's healthcheck; hardening; /data a named
  volume of the broker only; yamllint;
- mpbrokerd.service: the sandboxing directives; `systemd-analyze verify` and its offline
  security score where systemd-analyze is installed;
- the MPB_* environment each of them (and the Kubernetes StatefulSet) gives the broker is
  accepted by `mpbrokerd --check-config`.

usage: check_deploy.py --source DIR --mpbrokerd PATH
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True)
ap.add_argument("--mpbrokerd", required=True)
opts = ap.parse_args()
DEPLOY = os.path.join(opts.source, "deploy")
BUILD = os.path.dirname(os.path.dirname(os.path.abspath(opts.mpbrokerd)))

missing = []
try:
    import yaml
except ImportError:
    missing.append("python3-yaml")
for tool, pkg in (("yamllint", "yamllint"), ("readelf", "binutils"), ("dpkg", "dpkg")):
    if not shutil.which(tool):
        missing.append("%s (%s)" % (pkg, tool))
if missing:
    print("FAIL: missing tools; install: apt-get install -y " +
          " ".join(m.split(" ")[0] for m in missing), file=sys.stderr)
    sys.exit(1)

from opscheck import check, finish  # noqa: E402

c_files = sorted(f for f in os.listdir(DEPLOY) if f.endswith((".c", ".h")))
check(not c_files, "deploy/ holds no C (the health probe is tools/mpb-healthcheck.c): %s" % c_files)


def check_config_env(env, what):
    """mpbrokerd --check-config accepts this MPB_* environment. It binds what it is given: the
    ports become 0 here (in the container they are its own), the addresses stay."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("MPB_")}
    e.update({k: str(v) for k, v in env.items()})
    e.pop("MPB_AUTHKEY_FILE", None)  # a path inside the container
    for k in ("MPB_LISTEN", "MPB_HTTP"):
        if k in e:
            e[k] = re.sub(r":\d+(?=$|,)", ":0", e[k])
    e["MPB_DATA_DIR"] = tempfile.gettempdir()
    p = subprocess.run([opts.mpbrokerd, "--check-config"], env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    check(p.returncode == 0, "%s: its MPB_* environment passes --check-config: %s" %
          (what, p.stderr.strip()))
    return p.stdout


# ---- Dockerfile -------------------------------------------------------------------------------

df_path = os.path.join(DEPLOY, "Dockerfile")
cf_path = os.path.join(DEPLOY, "Containerfile")
df = open(df_path).read()
check(os.path.exists(cf_path) and open(cf_path).read() == df,
      "deploy/Containerfile is deploy/Dockerfile")
# logical lines: continuations joined, comments dropped
logical = []
cur = ""
for line in df.splitlines():
    if line.lstrip().startswith("#") and not cur:
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    cur += line
    if cur.strip():
        logical.append(cur.strip())
    cur = ""
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in logical]
labels = " ".join(a for i, a in instr if i == "LABEL")
pver = re.search(r"project\(mpbroker VERSION ([0-9.]+)",
                 open(os.path.join(DEPLOY, "..", "CMakeLists.txt")).read())
for key in ("title", "description", "version"):
    check("org.opencontainers.image.%s=" % key in labels, "OCI label image.%s" % key)
check(pver and 'org.opencontainers.image.version="%s"' % pver.group(1) in labels,
      "the image.version label is the project's version (%s)" % (pver and pver.group(1)))
froms = [i for i, (k, _) in enumerate(instr) if k == "FROM"]
check(len(froms) == 2, "two stages (%d FROM)" % len(froms))
check(instr[0] == ("ARG", "BASE=debian:bookworm-slim"), "ARG BASE=debian:bookworm-slim comes "
      "first: %r" % (instr[0],))
if len(froms) == 2:
    check(re.match(r"^\$\{BASE\} AS build$", instr[froms[0]][1], re.I), "FROM ${BASE} AS build")
    check(instr[froms[1]][1] == "${BASE}", "the runtime stage is FROM ${BASE}")
    build = instr[froms[0]:froms[1]]
    run = instr[froms[1]:]
    btext = " ".join(v for _, v in build)
    check("-DMPB_TESTS=OFF" in btext, "the image builds without tests")
    check("cmake --install" in btext, "cmake --install into a staging prefix")
    check("tools/mpb-healthcheck.c" in btext and "common/addr.c" in btext,
          "the health probe is built from tools/ with common/addr.c")
    rtext = " ".join(v for k, v in run if k == "RUN")
    m = re.search(r"apt-get install ([^&]*)", rtext)
    pkgs = set(w for w in (m.group(1).split() if m else []) if not w.startswith("-"))
    check(pkgs, "the runtime stage installs packages")
    check(not any(p.endswith("-dev") or p in ("gcc", "cmake", "make", "build-essential",
                                               "curl", "wget") for p in pkgs),
          "no -dev packages, compilers or curl at runtime: %s" % sorted(pkgs))
    check("--no-install-recommends" in rtext and "rm -rf /var/lib/apt/lists" in rtext,
          "apt without recommends, lists removed")
    check("apt-get clean" in rtext and "/var/cache/apt/*" in rtext,
          "the runtime stage drops apt's caches")
    nodoc = rtext.find("/etc/dpkg/dpkg.cfg.d/")
    check(0 <= nodoc < rtext.find("apt-get install") and
          all("path-exclude /usr/share/%s/*" % d in rtext for d in ("doc", "man", "locale")),
          "dpkg leaves out docs, manual pages and translations before apt-get install")
    keys = [k for k, _ in run]
    user = [v for k, v in run if k == "USER"]
    check(user and re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", user[-1]),
          "runs as a numeric non-root USER: %s" % user)
    check(not any(k == "VOLUME" for k, _ in run),
          "no VOLUME: workers and the demo would each get an anonymous one")
    bkeys = [k for k, _ in build]
    check("COPY" in bkeys and "RUN" in bkeys and bkeys.index("RUN") < bkeys.index("COPY") and
          "apt-get install" in build[bkeys.index("RUN")][1],
          "the build stage installs its packages before it copies the sources")
    expose = " ".join(v for k, v in run if k == "EXPOSE").split()
    check(sorted(expose) == ["5555", "8080"], "EXPOSE 5555 8080: %s" % expose)
    envtext = " ".join(v for k, v in run if k == "ENV")
    denv = dict(kv.split("=", 1) for kv in envtext.split() if "=" in kv)
    for k, v in {"MPB_DATA_DIR": "/data", "MPB_LISTEN": "tcp://0.0.0.0:5555",
                 "MPB_HTTP": "0.0.0.0:8080"}.items():
        check(denv.get(k) == v, "ENV %s=%s (%r)" % (k, v, denv.get(k)))
    check_config_env(denv, "the Dockerfile's ENV")
    hc = [v for k, v in run if k == "HEALTHCHECK"]
    check(hc and "mpb-healthcheck" in hc[0], "HEALTHCHECK runs mpb-healthcheck: %s" % hc)
    check(("ENTRYPOINT", '["mpbrokerd"]') in run, "ENTRYPOINT [\"mpbrokerd\"] (exec form)")
    check(any(k == "COPY" and v.startswith("--from=build ") for k, v in run),
          "the runtime stage copies the build stage's install (COPY --from=build)")
    check(keys.index("USER") > keys.index("COPY"), "USER after the files are in place")

    # The runtime packages are exactly those of the libraries the programs link.
    progs = [opts.mpbrokerd, os.path.join(BUILD, "client", "cli", "mpb"),
             os.path.join(BUILD, "client", "cli", "mpb-worker"),
             os.path.join(BUILD, "examples", "pool", "libmpbdemo.so")]
    progs += [os.path.join(BUILD, "client", f) for f in os.listdir(os.path.join(BUILD, "client"))
              if re.match(r"libmpb\.so\.\d+\.\d+\.\d+$", f)]
    needed = set()
    for p in progs:
        if not os.path.exists(p):
            print("NOTE: %s is not built: its libraries are not checked" % p)
            continue
        out = subprocess.run(["readelf", "-d", p], stdout=subprocess.PIPE, text=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
        # and those it opens by soname (mpbrokerd dlopen()s libmicrohttpd when --http is on)
        needed |= set(so.decode() for so in
                      re.findall(rb"\x00(libmicrohttpd\.so\.[0-9]+)\x00", open(p, "rb").read()))
    ours = {"libmpb.so.0"}
    # Sanitizer runtimes (an MPB_SANITIZE build) are not what the image's Release build links.
    needed = {so for so in needed if not re.match(r"lib(asan|ubsan|lsan|tsan)\.so", so)}
    # In every Debian image that can run apt-get (apt itself links them).
    IN_EVERY_BASE = {"libc6", "libgcc-s1", "libstdc++6"}
    need_pkgs = {}
    for so in sorted(needed - ours):
        out = subprocess.run(["dpkg", "-S", so], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        owners = {l.split(":")[0] for l in out.splitlines()
                  if re.search(r"/lib/[^ ]*/?%s$" % re.escape(so), l)}
        if not check(owners, "%s belongs to a Debian package" % so):
            continue
        pkg = sorted(owners)[0]
        if pkg in IN_EVERY_BASE:
            continue
        need_pkgs.setdefault(pkg, []).append(so)
    for pkg, sos in sorted(need_pkgs.items()):
        check(pkg in pkgs, "the runtime stage installs %s (for %s)" % (pkg, ", ".join(sos)))
    for pkg in sorted(pkgs - set(need_pkgs)):
        check(False, "the runtime stage installs %s, which no program links" % pkg)

dockerignore = open(os.path.join(opts.source, ".dockerignore")).read().split()
for pat in (".git", "build", "build-*", "**/authkey"):
    check(pat in dockerignore, ".dockerignore has %s" % pat)

# ---- compose.yaml -------------------------------------------------------------------------------

YAMLLINT_CONF = ("{extends: default, rules: {line-length: {max: 100}, "
                 "document-start: disable, truthy: {check-keys: false}}}")
compose_path = os.path.join(DEPLOY, "compose.yaml")
p = subprocess.run(["yamllint", "-f", "parsable", "-d", YAMLLINT_CONF, compose_path],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
check(p.returncode == 0, "yamllint compose.yaml:\n" + p.stdout)
c = yaml.safe_load(open(compose_path))
svcs = c.get("services", {})
check(set(svcs) == {"broker", "worker", "demo"}, "services broker, worker, demo: %s" %
      sorted(svcs))
secrets = c.get("secrets", {})
check(list(secrets) == ["mpb_authkey"] and "file" in secrets["mpb_authkey"],
      "one file secret, mpb_authkey")
for name, s in svcs.items():
    env = s.get("environment", {})
    check(isinstance(env, dict), "%s: environment is a map" % name)
    check(s.get("secrets") == ["mpb_authkey"], "%s uses the mpb_authkey secret" % name)
    check(env.get("MPB_AUTHKEY_FILE") == "/run/secrets/mpb_authkey",
          "%s reads the key from the secret's file" % name)
    check("MPB_AUTHKEY" not in env, "%s has no key in its environment" % name)
    check(s.get("read_only") is True and s.get("cap_drop") == ["ALL"] and
          "no-new-privileges:true" in s.get("security_opt", []),
          "%s: read-only, no capabilities, no-new-privileges" % name)
    check(s.get("image") == svcs["broker"].get("image"), "%s runs the broker's image" % name)
    if name != "broker":
        check(env.get("MPB_ENDPOINT") == "tcp://broker:5555", "%s reaches tcp://broker:5555" %
              name)
        check(s.get("depends_on", {}).get("broker", {}).get("condition") == "service_healthy",
              "%s waits for a healthy broker" % name)
b = svcs.get("broker", {})
bd = b.get("build", {})
check(os.path.isfile(os.path.join(DEPLOY, bd.get("context", "?"), bd.get("dockerfile", "?"))),
      "the broker's build context and dockerfile exist: %s" % bd)
check("mpb-healthcheck" in " ".join(b.get("healthcheck", {}).get("test", [])),
      "the broker's healthcheck runs mpb-healthcheck")
check(sorted(b.get("ports", [])) == ["127.0.0.1:${MPBROKER_HTTP_PORT:-8080}:8080",
                                     "127.0.0.1:${MPBROKER_PORT:-5555}:5555"],
      "the broker publishes 5555 and 8080 on loopback (host ports MPBROKER_PORT and "
      "MPBROKER_HTTP_PORT): %s" % b.get("ports"))
check(any(v.startswith(tuple(k + ":" for k in c.get("volumes", {}))) and v.endswith(":/data")
          for v in b.get("volumes", [])), "/data is a named volume")
for name, sv in svcs.items():
    if name != "broker":
        check(not sv.get("volumes"), "%s mounts no volume (the state is the broker's)" % name)
out = check_config_env(b.get("environment", {}), "compose broker")
w = svcs.get("worker", {})
check(w.get("entrypoint") == ["mpb-worker"] and w.get("command") ==
      ["--lib", "/usr/lib/mpb/libmpbdemo.so", "--fn", "square,fail,sleep_ms"],
      "workers run mpb-worker --lib /usr/lib/mpb/libmpbdemo.so --fn square,fail,sleep_ms")
check(w.get("deploy", {}).get("replicas") == 2, "two workers")
check(w.get("healthcheck", {}).get("test") in (["CMD", "mpb-worker", "--check"],
                                                "mpb-worker --check"),
      "workers have a health check of their own (mpb-worker --check), not the broker's: %s" %
      w.get("healthcheck"))
d = svcs.get("demo", {})
check("mpb" in " ".join(d.get("command", [])), "the demo runs the example and mpb")

# ---- the Kubernetes broker's environment ----------------------------------------------------------

sts = yaml.safe_load(open(os.path.join(DEPLOY, "k8s", "statefulset.yaml")))
kenv = {e["name"]: e["value"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
check_config_env(kenv, "the StatefulSet")

# ---- mpbrokerd.service -----------------------------------------------------------------------------

unit_path = os.path.join(DEPLOY, "mpbrokerd.service")
unit = {}
section = None
for line in open(unit_path):
    line = line.strip()
    if not line or line.startswith(("#", ";")):
        continue
    if line.startswith("["):
        section = line.strip("[]")
        continue
    k, _, v = line.partition("=")
    unit.setdefault((section, k), []).append(v)


def u(k, section="Service"):
    return unit.get((section, k), [])


check(re.match(r"^/usr/bin/mpbrokerd --config /etc/mpbroker/mpbrokerd\.conf$",
               (u("ExecStart") or [""])[0]), "ExecStart runs mpbrokerd --config ...")
check(u("DynamicUser") == ["yes"] or (u("User") and u("User") != ["root"]), "not root")
for k, v in {"StateDirectory": "mpbroker", "ProtectSystem": "strict", "ProtectHome": "yes",
             "PrivateTmp": "yes", "NoNewPrivileges": "yes", "PrivateDevices": "yes",
             "RestrictNamespaces": "yes", "MemoryDenyWriteExecute": "yes",
             "LockPersonality": "yes", "CapabilityBoundingSet": "", "KillSignal": "SIGTERM"
             }.items():
    check(u(k) == [v], "%s=%s (%s)" % (k, v, u(k)))
check(u("RestrictAddressFamilies") and
      set(u("RestrictAddressFamilies")[0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"},
      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX")
check("@system-service" in u("SystemCallFilter"), "SystemCallFilter=@system-service")
check(u("WantedBy", "Install") == ["multi-user.target"], "WantedBy=multi-user.target")

if shutil.which("systemd-analyze"):
    tmp = tempfile.mkdtemp(prefix="mpb-ops-unit.")
    try:
        copy = os.path.join(tmp, "mpbrokerd.service")
        with open(copy, "w") as f:  # verify wants the binary to exist: point at the build
            f.write(open(unit_path).read().replace("/usr/bin/mpbrokerd",
                                                   os.path.abspath(opts.mpbrokerd)))
        p = subprocess.run(["systemd-analyze", "verify", copy], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        lines = [l for l in p.stdout.splitlines() if "mpbrokerd.service" in l]
        check(p.returncode == 0 and not lines, "systemd-analyze verify: %s" % p.stdout)
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                            copy], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
        check(p.returncode == 0 and m and float(m.group(1)) <= 2.0,
              "systemd-analyze security: exposure %s <= 2.0" % (m.group(1) if m else p.stdout))
    finally:
        shutil.rmtree(tmp)
else:
    print("NOTE: systemd-analyze not installed: the unit was checked by this script only")

finish()
