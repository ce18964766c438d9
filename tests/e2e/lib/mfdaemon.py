"""Helpers for end-to-end tests of mintflashd: start a daemon on loopback with a temp storage image
and free ports, talk the raw ASCII protocol to it, and always stop it (also when a test fails).

Usage:
    with Daemon(slots=2) as d:
        c = d.tcp()
        assert c.command("#STATUS") == ["#ACK", "#STATUS:READY"]
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("MF_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("MF_BUILD", os.path.join(SRC, "build"))
MINTFLASHD = os.path.join(BUILD, "mintflashd")
MINTFLASH = os.path.join(BUILD, "mintflash")

FINAL = re.compile(r"^#(OK|ERR\d{3}|NACK|DONE|SELECTED)")


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


class Client:
    """A raw protocol connection: sends lines, reads CR-terminated replies."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(30)
        self.buffer = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, timeout=30):
        self.sock.settimeout(timeout)
        while b"\r" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r", 1)
        return line.decode()

    def until_final(self, timeout=60):
        """Reads lines up to a final reply (#OK..., #ERRnnn..., #NACK..., #DONE, #SELECTED...)."""
        lines = []
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no final reply; got %r" % lines)
            line = self.line(left)
            lines.append(line)
            if FINAL.match(line):
                return lines

    def command(self, text, timeout=60, lines=1):
        """Sends a command and returns its reply lines. #STATUS and #RESULT have no final #OK
        (as in the reference): their reply is #ACK and `lines` lines (one per selected slot)."""
        self.send(text + "\r")
        keyword = text.split()[0].upper() if text.strip() else ""
        if keyword in ("#STATUS", "#RESULT"):
            first = self.line(timeout)
            if not first.startswith("#ACK"):
                return [first]
            return [first] + [self.line(timeout) for _ in range(lines)]
        return self.until_final(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def free_port():
    """A loopback port free now, outside the kernel's range of ports for outgoing connections, so
    that none of those (the tests make many) takes it before the daemon binds it: the daemon
    binds its NBD port only when it enters file access mode, seconds later. (A port from bind(0)
    lies in that range: e2e.520 once found its NBD port taken so.)"""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    first, last = (10000, low - 1) if low > 11000 else (high + 1, 65535)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(first, last)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """mintflashd on a temp storage image; stopped and cleaned up on exit, whatever happens."""

    def __init__(self, slots=1, sim_speed="0", extra=(), storage=None, size="16M", workdir=None,
                 keep=False):
        self.dir = workdir or tempfile.mkdtemp(prefix="mf-e2e-")
        self.own_dir = workdir is None and not keep
        self.storage = storage or os.path.join(self.dir, "storage.img")
        self.sim_dir = os.path.join(self.dir, "sim")
        self.socket_path = os.path.join(self.dir, "mintflashd.sock")
        self.log_path = os.path.join(self.dir, "mintflashd.log")
        self.slots = slots
        self.args = [MINTFLASHD, "--storage", self.storage, "--size", size,
                     "--tcp", "127.0.0.1:0", "--socket", self.socket_path,
                     "--sim-dir", self.sim_dir, "--sim-speed", str(sim_speed),
                     "--slots", str(slots), "--nbd", "127.0.0.1:%d" % free_port()] + list(extra)
        self.proc = None
        self.port = None

    def start(self, wait_ready=True):
        self.port = None
        self.log = open(self.log_path, "ab")
        self.log_offset = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            text = self.log_text()[self.log_offset:]
            m = re.search(r"listening on tcp [0-9.]+:(\d+)", text)
            if m and os.path.exists(self.socket_path):
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                fail("mintflashd exited with %s:\n%s" % (self.proc.returncode, text))
            time.sleep(0.05)
        else:
            fail("mintflashd did not start:\n" + self.log_text())
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        c = self.tcp()
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                status = c.command("#STATUS")
                if not any("INITIALIZING" in s for s in status):
                    return
                time.sleep(0.05)
            fail("still initializing after %ss" % timeout)
        finally:
            c.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tcp(self, source="127.0.0.1"):
        """A TCP connection from `source` (any 127.x.y.z: the daemon limits the connections
        from one address)."""
        return Client(socket.create_connection(("127.0.0.1", self.port), source_address=(source, 0)))

    def unix(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.socket_path)
        return Client(s)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon; returns its exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("mintflashd did not stop within %ss of signal %s" % (timeout, sig))

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            # __exit__ is not called when __enter__ fails: never leave a daemon behind.
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, kind, value, tb):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if kind is not None:
            print("---- mintflashd log ----\n" + self.log_text(), file=sys.stderr)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def info(client):
    """#INFO as a dict: KEY -> value."""
    return dict(line[6:].split("=", 1) for line in client.command("#INFO")
                if line.startswith("#INFO:"))


