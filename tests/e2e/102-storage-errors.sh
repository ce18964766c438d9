#!/usr/bin/env bash
# `mintflash storage` when things are wrong: help (status 0), usage errors (status 2), bad sizes,
# missing, foreign, damaged, locked and existing images (status 1 with a message naming the
# image and the reason), an interrupted repartition and its recovery, and images made by
# sfdisk + mkfs.fat + mcopy, which are read as they are.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-102.XXXXXX")
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

# Help for the group and every command: stdout, status 0.
run 0 "$mintflash" storage --help
grep -q "^usage: mintflash storage <command> IMG" out.txt || fail "storage --help"
for c in init info recover ls put get cat rm mkdir rmdir mv; do
    run 0 "$mintflash" storage "$c" --help
    grep -q "^usage: mintflash storage $c IMG" out.txt || fail "$c --help: $(cat out.txt)"
    [ ! -s err.txt ] || fail "$c --help wrote to stderr"
done
echo "ok help"

# Usage errors.
run 2 "$mintflash" storage
run 2 "$mintflash" storage format x.img
stderr_is "mintflash: storage: unknown command 'format' (try 'mintflash storage --help')"
run 2 "$mintflash" storage init
stderr_is "mintflash: storage init: missing the image (usage: mintflash storage init IMG [--size SIZE] [--secure-area] [--label LABEL] [--force])"
run 2 "$mintflash" storage init x.img --size
stderr_is "mintflash: storage init: option '--size' needs a value (try 'mintflash storage init --help')"
run 2 "$mintflash" storage init x.img --sise 4M
stderr_is "mintflash: storage init: unknown option '--sise' (try 'mintflash storage init --help')"
run 2 "$mintflash" storage init x.img y.img
stderr_is "mintflash: storage init: unexpected argument 'y.img' (try 'mintflash storage init --help')"
run 2 "$mintflash" storage init x.img --size 12Q
stderr_is "mintflash: storage init: --size '12Q' is not a size (examples: 4M, 128M, 1G, 4194304)"
run 2 "$mintflash" storage init x.img --size 3M
stderr_is "mintflash: storage init: --size 3M is too small: a storage image needs at least 4 MiB"
run 2 "$mintflash" storage init x.img --size 4194305
stderr_is "mintflash: storage init: --size 4194305 is not a multiple of 512 bytes"
run 2 "$mintflash" storage init x.img --size 3T
stderr_is "mintflash: storage init: --size 3T is too large: an MBR describes at most 2199023255040 bytes"
run 2 "$mintflash" storage init x.img --label "TWELVE CHARS"
stderr_is "mintflash: storage init: --label 'TWELVE CHARS' must have 1 to 11 characters"
run 2 "$mintflash" storage init x.img --label "A/B"
stderr_is "mintflash: storage init: --label 'A/B' may only hold printable ASCII characters other than \"*+,./:;<=>?[\\]|"
[ ! -e x.img ] || fail "refused init left x.img behind"
run 2 "$mintflash" storage put x.img
run 2 "$mintflash" storage mv x.img /a
echo "ok usage errors"

# Missing, empty, foreign and damaged images.
run 1 "$mintflash" storage info missing.img
stderr_is "mintflash: storage info: missing.img: cannot open: No such file or directory"
run 1 "$mintflash" storage ls missing.img
stderr_is "mintflash: storage ls: missing.img: cannot open: No such file or directory"
: >empty.img
run 1 "$mintflash" storage info empty.img
stderr_is "mintflash: storage info: empty.img: too small (0 bytes; not even one 512-byte block)"
truncate -s 4M blank.img
run 1 "$mintflash" storage ls blank.img
stderr_is "mintflash: storage ls: blank.img: not a usable storage image: no partition table: the first sector is blank (not initialised)"
mkfs.fat -C bare.img 4096 >/dev/null
run 1 "$mintflash" storage info bare.img
stderr_is "mintflash: storage info: bare.img: not a usable storage image: no partition table: the image is a bare FAT volume; a storage image has an MBR with the FAT volume as partition 1"
truncate -s 8M linux.img
printf 'start=2048, type=83\n' | sfdisk -q linux.img
run 1 "$mintflash" storage info linux.img
stderr_is "mintflash: storage info: linux.img: not a usable storage image: partition 1 (type 0x83, at sector 2048) holds no FAT file system: no boot sector signature 0x55AA"
truncate -s 8M two.img
printf 'start=2048, size=4096, type=c\nstart=6144, type=83\n' | sfdisk -q two.img
run 1 "$mintflash" storage info two.img
stderr_is "mintflash: storage info: two.img: not a usable storage image: partition table: partition 2 has type 0x83; a secure area has type 0xDA"
# A table whose partition reaches past the end of the image (the image was cut short).
"$mintflash" storage init cut.img --size 8M >/dev/null
truncate -s 6M cut.img
run 1 "$mintflash" storage ls cut.img
stderr_is "mintflash: storage ls: cut.img: not a usable storage image: partition table: partition 1 (sectors 2048-16383) ends beyond the disk (12288 sectors)"
echo "ok bad images"

