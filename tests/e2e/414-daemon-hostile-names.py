"""Names written raw into the public area's FAT (as file access mode or a disk editor can) that no
FAT name may hold: a long name with CRs that would forge #FLIST reply lines, one with an escape
sequence and a path. #FLIST shows them escaped (<hh>, docs/protocol.md), no reply carries a control
character, the escaped names open nothing and create nothing, #FOPENREAD never creates a file, and
the owner's `mintflash records` copies only the real RECORDS.nnn files and leaves the programmer's
files as they were."""
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, commander, get, put  # noqa: E402

# Each hostile name, the placeholder of the same length written first, and how #FLIST shows it.
HOSTILE = [
    ("evil\r#FLIST:F:99:RECORDS.999\rz", "evil<0d>#FLIST<3a>F<3a>99<3a>RECORDS.999<0d>z"),
    ("RECORDS.\x1b[2J/../001", "RECORDS.<1b>[2J<2f>..<2f>001"),
]
LFN_OFFSETS = (1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30)  # UTF-16 units of an LFN entry


def placeholder(name, index):
    return "RECORDS.%d" % index + "x" * (len(name) - 9)


def rename_raw(image, offset, old, new):
    """Rewrites the long name `old` as `new` (same length) in the LFN entries of the FAT volume at
    `offset`: the entries' checksum covers the short name only, so they stay valid."""
    with open(image, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(8 << 20))
        patched = 0
        for pos in range(0, len(data) - 32, 32):
            entry = data[pos:pos + 32]
            if entry[11] != 0x0F or entry[0] in (0x00, 0xE5):
                continue
            first = ((entry[0] & 0x1F) - 1) * 13
            units = [struct.unpack_from("<H", entry, o)[0] for o in LFN_OFFSETS]
            part = old[first:first + 13]
            if "".join(chr(u) for u in units[:len(part)]) != part or len(part) == 0:
                continue
            for k, o in enumerate(LFN_OFFSETS[:len(part)]):
                struct.pack_into("<H", data, pos + o, ord(new[first + k]))
            patched += len(part)
        check(patched == len(old), "%r: patched %d of %d characters" % (new, patched, len(old)))
        f.seek(offset)
        f.write(data)


def listing(client):
    """#FLIST of the root, from the raw bytes: every reply line, control characters checked."""
    client.send("#FLIST\r")
    lines = [client.line()]
    while not lines[-1].startswith(("#OK", "#ERR")):
        lines.append(client.line())
    for line in lines:
        check(line.startswith("#") and all(c >= " " and c != "\x7f" for c in line),
              "a reply line with a control character or no '#': %r" % line)
    return lines


with Daemon() as d:
    t = d.tcp()
    put(t, "RECORDS.000", "MFR1 the real records file\n")
    for i, (name, _) in enumerate(HOSTILE):
        put(t, placeholder(name, i), "placeholder %d\n" % i)
    check(d.stop() == 0, "stop")
    out = subprocess.run([MINTFLASH, "storage", "info", "--json", d.storage], capture_output=True,
                         text=True, check=True).stdout
    offset = json.loads(out)["public_area"]["offset"]
    for i, (name, _) in enumerate(HOSTILE):
        rename_raw(d.storage, offset, placeholder(name, i), name)
    d.start()
    t = d.tcp()

    before = listing(t)
    check(before[0] == "#ACK" and before[-1] == "#OK", "listed: %r" % before)
    for name, shown in HOSTILE:
        check(any(line.endswith(":" + shown) for line in before),
              "%r shown as %r: %r" % (name, shown, before))
    check(not any("RECORDS.999" == line.rsplit(":", 1)[-1] for line in before),
          "no forged entry: %r" % before)

    # The shown names open nothing and create nothing; #FOPENREAD never creates.
    for _, shown in HOSTILE:
        r = t.command("#FOPEN " + shown)
        check(r[0] == "#ACK" and r[-1].startswith("#ERR010:"), "#FOPEN %s: %r" % (shown, r))
        r = t.command("#FOPENREAD " + shown)
        check(r[0] == "#ACK" and r[-1].startswith("#ERR010:"), "#FOPENREAD %s: %r" % (shown, r))
    r = t.command("#FOPENREAD RECORDS.999")
    check(r == ["#ACK", "#ERR010:File open failed (no such file or directory)"],
          "#FOPENREAD of a missing file: %r" % r)
    check(t.command("#FOPENREAD RECORDS.000") == ["#ACK", "#OK"], "#FOPENREAD of a file")
    check(t.command("#FREAD 0,4") == ["#ACK", "#OK:04:4d465231"], "read it")
    r = t.command("#FWRITE 0,1:00")
    check(r == ["#ACK", "#ERR012:File write failed (opened for reading only: #FOPENREAD)"],
          "no #FWRITE after #FOPENREAD: %r" % r)
    t.command("#FCLOSE")
    check(listing(t) == before, "nothing was created or changed")

    # The owner fetches the records: only RECORDS.000, and the programmer's files unchanged. (This
    # programmer runs no setup from the secure area, so there is no head statement: exit 1.)
    work = tempfile.mkdtemp(prefix="mf-names-e2e-")
    p = commander(["records", "rec"], work, d.socket_path, expect=1)
    check("copied 1 RECORDS file(s) into rec, without a head statement" in p.stdout,
          p.stdout + p.stderr)
    check(os.listdir(os.path.join(work, "rec")) == ["RECORDS.000"], os.listdir(work))
    with open(os.path.join(work, "rec", "RECORDS.000")) as f:
        check(f.read() == "MFR1 the real records file\n", "the copy")
    check(listing(d.tcp()) == before, "records created or changed nothing on the programmer")
    check(d.stop() == 0, "clean exit")

