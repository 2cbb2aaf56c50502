#!/usr/bin/env bash
# A one-node SLURM cluster on this Debian 12 machine (SLURM 22.05 from Debian's packages), for the
# live SLURM tests (tests/test_slurm_live.py) and for trying pathlab's SLURM recipes by hand.
#
#   sudo bash scripts/slurm/up.sh            # ~1-2 min the first time (apt), seconds after
#   sinfo; srun -n2 hostname
#   sudo bash scripts/slurm/down.sh          # stops what up.sh started (same PATHLAB_SLURM_ROOT)
#
# One partition, `cpu` (the default), on localhost: PATHLAB_SLURM_CPUS CPUs (default 2, whatever
# the machine has: slurmd takes the configured count) and PATHLAB_SLURM_MEM_MB MB (default 4096),
# time limit 60 min, accounting through slurmdbd + MariaDB (submitit polls `sacct`). No systemd
# here, so the daemons are started by hand; no cgroups (proctrack/linuxproc, task/none).
#
# Exit status: 0 up (or already up), 3 not root, 4 the packages are missing and apt-get cannot
# install them, 5 a daemon did not come up (the logs under $PATHLAB_SLURM_ROOT/log say why).
set -euo pipefail
ROOT=${PATHLAB_SLURM_ROOT:-/tmp/pathlab-slurm}
CPUS=${PATHLAB_SLURM_CPUS:-2}
MEM_MB=${PATHLAB_SLURM_MEM_MB:-4096}
PARTITION=cpu
HOST=$(hostname -s)
export PATH=$PATH:/usr/sbin

if sinfo -h -o %T 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
  echo "slurm up.sh: a cluster is already up:"; sinfo; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm up.sh: needs root (it installs packages and starts daemons); run it with sudo" >&2
  exit 3
fi

PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
if ! command -v slurmctld > /dev/null || ! command -v slurmdbd > /dev/null || ! command -v mariadbd > /dev/null; then
  if ! command -v apt-get > /dev/null; then
    echo "slurm up.sh: SLURM is not installed and there is no apt-get to install it ($PACKAGES)" >&2
    exit 4
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { timeout 300 apt-get update -q && timeout 600 apt-get install -y -q --no-install-recommends $PACKAGES; } \
      > /tmp/pathlab-slurm-apt.log 2>&1; then
    echo "slurm up.sh: apt-get could not install $PACKAGES (see /tmp/pathlab-slurm-apt.log)" >&2
    tail -3 /tmp/pathlab-slurm-apt.log >&2
    exit 4
  fi
fi

mkdir -p $ROOT/{state,spool,run,log,mysql,mysqlrun} /run/munge /run/mysqld /etc/slurm
chown munge:munge /run/munge
chown mysql:mysql $ROOT/mysql $ROOT/mysqlrun /run/mysqld

# cred_expire: a requeued job may start again after this many seconds (SLURM's default: 120).
# SlurmdParameters=config_overrides: the node has the CPUs and memory written here.
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=pathlab
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
MinJobAge=86400
KillWait=30
DefMemPerCPU=512
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=60 State=UP
CONF
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$ROOT/log/slurmdbd.log
PidFile=$ROOT/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

wait_for() {  # wait_for <seconds> <what> <command...>
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" > /dev/null 2>&1 && return 0; sleep 1; done
  echo "slurm up.sh: $what did not come up in ${seconds}s; logs in $ROOT/log" >&2
  exit 5
}
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }

# munge: Debian's postinst created /etc/munge/munge.key
[ -f /etc/munge/munge.key ] || { runuser -u munge -- /usr/sbin/mungekey 2>/dev/null || /usr/sbin/create-munge-key -f; }
running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
wait_for 10 munge bash -c 'munge -n | unmunge'

# MariaDB for slurmdbd: a socket only, no network
if ! running $ROOT/mysqlrun/mariadb.pid; then
  [ -d $ROOT/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=$ROOT/mysql > $ROOT/log/mysql-install.log 2>&1
  setsid /usr/sbin/mariadbd --user=mysql --datadir=$ROOT/mysql --socket=/run/mysqld/mysqld.sock \
    --pid-file=$ROOT/mysqlrun/mariadb.pid --skip-networking --innodb-buffer-pool-size=32M \
    --log-error=$ROOT/log/mariadb.err < /dev/null > /dev/null 2>&1 &
fi
wait_for 30 MariaDB mariadb -e 'select 1'
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; CREATE DATABASE IF NOT EXISTS slurm_acct_db; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

running $ROOT/run/slurmdbd.pid || /usr/sbin/slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster pathlab > /dev/null 2>&1 || true
running $ROOT/run/slurmctld.pid || /usr/sbin/slurmctld
running $ROOT/run/slurmd.pid || /usr/sbin/slurmd
wait_for 60 "the node (slurmd)" bash -c "sinfo -h -o %T | grep -q -E '^(idle|mixed|allocated)'"
timeout 60 srun -N1 -n1 true || { echo "slurm up.sh: a first job (srun true) did not run" >&2; exit 5; }
echo "slurm up.sh: up ($CPUS CPUs, $MEM_MB MB, partition $PARTITION; state in $ROOT)"
sinfo
