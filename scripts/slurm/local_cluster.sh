#!/usr/bin/env bash
# local_cluster.sh -- a throwaway ONE-node Slurm cluster on this machine.
#
# Purpose: try scripts/slurm/a3c.sbatch for real (sbatch, srun, scancel,
# --signal, time limits) on a single Debian/Ubuntu machine.  Real clusters
# already run Slurm; do NOT use this there.
#
# Usage (as root; no systemd needed, the daemons are started directly):
#   bash scripts/slurm/local_cluster.sh start    # default; install if missing, start, wait for idle node
#   bash scripts/slurm/local_cluster.sh status   # daemons + sinfo
#   bash scripts/slurm/local_cluster.sh stop     # kill slurmd, slurmctld, munged
#
#   sbatch --nodes=1 scripts/slurm/a3c.sbatch --preset pong   # one node is all there is
#
# What `start` does: apt-get install slurm-wlm munge (only if missing), create
# a munge key if absent, start munged, write /etc/slurm/slurm.conf (node
# CPUs/RealMemory from `slurmd -C`, partition `debug`), start slurmctld and
# slurmd, and wait until `sinfo` shows the node idle.  `start` is idempotent.
#
# Overwrites /etc/slurm/slurm.conf (the previous one is kept as .bak once).
# Logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
HOST=$(hostname -s)

die() { echo "local_cluster.sh: error: $*" >&2; exit 1; }
say() { echo "local_cluster.sh: $*"; }

# Kill the exact processes named $1 (matched on the program name, not the
# command line), wait up to 10 s, then SIGKILL leftovers.
kill_daemon() {  # name
    local pids i
    pids=$(pgrep -x "$1" || true)
    [[ -z $pids ]] && { say "$1 not running"; return 0; }
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        pgrep -x "$1" >/dev/null || { say "stopped $1 ($(echo $pids))"; return 0; }
        sleep 0.5
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    say "killed $1 with SIGKILL ($(echo $pids))"
}

install_if_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $EUID -eq 0 ]] || die "need root to install ${missing[*]} (run with sudo)"
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    say "installing ${missing[*]} ..."
    # Without systemd the packages start no daemons; this script does that below.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/local_cluster_apt.log 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q "${missing[@]}" >/tmp/local_cluster_apt.log 2>&1; } \
        || die "apt-get install ${missing[*]} failed; see /tmp/local_cluster_apt.log"
}

start_munge() {
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating munge key $MUNGE_KEY"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    # munged refuses keys/dirs with loose permissions or the wrong owner.
    chown munge:munge "$MUNGE_KEY" /etc/munge && chmod 0400 "$MUNGE_KEY" && chmod 0700 /etc/munge
    mkdir -p "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chown munge:munge "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chmod 0755 "$MUNGE_RUN"
    if pgrep -x munged >/dev/null; then
        say "munged already running"
    else
        runuser -u munge -- /usr/sbin/munged || die "munged failed to start; see /var/log/munge/munged.log"
        say "started munged"
    fi
    munge -n | unmunge >/dev/null 2>&1 || die "munge round trip failed (munge -n | unmunge); see /var/log/munge/munged.log"
}

write_conf() {
    local node_line
    # `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1
    # CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"; keep the hardware
    # fields, and lower RealMemory a little so the node is not DRAINed for
    # "Low RealMemory" if the kernel reports a few MB less later.
    node_line=$(slurmd -C 2>/dev/null | grep '^NodeName=') || die "slurmd -C gave no NodeName line"
    local mem
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    [[ -n $mem ]] || die "no RealMemory in: $node_line"
    node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$(( mem * 95 / 100 ))/; s/^NodeName=[^ ]*/NodeName=$HOST/" <<<"$node_line")

    mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
    [[ -f $CONF && ! -f $CONF.bak ]] && ! grep -q 'written by local_cluster.sh' "$CONF" && cp "$CONF" "$CONF.bak"
    cat >"$CONF.new" <<EOF
# written by scripts/slurm/local_cluster.sh -- one-node test cluster
ClusterName=localtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups here (no systemd, maybe no delegated cgroup v2): track job
# processes by parent pid and do no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPort=6817
SlurmdPort=6818
# Seconds between SIGTERM and SIGKILL when a job is cancelled / times out.
KillWait=30
# No mail on this test node (silences "Configured MailProg is invalid").
MailProg=/bin/true
$node_line State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$CONF" "$CONF.new"; then
        rm -f "$CONF.new"
    else
        mv "$CONF.new" "$CONF"
        say "wrote $CONF ($node_line)"
        # A running slurmctld would keep the old config.
        if pgrep -x slurmctld >/dev/null; then scontrol reconfigure >/dev/null 2>&1 || true; fi
    fi
}

start_slurm() {
    if pgrep -x slurmctld >/dev/null; then
        say "slurmctld already running"
    else
        slurmctld || die "slurmctld failed to start; see $LOG_DIR/slurmctld.log"
        say "started slurmctld"
    fi
    if pgrep -x slurmd >/dev/null; then
        say "slurmd already running"
    else
        slurmd || die "slurmd failed to start; see $LOG_DIR/slurmd.log"
        say "started slurmd"
    fi
}

wait_idle() {
    local i state=""
    for ((i = 0; i < 60; i++)); do
        state=$(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)
        case $state in
            idle|mix|alloc) say "node $HOST is $state; cluster ready (sinfo below)"; sinfo; return 0 ;;
            drain*|drng|down*|fail*)
                # e.g. left DOWN/DRAINED by an earlier run: bring it back once.
                if (( i == 5 )); then scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true; fi ;;
        esac
        sleep 1
    done
    die "node $HOST not idle after 60 s (state '${state:-none}', reason: $(sinfo -h -R -n "$HOST" -o '%E' 2>/dev/null)); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "run as root (daemons and /etc/slurm need it)"
    install_if_missing
    start_munge
    write_conf
    start_slurm
    wait_idle
}

cmd_stop() {
    [[ $EUID -eq 0 ]] || die "run as root"
    # Jobs still running would leave their processes (slurmstepd, Ray) behind
    # once slurmd is gone: cancel them first, it is a throwaway cluster.
    local jobs i
    if pgrep -x slurmctld >/dev/null && jobs=$(squeue -h -o %i 2>/dev/null) && [[ -n $jobs ]]; then
        say "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 45; i++)); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && ! pgrep -x slurmstepd >/dev/null && break
            sleep 1
        done
    fi
    kill_daemon slurmd
    kill_daemon slurmctld
    kill_daemon munged
    rm -f "$CTLD_PID" "$SLURMD_PID"
    if pgrep -x slurmstepd >/dev/null; then
        say "warning: slurmstepd still running (pids $(pgrep -x slurmstepd | tr '\n' ' ')); kill them by pid if a job hung"
    fi
}

cmd_status() {
    local d rc=0
    for d in munged slurmctld slurmd; do
        if pgrep -x "$d" >/dev/null; then echo "$d: running (pid $(pgrep -x "$d" | tr '\n' ' '))"
        else echo "$d: stopped"; rc=1; fi
    done
    if (( rc == 0 )); then sinfo; squeue; fi
    return $rc
}

case ${1:-start} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) die "unknown subcommand '$1' (use start, stop or status)" ;;
esac
