"""A `_SECURE` move onto a storage image whose host file system is full (a real one: a small tmpfs,
filled up): the image is sparse, so the new setup's blocks need room the host no longer has. The
move is refused before the old setup is erased (docs/security.md, "Crash consistency of the
move"): FLASHER.LOG, #INFO's MOVE_ERROR and the daemon's stderr name the cause, the full file
system holding the image; the old setup runs on (AREA=SECURE, its firmware, its count and serial
number), and `_SECURE` stays. Once there is room again, the next start moves it.

Needs root to mount the tmpfs, which lives in a mount namespace of this test's own (unshare), so
that it goes with the test however it ends; it is unmounted on the way out all the same. Skipped
(exit 77) without root or without a way to mount."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, firmware, get, info, put, sim_flash  # noqa: E402

NAMESPACE_MARK = "MF_E2E_505_NAMESPACE"
FS_SIZE = 16 << 20
HEADROOM = 512 << 10  # left free on the host: FLASHER.LOG's lines and the records still fit
NEW_DATA = 2 << 20    # a file of the new setup: more than the headroom


def skip(why):
    print("skipped: " + why)
    sys.exit(77)


if os.geteuid() != 0:
    skip("mounting a small tmpfs to fill up needs root")
if os.environ.get(NAMESPACE_MARK) != "1":
    unshare = ["unshare", "--mount", "--propagation", "private"]
    try:
        r = subprocess.run(unshare + ["true"], capture_output=True, text=True)
    except OSError as e:
        skip("unshare(1) cannot run: %s" % e)
    if r.returncode != 0:
        skip("no private mount namespace here: %s" % r.stderr.strip())
    env = dict(os.environ, **{NAMESPACE_MARK: "1"})
    r = subprocess.run(unshare + [sys.executable, os.path.abspath(__file__)], env=env)
    if r.returncode == 78:
        skip("no private mount namespace here (unshare --mount failed)")
    sys.exit(r.returncode)


def reboot(client):
    check(client.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")


def fill(folder, leave):
    """Fills the file system of `folder` up to `leave` bytes free."""
    st = os.statvfs(folder)
    size = st.f_bavail * st.f_frsize - leave
    check(size > 0, "the tmpfs has %d bytes free" % (st.f_bavail * st.f_frsize))
    with open(os.path.join(folder, "filler"), "wb") as f:
        chunk = b"\xA5" * (1 << 20)
        while size > 0:
            f.write(chunk[:min(size, len(chunk))])
            size -= len(chunk)
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def job(serial_at=0x08040000):
    return ("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
            "[serial]\naddress = 0x%X\nlength = 4\n" % serial_at)


work = tempfile.mkdtemp(prefix="mf-e2e-host-full-")
host = os.path.join(work, "host")
os.mkdir(host)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % FS_SIZE, "mf-e2e-505",
                   host]).returncode != 0:
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(78)  # the parent says why: skipped
try:
    image = os.path.join(host, "storage.img")
    old_fw, new_fw = firmware(20000, seed=11), firmware(30000, seed=12)

    # The old setup, moved into the secure area with room to spare.
    with Daemon(storage=image, size="32M", workdir=work) as d:
        t, u = d.tcp(), d.unix()
        r = u.command("#SECUREAREA CREATE", timeout=60)
        check(r == ["#ACK", "#OK"], "securearea create: %r" % r)
        put(u, "_SECURE/Projects/01_Widget/01_App/app.bin", old_fw)
        put(u, "_SECURE/Projects/01_Widget/01_App/job.ini", job())
        put(u, "_SECURE/Projects/01_Widget/Cntdown.txt", "5\r\n")
        put(u, "_SECURE/Projects/01_Widget/Serial.txt", "100\r\n")
        reboot(t)
        i = info(t)
        check(i["AREA"] == "SECURE" and i["MOVE_ERROR"] == "", "old setup moved: %r" % i)
        old_setup = i["SETUP"]
        r = t.command("#AUTO")
        check(r[-1].startswith("#OK"), "a cycle of the old setup: %r" % r)
        t.close()
        u.close()

    # A new setup in _SECURE (offline), then the host file system filled up.
    local = os.path.join(work, "local")
    for name, data in (("Projects/01_Widget/01_App/app.bin", new_fw),
                       ("Projects/01_Widget/01_App/job.ini", job().encode()),
                       ("Projects/01_Widget/data.bin", os.urandom(NEW_DATA)),
                       ("Projects/01_Widget/Cntdown.txt", b"9\r\n"),
                       ("Projects/01_Widget/Serial.txt", b"700\r\n")):
        path = os.path.join(local, "_SECURE", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    r = subprocess.run([MINTFLASH, "storage", "put", "-r", image, os.path.join(local, "_SECURE"),
                        "/"], capture_output=True, text=True)
    check(r.returncode == 0, "storage put: %s%s" % (r.stdout, r.stderr))
    free = fill(host, HEADROOM)
    check(free < NEW_DATA, "the host keeps %d bytes free, fewer than the move needs" % free)

    with Daemon(storage=image, size="32M", workdir=work) as d:
        t = d.tcp()
        i = info(t)
        # MOVE_ERROR may be cut short (a long temp path); FLASHER.LOG has the whole line.
        move_error = i["MOVE_ERROR"]
        check(move_error.startswith("the _SECURE move failed: secure area: cannot reserve ") and
              " bytes for the new setup: no space left: nothing was moved (storage image: " in
              move_error, "MOVE_ERROR: %r" % move_error)
        check(i["AREA"] == "SECURE" and i["SETUP"] == old_setup and i["PROJECT"] == "Widget" and
              i["CYCLES_LEFT"] == "4" and i["NEXT_SERIAL"] == "101" and
              i.get("PROBLEM", "").startswith("the public area holds a _SECURE folder that is not "
                                              "installed (the _SECURE move failed: "),
              "the old setup is kept, and #INFO says why it runs no cycle: %r" % i)
        log = get(t, "FLASHER.LOG").decode()
        check(move_error in log and "storage.img: reserving bytes " in log and
              ": No space left on device (the image's file system is full))" in log,
              "FLASHER.LOG has the move's error, naming the full file system:\n" + log)
        check(move_error.split(" (storage image")[0] in d.log_text(), "stderr has it too")
        # The setup that runs is not the one _SECURE holds: no cycle until it is moved or gone.
        r = t.command("#AUTO")
        check(r[-1].startswith("#ERR202:the public area holds a _SECURE folder that is not "
                               "installed (the _SECURE move failed: secure area: cannot reserve "),
              "no cycle beside the unmoved _SECURE: %r" % r)
        check(len(get(t, "_SECURE/Projects/01_Widget/Cntdown.txt")) == 3, "_SECURE stays")

        # Room again: the next start moves the folder.
        os.unlink(os.path.join(host, "filler"))
        reboot(t)
        i = info(t)
        check(i["AREA"] == "SECURE" and i["MOVE_ERROR"] == "" and i["SETUP"] != old_setup and
              i["CYCLES_LEFT"] == "9" and i["NEXT_SERIAL"] == "700", "the new setup: %r" % i)
        check("moved _SECURE into the secure area" in get(t, "FLASHER.LOG").decode(), "logged")
        r = t.command("#AUTO", timeout=120)
        check(r[-1].startswith("#OK"), "a cycle of the new setup: %r" % r)
        check(sim_flash(d, 1)[:len(new_fw)] == new_fw, "the new setup's firmware")
        t.close()
finally:
    if subprocess.run(["umount", host]).returncode != 0:
        subprocess.run(["umount", "-l", host])
    shutil.rmtree(work, ignore_errors=True)
print("505-secure-host-full: ok")
