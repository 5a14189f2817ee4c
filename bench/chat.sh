#!/usr/bin/env bash
# chat: IRC fan-out in one channel, load from bench/chat_load.py (one asyncio process pinned to
# the load cores) against both servers, one after the other in the same run:
#   ours: the chat role of `hostrole-agent run --config` (JSON AgentConfig, chat only;
#         maxConnections and http.maxConnectionsPerIp raised to fit CLIENTS from 127.0.0.1);
#   peer: ngircd from Debian (its own config in the temp dir, `ngircd -n -f`, as chat_clients.rs
#         starts it; MaxConnectionsIP = 0, MaxConnections = 0: no connection limits).
# Both pinned to the server cores, one tokio worker for ours (ngircd is single-threaded).
# CLIENTS clients (default 1000; quick 50) join one channel; SENDERS of them (50; quick 4) send
# RATE lines/s each (default 1.5/s: under our flood control, 20 lines burst then 2 lines/s per
# connection, and under ngircd's command throttling) for DURATION seconds (20; quick 5); every
# line reaches the CLIENTS-1 other members (no echo-message), so the offered load is
# SENDERS*RATE*(CLIENTS-1) deliveries/s (75 000 by default).
# Figures (same run, same cores):
#   deliveries/s  PRIVMSG lines received by all clients / (last delivery - first send): the
#                 offered load when the server keeps up (SENDERS*RATE*(CLIENTS-1)), less if not;
#   latency p50/p99 ms  send time in the line's text to its arrival, at PROBES receivers;
#   server CPU us per 1000 deliveries  run time of the server's threads (schedstat) over the
#                 same window.
# A run where a server lost lines or connections says so on stderr (and in the figure).
set -euo pipefail
export BENCH_NAME=chat
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=${CLIENTS:-$(quick 50 1000)}
SENDERS=${SENDERS:-$(quick 4 50)}
RATE=${RATE:-1.5}
DURATION=${DURATION:-$(quick 5 20)}
PROBES=${PROBES:-20}
SIZE=${SIZE:-64}
LOAD=$BENCH_DIR/chat_load.py
# Debian's interpreter: stdlib only, but the same Python whatever pyenv puts first on PATH.
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}

# fds: the generator holds CLIENTS sockets, each server as many; raise the soft limit (children
# inherit it) or stop before anything starts.
need_fds() {
  local want=$((CLIENTS + 256)) hard
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited ]] && ((hard < want)); then
    die "ulimit -Hn is $hard, CLIENTS=$CLIENTS needs $want file descriptors"
  fi
  (($(ulimit -Sn) >= want)) || ulimit -Sn "$want"
}

# start_ours PORT: the agent with a chat role only; sets OURS_PID.
start_ours() {
  local port=$1 admin
  admin=$(free_port)
  cat >"$BENCH_TMP/agent.json" <<JSON
{"hostRole":"bench-chat","bind":"127.0.0.1","adminPort":$admin,"shutdownGraceSeconds":2,
 "http":{"maxConnectionsPerIp":$((CLIENTS + 64))},
 "chat":{"serverName":"irc.bench.lan","network":"BenchNet","port":$port,
         "maxConnections":$((CLIENTS + 64)),"maxChannels":16,"maxChannelsPerClient":8,
         "nickLength":30}}
JSON
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$SERVER_CPUS" \
    "$AGENT" run --config "$BENCH_TMP/agent.json" >"$BENCH_TMP/agent.log" 2>&1 &
  OURS_PID=$!
  track "$OURS_PID"
  if ! wait_http "http://127.0.0.1:$admin/readyz" 30 "$OURS_PID" || ! wait_port "$port" 20; then
    tail -n 30 "$BENCH_TMP/agent.log" >&2
    die "agent not ready (log above)"
  fi
}

