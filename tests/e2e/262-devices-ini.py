"""A part the programmer has no built-in profile for, described in the setup's DEVICES.INI: a job
names it, the sim device takes its map (a 2-region part, 8-byte writes), cycles program and verify
it from the public area and, moved with the setup, from the secure area; a bad DEVICES.INI makes
the setup invalid with the file, the line and why (#ERR204), touching no device."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, put, sim_flash  # noqa: E402

DEVICES = """; a part of our own
[ACME-DUAL-192K]
description = ACME dual: 64 KiB in 4 KiB pages, 128 KiB in 16 KiB sectors
flash = 0x00000000 16x4K
flash = 0x00100000 8x16K
write_size = 8
uid = 0x1FFF7590 12
protect_levels = 1
"""
JOB = ("[job]\ndevice = acme-dual-192k\n[file]\npath = boot.bin\naddress = 0x0\n"
       "[file]\npath = app.bin\naddress = 0x100000\n[serial]\naddress = 0x11FFF8\nlength = 4\n")


def setup(c, root, boot, app):
    put(c, root + "DEVICES.INI", DEVICES)
    put(c, root + "Projects/01_P/01_J/boot.bin", boot)
    put(c, root + "Projects/01_P/01_J/app.bin", app)
    put(c, root + "Projects/01_P/01_J/job.ini", JOB)
    put(c, root + "Projects/01_P/Cntdown.txt", "10\r\n")
    put(c, root + "Projects/01_P/Serial.txt", "500\r\n")


def check_device(d, boot, app, serial):
    mem = sim_flash(d, 1)
    # The sim lays the regions out one after the other in flash.bin (docs/targets.md).
    check(len(mem) == 192 << 10, "flash.bin holds both regions: %d bytes" % len(mem))
    check(mem[:len(boot)] == boot, "region 1 holds boot.bin")
    check(mem[64 << 10:(64 << 10) + len(app)] == app, "region 2 holds app.bin")
    got = int.from_bytes(mem[(64 << 10) + 0x1FFF8:(64 << 10) + 0x1FFFC], "little")
    check(got == serial, "serial %d at 0x11FFF8 (read %d)" % (serial, got))


boot, app = os.urandom(20000), os.urandom(90000)
with Daemon(size="32M") as d:
    c, u = d.tcp(), d.unix()
    setup(c, "", boot, app)
    r = c.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "a cycle on the described part: %r" % r)
    check_device(d, boot, app, 500)
    with open(os.path.join(d.sim_dir, "slot1", "device.ini")) as f:
        check("ACME-DUAL-192K" in f.read(), "the sim device is of the described part")

    # A bad DEVICES.INI: the setup is invalid, the message names the line, nothing is touched.
    put(c, "DEVICES.INI", DEVICES.replace("write_size = 8", "write_size = 6"))
    r = c.command("#AUTO")
    check(r[-1] == "#ERR204:DEVICES.INI:6: write_size: '6' is not a power of two from 1 to 4096",
          "bad DEVICES.INI: %r" % r)
    put(c, "DEVICES.INI", DEVICES.replace("[ACME-DUAL-192K]", "[SIM-F4-1M]"))
    r = c.command("#AUTO")
    check(r[-1].startswith("#ERR204:DEVICES.INI:3: [SIM-F4-1M] is a built-in profile"),
          "a built-in name: %r" % r)

    # Moved into the secure area with the setup: the same part, from there.
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    setup(u, "_SECURE/", boot, app)  # _SECURE is the local connection's
    check(c.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot: the move")
    info = dict(x[6:].split("=", 1) for x in c.command("#INFO") if x.startswith("#INFO:"))
    check(info["AREA"] == "SECURE" and info["CYCLES_LEFT"] == "10", "moved: %r" % info)
    r = c.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "a cycle from the secure area: %r" % r)
    check_device(d, boot, app, 500)
