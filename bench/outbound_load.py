"""Submits N messages of SIZE bytes with smtplib over SESSIONS processes (a new connection every
100 messages).

usage: outbound_load.py PORT N SESSIONS SIZE FROM TO [USER PASSWORD]
With USER and PASSWORD the sessions log in (AUTH PLAIN, as on a submission port). Prints the
seconds the submissions took. Standard library only."""
import multiprocessing
import smtplib
import sys
import time

PER_CONNECTION = 100


def session(args):
    port, count, size, sender, to, user, password, first = args
    body = ("x" * 70 + "\r\n") * max(1, size // 72)
    s = None
    for i in range(count):
        # A new connection every PER_CONNECTION messages, as mail clients do (and servers cap
        # the commands of one session: ours at 1000).
        if i % PER_CONNECTION == 0:
            if s is not None:
                s.quit()
            s = smtplib.SMTP("127.0.0.1", port, timeout=60)
            s.ehlo("bench.invalid")
            if user:
                s.login(user, password)
        msg = f"From: {sender}\r\nTo: {to}\r\nSubject: bench {first + i}\r\n\r\n{body}"
        s.sendmail(sender, [to], msg)
    if s is not None:
        s.quit()


def main():
    port, n, sessions, size = (int(a) for a in sys.argv[1:5])
    sender, to = sys.argv[5], sys.argv[6]
    user, password = (sys.argv[7], sys.argv[8]) if len(sys.argv) > 8 else ("", "")
    per = [n // sessions + (1 if i < n % sessions else 0) for i in range(sessions)]
    jobs, first = [], 0
    for count in per:
        jobs.append((port, count, size, sender, to, user, password, first))
        first += count
    t0 = time.monotonic()
    with multiprocessing.Pool(sessions) as pool:
        pool.map(session, jobs)
    print(f"{time.monotonic() - t0:.3f}")


if __name__ == "__main__":
    main()
