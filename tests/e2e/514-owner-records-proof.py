"""The owner's proof of what was made cannot be cut short (review findings F3, F4).

1. The head statement: `#RECORDHEAD <nonce>` answers on TCP and the UNIX socket with the chain's
   newest record and the trust anchor's counter, signed for the nonce; `mintflash records` fetches
   it into DIR/HEAD and `log verify --head` checks the records end there, `--nonce` that it answers
   the owner's nonce. A second setup installed by a `_SECURE` move continues the chain: intact.
2. F3: the newest records deleted while the programmer runs (RECORDS.000 rewritten over TCP, no
   restart): without the head the rest looks whole (the tail unproven), with it the two records
   show as missing after the last one.
3. F4: five devices of setup A, RECORDS.000 cut to three, `securearea remove` and `create`, the cut
   file put back, setup B makes two: B does not continue the cut chain (its newest record is behind
   the counter, FLASHER.LOG says so) and verify reports the second chain and 2 counts unaccounted.
4. F4b: A's first three records followed by B's own fresh chain (made after a removal) in one file:
   the second chain and the 2 counts are reported; A's records fetched with their head before the
   removal, and B's alone, each verify intact.
5. A cycle killed between its count and its record, and the next setup moved in at the start
   after: the old setup's records are settled first (`unrecorded:1`), so the chain B continues
   accounts for every count: intact.
6. With a TPM (swtpm; skipped without it): reservations of K = 100, a restart forfeiting the rest of
   one between runs, verify intact with the head."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, Swtpm, check, get, info, put  # noqa: E402

work = tempfile.mkdtemp(prefix="mf-records-proof-")
NONCE = "5e" * 32
OTHER = "a7" * 32


def run(*args, device=None, expect=0):
    """Runs the commander; returns stdout and stderr together, checking the exit status."""
    env = dict(os.environ)
    if device:
        env["MINTFLASH_DEVICE"] = "unix:" + device.socket_path
    p = subprocess.run([MINTFLASH] + list(args), env=env, capture_output=True, text=True,
                       timeout=120, cwd=work)
    out = p.stdout + p.stderr
    check(p.returncode == expect,
          "mintflash %s: exit %d, not %d:\n%s" % (" ".join(args), p.returncode, expect, out))
    return out


def verify(files, expect, head=None, nonce=None):
    args = ["log", "verify", "--programmer", "prog.pub"]
    if head:
        args += ["--head", head]
    if nonce:
        args += ["--nonce", nonce]
    return run(*(args + list(files)), expect=expect)


def has(text, fragment, what):
    check(fragment in text, "%s: '%s' not in:\n%s" % (what, fragment, text))


def install(t, u, name, count, serial):
    """A plain setup moved in from `_SECURE` (put there over the local connection `u`) by a
    restart."""
    stage(u, name, count, serial)
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot to install " + name)
    area = [x for x in t.command("#INFO") if x.startswith("#INFO:AREA=")]
    check(area == ["#INFO:AREA=SECURE"], "%s installed: %r" % (name, area))


def stage(t, name, count, serial):
    """A plain setup in `_SECURE`, moved in at the next start."""
    app = "_SECURE/Projects/01_%s/01_App/" % name
    put(t, app + "app.bin", os.urandom(3000))
    put(t, app + "job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
        "address = 0x08000000\n[serial]\naddress = 0x08040000\n")
    put(t, "_SECURE/Projects/01_%s/Cntdown.txt" % name, "%d\n" % count)
    put(t, "_SECURE/Projects/01_%s/Serial.txt" % name, "%d\n" % serial)
    put(t, "_SECURE/FLASHER.INI", "[CONFIG]\nProject = 01_%s\n" % name)


def cycles(t, n):
    for _ in range(n):
        r = t.command("#AUTO NOINFO", timeout=120)
        check(r[-1].startswith("#OK"), "cycle: %r" % r)


def rewrite(t, path, text):
    check(t.command("#FDELETE " + path)[-1] == "#OK", "FDELETE " + path)
    put(t, path, text)


def records(d, folder, *extra, expect=0):
    out = run("records", *(list(extra) + [os.path.join(work, folder)]), device=d, expect=expect)
    return out, os.path.join(work, folder, "RECORDS.000"), os.path.join(work, folder, "HEAD")


def setup_a(d):
    """A secure area, setup A installed, five devices made, the programmer's public file."""
    u = d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    t = d.tcp()
    install(t, u, "A", 10, 100)
    cycles(t, 5)
    run("identity", "-o", "prog.pub", device=d)
    return t, u