# Beside a setup in the secure area, such a file stops every cycle (#ERR202), and the text that
# quotes its name goes to the reply, FLASHER.LOG and the daemon's log: no control character from
# the name in any of them (a forged log line, a terminal escape sequence), C1 (NEL) included.
EVIL = "x\r\n2026-01-01 12:00:00 \x1b[32mAUTO OK\x1b[0m \x85y"
with Daemon(size="32M") as d:
    t, u = d.tcp(), d.unix()
    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "securearea create")
    put(u, "_SECURE/Projects/01_W/01_App/app.bin", os.urandom(1000))
    put(u, "_SECURE/Projects/01_W/01_App/job.ini",
        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    put(t, "P" * len(EVIL), "zz")
    check(d.stop() == 0, "stop")
    out = subprocess.run([MINTFLASH, "storage", "info", "--json", d.storage], capture_output=True,
                         text=True, check=True).stdout
    rename_raw(d.storage, json.loads(out)["public_area"]["offset"], "P" * len(EVIL), EVIL)
    d.start()
    t = d.tcp()
    r = t.command("#AUTO")
    check(r[-1].startswith("#ERR202:") and "<0d><0a>" in r[-1] and "<1b>" in r[-1], "reply %r" % r)
    log = get(t, "FLASHER.LOG")
    bad = [b for b in log.replace(b"\r\n", b"\n").split(b"\n")
           if any(c < 0x20 or c == 0x7F for c in b) or b"\xc2\x85" in b]
    check(not bad, "FLASHER.LOG lines with control characters: %r" % bad)
    check(b"AUTO OK" in log and b"\n2026-01-01 12:00:00" not in log, "the name on its own line")
    text = d.log_text()
    check("public area holds the file" in text, "the daemon logged the conflict:\n" + text)
    check(not any(c in text for c in "\r\x1b\x85"), "raw control characters in the daemon's log")
    check(not any(line.startswith("2026-01-01") for line in text.splitlines()),
          "a forged line in the daemon's log")

# A file's own control characters: `mintflash fshow` at a terminal shows them as <hh> (an escape
# sequence a factory wrote into a file does not reach the owner's terminal), and every byte that is
# not part of well-formed UTF-8 (a raw 9B is CSI to a terminal in an 8-bit mode); a character cut
# by the end of a 512-byte #FREAD piece is kept whole. Into a pipe, the bytes as they are.
with Daemon() as d:
    head = b"a\x1b[2Jb\xc2\x9bc\x9b" + b"1mcaf\xe9\x07d\tx\r\n"
    content = head + b"." * (511 - len(head)) + b"\xe2\x82\xac\xc3\xa9\xc2"
    put(d.tcp(), "esc.txt", content)
    env = dict(os.environ, MINTFLASH_DEVICE="unix:" + d.socket_path)
    master, slave = pty.openpty()
    tty.setraw(slave)  # the bytes as written, no CR added before LF
    p = subprocess.Popen([MINTFLASH, "fshow", "esc.txt"], stdout=slave, stderr=subprocess.PIPE,
                         env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    check(p.wait(timeout=60) == 0, "fshow at a terminal: %r" % p.stderr.read())
    want = (b"a<1b>[2Jb<9b>c<9b>1mcaf<e9><07>d\tx\r\n" + b"." * (511 - len(head))
            + b"\xe2\x82\xac\xc3\xa9<c2>")
    check(shown == want, "at a terminal: %r" % shown)
    piped = subprocess.run([MINTFLASH, "fshow", "esc.txt"], env=env, capture_output=True)
    check(piped.returncode == 0 and piped.stdout == content, "into a pipe: %r" % piped.stdout)
print("ok")
