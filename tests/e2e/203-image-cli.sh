#!/usr/bin/env bash
# `mintflash image` as a user meets it: help, usage errors (status 2), bad input (status 1 with
# the file, line or offset and reason), the exact `info` output, overlap policies, standard
# output, and the examples of docs/image-formats.md.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-203.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# run STATUS CMD...: runs CMD, requires exit status STATUS; output in out.txt and err.txt.
run() {
    local want=$1
    shift
    set +e
    "$@" >out.txt 2>err.txt
    local status=$?
    set -e
    if [ "$status" != "$want" ]; then
        cat out.txt err.txt >&2
        fail "'$*' exited with $status, expected $want"
    fi
}

# stderr_is TEXT: the whole of err.txt.
stderr_is() {
    printf '%s\n' "$1" >want.txt
    diff -u want.txt err.txt || fail "unexpected message"
}

# Help.
for args in "image --help" "image -h" "image info --help" "image convert --help"; do
    run 0 "$mintflash" $args
    grep -q "usage: mintflash image info FILE" out.txt || fail "$args: no usage on stdout"
    [ ! -s err.txt ] || fail "$args: wrote to stderr"
done
echo "ok help"

# Usage errors: status 2 and a message saying what is wrong.
printf ':0400000001020304F2\n:00000001FF\n' >fw.hex
run 2 "$mintflash" image
run 2 "$mintflash" image frobnicate
stderr_is "mintflash: unknown image command 'frobnicate' (info, convert) (try 'mintflash image --help')"
run 2 "$mintflash" image info
stderr_is "mintflash: missing file (try 'mintflash image --help')"
run 2 "$mintflash" image convert fw.hex --format bin
stderr_is "mintflash: missing output file (-o OUT) (try 'mintflash image --help')"
run 2 "$mintflash" image convert fw.hex -o x.bin
stderr_is "mintflash: missing output format (--format bin|ihex|srec) (try 'mintflash image --help')"
run 2 "$mintflash" image convert fw.hex -o x.elf --format elf
stderr_is "mintflash: unknown output format 'elf' (bin, ihex, srec) (try 'mintflash image --help')"
run 2 "$mintflash" image info fw.hex --format-in coff
stderr_is "mintflash: unknown input format 'coff' (bin, ihex, srec, elf) (try 'mintflash image --help')"
run 2 "$mintflash" image info fw.hex --overlap sometimes
run 2 "$mintflash" image info fw.hex --base 12x
stderr_is "mintflash: bad address '12x' (decimal, or hex with 0x) (try 'mintflash image --help')"
run 2 "$mintflash" image info fw.hex --base
stderr_is "mintflash: option '--base' needs a value (try 'mintflash image --help')"
run 2 "$mintflash" image info fw.hex --verbose
run 2 "$mintflash" image info fw.hex other.hex
run 2 "$mintflash" image info fw.hex --base 0x1000
stderr_is "mintflash: fw.hex: --base applies to raw binary input only (this file is Intel HEX)"
echo "ok usage errors"

# Bad input: status 1, the file, the position and the reason.
run 1 "$mintflash" image info missing.hex
stderr_is "mintflash: missing.hex: No such file or directory"
mkdir folder
run 1 "$mintflash" image info folder
stderr_is "mintflash: folder: is a directory"
printf ':0400000001020304F2\n:0400040001020304EF\n:00000001FF\n' >bad.hex
run 1 "$mintflash" image info bad.hex
stderr_is "mintflash: bad.hex: line 2: checksum mismatch (expected 0xEE, got 0xEF)"
[ ! -s out.txt ] || fail "info printed something for a bad file"
printf 'S1071234DEADBEEF7A\r\nS10' >cut.srec
run 1 "$mintflash" image info cut.srec
stderr_is "mintflash: cut.srec: line 2: file ends inside a record"
printf '\177ELF\001\001\001\000' >short.elf
run 1 "$mintflash" image info short.elf
stderr_is "mintflash: short.elf: offset 0x8: file ends inside the ELF identification (8 bytes)"
run 1 "$mintflash" image info bad.hex --format-in srec
stderr_is "mintflash: bad.hex: line 1: unexpected character ':' outside a record"
# A failed convert leaves an existing output file alone.
printf 'keep' >out.bin
run 1 "$mintflash" image convert bad.hex -o out.bin --format bin
[ "$(cat out.bin)" = keep ] || fail "a failed convert changed its output file"
echo "ok bad input"

# The exact info output (docs/image-formats.md shows the same).
printf ':020000040800F2\n:10000000000102030405060708090A0B0C0D0E0F78\n' >app.hex
printf ':0400200001020304D2\n:0400000508000131BD\n:00000001FF\n' >>app.hex
run 0 "$mintflash" image info app.hex
cat >want.txt <<'EOF'
format ihex
segment 0x08000000 0x0800000F 16
segment 0x08000020 0x08000023 4
start 0x08000131
segments 2
size 20
crc32 0x1D1274A0
EOF
diff -u want.txt out.txt || fail "info output"
python3 -c 'import zlib; print("crc32 0x%08X" % zlib.crc32(bytes(range(16)) + bytes([1, 2, 3, 4])))' >crc.txt
grep -qxF "$(cat crc.txt)" out.txt || fail "CRC-32 differs from zlib's"
# Converting to standard output.
run 0 "$mintflash" image convert app.hex -o - --format srec
cat >want.txt <<'EOF'
S0030000FC
S31508000000000102030405060708090A0B0C0D0E0F6A
S3090800002001020304C4
S5030002FA
S70508000131C0
EOF
diff -u want.txt out.txt || fail "srec on standard output"
run 0 "$mintflash" image convert app.hex -o app.bin --format bin
[ "$(od -An -tx1 -v app.bin | tr -d ' \n')" = \
    "000102030405060708090a0b0c0d0e0fffffffffffffffffffffffffffffffff01020304" ] ||
    fail "bin output"
echo "ok info and convert"

# An image with nothing in it.
printf ':00000001FF\n' >empty.hex
run 0 "$mintflash" image info empty.hex
printf 'format ihex\nsegments 0\nsize 0\ncrc32 0x00000000\n' >want.txt
diff -u want.txt out.txt || fail "empty image"
run 0 "$mintflash" image convert empty.hex -o empty.bin --format bin
[ ! -s empty.bin ] || fail "empty image gives a non-empty bin"

# Overlap: an error naming both places, unless a policy is chosen.
printf ':0400000001020304F2\n:02000200AAAAA8\n:00000001FF\n' >overlap.hex
run 1 "$mintflash" image info overlap.hex
stderr_is "mintflash: overlapping data at 0x00000002-0x00000003: overlap.hex line 1 and overlap.hex line 2"
run 0 "$mintflash" image convert overlap.hex --overlap last -o last.bin --format bin
[ "$(od -An -tx1 last.bin | tr -d ' \n')" = 0102aaaa ] || fail "--overlap last"
run 0 "$mintflash" image convert overlap.hex --overlap first -o first.bin --format bin
[ "$(od -An -tx1 first.bin | tr -d ' \n')" = 01020304 ] || fail "--overlap first"
echo "ok overlap"

# Detection: raw binary by default, a format given overrides it.
printf 'hello' >text.bin
run 0 "$mintflash" image info text.bin --base 0x100
grep -qx "segment 0x00000100 0x00000104 5" out.txt || fail "raw binary at --base"
run 0 "$mintflash" image info fw.hex --format-in bin
grep -qx "format bin" out.txt || fail "--format-in bin"
grep -qx "size 32" out.txt || fail "--format-in bin size"
echo "ok detection"
