"""A network peer cannot replace the setup of a programmer no owner is pinned to with a sealed
package of its own. Without a pin any owner's package installs, so a package put into _SECURE over
TCP erased the installed setup (and its counts) at the next start and production ran the peer's
setup: the same destruction a plain _SECURE was refused for (only the local connection may destroy
the setup). The peer needs nothing but TCP: #IDENTITY gives the public key a package is sealed to,
and keygen/pack are the commander's offline tools.

Checked: with a secure area that holds nothing, a package over TCP is taken (nothing to lose);
once a setup is installed, `mintflash push` over TCP is refused with #ERR209 and leaves no
_SECURE, the raw #FOPEN is refused in any spelling, a #FWRITE to a package opened before the
setup was installed is refused too, and after a restart the owner's setup and counts are intact.
The local connection still takes the package (it may destroy the setup)."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, Daemon, check, commander, fail, info, put  # noqa: E402

JOB_INI = ("[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
           "[serial]\naddress = 0x080F0000\n")
REFUSED = ["#ACK", "#ERR209:Over TCP and serial, _SECURE takes no package here: no owner is "
           "pinned, so a package signed by anyone would replace the installed setup (securearea "
           "create --owner pins one): use the local connection"]
NO_FOLDER = "#ERR011:File read failed (no such file or directory)"

work = tempfile.mkdtemp(prefix="mf-unpinned-")
os.makedirs(os.path.join(work, "d"))
peer = os.path.join(work, "peer")
os.makedirs(os.path.join(peer, "setup", "Projects", "01_X", "01_App"))
with open(os.path.join(peer, "setup", "Projects", "01_X", "01_App", "app.bin"), "wb") as f:
    f.write(b"PEER" * 256)
with open(os.path.join(peer, "setup", "Projects", "01_X", "01_App", "job.ini"), "w") as f:
    f.write(JOB_INI)
with open(os.path.join(peer, "setup", "Projects", "01_X", "Cntdown.txt"), "w") as f:
    f.write("99999\n")

with Daemon(size="32M", sim_speed="0", workdir=os.path.join(work, "d")) as d:
    t, u = d.tcp(), d.unix()
    tcp_device = "tcp:127.0.0.1:%d" % d.port

    def peer_tool(*args, expect=0):
        """The commander as the peer runs it: over TCP only."""
        env = dict(os.environ, MINTFLASH_DEVICE=tcp_device)
        p = subprocess.run([MINTFLASH] + list(args), cwd=peer, env=env, capture_output=True,
                           text=True, timeout=120)
        if p.returncode != expect:
            fail("mintflash %s: exit %d, expected %d\nstdout: %s\nstderr: %s"
                 % (" ".join(args), p.returncode, expect, p.stdout, p.stderr))
        return p

    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
    # A secure area holding nothing: a package over TCP is taken (nothing to lose).
    check(t.command("#FOPEN _SECURE/p.mfp") == ["#ACK", "#OK"], "a package where nothing is held")
    # `early` keeps a package open across the install below.
    early = d.tcp()
    check(early.command("#FOPEN _SECURE/p.mfp") == ["#ACK", "#OK"], "open it twice")
    check(t.command("#FDELETE _SECURE/p.mfp") == ["#ACK", "#OK"], "delete it")

    # The owner's setup, on the local connection; no owner pinned.
    put(u, "_SECURE/Projects/01_W/01_App/app.bin", b"OWNER" * 2000)
    put(u, "_SECURE/Projects/01_W/01_App/job.ini", JOB_INI)
    put(u, "_SECURE/Projects/01_W/Cntdown.txt", "20\n")
    put(u, "_SECURE/Projects/01_W/Serial.txt", "500\n")
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    before = info(t)
    check(before["AREA"] == "SECURE" and before["CYCLES_LEFT"] == "20" and not before["PINNED"],
          "the owner's setup runs, unpinned: %r" % before)

    # The peer: its own owner key, the programmer's identity over TCP, a package sealed to it.
    peer_tool("keygen", "-o", "peer")
    peer_tool("identity", "-o", "prog.pub")
    peer_tool("pack", "--owner-key", "peer.key", "--to", "prog.pub", "-o", "peer.mfp", "setup")
    p = peer_tool("push", "peer.mfp", expect=1)
    check(REFUSED[1][1:] in p.stderr, "push over TCP refused: %s%s" % (p.stdout, p.stderr))
    check(t.command("#FLIST _SECURE")[-1] == NO_FOLDER, "no _SECURE left behind")
    for name in ("_SECURE/p.mfp", "_secure./P.MFP", "Projects/../_SECURE/p.mfp", "_SECURE\\p.mfp"):
        check(t.command("#FOPEN " + name) == REFUSED, "#FOPEN %s refused" % name)
    check(t.command("#FLIST _SECURE")[-1] == NO_FOLDER, "still no _SECURE")
    # A package opened while nothing was held: what it may take is asked again at each write.
    check(u.command("#MKDIR _SECURE") == ["#ACK", "#OK"], "local mkdir")
    check(u.command("#FOPEN _SECURE/p.mfp") == ["#ACK", "#OK"], "local package")
    r = early.command("#FWRITE 0,4:4d465031")
    check(r == REFUSED, "#FWRITE to a package opened before the setup: %r" % r)
    check(u.command("#FDELETE _SECURE/p.mfp") == ["#ACK", "#OK"], "local delete")
    check(u.command("#FLIST _SECURE")[-1] == NO_FOLDER, "the local delete took _SECURE too")

    # Restarted: the owner's setup and its counts are intact.
    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
    t = d.tcp()
    after = info(t)
    check((after["SETUP"], after["CYCLES_LEFT"], after["PROJECT"], after["MOVE_ERROR"])
          == (before["SETUP"], "20", before["PROJECT"], ""), "setup intact: %r" % after)

    # The local connection may destroy the setup: there the package installs.
    p = commander(["push", "peer.mfp"], peer, device=d.socket_path)
    check("installed" in p.stdout, "local push: %s" % p.stdout)
    t = d.tcp()
    check(info(t)["CYCLES_LEFT"] == "99999", "the local connection replaced the setup")
print("ok")
