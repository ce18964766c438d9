"""Load test (make soak): for LOAD_SECONDS (default 60) an 8-slot gang job runs on sim targets with
realistic timing while 64 TCP clients and the serial line send status, file and malformed commands,
some one byte a second, some vanishing mid-command. Passes when nothing crashes or hangs (a
generous timeout marks a hang, never a speed), every cycle's result is right, the count is exact
and every #STATUS is answered. Prints #STATUS response times (median, 99th percentile) and the
daemon's RSS over time. Loopback only; stops by itself."""
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e", "lib"))
from mfdaemon import Client, Daemon, check, get, put, simple_project  # noqa: E402

SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("LOAD_CLIENTS", "64"))
HANG = 30.0  # seconds without an answer: a hang

stop = threading.Event()
lock = threading.Lock()
latencies = []
errors = []
rss = []
serial_answers = []


def record_error(text):
    with lock:
        errors.append(text)
    stop.set()


def status_client(port, n):
    rnd = random.Random(n)
    try:
        c = Client(socket.create_connection(("127.0.0.1", port)))
        c.sock.settimeout(HANG)
        c.command("#SELMODULE 1")
        name = "load%02d.txt" % n
        while not stop.is_set():
            kind = rnd.random()
            t0 = time.monotonic()
            if kind < 0.5:
                r = c.command("#STATUS", timeout=HANG)
                with lock:
                    latencies.append(time.monotonic() - t0)
                if not r[-1].startswith("#STATUS:"):
                    record_error("client %d: #STATUS answered %r" % (n, r))
            elif kind < 0.75:
                data = os.urandom(rnd.randrange(1, 200))
                if c.command("#FOPEN " + name, timeout=HANG)[-1] != "#OK":
                    record_error("client %d: FOPEN failed" % n)
                r = c.command("#FWRITE 0,%x:%s" % (len(data), data.hex()), timeout=HANG)
                r2 = c.command("#FREAD 0,%x" % len(data), timeout=HANG)
                if r[-1] != "#OK" or r2[-1] != "#OK:%02x:%s" % (len(data), data.hex()):
                    record_error("client %d: file round trip %r %r" % (n, r, r2))
            elif kind < 0.9:
                c.send(rnd.choice([b"#NOPE\r", b"garbage\r", b"#FREAD zz\r", b"#" + b"X" * 3000 + b"\r"]))
                r = c.line(HANG)
                if not r.startswith("#NACK"):
                    record_error("client %d: garbage answered %r" % (n, r))
            else:
                # Vanish mid-command, then come back.
                c.send(b"#STAT")
                c.close()
                c = Client(socket.create_connection(("127.0.0.1", port)))
                c.sock.settimeout(HANG)
                c.command("#SELMODULE 1")
            time.sleep(rnd.random() * 0.05)
        c.close()
    except Exception as e:  # noqa: BLE001 - any failure of a client is a test failure
        record_error("client %d: %r" % (n, e))


def slow_client(port):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(HANG)
        while not stop.is_set():
            for b in b"#STATUS\r":
                s.sendall(bytes([b]))
                time.sleep(1)
                if stop.is_set():
                    break
            data = b""
            while data.count(b"\r") < 2 and not stop.is_set():
                data += s.recv(100)
        s.close()
    except Exception as e:  # noqa: BLE001
        record_error("slow client: %r" % e)


def gang(port, results):
    try:
        c = Client(socket.create_connection(("127.0.0.1", port)))
        c.sock.settimeout(HANG)
        while not stop.is_set():
            r = c.command("#AUTO NOINFO", timeout=300)
            with lock:
                results.extend(x for x in r if x.startswith("#RESULT:"))
            if r[-1] != "#DONE":
                record_error("gang: %r" % r)
        c.close()
    except Exception as e:  # noqa: BLE001
        record_error("gang: %r" % e)


