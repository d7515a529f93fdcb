#!/usr/bin/env bash
# Starts (or stops) the system PostgreSQL 15 cluster 15/main; Debian creates it but, without
# systemd, does not start it.
set -euo pipefail
action=${1:-start}
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx 15/main; then
  pg_createcluster 15 main >/dev/null
fi
status=$(pg_lsclusters -h | awk '$1==15 && $2=="main" {print $4}')
case "$action" in
  start) [[ "$status" == online ]] || pg_ctlcluster 15 main start ;;
  stop) [[ "$status" != online ]] || pg_ctlcluster 15 main stop ;;
esac
