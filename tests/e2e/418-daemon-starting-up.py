"""Starting up against the real daemon: while a start moves `_SECURE` into the secure area (the
spec: the power LED comes on once everything is moved), `#STATUS` answers `#STATUS:INITIALIZING`,
`#INFO` says `STATE=INITIALIZING`, and programming and file commands get
`#NACK:ERR008:Busy (starting up)`; once the move is done the new setup runs. A large setup, put
into the storage image offline, keeps the move long enough to be watched; every answer is checked
against the daemon's own log, so a move that ends early cannot make the test pass wrongly."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, firmware, info  # noqa: E402

BUSY = ["#NACK:ERR008:Busy (starting up)"]

with Daemon(size="256M") as d:
    u = d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    u.close()
    check(d.stop() == 0, "stop")

    fw = firmware(20000, seed=3)
    local = os.path.join(d.dir, "local", "_SECURE", "Projects", "01_W")
    os.makedirs(os.path.join(local, "01_App"))
    for name, data in (("01_App/app.bin", fw),
                       ("01_App/job.ini", b"[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
                        b"address = 0x08000000\n"),
                       ("Cntdown.txt", b"3\r\n")):
        with open(os.path.join(local, name), "wb") as f:
            f.write(data)
    block = os.urandom(1 << 20)
    for i in range(48):  # 48 MiB of data files: a move of a tenth of a second and more
        with open(os.path.join(local, "data%03d.bin" % i), "wb") as f:
            f.write(block[i:] + block[:i])
    r = subprocess.run([MINTFLASH, "storage", "put", "-r", d.storage,
                        os.path.join(d.dir, "local", "_SECURE"), "/"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "storage put: %s%s" % (r.stdout, r.stderr))

    d.start(wait_ready=False)
    t = d.tcp()
    seen = {"status": 0, "info": 0, "erase": 0, "fopenread": 0}
    while True:
        status = t.command("#STATUS")
        state = info(t)["STATE"]
        erase = t.command("#ERASE")  # a programming command that takes no count
        fopen = t.command("#FOPENREAD x.txt")
        # Read after the answers: a READY seen above means the move had ended by then.
        log = d.log_text()[d.log_offset:]
        moved = "moved _SECURE into the secure area" in log
        if status == ["#ACK", "#STATUS:INITIALIZING"]:
            seen["status"] += 1
        else:
            check(moved and status == ["#ACK", "#STATUS:READY"],
                  "#STATUS before the move ended: %r\n%s" % (status, log))
        if state == "INITIALIZING":
            seen["info"] += 1
        else:
            check(moved and state == "READY", "#INFO STATE=%s before the move ended" % state)
        if erase == BUSY:
            seen["erase"] += 1
        else:
            check(moved, "#ERASE before the move ended: %r" % erase)
        if fopen == BUSY:
            seen["fopenread"] += 1
        else:
            check(moved, "#FOPENREAD before the move ended: %r" % fopen)
        if moved and status[-1] == "#STATUS:READY":
            break
    check(all(seen.values()), "every command was seen refused while starting up: %r" % seen)
    i = info(t)
    check(i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "3" and i["MOVE_ERROR"] == "",
          "the moved setup runs: %r" % i)
    r = t.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "a cycle of the moved setup: %r" % r)
    check(d.stop() == 0, "stop")
print("ok: %r answers while starting up" % seen)
