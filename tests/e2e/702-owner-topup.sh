#!/usr/bin/env bash
# `mintflash topup`: the token's bytes (version 2) checked field by field in Python, its Ed25519
# signature with the `cryptography` package; the installation given as the package, or as the
# setup id and the package's not-before time; bad input.
. "$(dirname "$0")/lib/owner.sh" topup

# A programmer's public file, made here (any X25519/Ed25519 keys will do for a token).
python3 - <<'PY'
import base64, hashlib
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives import serialization as ser
raw, rawp = ser.Encoding.Raw, ser.PublicFormat.Raw
xp = x25519.X25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
ep = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
pid = hashlib.sha256(b"mintflash programmer\0" + xp + ep).digest()
h = pid[:10].hex().upper()
open("a.pub", "w").write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n" % (
    "-".join(h[i:i + 4] for i in range(0, 20, 4)), base64.b64encode(xp).decode(),
    base64.b64encode(ep).decode()))
open("a.id", "w").write(pid.hex())
PY

run 0 keygen -o owner
run 0 keygen -o other
id=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
before=$(date +%s)
# Without the package: the setup id and the package's not-before time (1767222000).
run 0 topup --owner-key owner.key --programmer a.pub --setup "$id" \
    --package-time 2025-12-31T23:00:00Z --project 01_Widget --limit 1500 -o t.mft
grep -qF "(package of 2025-12-31T23:00:00Z), project 01_Widget: limit 1500 -> t.mft" out ||
    fail "topup summary: $(cat out)"

check_token() { # check_token FILE PROJECT LIMIT PACKAGE-TIME
    python3 - "$1" "$2" "$3" "$4" "$id" "$before" <<'PY'
import base64, struct, sys, time
from cryptography.hazmat.primitives.asymmetric import ed25519
path, project, limit, package, setup, before = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
d = open(path, "rb").read()
n = d[96]
assert len(d) == 97 + n + 32 + 64, len(d)
assert d[:8] == b"MFTOPUP\x02"
assert d[8:40].hex() == open("a.id").read(), "programmer id"
assert d[40:72].hex() == setup, "setup id"
assert struct.unpack_from("<q", d, 72)[0] == package, "package not-before time"
assert struct.unpack_from("<Q", d, 80)[0] == limit, "limit"
issued = struct.unpack_from("<q", d, 88)[0]
assert before <= issued <= time.time() + 1, "issued"
assert d[97:97 + n].decode() == project, "project"
pub = [l for l in open("owner.pub").read().splitlines() if l.startswith("ed25519: ")][0]
owner = base64.b64decode(pub[9:])
assert d[97 + n:129 + n] == owner, "owner key"
ed25519.Ed25519PublicKey.from_public_bytes(owner).verify(d[129 + n:], d[:129 + n])
PY
}
check_token t.mft 01_Widget 1500 1767222000 || fail "t.mft does not check out"

# The root count; a date alone is the start of that day, as pack --not-before takes it.
run 0 topup --owner-key owner.key --programmer a.pub --setup "$id" --package-time 2026-01-01 \
    --limit 0 -o root.mft
grep -qF "(package of 2026-01-01T00:00:00Z), the root count: limit 0" out ||
    fail "root summary: $(cat out)"
check_token root.mft "" 0 1767225600 || fail "root.mft does not check out"

# From the package itself: its setup id and not-before time, read from its header; the largest
# limit.
mkdir -p setup/Projects/01_W
echo "5" >setup/Projects/01_W/Cntdown.txt
echo "fw" >setup/Projects/01_W/fw.bin
# A package made for this programmer (it only needs its public key to be packed).
run 0 pack --owner-key owner.key --to a.pub --not-before 2026-02-03T04:05:06Z -o s.mfp setup
id=$(cat out)
run 0 topup --owner-key owner.key --programmer a.pub --package s.mfp --project W \
    --limit 4294967295 -o big.mft
