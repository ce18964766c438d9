"""`#SECUREAREA CREATE` where a secure area exists (review): refused, and refused before anything is
erased. Before, the trust anchor forgot the installed setup's key first and the storage then
refused the repartition: the reply was `#ERR216:a secure area already exists`, FLASHER.LOG said
nothing, and the setup with its remaining counts was gone. Likewise `#SECUREAREA REMOVE` where
there is none erases nothing."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, firmware, info, put  # noqa: E402

with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    r = u.command("#SECUREAREA REMOVE", timeout=60)
    check(r == ["#ACK", "#ERR216:there is no secure area (nothing was erased)"],
          "remove with none: %r" % r)
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    base = "_SECURE/Projects/01_W"
    put(u, base + "/01_App/app.bin", firmware(4000))
    put(u, base + "/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    put(u, base + "/Cntdown.txt", "5\r\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    check(t.command("#AUTO")[-1].startswith("#OK"), "a cycle")
    before = info(t)
    check(before["AREA"] == "SECURE" and before["CYCLES_LEFT"] == "4", "installed: %r" % before)

    r = u.command("#SECUREAREA CREATE", timeout=60)
    check(r == ["#ACK", "#ERR216:a secure area exists already (nothing was erased)"],
          "create again: %r" % r)
    after = info(t)
    check(after["AREA"] == "SECURE" and after["SETUP"] == before["SETUP"] and
          after["CYCLES_LEFT"] == "4", "the setup is intact: %r" % after)
    check(t.command("#AUTO")[-1].startswith("#OK"), "and runs")
    check(info(t)["CYCLES_LEFT"] == "3", "3 left")
    # The same after a restart: the trust anchor still holds the setup's key.
    d.stop()
    d.start()
    t = d.tcp()
    check(info(t)["CYCLES_LEFT"] == "3", "after a restart: %r" % info(t))
print("ok")
