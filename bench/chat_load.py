#!/usr/bin/env python3
"""IRC fan-out load for bench/chat.sh (stdlib only, one process, asyncio protocols).

    chat_load.py HOST PORT CLIENTS SENDERS RATE DURATION [PROBES] [SIZE] [SERVER_PID]

CLIENTS connections register (NICK/USER) and JOIN one channel (at most 64 handshakes in flight).
Once all are in and the channel has been quiet for a second, the first SENDERS of them send
PRIVMSGs to the channel, each RATE lines/s (one ticker, round robin over the senders, so the
lines are spread evenly: SENDERS*RATE lines/s in all), for DURATION seconds. Every line is
`T <monotonic ns> <seq> <padding>` of about SIZE bytes of text. Every member but the sender
receives it (no echo-message), so one line is CLIENTS-1 deliveries.

Counting stays cheap so the generator is not the bottleneck: a client counts the " PRIVMSG "
of the complete lines of each read with bytes.count; only PROBES receivers (not senders) split
their lines and read the timestamp of every one (latency = its arrival in this process's event
loop minus its send time, same clock).

Prints one line of key=value:
  rate      deliveries/s: PRIVMSGs received by all clients / (last delivery - first send)
  p50 p99   delivery latency, ms, at the probes
  sent delivered expected   lines sent, deliveries counted, sent*(CLIENTS-1)
  dropped   connections the server closed during the run
  server_cpu_us   the server's CPU µs per 1000 deliveries (the run time of SERVER_PID's threads
                  in /proc/PID/task/*/schedstat, ns; utime+stime if absent), from the first
                  send to the end of the drain ("n/a" without SERVER_PID)
  load_cpu  this process's CPU use over the same window, % of one core (near 100: this
            generator, not the server, sets the pace)
  setup_s   seconds to connect, register and join all clients
"""

import asyncio
import os
import resource
import sys
import time

CHANNEL = b"#bench"
HANDSHAKES = 64
SETUP_TIMEOUT = 300.0
DRAIN_TIMEOUT = 15.0


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(pid):
    """CPU seconds of pid: the sum of its threads' schedstat (ns), else utime+stime (ticks)."""
    if not pid:
        return None
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


class Run:
    def __init__(self):
        self.measuring = False
        self.delivered = 0
        self.last_delivery = 0
        self.latencies = []
        self.dropped = 0
        self.joined = 0
        self.all_joined = None  # future
        self.last_setup_line = time.monotonic()


class Client(asyncio.Protocol):
    __slots__ = ("run", "nick", "probe", "buf", "transport", "joined", "closed", "end_names")

    def __init__(self, run, nick, probe):
        self.run = run
        self.nick = nick
        self.probe = probe
        self.buf = b""
        self.transport = None
        self.joined = asyncio.get_running_loop().create_future()
        self.closed = False
        self.end_names = b" 366 " + nick + b" "

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"NICK " + self.nick + b"\r\nUSER " + self.nick + b" 0 * :bench\r\n")

    def connection_lost(self, exc):
        self.closed = True
        if self.run.measuring:
            self.run.dropped += 1
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(f"{self.nick.decode()}: connection closed: {self.buf[-300:]!r}"))

    def data_received(self, data):
        buf = self.buf + data
        end = buf.rfind(b"\n")
        if end < 0:
            self.buf = buf
            return
        lines, self.buf = buf[: end + 1], buf[end + 1 :]
        run = self.run
        if run.measuring:
            n = lines.count(b" PRIVMSG ")
            if n:
                now = time.monotonic_ns()
                run.delivered += n
                run.last_delivery = now
                if self.probe:
                    lat = run.latencies
                    for line in lines.split(b"\n"):
                        i = line.find(b" :T ")
                        if i > 0:
                            j = line.find(b" ", i + 4)
                            lat.append(now - int(line[i + 4 : j]))
            if b"PING" in lines:
                self.control(lines)
            return
        run.last_setup_line = time.monotonic()
        self.control(lines)

    def control(self, lines):
        for line in lines.split(b"\r\n"):
            if line.startswith(b"PING"):
                self.transport.write(b"PONG" + line[4:] + b"\r\n")
            elif not self.joined.done():
                parts = line.split(b" ", 3)
                if len(parts) >= 2 and parts[1] == b"001":
                    self.transport.write(b"JOIN " + CHANNEL + b"\r\n")
                elif self.end_names in line:
                    self.joined.set_result(True)
                elif len(parts) >= 2 and parts[1] in (b"432", b"433", b"405", b"471", b"473", b"474") or line.startswith(b"ERROR"):
                    self.joined.set_exception(ConnectionError(f"{self.nick.decode()}: {line.decode(errors='replace')}"))