check_token big.mft W 4294967295 1770091506 || fail "big.mft does not check out"
grep -qF "setup ${id:0:16}... (package of 2026-02-03T04:05:06Z), project W" out ||
    fail "package summary: $(cat out)"

run 0 topup --help
grep -q '^usage: mintflash topup' out || fail "topup --help"
grep -qF -- "--package-time TIME" out || fail "topup --help names --package-time"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit 5
says "topup needs"
run 2 topup --owner-key owner.key --programmer a.pub --limit 5 -o x.mft
says "--package (or --setup and --package-time)"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit 4294967296 -o x.mft
says "--limit: '4294967296' is not a number from 0 to 4294967295"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit -1 -o x.mft
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit 12abc -o x.mft
# A token names one installation: the setup id alone is not enough.
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 5 -o x.mft
says "--setup needs --package-time"
run 2 topup --owner-key owner.key --programmer a.pub --package-time 2026-01-01 --limit 5 -o x.mft
says "topup needs"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --setup "$id" \
    --package-time 2026-01-01 --limit 5 -o x.mft
says "no --setup or --package-time with it"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --package-time 2026-01-01 \
    --limit 5 -o x.mft
says "no --setup or --package-time with it"
run 2 topup --owner-key owner.key --programmer a.pub --setup 1234 --package-time 2026-01-01 \
    --limit 5 -o x.mft
says "--setup: '1234' is not 64 hex digits (a package goes with --package)"
run 2 topup --owner-key owner.key --programmer a.pub --setup "${id}00" --package-time 2026-01-01 \
    --limit 5 -o x.mft
run 2 topup --owner-key owner.key --programmer a.pub --setup s.mfp --package-time 2026-01-01 \
    --limit 5 -o x.mft
says "a package goes with --package"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --package-time yesterday \
    --limit 5 -o x.mft
says "--package-time: bad date 'yesterday'"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --package-time 1970-01-01 \
    --limit 5 -o x.mft
says "--package-time: a date after 1970 please"
run 1 topup --owner-key owner.key --programmer a.pub --package a.pub --limit 5 -o x.mft
says "not a setup package"
run 1 topup --owner-key owner.key --programmer a.pub --package missing.mfp --limit 5 -o x.mft
says "--package: missing.mfp"
# The package must be one that programmer can install, signed by the key that signs the token.
python3 - <<'PY'
import base64, hashlib
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives import serialization as ser
raw, rawp = ser.Encoding.Raw, ser.PublicFormat.Raw
xp = x25519.X25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
ep = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
h = hashlib.sha256(b"mintflash programmer\0" + xp + ep).digest()[:10].hex().upper()
open("b.pub", "w").write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n" % (
    "-".join(h[i:i + 4] for i in range(0, 20, 4)), base64.b64encode(xp).decode(),
    base64.b64encode(ep).decode()))
PY
run 1 topup --owner-key owner.key --programmer b.pub --package s.mfp --limit 5 -o x.mft
says "s.mfp is not addressed to programmer"
run 1 topup --owner-key other.key --programmer a.pub --package s.mfp --limit 5 -o x.mft
says "--owner-key is owner $(sed -n 's/^fingerprint: //p' other.pub)"
run 2 topup --owner-key owner.key --programmer a.pub --package s.mfp --project Projects/W \
    --limit 5 -o x.mft
says "not a project folder name"
run 1 topup --owner-key owner.key --programmer owner.pub --package s.mfp --limit 5 -o x.mft
says "not a mintflash-programmer file"
chmod 640 owner.key
run 1 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit 5 -o x.mft
says "mode 0640 lets others read the secret key"
chmod 600 owner.key
run 1 topup --owner-key owner.key --programmer a.pub --package s.mfp --limit 5 -o no/x.mft
says "no/x.mft"
[ ! -e x.mft ] || fail "a refused topup wrote x.mft"
echo "ok"
