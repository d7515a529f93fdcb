#!/usr/bin/env bash
# Starts (or stops) the system PostgreSQL cluster $PG_MAJOR/main (15/main by default, see
# scripts/pg.sh); Debian creates it but, without systemd, does not start it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
action=${1:-start}
if [[ -z "$(pg_main_cluster)" ]]; then
  pg_createcluster "$PG_MAJOR" main >/dev/null
fi
# pg_persona's inference worker needs the library in shared_preload_libraries (as the README's
# install section says): set there once the library is installed (a server preloading a library
# that is not there would not start).
conf=/etc/postgresql/$PG_MAJOR/main/conf.d/pg_persona.conf
if [[ -f "$("$PG_CONFIG" --pkglibdir)/pg_persona.so" ]]; then
  if [[ ! -f "$conf" ]]; then
    mkdir -p "$(dirname "$conf")"
    printf "%s\n" "# Written by pg_persona's scripts/cluster.sh: the shared inference worker." \
      "shared_preload_libraries = 'pg_persona'" > "$conf"
    chown postgres:postgres "$conf" 2>/dev/null || true
    [[ "$(pg_main_cluster | awk '{print $4}')" != online ]] || pg_ctlcluster "$PG_MAJOR" main restart
  fi
else
  rm -f "$conf"
fi
status=$(pg_main_cluster | awk '{print $4}')
case "$action" in
  start) [[ "$status" == online ]] || pg_ctlcluster "$PG_MAJOR" main start ;;
  stop) [[ "$status" != online ]] || pg_ctlcluster "$PG_MAJOR" main stop ;;
esac
