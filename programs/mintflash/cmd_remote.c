/* The commander's commands to a running programmer (fwrite, auto, status, ...): each one turns
 * into protocol lines (docs/protocol.md) through remote.c and prints what came back, as plain
 * lines, a progress bar at a terminal, or JSON. Exit status: 0 done, 1 failed, 2 usage error. */
#include "cli.h"

#include "mf_clock.h"
#include "mf_cp437.h"
#include "mf_err.h"
#include "mf_owner.h"
#include "mf_record.h"
#include "mf_token.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A protocol line with room for a 0x200-byte #FWRITE and a long name. */
#define LINE_SIZE        (MF_REMOTE_COMMAND_MAX + 1)
/* Local folder trees deeper than this are refused by `fwrite -r` (FAT paths end far earlier). */
#define TREE_DEPTH_MAX   32
/* #FLIST entries kept for one listing: a peer that lists more is cut off. */
#define LIST_ENTRIES_MAX 100000
/* FAT files end at 4 GiB - 1: a larger #FSIZE is not believed. */
#define REMOTE_FILE_MAX  0xFFFFFFFFu

static volatile sig_atomic_t cli_interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

bool mf_cli_take_interrupt(void)
{
    bool was = cli_interrupted != 0;
    cli_interrupted = 0;
    return was;
}

void mf_cli_session_init(struct mf_cli_session *s, const char *url, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    snprintf(s->url, sizeof s->url, "%s", url);
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : MF_REMOTE_DEFAULT_TIMEOUT_MS;
    s->tty = isatty(STDOUT_FILENO) == 1;
    s->remote.fd = -1;
    s->remote.interrupted = &cli_interrupted;
    /* No SA_RESTART: a Ctrl-C must wake the wait for a reply, which then sends #CANCEL.
     * A SIGINT ignored by whoever started us (a background job of a script) stays ignored. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
}

void mf_cli_session_close(struct mf_cli_session *s)
{
    mf_remote_close(&s->remote);
    s->connected = false;
}

/* ---- messages ---- */

static void cmd_error(struct mf_cli_session *s, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cmd_error(struct mf_cli_session *s, const char *cmd, const char *fmt, ...)
{
    fflush(stdout);
    fputs("mintflash: ", stderr);
    if (s->where)
        fprintf(stderr, "%s: ", s->where);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(struct mf_cli_session *s, const char *cmd, const char *what);

/* Writes `text` as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static void json_string(FILE *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    fputc('"', out);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, out);
            p++;
        } else {
            size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            if (c >= 0xf5)
                n = 0;
            size_t i = 1;
            while (n && i < n && (p[i] & 0xc0) == 0x80)
                i++;
            /* overlong 3- and 4-byte forms, surrogates and values past U+10FFFF */
            bool bad = n == 0 || i != n || (c == 0xe0 && p[1] < 0xa0) ||
                       (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
                       (c == 0xf4 && p[1] >= 0x90);
            if (bad) {
                fputs("\\ufffd", out);
                p++;
            } else {
                fwrite(p, 1, n, out);
                p += n;
            }
        }
    }
    fputc('"', out);
}

/* ---- exchanges ---- */

static int session_connect(struct mf_cli_session *s)
{
    if (s->connected)
        return 0;
    int err = mf_remote_open(&s->remote, s->url, s->timeout_ms);
    if (err) {
        cmd_error(s, NULL, "%s", s->remote.error);
        mf_remote_close(&s->remote);
        return 1;
    }
    s->connected = true;
    return 0;
}

/* Runs one protocol exchange. Returns 0 with *reply filled (whatever its outcome), or 1 when
 * there is no reply (the message is printed; the connection is dropped, a later command opens
 * a new one). */
static int exchange(struct mf_cli_session *s, const char *cmd, const char *line,
                    mf_remote_line_fn on_line, void *ctx, unsigned flags,
                    struct mf_remote_reply *reply)
{
    if (session_connect(s))
        return 1;
    uint64_t deadline = mf_clock_ms() + (uint64_t)s->timeout_ms;
    for (;;) {
        int err = mf_remote_command(&s->remote, line, on_line, ctx, flags, reply);
        if (err) {
            cmd_error(s, cmd, "%s", s->remote.error);
            if (err != MF_EINVAL)
                mf_remote_close(&s->remote);
            return 1;
        }
        /* A programmer still starting (just launched, rebooted) takes the command once it has
         * started, within the timeout; `raw` shows what the programmer says as it is. */
        bool starting = reply->outcome == MF_REMOTE_NACK && reply->code == 8 &&
                        strstr(reply->final, "starting up") && !(flags & MF_REMOTE_PASS_ACK);
        if (!starting || mf_clock_ms() >= deadline || cli_interrupted)
            return 0;
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* A bare #NACK: the programmer does not know the command, as the reference product (and an older
 * mintflashd) answers one of ours (#FLIST, #FOPENREAD, ...). */
static bool bare_nack(const struct mf_remote_reply *reply)
{
    return reply->outcome == MF_REMOTE_NACK && strcmp(reply->final, "#NACK") == 0;
}

/* Prints why a reply is not #OK. */
static void reply_error(struct mf_cli_session *s, const char *cmd, const char *line,
                        const struct mf_remote_reply *reply)
{
    if (strcmp(reply->final, "#NACK") == 0) {
        size_t word = strcspn(line, " ");
        cmd_error(s, cmd, "#NACK (the programmer does not know '%.*s')", (int)word, line);
    } else {
        cmd_error(s, cmd, "%s", reply->final);
    }
}

/* Runs `line` and requires #OK. Returns 0, or 1 (printed). reply may be NULL. */
static int expect_ok(struct mf_cli_session *s, const char *cmd, const char *line,
                     mf_remote_line_fn on_line, void *ctx, struct mf_remote_reply *reply)
{
    struct mf_remote_reply local;
    if (!reply)
        reply = &local;
    if (exchange(s, cmd, line, on_line, ctx, 0, reply))
        return 1;
    if (reply->outcome != MF_REMOTE_OK) {
        reply_error(s, cmd, line, reply);
        return 1;
    }
    return 0;
}

/* Formats a protocol line into `out` (LINE_SIZE bytes). 0, or 1 when it does not fit. */
static int format_line(struct mf_cli_session *s, const char *cmd, char *out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int format_line(struct mf_cli_session *s, const char *cmd, char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, LINE_SIZE, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= LINE_SIZE) {
        cmd_error(s, cmd, "command longer than %d bytes (name too long?)", MF_REMOTE_COMMAND_MAX);
        return 1;
    }
    return 0;
}

/* ---- cycles: auto, erase, program, verify, start ---- */

struct slot_view {
    char state[32];
    uint64_t done, total;
    bool has_progress, seen;
};

struct cycle_view {
    struct mf_cli_session *s;
    bool bar_shown;
    struct slot_view slots[MF_REMOTE_SLOTS_MAX + 1];
};

static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void bar_clear(struct cycle_view *v)
{
    if (v->bar_shown) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        v->bar_shown = false;
    }
}

static unsigned percent(const struct slot_view *sv)
{
    if (!sv->has_progress || sv->total == 0)
        return 0;
    return (unsigned)(sv->done >= sv->total ? 100 : sv->done * 100 / sv->total);
}

/* One line at the bottom of the terminal: a bar for one slot, a summary for several. */
static void bar_draw(struct cycle_view *v)
{
    char text[512];
    size_t used = 0;
    int shown = 0, only = 0;
    for (int i = 1; i <= MF_REMOTE_SLOTS_MAX; i++) {
        if (v->slots[i].seen) {
            shown++;
            only = i;
        }
    }
    if (shown == 0)
        return;
    unsigned width = terminal_width() - 1;
    if (width >= sizeof text)
        width = sizeof text - 1;
    if (shown == 1) {
        const struct slot_view *sv = &v->slots[only];
        if (sv->has_progress) {
            unsigned pct = percent(sv);
            char bar[41];
            unsigned fill = pct * 40 / 100;
            memset(bar, '#', fill);
            memset(bar + fill, '-', 40 - fill);
            bar[40] = '\0';
            used = (size_t)snprintf(text, sizeof text, "%-12s [%s] %3u%%", sv->state, bar, pct);
        } else {
            used = (size_t)snprintf(text, sizeof text, "%s ...", sv->state);
        }
    } else {
        for (int i = 1; i <= MF_REMOTE_SLOTS_MAX && used < sizeof text; i++) {
            const struct slot_view *sv = &v->slots[i];
            if (!sv->seen)
                continue;
            int n;
            if (sv->has_progress)
                n = snprintf(text + used, sizeof text - used, "%s%d:%s %u%%", used ? "  " : "", i,
                             sv->state, percent(sv));
            else
                n = snprintf(text + used, sizeof text - used, "%s%d:%s", used ? "  " : "", i,
                             sv->state);
            if (n < 0)
                break;
            used += (size_t)n;
        }
    }
    if (used > width)
        used = width;
    text[used < sizeof text ? used : sizeof text - 1] = '\0';
    fprintf(stdout, "\r\033[K%s", text);
    fflush(stdout);
    v->bar_shown = true;
}

static void cycle_line(void *ctx, const char *line)
{
    struct cycle_view *v = ctx;
    struct mf_cli_session *s = v->s;
    int slot;
    char state[32];
    struct mf_remote_progress p;
    const char *result;
    if (mf_remote_parse_status(line, &slot, state, sizeof state) == 0) {
        bool per_slot = slot != 0;
        if (slot == 0)
            slot = s->remote.selected_slot ? s->remote.selected_slot : 1;
        struct slot_view *sv = &v->slots[slot];
        if (strcmp(sv->state, state) != 0)
            sv->has_progress = false;
        memcpy(sv->state, state, sizeof state);
        sv->seen = true;
        if (s->tty) {
            bar_draw(v);
        } else if (per_slot) {
            printf("slot %d: %s\n", slot, state);
        } else {
            printf("%s\n", state);
        }
    } else if (mf_remote_parse_progress(line, &p) == 0) {
        struct slot_view *sv = &v->slots[p.slot];
        memcpy(sv->state, p.state, sizeof p.state);
        sv->done = p.done;
        sv->total = p.total;
        sv->has_progress = sv->seen = true;
        if (s->tty)
            bar_draw(v);
    } else if (mf_remote_parse_result(line, &slot, &result) == 0) {
        bar_clear(v);
        printf("slot %d: %s\n", slot, result[0] == '#' ? result + 1 : result);
        v->slots[slot].seen = false;
    } else {
        bar_clear(v);
        printf("%s\n", line);
    }
    if (!s->tty)
        fflush(stdout);
}

/* At a terminal, asks once per connection for #PROGRESS lines (a daemon without them: no). */
static int progress_on(struct mf_cli_session *s, const char *cmd)
{
    if (!s->tty)
        return 0;
    if (session_connect(s))
        return 1;
    if (s->progress_on == s->remote.connects)
        return 0;
    struct mf_remote_reply reply;
    if (exchange(s, cmd, "#PROGRESS ON", NULL, NULL, 0, &reply))
        return 1;
    s->progress_on = s->remote.connects;
    return 0;
}

static int run_cycle_line(struct mf_cli_session *s, const char *cmd, const char *line)
{
    if (progress_on(s, cmd))
        return 1;
    struct cycle_view *v = calloc(1, sizeof *v);
    struct mf_remote_reply *reply = malloc(sizeof *reply);
    int status = 1, slot;
    const char *result;
    if (!v || !reply) {
        cmd_error(s, cmd, "out of memory");
        goto cleanup;
    }
    v->s = s;
    if (exchange(s, cmd, line, cycle_line, v, MF_REMOTE_CANCEL_ON_INTERRUPT, reply)) {
        bar_clear(v);
        goto cleanup;
    }
    bar_clear(v);
    if (reply->outcome == MF_REMOTE_OK && !reply->interrupted) {
        printf("%s\n", reply->final + 1);
        status = 0;
    } else if (reply->interrupted) {
        cmd_error(s, cmd, "cancelled (%s)", reply->final);
    } else if (mf_remote_parse_result(reply->final, &slot, &result) == 0) {
        if (reply->failed_slots > 1)
            cmd_error(s, cmd, "%d slots failed, the first: slot %d: %s%s", reply->failed_slots,
                      slot, result[0] == '#' ? "" : "#", result);
        else
            cmd_error(s, cmd, "slot %d: %s%s", slot, result[0] == '#' ? "" : "#", result);
    } else {
        reply_error(s, cmd, line, reply);
    }
cleanup:
    fflush(stdout);
    free(v);
    free(reply);
    return status;
}

static int cmd_cycle(struct mf_cli_session *s, int argc, char **argv)
{
    const char *cmd = argv[0];
    char line[LINE_SIZE];
    size_t used = (size_t)snprintf(line, sizeof line, "#%s", cmd);
    for (size_t i = 1; line[i]; i++)
        line[i] = (char)(line[i] >= 'a' && line[i] <= 'z' ? line[i] - 'a' + 'A' : line[i]);
    if (strcmp(cmd, "auto") != 0 && argc > 1)
        return usage_error(s, cmd, "takes no arguments");
    bool patch = false, nopatch = false, noinfo = false;
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        int n;
        if (strcasecmp(word, "nopatch") == 0 && !patch && !nopatch) {
            nopatch = true;
            n = snprintf(line + used, sizeof line - used, " NOPATCH");
        } else if (strcasecmp(word, "noinfo") == 0 && !noinfo) {
            noinfo = true;
            n = snprintf(line + used, sizeof line - used, " NOINFO");
        } else if (strcasecmp(word, "patch") == 0 && !patch && !nopatch) {
            if (i + 1 >= argc)
                return usage_error(s, cmd, "'patch' needs a patch line (N,ADDR,LEN:DATA...)");
            patch = true;
            n = snprintf(line + used, sizeof line - used, " PATCH %s", argv[++i]);
        } else {
            cmd_error(s, cmd, "unexpected '%s' (auto [noinfo] [nopatch|patch LINE])", word);
            return 2;
        }
        if (n < 0 || (size_t)n >= sizeof line - used)
            return usage_error(s, cmd, "patch line too long");
        used += (size_t)n;
    }
    return run_cycle_line(s, cmd, line);
}

/* ---- status, result, info, select, selmodule, cancel, reboot, securearea, baudrate ---- */

/* Lines collected from a reply, printed once it ended well (JSON is all or nothing). */
struct collected {
    char **lines;
    size_t count, cap;
    bool overflow, no_memory;
};

static void collect_line(void *ctx, const char *line)
{
    struct collected *c = ctx;
    if (line[0] != '#')
        return;
    if (c->count >= LIST_ENTRIES_MAX) {
        c->overflow = true;
        return;
    }
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char **lines = realloc(c->lines, cap * sizeof *lines);
        if (!lines) {
            c->no_memory = true;
            return;
        }
        c->lines = lines;
        c->cap = cap;
    }
    char *copy = strdup(line);
    if (!copy) {
        c->no_memory = true;
        return;
    }
    c->lines[c->count++] = copy;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->lines[i]);
    free(c->lines);
    memset(c, 0, sizeof *c);
}

