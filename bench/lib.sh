#!/usr/bin/env bash
# Shared helpers of the benchmarks (sourced by bench/*.sh, never run).
# Nothing here measures anything by itself: it installs peers, pins processes to cores, starts
# and stops what a benchmark runs, and appends rows to bench/results.md.
# shellcheck disable=SC2034 # variables here are used by the scripts that source this file

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results.md}
QUICK=${BENCH_QUICK:-0}

# Cores: servers on one set, load generators on another (with 2 cores: 0 and 1).
NCPU=$(nproc)
if ((NCPU >= 2)); then
  SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
  LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
else
  SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
  LOAD_CPUS=${BENCH_LOAD_CPUS:-0}
fi
ALL_CPUS="0-$((NCPU - 1))"

log() { printf '[bench %s] %s\n' "${BENCH_NAME:-}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# quick Q FULL: Q under BENCH_QUICK=1, FULL otherwise.
quick() { if [[ $QUICK == 1 ]]; then echo "$1"; else echo "$2"; fi; }

# ---------------------------------------------------------------- packages
# need_pkgs PKG...: apt-get install the Debian packages that are missing (non-interactive).
need_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  # Postfix asks what to configure: nothing (the mail benchmark writes its own main.cf).
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
  # Debian starts services from postinst where it can; the benchmarks start their own copies.
  stop_service_copies
}

# stop_service_copies: the package's own nginx/postfix, if its postinst started one (by pid file).
stop_service_copies() {
  local f pid
  for f in /run/nginx.pid /var/spool/postfix/pid/master.pid; do
    [[ -f $f ]] || continue
    pid=$(tr -d ' \n' <"$f")
    if [[ $pid =~ ^[0-9]+$ ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
}

# ---------------------------------------------------------------- our binaries
# bins: sets AGENT and OPERATOR; builds them (release) unless BENCH_BIN_DIR names a directory
# that already holds them.
bins() {
  local dir=${BENCH_BIN_DIR:-}
  if [[ -z $dir ]]; then
    log "cargo build --release -p hostrole-agent -p hostrole-operator"
    (cd "$REPO" && cargo build --release -q -p hostrole-agent -p hostrole-operator) >&2
    dir=$REPO/target/release
  fi
  AGENT=$dir/hostrole-agent
  OPERATOR=$dir/hostrole-operator
  [[ -x $AGENT && -x $OPERATOR ]] || die "no hostrole-agent/hostrole-operator in $dir"
}

# ---------------------------------------------------------------- cleanup
# Everything a benchmark starts is registered here and stopped by the EXIT trap, by pid.
BENCH_PIDS=()
BENCH_CLEANUPS=()
BENCH_TMP=""

# tmpdir: a fresh temp dir for this benchmark (BENCH_TMP), removed at exit. Big files go here,
# on disk (not tmpfs) unless BENCH_TMPDIR says otherwise.
tmpdir() {
  BENCH_TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/hostrole-bench-${BENCH_NAME:-x}.XXXXXX")
  chmod 755 "$BENCH_TMP" # nginx's workers (www-data) read the sites in it
}

# on_exit_do CMD...: run CMD at exit (before the registered pids are stopped).
on_exit_do() { BENCH_CLEANUPS+=("$*"); }

# track PID: stop PID at exit.
track() { BENCH_PIDS+=("$1"); }

# running PID: the process exists and has not exited (an exited child stays a zombie until it
# is waited for, and `kill -0` still reaches a zombie).
running() {
  [[ -e /proc/$1 && $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]
}

# stop_pid PID: TERM, up to 10 s, then KILL. Only if it still runs.
stop_pid() {
  local pid=$1 i
  running "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    running "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_all PID...: TERM to all at once, then each as stop_pid does (a hundred agents each in
# their graceful stop would otherwise take minutes one after another).
stop_all() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do stop_pid "$pid"; done
}

bench_cleanup() {
  local c
  trap - EXIT INT TERM
  for c in "${BENCH_CLEANUPS[@]}"; do eval "$c" >&2 || true; done
  stop_all "${BENCH_PIDS[@]}"
  if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then rm -rf "$BENCH_TMP"; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- ports, waits
# free_port: a TCP port in 20000-32767 nothing listens on (and not handed out before).
declare -A BENCH_PORTS_USED=()
free_port() {
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 12768))
    [[ -n ${BENCH_PORTS_USED[$p]:-} ]] && continue
    ss -Hltn "sport = :$p" | grep -q . && continue
    BENCH_PORTS_USED[$p]=1
    echo "$p"
    return 0
  done
  die "no free port"
}

# port VAR: a free port into VAR, marked as taken in this shell (free_port in a $(…) subshell
# cannot mark it, and agents started one after another would then collide).
port() {
  local -n out=$1
  # shellcheck disable=SC2034 # a nameref: this sets the caller's variable
  out=$(free_port)
  BENCH_PORTS_USED[$out]=1
}

# wait_http URL SECONDS [PID]: until URL answers 2xx (fails if PID exits meanwhile).
wait_http() {
  local url=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 20; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.05
  done
  return 1
}

# wait_port PORT SECONDS: until something listens on 127.0.0.1:PORT.
wait_port() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

now_ns() { date +%s%N; }
# secs_since T0_NS: seconds (3 decimals) since T0_NS.
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# ratio A B: A/B with 3 decimals, "n/a" if either is missing or B is 0.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "" || b == "" || a !~ /^[0-9.eE+-]+$/ || b !~ /^[0-9.eE+-]+$/ || b + 0 == 0) print "n/a";
    else printf "%.3f", a / b }'
}

# to_ms: wrk's "812.00us" / "1.23ms" / "2.00s" as milliseconds.
to_ms() {
  awk '{ v = $1 + 0; if ($1 ~ /us$/) v /= 1000; else if ($1 ~ /ms$/) v += 0;
         else if ($1 ~ /m$/) v *= 60000; else if ($1 ~ /s$/) v *= 1000; printf "%.3f", v }'
}

