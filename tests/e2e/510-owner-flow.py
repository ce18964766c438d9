"""The IP owner's flow end to end, with the commander's offline tools and two running programmers:
keygen; identity; securearea create --owner (the pin); pack for programmer A; push: A installs it,
B refuses it (not addressed to B); a tampered, an expired, a foreign owner's and a replayed
package and a plain _SECURE are refused with the current setup intact; top-up tokens raise the
limit once (a replay does nothing, a stale one and one for another programmer are refused);
production records verify, and each kind of tampering is detected: an edited, a deleted (middle
and newest), a reordered and a forged record."""
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, commander, get, info, put  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-owner-e2e-")


def run(*args, device=None, expect=0):
    return commander(args, work, device, expect)


def setup_folder(name, count, fw):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "Projects", "01_Widget", "01_App"))
    with open(os.path.join(d, "Projects", "01_Widget", "01_App", "app.bin"), "wb") as f:
        f.write(fw)
    with open(os.path.join(d, "Projects", "01_Widget", "01_App", "job.ini"), "w") as f:
        f.write("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
                "[serial]\naddress = 0x08040000\n")
    with open(os.path.join(d, "Projects", "01_Widget", "Cntdown.txt"), "w") as f:
        f.write("%d\n" % count)
    with open(os.path.join(d, "Projects", "01_Widget", "Serial.txt"), "w") as f:
        f.write("1000\n")
    return name


def pack(folder, out, owner="owner", to="a.pub", extra=()):
    p = run("pack", "--owner-key", owner + ".key", "--to", to, "-o", out, *extra, folder)
    return p.stdout.strip().splitlines()[-1]


def program(client, n):
    for _ in range(n):
        r = client.command("#AUTO")
        check(r[-1].startswith("#OK"), "cycle: %r" % r)


def verify(files, expect):
    p = run("log", "verify", "--programmer", "a.pub", *files, expect=expect)
    return p.stdout + p.stderr