/* Runs `line`, collecting its lines; 0 when it ended in #OK with every line kept. */
static int collect(struct mf_cli_session *s, const char *cmd, const char *line, struct collected *c,
                   struct mf_remote_reply *reply)
{
    memset(c, 0, sizeof *c);
    if (expect_ok(s, cmd, line, collect_line, c, reply))
        return 1;
    if (c->no_memory) {
        cmd_error(s, cmd, "out of memory");
        return 1;
    }
    if (c->overflow) {
        cmd_error(s, cmd, "more than %d lines in the reply", LIST_ENTRIES_MAX);
        return 1;
    }
    return 0;
}

/* #FLIST collected as collect() does; a programmer that does not know it (a bare #NACK) sets
 * *unknown and returns 0 with nothing printed. */
static int collect_listing(struct mf_cli_session *s, const char *cmd, const char *line,
                           struct collected *c, bool *unknown)
{
    struct mf_remote_reply reply;
    memset(c, 0, sizeof *c);
    *unknown = false;
    if (exchange(s, cmd, line, collect_line, c, 0, &reply))
        return 1;
    if (bare_nack(&reply)) {
        *unknown = true;
        return 0;
    }
    if (reply.outcome != MF_REMOTE_OK) {
        reply_error(s, cmd, line, &reply);
        return 1;
    }
    if (c->no_memory || c->overflow) {
        if (c->no_memory)
            cmd_error(s, cmd, "out of memory");
        else
            cmd_error(s, cmd, "more than %d lines in the reply", LIST_ENTRIES_MAX);
        return 1;
    }
    return 0;
}

static int cmd_status(struct mf_cli_session *s, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error(s, "status", "takes no arguments");
    struct collected c;
    struct mf_remote_reply reply;
    int status = collect(s, "status", "#STATUS", &c, &reply);
    if (status == 0) {
        collect_line(&c, reply.final); /* the last slot's line ends the reply */
        if (s->json)
            printf("{\"slots\":[");
        for (size_t i = 0; i < c.count; i++) {
            int slot;
            char state[64];
            if (mf_remote_parse_status(c.lines[i], &slot, state, sizeof state)) {
                cmd_error(s, "status", "unexpected reply '%s'", c.lines[i]);
                status = 1;
                break;
            }
            bool single = slot == 0;
            if (single)
                slot = s->remote.selected_slot ? s->remote.selected_slot : 1;
            if (s->json) {
                printf("%s{\"slot\":%d,\"state\":", i ? "," : "", slot);
                json_string(stdout, state);
                printf("}");
            } else if (single) {
                printf("%s\n", state);
            } else {
                printf("slot %d: %s\n", slot, state);
            }
        }
        if (s->json)
            printf("]}\n");
    }
    collected_free(&c);
    return status;
}

static int cmd_result(struct mf_cli_session *s, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error(s, "result", "takes no arguments");
    struct collected c;
    struct mf_remote_reply reply;
    int status = collect(s, "result", "#RESULT", &c, &reply);
    if (status == 0) {
        collect_line(&c, reply.final); /* the last slot's line ends the reply */
        if (s->json)
            printf("{\"results\":[");
        for (size_t i = 0; i < c.count; i++) {
            int slot;
            const char *result;
            if (mf_remote_parse_result(c.lines[i], &slot, &result)) {
                cmd_error(s, "result", "unexpected reply '%s'", c.lines[i]);
                status = 1;
                break;
            }
            const char *text = result[0] == '#' ? result + 1 : result;
            int code = mf_remote_error_code(c.lines[i], NULL);
            if (!s->json) {
                printf("slot %d: %s\n", slot, text);
                continue;
            }
            const char *kind = code >= 0                     ? "error"
                               : strcmp(text, "NONE") == 0   ? "none"
                               : strncmp(text, "OK", 2) == 0 ? "ok"
                                                             : "unknown";
            printf("%s{\"slot\":%d,\"result\":\"%s\",\"code\":", i ? "," : "", slot, kind);
            if (code >= 0)
                printf("%d", code);
            else
                printf("null");
            printf(",\"text\":");
            json_string(stdout, text);
            printf("}");
        }
        if (s->json)
            printf("]}\n");
    }
    collected_free(&c);
    return status;
}

