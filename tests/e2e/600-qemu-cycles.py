"""The gdb target back end end to end on QEMU (nobody here wrote QEMU): builds the example firmware
with arm-none-eabi-gcc, then programs several devices in a row through mintflashd --target
gdb:tcp:..., each a fresh `qemu-system-arm -M lm3s6965evb` with its own UID placed by QEMU's
generic loader; each device starts its application, whose UART output must show the serial number
and the UID it was given. Also: no server at all (nothing consumed), and a server that stalls.
Skips (77) without qemu-system-arm or arm-none-eabi-gcc. QEMU and the daemon are always stopped."""
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
from mfdaemon import MINTFLASH, SRC, Daemon, check, free_port, get, put  # noqa: E402

for tool in ("qemu-system-arm", "arm-none-eabi-gcc", "arm-none-eabi-objcopy", "make"):
    if not shutil.which(tool):
        print("SKIP: %s is not installed (Debian: qemu-system-arm, gcc-arm-none-eabi)" % tool)
        sys.exit(77)

SERIAL_ADDRESS = 0x3FC00  # examples/qemu-firmware/layout.h
SIGNATURE_ADDRESS = 0x3F800
UID_ADDRESS = 0x2000FF00

work = tempfile.mkdtemp(prefix="mf-qemu-")
qemus = []


