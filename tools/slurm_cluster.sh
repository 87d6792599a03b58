#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for the LiteVAE study harness: its tests, its CI, and
# users who want to try the SLURM launch path on one Debian/Ubuntu machine.
#
#   bash tools/slurm_cluster.sh start    # install what is missing, bring the cluster up (idempotent)
#   bash tools/slurm_cluster.sh status   # daemons + sinfo; exit 0 only when everything is up
#   bash tools/slurm_cluster.sh stop     # cancel this cluster's jobs, stop its daemons (state kept)
#
# Runs as root, needs no systemd and no cgroups. Daemons: munged, mariadbd + slurmdbd (accounting,
# so that `sacct` works: submitit depends on it), slurmctld, slurmd. Everything they write lives
# under $SLURM_BASE. `start` ends by printing the line to eval:   export SLURM_CONF=...
#
# Settings (environment):
#   SLURM_BASE            all config, state, logs, pid files  (default /tmp/litevae-slurm)
#   SLURM_PARTITION       name of the single partition         (default debug)
#   SLURM_MAX_ARRAY_SIZE  slurm.conf MaxArraySize              (default 1001: array ids 0..1000)
#   SLURM_ACCOUNTING      1: MariaDB + slurmdbd, 0: none       (default 1; without it sacct fails)
#   SLURM_MEM_FRACTION    percent of `slurmd -C` memory given to the node (default 90)
#   SLURM_CTLD_PORT / SLURMD_PORT / SLURM_DBD_PORT / SLURM_DB_PORT   (6817 / 6818 / 6819 / 3306)
# Re-running `start` with other settings rewrites slurm.conf and applies it: `scontrol reconfigure`
# for a new partition name, a slurmctld restart for a new MaxArraySize (reconfigure does not apply
# it), a slurmctld + slurmd restart otherwise. Jobs survive all three (state in $SLURM_BASE/state).
set -euo pipefail

base=${SLURM_BASE:-/tmp/litevae-slurm}
partition=${SLURM_PARTITION:-debug}
max_array=${SLURM_MAX_ARRAY_SIZE:-1001}
accounting=${SLURM_ACCOUNTING:-1}
mem_pct=${SLURM_MEM_FRACTION:-90}
ctld_port=${SLURM_CTLD_PORT:-6817}
slurmd_port=${SLURMD_PORT:-6818}
dbd_port=${SLURM_DBD_PORT:-6819}
db_port=${SLURM_DB_PORT:-3306}

etc=$base/etc
run=$base/run
logs=$base/log
munge_sock=$run/munge.socket.2
db_sock=$run/mariadb.sock
conf=$etc/slurm.conf
export SLURM_CONF=$conf
node=$(hostname -s)

say() { echo "[slurm_cluster] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# alive <pid>: the process exists and is not a zombie (on these machines pid 1 reaps late, and a
# zombie still answers kill -0)
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

gone() { ! alive "$1"; }

# running <name>: the daemon whose pid file is $run/<name>.pid is alive
running() { [[ -s $run/$1.pid ]] && alive "$(cat "$run/$1.pid")"; }

# retry <seconds> <command...>: poll every 0.25 s until the command succeeds
retry() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.25
  done
}

# halt <name>...: TERM these daemons together, wait up to 15 s for them to end, then KILL
halt() {
  local name pid pids=()
  for name in "$@"; do
    if running "$name"; then
      pid=$(cat "$run/$name.pid")
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
      say "stopping $name (pid $pid)"
    fi
    rm -f "$run/$name.pid"
  done
  for pid in "${pids[@]}"; do
    retry 15 gone "$pid" || kill -9 "$pid" 2>/dev/null || true
  done
}

