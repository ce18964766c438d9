#!/usr/bin/env bash
# The commander against the real daemon (build/mintflashd on sim targets), over TCP and the UNIX
# socket: a job uploaded with `fwrite -r`, files read back, cycles until the count-down refuses,
# FLASHER.LOG, JSON, the local-only commands, reboots into and out of file access mode, and
# several slots. Skipped (status 77) while the daemon is not built.
set -Eeuo pipefail

daemon="$MF_BUILD/mintflashd"
mintflash="$MF_BUILD/mintflash"
if [ ! -x "$daemon" ] || ! "$daemon" --version >/dev/null 2>&1; then
    echo "SKIP: $daemon is not built (or does not answer --version)"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-310.XXXXXX")
daemon_pid=
stop_daemon() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=
    fi
}
trap 'stop_daemon; rm -rf "$work"' EXIT
cd "$work"

# Any command that fails outside `run` and `fail` (set -e) says where, then the test ends.
trap 'status=$?; [[ $- == *e* ]] && echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited with $status" >&2' ERR

fail() {
    echo "FAIL: $*" >&2
    [ -f daemon.log ] && { echo "--- daemon log" >&2; tail -20 daemon.log >&2; }
    exit 1
}

# start_daemon [OPTIONS...]: a daemon on a fresh port, the socket d.sock, storage in $work.
start_daemon() {
    stop_daemon
    rm -f d.sock
    "$daemon" --storage "$work/storage.img" --size 16M --keystore "$work/keystore" \
        --tcp 127.0.0.1:0 --socket "$work/d.sock" --nbd 127.0.0.1:0 --sim-dir "$work/sim" \
        --sim-speed 0 "$@" 2>daemon.log &
    daemon_pid=$!
    for _ in $(seq 400); do
        grep -q 'listening on unix' daemon.log && break
        kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
        sleep 0.05
    done
    port=$(grep -o 'listening on tcp 127.0.0.1:[0-9]*' daemon.log | head -1 | cut -d: -f2)
    [ -n "$port" ] || fail "the daemon did not say its port"
    tcp="tcp:127.0.0.1:$port"
    unix="unix:$work/d.sock"
    # The programmer takes commands once it has started.
    for _ in $(seq 400); do
        [ "$("$mintflash" -d "$unix" status 2>/dev/null | sort -u)" = "$ready" ] && return 0
        sleep 0.05
    done
    fail "the daemon did not get ready"
}

# run STATUS URL ARGS...: the commander on URL; out.txt and err.txt.
run() {
    local want=$1 url=$2
    shift 2
    set +e
    "$mintflash" -d "$url" "$@" >out.txt 2>err.txt </dev/null
    local status=$?
    set -e
    if [ "$status" != "$want" ]; then
        cat out.txt err.txt >&2
        fail "'$*' on $url exited with $status, expected $want"
    fi
}

expect_file() {
    printf '%s\n' "$2" >want.txt
    diff -u want.txt "$1" || fail "unexpected $1"
}

ready=READY
start_daemon

# ---- idle programmer, both channels ----
run 0 "$tcp" status
expect_file out.txt READY
run 0 "$unix" status
expect_file out.txt READY
run 0 "$tcp" raw '#STATUS'
expect_file out.txt "#ACK
#STATUS:READY"
run 0 "$tcp" --json info
grep -q '"mode":"STANDALONE"' out.txt || fail "info --json: $(cat out.txt)"
grep -q '"slots":"1"' out.txt || fail "info --json slots"
echo "ok idle"

# ---- a job through fwrite -r ----
mkdir -p job/Projects/01_Widget/01_App
perl -e 'srand(7); print map { chr(int(rand(256))) } 1 .. 20000' >job/Projects/01_Widget/01_App/app.bin
printf '[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n[serial]\naddress = 0x08040000\nlength = 4\n' \
    >job/Projects/01_Widget/01_App/job.ini
printf '2\r\n' >job/Projects/01_Widget/Cntdown.txt
printf '100\r\n' >job/Projects/01_Widget/Serial.txt
run 0 "$unix" fwrite -r job /
run 0 "$tcp" flist Projects/01_Widget
expect_file out.txt "     <DIR>  01_App
         3  Cntdown.txt
         5  Serial.txt"
