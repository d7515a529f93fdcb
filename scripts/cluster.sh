#!/usr/bin/env bash
# Starts (or stops) the system PostgreSQL cluster $PG_MAJOR/main (15/main by default, see
# scripts/pg.sh); Debian creates it but, without systemd, does not start it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
action=${1:-start}
if [[ -z "$(pg_main_cluster)" ]]; then
  pg_createcluster "$PG_MAJOR" main >/dev/null
fi
status=$(pg_main_cluster | awk '{print $4}')
case "$action" in
  start) [[ "$status" == online ]] || pg_ctlcluster "$PG_MAJOR" main start ;;
  stop) [[ "$status" != online ]] || pg_ctlcluster "$PG_MAJOR" main stop ;;
esac
