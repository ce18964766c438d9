#!/usr/bin/env bash
# `mintflash log verify` where the head statement and lines that are no record meet the records:
# the HEAD that `records` fetches given both with --head and among the files (DIR/*) is one head,
# intact; a head statement inside a file is reported at its own line; a second, other head is
# refused where it is while the first one's findings stay at the first; a line that is no record
# between two records that chain (a torn line the programmer could not cut stays in its file) is a
# note; records deleted right after such a line are still named. Records and heads are signed here by an independent writer (Python `cryptography`).
. "$(dirname "$0")/lib/owner.sh" log-heads

# sign.py records OUT N [torn-after K] [skip A-B]: records 1..N of one chain (counter = seq) of the
# programmer in prog.key (made on first use; prog.pub beside it), a torn line after record K,
# records A..B left out. sign.py head OUT SEQ COUNTER: its head statement for seq SEQ of the
# chain sign.py records wrote last (chain.txt), nonce 7e..7e, pending 0.
cat >sign.py <<'PY'
import hashlib, os, sys
sys.path.insert(0, os.path.join(os.environ["MF_SRC"], "tests", "e2e", "lib"))
from progsign import b64, programmer

key, fingerprint = programmer()
signed = lambda body: body + " sig=" + b64(key.sign(body.encode())) + "\n"

if sys.argv[1] == "records":
    out, n, args = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    torn = int(args[args.index("torn-after") + 1]) if "torn-after" in args else -1
    skip = range(0)
    if "skip" in args:
        a, b = args[args.index("skip") + 1].split("-")
        skip = range(int(a), int(b) + 1)
    prev, chain, kept = bytes(32), [], []
    for seq in range(1, n + 1):
        body = ("MFR1 seq=%d prev=%s time=2026-04-01T08:00:%02dZ programmer=%s setup=%s "
                "project=01_Board slot=1 uid=%08x serial=%d result=OK counter=%d"
                % (seq, prev.hex(), seq, fingerprint, "5a" * 32, 0xB0A4D000 + seq, 500 + seq, seq))
        prev = hashlib.sha256(body.encode()).digest()
        chain.append("%d %s\n" % (seq, prev.hex()))
        if seq not in skip:
            kept.append(signed(body))
        if seq == torn:
            kept.append("MFR1 seq=%d prev=%s time=2026-04" % (seq + 1, prev.hex()))
            kept.append("\n")
    open(out, "w").write("".join(kept))
    open("chain.txt", "w").write("".join(chain))
else:
    out, seq, counter = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    hashes = dict(l.split() for l in open("chain.txt"))
    body = ("MFH1 nonce=%s time=2026-04-02T09:00:00Z programmer=%s setup=%s seq=%d head=%s "
            "counter=%d pending=0" % ("7e" * 32, fingerprint, "5a" * 32, seq, hashes[str(seq)],
                                      counter))
    open(out, "w").write(signed(body))
PY
nonce=$(printf '7e%.0s' $(seq 32))

# The HEAD with the records, given twice (--head rec/HEAD and rec/* on the command line): one head.
mkdir rec
python3 sign.py records rec/RECORDS.000 6
python3 sign.py head rec/HEAD 6 6
run 0 log verify --programmer prog.pub --head rec/HEAD --nonce "$nonce" rec/*
has "head: seq 6, counter 6, pending 0, at 2026-04-02T09:00:00Z, nonce matches"
has "verdict: intact"
# Another head statement beside it (an older one, for seq 4): refused where it is; the records
# still reach the first.
python3 sign.py head old-head 4 4
run 1 log verify --programmer prog.pub --head rec/HEAD --nonce "$nonce" rec/RECORDS.000 old-head
has "old-head:1: head: a second head statement: give one"
has "verdict: NOT INTACT"
# Only the older head, at line 5 of a file that holds records 1-4 before it: its findings are at
# that line (the records end where it says: intact), and records 5-6 given after it go beyond it.
{ head -n 4 rec/RECORDS.000; cat old-head; } >four-and-head.txt
run 0 log verify --programmer prog.pub --nonce "$nonce" four-and-head.txt
has "head: seq 4, counter 4"
{ cat four-and-head.txt; tail -n 2 rec/RECORDS.000; } >six-and-head.txt
run 1 log verify --programmer prog.pub --nonce "$nonce" six-and-head.txt
has "six-and-head.txt:5: head: the records go on to seq 6 beyond the programmer's newest, seq 4"

# A torn line the programmer could not cut (records 1-3, the torn line, then 4-8: the record after
# it follows the one before): a note, no record missing, intact.
python3 sign.py records torn.txt 8 torn-after 3
run 0 log verify --programmer prog.pub torn.txt
has "torn.txt:4: note: torn line: a line that is no record (time: a bad value) between seq 3 and seq 4, which chain: no record is missing there"
has "chain breaks: 0"
# Records 4-6 deleted right after it: named, although a line that is no record stands beside them.
python3 sign.py records torn-cut.txt 8 torn-after 3 skip 4-6
run 1 log verify --programmer prog.pub torn-cut.txt
has "torn-cut.txt:5: chain break: seq 7 follows seq 3 and 1 line(s) that are no record: at least 2 of records 4 to 6 are missing (deleted)"
has "chain breaks: 1"
echo "ok"