# ---------------------------------------------------------------- processes
# proc_status PID FIELD: a field of /proc/PID/status in KiB (VmRSS, VmHWM).
proc_status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_seconds PID: user+system CPU time of PID (and its waited-for children) in seconds.
cpu_seconds() {
  local tck
  tck=$(getconf CLK_TCK)
  # Fields after the ")" of the command name: utime is 14th, stime 15th of the whole line.
  sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$tck" '{ printf "%.2f", ($12 + $13) / t }'
}

# ---------------------------------------------------------------- results
machine() {
  local mem cpu
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  printf '%s cpu, %s, %s' "$NCPU" "$mem" "${cpu:-unknown cpu}"
}

results_header() {
  [[ -s $RESULTS ]] && return 0
  cat >"$RESULTS" <<'HDR'
# Benchmark results

Appended by `bench/run.sh` (`make bench`); one row per figure. Not tests: nothing here is
asserted. Columns:

- **date**: UTC time of the run. **machine**: `nproc` cpus, memory (MemTotal), CPU model.
- **benchmark / figure**: which benchmark and what was measured (unit in the name).
- **command**: the load command (or what was timed); ports are the run's random ones.
- **ours**: hostrole's figure. **peer**: the tool people use instead (nginx, Postfix, aria2 …)
  or the floor, measured in the same run on the same cores.
- **ratio**: ours / peer. **better**: which direction of the ratio is better for us
  (`>1` when higher figures are better, e.g. req/s; `<1` when lower is better, e.g. seconds).
- `quick` in the figure marks a `BENCH_QUICK=1` smoke run (small loads; not comparable).

| date | machine | benchmark | figure | command | ours | peer | ratio | better |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
HDR
}

# row FIGURE COMMAND OURS PEER BETTER(">1"|"<1"|"-"): prints the figure and appends a row.
row() {
  local fig=$1 cmd=$2 ours=$3 peer=$4 better=$5 r
  [[ $QUICK == 1 ]] && fig="$fig (quick)"
  [[ -n ${BENCH_NOTE:-} ]] && fig="$fig ($BENCH_NOTE)"
  r=$(ratio "$ours" "$peer")
  printf '%-8s %-48s ours=%-12s peer=%-12s ratio=%s (%s better)\n' \
    "${BENCH_NAME:-}" "$fig" "$ours" "$peer" "$r" "$better"
  results_header
  cmd=${cmd//|/\\|}
  # shellcheck disable=SC2016 # the backquotes are Markdown
  printf '| %s | %s | %s | %s | `%s` | %s | %s | %s | %s |\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(machine)" "${BENCH_NAME:-}" "$fig" "$cmd" \
    "$ours" "$peer" "$r" "$better" >>"$RESULTS"
}

# start_agent_up MANIFEST ADMIN_PORT DATA_DIR CPUS LOG: runs `hostrole-agent up` pinned to CPUS
# with one tokio worker thread (nginx's worker_processes 1); sets AGENT_PID; waits for /readyz.
start_agent_up() {
  local manifest=$1 port=$2 data=$3 cpus=$4 logf=$5
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$cpus" \
    "$AGENT" up "$manifest" --admin-port "$port" --data-dir "$data" >"$logf" 2>&1 &
  AGENT_PID=$!
  track "$AGENT_PID"
  wait_http "http://127.0.0.1:$port/readyz" 30 "$AGENT_PID" ||
    { tail -n 30 "$logf" >&2; die "agent not ready (log above)"; }
}

# ---------------------------------------------------------------- mail manifests
# bench_users_secret: a manifest document, the Secret `bench-users` with the user u (password
# `bench`).
bench_users_secret() {
  local hash
  hash=$(echo -n bench | "$AGENT" hash-password)
  printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: bench-users, labels: {hostrole.dev/use: "true"}}\nstringData:\n  users: |\n    u:%s\n' "$hash"
}

# mail_host NAME DOMAIN SMTP SUBMISSION IMAP [FIELD...]: a manifest document, the HostRole NAME
# with a mail role for DOMAIN whose users are bench-users; a port given as 0 is a free one; each
# FIELD (e.g. "allowPlaintextAuth: true") is one more line under `mail:`.
mail_host() {
  local name=$1 domain=$2 smtp=$3 submission=$4 imap=$5 field
  shift 5
  ((smtp)) || smtp=$(free_port)
  ((submission)) || submission=$(free_port)
  ((imap)) || imap=$(free_port)
  printf 'apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: %s}\nspec:\n  servers:\n    mail:\n' "$name"
  printf '      %s\n' "smtpPort: $smtp" "submissionPort: $submission" "imapPort: $imap" \
    "pop3Port: $(free_port)" "domains: [$domain]" "users: {secret: bench-users}"
  for field in "$@"; do printf '      %s\n' "$field"; done
}
