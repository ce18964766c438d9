"""Programming through the daemon: a gang of sim slots, exact counts and serial numbers, the
multi-module replies, busy slots, #CANCEL, a client killed mid-cycle, and SIGTERM mid-cycle
(count and FLASHER.LOG stay exact)."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, get, put, sim_flash, simple_project  # noqa: E402


def number(client, path):
    return int(get(client, path).decode().split()[0])


def device_ini(daemon, slot):
    with open(os.path.join(daemon.sim_dir, "slot%d" % slot, "device.ini")) as f:
        return f.read()


def connects(daemon, slot):
    m = re.search(r"^connects\s*=\s*(\d+)", device_ini(daemon, slot), re.M)
    return int(m.group(1)) if m else 0


# ---- a gang of three slots, no delays ----
with Daemon(slots=3) as d:
    c = d.tcp()
    fw = simple_project(c, count=5, serial=100)
    r = c.command("#AUTO")
    check(r[0] == "#ACK" and r[-1] == "#DONE", "multi-slot #AUTO framing: %r" % r)
    results = [x for x in r if x.startswith("#RESULT:")]
    check(len(results) == 3 and all(":#OK (Total " in x for x in results), "3 results %r" % r)
    check(any(x.startswith("#STATUS:2:PROGRAMMING") for x in r), "per-slot status lines %r" % r)
    serials = set()
    for slot in (1, 2, 3):
        mem = sim_flash(d, slot)
        check(mem[:len(fw)] == fw, "slot %d holds the firmware" % slot)
        serials.add(int.from_bytes(mem[0x40000:0x40004], "little"))
    check(serials == {100, 101, 102}, "three distinct serial numbers: %r" % serials)
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 2, "count 5 - 3")
    check(number(c, "Projects/01_Widget/Serial.txt") == 103, "serial advanced by 3")

    # Two counts for three slots: exactly two devices, the third slot is not even connected.
    before = [connects(d, s) for s in (1, 2, 3)]
    r = c.command("#AUTO NOINFO")
    check(not any(x.startswith("#STATUS") for x in r), "NOINFO: no status lines %r" % r)
    ok = [x for x in r if ":#OK (" in x]
    exhausted = [x for x in r if ":#ERR201:" in x]
    check(len(ok) == 2 and len(exhausted) == 1, "two made, one exhausted: %r" % r)
    slot = int(exhausted[0].split(":")[1])
    check(connects(d, slot) == before[slot - 1], "the exhausted slot was not touched")
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 0, "count 0")

    # One slot selected: the single-unit forms.
    check(c.command("#SELMODULE 2") == ["#ACK", "#SELECTED:2"], "SELMODULE")
    r = c.command("#AUTO")
    check(r[-1].startswith("#ERR201:no programming cycles left"), "exhausted, single form %r" % r)
    check(c.command("#RESULT") [1].startswith("#RESULT:2:#ERR201:"), "RESULT")
    check(c.command("#SELMODULE 9")[0].startswith("#NACK:ERR210:"), "no slot 9")
    check(c.command("#SELMODULE *") == ["#ACK", "#SELECTED:1,2,3"], "SELMODULE *")
    st = c.command("#STATUS", lines=3)
    check(st[1:] == ["#STATUS:1:READY", "#STATUS:2:READY", "#STATUS:3:READY"], "multi STATUS %r" % st)

    # A new count: the daemon takes the changed files in before the next command.
    put(c, "Projects/01_Widget/Cntdown.txt", "1\r\n")
    c.command("#SELMODULE 1")
    r = c.command("#AUTO")
    check(r[-1].startswith("#OK (Total "), "after the top-up %r" % r)
    info = c.command("#INFO")
    check("#INFO:CYCLES_LEFT=0" in info and "#INFO:NEXT_SERIAL=106" in info, "INFO %r" % info)

    # #SELECT, with and without the prefix; written to FLASHER.INI.
    check(c.command("#SELECT Widget") == ["#ACK", "#OK"], "SELECT by name")
    check(c.command("#SELECT 01_widget") == ["#ACK", "#OK"], "SELECT by folder")
    check(c.command("#SELECT Nope")[-1].startswith("#ERR203:"), "SELECT unknown")
    check(b"Project = 01_Widget" in get(c, "FLASHER.INI"), "FLASHER.INI records it")

    log = get(c, "FLASHER.LOG").decode()
    check(len(re.findall(r"slot \d AUTO project \"Widget\" uid [0-9A-F]{24} serial \d+ OK", log))
          == 6, "six OK lines in FLASHER.LOG:\n" + log)
    check(d.stop() == 0, "clean exit")

# ---- realistic timing: busy, cancel, a vanished client, SIGTERM ----
with Daemon(slots=1, sim_speed="1") as d:
    c = d.tcp()
    simple_project(c, count=10, serial=1, size=256 * 1024)

    def start_auto(client):
        client.send("#AUTO\r")
        check(client.line() == "#ACK", "ACK")
        while True:
            line = client.line()
            if line == "#STATUS:PROGRAMMING":
                return
            check(not line.startswith(("#OK", "#ERR")), "ended early: " + line)

    a, b = d.tcp(), d.tcp()
    start_auto(a)
    r = b.command("#AUTO")
    check(r == ["#NACK:ERR008:Busy (slot 1)"], "busy slot %r" % r)
    check(b.command("#STATUS")[1] == "#STATUS:PROGRAMMING", "STATUS while busy")
    check(b.command("#CANCEL") == ["#ACK", "#OK"], "CANCEL")
    r = a.until_final()
    check(r[-1] == "#ERR007:CANCELED.", "cancelled: %r" % r)
    check(number(b, "Projects/01_Widget/Cntdown.txt") == 9, "a cancelled cycle keeps its count")
    check(number(b, "Projects/01_Widget/Serial.txt") == 2, "and its serial number (a gap)")

    # A client that vanishes mid-cycle does not stop or spoil it.
    start_auto(a)
    a.close()
    deadline = time.time() + 60
    while time.time() < deadline:
        res = b.command("#RESULT")[1]
        if res != "#RESULT:1:BUSY":
            break
        time.sleep(0.1)
    check(res.startswith("#RESULT:1:#OK (Total "), "finished without its client: " + res)
    check(number(b, "Projects/01_Widget/Cntdown.txt") == 8, "one count for that device")

    # SIGTERM mid-cycle: the cycle is stopped safely, the count stays taken, exit 0.
    a = d.tcp()
    start_auto(a)
    check(d.stop() == 0, "exit status 0 on SIGTERM mid-cycle")
    out = subprocess.run(["mtype", "-i", d.storage + "@@1M", "::Projects/01_Widget/Cntdown.txt"],
                         capture_output=True, text=True)
    check(out.stdout.split()[0] == "7", "count taken by the stopped cycle: %r" % out.stdout)
    out = subprocess.run(["mtype", "-i", d.storage + "@@1M", "::FLASHER.LOG"],
                         capture_output=True, text=True)
    log = out.stdout
    check(len(re.findall(r"serial \d+ ERROR job App: cancelled while (erasing|programming) "
                         r"\(count consumed\)", log)) == 2, "log says what happened:\n" + log)
    check(log.rstrip().endswith("programmer stopped"), "log ends with the stop:\n" + log)

# ---- #CANCEL names its slots (the reference's multi-module rule): the others run on ----
with Daemon(slots=2, sim_speed="1") as d:
    c = d.tcp()
    simple_project(c, count=10, serial=1, size=256 * 1024)
    for cmd, want in (("#CANCEL 3", ["#NACK:ERR210:Slots are 1 to 2"]),
                      ("#CANCEL two", ["#NACK:ERR210:Expected nothing, * or <slot>[,<slot>...]"]),
                      ("#STATUS 2", ["#NACK:ERR210:This command takes nothing after it"]),
                      ("#INFO x", ["#NACK:ERR210:This command takes nothing after it"]),
                      ("#FCLOSE junk", ["#NACK:ERR210:This command takes nothing after it"]),
                      ("#RESULT 1", ["#NACK:ERR210:This command takes nothing after it"]),
                      ("#FSIZE x", ["#NACK:ERR210:This command takes nothing after it"]),
                      ("#IDENTITY x", ["#NACK:ERR210:This command takes nothing after it"])):
        r = c.command(cmd)
        check(r == want, "%s: %r" % (cmd, r))
    a, b = d.tcp(), d.tcp()
    a.send("#AUTO 1,2\r")
    check(a.line() == "#ACK", "ACK")
    seen = set()
    while seen != {"#STATUS:1:PROGRAMMING", "#STATUS:2:PROGRAMMING"}:
        line = a.line()
        check(not line.startswith(("#RESULT", "#DONE")), "ended early: " + line)
        if line.endswith(":PROGRAMMING"):
            seen.add(line)
    check(b.command("#CANCEL 2") == ["#ACK", "#OK"], "CANCEL 2 from another connection")
    rest = a.until_final(timeout=120)
    results = sorted(x for x in rest if x.startswith("#RESULT:"))
    check(len(results) == 2 and results[0].startswith("#RESULT:1:#OK (Total ") and
          results[1] == "#RESULT:2:#ERR007:CANCELED." and rest[-1] == "#DONE",
          "slot 2 alone cancelled, slot 1 finished: %r" % rest)
print("ok")
