#!/usr/bin/env bash
# The commander without a programmer: help, usage errors (status 2) with their messages, device
# URLs that are wrong or lead nowhere (status 1, the URL named), the default socket rule, the
# MINTFLASH_DEVICE variable, scripts that cannot be read, and the offline groups untouched.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-300.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# run STATUS CMD...: runs CMD, requires exit status STATUS; output in out.txt and err.txt.
run() {
    local want=$1
    shift
    set +e
    "$@" >out.txt 2>err.txt </dev/null
    local status=$?
    set -e
    if [ "$status" != "$want" ]; then
        cat out.txt err.txt >&2
        fail "'$*' exited with $status, expected $want"
    fi
}

stderr_is() {
    printf '%s\n' "$1" >want.txt
    diff -u want.txt err.txt || fail "unexpected message"
}

# Help: the options, the offline groups and every command, on stdout.
for args in "--help" "-h" "help" "-d tcp:127.0.0.1:1 --help"; do
    run 0 "$mintflash" $args
    for word in "--device URL" "-c COMMANDS" "-f SCRIPT" "--keep-going" "--timeout SEC" "--json" \
        storage image sim auto erase program verify start cancel status result info select \
        selmodule fwrite fread fshow fsize fdelete flist mkdir rmdir securearea reboot raw; do
        grep -q -e "$word" out.txt || fail "'$args' does not mention '$word'"
    done
    [ ! -s err.txt ] || fail "$args wrote to stderr"
done
run 0 "$mintflash" help fwrite
grep -q '^usage: fwrite \[-r\] LOCAL \[REMOTE\]$' out.txt || fail "help fwrite"
grep -q 'creating folders as needed' out.txt || fail "help fwrite: no details"
run 0 "$mintflash" fread --help
grep -q '^usage: fread REMOTE \[LOCAL\]$' out.txt || fail "fread --help"
run 0 "$mintflash" --version
grep -qx 'mintflash [0-9.]*' out.txt || fail "--version"
echo "ok help"

# Usage errors: status 2, one clear line, nothing sent anywhere (no device is reachable here).
export MINTFLASH_DEVICE=tcp:127.0.0.1:1
run 2 "$mintflash" frobnicate
stderr_is "mintflash: unknown command 'frobnicate' (try 'mintflash --help')"
run 2 "$mintflash" -x
stderr_is "mintflash: unknown option '-x' (try 'mintflash --help')"
run 2 "$mintflash" -d
stderr_is "mintflash: option '-d' needs a value (try 'mintflash --help')"
run 2 "$mintflash" -t soon status
stderr_is "mintflash: bad timeout 'soon' (seconds, e.g. 60 or 0.5)"
run 2 "$mintflash" -t 0 status
run 2 "$mintflash" -c status -f script.txt
stderr_is "mintflash: use either -c or -f, not both"
run 2 "$mintflash" -c status info
stderr_is "mintflash: a command after -c or -f: put it into the commands instead"
run 2 "$mintflash" -d tcp:127.0.0.1:1 storage --help
stderr_is "mintflash: 'storage' takes no commander options: mintflash storage ..."
run 2 "$mintflash" fwrite
stderr_is "mintflash: fwrite: missing local file (usage: fwrite [-r] LOCAL [REMOTE])"
run 2 "$mintflash" fwrite -r somewhere
stderr_is "mintflash: fwrite: -r needs the remote folder (/ for the root) (usage: fwrite [-r] LOCAL [REMOTE])"
run 2 "$mintflash" fread a b c
stderr_is "mintflash: fread: too many arguments (usage: fread REMOTE [LOCAL])"
run 2 "$mintflash" status now
stderr_is "mintflash: status: takes no arguments (usage: status)"
run 2 "$mintflash" selmodule 0,1
stderr_is "mintflash: selmodule: bad slot list '0,1' (numbers 1-64 separated by ',', or *)"
run 2 "$mintflash" selmodule 1,,2
run 2 "$mintflash" reboot now
stderr_is "mintflash: reboot: unknown mode 'now' (reboot [file-access])"
run 2 "$mintflash" securearea wipe
stderr_is "mintflash: securearea: unknown action 'wipe' (create, remove)"
run 2 "$mintflash" auto sometimes
stderr_is "mintflash: auto: unexpected 'sometimes' (auto [noinfo] [nopatch|patch LINE])"
run 2 "$mintflash" auto patch
stderr_is "mintflash: auto: 'patch' needs a patch line (N,ADDR,LEN:DATA...) (usage: auto [noinfo] [nopatch|patch LINE])"
run 2 "$mintflash" auto nopatch patch 1,0,1:00
run 2 "$mintflash" erase now
run 2 "$mintflash" raw STATUS
stderr_is "mintflash: raw: a protocol line starts with '#': 'STATUS'"
run 2 "$mintflash" baudrate fast
stderr_is "mintflash: baudrate: bad speed 'fast' (1200 ... 921600)"
run 2 "$mintflash" help nothing
stderr_is "mintflash: help: unknown command 'nothing'"
# In -c, the first usage error stops the line with its status.
run 2 "$mintflash" -c 'bogus; status'
stderr_is "mintflash: unknown command 'bogus' (try 'help')"
run 2 "$mintflash" -c 'fread "unterminated'
stderr_is "mintflash: unterminated quote"
echo "ok usage errors"

