#!/usr/bin/env python3
"""A bounded IMAP load driver for bench/imap.sh (imaptest is not packaged in Debian).

imap_load.py HOST PORT USER PASSWORD MODE SESSIONS SECONDS
  MODE fill:N  APPENDs N messages of 4 KiB to INBOX over one session (not timed).
  MODE mix     each of SESSIONS processes logs in, SELECTs INBOX and for SECONDS repeats
               4 x UID FETCH BODY.PEEK[] of a random message + 1 APPEND of 4 KiB;
  MODE fetch   the same with FETCH only.
Prints one number: operations per second over every session (a FETCH or an APPEND is one).
Each session is its own process (Python's GIL would otherwise be the bottleneck), so the load
side is the same for both servers; the figure is only comparable within one run.
"""
import imaplib
import multiprocessing
import random
import sys
import time

BODY = ("x" * 76 + "\r\n") * 52  # ~4 KiB


def message(i):
    return (
        f"From: load@bench.lan\r\nTo: u@bench.lan\r\nSubject: load {i}\r\n"
        f"Message-ID: <load-{i}-{random.random()}@bench.lan>\r\n\r\n{BODY}"
    ).encode()


def login(host, port, user, password):
    imap = imaplib.IMAP4(host, int(port))
    imap.login(user, password)
    return imap


def fill(host, port, user, password, n):
    imap = login(host, port, user, password)
    for i in range(n):
        typ, _ = imap.append("INBOX", None, None, message(i))
        if typ != "OK":
            raise SystemExit(f"APPEND {i}: {typ}")
    imap.logout()


def session(args):
    host, port, user, password, mode, seconds, seed = args
    rnd = random.Random(seed)
    imap = login(host, port, user, password)
    typ, _ = imap.select("INBOX")
    if typ != "OK":
        raise SystemExit("SELECT failed")
    typ, data = imap.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    if not uids:
        raise SystemExit("INBOX is empty: fill it first")
    ops = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        for _ in range(4):
            uid = rnd.choice(uids)
            typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            if typ != "OK" or not data or data[0] is None:
                raise SystemExit(f"FETCH {uid}: {typ} {data!r:.200}")
            ops += 1
        if mode == "mix":
            typ, _ = imap.append("INBOX", None, None, message(f"{seed}-{i}"))
            if typ != "OK":
                raise SystemExit(f"APPEND: {typ}")
            ops += 1
            i += 1
    imap.logout()
    return ops


def main():
    host, port, user, password, mode, sessions, seconds = sys.argv[1:8]
    if mode.startswith("fill:"):
        fill(host, port, user, password, int(mode[5:]))
        return
    sessions, seconds = int(sessions), float(seconds)
    with multiprocessing.Pool(sessions) as pool:
        t0 = time.monotonic()
        counts = pool.map(
            session,
            [(host, port, user, password, mode, seconds, s) for s in range(sessions)],
        )
        elapsed = time.monotonic() - t0
    print(f"{sum(counts) / elapsed:.1f}")


if __name__ == "__main__":
    main()
