#!/usr/bin/env bash
# `mintflash pack`: a sealed setup package checked by an independent reader written here in Python
# from the format (docs/internals/owner.md) over the `cryptography` package and hashlib: X25519
# and a hand-written XSalsa20/HSalsa20 for the sealed content key, HChaCha20 + ChaCha20-Poly1305
# for the manifest and every chunk, a hand-written Ed25519ph check of the owner's signature, and
# the setup id recomputed from the folder. Then every bad input is refused with a clear message.
. "$(dirname "$0")/lib/owner.sh" pack

cat >"$tmp/mfp.py" <<'PY'
"""An independent reader of mintflash's sealed setup packages (.mfp version 1)."""
import base64, hashlib, struct, sys
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305
from cryptography.hazmat.primitives import serialization as ser

M32 = 0xFFFFFFFF

def rotl(v, n):
    return ((v << n) & M32) | (v >> (32 - n))

def salsa_core(state):
    x = list(state)
    def qr(a, b, c, d):
        x[b] ^= rotl((x[a] + x[d]) & M32, 7)
        x[c] ^= rotl((x[b] + x[a]) & M32, 9)
        x[d] ^= rotl((x[c] + x[b]) & M32, 13)
        x[a] ^= rotl((x[d] + x[c]) & M32, 18)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)
    return x

SIGMA = struct.unpack("<4I", b"expand 32-byte k")

def salsa_state(key, n16):
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", n16)
    return [SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1], n[2], n[3],
            SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3]]

def hsalsa20(key, n16):
    x = salsa_core(salsa_state(key, n16))
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))

def salsa20_stream(key, n8, length):
    out = b""
    counter = 0
    while len(out) < length:
        s = salsa_state(key, n8 + struct.pack("<Q", counter))
        x = salsa_core(s)
        out += struct.pack("<16I", *((x[i] + s[i]) & M32 for i in range(16)))
        counter += 1
    return out[:length]

def seal_open(sealed, sk_bytes, pk_bytes):
    """crypto_box_seal_open: ephemeral key || XSalsa20-Poly1305 box (MAC first)."""
    epk, box = sealed[:32], sealed[32:]
    nonce = hashlib.blake2b(epk + pk_bytes, digest_size=24).digest()
    shared = x25519.X25519PrivateKey.from_private_bytes(sk_bytes).exchange(
        x25519.X25519PublicKey.from_public_bytes(epk))
    k = hsalsa20(shared, bytes(16))
    sub = hsalsa20(k, nonce[:16])
    mac, ct = box[:16], box[16:]
    stream = salsa20_stream(sub, nonce[16:], 32 + len(ct))
    Poly1305.verify_tag(stream[:32], ct, mac)
    return bytes(a ^ b for a, b in zip(ct, stream[32:]))

def hchacha20(key, n16):
    x = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574] + list(struct.unpack("<8I", key)) + \
        list(struct.unpack("<4I", n16))
    def qr(a, b, c, d):
        x[a] = (x[a] + x[b]) & M32; x[d] = rotl(x[d] ^ x[a], 16)
        x[c] = (x[c] + x[d]) & M32; x[b] = rotl(x[b] ^ x[c], 12)
        x[a] = (x[a] + x[b]) & M32; x[d] = rotl(x[d] ^ x[a], 8)
        x[c] = (x[c] + x[d]) & M32; x[b] = rotl(x[b] ^ x[c], 7)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(x[i] for i in (0, 1, 2, 3, 12, 13, 14, 15)))

def xchacha_open(key, nonce24, sealed, ad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(bytes(4) + nonce24[16:], sealed, ad)

# Ed25519ph verification (RFC 8032, section 5.1), written out on Python integers.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

def point_add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    A = (y1 - x1) * (y2 - x2) % P
    B = (y1 + x1) * (y2 + x2) % P
    C = 2 * t1 * t2 * D % P
    Dd = 2 * z1 * z2 % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)

def point_mul(s, p):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = point_add(q, p)
        p = point_add(p, p)
        s >>= 1
    return q

def point_eq(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0

def decode_point(s):
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        raise ValueError("bad point")
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        raise ValueError("bad point")
    if (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)

BASE = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))

