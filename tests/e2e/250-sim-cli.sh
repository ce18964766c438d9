#!/usr/bin/env bash
# `mintflash sim`: profiles, replace (one slot, every slot, another profile, a given UID) and show
# (counters, faults, bytes not erased) against the files of the slot folders; parts from a
# DEVICES.INI with --devices.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-sim-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
sims="$tmp/sims"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# run STATUS ARGS...: runs mintflash, expects STATUS; output in $tmp/out and $tmp/err.
run() {
    local want=$1
    shift
    local got=0
    "$mintflash" "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    if [ "$got" != "$want" ]; then
        cat "$tmp/out" "$tmp/err" >&2
        fail "mintflash $* gave status $got, want $want"
    fi
}

has() { # has FILE TEXT: the file holds the line TEXT
    grep -qxF -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks the line '$2'"; }
}

field() { # field NAME: the value of "NAME: value" in $tmp/out
    sed -n "s/^$1: //p" "$tmp/out"
}

run 0 sim --help
grep -q '^usage: mintflash sim replace' "$tmp/out" || fail "sim --help shows no usage"
run 0 sim show --help

run 0 sim profiles
has "$tmp/out" "SIM-F4-1M"
has "$tmp/out" "  flash 0x08000000..0x080fffff (1 MiB), write size 4, erased 0xFF, sectors 4x16 KiB, 1x64 KiB, 7x128 KiB"
has "$tmp/out" "  uid 12 bytes at 0x1fff7a10"
has "$tmp/out" "SIM-N52-512K"
has "$tmp/out" "  flash 0x00000000..0x0007ffff (512 KiB), write size 4, erased 0xFF, sectors 128x4 KiB"

# A new device with a given UID: blank flash.bin of the part's size, device.ini with the facts.
run 0 sim replace --sim-dir "$sims" --slot 1 --profile sim-f4-1m --uid 0102030405060708090a0b0c
has "$tmp/out" "slot 1: new SIM-F4-1M, uid 0102030405060708090A0B0C"
[ "$(stat -c %s "$sims/slot1/flash.bin")" = 1048576 ] || fail "flash.bin is not 1 MiB"
head -c 1048576 /dev/zero | tr '\0' '\377' >"$tmp/blank"
cmp -s "$tmp/blank" "$sims/slot1/flash.bin" || fail "a new device is not all 0xFF"
has "$sims/slot1/device.ini" "profile = SIM-F4-1M"
has "$sims/slot1/device.ini" "uid = 0102030405060708090A0B0C"
has "$sims/slot1/device.ini" "protection = 0"

run 0 sim show --sim-dir "$sims" --slot 1
[ "$(field profile)" = SIM-F4-1M ] || fail "show: profile"
[ "$(field uid)" = 0102030405060708090A0B0C ] || fail "show: uid"
[ "$(field not_erased)" = 0 ] || fail "show: a new device has programmed bytes"
[ "$(field connects)" = 0 ] || fail "show: connects"
[ "$(field faults)" = none ] || fail "show: faults"

# flash.bin is the raw flash from its base: bytes written there count as programmed.
printf '\x00\x11\x22\x33' | dd of="$sims/slot1/flash.bin" bs=1 seek=$((0x10000)) conv=notrunc status=none
run 0 sim show --sim-dir "$sims" --slot 1
[ "$(field not_erased)" = 4 ] || fail "show: 4 bytes written into flash.bin, not_erased $(field not_erased)"

# Fault knobs are set by editing device.ini; show reports them, replace clears them.
sed -i 's/^program = off$/program = 4096 once/; s/^timeout = off$/timeout = crc always/' \
    "$sims/slot1/device.ini"
run 0 sim show --sim-dir "$sims" --slot 1
[ "$(field faults)" = "program=4096 once, timeout=crc always" ] || fail "show: faults '$(field faults)'"

