"""The security suite: a table of attempts to get at the secure area or the count through the
running daemon, each with the refusal it must get. Every row asserts its exact reply (one error
number and text; a completed cycle's reply up to its timings), and after every row the storage
image holds no byte of the firmware's plaintext marker and the cycles left are not above what
they were (or what a legitimate install or top-up set). Rows: file commands on secure names in
every spelling; listings; oversized and negative lengths; privileged commands over TCP and the
serial line; NBD reads and writes outside the public area; editing the public area during a
cycle; flipped bytes in the secure partition; restored storage images (K = 1: no count back, no
serial number again; from before an install: refused); forged, foreign, stale and replayed
top-up tokens, and one made for an earlier installation of the same setup; foreign, stale and
replayed sealed packages on a pinned programmer; killing the
daemon in the middle of a cycle and of the move. Prints the table at the end."""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, fail, free_port, get, info, put, sim_flash  # noqa: E402

MARK = b"MINTFLASH-SECRET-PLAINTEXT-7f3a"
CYCLE_OK = r"#OK \(Total [0-9.]+s, Erase [0-9.]+s, Prog [0-9.]+s, Verify [0-9.]+s\)"
DONE = re.compile("#ACK\n" + CYCLE_OK)  # a completed #AUTO NOINFO
NO_FILE = ["#ACK", "#ERR010:File open failed (no such file or directory)"]
BAD_NAME = ["#ACK", "#ERR010:File open failed (invalid name)"]
NO_FOLDER = ["#ACK", "#ERR011:File read failed (no such file or directory)"]
LOCAL_ONLY = ["#NACK:ERR209:Only allowed on the local connection"]
NO_HEADER = "secure area: no header passes authentication (damaged or tampered)"
ROOT_LISTING = re.compile(r"#ACK\n#FLIST:F:[0-9a-f]+:FLASHER.LOG\n#OK")
NOT_LATER = ("the package's not-before time %s is not later than that of the last package "
             "installed here (2024-01-02T00:00:00Z): a replayed or older package is never "
             "installed")
TOPUP_5_TO_8 = ["#ACK", "#OK:top-up for 01_W: the limit goes from 5 to 8"]
SECURE_ONLY = ["#ACK", "#ERR209:Over TCP and serial, _SECURE takes a sealed package "
               "(_SECURE/<name>.mfp) and nothing else: use the local connection"]
UNPINNED_PACKAGE = ["#ACK", "#ERR209:Over TCP and serial, _SECURE takes no package here: no owner "
                    "is pinned, so a package signed by anyone would replace the installed setup "
                    "(securearea create --owner pins one): use the local connection"]
rows = []


class Watch:
    """What every row is checked against afterwards: the daemon in use, and the most cycles left
    it may show (lowered by what it shows, raised only by a legitimate install or top-up)."""
    daemon = None
    allowed = None


watch = Watch()


def row(group, attempt, expected, got):
    """One attempt: `got` must equal `expected` (a compiled pattern: match the reply's lines
    joined by newlines, whole). Then the storage image and the count are checked."""
    rows.append((group, attempt, shown(expected)))
    if isinstance(expected, re.Pattern):
        ok = isinstance(got, list) and expected.fullmatch("\n".join(got))
    else:
        ok = got == expected
    check(ok, "%s: %s: expected %r, got %r" % (group, attempt, expected, got))
    d = watch.daemon
    with open(d.storage, "rb") as f:
        check(MARK not in f.read(), "%s: %s: plaintext in the storage image" % (group, attempt))
    if d.proc and d.proc.poll() is None:
        c = d.tcp()
        left = info(c).get("CYCLES_LEFT", "")
        c.close()
        if left.isdigit():
            check(watch.allowed is None or int(left) <= watch.allowed, "%s: %s: %s cycles left, "
                  "at most %s before" % (group, attempt, left, watch.allowed))
            watch.allowed = int(left)


def shown(expected):
    """An expected outcome for the printed table: a reply by its last line, patterns unescaped."""
    if isinstance(expected, re.Pattern):
        return expected.pattern.replace("\\", "").replace("\n", " ")
    if isinstance(expected, list):
        return expected[-1]
    if isinstance(expected, tuple):
        return "; ".join(shown(e) for e in expected)
    return str(expected)


