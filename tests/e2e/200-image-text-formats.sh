#!/usr/bin/env bash
# Intel HEX and S-record input checked against objcopy and srec_cat (tools nobody here wrote):
# generated files with gaps, unordered records, extended segment (02) and linear (04) addresses,
# records across 64 KiB boundaries, data up to the last byte below 4 GiB, mixed S1/S2/S3. The bytes
# we load must equal what both tools produce; segments and CRC-32 must be what the generator put
# in (CRC by Python's zlib); our own HEX and S-record output must read back the same in both tools.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-200.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

seed=${MF_SEED:-200}
echo "200-image-text-formats: seed $seed (set MF_SEED to repeat)"

# Writes <case>.hex, <case>.srec and <case>.expect (the `image info` lines after "format").
python3 - "$seed" <<'EOF'
import random, sys, zlib

rnd = random.Random(int(sys.argv[1], 0))

def hex_record(rtype, address, data):
    body = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, rtype]) + bytes(data)
    return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper()

def srec_record(rtype, address, data):
    width = {0: 2, 1: 2, 2: 3, 3: 4, 5: 2, 6: 3, 7: 4, 8: 3, 9: 2}[rtype]
    body = bytes([width + len(data) + 1]) + address.to_bytes(width, "big") + bytes(data)
    return "S%d" % rtype + (body + bytes([~sum(body) & 0xFF])).hex().upper()

def split_records(regions, max_len):
    """Cuts each (address, bytes) region into records of random length."""
    records = []
    for address, data in regions:
        at = 0
        while at < len(data):
            n = min(len(data) - at, rnd.randint(1, max_len))
            records.append((address + at, data[at:at + n]))
            at += n
    return records

