# Shared by the owner-tool tests (7xx): source it with a short name for the temp folder.
#   . "$(dirname "$0")/lib/owner.sh" NAME
# Gives: $mintflash, $tmp (removed at exit, the current folder), fail, run STATUS ARGS... (output
# in $tmp/out and $tmp/err), says TEXT (stderr holds it), has TEXT (stdout holds it). Skips (77)
# without Python's cryptography package, which the tests use as an independent implementation.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-$1-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

run() { # run STATUS ARGS...: runs mintflash, expects STATUS
    local want=$1
    shift
    local got=0
    "$mintflash" "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    if [ "$got" != "$want" ]; then
        cat "$tmp/out" "$tmp/err" >&2
        fail "mintflash $* gave status $got, want $want"
    fi
}

says() { # says TEXT: standard error holds TEXT
    grep -qF -- "$1" "$tmp/err" || { cat "$tmp/err" >&2; fail "stderr lacks '$1'"; }
}

has() { # has TEXT: standard output holds TEXT
    grep -qF -- "$1" "$tmp/out" || { cat "$tmp/out" >&2; fail "stdout lacks '$1'"; }
}

if ! python3 -c 'import cryptography' 2>/dev/null; then
    echo "SKIP: python3 with the cryptography package is needed as an independent implementation"
    exit 77
fi
cd "$tmp"
