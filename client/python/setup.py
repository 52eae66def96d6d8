"""Builds the extension mpbroker._mpb for `pip install ./client/python`.

Against libmpb from the source tree's build when MPB_BUILD_DIR names one (linked statically),
else against an installed libmpb found by pkg-config (mpb.pc). The op codes come from its
public header mpb/ops.h.
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(os.path.relpath(p, here) for p in glob.glob(os.path.join(here, "src", "*.c")))
macros = [("MPBPY_HAVE_POOL", "1")] if os.path.exists(os.path.join(here, "src", "_mpb_pool.c")) else []


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "mpb"], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("mpbroker: libmpb not found by pkg-config (install mpbroker's C "
                         "library, or set PKG_CONFIG_PATH to its lib/pkgconfig): %s" % e)
    return shlex.split(out)


cflags = pkg_config("--cflags")
libs = pkg_config("--libs")
ext = Extension(
    "mpbroker._mpb", sources=sources, define_macros=macros,
    include_dirs=["src"] + [f[2:] for f in cflags if f.startswith("-I")],
    library_dirs=[f[2:] for f in libs if f.startswith("-L")],
    libraries=[f[2:] for f in libs if f.startswith("-l")],
    runtime_library_dirs=[f[2:] for f in libs if f.startswith("-L")],
)
setup(ext_modules=[ext])