static int cmd_info(struct mf_cli_session *s, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error(s, "info", "takes no arguments");
    struct collected c;
    int status = collect(s, "info", "#INFO", &c, NULL);
    if (status == 0) {
        if (s->json)
            printf("{");
        size_t shown = 0;
        for (size_t i = 0; i < c.count; i++) {
            const char *line = c.lines[i];
            const char *eq = strchr(line, '=');
            if (strncmp(line, "#INFO:", 6) != 0 || !eq || eq == line + 6)
                continue;
            if (!s->json) {
                printf("%s\n", line + 6);
                continue;
            }
            char key[64];
            size_t n = (size_t)(eq - (line + 6));
            if (n >= sizeof key)
                n = sizeof key - 1;
            for (size_t k = 0; k < n; k++) {
                char ch = line[6 + k];
                key[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
            }
            key[n] = '\0';
            printf("%s", shown++ ? "," : "");
            json_string(stdout, key);
            printf(":");
            json_string(stdout, eq + 1);
        }
        if (s->json)
            printf("}\n");
    }
    collected_free(&c);
    return status;
}

/* Joins argv[first..] with spaces after `prefix` into line. */
static int join_line(struct mf_cli_session *s, const char *cmd, char *line, const char *prefix,
                     int argc, char **argv, int first)
{
    size_t used = (size_t)snprintf(line, LINE_SIZE, "%s", prefix);
    for (int i = first; i < argc; i++) {
        int n = snprintf(line + used, LINE_SIZE - used, "%s%s", i > first ? " " : " ", argv[i]);
        if (n < 0 || (size_t)n >= LINE_SIZE - used) {
            cmd_error(s, cmd, "command longer than %d bytes", MF_REMOTE_COMMAND_MAX);
            return 1;
        }
        used += (size_t)n;
    }
    return 0;
}

static int cmd_select(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc < 2)
        return usage_error(s, "select", "missing project name");
    char line[LINE_SIZE];
    if (join_line(s, "select", line, "#SELECT", argc, argv, 1))
        return 1;
    return expect_ok(s, "select", line, NULL, NULL, NULL);
}

static int cmd_selmodule(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc != 2)
        return usage_error(s, "selmodule",
                           argc < 2 ? "missing slots (1,2,... or *)" : "unexpected argument");
    const char *slots = argv[1];
    if (strcmp(slots, "*") != 0) {
        char probe[300];
        int count, single;
        if (strlen(slots) > 250 || snprintf(probe, sizeof probe, "#SELECTED:%s", slots) < 0 ||
            mf_remote_parse_selected(probe, &count, &single) || count == 0) {
            cmd_error(s, "selmodule", "bad slot list '%s' (numbers 1-%d separated by ',', or *)",
                      slots, MF_REMOTE_SLOTS_MAX);
            return 2;
        }
    }
    char line[LINE_SIZE];
    if (format_line(s, "selmodule", line, "#SELMODULE %s", slots))
        return 1;
    struct mf_remote_reply reply;
    if (expect_ok(s, "selmodule", line, NULL, NULL, &reply))
        return 1;
    if (strncmp(reply.final, "#SELECTED:", 10) == 0)
        printf("selected slots: %s\n", reply.final + 10);
    return 0;
}

static int cmd_simple(struct mf_cli_session *s, const char *cmd, const char *line)
{
    return expect_ok(s, cmd, line, NULL, NULL, NULL);
}

static int cmd_cancel(struct mf_cli_session *s, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error(s, "cancel", "takes no arguments");
    return cmd_simple(s, "cancel", "#CANCEL");
}

/* After #REBOOT: the programmer answers #OK before it restarts (docs/protocol.md), so wait
 * until it has been seen starting (INITIALIZING, or #NACK:ERR008 "starting up") and then ready,
 * in the wanted mode. A restart too quick to be seen counts as done after REBOOT_QUIET_MS of
 * ready answers. At most the timeout. */
#define REBOOT_QUIET_MS 300

static int wait_restarted(struct mf_cli_session *s, const char *cmd, bool file_access)
{
    uint64_t start = mf_clock_ms();
    uint64_t deadline = start + (uint64_t)s->timeout_ms;
    bool seen_starting = false;
    for (;;) {
        struct collected c;
        struct mf_remote_reply reply;
        memset(&c, 0, sizeof c);
        if (exchange(s, cmd, "#STATUS", collect_line, &c, 0, &reply)) {
            collected_free(&c);
            return 1;
        }
        bool starting = reply.outcome == MF_REMOTE_NACK && reply.code == 8;
        bool in_mode = false;
        if (reply.outcome == MF_REMOTE_OK) {
            collect_line(&c, reply.final);
            for (size_t i = 0; i < c.count; i++) {
                int slot;
                char state[64];
                if (mf_remote_parse_status(c.lines[i], &slot, state, sizeof state))
                    continue;
                if (strcmp(state, "INITIALIZING") == 0)
                    starting = true;
                in_mode = (strcmp(state, "FILEACCESS") == 0) == file_access;
            }
        }
        collected_free(&c);
        if (!starting && reply.outcome != MF_REMOTE_OK) {
            reply_error(s, cmd, "#STATUS", &reply);
            return 1;
        }
        seen_starting = seen_starting || starting;
        uint64_t now = mf_clock_ms();
        if (!starting && in_mode &&
            (seen_starting || file_access || now - start >= REBOOT_QUIET_MS))
            return 0;
        if (now >= deadline || cli_interrupted) {
            cmd_error(s, cmd, "%s has not restarted after %d.%03d s", s->url, s->timeout_ms / 1000,
                      s->timeout_ms % 1000);
            return 1;
        }
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static int cmd_reboot(struct mf_cli_session *s, int argc, char **argv)
{
    const char *line = "#REBOOT";
    bool file_access = false;
    if (argc > 2)
        return usage_error(s, "reboot", "unexpected argument");
    if (argc == 2) {
        if (strcasecmp(argv[1], "file-access") != 0 && strcasecmp(argv[1], "fileaccess") != 0) {
            cmd_error(s, "reboot", "unknown mode '%s' (reboot [file-access])", argv[1]);
            return 2;
        }
        line = "#REBOOT FILEACCESS";
        file_access = true;
    }
    if (cmd_simple(s, "reboot", line))
        return 1;
    /* The programmer restarts: connect anew (the connection may be gone) and wait for it. */
    mf_remote_close(&s->remote);
    return wait_restarted(s, "reboot", file_access);
}

/* Reads a small local file (at most `max` bytes) into a new buffer. */
static int read_local(struct mf_cli_session *s, const char *cmd, const char *path, size_t max,
                      uint8_t **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cmd_error(s, cmd, "cannot open %s: %s", path, strerror(errno));
        return 1;
    }
    uint8_t *buf = malloc(max + 1);
    size_t used = 0;
    ssize_t n = 0;
    while (buf && used <= max && (n = read(fd, buf + used, max + 1 - used)) > 0)
        used += (size_t)n;
    close(fd);
    if (!buf || n < 0) {
        cmd_error(s, cmd, "cannot read %s: %s", path, buf ? strerror(errno) : "out of memory");
        free(buf);
        return 1;
    }
    if (used > max) {
        cmd_error(s, cmd, "%s is larger than %zu bytes: not the file expected", path, max);
        free(buf);
        return 1;
    }
    *data = buf;
    *size = used;
    return 0;
}

static int cmd_securearea(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc == 4 && strcasecmp(argv[1], "create") == 0 && strcmp(argv[2], "--owner") == 0) {
        /* Pins the owner: from then on only its sealed packages are installed. */
        uint8_t *text;
        size_t size;
        if (read_local(s, "securearea create", argv[3], MF_OWNER_FILE_MAX, &text, &size))
            return 1;
        struct mf_owner_key key;
        char message[MF_OWNER_MESSAGE_MAX];
        int err = mf_owner_parse_public((const char *)text, size, &key, message);
        free(text);
        if (err) {
            cmd_error(s, "securearea create", "%s: %s", argv[3], message);
            return 2;
        }
        char b64[64], line[LINE_SIZE];
        mf_owner_b64_encode(key.ed25519, 32, b64, sizeof b64);
        snprintf(line, sizeof line, "#SECUREAREA CREATE %s", b64);
        int status = cmd_simple(s, "securearea create", line);
        if (!status)
            printf("pinned to owner %s\n", key.fingerprint);
        return status;
    }
    if (argc != 2)
        return usage_error(s, "securearea", "needs 'create [--owner OWNER.pub]' or 'remove'");
    if (strcasecmp(argv[1], "create") == 0)
        return cmd_simple(s, "securearea create", "#SECUREAREA CREATE");
    if (strcasecmp(argv[1], "remove") == 0)
        return cmd_simple(s, "securearea remove", "#SECUREAREA REMOVE");
    cmd_error(s, "securearea", "unknown action '%s' (create, remove)", argv[1]);
    return 2;
}

static int cmd_baudrate(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc != 2)
        return usage_error(s, "baudrate", "needs one speed");
    char *end;
    errno = 0;
    unsigned long baud = strtoul(argv[1], &end, 10);
    if (errno || end == argv[1] || *end || baud < 1200 || baud > 921600) {
        cmd_error(s, "baudrate", "bad speed '%s' (1200 ... 921600)", argv[1]);
        return 2;
    }
    if (session_connect(s))
        return 1;
    if (s->remote.kind != MF_REMOTE_SERIAL) {
        cmd_error(s, "baudrate", "%s is not a serial line", s->url);
        return 1;
    }
    char line[LINE_SIZE];
    if (format_line(s, "baudrate", line, "#BAUDRATE %lu", baud))
        return 1;
    if (expect_ok(s, "baudrate", line, NULL, NULL, NULL))
        return 1;
    if (mf_remote_set_baud(&s->remote, baud)) {
        cmd_error(s, "baudrate", "%s", s->remote.error);
        return 1;
    }
    return 0;
}

/* ---- raw ---- */

static void raw_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

int mf_cli_raw(struct mf_cli_session *s, const char *line)
{
    unsigned flags = MF_REMOTE_PASS_ACK;
    if (mf_remote_is_cycle(line))
        flags |= MF_REMOTE_CANCEL_ON_INTERRUPT;
    struct mf_remote_reply reply;
    if (exchange(s, "raw", line, raw_line, NULL, flags, &reply))
        return 1;
    printf("%s\n", reply.final);
    fflush(stdout);
    if (reply.outcome != MF_REMOTE_OK || reply.interrupted) {
        cmd_error(s, "raw", "%s: %s", line, reply.interrupted ? "cancelled" : "failed");
        return 1;
    }
    if (strncasecmp(line, "#REBOOT", 7) == 0 && (line[7] == '\0' || line[7] == ' '))
        mf_remote_close(&s->remote);
    return 0;
}

