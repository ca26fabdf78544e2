#!/usr/bin/env bash
# Builds the C core and its engine tests against hiredis 1.x and runs them
# (ASan/UBSan), to check the code still works with hiredis >= 1.0 while the
# system (Debian bookworm) has 0.14.1.  hiredis 1.x comes from the sources
# inside the `hiredis` sdist on PyPI, unpacked and built in a temporary
# directory; nothing of it is kept or committed.
#   bash scripts/check_hiredis1.sh [hiredis-py version, default 2.3.2 = hiredis 1.2.0]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VER="${1:-2.3.2}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PY="${PYTHON:-python3}"
echo "[hiredis1] fetching the hiredis $VER sdist into $TMP"
"$PY" -m pip download -q --no-deps --no-binary :all: "hiredis==$VER" -d "$TMP"
tar xzf "$TMP"/hiredis-*.tar.gz -C "$TMP"
SRC="$(echo "$TMP"/hiredis-*/vendor/hiredis)"
mkdir -p "$TMP/inc/hiredis" "$TMP/obj"
cp "$SRC"/*.h "$TMP/inc/hiredis/"
grep -E '#define HIREDIS_(MAJOR|MINOR|PATCH)' "$SRC/hiredis.h"
for f in alloc async dict hiredis net read sds sockcompat; do
    gcc -O2 -fPIC -c "$SRC/$f.c" -o "$TMP/obj/$f.o"
done
ar rcs "$TMP/libhiredis.a" "$TMP"/obj/*.o
gcc -std=c11 -O1 -g -Wall -Wextra -Werror -D_GNU_SOURCE -fsanitize=address,undefined \
    -I"$TMP/inc" -I"$ROOT/ext/core" "$ROOT/tests/c/test_engine.c" "$ROOT"/ext/core/*.c \
    "$TMP/libhiredis.a" $(pkg-config --cflags --libs openssl) -lpthread -lm -o "$TMP/test_engine"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "$TMP/test_engine"
