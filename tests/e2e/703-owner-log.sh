#!/usr/bin/env bash
# `mintflash log verify|export`: production records written here by an independent writer (Python,
# Ed25519 from the `cryptography` package, the line format of docs/internals/owner.md) over two
# files verify as intact with the right totals; each kind of tampering (edit, delete in the middle,
# delete the newest and the programmer's gap record, reorder, forge with another key, records of
# another programmer) is reported and fails; export gives the same records as CSV and JSON.
. "$(dirname "$0")/lib/owner.sh" log

# writer.py PROGRAMMER OUT SPEC...: writes records of programmer PROGRAMMER (its key in
# PROGRAMMER.key, made on first use, and PROGRAMMER.pub) into OUT. SPEC is
# seq:result[:serial] with result OK, ERR or GAP-first-last; "fp=OTHER" signs as this programmer
# but writes OTHER's fingerprint; "new-setup" goes on with another setup id in the same chain,
# "new-chain" starts a chain afresh (prev zeros); "count+N" has the trust anchor's counter take N
# counts no record shows. The counter goes up by the cycles each record accounts for.
# head.py PROGRAMMER RECORDS OUT NONCE PENDING: the programmer's head statement for NONCE about the
# last record of RECORDS (its counter, PENDING cycles without a record yet).
cat >writer.py <<'PY'
import base64, hashlib, os, sys
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives import serialization as ser
raw, rawp = ser.Encoding.Raw, ser.PublicFormat.Raw

def identity(name):
    if not os.path.exists(name + ".key"):
        open(name + ".key", "wb").write(os.urandom(64))
    secret = open(name + ".key", "rb").read()
    xp = x25519.X25519PrivateKey.from_private_bytes(secret[:32]).public_key().public_bytes(raw, rawp)
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(secret[32:])
    ep = sk.public_key().public_bytes(raw, rawp)
    h = hashlib.sha256(b"mintflash programmer\0" + xp + ep).digest()[:10].hex().upper()
    fp = "-".join(h[i:i + 4] for i in range(0, 20, 4))
    open(name + ".pub", "w").write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\n"
                                   "ed25519: %s\n" % (fp, base64.b64encode(xp).decode(),
                                                      base64.b64encode(ep).decode()))
    return sk, fp

signer, out = sys.argv[1], sys.argv[2]
sk, fp = identity(signer)
setup = "ab" * 32
prev = bytes(32)
counter = 0
lines = []
for spec in sys.argv[3:]:
    if spec.startswith("fp="):
        fp = identity(spec[3:])[1]
        continue
    if spec == "new-setup":
        setup = "cd" * 32
        continue
    if spec == "new-chain":
        prev = bytes(32)
        continue
    if spec.startswith("count+"):
        counter += int(spec[6:])
        continue
    parts = spec.split(":")
    seq, result = int(parts[0]), parts[1]
    serial = parts[2] if len(parts) > 2 else str(1000 + seq)
    note = ""
    cycles = 1
    if result.startswith("ERR+"):  # ERR+unrecorded.2: an ERR record with note=unrecorded:2
        result, note = "ERR", " note=" + result[4:].replace(".", ":")
        cycles = int(note.split(":")[-1])
    if result.startswith("GAP"):
        _, first, last = result.split("-")
        result, note, serial, cycles = "GAP", " note=gap:%s-%s" % (first, last), "-", 0
    counter += cycles
    project = "01_Widget" if seq % 3 else "02_Big%20Gadget"
    body = ("MFR1 seq=%d prev=%s time=2026-03-%02dT10:%02d:00Z programmer=%s setup=%s "
            "project=%s slot=%d uid=%s serial=%s result=%s counter=%d%s"
            % (seq, prev.hex(), 1 + seq // 60, seq % 60, fp, setup, project, 1 + seq % 2,
               "%024x" % (0xC0FFEE00 + seq), serial, result, counter, note))
    sig = base64.b64encode(sk.sign(body.encode())).decode()
    lines.append(body + " sig=" + sig + "\n")
    prev = hashlib.sha256(body.encode()).digest()
open(out, "w").writelines(lines)
PY
cat >head.py <<'PY'
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric import ed25519
signer, records, out, nonce, pending = sys.argv[1:6]
sk = ed25519.Ed25519PrivateKey.from_private_bytes(open(signer + ".key", "rb").read()[32:])
fp = [l.split(": ")[1].strip() for l in open(signer + ".pub") if l.startswith("fingerprint:")][0]
last = open(records).read().splitlines()[-1]
body = last[:last.index(" sig=")]
f = dict(x.split("=", 1) for x in body.split(" ")[1:])
head = ("MFH1 nonce=%s time=2026-03-02T12:00:00Z programmer=%s setup=%s seq=%s head=%s "
        "counter=%s pending=%s" % (nonce, fp, f["setup"], f["seq"],
                                   hashlib.sha256(body.encode()).hexdigest(), f["counter"],
                                   pending))
open(out, "w").write(head + " sig=" + base64.b64encode(sk.sign(head.encode())).decode() + "\n")
PY

