#!/bin/sh
# run.sh - the installation test: installs a build into a temporary prefix and builds an outside
# program (hello.c) against what was installed, the three ways a user would:
#   1. cc $(pkg-config --cflags --libs mpb)             shared libmpb, run with LD_LIBRARY_PATH
#   2. find_package(mpb) + target_link_libraries(mpb::mpb)   an outside CMake project
#   3. cc $(pkg-config --static --cflags --libs mpb)    libmpb.a, so Libs.private/Requires.private
#                                                       must name everything libmpb uses
# The prefix is moved after installing, so a path hard-coded by the install is caught too.
#
# usage: run.sh BUILD_DIR SOURCE_DIR [EXTRA_FLAGS]
#   EXTRA_FLAGS are added to every compile and link (e.g. "-fsanitize=address,undefined" when
#   the build is sanitized: the installed library then needs the sanitizer runtime).
# Environment: CC (default cc), CMAKE (default cmake), PKG_CONFIG (default pkg-config),
#   MPB_INSTALL_TEST_KEEP=1 keeps the temporary directory for a look.
# Exits 0 when every step passes; otherwise prints what failed and exits 1.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR [EXTRA_FLAGS]" >&2
    exit 2
fi
build=$1
src=$2
extra=${3:-}
CC=${CC:-cc}
CMAKE=${CMAKE:-cmake}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
here=$src/tests/install

fail() {
    echo "install test: FAIL: $*" >&2
    exit 1
}
step() {
    echo
    echo "== $*"
}
# run LOG CMD...: runs CMD, its output into LOG; on failure shows LOG.
run() {
    log=$1
    shift
    echo "\$ $*"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

[ -f "$build/CMakeCache.txt" ] || fail "$build is not a CMake build directory"
[ -f "$here/hello.c" ] || fail "$here/hello.c not found (is $src the source directory?)"
command -v "$PKG_CONFIG" >/dev/null 2>&1 || fail "$PKG_CONFIG not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpb-install-test.XXXXXX") || fail "mktemp -d failed"
if [ "${MPB_INSTALL_TEST_KEEP:-0}" = 1 ]; then
    trap 'echo "(kept $tmp)"' EXIT
else
    trap 'rm -rf "$tmp"' EXIT
fi
trap 'exit 130' INT TERM

# ---- install, then move the tree -----------------------------------------------------------
step "cmake --install into a temporary prefix"
run "$tmp/install.log" "$CMAKE" --install "$build" --prefix "$tmp/staged" ||
    fail "cmake --install $build --prefix $tmp/staged failed"
mv "$tmp/staged" "$tmp/prefix" || fail "cannot move the installed tree"
prefix=$tmp/prefix
echo "installed, then moved to $prefix"

# The library directory is CMAKE_INSTALL_LIBDIR: lib, lib64 or lib/<multiarch>. Find it by the
# .pc file rather than guess.
pc=$(find "$prefix" -path '*/pkgconfig/mpb.pc' | head -n 1)
[ -n "$pc" ] || fail "no pkgconfig/mpb.pc installed under $prefix"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
echo "libdir: ${libdir#"$prefix"/}"

for f in "$prefix/include/mpb/mpb.h" "$libdir/libmpb.so" "$libdir/libmpb.so.0" \
    "$libdir/libmpb.a" "$libdir/cmake/mpb/mpb-config.cmake" \
    "$libdir/cmake/mpb/mpb-config-version.cmake" "$prefix/bin/mpbrokerd" "$prefix/bin/mpb"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
echo "all expected files are there"

# ---- man pages and bash completion -----------------------------------------------------------
step "man pages and bash completion"
for f in share/man/man1/mpb.1 share/man/man1/mpb-worker.1 share/man/man8/mpbrokerd.8 \
    share/bash-completion/completions/mpb; do
    [ -s "$prefix/$f" ] || fail "not installed: $f"
done
# each page names its program and, for mpb, has every command of `mpb help` in COMMANDS
grep -q '^\.TH MPB 1 ' "$prefix/share/man/man1/mpb.1" || fail "mpb.1 has no .TH MPB 1"
grep -q '^\.TH MPBROKERD 8 ' "$prefix/share/man/man8/mpbrokerd.8" || fail "mpbrokerd.8: no .TH"
grep -q '^\.TH MPB-WORKER 1 ' "$prefix/share/man/man1/mpb-worker.1" || fail "mpb-worker.1: no .TH"
for c in info ls get set incr del append put task..done peek clients kill slowlog clear wait lock pool ping watch help; do
    grep -q "^\.B $c" "$prefix/share/man/man1/mpb.1" || fail "mpb.1 lacks the command $c"
