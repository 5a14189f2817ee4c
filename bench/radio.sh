#!/usr/bin/env bash
# radio: many listeners of one live 128 kbit/s MP3 mount, load from bench/radio_load.py (one
# asyncio process pinned to the load cores) against both servers, one after the other in the
# same run:
#   ours: the radio role of `hostrole-agent run --config` (JSON AgentConfig, radio only, one
#         live mount /live; maxListeners and http.maxConnectionsPerIp raised to fit LISTENERS
#         from 127.0.0.1);
#   peer: Icecast 2 from Debian (its own XML config in the temp dir, `icecast2 -c`, as
#         agent/radio/tests/listeners.rs starts it; <clients> raised to fit LISTENERS, queue and
#         burst sizes Icecast's defaults; run as root it changes owner to nobody/nogroup).
# Both pinned to the server cores, one tokio worker for ours. Each is fed the same way: ffmpeg
# (on the load cores) loops a generated 128 kbit/s, 44.1 kHz stereo sine MP3 in real time
# (`-re -stream_loop -1 -c copy`) into /live over Icecast's source protocol.
# LISTENERS listeners (default 1000; quick 50) `GET /live` and hold it for DURATION seconds
# (30; quick 8) after the last one's first second (its burst).
# Figures (same run, same cores):
#   listeners held at bitrate (%)  listeners whose rate over the window is >= 95 % of 128 kbit/s;
#   server CPU ms per listener-minute  run time of the server's threads (schedstat) over the
#                 window, per listener connected at its start and minute.
# Aggregate Mbit/s, connect failures and dropped listeners are printed; failures, drops and a
# load generator above 90 % of a core are also written into the figure's name.
set -euo pipefail
export BENCH_NAME=radio
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LISTENERS=${LISTENERS:-$(quick 50 1000)}
DURATION=${DURATION:-$(quick 8 30)}
KBPS=128
PASSWORD=bench-source-pw
LOAD=$BENCH_DIR/radio_load.py
# Debian's interpreter: stdlib only, but the same Python whatever pyenv puts first on PATH.
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}

# fds: the generator holds LISTENERS sockets, each server as many; raise the soft limit
# (children inherit it) or stop before anything starts.
need_fds() {
  local want=$((LISTENERS + 256)) hard
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited ]] && ((hard < want)); then
    die "ulimit -Hn is $hard, LISTENERS=$LISTENERS needs $want file descriptors"
  fi
  (($(ulimit -Sn) >= want)) || ulimit -Sn "$want"
}

# sine: 60 s of a 440 Hz sine as 128 kbit/s CBR MP3, 44.1 kHz stereo, in the temp dir.
sine() {
  ffmpeg -v error -nostdin -y -f lavfi -i "sine=frequency=440:duration=60" \
    -ac 2 -ar 44100 -c:a libmp3lame -b:a ${KBPS}k "$BENCH_TMP/sine.mp3" ||
    die "ffmpeg could not generate the sine MP3"
}

# start_ours PORT: the agent with a radio role only; sets SERVER_PID.
start_ours() {
  local port=$1 admin
  admin=$(free_port)
  printf '%s\n' "$PASSWORD" >"$BENCH_TMP/source-password"
  cat >"$BENCH_TMP/agent.json" <<JSON
{"hostRole":"bench-radio","bind":"127.0.0.1","adminPort":$admin,"shutdownGraceSeconds":2,
 "http":{"maxConnectionsPerIp":$((LISTENERS + 64))},
 "radio":{"station":"Bench","port":$port,"maxListeners":$((LISTENERS + 16)),
          "sourcePasswordFile":"$BENCH_TMP/source-password",
          "mounts":[{"path":"/live","live":true}]}}
JSON
  TOKIO_WORKER_THREADS=${BENCH_WORKERS:-1} taskset -c "$SERVER_CPUS" \
    "$AGENT" run --config "$BENCH_TMP/agent.json" >"$BENCH_TMP/agent.log" 2>&1 &
  SERVER_PID=$!
  track "$SERVER_PID"
  if ! wait_http "http://127.0.0.1:$admin/readyz" 30 "$SERVER_PID" || ! wait_port "$port" 20; then
    tail -n 30 "$BENCH_TMP/agent.log" >&2
    die "agent not ready (log above)"
  fi
  SERVER_LOG=$BENCH_TMP/agent.log
}

# start_icecast PORT: Icecast 2 in the foreground with its own config; sets SERVER_PID. Run as
# root it changes owner to nobody/nogroup after binding (same pid: no -b), so its log dir must
# be writable by them.
start_icecast() {
  local port=$1 d=$BENCH_TMP/icecast owner=""
  mkdir -p "$d/log"
  chmod 777 "$d/log"
  if [[ $(id -u) == 0 ]]; then
    owner="<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
  fi
  cat >"$d/icecast.xml" <<XML
<icecast>
  <location>bench</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>$((LISTENERS + 16))</clients>
    <sources>2</sources>
  </limits>
  <authentication>
    <source-password>$PASSWORD</source-password>
    <relay-password>relay-$PASSWORD</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>admin-$PASSWORD</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>$port</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>$d/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><errorlog>error.log</errorlog><accesslog>access.log</accesslog><loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>$owner</security>
</icecast>
XML
  chmod 644 "$d/icecast.xml"
  taskset -c "$SERVER_CPUS" icecast2 -c "$d/icecast.xml" >"$d/stdout.log" 2>&1 &
  SERVER_PID=$!
  track "$SERVER_PID"
  SERVER_LOG=$d/log/error.log
  wait_port "$port" 20 || {
    cat "$d/stdout.log" "$SERVER_LOG" >&2 2>/dev/null || true
    die "icecast2 not listening on $port"
  }
}

