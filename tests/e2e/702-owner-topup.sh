#!/usr/bin/env bash
# `mintflash topup`: the token's bytes checked field by field in Python, its Ed25519 signature
# with the `cryptography` package; the setup id given as hex or as the package; bad input.
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
id=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
before=$(date +%s)
run 0 topup --owner-key owner.key --programmer a.pub --setup "$id" --project 01_Widget \
    --limit 1500 -o t.mft
grep -qF "project 01_Widget: limit 1500 -> t.mft" out || fail "topup summary: $(cat out)"

check_token() { # check_token FILE PROJECT LIMIT
    python3 - "$1" "$2" "$3" "$id" "$before" <<'PY'
import base64, struct, sys, time
from cryptography.hazmat.primitives.asymmetric import ed25519
path, project, limit, setup, before = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
    int(sys.argv[5])
d = open(path, "rb").read()
n = d[88]
assert len(d) == 89 + n + 32 + 64, len(d)
assert d[:8] == b"MFTOPUP\x01"
assert d[8:40].hex() == open("a.id").read(), "programmer id"
assert d[40:72].hex() == setup, "setup id"
assert struct.unpack_from("<Q", d, 72)[0] == limit, "limit"
issued = struct.unpack_from("<q", d, 80)[0]
assert before <= issued <= time.time() + 1, "issued"
assert d[89:89 + n].decode() == project, "project"
pub = [l for l in open("owner.pub").read().splitlines() if l.startswith("ed25519: ")][0]
owner = base64.b64decode(pub[9:])
assert d[89 + n:121 + n] == owner, "owner key"
ed25519.Ed25519PublicKey.from_public_bytes(owner).verify(d[121 + n:], d[:121 + n])
PY
}
check_token t.mft 01_Widget 1500 || fail "t.mft does not check out"

# The root count; the setup id taken from the package itself; the largest limit.
run 0 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 0 -o root.mft
grep -qF "the root count: limit 0" out || fail "root summary: $(cat out)"
check_token root.mft "" 0 || fail "root.mft does not check out"
mkdir -p setup/Projects/01_W
echo "5" >setup/Projects/01_W/Cntdown.txt
echo "fw" >setup/Projects/01_W/fw.bin
# A package made for this programmer (it only needs its public key to be packed).
run 0 pack --owner-key owner.key --to a.pub -o s.mfp setup
id=$(cat out)
run 0 topup --owner-key owner.key --programmer a.pub --setup s.mfp --project W --limit 4294967295 \
    -o big.mft
check_token big.mft W 4294967295 || fail "big.mft does not check out"

run 0 topup --help
grep -q '^usage: mintflash topup' out || fail "topup --help"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 5
says "topup needs"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 4294967296 -o x.mft
says "--limit: '4294967296' is not a number from 0 to 4294967295"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit -1 -o x.mft
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 12abc -o x.mft
run 2 topup --owner-key owner.key --programmer a.pub --setup 1234 --limit 5 -o x.mft
says "neither 64 hex digits nor a package"
run 2 topup --owner-key owner.key --programmer a.pub --setup "${id}00" --limit 5 -o x.mft
run 1 topup --owner-key owner.key --programmer a.pub --setup a.pub --limit 5 -o x.mft
says "not a setup package"
run 2 topup --owner-key owner.key --programmer a.pub --setup "$id" --project Projects/W \
    --limit 5 -o x.mft
says "not a project folder name"
run 1 topup --owner-key owner.key --programmer owner.pub --setup "$id" --limit 5 -o x.mft
says "not a mintflash-programmer file"
chmod 640 owner.key
run 1 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 5 -o x.mft
says "mode 0640 lets others read the secret key"
chmod 600 owner.key
run 1 topup --owner-key owner.key --programmer a.pub --setup "$id" --limit 5 -o no/x.mft
says "no/x.mft"
[ ! -e x.mft ] || fail "a refused topup wrote x.mft"
echo "ok"
