#!/usr/bin/env bash
# `mintflash sim` refuses bad input with a clear message and a non-zero status: usage errors (2),
# and slots that hold no device, a malformed device.ini or a flash.bin of the wrong size (1).
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-sim-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
sims="$tmp/sims"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# run STATUS MESSAGE ARGS...: expects STATUS and, on stderr, the text MESSAGE ("" for none).
run() {
    local want=$1 message=$2
    shift 2
    local got=0
    "$mintflash" "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    if [ "$got" != "$want" ]; then
        cat "$tmp/out" "$tmp/err" >&2
        fail "mintflash $* gave status $got, want $want"
    fi
    if [ -n "$message" ] && ! grep -qF -- "$message" "$tmp/err"; then
        cat "$tmp/err" >&2
        fail "mintflash $*: stderr lacks '$message'"
    fi
}

run 2 "needs a subcommand" sim
run 2 "unknown subcommand 'sim melt'" sim melt
run 2 "'sim show' needs --sim-dir DIR" sim show
run 2 "'sim replace' needs --sim-dir DIR" sim replace --slot 1
run 2 "bad slot '0'" sim show --sim-dir "$sims" --slot 0
run 2 "bad slot '1000'" sim show --sim-dir "$sims" --slot 1000
run 2 "bad slot 'two'" sim show --sim-dir "$sims" --slot two
run 2 "option '--slot' needs a value" sim show --sim-dir "$sims" --slot
run 2 "unknown profile 'SIM-Z80'" sim replace --sim-dir "$sims" --slot 1 --profile SIM-Z80
run 2 "bad UID 'xyz'" sim replace --sim-dir "$sims" --slot 1 --profile SIM-F4-1M --uid xyz
run 2 "unexpected argument '--profile' for 'sim show'" sim show --sim-dir "$sims" --profile SIM-F4-1M
run 2 "unexpected argument 'extra' for 'sim profiles'" sim profiles extra
[ ! -e "$sims" ] || fail "a refused command created $sims"

# Nothing there yet.
run 1 "No such file or directory" sim show --sim-dir "$sims"
run 1 "slot 3 holds no device" sim replace --sim-dir "$sims" --slot 3
[ ! -e "$sims/slot3" ] || fail "replace without a profile created slot3"
mkdir -p "$sims"
run 0 "" sim show --sim-dir "$sims"
grep -qx "no devices in $sims" "$tmp/out" || fail "show of an empty folder"
run 1 "holds no slot folders" sim replace --sim-dir "$sims"

run 0 "" sim replace --sim-dir "$sims" --slot 1 --profile SIM-F4-1M
run 0 "" sim replace --sim-dir "$sims" --slot 2 --profile SIM-N52-512K
run 1 "slot 1: --uid has 2 bytes, a SIM-F4-1M has 12" \
    sim replace --sim-dir "$sims" --slot 1 --uid 0102
run 2 "--uid needs --slot" sim replace --sim-dir "$sims" --uid 0102030405060708

# A malformed device.ini is named with its line; the other slot still shows (status 1 overall).
sed -i 's/^protection = 0$/protection = high/' "$sims/slot1/device.ini"
run 1 "slot1/device.ini:6: protection 'high' is not a level" sim show --sim-dir "$sims"
grep -qx "profile: SIM-N52-512K" "$tmp/out" || fail "slot 2 not shown next to a broken slot 1"
sed -i 's/^protection = high$/protection = 0/' "$sims/slot1/device.ini"
sed -i 's/^flip = off$/flip = here once/' "$sims/slot1/device.ini"
run 1 "fault flip: 'here' is not a number" sim show --sim-dir "$sims" --slot 1
sed -i 's/^flip = here once$/flip = off/' "$sims/slot1/device.ini"
sed -i 's/^profile = SIM-F4-1M$/profile = SIM-Q9/' "$sims/slot1/device.ini"
run 1 "unknown profile 'SIM-Q9'" sim show --sim-dir "$sims" --slot 1
sed -i 's/^profile = SIM-Q9$/profile = SIM-F4-1M/' "$sims/slot1/device.ini"
run 0 "" sim show --sim-dir "$sims" --slot 1

# A flash.bin of the wrong size is named too; replace repairs the slot.
truncate -s 1000 "$sims/slot1/flash.bin"
run 1 "slot1/flash.bin is 1000 bytes, a SIM-F4-1M has 1048576" sim show --sim-dir "$sims" --slot 1
run 0 "" sim replace --sim-dir "$sims" --slot 1 --profile SIM-F4-1M
run 0 "" sim show --sim-dir "$sims" --slot 1
rm "$sims/slot2/device.ini"
run 1 "slot 2 holds no device" sim show --sim-dir "$sims" --slot 2
echo "ok"
