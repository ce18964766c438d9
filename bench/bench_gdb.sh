#!/usr/bin/env bash
# Benchmark of the gdb target back end: a complete cycle (connect, read UID, erase, program and
# verify 256 KiB, disconnect) into QEMU's lm3s6965evb through mintflashd --target gdb:tcp:...,
# next to GDB's own loader on the same QEMU, the same image, in the same run:
#   gdb-multiarch -batch -ex 'target remote :PORT' -ex load -ex compare-sections
# Rounds alternate between the two; prints the medians and their ratio. Never fails on speed.
# The image starts with a vector table to an endless loop: after each detach QEMU runs it.
# Usage: MF_BUILD=build bash bench/bench_gdb.sh [ROUNDS]   (needs qemu-system-arm, gdb-multiarch,
# arm-none-eabi-objcopy and arm-none-eabi-ld; prints why and exits 0 when one is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in qemu-system-arm gdb-multiarch arm-none-eabi-objcopy arm-none-eabi-ld python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench_gdb: skipped, $tool is not installed"
        exit 0
    fi
done
export MF_SRC="$PWD" MF_BUILD="${MF_BUILD:-build}" ROUNDS="${1:-5}"
[ -x "$MF_BUILD/mintflashd" ] || { echo "bench_gdb: build $MF_BUILD/mintflashd first"; exit 0; }
exec python3 - <<'EOF'
import os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["MF_SRC"], "tests", "e2e", "lib"))
from mfdaemon import Daemon, free_port, put

rounds = int(os.environ["ROUNDS"])
size = 256 * 1024
work = tempfile.mkdtemp(prefix="mf-bench-gdb-")
qemu = None
try:
    # The image: 256 KiB of pseudo-random bytes at 0, linked into an ELF both tools load.
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
    subprocess.run(["arm-none-eabi-objcopy", "-I", "binary", "-O", "elf32-littlearm", "-B", "arm",
                    "image.bin", "blob.o"], cwd=work, check=True)
    subprocess.run(["arm-none-eabi-ld", "-T", "image.ld", "-o", "image.elf", "blob.o"], cwd=work,
                   check=True)
    with open(os.path.join(work, "image.elf"), "rb") as f:
        elf = f.read()

    port = free_port()
    qemu = subprocess.Popen(
        ["qemu-system-arm", "-M", "lm3s6965evb", "-S", "-nographic", "-monitor", "none",
         "-serial", "null", "-gdb", "tcp:127.0.0.1:%d" % port,
         "-device", "loader,addr=0x2000FF00,data=0x0102030405060708,data-len=8"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "qemu.log"), "wb"),
        stdin=subprocess.DEVNULL)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)

    ours, ours_engine, theirs, theirs_bare = [], [], [], []
    gdb = ["gdb-multiarch", "-nx", "-batch", "-ex", "target remote 127.0.0.1:%d" % port]
    with Daemon(extra=["--target", "gdb:tcp:127.0.0.1:%d" % port], workdir=work) as d:
        c = d.tcp()
        put(c, "Projects/01_Bench/01_Image/image.elf", elf)
        put(c, "Projects/01_Bench/01_Image/job.ini",
            "[job]\ndevice = LM3S6965\nverify = crc\n[file]\npath = image.elf\n")
        for r in range(rounds):
            t0 = time.perf_counter()
            reply = c.command("#AUTO", timeout=300)
            ours.append(time.perf_counter() - t0)
            m = re.search(r"#OK \(Total ([0-9.]+)s", reply[-1])
            if not m:
                with open(os.path.join(work, "qemu.log")) as f:
                    sys.exit("bench_gdb: our cycle failed: %r\n%s\nqemu: %s" % (
                        reply, d.log_text(), f.read()))
            ours_engine.append(float(m.group(1)))
            t0 = time.perf_counter()
            out = subprocess.run(gdb + ["-ex", "load", "-ex", "compare-sections", "-ex", "detach",
                                        os.path.join(work, "image.elf")],
                                 capture_output=True, text=True, timeout=300)
            theirs.append(time.perf_counter() - t0)
            if "MIS-MATCHED" in out.stdout or "matched" not in out.stdout:
                sys.exit("bench_gdb: gdb's load did not verify:\n" + out.stdout + out.stderr)
            # GDB's own start-up, connect and detach, to tell them from its loader.
            t0 = time.perf_counter()
            subprocess.run(gdb + ["-ex", "detach", os.path.join(work, "image.elf")],
                           capture_output=True, timeout=300)
            theirs_bare.append(time.perf_counter() - t0)
        d.stop()
    o, t = statistics.median(ours), statistics.median(theirs)
    print("image: %d KiB into qemu-system-arm -M lm3s6965evb (%s), %d rounds, medians"
          % (size // 1024, subprocess.run(["qemu-system-arm", "--version"], capture_output=True,
                                          text=True).stdout.split("\n")[0], rounds))
    print("%-58s %8.3f s  (engine's own Total %.3f s)" % (
        "mintflashd --target gdb:tcp (erase, program, verify)", o, statistics.median(ours_engine)))
    b = statistics.median(theirs_bare)
    print("%-58s %8.3f s  (start-up, connect, detach alone %.3f s)" % (
        "gdb-multiarch -batch load + compare-sections", t, b))
    print("ratio gdb / ours: %.2f (without gdb's start-up: %.2f)" % (t / o, (t - b) / o))
finally:
    if qemu and qemu.poll() is None:
        qemu.kill()
        qemu.wait()
    shutil.rmtree(work, ignore_errors=True)
EOF
