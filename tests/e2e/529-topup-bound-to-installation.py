"""A top-up token tops up one installation, not every later installation of the same setup
(red team): the owner packs v1 of a setup (project W, Cntdown 5) for a pinned programmer, tops it
up to 8 with token T, 8 devices are made; then packs v2 from the same folder (the same setup id,
since the id ignores the counts; a later not-before time), which installs with 5 left. T replayed
over #TOPUP, or dropped at the public area's root as a .mft, used to raise v2's limit from 5 to 8:
3 devices the owner never allowed. Now T names v1's installation (its package's not-before time)
and is refused with both installations named, however it comes; a token made for v2 applies
(with --package, and with --setup and --package-time); a version-1 token is refused with a
message that says how to make a new one."""
import base64
import os
import re
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, commander, get, info, put  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-e2e-529-")


def run(*args, device=None, expect=0):
    return commander(args, work, device, expect)


def utc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def not_before(package):
    """The package header's not-before time (i64 at byte 76)."""
    with open(os.path.join(work, package), "rb") as f:
        return struct.unpack_from("<q", f.read(124), 76)[0]


def program(client, n):
    for _ in range(n):
        r = client.command("#AUTO")
        check(r[-1].startswith("#OK"), "cycle: %r" % r)


try:
    job = os.path.join(work, "setup", "Projects", "01_W", "01_App")
    os.makedirs(job)
    with open(os.path.join(job, "app.bin"), "wb") as f:
        f.write(os.urandom(4000))
    with open(os.path.join(job, "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    with open(os.path.join(work, "setup", "Projects", "01_W", "Cntdown.txt"), "w") as f:
        f.write("5\n")
    d = Daemon(workdir=os.path.join(work, "A"))
    os.makedirs(d.dir)
    with d:
        t = d.tcp()
        run("keygen", "-o", "owner")
        run("identity", "-o", "a.pub", device=d.socket_path)
        run("securearea", "create", "--owner", "owner.pub", device=d.socket_path)
        # v1 with a not-before time two hours ago, v2 (later) with pack's default, an hour ago:
        # two installations in a row without waiting for the clock.
        v1_time = int(time.time()) - 7200
        setup_id = run("pack", "--owner-key", "owner.key", "--to", "a.pub", "--not-before",
                       utc(v1_time), "-o", "v1.mfp", "setup").stdout.split()[0]
        check(not_before("v1.mfp") == v1_time, "v1's not-before time")
        run("push", "v1.mfp", device=d.socket_path)
        check(info(t)["SETUP"] == setup_id and info(t)["CYCLES_LEFT"] == "5", "v1: %r" % info(t))

        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "v1.mfp",
            "--project", "W", "--limit", "8", "-o", "t.mft")
        token = open(os.path.join(work, "t.mft"), "rb").read()
        check(t.command("#TOPUP " + token.hex()) ==
              ["#ACK", "#OK:top-up for 01_W: the limit goes from 5 to 8"], "T applies to v1")
        program(t, 8)
        check(info(t)["CYCLES_LEFT"] == "0", "8 made: %r" % info(t))

        # v2 from the same folder: the same setup id, 5 left.
        check(run("pack", "--owner-key", "owner.key", "--to", "a.pub", "-o", "v2.mfp",
                  "setup").stdout.split()[0] == setup_id, "v2 has v1's setup id")
        v2_time = not_before("v2.mfp")
        check(v2_time > v1_time, "v2 is later")
        run("push", "v2.mfp", device=d.socket_path)
        check(info(t)["SETUP"] == setup_id and info(t)["CYCLES_LEFT"] == "5", "v2: %r" % info(t))

        # T again, over #TOPUP: refused, naming both installations.
        wrong = ("top-up token for the installation of setup %s... from the package of %s, but "
                 "the package installed is of %s: a token tops up one installation only; make "
                 "one for it (mintflash topup --package)"
                 % (setup_id[:16], utc(v1_time), utc(v2_time)))
        r = t.command("#TOPUP " + token.hex())
        check(r == ["#ACK", "#ERR216:" + wrong], "T replayed on v2 over #TOPUP: %r" % r)
        check(info(t)["CYCLES_LEFT"] == "5", "still 5 left: %r" % info(t))
        p = run("push", "t.mft", device=d.socket_path, expect=1)
        check(wrong in p.stderr and info(t)["CYCLES_LEFT"] == "5", "push t.mft: " + p.stderr)

        # T at the public area's root: refused before the next cycle, logged, deleted.
        put(t, "t.mft", token)
        program(t, 1)
        check(info(t)["CYCLES_LEFT"] == "4", "5 - 1, no more: %r" % info(t))
        log = get(t, "FLASHER.LOG").decode()
        check("top-up token t.mft refused: " + wrong in log, "FLASHER.LOG:\n" + log)
        check(t.command("#FOPENREAD t.mft")[-1] != "#OK", "the token file is gone")

        # A token for v2 applies: from the package, and from the setup id and its time.
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "v2.mfp",
            "--project", "W", "--limit", "8", "-o", "t2.mft")
        p = run("push", "t2.mft", device=d.socket_path)
        check("the limit goes from 5 to 8" in p.stdout and info(t)["CYCLES_LEFT"] == "7",
              "v2's own token: %s / %r" % (p.stdout, info(t)))
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--setup", setup_id,
            "--package-time", utc(v2_time), "--project", "W", "--limit", "9", "-o", "t3.mft")
        p = run("push", "t3.mft", device=d.socket_path)
        check("the limit goes from 8 to 9" in p.stdout and info(t)["CYCLES_LEFT"] == "8",
              "--setup and --package-time: %s / %r" % (p.stdout, info(t)))
        # T is for v1 still, now that v2's limit is above it as well.
        r = t.command("#TOPUP " + token.hex())
        check(r == ["#ACK", "#ERR216:" + wrong] and info(t)["CYCLES_LEFT"] == "8",
              "T on v2 after its top-ups: %r" % r)

        # A token of format version 1 (what mintflash made before), validly signed: refused,
        # with what to do.
        seed = base64.b64decode(re.search(r"ed25519-seed: (\S+)",
                                          open(os.path.join(work, "owner.key")).read()).group(1))
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        owner = base64.b64decode(re.search(r"ed25519: (\S+)",
                                           open(os.path.join(work, "owner.pub")).read()).group(1))
        programmer_id = token[8:40]
        body = (b"MFTOPUP\x01" + programmer_id + bytes.fromhex(setup_id) +
                struct.pack("<Qq", 50, int(time.time())) + b"\x01W" + owner)
        old = body + key.sign(body)
        put(t, "old.mft", old)
        program(t, 1)
        check(info(t)["CYCLES_LEFT"] == "7", "8 - 1, no more: %r" % info(t))
        log = get(t, "FLASHER.LOG").decode()
        check(re.search(r"top-up token old\.mft refused: top-up token of format version 1 .*"
                        r"mintflash topup --package", log), "v1 refused:\n" + log)
        # Over #TOPUP too (shorter than any version 2 token, it still reaches the decoder).
        r = t.command("#TOPUP " + old.hex())
        check(r[0] == "#ACK" and r[1].startswith("#ERR216:top-up token of format version 1"),
              "v1 over #TOPUP: %r" % r)
        # #INFO names the installation as --package-time takes it.
        check(info(t)["PACKAGE"] == utc(v2_time), "PACKAGE=: %r" % info(t))
        check(d.stop() == 0, "clean exit")
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
