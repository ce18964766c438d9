#!/usr/bin/env bash
# Several MiB: HEX and S-record files written by srec_cat from random binaries (two runs with a
# gap), loaded by us and by objcopy; the bytes, segments and CRC-32 (Python's zlib) must agree.
# Raw binary input at a base address, and our output of it read back by objcopy.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-202.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

seed=${MF_SEED:-202}
echo "202-image-large: seed $seed (set MF_SEED to repeat)"
python3 - "$seed" <<'EOF'
import random, sys, zlib
rnd = random.Random(int(sys.argv[1], 0))
a = rnd.randbytes(5 * 1024 * 1024 + 123)
b = rnd.randbytes(1024 * 1024 + 7)
open("a.bin", "wb").write(a)
open("b.bin", "wb").write(b)
with open("expect.txt", "w") as f:
    f.write("segment 0x08000000 0x%08X %d\n" % (0x08000000 + len(a) - 1, len(a)))
    f.write("segment 0x08600000 0x%08X %d\n" % (0x08600000 + len(b) - 1, len(b)))
    f.write("segments 2\nsize %d\n" % (len(a) + len(b)))
    f.write("crc32 0x%08X\n" % zlib.crc32(a + b))
with open("expect-a.txt", "w") as f:
    f.write("format bin\nsegment 0x20000000 0x%08X %d\nsegments 1\nsize %d\n"
            % (0x20000000 + len(a) - 1, len(a), len(a)))
    f.write("crc32 0x%08X\n" % zlib.crc32(a))
EOF

srec_cat a.bin -binary -offset 0x08000000 b.bin -binary -offset 0x08600000 \
    -o big.hex -intel -Output_Block_Size 32
srec_cat a.bin -binary -offset 0x08000000 b.bin -binary -offset 0x08600000 \
    -o big.srec -motorola -address-length=4
[ "$(stat -c %s big.hex)" -gt $((12 * 1024 * 1024)) ] || fail "big.hex is smaller than planned"

for file in big.hex big.srec; do
    format=ihex
    [ "$file" = big.srec ] && format=srec
    objcopy -I "$format" -O binary --gap-fill 0xFF "$file" ref.bin
    "$mintflash" image convert "$file" -o ours.bin --format bin
    cmp ours.bin ref.bin || fail "$file: our bytes differ from objcopy's"
    "$mintflash" image info "$file" >info.txt
    { echo "format $format"; cat expect.txt; } >want.txt
    diff -u want.txt info.txt || fail "$file: image info"
    echo "ok $file"
done

# Raw binary at a base address: detected from content, placed by --base.
"$mintflash" image info a.bin --base 0x20000000 >info.txt
diff -u expect-a.txt info.txt || fail "a.bin: image info"
"$mintflash" image convert a.bin --base 0x20000000 -o a.hex --format ihex
objcopy -I ihex -O binary a.hex back.bin
cmp back.bin a.bin || fail "a.bin through our HEX and objcopy"
"$mintflash" image convert a.bin --format-in bin --base 536870912 -o a.srec --format srec
objcopy -I srec -O binary a.srec back.bin
cmp back.bin a.bin || fail "a.bin through our S-records and objcopy"
srec_info a.srec | grep -q "20000000 - 2050007A" || { srec_info a.srec; fail "srec_info range"; }
echo "ok a.bin"
