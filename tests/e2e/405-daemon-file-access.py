"""File access mode through the daemon, with clients nobody here wrote: nbdinfo sees exactly the
public area, nbdcopy copies it out byte for byte (mtools reads our files on the copy), a file
added with mcopy goes back in through nbdcopy, and after #REBOOT the programmer sees it."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, free_port, get, put  # noqa: E402

for tool in ("nbdinfo", "nbdcopy", "mdir", "mcopy", "sfdisk"):
    if not shutil.which(tool):
        print("skipped: %s is not installed" % tool)
        sys.exit(77)

port = free_port()
with Daemon(extra=["--nbd", "127.0.0.1:%d" % port]) as d:
    c, u = d.tcp(), d.unix()
    put(c, "Projects/readme.txt", "written before file access mode\n")
    check(u.command("#REBOOT FILEACCESS", timeout=60) == ["#ACK", "#OK"], "into file access mode")
    check(c.command("#STATUS")[-1] == "#STATUS:FILEACCESS", "FILEACCESS state")

    # The partition table says where the public area is; the export must be exactly it.
    table = subprocess.run(["sfdisk", "-J", d.storage], capture_output=True, text=True, check=True)
    part = __import__("json").loads(table.stdout)["partitiontable"]["partitions"][0]
    start, size = part["start"] * 512, part["size"] * 512
    url = "nbd://127.0.0.1:%d" % port
    info = subprocess.run(["nbdinfo", "--size", url], capture_output=True, text=True)
    check(info.returncode == 0 and int(info.stdout) == size,
          "nbdinfo size %r, partition 1 is %d bytes (%s)" % (info.stdout, size, info.stderr))

    out = os.path.join(d.dir, "public.img")
    subprocess.run(["nbdcopy", url, out], check=True)
    with open(d.storage, "rb") as f:
        f.seek(start)
        check(f.read(size) == open(out, "rb").read(), "nbdcopy copy equals partition 1")
    listing = subprocess.run(["mdir", "-i", out, "::Projects"], capture_output=True, text=True)
    check("readme" in listing.stdout, "mtools reads our file on the copy: %r" % listing.stdout)

    # A file put in with mtools on the copy, written back through NBD.
    new = os.path.join(d.dir, "new.txt")
    with open(new, "w") as f:
        f.write("put in through file access mode\n")
    subprocess.run(["mcopy", "-i", out, new, "::NEW.TXT"], check=True)
    subprocess.run(["nbdcopy", out, url], check=True)
    # Nothing outside partition 1 changed: the MBR is still ours.
    with open(d.storage, "rb") as f:
        check(f.read(512)[510:] == b"\x55\xaa", "MBR intact")

    # Cycles and file commands are refused meanwhile.
    check(c.command("#FLIST") == ["#NACK:ERR208:Not available in file access mode"], "no #FLIST")
    check(c.command("#REBOOT") == ["#ACK", "#OK"], "back to stand-alone mode")
    check(get(c, "NEW.TXT") == b"put in through file access mode\n", "the programmer sees it")
    check(get(c, "Projects/readme.txt") == b"written before file access mode\n", "old file kept")
    # The export is gone.
    gone = subprocess.run(["nbdinfo", "--size", url], capture_output=True, text=True)
    check(gone.returncode != 0, "no NBD export in stand-alone mode")
    check(d.stop() == 0, "clean exit")
print("ok")