static int cmd_raw(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc < 2)
        return usage_error(s, "raw", "missing protocol line (e.g. raw #STATUS)");
    char line[LINE_SIZE];
    size_t used = 0;
    for (int i = 1; i < argc; i++) {
        int n = snprintf(line + used, sizeof line - used, "%s%s", i > 1 ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= sizeof line - used) {
            cmd_error(s, "raw", "line longer than %d bytes", MF_REMOTE_COMMAND_MAX);
            return 2;
        }
        used += (size_t)n;
    }
    if (line[0] != '#') {
        cmd_error(s, "raw", "a protocol line starts with '#': '%s'", line);
        return 2;
    }
    return mf_cli_raw(s, line);
}

/* ---- files of the public area ---- */

/* Splits a remote path into its folder and last name ('/' or '\' separate). Both are
 * written into `buf` (the path's copy); a root path gives folder "" and name "". */
static void split_remote(char *buf, const char **folder, const char **name)
{
    for (char *p = buf; *p; p++) {
        if (*p == '\\')
            *p = '/';
    }
    size_t len = strlen(buf);
    while (len > 0 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) {
        *folder = "";
        *name = buf;
        return;
    }
    *slash = '\0';
    *name = slash + 1;
    char *f = buf;
    while (*f == '/')
        f++;
    *folder = f;
}

struct lookup {
    const char *name;
    bool found, is_dir;
    uint64_t size;
};

static void lookup_line(void *ctx, const char *line)
{
    struct lookup *l = ctx;
    bool is_dir;
    uint64_t size;
    const char *name;
    if (!l->found && mf_remote_parse_flist(line, &is_dir, &size, &name) == 0 &&
        strcasecmp(name, l->name) == 0) {
        l->found = true;
        l->is_dir = is_dir;
        l->size = size;
    }
}

/* What a listing of its folder says of a path. */
enum remote_kind {
    REMOTE_MISSING,
    REMOTE_FILE,
    REMOTE_DIR,
    REMOTE_UNLISTED, /* the programmer does not know #FLIST (a bare #NACK): nothing is known */
};

/* Finds `path` through a listing of its folder (#FOPEN would create a missing file).
 * Returns 0 with *kind set (a missing folder: REMOTE_MISSING), or 1 (printed). */
static int remote_stat(struct mf_cli_session *s, const char *cmd, const char *path,
                       enum remote_kind *kind)
{
    char *copy = strdup(path);
    if (!copy) {
        cmd_error(s, cmd, "out of memory");
        return 1;
    }
    const char *folder, *name;
    split_remote(copy, &folder, &name);
    int status = 0;
    *kind = REMOTE_MISSING;
    if (!*name) {
        *kind = REMOTE_DIR; /* the root */
        goto done;
    }
    char line[LINE_SIZE];
    if (*folder ? format_line(s, cmd, line, "#FLIST %s", folder)
                : format_line(s, cmd, line, "#FLIST")) {
        status = 1;
        goto done;
    }
    struct lookup l = {.name = name};
    struct mf_remote_reply reply;
    if (exchange(s, cmd, line, lookup_line, &l, 0, &reply)) {
        status = 1;
    } else if (bare_nack(&reply)) {
        *kind = REMOTE_UNLISTED;
    } else if (reply.outcome == MF_REMOTE_NACK) {
        reply_error(s, cmd, line, &reply);
        status = 1;
    } else if (reply.outcome == MF_REMOTE_OK && l.found) {
        *kind = l.is_dir ? REMOTE_DIR : REMOTE_FILE;
    }
done:
    free(copy);
    return status;
}

static const char *local_basename(const char *path)
{
    const char *end = path + strlen(path);
    while (end > path && end[-1] == '/')
        end--;
    const char *start = end;
    while (start > path && start[-1] != '/')
        start--;
    return start;
}

