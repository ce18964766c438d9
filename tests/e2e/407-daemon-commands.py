"""The programming commands against the real daemon and its sim devices: #PROGRAM, #VERIFY,
#START, #ERASE, #AUTO with Patches.txt, #AUTO NOPATCH, #AUTO PATCH <line>; the reference's
module forms (#AUTO *, #AUTO NOPATCH 1, #AUTO PATCH <slots> <line>) with their multi-module
replies; bad forms refused; #BAUDRATE<n> without a blank recognised. Each check looks at the
device's flash, device.ini, Cntdown.txt and Serial.txt, not only at the reply."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, put, sim_flash, simple_project  # noqa: E402
from mfprobe import device_value, number  # noqa: E402

PROJECT = "Projects/01_Widget/"
PATCH_AT, SERIAL_AT = 0x100, 0x40000


def patch_line(serial):
    """Patches.txt line number `serial`: 4 bytes at 0x8000100."""
    return "1,8000100,4:%08X" % (0xA0B0C000 + serial)


def states(reply):
    return [x.split(":", 1)[1] for x in reply if x.startswith("#STATUS:")]


def counters():
    return number(c, PROJECT + "Cntdown.txt"), number(c, PROJECT + "Serial.txt")


def device(slot):
    mem = sim_flash(d, slot)
    return mem, mem[PATCH_AT:PATCH_AT + 4], int.from_bytes(mem[SERIAL_AT:SERIAL_AT + 4], "little")


def multi(reply, slots):
    """#ACK, per-slot status lines of `slots` only, one #RESULT:<slot>:#OK each, #DONE."""
    check(reply[0] == "#ACK" and reply[-1] == "#DONE", "multi-module framing %r" % reply)
    for line in reply[1:-1]:
        m = re.match(r"^#(STATUS|RESULT):(\d+):", line)
        check(m and int(m.group(2)) in slots, "only lines of slots %r: %r" % (slots, reply))
    for slot in slots:
        check(sum(x.startswith("#RESULT:%d:#OK (Total " % slot) for x in reply) == 1,
              "one OK result for slot %d: %r" % (slot, reply))


