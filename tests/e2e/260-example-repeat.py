"""examples/repeat-job succeeds again and again on the same simulated device: 20 cycles through the
commander (`mintflash`) against the real daemon, each one OK, the device (the same UID throughout)
holding both jobs' data, that cycle's serial number and nothing else, and FLASHER.LOG one OK line
per cycle naming both jobs."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, SRC, Daemon, check, sim_flash  # noqa: E402

EXAMPLE = os.path.join(SRC, "examples", "repeat-job")
PROJECT = os.path.join(EXAMPLE, "Projects", "01_Repeat")
CYCLES = 20
SERIAL_ADDRESS = 0x7FF0  # 02_App/job.ini [serial] address, from the flash base


def commander(d, *args):
    """Runs the commander on the daemon's socket; it must succeed. Returns its output."""
    r = subprocess.run([MINTFLASH, "-d", "unix:" + d.socket_path] + list(args),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    check(r.returncode == 0, "'%s' exited with %d:\n%s%s" % (" ".join(args), r.returncode,
                                                            r.stdout, r.stderr))
    return r.stdout


def raw_image(d, path):
    """The bytes a data file loads, by the offline tool (from its lowest address)."""
    out = os.path.join(d.dir, os.path.basename(path) + ".bin")
    subprocess.run([MINTFLASH, "image", "convert", path, "-o", out, "--format", "bin"],
                   check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def sim_show(d):
    out = subprocess.run([MINTFLASH, "sim", "show", "--sim-dir", d.sim_dir, "--slot", "1"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


with Daemon(slots=1) as d:
    commander(d, "fwrite", "-r", EXAMPLE, "/")
    commander(d, "reboot")
    d.wait_ready()
    info = commander(d, "--json", "info")
    check('"project":"Repeat"' in info, "the example's project is selected: " + info)

    boot = raw_image(d, os.path.join(PROJECT, "01_Boot", "boot.srec"))
    app = raw_image(d, os.path.join(PROJECT, "02_App", "app.hex"))
    uid = None
    for n in range(1, CYCLES + 1):
        out = commander(d, "auto")
        last = out.strip().splitlines()[-1]
        check(re.fullmatch(r"OK \(Total [0-9.]+s, Erase [0-9.]+s, Prog [0-9.]+s, "
                           r"Verify [0-9.]+s\)", last), "cycle %d: %r" % (n, out))
        flash = sim_flash(d, 1)
        want = bytearray(b"\xff" * (1 << 20))
        want[0:len(boot)] = boot
        want[0x4000:0x4000 + len(app)] = app
        want[SERIAL_ADDRESS:SERIAL_ADDRESS + 4] = n.to_bytes(4, "little")
        if flash != bytes(want):
            bad = next((i for i in range(min(len(flash), len(want))) if flash[i] != want[i]), -1)
            check(False, "cycle %d: the device differs at offset 0x%X (size %d)"
                  % (n, bad, len(flash)))
        this = sim_show(d)["uid"]
        check(uid is None or this == uid, "cycle %d ran on another device (%s, was %s)"
              % (n, this, uid))
        uid = this

    # The same device throughout: one connect, one programming and one start per cycle.
    dev = sim_show(d)
    for key in ("connects", "programs", "starts"):
        check(dev[key] == str(CYCLES), "%s is not %d: %r" % (key, CYCLES, dev))
    check(dev["protection"] == "0" and dev["state"] == "running", "device state %r" % dev)

    check(commander(d, "fshow", "Projects/01_Repeat/Serial.txt").strip() == str(CYCLES + 1),
          "Serial.txt advanced once per cycle")
    log = commander(d, "fshow", "FLASHER.LOG")
    lines = [x.rstrip("\r") for x in log.splitlines() if " AUTO project " in x]
    check(len(lines) == CYCLES and " ERROR " not in log, "one OK line per cycle:\n" + log)
    for n, line in enumerate(lines, 1):
        check(re.search(r' slot 1 AUTO project "Repeat" uid %s serial %d OK \(Total [0-9.]+s, '
                        r'Erase [0-9.]+s, Prog [0-9.]+s, Verify [0-9.]+s\), job "Boot" "App"$'
                        % (uid, n), line), "FLASHER.LOG line %d: %r" % (n, line))

print("ok: %d cycles of examples/repeat-job on one device" % CYCLES)
