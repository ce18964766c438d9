"""More helpers for end-to-end tests of mintflashd (beside mfdaemon.py): read a reply stream up to
a line, poll the daemon's state instead of sleeping, look at and set a simulated device's
device.ini, make Intel HEX text, and stand a pseudo-terminal pair in for a serial line."""
import os
import re
import subprocess
import time
import tty

from mfdaemon import check, fail, get


def lines_until(client, done, timeout=60):
    """Reads lines until done(line) is true; returns all of them, that one last."""
    lines = []
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            fail("timed out waiting; got %r" % lines)
        lines.append(client.line(left))
        if done(lines[-1]):
            return lines


def poll(probe, what, timeout=30, step=0.02):
    """Calls probe() until it returns a true value (returned); fails after `timeout` seconds,
    saying `what` (a string, or a function returning one)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(step)
    fail("timed out waiting for " + (what() if callable(what) else what))


def slot_status(client, slot):
    """The state of one slot, asked on `client` (its selection becomes that slot)."""
    r = client.command("#SELMODULE %d" % slot)
    check(r == ["#ACK", "#SELECTED:%d" % slot], "SELMODULE %d: %r" % (slot, r))
    r = client.command("#STATUS")
    check(len(r) == 2 and r[1].startswith("#STATUS:"), "STATUS: %r" % r)
    return r[1][len("#STATUS:"):]


def number(client, path):
    """The decimal number a file of the public area starts with (Cntdown.txt, Serial.txt)."""
    return int(get(client, path).decode().split()[0])


def device_ini_path(daemon, slot):
    return os.path.join(daemon.sim_dir, "slot%d" % slot, "device.ini")


def device_value(daemon, slot, key):
    """A value of the slot's device.ini ("" when the key is missing)."""
    with open(device_ini_path(daemon, slot)) as f:
        m = re.search(r"^%s\s*=\s*(.*?)\s*$" % re.escape(key), f.read(), re.M)
    return m.group(1) if m else ""


def set_knob(daemon, slot, knob, value):
    """Sets a fault knob of the slot's simulated device (between cycles, as docs/targets.md
    says)."""
    path = device_ini_path(daemon, slot)
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"^%s = .*$" % knob, "%s = %s" % (knob, value), text, flags=re.M)
    check(n == 1, "device.ini of slot %d has a '%s' knob" % (slot, knob))
    with open(path, "w") as f:
        f.write(text)


def intel_hex(data, base):
    """Intel HEX text (CR LF lines) of `data` at `base`: an extended linear address record, data
    records of 16 bytes, the end record."""
    def record(kind, address, payload):
        body = bytes([len(payload), (address >> 8) & 0xFF, address & 0xFF, kind]) + payload
        return ":%s%02X" % (body.hex().upper(), (-sum(body)) & 0xFF)

    out = [record(4, 0, bytes([(base >> 24) & 0xFF, (base >> 16) & 0xFF]))]
    for off in range(0, len(data), 16):
        out.append(record(0, (base + off) & 0xFFFF, data[off:off + 16]))
    out.append(record(1, 0, b""))
    return "\r\n".join(out) + "\r\n"


def pty_pair(ours, theirs):
    """A socat pseudo-terminal pair behind the link names `ours` and `theirs` (stale links of an
    earlier pair removed first, so that a new pair takes the names over, as a serial adapter
    plugged in again does): returns (the socat process, our side opened raw and non-blocking).
    The caller stops the process."""
    for name in (ours, theirs):
        if os.path.lexists(name):
            os.unlink(name)
    proc = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours,
                             "pty,raw,echo=0,link=" + theirs], stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ours) and os.path.exists(theirs):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        fail("socat made no pty pair")
    fd = os.open(ours, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    os.set_blocking(fd, False)
    return proc, fd
