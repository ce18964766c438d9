"""mintflashd --file-access and the signals: started in file access mode, the channels answer
#STATUS, #INFO, #IDENTITY and #REBOOT only; SIGHUP restarts in stand-alone mode as a power cycle
would (also mid-cycle: the cycle is cancelled, its count stays taken); SIGINT stops the daemon
like SIGTERM, mid-cycle too (exit 0, socket removed, FLASHER.LOG exact)."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, simple_project  # noqa: E402
from mfprobe import lines_until, number, poll  # noqa: E402


def state(client):
    r = client.command("#STATUS")
    check(len(r) == 2 and r[0] == "#ACK", "STATUS %r" % r)
    return r[1]


def flasher_log(daemon):
    out = subprocess.run(["mtype", "-i", daemon.storage + "@@1M", "::FLASHER.LOG"],
                         capture_output=True, text=True)
    check(out.returncode == 0, "mtype FLASHER.LOG: %s" % out.stderr)
    return out.stdout


def start_cycle(client):
    """Starts #AUTO and returns once the device is being erased (its count is then taken)."""
    client.send("#AUTO\r")
    r = lines_until(client, lambda x: x == "#STATUS:ERASING" or x.startswith(("#OK", "#ERR")))
    check(r[0] == "#ACK" and r[-1] == "#STATUS:ERASING", "cycle started: %r" % r)


# ---- --file-access at start, SIGHUP back to stand-alone mode, SIGINT ----
with Daemon(extra=["--file-access"]) as d:
    c, u = d.tcp(), d.unix()
    check(state(c) == "#STATUS:FILEACCESS", "starts in file access mode")
    info = c.command("#INFO")
    check("#INFO:MODE=FILEACCESS" in info and info[-1] == "#OK", "INFO %r" % info)
    ident = c.command("#IDENTITY")
    check(ident[0] == "#ACK" and ident[-1] == "#OK" and len(ident) > 3 and
          all(x.startswith("#IDENTITY:") for x in ident[1:-1]), "IDENTITY %r" % ident)
    for cmd in ("#AUTO", "#ERASE", "#FOPEN a.txt", "#FLIST", "#SELECT x", "#SELMODULE 1",
                "#RESULT", "#CANCEL", "#PROGRESS ON", "#BAUDRATE 9600", "#TOPUP 00"):
        check(c.command(cmd) == ["#NACK:ERR208:Not available in file access mode"], cmd)
    check(u.command("#SECUREAREA CREATE") ==
          ["#NACK:ERR208:Not available in file access mode"], "no secure area work either")
    check(re.search(r"file access mode: the public area is exported over NBD on 127\.0\.0\.1:\d+",
                    d.log_text()), "the NBD export is up")

    d.proc.send_signal(signal.SIGHUP)
    poll(lambda: state(c) == "#STATUS:READY", "stand-alone mode after SIGHUP")
    check("#INFO:MODE=STANDALONE" in c.command("#INFO"), "INFO after SIGHUP")
    check("restarting in stand-alone mode" in d.log_text(), "the log says why")
    check(c.command("#FLIST")[-1] == "#OK", "file commands work again")

    check(d.stop(signal.SIGINT) == 0, "exit status 0 on SIGINT")
    check(not os.path.exists(d.socket_path), "the socket file is removed")
    log = d.log_text()
    check(log.rstrip().endswith("mintflashd: stopped"), "stderr ends with the stop:\n" + log)
    check(flasher_log(d).rstrip().endswith("programmer stopped"), "FLASHER.LOG records the stop")

# ---- SIGHUP and SIGINT in the middle of a cycle ----
with Daemon(sim_speed="2") as d:
    c = d.tcp()
    simple_project(c, count=10, serial=1, size=128 * 1024)
    start_cycle(c)
    d.proc.send_signal(signal.SIGHUP)
    r = c.until_final()
    check(r[-1] == "#ERR007:CANCELED.", "SIGHUP cancels the running cycle: %r" % r)
    poll(lambda: state(c) == "#STATUS:READY", "ready after the restart")
    check(number(c, "Projects/01_Widget/Cntdown.txt") == 9, "the cancelled cycle's count is taken")
    check(number(c, "Projects/01_Widget/Serial.txt") == 2, "and its serial number")

    start_cycle(c)
    check(d.stop(signal.SIGINT) == 0, "exit status 0 on SIGINT mid-cycle")
    log = flasher_log(d)
    check(len(re.findall(r"serial \d+ ERROR job App: cancelled while erasing \(count consumed\)",
                         log)) == 2, "both cancels logged:\n" + log)
    check("restart (stand-alone mode)" in log, "the SIGHUP restart is logged:\n" + log)
    check(log.rstrip().endswith("programmer stopped"), "the log ends with the stop:\n" + log)
    out = subprocess.run(["mtype", "-i", d.storage + "@@1M", "::Projects/01_Widget/Cntdown.txt"],
                         capture_output=True, text=True)
    check(out.stdout.split()[0] == "8", "SIGINT's cycle keeps its count: %r" % out.stdout)
print("ok")
