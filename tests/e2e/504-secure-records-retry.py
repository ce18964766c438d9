"""Production stops when the production records cannot be written, and goes on by itself once they
can: here the newest RECORDS file is a full 1 MiB file that is not the programmer's (the chain's
head is missing from it and its gap record has no room: "1000 RECORDS files are full"). Every
#AUTO of three slots at once is refused, touching no device, and says it tries again; once the
file is deleted over the protocol the next #AUTO writes the records and programs on every slot,
without a restart (the slots starting together do not keep each other from trying). The records
then verify intact with every device in them and no serial number skipped."""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, get, put, sim_flash  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-records-retry-")
SLOTS = 3


def mintflash(*args, device=None):
    env = dict(os.environ)
    if device:
        env["MINTFLASH_DEVICE"] = "unix:" + device
    p = subprocess.run([MINTFLASH] + list(args), env=env, capture_output=True, text=True,
                       timeout=120)
    check(p.returncode == 0, "mintflash %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p.stdout


def serial_on_device(d, slot):
    return int.from_bytes(sim_flash(d, slot)[0x40000:0x40004], "little")


def results(reply):
    """{slot: result} of a multi-slot reply."""
    check(reply[0] == "#ACK" and reply[-1] == "#DONE", "multi-slot framing: %r" % reply)
    out = dict((int(m.group(1)), m.group(2)) for m in
               (re.match(r"^#RESULT:(\d+):(.*)$", line) for line in reply) if m)
    check(sorted(out) == list(range(1, SLOTS + 1)), "one result per slot: %r" % reply)
    return out


with Daemon(size="32M", slots=SLOTS) as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    setup = {"01_App/app.bin": os.urandom(4000),
             "01_App/job.ini": "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
                               "address = 0x08000000\n[serial]\naddress = 0x08040000\nlength = 4\n",
             "Cntdown.txt": "10\r\n", "Serial.txt": "300\r\n"}
    for name, data in setup.items():
        put(u, "_SECURE/Projects/01_Widget/" + name, data)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    r = results(t.command("#AUTO", timeout=120))
    check(all(x.startswith("#OK (Total ") for x in r.values()), "first round: %r" % r)
    mintflash("identity", "-o", os.path.join(work, "prog.pub"), device=d.socket_path)
    t.close()
    u.close()
    d.stop()

    # A foreign, full RECORDS.999 put into the public area while the programmer was off.
    junk = os.path.join(work, "RECORDS.999")
    line = "not a record of this programmer".ljust(99) + "\n"
    with open(junk, "w") as f:
        f.write((line * ((1 << 20) // len(line) + 1))[:1 << 20])
    mintflash("storage", "put", d.storage, junk, "/")

    d.start()
    t = d.tcp()
    before = [sim_flash(d, slot) for slot in range(1, SLOTS + 1)]
    for n in range(2):
        r = results(t.command("#AUTO", timeout=120))
        for slot, text in r.items():
            check(text.startswith("#ERR") and "production stopped (tried again" in text
                  and "1000 RECORDS files are full" in text, "slot %d refused: %r" % (slot, text))
    check([sim_flash(d, slot) for slot in range(1, SLOTS + 1)] == before,
          "no device was touched while production was stopped")
    check(t.command("#FDELETE RECORDS.999")[-1] == "#OK", "the file is deleted")
    made = sorted(serial_on_device(d, slot) for slot in range(1, SLOTS + 1))
    for n in range(2):
        r = results(t.command("#AUTO", timeout=120))
        check(all(x.startswith("#OK (Total ") for x in r.values()),
              "production goes on without a restart: %r" % r)
        made += sorted(serial_on_device(d, slot) for slot in range(1, SLOTS + 1))
    check(made == list(range(300, 300 + 3 * SLOTS)), "serial numbers in a row: %r" % made)
    log = get(t, "FLASHER.LOG").decode()
    check("production records work again (they had stopped: production records: 1000 RECORDS "
          "files are full" in log, "FLASHER.LOG says production goes on:\n" + log)
    t.close()
    d.stop()

    mintflash("storage", "get", d.storage, "/RECORDS.000", work)
    out = subprocess.run([MINTFLASH, "log", "verify", "--programmer", os.path.join(work, "prog.pub"),
                          os.path.join(work, "RECORDS.000")], capture_output=True, text=True)
    check(out.returncode == 0 and "verdict: intact" in out.stdout, "records intact:\n" + out.stdout)
    check("ok=9 failed=0 serials=9 serial_min=300 serial_max=308" in out.stdout,
          "every device recorded once:\n" + out.stdout)
print("ok")
