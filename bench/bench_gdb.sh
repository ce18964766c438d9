#!/usr/bin/env bash
# Benchmark of the gdb target back end: a complete cycle (connect, read UID, erase, program and
# verify 256 KiB, disconnect) into QEMU's lm3s6965evb through mintflashd --target gdb:tcp:...,
# next to GDB's own loader on the same QEMU, the same image, in the same run:
#   gdb-multiarch -batch -ex 'target remote :PORT' -ex load -ex compare-sections
# After one warm-up of each (QEMU translates its code once), rounds alternate between the two;
# the row compares the medians of the complete times (ours: #AUTO until its #OK; GDB's: the whole
# process, as a production script would run it). GDB's start-up, connect and detach alone are
# measured too and printed as measured: when they take as long as the whole run (the difference is
# within the noise), no "loader alone" figure is made up from them.
# Prints the row for `make bench` (scripts/bench) as a ROW line, also when a tool is missing or a
# run fails (then the row says so); never fails on speed, and exits 0.
# The image starts with a vector table to an endless loop: after each detach QEMU runs it.
# Usage: MF_BUILD=build bash bench/bench_gdb.sh [ROUNDS]   (needs qemu-system-arm, gdb-multiarch,
# arm-none-eabi-objcopy and arm-none-eabi-ld)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 0
ROW_TEXT="program + verify 256 KiB into QEMU over GDB"
PEER="gdb-multiarch load + compare-sections"
GOAL=">= 1.5x faster"
row_not_measured() {
    printf 'ROW\t90\t%s\tnot measured: %s\t%s\t-\t%s\t-\n' "$ROW_TEXT" "$1" "$PEER" "$GOAL"
}
for tool in qemu-system-arm gdb-multiarch arm-none-eabi-objcopy arm-none-eabi-ld python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench_gdb: skipped, $tool is not installed"
        row_not_measured "$tool is not installed"
        exit 0
    fi
done
export MF_SRC="$PWD" MF_BUILD="${MF_BUILD:-build}" ROUNDS="${1:-5}" ROW_TEXT PEER GOAL
if [ ! -x "$MF_BUILD/mintflashd" ]; then
    echo "bench_gdb: build $MF_BUILD/mintflashd first"
    row_not_measured "$MF_BUILD/mintflashd is not built"
    exit 0
fi
python3 - <<'EOF'
import os, re, shutil, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["MF_SRC"], "tests", "e2e", "lib"))
from mfdaemon import Daemon, free_port, put

rounds = max(1, int(os.environ["ROUNDS"]))
size = 256 * 1024
row_text, peer, goal = os.environ["ROW_TEXT"], os.environ["PEER"], os.environ["GOAL"]
work = tempfile.mkdtemp(prefix="mf-bench-gdb-")
qemu = None


class Failed(Exception):
    pass


def row(ours, theirs, ratio, met):
    print("ROW\t90\t%s\t%s\t%s\t%s\t%s\t%s" % (row_text, ours, theirs, ratio, goal, met))


