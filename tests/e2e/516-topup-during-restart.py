"""#TOPUP while the programmer restarts (review): both are allowed over TCP, and a restart begun
on another connection (#REBOOT, or SIGHUP) just after the push's check ran shutdown_areas under
the applying token: the secure area closed and the public area unmounted while the push wrote
its new limit and its FLASHER.LOG line, which crashed the daemon (mf_bd_read on the unmounted
volume: a network peer could stop production). A restart now waits for a push being applied,
and a push that comes while a restart runs is refused as busy. Each round sends #REBOOT on one
connection and #TOPUP on another at once: the daemon lives, the push is applied or refused as
busy, and the limit is the token's once it was applied."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, commander, info  # noqa: E402

ROUNDS = 120

work = tempfile.mkdtemp(prefix="mf-e2e-516-")


def run(*args, device=None, expect=0):
    return commander(args, work, device, expect)


try:
    job = os.path.join(work, "s1", "Projects", "01_Widget", "01_App")
    os.makedirs(job)
    with open(os.path.join(job, "app.bin"), "wb") as f:
        f.write(os.urandom(4000))
    with open(os.path.join(job, "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    with open(os.path.join(work, "s1", "Projects", "01_Widget", "Cntdown.txt"), "w") as f:
        f.write("3\n")
    d = Daemon(workdir=os.path.join(work, "A"))
    os.makedirs(d.dir)
    with d:
        t = d.tcp()
        run("keygen", "-o", "owner")
        run("identity", "-o", "a.pub", device=d.socket_path)
        run("securearea", "create", "--owner", "owner.pub", device=d.socket_path)
        run("pack", "--owner-key", "owner.key", "--to", "a.pub", "-o", "s1.mfp", "s1")
        run("push", "s1.mfp", device=d.socket_path)
        check(info(t)["CYCLES_LEFT"] == "3", "the package runs: %r" % info(t))
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "s1.mfp",
            "--project", "Widget", "--limit", "10", "-o", "t10.mft")
        token = open(os.path.join(work, "t10.mft"), "rb").read().hex()

        applied = busy = 0
        for i in range(ROUNDS):
            a, b = d.tcp(), d.tcp()
            a.send("#REBOOT\r")
            b.send("#TOPUP %s\r" % token)
            try:
                ra, rb = a.until_final(120), b.until_final(120)
            except (EOFError, ConnectionError) as e:
                time.sleep(0.5)
                check(False, "round %d: the daemon died (%s, exit status %r)"
                      % (i, e, d.proc.poll()))
            check(ra == ["#ACK", "#OK"] or ra == ["#NACK:ERR008:Busy (starting up)"],
                  "round %d: reboot: %r" % (i, ra))
            if rb[-1].startswith("#OK"):
                applied += 1
            else:
                check(rb[-1] in ("#NACK:ERR008:Busy (starting up)",
                                 "#ERR008:the programmer is starting up"),
                      "round %d: top-up: %r" % (i, rb))
                busy += 1
            a.close()
            b.close()
            d.wait_ready()
            left = info(t)["CYCLES_LEFT"]
            check(left == ("10" if applied else "3"), "round %d: %s cycles left" % (i, left))
        check(d.proc.poll() is None, "the daemon runs")
        print("ok: %d pushes applied or replayed, %d refused as busy" % (applied, busy))
finally:
    shutil.rmtree(work, ignore_errors=True)
