#!/usr/bin/env python3
"""A hostile scraper for tests/integration/70-metrics.sh, on loopback only.

Three attacks run together against 127.0.0.1:PORT for --seconds, each from a
source address of its own in 127.0.0.0/8 (the normal scraper uses
127.0.0.1), so that the server's per-address limit is what meets them:

  slowloris  --slow connections from 127.0.0.2, each sending a request
             header one byte every 0.2 s, never finishing it;
  flood      --flood connections (10,000) from 127.0.0.3, opened as fast as
             possible and held open, each with half a request line;
  huge       4 connections from 127.0.0.4, each sending one endless header
             line, up to --huge-cap bytes, until the server closes it.

When all attacks are under way it writes --ready; at the end a JSON report
to --report: what the server accepted, kept and closed. Every loop is
bounded in count and time.
"""
import argparse
import json
import resource
import selectors
import socket
import threading
import time


def connect_from(src, port, blocking=True):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.setblocking(blocking)
    if blocking:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
    else:
        s.connect_ex(("127.0.0.1", port))
    return s


def slowloris(port, count, stop, report, started):
    socks = []
    for _ in range(count):
        try:
            s = connect_from("127.0.0.2", port)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            report["slow_connect_failed"] = report.get("slow_connect_failed", 0) + 1
    started.set()
    alive = list(socks)
    while not stop.is_set() and alive:
        still = []
        for s in alive:
            try:
                s.send(b"a")
                still.append(s)
            except OSError:
                s.close()
        alive = still
        stop.wait(0.2)
    report["slow_opened"] = len(socks)
    report["slow_alive_at_end"] = len(alive)
    for s in alive:
        s.close()


def flood(port, count, stop, report, started):
    sel = selectors.DefaultSelector()
    socks = []
    failed = 0
    for _ in range(count):
        if stop.is_set():
            break
        try:
            s = connect_from("127.0.0.3", port, blocking=False)
        except OSError:
            failed += 1
            continue
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
    started.set()
    opened_at = time.monotonic()
    closed = 0
    closed_early = 0   # within 3 s: before the server's idle timeout could act
    sent = 0
    open_socks = len(socks)
    while not stop.is_set() and open_socks > 0:
        for key, ev in sel.select(timeout=0.2):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                try:
                    s.send(b"GET /metr")
                    sent += 1
                    sel.modify(s, selectors.EVENT_READ)
                except OSError:
                    sel.unregister(s)
                    s.close()
                    closed += 1
                    open_socks -= 1
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                closed += 1
                open_socks -= 1
                if time.monotonic() - opened_at < 3:
                    closed_early += 1
    report["flood_opened"] = len(socks)
    report["flood_connect_failed"] = failed
    report["flood_closed_by_server"] = closed
    report["flood_closed_within_3s"] = closed_early
    report["flood_open_at_end"] = open_socks
    sel.close()
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def huge(port, cap, stop, report, started, lock):
    try:
        s = connect_from("127.0.0.4", port)
    except OSError:
        started.set()
        return
    sent = 0
    cut = False
    chunk = b"a" * 65536
    started.set()
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        s.settimeout(2)
        while sent < cap and not stop.is_set():
            sent += s.send(chunk)
    except OSError:
        cut = True     # the server closed (reset) the connection
    s.close()
    with lock:
        report["huge_max_sent"] = max(report.get("huge_max_sent", 0), sent)
        report["huge_cut"] = report.get("huge_cut", 0) + (1 if cut else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--flood", type=int, default=10000)
    ap.add_argument("--huge-cap", type=int, default=64 << 20)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.flood + a.slow + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    stop = threading.Event()
    report = {}
    lock = threading.Lock()
    starts = []
    threads = []
    for target, args in ((slowloris, (a.port, a.slow)), (flood, (a.port, a.flood))):
        ev = threading.Event()
        starts.append(ev)
        threads.append(threading.Thread(target=target, args=args + (stop, report, ev)))
    for _ in range(4):
        ev = threading.Event()
        starts.append(ev)
        threads.append(threading.Thread(target=huge, args=(a.port, a.huge_cap, stop, report, ev, lock)))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for ev in starts:
        ev.wait(max(0.1, a.seconds - (time.monotonic() - t0)))
    with open(a.ready, "w") as f:
        f.write("%.3f\n" % (time.monotonic() - t0))
    stop.wait(max(0.0, a.seconds - (time.monotonic() - t0)))
    stop.set()
    for t in threads:
        t.join(10)
    with open(a.report, "w") as f:
        json.dump(report, f, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
