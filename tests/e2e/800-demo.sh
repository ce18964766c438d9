#!/usr/bin/env bash
# `make demo` (scripts/demo) runs to its end with the programs of this build: the product story
# the README promises a fresh machine (keys, pin, package, devices until the count refuses, the
# owner's verification, a top-up), so that a change to a command it uses cannot break it unseen.
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() {
    echo "FAIL: $*" >&2
    tail -n 30 "$out" >&2
    exit 1
}
BUILD="$MF_BUILD" "$MF_SRC/scripts/demo" >"$out" 2>&1 || fail "scripts/demo exited with $?"
grep -q "verdict: intact" "$out" || fail "the owner's verification is not intact"
grep -q "top-up token (pushed) applied: top-up for 01_Demo: the limit goes from 5 to 8" "$out" ||
    fail "the top-up was not applied"
grep -q "serial 1007 OK" "$out" || fail "the three granted devices were not made"
grep -q "== Done" "$out" || fail "the demo did not reach its end"
echo "ok"