# Device URLs: malformed ones are usage errors; unreachable ones fail naming the URL.
run 2 "$mintflash" -d ftp://host status
stderr_is "mintflash: bad device URL 'ftp://host' (unix:PATH, tcp:HOST:PORT or serial:DEVICE[:BAUD])"
run 1 "$mintflash" -d tcp:localhost:99999 status
stderr_is "mintflash: bad device URL 'tcp:localhost:99999': port must be a number from 1 to 65535"
run 1 "$mintflash" -d serial:/dev/null status
stderr_is "mintflash: cannot open serial:/dev/null: /dev/null is not a serial device"
run 1 "$mintflash" -d serial:/dev/null:300 status
stderr_is "mintflash: bad device URL 'serial:/dev/null:300': unsupported speed 300 (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"
run 1 "$mintflash" -d "unix:$work/none.sock" status
stderr_is "mintflash: cannot connect to unix:$work/none.sock: No such file or directory"

# A port nobody listens on: take a free one from the kernel and close it again.
port=$(perl -MIO::Socket::INET -e \
    'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)
         or die "no socket: $!"; print $s->sockport')
run 1 "$mintflash" -d "tcp:127.0.0.1:$port" status
stderr_is "mintflash: cannot connect to tcp:127.0.0.1:$port: Connection refused"
# MINTFLASH_DEVICE is used when there is no -d; -d wins over it.
MINTFLASH_DEVICE="tcp:127.0.0.1:$port" run 1 "$mintflash" info
stderr_is "mintflash: cannot connect to tcp:127.0.0.1:$port: Connection refused"
MINTFLASH_DEVICE="tcp:127.0.0.1:$port" run 1 "$mintflash" -d "unix:$work/x.sock" info
stderr_is "mintflash: cannot connect to unix:$work/x.sock: No such file or directory"
unset MINTFLASH_DEVICE

# The default: the daemon's socket under XDG_RUNTIME_DIR, else /tmp/mintflash-UID.
XDG_RUNTIME_DIR="$work/run" run 1 "$mintflash" status
stderr_is "mintflash: cannot connect to unix:$work/run/mintflash/mintflashd.sock: No such file or directory"
(unset XDG_RUNTIME_DIR; run 1 "$mintflash" status)
grep -q "cannot connect to unix:/tmp/mintflash-$(id -u)/mintflashd.sock: " err.txt ||
    fail "default socket without XDG_RUNTIME_DIR: $(cat err.txt)"
# Commands that need no programmer work without one.
XDG_RUNTIME_DIR="$work/run" run 0 "$mintflash" -c "help; help status; # a comment"
grep -q '^usage: status$' out.txt || fail "help inside -c"
echo "ok device URLs"

# Scripts: a missing one, and one whose first command fails (its line is named).
run 1 "$mintflash" -f "$work/missing.txt"
stderr_is "mintflash: cannot open script $work/missing.txt: No such file or directory"
printf '# set-up\n\nhelp flist\nflist\nhelp\n' >script.txt
run 1 "$mintflash" -d "tcp:127.0.0.1:$port" -f script.txt
stderr_is "mintflash: script.txt:4: cannot connect to tcp:127.0.0.1:$port: Connection refused"
grep -q '^usage: flist \[DIR\]$' out.txt || fail "script line 3 did not run"
grep -q '^commands:$' out.txt && fail "script went on after the failure"
# --keep-going runs the rest and still fails.
run 1 "$mintflash" -k -d "tcp:127.0.0.1:$port" -f script.txt
grep -q '^commands:$' out.txt || fail "--keep-going did not run line 5"
# Standard input that is not a terminal is a script too.
printf 'help mkdir\nbogus\nhelp\n' | {
    set +e
    "$mintflash" -d "tcp:127.0.0.1:$port" >out.txt 2>err.txt
    echo $? >status.txt
}
[ "$(cat status.txt)" = 2 ] || fail "stdin script status $(cat status.txt)"
stderr_is "mintflash: <stdin>:2: unknown command 'bogus' (try 'help')"
grep -q '^usage: mkdir DIR$' out.txt || fail "stdin script line 1"
echo "ok scripts"

# The offline groups are untouched by the commander's options.
run 0 "$mintflash" storage --help
grep -q 'usage: mintflash storage' out.txt || fail "storage --help"
run 0 "$mintflash" image --help
grep -q 'usage: mintflash image' out.txt || fail "image --help"
run 0 "$mintflash" sim --help
run 0 "$mintflash" storage init "$work/s.img" --size 8M
run 0 "$mintflash" storage ls "$work/s.img"
echo "ok offline groups"
