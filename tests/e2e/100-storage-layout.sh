#!/usr/bin/env bash
# Storage images as tools nobody here wrote see them: for 4 MiB, 128 MiB (the default) and
# 1 GiB (sparse, FAT32), with and without a secure area, `sfdisk -d` and `fdisk -l` read the
# expected starts, sizes and types; `fsck.fat -n -v` on the public partition is clean and
# agrees on FAT type, hidden sectors and size; `mdir -i IMG@@1M` lists it; and `mintflash
# storage info` (text and --json) says the same.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-100.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# partitions IMG: "start size type" for each partition, as sfdisk reads the table.
partitions() {
    sfdisk -d "$1" | sed -n 's/.*: start= *\([0-9]*\), size= *\([0-9]*\), type=\([0-9a-f]*\).*/\1 \2 \3/p'
}

# check_image IMG SIZE_ARG SECURE P1 [P2]: P1/P2 are "start size type" (sectors, sfdisk's hex type),
# FAT_BITS the FAT type fsck.fat must report for partition 1.
check_image() {
    local img=$1 size_arg=$2 secure=$3 fat_bits=$4 p1=$5 p2=${6:-}
    local args=("$img")
    [ -n "$size_arg" ] && args+=(--size "$size_arg")
    [ "$secure" = yes ] && args+=(--secure-area)
    "$mintflash" storage init "${args[@]}" >init.txt || fail "init ${args[*]}"

    # sfdisk: exactly the expected partitions.
    local want=$p1
    [ -n "$p2" ] && want=$(printf '%s\n%s' "$p1" "$p2")
    local got
    got=$(partitions "$img")
    [ "$got" = "$want" ] || fail "$img: sfdisk reads '$got', expected '$want'"
    sfdisk -d "$img" | grep -q '^label: dos$' || fail "$img: sfdisk does not see a DOS label"

    # fdisk -l: the same, with fdisk's type names.
    fdisk -l "$img" >fdisk.txt || fail "$img: fdisk -l failed"
    grep -q '^Disklabel type: dos$' fdisk.txt || fail "$img: fdisk: no dos label"
    read -r start count type <<<"$p1"
    grep -Eq "^$img""1 +$start +$((start + count - 1)) +$count .* $type (W95 )?FAT" fdisk.txt ||
        { cat fdisk.txt >&2; fail "$img: fdisk -l does not show partition 1 as $p1"; }
    if [ -n "$p2" ]; then
        read -r start2 count2 type2 <<<"$p2"
        grep -Eq "^$img""2 +$start2 +$((start2 + count2 - 1)) +$count2 .* $type2 +Non-FS data" fdisk.txt ||
            { cat fdisk.txt >&2; fail "$img: fdisk -l does not show partition 2 as $p2"; }
    fi

    # fsck.fat on partition 1 (copied out sparse: this fsck.fat has no --offset).
    dd if="$img" of=part1.img bs=1M iflag=skip_bytes,count_bytes skip=$((start * 512)) \
        count=$((count * 512)) conv=sparse status=none
    fsck.fat -n -v part1.img >fsck.txt 2>&1 || { cat fsck.txt >&2; fail "$img: fsck.fat complains"; }
    grep -q "FATs, $fat_bits bit entries" fsck.txt || fail "$img: fsck.fat does not see FAT$fat_bits"
    grep -Eq "^ +$start hidden sectors" fsck.txt || fail "$img: hidden sectors are not $start"
    grep -Eq "^ +$count sectors total" fsck.txt || fail "$img: the FAT does not span its partition"
    rm -f part1.img

    # mtools reads the volume at 1 MiB.
    mdir -i "$img@@1M" :: >mdir.txt || fail "$img: mdir failed"
    grep -q "Volume in drive : is MINTFLASH" mdir.txt || fail "$img: mdir sees no MINTFLASH label"

    # info, text and JSON.
    "$mintflash" storage info "$img" >info.txt
    grep -q "^public area:     partition 1, offset 1048576 (1 MiB), size $((count * 512)) bytes" info.txt ||
        { cat info.txt >&2; fail "$img: info public area"; }
    grep -q "^file system:     FAT$fat_bits, label \"MINTFLASH\"" info.txt || fail "$img: info FAT type"
    if [ -n "$p2" ]; then
        grep -q "^secure area:     partition 2, offset $((start2 * 512)) .*, size $((count2 * 512)) bytes .*type 0xDA" info.txt ||
            { cat info.txt >&2; fail "$img: info secure area"; }
    else
        grep -q '^secure area:     none$' info.txt || fail "$img: info claims a secure area"
    fi
    "$mintflash" storage info --json "$img" >info.json
    python3 - "$img" "$count" "$fat_bits" "${start2:-0}" "${count2:-0}" <<'EOF' || fail "$img: info --json"
import json, sys
img, count, bits, start2, count2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
info = json.load(open("info.json"))
assert info["image"] == img and info["state"] == "ready" and info["block_size"] == 512, info
pub = info["public_area"]
assert pub["offset"] == 1048576 and pub["size"] == count * 512, pub
assert pub["fat_type"] == "FAT" + bits and pub["label"] == "MINTFLASH", pub
assert 0 < pub["free"] <= pub["total"] <= pub["size"], pub
sec = info["secure_area"]
if count2:
    assert sec == {"partition": 2, "offset": start2 * 512, "size": count2 * 512, "type": 0xDA}, sec
else:
    assert sec is None, sec
EOF
    unset start2 count2
}

check_image small.img 4M no 12 "2048 6144 1"
check_image small-secure.img 4M yes 12 "2048 2048 1" "4096 4096 da"
echo "ok 4 MiB"

check_image default.img "" no 16 "2048 260096 6"
[ "$(stat -c %s default.img)" = 134217728 ] || fail "default size is not 128 MiB"
check_image default-secure.img "" yes 16 "2048 129024 6" "131072 131072 da"
grep -q "128 MiB storage: public area 63 MiB (FAT16), secure area 64 MiB" init.txt ||
    fail "init summary: $(cat init.txt)"
echo "ok 128 MiB"

check_image large.img 1G no 32 "2048 2095104 c"
# Sparse: a formatted 1 GiB image occupies a few MiB at most.
used_kib=$(du -k large.img | cut -f1)
[ "$used_kib" -lt 16384 ] || fail "1 GiB image uses $used_kib KiB: not sparse"
check_image large-secure.img 1G yes 16 "2048 1046528 6" "1048576 1048576 da"
echo "ok 1 GiB"

# 4 GiB, the largest size the issue names: the table and the FAT32 volume, without copying the
# partition out for fsck.fat.
"$mintflash" storage init huge.img --size 4G >/dev/null
[ "$(partitions huge.img)" = "2048 8386560 c" ] || fail "4 GiB: sfdisk reads '$(partitions huge.img)'"
mdir -i huge.img@@1M :: | grep -q "Volume in drive : is MINTFLASH" || fail "4 GiB: mdir"
"$mintflash" storage info huge.img | grep -q "^file system:     FAT32," || fail "4 GiB: not FAT32"
rm -f huge.img
echo "ok 4 GiB"

# The disk signature is random per image, and sfdisk sees ours.
sig=$("$mintflash" storage info --json small.img | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk_signature"])')
[ "$(sfdisk -d small.img | sed -n 's/^label-id: //p')" = "$(echo "$sig" | tr A-F a-f)" ] ||
    fail "disk signature $sig differs from sfdisk's label-id"
sig2=$("$mintflash" storage info --json small-secure.img | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk_signature"])')
[ "$sig" != "$sig2" ] || fail "two images share the disk signature $sig"
echo "ok disk signature"
