#!/usr/bin/env bash
# Public-area file commands against mtools, both ways: files and folder trees put with
# `mintflash storage put` are listed by mdir and read back byte-identical by mtype/mcopy; files
# and folders mcopy'd in (long and mixed-case names, nested folders, a file of several MiB) are
# listed, read and copied out identically by `mintflash storage ls/cat/get`; mkdir, mv, rm, rmdir
# show up in mdir; fsck.fat stays clean throughout. Both with and without a secure area.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-101.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# fsck_public IMG: fsck.fat -n on partition 1 must be clean.
fsck_public() {
    local start count
    read -r start count < <(sfdisk -d "$1" | sed -n 's/.*1 : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p')
    dd if="$1" of=part1.img bs=1M iflag=skip_bytes,count_bytes skip=$((start * 512)) \
        count=$((count * 512)) conv=sparse status=none
    fsck.fat -n part1.img >fsck.txt 2>&1 || { cat fsck.txt >&2; fail "$1: fsck.fat: $2"; }
    rm -f part1.img
}

# Deterministic test data (no /dev/urandom: a failure must be repeatable).
python3 - <<'EOF'
import os, random
r = random.Random(101)
os.makedirs("tree/Projects/01_Widget/01_Program", exist_ok=True)
os.makedirs("tree/empty folder", exist_ok=True)
open("tree/CntDown.txt", "w").write("1000\n")
open("tree/Projects/01_Widget/01_Program/job.ini", "w").write("[job]\nname = program\n")
open("tree/Projects/01_Widget/01_Program/firmware image.bin", "wb").write(r.randbytes(300_000))
open("big.bin", "wb").write(r.randbytes(3 * 1024 * 1024 + 17))
open("small.txt", "w").write("hello, world\n")
open("empty.bin", "wb").close()
EOF

for secure in no yes; do
    img=storage-$secure.img
    args=(--size 16M)
    [ $secure = yes ] && args+=(--secure-area)
    "$mintflash" storage init "$img" "${args[@]}" >/dev/null

    # mintflash in, mtools out.
    "$mintflash" storage put "$img" big.bin
    "$mintflash" storage put "$img" small.txt /Hello.TXT
    "$mintflash" storage put "$img" empty.bin
    "$mintflash" storage put -r "$img" tree /Setup
    mtype -i "$img@@1M" ::/big.bin | cmp - big.bin || fail "$img: mtype big.bin differs"
    mtype -i "$img@@1M" ::/hello.txt | cmp - small.txt || fail "$img: mtype Hello.TXT differs"
    mcopy -n -i "$img@@1M" "::/Setup/Projects/01_Widget/01_Program/firmware image.bin" fw.out
    cmp fw.out "tree/Projects/01_Widget/01_Program/firmware image.bin" || fail "$img: mcopy fw differs"
    mdir -i "$img@@1M" ::/ >mdir.txt
    grep -q "Hello.TXT" mdir.txt || fail "$img: mdir does not show the mixed-case long name"
    grep -Eq "^empty +bin +0 " mdir.txt || fail "$img: mdir does not show empty.bin with 0 bytes"
    mdir -/ -b -i "$img@@1M" ::/Setup | sort >tree-mdir.txt
    grep -qx "::/Setup/empty folder/" tree-mdir.txt || fail "$img: empty folder missing: $(cat tree-mdir.txt)"
    grep -qx "::/Setup/Projects/01_Widget/01_Program/job.ini" tree-mdir.txt || fail "$img: job.ini missing"
    fsck_public "$img" "after put"
    echo "ok $secure: put, read by mtools"

    # mtools in, mintflash out.
    mmd -i "$img@@1M" ::/FromMtools ::/FromMtools/Nested
    mcopy -i "$img@@1M" big.bin ::/FromMtools/Nested/Big.Data.bin
    mcopy -i "$img@@1M" small.txt "::/FromMtools/A long name with spaces.txt"
    "$mintflash" storage cat "$img" /FromMtools/Nested/Big.Data.bin | cmp - big.bin ||
        fail "$img: cat of an mcopy'd file differs"
    # Names are looked up case-insensitively.
    "$mintflash" storage cat "$img" "/frommtools/a LONG name with SPACES.TXT" | cmp - small.txt ||
        fail "$img: case-insensitive look-up"
    "$mintflash" storage ls "$img" /FromMtools >ls.txt
    printf 'Nested/\nA long name with spaces.txt\n' | diff -u - ls.txt || fail "$img: ls"
    "$mintflash" storage ls -l "$img" /FromMtools/Nested >ls.txt
    grep -Eq "^- +$(stat -c %s big.bin)  [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}  Big.Data.bin$" ls.txt ||
        { cat ls.txt >&2; fail "$img: ls -l"; }
    mkdir out
    "$mintflash" storage get "$img" /FromMtools/Nested/Big.Data.bin out/
    cmp out/Big.Data.bin big.bin || fail "$img: get of an mcopy'd file differs"
    "$mintflash" storage get -r "$img" /Setup out/setup
    diff -r tree out/setup || fail "$img: get -r of a put -r tree differs"
    "$mintflash" storage get -r "$img" /FromMtools out
    cmp out/FromMtools/Nested/Big.Data.bin big.bin || fail "$img: get -r of an mtools tree"
    echo "ok $secure: mtools in, read by mintflash"

    # Changes made here show in mdir.
    "$mintflash" storage mkdir -p "$img" /a/b/c
    "$mintflash" storage mv "$img" /Hello.TXT /a/b
    "$mintflash" storage mv "$img" /big.bin /a/renamed.bin
    "$mintflash" storage rm "$img" /empty.bin
    "$mintflash" storage rmdir "$img" /a/b/c
    "$mintflash" storage rm -r "$img" /FromMtools
    mdir -/ -b -i "$img@@1M" :: | sort >after.txt
    for want in ::/a/b/Hello.TXT ::/a/renamed.bin; do
        grep -qx "$want" after.txt || fail "$img: $want missing after mv: $(cat after.txt)"
    done
    for gone in ::/empty.bin ::/a/b/c/ ::/FromMtools/ ::/big.bin ::/Hello.TXT; do
        ! grep -qx "$gone" after.txt || fail "$img: $gone still there"
    done
    mtype -i "$img@@1M" ::/a/renamed.bin | cmp - big.bin || fail "$img: moved file differs"
    fsck_public "$img" "after mkdir, mv, rm, rmdir"
    # Overwriting replaces the contents.
    "$mintflash" storage put "$img" small.txt /a/renamed.bin
    mtype -i "$img@@1M" ::/a/renamed.bin | cmp - small.txt || fail "$img: overwrite"
    fsck_public "$img" "after an overwrite"
    rm -rf out
    echo "ok $secure: mkdir, mv, rm, rmdir"
done

# Filling the public area: a clear "no space" error naming the file, and a volume still clean.
"$mintflash" storage init full.img --size 4M >/dev/null
python3 -c 'import sys; sys.stdout.buffer.write(b"x" * (4 * 1024 * 1024))' >huge.bin
set +e
"$mintflash" storage put full.img huge.bin 2>err.txt
status=$?
set -e
[ $status = 1 ] || fail "put of a too-large file exited with $status"
grep -q "full.img: /huge.bin: no space left" err.txt || fail "no-space message: $(cat err.txt)"
[ -z "$("$mintflash" storage ls full.img)" ] || fail "a partial /huge.bin was left behind"
fsck_public full.img "after running out of space"
echo "ok full volume"