def serial_client(path):
    """The serial channel at 9600 baud over a pty pair: status and garbage."""
    rnd = random.Random(99)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = termios.B9600
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        buffer = b""

        def line():
            nonlocal buffer
            deadline = time.monotonic() + HANG
            while b"\r" not in buffer:
                if time.monotonic() > deadline:
                    raise TimeoutError("no reply on the serial line, got %r" % buffer)
                r, _, _ = select.select([fd], [], [], 0.5)
                if r:
                    buffer += os.read(fd, 4096)
            text, buffer = buffer.split(b"\r", 1)
            return text.decode(errors="replace")

        os.write(fd, b"#SELMODULE 1\r")
        if (line(), line()) != ("#ACK", "#SELECTED:1"):
            record_error("serial: #SELMODULE 1 refused")
        while not stop.is_set():
            kind = rnd.random()
            if kind < 0.6:
                os.write(fd, b"#STATUS\r")
                a, b = line(), line()
                if a != "#ACK" or not b.startswith("#STATUS:"):
                    record_error("serial: #STATUS answered %r %r" % (a, b))
                with lock:
                    serial_answers.append(b)
            else:
                os.write(fd, rnd.choice([b"#NOPE\r", b"\x00\xffjunk\r", b"#FREAD\r"]))
                a = line()
                if not a.startswith("#NACK"):
                    record_error("serial: garbage answered %r" % a)
            time.sleep(rnd.random() * 0.1)
        os.close(fd)
    except Exception as e:  # noqa: BLE001
        record_error("serial: %r" % e)


def sample_rss(pid):
    while not stop.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append((time.monotonic(), int(line.split()[1]) // 1024))
        except OSError:
            record_error("the daemon is gone")
        time.sleep(1)


workdir = tempfile.mkdtemp(prefix="mf-load-")
ours, theirs = os.path.join(workdir, "host"), os.path.join(workdir, "programmer")
socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours, "pty,raw,echo=0,link=" + theirs],
                         stderr=subprocess.DEVNULL)
for _ in range(100):
    if os.path.exists(ours) and os.path.exists(theirs):
        break
    time.sleep(0.05)
else:
    socat.kill()
    check(False, "socat made no pty pair")


def run(d):
    c = d.tcp()
    simple_project(c, count=100000, serial=1, size=64 * 1024)
    results = []
    threads = [threading.Thread(target=gang, args=(d.port, results))]
    threads += [threading.Thread(target=status_client, args=(d.port, n)) for n in range(CLIENTS)]
    threads += [threading.Thread(target=slow_client, args=(d.port,)) for _ in range(2)]
    threads += [threading.Thread(target=serial_client, args=(ours,))]
    threads += [threading.Thread(target=sample_rss, args=(d.proc.pid,))]
    start = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - start < SECONDS and not stop.is_set():
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(HANG * 2)
        if t.is_alive():
            errors.append("a thread hangs")
    check(not errors, "errors:\n" + "\n".join(errors[:20]))
    ok = sum(1 for r in results if ":#OK (" in r)
    failed = len(results) - ok
    left = int(get(c, "Projects/01_Widget/Cntdown.txt").decode().split()[0])
    check(100000 - left == len(results), "count exact: %d taken, %d cycles" % (100000 - left, len(results)))
    check(failed == 0, "%d cycles failed: %r" % (failed, [r for r in results if ":#OK (" not in r][:5]))
    check(d.stop() == 0, "clean exit")

    return ok


try:
    with Daemon(slots=8, sim_speed="1", size="64M", extra=["--serial", theirs]) as d:
        ok = run(d)
finally:
    socat.kill()
    socat.wait()

lat = sorted(latencies)
print("load: %.0f s, %d clients + 2 slow + gang of 8: %d devices programmed" % (SECONDS, CLIENTS, ok))
print("load: #STATUS answered %d times: median %.1f ms, 99th percentile %.1f ms, max %.1f ms"
      % (len(lat), 1000 * statistics.median(lat), 1000 * lat[int(len(lat) * 0.99)], 1000 * lat[-1]))
print("load: serial line answered %d #STATUS" % len(serial_answers))
print("load: daemon RSS over time (MiB): " + " ".join(str(m) for _, m in rss[:: max(1, len(rss) // 12)]))
print("ok")