async def connect(loop, run, host, port, nick, probe, gate):
    async with gate:
        _, client = await loop.create_connection(lambda: Client(run, nick, probe), host, port)
        await client.joined
    return client


async def main():
    args = sys.argv[1:]
    if len(args) < 6:
        sys.exit(__doc__)
    host, port = args[0], int(args[1])
    clients, senders, rate, duration = int(args[2]), int(args[3]), float(args[4]), float(args[5])
    probes = int(args[6]) if len(args) > 6 else 20
    size = int(args[7]) if len(args) > 7 else 64
    server_pid = int(args[8]) if len(args) > 8 and args[8] else 0
    if senders < 1 or senders >= clients:
        sys.exit("need 1 <= SENDERS < CLIENTS")
    loop = asyncio.get_running_loop()
    run = Run()
    gate = asyncio.Semaphore(HANDSHAKES)

    t_setup = time.monotonic()
    tasks = []
    for i in range(clients):
        probe = senders <= i < senders + probes
        nick = (b"s%d" if i < senders else b"r%d") % i
        tasks.append(asyncio.ensure_future(connect(loop, run, host, port, nick, probe, gate)))
    done, pending = await asyncio.wait(tasks, timeout=SETUP_TIMEOUT, return_when=asyncio.FIRST_EXCEPTION)
    for t in done:
        if t.exception():
            for p in pending:
                p.cancel()
            sys.exit(f"setup failed: {t.exception()!r}")
    if pending:
        sys.exit(f"setup: {len(pending)} of {clients} clients not joined after {SETUP_TIMEOUT}s")
    conns = [t.result() for t in tasks]
    # The joins of the last ones are still being fanned out to everyone: wait for a quiet second.
    while time.monotonic() - run.last_setup_line < 1.0:
        await asyncio.sleep(0.2)
    setup_s = time.monotonic() - t_setup

    pad = b"x" * max(0, size - 32)
    interval_ns = int(1e9 / (senders * rate))
    total = int(senders * rate * duration)
    for c in conns:
        c.buf = b""
    run.measuring = True
    cpu0, srv0 = cpu_self(), cpu_of(server_pid)
    t0 = time.monotonic_ns()
    next_at = t0
    for seq in range(total):
        now = time.monotonic_ns()
        if next_at > now:
            await asyncio.sleep((next_at - now) / 1e9)
        c = conns[seq % senders]
        if not c.closed:
            c.transport.write(b"PRIVMSG " + CHANNEL + b" :T %d %d " % (time.monotonic_ns(), seq) + pad + b"\r\n")
        next_at += interval_ns
    t_sent = time.monotonic_ns()
    expected = total * (clients - 1)
    last_seen, last_change = -1, time.monotonic()
    while run.delivered < expected and time.monotonic() - t_sent / 1e9 < DRAIN_TIMEOUT:
        if run.delivered != last_seen:
            last_seen, last_change = run.delivered, time.monotonic()
        elif time.monotonic() - last_change > 3.0:
            break
        await asyncio.sleep(0.05)
    cpu1, srv1 = cpu_self(), cpu_of(server_pid)
    t_end = time.monotonic_ns()
    run.measuring = False

    window = max(run.last_delivery - t0, 1) / 1e9
    lat = sorted(run.latencies)

    def pct(p):
        return f"{lat[min(len(lat) - 1, int(len(lat) * p))] / 1e6:.3f}" if lat else "n/a"

    srv = "n/a"
    if srv0 is not None and srv1 is not None and run.delivered:
        srv = f"{(srv1 - srv0) * 1e6 / run.delivered * 1000:.1f}"
    load = (cpu1 - cpu0) / ((t_end - t0) / 1e9) * 100
    print(
        f"rate={run.delivered / window:.0f} p50={pct(0.50)} p99={pct(0.99)} sent={total} "
        f"delivered={run.delivered} expected={expected} dropped={run.dropped} "
        f"server_cpu_us={srv} load_cpu={load:.0f} setup_s={setup_s:.1f} window_s={window:.2f}",
        flush=True,
    )
    for c in conns:
        if not c.closed:
            c.transport.abort()
    await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
