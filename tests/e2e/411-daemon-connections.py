"""Connections (docs/protocol.md): at most 224 on TCP, 64 of them from one address, and 31 on the
UNIX socket; one more on a full TCP channel where no idle connection gives way gets
#ERR008:Too many connections and is closed, and a freed place is taken again. TCP clients, however many, never take the UNIX socket's
places nor the serial line (a pseudo-terminal here). Bad input on the UNIX socket (binary garbage,
overlong and half lines, a client that never reads its replies) is answered or dropped without
disturbing other clients."""
import os
import socket
import sys
import time
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check  # noqa: E402
from mfprobe import poll  # noqa: E402

TCP_LIMIT, TCP_PEER_LIMIT, UNIX_LIMIT = 224, 64, 31


def ready(client):
    return client.command("#STATUS") == ["#ACK", "#STATUS:READY"]


def refused(client, why=""):
    """The daemon's word to a connection over the limit: one line, then the end."""
    line = client.line(10)
    check(line == "#ERR008:Too many connections" + why, "over the limit: %r" % line)
    try:
        extra = client.sock.recv(100)
    except ConnectionResetError:
        extra = b""
    check(extra == b"", "closed after the refusal: %r" % extra)


# The serial line: the programmer's end of a pseudo-terminal.
serial, programmer_end = os.openpty()
tty.setraw(serial)
os.set_blocking(serial, False)


def serial_ready():
    """#STATUS over the serial line."""
    os.write(serial, b"#STATUS\r")
    got, deadline = b"", time.time() + 10
    while got.count(b"\r") < 2 and time.time() < deadline:
        try:
            got += os.read(serial, 100)
        except BlockingIOError:
            time.sleep(0.01)
    check(got == b"#ACK\r#STATUS:READY\r", "the serial line is served: %r" % got)


with Daemon(extra=["--serial", os.ttyname(programmer_end)]) as d:
    # ---- bad input on the UNIX socket ----
    u, other, t = d.unix(), d.unix(), d.tcp()
    u.send(b"#STA\x00\x01TUS\r")
    check(u.line() == "#NACK:ERR210:Invalid character", "binary bytes in a command")
    u.send(b"#" + b"A" * 5000 + b"\r")
    check(u.line() == "#NACK:ERR210:Line too long", "overlong line")
    u.send(b"no hash here\r")
    check(u.line() == "#NACK", "a line without #")
    u.send(os.urandom(4000).replace(b"\r", b"").replace(b"\n", b"") + b"\r")
    check(u.line().startswith("#NACK"), "random bytes: one #NACK for the line")
    check(ready(u), "the UNIX client is still served")
    u.send(b"#STAT")  # a half line: nobody waits for it
    check(ready(other) and ready(t), "other clients are served meanwhile")
    u.send(b"US\r")
    check(u.line() == "#ACK" and u.line() == "#STATUS:READY", "the half line completed")
    g = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    g.connect(d.socket_path)
    g.sendall(os.urandom(3000))
    g.close()
    check(ready(other), "served after a garbage client vanished")

    # A client that sends and never reads: dropped once 1 MiB of replies waits for it.
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(d.socket_path)
    hog.settimeout(30)
    dropped = False
    try:
        for _ in range(400):
            hog.sendall(b"#INFO\r" * 50)
            check(ready(other), "served while a client does not read")
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    check(dropped, "a client that never reads is dropped")
    hog.close()
    for c in (u, other, t):
        c.close()

    # ---- the connection limits ----
    # TCP: 224 places, at most 64 per peer address (127.0.0.x are all this host's). However TCP
    # clients fill them, the UNIX socket keeps its 31 places and the serial line its own. Filled
    # evenly (56 from each of four addresses), no address holds two more than another: a newcomer
    # is refused (the places idle connections give way: e2e.525).
    tcp = []
    for peer in range(1, 5):
        for i in range(TCP_LIMIT // 4):
            tcp.append(d.tcp("127.0.0.%d" % peer))
            check(ready(tcp[-1]), "TCP connection %d is served" % len(tcp))
    refused(d.tcp("127.0.0.1"))
    refused(d.tcp("127.0.0.4"))
    serial_ready()
    unix = []
    for i in range(UNIX_LIMIT):
        unix.append(d.unix())
        check(ready(unix[-1]), "UNIX connection %d is served while TCP is full" % len(unix))
    check(ready(tcp[0]) and ready(tcp[-1]) and ready(unix[0]), "the others are still served")
    serial_ready()

    def admitted(connect):
        def attempt():
            c = connect()
            line = c.command("#STATUS")
            if line == ["#ACK", "#STATUS:READY"]:
                return c
            check(line[0].startswith("#ERR008:Too many connections"), "a refusal or a place: %r"
                  % line)
            c.close()
            return None
        return attempt

    # A freed place is taken again, on its own channel only: a local newcomer on the full UNIX
    # socket takes an idle local connection's place, not the TCP place.
    tcp.pop(0).close()  # one of 127.0.0.1's
    time.sleep(0.1)
    unix.append(d.unix())
    check(ready(unix[-1]), "a local newcomer is served")
    gone = unix.pop(1)  # unix[0] answered a #STATUS since
    check(gone.line(10).startswith("#ERR008:Connection closed"), "an idle local one gave way")
    tcp.append(poll(admitted(lambda: d.tcp("127.0.0.1")), "the freed TCP place taken again"))
    refused(d.tcp("127.0.0.1"))
    for c in tcp + unix:
        c.close()
    poll(admitted(d.tcp), "a place after all of them left").close()
    check(d.stop() == 0, "clean exit")
print("ok")
