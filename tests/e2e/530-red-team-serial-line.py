"""A contract manufacturer at the programmer's serial line (red team; a socat pseudo-terminal
pair, as e2e.402). What TCP refuses is refused here too, and the line cannot be used to wear the
programmer down for everyone:

1. With a setup in the secure area: `_SECURE` takes no plain file and no folder over the serial
   line, and on this programmer without a pin no package either (a package signed by anyone
   would replace the owner's setup at the next start); `#SECUREAREA REMOVE` is the local
   connection's. A byte received with a parity error reads as a NUL: a privileged command with
   one in it is no command at all. After all of it the setup runs as it did, nothing of
   `_SECURE` is left, and the count is where it was.
2. A line that never ends (1 MiB without a CR) is refused as too long and costs nothing: the
   next line is answered.
3. The line hangs up (the other side of the pseudo-terminal goes, as a USB serial adapter that
   is pulled): before, poll() reported the dead line ready on every round and the daemon's loop
   spun at full speed for as long as it ran (one core of the programmer's burnt, every other
   client and every cycle sharing what was left). Now the line is tried again once a second:
   the daemon's read() calls while it is idle stay few (counted in /proc/PID/io, not timed),
   the log says the line hung up, and TCP and cycles are served as before."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, fail, info, put  # noqa: E402
from mfprobe import pty_pair  # noqa: E402

if not shutil.which("socat"):
    print("skip: socat is not installed")
    sys.exit(77)

SECURE_ONLY = ("#ERR209:Over TCP and serial, _SECURE takes a sealed package "
               "(_SECURE/<name>.mfp) and nothing else: use the local connection")
UNPINNED = ("#ERR209:Over TCP and serial, _SECURE takes no package here: no owner is pinned, so "
            "a package signed by anyone would replace the installed setup (securearea create "
            "--owner pins one): use the local connection")
LOCAL_ONLY = "#NACK:ERR209:Only allowed on the local connection"
NO_FOLDER = "#ERR011:File read failed (no such file or directory)"


def syscalls_read(pid):
    with open("/proc/%d/io" % pid) as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["syscr"])


work = tempfile.mkdtemp(prefix="mf-red-serial-")
ours, theirs = os.path.join(work, "host"), os.path.join(work, "prog")
socat, fd = pty_pair(ours, theirs)
try:
    pending = b""

    def line(timeout=30):
        global pending
        deadline = time.time() + timeout
        while b"\r" not in pending:
            if time.time() > deadline:
                fail("no reply on the serial line; got %r" % pending)
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = b""
            if chunk:
                pending += chunk
            else:
                time.sleep(0.01)
        text, pending = pending.split(b"\r", 1)
        return text.decode(errors="replace")

    def send(data):
        while data:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                time.sleep(0.01)

    def serial(command):
        """Sends one command line; returns its reply up to its final line."""
        send(command + b"\r")
        got = [line()]
        while got[-1] == "#ACK":
            got.append(line())
        return got

    with Daemon(size="32M", extra=["--serial", theirs]) as d:
        t, u = d.tcp(), d.unix()
        check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
        put(u, "_SECURE/Projects/01_W/01_App/app.bin", os.urandom(4000))
        put(u, "_SECURE/Projects/01_W/01_App/job.ini",
            "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
        put(u, "_SECURE/Projects/01_W/Cntdown.txt", "5\n")
        check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
        check((info(t)["AREA"], info(t)["CYCLES_LEFT"]) == ("SECURE", "5"), "installed")

        # 1. What TCP refuses.
        for cmd, want in ((b"#MKDIR _SECURE", ["#ACK", SECURE_ONLY]),
                          (b"#MKDIR _secure.", ["#ACK", SECURE_ONLY]),
                          (b"#FOPEN _SECURE/Cntdown.txt", ["#ACK", SECURE_ONLY]),
                          (b"#FOPEN _SECURE\\Projects\\01_W\\Cntdown.txt", ["#ACK", SECURE_ONLY]),
                          (b"#FOPEN _SECURE/p.mfp", ["#ACK", UNPINNED]),
                          (b"#SECUREAREA REMOVE", [LOCAL_ONLY]),
                          (b"#SECUREAREA\x00REMOVE", ["#NACK:ERR210:Invalid character"]),
                          (b"#SECUREAREA REM\x00VE", ["#NACK:ERR210:Invalid character"]),
                          (b"#FLIST _SECURE", ["#ACK", NO_FOLDER])):
            got = serial(cmd)
            check(got == want, "%r over serial: expected %r, got %r" % (cmd, want, got))
        i = info(t)
        check((i["AREA"], i["CYCLES_LEFT"], i["MOVE_ERROR"]) == ("SECURE", "5", ""),
              "the setup as it was: %r" % i)

        # 2. A line that never ends, then a line.
        send(b"#" + b"A" * (1 << 20))
        check(serial(b"") == ["#NACK:ERR210:Line too long"], "the endless line refused")
        got = serial(b"#STATUS")
        check(got[:2] == ["#ACK", "#STATUS:READY"] or got == ["#ACK"], "answered: %r" % got)
        if got == ["#ACK"]:
            check(line() == "#STATUS:READY", "status after the endless line")

        # 3. The line hangs up: the daemon does not spin on it.
        os.close(fd)
        socat.kill()
        socat.wait()
        check(t.command("#STATUS") == ["#ACK", "#STATUS:READY"], "TCP answers")
        before = syscalls_read(d.proc.pid)
        time.sleep(2)
        reads = syscalls_read(d.proc.pid) - before
        # Idle, with the line retried once a second: a few reads. Spinning: one per round, tens
        # of thousands a second on any machine.
        check(reads < 200, "the daemon read %d times in 2 s of idleness: it spins on the dead "
                           "line" % reads)
        check("the serial line hung up" in d.log_text(), "the log says so:\n" + d.log_text())
        r = t.command("#AUTO NOINFO", timeout=120)
        check(r[0] == "#ACK" and r[-1].startswith("#OK (Total"), "a cycle after it: %r" % r)
        check(info(t)["CYCLES_LEFT"] == "4", "one count")
        check(d.stop() == 0, "stops cleanly")
    print("ok")
finally:
    if socat.poll() is None:
        socat.kill()
        socat.wait()
    shutil.rmtree(work, ignore_errors=True)