with Daemon(slots=2) as d:
    c = d.tcp()
    fw = simple_project(c, count=20, serial=0, size=20000)
    put(c, PROJECT + "Patches.txt", "".join(patch_line(i) + "\r\n" for i in range(12)))
    check(c.command("#SELMODULE 1") == ["#ACK", "#SELECTED:1"], "select slot 1")

    # #PROGRAM: erase and program (Patches.txt line 0, serial 0), no verify; one count.
    r = c.command("#PROGRAM")
    check(states(r) == ["INITIALIZING", "CONNECTING", "UNLOCKING", "ERASING", "PROGRAMMING",
                        "READY"] and r[-1].startswith("#OK (Total "), "#PROGRAM %r" % r)
    mem, patch, serial = device(1)
    check(mem[:PATCH_AT] == fw[:PATCH_AT] and mem[PATCH_AT + 4:len(fw)] == fw[PATCH_AT + 4:],
          "programmed the firmware")
    check(patch.hex().upper() == patch_line(0)[-8:] and serial == 0, "patch line 0, serial 0")
    check(counters() == (19, 1), "one count and one serial number: %r" % (counters(),))

    # #VERIFY compares patched bytes as data (docs/protocol.md): it finds the patch. No count.
    r = c.command("#VERIFY")
    check(states(r) == ["INITIALIZING", "CONNECTING", "VERIFYING", "READY"], "#VERIFY %r" % r)
    check(r[-1].startswith("#ERR205:job App: verify failed at 0x8000100"), "patch found %r" % r)
    check(counters() == (19, 1), "#VERIFY takes nothing")

    # #AUTO NOPATCH: Patches.txt is skipped, its line (1) still taken with the serial number.
    r = c.command("#AUTO NOPATCH")
    check(r[-1].startswith("#OK (Total ") and "VERIFYING" in states(r), "#AUTO NOPATCH %r" % r)
    mem, patch, serial = device(1)
    check(mem[:len(fw)] == fw and serial == 1, "no patch, serial 1")
    check(counters() == (18, 2), "NOPATCH takes a count and a line")
    check(c.command("#VERIFY")[-1].startswith("#OK (Total "), "#VERIFY of an unpatched device")
    check(counters() == (18, 2), "#VERIFY takes nothing")

    # #START: the application is started; nothing is taken.
    starts = int(device_value(d, 1, "starts") or 0)
    r = c.command("#START")
    check(states(r) == ["INITIALIZING", "CONNECTING", "STARTING", "READY"] and
          r[-1].startswith("#OK (Total "), "#START %r" % r)
    check(device_value(d, 1, "state") == "running" and
          int(device_value(d, 1, "starts")) == starts + 1, "the device was started")
    check(counters() == (18, 2), "#START takes nothing")

    # #ERASE: the job's sectors are erased; nothing is taken.
    r = c.command("#ERASE")
    check(states(r) == ["INITIALIZING", "CONNECTING", "UNLOCKING", "ERASING", "READY"] and
          r[-1].startswith("#OK (Total "), "#ERASE %r" % r)
    check(sim_flash(d, 1)[:len(fw)] == b"\xff" * len(fw), "the firmware's range is erased")
    check(counters() == (18, 2), "#ERASE takes nothing")

    # #AUTO PATCH <line>: that line instead of Patches.txt.
    r = c.command("#AUTO PATCH 1,8000104,2:BEEF")
    check(r[-1].startswith("#OK (Total "), "#AUTO PATCH %r" % r)
    mem, patch, serial = device(1)
    check(patch == fw[PATCH_AT:PATCH_AT + 4] and mem[0x104:0x106] == b"\xbe\xef" and serial == 2,
          "the inline patch, not the file's line: %s" % mem[PATCH_AT:PATCH_AT + 8].hex())
    check(counters() == (17, 3), "PATCH takes a count and a serial number")

    # Plain #AUTO applies Patches.txt line <serial>.
    r = c.command("#AUTO")
    mem, patch, serial = device(1)
    check(r[-1].startswith("#OK (Total ") and serial == 3 and
          patch.hex().upper() == patch_line(3)[-8:], "#AUTO applies line 3: %r" % r)
    check(counters() == (16, 4), "#AUTO takes a count")

    # ---- the reference's module forms: replies per slot, the selection unchanged ----
    r = c.command("#AUTO *")
    multi(r, slots=(1,))
    check(not os.path.exists(os.path.join(d.sim_dir, "slot2")), "#AUTO * ran the selection only")
    check(counters() == (15, 5), "one device")

    r = c.command("#AUTO NOPATCH 2")
    multi(r, slots=(2,))
    mem, patch, serial = device(2)
    check(mem[:len(fw)] == fw and serial == 5, "slot 2: no patch, serial 5")
    check(counters() == (14, 6), "one device")
    check(c.command("#RESULT")[1].startswith("#RESULT:1:"), "still one slot selected")
    check(c.command("#STATUS") == ["#ACK", "#STATUS:READY"], "single-unit #STATUS: slot 1 only")

    r = c.command("#AUTO PATCH 1,2 1,8000108,2:CAFE")
    multi(r, slots=(1, 2))
    for slot in (1, 2):
        mem = sim_flash(d, slot)
        check(mem[0x108:0x10A] == b"\xca\xfe" and mem[PATCH_AT:PATCH_AT + 4] == fw[0x100:0x104],
              "slot %d has the inline patch" % slot)
    check(counters() == (12, 8), "two devices")

    r = c.command("#AUTO NOINFO 2")
    check(r[0] == "#ACK" and r[1].startswith("#RESULT:2:#OK (Total ") and r[2:] == ["#DONE"],
          "NOINFO with a slot: %r" % r)
    check(counters() == (11, 9), "one device")

    # Bad forms: refused before anything runs.
    for cmd, want in (("#AUTO 3", "#NACK:ERR210:Slots are 1 to 2"),
                      ("#AUTO NOPATCH 0", "#NACK:ERR210:Slots are 1 to 2"),
                      ("#AUTO PATCH 3 1,8000108,2:CAFE", "#NACK:ERR210:Slots are 1 to 2"),
                      ("#AUTO 1,x", "#NACK:ERR210:Unknown option '1,x'"),
                      ("#AUTO **", "#NACK:ERR210:Unknown option '**'"),
                      ("#AUTO PATCH", "#NACK:ERR210:PATCH needs a patch line"),
                      ("#ERASE NOPATCH", "#NACK:ERR210:Unknown option 'NOPATCH'"),
                      ("#BAUDRATEX", "#NACK")):
        r = c.command(cmd)
        check(r == [want], "%s -> %r" % (cmd, r))
    check(counters() == (11, 9), "refused forms took nothing")

    # #BAUDRATE<n> (the reference's spelling) is #BAUDRATE: on TCP it gets the channel's error.
    for cmd in ("#BAUDRATE9600", "#baudrate115200"):
        check(c.command(cmd) == ["#ACK", "#ERR215:#BAUDRATE applies to the serial line only"],
              cmd)
    check(d.stop() == 0, "clean exit")
print("ok")

# The fullest inline #AUTO PATCH line: 8 patches of 64 bytes at 16-digit addresses (1193
# characters, more than a line held before).
with Daemon() as d:
    c = d.tcp()
    fw = simple_project(c, count=5, serial=0, size=20000)
    full = "8" + "".join(",%016X,40:%s" % (0x08001000 + 0x100 * k, ("%02X" % (0x10 + k)) * 64)
                         for k in range(8))
    check(len(full) > 1024, "a line longer than the old 1024-byte buffer: %d" % len(full))
    r = c.command("#AUTO PATCH " + full)
    check(r[-1].startswith("#OK (Total "), "#AUTO PATCH with 8 x 64 bytes %r" % r)
    mem = sim_flash(d, 1)
    check(all(mem[0x1000 + 0x100 * k:0x1000 + 0x100 * k + 64] == bytes([0x10 + k]) * 64
              for k in range(8)), "every byte of the 8 patches is programmed")
    check(counters() == (4, 1), "the full line takes a count and a serial number")