static int write_all(int fd, const uint8_t *data, size_t size)
{
    while (size) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static void file_progress(struct mf_cli_session *s, const char *what, const char *name,
                          uint64_t done, uint64_t total)
{
    if (!s->tty || total < 16 * MF_REMOTE_CHUNK)
        return;
    unsigned pct = (unsigned)(done * 100 / total);
    fprintf(stdout, "\r\033[K%s %.50s %3u%%", what, name, pct);
    if (done >= total)
        fputs("\r\033[K", stdout);
    fflush(stdout);
}

static int remote_close_file(struct mf_cli_session *s, const char *cmd)
{
    return expect_ok(s, cmd, "#FCLOSE", NULL, NULL, NULL);
}

/* How remote_open_file() opens a file. */
enum open_mode {
    OPEN_WRITE,     /* #FOPEN: creates a missing file */
    OPEN_LISTED,    /* #FOPENREAD, else #FOPEN: for a file a listing has just shown */
    OPEN_READ_ONLY, /* #FOPENREAD alone: never creates or changes a file */
};
/* remote_open_file() with OPEN_READ_ONLY, besides 0 and 1; nothing printed, the reply in *failed */
#define OPEN_NOT_THERE 2 /* #ERR010: no such file (or a folder, or a name it cannot open) */
#define OPEN_UNKNOWN   3 /* a bare #NACK: the programmer does not know #FOPENREAD */

/* #FOPEN (OPEN_WRITE: creates a missing file) or #FOPENREAD (reading only: never creates or
 * changes a file), then #FSIZE. With OPEN_LISTED a programmer that does not know #FOPENREAD (a
 * bare #NACK: the reference product, an older mintflashd) gets #FOPEN: the file was found in a
 * listing first, so only a file deleted in between could be created. Returns 0 with the file
 * open, 1 (printed; closed), or with OPEN_READ_ONLY OPEN_NOT_THERE / OPEN_UNKNOWN (not printed;
 * the reply in *failed when not NULL). */
static int remote_open_file(struct mf_cli_session *s, const char *cmd, const char *path,
                            enum open_mode mode, uint64_t *size, struct mf_remote_reply *failed)
{
    char line[LINE_SIZE];
    struct mf_remote_reply reply;
    if (format_line(s, cmd, line, mode == OPEN_WRITE ? "#FOPEN %s" : "#FOPENREAD %s", path))
        return 1;
    if (exchange(s, cmd, line, NULL, NULL, 0, &reply))
        return 1;
    if (mode == OPEN_READ_ONLY &&
        (bare_nack(&reply) || (reply.outcome == MF_REMOTE_ERR && reply.code == 10))) {
        if (failed)
            *failed = reply;
        return bare_nack(&reply) ? OPEN_UNKNOWN : OPEN_NOT_THERE;
    }
    if (mode == OPEN_LISTED && bare_nack(&reply)) {
        if (format_line(s, cmd, line, "#FOPEN %s", path) ||
            exchange(s, cmd, line, NULL, NULL, 0, &reply))
            return 1;
    }
    if (reply.outcome != MF_REMOTE_OK) {
        reply_error(s, cmd, line, &reply);
        return 1;
    }
    if (expect_ok(s, cmd, "#FSIZE", NULL, NULL, &reply))
        goto fail;
    if (mf_remote_parse_size(reply.final, size) || *size > REMOTE_FILE_MAX) {
        cmd_error(s, cmd, "bad #FSIZE reply '%s'", reply.final);
        goto fail;
    }
    return 0;
fail:
    if (s->connected && s->remote.fd >= 0)
        (void)remote_close_file(s, cmd);
    return 1;
}

/* Opens the file `path` the user named, for reading, and gets its size. 0 (open), or 1 (printed;
 * closed). A listing (#FLIST) finds it first: a missing file or a folder is never opened. A
 * programmer that does not know #FLIST gets #FOPENREAD for the name, which fails for a missing
 * file (#ERR010: "no such file"). One that knows neither (the reference product) gets #FOPEN for
 * the name, which creates a missing file, empty: an empty file then fails, since it may be the
 * one #FOPEN has just made (docs/commander.md, "Programmers without #FLIST"). */
static int open_for_reading(struct mf_cli_session *s, const char *cmd, const char *path,
                            uint64_t *size)
{
    enum remote_kind kind;
    if (remote_stat(s, cmd, path, &kind))
        return 1;
    if (kind == REMOTE_MISSING || kind == REMOTE_DIR) {
        cmd_error(s, cmd, "%s%s", path,
                  kind == REMOTE_DIR ? " is a folder" : ": no such file on the programmer");
        return 1;
    }
    if (kind == REMOTE_FILE)
        return remote_open_file(s, cmd, path, OPEN_LISTED, size, NULL);
    struct mf_remote_reply reply;
    int status = remote_open_file(s, cmd, path, OPEN_READ_ONLY, size, &reply);
    if (status == OPEN_NOT_THERE) {
        cmd_error(s, cmd, "%s: no such file on the programmer (%s)", path, reply.final);
        return 1;
    }
    if (status != OPEN_UNKNOWN)
        return status;
    if (remote_open_file(s, cmd, path, OPEN_WRITE, size, NULL))
        return 1;
    if (*size == 0) {
        (void)remote_close_file(s, cmd);
        cmd_error(s, cmd,
                  "%s is empty, or was missing and #FOPEN has just created it empty: this "
                  "programmer knows neither #FLIST nor #FOPENREAD, so the commander cannot tell "
                  "(if it was not there, 'fdelete %s' removes it again)",
                  path, path);
        return 1;
    }
    return 0;
}

/* What write_shown holds back at the end of a piece: the start of a UTF-8 character the next
 * piece may complete. */
struct shown_tail {
    uint8_t bytes[3];
    size_t n;
};

/* Writes `n` bytes for a terminal: control characters other than tab, LF and CR (C0, DEL and the
 * C1 controls written as UTF-8: mf_utf8_control) and bytes that are not part of well-formed UTF-8
 * (a raw 9B is CSI to a terminal in an 8-bit mode) as "<hh>", so that no escape sequence of a
 * file's reaches the terminal. A character cut at the end of a piece is held in *tail until the
 * next one; `last` (n may be 0) writes what is held as it is then. */
static int write_shown(int fd, const uint8_t *data, size_t n, struct shown_tail *tail, bool last)
{
    char in[MF_REMOTE_CHUNK + 3], out[4 * (MF_REMOTE_CHUNK + 3)];
    size_t m = tail->n, k = 0;
    memcpy(in, tail->bytes, tail->n);
    if (n)
        memcpy(in + m, data, n);
    m += n;
    tail->n = 0;
    /* The last lead byte among the last three, if the bytes after it are too few for it. */
    for (size_t back = 1; !last && back <= 3 && back <= m; back++) {
        uint8_t b = (uint8_t)in[m - back];
        if ((b & 0xC0) == 0x80)
            continue;
        size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (need > back) {
            tail->n = back;
            memcpy(tail->bytes, in + m - back, back);
            m -= back;
        }
        break;
    }
    for (size_t i = 0, used; i < m; i += used) {
        unsigned code;
        uint32_t character;
        used = mf_utf8_control(in + i, m - i, &code);
        if (!used && (used = mf_utf8_decode(in + i, m - i, &character)) != 0) {
            memcpy(out + k, in + i, used);
            k += used;
        } else if (used && (code == '\t' || code == '\n' || code == '\r')) {
            out[k++] = (char)code;
        } else {
            code = used ? code : (uint8_t)in[i];
            used = used ? used : 1;
            k += (size_t)snprintf(out + k, sizeof out - k, "<%02x>", code);
        }
    }
    return write_all(fd, (const uint8_t *)out, k);
}

/* Copies the open remote file `path` (`size` bytes) into out_fd and closes it; `shown`: for a
 * terminal (write_shown). */
static int read_open_file(struct mf_cli_session *s, const char *cmd, const char *path,
                          uint64_t size, int out_fd, const char *out_name, bool shown)
{
    struct shown_tail tail = {.n = 0};
    uint8_t data[MF_REMOTE_CHUNK];
    uint64_t offset = 0;
    int status = 0;
    while (offset < size) {
        uint64_t want = size - offset < MF_REMOTE_CHUNK ? size - offset : MF_REMOTE_CHUNK;
        char line[LINE_SIZE];
        struct mf_remote_reply reply;
        (void)format_line(s, cmd, line, "#FREAD %" PRIX64 ",%" PRIX64, offset, want);
        if (expect_ok(s, cmd, line, NULL, NULL, &reply)) {
            status = 1;
            break;
        }
        size_t got;
        if (mf_remote_parse_fread(reply.final, data, (size_t)want, &got)) {
            cmd_error(s, cmd, "bad #FREAD reply at offset 0x%" PRIX64 ": '%.60s'", offset,
                      reply.final);
            status = 1;
            break;
        }
        if (got == 0) {
            cmd_error(s, cmd, "%s ended at %" PRIu64 " of %" PRIu64 " bytes", path, offset, size);
            status = 1;
            break;
        }
        if (shown ? write_shown(out_fd, data, got, &tail, false) : write_all(out_fd, data, got)) {
            cmd_error(s, cmd, "cannot write %s: %s", out_name, strerror(errno));
            status = 1;
            break;
        }
        offset += got;
        file_progress(s, cmd, path, offset, size);
    }
    if (!status && shown && tail.n && write_shown(out_fd, NULL, 0, &tail, true)) {
        cmd_error(s, cmd, "cannot write %s: %s", out_name, strerror(errno));
        status = 1;
    }
    if (s->connected && s->remote.fd >= 0 && remote_close_file(s, cmd))
        status = 1;
    return status;
}

/* Copies the remote file `path` the user named into out_fd; `shown`: for a terminal. */
static int get_file(struct mf_cli_session *s, const char *cmd, const char *path, int out_fd,
                    const char *out_name, bool shown)
{
    uint64_t size;
    if (open_for_reading(s, cmd, path, &size))
        return 1;
    return read_open_file(s, cmd, path, size, out_fd, out_name, shown);
}

/* Copies the local file `local` to the remote `path`, replacing what was there. */
static int put_file(struct mf_cli_session *s, const char *cmd, const char *local, const char *path)
{
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cmd_error(s, cmd, "cannot open %s: %s", local, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cmd_error(s, cmd, "%s is not a regular file", local);
        close(fd);
        return 1;
    }
    if ((uint64_t)st.st_size > REMOTE_FILE_MAX) {
        cmd_error(s, cmd, "%s is larger than a FAT file can be (4 GiB - 1)", local);
        close(fd);
        return 1;
    }
    uint64_t remote_size, total = (uint64_t)st.st_size;
    if (remote_open_file(s, cmd, path, OPEN_WRITE, &remote_size, NULL)) {
        close(fd);
        return 1;
    }
    char line[LINE_SIZE];
    int status = 0;
    if (remote_size > total) {
        /* #FOPEN never truncates: a longer old file is deleted first. */
        if (remote_close_file(s, cmd) || format_line(s, cmd, line, "#FDELETE %s", path) ||
            expect_ok(s, cmd, line, NULL, NULL, NULL) ||
            remote_open_file(s, cmd, path, OPEN_WRITE, &remote_size, NULL)) {
            close(fd);
            return 1;
        }
    }
    uint8_t data[MF_REMOTE_CHUNK];
    uint64_t offset = 0;
    for (;;) {
        ssize_t n = read(fd, data, sizeof data);
        if (n < 0 && errno == EINTR && !cli_interrupted)
            continue;
        if (n < 0) {
            cmd_error(s, cmd, "cannot read %s: %s", local, strerror(errno));
            status = 1;
            break;
        }
        if (n == 0)
            break;
        int used = snprintf(line, sizeof line, "#FWRITE %" PRIX64 ",%zX:", offset, (size_t)n);
        for (ssize_t i = 0; i < n; i++) {
            static const char digits[] = "0123456789ABCDEF";
            line[used++] = digits[data[i] >> 4];
            line[used++] = digits[data[i] & 15];
        }
        line[used] = '\0';
        if (expect_ok(s, cmd, line, NULL, NULL, NULL)) {
            status = 1;
            break;
        }
        offset += (uint64_t)n;
        file_progress(s, cmd, path, offset, total);
    }
    close(fd);
    if (s->connected && s->remote.fd >= 0 && remote_close_file(s, cmd))
        status = 1;
    return status;
}

/* #MKDIR that accepts a folder that is already there. */
static int remote_mkdir(struct mf_cli_session *s, const char *cmd, const char *path)
{
    char line[LINE_SIZE];
    if (format_line(s, cmd, line, "#MKDIR %s", path))
        return 1;
    struct mf_remote_reply reply;
    if (exchange(s, cmd, line, NULL, NULL, 0, &reply))
        return 1;
    if (reply.outcome == MF_REMOTE_OK)
        return 0;
    /* Already there? (Without #FLIST the commander cannot tell: the error stands.) */
    enum remote_kind kind;
    if (reply.outcome == MF_REMOTE_ERR && !remote_stat(s, cmd, path, &kind) && kind == REMOTE_DIR)
        return 0;
    reply_error(s, cmd, line, &reply);
    return 1;
}

/* Creates `path` and the folders above it. */
static int remote_mkdir_parents(struct mf_cli_session *s, const char *cmd, const char *path)
{
    char *copy = strdup(path);
    if (!copy) {
        cmd_error(s, cmd, "out of memory");
        return 1;
    }
    for (char *p = copy; *p; p++) {
        if (*p == '\\')
            *p = '/';
    }
    int status = 0;
    char *p = copy;
    while (*p == '/')
        p++;
    for (int depth = 0; *p && depth < 256; depth++) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (*p && remote_mkdir(s, cmd, copy)) {
            status = 1;
            break;
        }
        if (!slash)
            break;
        *slash = '/';
        p = slash + 1;
    }
    free(copy);
    return status;
}

static char *join_path(const char *dir, const char *name, char sep)
{
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, a);
    size_t used = a;
    if (a && dir[a - 1] != sep && dir[a - 1] != '/')
        out[used++] = sep;
    memcpy(out + used, name, b + 1);
    return out;
}

/* Copies the contents of the local folder into the remote folder (which exists). */
static int put_tree(struct mf_cli_session *s, const char *cmd, const char *local,
                    const char *remote, int depth)
{
    if (depth > TREE_DEPTH_MAX) {
        cmd_error(s, cmd, "%s: folders nested deeper than %d levels", local, TREE_DEPTH_MAX);
        return 1;
    }
    struct dirent **names;
    int n = scandir(local, &names, NULL, alphasort);
    if (n < 0) {
        cmd_error(s, cmd, "cannot read folder %s: %s", local, strerror(errno));
        return 1;
    }
    int status = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (status || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || cli_interrupted)
            continue;
        char *local_path = join_path(local, name, '/');
        char *remote_path = join_path(remote, name, '/');
        struct stat st;
        if (!local_path || !remote_path) {
            cmd_error(s, cmd, "out of memory");
            status = 1;
        } else if (stat(local_path, &st) < 0) {
            cmd_error(s, cmd, "cannot read %s: %s", local_path, strerror(errno));
            status = 1;
        } else if (S_ISDIR(st.st_mode)) {
            status = remote_mkdir(s, cmd, remote_path) ||
                     put_tree(s, cmd, local_path, remote_path, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            status = put_file(s, cmd, local_path, remote_path);
        } else {
            cmd_error(s, cmd, "%s is neither a file nor a folder", local_path);
            status = 1;
        }
        free(local_path);
        free(remote_path);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!status && cli_interrupted) {
        cmd_error(s, cmd, "interrupted");
        status = 1;
    }
    return status;
}

static int cmd_fwrite(struct mf_cli_session *s, int argc, char **argv)
{
    bool recursive = false;
    const char *pos[2];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--recursive") == 0) {
            recursive = true;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return usage_error(s, "fwrite", "too many arguments");
        }
    }
    if (npos == 0)
        return usage_error(s, "fwrite", "missing local file");
    const char *local = pos[0];
    if (recursive) {
        if (npos < 2)
            return usage_error(s, "fwrite", "-r needs the remote folder (/ for the root)");
        struct stat st;
        if (stat(local, &st) < 0 || !S_ISDIR(st.st_mode)) {
            cmd_error(s, "fwrite", "%s is not a folder", local);
            return 1;
        }
        /* Names are relative to the root of the public area: "/" is the root itself. */
        const char *folder = pos[1];
        while (*folder == '/' || *folder == '\\')
            folder++;
        if (remote_mkdir_parents(s, "fwrite", folder))
            return 1;
        return put_tree(s, "fwrite", local, folder, 0);
    }
    const char *base = local_basename(local);
    if (!*base)
        return usage_error(s, "fwrite", "missing local file name");
    char *remote;
    if (npos < 2)
        remote = strdup(base);
    else {
        size_t len = strlen(pos[1]);
        remote = len && (pos[1][len - 1] == '/' || pos[1][len - 1] == '\\')
                     ? join_path(pos[1], base, '/')
                     : strdup(pos[1]);
    }
    if (!remote) {
        cmd_error(s, "fwrite", "out of memory");
        return 1;
    }
    int status = put_file(s, "fwrite", local, remote);
    free(remote);
    return status;
}

