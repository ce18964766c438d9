"""Benchmarks of mintflashd as a whole, each figure next to a peer measured in the same run:
  1. the `_SECURE` move: start-up of mintflashd on a 512 MiB storage image until it is READY
     with AREA=SECURE, the setup (16, 32 and 64 MiB of files) moved into the secure area, next to
     `cp -r` of the same files plus `sync` of the copies, on the same file system;
  2. a gang: 8 slots at realistic sim timing (--sim-speed 1), devices per minute, next to 8 times
     what one slot of the same daemon does alone; also 1 and 4 slots;
  3. the daemon's peak memory (VmHWM) after that gang job; no peer, the goal is a bound.
Lines "ROW\t..." are rows of `make bench`'s table (scripts/bench); the rest are details.
Prints; never fails on speed. Usage: MF_BUILD=build python3 bench/bench_daemon.py [quick]"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("MF_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e", "lib"))
from mfdaemon import MINTFLASH, MINTFLASHD, Client  # noqa: E402

QUICK = len(sys.argv) > 1 and sys.argv[1] == "quick"
MOVE_SIZES_MIB = (16, 32, 64)
GANG_IMAGE = 64 << 10  # bytes programmed per device in the gang rows
GANG_ROUNDS = 2 if QUICK else 4


def row(key, name, ours, peer, ratio, goal, met):
    print("ROW\t%d\t%s\t%s\t%s\t%s\t%s\t%s" % (key, name, ours, peer, ratio, goal,
                                              "yes" if met else "no"), flush=True)


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


class Mintflashd:
    """mintflashd on `storage`, started by us and always stopped by us (by its process)."""

    def __init__(self, work, storage, slots=1, speed="1"):
        self.socket_path = os.path.join(work, "mintflashd.sock")
        self.log_path = os.path.join(work, "mintflashd.log")
        self.args = [MINTFLASHD, "--storage", storage, "--size", "512M", "--tcp", "127.0.0.1:0",
                     "--socket", self.socket_path, "--nbd", "off",
                     "--sim-dir", os.path.join(work, "sim"), "--slots", str(slots),
                     "--sim-speed", speed]
        self.proc = None

    def start(self):
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.log = open(self.log_path, "ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        return self

    def client(self, timeout=120):
        """A connection on the UNIX socket, as soon as it accepts one."""
        deadline = time.perf_counter() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mintflashd exited: " + self.log_text())
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket_path)
                return Client(s)
            except OSError:
                s.close()
                if time.perf_counter() > deadline:
                    raise RuntimeError("mintflashd did not open its socket: " + self.log_text())
                time.sleep(0.002)

    def ready(self, client, area=None, timeout=300, marks=None):
        """Seconds from start until #INFO says READY (and AREA=`area`). `marks` (a dict of log
        texts) gets the seconds from start when each first showed in the log (to 2 ms or so)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if marks is not None:
                text = self.log_text(whole=True)
                for mark in marks:
                    if marks[mark] is None and mark in text:
                        marks[mark] = time.perf_counter() - self.started
            info = dict(line[6:].split("=", 1) for line in client.command("#INFO", timeout=timeout)
                        if line.startswith("#INFO:"))
            if info.get("STATE") == "READY" and (area is None or info.get("AREA") == area):
                return time.perf_counter() - self.started, info
            time.sleep(0.002)
        raise RuntimeError("mintflashd not ready: " + self.log_text())

    def memory(self):
        """(VmHWM, VmRSS) in MiB."""
        values = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(value.split()[0]) / 1024.0
        return values.get("VmHWM", 0.0), values.get("VmRSS", 0.0)

    def log_text(self, whole=False):
        with open(self.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        return text if whole else text[-2000:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def make_setup(root, mib):
    """A `_SECURE` folder of `mib` projects, each a 1 MiB firmware for a SIM-F4-1M with its
    job.ini, count-down and serial number; returns the list of files."""
    files = []
    for n in range(1, mib + 1):
        project = os.path.join(root, "_SECURE", "Projects", "%02d_P%d" % (n, n))
        job = os.path.join(project, "01_App")
        os.makedirs(job)
        contents = {
            os.path.join(job, "app.bin"): os.urandom(1 << 20),
            os.path.join(job, "job.ini"): b"[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
                                           b"address = 0x08000000\n[serial]\n"
                                           b"address = 0x080FF000\nlength = 4\n",
            os.path.join(project, "Cntdown.txt"): b"100000\r\n",
            os.path.join(project, "Serial.txt"): b"1000\r\n",
        }
        for path, data in contents.items():
            with open(path, "wb") as f:
                f.write(data)
            files.append(path)
    return files


def move_once(case, mib):
    """One move of a fresh `mib` MiB setup: (seconds until READY, marks, seconds of a start with
    nothing to move, seconds of the peer)."""
    os.makedirs(case)
    storage = os.path.join(case, "storage.img")
    run(MINTFLASH, "storage", "init", storage, "--size", "512M", "--secure-area")
    # A first start makes the keystore and the identity: not part of a move.
    d = Mintflashd(case, storage).start()
    try:
        d.ready(d.client())
    finally:
        d.stop()
    os.unlink(d.log_path)  # the marks below are looked for in the next start's log only
    source = os.path.join(case, "src")
    files = make_setup(source, mib)
    run(MINTFLASH, "storage", "put", "-r", storage, os.path.join(source, "_SECURE"), "/")
    run("sync")
    d = Mintflashd(case, storage).start()
    marks = {"moving _SECURE": None, "moved _SECURE": None, "setup loaded": None}
    try:
        ours, info = d.ready(d.client(), "SECURE", marks=marks)
    finally:
        d.stop()
    if info.get("PROJECT") == "" or "PROBLEM" in info:
        print("  (setup after the move: %r)" % info)
    d = Mintflashd(case, storage).start()
    try:
        again, _ = d.ready(d.client(), "SECURE")
    finally:
        d.stop()
    # The peer: the same files copied and made durable on the same file system.
    run("sync")
    copy = os.path.join(case, "copy")
    prefix = os.path.join(source, "_SECURE")
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", prefix, copy], check=True)
    subprocess.run(["sync"] + [copy + f[len(prefix):] for f in files], check=True)
    peer = time.perf_counter() - t0
    shutil.rmtree(case, ignore_errors=True)
    return ours, marks, again, peer


def bench_move(work):
    reps = 1 if QUICK else 3
    print("the _SECURE move at start-up, 512 MiB storage image (keystore anchor), medians of %d "
          "fresh moves (%d for the table's size; the disk's speed swings):" % (reps, reps + 2))
    print("  %-8s %18s %22s %20s %8s" % ("setup", "start until READY", "start, nothing to move",
                                         "cp -r + sync", "ratio"))
    for mib in MOVE_SIZES_MIB[-1:] if QUICK else MOVE_SIZES_MIB:
        n = reps + 2 if mib == MOVE_SIZES_MIB[-1] and not QUICK else reps
        runs = [move_once(os.path.join(work, "move%d-%d" % (mib, i)), mib) for i in range(n)]
        ours = statistics.median(r[0] for r in runs)
        again = statistics.median(r[2] for r in runs)
        peer = statistics.median(r[3] for r in runs)
        print("  %3d MiB %15.2f s %20.2f s %18.2f s %7.2fx" % (mib, ours, again, peer,
                                                               ours / peer))
        marks = [r[1] for r in runs if None not in r[1].values()]
        if marks:
            print("          (as the log shows it: move started at %.2f s, files in the secure "
                  "area at %.2f s, the _SECURE folder removed and the setup loaded at %.2f s)"
                  % tuple(statistics.median(m[k] for m in marks)
                          for k in ("moving _SECURE", "moved _SECURE", "setup loaded")))
        if mib == MOVE_SIZES_MIB[-1]:
            row(40, "move a %d MiB setup into the secure area of a 512 MiB storage image "
                    "(start-up until READY)" % mib,
                "%.2f s" % ours, "cp -r + sync of the same files: %.2f s" % peer,
                "%.1fx" % (ours / peer), "<= 1.3x", ours / peer <= 1.3)


def auto(client, slots, rounds):
    """Seconds for `rounds` #AUTO on the selected `slots`; checks every device came out OK."""
    t0 = time.perf_counter()
    for _ in range(rounds):
        reply = client.command("#AUTO NOINFO", timeout=600)
        ok = sum(1 for line in reply if line.startswith("#OK (") or
                 (line.startswith("#RESULT:") and ":#OK (" in line))
        if ok != slots:
            raise RuntimeError("#AUTO on %d slots: %r" % (slots, reply))
    return time.perf_counter() - t0


def bench_gang(work):
    print("gang at realistic sim timing (--sim-speed 1), %d KiB per device (SIM-F4-1M: erase "
          "64 KiB and the 128 KiB sector of the serial number, program, verify by CRC), %d rounds:"
          % (GANG_IMAGE >> 10, GANG_ROUNDS))
    print("  %-6s %16s %22s %8s %14s" % ("slots", "devices/min", "slots x one slot alone",
                                         "ratio", "peak RSS"))
    source = os.path.join(work, "gang-src")
    job = os.path.join(source, "Projects", "01_Gang", "01_App")
    os.makedirs(job)
    with open(os.path.join(job, "app.bin"), "wb") as f:
        f.write(os.urandom(GANG_IMAGE))
    with open(os.path.join(job, "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
                "[serial]\naddress = 0x080FF000\nlength = 4\n")
    with open(os.path.join(source, "Projects", "01_Gang", "Cntdown.txt"), "w") as f:
        f.write("1000000\r\n")
    with open(os.path.join(source, "Projects", "01_Gang", "Serial.txt"), "w") as f:
        f.write("1\r\n")
    for slots in (1, 4, 8):
        case = os.path.join(work, "gang%d" % slots)
        os.makedirs(case)
        storage = os.path.join(case, "storage.img")
        run(MINTFLASH, "storage", "init", storage, "--size", "64M")
        run(MINTFLASH, "storage", "put", "-r", storage, os.path.join(source, "Projects"), "/")
        d = Mintflashd(case, storage, slots=slots).start()
        try:
            c = d.client()
            d.ready(c)
            auto(c, slots, 1)  # makes every slot's device: not counted
            if slots > 1:
                c.command("#SELMODULE 1")
            alone = GANG_ROUNDS / auto(c, 1, GANG_ROUNDS) * 60
            if slots > 1:
                c.command("#SELMODULE *")
                gang = slots * GANG_ROUNDS / auto(c, slots, GANG_ROUNDS) * 60
            else:
                gang = alone
            peak, rss = d.memory()
        finally:
            d.stop()
        print("  %-6d %16.1f %22.1f %7.2fx %10.1f MiB" % (slots, gang, slots * alone,
                                                          gang / (slots * alone), peak))
        if slots == 8:
            row(70, "gang: 8 slots, realistic sim timing, %d KiB per device" % (GANG_IMAGE >> 10),
                "%.1f devices/min" % gang, "8 x one slot alone: %.1f devices/min" % (8 * alone),
                "%.2fx" % (gang / (8 * alone)), ">= 0.9x of 8x", gang / (8 * alone) >= 0.9)
            row(80, "daemon memory with an 8-slot gang job", "%.1f MiB peak RSS (VmHWM)" % peak,
                "-", "-", "< 32 MiB", peak < 32)
        shutil.rmtree(case, ignore_errors=True)


def main():
    for program in (MINTFLASH, MINTFLASHD):
        if not os.access(program, os.X_OK):
            print("bench_daemon: skipped, %s is not built" % program)
            return 0
    work = tempfile.mkdtemp(prefix="mf-bench-daemon-")
    try:
        bench_move(work)
        print()
        bench_gang(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