# start_ngircd PORT: ngircd in the foreground with its own config; sets NGIRCD_PID. Run as root
# it drops to nobody after reading the config (same pid: -n does not fork).
start_ngircd() {
  local port=$1 d=$BENCH_TMP/ngircd
  mkdir -p "$d"
  cat >"$d/ngircd.conf" <<CONF
[Global]
	Name = irc.ngircd.bench
	Info = bench peer
	Network = BenchNet
	Listen = 127.0.0.1
	Ports = $port
	MotdPhrase = bench
	AdminInfo1 = bench
	AdminInfo2 = bench
	AdminEMail = bench@localhost
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 10
	MaxNickLength = 30
	PingTimeout = 120
	PongTimeout = 20
[Options]
	DNS = no
	Ident = no
	PAM = no
CONF
  taskset -c "$SERVER_CPUS" ngircd -n -f "$d/ngircd.conf" >"$d/ngircd.log" 2>&1 &
  NGIRCD_PID=$!
  track "$NGIRCD_PID"
  wait_port "$port" 20 || { cat "$d/ngircd.log" >&2 || true; die "ngircd not listening on $port"; }
}

# load PORT PID: runs chat_load.py; sets RATE_OUT, P50, P99, CPU_US and NOTE (lost lines or
# connections, load generator saturated).
load() {
  local out lost pair
  out=$(taskset -c "$LOAD_CPUS" timeout $((DURATION + 400)) \
    "$PYTHON" "$LOAD" 127.0.0.1 "$1" "$CLIENTS" "$SENDERS" "$RATE" "$DURATION" "$PROBES" "$SIZE" "$2") ||
    die "chat_load.py failed on port $1"
  log "port $1: $out"
  local -A kv=()
  for pair in $out; do kv[${pair%%=*}]=${pair#*=}; done
  RATE_OUT=${kv[rate]} P50=${kv[p50]} P99=${kv[p99]} CPU_US=${kv[server_cpu_us]}
  NOTE=""
  lost=$((kv[expected] - kv[delivered]))
  ((lost > 0)) && NOTE+="lost $lost of ${kv[expected]} deliveries; "
  ((kv[dropped] > 0)) && NOTE+="${kv[dropped]} connections closed; "
  ((kv[load_cpu] >= 90)) && NOTE+="load generator at ${kv[load_cpu]}% CPU; "
  if [[ -n $NOTE ]]; then log "port $1: ${NOTE%; }"; fi
  return 0
}

main() {
  local ours_port ng_port cmd o_rate o_p50 o_p99 o_cpu o_note fig
  need_pkgs ngircd
  [[ -x $PYTHON ]] || need_pkgs python3
  need_fds
  bins
  tmpdir
  port ours_port
  port ng_port
  start_ours "$ours_port"
  start_ngircd "$ng_port"
  load "$ours_port" "$OURS_PID"
  o_rate=$RATE_OUT o_p50=$P50 o_p99=$P99 o_cpu=$CPU_US o_note=$NOTE
  load "$ng_port" "$NGIRCD_PID"
  cmd="chat_load.py: $CLIENTS clients in one channel, $SENDERS senders x $RATE lines/s, ${DURATION}s, ${SIZE} B lines; ngircd 26 (Debian)"
  fig="$CLIENTS clients"
  if [[ -n $o_note$NOTE ]]; then
    o_note=${o_note%; } NOTE=${NOTE%; }
    fig="$fig; ours: ${o_note:-ok}; ngircd: ${NOTE:-ok}"
  fi
  row "fan-out deliveries/s, $fig" "$cmd" "$o_rate" "$RATE_OUT" ">1"
  row "delivery latency p50 ms, $CLIENTS clients" "$cmd; $PROBES probe receivers" "$o_p50" "$P50" "<1"
  row "delivery latency p99 ms, $CLIENTS clients" "$cmd; $PROBES probe receivers" "$o_p99" "$P99" "<1"
  row "server CPU us per 1000 deliveries, $CLIENTS clients" "$cmd; /proc/PID/task/*/schedstat run time" "$o_cpu" "$CPU_US" "<1"
}

main "$@"
