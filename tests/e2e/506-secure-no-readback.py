"""What the operator learns of a setup in the secure area through the target: nothing of its bytes.
A device under the factory's control (here the sim's flash.bin, edited between commands) answers
what it likes; #VERIFY costs no count. A verify failure from the secure area names no address and
no byte (before: `verify failed at 0x8000000 (expected 0x54, read 0xFF)`, which gave the whole
firmware back one byte per #VERIFY), neither in the reply nor in FLASHER.LOG; the same setup in
the public area still names the first difference. And #AUTO PATCH, which would change the owner's
bytes, is refused from the secure area unless the job allows it (`operator_patches = yes`), and
then the production record names the line (`note=operator-patch:` and the start of its SHA-256)."""
import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, get, info, put  # noqa: E402

SECRET = b"TOP-SECRET-FIRMWARE:" + os.urandom(4000)
SEALED = "verify failed (the setup runs from the secure area: where is not shown)"


def install(t, u, root, verify, extra=""):
    if root == "_SECURE":
        check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    base = (root + "/" if root else "") + "Projects/01_W"
    c = u if root else t  # _SECURE is the local connection's (a sealed package aside)
    put(c, base + "/01_App/app.bin", SECRET)
    put(c, base + "/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\nverify = %s\n%s[file]\npath = app.bin\naddress = 0x08000000\n"
        % (verify, extra))
    put(c, base + "/Cntdown.txt", "5\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")


def poke(d, offset, value):
    with open(os.path.join(d.sim_dir, "slot1", "flash.bin"), "r+b") as f:
        f.seek(offset)
        f.write(bytes([value]))


for verify in ("crc", "readback"):
    with Daemon(size="32M") as d:
        t, u = d.tcp(), d.unix()
        install(t, u, "_SECURE", verify)
        check(info(t)["AREA"] == "SECURE", "the setup runs from the secure area")
        check(t.command("#ERASE")[-1].startswith("#OK"), "erase (no count)")
        # The attack: verify, set the byte the reply names to the value it names, again.
        replies = []
        for _ in range(3):
            r = t.command("#VERIFY")[-1]
            replies.append(r)
            m = re.search(r"at 0x([0-9A-F]+) \(expected 0x([0-9A-F]{2})", r)
            if m:
                poke(d, int(m.group(1), 16) - 0x08000000, int(m.group(2), 16))
        check(replies == ["#ERR205:job App: " + SEALED] * 3, "verify = %s: %r" % (verify, replies))
        # A device with all but its last byte right gets the same answer as a blank one.
        with open(os.path.join(d.sim_dir, "slot1", "flash.bin"), "r+b") as f:
            f.write(SECRET[:-1] + bytes([SECRET[-1] ^ 1]))
        r = t.command("#VERIFY")[-1]
        check(r == "#ERR205:job App: " + SEALED, "one byte off: %r" % r)
        poke(d, len(SECRET) - 1, SECRET[-1])
        check(t.command("#VERIFY")[-1].startswith("#OK"), "the right bytes verify")
        log = get(t, "FLASHER.LOG").decode()
        check(SEALED in log and "expected 0x" not in log and "CRC mismatch" not in log,
              "FLASHER.LOG names nothing:\n" + log)
        check(info(t)["CYCLES_LEFT"] == "5", "verifies take no count")

# The public area (anyone there can read the files anyway) still names the first difference.
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    install(t, u, "", "readback")
    check(t.command("#ERASE")[-1].startswith("#OK"), "erase")
    r = t.command("#VERIFY")[-1]
    check(r == "#ERR205:job App: verify failed at 0x8000000 (expected 0x54, read 0xFF)",
          "public area: %r" % r)

# #AUTO PATCH from the secure area: refused before anything is taken, unless the job allows it.
for extra, allowed in (("", False), ("operator_patches = yes\n", True)):
    with Daemon(size="32M") as d:
        t, u = d.tcp(), d.unix()
        install(t, u, "_SECURE", "crc", extra)
        line = "1,8000000,10:" + "41" * 16
        r = t.command("#AUTO PATCH " + line)
        flash = open(os.path.join(d.sim_dir, "slot1", "flash.bin"), "rb").read() \
            if os.path.exists(os.path.join(d.sim_dir, "slot1", "flash.bin")) else b""
        if allowed:
            check(r[-1].startswith("#OK"), "allowed: %r" % r)
            check(flash[:16] == b"A" * 16 and flash[16:len(SECRET)] == SECRET[16:], "patched")
            check(info(t)["CYCLES_LEFT"] == "4", "one count")
            # The production record names the operator's line by its SHA-256.
            note = "note=operator-patch:" + hashlib.sha256(line.encode()).hexdigest()[:16]
            records = get(t, "RECORDS.000").decode()
            check(" result=OK " in records and note in records, "record:\n" + records)
        else:
            check(r[-1] == "#ERR212:#AUTO PATCH: patch 1 at 0x8000000 is in job App, which runs "
                  "from the secure area and takes no patches from the operator "
                  "(operator_patches = no)", "refused: %r" % r)
            check(flash[:16] != b"A" * 16, "the device holds no patch")
            check(info(t)["CYCLES_LEFT"] == "5", "no count taken")
print("PASS")
