"""The secure area with a TPM 2.0 as the trust anchor (mintflashd --tpm, on swtpm): the first
start provisions the TPM, a `_SECURE` move installs the setup, devices are programmed from it with
the default reservation (K = 100), the counts survive a restart of the daemon and of the TPM,
a restored older storage image from an earlier start is charged the reservation the later start
took (nothing comes back), K = 1 regains nothing and never a serial number, no plaintext is in the storage image, and a missing TPM or a wrong state file stops the
programmer with a clear error instead of running."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from mfdaemon import Daemon, Swtpm, check, get, info, put, sim_flash  # noqa: E402

if not Swtpm.available():
    print("skip: swtpm is not installed (Debian package swtpm)")
    sys.exit(77)

MARK = b"TPM-ANCHORED-FIRMWARE-MARKER-77c1"


def program(client, n):
    for _ in range(n):
        r = client.command("#AUTO")
        check(r[-1].startswith("#OK"), "cycle: %r" % r)


work = tempfile.mkdtemp(prefix="mf-tpm-e2e-")
try:
    with Swtpm() as tpm:
        d = Daemon(workdir=work, keep=True, extra=["--tpm", tpm.tcti])
        with d:
            t, u = d.tcp(), d.unix()
            check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
            check(os.path.exists(d.storage + ".keystore.tpm"), "the TPM's state file was made")
            check(not os.path.exists(d.storage + ".keystore"), "no keystore file with --tpm")
            fw = bytearray(os.urandom(30000))
            fw[500:500 + len(MARK)] = MARK
            fw = bytes(fw)
            put(u, "_SECURE/Projects/01_W/01_App/app.bin", fw)
            put(u, "_SECURE/Projects/01_W/01_App/job.ini",
                "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
                "[serial]\naddress = 0x08040000\n")
            put(u, "_SECURE/Projects/01_W/Cntdown.txt", "300\n")
            put(u, "_SECURE/Projects/01_W/Serial.txt", "1\n")
            check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
            i = info(t)
            check(i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "300", "installed: %r" % i)
            program(t, 3)
            check(sim_flash(d, 1)[:len(fw)] == fw, "the device holds the firmware")
            check(info(t)["CYCLES_LEFT"] == "297", "297 left")
            check(d.stop() == 0, "stop")
            with open(d.storage, "rb") as f:
                check(MARK not in f.read(), "no plaintext in the storage image")
            shutil.copy(d.storage, os.path.join(work, "copy.img"))  # the factory's copy

            # Restart the TPM (its power cycle) and the daemon: the counts are where they were.
            tpm.stop()
            tpm.start()
            d.start()
            t = d.tcp()
            i = info(t)
            check(i["AREA"] == "SECURE" and i["CYCLES_LEFT"] == "297", "after restarts: %r" % i)
            program(t, 5)
            i = info(t)
            check(i["CYCLES_LEFT"] == "292" and i["NEXT_SERIAL"] == "9", "after 8: %r" % i)
            check(d.stop() == 0, "stop")

            # Roll the storage back to the copy taken after 3 devices. Each clean stop took one
            # counter step beyond the run's reservation (docs/security.md), so the counter stands
            # for 4 reservations of 100 and the copy accounts for 2 (its 3 devices, the rest of
            # the first run's reservation and the stop's step): it is charged the other 200,
            # more than the 5 devices made since: nothing comes back.
            shutil.copy(os.path.join(work, "copy.img"), d.storage)
            d.start()
            t = d.tcp()
            i = info(t)
            check(i["AREA"] == "SECURE", "the old copy still opens: %r" % i)
            check(i["CYCLES_LEFT"] == "97" and int(i["NEXT_SERIAL"]) >= 9,
                  "charged what the counter stands for: %r" % i)
            check(d.stop() == 0, "stop")

            # The TPM gone: the programmer does not start, and says why.
            tpm.stop()
            gone = subprocess.run(d.args, capture_output=True, text=True, timeout=60)
            check(gone.returncode == 1, "exit status without the TPM: %d" % gone.returncode)
            check("--tpm %s: TPM: cannot reach a TPM" % tpm.tcti in gone.stderr,
                  "it says the TPM is missing:\n" + gone.stderr)
            tpm.start()

            # The state file with another TPM (a fresh swtpm): refused, nothing defined anew.
            with Swtpm() as other:
                args = [other.tcti if a == tpm.tcti else a for a in d.args]
                foreign = subprocess.run(args, capture_output=True, text=True, timeout=60)
                check(foreign.returncode == 1, "exit status with another TPM: %d" % foreign.returncode)
                check("--tpm %s: TPM: NV index" % other.tcti in foreign.stderr
                      and "never re-created silently" in foreign.stderr,
                      "it says why:\n" + foreign.stderr)
            # K = 1 on the TPM (Reservation = 1 in FLASHER.INI): a restored image gives not one
            # device more and repeats no serial number.
            # (A TPM serves one programmer: a second one gets its own swtpm.)
            with Swtpm() as tpm2:
                d3 = Daemon(workdir=os.path.join(work, "k1"), keep=True,
                            extra=["--tpm", tpm2.tcti])
                os.makedirs(d3.dir)
                with d3:
                    t, u = d3.tcp(), d3.unix()
                    check(u.command("#SECUREAREA CREATE", timeout=60) == ["#ACK", "#OK"], "create")
                    put(u, "_SECURE/FLASHER.INI", "[CONFIG]\nReservation = 1\n")
                    put(u, "_SECURE/Projects/01_W/01_App/app.bin", fw)
                    put(u, "_SECURE/Projects/01_W/01_App/job.ini",
                        "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n"
                        "[serial]\naddress = 0x08040000\n")
                    put(u, "_SECURE/Projects/01_W/Cntdown.txt", "10\n")
                    put(u, "_SECURE/Projects/01_W/Serial.txt", "1\n")
                    check(t.command("#REBOOT", timeout=120) == ["#ACK", "#OK"], "reboot")
                    program(t, 2)
                    check(d3.stop() == 0, "stop")
                    shutil.copy(d3.storage, os.path.join(work, "k1copy.img"))
                    d3.start()
                    t = d3.tcp()
                    program(t, 3)
                    check(info(t)["CYCLES_LEFT"] == "5", "10 - 5")
                    check(d3.stop() == 0, "stop")
                    shutil.copy(os.path.join(work, "k1copy.img"), d3.storage)
                    d3.start()
                    t = d3.tcp()
                    i = info(t)
                    check(i["CYCLES_LEFT"] == "5" and int(i["NEXT_SERIAL"]) >= 6,
                          "K = 1 on the TPM: no device and no serial number regained: %r" % i)
                    check(d3.stop() == 0, "stop")
            print("ok")
finally:
    shutil.rmtree(work, ignore_errors=True)
