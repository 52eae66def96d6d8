#!/bin/sh
# pip_install.sh - `pip install ./client/python` in a venv, offline: installs this build into a
# temporary prefix (for libmpb and mpbrokerd), makes a venv with --system-site-packages (so
# Debian's setuptools builds it: --no-build-isolation, --no-index), installs the package from a
# copy of client/python (pip builds in the source directory), and runs a Manager from the venv.
#
# usage: pip_install.sh BUILD_DIR SOURCE_DIR PYTHON
# Exits 0 when it works, 77 (skipped) when python3-venv or pip is missing, 1 otherwise.
set -u
build=$1
src=$2
py=$3
fail() {
    echo "pip install test: FAIL: $*" >&2
    exit 1
}
"$py" -c 'import venv, ensurepip' 2>/dev/null || { echo "no venv/ensurepip: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpb-pip-test.XXXXXX") || fail "mktemp -d"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install"; }
pc=$(find "$tmp/prefix" -path '*/pkgconfig/mpb.pc' | head -n 1)
[ -n "$pc" ] || fail "no mpb.pc installed"
"$py" -m venv --system-site-packages "$tmp/venv" || fail "python3 -m venv"
"$tmp/venv/bin/python" -m pip --version >/dev/null 2>&1 || { echo "no pip in the venv: skipped"; exit 77; }
mkdir -p "$tmp/src" && cp -r "$src/client/python" "$tmp/src/python" || fail "copying the package"
rm -rf "$tmp/src/python/build" "$tmp/src/python/"*.egg-info
PKG_CONFIG_PATH=$(dirname "$pc") MPB_PROTO_DIR=$src/proto PIP_NO_INDEX=1 \
    "$tmp/venv/bin/python" -m pip install --no-build-isolation --no-index "$tmp/src/python" \
    >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install"; }
# Outside the source tree, with the installed programs on PATH and nothing else of ours.
cd "$tmp" || fail "cd"
env -u PYTHONPATH -u MPB_ENDPOINT PATH="$tmp/prefix/bin:/usr/bin:/bin" "$tmp/venv/bin/python" -c '
import mpbroker, sys
assert mpbroker.__file__.startswith(sys.prefix), mpbroker.__file__
with mpbroker.Manager() as m:
    q = m.Queue()
    q.put({1, 2})
    assert q.get() == {1, 2}
print("pip-installed mpbroker works:", mpbroker.__file__)' || fail "the pip-installed package does not work"