def shuffle_some(records):
    """Unordered input: swap random pairs and reverse a stretch."""
    for _ in range(len(records) // 3):
        i, j = rnd.randrange(len(records)), rnd.randrange(len(records))
        records[i], records[j] = records[j], records[i]
    if len(records) > 10:
        i = rnd.randrange(len(records) - 10)
        records[i:i + 10] = records[i:i + 10][::-1]
    return records

def line_end():
    return rnd.choice(["\n", "\r\n"])  # objcopy refuses trailing blanks

def write_linear_hex(path, records, start=None):
    out, upper = [], None
    for address, data in records:
        if address >> 16 != upper:
            upper = address >> 16
            out.append(hex_record(4, 0, [upper >> 8, upper & 0xFF]))
        out.append(hex_record(0, address & 0xFFFF, data))
    if start is not None:
        out.append(hex_record(5, 0, list(start.to_bytes(4, "big"))))
    out.append(hex_record(1, 0, []))
    with open(path, "w", newline="") as f:
        f.write("".join(line + line_end() for line in out))

def write_segment_hex(path, records):
    """I16HEX: each record gets a random segment that keeps it inside its 64 KiB window."""
    out, segment = [], None
    for address, data in records:
        choices = [s for s in range(max(0, (address - 0xFFFF + 15) // 16), min(address // 16, 0xFFFF) + 1)
                   if address - 16 * s + len(data) <= 0x10000]
        s = segment if segment in choices else rnd.choice(choices[:50] + choices[-50:])
        if s != segment:
            segment = s
            out.append(hex_record(2, 0, [s >> 8, s & 0xFF]))
        out.append(hex_record(0, address - 16 * s, data))
    out.append(hex_record(3, 0, [0x12, 0x34, 0x00, 0x10]))
    out.append(hex_record(1, 0, []))
    with open(path, "w", newline="") as f:
        f.write("".join(line + line_end() for line in out))

def write_srec(path, records, start=0):
    out = [srec_record(0, 0, b"mintflash test")]
    count = 0
    for address, data in records:
        end = address + len(data) - 1
        smallest = 1 if address <= 0xFFFF else 2 if address <= 0xFFFFFF else 3
        rtype = rnd.choice([t for t in (1, 2, 3) if t >= smallest])
        out.append(srec_record(rtype, address, data))
        count += 1
    if count <= 0xFFFF:
        out.append(srec_record(5, count, []))
    out.append(srec_record(7, start, []))
    with open(path, "w", newline="") as f:
        f.write("".join(line + line_end() for line in out))

def write_expect(path, regions, start=None):
    runs = []
    for address, data in sorted(regions):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1] = (runs[-1][0], runs[-1][1] + data)
        else:
            runs.append((address, data))
    lines = ["segment 0x%08X 0x%08X %d" % (a, a + len(d) - 1, len(d)) for a, d in runs]
    if start is not None:
        lines.append("start 0x%08X" % start)
    lines.append("segments %d" % len(runs))
    lines.append("size %d" % sum(len(d) for _, d in runs))
    lines.append("crc32 0x%08X" % zlib.crc32(b"".join(d for _, d in runs)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

def data(n):
    return bytes(rnd.randrange(256) for _ in range(n))

cases = {
    # Linear addresses: runs across 64 KiB boundaries, gaps, touching runs that merge.
    "linear": [(0x0800FF00, data(0x300)), (0x08020000, data(5000)), (0x08021388, data(100)),
               (0x0803FFFE, data(3)), (0x08100000, data(1))],
    # Up to the last byte below 4 GiB, across the 64 KiB boundary at 0xFFFF0000.
    "top": [(0xFFFEFF80, data(0x100)), (0xFFFFFE00, data(0x200))],
    # Below 64 KiB only: plain records, S1.
    "small": [(0x0000, data(40)), (0x0100, data(0x1F00)), (0xFFF0, data(16))],
    # Extended segment addresses (below 1 MiB + 64 KiB) for the HEX variant.
    "segment": [(0x00400, data(0x800)), (0x0FF00, data(0x300)), (0xFFFF0, data(0x20)),
                (0x10FF00, data(0xF0))],
}
for name, regions in cases.items():
    records = shuffle_some(split_records(regions, 64 if name != "small" else 250))
    if name == "segment":
        write_segment_hex(name + ".hex", records)
        write_expect(name + ".hex.expect", regions, 0x12340 + 0x10)
    else:
        start = 0x08000131 if name == "linear" else None
        write_linear_hex(name + ".hex", records, start)
        write_expect(name + ".hex.expect", regions, start)
    write_srec(name + ".srec", records, 0x0800ABCD if name == "linear" else 0)
    write_expect(name + ".srec.expect", regions, 0x0800ABCD if name == "linear" else 0)
EOF

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# check FILE TOOLFORMAT: compares our loading of FILE with objcopy and srec_cat.
check() {
    local file=$1 objfmt=$2 catfmt=$3
    local low
    low=$(awk 'NR == 1 { print $2 }' "$file.expect")

    objcopy -I "$objfmt" -O binary --gap-fill 0xFF "$file" ref-objcopy.bin
    srec_cat '(' "$file" "-$catfmt" -fill 0xFF -over "$file" "-$catfmt" ')' -offset "-$low" \
        -o ref-srec_cat.bin -binary 2>srec_cat.log || { cat srec_cat.log; fail "srec_cat $file"; }
    cmp ref-objcopy.bin ref-srec_cat.bin || fail "$file: objcopy and srec_cat disagree"

    "$mintflash" image convert "$file" -o ours.bin --format bin
    cmp ours.bin ref-objcopy.bin || fail "$file: our bytes differ from objcopy's"

    "$mintflash" image info "$file" >info.txt
    local want_format=ihex
    [ "$objfmt" = srec ] && want_format=srec
    { echo "format $want_format"; cat "$file.expect"; } >want.txt
    diff -u want.txt info.txt || fail "$file: image info differs from the generator's segments"

    # Our writers, read back by both tools.
    for out in ihex srec; do
        "$mintflash" image convert "$file" -o "ours.$out" --format "$out"
        local back_obj=ihex back_cat=intel
        [ "$out" = srec ] && back_obj=srec back_cat=motorola
        objcopy -I "$back_obj" -O binary --gap-fill 0xFF "ours.$out" back-objcopy.bin
        cmp back-objcopy.bin ref-objcopy.bin || fail "$file: objcopy reads our $out differently"
        srec_cat '(' "ours.$out" "-$back_cat" -fill 0xFF -over "ours.$out" "-$back_cat" ')' \
            -offset "-$low" -o back-srec_cat.bin -binary 2>srec_cat.log ||
            { cat srec_cat.log; fail "srec_cat rejects our $out of $file"; }
        # Our records are in order and well formed: srec_cat has nothing to warn about.
        [ ! -s srec_cat.log ] || { cat srec_cat.log; fail "srec_cat warns about our $out"; }
        cmp back-srec_cat.bin ref-objcopy.bin || fail "$file: srec_cat reads our $out differently"
        # And our own parser reads it back to the same image.
        "$mintflash" image info "ours.$out" | tail -n +2 >back-info.txt
        tail -n +2 info.txt | grep -v '^start' >a.txt
        grep -v '^start' back-info.txt >b.txt
        diff -u a.txt b.txt || fail "$file: our $out output reads back differently"
    done
    echo "ok $file"
}

for name in linear top small segment; do
    check "$name.hex" ihex intel
done
for name in linear top small segment; do
    check "$name.srec" srec motorola
done

# The start address survives a conversion in both directions.
"$mintflash" image convert linear.hex -o start.srec --format srec
grep -q '^S70508000131C0$' start.srec || fail "start address not carried into S7"
"$mintflash" image convert linear.srec -o start.hex --format ihex
grep -q '^:040000050800ABCD77$' start.hex || fail "start address not carried into record 05"
echo "ok start addresses"
