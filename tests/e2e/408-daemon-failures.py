"""A failing cycle ends in the documented error number (docs/protocol.md): the sim device's fault
knobs give 205 (verify), 206 (connect), 207 (erase, program) and 213 (timeout); a data file
whose bytes change on the storage after the setup was loaded, and a job that names a missing data
file, give 102 (the reference's "Data file could not be opened"); an unknown device gives 204 at
once. #RESULT repeats the error, the count is
taken exactly when docs/jobs.md says, and FLASHER.LOG records each failure. The data-file cases
run with --hold 0 (every cycle reads the file); with the default, a file changed behind the
programmer's back is programmed as loaded until the next load reports it (docs/jobs.md, "Data
files in memory")."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, firmware, get, put, sim_flash  # noqa: E402
from mfprobe import intel_hex, number, set_knob  # noqa: E402

JOB = "Projects/01_W/01_App/"
BASE = 0x08000000


def auto(client):
    r = client.command("#AUTO")
    check(r[0] == "#ACK" and r[-2] == "#STATUS:READY", "framing %r" % r)
    return r[-1]


def count(client):
    return number(client, "Projects/01_W/Cntdown.txt")


def expect(client, knob, value, pattern, taken):
    """Sets a knob, runs #AUTO, checks the final line and how many counts it took."""
    before = count(client)
    if knob:
        set_knob(d, 1, knob, value)
    final = auto(client)
    check(re.match(pattern, final), "%s %s: %r does not match %r" % (knob, value, final, pattern))
    check(client.command("#RESULT") == ["#ACK", "#RESULT:1:" + final], "#RESULT repeats it")
    check(count(client) == before - taken, "%s: %d count(s) taken" % (final, taken))
    return final


def corrupt_record(daemon, text, index):
    """Changes one digit of the HEX record `index` in the storage image, as a bit flip would."""
    line = text.split("\r\n")[index].encode()
    with open(daemon.storage, "r+b") as f:
        image = f.read()
        check(image.count(line) == 1, "the HEX record is once in the image")
        bad = line[:12] + (b"0" if line[12:13] != b"0" else b"1") + line[13:]
        os.pwrite(f.fileno(), bad, image.index(line))


def project(client, seed):
    """One project of one HEX file with a count of 50, and a good cycle (it makes device.ini)."""
    fw = firmware(4096, seed=seed)
    text = intel_hex(fw, BASE)
    put(client, JOB + "app.hex", text)
    put(client, JOB + "job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.hex\n")
    put(client, "Projects/01_W/Cntdown.txt", "50\r\n")
    check(auto(client).startswith("#OK (Total "), "a good cycle first")
    return fw, text


with Daemon(extra=("--hold", "0")) as d:
    c = d.tcp()
    fw, text = project(c, 7)

    # The device fails: each knob fires once (docs/targets.md).
    expect(c, "connect", "once",
           r"^#ERR206:connect: slot 1: the device does not answer \(fault injected\)$", 0)
    expect(c, "flip", "0x08000100 once",
           r"^#ERR205:job App: verify failed at 0x8000100 \(expected 0x[0-9A-F]{2}, "
           r"read 0x[0-9A-F]{2}\)$", 1)
    expect(c, "erase", "once", r"^#ERR207:job App: erase 0x8000000-0x8003FFF: .*fault injected",
           1)
    expect(c, "program", "1024 once",
           r"^#ERR207:job App: program at .*I/O error after 1024 bytes \(fault injected\)$", 1)
    expect(c, "timeout", "erase once", r"^#ERR213:job App: erase .*timed out", 1)
    expect(c, None, None, r"^#OK \(Total ", 1)

    # A data file changed on the storage behind the programmer's back (a bit flip, or a writer
    # that bypassed it), same size: the setup loaded before still names it, the cycle cannot
    # read it -> 102, the reference's "data file could not be opened".
    corrupt_record(d, text, 5)
    expect(c, None, None, r"^#ERR102:job App: Projects/01_W/01_App/app\.hex: line 6: checksum "
           r"mismatch", 1)
    put(c, JOB + "app.hex", text)
    expect(c, None, None, r"^#OK \(Total ", 1)

    # A setup that cannot run: at once, nothing taken, the same text in #INFO's PROBLEM. A data
    # file that cannot be opened is 102, the rest of the setup's problems 204.
    put(c, JOB + "job.ini", "[job]\ndevice = SIM-F4-1M\n[file]\npath = gone.bin\n"
        "address = 0x8000000\n")
    final = expect(c, None, None, r"^#ERR102:Projects/01_W/01_App/job\.ini: \[file\] gone\.bin: "
                   r"no such file or directory$", 0)
    check("#INFO:PROBLEM=" + final[len("#ERR102:"):] in c.command("#INFO"), "#INFO says why")
    put(c, JOB + "job.ini", "[job]\ndevice = SIM-NOPE\n[file]\npath = app.hex\n")
    expect(c, None, None, r"^#ERR204:Projects/01_W/01_App/job\.ini:2: \[job\] device: 'SIM-NOPE' "
           r"is not a known device profile", 0)

    log = get(c, "FLASHER.LOG").decode()
    for what in ("the device does not answer", "verify failed at 0x8000100",
                 "checksum mismatch"):
        check(re.search(r"slot 1 AUTO project \"W\" .* ERROR .*%s" % re.escape(what), log),
              "FLASHER.LOG records '%s':\n%s" % (what, log))
    check(d.stop() == 0, "clean exit")

# The default keeps the data in memory from the load on: a change behind the programmer's back
# is not programmed (the device gets what was loaded and checked) until the next load, which
# finds the file does not parse: the setup is invalid (204), naming the file's line.
with Daemon() as d:
    c = d.tcp()
    fw, text = project(c, 9)
    corrupt_record(d, text, 5)
    with open(os.path.join(d.sim_dir, "slot1", "flash.bin"), "r+b") as f:
        f.write(b"\xff" * len(fw))  # a blank device again
    expect(c, None, None, r"^#OK \(Total ", 1)
    check(sim_flash(d, 1)[:len(fw)] == fw, "the device holds the firmware as loaded")
    put(c, "Projects/01_W/Cntdown.txt", "50\r\n")  # a file written: the setup is loaded again
    expect(c, None, None, r"^#ERR204:Projects/01_W/01_App/app\.hex: line 6: checksum mismatch", 0)
    check(d.stop() == 0, "clean exit")
print("ok")