static int cmd_fread(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        return usage_error(s, "fread", argc < 2 ? "missing remote file" : "too many arguments");
    const char *remote = argv[1];
    char *copy = strdup(remote);
    if (!copy) {
        cmd_error(s, "fread", "out of memory");
        return 1;
    }
    const char *folder, *name;
    split_remote(copy, &folder, &name);
    if (!*name) {
        free(copy);
        return usage_error(s, "fread", "missing remote file name");
    }
    char *local = NULL;
    if (argc == 3) {
        struct stat st;
        if (strcmp(argv[2], "-") != 0 && stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))
            local = join_path(argv[2], name, '/');
        else
            local = strdup(argv[2]);
    } else {
        local = strdup(name);
    }
    free(copy);
    if (!local) {
        cmd_error(s, "fread", "out of memory");
        return 1;
    }
    int status;
    if (strcmp(local, "-") == 0) {
        status = get_file(s, "fread", remote, STDOUT_FILENO, "standard output", false);
    } else {
        int fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            cmd_error(s, "fread", "cannot create %s: %s", local, strerror(errno));
            free(local);
            return 1;
        }
        status = get_file(s, "fread", remote, fd, local, false);
        if (close(fd) < 0 && !status) {
            cmd_error(s, "fread", "cannot write %s: %s", local, strerror(errno));
            status = 1;
        }
        if (status)
            unlink(local);
    }
    free(local);
    return status;
}

static int cmd_fshow(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc != 2)
        return usage_error(s, "fshow", argc < 2 ? "missing remote file" : "too many arguments");
    fflush(stdout);
    /* At a terminal a file's control characters show as <hh> (a factory may have written it). */
    return get_file(s, "fshow", argv[1], STDOUT_FILENO, "standard output",
                    isatty(STDOUT_FILENO) == 1);
}

static int cmd_fsize(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc != 2)
        return usage_error(s, "fsize", argc < 2 ? "missing remote file" : "too many arguments");
    uint64_t size;
    if (open_for_reading(s, "fsize", argv[1], &size))
        return 1;
    if (remote_close_file(s, "fsize"))
        return 1;
    printf("%" PRIu64 "\n", size);
    return 0;
}

static int cmd_path_command(struct mf_cli_session *s, int argc, char **argv, const char *keyword)
{
    if (argc != 2)
        return usage_error(s, argv[0], argc < 2 ? "missing remote name" : "too many arguments");
    char line[LINE_SIZE];
    if (format_line(s, argv[0], line, "%s %s", keyword, argv[1]))
        return 1;
    return expect_ok(s, argv[0], line, NULL, NULL, NULL);
}

static int cmd_fdelete(struct mf_cli_session *s, int argc, char **argv)
{
    return cmd_path_command(s, argc, argv, "#FDELETE");
}

static int cmd_mkdir(struct mf_cli_session *s, int argc, char **argv)
{
    return cmd_path_command(s, argc, argv, "#MKDIR");
}

static int cmd_rmdir(struct mf_cli_session *s, int argc, char **argv)
{
    return cmd_path_command(s, argc, argv, "#RMDIR");
}

static int cmd_flist(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc > 2)
        return usage_error(s, "flist", "too many arguments");
    const char *dir = argc == 2 ? argv[1] : "";
    char line[LINE_SIZE];
    if (*dir ? format_line(s, "flist", line, "#FLIST %s", dir)
             : format_line(s, "flist", line, "#FLIST"))
        return 1;
    struct collected c;
    bool unknown;
    int status = collect_listing(s, "flist", line, &c, &unknown);
    if (status == 0 && unknown) {
        cmd_error(s, "flist",
                  "the programmer does not support listing folders (it answers #FLIST with "
                  "#NACK)");
        status = 1;
    } else if (status == 0) {
        if (s->json) {
            printf("{\"dir\":");
            json_string(stdout, dir);
            printf(",\"entries\":[");
        }
        size_t shown = 0;
        for (size_t i = 0; i < c.count; i++) {
            bool is_dir;
            uint64_t size;
            const char *name;
            if (mf_remote_parse_flist(c.lines[i], &is_dir, &size, &name))
                continue;
            if (!s->json) {
                if (is_dir)
                    printf("     <DIR>  %s\n", name);
                else
                    printf("%10" PRIu64 "  %s\n", size, name);
                continue;
            }
            printf("%s{\"name\":", shown++ ? "," : "");
            json_string(stdout, name);
            if (is_dir)
                printf(",\"type\":\"dir\"}");
            else
                printf(",\"type\":\"file\",\"size\":%" PRIu64 "}", size);
        }
        if (s->json)
            printf("]}\n");
    }
    collected_free(&c);
    return status;
}

/* ---- the table ---- */

/* identity [-o FILE]: the programmer's public file, for its owner. */
static int cmd_identity(struct mf_cli_session *s, int argc, char **argv)
{
    const char *out = NULL;
    if (argc == 3 && strcmp(argv[1], "-o") == 0)
        out = argv[2];
    else if (argc != 1)
        return usage_error(s, "identity", "takes nothing or -o FILE");
    struct collected c;
    int status = collect(s, "identity", "#IDENTITY", &c, NULL);
    if (status) {
        collected_free(&c);
        return status;
    }
    char text[MF_OWNER_FILE_MAX] = "";
    size_t used = 0;
    for (size_t i = 0; i < c.count; i++) {
        if (strncmp(c.lines[i], "#IDENTITY:", 10) != 0)
            continue;
        int n = snprintf(text + used, sizeof text - used, "%s\n", c.lines[i] + 10);
        if (n < 0 || (size_t)n >= sizeof text - used)
            break;
        used += (size_t)n;
    }
    collected_free(&c);
    struct mf_owner_programmer pub;
    char message[MF_OWNER_MESSAGE_MAX];
    if (mf_owner_parse_programmer(text, used, &pub, message) != 0) {
        cmd_error(s, "identity", "the programmer's answer is not an identity: %s", message);
        return 1;
    }
    if (!out) {
        fputs(text, stdout);
        return 0;
    }
    FILE *f = fopen(out, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        cmd_error(s, "identity", "cannot write %s: %s", out, strerror(errno));
        return 1;
    }
    printf("programmer %s: wrote %s\n", pub.fingerprint, out);
    return 0;
}

#define SECURE_UNKNOWN 2

/* After the restart of a push: is the package `remote` (_SECURE/<name>) still there, refused? A
 * start that installs it removes _SECURE. 0 no, 1 yes, SECURE_UNKNOWN: the programmer knows
 * neither #FLIST nor #FOPENREAD (#FOPEN would create it); -1 failed (printed). */
static int secure_left(struct mf_cli_session *s, const char *remote)
{
    enum remote_kind kind;
    if (remote_stat(s, "push", "_SECURE", &kind))
        return -1;
    if (kind != REMOTE_UNLISTED)
        return kind != REMOTE_MISSING;
    uint64_t size;
    int status = remote_open_file(s, "push", remote, OPEN_READ_ONLY, &size, NULL);
    if (status == 0)
        return remote_close_file(s, "push") ? -1 : 1;
    if (status == OPEN_NOT_THERE)
        return 0;
    if (status == OPEN_UNKNOWN)
        return SECURE_UNKNOWN;
    return -1;
}

/* push FILE: a sealed package (.mfp) is copied into _SECURE and installed by a restart; a top-up
 * token (.mft) is applied at once. */
