"""Red team: the daemon killed (SIGKILL) at the trust anchor's counter step, with the keystore
(K = 1, the count and the state record in one write: its note) and with a TPM (swtpm, K = 100:
the counter steps at the first cycle of a run). gdb stops the daemon at a point of the cycle and
the test kills it there:

  enter   entering the anchor's counter step (nothing of it written)
  return  the step returned (the counter durable, the secure area's state perhaps not)
  erase   the first erase of the device (the count and the serial number taken)

After each restart: every count taken is accounted for by the production records (verify with a
fresh head: intact; ok + unrecorded = the counts the programmer shows used), no device was made
without a count (the killed cycle's device is untouched before its count), and no serial number
is handed out twice (the next device's is beyond every earlier one and the killed cycle's).
Skipped without gdb, under valgrind, and (the TPM part) without swtpm."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, Swtpm, check, put  # noqa: E402

GDB = shutil.which("gdb")
if not GDB:
    print("SKIP: no gdb")
    sys.exit(77)
if os.environ.get("MF_UNDER_VALGRIND"):
    print("SKIP: gdb cannot break in a daemon that valgrind runs (make check-valgrind)")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="mf-anchor-kill-")
LIMIT = 300


def run(*args, device=None, expect=0):
    env = dict(os.environ)
    if device:
        env["MINTFLASH_DEVICE"] = "unix:" + device.socket_path
    p = subprocess.run([MINTFLASH] + list(args), env=env, capture_output=True, text=True,
                       timeout=120, cwd=work)
    out = p.stdout + p.stderr
    check(p.returncode == expect,
          "mintflash %s: exit %d, not %d:\n%s" % (" ".join(args), p.returncode, expect, out))
    return out


def info(t):
    return dict(x[len("#INFO:"):].split("=", 1) for x in t.command("#INFO")
                if x.startswith("#INFO:") and "=" in x)


def setup(d):
    u = d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    app = "_SECURE/Projects/01_A/01_App/"
    put(u, app + "app.bin", os.urandom(3000))
    put(u, app + "job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
        "address = 0x08000000\n[serial]\naddress = 0x08040000\n")
    put(u, "_SECURE/Projects/01_A/Cntdown.txt", "%d\n" % LIMIT)
    put(u, "_SECURE/Projects/01_A/Serial.txt", "500\n")
    put(u, "_SECURE/FLASHER.INI", "[CONFIG]\nProject = 01_A\n")
    t = d.tcp()
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot to install")
    check(info(t).get("AREA") == "SECURE", "installed")
    run("identity", "-o", "prog.pub", device=d)


def cycle(d):
    r = d.tcp().command("#AUTO NOINFO", timeout=120)
    check(r[-1].startswith("#OK"), "cycle: %r" % r)


def device_serial(d):
    """The serial number in the device (slot 1's sim flash), or None when that page is erased
    or the device was never made."""
    path = os.path.join(d.sim_dir, "slot1", "flash.bin")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        f.seek(0x40000)
        raw = f.read(4)
    if len(raw) < 4 or raw == b"\xff" * 4:
        return None
    return int.from_bytes(raw, "little")


def killed_at(d, where, finish):
    """Starts a cycle, stops the daemon in `where` (after it returns when `finish`) and kills it
    there. Returns False when gdb could not break there."""
    hit = os.path.join(work, "hit")
    go = os.path.join(work, "go")
    for f in (hit, go):
        if os.path.exists(f):
            os.remove(f)
    attached = os.path.join(work, "attached")
    if os.path.exists(attached):
        os.remove(attached)
    args = [GDB, "-nx", "-batch", "-p", str(d.proc.pid), "-ex", "break " + where,
            "-ex", "shell touch " + attached, "-ex", "continue"]
    if finish:
        args += ["-ex", "finish"]
    args += ["-ex", "shell touch " + hit,
             "-ex", "shell while [ ! -e %s ]; do sleep 0.01; done" % go]
    gdb = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(attached) and gdb.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if not os.path.exists(attached):
        gdb.kill()
        gdb.communicate()
        return False
    t = d.tcp()
    t.send("#AUTO NOINFO\r")
    while not os.path.exists(hit) and gdb.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    ok = os.path.exists(hit)
    d.proc.send_signal(signal.SIGKILL)
    open(go, "w").close()  # gdb, its tracer, lets it go: only then can it be waited for
    out, err = gdb.communicate(timeout=120)
    d.proc.wait()
    t.close()
    return ok and "Breakpoint 1, " in out


def verify_fresh(d, name, nonce):
    folder = os.path.join(work, name)
    run("records", "--nonce", nonce, folder, device=d)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("RECORDS."))
    return run("log", "verify", "--programmer", "prog.pub", "--head",
               os.path.join(folder, "HEAD"), "--nonce", nonce, *files)


def scenario(anchor, extra, where, finish, counted):
    """One kill at `where`; `counted`: the killed cycle's count is taken (None: the anchor's
    reservation decides, only the invariants are checked)."""
    tag = "%s %s%s" % (anchor, where, " (returned)" if finish else "")
    with Daemon(size="32M", extra=extra) as d:
        setup(d)
        for _ in range(2):
            cycle(d)
        before = info(d.tcp())
        used = LIMIT - int(before["CYCLES_LEFT"])
        serial_next = int(before["NEXT_SERIAL"])
        check(used == 2, "%s: two cycles used: %r" % (tag, before))
        # A new run: its first cycle takes a new reservation (the TPM's counter step at K = 100).
        check(d.tcp().command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "%s: restart" % tag)
        before = info(d.tcp())
        used = LIMIT - int(before["CYCLES_LEFT"])
        serial_next = int(before["NEXT_SERIAL"])
        made = device_serial(d)
        if not killed_at(d, where, finish):
            print("SKIP: gdb cannot break in %s" % where)
            sys.exit(77)
        touched = device_serial(d)
        d.start()
        after = info(d.tcp())
        used_after = LIMIT - int(after["CYCLES_LEFT"])
        next_after = int(after["NEXT_SERIAL"])
        if counted is not None:
            check(used_after == used + (1 if counted else 0),
                  "%s: counts used %d -> %d: %r" % (tag, used, used_after, after))
        check(used_after >= used, "%s: the count never goes back" % tag)
        # No device without a count: the device holds the last made one's serial until the
        # killed cycle's count was taken (its erase came after).
        check(touched == made or where == "sim_erase" and touched in (made, None),
              "%s: the device was changed before the count: %r -> %r" % (tag, made, touched))
        # No serial number twice: the next one is beyond every one taken (the killed cycle's
        # included, when its count was taken).
        check(next_after >= serial_next + (1 if counted else 0),
              "%s: next serial %d after %d" % (tag, next_after, serial_next))
        cycle(d)
        check(device_serial(d) == next_after, "%s: the next device gets %d: %r"
              % (tag, next_after, device_serial(d)))
        final = info(d.tcp())
        used_final = LIMIT - int(final["CYCLES_LEFT"])
        out = verify_fresh(d, "rec-%s-%s-%d" % (anchor, where, finish), "3c" * 32)
        check("verdict: intact" in out, "%s: records: %s" % (tag, out))
        totals = [x for x in out.splitlines() if x.startswith("total: ")]

        def summed(field):
            return sum(int(m.group(1)) for m in (re.search(r" %s=(\d+)" % field, x) for x in totals)
                       if m)
        ok, failed, unrecorded = summed("ok"), summed("failed"), summed("unrecorded")
        check(ok == 3 and failed == 0, "%s: three devices made: %s" % (tag, totals))
        check(ok + unrecorded == used_final,
              "%s: every count used is in the records (%d ok, %d unrecorded, %d used)"
              % (tag, ok, unrecorded, used_final))
        if counted:
            check(unrecorded >= 1, "%s: the killed cycle's count is recorded" % tag)
        print("%s: used %d -> %d -> %d, next serial %d -> %d, records ok=%d unrecorded=%d"
              % (tag, used, used_after, used_final, serial_next, next_after, ok, unrecorded))


scenario("keystore", [], "ks_counter_increment_note", False, False)
scenario("keystore", [], "ks_counter_increment_note", True, True)
scenario("keystore", [], "sim_erase", False, True)
if not Swtpm.available():
    print("TPM part skipped: swtpm is not installed (Debian package swtpm)")
else:
    for where, finish in (("tpm_counter_increment", False), ("tpm_counter_increment", True),
                          ("sim_erase", False)):
        with Swtpm() as tpm:
            scenario("tpm", ["--tpm", tpm.tcti], where, finish, None)
shutil.rmtree(work, ignore_errors=True)
print("ok")