done
if command -v man >/dev/null 2>&1; then
    for p in man1/mpb.1 man1/mpb-worker.1 man8/mpbrokerd.8; do
        w=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$prefix/share/man/$p" 2>&1 >/dev/null)
        [ -z "$w" ] || fail "man $p warns: $w"
    done
fi
# the completion offers commands, then options (no broker needed for either)
got=$(bash -c '. "$1"; COMP_WORDS=(mpb ta); COMP_CWORD=1; _mpb; echo "${COMPREPLY[*]}"
    COMP_WORDS=(mpb ls --js); COMP_CWORD=2; _mpb; echo "${COMPREPLY[*]}"' _ \
    "$prefix/share/bash-completion/completions/mpb") || fail "the completion script fails"
[ "$got" = "task-done
--json" ] || fail "completion offered: $got"
echo "man pages render, completion completes"

PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH

# ---- 1. pkg-config, shared -------------------------------------------------------------------
step "pkg-config --cflags --libs mpb (shared)"
"$PKG_CONFIG" --exists --print-errors mpb || fail "pkg-config does not find mpb in $pcdir"
pcprefix=$("$PKG_CONFIG" --variable=prefix mpb)
[ "$(cd "$pcprefix" 2>/dev/null && pwd -P)" = "$(cd "$prefix" && pwd -P)" ] ||
    fail "mpb.pc is not relocatable: its prefix is $pcprefix, the tree is in $prefix"
echo "mpb $("$PKG_CONFIG" --modversion mpb), prefix resolves to the moved tree"
flags=$("$PKG_CONFIG" --cflags --libs mpb) || fail "pkg-config --cflags --libs mpb failed"
# shellcheck disable=SC2086 # word splitting of the flags is wanted
run "$tmp/cc-shared.log" "$CC" $extra -o "$tmp/hello-pkgconfig" "$here/hello.c" $flags ||
    fail "cannot build hello.c with pkg-config (shared): $flags"
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/hello-pkgconfig" ||
    fail "hello built with pkg-config (shared) failed"
if command -v ldd >/dev/null 2>&1; then
    LD_LIBRARY_PATH=$libdir ldd "$tmp/hello-pkgconfig" | grep -F "$libdir/libmpb.so.0" \
        >/dev/null || fail "hello (shared) does not load libmpb.so.0 from $libdir"
fi

# ---- 2. find_package(mpb) --------------------------------------------------------------------
step "outside CMake project: find_package(mpb), mpb::mpb"
run "$tmp/cmake-configure.log" "$CMAKE" -S "$here" -B "$tmp/outside" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" ||
    fail "configuring the outside project with -DCMAKE_PREFIX_PATH=$prefix failed"
grep -F "mpb " "$tmp/cmake-configure.log" | grep -F "from" || true
run "$tmp/cmake-build.log" "$CMAKE" --build "$tmp/outside" ||
    fail "building the outside project against mpb::mpb failed"
# No LD_LIBRARY_PATH: CMake gives an imported library's directory to the build RPATH, so this
# also checks that mpb::mpb points at the installed file.
"$tmp/outside/hello" || fail "hello built with find_package(mpb) failed"

# ---- 3. pkg-config --static -------------------------------------------------------------------
step "pkg-config --static --cflags --libs mpb (libmpb.a)"
sflags=$("$PKG_CONFIG" --static --cflags --libs mpb) || fail "pkg-config --static mpb failed"
echo "pkg-config --static: $sflags"
# -lmpb would pick libmpb.so beside libmpb.a: ask for the archive by name. The rest (libzmq,
# libcrypto, ...) stays as pkg-config gives it, shared where the system has shared libraries.
# Some distributions' .pc files (Debian's norm.pc, pulled in by libzmq's Requires.private)
# list a bare "libfoo.a": resolve such a name through the compiler's library path.
words=
for w in $sflags; do
    case $w in
    -lmpb) w=-l:libmpb.a ;;
    -*) ;;
    *)
        if [ ! -e "$w" ]; then
            r=$("$CC" -print-file-name="$w")
            if [ -e "$r" ]; then
                w=$r
            else
                echo "note: dropping \"$w\" from the flags: no such file (a system .pc bug)"
                continue
            fi
        fi
        ;;
    esac
    words="$words $w"