def put(client, path, data):
    """Writes a file into the public area through #FOPEN/#FWRITE (creating folders)."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        client.command("#MKDIR " + "/".join(parts[:i]))
    if isinstance(data, str):
        data = data.encode()
    r = client.command("#FOPEN " + path)
    check(r[-1] == "#OK", "FOPEN %s: %r" % (path, r))
    for off in range(0, len(data), 512):
        chunk = data[off:off + 512]
        r = client.command("#FWRITE %x,%x:%s" % (off, len(chunk), chunk.hex()))
        check(r[-1] == "#OK", "FWRITE %s at %x: %r" % (path, off, r))
    client.command("#FCLOSE")


def get(client, path):
    """Reads a file of the public area through #FOPENREAD and #FREAD."""
    r = client.command("#FOPENREAD " + path)
    check(r[-1] == "#OK", "FOPEN %s: %r" % (path, r))
    size = int(client.command("#FSIZE")[-1].split(":")[1], 16)
    data = b""
    while len(data) < size:
        r = client.command("#FREAD %x,200" % len(data))[-1]
        m = re.match(r"^#OK:([0-9a-f]+):([0-9a-f]*)$", r)
        check(m, "FREAD reply %r" % r)
        data += bytes.fromhex(m.group(2))
    client.command("#FCLOSE")
    return data


def commander(args, cwd, device=None, expect=0, timeout=120):
    """Runs the commander with `args` in `cwd`, on the UNIX socket `device` when given; fails the
    test when its exit status is not `expect` (None: any). Returns the CompletedProcess."""
    env = dict(os.environ)
    if device:
        env["MINTFLASH_DEVICE"] = "unix:" + device
    p = subprocess.run([MINTFLASH] + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if expect is not None and p.returncode != expect:
        fail("mintflash %s: exit %d, expected %d\nstdout: %s\nstderr: %s"
             % (" ".join(args), p.returncode, expect, p.stdout, p.stderr))
    return p


def firmware(size, seed=1):
    """Deterministic firmware bytes."""
    out = bytearray()
    x = seed
    for _ in range(size):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def simple_project(client, count=3, serial=100, device="SIM-F4-1M", base=0x08000000,
                   size=20000, project="01_Widget", extra_job=""):
    """Uploads a one-job project programming `size` bytes at `base` with a serial number."""
    fw = firmware(size)
    put(client, "Projects/%s/01_App/app.bin" % project, fw)
    put(client, "Projects/%s/01_App/job.ini" % project,
        "[job]\ndevice = %s\n%s[file]\npath = app.bin\naddress = 0x%X\n"
        "[serial]\naddress = 0x%X\nlength = 4\n" % (device, extra_job, base, base + 0x40000))
    if count is not None:
        put(client, "Projects/%s/Cntdown.txt" % project, "%d\r\n" % count)
    put(client, "Projects/%s/Serial.txt" % project, "%d\r\n" % serial)
    return fw


def sim_flash(daemon, slot):
    with open(os.path.join(daemon.sim_dir, "slot%d" % slot, "flash.bin"), "rb") as f:
        return f.read()


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class Swtpm:
    """A software TPM 2.0 (swtpm) on loopback, for the --tpm trust anchor. Its command port is
    `port`, its control port port + 1; `tcti` is what mintflashd's --tpm takes. The state
    folder survives stop()/start() (a power cycle of the TPM); everything stops on exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mf-swtpm-")
        self.proc = None
        self.port = None

    @staticmethod
    def available():
        return shutil.which("swtpm") is not None

    def _free_pair(self):
        for _ in range(50):
            port = free_port()
            if port >= 65535:
                continue
            try:
                probe = socket.socket()
                probe.bind(("127.0.0.1", port + 1))
                probe.close()
                return port
            except OSError:
                continue
        fail("no free pair of loopback ports for swtpm")

    def start(self):
        for _ in range(5):
            port = self.port or self._free_pair()
            out = open(os.path.join(self.dir, "swtpm.out"), "ab")
            # It dies with the test, even one killed without running its clean-up.
            self.proc = subprocess.Popen(preexec_fn=_die_with_parent, args=
                ["swtpm", "socket", "--tpm2",
                 "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % port,
                 "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (port + 1),
                 "--tpmstate", "dir=" + self.dir, "--flags", "not-need-init,startup-clear"],
                stdout=out, stderr=out)
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port + 1), timeout=1).close()
                    self.port = port
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            self.port = None  # a port taken in between: try another pair
        fail("swtpm did not start:\n" + open(os.path.join(self.dir, "swtpm.out")).read())

    @property
    def tcti(self):
        return "swtpm:host=127.0.0.1,port=%d" % self.port

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, kind, value, tb):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False