def ed25519ph_verify(pk, message_hash, sig):
    dom2 = b"SigEd25519 no Ed25519 collisions" + bytes([1, 0])
    R, s = sig[:32], int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    A = decode_point(pk)
    k = int.from_bytes(hashlib.sha512(dom2 + R + pk + message_hash).digest(), "little") % L
    return point_eq(point_mul(s, BASE), point_add(decode_point(R), point_mul(k, A)))

def read_pub(path, want):
    fields = {}
    lines = [l.strip() for l in open(path).read().splitlines() if l.strip()]
    assert lines[0] == want + " 1", lines[0]
    for l in lines[1:]:
        k, v = l.split(":", 1)
        fields[k.strip()] = v.strip()
    return fields

def open_package(data, sk, pk):
    assert data[:8] == b"MFPKG\0\1\0", "magic"
    header_size, = struct.unpack_from("<I", data, 8)
    owner, setup_id = data[12:44], data[44:76]
    nb, na = struct.unpack_from("<qq", data, 76)
    prefix = data[92:108]
    count, total, rc = struct.unpack_from("<IQI", data, 108)
    assert header_size == 124 + 112 * rc
    key = None
    recipients = []
    for r in range(rc):
        entry = data[124 + 112 * r: 124 + 112 * (r + 1)]
        recipients.append(entry[:32])
        if entry[:32] == pk:
            key = seal_open(entry[32:], sk, pk)
    assert key is not None, "not addressed to us"
    hh = hashlib.sha256(data[:header_size]).digest()
    pos = header_size
    mlen, = struct.unpack_from("<I", data, pos)
    pos += 4
    manifest = xchacha_open(key, prefix + struct.pack("<Q", 2**64 - 1), data[pos:pos + mlen], hh)
    pos += mlen
    files, m = [], 0
    for i in range(count):
        n, = struct.unpack_from("<H", manifest, m)
        path = manifest[m + 2:m + 2 + n].decode()
        size, = struct.unpack_from("<Q", manifest, m + 2 + n)
        sha = manifest[m + 10 + n:m + 42 + n]
        m += 42 + n
        files.append([path, size, sha, b""])
    assert m == len(manifest)
    assert sum(f[1] for f in files) == total
    chunk = 65536
    g = 0
    for i, f in enumerate(files):
        chunks = (f[1] + chunk - 1) // chunk
        for k in range(chunks):
            n = min(chunk, f[1] - k * chunk)
            ad = hh + struct.pack("<IIB", i, k, 1 if k + 1 == chunks else 0)
            f[3] += xchacha_open(key, prefix + struct.pack("<Q", g), data[pos:pos + n + 16], ad)
            pos += n + 16
            g += 1
        assert hashlib.sha256(f[3]).digest() == f[2], f[0]
    assert pos == len(data) - 64, "layout"
    assert ed25519ph_verify(owner, hashlib.sha512(data[:-64]).digest(), data[-64:]), "signature"
    return dict(owner=owner, setup_id=setup_id, not_before=nb, not_after=na, files=files,
                recipients=recipients)

def setup_id_of(files):
    """files: (path, bytes) pairs; the programmer's own files are left out."""
    h = hashlib.sha256()
    for path, content in sorted(files, key=lambda f: f[0].upper().encode()):
        base = path.rsplit("/", 1)[-1].upper()
        if base in ("CNTDOWN.TXT", "SERIAL.TXT"):
            continue
        if "/" not in path and base in ("FLASHER.INI", "FLASHER.LOG", "FLASHER.OLD"):
            continue
        h.update(path.upper().encode() + b"\0" + struct.pack("<Q", len(content)) + content)
    return h.digest()