def remove_and_create(u):
    check(u.command("#SECUREAREA REMOVE", timeout=60) == ["#ACK", "#OK"], "securearea remove")
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")


# ---- 1 and 2: the head statement, and a tail cut while the programmer runs ----
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    r = t.command("#RECORDHEAD " + NONCE)
    check(r[0] == "#ACK" and r[-1].startswith("#ERR203:no production records are kept"),
          "no setup, no head: %r" % r)
    check(t.command("#RECORDHEAD 12")[-1].startswith("#NACK:ERR210:Expected a nonce"),
          "a short nonce is refused")
    t, u = setup_a(d)
    for c in (t, u):
        r = c.command("#RECORDHEAD " + NONCE.upper())
        check(len(r) == 3 and r[0] == "#ACK" and r[2] == "#OK", "head reply: %r" % r)
        has(r[1], "#RECORDHEAD:MFH1 nonce=" + NONCE + " ", "the head names the nonce")
        has(r[1], " seq=5 head=", "the head is record 5")
    out, rec, head = records(d, "rec")
    has(out, "head: seq 5, counter ", "records prints the head")
    out = verify([rec], 0, head=head)
    has(out, "verdict: intact", "the records with their head")
    has(out, "counter problems: 0", "every count accounted for")
    has(out, "nonce not compared", "no nonce given to verify")
    out, rec, head = records(d, "rec-nonce", "--nonce", NONCE)
    has(verify([rec], 0, head=head, nonce=NONCE), "nonce matches", "the owner's nonce")
    has(verify([rec], 1, head=head, nonce=OTHER), "answers another nonce", "another nonce")
    run("records", "--nonce", "12", os.path.join(work, "x"), device=d, expect=2)

    # A new setup goes on in the same chain.
    install(t, u, "B", 5, 500)
    cycles(t, 2)
    out, rec, head = records(d, "rec-b")
    out = verify([rec], 0, head=head)
    has(out, "verdict: intact", "two setups in one chain")
    has(out, "head: seq 7,", "B's records follow A's")
    check(out.count("total: setup=") == 2, "totals of both setups:\n" + out)

    # F3: the newest two records cut over TCP; the programmer keeps running.
    lines = get(t, "RECORDS.000").decode().splitlines(True)
    check(len(lines) == 7, "seven records: %r" % lines)
    rewrite(t, "RECORDS.000", "".join(lines[:5]))
    out, rec, head = records(d, "rec-cut")
    out = verify([rec], 0)
    has(out, "head: none given", "without the head the tail is unproven")
    out = verify([rec], 1, head=head)
    has(out, "head: the records end at seq 5, the programmer's newest is seq 7: 2 record(s) "
        "missing after the last one given", "the cut tail")
    has(out, "verdict: NOT INTACT", "the cut tail is not intact")

# ---- 3: F4, the cut chain put back after securearea remove and create ----
with Daemon(size="32M") as d:
    t, u = setup_a(d)
    lines = get(t, "RECORDS.000").decode().splitlines(True)
    remove_and_create(u)
    t = d.tcp()
    put(t, "RECORDS.000", "".join(lines[:3]))
    install(t, u, "B", 4, 500)
    cycles(t, 2)
    log = get(t, "FLASHER.LOG").decode(errors="replace")
    has(log, "shows the trust anchor's counter at 3, which is now 5: records after it are "
        "missing, so its chain is not continued", "FLASHER.LOG says why B starts afresh")
    out, rec, head = records(d, "rec-adopt")
    out = verify([rec], 1, head=head)
    has(out, "chain break: seq 1 starts a second chain", "B's own chain is reported")
    has(out, "counter: 2 count(s) of the trust anchor unaccounted", "A's hidden two devices")
    has(out, "unaccounted counts: 2", "the count of them")

