"""A refused package deleted as the commander says, on the local connection, keeps the setup.

`mintflash push` of a package the programmer refuses (here: a damaged one) ends with "the current setup is kept, but runs no cycle while the package is there:
mintflash fdelete _SECURE/<name>". Over TCP the daemon took the emptied _SECURE with the package;
on the local connection (the commander's default) it left the empty folder, and the next start
erased the installed setup and its counts with it (an empty _SECURE installs nothing; on a pinned
programmer it is refused, and no cycle runs until it is found and removed). Now the last package
deleted takes _SECURE with it on every connection: the restart keeps the setup."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, commander, info  # noqa: E402

NO_FOLDER = "#ERR011:File read failed (no such file or directory)"

work = tempfile.mkdtemp(prefix="mf-e2e-519-")


def run(*args, device=None, expect=0):
    return commander(args, work, device, expect)


def setup_folder(name, count):
    job = os.path.join(work, name, "Projects", "01_Widget", "01_App")
    os.makedirs(job)
    with open(os.path.join(job, "app.bin"), "wb") as f:
        f.write(os.urandom(4000))
    with open(os.path.join(job, "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    with open(os.path.join(work, name, "Projects", "01_Widget", "Cntdown.txt"), "w") as f:
        f.write("%d\n" % count)


try:
    setup_folder("s1", 7)
    d = Daemon(workdir=os.path.join(work, "A"))
    os.makedirs(d.dir)
    with d:
        local = d.socket_path
        run("keygen", "-o", "owner")
        run("identity", "-o", "a.pub", device=local)
        run("securearea", "create", device=local)  # no owner pinned
        run("pack", "--owner-key", "owner.key", "--to", "a.pub", "-o", "s1.mfp", "s1")
        with open(os.path.join(work, "s2.mfp"), "wb") as f:
            f.write(os.urandom(700))  # no package the programmer takes
        run("push", "s1.mfp", device=local)
        t = d.tcp()
        check(info(t)["CYCLES_LEFT"] == "7", "the owner's package runs: %r" % info(t))

        p = run("push", "s2.mfp", device=local, expect=1)
        check("mintflash fdelete _SECURE/s2.mfp" in p.stderr, "the advice: %s" % p.stderr)
        run("fdelete", "_SECURE/s2.mfp", device=local)  # as advised
        u = d.unix()
        check(u.command("#FLIST _SECURE")[-1] == NO_FOLDER, "no empty _SECURE left behind")
        check(u.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "restart")
        t = d.tcp()
        i = info(t)
        check(i["CYCLES_LEFT"] == "7" and i["AREA"] == "SECURE" and not i.get("PROBLEM"),
              "the setup and its counts are intact: %r" % i)
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