# Records 1-6 in RECORDS.000, 7-10 in RECORDS.001 (the chain goes on across files).
python3 writer.py prog all.txt 1:OK 2:OK 3:ERR 4:OK 5:OK 6:OK 7:OK 8:ERR:- 9:OK 10:OK
head -n 6 all.txt >RECORDS.000
tail -n 4 all.txt >RECORDS.001
run 0 log verify --programmer prog.pub RECORDS.000 RECORDS.001
has "records: 10"
has "verified: 10"
has "chain breaks: 0"
has "setups: 1"
has "first: 2026-03-01T10:01:00Z"
has "last: 2026-03-01T10:10:00Z"
has "total: setup=$(printf 'ab%.0s' $(seq 32)) project=01_Widget ok=6 failed=1 serials=6 serial_min=1001 serial_max=1010"
has "project=02_Big%20Gadget ok=2 failed=1 serials=3 serial_min=1003 serial_max=1009"

# Counts consumed whose outcome no record gives (a programmer's unrecorded:N, counter-ahead:N)
# are totalled apart from the failed cycles.
python3 writer.py prog u.txt 1:OK 2:ERR+unrecorded.2:- 3:OK 4:ERR+counter-ahead.1:- 5:OK
run 0 log verify --programmer prog.pub u.txt
has "total: setup=$(printf 'ab%.0s' $(seq 32)) project=01_Widget ok=2 failed=0 unrecorded=3 serials=2 serial_min=1001 serial_max=1005"
has "project=02_Big%20Gadget ok=1 failed=0 serials=1 serial_min=1003 serial_max=1003"
has "verdict: intact"
# The files in the wrong order: the chain says so.
run 1 log verify --programmer prog.pub RECORDS.001 RECORDS.000
has "NOT INTACT"

variant() { # variant NAME: runs verify on NAME, expects failure; output in $tmp/out
    run 1 log verify --programmer prog.pub "$1"
    has "verdict: NOT INTACT"
}

# Edited: a failed device turned into a good one.
sed '3s/result=ERR/result=OK/' all.txt >edited.txt
variant edited.txt
has "edited.txt:3: bad signature: seq 3: the signature does not hold"
has "bad signatures: 1"
# Edited so that it no longer parses.
sed '5s/serial=1005/serial=x/' all.txt >broken.txt
variant broken.txt
has "broken.txt:5: malformed:"
# Deleted in the middle.
sed '4,5d' all.txt >deleted.txt
variant deleted.txt
has "deleted.txt:4: chain break: seq 6 follows seq 3: records 4 to 5 are missing (deleted)"
# Reordered.
awk 'NR==6{l=$0; next} {print} NR==7{print l}' all.txt >reordered.txt
variant reordered.txt
has "chain break: seq 7 follows seq 5"
has "chain break: seq 6 follows seq 7: records out of order or repeated"
# Forged with another key, under this programmer's fingerprint.
python3 writer.py forger forged-all.txt fp=prog 1:OK 2:OK 3:OK 4:OK 5:OK 6:OK
awk 'NR==FNR{f[FNR]=$0; next} FNR==5{print f[5]; next} {print}' forged-all.txt all.txt \
    >forged.txt
variant forged.txt
has "forged.txt:5: bad signature"
# Records of another programmer altogether.
python3 writer.py other other.txt 1:OK 2:OK
variant other.txt
has "foreign record: seq 1: a record of programmer"
has "foreign records: 2"
# The newest deleted: the files alone still verify...
head -n 8 all.txt >newest.txt
run 0 log verify --programmer prog.pub newest.txt
has "verdict: intact"
# ...until the programmer finds its chain head ahead of the files and writes a gap record.
python3 writer.py prog with-gap.txt 1:OK 2:OK 3:ERR 4:OK 5:OK 6:OK 7:OK 8:ERR:- 9:OK 10:OK \
    11:GAP-9-10
head -n 8 with-gap.txt >gap.txt
tail -n 1 with-gap.txt >>gap.txt
variant gap.txt
has "gap.txt:9: gap record: seq 11: the programmer found records 9 to 10 missing"
has "gap records: 1"
# Two setups in a row: one chain, intact.
python3 writer.py prog two.txt 1:OK 2:OK new-setup 3:OK 4:ERR 5:OK
run 0 log verify --programmer prog.pub two.txt
has "setups: 2"
has "total: setup=$(printf 'cd%.0s' $(seq 32)) project=01_Widget ok=1 failed=1"
# A second chain after the first (the secure area removed, the chain begun afresh).
python3 writer.py prog restart.txt 1:OK 2:OK 3:OK new-setup new-chain 1:OK 2:OK
variant restart.txt
has "restart.txt:4: chain break: seq 1 starts a second chain"
# The counter took two counts no record shows (records 4 and 5 cut before the chain went on).
python3 writer.py prog hidden.txt 1:OK 2:OK 3:OK count+2 4:OK 5:OK
variant hidden.txt
has "hidden.txt:4: counter: 2 count(s) of the trust anchor unaccounted for"
has "unaccounted counts: 2"
# The head statement: the records reach it, or records after the last one are missing.
nonce=$(printf '3c%.0s' $(seq 32))
python3 head.py prog all.txt HEAD "$nonce" 0
run 0 log verify --programmer prog.pub --head HEAD --nonce "$nonce" RECORDS.000 RECORDS.001
has "head: seq 10, counter 10, pending 0, at 2026-03-02T12:00:00Z, nonce matches"
has "verdict: intact"
run 1 log verify --programmer prog.pub --head HEAD --nonce "$(printf '3d%.0s' $(seq 32))" \
    RECORDS.000 RECORDS.001