class Qemu:
    """One lm3s6965evb, halted at reset (-S), its gdbstub on `port`, UART0 into a file."""

    def __init__(self, port, uid, name):
        self.uart = os.path.join(work, name + ".uart")
        self.log = open(os.path.join(work, name + ".log"), "wb")
        data = int.from_bytes(uid, "little")  # the loader stores data-len bytes little-endian
        self.proc = subprocess.Popen(
            ["qemu-system-arm", "-M", "lm3s6965evb", "-S", "-nographic",
             "-gdb", "tcp:127.0.0.1:%d" % port, "-serial", "file:" + self.uart,
             "-monitor", "none",
             "-device", "loader,addr=0x%X,data=0x%X,data-len=8" % (UID_ADDRESS, data)],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        qemus.append(self)
        deadline = time.time() + 20
        while time.time() < deadline:
            check(self.proc.poll() is None, "qemu exited: " + self.log_text())
            try:
                # A probe connection: QEMU stops the (already stopped) VM and carries on.
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        check(False, "qemu's gdbstub did not listen on port %d" % port)

    def log_text(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def uart_text(self):
        try:
            with open(self.uart, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_uart(self, pattern, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.uart_text()
            if re.search(pattern, text):
                return text
            time.sleep(0.05)
        check(False, "UART never showed %r; it holds %r" % (pattern, self.uart_text()))

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def number(client, path):
    return int(get(client, path).decode().split()[0])


try:
    build = os.path.join(work, "fw")
    os.mkdir(build)
    out = subprocess.run(["make", "-s", "-C", os.path.join(SRC, "examples", "qemu-firmware"),
                          "BUILD=" + build], capture_output=True, text=True)
    check(out.returncode == 0, "firmware build failed:\n" + out.stdout + out.stderr)
    with open(os.path.join(build, "firmware.elf"), "rb") as f:
        elf = f.read()

    # The clone protection key (issue 6): its .key goes into the job, its .pub checks the
    # signature the firmware prints.
    keygen = subprocess.run([MINTFLASH, "keygen", "-o", os.path.join(work, "uid")],
                            capture_output=True, text=True)
    check(keygen.returncode == 0, "keygen: " + keygen.stderr)

    port = free_port()
    with Daemon(extra=["--target", "gdb:tcp:127.0.0.1:%d" % port]) as d:
        c = d.tcp()
        put(c, "Projects/01_Qemu/01_App/firmware.elf", elf)
        put(c, "Projects/01_Qemu/01_App/uid.key", open(os.path.join(work, "uid.key"), "rb").read())
        put(c, "Projects/01_Qemu/01_App/job.ini",
            "[job]\ndevice = LM3S6965\nstart = vector\n"
            "[file]\npath = firmware.elf\n"
            "[serial]\naddress = 0x%X\nlength = 4\n"
            "[signature]\naddress = 0x%X\nkey = uid.key\n" % (SERIAL_ADDRESS, SIGNATURE_ADDRESS))
        setup = [l for l in c.command("#INFO") if l.startswith("#INFO:SETUP=")][0][12:]
        put(c, "Projects/01_Qemu/Cntdown.txt", "5\r\n")
        put(c, "Projects/01_Qemu/Serial.txt", "4711\r\n")

        # Three devices in a row, each a fresh QEMU with its own UID on the same port.
        for i in range(3):
            uid = bytes([0xA0 + i, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x70 + i])
            q = Qemu(port, uid, "dev%d" % i)
            r = c.command("#AUTO", timeout=120)
            check(r[-1].startswith("#OK (Total "), "device %d: #AUTO %r\n%s" % (i, r, d.log_text()))
            text = q.wait_uart(r"done\r\n")
            check("Hello from mintflash on QEMU lm3s6965evb" in text, "greeting: %r" % text)
            check("serial: %d\r\n" % (4711 + i) in text, "device %d serial: %r" % (i, text))
            check("uid: %s\r\n" % uid.hex().upper() in text, "device %d uid: %r" % (i, text))
            m = re.search(r"sig: ([0-9A-F]{128})\r\n", text)
            check(m, "signature bytes: %r" % text)
            sigfile = os.path.join(work, "sig%d.hex" % i)
            with open(sigfile, "w") as f:
                f.write(m.group(1))
            for want, args in ((0, (uid.hex(), 4711 + i)), (1, ((b"\x99" + uid[1:]).hex(), 4711 + i)),
                               (1, (uid.hex(), 4712 + i))):
                v = subprocess.run([MINTFLASH, "sig", "verify", "--pubkey",
                                    os.path.join(work, "uid.pub"), "--setup", setup, "--uid",
                                    args[0], "--serial", str(args[1]), sigfile],
                                   capture_output=True, text=True)
                check(v.returncode == want, "device %d: sig verify %r gave %d: %s%s"
                      % (i, args, v.returncode, v.stdout, v.stderr))
            check("boots: 1\r\n" in text, "started once, from a clean reset state: %r" % text)
            check(number(c, "Projects/01_Qemu/Cntdown.txt") == 4 - i, "count after device %d" % i)
            check(number(c, "Projects/01_Qemu/Serial.txt") == 4712 + i, "serial after %d" % i)
            q.stop()

        log = get(c, "FLASHER.LOG").decode()
        for i in range(3):
            uid = "%02X1122334455667%X" % (0xA0 + i, i)
            check(re.search(r"uid %s serial %d OK" % (uid, 4711 + i), log),
                  "FLASHER.LOG has device %d:\n%s" % (i, log))

        # No server at all: the cycle fails at connect and consumes nothing.
        r = c.command("#AUTO", timeout=60)
        check(r[-1].startswith("#ERR") and "no GDB server at 127.0.0.1:%d" % port in r[-1],
              "no server: %r" % r)
        check(number(c, "Projects/01_Qemu/Cntdown.txt") == 2, "nothing consumed without a server")

        # A server that stalls (QEMU stopped with SIGSTOP: the kernel still accepts the
        # connection): a timeout naming the request, nothing consumed.
        q = Qemu(port, bytes(8), "stalled")
        q.proc.send_signal(signal.SIGSTOP)
        r = c.command("#AUTO", timeout=60)
        check(r[-1].startswith("#ERR") and "no reply from the GDB server within" in r[-1] and
              "qSupported" in r[-1], "stalled server: %r" % r)
        check(number(c, "Projects/01_Qemu/Cntdown.txt") == 2, "nothing consumed on a stall")
        q.stop()

        # The count goes on where it was with the next good device.
        q = Qemu(port, bytes(range(8)), "dev3")
        r = c.command("#AUTO", timeout=120)
        check(r[-1].startswith("#OK (Total "), "after the failures: %r" % r)
        text = q.wait_uart(r"done\r\n")
        check("serial: 4714\r\n" in text and "uid: 0001020304050607\r\n" in text, text)
        check(number(c, "Projects/01_Qemu/Cntdown.txt") == 1, "count 1 left")
        q.stop()
        check(d.stop() == 0, "clean exit")
finally:
    for q in qemus:
        q.stop()
    shutil.rmtree(work, ignore_errors=True)
print("ok")
