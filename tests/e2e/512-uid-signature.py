"""Clone protection end to end: a job with [signature] programs into each simulated device an
Ed25519 signature over (setup id, the device's UID, its serial number) made with a key that lives
in the setup; `mintflash sig verify` on the owner's PC says 'valid' for that UID and serial and
'INVALID' for another UID, another serial or another setup. With `protect = 1` the device is read
protected as the last step: a later #VERIFY is refused (the sim honours readout protection)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, get, put, sim_flash  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-uidsig-")


def run(*args, expect=0):
    p = subprocess.run([MINTFLASH] + list(args), cwd=work, capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == expect, "mintflash %s: exit %d (expected %d)\n%s%s"
          % (" ".join(args), p.returncode, expect, p.stdout, p.stderr))
    return p.stdout


SIG_AT = 0x080FF000
try:
    run("keygen", "-o", "uid")
    with Daemon() as d:
        t = d.tcp()
        fw = os.urandom(10000)
        put(t, "Projects/01_W/01_App/app.bin", fw)
        put(t, "Projects/01_W/01_App/uid.key", open(os.path.join(work, "uid.key"), "rb").read())
        put(t, "Projects/01_W/01_App/job.ini",
            "[job]\ndevice = SIM-F4-1M\nprotect = 1\n[file]\npath = app.bin\n"
            "address = 0x08000000\n[serial]\naddress = 0x080F8000\n"
            "[signature]\naddress = 0x%08X\nkey = uid.key\n" % SIG_AT)
        put(t, "Projects/01_W/Cntdown.txt", "10\n")
        put(t, "Projects/01_W/Serial.txt", "4000\n")
        setup = [l for l in t.command("#INFO") if l.startswith("#INFO:SETUP=")][0][12:]
        check(re.fullmatch(r"[0-9a-f]{64}", setup), "setup id %r" % setup)
        devices = []
        for n in range(2):
            if n:
                p = subprocess.run([MINTFLASH, "sim", "replace", "--sim-dir", d.sim_dir, "--slot",
                                    "1"], capture_output=True, text=True)
                check(p.returncode == 0, "sim replace: " + p.stderr)
            r = t.command("#AUTO NOINFO")
            check(r[-1].startswith("#OK"), "cycle %d: %r" % (n, r))
            flash = sim_flash(d, 1)
            off = SIG_AT - 0x08000000
            sig = flash[off:off + 64]
            show = subprocess.run([MINTFLASH, "sim", "show", "--sim-dir", d.sim_dir, "--slot", "1"],
                                  capture_output=True, text=True, check=True).stdout
            uid = re.search(r"uid[^0-9A-Fa-f]*([0-9A-Fa-f]{8,})", show, re.I).group(1)
            devices.append((uid, 4000 + n, sig))
        check(devices[0][2] != devices[1][2], "two devices, two signatures")
        for i, (uid, serial, sig) in enumerate(devices):
            path = os.path.join(work, "sig%d.bin" % i)
            open(path, "wb").write(sig)
            out = run("sig", "verify", "--pubkey", "uid.pub", "--setup", setup, "--uid", uid,
                      "--serial", str(serial), path)
            check("valid" in out, "device %d verifies: %s" % (i, out))
            other_uid = devices[1 - i][0]
            out = run("sig", "verify", "--pubkey", "uid.pub", "--setup", setup, "--uid", other_uid,
                      "--serial", str(serial), path, expect=1)
            check("INVALID" in out, "another UID: %s" % out)
            run("sig", "verify", "--pubkey", "uid.pub", "--setup", setup, "--uid", uid,
                "--serial", str(serial + 1), path, expect=1)
            run("sig", "verify", "--pubkey", "uid.pub", "--setup", "0" * 64, "--uid", uid,
                "--serial", str(serial), path, expect=1)
        # Readout protection was the last step: the device refuses reads now.
        r = t.command("#VERIFY")
        check(r[-1].startswith("#ERR214:"), "#VERIFY on a protected device: %r" % r)
        check(d.stop() == 0, "clean exit")
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
