#!/usr/bin/env bash
# `mintflash sig verify|sign`: UID signatures made here with Python's `cryptography` over the
# published layout ("MFSIG1" || setup id || UID length || UID || serial, u64 LE) verify; another
# UID, serial number, setup or key does not; `sig sign` gives the very bytes Python gives (Ed25519
# is deterministic); raw and hex signature files; bad input.
. "$(dirname "$0")/lib/owner.sh" sig

run 0 keygen -o uid-signing
run 0 keygen -o other
setup=5e7f00112233445566778899aabbccddeeff00112233445566778899aabbccdd
uid=0102030405060708090A0B0C

# sign.py SETUP UID SERIAL OUT [hex]: the signature, made from the seed in uid-signing.key.
cat >sign.py <<'PY'
import base64, sys
from cryptography.hazmat.primitives.asymmetric import ed25519
setup, uid, serial, out = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), \
    int(sys.argv[3]), sys.argv[4]
line = [l for l in open("uid-signing.key").read().splitlines() if l.startswith("ed25519-seed: ")]
seed = base64.b64decode(line[0][len("ed25519-seed: "):])
message = b"MFSIG1" + setup + bytes([len(uid)]) + uid + serial.to_bytes(8, "little")
sig = ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(message)
if len(sys.argv) > 5:
    open(out, "w").write(sig.hex().upper()[:64] + "\n  " + sig.hex()[64:] + "\n")
else:
    open(out, "wb").write(sig)
PY
python3 sign.py "$setup" "$uid" 1000 sig.bin
python3 sign.py "$setup" "$uid" 1000 sig.hex hex

verify() { # verify STATUS ARGS...: sig verify with the job's public key
    local want=$1
    shift
    run "$want" sig verify --pubkey uid-signing.pub "$@"
    if [ "$want" = 0 ]; then
        [ "$(cat out)" = valid ] || fail "sig verify printed '$(cat out)'"
    else
        [ "$(cat out)" = INVALID ] || fail "sig verify printed '$(cat out)'"
    fi
}
verify 0 --setup "$setup" --uid "$uid" --serial 1000 sig.bin
verify 0 --setup "$setup" --uid "0x${uid,,}" --serial 0x3e8 sig.hex
verify 1 --setup "$setup" --uid "$uid" --serial 1001 sig.bin
verify 1 --setup "$setup" --uid 0102030405060708090A0B0D --serial 1000 sig.bin
verify 1 --setup "$setup" --uid 0102030405060708090A0B --serial 1000 sig.bin
verify 1 --setup "${setup%?}e" --uid "$uid" --serial 1000 sig.bin
run 1 sig verify --pubkey other.pub --setup "$setup" --uid "$uid" --serial 1000 sig.bin
[ "$(cat out)" = INVALID ] || fail "another key"
python3 -c "
d = bytearray(open('sig.bin', 'rb').read()); d[10] ^= 4; open('flipped.bin', 'wb').write(d)"
verify 1 --setup "$setup" --uid "$uid" --serial 1000 flipped.bin
# No serial number: 0.
python3 sign.py "$setup" "$uid" 0 sig0.bin
verify 0 --setup "$setup" --uid "$uid" --serial 0 sig0.bin

# sig sign gives the same bytes.
run 0 sig sign --key uid-signing.key --setup "$setup" --uid "$uid" --serial 1000 -o mine.bin
cmp sig.bin mine.bin || fail "sig sign differs from the independent signature"
run 0 sig sign --key uid-signing.key --setup "$setup" --uid "$uid" --serial 1000
[ "$(cat out)" = "$(od -An -tx1 -v sig.bin | tr -d ' \n')" ] || fail "sig sign hex output"

# The setup id taken from a package.
mkdir -p setup/Projects/01_W && echo fw >setup/Projects/01_W/fw.bin
python3 - <<'PY'
import base64, hashlib, os
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives import serialization as ser
raw, rawp = ser.Encoding.Raw, ser.PublicFormat.Raw
xp = x25519.X25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
ep = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(raw, rawp)
h = hashlib.sha256(b"mintflash programmer\0" + xp + ep).digest()[:10].hex().upper()
open("p.pub", "w").write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n" % (
    "-".join(h[i:i + 4] for i in range(0, 20, 4)), base64.b64encode(xp).decode(),
    base64.b64encode(ep).decode()))
PY
run 0 pack --owner-key other.key --to p.pub -o s.mfp setup
pkg_setup=$(cat out)
python3 sign.py "$pkg_setup" "$uid" 7 pkg.bin
verify 0 --setup s.mfp --uid "$uid" --serial 7 pkg.bin

run 0 sig --help
grep -q '^usage: mintflash sig verify' out || fail "sig --help"
run 0 sig verify --help
run 2 sig
run 2 sig check
says "unknown sig command 'check'"
run 2 sig verify --pubkey uid-signing.pub --setup "$setup" --uid "$uid" sig.bin
says "sig verify needs"
run 2 sig verify --pubkey uid-signing.pub --setup "$setup" --uid 123 --serial 1 sig.bin
says "--uid: '123' is not hex digits in pairs"
run 2 sig verify --pubkey uid-signing.pub --setup "$setup" --uid zz --serial 1 sig.bin
run 2 sig verify --pubkey uid-signing.pub --setup "$setup" --uid "$uid" --serial ten sig.bin
says "--serial: 'ten' is not a number"
run 2 sig verify --pubkey uid-signing.pub --setup xyz --uid "$uid" --serial 1 sig.bin
says "neither 64 hex digits nor a package"
head -c 63 sig.bin >short.bin
run 1 sig verify --pubkey uid-signing.pub --setup "$setup" --uid "$uid" --serial 1000 short.bin
says "neither 64 bytes nor 128 hex digits"
run 1 sig verify --pubkey uid-signing.key --setup "$setup" --uid "$uid" --serial 1000 sig.bin
says "not a mintflash-owner file"
run 1 sig verify --pubkey uid-signing.pub --setup "$setup" --uid "$uid" --serial 1000 none.bin
says "none.bin"
run 2 sig sign --pubkey uid-signing.pub --setup "$setup" --uid "$uid" --serial 1
says "unknown option '--pubkey'"
echo "ok"
