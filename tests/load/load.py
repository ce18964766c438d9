"""Load test (make soak), on every channel. First, for LOAD_SECONDS (default 60), an 8-slot gang
job runs on sim targets with realistic timing (its rounds sent over TCP and the UNIX socket in
turn) while 64 TCP clients, 8 UNIX-socket clients and the serial line send status, file and
malformed commands, some one byte a second, some vanishing mid-command. Then, for
LOAD_NBD_SECONDS (default a third of that, at least 10), the programmer is in file access mode:
NBD clients write, read back and read across the export (and past its end), nbdcopy copies it
whole, some clients vanish mid-request, while the command channels keep asking for #STATUS.
Passes when nothing crashes or hangs (a generous timeout marks a hang, never a speed) and every
result is right: each device's sim flash holds the firmware and its serial number, the serial
numbers are 1..N each once (in FLASHER.LOG too, slot by slot), the count is exact, every
#STATUS is answered, NBD reads return what is there, the NBD writes are in the file after the
reboot and the volume passes fsck.fat. Prints response times and the daemon's RSS over time.
Loopback only; stops by itself."""
import functools
import os
import random
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e", "lib"))
from mfdaemon import (Client, Daemon, check, firmware, free_port, get, put,  # noqa: E402
                      sim_flash, simple_project)

SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
NBD_SECONDS = float(os.environ.get("LOAD_NBD_SECONDS", str(max(10.0, SECONDS / 3))))
CLIENTS = int(os.environ.get("LOAD_CLIENTS", "64"))
UNIX_CLIENTS = int(os.environ.get("LOAD_UNIX_CLIENTS", "8"))
NBD_CLIENTS = int(os.environ.get("LOAD_NBD_CLIENTS", "4"))
SLOTS = 8
HANG = 30.0  # seconds without an answer: a hang
COUNT = 100000
FW_SIZE = 64 * 1024
SERIAL_AT = 0x40000  # simple_project: the serial number's offset in the device's flash
SCRATCH = "NBDLOAD.BIN"  # the file whose sectors the NBD clients rewrite
SCRATCH_SIZE = 256 * 1024
FILE_ACCESS_ONLY = "#NACK:ERR208:Not available in file access mode"
READ_SYNTAX = "#NACK:ERR210:Expected <Offset>,<NumBytes> in hex"


def garbage(rnd, file_access):
    """A malformed line and the exact reply it must get."""
    read = FILE_ACCESS_ONLY if file_access else READ_SYNTAX
    return rnd.choice([(b"#NOPE\r", "#NACK"), (b"garbage\r", "#NACK"),
                       (b"\x00\xffjunk\r", "#NACK"), (b"#FREAD zz\r", read), (b"#FREAD\r", read),
                       (b"#" + b"X" * 3000 + b"\r", "#NACK:ERR210:Line too long")])

lock = threading.Lock()
errors = []
latencies = {}  # channel -> seconds per answered #STATUS (or NBD read)
counts = {}  # what -> how many times
rss = []  # (phase, MiB) once a second
phase = ["stand-alone"]
done = threading.Event()  # the whole run is over


def record_error(text, stop):
    with lock:
        errors.append(text)
    stop.set()


def note(channel, seconds=None, what=None):
    with lock:
        if seconds is not None:
            latencies.setdefault(channel, []).append(seconds)
        if what:
            counts[what] = counts.get(what, 0) + 1


STATES = ("INITIALIZING", "CONNECTING", "UNLOCKING", "ERASING", "PROGRAMMING", "VERIFYING",
          "PROTECTING", "STARTING", "READY")  # docs/protocol.md, stand-alone mode


def status_states(lines, file_access):
    """True when `lines` is #ACK and one #STATUS:<slot>:<state> per slot, in slot order, each a
    state of the mode."""
    if len(lines) != 1 + SLOTS or lines[0] != "#ACK":
        return False
    states = ("FILEACCESS",) if file_access else STATES
    return all(line in ["#STATUS:%d:%s" % (slot, state) for state in states]
               for slot, line in enumerate(lines[1:], 1))


