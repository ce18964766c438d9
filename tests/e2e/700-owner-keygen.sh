#!/usr/bin/env bash
# `mintflash keygen`: the owner's key files, their modes and formats, checked with Python's
# `cryptography` (the public key is the seed's) and hashlib (the fingerprint); existing keys are
# never overwritten; --help and bad input.
. "$(dirname "$0")/lib/owner.sh" keygen

run 0 keygen -o owner
[ "$(stat -c %a owner.key)" = 600 ] || fail "owner.key has mode $(stat -c %a owner.key)"
[ "$(stat -c %a owner.pub)" = 644 ] || fail "owner.pub has mode $(stat -c %a owner.pub)"
fp=$(sed -n 's/^fingerprint: //p' out)
[[ "$fp" =~ ^[0-9A-F]{4}(-[0-9A-F]{4}){4}$ ]] || fail "fingerprint '$fp'"
grep -qxF "secret key: owner.key" out || fail "keygen does not name owner.key"
grep -qxF "public key: owner.pub" out || fail "keygen does not name owner.pub"
grep -q "ed25519-seed" out && fail "keygen printed the secret"
seed_b64=$(sed -n 's/^ed25519-seed: //p' owner.key)
grep -qF "$seed_b64" out && fail "keygen printed the secret"

# The formats, line by line; the public key is the seed's; the fingerprint is the hash's.
python3 - "$fp" <<'PY' || fail "the key files do not check out"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives import serialization as ser
key = open("owner.key").read().split("\n")
pub = open("owner.pub").read().split("\n")
assert key[0] == "mintflash-owner-secret 1" and key[1].startswith("ed25519-seed: ") and \
    key[2:] == [""], key
assert pub[0] == "mintflash-owner 1" and pub[1].startswith("fingerprint: ") and \
    pub[2].startswith("ed25519: ") and pub[3:] == [""], pub
seed = base64.b64decode(key[1][len("ed25519-seed: "):], validate=True)
pk = base64.b64decode(pub[2][len("ed25519: "):], validate=True)
assert len(seed) == 32 and len(pk) == 32
derived = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
    ser.Encoding.Raw, ser.PublicFormat.Raw)
assert derived == pk, "public key is not the seed's"
h = hashlib.sha256(b"mintflash owner\0" + pk).digest()[:10].hex().upper()
fp = "-".join(h[i:i + 4] for i in range(0, 20, 4))
assert pub[1] == "fingerprint: " + fp and sys.argv[1] == fp, (pub[1], fp, sys.argv[1])
PY

# Two key pairs differ.
run 0 keygen --output second
cmp -s owner.key second.key && fail "two keygens made the same key"

# Never overwrite: neither file may exist already.
cp owner.key saved.key
run 1 keygen -o owner
says "owner.key exists: refusing to overwrite"
cmp -s owner.key saved.key || fail "owner.key was changed"
rm second.key
run 1 keygen -o second
says "second.pub exists"
[ ! -e second.key ] || fail "a refused keygen left second.key"

# A folder that does not exist: nothing is left half made.
run 1 keygen -o nowhere/key
says "nowhere/key.key"
[ ! -e nowhere ] || fail "keygen made a folder"

# A prefix that names a folder would make hidden keys/.key and keys/.pub.
mkdir keys
run 2 keygen -o keys/
says "PREFIX names the files, not a folder: give e.g. keys/owner"
[ -z "$(ls -A keys)" ] || fail "keygen -o keys/ made $(ls -A keys)"
for folder in keys/. keys/.. .; do
    run 2 keygen -o "$folder"
    says "PREFIX names the files, not a folder"
done
[ -z "$(ls -A keys)" ] && [ ! -e ..key ] && [ ! -e ..pub ] || fail "keygen -o with . or .. made $(ls -A . keys)"

run 0 keygen --help
grep -q '^usage: mintflash keygen -o PREFIX' out || fail "keygen --help"
run 0 keygen -h
run 2 keygen
says "keygen needs -o PREFIX"
run 2 keygen -o
says "option '-o' needs a value"
run 2 keygen -o a -o b
says "given twice"
run 2 keygen -o a extra
says "unexpected argument 'extra'"
run 2 keygen --bits 4096 -o a
says "unknown option '--bits'"
echo "ok"
