#!/usr/bin/env bash
# The commander against a small fake programmer written here in Perl (perl-base only): it keeps
# files in memory, answers the protocol as docs/protocol.md writes it, and logs every line it
# receives, so the exact commands the commander sends are checked (0x200-byte #FWRITE chunks,
# #MKDIR for -r, no #FOPEN of a file that is not there), as well as its output, JSON, scripts,
# exit statuses, multi-slot results, the progress bar at a terminal and a silent peer.
set -euo pipefail

mintflash="$MF_BUILD/mintflash"
work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-301.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

fail() {
    echo "FAIL: $*" >&2
    [ -f server.log ] && { echo "--- fake server log" >&2; tail -20 server.log >&2; }
    exit 1
}

cat >fake.pl <<'PERL'
# fake.pl SOCKET LOG SLOTS MODE: serves one client after the other on a UNIX socket.
# MODE "normal", or "silent" (never answers), or "hangup" (closes after the #ACK).
use strict;
use warnings;
use IO::Socket::UNIX;
my ($path, $log, $slots, $mode) = @ARGV;
my $server = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 5)
    or die "fake: cannot listen on $path: $!";
open(my $lf, '>>', $log) or die;
$lf->autoflush(1);
my %files = ();            # lower-case path => [name as created, data]
my %dirs = ('' => '');     # lower-case path => name as created
my @last = ('NONE') x ($slots + 1);
my $restarting = 0;        # after #REBOOT: the next #STATUS says INITIALIZING
my $starting = 0;          # commands refused as the daemon does while it starts (#STATUS aside)

sub norm { my $p = shift; $p =~ s{\\}{/}g; $p =~ s{^/+}{}; $p =~ s{/+$}{}; return $p; }
sub parent { my $p = shift; return $p =~ m{^(.*)/[^/]*$} ? $1 : ''; }
sub base { my $p = shift; return $p =~ m{([^/]*)$} ? $1 : $p; }