# feed PORT: ffmpeg sends the sine to /live in real time, looping; sets SOURCE_PID; waits until
# a listener gets 200 on /live.
feed() {
  local port=$1 i code
  taskset -c "$LOAD_CPUS" ffmpeg -v error -nostdin -re -stream_loop -1 -i "$BENCH_TMP/sine.mp3" \
    -c copy -content_type audio/mpeg -f mp3 \
    "icecast://source:$PASSWORD@127.0.0.1:$port/live" >"$BENCH_TMP/ffmpeg-$port.log" 2>&1 &
  SOURCE_PID=$!
  track "$SOURCE_PID"
  for ((i = 0; i < 300; i++)); do
    # A stream never ends: curl stops after 0.5 s (exit 28), the status is what counts.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "http://127.0.0.1:$port/live" || true)
    [[ $code == 200 ]] && return 0
    running "$SOURCE_PID" || break
    sleep 0.1
  done
  cat "$BENCH_TMP/ffmpeg-$port.log" >&2 || true
  tail -n 20 "$SERVER_LOG" >&2 2>/dev/null || true
  die "the source did not come on air on port $port (ffmpeg and server logs above)"
}

# load NAME PORT: runs radio_load.py against the mount; sets HELD, CPU_MS and NOTE (connect
# failures, drops, load generator saturated).
load() {
  local name=$1 port=$2 out pair
  out=$(taskset -c "$LOAD_CPUS" timeout $((DURATION + 300)) \
    "$PYTHON" "$LOAD" 127.0.0.1 "$port" /live "$LISTENERS" "$DURATION" "$KBPS" "$SERVER_PID") ||
    die "radio_load.py failed against $name (port $port)"
  log "$name: $out"
  local -A kv=()
  for pair in $out; do kv[${pair%%=*}]=${pair#*=}; done
  HELD=${kv[held_pct]} CPU_MS=${kv[server_cpu_ms]} MBPS=${kv[mbps]}
  NOTE=""
  ((kv[failed] > 0)) && NOTE+="${kv[failed]} connect failures; "
  ((kv[dropped] > 0)) && NOTE+="${kv[dropped]} dropped; "
  ((kv[load_cpu] >= 90)) && NOTE+="load generator at ${kv[load_cpu]}% CPU; "
  if [[ -n $NOTE ]]; then log "$name: ${NOTE%; }"; fi
  running "$SERVER_PID" || { tail -n 20 "$SERVER_LOG" >&2 2>/dev/null || true; die "$name exited during the load"; }
  running "$SOURCE_PID" || { cat "$BENCH_TMP/ffmpeg-$port.log" >&2 || true; die "the source of $name exited during the load"; }
  return 0
}

# measure NAME: feeds the server just started (SERVER_PID on PORT), loads it, stops both.
measure() {
  local name=$1 port=$2
  feed "$port"
  load "$name" "$port"
  stop_pid "$SOURCE_PID"
  stop_pid "$SERVER_PID"
}

main() {
  local ours_port ice_port cmd o_held o_cpu o_mbps o_note fig version
  need_pkgs icecast2 ffmpeg
  [[ -x $PYTHON ]] || need_pkgs python3
  need_fds
  bins
  tmpdir
  sine
  port ours_port
  port ice_port
  start_ours "$ours_port"
  measure ours "$ours_port"
  o_held=$HELD o_cpu=$CPU_MS o_mbps=$MBPS o_note=$NOTE
  start_icecast "$ice_port"
  measure icecast "$ice_port"
  log "aggregate delivered: ours $o_mbps Mbit/s, icecast $MBPS Mbit/s (offered: $(awk -v l="$LISTENERS" -v k="$KBPS" 'BEGIN { printf "%.2f", l * k / 1000 }') Mbit/s)"
  version=$(dpkg-query -W -f='${Version}' icecast2 2>/dev/null | sed 's/-.*//')
  cmd="radio_load.py: $LISTENERS listeners of /live (ffmpeg -re, ${KBPS} kbit/s MP3), ${DURATION}s after the burst; Icecast ${version:-2} (Debian)"
  fig="$LISTENERS listeners"
  if [[ -n $o_note$NOTE ]]; then
    o_note=${o_note%; } NOTE=${NOTE%; }
    fig="$fig; ours: ${o_note:-ok}; icecast: ${NOTE:-ok}"
  fi
  row "listeners held at bitrate (%), $fig" "$cmd; held: >= 95% of ${KBPS} kbit/s" "$o_held" "$HELD" ">1"
  row "server CPU ms per listener-minute, $LISTENERS listeners" "$cmd; /proc/PID/task/*/schedstat run time" "$o_cpu" "$CPU_MS" "<1"
}

main "$@"
