"""mintflashd with no arguments uses its documented defaults (docs/daemon.md): the storage image
(128 MiB), the keystore beside it and the sim folder under $XDG_DATA_HOME/mintflash (else
~/.local/share/mintflash), the socket in $XDG_RUNTIME_DIR/mintflash, where the commander finds it
without -d, TCP on 127.0.0.1:2323, one sim slot. A config file sets the same options (later
options win). The fixed ports need a private network: the test runs itself in a new user and
network namespace (unshare -rn), or skips when that is not possible and 2323 is taken."""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import MINTFLASH, MINTFLASHD, Client, check, fail, simple_project  # noqa: E402
from mfprobe import poll  # noqa: E402

INSIDE = "MF_TEST_IN_NETNS"


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


if not os.environ.get(INSIDE):
    if shutil.which("unshare") and shutil.which("ip") and subprocess.run(
            ["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        env = dict(os.environ, **{INSIDE: "1"})
        os.execvpe("unshare", ["unshare", "-rn", sys.executable, os.path.abspath(__file__)], env)
    if not (port_free(2323) and port_free(10809)):
        print("skipped: no network namespace (unshare -rn) and port 2323 or 10809 is taken")
        sys.exit(77)
else:
    r = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    check(r.returncode == 0, "loopback up in the namespace: " + r.stderr)

top = tempfile.mkdtemp(prefix="mf-defaults-")
running = []


def start(env, args=()):
    log = open(os.path.join(top, "daemon-%d.log" % len(running)), "w+b")
    proc = subprocess.Popen([MINTFLASHD] + list(args), env=env, stdout=log, stderr=log)
    running.append(proc)
    return proc, log


def log_text(log):
    log.seek(0)
    return log.read().decode(errors="replace")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(30) == 0, "exit status 0 on SIGTERM")


def commander(env, *args):
    return subprocess.run([MINTFLASH] + list(args), env=env, capture_output=True, text=True)


def wait_ready(env, proc, log, device=(), want="READY"):
    """Polls the commander's `status` (default socket, or -d) until every slot is in `want`."""
    def ready():
        if proc.poll() is not None:
            fail("mintflashd exited with %s:\n%s" % (proc.returncode, log_text(log)))
        last[:] = [commander(env, *device, "-c", "status")]
        lines = last[0].stdout.splitlines()
        return last[0].returncode == 0 and lines and all(x.endswith(want) for x in lines)
    last = []
    poll(ready, lambda: "%s (the commander said %r)" % (want, last), timeout=60, step=0.05)


def tcp(port):
    return Client(socket.create_connection(("127.0.0.1", port)))


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_DATA_HOME", "XDG_RUNTIME_DIR", "MINTFLASH_DEVICE")}
    env.update(extra)
    return env


try:
    home, data, runtime = (os.path.join(top, x) for x in ("home", "data", "run"))
    for path in (home, runtime):
        os.makedirs(path, mode=0o700)

    # ---- no arguments, XDG_DATA_HOME and XDG_RUNTIME_DIR set ----
    env = base_env(HOME=home, XDG_DATA_HOME=data, XDG_RUNTIME_DIR=runtime)
    proc, log = start(env)
    wait_ready(env, proc, log)
    where = os.path.join(data, "mintflash")
    check(os.path.getsize(os.path.join(where, "storage.img")) == 128 << 20, "128 MiB image")
    check(os.path.isfile(os.path.join(where, "storage.img.keystore")), "keystore beside it")
    sock = os.path.join(runtime, "mintflash", "mintflashd.sock")
    check(stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600,
          "socket %s, mode 0600" % sock)
    check(stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700, "its folder 0700")
    check("listening on tcp 127.0.0.1:2323" in log_text(log), "TCP 127.0.0.1:2323")
    r = commander(env, "-d", "tcp:127.0.0.1:2323", "-c", "status")
    check(r.returncode == 0 and r.stdout.strip() == "READY", "commander over TCP: %r" % (r,))
    c = tcp(2323)
    check(c.command("#STATUS") == ["#ACK", "#STATUS:READY"], "raw #STATUS on 2323")
    check("#INFO:SLOTS=1" in c.command("#INFO"), "one slot")
    fw = simple_project(c, count=3, serial=1)
    check(c.command("#AUTO")[-1].startswith("#OK (Total "), "a cycle on the default sim slot")
    with open(os.path.join(where, "sim", "slot1", "flash.bin"), "rb") as f:
        check(f.read(len(fw)) == fw, "the sim device is under $XDG_DATA_HOME/mintflash/sim")
    c.close()
    stop(proc)
    check(not os.path.exists(sock), "socket removed at exit")

    # ---- no XDG_DATA_HOME: ~/.local/share/mintflash ----
    env = base_env(HOME=home, XDG_RUNTIME_DIR=runtime)
    proc, log = start(env)
    wait_ready(env, proc, log)
    check(os.path.isfile(os.path.join(home, ".local/share/mintflash/storage.img")),
          "storage under ~/.local/share/mintflash")
    stop(proc)

    # ---- a config file; options after it win ----
    conf_dir = os.path.join(top, "conf")
    os.makedirs(conf_dir)
    conf = os.path.join(top, "mintflashd.conf")
    with open(conf, "w") as f:
        f.write("; mintflashd settings (docs/daemon.md)\n"
                "# comments start with ; or #\n"
                "[mintflashd]\n"
                "storage = %s/storage.img\n"
                "size = 16M\n"
                "tcp = 127.0.0.1:0\n"
                "socket = %s/mintflashd.sock\n"
                "Slots = 2\n"
                "sim-dir = %s/sim\n"
                "SIM-SPEED = 0\n"
                "nbd = off\n"
                "verbose = 2\n" % (conf_dir, conf_dir, conf_dir))
    env = base_env(HOME=home, XDG_DATA_HOME=data, XDG_RUNTIME_DIR=runtime)
    device = ("-d", "unix:%s/mintflashd.sock" % conf_dir)
    proc, log = start(env, ["--config", conf])
    wait_ready(env, proc, log, device)
    check(os.path.getsize(os.path.join(conf_dir, "storage.img")) == 16 << 20, "size = 16M")
    port = int(re.search(r"listening on tcp 127\.0\.0\.1:(\d+)", log_text(log)).group(1))
    c = tcp(port)
    check("#INFO:SLOTS=2" in c.command("#INFO"), "Slots = 2 (names in any case)")
    check(re.search(r"mintflashd: session \d+: #INFO", log_text(log)), "verbose = 2 logs commands")
    c.close()
    stop(proc)

    with open(os.path.join(top, "file-access.conf"), "w") as f:
        f.write("file-access = yes\n")
    proc, log = start(env, ["--config", conf, "--config", os.path.join(top, "file-access.conf"),
                            "--slots", "3"])
    wait_ready(env, proc, log, device, want="FILEACCESS")
    port = int(re.search(r"listening on tcp 127\.0\.0\.1:(\d+)", log_text(log)).group(1))
    c = tcp(port)
    check("#INFO:SLOTS=3" in c.command("#INFO"), "--slots after --config wins")
    check("file access mode: no NBD export (--nbd off)" in log_text(log), "nbd = off")
    c.close()
    stop(proc)
finally:
    for p in running:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(top, ignore_errors=True)
print("ok")