queue_empty() { [[ -z $(squeue -h -o %A 2>/dev/null) ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_usable() { sinfo -h -n "$node" -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'; }

install_packages() {
  local want=(munge slurmctld slurmd slurm-client) missing=() p
  [[ $accounting == 1 ]] && want+=(slurmdbd mariadb-server mariadb-client)
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$logs/apt.log" 2>&1 || { tail -20 "$logs/apt.log" >&2; die "apt-get install failed"; }
}

start_munge() {
  if [[ ! -s $base/munge/munge.key ]]; then
    dd if=/dev/urandom of="$base/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 600 "$base/munge/munge.key"
  if ! running munged; then
    rm -f "$munge_sock" "$munge_sock.lock"
    munged --key-file="$base/munge/munge.key" --socket="$munge_sock" --pid-file="$run/munged.pid" \
      --log-file="$logs/munged.log" --seed-file="$base/munge/munged.seed" --num-threads=4 \
      </dev/null >/dev/null 2>&1 9>&-
  fi
  retry 10 bash -c "munge -S '$munge_sock' -n | unmunge -S '$munge_sock'" || die "munge does not work ($logs/munged.log)"
}

start_accounting() {
  if [[ ! -d $base/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$base/mysql" --user=root \
      --auth-root-authentication-method=socket >"$logs/mariadb-install.log" 2>&1 \
      || { tail -20 "$logs/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  if ! running mariadbd; then
    setsid mariadbd --no-defaults --datadir="$base/mysql" --socket="$db_sock" \
      --pid-file="$run/mariadbd.pid" --bind-address=127.0.0.1 --port="$db_port" --user=root \
      --log-error="$logs/mariadb.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
      --innodb-lock-wait-timeout=900 --skip-name-resolve </dev/null >/dev/null 2>&1 9>&- &
  fi
  retry 60 mariadb-admin --no-defaults --socket="$db_sock" ping || { tail -20 "$logs/mariadb.log" >&2; die "mariadb did not come up"; }
  mariadb --no-defaults --socket="$db_sock" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

  # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF; it must be mode 600
  umask 077
  cat >"$etc/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$munge_sock
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
LogFile=$logs/slurmdbd.log
PidFile=$run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  umask 022
  if ! cmp -s "$etc/slurmdbd.conf.new" "$etc/slurmdbd.conf"; then
    mv "$etc/slurmdbd.conf.new" "$etc/slurmdbd.conf"
    halt slurmdbd
  else
    rm -f "$etc/slurmdbd.conf.new"
  fi
  running slurmdbd || slurmdbd </dev/null >/dev/null 2>&1 9>&-
  retry 60 port_open "$dbd_port" || { tail -20 "$logs/slurmdbd.log" >&2; die "slurmdbd did not come up"; }
}

write_slurm_conf() {
  # node line as slurmd sees this machine, addressed as 127.0.0.1 (no DNS needed), with less memory
  # than it reports so that the node is never drained for having "low RealMemory"
  local hw mem accounting_lines
  hw=$(slurmd -C | head -1)
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  hw=$(sed -e "s/^NodeName=[^ ]*/NodeName=$node NodeAddr=127.0.0.1/" \
    -e "s/RealMemory=[0-9]*/RealMemory=$((mem * mem_pct / 100))/" <<<"$hw")
  if [[ $accounting == 1 ]]; then
    accounting_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$munge_sock"
  else
    accounting_lines="AccountingStorageType=accounting_storage/none"
  fi
  cat >"$conf.new" <<EOF
# written by tools/slurm_cluster.sh; rewritten on every start
ClusterName=litevae
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
# no cgroups on this machine
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
$accounting_lines
JobCompType=jobcomp/none
# submitit requeues timed-out or preempted jobs (scontrol requeue)
JobRequeue=1
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=3600
MaxArraySize=$max_array
$hw State=UNKNOWN
PartitionName=$partition Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# (grep without -q: under pipefail, grep -q quitting at the first match can SIGPIPE scontrol, which
# is still writing, and the check fails although the value is there)
max_array_applied() { scontrol show config 2>/dev/null | grep -E "^MaxArraySize +=  *$max_array\$" >/dev/null; }
partition_applied() { [[ -n $(sinfo -h -p "$partition" -o %P 2>/dev/null) ]]; }

start_slurm() {
  write_slurm_conf
  # how to apply a changed slurm.conf to running daemons: a new partition line is taken by
  # `scontrol reconfigure`; MaxArraySize is not (slurmctld caches it at the first job array it
  # checks and reconfigure leaves that cache alone), so it needs a slurmctld restart; anything
  # else (the node line, ports, ...) gets slurmctld and slurmd restarted
  local how=none
  if [[ -f $conf ]] && ! cmp -s "$conf.new" "$conf"; then
    if ! diff <(grep -vE '^(MaxArraySize|PartitionName)=' "$conf") \
      <(grep -vE '^(MaxArraySize|PartitionName)=' "$conf.new") >/dev/null; then
      how=restart-all
    elif ! diff <(grep '^MaxArraySize=' "$conf") <(grep '^MaxArraySize=' "$conf.new") >/dev/null; then
      how=restart-ctld
    else
      how=reconfigure
    fi
  fi
  mv "$conf.new" "$conf"
  case $how in
    restart-all)
      say "slurm.conf changed: restarting slurmctld and slurmd"
      halt slurmd slurmctld ;;
    restart-ctld)
      say "MaxArraySize changed to $max_array: restarting slurmctld"
      halt slurmctld ;;
  esac
  if ! running slurmctld; then
    slurmctld </dev/null >/dev/null 2>&1 9>&-
  elif [[ $how == reconfigure ]]; then
    say "slurm.conf changed: scontrol reconfigure"
    scontrol reconfigure || true
    if ! retry 10 partition_applied; then
      say "reconfigure did not apply: restarting slurmctld"
      halt slurmctld
      slurmctld </dev/null >/dev/null 2>&1 9>&-
    fi
  fi
  retry 60 scontrol ping || { tail -20 "$logs/slurmctld.log" >&2; die "slurmctld did not come up"; }
  if [[ $how == restart-ctld ]] && running slurmd; then
    # slurmd still holds the old slurm.conf: make it re-read it (and register again at once)
    scontrol reconfigure || true
  fi
  running slurmd || slurmd </dev/null >/dev/null 2>&1 9>&-
  if ! retry 30 node_usable; then
    scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
    retry 30 node_usable || { sinfo -R >&2; tail -20 "$logs/slurmd.log" >&2; die "node $node is not usable"; }
  fi
  retry 20 max_array_applied || die "MaxArraySize=$max_array not in effect: $(scontrol show config | grep MaxArraySize)"
  retry 20 partition_applied || die "partition $partition not in effect"
}

cmd_start() {
  [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
  local t0=$SECONDS
  mkdir -p "$etc" "$run" "$logs" "$base/state" "$base/spool" "$base/munge"
  chmod 755 "$base" "$run"
  chmod 700 "$base/munge"
  exec 9>"$base/.lock"           # one start/stop at a time
  flock 9
  install_packages
  start_munge
  [[ $accounting == 1 ]] && start_accounting
  start_slurm
  # a real job end to end, so that "up" means "runs jobs"
  timeout 60 srun -p "$partition" -N1 -n1 -t 1 true || die "test job failed ($logs/slurmctld.log, $logs/slurmd.log)"
  say "up in $((SECONDS - t0)) s: partition=$partition MaxArraySize=$max_array accounting=$accounting base=$base"
  echo "export SLURM_CONF=$conf"
}

cmd_stop() {
  [[ -d $run ]] || { say "nothing under $base"; return 0; }
  exec 9>"$base/.lock"
  flock 9
  if running slurmctld; then
    # this cluster is private to us: leave no job of it behind
    local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
      say "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      retry 15 queue_empty || say "some jobs did not end in 15 s"
    fi
  fi
  halt slurmd slurmctld
  halt slurmdbd
  halt mariadbd munged
}

cmd_status() {
  local d ok=0
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    if [[ $d == mariadbd || $d == slurmdbd ]] && [[ $accounting != 1 ]]; then continue; fi
    if running "$d"; then echo "$d: running (pid $(cat "$run/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
  done
  if ((ok == 0)); then
    sinfo || ok=1
    scontrol show config | grep -E '^(MaxArraySize|AccountingStorageType|JobRequeue) ' || true
    echo "export SLURM_CONF=$conf"
  fi
  return $ok
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
