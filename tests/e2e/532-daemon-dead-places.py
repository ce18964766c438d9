"""A connection a worker thread closes while new ones are taken (docs/protocol.md, Channels): its
place is free only once its session is gone from the table. A worker marks a session to be closed
when its client reads none of its cycle's lines, at any moment, also between the poll thread's
freeing of closed sessions and its count of the places a newcomer may have. Here gdb stops the
daemon as it decides on a newcomer's place on a full TCP channel, marks two connections closed as
such a worker would, and lets it go on with two newcomers waiting: the table of sessions has
room for every place but not for closed sessions beside them, so both newcomers are served only
if the closed sessions were freed first; before, the second one was written past the table's end
(the daemon's session count overwritten). Skipped where gdb cannot attach or break there."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check  # noqa: E402
from mfprobe import poll  # noqa: E402

TCP_LIMIT, UNIX_LIMIT = 224, 31
GDB = shutil.which("gdb") or shutil.which("gdb-multiarch")


def ready(client):
    r = client.command("#STATUS")
    return r[0] == "#ACK" and r[1].startswith("#STATUS:")


def closed(client):
    """The connection ends (a session marked closed gets nothing more)."""
    try:
        client.sock.settimeout(30)
        while client.sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


if not GDB:
    print("SKIP: no gdb")
    sys.exit(77)
if os.environ.get("MF_UNDER_VALGRIND"):
    print("SKIP: gdb cannot break in a daemon that valgrind runs (make check-valgrind)")
    sys.exit(77)

with Daemon(slots=1) as d:
    conns = []
    for host in range(1, 5):  # 56 from each address: no rule of the per-address limit applies
        for _ in range(TCP_LIMIT // 4):
            c = d.tcp("127.0.0.%d" % host)
            check(ready(c), "served")
            conns.append(c)
    # The table of sessions full but for the serial line's place.
    local = [d.unix() for _ in range(UNIX_LIMIT)]
    check(all(ready(c) for c in local), "the UNIX socket's places taken")
    # An address holding as many as any other: nobody gives way to it.
    full = d.tcp("127.0.0.4")
    check(full.line(10) == "#ERR008:Too many connections", "the TCP channel is full")

    attached = os.path.join(d.dir, "attached")
    go = os.path.join(d.dir, "go")
    gdb = subprocess.Popen(
        [GDB, "-nx", "-batch", "-p", str(d.proc.pid),
         "-ex", "break admit",
         "-ex", "shell touch %s" % attached,
         "-ex", "shell while [ ! -e %s ]; do sleep 0.01; done" % go,
         "-ex", "continue",
         "-ex", "set var server.sessions[0]->dead = 1",
         "-ex", "set var server.sessions[1]->dead = 1",
         "-ex", "print server.session_count",
         "-ex", "print server.sessions[0]->id",
         "-ex", "print server.sessions[1]->id",
         "-ex", "delete",
         "-ex", "detach"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll(lambda: os.path.exists(attached) or gdb.poll() is not None, "gdb to attach", 120)
    if not os.path.exists(attached):
        out, err = gdb.communicate()
        print("SKIP: gdb cannot attach: %s" % (err.strip().splitlines() or [""])[-1])
        sys.exit(77)
    # Both wait in the listening socket's queue before the daemon goes on: it takes them in one
    # round, without freeing closed sessions in between. No connection gives way to them: only
    # the two places marked closed are free.
    first, second = d.tcp("127.0.0.4"), d.tcp("127.0.0.4")
    open(go, "w").close()
    out, err = gdb.communicate(timeout=120)
    if "Breakpoint 1, " not in out or "$1 = %d" % (TCP_LIMIT + UNIX_LIMIT) not in out:
        print("SKIP: gdb cannot break in admit(): %r %r" % (out[-500:], err[-500:]))
        sys.exit(77)
    check(d.proc.poll() is None, "the daemon runs")
    # Session ids count connections from 1, the start's own first: conns[i] is id i + 2, then
    # the local ones.
    ids = [int(x) for x in re.findall(r"^\$[23] = (\d+)", out, re.M)]
    every = conns + local
    check(len(ids) == 2 and all(2 <= i < 2 + len(every) for i in ids), "ids: %r" % out)
    marked = [every[i - 2] for i in ids]
    conns = [c for c in conns if c not in marked]
    local = [c for c in local if c not in marked]
    check(all(closed(c) for c in marked), "the two connections marked closed end")
    check(ready(first) and ready(second), "both newcomers are served")
    check(all(ready(c) for c in conns), "the others are served")
    # 224 again, 127.0.0.4 holding most.
    third = d.tcp("127.0.0.4")
    check(third.line(10) == "#ERR008:Too many connections", "the channel is full again")
    check(all(ready(c) for c in local), "the local connections are served")
    for c in conns + local + [first, second, third, full]:
        c.close()
    check(d.stop() == 0, "clean exit")
print("ok")