def command_client(channel, connect, n, stop, file_access):
    """Status, #INFO, file round trips, garbage and vanishing, on one TCP or UNIX connection."""
    rnd = random.Random(n * 2 + file_access)
    tag = "%s client %d%s" % (channel, n, " (file access)" if file_access else "")
    try:
        c = connect()
        c.sock.settimeout(HANG)
        name = "load%s%02d.txt" % (channel[0], n)
        while not stop.is_set():
            kind = rnd.random()
            t0 = time.monotonic()
            if kind < 0.45:
                r = c.command("#STATUS", timeout=HANG, lines=SLOTS)
                note(channel, time.monotonic() - t0)
                if not status_states(r, file_access):
                    record_error("%s: #STATUS answered %r" % (tag, r), stop)
            elif kind < 0.5:
                r = c.command("#INFO", timeout=HANG)
                mode = "FILEACCESS" if file_access else "STANDALONE"
                if r[-1] != "#OK" or "#INFO:MODE=" + mode not in r:
                    record_error("%s: #INFO answered %r" % (tag, r), stop)
            elif kind < 0.75:
                data = os.urandom(rnd.randrange(1, 200))
                r0 = c.command("#FOPEN " + name, timeout=HANG)
                r = c.command("#FWRITE 0,%x:%s" % (len(data), data.hex()), timeout=HANG)
                r2 = c.command("#FREAD 0,%x" % len(data), timeout=HANG)
                read = "#OK:%02x:%s" % (len(data), data.hex())
                want = ([[FILE_ACCESS_ONLY]] * 3 if file_access else
                        [["#ACK", "#OK"], ["#ACK", "#OK"], ["#ACK", read]])
                if [r0, r, r2] != want:
                    record_error("%s: file round trip %r %r %r" % (tag, r0, r, r2), stop)
            elif kind < 0.9:
                line, want = garbage(rnd, file_access)
                c.send(line)
                r = c.line(HANG)
                if r != want:
                    record_error("%s: %r answered %r" % (tag, line[:20], r), stop)
            else:
                # Vanish mid-command, then come back.
                c.send(b"#STAT")
                c.close()
                c = connect()
                c.sock.settimeout(HANG)
                note(channel, what=channel + " vanished")
            time.sleep(rnd.random() * 0.05)
        c.close()
    except Exception as e:  # noqa: BLE001 - any failure of a client is a test failure
        record_error("%s: %r" % (tag, e), stop)


def slow_client(channel, connect, stop, file_access):
    """#STATUS one byte a second; the answer is checked whole."""
    try:
        c = connect()
        while not stop.is_set():
            for b in b"#STATUS\r":
                c.send(bytes([b]))
                time.sleep(1)
                if stop.is_set():
                    break
            else:
                r = [c.line(HANG) for _ in range(1 + SLOTS)]
                if not status_states(r, file_access):
                    record_error("slow %s client: #STATUS answered %r" % (channel, r), stop)
        c.close()
    except Exception as e:  # noqa: BLE001
        record_error("slow %s client: %r" % (channel, e), stop)


def check_device(d, slot, devices, fw):
    """The device in `slot` holds the firmware and a serial number; returns that number."""
    mem = sim_flash(d, slot)
    if mem[:len(fw)] != fw:
        return None
    serial = int.from_bytes(mem[SERIAL_AT:SERIAL_AT + 4], "little")
    devices.append((slot, serial))
    return serial


def gang(d, connects, devices, fw, stop, rounds=None):
    """#AUTO on all slots, round after round, over each connection in turn; after each round every
    device's flash is read back."""
    try:
        conns = [connect() for connect in connects]
        n = 0
        while not stop.is_set() and (rounds is None or n < rounds):
            c = conns[n % len(conns)]
            n += 1
            r = c.command("#AUTO NOINFO", timeout=300)
            results = [x for x in r if x.startswith("#RESULT:")]
            if r[-1] != "#DONE" or len(results) != SLOTS:
                record_error("gang: %r" % r, stop)
                break
            for x in results:
                m = re.match(r"#RESULT:(\d+):#OK \(", x)
                if not m:
                    record_error("gang: a cycle failed: %r" % x, stop)
                elif check_device(d, int(m.group(1)), devices, fw) is None:
                    record_error("gang: slot %s does not hold the firmware" % m.group(1), stop)
        for c in conns:
            c.close()
    except Exception as e:  # noqa: BLE001
        record_error("gang: %r" % e, stop)