while (my $c = $server->accept) {
    my $open;
    my @sel = (1 .. $slots);
    my $progress = 0;
    local $/ = "\r";
    while (defined(my $line = <$c>)) {
        chomp $line;
        print $lf "$line\n";
        next if $mode eq 'silent';
        my @out;
        my ($cmd, $arg) = $line =~ /^(#\S+)(?: (.*))?$/ ? (uc $1, $2) : ('', '');
        $arg = '' unless defined $arg;
        my $key = lc norm($arg);
        if ($mode eq 'hangup') { print $c "#ACK\r#STATUS:ERA"; close $c; last; }
        if ($starting > 0 && $cmd !~ /^#(STATUS|INFO|REBOOT|FDELETE)$/) {
            $starting--;
            print $c "#NACK:ERR008:Busy (starting up)\r";
            next;
        }
        if ($cmd eq '#STATUS') {
            my $state = $restarting ? 'INITIALIZING' : 'READY';
            $restarting = 0;
            @out = @sel == 1 ? ("#STATUS:$state") : map { "#STATUS:$_:$state" } @sel;
        } elsif ($cmd eq '#INFO') {
            @out = ('#INFO:VERSION=fake 1', "#INFO:SLOTS=$slots", '#INFO:PROJECT=Wid"get', '#OK');
        } elsif ($cmd eq '#SELMODULE') {
            @sel = $arg eq '*' ? (1 .. $slots) : split /,/, $arg;
            @out = ('#SELECTED:' . join(',', @sel));
        } elsif ($cmd eq '#RESULT') {
            @out = map { "#RESULT:$_:$last[$_]" } @sel;
        } elsif ($cmd eq '#PROGRESS') {
            $progress = uc($arg) eq 'ON';
            @out = ('#OK');
        } elsif ($cmd =~ /^#(AUTO|ERASE|PROGRAM|VERIFY|START)$/) {
            my @slot_lines;
            for my $s (@sel) {
                push @slot_lines, "#STATUS:" . (@sel > 1 ? "$s:" : '') . $_
                    for qw(INITIALIZING CONNECTING ERASING PROGRAMMING VERIFYING);
                push @slot_lines, "#PROGRESS:$s:PROGRAMMING:$_:1000" for qw(0 800 1000);
                @slot_lines = grep { !/^#PROGRESS/ } @slot_lines unless $progress;
                @slot_lines = grep { !/^#STATUS/ } @slot_lines if $arg =~ /NOINFO/i;
                $last[$s] = exists $files{"fail-slot-$s"}
                    ? '#ERR205:Verify failed at 0x08000010'
                    : '#OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)';
            }
            @out = @slot_lines;
            if (@sel == 1) {
                push @out, $last[$sel[0]];
            } else {
                push @out, (map { "#RESULT:$_:$last[$_]" } @sel), '#DONE';
            }
        } elsif ($cmd eq '#CANCEL') {
            @out = ('#OK');
        } elsif ($cmd eq '#REBOOT') {
            @out = ('#OK');
            $starting = exists $files{'never-starts'} ? 1e9 : exists $files{'slow-start'} ? 3 : 0;
        } elsif ($cmd eq '#SELECT') {
            my @hits = grep { m{^projects/(\d+_)?\Q@{[lc $arg]}\E$} } keys %dirs;
            @out = @hits ? ('#OK') : ("#ERR203:No such project: $arg");
        } elsif ($cmd eq '#SECUREAREA') {
            @out = ('#NACK:ERR209:Only allowed on the local connection');
        } elsif ($cmd eq '#FOPEN') {
            if (exists $dirs{$key} || !exists $dirs{lc parent(norm($arg))}) {
                @out = ('#ERR010:File open failed (no such folder)');
            } else {
                $files{$key} ||= [base(norm($arg)), ''];
                $open = $key;
                @out = ('#OK');
            }
        } elsif ($cmd eq '#FOPENREAD' && exists $files{'no-fopenread'}) {
            @out = ('#NACK'); # as the reference product answers a command it does not know
        } elsif ($cmd eq '#FOPENREAD') {
            if (exists $files{$key}) {
                $open = $key;
                @out = ('#OK');
            } else {
                @out = ('#ERR010:File open failed (no such file)');
            }
        } elsif ($cmd eq '#FCLOSE') {
            undef $open;
            @out = ('#OK');
        } elsif ($cmd eq '#FSIZE') {
            @out = defined $open ? (sprintf '#OK:%x', length $files{$open}[1])
                                 : ('#ERR255:No file opened');
        } elsif ($cmd eq '#FWRITE') {
            my ($off, $n, $hex) = $arg =~ /^([0-9A-Fa-f]+),([0-9A-Fa-f]+):([0-9A-Fa-f]*)$/;
            if (!defined $open) {
                @out = ('#ERR255:No file opened');
            } elsif (!defined $hex || hex($n) > 0x200 || length($hex) != 2 * hex($n)) {
                @out = ('#ERR210:Invalid command or argument');
            } elsif ($open =~ /full/) {
                @out = ('#ERR012:File write failed (no space left)');
            } else {
                my $data = \$files{$open}[1];
                $$data .= "\0" x (hex($off) - length $$data) if hex($off) > length $$data;
                substr($$data, hex($off), hex($n)) = pack('H*', $hex);
                @out = ('#OK');
            }
        } elsif ($cmd eq '#FREAD') {
            my ($off, $n) = map { hex } split /,/, $arg;
            if (!defined $open) {
                @out = ('#ERR255:No file opened');
            } else {
                my $d = $files{$open}[1];
                my $part = $off < length $d ? substr($d, $off, $n) : '';
                @out = (sprintf('#OK:%02x:', length $part) . unpack('H*', $part));
            }
        } elsif ($cmd eq '#FDELETE') {
            @out = delete $files{$key} ? ('#OK') : ('#ERR013:Failed to delete file (no such file)');
        } elsif ($cmd eq '#FLIST') {
            if (!exists $dirs{$key}) {
                @out = ('#ERR011:File read failed (no such folder)');
            } else {
                for my $d (sort keys %dirs) {
                    push @out, "#FLIST:D:$dirs{$d}" if $d ne '' && parent($d) eq $key;
                }
                for my $f (sort keys %files) {
                    push @out, sprintf('#FLIST:F:%x:%s', length $files{$f}[1], $files{$f}[0])
                        if parent($f) eq $key;
                }
                push @out, '#OK';
            }
        } elsif ($cmd eq '#MKDIR') {
            if (exists $dirs{$key} || exists $files{$key}) {
                @out = ('#ERR012:File write failed (exists)');
            } elsif (!exists $dirs{lc parent(norm($arg))}) {
                @out = ('#ERR012:File write failed (no such folder)');
            } else {
                $dirs{$key} = base(norm($arg));
                @out = ('#OK');
            }
        } elsif ($cmd eq '#RMDIR') {
            my $busy = grep { parent($_) eq $key } (keys %dirs, keys %files);
            if (!exists $dirs{$key} || $key eq '') {
                @out = ('#ERR013:Failed to delete file (no such folder)');
            } elsif ($busy) {
                @out = ('#ERR013:Failed to delete file (not empty)');
            } else {
                delete $dirs{$key};
                @out = ('#OK');
            }
        } else {
            print $c "#NACK\r";
            next;
        }
        print $c join('', map { "$_\r" } ('#ACK', @out));
        if ($cmd eq '#REBOOT') { $restarting = 1; close $c; last; }
    }
}
PERL

# start SLOTS [MODE]: (re)starts the fake on fake.sock, with an empty log.
start() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f fake.sock server.log
    perl fake.pl "$work/fake.sock" "$work/server.log" "$1" "${2:-normal}" 2>server.err &
    server_pid=$!
    for _ in $(seq 200); do
        [ -S fake.sock ] && return 0
        sleep 0.05
    done
    fail "fake server did not start: $(cat server.err)"
}

mf() {
    "$mintflash" -d "unix:$work/fake.sock" "$@"
}

# run STATUS ARGS...: mf ARGS with exit status STATUS; out.txt and err.txt, server.log reset.
run() {
    local want=$1
    shift
    : >server.log
    set +e
    mf "$@" >out.txt 2>err.txt </dev/null
    local status=$?
    set -e
    if [ "$status" != "$want" ]; then
        cat out.txt err.txt >&2
        fail "'$*' exited with $status, expected $want"
    fi
}

expect_file() { # expect_file FILE TEXT: FILE holds exactly TEXT (and a newline)
    printf '%s\n' "$2" >want.txt
    diff -u want.txt "$1" || fail "unexpected $1"
}

start 1

# ---- files: the exact lines sent ----
head -c 1300 /dev/urandom >fw.bin
run 0 fwrite fw.bin fw.bin
{
    echo '#FOPEN fw.bin'
    echo '#FSIZE'
    perl -e '$/ = \512; print uc(unpack("H*", $_)), "\n" while <>' fw.bin | awk 'BEGIN { off = 0 }
        { n = length($0) / 2; printf "#FWRITE %X,%X:%s\n", off, n, $0; off += n }'
    echo '#FCLOSE'
} >want.txt
diff -u want.txt server.log || fail "fwrite: lines sent"
grep -c '^#FWRITE .*,200:' server.log | grep -qx 2 || fail "fwrite: not 0x200-byte chunks"
[ ! -s out.txt ] && [ ! -s err.txt ] || fail "fwrite is not silent"

run 0 fread fw.bin back.bin
cmp fw.bin back.bin || fail "fread: data differs"
expect_file server.log "#FLIST
#FOPENREAD fw.bin
#FSIZE
#FREAD 0,200
#FREAD 200,200
#FREAD 400,114
#FCLOSE"

# A programmer that does not know #FOPENREAD (the reference product answers #NACK): the file the
# listing showed is opened with #FOPEN instead.
: >marker.txt
run 0 fwrite marker.txt no-fopenread
run 0 fread fw.bin back2.bin
cmp fw.bin back2.bin || fail "fread with #FOPEN: data differs"
expect_file server.log "#FLIST
#FOPENREAD fw.bin
#FOPEN fw.bin
#FSIZE
#FREAD 0,200
#FREAD 200,200
#FREAD 400,114
#FCLOSE"
run 0 fdelete no-fopenread

# Every byte value, sizes around the chunk, an empty file.
perl -e 'print map { chr } 0 .. 255 for 1 .. 2' >bytes.bin
head -c 512 /dev/urandom >chunk.bin
head -c 513 /dev/urandom >chunk1.bin
: >empty.bin
for f in bytes.bin chunk.bin chunk1.bin empty.bin; do
    run 0 fwrite "$f"
    run 0 fread "$f" "copy-$f"
    cmp "$f" "copy-$f" || fail "round trip of $f"
done
run 0 fsize chunk1.bin
expect_file out.txt 513

# A shorter file over a longer one: #FOPEN never truncates, so the old one goes first.
head -c 10 /dev/urandom >short.bin
run 0 fwrite short.bin fw.bin
expect_file server.log "#FOPEN fw.bin
#FSIZE
#FCLOSE
#FDELETE fw.bin
#FOPEN fw.bin
#FSIZE
#FWRITE 0,A:$(perl -e 'print uc(unpack("H*", join("", <>)))' short.bin)
#FCLOSE"
run 0 fread fw.bin - >/dev/null
mf fread fw.bin - >copy.bin
cmp short.bin copy.bin || fail "fread to standard output"

# A file that is not there is never created by looking at it.
run 1 fread nothere.txt
expect_file err.txt "mintflash: fread: nothere.txt: no such file on the programmer"
expect_file server.log "#FLIST"
[ ! -e nothere.txt ] || fail "fread left a local file behind"
run 1 fshow dir/nothere.txt
expect_file server.log "#FLIST dir"
run 1 fsize nothere.txt
run 1 fdelete nothere.txt
expect_file err.txt "mintflash: fdelete: #ERR013:Failed to delete file (no such file)"
echo "ok file lines"

# ---- folder trees ----
mkdir -p tree/Projects/01_Widget/01_App tree/empty
printf '[job]\r\ndevice = SIM\r\n' >tree/Projects/01_Widget/01_App/job.ini
head -c 700 /dev/urandom >tree/Projects/01_Widget/01_App/app.bin
printf '3\r\n' >tree/Projects/01_Widget/Cntdown.txt
printf 'Project = Widget\r\n' >tree/FLASHER.INI
run 0 fwrite -r tree /
grep '^#MKDIR' server.log >mkdirs.txt
expect_file mkdirs.txt "#MKDIR Projects
#MKDIR Projects/01_Widget
#MKDIR Projects/01_Widget/01_App
#MKDIR empty"
run 0 flist Projects/01_Widget
expect_file out.txt "     <DIR>  01_App
         3  Cntdown.txt"
run 0 fread Projects/01_Widget/01_App/app.bin app.copy
cmp tree/Projects/01_Widget/01_App/app.bin app.copy || fail "tree file differs"
# Again: the folders exist, which is fine.
run 0 fwrite -r tree /
# Into a folder that is not there yet: its parents are made first.
run 0 fwrite -r tree/Projects/01_Widget backup/2024/widget
grep '^#MKDIR' server.log | head -3 >mkdirs.txt
expect_file mkdirs.txt "#MKDIR backup
#MKDIR backup/2024
#MKDIR backup/2024/widget"
run 0 fshow backup/2024/widget/01_App/job.ini
cmp out.txt tree/Projects/01_Widget/01_App/job.ini || fail "fshow"
run 0 fwrite short.bin backup/
run 0 fsize backup/short.bin
expect_file out.txt 10
run 1 rmdir backup
expect_file err.txt "mintflash: rmdir: #ERR013:Failed to delete file (not empty)"
run 0 mkdir "name with spaces"
run 0 fwrite short.bin "name with spaces/a b.bin"
run 0 fsize "name with spaces/a b.bin"
run 1 fwrite -r fw.bin x
expect_file err.txt "mintflash: fwrite: fw.bin is not a folder"
run 1 fwrite missing.bin
expect_file err.txt "mintflash: fwrite: cannot open missing.bin: No such file or directory"
run 1 fwrite short.bin nofolder/x.bin
expect_file err.txt "mintflash: fwrite: #ERR010:File open failed (no such folder)"
run 0 mkdir full
run 1 fwrite short.bin full/x.bin
expect_file err.txt "mintflash: fwrite: #ERR012:File write failed (no space left)"
[ "$(tail -1 server.log)" = "#FCLOSE" ] || fail "a failed fwrite leaves the file open"
echo "ok folder trees"

# ---- listing, status, info, result: plain and JSON ----
run 0 --json flist
expect_file out.txt '{"dir":"","entries":[{"name":"backup","type":"dir"},{"name":"empty","type":"dir"},{"name":"full","type":"dir"},{"name":"name with spaces","type":"dir"},{"name":"Projects","type":"dir"},{"name":"bytes.bin","type":"file","size":512},{"name":"chunk.bin","type":"file","size":512},{"name":"chunk1.bin","type":"file","size":513},{"name":"empty.bin","type":"file","size":0},{"name":"FLASHER.INI","type":"file","size":18},{"name":"fw.bin","type":"file","size":10}]}'
run 1 flist nowhere
expect_file err.txt "mintflash: flist: #ERR011:File read failed (no such folder)"
run 0 status
expect_file out.txt READY
expect_file server.log "#INFO
#STATUS"
run 0 --json status
expect_file out.txt '{"slots":[{"slot":1,"state":"READY"}]}'
run 0 info
expect_file out.txt 'VERSION=fake 1
SLOTS=1
PROJECT=Wid"get'
run 0 --json info
expect_file out.txt '{"version":"fake 1","slots":"1","project":"Wid\"get"}'
run 0 result
expect_file out.txt "slot 1: NONE"
echo "ok listings"

# ---- cycles (not a terminal: plain lines, no #PROGRESS ON) ----
run 0 auto
expect_file out.txt "INITIALIZING
CONNECTING
ERASING
PROGRAMMING
VERIFYING
OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)"
expect_file server.log "#AUTO"
run 0 auto noinfo patch 1,8000010,4:01020304
expect_file server.log "#AUTO NOINFO PATCH 1,8000010,4:01020304"
expect_file out.txt "OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)"
run 0 auto NoPatch
expect_file server.log "#AUTO NOPATCH"
for c in erase program verify start; do
    run 0 "$c"
    expect_file server.log "#$(echo "$c" | tr a-z A-Z)"
done
run 0 --json result
expect_file out.txt '{"results":[{"slot":1,"result":"ok","code":null,"text":"OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)"}]}'
run 0 cancel
run 0 select Widget
expect_file server.log "#SELECT Widget"
run 1 select Gadget
expect_file err.txt "mintflash: select: #ERR203:No such project: Gadget"
run 1 securearea create
expect_file err.txt "mintflash: securearea create: #NACK:ERR209:Only allowed on the local connection"
run 1 baudrate 115200
expect_file err.txt "mintflash: baudrate: unix:$work/fake.sock is not a serial line"
run 1 raw '#BOGUS 1'
expect_file out.txt "#NACK"
expect_file err.txt "mintflash: raw: #BOGUS 1: failed"
run 0 raw '#STATUS'
expect_file out.txt "#ACK
#STATUS:READY"
echo "ok cycles"

# ---- scripts and -c ----
cat >script.txt <<'EOF'
#!/usr/bin/env -S mintflash -f
# A comment; blank lines are skipped.

#STATUS
status; raw #INFO
  # indented comment
fsize "name with spaces/a b.bin"
fread nothere.txt
status
EOF
run 1 -f script.txt
expect_file err.txt "mintflash: script.txt:8: fread: nothere.txt: no such file on the programmer"
expect_file server.log "#INFO
#STATUS
#STATUS
#INFO
#FLIST name with spaces
#FOPENREAD name with spaces/a b.bin
#FSIZE
#FCLOSE
#FLIST"
run 1 -k -f script.txt
[ "$(tail -1 server.log)" = "#STATUS" ] || fail "--keep-going did not run the last line"
run 0 -c 'mkdir a; mkdir a/b ;rmdir a/b;  rmdir a'
expect_file server.log "#MKDIR a
#MKDIR a/b
#RMDIR a/b
#RMDIR a"
run 2 -c "raw #FLIST empty;b"
[ "$(cat server.log)" = "#FLIST empty" ] || fail "';' ends a raw line too"
expect_file err.txt "mintflash: unknown command 'b' (try 'help')"
# After a reboot the commander connects again and waits for the programmer to be back.
run 0 -c 'reboot; status'
expect_file server.log "#REBOOT
#INFO
#STATUS
#STATUS
#STATUS"
expect_file out.txt READY
# A programmer still starting refuses commands (#NACK:ERR008:Busy (starting up)): the commander
# waits for it, within its timeout; raw shows the refusal as it is.
: >empty.txt
run 0 -c 'fwrite empty.txt slow-start; reboot; flist'
grep -q 'slow-start' out.txt || fail "flist after a slow start: $(cat out.txt)"
[ "$(grep -c '^#FLIST$' server.log)" = 4 ] || fail "three refusals, then the listing: $(cat server.log)"
run 1 -c 'reboot; raw #FLIST'
grep -qx '#NACK:ERR008:Busy (starting up)' out.txt || fail "raw: $(cat out.txt)"
run 1 --timeout 0.5 -c 'fwrite empty.txt never-starts; reboot; flist'
grep -q 'Busy (starting up)' err.txt || fail "the timeout ends the wait: $(cat err.txt)"
run 0 -c 'fdelete never-starts; fdelete slow-start; reboot'
echo "ok scripts"

# ---- a terminal: #PROGRESS ON and a bar ----
if script -qec true /dev/null >/dev/null 2>&1; then
    : >server.log
    script -qec "$mintflash -d unix:$work/fake.sock auto" /dev/null >tty.txt </dev/null ||
        fail "auto at a terminal: $(cat tty.txt)"
    expect_file server.log "#PROGRESS ON
#AUTO"
    grep -aq 'PROGRAMMING  \[####################--------------------\]  50%' tty.txt ||
        fail "no bar at 50%: $(cat -A tty.txt)"
    grep -aq '100%' tty.txt || fail "no bar at 100%"
    grep -aq 'OK (Total 0.100s' tty.txt || fail "no result at a terminal"
    echo "ok terminal"
else
    echo "skip terminal: script(1) cannot run here"
fi

# ---- several slots ----
start 2
run 0 status
expect_file out.txt "slot 1: READY
slot 2: READY"
run 0 --json status
expect_file out.txt '{"slots":[{"slot":1,"state":"READY"},{"slot":2,"state":"READY"}]}'
run 0 fwrite short.bin fail-slot-2
run 1 auto noinfo
expect_file out.txt "slot 1: OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)
slot 2: ERR205:Verify failed at 0x08000010"
expect_file err.txt "mintflash: auto: slot 2: #ERR205:Verify failed at 0x08000010"
run 0 --json result
expect_file out.txt '{"results":[{"slot":1,"result":"ok","code":null,"text":"OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)"},{"slot":2,"result":"error","code":205,"text":"ERR205:Verify failed at 0x08000010"}]}'
run 0 -c 'selmodule 1; auto noinfo; status'
expect_file out.txt "selected slots: 1
OK (Total 0.100s, Erase 0.010s, Prog 0.080s, Verify 0.010s)
READY"
run 1 auto
grep -q '^slot 2: PROGRAMMING$' out.txt || fail "per-slot status lines"
echo "ok slots"

# ---- peers that misbehave ----
start 1 silent
run 1 -t 0.3 status
expect_file err.txt "mintflash: status: no reply from unix:$work/fake.sock for 0.300 s"
start 1 hangup
run 1 -c 'erase; status'
expect_file err.txt "mintflash: erase: connection to unix:$work/fake.sock closed by the programmer"
echo "ok misbehaving peers"