def use(daemon, allowed=None):
    """From here rows watch `daemon`; `allowed`: the cycles left a legitimate step just set."""
    watch.daemon, watch.allowed = daemon, allowed


def firmware(size=40000):
    fw = bytearray(os.urandom(size))
    fw[size // 3:size // 3 + len(MARK)] = MARK
    return bytes(fw)


JOB_INI = ("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
           "[serial]\naddress = 0x080F0000\n")


def install(d, t, u, fw, count=20, folder="_SECURE"):
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
    c = u if folder == "_SECURE" else t  # _SECURE is the local connection's
    put(c, folder + "/Projects/01_W/01_App/app.bin", fw)
    put(c, folder + "/Projects/01_W/01_App/job.ini", JOB_INI)
    put(c, folder + "/Projects/01_W/Cntdown.txt", "%d\n" % count)
    put(c, folder + "/Projects/01_W/Serial.txt", "500\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    check(info(t)["AREA"] == "SECURE", "installed")


def flip(path, offsets):
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x20]))


def partitions(storage):
    table = subprocess.run(["sfdisk", "-J", storage], capture_output=True, text=True, check=True)
    return json.loads(table.stdout)["partitiontable"]["partitions"]


def nbd_connect(port):
    """A raw NBD client (fixed newstyle, NBD_OPT_GO): returns (socket, export size)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)

    def recv(n):
        data = bytearray()
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                fail("NBD server closed the connection")
            data += chunk
        return bytes(data)

    hello = recv(18)
    check(hello[:16] == b"NBDMAGICIHAVEOPT", "NBD greeting")
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    name = b"public"
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, 4 + len(name) + 2) + struct.pack(">I", len(name))
              + name + struct.pack(">H", 0))
    size = None
    while True:
        magic, _opt, kind, length = struct.unpack(">QIII", recv(20))
        data = recv(length)
        if kind == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        if kind == 1:
            break
        if kind & 0x80000000:
            fail("NBD_OPT_GO refused: %r" % data)
    class Conn:
        pass
    c = Conn()
    c.sendall, c.close, c.recv_exact = s.sendall, s.close, recv
    return c, size


def nbd_request(s, kind, offset, length, payload=b""):
    """Sends one request; returns (error, data)."""
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, kind, 7, offset, length) + payload)
    magic, error, handle = struct.unpack(">IIQ", s.recv_exact(16))
    check(magic == 0x67446698 and handle == 7, "NBD simple reply")
    data = s.recv_exact(length) if kind == 0 and error == 0 else b""
    return error, data


def owner_tool(workdir, *args, device=None):
    """Runs the commander (keygen, identity, securearea, pack, topup); returns its stdout."""
    env = dict(os.environ)
    if device:
        env["MINTFLASH_DEVICE"] = "unix:" + device
    p = subprocess.run([MINTFLASH] + list(args), cwd=workdir, env=env, capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, "mintflash %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p.stdout


def restart(d, save=None, restore=None):
    """Stops the daemon, copies its storage image to `save` and then from `restore` (a factory
    keeping and restoring copies), starts it again; returns a TCP client."""
    check(d.stop() == 0, "stop")
    if save:
        shutil.copy(d.storage, save)
    if restore:
        shutil.copy(restore, d.storage)
    d.start()
    return d.tcp()


def cycles(client, n):
    for _ in range(n):
        r = client.command("#AUTO NOINFO", timeout=120)
        check(DONE.fullmatch("\n".join(r)), "cycle: %r" % r)


work = tempfile.mkdtemp(prefix="mf-security-")
for sub in ("a", "b", "c/d"):
    os.makedirs(os.path.join(work, sub))
try:
    fw = firmware()
    # ---- one programmer with a setup in the secure area ----
    nbd_port = free_port()
    with Daemon(size="32M", sim_speed="0", workdir=os.path.join(work, "a"),
                extra=["--nbd", "127.0.0.1:%d" % nbd_port]) as d:
        t, u = d.tcp(), d.unix()
        install(d, t, u, fw)
        left = int(info(t)["CYCLES_LEFT"])
        use(d, left)

        # File commands on secure names, every spelling: no such file, or an invalid name.
        for name in ("Projects/01_W/01_App/app.bin", "PROJECTS/01_W/01_APP/APP.BIN",
                     "projects/01_w/01_app/app.bin", "./Projects/01_W/Cntdown.txt",
                     "Projects\\01_W\\Cntdown.txt", "/Projects/01_W/Cntdown.txt",
                     "//Projects//01_W//Cntdown.txt", "PROJEC~1/01_W/CNTDOWN.TXT",
                     "Projects/01_W/CNTDOW~1.TXT", "Projects./01_W/Cntdown.txt",
                     "Projects /01_W/Cntdown.txt", "Projects/01_W/Cntdown.txt.",
                     "Projects/01_W/Cntdown.txt ",
                     "Projects/01_W/01_App/../01_App/app.bin",
                     "Projects/*.txt", "Projects/01_W/?ntdown.txt"):
            row("file names", "#FOPEN " + name, NO_FILE, t.command("#FOPEN " + name))
        for name in ("../Projects/01_W/Cntdown.txt", "C:/Projects/01_W/Cntdown.txt", "*.txt",
                     "?ntdown.txt"):
            row("file names", "#FOPEN " + name, BAD_NAME, t.command("#FOPEN " + name))
        # Names of the setup's files at the root: a new, empty public file, nothing more.
        for name in ("Cntdown.txt", "CNTDOW~1.TXT", "Cntdown.txt.", "FLASHER.INI"):
            got = (t.command("#FOPEN " + name), t.command("#FREAD 0,200"), t.command("#FCLOSE"),
                   t.command("#FDELETE " + name))
            row("file names", "#FOPEN %s, #FREAD" % name, (["#ACK", "#OK"], ["#ACK", "#OK:00:"],
                                                          ["#ACK", "#OK"], ["#ACK", "#OK"]), got)
        r = t.command("#FOPEN \x01Projects")
        row("file names", "#FOPEN with a control byte", ["#NACK:ERR210:Invalid character"], r)
        for path in ("Projects", "PROJECTS", "Projects/01_W", "_SECURE", "/Projects/."):
            row("listings", "#FLIST " + path, NO_FOLDER, t.command("#FLIST " + path))
        for path in ("", "/", "."):
            row("listings", "#FLIST '%s' (the root)" % path, ROOT_LISTING,
                t.command("#FLIST " + path))
        for cmd, what in (("#FDELETE Projects/01_W/Cntdown.txt", "delete file"),
                          ("#RMDIR Projects/01_W", "remove folder"),
                          ("#RMDIR Projects", "remove folder")):
            row("file names", cmd,
                ["#ACK", "#ERR013:Failed to %s (no such file or directory)" % what], t.command(cmd))

        # Oversized and negative lengths.
        check(t.command("#FOPEN big.txt") == ["#ACK", "#OK"], "open")
        write_syntax = ["#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> in hex, "
                        "at most 200 bytes"]
        read_syntax = ["#NACK:ERR210:Expected <Offset>,<NumBytes> in hex"]
        for cmd, want in (
                ("#FWRITE 0,201:" + "00" * 0x201, write_syntax),
                ("#FWRITE -1,1:00", write_syntax),
                ("#FWRITE 0,2:00", write_syntax),
                ("#FREAD -1,10", read_syntax),
                ("#FREAD 0,10000000000000000", read_syntax),
                ("#FWRITE FFFFFFFF,1:00", ["#ACK", "#ERR012:File write failed (file too large)"]),
                ("#FWRITE FFFFFFFFFFFFFFFF,1:00", write_syntax),
                ("#FREAD FFFFFFFFFFFFFFFF,200", ["#ACK", "#OK:00:"]),
                ("#" + "A" * 5000, ["#NACK:ERR210:Line too long"])):
            row("lengths", cmd[:40], want, t.command(cmd))
        t.command("#FCLOSE")
        t.command("#FDELETE big.txt")

        # Privileged commands off the local connection.
        for cmd in ("#SECUREAREA CREATE", "#SECUREAREA REMOVE", "#REBOOT FILEACCESS",
                    "#SECUREAREA CREATE " + "A" * 43 + "="):
            row("privileged", cmd[:30] + " over TCP", LOCAL_ONLY, t.command(cmd))

        # _SECURE over TCP: a sealed package and nothing else, in any spelling, so that no
        # network peer leaves a plain or an empty _SECURE for the next start to erase the setup
        # with (only the local connection may destroy it).
        for cmd in ("#MKDIR _SECURE", "#MKDIR _secure.", "#MKDIR /_SECURE ", "#MKDIR _SECURE/x",
                    "#MKDIR Projects/../_SECURE", "#FOPEN _SECURE/Projects/01_W/01_App/app.bin",
                    "#FOPEN _secure/projects/01_w/01_app/app.bin", "#FOPEN _SECURE/Cntdown.txt",
                    "#FOPEN _SECURE\\FLASHER.INI", "#FOPEN _SECURE/x/y.mfp", "#FOPEN _SECURE",
                    # ".mfp" alone names no package, whichever separator comes before it.
                    "#FOPEN _SECURE/.mfp", "#FOPEN _SECURE\\.mfp"):
            row("_SECURE over TCP", cmd, SECURE_ONLY, t.command(cmd))
        # Nor a package here: no owner is pinned, so one signed by anyone would install and
        # replace the setup (e2e.518). The pinned programmer below takes packages.
        for name in ("_SECURE/p.mfp", "_secure./P.MFP"):
            row("_SECURE over TCP", "#FOPEN %s (unpinned)" % name, UNPINNED_PACKAGE,
                t.command("#FOPEN " + name))
        row("_SECURE over TCP", "#FLIST _SECURE after the refusals", NO_FOLDER,
            t.command("#FLIST _SECURE"))
        row("_SECURE over TCP", "#REBOOT, then the setup", ("SECURE", str(left)),
            (t.command("#REBOOT", timeout=120) and info(t)["AREA"], info(t)["CYCLES_LEFT"]))

        # Top-up tokens: malformed, forged.
        malformed = ["#NACK:ERR210:Expected a top-up token in hex (193 to 448 bytes)"]
        row("tokens", "#TOPUP with 1 byte", malformed, t.command("#TOPUP 00"))
        row("tokens", "#TOPUP with non-hex", malformed, t.command("#TOPUP " + "zz" * 200))
        # The magic, then zeros but for a package time of 1: no valid signature.
        junk = "4d46544f50555002" + "00" * 64 + "01" + "00" * 120
        row("tokens", "#TOPUP forged (zeros)",
            ["#ACK", "#ERR216:top-up token: bad signature (altered, or not made by the owner it "
             "names)"],
            t.command("#TOPUP " + junk))
        row("tokens", "#TOPUP forged (zeros, no package time)",
            ["#ACK", "#ERR216:top-up token: it names no package (not-before time 0)"],
            t.command("#TOPUP 4d46544f50555002" + "00" * 185))

        # Editing the public area during a cycle: the cycle runs as it began, the next is refused.
        d.args[d.args.index("--sim-speed") + 1] = "1"
        check(d.stop() == 0, "stop")
        d.start()
        t, u = d.tcp(), d.unix()
        t.send(b"#AUTO NOINFO\r")
        time.sleep(0.3)
        other = d.tcp()
        put(other, "stray.txt", "an operator's file")
        row("public area", "a file added during a cycle: that cycle", DONE, t.until_final(120))
        row("public area", "the next cycle",
            ["#ACK", "#ERR202:the public area holds the file 'stray.txt' while the secure area "
             "holds a setup: it is not clear which to use (remove it)"],
            t.command("#AUTO NOINFO", timeout=120))
        check(other.command("#FDELETE stray.txt")[-1] == "#OK", "cleanup")
        left -= 1
        row("public area", "cycles left after both", str(left), info(t)["CYCLES_LEFT"])

        # Killing the daemon in the middle of a cycle: the count is taken exactly once.
        t.send(b"#AUTO NOINFO\r")
        deadline = time.time() + 30
        while time.time() < deadline:
            st = other.command("#STATUS")[-1]
            if st in ("#STATUS:ERASING", "#STATUS:PROGRAMMING", "#STATUS:VERIFYING"):
                break
            time.sleep(0.02)
        else:
            fail("the cycle never reached the target")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.start()
        t, u = d.tcp(), d.unix()
        i = info(t)
        left -= 1
        row("kill", "SIGKILL during a cycle: cycles left, next serial",
            (str(left), str(500 + 20 - left)), (i["CYCLES_LEFT"], i["NEXT_SERIAL"]))
        log = get(t, "FLASHER.LOG").decode()
        row("kill", "the cut cycle in the production records", True,
            "took a count but have no record" in log)

        # NBD outside the public area (file access mode).
        check(u.command("#REBOOT FILEACCESS", timeout=60) == ["#ACK", "#OK"], "file access")
        s, size = nbd_connect(nbd_port)
        part = partitions(d.storage)[0]
        row("nbd", "export size", part["size"] * 512, size)
        for what, kind, off, n, want in (
                ("read at the end", 0, size, 512, 22),
                ("read across the end", 0, size - 512, 1024, 22),
                ("read at 2^64 - 512", 0, 2 ** 64 - 512, 1024, 22),
                ("read of 64 MiB", 0, 0, 64 << 20, 22),
                ("write at the end", 1, size, 512, 28),
                ("write across the end", 1, size - 512, 1024, 28)):
            payload = b"\xEE" * n if kind == 1 else b""
            err, _ = nbd_request(s, kind, off, n, payload)
            row("nbd", what, "error %d" % want, "error %d" % err)
        err, data = nbd_request(s, 0, 0, size)
        row("nbd", "the whole export read", (0, size, False), (err, len(data), MARK in data))
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 8, 0, 0))  # disconnect
        s.close()
        check(u.command("#REBOOT", timeout=60) == ["#ACK", "#OK"], "back")
        t = d.tcp()
        i = info(t)
        row("nbd", "the secure setup after file access", ("SECURE", str(left)),
            (i["AREA"], i["CYCLES_LEFT"]))
        check(d.stop() == 0, "stop")

        # Flipped bytes in the secure partition (offline): refused at start, said why.
        base = partitions(d.storage)[1]["start"] * 512
        original = open(d.storage, "rb").read()
        for what, offs, reply in (
                ("the header", (100,), NO_HEADER),
                ("each header slot", (100, 512 + 100), NO_HEADER),
                ("the file data", (9216 + 5000,),
                 "Projects/01_W/01_App/app.bin: authentication failed")):
            flip(d.storage, [base + off for off in offs])
            d.start()
            t = d.tcp()
            row("tampering", "a flipped byte in %s" % what, ["#ACK", "#ERR216:" + reply],
                t.command("#AUTO NOINFO", timeout=120))
            check(reply in d.log_text(), "said why")
            # A secure area that cannot be read may hold a setup all the same: no package
            # from afar, as with one that is read.
            row("tampering", "#FOPEN _SECURE/p.mfp with a flipped byte in %s" % what,
                UNPINNED_PACKAGE, t.command("#FOPEN _SECURE/p.mfp"))
            check(d.stop() == 0, "stop")
            with open(d.storage, "wb") as f:
                f.write(original)
        # The unused header slot or state records damaged: the newest state that authenticates
        # is used (the other state record, or the keystore's note, which holds the newest state
        # with the counter; failing those the trust anchor's counter charges what is missing):
        # no count comes back, no serial number again.
        serial = 500 + 20 - left
        for what, offs in (("the unused header slot", (512 + 100,)),
                           ("the first state record", (1024 + 100,)),
                           ("the second state record", (5120 + 100,)),
                           ("each state record", (1024 + 100, 5120 + 100))):
            flip(d.storage, [base + off for off in offs])
            d.start()
            t = d.tcp()
            i = info(t)
            row("tampering", "a flipped byte in %s: cycles left, next serial" % what,
                (str(left), str(serial)), (i["CYCLES_LEFT"], i["NEXT_SERIAL"]))
            check(d.stop() == 0, "stop")
            with open(d.storage, "wb") as f:
                f.write(original)
        d.start()
        t = d.tcp()
        i = info(t)
        row("tampering", "the original image again: cycles left, next serial",
            (str(left), str(serial)), (i["CYCLES_LEFT"], i["NEXT_SERIAL"]))
        check(d.stop() == 0, "stop")

    # ---- a pinned programmer: packages, tokens and restored images ----
    owner = os.path.join(work, "c")
    with Daemon(size="32M", sim_speed="0", workdir=os.path.join(owner, "d")) as d:
        use(d)
        t = d.tcp()
        fp_owner, fp_other = (re.search(r"fingerprint: (\S+)",
                                        owner_tool(owner, "keygen", "-o", key)).group(1)
                              for key in ("owner", "other"))
        owner_tool(owner, "identity", "-o", "a.pub", device=d.socket_path)
        owner_tool(owner, "securearea", "create", "--owner", "owner.pub", device=d.socket_path)
        folder = os.path.join(owner, "setup")
        for name, data in (("Projects/01_W/01_App/app.bin", fw),
                           ("Projects/01_W/01_App/job.ini", JOB_INI),
                           ("Projects/01_W/Cntdown.txt", "5\n"),
                           ("Projects/01_W/Serial.txt", "500\n")):
            os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
        # Four packages of the same setup (one setup id), by not-before time: old, s1, s2, and
        # one signed by another owner.
        for package, key, day in (("old", "owner", 1), ("s1", "owner", 2), ("s2", "owner", 3),
                                  ("foreign", "other", 4)):
            setup_id = owner_tool(owner, "pack", "--owner-key", key + ".key", "--to", "a.pub",
                                  "--not-before", "2024-01-0%d" % day, "-o", package + ".mfp",
                                  "setup").split()[0]

        def deliver(package):
            """The package into _SECURE, then a restart: its reply, MOVE_ERROR, SETUP and
            CYCLES_LEFT."""
            c = d.tcp()
            put(c, "_SECURE/" + package, open(os.path.join(owner, package), "rb").read())
            r = c.command("#REBOOT", timeout=120)
            c = d.tcp()
            i = info(c)
            return r, i["MOVE_ERROR"], i["SETUP"], i["CYCLES_LEFT"]

        check(deliver("s1.mfp") == (["#ACK", "#OK"], "", setup_id, "5"),
              "the owner's package installs")
        use(d, 5)
        # _SECURE over TCP on a pinned programmer: a package (only the owner's installs), and
        # nothing else beside it.
        t = d.tcp()
        row("_SECURE over TCP", "#FOPEN _SECURE/p.mfp (pinned: makes _SECURE)", ["#ACK", "#OK"],
            t.command("#FOPEN _SECURE/p.mfp"))
        t.command("#FCLOSE")
        # The folder itself stays removable from afar (here: not empty, so the storage says no).
        row("_SECURE over TCP", "#RMDIR _SECURE (beside a package)",
            ["#ACK", "#ERR013:Failed to remove folder (directory not empty)"],
            t.command("#RMDIR _SECURE"))
        # A second package beside it: deleting one leaves the other, and its _SECURE, in place.
        row("_SECURE over TCP", "#FOPEN _SECURE/q.mfp (beside a package)", ["#ACK", "#OK"],
            t.command("#FOPEN _SECURE/q.mfp"))
        t.command("#FCLOSE")
        row("_SECURE over TCP", "#FDELETE _SECURE/q.mfp (beside a package)", ["#ACK", "#OK"],
            t.command("#FDELETE _SECURE/q.mfp"))
        for cmd in ("#FOPEN _SECURE/Cntdown.txt", "#MKDIR _SECURE/Projects",
                    "#FDELETE _SECURE/x.txt", "#RMDIR _SECURE/Projects"):
            row("_SECURE over TCP", cmd + " (beside a package)", SECURE_ONLY, t.command(cmd))
        row("_SECURE over TCP", "#FDELETE _SECURE/p.mfp", ["#ACK", "#OK"],
            t.command("#FDELETE _SECURE/p.mfp"))
        row("_SECURE over TCP", "#FLIST _SECURE after the package went", NO_FOLDER,
            t.command("#FLIST _SECURE"))
        # A package whose file cannot be made: the _SECURE made for it goes too (never an empty
        # one).
        row("_SECURE over TCP", "#FOPEN _SECURE/a*b.mfp (a name no file takes)", BAD_NAME,
            t.command("#FOPEN _SECURE/a*b.mfp"))
        row("_SECURE over TCP", "#FLIST _SECURE after the failed #FOPEN", NO_FOLDER,
            t.command("#FLIST _SECURE"))
        image = {name: os.path.join(owner, name + ".img")
                 for name in ("before-topup", "older", "before-s2", "s2")}
        t = restart(d, save=image["before-topup"])
        for attempt, package, why in (
                ("another owner's package on a pinned programmer", "foreign.mfp",
                 "_SECURE/foreign.mfp: signed by owner %s, but this programmer accepts only "
                 "packages of owner %s (securearea create --owner)" % (fp_other, fp_owner)),
                ("the installed package again (a replay)", "s1.mfp",
                 NOT_LATER % "2024-01-02T00:00:00Z"),
                ("an older package (stale)", "old.mfp",
                 NOT_LATER % "2024-01-01T00:00:00Z")):
            row("packages", attempt + ": reply, why, setup, cycles left",
                (["#ACK", "#OK"], "the package import failed: " + why, setup_id, "5"),
                deliver(package))
            t = d.tcp()
            # Over TCP the last package deleted takes its _SECURE along: never an empty one.
            check(t.command("#FDELETE _SECURE/" + package) == ["#ACK", "#OK"], "clean up")
            check(t.command("#FLIST _SECURE") == NO_FOLDER, "_SECURE went with the package")

        # Top-up tokens signed by an owner: the owner's own once, then replayed, stale, foreign.
        # (For s1, installed from the package of 2024-01-02.)
        s1 = ("--setup", setup_id, "--package-time", "2024-01-02")
        for name, key, which, limit in (("t8", "owner", ("--package", "s1.mfp"), 8),
                                        ("t7", "owner", ("--package", "s1.mfp"), 7),
                                        ("foreign", "other", s1, 9),
                                        ("elsewhere", "owner",
                                         ("--setup", "ab" * 32, "--package-time", "2024-01-02"),
                                         9)):
            owner_tool(owner, "topup", "--owner-key", key + ".key", "--programmer", "a.pub",
                       *which, "--project", "W", "--limit", str(limit), "-o", name + ".mft")
        token = {n: open(os.path.join(owner, n + ".mft"), "rb").read().hex()
                 for n in ("t8", "t7", "foreign", "elsewhere")}
        check(t.command("#TOPUP " + token["t8"]) == TOPUP_5_TO_8, "the owner's token applies")
        use(d, 8)
        for attempt, name, reply in (
                ("a valid token replayed", "t8",
                 "#OK:top-up token for 01_W: the limit is 8 already (a replay): nothing to do"),
                ("a lower limit (stale)", "t7",
                 "#ERR216:top-up token for 01_W: limit 7 is below the current limit 8: refused as "
                 "stale"),
                ("another owner's token", "foreign",
                 "#ERR216:top-up token signed by owner %s, but the installed setup's owner is %s"
                 % (fp_other, fp_owner))):
            row("tokens", attempt, ["#ACK", reply], t.command("#TOPUP " + token[name]))
            row("tokens", attempt + ": cycles left", "8", info(t)["CYCLES_LEFT"])
        row("tokens", "a token for another setup",
            ["#ACK", "#ERR216:top-up token for setup abababababababab..., but the installed "
             "setup is %s..." % setup_id[:16]], t.command("#TOPUP " + token["elsewhere"]))
        row("tokens", "a token for another setup: cycles left", "8", info(t)["CYCLES_LEFT"])

        # A restored storage image (K = 1): not one count back, not one serial number again.
        cycles(t, 2)
        t = restart(d, save=image["older"])
        cycles(t, 2)
        i = info(t)
        left, serial = i["CYCLES_LEFT"], i["NEXT_SERIAL"]
        check((left, serial) == ("4", "504"), "8 - 4: %r" % i)
        t = restart(d, restore=image["older"])
        i = info(t)
        row("rollback", "an image 2 devices older: cycles left, next serial", (left, serial),
            (i["CYCLES_LEFT"], i["NEXT_SERIAL"]))
        r = t.command("#AUTO NOINFO")
        row("rollback", "the next device: reply, its serial number", (True, int(serial)),
            (bool(DONE.fullmatch("\n".join(r))),
             int.from_bytes(sim_flash(d, 1)[0xF0000:0xF0004], "little")))
        # The image from before the top-up (limit 5): the keystore keeps the newest state with
        # its counter (its note: limit 8 after the top-up, 5 used), so the restored image takes
        # nothing back and gives nothing: 3 left, the next serial number unused.
        t = restart(d, restore=image["before-topup"])
        i = info(t)
        row("rollback", "an image from before the top-up: cycles left, next serial", ("3", "505"),
            (i["CYCLES_LEFT"], i["NEXT_SERIAL"]))
        row("rollback", "the top-up token replayed on it",
            ["#ACK", "#OK:top-up token for 01_W: the limit is 8 already (a replay): nothing to do"],
            t.command("#TOPUP " + token["t8"]))
        row("rollback", "cycles left then", "3", info(t)["CYCLES_LEFT"])

        # An image from before the last install: refused (the anchor holds the new header's digest).
        restart(d, save=image["before-s2"])
        check(deliver("s2.mfp") == (["#ACK", "#OK"], "", setup_id, "5"), "a newer package installs")
        use(d, 5)
        # The same setup from a later package is another installation: s1's top-up to 8 does not
        # raise its 5 (it did: 3 devices the owner never allowed).
        t = d.tcp()
        row("tokens", "s1's token on the installation of s2 (the same setup)",
            ["#ACK", "#ERR216:top-up token for the installation of setup %s... from the package "
             "of 2024-01-02T00:00:00Z, but the package installed is of 2024-01-03T00:00:00Z: a "
             "token tops up one installation only; make one for it (mintflash topup --package)"
             % setup_id[:16]], t.command("#TOPUP " + token["t8"]))
        row("tokens", "s1's token on the installation of s2: cycles left", "5",
            info(t)["CYCLES_LEFT"])
        t = restart(d, save=image["s2"], restore=image["before-s2"])
        row("rollback", "an image from before the last install", ["#ACK", "#ERR216:" + NO_HEADER],
            t.command("#AUTO NOINFO"))
        t = restart(d, restore=image["s2"])
        row("rollback", "the current image back: cycles left", "5", info(t)["CYCLES_LEFT"])
        check(d.stop() == 0, "stop")

    # ---- privileged commands on the serial line ----
    if shutil.which("socat"):
        ours, theirs = os.path.join(work, "host"), os.path.join(work, "prog")
        socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours,
                                  "pty,raw,echo=0,link=" + theirs], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(ours) and os.path.exists(theirs):
                    break
                time.sleep(0.05)
            with Daemon(extra=["--serial", theirs]) as d:
                use(d)
                fd = os.open(ours, os.O_RDWR | os.O_NOCTTY)
                __import__("tty").setraw(fd)
                for cmd in (b"#SECUREAREA CREATE", b"#REBOOT FILEACCESS"):
                    os.write(fd, cmd + b"\r")
                    buf = b""
                    deadline = time.time() + 10
                    while b"\r" not in buf and time.time() < deadline:
                        try:
                            buf += os.read(fd, 100)
                        except BlockingIOError:
                            time.sleep(0.01)
                    row("privileged", cmd.decode() + " over serial", LOCAL_ONLY,
                        [buf.split(b"\r")[0].decode(errors="replace")])
                os.close(fd)
        finally:
            socat.kill()
            socat.wait()

    # ---- killing the daemon in the middle of the move ----
    with Daemon(size="64M", sim_speed="0", workdir=os.path.join(work, "b")) as d:
        use(d)
        t, u = d.tcp(), d.unix()
        check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
        big = firmware(900000)
        put(u, "_SECURE/Projects/01_W/01_App/app.bin", big)
        put(u, "_SECURE/Projects/01_W/01_App/job.ini",
            "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
        put(u, "_SECURE/Projects/01_W/Cntdown.txt", "7\n")
        check(d.stop() == 0, "stop")
        for delay in (0.05, 0.15, 0.4):
            d.start(wait_ready=False)
            time.sleep(delay)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
        d.start()
        t = d.tcp()
        i = info(t)
        row("kill", "SIGKILL three times during the move: area, cycles left, _SECURE",
            ("SECURE", "7", NO_FOLDER), (i["AREA"], i["CYCLES_LEFT"], t.command("#FLIST _SECURE")))
        r = t.command("#AUTO NOINFO", timeout=120)
        row("kill", "a cycle after the cut move: reply, the whole firmware", (True, True),
            (bool(DONE.fullmatch("\n".join(r))), sim_flash(d, 1)[:len(big)] == big))
        check(d.stop() == 0, "stop")

    width = max(len(a) for _, a, _ in rows)
    print("security suite: %d rows" % len(rows))
    for group, attempt, expected in rows:
        print("  %-12s %-*s -> %s" % (group, width, attempt, expected[:110]))
    print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