# A user's own image, made with sfdisk, mkfs.fat and mcopy (type 0x0C, partition at 2 MiB):
# read as it is, files readable and writable.
truncate -s 16M user.img
printf 'start=4096, type=c\n' | sfdisk -q user.img
truncate -s 14M userpart.img
mkfs.fat -n USERVOL userpart.img >/dev/null
printf 'made by mtools\n' >note.txt
mcopy -i userpart.img note.txt ::/Note.txt
dd if=userpart.img of=user.img bs=1M seek=2 conv=notrunc,sparse status=none
run 0 "$mintflash" storage info user.img
grep -q "^partition table: MBR, disk signature 0x[0-9A-F]*, not written by mintflash$" out.txt ||
    fail "user image: $(cat out.txt)"
grep -q "^public area:     partition 1, offset 2097152 (2 MiB), size 14680064 bytes (14 MiB), type 0x0C" out.txt ||
    fail "user image layout: $(cat out.txt)"
grep -q "^file system:     FAT16, label \"USERVOL\"" out.txt || fail "user image FAT: $(cat out.txt)"
run 0 "$mintflash" storage cat user.img /note.txt
cmp out.txt note.txt || fail "user image: cat"
run 0 "$mintflash" storage put user.img note.txt /Copy.txt
mtype -i user.img@@2M ::/Copy.txt | cmp - note.txt || fail "user image: put"
run 0 "$mintflash" storage info --json user.img
grep -q '"state": "foreign"' out.txt || fail "user image json state"
echo "ok foreign image"

# Refusing to overwrite.
"$mintflash" storage init img.img --size 4M >/dev/null
printf 'precious\n' >precious.txt
"$mintflash" storage put img.img precious.txt
run 1 "$mintflash" storage init img.img --size 8M
stderr_is "mintflash: storage init: img.img already exists and is not empty; add --force to overwrite it (everything on it is lost)"
[ "$(stat -c %s img.img)" = 4194304 ] || fail "refused init changed the image"
"$mintflash" storage cat img.img /precious.txt | cmp - precious.txt || fail "refused init lost data"
# A refused argument never reaches the image, even with --force.
run 2 "$mintflash" storage init img.img --size 8M --force --label "BAD*LABEL"
"$mintflash" storage cat img.img /precious.txt | cmp - precious.txt || fail "refused --force lost data"
run 0 "$mintflash" storage init img.img --size 8M --force --label NEWONE
[ "$(stat -c %s img.img)" = 8388608 ] || fail "--force did not resize"
run 0 "$mintflash" storage ls img.img
[ ! -s out.txt ] || fail "--force kept files: $(cat out.txt)"
mdir -i img.img@@1M :: | grep -q "Volume in drive : is NEWONE" || fail "--label"
echo "ok overwrite"

# Locked images: while another program holds the lock, every command refuses with a message
# naming the image; readers share a lock with each other.
run 1 flock -n img.img "$mintflash" storage ls img.img
stderr_is "mintflash: storage ls: img.img: in use by another program (locked; is mintflashd or another mintflash using it?)"
run 1 flock -n img.img "$mintflash" storage put img.img precious.txt
grep -q "img.img: in use by another program" err.txt || fail "put while locked"
run 1 flock -n img.img "$mintflash" storage init img.img --force
grep -q "img.img: in use by another program" err.txt || fail "init while locked"
run 0 flock -n -s img.img "$mintflash" storage ls img.img
run 0 flock -n -s img.img "$mintflash" storage info img.img
run 1 flock -n -s img.img "$mintflash" storage mkdir img.img /x
grep -q "img.img: in use by another program" err.txt || fail "mkdir while read-locked"
echo "ok locks"

