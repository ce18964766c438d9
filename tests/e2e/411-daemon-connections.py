"""Connections: at most 256 at once (docs/protocol.md); the next one, on TCP or the UNIX socket,
gets #ERR008:Too many connections and is closed, and a freed place is taken again. Bad input on
the UNIX socket (binary garbage, overlong and half lines, a client that never reads its replies)
is answered or dropped without disturbing other clients."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check  # noqa: E402
from mfprobe import poll  # noqa: E402

LIMIT = 256


def ready(client):
    return client.command("#STATUS") == ["#ACK", "#STATUS:READY"]


def refused(client):
    """The daemon's word to a connection over the limit: one line, then the end."""
    check(client.line(10) == "#ERR008:Too many connections", "over the limit")
    try:
        extra = client.sock.recv(100)
    except ConnectionResetError:
        extra = b""
    check(extra == b"", "closed after the refusal: %r" % extra)


with Daemon() as d:
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

    # ---- the connection limit ----
    clients = []
    for i in range(LIMIT):
        c = d.tcp() if i % 2 else d.unix()
        clients.append(c)
        check(ready(c), "connection %d is served" % (i + 1))
    refused(d.tcp())
    refused(d.unix())
    check(ready(clients[0]) and ready(clients[-1]), "the others are still served")
    clients.pop().close()

    def admitted():
        c = d.tcp()
        line = c.command("#STATUS")
        if line == ["#ACK", "#STATUS:READY"]:
            return c
        check(line == ["#ERR008:Too many connections"], "a refusal or a place: %r" % line)
        c.close()
        return None
    clients.append(poll(admitted, "the freed place taken again"))
    refused(d.unix())
    for c in clients:
        c.close()
    poll(admitted, "a place after all of them left").close()
    check(d.stop() == 0, "clean exit")
print("ok")
