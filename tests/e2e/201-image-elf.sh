#!/usr/bin/env bash
# ELF input checked against objcopy: firmware-shaped ELF32 and ELF64 files, little and big endian,
# linked here (gcc + ld, clang + ld.lld) with a linker script that puts each section in its own
# PT_LOAD segment: code, read-only data after a gap, initialised data stored in flash (p_paddr !=
# p_vaddr) and a .bss. The bytes we load must equal `objcopy -O binary`; segments, start address
# and CRC-32 must be what readelf and Python's zlib say; our HEX/S-record output must read back
# the same in objcopy. Data above 4 GiB (ELF64) loads, and cannot be written as HEX.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-201.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

command -v ld.lld >/dev/null || fail "ld.lld not found (Debian package lld; scripts/bootstrap)"

cat >fw.c <<'EOF'
/* Not run: only its sections matter. */
const unsigned char table[300] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 201, 202};
unsigned int counter = 0x11223344u;
unsigned char buffer[1024];
int _start(void)
{
    buffer[counter & 1023] = table[counter % 300];
    return (int)counter;
}
EOF

# flash_origin and ram_origin differ per variant (the ELF64 one also lives above 4 GiB).
write_script() {
    cat >"$1" <<EOF
MEMORY { FLASH (rx) : ORIGIN = $2, LENGTH = 1M
         RAM (rwx)  : ORIGIN = $3, LENGTH = 128K }
PHDRS { text PT_LOAD; rodata PT_LOAD; data PT_LOAD; bss PT_LOAD; }
ENTRY(_start)
SECTIONS {
  .text : { *(.text*) } > FLASH :text
  .rodata : ALIGN(256) { *(.rodata*) } > FLASH :rodata
  .data : { *(.data*) } > RAM AT > FLASH :data
  .bss (NOLOAD) : { *(.bss*) *(COMMON) } > RAM :bss
  /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) *(.ARM*) }
}
EOF
}
write_script low.ld 0x08000000 0x20000000
write_script high.ld 0x100000000 0x180000000

cflags="-ffreestanding -fno-pic -fno-asynchronous-unwind-tables -fno-stack-protector -O2 -c"
gcc -m32 $cflags fw.c -o le32.o
ld -m elf_i386 -T low.ld --build-id=none -o le32.elf le32.o
gcc $cflags fw.c -o le64.o
ld -m elf_x86_64 -T low.ld --build-id=none -o le64.elf le64.o
gcc -mcmodel=large $cflags fw.c -o high64.o
ld -m elf_x86_64 -T high.ld --build-id=none -o high64.elf high64.o
clang --target=powerpc-linux-gnu $cflags fw.c -o be32.o
ld.lld -T low.ld --build-id=none -o be32.elf be32.o
clang --target=aarch64_be-linux-gnu $cflags fw.c -o be64.o
ld.lld -T low.ld --build-id=none -o be64.elf be64.o

# expect ELF: the `image info` lines readelf's program headers call for, CRC from objcopy's bytes.
expect() {
    readelf -hlW "$1" >readelf.txt
    python3 - "$1" ref.bin <<'EOF'
import re, sys, zlib
text = open("readelf.txt").read()
entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", text).group(1), 16)
loads, bss, moved = [], False, False
for line in text.splitlines():
    f = line.split()
    if f and f[0] == "LOAD":
        offset, vaddr, paddr, filesz, memsz = (int(x, 16) for x in f[1:6])
        if filesz:
            loads.append((paddr, filesz))
        bss |= filesz == 0 and memsz > 0
        moved |= filesz > 0 and paddr != vaddr
# The file must hold what the test is about: a .bss segment (p_filesz 0, never loaded: the
# sizes compared below would show it) and data stored away from where it runs.
if not bss or not moved:
    sys.exit("precondition: no .bss segment or no segment with p_paddr != p_vaddr")
mapping = text.split("Section to Segment mapping:")[1].splitlines()[2:]
for line in mapping:
    f = line.split()
    if f and f[0].isdigit() and len(f) != 2:
        sys.exit("precondition: a segment holds %d sections: %s" % (len(f) - 1, line))
runs = []
for address, size in sorted(loads):
    if runs and runs[-1][0] + runs[-1][1] == address:
        runs[-1][1] += size
    else:
        runs.append([address, size])
ref = open(sys.argv[2], "rb").read()
low = runs[0][0]
if len(ref) != runs[-1][0] + runs[-1][1] - low:
    sys.exit("objcopy's output does not span the PT_LOAD segments")
print("format elf")
for address, size in runs:
    print("segment 0x%08X 0x%08X %d" % (address, address + size - 1, size))
print("start 0x%08X" % entry)
print("segments %d" % len(runs))
print("size %d" % sum(size for _, size in runs))
print("crc32 0x%08X" % zlib.crc32(b"".join(ref[a - low:a - low + s] for a, s in runs)))
EOF
}

for variant in le32:elf32-little le64:elf64-little be32:elf32-big be64:elf64-big \
    high64:elf64-little; do
    name=${variant%%:*}
    bfd=${variant#*:}
    file=$name.elf
    readelf -h "$file" | grep -q "Class:.*ELF${bfd:3:2}" || fail "$file: wrong class"
    objcopy -I "$bfd" -O binary --gap-fill 0xFF "$file" ref.bin
    "$mintflash" image convert "$file" -o ours.bin --format bin
    cmp ours.bin ref.bin || fail "$file: our bytes differ from objcopy's"
    expect "$file" >want.txt
    "$mintflash" image info "$file" >info.txt
    diff -u want.txt info.txt || fail "$file: image info differs from readelf"
    if [ "$name" != high64 ]; then
        for out in ihex srec; do
            "$mintflash" image convert "$file" -o "ours.$out" --format "$out"
            objcopy -I "$out" -O binary --gap-fill 0xFF "ours.$out" back.bin
            cmp back.bin ref.bin || fail "$file: objcopy reads our $out differently"
        done
    fi
    echo "ok $file"
done

# Above 4 GiB: HEX and S-records cannot hold it; a clear error, no output file left behind.
set +e
"$mintflash" image convert high64.elf -o high.hex --format ihex 2>err.txt
status=$?
set -e
[ "$status" = 1 ] || fail "convert of data above 4 GiB to ihex: status $status"
grep -q "high64.elf: data up to 0x1000.* lies beyond 4 GiB: Intel HEX cannot hold it" err.txt ||
    { cat err.txt; fail "no clear message for data above 4 GiB"; }
[ ! -e high.hex ] || fail "a failed convert left high.hex behind"
echo "ok high64.elf refuses ihex"
