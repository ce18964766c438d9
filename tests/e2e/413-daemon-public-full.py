"""A public area too full for the cycle's FLASHER.LOG line (docs/jobs.md, "FLASHER.LOG"): #AUTO is
refused with #ERR211 naming FLASHER.LOG and the bytes free and needed, before a count is taken:
Cntdown.txt and Serial.txt stay as they were and no device is touched; the daemon says on stderr
that the refusal's own line is missing. (Devices were programmed with no line in the log, and
nothing said so.) Once space is freed, the log says a line is missing and production goes on,
logged."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, firmware, get  # noqa: E402
from mfprobe import number  # noqa: E402

PROJECT = "Projects/01_W/"


def storage(*args):
    r = subprocess.run([MINTFLASH, "storage"] + list(args), capture_output=True, text=True)
    check(r.returncode == 0, "mintflash storage %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


with tempfile.TemporaryDirectory(prefix="mf-e2e-full-") as work:
    image = os.path.join(work, "storage.img")
    local = os.path.join(work, "setup")
    storage("init", image, "--size", "8M")
    write(os.path.join(local, "FLASHER.INI"), "[CONFIG]\r\nProject = 01_W\r\n")
    write(os.path.join(local, PROJECT, "01_App", "app.bin"), firmware(4096))
    write(os.path.join(local, PROJECT, "01_App", "job.ini"),
          "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
          "[serial]\naddress = 0x08040000\nlength = 4\n")
    write(os.path.join(local, PROJECT, "Cntdown.txt"), "20\r\n")
    write(os.path.join(local, PROJECT, "Serial.txt"), "100\r\n")
    storage("put", "-r", image, os.path.join(local, "Projects"), "/")
    storage("put", image, os.path.join(local, "FLASHER.INI"), "/")
    free = json.loads(storage("info", "--json", image))["public_area"]["free"]
    write(os.path.join(work, "filler.bin"), b"\xAA" * free)
    storage("put", image, os.path.join(work, "filler.bin"), "/")
    check(json.loads(storage("info", "--json", image))["public_area"]["free"] == 0, "full")

    with Daemon(storage=image, workdir=work) as d:
        c = d.tcp()
        final = c.command("#AUTO")[-1]
        m = re.match(r"^#ERR211:the public area is too full for FLASHER\.LOG "
                     r"\((\d+) bytes free, (\d+) needed\): free space$", final)
        check(m and m.group(1) == "0" and int(m.group(2)) >= 2048, "refused: %r" % final)
        check(c.command("#RESULT") == ["#ACK", "#RESULT:1:" + final], "#RESULT repeats it")
        check(number(c, PROJECT + "Cntdown.txt") == 20, "no count taken")
        check(number(c, PROJECT + "Serial.txt") == 100, "no serial number taken")
        check(not os.path.exists(os.path.join(d.sim_dir, "slot1", "flash.bin")),
              "no device touched")
        check(re.search(r"slot 1: FLASHER\.LOG: this cycle's line is missing: no space left",
                        d.log_text()), "the daemon says the refusal went unlogged")

        check(c.command("#FDELETE filler.bin")[-1] == "#OK", "filler deleted")
        for serial in (100, 101):
            final = c.command("#AUTO")[-1]
            check(final.startswith("#OK"), "with room again: %r" % final)
        check(number(c, PROJECT + "Cntdown.txt") == 18, "two counts taken")
        check(number(c, PROJECT + "Serial.txt") == 102, "two serial numbers taken")
        log = get(c, "FLASHER.LOG").decode()
        check("at least one line before this one is missing from FLASHER.LOG: no space left" in log,
              "the log says a line is missing:\n" + log)
        for serial in (100, 101):
            check(re.search(r"slot 1 AUTO project \"W\" uid [0-9A-F]+ serial %d OK " % serial, log),
                  "cycle of serial %d logged:\n%s" % (serial, log))
print("413-daemon-public-full: ok")
