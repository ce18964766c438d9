#!/usr/bin/env bash
# `mintflash log verify` on honest files that hold a torn line the programmer could not cut (it
# stays in its file, the records go on in the next one): when the record after it chains to the
# record before it (it names that record's hash as its previous, at the next seq), no record can
# be missing there, so the line is a note and the verdict is intact. Anywhere else a line that is no
# record still fails: before the first record, after the last one, more than two in a row, or
# where the records beside it do not chain (deleted, or damaged in place). Records are signed here
# by an independent writer (Python `cryptography`).
. "$(dirname "$0")/lib/owner.sh" log-torn-note

# sign.py OUT SPEC...: records of one chain (counter = seq) of the programmer in prog.key (made on
# first use; prog.pub beside it). SPEC: "N" record N, "t" a torn line (the start of a record, no
# LF: the next one begins a line of its own, as the programmer's files do), "x" record N+1 made
# but left out (deleted).
cat >sign.py <<'PY'
import hashlib, os, sys
sys.path.insert(0, os.path.join(os.environ["MF_SRC"], "tests", "e2e", "lib"))
from progsign import b64, programmer

key, fingerprint = programmer()
prev, seq, out = bytes(32), 0, []
for spec in sys.argv[2:]:
    if spec == "t":
        out.append("MFR1 seq=%d prev=%s time=2026-05\n" % (seq + 1, prev.hex()))
        continue
    seq += 1
    body = ("MFR1 seq=%d prev=%s time=2026-05-01T08:00:%02dZ programmer=%s setup=%s "
            "project=01_Board slot=1 uid=%08x serial=%d result=OK counter=%d"
            % (seq, prev.hex(), seq, fingerprint, "5a" * 32, 0xB0A4D000 + seq, 500 + seq, seq))
    prev = hashlib.sha256(body.encode()).digest()
    if spec != "x":
        out.append(body + " sig=" + b64(key.sign(body.encode())) + "\n")
open(sys.argv[1], "w").write("".join(out))
PY

# The torn line at the end of RECORDS.000, the records going on in RECORDS.001: a note, intact.
python3 sign.py all.txt 1 2 3 t 4 5
head -n 4 all.txt >RECORDS.000
tail -n 2 all.txt >RECORDS.001
run 0 log verify --programmer prog.pub RECORDS.000 RECORDS.001
has "RECORDS.000:4: note: torn line: a line that is no record (time: a bad value) between seq 3"
has "between seq 3 and seq 4, which chain: no record is missing there"
has "malformed: 0"
has "torn lines (no record missing): 1"
has "chain breaks: 0"
has "total: setup=$(printf '5a%.0s' $(seq 32)) project=01_Board ok=5 failed=0"
has "verdict: intact"
# Two in a row (a torn line, and one of an append torn right after it): still provably nothing.
python3 sign.py two.txt 1 2 t t 3
run 0 log verify --programmer prog.pub two.txt
has "torn lines (no record missing): 2"
has "verdict: intact"

# Not proven, so not intact: ...
fails() { # fails FILE TEXT: verify FILE fails, stdout has TEXT, no line was taken as torn
    run 1 log verify --programmer prog.pub "$1"
    has "$2"
    has "verdict: NOT INTACT"
    if grep -q "torn lines" out; then fail "$1: taken as torn: $(cat out)"; fi
}
python3 sign.py three.txt 1 2 t t t 3 # more than two in a row
fails three.txt "three.txt:5: malformed: not a valid record"
python3 sign.py first.txt t 1 2 # before the first record
fails first.txt "first.txt:1: malformed: not a valid record"
python3 sign.py last.txt 1 2 t # after the last one
fails last.txt "last.txt:3: malformed: not a valid record"
python3 sign.py deleted.txt 1 2 t x x 5 # records 3 and 4 deleted beside it
fails deleted.txt "deleted.txt:3: malformed: not a valid record"
has "chain break: seq 5 follows seq 2 and 1 line(s) that are no record"
# Record 3 damaged in place (its line no longer a record): record 4 names record 3, not 2.
python3 sign.py damaged.txt 1 2 3 4
sed '3s/ sig=.*/ sig=!/' damaged.txt >damaged-in-place.txt
fails damaged-in-place.txt "damaged-in-place.txt:3: malformed: not a valid record"
echo "ok"
