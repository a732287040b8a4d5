#!/usr/bin/env bash
# Builds every libFuzzer harness fuzz/c/fuzz_*.c against the C kernels
# (csrc/*.c linked directly, no Python) with ASan + UBSan at -O2.
#   fuzz/c/build.sh [OUTDIR [HARNESS...]]   (OUTDIR default build/fuzz-c, HARNESS e.g.
#   fuzz_lon_parse, default all; FUZZ_CC defaults to clang)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/build/fuzz-c}
FUZZ_CC=${FUZZ_CC:-clang}
mkdir -p "$OUT"
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
COMMON=(-g -O2 -fno-omit-frame-pointer -fno-strict-aliasing -std=c99 -I"$ROOT/csrc")
# the kernels once, with coverage instrumentation but without libFuzzer's main
KOBJ="$OUT/kernels"
mkdir -p "$KOBJ"
objs=()
# objects from other flags or another compiler are rebuilt
stamp="$("$FUZZ_CC" --version | head -n 1) ${COMMON[*]} ${SAN[*]} primitives-without-trace-cmp"
if [ "$(cat "$KOBJ/flags" 2>/dev/null || true)" != "$stamp" ]; then
  rm -f "$KOBJ"/*.o
  printf '%s\n' "$stamp" >"$KOBJ/flags"
fi
for src in "$ROOT"/csrc/*.c; do
  o="$KOBJ/$(basename "${src%.c}").o"
  objs+=("$o")
  # rebuilt when older than its source or any kernel header
  stale=$(find "$src" "$ROOT"/csrc/*.h "$ROOT"/csrc/*.inc -newer "$o" 2>/dev/null | head -n 1 || true)
  [ -f "$o" ] && [ -z "$stale" ] && continue
  # The cipher and digest primitives keep edge coverage but not comparison
  # tracing: their branches are loop bounds and constant-time selects, never a
  # value an input must match, and the hooks took ~40 % of each execution.
  cov=()
  case "$(basename "$src")" in
    osgp_aes.c | osgp_oma.c | osgp_oma_batch.c | osgp_rc4.c | osgp_crc.c | osgp_cpu.c)
      cov=(-fno-sanitize-coverage=trace-cmp) ;;
  esac
  "$FUZZ_CC" "${COMMON[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link "${cov[@]}" -c "$src" -o "$o"
done
if [ $# -gt 1 ]; then
  harnesses=("${@:2}")
else
  harnesses=("$HERE"/fuzz_*.c)
fi
for h in "${harnesses[@]}"; do
  h="$HERE/$(basename "${h%.c}").c"
  name=$(basename "${h%.c}")
  "$FUZZ_CC" "${COMMON[@]}" -Wall -Wextra -Werror -I"$HERE" "${SAN[@]}" -fsanitize=fuzzer \
    "$h" "${objs[@]}" -o "$OUT/$name"
  echo "built $OUT/$name"
done