def qemu_log():
    try:
        with open(os.path.join(work, "qemu.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def spread(values):
    return "median %.3f s, min %.3f s, max %.3f s (%s)" % (
        statistics.median(values), min(values), max(values),
        ", ".join("%.3f" % v for v in values))


def make_image():
    # 256 KiB of pseudo-random bytes at 0, linked into an ELF both tools load.
    blob = bytearray()
    x = 12345
    for _ in range(size):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        blob.append((x >> 16) & 0xFF)
    # A harmless program at its start: both tools detach at the end, and QEMU then runs it
    # (SP 0x20001000, reset at 0x8: `b .`).
    blob[0:10] = bytes([0x00, 0x10, 0x00, 0x20, 0x09, 0x00, 0x00, 0x00, 0xFE, 0xE7])
    with open(os.path.join(work, "image.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(work, "image.ld"), "w") as f:
        f.write("SECTIONS { .text 0x0 : { *(.data) } }\n")
    for command in (["arm-none-eabi-objcopy", "-I", "binary", "-O", "elf32-littlearm", "-B", "arm",
                     "image.bin", "blob.o"],
                    ["arm-none-eabi-ld", "-T", "image.ld", "-o", "image.elf", "blob.o"]):
        out = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if out.returncode:
            raise Failed("%s: %s" % (command[0], out.stderr.strip()))
    with open(os.path.join(work, "image.elf"), "rb") as f:
        return f.read()


def measure():
    global qemu
    elf = make_image()
    port = free_port()
    qemu = subprocess.Popen(
        ["qemu-system-arm", "-M", "lm3s6965evb", "-S", "-nographic", "-monitor", "none",
         "-serial", "null", "-gdb", "tcp:127.0.0.1:%d" % port,
         "-device", "loader,addr=0x2000FF00,data=0x0102030405060708,data-len=8"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "qemu.log"), "wb"),
        stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        if qemu.poll() is not None:
            raise Failed("qemu exited: " + qemu_log())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise Failed("qemu's gdbstub does not listen")
            time.sleep(0.05)

    gdb = ["gdb-multiarch", "-nx", "-batch", "-ex", "target remote 127.0.0.1:%d" % port]
    elf_path = os.path.join(work, "image.elf")
    ours, ours_engine, theirs, theirs_bare = [], [], [], []
    with Daemon(extra=["--target", "gdb:tcp:127.0.0.1:%d" % port], workdir=work) as d:
        c = d.tcp()
        put(c, "Projects/01_Bench/01_Image/image.elf", elf)
        put(c, "Projects/01_Bench/01_Image/job.ini",
            "[job]\ndevice = LM3S6965\nverify = crc\n[file]\npath = image.elf\n")

        def ours_once():
            t0 = time.perf_counter()
            reply = c.command("#AUTO", timeout=300)
            took = time.perf_counter() - t0
            m = re.search(r"#OK \(Total ([0-9.]+)s", reply[-1])
            if not m:
                raise Failed("our cycle failed: %r\n%s\nqemu: %s" % (reply, d.log_text(),
                                                                     qemu_log()))
            return took, float(m.group(1))

        def gdb_once(commands):
            t0 = time.perf_counter()
            out = subprocess.run(gdb + commands + [elf_path], capture_output=True, text=True,
                                 timeout=300)
            took = time.perf_counter() - t0
            if out.returncode:
                raise Failed("gdb-multiarch exited %d:\n%s%s" % (out.returncode, out.stdout,
                                                                 out.stderr))
            return took, out.stdout

        # Warm-up: QEMU translates the stub's and the image's code once; not counted.
        ours_once()
        gdb_once(["-ex", "load", "-ex", "compare-sections", "-ex", "detach"])
        for _ in range(rounds):
            took, total = ours_once()
            ours.append(took)
            ours_engine.append(total)
            took, stdout = gdb_once(["-ex", "load", "-ex", "compare-sections", "-ex", "detach"])
            if "MIS-MATCHED" in stdout or "matched" not in stdout:
                raise Failed("gdb's load did not verify:\n" + stdout)
            theirs.append(took)
            # GDB's own start-up, connect and detach, to tell them from its loader.
            took, _ = gdb_once(["-ex", "detach"])
            theirs_bare.append(took)
        d.stop()
    return ours, ours_engine, theirs, theirs_bare


try:
    ours, ours_engine, theirs, theirs_bare = measure()
    o, t, b = (statistics.median(v) for v in (ours, theirs, theirs_bare))
    version = subprocess.run(["qemu-system-arm", "--version"], capture_output=True,
                             text=True).stdout.split("\n")[0]
    print("image: %d KiB into qemu-system-arm -M lm3s6965evb (%s), %d rounds after a warm-up"
          % (size // 1024, version, rounds))
    print("mintflashd --target gdb:tcp (#AUTO: connect, erase, program, verify):")
    print("  round trip  " + spread(ours))
    print("  engine's own Total  " + spread(ours_engine))
    print("gdb-multiarch -batch load + compare-sections (the whole process):")
    print("  " + spread(theirs))
    print("gdb-multiarch -batch, start-up + connect + detach alone:")
    print("  " + spread(theirs_bare))
    print("ratio of complete times, gdb / ours: %.2f" % (t / o))
    if t - b > 0.005:
        print("gdb's loader alone (whole minus start-up, medians): %.3f s, %.2fx ours"
              % (t - b, (t - b) / o))
    else:
        print("gdb's loader alone: not measurable here (its start-up alone took %.3f s of the "
              "%.3f s run)" % (b, t))
    ratio = t / o
    row("%.3f s" % o, "%s: %.3f s" % (peer, t), "%.2fx" % ratio, "yes" if ratio >= 1.5 else "no")
except (Failed, OSError, subprocess.SubprocessError, SystemExit, EOFError, TimeoutError) as e:
    print("bench_gdb: failed: %s" % e)
    row("failed (see the details)", peer, "-", "-")
finally:
    if qemu and qemu.poll() is None:
        qemu.kill()
        qemu.wait()
    shutil.rmtree(work, ignore_errors=True)
EOF
exit 0
