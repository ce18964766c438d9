"""The security suite: a table of attempts to get at the secure area or the count through the
running daemon, each with the refusal it must get. Every row asserts the exact reply and that no
byte of the firmware's plaintext and no extra count came out. Rows: file commands on secure names
in every spelling; listings; oversized and negative lengths; privileged commands over TCP and the
serial line; NBD reads and writes outside the public area; editing the public area during a
cycle; flipped bytes in the secure partition; forged, foreign and malformed top-up tokens;
killing the daemon in the middle of a cycle and of the move. Prints the table at the end."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, fail, free_port, get, put, sim_flash  # noqa: E402

MARK = b"MINTFLASH-SECRET-PLAINTEXT-7f3a"
rows = []


def row(group, attempt, expected, ok):
    rows.append((group, attempt, expected))
    check(ok, "%s: %s: expected %s" % (group, attempt, expected))


def info(client):
    return dict(line[6:].split("=", 1) for line in client.command("#INFO") if line.startswith("#INFO:"))


def firmware(size=40000):
    fw = bytearray(os.urandom(size))
    fw[size // 3:size // 3 + len(MARK)] = MARK
    return bytes(fw)


def install(d, t, u, fw, count=20, folder="_SECURE"):
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
    put(t, folder + "/Projects/01_W/01_App/app.bin", fw)
    put(t, folder + "/Projects/01_W/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
        "[serial]\naddress = 0x080F0000\n")
    put(t, folder + "/Projects/01_W/Cntdown.txt", "%d\n" % count)
    put(t, folder + "/Projects/01_W/Serial.txt", "500\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    check(info(t)["AREA"] == "SECURE", "installed")


def no_plaintext(d, what):
    with open(d.storage, "rb") as f:
        check(MARK not in f.read(), "%s: no plaintext in the storage image" % what)


def nbd_connect(port):
    """A raw NBD client (fixed newstyle, NBD_OPT_GO): returns (socket, export size)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)

    def recv(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                fail("NBD server closed the connection")
            data += chunk
        return data

    hello = recv(18)
    check(hello[:16] == b"NBDMAGICIHAVEOPT", "NBD greeting")
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    name = b"public"
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, 4 + len(name) + 2) + struct.pack(">I", len(name))
              + name + struct.pack(">H", 0))
    size = None
    while True:
        magic, _opt, kind, length = struct.unpack(">QIII", recv(20))
        data = recv(length)
        if kind == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        if kind == 1:
            break
        if kind & 0x80000000:
            fail("NBD_OPT_GO refused: %r" % data)
    class Conn:
        pass
    c = Conn()
    c.sendall, c.close, c.recv_exact = s.sendall, s.close, recv
    return c, size


def nbd_request(s, kind, offset, length, payload=b""):
    """Sends one request; returns (error, data)."""
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, kind, 7, offset, length) + payload)
    magic, error, handle = struct.unpack(">IIQ", s.recv_exact(16))
    check(magic == 0x67446698 and handle == 7, "NBD simple reply")
    data = s.recv_exact(length) if kind == 0 and error == 0 else b""
    return error, data


