#!/usr/bin/env bash
# Installs clang and its libFuzzer/sanitizer runtime for fuzz/c/build.sh from the
# Debian packages (Debian 12 bookworm: clang 14, whose runtime ships in
# libclang-rt-14-dev).  Idempotent: when clang can already link a
# -fsanitize=fuzzer,address,undefined program it changes nothing.
set -euo pipefail

FUZZ_CC=${FUZZ_CC:-clang}

links_fuzzer() {
  command -v "$FUZZ_CC" >/dev/null 2>&1 || return 1
  local d rc
  d=$(mktemp -d)
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    >"$d/t.c"
  "$FUZZ_CC" -fsanitize=fuzzer,address,undefined -o "$d/t" "$d/t.c" >/dev/null 2>&1 && rc=0 || rc=1
  rm -rf "$d"
  return $rc
}

if links_fuzzer; then
  echo "fuzz deps: $("$FUZZ_CC" --version | head -n 1) with libFuzzer already usable"
  exit 0
fi
if [ "$(uname -s)" != Linux ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "fuzz deps: need Linux with apt-get (Debian/Ubuntu), or set FUZZ_CC to a clang with libFuzzer" >&2
  exit 1
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# "clang" pulls the distribution default (clang-14 on bookworm); the fuzzer
# runtime is the matching libclang-rt-N-dev (part of clang-N on older releases).
$SUDO apt-get install -y -qq --no-install-recommends clang >/dev/null
ver=$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)
if apt-cache show "libclang-rt-$ver-dev" >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$ver-dev" >/dev/null
fi
FUZZ_CC=clang
if ! links_fuzzer; then
  echo "fuzz deps: clang $ver installed but cannot link -fsanitize=fuzzer" >&2
  exit 1
fi
echo "fuzz deps: $(clang --version | head -n 1) with libFuzzer installed"
