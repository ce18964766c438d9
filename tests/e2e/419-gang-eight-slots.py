"""A gang of 8 slots (the least the programmer supports) on sim targets: one slot's failure does
not disturb the others. Slot 3's device flips a bit after programming (verify fails after its
count was taken), slot 6's does not answer (fails before anything is taken); the other six are
programmed exactly, and the counts and serial numbers stay exact: one count and one serial number
per device touched, no serial number twice, the failing slots logged with what failed. A second
round with fewer counts than slots never makes more devices than counts."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, get, sim_flash, simple_project  # noqa: E402

SLOTS = 8
FLIP, DEAD = 3, 6
FLIP_ADDRESS = 0x08000100


def number(client, path):
    return int(get(client, path).decode().split()[0])


def device(d, slot):
    """`mintflash sim show` of one slot, as a dict."""
    out = subprocess.run([MINTFLASH, "sim", "show", "--sim-dir", d.sim_dir, "--slot", str(slot)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def set_fault(d, slot, knob, value):
    path = os.path.join(d.sim_dir, "slot%d" % slot, "device.ini")
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"^%s = .*$" % knob, "%s = %s" % (knob, value), text, flags=re.M)
    if n == 0:
        text = text.rstrip("\n") + ("\n" if "[faults]" in text else "\n[faults]\n")
        text += "%s = %s\n" % (knob, value)
    with open(path, "w") as f:
        f.write(text)


def results(reply):
    """{slot: result text} of a multi-slot reply; every slot once, then #DONE."""
    check(reply[0] == "#ACK" and reply[-1] == "#DONE", "multi-slot framing: %r" % reply)
    out = {}
    for line in reply:
        m = re.match(r"^#RESULT:(\d+):(.*)$", line)
        if m:
            slot = int(m.group(1))
            check(slot not in out, "slot %d answered twice: %r" % (slot, reply))
            out[slot] = m.group(2)
    check(sorted(out) == list(range(1, SLOTS + 1)), "one result per slot: %r" % reply)
    return out


with Daemon(slots=SLOTS) as d:
    c = d.tcp()
    info = c.command("#INFO")
    check("#INFO:SLOTS=%d" % SLOTS in info, "eight slots: %r" % info)
    fw = simple_project(c, count=10, serial=500)

    # Eight fresh devices, two of them faulty.
    for slot in range(1, SLOTS + 1):
        subprocess.run([MINTFLASH, "sim", "replace", "--sim-dir", d.sim_dir, "--slot", str(slot),
                        "--profile", "SIM-F4-1M"], check=True, capture_output=True)
    set_fault(d, FLIP, "flip", "0x%08X always" % FLIP_ADDRESS)
    set_fault(d, DEAD, "connect", "always")
    uids = {s: device(d, s)["uid"] for s in range(1, SLOTS + 1)}
    check(len(set(uids.values())) == SLOTS, "eight different devices: %r" % uids)

    # ---- round 1: ten counts for eight slots ----
    r = results(c.command("#AUTO", timeout=120))
    for slot in range(1, SLOTS + 1):
        if slot == FLIP:
            check(r[slot].startswith("#ERR205:") and "verify failed at 0x8000100" in r[slot],
                  "slot %d: verify fails: %r" % (slot, r[slot]))
        elif slot == DEAD:
            check(r[slot].startswith("#ERR206:"), "slot %d: no connect: %r" % (slot, r[slot]))
        else:
            check(r[slot].startswith("#OK (Total "), "slot %d: %r" % (slot, r))

    # The six good devices hold the firmware and six distinct serial numbers.
    serials = {}
    for slot in range(1, SLOTS + 1):
        mem = sim_flash(d, slot)
        if slot == DEAD:
            check(mem == b"\xff" * len(mem), "slot %d: the dead device was not written" % slot)
            check(device(d, slot)["connects"] == "0", "slot %d: never connected" % slot)
            continue
        if slot != FLIP:
            check(mem[:len(fw)] == fw, "slot %d holds the firmware" % slot)
            check(mem[len(fw):0x40000] == b"\xff" * (0x40000 - len(fw)),
                  "slot %d: nothing past the firmware" % slot)
        serials[slot] = int.from_bytes(mem[0x40000:0x40004], "little")
    good = {s: v for s, v in serials.items() if s != FLIP}
    check(len(set(good.values())) == 6, "six distinct serial numbers: %r" % good)

    # Seven devices were touched (the dead one was not): seven counts, seven serial numbers.
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 3, "count 10 - 7")
    check(number(c, "Projects/01_Widget/Serial.txt") == 507, "serial 500 + 7")
    log = get(c, "FLASHER.LOG").decode()
    lines = [x for x in log.splitlines() if " AUTO project " in x]
    check(len(lines) == SLOTS, "one line per slot:\n" + log)
    logged = {}
    for slot in range(1, SLOTS + 1):
        mine = [x for x in lines if " slot %d AUTO " % slot in x]
        check(len(mine) == 1, "slot %d: one line:\n%s" % (slot, log))
        line = mine[0]
        m = re.search(r" uid (\S+) serial (\S+) ", line)
        check(m, "slot %d: uid and serial in %r" % (slot, line))
        if slot == DEAD:
            check(m.group(1) == "-" and m.group(2) == "-" and " ERROR connect: " in line
                  and line.endswith(", job -"), "slot %d: %r" % (slot, line))
            continue
        check(m.group(1) == uids[slot], "slot %d: its UID %r" % (slot, line))
        logged[slot] = int(m.group(2))
        if slot == FLIP:
            check(" ERROR job App: verify failed at 0x8000100 " in line
                  and "(count consumed) (Total " in line and line.endswith(', job "App"'),
                  "slot %d: %r" % (slot, line))
        else:
            check(' OK (Total ' in line and line.endswith(', job "App"'),
                  "slot %d: %r" % (slot, line))
            check(logged[slot] == good[slot], "slot %d: the log names its serial" % slot)
    check(sorted(logged.values()) == list(range(500, 507)),
          "serial numbers 500..506, each once (a gap at the failed device): %r" % logged)

    # ---- round 2: three counts for eight slots, the faults still there ----
    before = {s: int(device(d, s)["connects"]) for s in range(1, SLOTS + 1)}
    r = results(c.command("#AUTO", timeout=120))
    after = {s: device(d, s) for s in range(1, SLOTS + 1)}
    touched = [s for s in range(1, SLOTS + 1) if s != DEAD
               and int(after[s]["connects"]) > before[s]]
    exhausted = [s for s in r if r[s].startswith("#ERR201:")]
    made = [s for s in r if r[s].startswith("#OK (Total ")]
    left = number(c, "Projects/01_Widget/Cntdown.txt")
    taken = 3 - left
    check(1 <= taken <= 3 and len(touched) == taken, "devices touched = counts taken: %r %r %d"
          % (r, touched, left))
    check(set(made) <= set(touched) and len(made) >= taken - (FLIP in touched),
          "every count went to a touched device: %r" % r)
    for s in exhausted:
        check(int(after[s]["connects"]) == before[s], "slot %d refused, not touched" % s)
    check(len(exhausted) + len(touched) + (r[DEAD].startswith("#ERR206:")) == SLOTS,
          "every slot accounted for: %r" % r)
    check(number(c, "Projects/01_Widget/Serial.txt") == 507 + taken, "one serial per count")
    c.close()

print("ok: 8 slots, failures isolated, counts and serial numbers exact")
