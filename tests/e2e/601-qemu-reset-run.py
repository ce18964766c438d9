"""`start = reset` with `[gdb] run = monitor system_reset && continue` on QEMU (docs/targets.md):
the programmer resets the board through QEMU's monitor and lets it run. Two devices in a row on
one QEMU (the second programmed while the first image runs), then a vector start as the control.
The example firmware prints how often it started since power-on (RAM kept across a reset) and
whether the board was reset before this start (a mark it leaves in SysTick's reload register,
which a reset clears):
- after the first cycle: the new image runs (the CPU took SP and PC from the vector table just
  programmed: QEMU had loaded them from the empty flash at power-on), serial 200, boots 1;
- after the second: serial 201, boots 2 (the same power-on: RAM kept) and "after a reset";
- the control, `start = vector` on the same board: boots 3, "without a reset".
Skips (77) without qemu-system-arm or arm-none-eabi-gcc. QEMU and the daemon are always
stopped."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import SRC, Daemon, check, free_port, get, put  # noqa: E402

for tool in ("qemu-system-arm", "arm-none-eabi-gcc", "arm-none-eabi-objcopy", "make"):
    if not shutil.which(tool):
        print("SKIP: %s is not installed (Debian: qemu-system-arm, gcc-arm-none-eabi)" % tool)
        sys.exit(77)

UID = bytes([0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58])
JOB = ("[job]\ndevice = LM3S6965\nstart = %s\n"
       "[file]\npath = firmware.elf\n"
       "[serial]\naddress = 0x3FC00\nlength = 4\n"
       "[gdb]\nrun = monitor system_reset && continue\n")

work = tempfile.mkdtemp(prefix="mf-qemu-reset-")
qemu = None
qemu_log = open(os.path.join(work, "qemu.log"), "wb")
uart = os.path.join(work, "uart.log")


def uart_text():
    try:
        with open(uart, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def boot_report(number, timeout=20):
    """The `number`-th report (1-based) the firmware printed, from its greeting to 'done'."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        reports = re.findall(r"Hello from mintflash.*?done\r\n", uart_text(), re.S)
        if len(reports) >= number:
            return reports[number - 1]
        time.sleep(0.05)
    with open(qemu_log.name, "rb") as f:
        check(False, "start %d never printed; UART: %r; qemu: %r" % (number, uart_text(), f.read()))


def count(client, name):
    return int(get(client, "Projects/01_Reset/" + name).decode().split()[0])


try:
    build = os.path.join(work, "fw")
    os.mkdir(build)
    out = subprocess.run(["make", "-s", "-C", os.path.join(SRC, "examples", "qemu-firmware"),
                          "BUILD=" + build], capture_output=True, text=True)
    check(out.returncode == 0, "firmware build failed:\n" + out.stdout + out.stderr)
    with open(os.path.join(build, "firmware.elf"), "rb") as f:
        elf = f.read()

    port = free_port()
    qemu = subprocess.Popen(
        ["qemu-system-arm", "-M", "lm3s6965evb", "-S", "-nographic", "-monitor", "none",
         "-gdb", "tcp:127.0.0.1:%d" % port, "-serial", "file:" + uart,
         "-device", "loader,addr=0x2000FF00,data=0x%X,data-len=8" % int.from_bytes(UID, "little")],
        stdout=qemu_log, stderr=qemu_log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        check(qemu.poll() is None, "qemu exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            check(time.time() < deadline, "qemu's gdbstub did not listen on port %d" % port)
            time.sleep(0.05)

    with Daemon(extra=["--target", "gdb:tcp:127.0.0.1:%d" % port]) as d:
        c = d.tcp()
        put(c, "Projects/01_Reset/01_App/firmware.elf", elf)
        put(c, "Projects/01_Reset/01_App/job.ini", JOB % "reset")
        put(c, "Projects/01_Reset/Cntdown.txt", "5\r\n")
        put(c, "Projects/01_Reset/Serial.txt", "200\r\n")

        for n, serial in ((1, 200), (2, 201)):
            r = c.command("#AUTO", timeout=120)
            check(r[-1].startswith("#OK (Total "), "cycle %d: %r\n%s" % (n, r, d.log_text()))
            report = boot_report(n)
            check("serial: %d\r\n" % serial in report, "cycle %d serial: %r" % (n, report))
            check("uid: %s\r\n" % UID.hex().upper() in report, "cycle %d uid: %r" % (n, report))
            check("boots: %d\r\n" % n in report, "cycle %d: boots %d expected: %r" % (n, n, report))
            check("started: after a reset\r\n" in report, "cycle %d: no reset: %r" % (n, report))
            check(count(c, "Cntdown.txt") == 5 - n, "count after cycle %d" % n)
            check(count(c, "Serial.txt") == serial + 1, "serial after cycle %d" % n)

        # The control: the vector start runs the image without a reset, and the firmware tells.
        put(c, "Projects/01_Reset/01_App/job.ini", JOB % "vector")
        r = c.command("#AUTO", timeout=120)
        check(r[-1].startswith("#OK (Total "), "vector start: %r\n%s" % (r, d.log_text()))
        report = boot_report(3)
        check("serial: 202\r\n" in report and "boots: 3\r\n" in report, report)
        check("started: without a reset\r\n" in report, "the control saw a reset: %r" % report)
        check(len(re.findall(r"Hello from mintflash", uart_text())) == 3,
              "exactly three starts: %r" % uart_text())
        check(d.stop() == 0, "clean exit")
finally:
    if qemu and qemu.poll() is None:
        qemu.send_signal(signal.SIGCONT)
        qemu.kill()
        qemu.wait()
    qemu_log.close()
    shutil.rmtree(work, ignore_errors=True)
print("ok")
