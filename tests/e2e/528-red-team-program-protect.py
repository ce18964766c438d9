"""A contract manufacturer's attempt (red team): devices without the owner's readout protection,
counted and recorded as good. The owner's sealed job ends with `protect = 1`, so that the
firmware and its UID signature cannot be read back from a device in the field. `#PROGRAM` erases
and programs and stops there (no verify, no protection, no start): before, from the secure area it
took a count, gave the device the firmware and its serial number unprotected, and the signed
production record said `result=OK`, as for a device made by `#AUTO`. Now, from the secure area,
`#PROGRAM` of a project with a job that sets readout protection is refused before anything is
taken (`#ERR216`, in either reply form); `#AUTO` makes the device and protects it; `#PROGRAM`
of a job without protection still programs, taking its count."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, firmware, get, info, put, sim_flash  # noqa: E402

REFUSED = ("#ERR216:#PROGRAM leaves out the readout protection of job App (protect = 1), which "
           "runs from the secure area: use #AUTO")
CYCLE_OK = re.compile(r"#OK \(Total [0-9.]+s, Erase [0-9.]+s, Prog [0-9.]+s, Verify [0-9.]+s\)")
FW = firmware(6000, seed=528)


def project(c, folder, protect, serial):
    base = "_SECURE/Projects/" + folder
    put(c, base + "/01_App/app.bin", FW)
    put(c, base + "/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\nprotect = %d\n[file]\npath = app.bin\naddress = 0x08000000\n"
        "[serial]\naddress = 0x080F0000\nlength = 4\n" % protect)
    put(c, base + "/Cntdown.txt", "5\n")
    put(c, base + "/Serial.txt", "%d\n" % serial)


def device_ini(d):
    path = os.path.join(d.sim_dir, "slot1", "device.ini")
    if not os.path.exists(path):
        return {}
    return dict(line.split(" = ", 1) for line in open(path).read().splitlines()
                if " = " in line and not line.startswith(";"))


def records(t):
    r = t.command("#FOPENREAD RECORDS.000")
    if r[-1] != "#OK":
        return []
    t.command("#FCLOSE")
    return [dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            for line in get(t, "RECORDS.000").decode().splitlines()]


with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    project(u, "01_Locked", 1, 500)  # _SECURE is the local connection's
    project(u, "02_Open", 0, 900)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    i = info(t)
    check((i["AREA"], i["PROJECT"], i["CYCLES_LEFT"]) == ("SECURE", "Locked", "5"), "setup: %r" % i)

    # The attack, in both reply forms: refused before a count, a serial number or the device.
    r = t.command("#PROGRAM NOINFO")
    check(r == ["#ACK", REFUSED], "#PROGRAM: %r" % r)
    r = t.command("#PROGRAM NOINFO 1")
    check(r == ["#ACK", "#RESULT:1:" + REFUSED, "#DONE"], "#PROGRAM 1: %r" % r)
    i = info(t)
    check((i["CYCLES_LEFT"], i["NEXT_SERIAL"]) == ("5", "500"), "nothing taken: %r" % i)
    check(device_ini(d).get("programs", "0") == "0", "the device untouched: %r" % device_ini(d))
    check(records(t) == [], "no production record: %r" % records(t))
    log = get(t, "FLASHER.LOG").decode()
    check(REFUSED[len("#ERR216:"):] in log, "FLASHER.LOG says why:\n" + log)

    # #AUTO makes the device, protected as the owner's job says.
    r = t.command("#AUTO NOINFO", timeout=120)
    check(r[0] == "#ACK" and CYCLE_OK.fullmatch(r[-1]), "#AUTO: %r" % r)
    dev = device_ini(d)
    check((dev.get("protection"), dev.get("protects")) == ("1", "1"), "protected: %r" % dev)
    i = info(t)
    check((i["CYCLES_LEFT"], i["NEXT_SERIAL"]) == ("4", "501"), "one count: %r" % i)

    # A job without readout protection: #PROGRAM programs it and takes its count.
    check(t.command("#SELECT Open") == ["#ACK", "#OK"], "select Open")
    r = t.command("#PROGRAM NOINFO", timeout=120)
    check(r[0] == "#ACK" and CYCLE_OK.fullmatch(r[-1]), "#PROGRAM of Open: %r" % r)
    check(sim_flash(d, 1)[:len(FW)] == FW, "the firmware on the device")
    check(int.from_bytes(sim_flash(d, 1)[0xF0000:0xF0004], "little") == 900, "its serial number")
    i = info(t)
    check((i["PROJECT"], i["CYCLES_LEFT"], i["NEXT_SERIAL"]) == ("Open", "4", "901"),
          "one count of Open: %r" % i)
    got = [(rec["project"], rec["serial"], rec["result"]) for rec in records(t)]
    check(got == [("Locked", "500", "OK"), ("Open", "900", "OK")], "records: %r" % got)
print("ok")
