"""The serial line comes back after a hang-up (review of bb14f81). A USB serial adapter that is
pulled and plugged in again, or a pseudo-terminal whose other side goes and comes back, is a new
device behind the same name: the descriptor the daemon holds stays hung up for good (a tty that
hung up reads end of file, or EIO, for ever). Before, the daemon "tried again once a second" by
reading that same descriptor, so the serial line was lost until the daemon restarted. Now the
retry opens the line's device again by its name: a command sent on the new line is answered, the
log says the line is back, and a second hang-up is handled as the first.

A socat pseudo-terminal pair (as e2e.530) stands for the adapter; socat's link= names stand for
the device name (/dev/ttyUSB0), which a new pair takes over."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, fail  # noqa: E402
from mfprobe import pty_pair  # noqa: E402

if not shutil.which("socat"):
    print("skip: socat is not installed")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="mf-serial-back-")
ours, theirs = os.path.join(work, "host"), os.path.join(work, "prog")
socat = None


def plug():
    """A new pty pair behind the same names; returns our side, raw and non-blocking."""
    global socat
    socat, fd = pty_pair(ours, theirs)
    return fd


def unplug(fd):
    os.close(fd)
    socat.kill()
    socat.wait()


def answered(fd, timeout=60):
    """Sends #STATUS until a reply comes (the daemon opens the line again within its retry);
    returns the reply's first line."""
    got = b""
    deadline = time.time() + timeout
    next_send = 0
    while b"\r" not in got:
        if time.time() > deadline:
            fail("the serial line never came back; got %r" % got)
        if time.time() >= next_send:
            os.write(fd, b"#STATUS\r")
            next_send = time.time() + 3
        try:
            got += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            time.sleep(0.05)
    return got.split(b"\r", 1)[0].decode(errors="replace")


def wait_log(d, text, count, timeout=60):
    deadline = time.time() + timeout
    while d.log_text().count(text) < count:
        if time.time() > deadline:
            fail("the log never said %r %d times:\n%s" % (text, count, d.log_text()))
        time.sleep(0.1)


try:
    fd = plug()
    with Daemon(extra=["--serial", theirs]) as d:
        check(answered(fd) == "#ACK", "the line works at first")
        for round_ in (1, 2):
            unplug(fd)
            wait_log(d, "the serial line hung up", round_)
            fd = plug()
            check(answered(fd) == "#ACK", "the line answers after hang-up %d" % round_)
            wait_log(d, "the serial line is back", round_)
        check(d.tcp().command("#STATUS") == ["#ACK", "#STATUS:READY"], "TCP answers")
        check(d.stop() == 0, "stops cleanly")
    print("ok")
finally:
    if socat is not None and socat.poll() is None:
        socat.kill()
        socat.wait()
    shutil.rmtree(work, ignore_errors=True)