# ---- 4: F4b, a second chain in the middle of a file; each chain alone ----
with Daemon(size="32M") as d:
    t, u = setup_a(d)
    out, a_rec, a_head = records(d, "rec-a")  # the owner exports before the removal
    remove_and_create(u)
    t = d.tcp()
    install(t, u, "B", 4, 500)
    cycles(t, 2)
    out, b_rec, b_head = records(d, "rec-b2")
    has(verify([a_rec], 0, head=a_head), "verdict: intact", "A's records, fetched with A's head")
    has(verify([b_rec], 0, head=b_head), "verdict: intact", "B's own chain")
    a = open(a_rec).read().splitlines(True)
    joined = os.path.join(work, "joined.000")
    with open(joined, "w") as f:
        f.write("".join(a[:3]) + open(b_rec).read())
    out = verify([joined], 1)
    has(out, "joined.000:4: chain break: seq 1 starts a second chain", "the second chain")
    has(out, "unaccounted counts: 2", "the two devices A's cut hid")

# ---- 5: a cycle killed between its count and its record, then the next setup moved in ----
with Daemon(size="32M", sim_speed="1") as d:
    t, u = setup_a(d)
    t.send("#AUTO\r")
    watch = d.tcp()
    deadline = time.time() + 60
    while not any(x.endswith(("ERASING", "PROGRAMMING")) for x in watch.command("#STATUS")):
        check(time.time() < deadline, "the cycle never reached the device")
        time.sleep(0.02)
    stage(u, "B", 4, 500)  # after the cycle began: no cycle starts beside a _SECURE
    check(any(x.endswith(("ERASING", "PROGRAMMING")) for x in watch.command("#STATUS")),
          "the cycle still runs")
    d.stop(signal.SIGKILL)
    d.start()  # A's records are settled (unrecorded:1), then B is moved in
    t = d.tcp()
    i = t.command("#INFO")
    check("#INFO:PROJECT=B" in i and "#INFO:AREA=SECURE" in i, "B installed: %r" % i)
    cycles(t, 1)
    has(get(t, "FLASHER.LOG").decode(errors="replace"),
        "1 cycle(s) took a count but have no record", "A's cut cycle noted")
    out, rec, head = records(d, "rec-settled")
    out = verify([rec], 0, head=head)
    has(out, "project=- ok=0 failed=0 unrecorded=1", "A's cut cycle recorded before B")
    has(out, "verdict: intact", "every count accounted for across the install")

# ---- 6: reservations on a TPM ----
if not Swtpm.available():
    print("part 5 skipped: swtpm is not installed (Debian package swtpm)")
else:
    with Swtpm() as tpm, Daemon(size="32M", extra=["--tpm", tpm.tcti]) as d:
        t, u = d.tcp(), d.unix()
        check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create (tpm)")
        t = d.tcp()
        install(t, u, "A", 50, 100)
        run("identity", "-o", "prog.pub", device=d)
        for n in (3, 2, 1):
            cycles(t, n)
            check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "restart")
        out, rec, head = records(d, "rec-tpm")
        out = verify([rec], 0, head=head)
        has(out, "verdict: intact", "reservations and restarts")
        lines = open(rec).read().splitlines()
        counters = [int(x.split(" counter=")[1].split()[0]) for x in lines
                    if " note=run-end" not in x]
        check(len(set(counters)) == 3, "one reservation per run: %r" % counters)
        # Each restart ended its run cleanly: one more counter step, recorded as run-end (no
        # device), and the rest of the reservation forfeited, not charged.
        ends = [x for x in lines if " note=run-end" in x]
        check(len(ends) == 3, "a run-end record per restart: %r" % ends)
        has(out, "project=A ok=6 failed=0", "the six devices, no failure from the run ends")
        check(info(t)["CYCLES_LEFT"] == "44", "50 - 6: nothing charged for the restarts")
print("ok")
