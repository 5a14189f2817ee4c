#!/usr/bin/env python3
"""Internet radio listeners for bench/radio.sh (stdlib only, one process, asyncio protocols).

    radio_load.py HOST PORT MOUNT LISTENERS DURATION [KBPS] [SERVER_PID]

LISTENERS connections `GET MOUNT HTTP/1.0` (at most 64 connects and response heads in flight),
read the stream and discard it, counting its bytes. A listener whose answer is not `200`, or
whose connection fails or is closed before the window, is a connect failure. Each listener's
first second is its burst (the ~64 KiB both Icecast and ours send at once): the window starts
one second after the last listener's first byte and lasts DURATION seconds; a ticker snapshots
every listener's byte count each second of it.

To keep the generator cheap, each socket waits for 1 KiB (SO_RCVLOWAT) before the event loop
hears of it (a stream at 128 kbit/s then wakes it ~16 times a second, whatever chunks the server
writes).

Prints one line of key=value:
  held_pct  listeners held at bitrate: the share of the LISTENERS whose rate over the window is
            at least 95 % of KBPS (a failed or dropped listener is not held), %
  held      how many that is
  mbps      bytes delivered to all listeners over the window, Mbit/s (LISTENERS * KBPS / 1000
            when every listener is held: expected_mbps)
  p1_kbps p50_kbps min_kbps   listeners' window rates (connected ones), kbit/s
  stall_s   listener-seconds of the window in which a listener received nothing
  failed    connect failures (refused, timed out, not 200, closed before the window)
  dropped   listeners the server closed during the window
  server_cpu_ms   the server's CPU ms per listener-minute: the run time of SERVER_PID's threads
                  (/proc/PID/task/*/schedstat) over the window / (listeners connected at its
                  start * window minutes); "n/a" without SERVER_PID
  server_stat_ms  the same from /proc/PID/stat utime+stime (ticks; counts exited threads too)
  load_cpu  this process's CPU use over the window, % of one core (near 100: this generator,
            not the server, sets the pace)
  setup_s   seconds from the first connect to the last listener's first byte
  window_s  the window's length, s
"""

import asyncio
import os
import resource
import socket
import sys
import time

CONNECTS = 64
CONNECT_TIMEOUT = 10.0
SETUP_TIMEOUT = 120.0
LOWAT = 1024
HELD = 0.95


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_sched(pid):
    """CPU seconds of pid: the sum of its threads' schedstat run time (ns)."""
    if not pid:
        return None
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return None