done
# shellcheck disable=SC2086
run "$tmp/cc-static.log" "$CC" $extra -o "$tmp/hello-static" "$here/hello.c" $words ||
    fail "cannot link hello.c against libmpb.a with pkg-config --static: are Libs.private and Requires.private in mpb.pc complete?"
if command -v readelf >/dev/null 2>&1; then
    if readelf -d "$tmp/hello-static" | grep -F 'libmpb.so' >/dev/null; then
        fail "hello (static) still needs libmpb.so"
    fi
fi
"$tmp/hello-static" || fail "hello linked with libmpb.a failed"

# ---- the README's C sample, as a reader builds and runs it ----------------------------------
# The first C block under "## In C", built the README's way for a prefix that is not
# /usr/local (pkg-config and an rpath, no LD_LIBRARY_PATH), run twice against the installed
# mpbrokerd with the key from the environment; the installed mpb then reads what it counted.
step "the README's C sample, with an rpath, against the installed mpbrokerd"
awk '/^## In C/ { inc = 1 } inc && /^```c$/ { on = 1; next } on && /^```$/ { exit } on' \
    "$src/README.md" >"$tmp/readme.c"
grep -q 'mpb_dict_incr_str' "$tmp/readme.c" || fail "no C sample found under README's ## In C"
flags=$("$PKG_CONFIG" --cflags --libs mpb)
# shellcheck disable=SC2086 # word splitting of the flags is wanted
run "$tmp/cc-readme.log" "$CC" $extra -Wall -Wextra -Werror -o "$tmp/readme" "$tmp/readme.c" \
    $flags -Wl,-rpath,"$("$PKG_CONFIG" --variable=libdir mpb)" ||
    fail "the README's C sample does not build as the README says"
ep="ipc://$tmp/readme.sock"
"$prefix/bin/mpbrokerd" --listen "$ep" --data-dir "$tmp/readme-data" --persist off \
    >"$tmp/readme-broker.log" 2>&1 &
bpid=$!
export MPB_ENDPOINT="$ep" MPB_AUTHKEY_FILE="$tmp/readme-data/authkey"
i=0
until [ -S "$tmp/readme.sock" ] && [ -s "$MPB_AUTHKEY_FILE" ]; do
    i=$((i + 1))
    [ $i -lt 200 ] || { kill $bpid; cat "$tmp/readme-broker.log" >&2; fail "mpbrokerd did not start"; }
    sleep 0.05
done
ok=1
"$tmp/readme" && "$tmp/readme" || ok=0
hits=$("$prefix/bin/mpb" get dict/counters hits 2>&1)
kill $bpid
wait $bpid 2>/dev/null
unset MPB_ENDPOINT MPB_AUTHKEY_FILE
[ $ok = 1 ] || fail "the README's C sample failed against a running broker"
[ "$hits" = 2 ] || fail "after two runs of the README's sample, mpb get dict/counters hits said: $hits"
echo "built with -Wl,-rpath, ran twice, counted $hits"

# ---- 4. the Python package -------------------------------------------------------------------
# Where Debian's python3 looks for a prefix (site.getsitepackages), and that it runs from there:
# the extension loads without LD_LIBRARY_PATH and Manager() finds the installed mpbrokerd
# beside the moved prefix, with nothing of the build tree on PATH.
py=$(sed -n 's/^MPB_PYTHON_EXECUTABLE:[A-Z]*=//p' "$build/CMakeCache.txt")
pkg=$(find "$prefix" -path '*/mpbroker/__init__.py' | head -n 1)
if [ -n "$py" ] && [ -n "$pkg" ] && [ -z "$extra" ]; then
    step "the Python package, with $py"
    site=$(dirname "$(dirname "$pkg")")
    "$py" -c "import site, sys; sys.exit(0 if sys.argv[1] in site.getsitepackages([sys.argv[2]]) else 1)" \
        "$site" "$prefix" || fail "${site#"$prefix"/} is not where $py looks under a prefix"
    env -u MPB_ENDPOINT PATH=/usr/bin:/bin PYTHONPATH="$site" "$py" -c '
import mpbroker
with mpbroker.Manager() as m:
    d = m.dict()
    d["t"] = (1, "x")
    assert d["t"] == (1, "x")
print("mpbroker from", mpbroker.__file__)' || fail "the installed Python package does not work"
elif [ -n "$extra" ]; then
    echo "(the Python package is not checked in a sanitized build)"
fi

step "install test: every build passed"
exit 0
