#!/usr/bin/env bash
# A single-node SLURM cluster on this computer, to try the SLURM path (and run the tests marked `slurm`)
# without a real cluster. Debian/Ubuntu, as root; no systemd needed.
#
#   scripts/slurm_cluster.sh start    # install the packages if missing, then start the daemons (idempotent)
#   scripts/slurm_cluster.sh status   # which daemons run, and sinfo
#   scripts/slurm_cluster.sh stop     # cancel the jobs left, stop the daemons by their PID files
#
# Daemons: munged (authentication), mariadbd + slurmdbd (accounting: submitit polls job states with sacct),
# slurmctld, slurmd. Their state, PID and log files live under $GAN_SLURM_DIR (default /tmp/gan-slurm);
# the configuration goes to /etc/slurm, where sbatch/sinfo/sacct look for it (a slurm.conf that this script did
# not write is never overwritten). One node (this host, its CPUs and memory as `slurmd -C` reports them), one
# partition `debug`, no GPUs. A requeued job waits 10 s before it may start again (SLURM's default is 2 minutes);
# `scontrol update jobid=N StartTime=now` makes it eligible at once.
set -euo pipefail

DIR=${GAN_SLURM_DIR:-/tmp/gan-slurm}
DB_PORT=${GAN_SLURM_DB_PORT:-13306}
CLUSTER=gan
PARTITION=debug
CONF_DIR=/etc/slurm
MARK="# written by gan-lightning scripts/slurm_cluster.sh"
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
DB_PASSWORD=gan-slurm-local  # a database reachable from 127.0.0.1 only, holding this test cluster's accounting

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_of() {  # the live process a PID file names, if its command is the expected one (a recycled PID is not it)
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm") == "$name"* ]] || return 1
    echo "$pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND every second
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "$what did not come up within ${seconds}s (logs: $DIR/log)"
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SLURM, munge and MariaDB yourself"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
    local host node
    host=$(hostname -s)
    if [[ -e $CONF_DIR/slurm.conf ]] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf exists and was not written by this script; this host already has a SLURM setup"
    fi
    mkdir -p "$CONF_DIR" "$DIR"/{run,log,state/ctld,state/d,mysql}
    # this node exactly as slurmd sees it (CPUs, sockets, cores, memory): a mismatch would drain it
    node=$(slurmd -C | head -n1)
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (SLURM's default: 120)
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups or systemd needed
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
MpiDefault=none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$node
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chown root:root "$CONF_DIR/slurmdbd.conf"
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # already running (ours or the system's)
    [[ -s /etc/munge/munge.key ]] || mungekey --create
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge "$DIR/munge"
    chown munge:munge /run/munge "$DIR/munge"
    chmod 755 /run/munge
    chmod 700 "$DIR/munge"
    runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_for 20 munged bash -c "munge -n | unmunge"
}

mysql_cli() { mariadb --protocol=socket --socket="$DIR/mysql/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    if pid_of "$DIR/run/mariadbd.pid" mariadbd >/dev/null; then return 0; fi
    chown mysql:mysql "$DIR/mysql"
    if [[ ! -d $DIR/mysql/data/mysql ]]; then
        mariadb-install-db --user=mysql --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
            >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
    fi
    touch "$DIR/log/mariadbd.log"
    chown mysql:mysql "$DIR/log/mariadbd.log" "$DIR/run"
    setsid runuser -u mysql -- mariadbd --no-defaults --datadir="$DIR/mysql/data" \
        --socket="$DIR/mysql/mysqld.sock" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB mysql_cli -e "SELECT 1"
    mysql_cli <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurm() {
    if ! pid_of "$DIR/run/slurmdbd.pid" slurmdbd >/dev/null; then
        slurmdbd
        wait_for 60 slurmdbd sacctmgr -n list cluster
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if ! pid_of "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
        slurmctld
        wait_for 60 slurmctld scontrol ping
    fi
    if ! pid_of "$DIR/run/slurmd.pid" slurmd >/dev/null; then
        slurmd
    fi
    local host state
    host=$(hostname -s)
    for _ in $(seq 60); do
        state=$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)
        case $state in
            idle* | mixed* | allocated*) return 0 ;;
            down* | drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    die "node $host is '${state:-unknown}', not idle, after 60s (logs: $DIR/log)"
}

stop_pid() {  # stop_pid FILE NAME: SIGTERM the process the PID file names, then SIGKILL after 30s
    local pid
    pid=$(pid_of "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do
        [[ -d /proc/$pid ]] || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    say "$2 (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts system daemons); try: sudo $0 start"
    install_packages
    write_config
    start_munge
    start_mariadb
    start_slurm
    say "running: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')"
}

cmd_stop() {
    if pid_of "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 30); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 1; done
        fi
    fi
    stop_pid "$DIR/run/slurmd.pid" slurmd
    stop_pid "$DIR/run/slurmctld.pid" slurmctld
    stop_pid "$DIR/run/slurmdbd.pid" slurmdbd
    stop_pid "$DIR/run/mariadbd.pid" mariadbd
    stop_pid "$DIR/munge/munged.pid" munged  # only ours: a munged started by the system has another PID file
    say "stopped"
}

cmd_status() {
    local running=0 file name pid
    for entry in run/slurmd.pid:slurmd run/slurmctld.pid:slurmctld run/slurmdbd.pid:slurmdbd \
        run/mariadbd.pid:mariadbd munge/munged.pid:munged; do
        file=$DIR/${entry%%:*} name=${entry##*:}
        if pid=$(pid_of "$file" "$name"); then
            echo "$name: running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name: stopped"
        fi
    done
    ((running)) && sinfo 2>/dev/null || true
    ((running == 5))
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
