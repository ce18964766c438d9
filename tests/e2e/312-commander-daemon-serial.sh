#!/usr/bin/env bash
# The commander on a serial line to the real daemon: a pseudo-terminal pair made by socat stands
# for the cable (mintflashd --serial on one end, mintflash -d serial:... on the other). Commands
# and files go through, #BAUDRATE changes both ends, and the local-only commands are refused.
# Skipped (77) without the daemon or socat.
set -euo pipefail

daemon="$MF_BUILD/mintflashd"
mintflash="$MF_BUILD/mintflash"
if [ ! -x "$daemon" ] || ! "$daemon" --version >/dev/null 2>&1; then
    echo "SKIP: $daemon is not built (or does not answer --version)"
    exit 77
fi
if ! command -v socat >/dev/null; then
    echo "SKIP: socat is not installed (Debian package socat)"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-312.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do
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

socat pty,raw,echo=0,link="$work/programmer" pty,raw,echo=0,link="$work/host" 2>socat.log &
pids+=($!)
for _ in $(seq 200); do
    [ -e "$work/programmer" ] && [ -e "$work/host" ] && break
    sleep 0.05
done
[ -e "$work/host" ] || fail "socat made no pty pair: $(cat socat.log)"

"$daemon" --storage "$work/storage.img" --size 16M --keystore "$work/keystore" --tcp off \
    --socket "$work/d.sock" --serial "$work/programmer" --nbd 127.0.0.1:0 --sim-dir "$work/sim" \
    --sim-speed 0 2>daemon.log &
pids+=($!)
for _ in $(seq 400); do
    [ "$("$mintflash" -d "unix:$work/d.sock" status 2>/dev/null)" = READY ] && break
    sleep 0.05
done

serial="serial:$work/host"
run() { # run STATUS ARGS...: the commander on the serial line, 10 s without an answer fails
    local want=$1
    shift
    set +e
    "$mintflash" -t 10 -d "$serial" "$@" >out.txt 2>err.txt </dev/null
    local status=$?
    set -e
    [ "$status" = "$want" ] || fail "'$*' exited with $status, expected $want: $(cat out.txt err.txt)"
}

run 0 status
[ "$(cat out.txt)" = READY ] || fail "status: $(cat out.txt)"
run 0 raw '#STATUS'
printf '#ACK\n#STATUS:READY\n' >want.txt
diff -u want.txt out.txt || fail "raw #STATUS"
perl -e 'srand(5); print map { chr(int(rand(256))) } 1 .. 3000' >data.bin
run 0 -c "mkdir serial; fwrite data.bin serial/data.bin; fread serial/data.bin copy.bin"
cmp data.bin copy.bin || fail "file through the serial line"
run 1 securearea remove
printf 'mintflash: securearea remove: #NACK:ERR209:Only allowed on the local connection\n' >want.txt
diff -u want.txt err.txt || fail "securearea on the serial line"
run 0 -c "baudrate 115200; status; fsize serial/data.bin"
printf 'READY\n3000\n' >want.txt
diff -u want.txt out.txt || fail "after #BAUDRATE"
echo "ok serial"