static int cmd_push(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc != 2)
        return usage_error(s, "push", "needs one file: a package (.mfp) or a token (.mft)");
    const char *local = argv[1];
    size_t n = strlen(local);
    bool token = n > 4 && strcasecmp(local + n - 4, ".mft") == 0;
    bool package = n > 4 && strcasecmp(local + n - 4, ".mfp") == 0;
    if (token) {
        uint8_t *data;
        size_t size;
        if (read_local(s, "push", local, MF_TOKEN_SIZE_MAX, &data, &size))
            return 1;
        char line[LINE_SIZE];
        int used = snprintf(line, sizeof line, "#TOPUP ");
        for (size_t i = 0; i < size; i++)
            used += snprintf(line + used, sizeof line - (size_t)used, "%02x", data[i]);
        free(data);
        struct mf_remote_reply reply;
        if (exchange(s, "push", line, NULL, NULL, 0, &reply))
            return 1;
        if (reply.outcome != MF_REMOTE_OK) {
            reply_error(s, "push", "#TOPUP", &reply);
            return 1;
        }
        printf("%s\n", strncmp(reply.final, "#OK:", 4) == 0 ? reply.final + 4 : reply.final);
        return 0;
    }
    if (!package) {
        cmd_error(s, "push", "%s: expected a sealed package (.mfp) or a top-up token (.mft)",
                  local);
        return 2;
    }
    /* The package goes alone into _SECURE; the restart installs it (or refuses it whole). */
    char line[LINE_SIZE], remote[512];
    snprintf(remote, sizeof remote, "_SECURE/%s", local_basename(local));
    /* Without #FLIST this check is skipped: #MKDIR _SECURE then fails for a folder there. */
    enum remote_kind kind;
    if (remote_stat(s, "push", "_SECURE", &kind))
        return 1;
    if (kind == REMOTE_DIR || kind == REMOTE_FILE) {
        cmd_error(s, "push", "the programmer has a _SECURE folder already: remove it first");
        return 1;
    }
    /* A programmer of today makes _SECURE together with the package's file, in one step, so
     * that no moment leaves an empty _SECURE (the next start would erase the setup with it); over
     * TCP and serial it takes the folder no other way (#ERR209). An older one answers "no such
     * file or directory" and gets #MKDIR first. */
    struct mf_remote_reply opened;
    if (format_line(s, "push", line, "#FOPEN %s", remote) ||
        exchange(s, "push", line, NULL, NULL, 0, &opened))
        return 1;
    bool written;
    if (opened.outcome == MF_REMOTE_OK) {
        written = !cmd_simple(s, "push", "#FCLOSE") && !put_file(s, "push", local, remote);
    } else if (opened.outcome == MF_REMOTE_ERR && opened.code == 10 &&
               strstr(opened.final, "(no such file or directory)")) {
        struct mf_remote_reply made;
        if (format_line(s, "push", line, "#MKDIR _SECURE") ||
            exchange(s, "push", line, NULL, NULL, 0, &made))
            return 1;
        if (made.outcome != MF_REMOTE_OK) {
            reply_error(s, "push", line, &made);
            return 1;
        }
        written = !put_file(s, "push", local, remote);
    } else {
        reply_error(s, "push", line, &opened);
        return 1;
    }
    if (!written) {
        /* Never an empty _SECURE left behind: the next start would erase the setup with it. */
        char undo[LINE_SIZE];
        struct mf_remote_reply ignored;
        if (!format_line(s, "push", undo, "#FDELETE %s", remote))
            exchange(s, "push", undo, NULL, NULL, 0, &ignored);
        if (!format_line(s, "push", undo, "#RMDIR _SECURE"))
            exchange(s, "push", undo, NULL, NULL, 0, &ignored);
        return 1;
    }
    if (cmd_simple(s, "push", "#REBOOT"))
        return 1;
    mf_remote_close(&s->remote);
    if (wait_restarted(s, "push", false))
        return 1;
    int left = secure_left(s, remote);
    if (left < 0)
        return 1;
    if (left) {
        /* Refused whole: #INFO says why. Its MOVE_ERROR also decides when no listing can. */
        struct collected c;
        char why[512] = "";
        bool told = false;
        if (collect(s, "push", "#INFO", &c, NULL) == 0) {
            for (size_t i = 0; i < c.count; i++) {
                if (strncmp(c.lines[i], "#INFO:MOVE_ERROR=", 17) == 0) {
                    told = true;
                    snprintf(why, sizeof why, "%s", c.lines[i] + 17);
                }
            }
        }
        collected_free(&c);
        if (left == SECURE_UNKNOWN && !told) {
            cmd_error(s, "push",
                      "cannot tell whether the programmer installed the package: it knows "
                      "neither #FLIST nor #FOPENREAD, and its #INFO has no MOVE_ERROR");
            return 1;
        }
        if (left == SECURE_UNKNOWN && !why[0]) {
            printf("installed %s\n", local_basename(local));
            return 0;
        }
        if (!why[0])
            snprintf(why, sizeof why, "see its FLASHER.LOG");
        cmd_error(s, "push",
                  "the programmer did not install the package: %s (the current setup is kept, "
                  "but runs no cycle while the package is there: mintflash fdelete %s)",
                  why, remote);
        return 1;
    }
    printf("installed %s\n", local_basename(local));
    return 0;
}

/* Is `name` a production records file, "RECORDS.nnn" (any case)? Nothing else of a listing is
 * taken: a name written raw into the volume may hold what no file name should. */
static bool records_name(const char *name)
{
    return strlen(name) == 11 && strncasecmp(name, "RECORDS.", 8) == 0 &&
           strspn(name + 8, "0123456789") == 3;
}

/* Asks for the head statement for `nonce` (#RECORDHEAD): the line into `line`
 * (MF_RECORD_LINE_MAX + 1 bytes) and its fields into `head`. 0, or 1 (printed). */
static int fetch_head(struct mf_cli_session *s, const uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE],
                      char *line, struct mf_record_head *head)
{
    char command[LINE_SIZE], hex[2 * MF_RECORD_HEAD_NONCE_SIZE + 1];
    mf_owner_hex_encode(nonce, MF_RECORD_HEAD_NONCE_SIZE, hex);
    if (format_line(s, "records", command, "#RECORDHEAD %s", hex))
        return 1;
    struct collected c;
    if (collect(s, "records", command, &c, NULL)) {
        collected_free(&c);
        return 1;
    }
    int status = 1;
    for (size_t i = 0; i < c.count && status; i++) {
        if (strncmp(c.lines[i], "#RECORDHEAD:", 12) != 0)
            continue;
        snprintf(line, MF_RECORD_LINE_MAX + 1, "%s", c.lines[i] + 12);
        size_t body;
        char message[MF_RECORD_MESSAGE_MAX];
        if (mf_record_head_parse(line, strlen(line), head, &body, message) != 0)
            cmd_error(s, "records", "the programmer's answer is not a head statement: %s", message);
        else if (memcmp(head->nonce, nonce, MF_RECORD_HEAD_NONCE_SIZE) != 0)
            cmd_error(s, "records", "the programmer's head statement answers another nonce");
        else
            status = 0;
    }
    if (status && c.count == 0)
        cmd_error(s, "records", "the programmer sent no head statement");
    collected_free(&c);
    return status;
}

/* Copies the open remote file `name` (`size` bytes) into DIR/name; closes it. */
static int copy_open_record(struct mf_cli_session *s, const char *dir, const char *name,
                            uint64_t size)
{
    char *local = join_path(dir, name, '/');
    int fd = local ? open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    int status;
    if (fd < 0) {
        cmd_error(s, "records", "cannot create %s: %s", local ? local : name,
                  local ? strerror(errno) : "out of memory");
        (void)remote_close_file(s, "records");
        status = 1;
    } else {
        status = read_open_file(s, "records", name, size, fd, local, false);
        if (close(fd) < 0 && !status)
            status = 1;
    }
    free(local);
    return status;
}

/* Without #FLIST: RECORDS.000, RECORDS.001, ... opened with #FOPENREAD one after the other, up to
 * the first missing one after one found (files deleted before the first one are skipped; one
 * missing between two ends the copy there). #FOPEN would create each missing file it tried, so a
 * programmer that does not know #FOPENREAD either is refused. */
static int probe_records(struct mf_cli_session *s, const char *dir, unsigned *copied)
{
    for (unsigned n = 0; n < 1000; n++) {
        char name[16];
        snprintf(name, sizeof name, "RECORDS.%03u", n);
        uint64_t size;
        int status = remote_open_file(s, "records", name, OPEN_READ_ONLY, &size, NULL);
        if (status == OPEN_UNKNOWN) {
            cmd_error(s, "records",
                      "the programmer knows neither #FLIST nor #FOPENREAD: its RECORDS files "
                      "cannot be looked for without creating the missing ones (#FOPEN creates a "
                      "missing file); copy them by name with fread");
            return 1;
        }
        if (status == OPEN_NOT_THERE) {
            if (*copied)
                break;
            continue;
        }
        if (status || copy_open_record(s, dir, name, size))
            return 1;
        ++*copied;
    }
    return 0;
}

/* Copies every RECORDS.nnn file of the programmer into `dir`; *copied counts them. */
static int copy_records(struct mf_cli_session *s, const char *dir, unsigned *copied)
{
    struct collected c;
    bool unknown;
    *copied = 0;
    if (collect_listing(s, "records", "#FLIST", &c, &unknown)) {
        collected_free(&c);
        return 1;
    }
    if (unknown) {
        collected_free(&c);
        return probe_records(s, dir, copied);
    }
    int status = 0;
    for (size_t i = 0; i < c.count && !status; i++) {
        /* #FLIST:F:<size>:<name> */
        const char *line = c.lines[i];
        if (strncmp(line, "#FLIST:F:", 9) != 0)
            continue;
        const char *name = strchr(line + 9, ':');
        if (!name || !records_name(name + 1))
            continue;
        name++;
        /* The listing has just shown it: opened as listed, not looked up again. */
        uint64_t size;
        status = remote_open_file(s, "records", name, OPEN_LISTED, &size, NULL);
        if (!status)
            status = copy_open_record(s, dir, name, size);
        *copied += status ? 0 : 1;
    }
    collected_free(&c);
    return status;
}

#define RECORDS_TRIES 5u /* copies tried while cycles append records meanwhile */

/* records [--nonce HEX] [DIR]: copies every RECORDS.nnn file of the programmer into DIR (default
 * "."), and its head statement for the nonce (default: a random one) into DIR/HEAD. The head is
 * asked before and after the copy, which is taken again while records were appended meanwhile,
 * so that the files end where the head says. */
