"""One connection starts a cycle on an idle slot while its earlier cycle still runs on another
(the reference: #AUTO may be sent for other modules while an operation runs). From the second
#ACK on, every running slot of the connection answers in the multi-module forms, one #DONE ends
them all; a command for a slot that is busy gets #NACK:ERR008. Sim targets are slowed so that
the cycles overlap; the state is polled, never waited for with a sleep."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, sim_flash, simple_project  # noqa: E402
from mfprobe import lines_until, number, poll, slot_status  # noqa: E402

SERIAL_AT = 0x40000
SLOT_LINE = re.compile(r"^#STATUS:[12]:[A-Z]+$")


def serial_of(daemon, slot):
    return int.from_bytes(sim_flash(daemon, slot)[SERIAL_AT:SERIAL_AT + 4], "little")


def check_joined(after, slot_lines):
    """The replies after the joining #ACK: per-slot forms only, one result per slot, #DONE last."""
    statuses = [x for x in after if x.startswith("#STATUS:")]
    check(all(SLOT_LINE.match(x) for x in statuses), "only per-slot status lines: %r" % after)
    check(not any(x.startswith(("#OK", "#ERR")) for x in after), "no single-unit result %r" % after)
    for slot in (1, 2):
        ok = [x for x in after if x.startswith("#RESULT:%d:#OK (Total " % slot)]
        check(len(ok) == 1, "one #RESULT for slot %d: %r" % (slot, after))
    check(after[-1] == "#DONE" and after.count("#DONE") == 1, "one #DONE, last: %r" % after)
    # Slot 2 ran before slot 1 was done: the cycles overlapped.
    first_2 = next(i for i, x in enumerate(after) if x.startswith(("#STATUS:2:", "#RESULT:2:")))
    result_1 = next(i for i, x in enumerate(after) if x.startswith("#RESULT:1:"))
    check(first_2 < result_1, "slot 2 started while slot 1 ran: %r" % after)
    for slot in (1, 2):
        has = any(x.startswith("#STATUS:%d:" % slot) for x in after)
        check(has == (slot in slot_lines), "status lines of slot %d: %r" % (slot, after))


with Daemon(slots=2, sim_speed="2") as d:
    c, monitor = d.tcp(), d.tcp()
    fw = simple_project(c, count=10, serial=100, size=128 * 1024)

    # ---- slot 1 alone: the single-unit forms, until slot 2 joins ----
    check(c.command("#SELMODULE 1") == ["#ACK", "#SELECTED:1"], "select slot 1")
    c.send("#AUTO\r")
    alone = lines_until(c, lambda x: x == "#STATUS:ERASING")
    check(alone[0] == "#ACK" and all(re.match(r"^#STATUS:[A-Z]+$", x) for x in alone[1:]),
          "slot 1 alone answers in the single-unit form: %r" % alone)
    check(slot_status(monitor, 1) in ("ERASING", "PROGRAMMING"), "slot 1 runs (polled)")
    check(slot_status(monitor, 2) == "READY", "slot 2 is idle (polled)")

    c.send("#SELMODULE 2\r")
    sel = lines_until(c, lambda x: x.startswith(("#SELECTED", "#NACK")))
    check(sel[-1] == "#SELECTED:2" and "#ACK" in sel, "select slot 2 mid-cycle: %r" % sel)
    c.send("#AUTO\r")
    joined = lines_until(c, lambda x: x.startswith(("#ACK", "#NACK", "#OK", "#ERR")))
    check(joined[-1] == "#ACK", "a second cycle starts on the idle slot: %r" % joined)

    # Both slots busy now: a command for either is refused, on this and on other connections.
    after = lines_until(c, lambda x: x == "#STATUS:2:ERASING")
    c.send("#AUTO 1\r")
    after += lines_until(c, lambda x: x.startswith(("#NACK", "#ACK")))
    check(after[-1] == "#NACK:ERR008:Busy (slot 1 runs a command of this connection)",
          "own busy slot 1: %r" % after)
    c.send("#AUTO\r")
    after += lines_until(c, lambda x: x.startswith(("#NACK", "#ACK")))
    check(after[-1] == "#NACK:ERR008:Busy (slot 2 runs a command of this connection)",
          "own busy slot 2: %r" % after)
    check(not any(x.startswith("#RESULT:") for x in after), "both were still running: %r" % after)
    after = [x for x in after if not x.startswith("#NACK")]
    check(monitor.command("#SELMODULE 1") == ["#ACK", "#SELECTED:1"], "monitor selects 1")
    check(monitor.command("#AUTO") == ["#NACK:ERR008:Busy (slot 1)"], "slot 1 busy for others")
    check(monitor.command("#SELMODULE *") == ["#ACK", "#SELECTED:1,2"], "monitor selects all")
    r = monitor.command("#AUTO")
    while r[-1] != "#DONE":
        r += monitor.until_final()
    check(r == ["#ACK", "#RESULT:1:#ERR008:slot 1 is busy", "#RESULT:2:#ERR008:slot 2 is busy",
                "#DONE"], "busy slots in the multi-module form: %r" % r)

    after += lines_until(c, lambda x: x == "#DONE")
    check_joined(after, slot_lines=(1, 2))
    check(any(x == "#STATUS:1:READY" for x in after), "slot 1 switched to per-slot lines")
    for slot in (1, 2):
        check(sim_flash(d, slot)[:len(fw)] == fw, "slot %d holds the firmware" % slot)
    check({serial_of(d, 1), serial_of(d, 2)} == {100, 101}, "two serial numbers")
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 8, "two counts taken")
    check(c.command("#SELMODULE *") == ["#ACK", "#SELECTED:1,2"], "select all")
    r = c.command("#RESULT", lines=2)
    check(r[1].startswith("#RESULT:1:#OK (Total ") and r[2].startswith("#RESULT:2:#OK (Total "),
          "#RESULT afterwards: %r" % r)

    # ---- NOINFO stays with its slot; a named slot (`#AUTO 2`) joins too ----
    check(c.command("#SELMODULE 1") == ["#ACK", "#SELECTED:1"], "select slot 1 again")
    c.send("#AUTO NOINFO\r")
    check(c.line() == "#ACK", "ACK of the NOINFO cycle")
    poll(lambda: slot_status(monitor, 1) == "ERASING", "slot 1 erasing")
    c.send("#AUTO 2\r")
    check(c.line() == "#ACK", "the joining cycle is accepted before slot 1 ends")
    after = lines_until(c, lambda x: x == "#DONE")
    check_joined(after, slot_lines=(2,))
    check({serial_of(d, 1), serial_of(d, 2)} == {102, 103}, "two more serial numbers")
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 6, "two more counts")
    check(d.stop() == 0, "clean exit")
print("ok")