def serial_client(path, stop, file_access):
    """The serial channel at 9600 baud over a pty pair: status and garbage."""
    rnd = random.Random(99 + file_access)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = termios.B9600
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        termios.tcflush(fd, termios.TCIOFLUSH)
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

        while not stop.is_set():
            if rnd.random() < 0.6:
                t0 = time.monotonic()
                os.write(fd, b"#STATUS\r")
                r = [line() for _ in range(1 + SLOTS)]
                note("serial", time.monotonic() - t0)
                if not status_states(r, file_access):
                    record_error("serial: #STATUS answered %r" % r, stop)
            else:
                text, want = garbage(rnd, file_access)
                os.write(fd, text)
                a = line()
                if a != want:
                    record_error("serial: %r answered %r" % (text, a), stop)
            time.sleep(rnd.random() * 0.1)
        os.close(fd)
    except Exception as e:  # noqa: BLE001
        record_error("serial: %r" % e, stop)


def sample_rss(pid):
    while not done.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append((phase[0], int(line.split()[1]) // 1024))
        except OSError:
            record_error("the daemon is gone", done)
        time.sleep(1)


# ---- NBD (file access mode) ----

NBD_READ, NBD_WRITE, NBD_DISC, NBD_FLUSH = 0, 1, 2, 3
NBD_FLAG_FUA = 1
EINVAL, ENOSPC = 22, 28


class NbdClient:
    """A minimal NBD client: fixed newstyle handshake, NBD_OPT_GO on the export "public", simple
    replies, one request at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        self.handle = 0
        if self.take(18)[:16] != b"NBDMAGICIHAVEOPT":
            raise ValueError("no NBD greeting")
        name = b"public"
        self.sock.sendall(struct.pack(">I", 3) + b"IHAVEOPT"
                          + struct.pack(">III", 7, 6 + len(name), len(name)) + name + b"\0\0")
        self.size = None
        while True:
            _magic, _option, reply, length = struct.unpack(">QIII", self.take(20))
            body = self.take(length)
            if reply & 0x80000000:
                raise ValueError("NBD_OPT_GO refused: %r" % body)
            if reply == 3 and body[:2] == b"\0\0":
                self.size = struct.unpack(">Q", body[2:10])[0]
            if reply == 1:
                break

    def take(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the NBD server closed the connection")
            data += chunk
        return bytes(data)

    def request(self, kind, offset, length, payload=b"", flags=0):
        """Returns (error, data read)."""
        self.handle += 1
        header = struct.pack(">IHHQQI", 0x25609513, flags, kind, self.handle, offset, length)
        self.sock.sendall(header + payload)
        magic, error, handle = struct.unpack(">IIQ", self.take(16))
        if magic != 0x67446698 or handle != self.handle:
            raise ValueError("NBD reply %08x for handle %d" % (magic, handle))
        return error, (self.take(length) if kind == NBD_READ and error == 0 else b"")

    def close(self, polite=True):
        if polite:
            self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, NBD_DISC, 0, 0, 0))
        self.sock.close()


class Export:
    """What the export must read as: the snapshot taken on entering file access mode, except the
    scratch file's sectors, each owned by one writer that knows its current bytes."""

    def __init__(self, snapshot, scratch_sectors):
        self.snapshot = snapshot
        self.owner = {}  # sector -> writer
        self.current = {}  # sector -> its bytes now (kept by its writer)
        self.scratch = scratch_sectors  # the file's sectors in file order
        for i, s in enumerate(scratch_sectors):
            self.owner[s] = i % NBD_CLIENTS
            self.current[s] = snapshot[s * 512:(s + 1) * 512]

    def mismatch(self, offset, data, me):
        """Where `data` read at `offset` differs from what must be there, or None. Sectors of other
        writers are skipped (they may change under the read)."""
        end = offset + len(data)
        for s in range(offset // 512, (end + 511) // 512):
            lo, hi = max(offset, s * 512), min(end, s * 512 + 512)
            got = data[lo - offset:hi - offset]
            if s in self.owner:
                if self.owner[s] != me:
                    continue
                want = self.current[s][lo - s * 512:hi - s * 512]
            else:
                want = self.snapshot[lo:hi]
            if got != want:
                return lo
        return None


def nbd_client(port, me, export, stop):
    """Writes its own sectors of the scratch file (reading each back), reads anywhere, flushes,
    asks past the end, vanishes mid-request."""
    rnd = random.Random(1000 + me)
    mine = [s for s in export.scratch if export.owner[s] == me]

    def wrong(text):
        record_error("nbd %d: %s" % (me, text), stop)

    try:
        c = NbdClient(port)
        size = c.size
        if size != len(export.snapshot):
            wrong("export of %r bytes, partition 1 has %d" % (size, len(export.snapshot)))
        while not stop.is_set():
            kind = rnd.random()
            if kind < 0.35:
                s = rnd.choice(mine)
                data = os.urandom(512)
                flags = NBD_FLAG_FUA if rnd.random() < 0.3 else 0
                err, _ = c.request(NBD_WRITE, s * 512, 512, data, flags)
                if err:
                    wrong("write of sector %d: error %d" % (s, err))
                export.current[s] = data
                t0 = time.monotonic()
                err, got = c.request(NBD_READ, s * 512, 512)
                note("nbd", time.monotonic() - t0, "nbd writes")
                if err or got != data:
                    wrong("sector %d reads back wrong (error %d)" % (s, err))
            elif kind < 0.75:
                n = rnd.choice([1, 511, 512, 4096, 65536, rnd.randrange(1, 200000)])
                offset = rnd.randrange(0, size - n)
                if rnd.random() < 0.5:
                    offset &= ~511
                t0 = time.monotonic()
                err, got = c.request(NBD_READ, offset, n)
                note("nbd", time.monotonic() - t0, "nbd reads")
                bad = export.mismatch(offset, got, me) if not err else offset
                if bad is not None:
                    wrong("read of %d at %d: error %d, wrong from %d" % (n, offset, err, bad))
            elif kind < 0.8:
                err, _ = c.request(NBD_FLUSH, 0, 0)
                if err:
                    wrong("flush: error %d" % err)
            elif kind < 0.95:
                what, want = rnd.choice([((NBD_READ, size, 512), EINVAL),
                                         ((NBD_READ, size - 512, 1024), EINVAL),
                                         ((NBD_WRITE, size, 512), ENOSPC),
                                         ((NBD_WRITE, size - 512, 1024), ENOSPC)])
                payload = os.urandom(what[2]) if what[0] == NBD_WRITE else b""
                err, _ = c.request(*what, payload)
                note("nbd", what="nbd past the end")
                if err != want:
                    wrong("%r past the end: error %d, want %d" % (what, err, want))
            else:
                # Vanish halfway through a request header, then come back.
                c.sock.sendall(struct.pack(">IHH", 0x25609513, 0, NBD_READ))
                c.close(polite=False)
                c = NbdClient(port)
                note("nbd", what="nbd vanished")
        c.close()
    except Exception as e:  # noqa: BLE001
        wrong(repr(e))


def nbdcopy_loop(url, export, workdir, stop):
    """nbdcopy (libnbd's) copies the whole export again and again: what it gets must be there."""
    copy = os.path.join(workdir, "copy.img")
    try:
        while not stop.is_set():
            p = subprocess.run(["nbdcopy", "--connections=1", url, copy], capture_output=True,
                               text=True, timeout=HANG * 4)
            if p.returncode != 0:
                record_error("nbdcopy: %s" % p.stderr, stop)
                break
            with open(copy, "rb") as f:
                data = f.read()
            bad = export.mismatch(0, data, None) if len(data) == len(export.snapshot) else 0
            if bad is not None:
                record_error("nbdcopy: the copy differs at %d" % bad, stop)
            note("nbdcopy", what="nbdcopy copies")
    except Exception as e:  # noqa: BLE001
        record_error("nbdcopy: %r" % e, stop)


def partition1(storage):
    table = subprocess.run(["sfdisk", "-J", storage], capture_output=True, text=True, check=True)
    part = __import__("json").loads(table.stdout)["partitiontable"]["partitions"][0]
    return part["start"] * 512, part["size"] * 512


def run_threads(threads, seconds, stop):
    start = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - start < seconds and not stop.is_set():
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(HANG * 2)
        if t.is_alive():
            errors.append("a thread hangs")
    check(not errors, "errors:\n" + "\n".join(errors[:20]))


def thread(target, *args):
    return threading.Thread(target=target, args=args)


def command_channels(d, serial_path, stop, file_access, tcp, unix, slow):
    """`tcp` and `unix` command clients, `slow` slow ones (two on TCP, one on UNIX), the serial
    line."""
    # Spread over four addresses: the daemon takes at most 64 TCP connections from one.
    threads = [thread(command_client, "tcp", functools.partial(d.tcp, "127.0.0.%d" % (2 + n % 4)),
                      n, stop, file_access) for n in range(tcp)]
    threads += [thread(command_client, "unix", d.unix, n, stop, file_access) for n in range(unix)]
    slow_ones = (("tcp", d.tcp), ("tcp", d.tcp), ("unix", d.unix))[:slow]
    threads += [thread(slow_client, channel, connect, stop, file_access)
                for channel, connect in slow_ones]
    threads += [thread(serial_client, serial_path, stop, file_access)]
    return threads


def run(d, serial_path, workdir):
    t, u = d.tcp(), d.unix()
    fw = simple_project(t, count=COUNT, serial=1, size=FW_SIZE)
    check(fw == firmware(FW_SIZE), "the firmware")
    devices = []  # (slot, serial) of every device programmed, read from its flash
    threading.Thread(target=sample_rss, args=(d.proc.pid,), daemon=True).start()

    # Stand-alone mode: the gang under load on TCP, UNIX and serial.
    stop = threading.Event()
    threads = [thread(gang, d, (d.tcp, d.unix), devices, fw, stop)]
    threads += command_channels(d, serial_path, stop, False, CLIENTS, UNIX_CLIENTS, 3)
    run_threads(threads, SECONDS, stop)
    first_phase = len(devices)

    # File access mode: NBD clients and nbdcopy on the export, the channels asking for #STATUS.
    phase[0] = "file access"
    scratch = os.urandom(SCRATCH_SIZE)
    put(t, SCRATCH, scratch)
    check(u.command("#REBOOT FILEACCESS", timeout=60) == ["#ACK", "#OK"], "into file access mode")
    start, size = partition1(d.storage)
    with open(d.storage, "rb") as f:
        f.seek(start)
        snapshot = f.read(size)
    where = {}
    for s in range(size // 512):
        where.setdefault(snapshot[s * 512:(s + 1) * 512], []).append(s)
    scratch_sectors = []
    for i in range(0, SCRATCH_SIZE, 512):
        places = where.get(scratch[i:i + 512], [])
        check(len(places) == 1,
              "the scratch file's sector %d is on the volume once: %r" % (i // 512, places))
        scratch_sectors.append(places[0])
    export = Export(snapshot, scratch_sectors)
    url = "nbd://127.0.0.1:%d" % nbd_port
    info = subprocess.run(["nbdinfo", "--size", url], capture_output=True, text=True, timeout=HANG)
    check(info.returncode == 0 and int(info.stdout) == size,
          "nbdinfo: %r %r" % (info.stdout, info.stderr))
    stop = threading.Event()
    threads = [thread(nbd_client, nbd_port, n, export, stop) for n in range(NBD_CLIENTS)]
    threads += [thread(nbdcopy_loop, url, export, workdir, stop)]
    threads += command_channels(d, serial_path, stop, True, 8, 2, 1)
    run_threads(threads, NBD_SECONDS, stop)

    # Back in stand-alone mode: the NBD writes are in the file, one more gang round works.
    check(u.command("#REBOOT", timeout=60) == ["#ACK", "#OK"], "back to stand-alone mode")
    t = d.tcp()
    written = b"".join(export.current[s] for s in scratch_sectors)
    check(get(t, SCRATCH) == written, "%s holds what the NBD clients wrote" % SCRATCH)
    check(t.command("#FDELETE " + SCRATCH) == ["#ACK", "#OK"], "delete " + SCRATCH)
    stop = threading.Event()
    gang(d, (d.unix,), devices, fw, stop, rounds=1)
    check(not errors, "errors:\n" + "\n".join(errors[:20]))

    # Every device: one serial number each, 1..N, and FLASHER.LOG says the same slot by slot.
    n = len(devices)
    serials = sorted(s for _, s in devices)
    check(serials == list(range(1, n + 1)), "serial numbers 1..%d each once (first wrong: %r)"
          % (n, next(((i + 1, s) for i, s in enumerate(serials) if s != i + 1), None)))
    log = get(t, "FLASHER.LOG").decode()
    logged = re.findall(r"slot (\d) AUTO project \"Widget\" uid [0-9A-F]{24} serial (\d+) OK", log)
    check(sorted((int(a), int(b)) for a, b in logged) == sorted(devices),
          "FLASHER.LOG names the same slot and serial number for each of the %d devices (%d lines)"
          % (n, len(logged)))
    check(not re.search(r"serial \d+ ERROR", log), "no failed cycle in FLASHER.LOG")
    left = int(get(t, "Projects/01_Widget/Cntdown.txt").decode().split()[0])
    check(COUNT - left == n, "count exact: %d taken, %d devices" % (COUNT - left, n))
    nxt = int(get(t, "Projects/01_Widget/Serial.txt").decode().split()[0])
    check(nxt == n + 1, "next serial number %d after %d devices" % (nxt, n))
    check(d.stop() == 0, "clean exit")
    if shutil.which("fsck.fat"):
        with open(d.storage, "rb") as f:
            f.seek(start)
            volume = f.read(size)
        path = os.path.join(workdir, "public.img")
        with open(path, "wb") as f:
            f.write(volume)
        fsck = subprocess.run(["fsck.fat", "-n", path], capture_output=True, text=True)
        check(fsck.returncode == 0, "fsck.fat -n on the public area:\n" + fsck.stdout + fsck.stderr)
    return first_phase, n


for tool in ("socat", "sfdisk", "nbdinfo", "nbdcopy"):
    check(shutil.which(tool), "the load test needs %s" % tool)
workdir = tempfile.mkdtemp(prefix="mf-load-")
ours, theirs = os.path.join(workdir, "host"), os.path.join(workdir, "programmer")
socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours, "pty,raw,echo=0,link=" + theirs],
                         stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists(ours) and os.path.exists(theirs):
            break
        time.sleep(0.05)
    else:
        check(False, "socat made no pty pair")
    nbd_port = free_port()
    d = Daemon(slots=SLOTS, sim_speed="1", size="64M", workdir=os.path.join(workdir, "daemon"),
               extra=["--serial", theirs, "--nbd", "127.0.0.1:%d" % nbd_port])
    os.makedirs(d.dir)
    with d:
        first_phase, programmed = run(d, ours, workdir)
finally:
    done.set()
    socat.kill()
    socat.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def figures(channel):
    lat = sorted(latencies.get(channel, [0]))
    return "%d times: median %.1f ms, 99th percentile %.1f ms, max %.1f ms" % (
        len(lat), 1000 * statistics.median(lat), 1000 * lat[int(len(lat) * 0.99)], 1000 * lat[-1])


print("load: %.0f s stand-alone, %d TCP + %d UNIX + serial + 3 slow clients, gang of %d: %d devices"
      % (SECONDS, CLIENTS, UNIX_CLIENTS, SLOTS, first_phase))
print("load: %.0f s file access, %d NBD clients + nbdcopy + 8 TCP, 2 UNIX, serial, 1 slow client"
      % (NBD_SECONDS, NBD_CLIENTS))
print("load: %d devices in all (one round after file access), serial numbers 1..%d each once, "
      "each device's flash checked, count exact" % (programmed, programmed))
for channel in ("tcp", "unix", "serial"):
    print("load: #STATUS over %s answered %s" % (channel, figures(channel)))
print("load: NBD: %d reads and %d writes (each read back) answered %s; %d refused past the end, "
      "%d clients vanished mid-request" % (counts.get("nbd reads", 0), counts.get("nbd writes", 0),
                                           figures("nbd"), counts.get("nbd past the end", 0),
                                           counts.get("nbd vanished", 0)))
print("load: nbdcopy copied the export %d times; vanished clients: %d TCP, %d UNIX"
      % (counts.get("nbdcopy copies", 0), counts.get("tcp vanished", 0),
         counts.get("unix vanished", 0)))
for name in ("stand-alone", "file access"):
    mib = [m for p, m in rss if p == name]
    print("load: daemon RSS over time in %s mode (MiB): %s"
          % (name, " ".join(str(m) for m in mib[::max(1, -(-len(mib) // 12))])))
print("ok")