# Files that are not there, folders that are, and names FAT cannot hold.
run 1 "$mintflash" storage cat img.img /nothing.txt
stderr_is "mintflash: storage cat: img.img: /nothing.txt: no such file or directory"
run 1 "$mintflash" storage put img.img missing-local.txt
stderr_is "mintflash: storage put: missing-local.txt: No such file or directory"
mkdir dir
run 1 "$mintflash" storage put img.img dir
stderr_is "mintflash: storage put: dir is a folder (add -r to copy it with its contents)"
"$mintflash" storage mkdir img.img /Folder
run 1 "$mintflash" storage rm img.img /Folder
stderr_is "mintflash: storage rm: /Folder is a folder (use rmdir, or rm -r to remove it with its contents)"
run 1 "$mintflash" storage get img.img /Folder
stderr_is "mintflash: storage get: /Folder is a folder (add -r to copy it with its contents)"
run 1 "$mintflash" storage mkdir img.img /Folder
stderr_is "mintflash: storage mkdir: img.img: /Folder: file exists"
run 0 "$mintflash" storage mkdir -p img.img /Folder
run 1 "$mintflash" storage put img.img precious.txt '/bad:name.txt'
grep -q "^mintflash: storage put: img.img: /bad:name.txt: " err.txt || fail "bad name: $(cat err.txt)"
"$mintflash" storage put img.img precious.txt /Folder/
run 1 "$mintflash" storage rmdir img.img /Folder
stderr_is "mintflash: storage rmdir: img.img: /Folder: directory not empty"
run 1 "$mintflash" storage rm img.img /
stderr_is "mintflash: storage rm: refusing to remove the root folder"
echo "ok file errors"

# An interrupted repartition (the record says FORMATTING, as a power cut would leave it):
# readers refuse and point to recover; recover completes it; info says so throughout.
"$mintflash" storage init cut2.img --size 4M --secure-area >/dev/null
"$mintflash" storage put cut2.img precious.txt
python3 - <<'EOF'
import struct, zlib
with open("cut2.img", "r+b") as f:
    s = bytearray(f.read(512))
    assert s[384:392] == b"MINTSTOR"
    s[394] = 2  # state FORMATTING
    crc = zlib.crc32(bytes(s[384:428]) + bytes(s[440:510])) & 0xFFFFFFFF
    s[428:432] = struct.pack("<I", crc)
    f.seek(0)
    f.write(s)
EOF
run 0 "$mintflash" storage info cut2.img
grep -q "repartition interrupted (run 'mintflash storage recover')" out.txt || fail "info: $(cat out.txt)"
grep -q "^file system:     none (not yet formatted)" out.txt || fail "info fs: $(cat out.txt)"
run 1 "$mintflash" storage ls cut2.img
stderr_is "mintflash: storage ls: cut2.img: a repartition was interrupted (power cut?); run 'mintflash storage recover cut2.img' to complete it"
run 0 "$mintflash" storage recover cut2.img
run 0 "$mintflash" storage ls cut2.img
[ ! -s out.txt ] || fail "recovered public area is not empty"
run 0 "$mintflash" storage info --json cut2.img
grep -q '"state": "ready"' out.txt || fail "not ready after recover"
grep -q '"secure_area": {"partition": 2' out.txt || fail "secure area lost by recover"
run 0 "$mintflash" storage recover cut2.img
grep -q "nothing to recover" out.txt || fail "second recover: $(cat out.txt)"
echo "ok interrupted repartition"

# A file size limit (ulimit -f) makes writes fail with EFBIG: a named error and no image left,
# not a death by SIGXFSZ; the same for the daemon, which makes its image at start.
run 1 bash -c 'ulimit -f 1024; exec "$0" storage init limited.img --size 8M' "$mintflash"
stderr_is "mintflash: storage init: limited.img: cannot set the size: File too large"
[ ! -e limited.img ] || fail "a half-made image was left"
run 1 bash -c 'ulimit -f 1024; exec "$0" --storage limited.img --size 8M --tcp 127.0.0.1:0 --socket "$PWD/d.sock" --nbd off --sim-dir "$PWD/sim"' "$MF_BUILD/mintflashd"
grep -q "^mintflashd: limited.img: cannot set the size: File too large$" err.txt ||
    fail "daemon under ulimit -f: $(cat err.txt)"
[ ! -e limited.img ] || fail "the daemon left a half-made image"
echo "ok file size limit"