has "HEAD:1: head: the head statement answers another nonce"
run 1 log verify --programmer prog.pub --head HEAD RECORDS.000
has "HEAD:1: head: the records end at seq 6, the programmer's newest is seq 10: 4 record(s) missing"
# The head among the files (records writes DIR/HEAD beside them: `DIR/*` takes it in), and a
# nonce without any head.
run 0 log verify --programmer prog.pub --nonce "$nonce" HEAD RECORDS.000 RECORDS.001
has "nonce matches"
run 0 log export --csv HEAD RECORDS.000 RECORDS.001
[ "$(wc -l <out)" = 11 ] || fail "export skips the head: $(cat out)"
run 1 log verify --programmer prog.pub --nonce "$nonce" RECORDS.000 RECORDS.001
has "--nonce: head: no head statement was given"
# The wrong programmer's public file: nothing is proven.
run 1 log verify --programmer other.pub RECORDS.000
has "verified: 0"

# Export: every record, as CSV and JSON, with the same fields as the lines.
run 0 log export --csv RECORDS.000 RECORDS.001
cp out export.csv
run 0 log export --json RECORDS.000 RECORDS.001
cp out export.json
python3 - <<'PY' || fail "export does not match the records"
import csv, hashlib, json
rows = list(csv.DictReader(open("export.csv")))
objs = json.load(open("export.json"))
lines = open("all.txt").read().splitlines()
assert len(rows) == len(objs) == len(lines) == 10
for i, (line, row, obj) in enumerate(zip(lines, rows, objs)):
    fields = dict(f.split("=", 1) for f in line.split(" ")[1:])
    body = line[:line.index(" sig=")]
    assert row["hash"] == obj["hash"] == hashlib.sha256(body.encode()).hexdigest()
    assert row["file"] == obj["file"] == ("RECORDS.000" if i < 6 else "RECORDS.001")
    line_no = i + 1 if i < 6 else i - 5
    assert int(row["line"]) == obj["line"] == line_no
    assert int(row["seq"]) == obj["seq"] == int(fields["seq"])
    assert row["time"] == obj["time"] == fields["time"]
    assert row["programmer"] == obj["programmer"] == fields["programmer"]
    assert row["setup"] == obj["setup"] == fields["setup"]
    assert row["project"] == obj["project"] == fields["project"].replace("%20", " ")
    assert int(row["slot"]) == obj["slot"] == int(fields["slot"])
    assert row["uid"] == obj["uid"] == fields["uid"]
    if fields["serial"] == "-":
        assert row["serial"] == "" and obj["serial"] is None
    else:
        assert int(row["serial"]) == obj["serial"] == int(fields["serial"])
    assert row["result"] == obj["result"] == fields["result"]
    assert int(row["counter"]) == obj["counter"] == int(fields["counter"])
PY
# A malformed line is skipped, said, and fails the export.
run 1 log export --json broken.txt
says "broken.txt:5: skipped"
python3 -c "import json; assert len(json.load(open('$tmp/out'))) == 9" || fail "export json"
: >empty.txt
run 0 log export --json empty.txt
[ "$(cat out)" = "[]" ] || fail "empty export: $(cat out)"
run 1 log verify --programmer prog.pub empty.txt
has "NOT INTACT: no records"

# A line too long is refused without reading it into memory whole.
head -c 3000000 /dev/zero | tr '\0' 'x' >long.txt
echo >>long.txt
cat RECORDS.000 >>long.txt
run 1 log verify --programmer prog.pub long.txt
has "long.txt:1: malformed: not a valid record: longer than"
has "records: 6"
has "verified: 6"

# A file's name is printed as given, but its control characters as <hh> (the name reaches a
# terminal).
esc=$(printf 'x\033[2J.txt')
cp long.txt "$esc"
run 1 log verify --programmer prog.pub "$esc"
has "x<1b>[2J.txt:1: malformed: not a valid record"
if grep -q "$(printf '\033')" out; then fail "a raw ESC in log verify's output"; fi

run 0 log --help
grep -q '^usage: mintflash log verify' out || fail "log --help"
run 0 log verify --help
run 0 log export --help
run 2 log
run 2 log frobnicate x
says "unknown log command 'frobnicate'"
run 2 log verify RECORDS.000
says "log verify needs --programmer"
run 2 log verify --programmer prog.pub
run 2 log export RECORDS.000
says "one of --csv and --json"
run 2 log export --csv --json RECORDS.000
run 1 log verify --programmer prog.pub missing.txt
says "missing.txt: No such file"
run 1 log verify --programmer missing.pub RECORDS.000
says "missing.pub"
echo "ok"
