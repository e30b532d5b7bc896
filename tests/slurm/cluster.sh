#!/usr/bin/env bash
# Start/stop a real single-node SLURM cluster (munged + slurmctld + slurmd) on
# this machine, for testing the Snakemake SLURM profile end to end.
#
#   tests/slurm/cluster.sh start    # install (apt) if needed, start, wait until idle
#   tests/slurm/cluster.sh stop     # cancel jobs, stop exactly the daemons we started
#   tests/slurm/cluster.sh status   # exit 0 if running and the node is usable
#   tests/slurm/cluster.sh env      # prints: export SLURM_CONF=...
#   tests/slurm/cluster.sh logs     # tail of the daemons' logs
#
# SLURM clients (sbatch, squeue, sinfo, and so Snakemake) find this cluster
# through SLURM_CONF; nothing under /etc is changed. In your shell:
#   tests/slurm/cluster.sh start && eval "$(tests/slurm/cluster.sh env)"
# (`srun` inside jobs loses SLURM_CONF, see RUN_CONF_LINK below, and finds the
# config through the symlink /run/slurm/conf -> state dir, removed by stop.)
#
# Settings (environment):
#   UMR_SLURM_DIR        state/log dir       [/tmp/umr-slurm]  (wiped by start/stop)
#   UMR_SLURM_PARTITION  partition name      [local]
#   UMR_SLURM_CTLD_PORT  slurmctld port      [6817]
#   UMR_SLURM_SLURMD_PORT slurmd port        [6818]
#   UMR_SLURM_TIMEOUT    seconds to wait for the node to become idle [60]
#   UMR_SLURM_GPUS       fake GPUs on the node, 1-4 [2]: one per CPU of a 2-CPU runner, so
#                        two GPU jobs run side by side as two CPU jobs do
#   UMR_SLURM_KEEP_STATE=1  `stop` keeps the state dir (logs) instead of deleting it
#
# Needs root (daemons, apt-get); as a normal user it re-runs itself with `sudo -n`.
# Jobs run as the submitting user. Tested with Debian 12's slurm-wlm 22.05.
#
# Exit codes: 0 ok; 1 error; 2 usage; 3 installing packages failed;
#             4 a daemon did not start / node not idle in time (log tails printed);
#             5 stop: a daemon would not die; status: 3 = not running.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${UMR_SLURM_DIR:-/tmp/umr-slurm}"
PARTITION="${UMR_SLURM_PARTITION:-local}"
CTLD_PORT="${UMR_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${UMR_SLURM_SLURMD_PORT:-6818}"
TIMEOUT="${UMR_SLURM_TIMEOUT:-60}"
GPUS="${UMR_SLURM_GPUS:-2}"
# Fake GPU devices: slurmd only needs a file per GPU to hand out (never opened by the jobs).
GPU_FILES=(/dev/null /dev/zero /dev/full /dev/urandom)
MARKER="$STATE_DIR/.umr-slurm-state"   # proves the dir is ours before we wipe it
PIDS_FILE="$STATE_DIR/pids"            # "name pid" per line, written by start
CONF="$STATE_DIR/slurm.conf"
MUNGE_SOCKET="$STATE_DIR/munge/munge.socket"
# libslurm's last-resort config path (after $SLURM_CONF and /etc/slurm/slurm.conf).
# Needed because snakemake-executor-plugin-slurm-jobstep (0.6.1) strips every
# SLURM_* variable except the job ids, SLURM_CONF included, before it runs the
# job's `srun`: without this link srun inside jobs fails with "Could not
# establish a configuration source".
RUN_CONF_LINK=/run/slurm/conf

