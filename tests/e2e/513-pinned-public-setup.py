"""A programmer pinned to an owner (securearea create --owner) runs only a sealed package that
owner signed: a setup in the public area is refused, at load (#INFO's PROBLEM, FLASHER.LOG) and by
every programming command and #SELECT (#ERR203 naming the pin), both beside an empty secure area
and after `securearea remove` gave the public area the whole storage. File access, #INFO,
#IDENTITY, `securearea create` and installing the owner's package keep working, and the package
then runs."""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, commander, get, info, put, simple_project  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-pinned-e2e-")


def run(*args, device=None):
    return commander(args, work, device).stdout


def refused_everywhere(d, fp, where):
    """The public area's setup is there but nothing of it runs."""
    t = d.tcp()
    why = ("this programmer is pinned to owner %s: it runs only a sealed package that owner "
           "signed, and none is installed (a setup in the public area is not run)" % fp)
    i = info(t)
    check(i["AREA"] == "PUBLIC" and i["PINNED"] == fp and i["PROJECT"] == ""
          and i["CYCLES_LEFT"] == "" and i["PROBLEM"] == why, "%s: #INFO %r" % (where, i))
    for command in ("#AUTO", "#PROGRAM", "#ERASE", "#VERIFY", "#START", "#AUTO NOINFO 1"):
        r = t.command(command)
        expect = ["#ACK", "#ERR203:" + why]
        if command.endswith(" 1"):
            expect = ["#ACK", "#RESULT:1:#ERR203:" + why, "#DONE"]
        check(r == expect, "%s: %s: %r" % (where, command, r))
    check(t.command("#SELECT Widget") == ["#ACK", "#ERR203:no production setup: " + why],
          "%s: #SELECT" % where)
    check(not os.path.exists(os.path.join(d.sim_dir, "slot1", "flash.bin")),
          "%s: no device was touched" % where)
    check(why in get(t, "FLASHER.LOG").decode(), "%s: FLASHER.LOG says why" % where)
    check(("no usable setup: " + why) in d.log_text(), "%s: the daemon's log says why" % where)
    # File access, #INFO and #IDENTITY are not affected.
    put(t, "notes.txt", "hello")
    check(get(t, "notes.txt") == b"hello", "%s: file access" % where)
    check(t.command("#FDELETE notes.txt") == ["#ACK", "#OK"], "%s: #FDELETE" % where)
    r = t.command("#IDENTITY")
    check(r[0] == "#ACK" and r[-1] == "#OK" and len(r) > 2, "%s: #IDENTITY %r" % (where, r))
    return t


with Daemon(size="32M") as d:
    run("keygen", "-o", "owner")
    run("identity", "-o", "a.pub", device=d.socket_path)
    out = run("securearea", "create", "--owner", "owner.pub", device=d.socket_path)
    fp = re.search(r"pinned to owner (\S+)", out).group(1)

    # Beside an empty secure area: the factory's own setup in the public area.
    t = d.tcp()
    simple_project(t, count=None)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    refused_everywhere(d, fp, "beside the secure area")

    # `securearea remove` (anyone at the local connection): the pin stays, and still nothing of
    # the public area runs.
    check(d.unix().command("#SECUREAREA REMOVE", timeout=120) == ["#ACK", "#OK"], "remove")
    t = d.tcp()
    simple_project(t, count=None)
    put(t, "FLASHER.INI", "[CONFIG]\nProject = 01_Widget\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    refused_everywhere(d, fp, "after securearea remove")

    # The owner's package installs and runs (the public area emptied first: securearea create).
    run("securearea", "create", device=d.socket_path)
    folder = os.path.join(work, "setup", "Projects", "01_Widget", "01_App")
    os.makedirs(folder)
    with open(os.path.join(folder, "app.bin"), "wb") as f:
        f.write(os.urandom(4000))
    with open(os.path.join(folder, "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    with open(os.path.join(folder, "..", "Cntdown.txt"), "w") as f:
        f.write("2\n")
    run("pack", "--owner-key", "owner.key", "--to", "a.pub", "-o", "s.mfp", "setup")
    run("push", "s.mfp", device=d.socket_path)
    t = d.tcp()
    i = info(t)
    check(i["AREA"] == "SECURE" and i["OWNER"] == fp and i["PINNED"] == fp
          and i["CYCLES_LEFT"] == "2" and "PROBLEM" not in i, "the package runs: %r" % i)
    r = t.command("#AUTO NOINFO")
    check(r[-1].startswith("#OK"), "a cycle of the owner's package: %r" % r)
    check(d.stop() == 0, "clean exit")
print("ok")
