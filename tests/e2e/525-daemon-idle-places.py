"""Places that idle connections give way (docs/protocol.md, Channels). A 65th TCP connection from
one address takes the place of that address's longest-idle connection (a host that restarted
without closing its connections gets in again), never of one with a cycle running; on a full TCP
channel a newcomer whose address holds at least two fewer connections than the addresses holding
most takes their longest-idle one's place, and is refused otherwise; on a full UNIX socket a
newcomer takes the longest-idle one's place. A connection closed so is told why in one line. Every
TCP connection has keep-alive probes armed (the kernel's timer in /proc/net/tcp), so that a host
that vanished without closing gives its places back."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, simple_project  # noqa: E402
from mfprobe import poll  # noqa: E402

TCP_LIMIT, TCP_PEER_LIMIT, UNIX_LIMIT = 224, 64, 31
SAME = "#ERR008:Connection closed: a newer connection from the same address needed its place"
FEWER = "#ERR008:Connection closed: an address holding fewer connections needed its place"
NEWER = "#ERR008:Connection closed: a newer connection needed its place"


def ready(client):
    r = client.command("#STATUS")
    return r[0] == "#ACK" and r[1].startswith("#STATUS:")


def connect(make):
    """A new connection that has been served once (one at a time: the listening socket's backlog
    is short)."""
    c = make()
    check(ready(c), "a new connection is served")
    return c


def touch(clients):
    """Each client sends a line, in order, a little apart: the first is then the least idle."""
    for c in clients:
        check(ready(c), "served")
        time.sleep(0.002)


def closed_with(client, why):
    """The one line a connection closed for a newcomer gets, then the end."""
    line = client.line(10)
    check(line == why, "closed for a newcomer: %r" % line)
    try:
        extra = client.sock.recv(100)
    except ConnectionResetError:
        extra = b""
    check(extra == b"", "closed after the line: %r" % extra)


def refused(client, why=""):
    line = client.line(10)
    check(line == "#ERR008:Too many connections" + why, "refused: %r" % line)


def keepalive_armed(port):
    """Established TCP sockets on the daemon's port and whether the kernel runs a keep-alive
    timer for each (/proc/net/tcp: column `tr` is 2; 1 while a reply waits for its
    acknowledgement, the retransmission timer taking the column then)."""
    armed = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            local_port = int(f[1].split(":")[1], 16)
            if local_port == port and f[3] == "01":
                armed.append(f[5].split(":")[0] == "02")
    return armed


with Daemon(slots=1, sim_speed="1") as d:
    setup = d.tcp()
    simple_project(setup, count=10, serial=1, size=96 * 1024)

    # ---- keep-alive ----
    poll(lambda: (lambda a: a and all(a))(keepalive_armed(d.port)),
         lambda: "keep-alive armed on the daemon's TCP sockets: %r" % keepalive_armed(d.port), 10)

    # ---- one address over its limit ----
    # busy: a cycle runs for it (it sent #AUTO first, so it is the one that sent nothing for
    # longest); it keeps its place. idle[0] is then the longest idle and gives way.
    busy = d.tcp("127.0.0.1")
    busy.send("#AUTO\r")
    check(busy.line() == "#ACK", "#AUTO taken")
    time.sleep(0.05)
    idle = [setup] + [connect(d.tcp) for _ in range(TCP_PEER_LIMIT - 2)]
    touch(idle)
    newcomer = d.tcp("127.0.0.1")
    check(ready(newcomer), "the 65th connection from 127.0.0.1 is served")
    closed_with(idle[0], SAME)
    idle.pop(0)
    check(ready(idle[0]) and ready(idle[-1]), "the address's other connections are served")
    final = busy.until_final(120)
    check(final[-1].startswith("#OK"), "the busy connection's cycle ended well: %r" % final)
    for c in idle + [busy, newcomer]:
        c.close()
    time.sleep(0.2)

    # ---- a full TCP channel ----
    conns = {}
    for host in range(1, 5):  # 56 per address: nobody holds two more than another
        conns[host] = [connect(lambda: d.tcp("127.0.0.%d" % host)) for _ in range(TCP_LIMIT // 4)]
    for host in range(1, 5):
        touch(conns[host])
    refused(d.tcp("127.0.0.1"))
    refused(d.tcp("127.0.0.3"))
    # 127.0.0.5 holds none: the longest idle of the addresses holding most gives way. Make one of
    # 127.0.0.3's the longest idle of all.
    victim = conns[3][10]
    time.sleep(0.05)
    for host in range(1, 5):
        touch(c for c in conns[host] if c is not victim)
    five = d.tcp("127.0.0.5")
    check(ready(five), "127.0.0.5 gets a place on the full channel")
    closed_with(victim, FEWER)
    conns[3].remove(victim)
    # Now 127.0.0.3 holds 55, the others 56, 127.0.0.5 one: 127.0.0.3 is refused (56 is not two
    # more than its 55 + 1), a second one from 127.0.0.5 is not.
    refused(d.tcp("127.0.0.3"))
    time.sleep(0.05)
    touch(conns[1][1:] + conns[2] + conns[3] + conns[4] + [five])
    five2 = d.tcp("127.0.0.5")
    check(ready(five2), "a second one from 127.0.0.5")
    closed_with(conns[1][0], FEWER)
    conns[1].pop(0)
    check(ready(conns[2][0]) and ready(five), "the others are served")

    # ---- a full UNIX socket ----
    unix = [connect(d.unix) for _ in range(UNIX_LIMIT)]
    touch(unix)
    time.sleep(0.05)
    touch(unix[1:])
    u = d.unix()
    check(ready(u), "a new local connection on a full UNIX socket is served")
    closed_with(unix[0], NEWER)
    check(ready(unix[1]) and ready(conns[4][0]), "the others are served")
    for c in unix[1:] + [u, five, five2] + [c for host in conns for c in conns[host]]:
        c.close()
    check(d.stop() == 0, "clean exit")
print("ok")
