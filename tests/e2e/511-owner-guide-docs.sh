#!/usr/bin/env bash
# The owner's guide works as written: its ```sh blocks from "Your key pair" on (except those with
# <placeholders>) run in order in one shell, in a fresh folder that holds the repository's
# `build` (this build) and `examples`, exactly as a reader would type them. Passes when every
# command succeeds (the records verify against their head, with the owner's nonce too); the daemon
# the guide starts is always stopped.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-511.XXXXXX")
script="$work/guide.sh"
cleanup() {
    pkill -f "mintflashd --storage prog.img --size 64M --sim-dir sim" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/repo"
ln -s "$MF_BUILD" "$work/repo/build"
ln -s "$MF_SRC/examples" "$work/repo/examples"

python3 - "$MF_SRC/docs/owner-guide.md" "$script" <<'PY'
import re, sys
doc = open(sys.argv[1], encoding="utf-8").read()
doc = doc[doc.index("## 2. Your key pair"):]
blocks = [b for b in re.findall(r"^```sh\n(.*?)^```$", doc, flags=re.S | re.M) if "<" not in b]
assert len(blocks) >= 6, "docs/owner-guide.md lost its examples"
with open(sys.argv[2], "w") as f:
    f.write("set -euo pipefail\n" + "\n".join(blocks))
PY
cd "$work/repo"
TMPDIR="$work" bash "$script" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; echo "FAIL: the guide's commands"; exit 1; }
grep -q "verdict: intact" "$work/out.txt" || { cat "$work/out.txt"; echo "FAIL: records"; exit 1; }
grep -q "^head: seq [0-9]*, counter [0-9]*, pending 0, at .*, nonce matches$" "$work/out.txt" ||
    { cat "$work/out.txt"; echo "FAIL: the records' head with the owner's nonce"; exit 1; }
grep -q "verdict: NOT" "$work/out.txt" && { cat "$work/out.txt"; echo "FAIL: a verify failed"; exit 1; }
grep -q "AREA=SECURE" "$work/out.txt" || { cat "$work/out.txt"; echo "FAIL: not installed"; exit 1; }
grep -q "the limit goes from 5 to 800" "$work/out.txt" || { cat "$work/out.txt"; echo "FAIL: top-up"; exit 1; }
echo ok
