#!/usr/bin/env bash
# The commander against a small fake programmer written here in Perl (perl-base only): it keeps
# files in memory, answers the protocol as docs/protocol.md writes it, and logs every line it
# receives, so the exact commands the commander sends are checked (0x200-byte #FWRITE chunks,
# #MKDIR for -r, no #FOPEN of a file that is not there), as well as its output, JSON, scripts,
# exit statuses, multi-slot results, the progress bar at a terminal and a silent peer; and each
# file command against a programmer that answers #FLIST (and one that also answers #FOPENREAD)
# with a bare #NACK, as the reference product does: what works, what fails, what is created.
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
# MODE "normal", or "silent" (never answers), or "hangup" (closes after the #ACK), or
# "no-flist" (answers #FLIST with a bare #NACK, as a programmer that does not know it), or
# "no-flist-fopenread" (#FLIST and #FOPENREAD: the reference product's documented file commands).
# After every command LOG.files lists the folders and files it holds ("D path", "F path size").
# #REBOOT installs a package in _SECURE (removes the folder) unless a file "refuse-push" exists.
# A file "fopen-nospace" makes #FOPEN in _SECURE fail as on a full volume.
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
sub dump_files {
    open(my $df, '>', "$log.files.tmp") or die;
    print $df map { "D $_\n" } grep { $_ ne '' } sort keys %dirs;
    print $df map { "F $_ " . length($files{$_}[1]) . "\n" } sort keys %files;
    close $df;
    rename "$log.files.tmp", "$log.files" or die;
}
dump_files();

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
        if (($mode =~ /^no-flist/ && $cmd eq '#FLIST') ||
            ($mode eq 'no-flist-fopenread' && $cmd eq '#FOPENREAD')) {
            print $c "#NACK\r";
            next;
        }
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
            if (exists $dirs{'_secure'} && !exists $files{'refuse-push'}) {
                delete $files{$_} for grep { parent($_) eq '_secure' } keys %files;
                delete $dirs{'_secure'};
            }
            $starting = exists $files{'never-starts'} ? 1e9 : exists $files{'slow-start'} ? 3 : 0;
        } elsif ($cmd eq '#SELECT') {
            my @hits = grep { m{^projects/(\d+_)?\Q@{[lc $arg]}\E$} } keys %dirs;
            @out = @hits ? ('#OK') : ("#ERR203:No such project: $arg");
        } elsif ($cmd eq '#SECUREAREA') {
            @out = ('#NACK:ERR209:Only allowed on the local connection');
        } elsif ($cmd eq '#FOPEN' && exists $files{'fopen-nospace'} && $key =~ m{^_secure/}) {
            @out = ('#ERR010:File open failed (no space left)');
        } elsif ($cmd eq '#FOPEN') {
            if (exists $dirs{$key} || !exists $dirs{lc parent(norm($arg))}) {
                @out = ('#ERR010:File open failed (no such file or directory)');
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
            @out = exists $files{'fail-fclose'} ? ('#ERR012:File write failed (as told)') : ('#OK');
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
        dump_files(); # before the reply: the commander may have ended when LOG.files is read
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
    rm -f fake.sock server.log server.log.files
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
expect_file err.txt "mintflash: fwrite: #ERR010:File open failed (no such file or directory)"
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

# ---- programmers without #FLIST ----
# A programmer that answers #FLIST with a bare #NACK (it does not know it) but knows #FOPENREAD:
# every command but flist does its job, files are opened by name with #FOPENREAD, and reading
# creates nothing on it (LOG.files: what the fake holds).
fake_files() { cp server.log.files "$1"; }
same_files() { # same_files BEFORE WHAT: the fake holds what it held in BEFORE
    diff -u "$1" server.log.files || fail "$2 changed the files on the programmer"
}
seed() { # the files both fakes below start with
    run 0 fwrite fw.bin
    run 0 mkdir dir
    printf 'Project = Widget\r\n' >ini.txt
    run 0 fwrite ini.txt dir/FLASHER.INI
    run 0 fwrite empty.bin
}
fread_lines="#FSIZE
#FREAD 0,200
#FREAD 200,200
#FREAD 400,114
#FCLOSE"
start 1 no-flist
seed
fake_files before.txt
run 0 fread fw.bin back3.bin
cmp fw.bin back3.bin || fail "no #FLIST: fread data differs"
expect_file server.log "#FLIST
#FOPENREAD fw.bin
$fread_lines"
run 0 fshow dir/FLASHER.INI
cmp out.txt ini.txt || fail "no #FLIST: fshow"
expect_file server.log "#FLIST dir
#FOPENREAD dir/FLASHER.INI
#FSIZE
#FREAD 0,12
#FCLOSE"
run 0 fsize fw.bin
expect_file out.txt 1300
run 0 fsize empty.bin
expect_file out.txt 0
run 0 fread empty.bin copy-empty.bin
[ -f copy-empty.bin ] && [ ! -s copy-empty.bin ] || fail "no #FLIST: an empty file"
run 1 fread nothere.txt
expect_file err.txt "mintflash: fread: nothere.txt: no such file on the programmer (#ERR010:File open failed (no such file))"
expect_file server.log "#FLIST
#FOPENREAD nothere.txt"
[ ! -e nothere.txt ] || fail "no #FLIST: fread left a local file behind"
run 1 fshow dir/nothere.txt
expect_file err.txt "mintflash: fshow: dir/nothere.txt: no such file on the programmer (#ERR010:File open failed (no such file))"
run 1 fsize nothere.txt
expect_file err.txt "mintflash: fsize: nothere.txt: no such file on the programmer (#ERR010:File open failed (no such file))"
run 1 fsize dir
expect_file err.txt "mintflash: fsize: dir: no such file on the programmer (#ERR010:File open failed (no such file))"
same_files before.txt "reading without #FLIST"
run 1 flist
expect_file err.txt "mintflash: flist: the programmer does not support listing folders (it answers #FLIST with #NACK)"
[ ! -s out.txt ] || fail "no #FLIST: flist printed something"
run 1 --json flist dir
expect_file err.txt "mintflash: flist: the programmer does not support listing folders (it answers #FLIST with #NACK)"
[ ! -s out.txt ] || fail "no #FLIST: flist --json printed something"
# Writing, deleting and folders do not need #FLIST; a folder that is there already cannot be told
# from a failed #MKDIR without it.
run 0 fwrite -r tree /
run 1 fwrite -r tree /
expect_file err.txt "mintflash: fwrite: #ERR012:File write failed (exists)"
run 0 fdelete FLASHER.INI
echo "ok no #FLIST: files"

# records: RECORDS.000, .001, ... opened with #FOPENREAD up to the first missing one, creating
# nothing (the fake knows no #RECORDHEAD: copied without a head statement, exit status 1).
printf 'r0\n' >r0.txt
printf 'r1\n' >r1.txt
run 0 fwrite r0.txt RECORDS.000
run 0 fwrite r1.txt RECORDS.001
fake_files before.txt
run 1 records recs
expect_file out.txt "copied 2 RECORDS file(s) into recs, without a head statement"
expect_file err.txt "mintflash: records: #NACK (the programmer does not know '#RECORDHEAD')"
cmp r0.txt recs/RECORDS.000 && cmp r1.txt recs/RECORDS.001 || fail "no #FLIST: records copied"
grep -v '^#RECORDHEAD ' server.log | grep -v '^#F\(SIZE\|READ\|CLOSE\)' >probes.txt
expect_file probes.txt "#FLIST
#FOPENREAD RECORDS.000
#FOPENREAD RECORDS.001
#FOPENREAD RECORDS.002"
same_files before.txt "records without #FLIST"
# Files deleted before the first one are skipped.
run 0 fdelete RECORDS.000
run 1 records recs2
expect_file out.txt "copied 1 RECORDS file(s) into recs2, without a head statement"
[ ! -e recs2/RECORDS.000 ] && cmp r1.txt recs2/RECORDS.001 || fail "no #FLIST: records after a gap"
# None: every name up to RECORDS.999 is tried, and none is created.
run 0 fdelete RECORDS.001
fake_files before.txt
run 1 records recs3
expect_file out.txt "copied 0 RECORDS file(s) into recs3, without a head statement"
[ "$(grep -c '^#FOPENREAD RECORDS\.[0-9][0-9][0-9]$' server.log)" = 1000 ] ||
    fail "no #FLIST: records without any file"
same_files before.txt "records without #FLIST or RECORDS files"
echo "ok no #FLIST: records"

# push: the "_SECURE exists already" check is skipped; the package's #FOPEN comes first (a
# programmer of today makes _SECURE with it), and one that answers "no such file or directory"
# gets #MKDIR _SECURE; after the restart the package's name opened with #FOPENREAD tells whether
# it was installed.
head -c 700 /dev/urandom >pkg.mfp
run 0 push pkg.mfp
expect_file out.txt "installed pkg.mfp"
head -4 server.log >push.txt
expect_file push.txt "#FLIST
#FOPEN _SECURE/pkg.mfp
#MKDIR _SECURE
#FOPEN _SECURE/pkg.mfp"
tail -2 server.log >push.txt
expect_file push.txt "#FLIST
#FOPENREAD _SECURE/pkg.mfp"
same_files before.txt "an installed push"
run 0 fwrite r0.txt refuse-push
run 1 push pkg.mfp
expect_file err.txt "mintflash: push: the programmer did not install the package: see its FLASHER.LOG (the current setup is kept, but runs no cycle while the package is there: mintflash fdelete _SECURE/pkg.mfp)"
# Left there by the refusal: opened and written again (without #FLIST nothing tells), refused
# again.
run 1 push pkg.mfp
expect_file err.txt "mintflash: push: the programmer did not install the package: see its FLASHER.LOG (the current setup is kept, but runs no cycle while the package is there: mintflash fdelete _SECURE/pkg.mfp)"
run 0 -c 'fdelete _SECURE/pkg.mfp; rmdir _SECURE; fdelete refuse-push'
# A package that cannot be written (the fake fails #FWRITE to a name with "full"): the package and
# the _SECURE made for it are deleted again, never an empty _SECURE for the next start.
cp pkg.mfp full.mfp
run 1 push full.mfp
expect_file err.txt "mintflash: push: #ERR012:File write failed (no space left)"
tail -2 server.log >push.txt
expect_file push.txt "#FDELETE _SECURE/full.mfp
#RMDIR _SECURE"
same_files before.txt "a push whose package could not be written"
# #FOPEN failing otherwise than "no such file or directory" (a full volume): no #MKDIR _SECURE.
run 0 fwrite r0.txt fopen-nospace
run 1 push pkg.mfp
expect_file err.txt "mintflash: push: #ERR010:File open failed (no space left)"
! grep -q '^#MKDIR' server.log || fail "push: #MKDIR after #FOPEN failed for want of space"
run 0 fdelete fopen-nospace
same_files before.txt "a push refused for want of space"
# The package's #FOPEN taken (here: _SECURE was there), then its #FCLOSE failing: what push put
# there goes again, and so does the _SECURE it leaves empty (the next start would erase with it).
run 0 mkdir _SECURE
printf x >fail-fclose.txt
run 1 fwrite fail-fclose.txt fail-fclose
run 1 push pkg.mfp
expect_file err.txt "mintflash: push: #ERR012:File write failed (as told)"
grep -qi '^[DF] _secure' server.log.files && fail "push left _SECURE or its package after a failed #FCLOSE"
tail -2 server.log >push.txt
expect_file push.txt "#FDELETE _SECURE/pkg.mfp
#RMDIR _SECURE"
run 0 fdelete fail-fclose
echo "ok no #FLIST: push"

# A programmer that knows neither #FLIST nor #FOPENREAD (the reference product): a file the user
# names is opened with #FOPEN, which creates a missing one, so an empty file fails (it may be the
# one just created); records refuses, creating nothing.
start 1 no-flist-fopenread
seed
fake_files before.txt
run 0 fread fw.bin back4.bin
cmp fw.bin back4.bin || fail "no #FOPENREAD: fread data differs"
expect_file server.log "#FLIST
#FOPENREAD fw.bin
#FOPEN fw.bin
$fread_lines"
run 0 fshow dir/FLASHER.INI
cmp out.txt ini.txt || fail "no #FOPENREAD: fshow"
run 0 fsize fw.bin
expect_file out.txt 1300
same_files before.txt "reading existing files with #FOPEN"
run 1 fread empty.bin copy-empty2.bin
expect_file err.txt "mintflash: fread: empty.bin is empty, or was missing and #FOPEN has just created it empty: this programmer knows neither #FLIST nor #FOPENREAD, so the commander cannot tell (if it was not there, 'fdelete empty.bin' removes it again)"
[ ! -e copy-empty2.bin ] || fail "no #FOPENREAD: fread left a local file behind"
run 1 fsize nothere.txt
expect_file err.txt "mintflash: fsize: nothere.txt is empty, or was missing and #FOPEN has just created it empty: this programmer knows neither #FLIST nor #FOPENREAD, so the commander cannot tell (if it was not there, 'fdelete nothere.txt' removes it again)"
expect_file server.log "#FLIST
#FOPENREAD nothere.txt
#FOPEN nothere.txt
#FSIZE
#FCLOSE"
# That is the one file a read creates there: the one the user named, empty (and said so).
{ cat before.txt; echo "F nothere.txt 0"; } | sort >want-files.txt
diff -u want-files.txt server.log.files || fail "no #FOPENREAD: files after fsize of a missing file"
run 0 fdelete nothere.txt
run 1 flist dir
expect_file err.txt "mintflash: flist: the programmer does not support listing folders (it answers #FLIST with #NACK)"
run 0 fwrite r0.txt RECORDS.000
fake_files before.txt
run 1 records recs4
expect_file err.txt "mintflash: records: #NACK (the programmer does not know '#RECORDHEAD')
mintflash: records: the programmer knows neither #FLIST nor #FOPENREAD: its RECORDS files cannot be looked for without creating the missing ones (#FOPEN creates a missing file); copy them by name with fread"
[ ! -s out.txt ] || fail "no #FOPENREAD: records printed $(cat out.txt)"
grep -v '^#RECORDHEAD ' server.log >probes.txt
expect_file probes.txt "#FLIST
#FOPENREAD RECORDS.000"
[ -z "$(ls recs4)" ] || fail "no #FOPENREAD: records copied something"
same_files before.txt "records without #FLIST or #FOPENREAD"
run 0 fread RECORDS.000 recs4/
cmp r0.txt recs4/RECORDS.000 || fail "no #FOPENREAD: a RECORDS file by name"
# push: installed, but the commander cannot see it (no #FLIST, no #FOPENREAD, no MOVE_ERROR).
run 1 push pkg.mfp
expect_file err.txt "mintflash: push: cannot tell whether the programmer installed the package: it knows neither #FLIST nor #FOPENREAD, and its #INFO has no MOVE_ERROR"
same_files before.txt "a push the fake installed"
echo "ok no #FLIST, no #FOPENREAD"
