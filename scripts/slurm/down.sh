#!/usr/bin/env bash
# Stop the daemons scripts/slurm/up.sh started (by their pid files under the same state dir).
ROOT=${PATHLAB_SLURM_ROOT:-/tmp/pathlab-slurm}
for p in $ROOT/run/slurmd.pid $ROOT/run/slurmctld.pid $ROOT/run/slurmdbd.pid $ROOT/mysqlrun/mariadb.pid /run/munge/munged.pid; do
  [ -f "$p" ] || continue
  pid=$(cat "$p")
  kill "$pid" 2> /dev/null || continue
  for _ in $(seq 20); do kill -0 "$pid" 2> /dev/null || break; sleep 1; done
done
