"""What a factory holding the storage medium can try, through the daemon with the keystore trust
anchor: restoring an earlier copy of the whole storage image after programming some devices
(K = 1: not one device more; K = 4: at most the rest of one reservation, however often the same
copy is restored), flipping bytes of the
secure partition (refused and logged, no plaintext), and killing the daemon in the middle of the
`_SECURE` move (the next start finishes it: the new setup, whole, and the folder gone)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, get, info, put  # noqa: E402


def install(d, count, reservation=None, size=8000):
    t = d.tcp()
    u = d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
    put(u, "_SECURE/Projects/01_W/01_App/app.bin", os.urandom(size))
    put(u, "_SECURE/Projects/01_W/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
        "[serial]\naddress = 0x08040000\n")
    put(u, "_SECURE/Projects/01_W/Cntdown.txt", "%d\n" % count)
    put(u, "_SECURE/Projects/01_W/Serial.txt", "1\n")
    if reservation:
        put(u, "_SECURE/FLASHER.INI", "[CONFIG]\nReservation = %d\n" % reservation)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    check(info(t)["AREA"] == "SECURE", "installed")
    return t


def program(client, n):
    for _ in range(n):
        r = client.command("#AUTO")
        check(r[-1].startswith("#OK"), "cycle: %r" % r)


def program_some(client, n):
    """Up to n cycles, until one is refused; how many completed."""
    done = 0
    for _ in range(n):
        r = client.command("#AUTO")
        if not r[-1].startswith("#OK"):
            check(r[-1].startswith("#ERR201"), "refused as exhausted: %r" % r)
            break
        done += 1
    return done


def rollback(reservation):
    work = __import__("tempfile").mkdtemp(prefix="mf-rollback-")
    try:
        d = Daemon(workdir=work, keep=True)
        d.start()
        t = install(d, 10, reservation)
        program(t, 2)
        check(d.stop() == 0, "stop")
        shutil.copy(d.storage, os.path.join(work, "copy.img"))  # the factory's copy
        d.start()
        t = d.tcp()
        program(t, 3)
        left_before = int(info(t)["CYCLES_LEFT"])
        serial_before = int(info(t)["NEXT_SERIAL"])
        check(left_before == 5, "10 - 5 = %d" % left_before)
        check(d.stop() == 0, "stop")
        shutil.copy(os.path.join(work, "copy.img"), d.storage)  # restored
        d.start()
        t = d.tcp()
        i = info(t)
        left = int(i["CYCLES_LEFT"])
        gained = left - left_before
        check(gained <= reservation - 1,
              "K=%d: a restored image gave %d more cycles (at most %d allowed)"
              % (reservation, gained, reservation - 1))
        if reservation == 1:
            check(int(i["NEXT_SERIAL"]) >= serial_before, "no serial number again: %r" % i)
        # The same copy restored again and again, a few devices each time: each start takes a
        # reservation of its own, so all of it together gives at most K - 1 devices more.
        made = 5
        for _ in range(6):
            made += program_some(t, 2)
            check(d.stop() == 0, "stop")
            shutil.copy(os.path.join(work, "copy.img"), d.storage)
            d.start()
            t = d.tcp()
        made += program_some(t, 20)
        check(made <= 10 + reservation - 1,
              "K=%d: %d devices from a count of 10 with the copy restored 7 times"
              % (reservation, made))
        check(d.stop() == 0, "stop")
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        shutil.rmtree(work, ignore_errors=True)


rollback(1)
rollback(4)

# Flipped bytes in the secure partition: refused, logged, nothing leaks.
with Daemon(size="32M") as d:
    t = install(d, 5)
    check(d.stop() == 0, "stop")
    table = json.loads(subprocess.run(["sfdisk", "-J", d.storage], capture_output=True,
                                      text=True, check=True).stdout)
    secure = table["partitiontable"]["partitions"][1]["start"] * 512
    with open(d.storage, "r+b") as f:
        f.seek(secure + 40)  # inside the header
        b = f.read(1)
        f.seek(secure + 40)
        f.write(bytes([b[0] ^ 0x10]))
    d.start()
    t = d.tcp()
    i = info(t)
    check("no header passes authentication" in i.get("PROBLEM", ""), "refused: %r" % i)
    r = t.command("#AUTO")
    check(r[-1].startswith("#ERR216:"), "cycles refused: %r" % r)
    check("refused: secure area" in get(t, "FLASHER.LOG").decode(), "logged")
    # The byte back: it runs again. A flipped byte in the data: that cycle fails, said so.
    check(d.stop() == 0, "stop")
    with open(d.storage, "r+b") as f:
        f.seek(secure + 40)
        f.write(b)
        f.seek(secure + 9216 + 5000)  # the first chunk of data
        c = f.read(1)
        f.seek(secure + 9216 + 5000)
        f.write(bytes([c[0] ^ 1]))
    d.start()
    t = d.tcp()
    r = t.command("#AUTO")
    check(r[-1].startswith("#ERR216:") and "authentication" in r[-1], "tampered chunk: %r" % r)
    log = get(t, "FLASHER.LOG").decode()
    check("authentication" in log.splitlines()[-1], "the tampered chunk is logged: %r" % log[-400:])
    check(d.stop() == 0, "stop")

# Killed in the middle of the move: the next start ends with the new setup, whole.
with Daemon(size="64M", sim_speed="0") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
    big = os.urandom(6 * 1024 * 1024)
    put(u, "_SECURE/Projects/01_W/01_App/app.bin", big[:20000])
    put(u, "_SECURE/Projects/01_W/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    put(u, "_SECURE/Projects/01_W/Cntdown.txt", "4\n")
    put(u, "_SECURE/data.bin", big)
    check(d.stop() == 0, "stop")
    d.start(wait_ready=False)
    deadline = time.time() + 30
    while "moving _SECURE" not in d.log_text() and time.time() < deadline:
        time.sleep(0.002)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.start()
    t = d.tcp()
    i = info(t)
    check(i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "4", "the move completed: %r" % i)
    check(t.command("#FLIST _SECURE")[-1].startswith("#ERR011:"), "the folder is gone")
    r = t.command("#AUTO")
    check(r[-1].startswith("#OK"), "it programs: %r" % r)
    check(d.stop() == 0, "stop")
    with open(d.storage, "rb") as f:
        check(big[100000:100064] not in f.read(), "no plaintext of data.bin is left anywhere")
print("ok")
