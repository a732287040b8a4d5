#!/usr/bin/env bash
# A private PostgreSQL cluster for the store tests (tests/test_store.py), on a
# Unix socket in DIR with TCP off, run by an unprivileged user (PostgreSQL
# refuses root: as root it runs as `nobody`).
#   scripts/pg-test-cluster.sh install     PostgreSQL 15 from Debian when initdb is absent
#   scripts/pg-test-cluster.sh start DIR   prints the URL to export as OSGP_TEST_PG_URL
#   scripts/pg-test-cluster.sh stop DIR
set -euo pipefail

pg_bin() {
  local d
  if d=$(command -v initdb 2>/dev/null); then dirname "$d"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

case "${1:-}" in
  install)
    pg_bin >/dev/null && exit 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
      >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends postgresql >/dev/null
    pg_bin >/dev/null ;;
  start)
    dir=${2:?usage: start DIR}
    bin=$(pg_bin) || { echo "no PostgreSQL (initdb) found" >&2; exit 1; }
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown nobody "$dir"
      p=$(dirname "$dir")  # nobody must be able to reach the socket directory
      while [ "$p" != / ]; do chmod o+x "$p"; p=$(dirname "$p"); done
    fi
    (cd "$dir" && as_pg "$bin/initdb" -D "$dir/data" -U osgp --auth=trust -E UTF8 --no-locale \
      >/dev/null)
    (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off" start >/dev/null)
    echo "postgresql+psycopg://osgp@/postgres?host=$dir" ;;
  stop)
    dir=${2:?usage: stop DIR}
    bin=$(pg_bin)
    [ -d "$dir/data" ] && (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop \
      >/dev/null) ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
