#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the Slurm executor's tests and for trying
# `tw run --executor slurm` on a laptop: Debian's slurmctld + slurmd + munge, configured
# for localhost (one node with this machine's CPUs, one default partition).
#
#   eval "$(scripts/setup-slurm.sh)"     # installs (apt, as root) if needed, starts both
#   tw run --executor slurm specs/...
#   kill $TW_SLURM_PIDS                    # stop them
#
# State, spool and logs live in a fresh directory under ${TMPDIR:-/tmp}; the config is
# written to /etc/slurm/slurm.conf (where the Debian client tools read it). Prints
# `export` lines: TW_SLURM_PIDS (slurmctld, slurmd, munged) and TW_SLURM_DIR.
set -euo pipefail
log() { echo "setup-slurm.sh: $*" >&2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "slurmctld, slurmd, sbatch or munged is missing and this is not root: install slurmctld slurmd slurm-client munge"
    exit 1
  fi
  log "installing slurmctld slurmd slurm-client munge (apt, about 2 minutes)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq slurmctld slurmd slurm-client munge >&2
fi

# A Slurm that already answers (a cluster, or an earlier run of this script) is used as is.
if command -v sinfo >/dev/null && sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle\|mixed\|allocated'; then
  log "a Slurm is already up: $(sinfo -h -o '%P %D %T' | head -n 1)"
  echo "export TW_SLURM_PIDS=\"\""
  exit 0
fi

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
real_mem=$(( mem_mb * 8 / 10 ))
dir="$(mktemp -d "${TMPDIR:-/tmp}/tw-slurm.XXXXXX")"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"

# munge: a key of 1 KiB random bytes, owned by munge, mode 400; one daemon.
if ! pgrep -x munged >/dev/null; then
  install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  if command -v runuser >/dev/null; then
    runuser -u munge -- munged
  else
    su -s /bin/sh munge -c munged
  fi
fi
munge_pid="$(pgrep -x munged | head -n1)"

mkdir -p /etc/slurm
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=tw
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MpiDefault=none
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -f /etc/slurm/slurm.conf
slurmd -f /etc/slurm/slurm.conf
for _ in $(seq 1 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx 'idle'; then
    ctld="$(cat "$dir/slurmctld.pid")"
    slurmd_pid="$(cat "$dir/slurmd.pid")"
    log "Slurm is up: node $host ($cpus CPUs, ${real_mem} MB), partition debug; logs in $dir/log"
    echo "export TW_SLURM_DIR=$dir"
    echo "export TW_SLURM_PIDS=\"$ctld $slurmd_pid $munge_pid\""
    exit 0
  fi
  sleep 0.2
done
log "the node did not become idle in 20 s; sinfo says: $(sinfo 2>&1 | tail -n 3)"
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