T0=$(date +%s.%N)
log()  { printf '[cluster.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { local rc=$1; shift; log "ERROR: $*"; exit "$rc"; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

usage() {   # the header comment above
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# Re-run as root via passwordless sudo (CI runners) for commands that need it.
need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die 1 "must run as root (no sudo available)"
        exec sudo -n env \
            UMR_SLURM_DIR="$STATE_DIR" UMR_SLURM_PARTITION="$PARTITION" \
            UMR_SLURM_CTLD_PORT="$CTLD_PORT" UMR_SLURM_SLURMD_PORT="$SLURMD_PORT" \
            UMR_SLURM_TIMEOUT="$TIMEOUT" UMR_SLURM_GPUS="$GPUS" UMR_SLURM_KEEP_STATE="${UMR_SLURM_KEEP_STATE:-}" \
            PATH="$PATH" bash "${BASH_SOURCE[0]}" "$@"
    fi
}

# Daemons live in /usr/sbin, which a normal user's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

ensure_installed() {
    local missing=()
    for b in munged mungekey slurmctld slurmd sinfo sbatch squeue scancel scontrol; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "missing ${missing[*]}; installing slurmctld slurmd slurm-client munge with apt-get"
    local t
    t=$(date +%s)
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge
    } >"/tmp/umr-slurm-apt.log" 2>&1 || {
        tail -n 30 /tmp/umr-slurm-apt.log >&2
        die 3 "apt-get install failed (full log: /tmp/umr-slurm-apt.log)"
    }
    log "installed in $(( $(date +%s) - t )) s"
    for b in munged mungekey slurmctld slurmd sinfo; do
        command -v "$b" >/dev/null 2>&1 || die 3 "$b still missing after apt-get install"
    done
}

# pid_alive NAME PID: true if PID runs the program NAME (guards against PID reuse).
# Zombies count as dead (PID 1 in a container may reap them late).
pid_alive() {
    local name=$1 pid=$2
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)" != Z ]
}

recorded_pid() { if [ -f "$PIDS_FILE" ]; then awk -v n="$1" '$1==n{print $2}' "$PIDS_FILE"; fi; }

node_state() {
    SLURM_CONF="$CONF" timeout 10 sinfo -h -N -n localhost -o '%t' 2>/dev/null | head -n1 || true
}

is_running() {
    [ -f "$PIDS_FILE" ] || return 1
    local n
    for n in munged slurmctld slurmd; do
        pid_alive "$n" "$(recorded_pid "$n")" || return 1
    done
    case "$(node_state)" in idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;; esac
    return 1
}