def cpu_stat(pid):
    """CPU seconds of pid from /proc/PID/stat (utime+stime, ticks; exited threads included)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Listener(asyncio.Protocol):
    __slots__ = ("request", "head", "n", "first", "closed", "failed", "transport", "ready", "why")

    def __init__(self, request):
        self.request = request
        self.head = b""  # response head until it is complete, then None
        self.n = 0  # body bytes
        self.first = None  # monotonic time of the first body byte
        self.closed = False
        self.failed = False
        self.transport = None
        self.ready = asyncio.get_running_loop().create_future()
        self.why = ""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def fail(self, why):
        self.failed = True
        self.why = why
        if not self.ready.done():
            self.ready.set_result(False)

    def connection_lost(self, exc):
        self.closed = True
        if not self.ready.done():
            self.fail(f"closed before the stream: {exc or self.head[:200]!r}")

    def data_received(self, data):
        if self.head is None:
            self.n += len(data)
            return
        buf = self.head + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 16384:
                self.fail(f"no response head in {len(buf)} bytes")
                self.transport.abort()
            else:
                self.head = buf
            return
        status = buf[: buf.find(b"\r\n")]
        parts = status.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"200":
            self.fail(status.decode(errors="replace"))
            self.transport.abort()
            return
        self.head = None
        self.n = len(buf) - end - 4
        self.first = time.monotonic()
        self.ready.set_result(True)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, LOWAT)
            except OSError:
                pass


async def open_listener(loop, host, port, request, gate):
    async with gate:
        try:
            _, listener = await asyncio.wait_for(
                loop.create_connection(lambda: Listener(request), host, port), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as e:
            return f"connect: {e!r}"
        try:
            await asyncio.wait_for(asyncio.shield(listener.ready), CONNECT_TIMEOUT)
        except asyncio.TimeoutError:
            listener.fail("no stream within %.0fs" % CONNECT_TIMEOUT)
            listener.transport.abort()
    return listener


async def main():
    args = sys.argv[1:]
    if len(args) < 5:
        sys.exit(__doc__)
    host, port, mount = args[0], int(args[1]), args[2]
    count, duration = int(args[3]), float(args[4])
    kbps = float(args[5]) if len(args) > 5 and args[5] else 128.0
    server_pid = int(args[6]) if len(args) > 6 and args[6] else 0
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS)
    request = (
        f"GET {mount} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: radio_load.py\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()

    t_setup = time.monotonic()
    tasks = [asyncio.ensure_future(open_listener(loop, host, port, request, gate)) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=SETUP_TIMEOUT)
    for p in pending:
        p.cancel()
    listeners, whys = [], {}
    for t in done:
        r = t.result()
        if isinstance(r, str):
            whys[r] = whys.get(r, 0) + 1
        else:
            listeners.append(r)
    # Closed (or failed) before the window: a connect failure as well.
    live = [ls for ls in listeners if not ls.failed and not ls.closed]
    for ls in listeners:
        if ls.failed or ls.closed:
            why = ls.why or "closed during the burst"
            whys[why] = whys.get(why, 0) + 1
    failed = count - len(live)
    for why, n in sorted(whys.items(), key=lambda kv: -kv[1])[:5]:
        print(f"radio_load.py: {n} listener(s): {why}", file=sys.stderr)
    if pending:
        print(f"radio_load.py: {len(pending)} listener(s) not streaming after {SETUP_TIMEOUT:.0f}s", file=sys.stderr)

    last_first = max((ls.first for ls in live), default=time.monotonic())
    setup_s = last_first - t_setup
    # The last listener's burst second, then the window.
    await asyncio.sleep(max(0.0, last_first + 1.0 - time.monotonic()))
    live = [ls for ls in live if not ls.closed]
    at_start = len(live)
    failed = count - at_start
    start_bytes = [ls.n for ls in live]
    prev = list(start_bytes)
    stalls = 0
    cpu0, sched0, stat0 = cpu_self(), cpu_sched(server_pid), cpu_stat(server_pid)
    t0 = time.monotonic()
    end = t0 + duration
    for second in range(1, int(duration) + 1):
        await asyncio.sleep(max(0.0, t0 + second - time.monotonic()))
        for i, ls in enumerate(live):
            if ls.n == prev[i]:
                stalls += 1
            prev[i] = ls.n
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    t1 = time.monotonic()
    cpu1, sched1, stat1 = cpu_self(), cpu_sched(server_pid), cpu_stat(server_pid)
    window = t1 - t0
    rates = []  # kbit/s per listener connected at the window's start
    dropped = 0
    for i, ls in enumerate(live):
        rates.append((ls.n - start_bytes[i]) * 8 / window / 1000)
        if ls.closed:
            dropped += 1
    held = sum(1 for ls, r in zip(live, rates) if not ls.closed and r >= HELD * kbps)
    total_bytes = sum(ls.n - b for ls, b in zip(live, start_bytes))
    srt = sorted(rates)

    def pct(p):
        return f"{srt[min(len(srt) - 1, int(len(srt) * p))]:.1f}" if srt else "n/a"

    lmin = at_start * window / 60

    def per_lmin(a, b):
        return f"{(b - a) * 1000 / lmin:.2f}" if a is not None and b is not None and lmin else "n/a"

    load = (cpu1 - cpu0) / window * 100
    print(
        f"held_pct={held * 100 / count:.1f} held={held} listeners={count} connected={at_start} "
        f"mbps={total_bytes * 8 / window / 1e6:.2f} expected_mbps={count * kbps / 1000:.2f} "
        f"p1_kbps={pct(0.01)} p50_kbps={pct(0.5)} min_kbps={pct(0)} stall_s={stalls} "
        f"failed={failed} dropped={dropped} server_cpu_ms={per_lmin(sched0, sched1)} "
        f"server_stat_ms={per_lmin(stat0, stat1)} load_cpu={load:.0f} "
        f"setup_s={setup_s:.1f} window_s={window:.2f}",
        flush=True,
    )
    for ls in listeners:
        if ls.transport is not None and not ls.closed:
            ls.transport.abort()
    await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