try:
    da = Daemon(workdir=os.path.join(work, "A"))
    db = Daemon(workdir=os.path.join(work, "B"))
    os.makedirs(da.dir)
    os.makedirs(db.dir)
    with da, db:
        ta, ua = da.tcp(), da.unix()
        run("keygen", "-o", "owner")
        run("keygen", "-o", "other")
        check(oct(os.stat(os.path.join(work, "owner.key")).st_mode & 0o777) == "0o600", "0600 key")
        out = run("identity", "-o", "a.pub", device=da.socket_path).stdout
        fp_a = re.search(r"programmer ([0-9A-F-]{24})", out).group(1)
        run("identity", "-o", "b.pub", device=db.socket_path)
        check(open(os.path.join(work, "a.pub")).read() != open(os.path.join(work, "b.pub")).read(),
              "two programmers, two identities")
        r = ta.command("#IDENTITY")
        check(r[0] == "#ACK" and r[-1] == "#OK" and ("#IDENTITY:fingerprint: " + fp_a) in r,
              "#IDENTITY over TCP: %r" % r)
        # The identity survives a restart.
        check(da.stop() == 0, "stop")
        da.start()
        ta, ua = da.tcp(), da.unix()
        check(("#IDENTITY:fingerprint: " + fp_a) in ta.command("#IDENTITY"), "same identity")

        # Pin A to the owner, then install a package made for A.
        pin = run("securearea", "create", "--owner", "owner.pub", device=da.socket_path)
        check("pinned to owner" in pin.stdout, pin.stdout)
        run("securearea", "create", device=db.socket_path)
        fw = os.urandom(24000)
        setup_id = pack(setup_folder("s1", 3, fw), "s1.mfp")
        check(re.fullmatch(r"[0-9a-f]{64}", setup_id), "pack prints the setup id: %r" % setup_id)
        # Over TCP, as from afar: _SECURE takes the package (and nothing else) there.
        p = run("-d", "tcp:127.0.0.1:%d" % da.port, "push", "s1.mfp")
        check("installed" in p.stdout, p.stdout)
        i = info(ta)
        check(i["AREA"] == "SECURE" and i["SETUP"] == setup_id and i["CYCLES_LEFT"] == "3",
              "A runs the package: %r" % i)
        check(i.get("OWNER") and i.get("PINNED") == i.get("OWNER"), "INFO owner/pin: %r" % i)

        # B is not a recipient: refused, whole, with the reason in FLASHER.LOG.
        p = run("push", "s1.mfp", device=db.socket_path, expect=1)
        check("did not install" in p.stderr and "addressed" in p.stderr, p.stderr)
        tb = db.tcp()
        check(info(tb)["AREA"] == "PUBLIC", "B installed nothing")
        log_b = get(tb, "FLASHER.LOG").decode()
        check("not addressed to this programmer" in log_b or "not for this programmer" in log_b,
              "B's log says why:\n" + log_b)

        program(ta, 2)

        def refused(name, why):
            """Pushes a package that A must refuse; the installed setup stays as it was."""
            before = info(ta)
            p = run("push", name, device=da.socket_path, expect=1)
            check("did not install" in p.stderr and re.search(why, p.stderr, re.I),
                  "%s: the commander says why (%r): %s" % (name, why, p.stderr))
            after = info(ta)
            check(after["SETUP"] == setup_id and after["CYCLES_LEFT"] == before["CYCLES_LEFT"],
                  "%s: the setup is intact: %r" % (name, after))
            log = get(ta, "FLASHER.LOG").decode()
            check(re.search(why, log, re.I), "%s: FLASHER.LOG says %r:\n%s" % (name, why, log))
            check(ta.command("#FDELETE _SECURE/" + name)[-1] == "#OK", "clean up over TCP")
            check(ta.command("#FLIST _SECURE")[-1].startswith("#ERR011:"),
                  "the package deleted over TCP takes its _SECURE along (never an empty one)")

        # Tampered: one byte flipped in the middle.
        data = bytearray(open(os.path.join(work, "s1.mfp"), "rb").read())
        data[len(data) // 2] ^= 0x40
        open(os.path.join(work, "bad.mfp"), "wb").write(data)
        refused("bad.mfp", r"altered|authentic|signature")
        # A name the programmer cannot hold whole (248 bytes): refused by name, not "no such file".
        long_name = "x" * 244 + ".mfp"
        shutil.copy(os.path.join(work, "s1.mfp"), os.path.join(work, long_name))
        refused(long_name, r"name is longer than 247 bytes")
        # Expired.
        pack(setup_folder("s2", 9, fw), "old.mfp",
             extra=("--not-before", "2020-01-01", "--not-after", "2020-12-31"))
        refused("old.mfp", r"expired|not valid")
        # Another owner's (A is pinned to "owner").
        pack("s2", "foreign.mfp", owner="other")
        refused("foreign.mfp", r"pinned|owner")
        # The installed package again: a replay.
        # (Under a name of 247 bytes, the longest the programmer holds whole: refused as a
        # replay, not for its name.)
        again = "a" * 243 + ".mfp"
        shutil.copy(os.path.join(work, "s1.mfp"), os.path.join(work, again))
        refused(again, r"replay|not later")
        # A plain _SECURE folder on a pinned programmer.
        put(ua, "_SECURE/Projects/01_X/Cntdown.txt", "5\n")
        check(ta.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
        i = info(ta)
        check(i["SETUP"] == setup_id and i["CYCLES_LEFT"] == "1", "plain _SECURE refused: %r" % i)
        check("pinned to owner" in get(ta, "FLASHER.LOG").decode(), "logged")
        check(ta.command("#FDELETE _SECURE/Projects/01_X/Cntdown.txt")[-1].startswith("#ERR209:"),
              "a plain _SECURE is not changed over TCP")
        check(ua.command("#FDELETE _SECURE/Projects/01_X/Cntdown.txt")[-1] == "#OK", "clean")
        for d in ("_SECURE/Projects/01_X", "_SECURE/Projects", "_SECURE"):
            check(ua.command("#RMDIR " + d)[-1] == "#OK", "clean " + d)
        # The pin cannot be changed.
        p = run("securearea", "create", "--owner", "other.pub", device=da.socket_path, expect=1)
        check("pin cannot be changed" in p.stderr, p.stderr)
        check(info(ta)["SETUP"] == setup_id, "nothing was erased")

        # Top-ups: once, a replay does nothing, stale and foreign ones are refused. (The tokens
        # for B and of another owner are made from s1's setup id and not-before time: topup
        # --package refuses a package not addressed to the programmer, or not signed by the key.)
        with open(os.path.join(work, "s1.mfp"), "rb") as f:
            s1_time = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                    time.gmtime(struct.unpack_from("<q", f.read(84), 76)[0]))
        s1 = ("--setup", setup_id, "--package-time", s1_time)
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "s1.mfp",
            "--project", "Widget", "--limit", "6", "-o", "t6.mft")
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "s1.mfp",
            "--project", "Widget", "--limit", "4", "-o", "t4.mft")
        run("topup", "--owner-key", "owner.key", "--programmer", "b.pub", *s1,
            "--project", "Widget", "--limit", "50", "-o", "tb.mft")
        run("topup", "--owner-key", "other.key", "--programmer", "a.pub", *s1,
            "--project", "Widget", "--limit", "50", "-o", "tother.mft")
        p = run("push", "t6.mft", device=da.socket_path)
        check(info(ta)["CYCLES_LEFT"] == "4", "6 - 2 used = 4: %r / %s" % (info(ta), p.stdout))
        p = run("push", "t6.mft", device=da.socket_path)
        check("replay" in p.stdout and info(ta)["CYCLES_LEFT"] == "4", "replay: " + p.stdout)
        for name, why in (("t4.mft", "stale|lower"), ("tb.mft", "another programmer|programmer"),
                          ("tother.mft", "owner")):
            p = run("push", name, device=da.socket_path, expect=1)
            check(re.search(why, p.stderr, re.I) and info(ta)["CYCLES_LEFT"] == "4",
                  "%s refused: %s" % (name, p.stderr))
        # A token dropped into the public area is applied before the next cycle, then deleted.
        run("topup", "--owner-key", "owner.key", "--programmer", "a.pub", "--package", "s1.mfp",
            "--project", "Widget", "--limit", "7", "-o", "t7.mft")
        put(ta, "t7.mft", open(os.path.join(work, "t7.mft"), "rb").read())
        program(ta, 1)
        check(info(ta)["CYCLES_LEFT"] == "4", "7 - 3 = 4")
        check(ta.command("#FOPEN t7.mft") != ["#ACK", "#OK"] or
              ta.command("#FSIZE")[-1] == "#OK:0", "the token file is gone")
        ta.command("#FCLOSE")
        ta.command("#FDELETE t7.mft")

        # Production records: one per device so far (3), signed and chained.
        program(ta, 2)
        run("records", "rec", device=da.socket_path)
        rec = os.path.join(work, "rec", "RECORDS.000")
        lines = open(rec).read().splitlines(keepends=True)
        check(len(lines) == 5 and all(l.startswith("MFR1 ") for l in lines), "5 records: %r" % lines)
        out = verify([rec], 0)
        check("ok=5" in out and "intact" in out, out)

        def variant(name, new_lines):
            path = os.path.join(work, name)
            with open(path, "w") as f:
                f.writelines(new_lines)
            return path

        edited = list(lines)
        edited[2] = edited[2].replace("result=OK", "result=ERR")
        check("bad signature" in verify([variant("edited", edited)], 1).lower(), "edit detected")
        check("chain" in verify([variant("middle", lines[:2] + lines[3:])], 1).lower(),
              "a deleted middle record is detected")
        check("chain" in verify([variant("reordered", [lines[0], lines[2], lines[1]] + lines[3:])],
                                1).lower(), "reordering is detected")
        forged = list(lines)
        forged[4] = re.sub(r"sig=\S+", "sig=" + "A" * 86 + "==", forged[4])
        check("bad signature" in verify([variant("forged", forged)], 1).lower(), "forgery detected")
        # Deleting the newest record on the programmer: its next start writes a gap record.
        check(ta.command("#FDELETE RECORDS.000")[-1] == "#OK", "delete")
        put(ta, "RECORDS.000", "".join(lines[:4]))
        check(ta.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
        run("records", "rec2", device=da.socket_path)
        out = verify([os.path.join(work, "rec2", "RECORDS.000")], 1)
        check("gap" in out.lower(), "the deleted newest record shows as a gap:\n" + out)

        # A public area too full for the next record: production stops before the device is
        # touched, rather than make a device without a record. (The filler is FLASHER.OLD, a
        # file the programmer itself may keep there, so the conflict rule does not stop it first.)
        left = int(info(ta)["CYCLES_LEFT"])
        check(da.stop() == 0, "stop")
        layout = json.loads(run("storage", "info", da.storage, "--json").stdout)
        filler = os.path.join(work, "filler.bin")
        with open(filler, "wb") as f:
            f.write(b"\0" * (layout["public_area"]["free"] - 2048))
        run("storage", "put", da.storage, filler, "FLASHER.OLD")
        da.start()
        ta = da.tcp()
        r = ta.command("#AUTO")
        check(r[-1].startswith("#ERR211:") and "too full for the production records" in r[-1],
              "refused for lack of room: %r" % r)
        check(int(info(ta)["CYCLES_LEFT"]) == left, "no count taken")
        check(ta.command("#FDELETE FLASHER.OLD")[-1] == "#OK", "room again")
        check(ta.command("#AUTO")[-1].startswith("#OK"), "production goes on")
        check(da.stop() == 0 and db.stop() == 0, "clean exits")
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