work = tempfile.mkdtemp(prefix="mf-security-")
os.makedirs(os.path.join(work, "a"))
os.makedirs(os.path.join(work, "b"))
try:
    fw = firmware()
    # ---- one programmer with a setup in the secure area ----
    nbd_port = free_port()
    with Daemon(size="32M", sim_speed="0", workdir=os.path.join(work, "a"),
                extra=["--nbd", "127.0.0.1:%d" % nbd_port]) as d:
        t, u = d.tcp(), d.unix()
        install(d, t, u, fw)
        left = int(info(t)["CYCLES_LEFT"])

        # File commands on secure names, every spelling: refused, or a new empty public file.
        for name in ("Projects/01_W/01_App/app.bin", "PROJECTS/01_W/01_APP/APP.BIN",
                     "projects/01_w/01_app/app.bin", "./Projects/01_W/Cntdown.txt",
                     "Projects\\01_W\\Cntdown.txt", "/Projects/01_W/Cntdown.txt",
                     "//Projects//01_W//Cntdown.txt", "PROJEC~1/01_W/CNTDOWN.TXT",
                     "Projects/01_W/CNTDOW~1.TXT", "Projects./01_W/Cntdown.txt",
                     "Projects /01_W/Cntdown.txt", "Projects/01_W/Cntdown.txt.",
                     "Projects/01_W/Cntdown.txt ", "_SECURE/Projects/01_W/01_App/app.bin",
                     "_secure/projects/01_w/01_app/app.bin", "Projects/01_W/01_App/../01_App/app.bin"):
            r = t.command("#FOPEN " + name)
            if r == ["#ACK", "#OK"]:
                got = t.command("#FREAD 0,200")
                t.command("#FCLOSE")
                t.command("#FDELETE " + name)
                row("file names", "#FOPEN " + name, "a new empty public file",
                    got == ["#ACK", "#OK:00:"])
            else:
                row("file names", "#FOPEN " + name, "#ERR010",
                    r == ["#ACK", "#ERR010:File open failed (no such file or directory)"])
        for name in ("../Projects/01_W/Cntdown.txt", "C:/Projects/01_W/Cntdown.txt",
                     "Projects/*.txt", "Projects/01_W/?ntdown.txt"):
            r = t.command("#FOPEN " + name)
            row("file names", "#FOPEN " + name, "#ERR010 (invalid name or no such folder)",
                r in (["#ACK", "#ERR010:File open failed (invalid name)"],
                      ["#ACK", "#ERR010:File open failed (no such file or directory)"]))
        r = t.command("#FOPEN \x01Projects")
        row("file names", "#FOPEN with a control byte", "#NACK:ERR210",
            r == ["#NACK:ERR210:Invalid character"])
        for path in ("Projects", "PROJECTS", "Projects/01_W", "_SECURE", "/Projects/."):
            r = t.command("#FLIST " + path)
            row("listings", "#FLIST " + path, "#ERR011", r[-1].startswith("#ERR011:"))
        for cmd in ("#FDELETE Projects/01_W/Cntdown.txt", "#RMDIR Projects/01_W",
                    "#RMDIR Projects"):
            r = t.command(cmd)
            row("file names", cmd, "#ERR013", r[-1].startswith("#ERR013:"))

        # Oversized and negative lengths.
        check(t.command("#FOPEN big.txt") == ["#ACK", "#OK"], "open")
        for cmd, want in (
                ("#FWRITE 0,201:" + "00" * 0x201,
                 "#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> in hex, at most 200 bytes"),
                ("#FWRITE -1,1:00",
                 "#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> in hex, at most 200 bytes"),
                ("#FWRITE 0,2:00",
                 "#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> in hex, at most 200 bytes"),
                ("#FREAD -1,10", "#NACK:ERR210:Expected <Offset>,<NumBytes> in hex"),
                ("#FREAD 0,10000000000000000", "#NACK:ERR210:Expected <Offset>,<NumBytes> in hex"),
                ("#FWRITE FFFFFFFF,1:00", "#ERR012:File write failed (file too large)"),
                ("#FWRITE FFFFFFFFFFFFFFFF,1:00",
                 "#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> in hex, at most 200 bytes")):
            r = t.command(cmd)
            row("lengths", cmd[:40], want, r[-1] == want)
        r = t.command("#FREAD FFFFFFFFFFFFFFFF,200")
        row("lengths", "#FREAD FFFFFFFFFFFFFFFF,200", "#OK:00: (past the end)", r[-1] == "#OK:00:")
        r = t.command("#" + "A" * 5000)
        row("lengths", "a 5000-byte line", "#NACK:ERR210:Line too long",
            r[-1] == "#NACK:ERR210:Line too long")
        t.command("#FCLOSE")
        t.command("#FDELETE big.txt")

        # Privileged commands off the local connection.
        for cmd in ("#SECUREAREA CREATE", "#SECUREAREA REMOVE", "#REBOOT FILEACCESS",
                    "#SECUREAREA CREATE " + "A" * 43 + "="):
            r = t.command(cmd)
            row("privileged", cmd[:30] + " over TCP", "#NACK:ERR209",
                r == ["#NACK:ERR209:Only allowed on the local connection"])

        # Top-up tokens: malformed, forged, foreign.
        r = t.command("#TOPUP 00")
        row("tokens", "#TOPUP with 1 byte", "#NACK:ERR210", r[-1].startswith("#NACK:ERR210:"))
        r = t.command("#TOPUP " + "zz" * 200)
        row("tokens", "#TOPUP with non-hex", "#NACK:ERR210", r[-1].startswith("#NACK:ERR210:"))
        junk = "4d46544f50555001" + "00" * 177  # the magic, then zeros: no valid signature
        r = t.command("#TOPUP " + junk)
        row("tokens", "#TOPUP forged (zeros)", "#ERR216", r[-1].startswith("#ERR216:"))
        row("tokens", "count after the token attempts", "unchanged",
            int(info(t)["CYCLES_LEFT"]) == left)

        # Editing the public area during a cycle: the cycle runs as it began, the next is refused.
        d.args[d.args.index("--sim-speed") + 1] = "1"
        check(d.stop() == 0, "stop")
        d.start()
        t, u = d.tcp(), d.unix()
        t.send(b"#AUTO NOINFO\r")
        time.sleep(0.3)
        other = d.tcp()
        put(other, "stray.txt", "an operator's file")
        r = t.until_final(120)
        row("public area", "a file added during a cycle", "that cycle completes",
            r[-1].startswith("#OK"))
        r = t.command("#AUTO NOINFO", timeout=120)
        row("public area", "the next cycle", "#ERR202 (conflict)",
            r[-1].startswith("#ERR202:the public area holds the file 'stray.txt'"))
        check(other.command("#FDELETE stray.txt")[-1] == "#OK", "cleanup")
        left -= 1
        row("public area", "counts", "one per device", int(info(t)["CYCLES_LEFT"]) == left)

        # Killing the daemon in the middle of a cycle: the count is taken exactly once.
        t.send(b"#AUTO NOINFO\r")
        deadline = time.time() + 30
        while time.time() < deadline:
            st = other.command("#STATUS")[-1]
            if st in ("#STATUS:ERASING", "#STATUS:PROGRAMMING", "#STATUS:VERIFYING"):
                break
            time.sleep(0.02)
        else:
            fail("the cycle never reached the target")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.start()
        t, u = d.tcp(), d.unix()
        i = info(t)
        row("kill", "SIGKILL during a cycle", "its count stays taken, nothing more",
            int(i["CYCLES_LEFT"]) == left - 1 and int(i["NEXT_SERIAL"]) == 500 + (20 - left) + 1)
        left -= 1
        log = get(t, "FLASHER.LOG").decode()
        row("kill", "the cut cycle", "noted in the production records",
            "took a count but have no record" in log)

        # NBD outside the public area (file access mode).
        check(u.command("#REBOOT FILEACCESS", timeout=60) == ["#ACK", "#OK"], "file access")
        s, size = nbd_connect(nbd_port)
        table = subprocess.run(["sfdisk", "-J", d.storage], capture_output=True, text=True)
        if table.returncode == 0:
            part = __import__("json").loads(table.stdout)["partitiontable"]["partitions"][0]
            row("nbd", "export size", "exactly partition 1", size == part["size"] * 512)
        for what, kind, off, n, want in (
                ("read at the end", 0, size, 512, 22),
                ("read across the end", 0, size - 512, 1024, 22),
                ("read at 2^64 - 512", 0, 2 ** 64 - 512, 1024, 22),
                ("read of 64 MiB", 0, 0, 64 << 20, 22),
                ("write at the end", 1, size, 512, 28),
                ("write across the end", 1, size - 512, 1024, 28)):
            payload = b"\xEE" * n if kind == 1 else b""
            err, _ = nbd_request(s, kind, off, n, payload)
            row("nbd", what, "error %d" % want, err == want)
        err, data = nbd_request(s, 0, size - 512, 512)
        row("nbd", "the last public block", "readable, no plaintext", err == 0 and MARK not in data)
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 8, 0, 0))  # disconnect
        s.close()
        check(u.command("#REBOOT", timeout=60) == ["#ACK", "#OK"], "back")
        t = d.tcp()
        row("nbd", "the secure setup after file access", "intact",
            info(t)["AREA"] == "SECURE" and int(info(t)["CYCLES_LEFT"]) == left)
        no_plaintext(d, "after the rows above")
        check(d.stop() == 0, "stop")

        # Flipped bytes in the secure partition (offline): refused at start, said why.
        table = subprocess.run(["sfdisk", "-J", d.storage], capture_output=True, text=True)
        part2 = __import__("json").loads(table.stdout)["partitiontable"]["partitions"][1]
        base = part2["start"] * 512
        original = open(d.storage, "rb").read()
        for what, offs in (("header", (100,)), ("both state records", (1024 + 100, 5120 + 100)),
                           ("file data", (9216 + 5000,))):
            with open(d.storage, "r+b") as f:
                for off in offs:
                    f.seek(base + off)
                    b = f.read(1)
                    f.seek(base + off)
                    f.write(bytes([b[0] ^ 0x20]))
            d.start()
            t = d.tcp()
            r = t.command("#AUTO NOINFO", timeout=120)
            row("tampering", "a flipped byte in the %s" % what, "#ERR216, no cycle",
                r[-1].startswith("#ERR216:") or r[-1].startswith("#ERR203:"))
            check("passes authentication" in d.log_text() or "damaged or tampered" in d.log_text(),
                  "said why")
            check(d.stop() == 0, "stop")
            with open(d.storage, "wb") as f:
                f.write(original)
        # One state record damaged: the other (older) one is used, and the trust anchor's
        # counter charges what it lacks: no count comes back.
        for slot_off in (1024 + 100, 5120 + 100):
            with open(d.storage, "r+b") as f:
                f.seek(base + slot_off)
                b = f.read(1)
                f.seek(base + slot_off)
                f.write(bytes([b[0] ^ 0x20]))
            d.start()
            t = d.tcp()
            row("tampering", "a flipped byte in one state record", "no count comes back",
                int(info(t)["CYCLES_LEFT"]) <= left)
            check(d.stop() == 0, "stop")
            with open(d.storage, "wb") as f:
                f.write(original)
        d.start()
        t = d.tcp()
        row("tampering", "the original image again", "runs, count unchanged",
            int(info(t)["CYCLES_LEFT"]) == left)
        check(d.stop() == 0, "stop")

    # ---- privileged commands on the serial line ----
    if shutil.which("socat"):
        ours, theirs = os.path.join(work, "host"), os.path.join(work, "prog")
        socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours,
                                  "pty,raw,echo=0,link=" + theirs], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(ours) and os.path.exists(theirs):
                    break
                time.sleep(0.05)
            with Daemon(extra=["--serial", theirs]) as d:
                fd = os.open(ours, os.O_RDWR | os.O_NOCTTY)
                __import__("tty").setraw(fd)
                for cmd in (b"#SECUREAREA CREATE", b"#REBOOT FILEACCESS"):
                    os.write(fd, cmd + b"\r")
                    buf = b""
                    deadline = time.time() + 10
                    while b"\r" not in buf and time.time() < deadline:
                        try:
                            buf += os.read(fd, 100)
                        except BlockingIOError:
                            time.sleep(0.01)
                    row("privileged", cmd.decode() + " over serial", "#NACK:ERR209",
                        buf.split(b"\r")[0] == b"#NACK:ERR209:Only allowed on the local connection")
                os.close(fd)
        finally:
            socat.kill()
            socat.wait()

    # ---- killing the daemon in the middle of the move ----
    with Daemon(size="64M", sim_speed="0", workdir=os.path.join(work, "b")) as d:
        t, u = d.tcp(), d.unix()
        check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
        big = firmware(900000)
        put(t, "_SECURE/Projects/01_W/01_App/app.bin", big)
        put(t, "_SECURE/Projects/01_W/01_App/job.ini",
            "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
        put(t, "_SECURE/Projects/01_W/Cntdown.txt", "7\n")
        check(d.stop() == 0, "stop")
        for delay in (0.05, 0.15, 0.4):
            d.start(wait_ready=False)
            time.sleep(delay)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
        d.start()
        t = d.tcp()
        i = info(t)
        row("kill", "SIGKILL three times during the move", "the whole setup, once, folder gone",
            i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "7"
            and t.command("#FLIST _SECURE")[-1].startswith("#ERR011:"))
        r = t.command("#AUTO NOINFO", timeout=120)
        row("kill", "a cycle after the cut move", "programs the whole firmware",
            r[-1].startswith("#OK") and sim_flash(d, 1)[:len(big)] == big)
        no_plaintext(d, "after the cut move")
        check(d.stop() == 0, "stop")

    width = max(len(a) for _, a, _ in rows)
    print("security suite: %d rows" % len(rows))
    for group, attempt, expected in rows:
        print("  %-12s %-*s -> %s" % (group, width, attempt, expected))
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
