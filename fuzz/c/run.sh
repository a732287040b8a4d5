#!/usr/bin/env bash
# Builds the C harnesses, seeds a scratch corpus from tests/vectors and
# fuzz/c/seeds, and runs each harness for a bounded time; exits non-zero on
# the first harness that crashes, times out or fails a check (libFuzzer's exit
# status), with the reproducer in OUTDIR/artifacts/.
#   fuzz/c/run.sh [SECONDS [OUTDIR]]     (default 15 s each, build/fuzz-c)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECS=${1:-15}
OUT=${2:-$ROOT/build/fuzz-c}
PY=${PYTHON:-python3}
"$HERE/build.sh" "$OUT"
CORPUS=$(mktemp -d)
trap 'rm -rf "$CORPUS"' EXIT
"$PY" "$HERE/make_seeds.py" "$CORPUS"
mkdir -p "$OUT/artifacts"
# input size cap per harness (libFuzzer -max_len; fuzz/README.md says what each
# cap leaves out); the others keep libFuzzer's default (4096 here)
max_len() {
  case "$1" in
    fuzz_ccm_open) echo 512 ;;
    fuzz_mep_response | fuzz_table_run) echo 1024 ;;
    fuzz_lp_decode) echo 2048 ;;
    fuzz_mep_request) echo 3072 ;;
    *) echo 4096 ;;
  esac
}
for h in "$HERE"/fuzz_*.c; do
  name=$(basename "${h%.c}")
  mkdir -p "$CORPUS/$name"
  echo "== $name (${SECS} s)"
  rc=0
  "$OUT/$name" -max_total_time="$SECS" -max_len="$(max_len "$name")" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$name-" "$CORPUS/$name" >"$OUT/$name.log" 2>&1 || rc=$?
  grep -E '^#[0-9]+.*DONE|^stat::number_of_executed_units' "$OUT/$name.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$OUT/$name.log" >&2
    echo "$name: libFuzzer exit status $rc, reproducer in $OUT/artifacts/" >&2
    exit 1
  fi
done
echo "all C harnesses ran clean"
