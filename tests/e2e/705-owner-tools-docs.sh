#!/usr/bin/env bash
# docs/owner-tools.md works as written: its ```sh blocks run in order in one shell from a
# folder that holds the repository's `build` (this build) and `examples`, as a reader would type
# them, and say what the page says they say.
set -euo pipefail

doc="$MF_SRC/docs/owner-tools.md"
if [ ! -f "$doc" ]; then
    echo "SKIP: $doc is gone"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-705-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/repo"
ln -s "$MF_BUILD" "$work/repo/build"
ln -s "$MF_SRC/examples" "$work/repo/examples"

fail() {
    cat "$work/out.txt" >&2
    echo "FAIL: $*" >&2
    exit 1
}

python3 - "$doc" "$work/guide.sh" <<'PY'
import re, sys
doc = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"^```sh\n(.*?)^```$", doc, flags=re.S | re.M)
assert len(blocks) >= 8, "the page lost its examples"
with open(sys.argv[2], "w") as f:
    # TMPDIR keeps the reader's mktemp inside this test's folder, which is removed at the end.
    f.write("set -euo pipefail\nexport TMPDIR=%s\n" % sys.argv[2].rsplit("/", 1)[0] +
            "\n".join(blocks))
PY
cd "$work/repo"
bash "$work/guide.sh" >"$work/out.txt" 2>&1 || fail "the page's commands"
has() { grep -qF -- "$1" "$work/out.txt" || fail "the output lacks '$1'"; }
has "secret key: acme.key"
has "packed 5 files"
has "for 2 programmers into widget-v2.mfp"
has "top-up for programmer 210C-AB05-A738-5EF0-447C"
has "project Demo: limit 800 -> more.mft"
has "the root count: limit 10000 -> root.mft"
has "total: setup=25c64cba7bd0262163db74c7047e415a30a1006efe32726e9483d8d3315b0c9f project=01_Demo ok=2 failed=1 serials=3 serial_min=1000 serial_max=1002"
has "verdict: intact"
has "edited.000:2: bad signature: seq 2: the signature does not hold: the record was edited, or forged"
has "deleted.000:2: chain break: seq 3 follows seq 1: record 2 is missing (deleted)"
has "deleted.000:2: counter: 1 count(s) of the trust anchor unaccounted for"
has "head: none given: records deleted after the last one cannot show"
has "head: seq 3, counter 3, pending 0, at 2026-03-04T10:05:00Z, nonce matches"
has "HEAD:1: head: the records end at seq 2, the programmer's newest is seq 3: 1 record missing after the last one given (deleted, or not fetched)"
[ "$(grep -c '^verdict: intact$' "$work/out.txt")" = 2 ] || fail "two intact verdicts"
[ "$(grep -c '^exit status 1$' "$work/out.txt")" = 4 ] || fail "four refusals with status 1"
has "valid"
has "INVALID"
# The setup id the page quotes is what pack prints for examples/demo-job.
grep -qx "25c64cba7bd0262163db74c7047e415a30a1006efe32726e9483d8d3315b0c9f" "$work/out.txt" ||
    fail "pack's setup id of examples/demo-job is no longer the one the page quotes"
echo ok