def make_programmer(prefix):
    xs = x25519.X25519PrivateKey.generate()
    es = ed25519.Ed25519PrivateKey.generate()
    raw, rawp = ser.Encoding.Raw, ser.PublicFormat.Raw
    xp = xs.public_key().public_bytes(raw, rawp)
    ep = es.public_key().public_bytes(raw, rawp)
    pid = hashlib.sha256(b"mintflash programmer\0" + xp + ep).digest()
    h = pid[:10].hex().upper()
    fp = "-".join(h[i:i + 4] for i in range(0, 20, 4))
    with open(prefix + ".pub", "w") as f:
        f.write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n"
                % (fp, base64.b64encode(xp).decode(), base64.b64encode(ep).decode()))
    sk = xs.private_bytes(raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    with open(prefix + ".x25519", "wb") as f:
        f.write(sk)
PY

cd "$tmp"
py() { python3 -c "import sys; sys.path.insert(0, '$tmp'); from mfp import *; $1"; }

run 0 keygen -o owner
py "make_programmer('a'); make_programmer('b'); make_programmer('c')"

# A setup folder with every kind of file: programmer files, a file of several chunks, an empty
# file, nested folders, names in mixed case.
mkdir -p setup/Projects/01_Widget/01_App setup/Projects/02_Gadget/01_Fw setup/docs/deep/er
printf '[CONFIG]\nProject = 01_Widget\n' >setup/FLASHER.INI
printf '5\n' >setup/Projects/01_Widget/Cntdown.txt
printf '1000\n' >setup/Projects/01_Widget/Serial.txt
printf '[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\naddress = 0x08000000\n' \
    >setup/Projects/01_Widget/01_App/job.ini
head -c 200000 /dev/urandom >setup/Projects/01_Widget/01_App/app.bin
head -c 65536 /dev/urandom >setup/Projects/02_Gadget/01_Fw/exact.bin
: >setup/docs/empty.txt
echo "notes" >setup/docs/deep/er/Notes.TXT
echo "x" >setup/Docs-x.txt

run 0 pack --owner-key owner.key --to a.pub --to b.pub -o setup.mfp setup
id=$(cat out)
[[ "$id" =~ ^[0-9a-f]{64}$ ]] || fail "pack printed '$id', not a setup id"
says "packed 9 files"
says "for 2 programmers into setup.mfp"
[ ! -e setup.mfp.part ] || fail "the partial file was left behind"

# The independent reader: every file decrypts to its bytes; the setup id, the owner, the dates,
# the recipients and the signature are what they must be.
py "
import os, time
data = open('setup.mfp', 'rb').read()
for who in ('a', 'b'):
    sk = open(who + '.x25519', 'rb').read()
    pk = base64.b64decode(read_pub(who + '.pub', 'mintflash-programmer')['x25519'])
    pkg = open_package(data, sk, pk)
    ours = []
    for root, dirs, names in os.walk('setup'):
        for n in names:
            p = os.path.join(root, n)
            ours.append((os.path.relpath(p, 'setup'), open(p, 'rb').read()))
    got = {f[0]: f[3] for f in pkg['files']}
    assert got == dict(ours), 'contents differ'
    order = [f[0] for f in pkg['files']]
    assert order == sorted(order, key=lambda p: p.upper().encode()), 'manifest order'
    assert pkg['setup_id'] == setup_id_of(ours), 'setup id in the header'
    assert pkg['setup_id'].hex() == '$id', 'printed setup id'
    owner = base64.b64decode(read_pub('owner.pub', 'mintflash-owner')['ed25519'])
    assert pkg['owner'] == owner, 'owner'
    assert abs(pkg['not_before'] - (time.time() - 3600)) < 120, pkg['not_before']
    assert pkg['not_after'] == 0
    assert len(pkg['recipients']) == 2
# Not for c; and a flipped byte breaks the signature check here too.
c_sk = open('c.x25519', 'rb').read()
c_pk = base64.b64decode(read_pub('c.pub', 'mintflash-programmer')['x25519'])
try:
    open_package(data, c_sk, c_pk)
    raise SystemExit('c could open it')
except AssertionError as e:
    assert 'not addressed' in str(e)
owner = data[12:44]
bad = bytearray(data); bad[-100] ^= 1
assert not ed25519ph_verify(owner, hashlib.sha512(bytes(bad[:-64])).digest(), bytes(bad[-64:]))
" || fail "the independent reader refused the package"

# Dates: a day alone is its start (not-before) or its end (not-after), in UTC.
run 0 pack --owner-key owner.key --to a.pub --not-before 2026-01-01 --not-after 2026-12-31 \
    -o dated.mfp setup
py "
d = open('dated.mfp', 'rb').read()
nb, na = struct.unpack_from('<qq', d, 76)
assert (nb, na) == (1767225600, 1798761599), (nb, na)
" || fail "dates"
run 0 pack --owner-key owner.key --to a.pub --not-before=2026-03-01T12:30:00Z \
    --output=dated2.mfp setup
py "
d = open('dated2.mfp', 'rb').read()
assert struct.unpack_from('<qq', d, 76) == (1772368200, 0)
" || fail "a full time"

# The same folder packed again gives the same setup id (it does not depend on the time).
run 0 pack --owner-key owner.key --to c.pub -o again.mfp setup
[ "$(cat out)" = "$id" ] || fail "the setup id changed between packs"
# The programmer's own files do not count; content does.
echo "9" >setup/Projects/01_Widget/Cntdown.txt
run 0 pack --owner-key owner.key --to a.pub -o counts.mfp setup
[ "$(cat out)" = "$id" ] || fail "Cntdown.txt changed the setup id"
echo "more" >>setup/docs/empty.txt
run 0 pack --owner-key owner.key --to a.pub -o content.mfp setup
[ "$(cat out)" != "$id" ] || fail "content did not change the setup id"

# --help and bad input.
run 0 pack --help
grep -q '^usage: mintflash pack' out || fail "pack --help"
run 2 pack
says "pack needs --owner-key"
run 2 pack --owner-key owner.key --to a.pub setup
says "-o"
run 2 pack --owner-key owner.key --to a.pub -o x.mfp
run 2 pack --owner-key owner.key --to a.pub -o x.mfp setup extra
says "unexpected argument 'extra'"
run 2 pack --owner-key owner.key --to a.pub --frobnicate -o x.mfp setup
says "unknown option '--frobnicate'"
run 2 pack --owner-key owner.key --to a.pub --not-before 2026-02-30 -o x.mfp setup
says "bad date '2026-02-30'"
run 2 pack --owner-key owner.key --to a.pub --not-after tomorrow -o x.mfp setup
says "bad date 'tomorrow'"
run 2 pack --owner-key owner.key --to a.pub --not-before 2026-02-01 --not-after 2026-01-01 \
    -o x.mfp setup
says "--not-after is before --not-before"
run 2 pack --owner-key owner.key --to a.pub --not-after 2020-01-01 -o x.mfp setup
says "in the past"
run 2 pack --owner-key owner.key --to a.pub --owner-key owner.key -o x.mfp setup
says "given twice"
args=()
for i in $(seq 65); do args+=(--to a.pub); done
run 2 pack --owner-key owner.key "${args[@]}" -o x.mfp setup
says "at most 64 times '--to'"
run 1 pack --owner-key owner.key --to a.pub -o x.mfp nothing
says "nothing: not a folder"
mkdir empty
run 1 pack --owner-key owner.key --to a.pub -o x.mfp empty
says "no files to pack"
run 1 pack --owner-key owner.key --to a.pub -o setup/inside.mfp setup
says "inside the folder it packs"
run 1 pack --owner-key owner.key --to missing.pub -o x.mfp setup
says "missing.pub"
sed 's/^fingerprint: ..../fingerprint: 0000/' a.pub >tampered.pub
run 1 pack --owner-key owner.key --to tampered.pub -o x.mfp setup
says "tampered.pub: fingerprint"
says "does not match the keys"
run 1 pack --owner-key owner.pub --to a.pub -o x.mfp setup
says "not a mintflash-owner-secret file"
cp owner.key loose.key
chmod 644 loose.key
run 1 pack --owner-key loose.key --to a.pub -o x.mfp setup
says "lets others read the secret key: refused"
run 1 pack --owner-key owner.key --to owner.pub -o x.mfp setup
says "not a mintflash-programmer file"
mkdir -p long
name=$(printf 'n%.0s' $(seq 250))
mkdir -p "long/$name" && echo x >"long/$name/file.txt"
run 1 pack --owner-key owner.key --to a.pub -o x.mfp long
says "longer than 255 bytes"
ln -s /dev/null setup/device
run 1 pack --owner-key owner.key --to a.pub -o x.mfp setup
says "neither a file nor a folder"
rm setup/device
run 1 pack --owner-key owner.key --to a.pub -o /nonexistent-dir/x.mfp setup
says "/nonexistent-dir/x.mfp.part"
[ ! -e x.mfp ] || fail "a refused pack left x.mfp"
echo "ok"
