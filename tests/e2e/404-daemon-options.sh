#!/usr/bin/env bash
# mintflashd's command line: --version, --help, bad options with clear messages, a busy port,
# and a storage image another daemon holds.
set -u
D="$MF_BUILD/mintflashd"
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$D" --version | grep -qx 'mintflashd 0\.1\.0' || fail "--version"
"$D" --help | grep -q -- '--file-access' || fail "--help"
"$D" --slots 0 2>"$dir/err"; [ $? -eq 2 ] && grep -q 'from 1 to 64' "$dir/err" || fail "--slots 0"
"$D" --hold 1x 2>"$dir/err"; [ $? -eq 2 ] && grep -qx 'mintflashd: --hold 1x: MiB from 0 to 4096' "$dir/err" || fail "--hold 1x"
"$D" --hold 4097 2>"$dir/err"; [ $? -eq 2 ] && grep -q 'MiB from 0 to 4096' "$dir/err" || fail "--hold 4097"
"$D" --bogus 2>/dev/null; [ $? -eq 2 ] || fail "unknown option"
"$D" --size 12Q 2>"$dir/err"; [ $? -eq 2 ] && grep -q 'expected a size' "$dir/err" || fail "--size"
"$D" --target nope --storage "$dir/a.img" --tcp off --socket "$dir/a.sock" --size 8M 2>"$dir/err"
[ $? -eq 1 ] && grep -q "target 'nope': unknown" "$dir/err" || fail "bad target: $(cat "$dir/err")"
"$D" --target gdb:tcp:host --storage "$dir/a.img" --tcp off --socket off --size 8M 2>"$dir/err"
[ $? -eq 1 ] && grep -q "slot 1: gdb: 'gdb:tcp:host' is not gdb:tcp:HOST:PORT$" "$dir/err" ||
    fail "bad gdb spec: $(cat "$dir/err")"
[ ! -e "$dir/a.img" ] || fail "a refused target created the storage image"
"$D" --storage "$dir/p.img" --tcp 127.0.0.1:99999 --socket off 2>"$dir/err"
[ $? -eq 1 ] && grep -q 'port must be a number from 0 to 65535' "$dir/err" || fail "bad port"
[ ! -e "$dir/p.img" ] || fail "a refused start touched the storage"

printf 'slots = 2\nsim-speed = 0\n[other]\nx = 1\n' > "$dir/bad.conf"
"$D" --config "$dir/bad.conf" 2>"$dir/err"; [ $? -eq 2 ] && grep -q 'bad.conf:4: unknown section \[other\]' "$dir/err" || fail "config file"
mkdir "$dir/conf.d"
"$D" --config "$dir/conf.d" 2>"$dir/err"; [ $? -eq 2 ] && grep -q "conf.d: Is a directory$" "$dir/err" ||
    fail "a folder as config file: $(cat "$dir/err")"
"$D" --storage "$dir/z.img" --size 0 --tcp off --socket off 2>"$dir/err"
[ $? -eq 2 ] && grep -q -- '--size 0: expected a size such as 128M' "$dir/err" && [ ! -e "$dir/z.img" ] ||
    fail "--size 0: $(cat "$dir/err")"

# One daemon holds the image; a second one on the same image is refused clearly.
"$D" --storage "$dir/s.img" --size 8M --tcp 127.0.0.1:0 --socket "$dir/1.sock" --sim-dir "$dir/sim" 2>"$dir/1.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listening on unix' "$dir/1.log" && break; sleep 0.05; done
port=$(grep -o 'tcp 127.0.0.1:[0-9]*' "$dir/1.log" | cut -d: -f2)
[ -n "$port" ] || fail "first daemon did not start: $(cat "$dir/1.log")"
"$D" --storage "$dir/s.img" --tcp off --socket "$dir/2.sock" 2>"$dir/err"
[ $? -eq 1 ] && grep -q 'in use by another program' "$dir/err" || fail "locked image: $(cat "$dir/err")"
"$D" --storage "$dir/t.img" --size 8M --tcp "127.0.0.1:$port" --socket off 2>"$dir/err"
[ $? -eq 1 ] && grep -q 'Address already in use' "$dir/err" || fail "busy port: $(cat "$dir/err")"
"$D" --storage "$dir/t.img" --size 8M --tcp off --socket "$dir/1.sock" 2>"$dir/err"
[ $? -eq 1 ] && grep -q 'another mintflashd serves it' "$dir/err" || fail "busy socket: $(cat "$dir/err")"
echo ok