# A second slot of another part; then replace every slot: new UIDs, same parts, blank, no faults.
run 0 sim replace --sim-dir "$sims" --slot 2 --profile SIM-N52-512K
[ "$(stat -c %s "$sims/slot2/flash.bin")" = 524288 ] || fail "slot 2 flash.bin is not 512 KiB"
run 0 sim show --sim-dir "$sims" --slot 2
uid2=$(field uid)
[ ${#uid2} = 16 ] || fail "slot 2 UID '$uid2' is not 8 bytes"

run 0 sim replace --sim-dir "$sims"
grep -q '^slot 1: new SIM-F4-1M, uid ' "$tmp/out" || fail "replace all: slot 1"
grep -q '^slot 2: new SIM-N52-512K, uid ' "$tmp/out" || fail "replace all: slot 2"
run 0 sim show --sim-dir "$sims"
[ "$(grep -c '^slot: ' "$tmp/out")" = 2 ] || fail "show all: not two slots"
[ "$(grep -c '^not_erased: 0$' "$tmp/out")" = 2 ] || fail "show all: replaced devices not blank"
[ "$(grep -c '^faults: none$' "$tmp/out")" = 2 ] || fail "show all: faults survived replace"
grep -q '^uid: 0102030405060708090A0B0C$' "$tmp/out" && fail "slot 1 kept its UID"
grep -q "^uid: $uid2\$" "$tmp/out" && fail "slot 2 kept its UID"
cmp -s "$tmp/blank" "$sims/slot1/flash.bin" || fail "replaced slot 1 is not blank"

# Every slot becomes another part.
run 0 sim replace --sim-dir "$sims" --profile SIM-F1-64K
run 0 sim show --sim-dir "$sims"
[ "$(grep -c '^profile: SIM-F1-64K$' "$tmp/out")" = 2 ] || fail "replace --profile did not apply to all"
[ "$(stat -c %s "$sims/slot2/flash.bin")" = 65536 ] || fail "slot 2 flash.bin is not 64 KiB"

# Parts a setup describes in its DEVICES.INI (docs/jobs.md): with --devices, replace and show
# know them; without, show names the part it does not know. One part has no UID.
cat >"$tmp/DEVICES.INI" <<'INI'
[ACME-DUAL]
flash = 0x00000000 16x4K
flash = 0x00100000 8x16K
write_size = 8
erased = 0x00
uid = 0x1FFF7590 12
[ACME-NOUID]
flash = 0x08000000 4x1K
write_size = 4
INI
run 2 sim replace --sim-dir "$sims" --slot 1 --profile ACME-DUAL
grep -q "unknown profile 'ACME-DUAL'" "$tmp/err" || fail "replace without --devices"
run 0 sim replace --sim-dir "$sims" --slot 1 --profile ACME-DUAL --devices "$tmp/DEVICES.INI"
grep -q '^slot 1: new ACME-DUAL, uid [0-9A-F]\{24\}$' "$tmp/out" || fail "replace ACME-DUAL"
[ "$(stat -c %s "$sims/slot1/flash.bin")" = $((16 * 4096 + 8 * 16384)) ] ||
    fail "ACME-DUAL flash.bin has the wrong size"
run 1 sim show --sim-dir "$sims" --slot 1
grep -q "unknown profile 'ACME-DUAL'" "$tmp/err" || fail "show without --devices"
run 0 sim show --sim-dir "$sims" --slot 1 --devices "$tmp/DEVICES.INI"
has "$tmp/out" "profile: ACME-DUAL"
has "$tmp/out" "not_erased: 0"
run 0 sim replace --sim-dir "$sims" --slot 1 --devices "$tmp/DEVICES.INI" # keeps its part
grep -q '^slot 1: new ACME-DUAL, ' "$tmp/out" || fail "replace kept no ACME-DUAL"
run 0 sim replace --sim-dir "$sims" --slot 2 --profile acme-nouid --devices "$tmp/DEVICES.INI"
has "$tmp/out" "slot 2: new ACME-NOUID, uid "
run 0 sim show --sim-dir "$sims" --slot 2 --devices "$tmp/DEVICES.INI"
has "$tmp/out" "uid: "
printf '[BAD]\nwrite_size = 6\n' >"$tmp/BAD.INI"
run 1 sim show --sim-dir "$sims" --devices "$tmp/BAD.INI"
grep -q "BAD.INI:2: " "$tmp/err" || fail "a bad --devices file: $(cat "$tmp/err")"
echo "ok"
