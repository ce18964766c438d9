"""#SELECT while a cycle runs (review): the cycle runs, counts and records the project that was
selected when it began; the new choice is for the next cycle. Before, the production record of
the running cycle named the project selected at its end: a device of Alpha (Alpha's count and
serial number, FLASHER.LOG saying Alpha) was recorded, signed, as one of Beta, so the owner's
totals per project were wrong."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, firmware, get, info, put  # noqa: E402


def project(t, name, serial):
    base = "_SECURE/Projects/" + name
    put(t, base + "/01_App/app.bin", firmware(16 * 1024, seed=serial))
    put(t, base + "/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
        "[serial]\naddress = 0x08040000\nlength = 4\n")
    put(t, base + "/Cntdown.txt", "5\r\n")
    put(t, base + "/Serial.txt", "%d\r\n" % serial)


def records(t):
    out = []
    for line in get(t, "RECORDS.000").decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        out.append((fields["project"], fields["serial"], fields["result"]))
    return out


with Daemon(size="32M", sim_speed="1") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    project(u, "01_Alpha", 100)  # _SECURE is the local connection's
    project(u, "02_Beta", 900)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    check(info(t)["AREA"] == "SECURE", "the setup runs from the secure area")
    check(t.command("#SELECT Alpha") == ["#ACK", "#OK"], "select Alpha")

    # Alpha's cycle; Beta selected on another connection while it erases.
    t.send("#AUTO\r")
    lines = []
    while not lines or lines[-1] != "#STATUS:ERASING":
        lines.append(t.line())
        check(not re.match(r"^#(OK|ERR)", lines[-1]), "the cycle ended early: %r" % lines)
    check(u.command("#SELECT Beta") == ["#ACK", "#OK"], "select Beta while the cycle runs")
    lines += t.until_final()
    check(lines[-1].startswith("#OK"), "the cycle: %r" % lines)
    check(info(t)["PROJECT"] == "Beta", "Beta is selected now")

    # And Beta's own cycle.
    r = t.command("#AUTO")
    check(r[-1].startswith("#OK"), "Beta's cycle: %r" % r)

    got = records(t)
    check(got == [("Alpha", "100", "OK"), ("Beta", "900", "OK")],
          "each record names the project its device got: %r" % got)
    log = get(t, "FLASHER.LOG").decode()
    check(re.search(r'AUTO project "Alpha" uid \S+ serial 100 OK', log) and
          re.search(r'AUTO project "Beta" uid \S+ serial 900 OK', log),
          "FLASHER.LOG agrees:\n" + log)
    i = info(t)
    check(i["CYCLES_LEFT"] == "4" and i["NEXT_SERIAL"] == "901", "Beta: %r" % i)
    check(t.command("#SELECT Alpha") == ["#ACK", "#OK"], "select Alpha again")
    i = info(t)
    check(i["CYCLES_LEFT"] == "4" and i["NEXT_SERIAL"] == "101", "Alpha: %r" % i)
print("ok")
