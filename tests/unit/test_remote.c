/* The commander's protocol client (programs/mintflash/remote.c) against scripted fake servers
 * on a socketpair, loopback TCP, a UNIX socket and a pseudo-terminal: the exact bytes sent, how
 * replies end (#OK, #ERR, #NACK, #DONE, per-slot #STATUS / #RESULT), stale lines, garbage,
 * lines split across reads, overlong and long replies, disconnects, timeouts on a controlled
 * clock, #CANCEL on interrupt, reconnects, URL errors, the serial line's settings, and the
 * reply parsers on hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mf_clock.h"
#include "mf_err.h"
#include "mf_testutil.h"

/* The client is a file of the commander program, not of a library: it is compiled into this
 * test, with its clock replaced by one the fake server can move forward (timeouts are then
 * tested without waiting for them and without depending on the machine's speed). */
static uint64_t fake_clock_ms(void);
#define mf_clock_ms fake_clock_ms
#include "../../programs/mintflash/remote.c"
#undef mf_clock_ms

static uint64_t clock_jump; /* added to the real monotonic clock; atomic builtins only */

static uint64_t fake_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t real = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return real + __atomic_load_n(&clock_jump, __ATOMIC_SEQ_CST);
}

static void jump_clock(uint64_t ms)
{
    __atomic_add_fetch(&clock_jump, ms, __ATOMIC_SEQ_CST);
}

/* ---- the scripted fake server ---- */

enum step_kind {
    EXPECT,    /* read exactly these bytes from the client */
    SEND,      /* write these bytes */
    SEND_SLOW, /* write these bytes 7 at a time, pausing between the pieces */
    JUMP,      /* move the client's clock forward by `ms` */
    INTERRUPT, /* set the client's interrupt flag */
    PAUSE,     /* sleep `ms` real milliseconds (lets the client block in its wait) */
    HANG_UP,   /* close the connection */
    END,
};

struct step {
    enum step_kind kind;
    const char *bytes;
    unsigned ms;
};

struct fake {
    int fd;
    const struct step *steps;
    pthread_t thread;
    volatile sig_atomic_t *interrupt;
    char failure[512]; /* what the server did not get, or "" */
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads exactly n bytes; a hang guard of 10 s real time (never reached in a passing run). */
static int read_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0)
            return -1;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    for (const struct step *s = f->steps; s->kind != END && !f->failure[0]; s++) {
        size_t len = s->bytes ? strlen(s->bytes) : 0;
        switch (s->kind) {
        case EXPECT: {
            char *buf = calloc(1, len + 1);
            if (read_exact(f->fd, buf, len) || memcmp(buf, s->bytes, len) != 0)
                snprintf(f->failure, sizeof f->failure, "expected \"%s\", got \"%s\"", s->bytes,
                         buf);
            free(buf);
            break;
        }
        case SEND:
            if (write(f->fd, s->bytes, len) != (ssize_t)len)
                snprintf(f->failure, sizeof f->failure, "cannot send \"%s\"", s->bytes);
            break;
        case SEND_SLOW:
            /* Odd-sized pieces, so that lines and hex pairs are cut everywhere. */
            for (size_t i = 0; i < len; i += 7) {
                size_t n = len - i < 7 ? len - i : 7;
                if (write(f->fd, s->bytes + i, n) != (ssize_t)n)
                    snprintf(f->failure, sizeof f->failure, "cannot send slowly");
                sleep_ms(1);
            }
            break;
        case JUMP:
            jump_clock(s->ms);
            break;
        case INTERRUPT:
            *f->interrupt = 1;
            break;
        case PAUSE:
            sleep_ms(s->ms);
            break;
        case HANG_UP:
            close(f->fd);
            f->fd = -1;
            break;
        case END:
            break;
        }
    }
    return NULL;
}

