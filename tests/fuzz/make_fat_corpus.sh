#!/usr/bin/env bash
# Regenerates the seed volumes of tests/fuzz/corpus/fat/ with mkfs.fat and mtools (tools nobody
# here wrote), so the fuzzer starts from real layouts: long names, nested folders, deleted
# entries, fragmented chains, FAT12 and FAT16. Seeds are cut after their last non-zero sector;
# fuzz_fat pads them back to the size their boot sector gives.
# Usage: tests/fuzz/make_fat_corpus.sh [OUTPUT_DIR]   (default: the corpus folder beside it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus/fat}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Reproducible bytes: fixed volume id and times, UTF-8 names, no mtools geometry checks.
export SOURCE_DATE_EPOCH=1700000000 TZ=UTC LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1
export MTOOLS_NO_VFAT=0

# new_volume IMG SIZE_KIB MKFS_OPTIONS...: an empty volume, the whole file (no partition table).
new_volume()
{
    local img=$1 kib=$2
    shift 2
    rm -f "$img"
    truncate -s "${kib}K" "$img"
    mkfs.fat --invariant -i 4d465431 "$@" "$img" >/dev/null
}

# put IMG PATH TEXT: a file with the given content.
put()
{
    printf '%s' "$3" | mcopy -o -i "$1" - "::$2"
}

# trim IMG DEST: copy IMG without its trailing all-zero 512-byte sectors.
trim()
{
    local last
    last=$(od -v -An -tx1 -w512 "$1" |
        awk '{ for (i = 1; i <= NF; i++) if ($i != "00") { last = NR; break } } END { print last + 0 }')
    head -c $((last * 512)) "$1" >"$2"
}

# 1. Names: mixed case, long, UTF-8, the product's folder layout.
img=$work/names.img
new_volume "$img" 64 -s 1 -r 64 -n MINTFLASH
put "$img" CntDown.txt "100"
put "$img" "A long file name with spaces.txt" "long name"
put "$img" "Grüße.txt" "utf-8 latin"
put "$img" "Привет.txt" "utf-8 cyrillic"
put "$img" "UPPER.TXT" "plain 8.3"
# The longest name a volume holds: 255 characters, 20 long-name entries.
put "$img" "$(printf 'L%.0s' $(seq 1 251)).txt" "longest name"
mmd -i "$img" ::Projects ::Projects/01_Demo ::Projects/01_Demo/01_Job
put "$img" Projects/01_Demo/01_Job/job.ini "[job]
image=fw.hex
"
trim "$img" "$out/names.img"

# 2. A folder past one cluster, deleted entries, a fragmented file.
img=$work/many.img
new_volume "$img" 128 -s 1 -r 16
mmd -i "$img" ::many
for i in $(seq 1 40); do
    put "$img" "many/file number $i.txt" "content of file $i"
done
for i in $(seq 2 2 40); do
    mdel -i "$img" "::many/file number $i.txt"
done
head -c 9000 /dev/zero | tr '\0' 'F' | mcopy -i "$img" - ::many/fragmented.bin
trim "$img" "$out/many.img"

# 3. Two sectors per cluster, one FAT, deep nesting, an empty file and an empty folder.
img=$work/deep.img
new_volume "$img" 200 -s 2 -f 1 -r 64
path=
for level in a b c d e f g; do
    path=$path/$level
    mmd -i "$img" "::$path"
done
put "$img" "$path/leaf.txt" "deep leaf"
put "$img" empty.txt ""
mmd -i "$img" ::empty
mmove -i "$img" ::empty.txt ::a/b/moved.txt
trim "$img" "$out/deep.img"

# 4. FAT16 (4085 clusters or more), one cluster per sector, a small fixed root.
img=$work/fat16.img
new_volume "$img" 2200 -F 16 -s 1 -r 16
mmd -i "$img" ::dir
put "$img" "dir/FAT16 file.txt" "sixteen"
head -c 3000 /dev/zero | tr '\0' 'G' | mcopy -i "$img" - ::big.bin
trim "$img" "$out/fat16.img"

for f in "$out"/*.img; do
    printf '%s: %s bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
