# The PostgreSQL that pg_persona is built, installed and tested against: the one place its
# version is written. Sourced by every script (source "$(dirname "${BASH_SOURCE[0]}")/pg.sh");
# the Makefile exports the same two variables, so `make test PG_MAJOR=16` or `PG_MAJOR=16 bash
# scripts/setup.sh` switches everything at once.
#   PG_MAJOR   major version, default 15 (Debian 12's PostgreSQL)
#   PG_CONFIG  its pg_config, default Debian's /usr/lib/postgresql/$PG_MAJOR/bin/pg_config
#   PG_BINDIR  its programs (pg_config --bindir)
#   PGCLUSTER  $PG_MAJOR/main, the cluster scripts/cluster.sh runs: Debian's psql wrapper connects
#              to it even when another version's cluster holds the default port
PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
if [[ -x "$PG_CONFIG" ]]; then
  PG_BINDIR=$("$PG_CONFIG" --bindir)
  pg_found=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
  if [[ "$pg_found" != "$PG_MAJOR" ]]; then
    echo "PG_CONFIG=$PG_CONFIG is PostgreSQL ${pg_found:-?}, but PG_MAJOR=$PG_MAJOR" >&2
    exit 1
  fi
  unset pg_found
else
  # Not installed yet (scripts/setup.sh installs it): pg_config lives in the server's bindir.
  PG_BINDIR=$(dirname "$PG_CONFIG")
fi
PGCLUSTER=$PG_MAJOR/main
export PG_MAJOR PG_CONFIG PG_BINDIR PGCLUSTER

# The pg_lsclusters line of cluster $PG_MAJOR/main (Ver Cluster Port Status Owner Data Log), empty
# while it does not exist.
pg_main_cluster() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_MAJOR" '$1 == v && $2 == "main"'; }
# Its port (Debian gives a second version's cluster the next free port), for clients that bypass
# the psql wrapper (pg_regress, psycopg). Run after scripts/cluster.sh start.
pg_port() { pg_main_cluster | awk '{print $3}'; }