static void fake_start(struct fake *f, int fd, const struct step *steps)
{
    memset(f, 0, sizeof *f);
    f->fd = fd;
    f->steps = steps;
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

/* Waits for the script to end and requires it to have seen what it expected. */
static void fake_finish(struct fake *f)
{
    assert_int_equal(pthread_join(f->thread, NULL), 0);
    if (f->fd >= 0)
        close(f->fd);
    if (f->failure[0])
        fail_msg("fake server: %s", f->failure);
}

/* A client attached to one end of a socketpair, the fake server on the other. */
struct rig {
    struct mf_remote r;
    struct fake f;
    volatile sig_atomic_t interrupted;
};

static struct rig *rig_start(const struct step *steps, int timeout_ms)
{
    struct rig *g = calloc(1, sizeof *g);
    assert_non_null(g);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    g->r.interrupted = &g->interrupted;
    mf_remote_attach(&g->r, sv[0], MF_REMOTE_UNIX, "unix:fake", timeout_ms);
    fake_start(&g->f, sv[1], steps);
    g->f.interrupt = &g->interrupted;
    return g;
}

static void rig_finish(struct rig *g)
{
    fake_finish(&g->f);
    mf_remote_close(&g->r);
    free(g);
}

/* Collects the lines passed to on_line, joined with '|'. */
struct seen {
    char text[8192];
    int count;
};

static void see_line(void *ctx, const char *line)
{
    struct seen *s = ctx;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s%s", s->count ? "|" : "", line);
    s->count++;
}

#define INFO_ONE_SLOT                                                                              \
    {EXPECT, "#INFO\r", 0},                                                                        \
    {                                                                                              \
        SEND, "#ACK\r#INFO:VERSION=0.1.0\r#INFO:SLOTS=1\r#OK\r", 0                                 \
    }

/* ---- replies and how they end ---- */

static void test_status_single_slot(void **state)
{
    (void)state;
    static const struct step steps[] = {
        INFO_ONE_SLOT,
        {EXPECT, "#STATUS\r", 0},
        {SEND, "#ACK\r#STATUS:READY\r", 0},
        {EXPECT, "#STATUS\r", 0}, /* the slot count is known now: no second #INFO */
        {SEND, "#ACK\r#STATUS:PROGRAMMING\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#STATUS", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_true(reply.acked);
    assert_string_equal(reply.final, "#STATUS:READY");
    assert_int_equal(seen.count, 0);
    assert_int_equal(g->r.slots, 1);
    assert_int_equal(g->r.selected, 1);
    assert_int_equal(g->r.selected_slot, 1);
    assert_int_equal(mf_remote_command(&g->r, "#STATUS", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#STATUS:PROGRAMMING");
    rig_finish(g);
}

static void test_status_and_result_per_slot(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#INFO\r", 0},
        {SEND, "#ACK\r#INFO:SLOTS=3\r#OK\r", 0},
        {EXPECT, "#STATUS\r", 0},
        {SEND, "#ACK\r#STATUS:1:READY\r#STATUS:2:ERASING\r#STATUS:3:READY\r", 0},
        {EXPECT, "#RESULT\r", 0},
        {SEND, "#ACK\r#RESULT:1:#OK (Total 1.000s)\r#RESULT:2:NONE\r#RESULT:3:#ERR205:Verify\r", 0},
        {EXPECT, "#SELMODULE 2,3\r", 0},
        {SEND, "#ACK\r#SELECTED:2,3\r", 0},
        {EXPECT, "#RESULT\r", 0},
        {SEND, "#ACK\r#RESULT:2:NONE\r#RESULT:3:NONE\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#STATUS", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_string_equal(seen.text, "#STATUS:1:READY|#STATUS:2:ERASING");
    assert_string_equal(reply.final, "#STATUS:3:READY");
    assert_int_equal(g->r.selected, 3);
    assert_int_equal(g->r.selected_slot, 0);

    memset(&seen, 0, sizeof seen);
    assert_int_equal(mf_remote_command(&g->r, "#RESULT", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK); /* the query worked, whatever it says */
    assert_string_equal(seen.text, "#RESULT:1:#OK (Total 1.000s)|#RESULT:2:NONE");
    assert_string_equal(reply.final, "#RESULT:3:#ERR205:Verify");

    assert_int_equal(mf_remote_command(&g->r, "#SELMODULE 2,3", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#SELECTED:2,3");
    assert_int_equal(g->r.selected, 2);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(mf_remote_command(&g->r, "#RESULT", see_line, &seen, 0, &reply), 0);
    assert_int_equal(seen.count, 1);
    assert_string_equal(reply.final, "#RESULT:3:NONE");
    rig_finish(g);
}

static void test_selmodule_then_status(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#SELMODULE 3\r", 0},      {SEND, "#ACK\r#SELECTED:3\r", 0},
        {EXPECT, "#STATUS\r", 0}, /* one slot selected: no #INFO needed */
        {SEND, "#ACK\r#STATUS:READY\r", 0}, {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#SELMODULE 3", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_int_equal(g->r.selected, 1);
    assert_int_equal(g->r.selected_slot, 3);
    assert_int_equal(mf_remote_command(&g->r, "#STATUS", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#STATUS:READY");
    rig_finish(g);
}

static void test_cycle_single_slot(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#AUTO PATCH 1,8000010,4:01020304\r", 0},
        {SEND, "#ACK\r#STATUS:INITIALIZING\r#PROGRESS:1:PROGRAMMING:100:400\r", 0},
        {SEND, "#STATUS:ERASING\r#OK (Total 0.412s, Erase 0.064s, Prog 0.300s, Verify 0.031s)\r",
         0},
        {SEND, "#STATUS:READY\r", 0}, /* after the final, as the reference does */
        {EXPECT, "#FOPEN FLASHER.LOG\r", 0},
        {SEND, "#ACK\r#OK\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(
        mf_remote_command(&g->r, "#AUTO PATCH 1,8000010,4:01020304", see_line, &seen, 0, &reply),
        0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_string_equal(reply.final,
                        "#OK (Total 0.412s, Erase 0.064s, Prog 0.300s, Verify 0.031s)");
    assert_string_equal(seen.text,
                        "#STATUS:INITIALIZING|#PROGRESS:1:PROGRAMMING:100:400|#STATUS:ERASING");
    /* The trailing #STATUS:READY is not taken as the next command's reply. */
    memset(&seen, 0, sizeof seen);
    assert_int_equal(mf_remote_command(&g->r, "#FOPEN FLASHER.LOG", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_string_equal(reply.final, "#OK");
    assert_int_equal(seen.count, 0);
    rig_finish(g);
}

static void test_cycle_several_slots(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#AUTO\r", 0},
        {SEND, "#ACK\r#STATUS:1:ERASING\r#STATUS:2:ERASING\r#RESULT:1:#OK (Total 1.000s)\r", 0},
        {SEND, "#RESULT:2:#ERR205:Verify failed at 0x08000010\r#RESULT:3:ERR206:No target\r", 0},
        {SEND, "#DONE\r", 0},
        {EXPECT, "#AUTO\r", 0},
        {SEND, "#ACK\r#RESULT:1:#OK (Total 1.000s)\r#RESULT:2:OK (Total 1.100s)\r#DONE\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#AUTO", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_ERR);
    assert_int_equal(reply.failed_slots, 2);
    assert_int_equal(reply.code, 205);
    assert_string_equal(reply.final, "#RESULT:2:#ERR205:Verify failed at 0x08000010");
    assert_int_equal(seen.count, 5);
    assert_int_equal(mf_remote_command(&g->r, "#AUTO", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    assert_int_equal(reply.failed_slots, 0);
    assert_string_equal(reply.final, "#DONE");
    rig_finish(g);
}

static void test_nack_and_errors(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#FROBNICATE\r", 0},
        {SEND, "#NACK\r", 0},
        {EXPECT, "#SECUREAREA CREATE\r", 0},
        {SEND, "#NACK:ERR209:Only allowed on the local connection\r", 0},
        {EXPECT, "#FWRITE 0,1:41\r", 0},
        {SEND, "#ACK\r#ERR012:File write failed (no space left)\r", 0},
        {EXPECT, "#FREAD 0,4\r", 0},
        {SEND, "#ACK\r#ERR255:No file opened\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#FROBNICATE", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_NACK);
    assert_false(reply.acked);
    assert_int_equal(reply.code, -1);
    assert_string_equal(reply.final, "#NACK");
    assert_int_equal(mf_remote_command(&g->r, "#SECUREAREA CREATE", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_NACK);
    assert_int_equal(reply.code, 209);
    assert_int_equal(mf_remote_command(&g->r, "#FWRITE 0,1:41", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_ERR);
    assert_int_equal(reply.code, 12);
    assert_string_equal(reply.final, "#ERR012:File write failed (no space left)");
    assert_int_equal(mf_remote_command(&g->r, "#FREAD 0,4", NULL, NULL, 0, &reply), 0);
    assert_int_equal(reply.code, 255);
    rig_finish(g);
}

static void test_line_endings_and_stale_lines(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#FSIZE\r", 0},
        /* stale lines of an earlier command before the #ACK, CR LF, bare LF, empty lines */
        {SEND, "#OK\r\n#STATUS:READY\n\n\r\r#ACK\r\n\r\n#OK:1a\n", 0},
        {EXPECT, "#FCLOSE\r", 0},
        {SEND, "#ACK\n#OK\n", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#FSIZE", see_line, &seen, 0, &reply), 0);
    assert_string_equal(reply.final, "#OK:1a");
    assert_int_equal(seen.count, 0);
    uint64_t size;
    assert_int_equal(mf_remote_parse_size(reply.final, &size), 0);
    assert_int_equal(size, 0x1a);
    assert_int_equal(mf_remote_command(&g->r, "#FCLOSE", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#OK");
    rig_finish(g);
}

static void test_garbage_and_greeting(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#FLIST\r", 0},
        {SEND, "J-Link / Flasher ATE Mainboard V1 telnet-shell.\r", 0},
        {SEND, "\x01\xff\x1b[31mred\x7f\r#ACK\r#FLIST:D:Projects\r#FLIST:F:1f:FLASHER.INI\r", 0},
        {SEND, "#WHATEVER:new reply kind\r#OK\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#FLIST", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_OK);
    /* Noise reaches on_line with its control bytes made visible, never raw. */
    assert_string_equal(seen.text, "J-Link / Flasher ATE Mainboard V1 telnet-shell.|"
                                   "???[31mred?|#FLIST:D:Projects|#FLIST:F:1f:FLASHER.INI|"
                                   "#WHATEVER:new reply kind");
    rig_finish(g);
}

/* A hostile programmer's C1 controls written as UTF-8 (CSI C2 9B, OSC C2 9D, ST C2 9C) and raw
 * (9B, CSI to a terminal in an 8-bit mode) reach neither on_line nor the final line: the
 * commander prints both to a terminal. Every byte that is not part of well-formed UTF-8 is '?'
 * (the reference's code page 437, 82 for e-acute; a lone C2 at the end). Other UTF-8 (here
 * U+00E9 and U+011B, whose second byte is 9B) is kept. */
static void test_utf8_c1_controls_are_not_passed(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#FLIST\r", 0},
        {SEND,
         "#ACK\r#FLIST:F:1:a\xc2\x9b"
         "2J\xc2\x9d"
         "0;t\xc2\x9c\xc3\xa9\xc4\x9b\r",
         0},
        {SEND,
         "#ERR001:x\xc2\x9b"
         "31m\x9b"
         "2Jcaf\x82\xc2\r",
         0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#FLIST", see_line, &seen, 0, &reply), 0);
    assert_int_equal(reply.outcome, MF_REMOTE_ERR);
    assert_string_equal(seen.text, "#FLIST:F:1:a??2J??0;t??\xc3\xa9\xc4\x9b");
    assert_string_equal(reply.final, "#ERR001:x??31m?2Jcaf??");
    rig_finish(g);
}

/* ---- framing: split reads, long and overlong lines ---- */

static void test_lines_split_across_reads(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct mf_remote r = {0};
    mf_remote_attach(&r, sv[0], MF_REMOTE_UNIX, "unix:fake", 5000);
    char line[MF_REMOTE_REPLY_MAX + 1];
    uint64_t later = fake_clock_ms() + 5000;
    /* Deterministic: each piece is read by one fill() before the next is written. */
    static const char *const pieces[] = {"#O", "K (Total 1.", "000s)", "\r", "\n#ACK", "\r"};
    int lines = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        assert_int_equal(write(sv[1], pieces[i], strlen(pieces[i])), (ssize_t)strlen(pieces[i]));
        assert_int_equal(fill(&r, later), 0);
        int got;
        while ((got = take_line(&r, line)) == 1) {
            lines++;
            if (lines == 1) {
                assert_int_equal(i, 3); /* not before its CR arrived */
                assert_string_equal(line, "#OK (Total 1.000s)");
            } else {
                assert_int_equal(i, 5);
                assert_string_equal(line, "#ACK");
            }
        }
        assert_int_equal(got, 0);
    }
    assert_int_equal(lines, 2);
    mf_remote_close(&r);
    close(sv[1]);
}

static char long_reply[16 + 2 * MF_REMOTE_CHUNK];

static void test_long_reply_in_pieces(void **state)
{
    (void)state;
    int used = snprintf(long_reply, sizeof long_reply, "#OK:200:");
    for (int i = 0; i < MF_REMOTE_CHUNK; i++)
        used += snprintf(long_reply + used, sizeof long_reply - (size_t)used, "%02x", i & 0xff);
    char *reply_bytes = malloc(sizeof long_reply + 8);
    snprintf(reply_bytes, sizeof long_reply + 8, "#ACK\r%s\r", long_reply);
    struct step steps[] = {
        {EXPECT, "#FREAD 0,200\r", 0},
        {SEND_SLOW, reply_bytes, 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply *reply = malloc(sizeof *reply);
    assert_int_equal(mf_remote_command(&g->r, "#FREAD 0,200", NULL, NULL, 0, reply), 0);
    assert_int_equal(reply->outcome, MF_REMOTE_OK);
    uint8_t data[MF_REMOTE_CHUNK];
    size_t n;
    assert_int_equal(mf_remote_parse_fread(reply->final, data, sizeof data, &n), 0);
    assert_int_equal(n, MF_REMOTE_CHUNK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(data[i], i & 0xff);
    rig_finish(g);
    free(reply);
    free(reply_bytes);
}

static void test_overlong_lines(void **state)
{
    (void)state;
    /* A line of exactly MF_REMOTE_REPLY_MAX bytes is taken; one byte more is refused, its rest
     * skipped, and the connection stays usable. */
    size_t max = MF_REMOTE_REPLY_MAX;
    char *fits = malloc(max + 16), *too_long = malloc(max + 32);
    snprintf(fits, max + 16, "#ACK\r#OK:");
    memset(fits + 9, 'a', max - 4);
    snprintf(fits + 9 + max - 4, 8, "\r");
    snprintf(too_long, max + 32, "#ACK\r#OK:");
    memset(too_long + 9, 'b', max - 3);
    snprintf(too_long + 9 + max - 3, 16, "tail\r#OK\r");
    struct step steps[] = {
        {EXPECT, "#FSIZE\r", 0}, {SEND, fits, 0},         {EXPECT, "#FSIZE\r", 0},
        {SEND, too_long, 0},     {EXPECT, "#FSIZE\r", 0}, {SEND, "#ACK\r#OK:5\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply *reply = malloc(sizeof *reply);
    assert_int_equal(mf_remote_command(&g->r, "#FSIZE", NULL, NULL, 0, reply), 0);
    assert_int_equal(strlen(reply->final), max);
    assert_int_equal(mf_remote_command(&g->r, "#FSIZE", NULL, NULL, 0, reply), MF_EPROTO);
    assert_non_null(strstr(g->r.error, "longer than 4096 bytes"));
    assert_int_equal(mf_remote_command(&g->r, "#FSIZE", NULL, NULL, 0, reply), 0);
    assert_string_equal(reply->final, "#OK:5");
    rig_finish(g);
    free(reply);
    free(fits);
    free(too_long);
}

static void test_bad_commands_are_not_sent(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#OK\r", 0}, /* the first thing the client sends is the valid command */
        {SEND, "#ACK\r#OK\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "STATUS", NULL, NULL, 0, &reply), MF_EINVAL);
    assert_int_equal(mf_remote_command(&g->r, "#FOPEN a\rb", NULL, NULL, 0, &reply), MF_EINVAL);
    assert_non_null(strstr(g->r.error, "control character at byte 8"));
    char *huge = malloc(MF_REMOTE_COMMAND_MAX + 2);
    memset(huge, 'A', MF_REMOTE_COMMAND_MAX + 1);
    huge[0] = '#';
    huge[MF_REMOTE_COMMAND_MAX + 1] = '\0';
    assert_int_equal(mf_remote_command(&g->r, huge, NULL, NULL, 0, &reply), MF_EINVAL);
    free(huge);
    assert_int_equal(mf_remote_command(&g->r, "#OK", NULL, NULL, 0, &reply), 0);
    rig_finish(g);
}

/* ---- disconnects, timeouts, interrupts ---- */

static void test_disconnect_mid_reply(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#AUTO\r", 0},
        {SEND, "#ACK\r#STATUS:ERASING\r#OK (Tot", 0},
        {HANG_UP, NULL, 0},
        {END, NULL, 0},
    };
    /* A short timeout: the reconnect below retries for that long. */
    struct rig *g = rig_start(steps, 200);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#AUTO", NULL, NULL, 0, &reply), MF_EIO);
    assert_string_equal(g->r.error, "connection to unix:fake closed by the programmer");
    assert_true(g->r.peer_closed);
    /* The next command tries to connect anew: "unix:fake" is no socket. */
    assert_int_not_equal(mf_remote_command(&g->r, "#STATUS", NULL, NULL, 0, &reply), 0);
    assert_non_null(strstr(g->r.error, "cannot connect to unix:fake"));
    rig_finish(g);
}

static void test_silent_peer_times_out(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#ERASE\r", 0}, {SEND, "#ACK\r", 0}, {PAUSE, NULL, 20},
        {JUMP, NULL, 1500},      {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 1000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#ERASE", NULL, NULL, 0, &reply), MF_ETIMEOUT);
    assert_string_equal(g->r.error, "no reply from unix:fake for 1.000 s");
    rig_finish(g);
}

static void test_status_lines_keep_the_wait_alive(void **state)
{
    (void)state;
    /* Five gaps of 600 ms against a 1 s timeout, each line taken before the clock moves on: 3 s
     * in all, and no timeout, for the cycles and a restart in any case, with or without slots. */
    static const char *const commands[] = {"#PROGRAM", "#auto 1,2", "#Verify",
                                           "#ERASE *", "#START",    "#REBOOT"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char expect[32];
        snprintf(expect, sizeof expect, "%s\r", commands[i]);
        const struct step steps[] = {
            {EXPECT, expect, 0},
            {SEND, "#ACK\r", 0},
            {PAUSE, NULL, 20},
            {JUMP, NULL, 600},
            {SEND, "#STATUS:CONNECTING\r", 0},
            {PAUSE, NULL, 20},
            {JUMP, NULL, 600},
            {SEND, "#STATUS:ERASING\r", 0},
            {PAUSE, NULL, 20},
            {JUMP, NULL, 600},
            {SEND, "#PROGRESS:1:PROGRAMMING:0:100\r", 0},
            {PAUSE, NULL, 20},
            {JUMP, NULL, 600},
            {SEND, "#PROGRESS:1:PROGRAMMING:100:100\r", 0},
            {PAUSE, NULL, 20},
            {JUMP, NULL, 600},
            {SEND, "#OK (Total 3.000s)\r", 0},
            {END, NULL, 0},
        };
        struct rig *g = rig_start(steps, 1000);
        struct mf_remote_reply reply;
        struct seen seen = {0};
        int err = mf_remote_command(&g->r, commands[i], see_line, &seen, 0, &reply);
        if (err)
            fail_msg("%s: %s", commands[i], g->r.error);
        assert_int_equal(reply.outcome, MF_REMOTE_OK);
        assert_int_equal(seen.count, 4);
        rig_finish(g);
    }
}

static void test_status_lines_do_not_hold_other_commands(void **state)
{
    (void)state;
    /* #FLIST answered with #ACK and then only status lines, 600 ms apart against a 1 s timeout
     * (each taken before the clock moves on): they say nothing about the listing, so the wait
     * times out before the #OK. */
    static const struct step steps[] = {
        {EXPECT, "#FLIST\r", 0},
        {SEND, "#ACK\r", 0},
        {PAUSE, NULL, 20},
        {JUMP, NULL, 600},
        {SEND, "#STATUS:BUSY\r", 0},
        {PAUSE, NULL, 20},
        {JUMP, NULL, 600},
        {SEND, "#PROGRESS:1:PROGRAMMING:0:100\r", 0},
        {PAUSE, NULL, 20},
        {JUMP, NULL, 600},
        {SEND, "#STATUS:BUSY\r", 0},
        {PAUSE, NULL, 20},
        {JUMP, NULL, 600},
        {SEND, "#OK\r", 0}, /* 0.6 s after the last status line */
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 1000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#FLIST", NULL, NULL, 0, &reply), MF_ETIMEOUT);
    assert_string_equal(g->r.error, "no reply from unix:fake for 1.000 s");
    rig_finish(g);
}

static void test_noise_alone_times_out(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#VERIFY\r", 0}, {SEND, "#ACK\r", 0},  {JUMP, NULL, 600}, {SEND, "noise\r", 0},
        {JUMP, NULL, 600},        {SEND, "noise\r", 0}, {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 1000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#VERIFY", NULL, NULL, 0, &reply), MF_ETIMEOUT);
    rig_finish(g);
}

static void test_interrupt_cancels_a_cycle(void **state)
{
    (void)state;
    /* The flag is set, then a line wakes the client: it answers with #CANCEL and takes the
     * cycle's #ERR007 as the result, whichever order the two finals come in. */
    static const struct step cancel_first[] = {
        {EXPECT, "#AUTO\r", 0},
        {SEND, "#ACK\r#STATUS:PROGRAMMING\r", 0},
        {PAUSE, NULL, 10},
        {INTERRUPT, NULL, 0},
        {SEND, "#PROGRESS:1:PROGRAMMING:10:100\r", 0},
        {EXPECT, "#CANCEL\r", 0},
        {SEND, "#ACK\r#OK\r#ERR007:CANCELED.\r", 0},
        {END, NULL, 0},
    };
    static const struct step result_first[] = {
        {EXPECT, "#AUTO\r", 0},   {SEND, "#ACK\r", 0},
        {INTERRUPT, NULL, 0},     {SEND, "#STATUS:ERASING\r", 0},
        {EXPECT, "#CANCEL\r", 0}, {SEND, "#ERR007:CANCELED.\r#ACK\r#OK\r", 0},
        {END, NULL, 0},
    };
    static const struct step too_late[] = {
        {EXPECT, "#AUTO\r", 0},   {SEND, "#ACK\r", 0},
        {INTERRUPT, NULL, 0},     {SEND, "#STATUS:VERIFYING\r", 0},
        {EXPECT, "#CANCEL\r", 0}, {SEND, "#OK (Total 1.000s)\r#ACK\r#OK\r", 0},
        {END, NULL, 0},
    };
    const struct step *const scripts[] = {cancel_first, result_first, too_late};
    for (size_t i = 0; i < 3; i++) {
        struct rig *g = rig_start(scripts[i], 5000);
        struct mf_remote_reply reply;
        assert_int_equal(
            mf_remote_command(&g->r, "#AUTO", NULL, NULL, MF_REMOTE_CANCEL_ON_INTERRUPT, &reply),
            0);
        assert_true(reply.interrupted);
        assert_int_equal(g->interrupted, 0);
        if (i < 2) {
            assert_int_equal(reply.outcome, MF_REMOTE_ERR);
            assert_int_equal(reply.code, 7);
            assert_string_equal(reply.final, "#ERR007:CANCELED.");
        } else {
            assert_int_equal(reply.outcome, MF_REMOTE_OK);
            assert_string_equal(reply.final, "#OK (Total 1.000s)");
        }
        rig_finish(g);
    }
}

static void test_interrupt_without_cancel(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#FLIST\r", 0},   {SEND, "#ACK\r", 0}, {INTERRUPT, NULL, 0},
        {SEND, "#FLIST:D:A\r", 0}, {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&g->r, "#FLIST", NULL, NULL, 0, &reply), MF_ECANCELED);
    assert_true(reply.interrupted);
    assert_non_null(strstr(g->r.error, "interrupted"));
    rig_finish(g);
}

static void test_raw_transcript_passes_ack(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {EXPECT, "#INFO\r", 0},
        {SEND, "#ACK\r#INFO:SLOTS=2\r#OK\r", 0},
        {END, NULL, 0},
    };
    struct rig *g = rig_start(steps, 5000);
    struct mf_remote_reply reply;
    struct seen seen = {0};
    assert_int_equal(mf_remote_command(&g->r, "#INFO", see_line, &seen, MF_REMOTE_PASS_ACK, &reply),
                     0);
    assert_string_equal(seen.text, "#ACK|#INFO:SLOTS=2");
    assert_int_equal(g->r.slots, 2);
    rig_finish(g);
}

/* ---- real transports ---- */

struct listener {
    int fd;
    struct fake f;
};

static void *accept_and_run(void *arg)
{
    struct listener *l = arg;
    int fd = accept(l->fd, NULL, NULL);
    if (fd < 0) {
        snprintf(l->f.failure, sizeof l->f.failure, "accept failed");
        return NULL;
    }
    l->f.fd = fd;
    return fake_run(&l->f);
}

static const struct step status_script[] = {
    INFO_ONE_SLOT,
    {EXPECT, "#STATUS\r", 0},
    {SEND, "#ACK\r#STATUS:READY\r", 0},
    {END, NULL, 0},
};

static void expect_ready(struct mf_remote *r)
{
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(r, "#STATUS", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#STATUS:READY");
}

static void serve_once(struct listener *l, const struct step *steps, pthread_t *thread)
{
    memset(&l->f, 0, sizeof l->f);
    l->f.fd = -1;
    l->f.steps = steps;
    assert_int_equal(pthread_create(thread, NULL, accept_and_run, l), 0);
}

static void test_tcp_loopback(void **state)
{
    (void)state;
    struct listener l;
    l.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l.fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(l.fd, 4), 0);
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(l.fd, (struct sockaddr *)&addr, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "tcp:127.0.0.1:%u", ntohs(addr.sin_port));

    pthread_t thread;
    serve_once(&l, status_script, &thread);
    struct mf_remote r = {0};
    assert_int_equal(mf_remote_open(&r, url, 5000), 0);
    assert_int_equal(r.kind, MF_REMOTE_TCP);
    expect_ready(&r);
    pthread_join(thread, NULL);
    if (l.f.failure[0])
        fail_msg("fake server: %s", l.f.failure);
    close(l.f.fd);
    mf_remote_close(&r);

    /* The same port once nobody listens: refused, and the message names the URL. */
    close(l.fd);
    assert_int_equal(mf_remote_open(&r, url, 5000), MF_EIO);
    char want[128];
    snprintf(want, sizeof want, "cannot connect to %s: Connection refused", url);
    assert_string_equal(r.error, want);
}

static void test_unix_socket_and_reconnect(void **state)
{
    (void)state;
    char *dir = mf_test_tmpdir("remote");
    assert_non_null(dir);
    char *path = mf_test_path(dir, "mintflashd.sock");
    struct listener l;
    l.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    assert_int_equal(bind(l.fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(l.fd, 4), 0);
    char url[1100];
    snprintf(url, sizeof url, "unix:%s", path);

    /* First connection: one answer, then the programmer "reboots" (closes). */
    static const struct step reboot_script[] = {
        {EXPECT, "#REBOOT\r", 0},
        {SEND, "#ACK\r#OK\r", 0},
        {HANG_UP, NULL, 0},
        {END, NULL, 0},
    };
    pthread_t thread;
    serve_once(&l, reboot_script, &thread);
    struct mf_remote r = {0};
    assert_int_equal(mf_remote_open(&r, url, 5000), 0);
    struct mf_remote_reply reply;
    assert_int_equal(mf_remote_command(&r, "#REBOOT", NULL, NULL, 0, &reply), 0);
    assert_string_equal(reply.final, "#OK");
    pthread_join(thread, NULL);
    assert_string_equal(l.f.failure, "");
    assert_int_equal(r.connects, 1);

    /* The next command notices the closed connection and connects again. */
    serve_once(&l, status_script, &thread);
    expect_ready(&r);
    pthread_join(thread, NULL);
    if (l.f.failure[0])
        fail_msg("fake server: %s", l.f.failure);
    close(l.f.fd);
    assert_int_equal(r.connects, 2);
    mf_remote_close(&r);
    close(l.fd);

    /* Nobody listens on a path that is not there. */
    unlink(path);
    assert_int_equal(mf_remote_open(&r, url, 5000), MF_ENOENT);
    char want[1200];
    snprintf(want, sizeof want, "cannot connect to %s: No such file or directory", url);
    assert_string_equal(r.error, want);
    free(path);
    assert_int_equal(mf_test_rmtree(dir), 0);
    free(dir);
}

static void test_serial_over_pty(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    char device[256];
    assert_int_equal(ptsname_r(master, device, sizeof device), 0);
    /* A pty starts cooked: the client must make it raw (no CR->NL, no echo) for this to pass. */
    char url[300];
    snprintf(url, sizeof url, "serial:%s:115200", device);
    struct mf_remote r = {0};
    assert_int_equal(mf_remote_open(&r, url, 5000), 0);
    assert_int_equal(r.kind, MF_REMOTE_SERIAL);

    struct termios tio;
    assert_int_equal(tcgetattr(r.fd, &tio), 0);
    assert_int_equal(cfgetospeed(&tio), B115200);
    assert_int_equal(cfgetispeed(&tio), B115200);
    assert_int_equal(tio.c_cflag & CSIZE, CS8);
    assert_int_equal(tio.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0);
    assert_int_equal(tio.c_lflag & (ICANON | ECHO | ISIG), 0);
    assert_int_equal(tio.c_iflag & (ICRNL | IXON), 0);
    assert_int_equal(tio.c_oflag & OPOST, 0);

    struct fake f;
    fake_start(&f, master, status_script);
    expect_ready(&r);
    assert_int_equal(mf_remote_set_baud(&r, 38400), 0);
    assert_int_equal(tcgetattr(r.fd, &tio), 0);
    assert_int_equal(cfgetospeed(&tio), B38400);
    assert_int_equal(mf_remote_set_baud(&r, 12345), MF_EINVAL);
    mf_remote_close(&r);
    fake_finish(&f); /* closes the master */

    /* Defaults: 9600. */
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    assert_int_equal(ptsname_r(master, device, sizeof device), 0);
    snprintf(url, sizeof url, "serial:%s", device);
    assert_int_equal(mf_remote_open(&r, url, 5000), 0);
    assert_int_equal(tcgetattr(r.fd, &tio), 0);
    assert_int_equal(cfgetospeed(&tio), B9600);
    mf_remote_close(&r);
    close(master);
}

static void test_url_errors(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int err;
        const char *message;
    } cases[] = {
        {"ftp://host", MF_EINVAL,
         "bad device URL 'ftp://host' (unix:PATH, tcp:HOST:PORT or serial:DEVICE[:BAUD])"},
        {"tcp:", MF_EINVAL, "bad device URL 'tcp:': missing host (tcp:HOST:PORT)"},
        {"tcp::23", MF_EINVAL, "bad device URL 'tcp::23': missing host (tcp:HOST:PORT)"},
        {"tcp:localhost:99999", MF_EINVAL,
         "bad device URL 'tcp:localhost:99999': port must be a number from 1 to 65535"},
        {"tcp:localhost:23x", MF_EINVAL,
         "bad device URL 'tcp:localhost:23x': port must be a number from 1 to 65535"},
        {"tcp:::1:23", MF_EINVAL,
         "bad device URL 'tcp:::1:23': write an IPv6 address as [ADDRESS]:PORT"},
        {"tcp:[::1", MF_EINVAL, "bad device URL 'tcp:[::1': unterminated [IPv6 address]"},
        {"serial:", MF_EINVAL, "bad device URL 'serial:': missing device (serial:DEVICE[:BAUD])"},
        {"serial:/dev/null", MF_EINVAL,
         "cannot open serial:/dev/null: /dev/null is not a serial device"},
        {"serial:/dev/null:12345", MF_EINVAL,
         "bad device URL 'serial:/dev/null:12345': unsupported speed 12345 (1200, 2400, 4800, "
         "9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"},
        {"serial:/nonexistent/tty", MF_ENOENT,
         "cannot open serial:/nonexistent/tty: No such file or directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mf_remote r = {0};
        int err = mf_remote_open(&r, cases[i].url, 1000);
        if (err != cases[i].err || strcmp(r.error, cases[i].message) != 0)
            fail_msg("%s: got %d \"%s\", expected %d \"%s\"", cases[i].url, err, r.error,
                     cases[i].err, cases[i].message);
        assert_int_equal(r.fd, -1);
    }
    struct mf_remote r = {0};
    char url[300] = "unix:/";
    memset(url + 6, 'x', 200);
    url[206] = '\0';
    assert_int_equal(mf_remote_open(&r, url, 1000), MF_ENAMETOOLONG);
    assert_non_null(strstr(r.error, "socket path longer than 107 bytes"));
}

static void test_default_socket(void **state)
{
    (void)state;
    char *saved = getenv("XDG_RUNTIME_DIR") ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
    char path[256], want[256];
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    assert_int_equal(mf_remote_default_socket(path, sizeof path), 0);
    assert_string_equal(path, "/run/user/1000/mintflash/mintflashd.sock");
    assert_int_equal(mf_remote_default_socket_dir(path, sizeof path), 0);
    assert_string_equal(path, "/run/user/1000/mintflash");
    assert_int_equal(mf_remote_default_socket(path, 20), -1);
    assert_string_equal(path, "");
    assert_int_equal(mf_remote_default_socket(path, 35), -1); /* the folder fits, not the name */
    assert_string_equal(path, "");

    snprintf(want, sizeof want, "/tmp/mintflash-%lu/mintflashd.sock", (unsigned long)getuid());
    setenv("XDG_RUNTIME_DIR", "", 1);
    assert_int_equal(mf_remote_default_socket(path, sizeof path), 0);
    assert_string_equal(path, want);
    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(mf_remote_default_socket(path, sizeof path), 0);
    assert_string_equal(path, want);
    if (saved) {
        setenv("XDG_RUNTIME_DIR", saved, 1);
        free(saved);
    }
}

/* ---- parsers ---- */

static void test_parse_error_codes(void **state)
{
    (void)state;
    const char *text;
    assert_int_equal(mf_remote_error_code("#ERR007:CANCELED.", &text), 7);
    assert_string_equal(text, "CANCELED.");
    assert_int_equal(mf_remote_error_code("#ERR255", &text), 255);
    assert_string_equal(text, "");
    assert_int_equal(mf_remote_error_code("#NACK:ERR208:Not available", &text), 208);
    assert_string_equal(text, "Not available");
    assert_int_equal(mf_remote_error_code("#RESULT:12:#ERR205:Verify", &text), 205);
    assert_string_equal(text, "Verify");
    assert_int_equal(mf_remote_error_code("#RESULT:2:ERR206:x", NULL), 206);
    static const char *const bad[] = {
        "#OK",
        "#ERR",
        "#ERR12",
        "#ERR1234",
        "#ERRabc:x",
        "#ERR012x",
        "ERR012:x",
        "#NACK",
        "#RESULT:0:#ERR001",
        "#RESULT:65:#ERR001",
        "#RESULT:1:#OK",
        "#RESULT:x:#ERR001",
        "#RESULT:1#ERR001",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mf_remote_error_code(bad[i], NULL) != -1)
            fail_msg("'%s' taken as an error code", bad[i]);
    }
}

static void test_parse_status_result_selected(void **state)
{
    (void)state;
    int slot, count, single;
    char st[16];
    assert_int_equal(mf_remote_parse_status("#STATUS:READY", &slot, st, sizeof st), 0);
    assert_int_equal(slot, 0);
    assert_string_equal(st, "READY");
    assert_int_equal(mf_remote_parse_status("#STATUS:64:VERIFYING", &slot, st, sizeof st), 0);
    assert_int_equal(slot, 64);
    assert_string_equal(st, "VERIFYING");
    assert_int_equal(mf_remote_parse_status("#STATUS:", &slot, st, sizeof st), -1);
    assert_int_equal(mf_remote_parse_status("#STATUS:1:", &slot, st, sizeof st), -1);
    assert_int_equal(mf_remote_parse_status("#STATUS:65:READY", &slot, st, sizeof st), -1);
    assert_int_equal(mf_remote_parse_status("#STATUS:A:B", &slot, st, sizeof st), -1);
    assert_int_equal(mf_remote_parse_status("#STATUS:VERYLONGSTATENAMEXX", &slot, st, sizeof st),
                     -1);

    const char *result;
    assert_int_equal(mf_remote_parse_result("#RESULT:3:NONE", &slot, &result), 0);
    assert_int_equal(slot, 3);
    assert_string_equal(result, "NONE");
    assert_int_equal(mf_remote_parse_result("#RESULT:3:", &slot, &result), -1);
    assert_int_equal(mf_remote_parse_result("#RESULT:1000:NONE", &slot, &result), -1);
    assert_int_equal(mf_remote_parse_result("#RESULT", &slot, &result), -1);

    assert_int_equal(mf_remote_parse_selected("#SELECTED:1,2,64", &count, &single), 0);
    assert_int_equal(count, 3);
    assert_int_equal(single, 0);
    assert_int_equal(mf_remote_parse_selected("#SELECTED:5", &count, &single), 0);
    assert_int_equal(count, 1);
    assert_int_equal(single, 5);
    assert_int_equal(mf_remote_parse_selected("#SELECTED:*", &count, &single), 0);
    assert_int_equal(count, 0);
    assert_int_equal(mf_remote_parse_selected("#SELECTED:1,,2", &count, &single), -1);
    assert_int_equal(mf_remote_parse_selected("#SELECTED:1,", &count, &single), -1);
    assert_int_equal(mf_remote_parse_selected("#SELECTED:0", &count, &single), -1);
    /* Longer than any real list: refused, not looped over without end. */
    char many[1024] = "#SELECTED:";
    for (int i = 0; i < 100; i++)
        strcat(many, "1,");
    strcat(many, "1");
    assert_int_equal(mf_remote_parse_selected(many, &count, &single), -1);
}

static void test_parse_progress(void **state)
{
    (void)state;
    struct mf_remote_progress p;
    assert_int_equal(mf_remote_parse_progress("#PROGRESS:2:PROGRAMMING:1f00:10000", &p), 0);
    assert_int_equal(p.slot, 2);
    assert_string_equal(p.state, "PROGRAMMING");
    assert_int_equal(p.done, 0x1f00);
    assert_int_equal(p.total, 0x10000);
    assert_int_equal(mf_remote_parse_progress("#PROGRESS:1:ERASING:FFFFFFFFFFFFFFFF:"
                                              "FFFFFFFFFFFFFFFF",
                                              &p),
                     0);
    /* An erase of whole sectors may report more than the image holds. */
    assert_int_equal(mf_remote_parse_progress("#PROGRESS:1:ERASING:8000:4e20", &p), 0);
    assert_int_equal(p.done, 0x8000);
    static const char *const bad[] = {
        "#PROGRESS:1:ERASING:10",                                  /* no total */
        "#PROGRESS:1::1:2",                                        /* no state */
        "#PROGRESS:0:ERASING:1:2",                                 /* slot 0 */
        "#PROGRESS:1:ERASING:1:2:3",                               /* trailing field */
        "#PROGRESS:1:ERASING:x:2",                                 /* not hex */
        "#PROGRESS:1:ERASING:10000000000000000:10000000000000000", /* 17 digits */
        "#PROGRESS:1:AVERYVERYVERYLONGSTATENAMETHATDOESNOTFIT:1:2",
        "#PROGRESS:1:ERASING:-1:2",
        "#PROGRESS:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mf_remote_parse_progress(bad[i], &p) == 0)
            fail_msg("'%s' accepted", bad[i]);
    }
}

static void test_parse_fread_size_flist(void **state)
{
    (void)state;
    uint8_t buf[8];
    size_t n;
    assert_int_equal(mf_remote_parse_fread("#OK:04:466c6173", buf, sizeof buf, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "Flas", 4);
    assert_int_equal(mf_remote_parse_fread("#OK:4:466C6173", buf, sizeof buf, &n), 0);
    assert_int_equal(mf_remote_parse_fread("#OK:00:", buf, sizeof buf, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mf_remote_parse_fread("#OK:04:466c61", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK:04:466c617300", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK:09:000000000000000000", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK:02:zz00", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK:02:0 00", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK:FFFFFFFFF:00", buf, sizeof buf, &n), -1);
    assert_int_equal(mf_remote_parse_fread("#OK", buf, sizeof buf, &n), -1);

    uint64_t size;
    assert_int_equal(mf_remote_parse_size("#OK:ffffffff", &size), 0);
    assert_int_equal(size, 0xffffffffu);
    assert_int_equal(mf_remote_parse_size("#OK:", &size), -1);
    assert_int_equal(mf_remote_parse_size("#OK:12 ", &size), -1);
    assert_int_equal(mf_remote_parse_size("#OK (Total 1s)", &size), -1);

    bool is_dir;
    const char *name;
    assert_int_equal(mf_remote_parse_flist("#FLIST:D:Projects", &is_dir, &size, &name), 0);
    assert_true(is_dir);
    assert_string_equal(name, "Projects");
    assert_int_equal(mf_remote_parse_flist("#FLIST:F:1a2:a:b.txt", &is_dir, &size, &name), 0);
    assert_false(is_dir);
    assert_int_equal(size, 0x1a2);
    assert_string_equal(name, "a:b.txt");
    assert_int_equal(mf_remote_parse_flist("#FLIST:F::x", &is_dir, &size, &name), -1);
    assert_int_equal(mf_remote_parse_flist("#FLIST:F:12:", &is_dir, &size, &name), -1);
    assert_int_equal(mf_remote_parse_flist("#FLIST:D:", &is_dir, &size, &name), -1);
    assert_int_equal(mf_remote_parse_flist("#FLIST:X:y", &is_dir, &size, &name), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_single_slot),
        cmocka_unit_test(test_status_and_result_per_slot),
        cmocka_unit_test(test_selmodule_then_status),
        cmocka_unit_test(test_cycle_single_slot),
        cmocka_unit_test(test_cycle_several_slots),
        cmocka_unit_test(test_nack_and_errors),
        cmocka_unit_test(test_line_endings_and_stale_lines),
        cmocka_unit_test(test_garbage_and_greeting),
        cmocka_unit_test(test_utf8_c1_controls_are_not_passed),
        cmocka_unit_test(test_lines_split_across_reads),
        cmocka_unit_test(test_long_reply_in_pieces),
        cmocka_unit_test(test_overlong_lines),
        cmocka_unit_test(test_bad_commands_are_not_sent),
        cmocka_unit_test(test_disconnect_mid_reply),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test(test_status_lines_keep_the_wait_alive),
        cmocka_unit_test(test_status_lines_do_not_hold_other_commands),
        cmocka_unit_test(test_noise_alone_times_out),
        cmocka_unit_test(test_interrupt_cancels_a_cycle),
        cmocka_unit_test(test_interrupt_without_cancel),
        cmocka_unit_test(test_raw_transcript_passes_ack),
        cmocka_unit_test(test_tcp_loopback),
        cmocka_unit_test(test_unix_socket_and_reconnect),
        cmocka_unit_test(test_serial_over_pty),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_default_socket),
        cmocka_unit_test(test_parse_error_codes),
        cmocka_unit_test(test_parse_status_result_selected),
        cmocka_unit_test(test_parse_progress),
        cmocka_unit_test(test_parse_fread_size_flist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
