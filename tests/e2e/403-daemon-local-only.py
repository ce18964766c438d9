"""Privileged commands only on the local (UNIX socket) connection; file access mode answers
#STATUS, #INFO and #REBOOT only; #REBOOT comes back to stand-alone mode; #SECUREAREA wipes."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, get, put  # noqa: E402


def wait_status(client, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = client.command("#STATUS")
        if st[-1] == want:
            return
        time.sleep(0.05)
    raise AssertionError("status never became %s" % want)


with Daemon() as d:
    t, u = d.tcp(), d.unix()
    for cmd in ("#SECUREAREA CREATE", "#SECUREAREA REMOVE", "#REBOOT FILEACCESS"):
        check(t.command(cmd) == ["#NACK:ERR209:Only allowed on the local connection"],
              cmd + " refused on TCP")
    put(t, "keep.txt", "data")

    # File access mode: only #STATUS, #INFO and #REBOOT.
    check(u.command("#REBOOT FILEACCESS") == ["#ACK", "#OK"], "REBOOT FILEACCESS on UNIX")
    wait_status(t, "#STATUS:FILEACCESS")
    for cmd in ("#AUTO", "#FOPEN keep.txt", "#FLIST", "#SELECT x"):
        check(t.command(cmd) == ["#NACK:ERR208:Not available in file access mode"], cmd)
    check("#INFO:MODE=FILEACCESS" in t.command("#INFO"), "INFO in file access mode")
    check(t.command("#REBOOT") == ["#ACK", "#OK"], "plain REBOOT allowed on TCP")
    wait_status(t, "#STATUS:READY")
    check(get(t, "keep.txt") == b"data", "files survive a reboot")

    # Secure area: created, then removed; every file is lost each time.
    r = u.command("#SECUREAREA CREATE", timeout=60)
    check(r == ["#ACK", "#OK"], "SECUREAREA CREATE %r" % r)
    check(t.command("#FOPEN keep.txt") == ["#ACK", "#OK"] and t.command("#FSIZE")[-1] == "#OK:0",
          "the public area was wiped")
    r = u.command("#SECUREAREA CREATE", timeout=60)
    check(r[-1].startswith("#ERR216:") and "exists" in r[-1], "create twice %r" % r)
    r = u.command("#SECUREAREA REMOVE", timeout=60)
    check(r == ["#ACK", "#OK"], "SECUREAREA REMOVE %r" % r)
    check(d.stop() == 0, "clean exit")
print("ok")
