"""The serial channel, for real over a pseudo-terminal pair made by socat: 9600 8N1 at start,
the protocol as on TCP, #BAUDRATE switching the line (also spelt #BAUDRATE<n>, as the reference
does), and #BAUDRATE refused on TCP."""
import os
import subprocess
import sys
import termios
import time
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, fail  # noqa: E402

workdir = __import__("tempfile").mkdtemp(prefix="mf-serial-")
ours, theirs = os.path.join(workdir, "host"), os.path.join(workdir, "programmer")
socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + ours, "pty,raw,echo=0,link=" + theirs],
                         stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists(ours) and os.path.exists(theirs):
            break
        time.sleep(0.05)
    else:
        fail("socat made no pty pair")

    fd = os.open(ours, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)

    def set_speed(speed):
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attrs)

    set_speed(termios.B9600)
    buffer = b""

    def line(timeout=10):
        global buffer
        deadline = time.time() + timeout
        while b"\r" not in buffer:
            if time.time() > deadline:
                fail("no reply on the serial line; got %r" % buffer)
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = b""
            if chunk:
                buffer += chunk
            else:
                time.sleep(0.01)
        text, buffer = buffer.split(b"\r", 1)
        return text.decode()

    os.set_blocking(fd, False)
    with Daemon(extra=["--serial", theirs]) as d:
        os.write(fd, b"#STATUS\r")
        check(line() == "#ACK" and line() == "#STATUS:READY", "STATUS over serial")
        os.write(fd, b"#NOPE\r")
        check(line() == "#NACK", "NACK over serial")
        # Bad input on the serial line too: binary garbage, an overlong line, a lone CR LF.
        os.write(fd, b"\x00\x01\x02garbage\xff\r")
        check(line() == "#NACK", "garbage line over serial")
        os.write(fd, b"#" + b"B" * 3000 + b"\r")
        check(line() == "#NACK:ERR210:Line too long", "overlong line over serial")
        os.write(fd, b"\r\n#STATUS\r")
        check(line() == "#ACK" and line() == "#STATUS:READY", "still serving")
        os.write(fd, b"#INFO\r")
        check(line() == "#ACK" and line().startswith("#INFO:VERSION="), "INFO over serial")
        while not line().startswith("#OK"):
            pass
        os.write(fd, b"#BAUDRATE 12345\r")
        check(line().startswith("#NACK:ERR210:"), "unknown baud rate")
        def switch(command, speed, what):
            """Sends a #BAUDRATE command, then talks at the new speed."""
            os.write(fd, command + b"\r")
            check(line() == "#ACK" and line() == "#OK", what + " accepted")
            time.sleep(0.2)
            set_speed(speed)
            os.write(fd, b"#STATUS\r")
            check(line() == "#ACK" and line() == "#STATUS:READY", "STATUS after " + what)

        switch(b"#BAUDRATE 115200", termios.B115200, "#BAUDRATE 115200")
        # The reference's spelling without a blank switches back.
        switch(b"#BAUDRATE9600", termios.B9600, "#BAUDRATE9600")
        # Not on TCP.
        c = d.tcp()
        check(c.command("#BAUDRATE 115200") == ["#ACK", "#ERR215:#BAUDRATE applies to the "
                                                "serial line only"], "BAUDRATE on TCP")
        check(d.stop() == 0, "clean exit")

    def line_attrs():
        """The programmer's side of the line as the daemon set it up (a pty keeps the settings
        it is given)."""
        other = os.open(theirs, os.O_RDWR | os.O_NOCTTY)
        try:
            return termios.tcgetattr(other)
        finally:
            os.close(other)

    def line_flags():
        attrs = line_attrs()
        return attrs[2] & (termios.PARENB | termios.PARODD | termios.CSIZE | termios.CSTOPB), \
            attrs[4]

    # The reference's legacy framing, 115200 8O1, and 8E1; #BAUDRATE keeps the parity. A
    # pseudo-terminal keeps PARODD but always clears PARENB (Linux' pty driver), which the
    # daemon notices and says.
    for frame, flags in (("8O1", termios.PARODD), ("8e1", 0)):
        with Daemon(extra=["--serial", theirs + ":115200:" + frame]) as d:
            check(line_flags() == (termios.CS8 | flags, termios.B115200),
                  "%s: the line is set up so: %r" % (frame, line_flags()))
            # A byte with a parity error is read as a NUL (INPCK alone: not dropped, not marked).
            iflag = line_attrs()[0] & (termios.INPCK | termios.IGNPAR | termios.PARMRK)
            check(iflag == termios.INPCK, "%s: parity checked on input: %#x" % (frame, iflag))
            check(("at 115200 baud, 8%s1" % frame[1].upper()) in d.log_text() and
                  "the device takes no parity (a pseudo-terminal?)" in d.log_text(), "logged")
            set_speed(termios.B115200)
            switch(b"#BAUDRATE 9600", termios.B9600, "#BAUDRATE 9600 with " + frame)
            check(line_flags() == (termios.CS8 | flags, termios.B9600),
                  "%s kept at the new speed: %r" % (frame, line_flags()))
            check(d.stop() == 0, "clean exit")
    for bad in (":8O1", ":115200:8O2", ":115200:7E1"):
        d = Daemon(extra=["--serial", theirs + bad])
        p = subprocess.run(d.args, capture_output=True, text=True, timeout=30)
        check(p.returncode != 0 and "--serial " + theirs + bad in p.stderr,
              "%s refused: %r" % (bad, p.stderr))
    os.close(fd)
finally:
    socat.kill()
    socat.wait()
    __import__("shutil").rmtree(workdir, ignore_errors=True)
print("ok")
