"""The ASCII protocol's framing and replies over raw TCP and the UNIX socket: #ACK/#NACK, line
ends, case, garbage, overlong and half lines, file I/O, and that bad input on one client never
disturbs another."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, check, get, put  # noqa: E402

with Daemon() as d:
    c = d.tcp()
    # Idle: raw #STATUS CR answers #STATUS:READY (after the #ACK every known command gets).
    c.send(b"#STATUS\r")
    check(c.line() == "#ACK", "ACK first")
    check(c.line() == "#STATUS:READY", "STATUS READY")

    # LF and CR LF work too; case does not matter; empty lines are ignored.
    c.send(b"\r\n\n#status\n")
    check(c.line() == "#ACK" and c.line() == "#STATUS:READY", "LF and lower case")
    c.send(b"#StAtUs\r\n")
    check(c.line() == "#ACK" and c.line() == "#STATUS:READY", "CR LF and mixed case")

    # Unknown command, a line without '#', noise before '#' (telnet negotiation).
    check(c.command("#NOSUCH") == ["#NACK"], "unknown -> #NACK")
    c.send(b"hello there\r")
    check(c.line() == "#NACK", "line without # -> #NACK")
    c.send(b"\xff\xfb\x01\xff\xfd\x03#STATUS\r")
    check(c.line() == "#ACK" and c.line() == "#STATUS:READY", "noise before # is dropped")

    # Binary garbage inside a command, and an overlong line.
    c.send(b"#STA\x00\x01TUS\r")
    check(c.line() == "#NACK:ERR210:Invalid character", "bad char")
    c.send(b"#" + b"A" * 5000 + b"\r")
    check(c.line() == "#NACK:ERR210:Line too long", "too long")
    check(c.command("#STATUS")[-1] == "#STATUS:READY", "still serving after bad input")

    # A half line from one client does not block another.
    half = d.tcp()
    half.send(b"#STAT")
    other = d.tcp()
    check(other.command("#STATUS")[-1] == "#STATUS:READY", "other client served")
    half.close()
    # A client that sends garbage and vanishes.
    g = socket.create_connection(("127.0.0.1", d.port))
    g.sendall(os.urandom(3000))
    g.close()
    check(other.command("#STATUS")[-1] == "#STATUS:READY", "served after a garbage client")

    # #INFO.
    info = c.command("#INFO")
    check(info[0] == "#ACK" and info[-1] == "#OK", "INFO framing %r" % info)
    check("#INFO:VERSION=0.1.0" in info and "#INFO:MODE=STANDALONE" in info, "INFO keys %r" % info)

    # File I/O: the reference's example and our own commands.
    check(c.command("#CRC") == ["#NACK"], "the legacy #CRC is not taken")
    check(c.command("#FREAD 0,4") == ["#ACK", "#ERR255:No file opened"], "FREAD without FOPEN")
    check(c.command("#FSIZE") == ["#ACK", "#ERR255:No file opened"], "FSIZE without FOPEN")
    check(c.command("#FWRITE 0,1:41") == ["#ACK", "#ERR255:No file opened"],
          "FWRITE without FOPEN")
    check(c.command("#FOPEN test.txt") == ["#ACK", "#OK"], "FOPEN creates")
    check(c.command("#FWRITE 0,7:48656C6C6F2021") == ["#ACK", "#OK"], "FWRITE Hello !")
    check(c.command("#FSIZE") == ["#ACK", "#OK:7"], "FSIZE")
    check(c.command("#FREAD 0,4") == ["#ACK", "#OK:04:48656c6c"], "FREAD")
    check(c.command("#FREAD 5,10") == ["#ACK", "#OK:02:2021"], "short FREAD at the end")
    check(c.command("#FREAD 7,10") == ["#ACK", "#OK:00:"], "FREAD past the end")
    check(c.command("#FWRITE 0,3:4142") [0] == "#NACK:ERR210:Expected <Offset>,<NumBytes>:<Data> "
          "in hex, at most 200 bytes", "FWRITE with too little data")
    check(c.command("#FWRITE 0,201:" + "00" * 0x201)[0].startswith("#NACK:ERR210"),
          "FWRITE over 0x200 bytes")
    check(c.command("#FOPEN test.txt") == ["#ACK", "#OK"], "FOPEN never truncates")
    check(c.command("#FSIZE") == ["#ACK", "#OK:7"], "size kept")
    # An open that fails closes the file open before it.
    check(c.command("#FOPEN bad*name")[-1].startswith("#ERR010:File open failed"), "bad name")
    check(c.command("#FREAD 0,4") == ["#ACK", "#ERR255:No file opened"],
          "a failed FOPEN closed the file")
    check(c.command("#FOPEN test.txt") == ["#ACK", "#OK"], "FOPEN again")
    check(c.command("#FCLOSE") == ["#ACK", "#OK"], "FCLOSE")
    check(c.command("#MKDIR sub") == ["#ACK", "#OK"], "MKDIR")
    check(c.command("#MKDIR sub")[-1].startswith("#ERR012:"), "MKDIR twice")
    big = os.urandom(3000)
    put(c, "sub/big.bin", big)
    check(c.command("#FOPEN sub/big.bin") == ["#ACK", "#OK"], "FOPEN big.bin")
    check(c.command("#FREAD 10,400") == ["#ACK", "#OK:200:" + big[0x10:0x210].hex()],
          "FREAD of more than 0x200 bytes reads 0x200")
    check(c.command("#FCLOSE") == ["#ACK", "#OK"], "FCLOSE big.bin")
    listing = c.command("#FLIST sub")
    check(listing == ["#ACK", "#FLIST:F:bb8:big.bin", "#OK"], "FLIST %r" % listing)
    check(c.command("#RMDIR sub")[-1].startswith("#ERR013:Failed to remove folder"), "RMDIR full")
    check(c.command("#FDELETE sub/big.bin") == ["#ACK", "#OK"], "FDELETE")
    check(c.command("#FDELETE sub/big.bin")[-1].startswith("#ERR013:Failed to delete file"),
          "FDELETE missing")
    check(c.command("#RMDIR sub") == ["#ACK", "#OK"], "RMDIR")
    check(c.command("#FOPEN ../../etc/passwd")[-1].startswith("#ERR010:File open failed"),
          "no escape from the public area")
    # Names beyond ASCII: UTF-8, or the reference's code page 437 bytes (not UTF-8), one file.
    check(c.command("#FOPEN café.txt") == ["#ACK", "#OK"], "FOPEN in UTF-8")
    check(c.command("#FWRITE 0,3:414243") == ["#ACK", "#OK"], "FWRITE café.txt")
    c.send(b"#FOPEN caf\x82.txt\r")
    check(c.until_final() == ["#ACK", "#OK"], "FOPEN in CP437")
    check(c.command("#FSIZE") == ["#ACK", "#OK:3"], "the same file")
    check(c.command("#FCLOSE") == ["#ACK", "#OK"], "FCLOSE café.txt")
    check("#FLIST:F:3:café.txt" in c.command("#FLIST"), "FLIST shows UTF-8")
    c.send(b"#FDELETE CAF\x90.TXT\r")
    check(c.until_final() == ["#ACK", "#OK"], "FDELETE in CP437 upper case")
    check(not any("caf" in x for x in c.command("#FLIST")), "deleted")
    c.send(b"#STA\x7fTUS\r")
    check(c.line() == "#NACK:ERR210:Invalid character", "DEL is no character")
    c.send(b"#FOPEN " + b"\x82" * 2000 + b"\r")
    check(c.line() == "#NACK:ERR210:Line too long once its code page 437 bytes are UTF-8",
          "too long once in UTF-8")
    data = os.urandom(1500)
    put(c, "Data.BIN", data)
    check(get(c, "data.bin") == data, "case-insensitive names, bytes round trip")

    # The UNIX socket speaks the same protocol.
    u = d.unix()
    check(u.command("#STATUS")[-1] == "#STATUS:READY", "UNIX socket")

    # FLASHER.LOG is readable by mtools while the daemon runs.
    out = subprocess.run(["mtype", "-i", d.storage + "@@1M", "::FLASHER.LOG"],
                         capture_output=True, text=True)
    check(out.returncode == 0 and "programmer started" in out.stdout,
          "mtype reads FLASHER.LOG: %r %r" % (out.stdout, out.stderr))
    out = subprocess.run(["mtype", "-i", d.storage + "@@1M", "::test.txt"],
                         capture_output=True, text=True)
    check(out.stdout == "Hello !", "mtype reads what #FWRITE wrote: %r" % out.stdout)

    check(d.stop() == 0, "exit status 0 on SIGTERM")
print("ok")
