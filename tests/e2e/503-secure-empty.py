"""`_SECURE` where it cannot or need not become a secure setup: with no secure area the folder is
not moved, and FLASHER.LOG and #INFO's MOVE_ERROR say so (not only the daemon's stderr); an empty
`_SECURE` moved into a secure area leaves no configuration there, so the public area's setup runs
(the spec's conflict rule bites only when the secure area holds configuration/data). And what the
spec says works from the secure area as from the public one: several jobs, Patches.txt (a patch in
the later job's bytes) and SNList.txt, with the folder and the count file spelled in other cases
(`_secure`, `CNTDOWN.TXT`)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, firmware, get, info, put, sim_flash, simple_project  # noqa: E402


def reboot(client):
    check(client.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")


# No secure area: the folder stays, and everyone who looks is told.
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    fw = simple_project(t, count=3, serial=100)
    put(u, "_SECURE/Projects/01_Other/01_App/job.ini", "[job]\ndevice = SIM-F4-1M\n")
    reboot(t)
    i = info(t)
    check(i["AREA"] == "PUBLIC" and i["PROJECT"] == "Widget", "public setup runs: %r" % i)
    check(i["MOVE_ERROR"].startswith("a _SECURE folder, but no secure area: nothing moved"),
          "MOVE_ERROR %r" % i["MOVE_ERROR"])
    log = get(t, "FLASHER.LOG").decode()
    check("a _SECURE folder, but no secure area: nothing moved, the folder stays readable in the "
          "public area (securearea create makes one)" in log, "FLASHER.LOG:\n" + log)
    r = t.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "cycle from the public area: %r" % r)
    check(sim_flash(d, 1)[:len(fw)] == fw, "the public setup's firmware")
    check(get(t, "_SECURE/Projects/01_Other/01_App/job.ini").startswith(b"[job]"),
          "the folder is still there")

# An empty _SECURE moved into the secure area: nothing there, the public setup runs.
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    fw = simple_project(t, count=2, serial=500)
    check(u.command("#MKDIR _SECURE") == ["#ACK", "#OK"], "empty _SECURE")
    reboot(t)
    i = info(t)
    check(i["AREA"] == "PUBLIC" and i["PROJECT"] == "Widget" and i["CYCLES_LEFT"] == "2",
          "an empty secure area leaves the public setup running: %r" % i)
    check(i["MOVE_ERROR"] == "" and "PROBLEM" not in i, "no problem: %r" % i)
    # Nothing held there, so nothing to lose: a package over TCP is taken, no owner pinned.
    check(t.command("#FOPEN _SECURE/p.mfp") == ["#ACK", "#OK"] and
          t.command("#FCLOSE") == ["#ACK", "#OK"] and
          t.command("#FDELETE _SECURE/p.mfp") == ["#ACK", "#OK"],
          "a package over TCP where the secure area holds no file")
    log = get(t, "FLASHER.LOG").decode()
    check("moved _SECURE into the secure area: 0 files" in log and
          "(no files: the public area's setup runs)" in log, "FLASHER.LOG:\n" + log)
    r = t.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "cycle: %r" % r)
    mem = sim_flash(d, 1)
    check(mem[:len(fw)] == fw and int.from_bytes(mem[0x40000:0x40004], "little") == 500,
          "the public setup's firmware and serial number")
    check(get(t, "Projects/01_Widget/Cntdown.txt").strip() == b"1", "the public count went down")

# Two jobs, Patches.txt and SNList.txt from the secure area.
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    boot, app = firmware(4000, seed=5), firmware(6000, seed=6)
    base = "_secure/Projects/01_Widget/"
    put(u, base + "01_Boot/boot.bin", boot)
    put(u, base + "01_Boot/job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = boot.bin\n"
        "address = 0x08000000\n[serial]\naddress = 0x08003F00\nlength = 4\n")
    put(u, base + "02_App/app.bin", app)
    put(u, base + "02_App/job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
        "address = 0x08020000\n")
    put(u, base + "CNTDOWN.TXT", "2\r\n")
    put(u, base + "Serial.txt", "1\r\n")
    put(u, base + "SNList.txt", "00000000\r\nA1B2C3D4\r\nA5B6C7D8\r\n")
    put(u, base + "Patches.txt", "1,8000000,1:00\r\n1,8020010,2:BBCC\r\n2,8020020,1:DD,8040000,2:EEFF\r\n")
    reboot(t)
    i = info(t)
    check(i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "2" and i["NEXT_SERIAL"] == "1",
          "runs from the secure area: %r" % i)
    for n in range(2):
        r = t.command("#AUTO")
        check(r[-1].startswith("#OK (Total "), "cycle %d: %r" % (n, r))
        mem = sim_flash(d, 1)
        want_app = bytearray(app)
        if n == 0:
            want_app[0x10:0x12] = b"\xbb\xcc"
        else:
            want_app[0x20] = 0xDD
        check(mem[:len(boot)] == boot, "cycle %d: boot" % n)
        check(mem[0x20000:0x20000 + len(app)] == bytes(want_app), "cycle %d: app and its patch" % n)
        check(mem[0x3F00:0x3F04] == (b"\xa1\xb2\xc3\xd4", b"\xa5\xb6\xc7\xd8")[n],
              "cycle %d: the SNList.txt line" % n)
        check(mem[0x40000:0x40002] == (b"\xff\xff", b"\xee\xff")[n], "cycle %d: patch in nobody's bytes" % n)
    r = t.command("#AUTO")
    check(r[-1].startswith("#ERR201:"), "count used up: %r" % r)
print("ok")