log_tails() {
    local f
    for f in "$STATE_DIR"/log/*.log; do
        [ -f "$f" ] || continue
        printf '\n----- tail %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "timed out after ${secs} s waiting for $what"
            log_tails
            return 1
        fi
        sleep 0.2
    done
}

# pidfile_ready FILE NAME: the daemon wrote FILE and runs; also true (with
# DEAD=NAME) once FILE names a dead process, so start-up fails fast.
pidfile_ready() {
    [ -s "$1" ] || return 1
    pid_alive "$2" "$(cat "$1")" && return 0
    sleep 0.3   # the PID may be that of the forking parent for a moment
    pid_alive "$2" "$(cat "$1")" && return 0
    DEAD="$2"
}

# wait_daemon NAME PIDFILE: wait for the daemon just launched and record its PID.
wait_daemon() {
    local name=$1 pidfile=$2
    DEAD=""
    wait_for 15 "$name" pidfile_ready "$pidfile" "$name" || die 4 "$name did not start"
    if [ -n "$DEAD" ]; then
        log_tails
        die 4 "$name exited right after start (see its log above)"
    fi
    echo "$name $(cat "$pidfile")" >>"$PIDS_FILE"
}

render_config() {
    # Hardware as slurmd itself detects it; RealMemory must not exceed what
    # slurmd reports or slurmctld drains the node ("Low RealMemory").
    local hw
    hw="$(slurmd -C | head -n1)"
    get() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    local cpus boards sockets cores threads mem
    cpus=$(get CPUs); boards=$(get Boards); sockets=$(get SocketsPerBoard)
    cores=$(get CoresPerSocket); threads=$(get ThreadsPerCore); mem=$(get RealMemory)
    if [ -z "$cpus" ] || [ -z "$mem" ]; then die 1 "cannot parse 'slurmd -C': $hw"; fi
    case "$GPUS" in 1|2|3|4) ;; *) die 1 "UMR_SLURM_GPUS=$GPUS: give 1 to 4 fake GPUs" ;; esac
    local files
    files=$(IFS=,; echo "${GPU_FILES[*]:0:$GPUS}")
    log "node: CPUs=$cpus RealMemory=${mem}MB (from slurmd -C), $GPUS fake GPU(s), partition '$PARTITION'"
    sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@PARTITION@|$PARTITION|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@CPUS@|$cpus|g" -e "s|@BOARDS@|${boards:-1}|g" -e "s|@SOCKETS@|${sockets:-1}|g" \
        -e "s|@CORES@|${cores:-$cpus}|g" -e "s|@THREADS@|${threads:-1}|g" \
        -e "s|@REALMEM@|$mem|g" -e "s|@GPUS@|$GPUS|g" \
        "$SCRIPT_DIR/slurm.conf.in" >"$CONF"
    # read from slurm.conf's dir
    sed -e "s|@GPUS@|$GPUS|g" -e "s|@GPU_FILES@|$files|g" "$SCRIPT_DIR/gres.conf.in" >"$STATE_DIR/gres.conf"
    chmod 644 "$CONF" "$STATE_DIR/gres.conf"
}

start_munged() {
    local d="$STATE_DIR/munge"
    mkdir -p "$d"; chown munge:munge "$d"; chmod 755 "$d"   # clients need to reach the socket
    install -o munge -g munge -m 640 /dev/null "$STATE_DIR/log/munged.log"
    runuser -u munge -- mungekey --create --keyfile="$d/munge.key" >/dev/null 2>&1 ||
        die 4 "mungekey failed"
    # 9>&-: daemons must not inherit the lock (see take_lock) or they hold it forever
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$d/munge.key" \
        --pid-file="$d/munged.pid" --seed-file="$d/munged.seed" \
        --log-file="$STATE_DIR/log/munged.log" 9>&- ||
        { log_tails; die 4 "munged failed to start"; }
    wait_daemon munged "$d/munged.pid"
    munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
        die 4 "munge round trip failed on $MUNGE_SOCKET"
}

link_run_conf() {
    if [ -e /etc/slurm/slurm.conf ]; then
        log "WARNING: /etc/slurm/slurm.conf exists; srun inside jobs will read it instead of $CONF"
    elif [ -L "$RUN_CONF_LINK" ] && [ "$(readlink "$RUN_CONF_LINK")" = "$STATE_DIR" ]; then
        :
    elif [ -e "$RUN_CONF_LINK" ] || [ -L "$RUN_CONF_LINK" ]; then
        log "WARNING: $RUN_CONF_LINK exists and is not ours; srun inside jobs may not find $CONF"
    else
        mkdir -p "$(dirname "$RUN_CONF_LINK")"
        ln -s "$STATE_DIR" "$RUN_CONF_LINK"
    fi
}

unlink_run_conf() {
    if [ -L "$RUN_CONF_LINK" ] && [ "$(readlink "$RUN_CONF_LINK")" = "$STATE_DIR" ]; then
        rm -f "$RUN_CONF_LINK"
        rmdir "$(dirname "$RUN_CONF_LINK")" 2>/dev/null || true
    fi
}

# If start fails half-way, stop the daemons it started but keep $STATE_DIR (logs).
on_start_exit() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ] && [ -f "$PIDS_FILE" ]; then
        log "start failed (exit $rc); stopping the daemons it started, keeping $STATE_DIR for the logs"
        ( UMR_SLURM_KEEP_STATE=1 do_stop ) || true
    fi
    exit "$rc"
}

do_start() {
    ensure_installed
    if is_running; then
        log "already running ($(tr '\n' ' ' <"$PIDS_FILE")); state in $STATE_DIR"
        return 0
    fi
    if [ -f "$PIDS_FILE" ]; then
        log "found a stale or half-started cluster in $STATE_DIR; stopping it first"
        do_stop
    fi
    if [ -e "$STATE_DIR" ] && [ ! -f "$MARKER" ]; then
        die 1 "$STATE_DIR exists but was not made by cluster.sh; refusing to wipe it (set UMR_SLURM_DIR)"
    fi
    rm -rf "$STATE_DIR"
    trap on_start_exit EXIT
    mkdir -p "$STATE_DIR"/{ctld,spool,log}
    chmod 755 "$STATE_DIR" "$STATE_DIR/log"
    touch "$MARKER" "$PIDS_FILE"
    render_config
    export SLURM_CONF="$CONF"
    link_run_conf

    start_munged
    slurmctld -f "$CONF" 9>&- || { log_tails; die 4 "slurmctld failed to start"; }
    wait_daemon slurmctld "$STATE_DIR/slurmctld.pid"
    slurmd -N localhost -f "$CONF" 9>&- || { log_tails; die 4 "slurmd failed to start"; }
    wait_daemon slurmd "$STATE_DIR/slurmd.pid"

    # idle, or give up at once when a daemon has died (e.g. a fatal config error)
    node_idle_or_dead() {
        local n
        for n in munged slurmctld slurmd; do
            pid_alive "$n" "$(recorded_pid "$n")" || { DEAD="$n"; return 0; }
        done
        [ "$(node_state)" = "idle" ]
    }
    DEAD=""
    wait_for "$TIMEOUT" "node 'localhost' to become idle" node_idle_or_dead ||
        { SLURM_CONF="$CONF" sinfo -N -l >&2 || true; die 4 "node not idle after ${TIMEOUT} s"; }
    if [ -n "$DEAD" ]; then
        log_tails
        die 4 "$DEAD died during start-up (see its log above)"
    fi
    trap - EXIT
    log "cluster up in $(elapsed) s: $(tr '\n' ' ' <"$PIDS_FILE")"
    log "use it with: eval \"\$($0 env)\""
}

do_stop() {
    if [ ! -d "$STATE_DIR" ]; then
        log "not running (no $STATE_DIR)"
        return 0
    fi
    [ -f "$MARKER" ] || die 1 "$STATE_DIR was not made by cluster.sh; not touching it"
    export SLURM_CONF="$CONF"
    # Cancel leftover jobs first so slurmd reaps their slurmstepd processes.
    if pid_alive slurmctld "$(recorded_pid slurmctld)"; then
        local jobs
        jobs="$(timeout 10 squeue -h -o '%i' -t PD,R,CG,S 2>/dev/null | tr '\n' ' ' || true)"
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs || true
            no_jobs() { [ -z "$(timeout 5 squeue -h -o '%i' -t PD,R,CG,S 2>/dev/null)" ]; }
            wait_for 20 "jobs to end" no_jobs || log "some jobs did not end"
        fi
    fi
    local n pid failed=0
    for n in slurmd slurmctld munged; do
        pid="$(recorded_pid "$n")"
        if pid_alive "$n" "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for n in slurmd slurmctld munged; do
        pid="$(recorded_pid "$n")"
        [ -n "$pid" ] || continue
        gone() { ! pid_alive "$n" "$pid"; }
        if ! wait_for 15 "$n ($pid) to exit" gone; then
            log "$n ($pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_for 5 "$n ($pid) to die" gone || failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die 5 "some daemons could not be stopped; state kept in $STATE_DIR"
    # slurmstepd of a job that slurmd could not reap would be left behind: report it.
    local left
    left="$(for p in /proc/[0-9]*; do
        if pid_alive slurmstepd "${p#/proc/}"; then echo "${p#/proc/}"; fi
        done | tr '\n' ' ')"
    [ -z "${left// /}" ] || log "WARNING: slurmstepd processes still running: $left"
    unlink_run_conf
    if [ "${UMR_SLURM_KEEP_STATE:-}" = 1 ]; then
        rm -f "$PIDS_FILE"
        log "stopped in $(elapsed) s; state kept in $STATE_DIR"
    else
        rm -rf "$STATE_DIR"
        log "stopped in $(elapsed) s; removed $STATE_DIR"
    fi
}

# One start/stop at a time (the lock file sits beside the state dir, which is wiped).
take_lock() {
    exec 9>"$STATE_DIR.lock"
    flock -w 60 9 || die 1 "another cluster.sh start/stop holds $STATE_DIR.lock"
}

cmd="${1:-}"
case "$cmd" in
    start)  need_root "$@"; take_lock; do_start ;;
    stop)   need_root "$@"; take_lock; do_stop ;;
    status)
        if is_running; then
            echo "running: $(tr '\n' ' ' <"$PIDS_FILE")node localhost $(node_state); SLURM_CONF=$CONF"
        else
            echo "not running"; exit 3
        fi ;;
    env)    echo "export SLURM_CONF=$CONF" ;;
    logs)   log_tails ;;
    -h|--help|help) usage ;;
    *)      usage ;;
esac
