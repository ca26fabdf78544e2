"""Build of redlease: a C extension over the system hiredis (found with pkg-config)."""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup


DEBIAN_PACKAGE = {"hiredis": "libhiredis-dev", "openssl": "libssl-dev"}


def pkg_config(*args, lib="hiredis"):
    try:
        out = subprocess.run(["pkg-config", *args, lib], check=True,
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("redlease: pkg-config is missing; on Debian: apt-get install pkg-config libhiredis-dev libssl-dev")
    except subprocess.CalledProcessError:
        sys.exit("redlease: %s not found by pkg-config; on Debian: apt-get install %s"
                 % (lib, DEBIAN_PACKAGE[lib]))
    return shlex.split(out)


# hiredis parses and formats RESP; OpenSSL (3.x) makes the rediss:// streams.
cflags = pkg_config("--cflags") + pkg_config("--cflags", lib="openssl")
libs = pkg_config("--libs") + pkg_config("--libs", lib="openssl")
# Development builds (REDLEASE_DEV=1, set by scripts/ and CI) turn warnings into errors.
warn = ["-Wall", "-Wextra"] + (["-Werror"] if os.environ.get("REDLEASE_DEV") == "1" else [])

ext = Extension(
    "redlease._redlease",
    sources=sorted(glob.glob("ext/*.c")) + sorted(glob.glob("ext/core/*.c")),
    depends=sorted(glob.glob("ext/*.h")) + sorted(glob.glob("ext/core/*.h")),
    include_dirs=["ext"],
    extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-fvisibility=hidden", *warn, *cflags],
    extra_link_args=libs + ["-lpthread", "-lm"],
)

setup(ext_modules=[ext])