run 0 "$tcp" --json flist Projects/01_Widget/01_App
grep -q '{"name":"app.bin","type":"file","size":20000}' out.txt || fail "flist --json: $(cat out.txt)"
run 0 "$tcp" fsize Projects/01_Widget/01_App/app.bin
expect_file out.txt 20000
run 0 "$tcp" fread Projects/01_Widget/01_App/app.bin app.copy
cmp app.copy job/Projects/01_Widget/01_App/app.bin || fail "fread differs"
run 0 "$tcp" fshow projects/01_widget/01_app/JOB.INI
cmp out.txt job/Projects/01_Widget/01_App/job.ini || fail "fshow (names in any case)"
# Replacing a file with a shorter one leaves no tail of the old one.
printf '1\r\n' >one.txt
printf '12345\r\n' >long.txt
run 0 "$tcp" fwrite long.txt Projects/01_Widget/Cntdown.txt
run 0 "$tcp" fwrite one.txt Projects/01_Widget/Cntdown.txt
run 0 "$tcp" fshow Projects/01_Widget/Cntdown.txt
cmp out.txt one.txt || fail "shorter file over a longer one"
run 0 "$tcp" fwrite job/Projects/01_Widget/Cntdown.txt Projects/01_Widget/
# Errors come back with the daemon's numbers and texts.
run 1 "$tcp" fread nothere.txt
expect_file err.txt "mintflash: fread: nothere.txt: no such file on the programmer"
run 1 "$tcp" rmdir Projects
grep -q '^mintflash: rmdir: #ERR013:' err.txt || fail "rmdir of a full folder: $(cat err.txt)"
run 1 "$tcp" fdelete nothere.txt
grep -q '^mintflash: fdelete: #ERR013:' err.txt || fail "fdelete: $(cat err.txt)"
run 0 "$tcp" -c "mkdir tmp; fwrite one.txt tmp/one.txt; fdelete tmp/one.txt; rmdir tmp"
echo "ok files"

# ---- cycles until the count-down refuses ----
run 0 "$unix" -c "reboot; select Widget"
run 0 "$tcp" auto
grep -q '^PROGRAMMING$' out.txt || fail "no status lines: $(cat out.txt)"
tail -1 out.txt | grep -q '^OK (Total [0-9.]*s, Erase [0-9.]*s, Prog [0-9.]*s, Verify [0-9.]*s)$' ||
    fail "auto result: $(cat out.txt)"
run 0 "$tcp" --json result
grep -q '^{"results":\[{"slot":1,"result":"ok","code":null,"text":"OK (Total ' out.txt ||
    fail "result --json: $(cat out.txt)"
run 0 "$unix" auto noinfo
expect_file out.txt "$(tail -1 out.txt)"
grep -q '^OK (Total' out.txt || fail "auto noinfo: $(cat out.txt)"
run 1 "$tcp" auto
grep -q '^mintflash: auto: #ERR201:' err.txt || fail "exhausted count: $(cat err.txt)"
run 0 "$tcp" result
grep -q '^slot 1: ERR201:' out.txt || fail "result after the refusal: $(cat out.txt)"
run 0 "$tcp" fshow Projects/01_Widget/Cntdown.txt
grep -q '^0' out.txt || fail "Cntdown.txt: $(cat out.txt)"
run 0 "$tcp" fshow FLASHER.LOG
grep -q 'serial 100 OK' out.txt || fail "FLASHER.LOG has no serial 100"
grep -q 'serial 101 OK' out.txt || fail "FLASHER.LOG has no serial 101"
# A script stops at the refusal and says where.
printf '# production run\nfwrite one.txt Projects/01_Widget/Cntdown.txt\nauto\nauto\nflist\n' >run.txt
run 1 "$tcp" -f run.txt
grep -q '^mintflash: run.txt:4: auto: #ERR201:' err.txt || fail "script: $(cat err.txt)"
grep -q '<DIR>' out.txt && fail "the script went on after the failure"
echo "ok cycles"

# ---- the local connection only ----
run 1 "$tcp" securearea create
expect_file err.txt "mintflash: securearea create: #NACK:ERR209:Only allowed on the local connection"
run 1 "$tcp" reboot file-access
expect_file err.txt "mintflash: reboot: #NACK:ERR209:Only allowed on the local connection"
run 0 "$unix" -c "reboot file-access; status"
expect_file out.txt FILEACCESS
run 1 "$tcp" flist
expect_file err.txt "mintflash: flist: #NACK:ERR208:Not available in file access mode"
run 1 "$tcp" auto
run 0 "$tcp" -c "reboot; status"
expect_file out.txt READY
echo "ok local connection"

# ---- several slots ----
ready=$(printf 'slot 1: READY\nslot 2: READY')
start_daemon --slots 2
run 0 "$tcp" status
expect_file out.txt "slot 1: READY
slot 2: READY"
run 0 "$tcp" -c "select Widget; fwrite job/Projects/01_Widget/Cntdown.txt Projects/01_Widget/; auto noinfo"
grep -q '^slot 1: OK (Total' out.txt || fail "slot 1: $(cat out.txt)"
grep -q '^slot 2: OK (Total' out.txt || fail "slot 2: $(cat out.txt)"
run 0 "$tcp" --json -c "selmodule 2; status; result"
expect_file out.txt "selected slots: 2
{\"slots\":[{\"slot\":2,\"state\":\"READY\"}]}
$(tail -1 out.txt)"
grep -q '^{"results":\[{"slot":2,"result":"ok"' out.txt || fail "result of slot 2: $(cat out.txt)"
run 1 "$tcp" auto
grep -q '^mintflash: auto: .*#ERR201:' err.txt || fail "both slots refused: $(cat err.txt)"
echo "ok slots"