static int cmd_records(struct mf_cli_session *s, int argc, char **argv)
{
    const char *dir = NULL, *nonce_text = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nonce") == 0 && i + 1 < argc && !nonce_text)
            nonce_text = argv[++i];
        else if (strncmp(argv[i], "--nonce=", 8) == 0 && !nonce_text)
            nonce_text = argv[i] + 8;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            return usage_error(s, "records", "takes --nonce HEX and a local folder");
    }
    if (!dir)
        dir = ".";
    uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE];
    if (!nonce_text)
        randombytes_buf(nonce, sizeof nonce);
    else if (strlen(nonce_text) != 2 * sizeof nonce ||
             mf_owner_hex_decode(nonce_text, strlen(nonce_text), nonce, sizeof nonce) != 0)
        return usage_error(s, "records", "--nonce takes 64 hex digits");
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        cmd_error(s, "records", "cannot create the folder %s: %s", dir, strerror(errno));
        return 1;
    }
    char *head_path = join_path(dir, "HEAD", '/');
    if (!head_path) {
        cmd_error(s, "records", "out of memory");
        return 1;
    }
    if (unlink(head_path) < 0 && errno != ENOENT) { /* never a stale head beside new files */
        cmd_error(s, "records", "cannot remove %s: %s", head_path, strerror(errno));
        free(head_path);
        return 1;
    }
    static char before[MF_RECORD_LINE_MAX + 1], after[MF_RECORD_LINE_MAX + 1];
    struct mf_record_head head_before, head_after;
    unsigned copied = 0, tries = 0;
    int status = fetch_head(s, nonce, before, &head_before);
    if (status) {
        /* The files all the same (the records may be stopped): verify says the tail is
         * unproven. */
        if (copy_records(s, dir, &copied) == 0)
            printf("copied %u RECORDS file(s) into %s, without a head statement\n", copied, dir);
        free(head_path);
        return 1;
    }
    bool settled = false;
    while (!status && !settled && tries++ < RECORDS_TRIES) {
        status = copy_records(s, dir, &copied);
        if (!status)
            status = fetch_head(s, nonce, after, &head_after);
        settled = !status && head_after.seq == head_before.seq &&
                  memcmp(head_after.hash, head_before.hash, 32) == 0;
        if (!settled) {
            memcpy(before, after, sizeof before);
            head_before = head_after;
        }
    }
    if (!status && !settled) {
        cmd_error(s, "records",
                  "records were appended during each of %u copies (cycles are running): copy "
                  "them when no cycle runs",
                  RECORDS_TRIES);
        status = 1;
    }
    if (!status) {
        FILE *f = fopen(head_path, "w");
        if (!f || fprintf(f, "%s\n", after) < 0 || fclose(f) != 0) {
            cmd_error(s, "records", "cannot write %s: %s", head_path, strerror(errno));
            status = 1;
        }
    }
    if (!status) {
        char hex[2 * MF_RECORD_HEAD_NONCE_SIZE + 1];
        mf_owner_hex_encode(nonce, sizeof nonce, hex);
        printf("copied %u RECORDS file(s) into %s\n", copied, dir);
        printf("head: seq %llu, counter %llu, pending %llu, nonce %s: %s\n",
               (unsigned long long)head_after.seq, (unsigned long long)head_after.counter,
               (unsigned long long)head_after.pending, hex, head_path);
    }
    free(head_path);
    return status;
}

static int cmd_help(struct mf_cli_session *s, int argc, char **argv);

static const struct command {
    const char *name;
    const char *args;
    const char *summary;
    int (*run)(struct mf_cli_session *s, int argc, char **argv);
    const char *help;
} commands[] = {
    {"auto", "[noinfo] [nopatch|patch LINE]", "run a full cycle (the start button)", cmd_cycle,
     "Erases as configured, programs, verifies, protects and starts the device on every\n"
     "selected slot, using the selected project. One programming count per device.\n"
     "  nopatch     do not apply Patches.txt\n"
     "  patch LINE  apply LINE (Patches.txt syntax, e.g. 1,8000010,4:01020304) instead\n"
     "  noinfo      ask for no status lines\n"
     "At a terminal a progress bar shows the phase; Ctrl-C sends #CANCEL.\n"},
    {"erase", "", "erase what the jobs' erase setting covers", cmd_cycle, NULL},
    {"program", "", "erase and program, without verify (one count)", cmd_cycle, NULL},
    {"verify", "", "verify the devices against the jobs' data", cmd_cycle, NULL},
    {"start", "", "start the application on the devices", cmd_cycle, NULL},
    {"cancel", "", "cancel what the selected slots run", cmd_cancel, NULL},
    {"status", "", "state of the selected slots (--json)", cmd_status,
     "Prints the state (READY, PROGRAMMING, ...): one word with one slot selected, else one\n"
     "'slot N: STATE' line per slot. --json: {\"slots\":[{\"slot\":1,\"state\":\"READY\"}]}\n"},
    {"result", "", "result of each selected slot's last command (--json)", cmd_result,
     "Prints 'slot N: OK (...)', 'slot N: ERRnnn:...' or 'slot N: NONE'.\n"
     "--json: {\"results\":[{\"slot\":1,\"result\":\"ok\",\"code\":null,\"text\":\"...\"}]}\n"},
    {"info", "", "facts about the programmer (--json)", cmd_info,
     "Prints KEY=value lines: VERSION, MODE, AREA, PROJECT, SLOTS, CYCLES_LEFT,\n"
     "NEXT_SERIAL, SETUP, LOG. --json: one object with the keys in lower case.\n"},
    {"select", "PROJECT", "select the project (with or without its NN_ prefix)", cmd_select, NULL},
    {"selmodule", "SLOTS", "choose the slots the next commands drive (1,3 or *)", cmd_selmodule,
     "The selection belongs to the connection: a new connection (after a reboot) drives\n"
     "every slot again.\n"},
    {"fwrite", "[-r] LOCAL [REMOTE]",
     "copy a file (or with -r a folder's contents) to the programmer", cmd_fwrite,
     "Copies LOCAL to REMOTE on the public area, replacing it (REMOTE defaults to LOCAL's\n"
     "name; a REMOTE ending in / is a folder to copy into). With -r, copies everything in\n"
     "the folder LOCAL into the folder REMOTE ('/' for the root), creating folders as needed.\n"},
    {"fread", "REMOTE [LOCAL]", "copy a file from the programmer ('-' = standard output)",
     cmd_fread, NULL},
    {"fshow", "REMOTE", "print a file of the programmer", cmd_fshow, NULL},
    {"fsize", "REMOTE", "print the size of a file in bytes", cmd_fsize, NULL},
    {"fdelete", "REMOTE", "delete a file", cmd_fdelete, NULL},
    {"flist", "[DIR]", "list a folder (--json)", cmd_flist,
     "Prints one line per entry: the size in bytes and the name, or <DIR> and the name.\n"
     "--json: {\"dir\":\"...\",\"entries\":[{\"name\":\"a\",\"type\":\"file\",\"size\":1}]}\n"},
    {"mkdir", "DIR", "create a folder", cmd_mkdir, NULL},
    {"rmdir", "DIR", "remove an empty folder", cmd_rmdir, NULL},
    {"securearea", "create [--owner OWNER.pub] | remove",
     "create or remove the secure area (all files are lost)", cmd_securearea,
     "Repartitions the storage: every configuration and data file is lost. Accepted on the\n"
     "local connection (the UNIX socket) only. --owner pins the owner whose public key file\n"
     "is given: from then on the programmer installs only that owner's sealed packages, and\n"
     "the pin stays for the life of its trust anchor.\n"},
    {"identity", "[-o FILE]", "the programmer's public identity (for its owner)", cmd_identity,
     "Prints (or writes to FILE) the programmer's public file: its fingerprint and the public\n"
     "keys that sealed packages are made for and production records are checked with.\n"},
    {"push", "FILE.mfp | FILE.mft", "install a sealed package, or apply a top-up token", cmd_push,
     "A package is copied into _SECURE and the programmer restarts to install it; every\n"
     "check is made before anything is erased, so a refused package leaves the current setup\n"
     "as it was (FLASHER.LOG says why). A token is applied at once and the decision printed.\n"},
    {"records", "[--nonce HEX] [DIR]",
     "copy the production records (RECORDS.nnn) and their signed head from the programmer",
     cmd_records,
     "Copies every RECORDS.nnn file into DIR (default: the current folder), and the\n"
     "programmer's head statement (its newest record and trust anchor counter, signed for\n"
     "the nonce) into DIR/HEAD, for `mintflash log verify --head DIR/HEAD`. --nonce takes\n"
     "the owner's 64 hex digits (default: random); verify --nonce then proves the head fresh.\n"},
    {"reboot", "[file-access]", "restart the programmer (file-access: in file access mode)",
     cmd_reboot,
     "Restarts as a power cycle would. 'file-access' (local connection only) restarts in\n"
     "file access mode. The next command waits for the programmer to be back.\n"},
    {"baudrate", "SPEED", "change the speed of a serial connection", cmd_baudrate, NULL},
    {"raw", "#COMMAND ...", "send one protocol line and print every reply line", cmd_raw,
     "Sends the line as written (see docs/protocol.md) and prints the replies, #ACK included.\n"
     "In scripts and -c, a line starting with '#' and a letter is sent the same way.\n"},
    {"help", "[COMMAND]", "list the commands, or describe one", cmd_help, NULL},
};

static const struct command *command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

bool mf_cli_is_command(const char *name)
{
    return command_find(name) != NULL;
}

static void command_usage(FILE *out, const struct command *c)
{
    fprintf(out, "usage: %s%s%s\n", c->name, *c->args ? " " : "", c->args);
}

int mf_cli_help(FILE *out, const char *name)
{
    if (name) {
        const struct command *c = command_find(name);
        if (!c)
            return 1;
        command_usage(out, c);
        fprintf(out, "\n%s.\n", c->summary);
        if (c->help)
            fprintf(out, "\n%s", c->help);
        return 0;
    }
    fprintf(out, "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
        fprintf(out, "  %-36s %s\n", head, commands[i].summary);
    }
    fprintf(out, "  %-36s %s\n", "quit", "leave (also exit, or Ctrl-D)");
    fprintf(out, "\nA line may hold several commands separated by ';'. A line starting with '#'\n"
                 "and a letter is a protocol line, sent as 'raw' sends it; '# ' starts a comment.\n"
                 "'help COMMAND' describes one command.\n");
    return 0;
}

static int cmd_help(struct mf_cli_session *s, int argc, char **argv)
{
    if (argc > 2)
        return usage_error(s, "help", "too many arguments");
    if (argc == 2 && mf_cli_help(stdout, argv[1])) {
        cmd_error(s, "help", "unknown command '%s'", argv[1]);
        return 2;
    }
    if (argc < 2)
        mf_cli_help(stdout, NULL);
    return 0;
}

static int usage_error(struct mf_cli_session *s, const char *cmd, const char *what)
{
    const struct command *c = command_find(cmd);
    if (c)
        cmd_error(s, cmd, "%s (usage: %s%s%s)", what, c->name, *c->args ? " " : "", c->args);
    else
        cmd_error(s, cmd, "%s", what);
    return 2;
}

int mf_cli_command(struct mf_cli_session *s, int argc, char **argv)
{
    const struct command *c = command_find(argv[0]);
    if (!c) {
        cmd_error(s, NULL, "unknown command '%s' (try 'help')", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || (strcmp(argv[i], "-h") == 0 && c->run != cmd_raw)) {
            mf_cli_help(stdout, c->name);
            return 0;
        }
    }
    int status = c->run(s, argc, argv);
    fflush(stdout);
    return status;
}
