#!/usr/bin/env bash
# Cycles that take time, on sim devices slowed down to data-sheet speed: Ctrl-C (SIGINT) in the
# commander during a cycle sends #CANCEL (the cycle ends with #ERR007, the commander fails and
# says so), and a commander killed mid-cycle leaves the cycle running to its end. Each step
# waits for the state it needs (polled), never for a fixed time. Skipped (77) without the daemon.
set -euo pipefail

daemon="$MF_BUILD/mintflashd"
mintflash="$MF_BUILD/mintflash"
if [ ! -x "$daemon" ] || ! "$daemon" --version >/dev/null 2>&1; then
    echo "SKIP: $daemon is not built (or does not answer --version)"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-311.XXXXXX")
daemon_pid=
client_pid=
cleanup() {
    for p in $client_pid $daemon_pid; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    [ -f daemon.log ] && { echo "--- daemon log" >&2; tail -20 daemon.log >&2; }
    exit 1
}

# Slowed down 4 times: erasing 64 KiB takes seconds, and a cancel still stops it at once. Under
# valgrind (scripts/check-valgrind) the commander needs far longer to see a state and to send the
# cancel on a busy machine: 16 times.
speed=4
[ -n "${MF_UNDER_VALGRIND:-}" ] && speed=16
"$daemon" --storage "$work/storage.img" --size 16M --keystore "$work/keystore" \
    --tcp off --socket "$work/d.sock" --nbd 127.0.0.1:0 --sim-dir "$work/sim" --sim-speed "$speed" \
    2>daemon.log &
daemon_pid=$!
url="unix:$work/d.sock"
mf() { "$mintflash" -d "$url" "$@"; }

# wait_state STATE: polls #STATUS until it says STATE (at most 30 s, far above any run).
wait_state() {
    for _ in $(seq 600); do
        [ "$(mf status 2>/dev/null)" = "$1" ] && return 0
        sleep 0.05
    done
    fail "the programmer never said $1 (last: $(mf status 2>&1))"
}
wait_state READY

mkdir -p job/Projects/01_Widget/01_App
perl -e 'srand(3); print map { chr(int(rand(256))) } 1 .. 65536' >job/Projects/01_Widget/01_App/app.bin
printf '[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n' \
    >job/Projects/01_Widget/01_App/job.ini
printf '5\r\n' >job/Projects/01_Widget/Cntdown.txt
mf -c "fwrite -r job /; reboot; select Widget" >/dev/null || fail "set-up"

# ---- Ctrl-C: #CANCEL, the cycle ends with #ERR007, the commander fails ----
# With job control on, a background command keeps SIGINT (a script's background jobs ignore it).
set -m
"$mintflash" -d "$url" auto >auto.out 2>auto.err &
client_pid=$!
set +m
wait_state ERASING
kill -INT "$client_pid"
set +e
wait "$client_pid"
status=$?
set -e
client_pid=
[ "$status" = 1 ] || fail "auto after Ctrl-C exited with $status: $(cat auto.out auto.err)"
printf 'mintflash: auto: cancelled (#ERR007:CANCELED.)\n' >want.txt
diff -u want.txt auto.err || fail "message after Ctrl-C"
grep -q '^ERASING$' auto.out || fail "no status lines before the cancel"
mf result >result.txt
grep -q '^slot 1: ERR007:CANCELED\.$' result.txt || fail "result: $(cat result.txt)"
mf fshow FLASHER.LOG | grep -q 'cancelled' || fail "FLASHER.LOG does not show the cancel"
echo "ok Ctrl-C cancels"

# ---- a commander killed mid-cycle: the cycle goes on ----
before=$(mf fshow Projects/01_Widget/Cntdown.txt | tr -d '\r')
"$mintflash" -d "$url" auto >/dev/null 2>&1 &
client_pid=$!
wait_state PROGRAMMING
{
    kill -KILL "$client_pid"
    wait "$client_pid" || true
} 2>/dev/null
client_pid=
wait_state READY
mf result >result.txt
grep -q '^slot 1: OK (Total' result.txt || fail "the cycle did not finish: $(cat result.txt)"
after=$(mf fshow Projects/01_Widget/Cntdown.txt | tr -d '\r')
[ "$after" = $((before - 1)) ] || fail "count $before -> $after"
echo "ok killed commander"
