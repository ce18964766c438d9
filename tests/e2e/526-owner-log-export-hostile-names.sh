#!/usr/bin/env bash
# `mintflash log export` with names the factory controls (a project name of its own setup on a
# programmer without a pin, a note, the name of a file it sends): the JSON is always valid (UTF-8
# throughout, every control character escaped, each byte that is not UTF-8 as U+FFFD) and keeps
# well-formed names exactly; the CSV holds no control character (each one, and each byte that is
# not UTF-8, as U+FFFD) and no field a spreadsheet would run as a formula (a leading = + - @ gets
# an apostrophe). Export checks no signature, so the lines are written here with any signature.
. "$(dirname "$0")/lib/owner.sh" export-names

# lines.py OUT FIRST NAME...: one record line per NAME (the project field as it stands in a record,
# percent-encoded; "NAME|NOTE" adds a note field), seq from FIRST.
cat >lines.py <<'PY'
import base64, os, sys
out, first, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with open(out, "w") as f:
    for i, spec in enumerate(names):
        project, _, note = spec.partition("|")
        seq = first + i
        body = ("MFR1 seq=%d prev=%s time=2026-03-01T10:00:%02dZ programmer=1234-5678-9ABC-DEF0-1234 "
                "setup=%s project=%s slot=1 uid=- serial=- result=OK counter=%d"
                % (seq, "00" * 32, seq, "ab" * 32, project, seq))
        if note:
            body += " note=" + note
        f.write(body + " sig=" + base64.b64encode(os.urandom(64)).decode() + "\n")
PY
python3 lines.py RECORDS.000 1 \
    '%FF%FEab' '%C0%AFx' '%ED%A0%80y' '%F4%90%80%80z' 'z%E2%82' \
    'Gr%C3%BC%C3%9Fe%F0%9F%98%80' \
    '%1B[31mred%0D%0A%09x%7F%C2%9B|%1B]0;t%07' \
    '=HYPERLINK("http://x","y")' '+1' '-2' '@SUM(A1)' '%2D' 'a%E2%80%A8b' 'plain,name|=1+1'
# A file name with a byte that is not UTF-8, an escape and a line feed in it, starting with '='.
hostile=$(printf '=\377\033\n.txt')
python3 lines.py "$hostile" 15 '01_Widget'

run 0 log export --json RECORDS.000 "$hostile"
cp out export.json
python3 -m json.tool export.json >/dev/null || fail "json.tool refuses the JSON: $(cat -v export.json)"
if command -v jq >/dev/null; then
    jq -e 'length == 15' export.json >/dev/null || fail "jq refuses the JSON"
fi
python3 - <<'PY' || fail "the JSON export: $(cat -v export.json)"
import json
raw = open("export.json", "rb").read()
text = raw.decode("utf-8")  # strict: every byte is UTF-8
assert all(c == "\n" or c >= " " for c in text), "a raw control character"
records = json.loads(text)
R = "\ufffd"
want = [R + R + "ab", R + R + "x", R * 3 + "y", R * 4 + "z", "z" + R + R,
        "Gr\u00fc\u00dfe\U0001F600", "\x1b[31mred\r\n\tx\x7f\x9b",
        '=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "-", "a\u2028b", "plain,name",
        "01_Widget"]
assert [r["project"] for r in records] == want, [r["project"] for r in records]
assert records[6]["note"] == "\x1b]0;t\x07", records[6]["note"]
assert records[13]["note"] == "=1+1"
assert records[0]["file"] == "RECORDS.000"
assert records[14]["file"] == "=" + R + "\x1b\n.txt", records[14]["file"]
assert "\u2028" not in text and "\x9b" not in text, "U+2028 and C1 controls are escaped"
PY

run 0 log export --csv RECORDS.000 "$hostile"
cp out export.csv
python3 - <<'PY' || fail "the CSV export: $(cat -v export.csv)"
import csv, io, unicodedata
raw = open("export.csv", "rb").read()
text = raw.decode("utf-8")  # strict
bad = [hex(ord(c)) for c in text if c != "\n" and unicodedata.category(c) == "Cc"]
assert not bad, "control characters: %s" % bad
rows = list(csv.reader(io.StringIO(text, newline="")))
assert rows[0][6] == "project" and len(rows) == 16, rows
assert all(len(r) == 14 for r in rows), rows
R = "\ufffd"
want = [R + R + "ab", R + R + "x", R * 3 + "y", R * 4 + "z", "z" + R + R,
        "Gr\u00fc\u00dfe\U0001F600", R + "[31mred" + R * 3 + "x" + R + R,
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "'-", "a\u2028b",
        "plain,name", "01_Widget"]
assert [r[6] for r in rows[1:]] == want, [r[6] for r in rows[1:]]
assert rows[7][12] == R + "]0;t" + R, rows[7][12]
assert rows[14][12] == "'=1+1", rows[14][12]
assert rows[15][0] == "'=" + R + R + R + ".txt", rows[15][0]
for r in rows[1:]:
    for field in (r[0], r[6], r[12]):
        assert not field or field[0] not in "=+-@", field
PY
echo "ok"
