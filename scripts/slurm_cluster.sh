#!/usr/bin/env bash
# A real single-node SLURM cluster (munge + slurmctld + slurmd) for the `slurm` tests.
#
#   scripts/slurm_cluster.sh up DIR     install the Debian packages if missing, start the daemons
#                                       with all state under DIR, wait until the node is idle,
#                                       print `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_cluster.sh down DIR   stop only the daemons started in DIR (by their PID files)
#
# Needs root (the daemons run as root; no systemd). Exit 3: cannot start here (no root, no
# apt-get, packages unavailable), with the reason on stderr. See ../shared/CLUSTER.md.
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(realpath -m "$2")
cannot() { echo "cannot start a SLURM cluster here: $*" >&2; exit 3; }

down() {
  for daemon in slurmd slurmctld munged; do
    pidfile="$dir/run/$daemon.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  command -v apt-get >/dev/null || cannot "slurmctld/slurmd/munge are not installed and there is no apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends munge slurm-client slurmctld slurmd; } >"$dir/log/apt.log" 2>&1 \
    || cannot "apt-get install munge slurm-client slurmctld slurmd failed (see $dir/log/apt.log)"
}

up() {
  [ "$(id -u)" -eq 0 ] || cannot "the daemons need root"
  down
  rm -rf "$dir"
  mkdir -p "$dir"/{munge,run,state,spool,log}
  chmod 755 "$dir" "$dir/run"
  chmod 700 "$dir/munge"
  install_packages
  mungekey --create --keyfile "$dir/munge/key" >/dev/null
  chmod 600 "$dir/munge/key"
  munged --socket="$dir/run/munge.socket" --pid-file="$dir/run/munged.pid" \
    --key-file="$dir/munge/key" --seed-file="$dir/munge/seed" --log-file="$dir/log/munged.log" \
    --origin=127.0.0.1 --force
  local node cpus memory ports
  # Two free ports, so a second cluster (or another user's daemons) never collides with this one.
  ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  node=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat >"$dir/slurm.conf" <<CONF
ClusterName=monolm-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${ports% *}
SlurmdPort=${ports#* }
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/run/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
SchedulerParameters=sched_interval=2,bf_interval=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N "$node"
  for _ in $(seq 1 120); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.25
  done
  down
  cannot "the node did not become idle within 30 s (logs in $dir/log)"
}

case $action in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
