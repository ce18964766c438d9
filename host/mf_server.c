/* The daemon's channels and protocol sessions (see mf_server.h and docs/protocol.md). */
#include "mf_server.h"

#include "mf_err.h"
#include "mf_owner.h"
#include "mf_token.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* A TCP client's address (IPv4 as its IPv4-mapped IPv6 form), for the per-peer limit. */
struct mf_peer {
    uint8_t address[16];
};

struct mf_session {
    uint64_t id;
    int fd;
    enum mf_channel channel;
    struct mf_peer peer; /* TCP only */
    struct mf_proto_framer framer;
    uint64_t input_us; /* poll thread only: when the client last sent anything (or connected) */
    /* Under server->lock: */
    char *out;
    size_t out_len, out_cap;
    bool dead;
    /* Slots running this connection's programming commands. A command may start on idle slots
     * while earlier ones run (the reference's multi-module rule); from then on all of them
     * answer in the multi-module forms until #DONE. */
    uint64_t pending;
    bool multi;      /* the running slots answer #STATUS:<slot>:..., #RESULT:<slot>:..., #DONE */
    uint64_t noinfo; /* slots started with NOINFO: no #STATUS lines */
    bool system_pending;
    enum mf_phase last_phase[MF_SLOTS_MAX];
    /* Poll thread only: */
    uint64_t selected;
    bool progress;
    bool file_open;
    bool file_read_only; /* opened with #FOPENREAD: no #FWRITE */
    char file[MF_FAT_PATH_MAX];
    unsigned pending_baud;
    /* The serial line hung up (its device gone, a pseudo-terminal's other side closed): poll()
     * reports it at once on every round, so it is left out of the poll set and its device opened
     * again once per SERIAL_RETRY_US. hung_up_us: when it was last found hung up, 0 while it is
     * polled; line_down: from the hang-up until it reads again (the log says each once). */
    uint64_t hung_up_us;
    bool line_down;
};

#define SERIAL_RETRY_US 1000000u

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- output ---- */

static void wake(struct mf_server *s)
{
    char b = 1;
    ssize_t r = write(s->wake_fd[1], &b, 1);
    (void)r;
}

/* Queues one reply line (CR-terminated). A control character in it (a name quoted from the
 * storage in an error text) goes out as "<hh>": no reply line can end early or forge another.
 * Caller holds s->lock. */
static void queue_line(struct mf_server *s, struct mf_session *ss, const char *text)
{
    (void)s;
    if (ss->dead)
        return;
    char escaped[MF_PROTO_ESCAPED_SIZE(MF_PROTO_LINE_MAX + 64)];
    size_t n = mf_proto_escape(text, false, escaped, sizeof escaped);
    text = escaped;
    if (ss->out_len + n + 1 > MF_SERVER_OUTPUT_MAX) {
        /* A client that does not read: drop it (the serial line: drop the output). */
        if (ss->channel == MF_CHANNEL_SERIAL)
            ss->out_len = 0;
        else
            ss->dead = true;
        return;
    }
    if (ss->out_len + n + 1 > ss->out_cap) {
        size_t cap = ss->out_cap ? ss->out_cap : 4096;
        while (cap < ss->out_len + n + 1)
            cap *= 2;
        char *out = realloc(ss->out, cap);
        if (!out) {
            ss->dead = true;
            return;
        }
        ss->out = out;
        ss->out_cap = cap;
    }
    memcpy(ss->out + ss->out_len, text, n);
    ss->out[ss->out_len + n] = '\r';
    ss->out_len += n + 1;
}

static void reply(struct mf_server *s, struct mf_session *ss, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply(struct mf_server *s, struct mf_session *ss, const char *fmt, ...)
{
    char line[MF_PROTO_LINE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->lock);
    queue_line(s, ss, line);
    pthread_mutex_unlock(&s->lock);
}

static struct mf_session *find_session(struct mf_server *s, uint64_t id)
{
    for (unsigned i = 0; i < s->session_count; i++) {
        if (s->sessions[i]->id == id)
            return s->sessions[i];
    }
    return NULL;
}

/* ---- results ---- */

static int protocol_error(const struct mf_cycle_result *r)
{
    if (r->error == MF_ENOMEM)
        return MF_PERR_MEMORY;
    switch (r->failure) {
    case MF_FAIL_NO_SETUP:
        return MF_PERR_NO_SETUP;
    case MF_FAIL_SETUP:
        return MF_PERR_BAD_SETUP;
    case MF_FAIL_EXHAUSTED:
        return MF_PERR_EXHAUSTED;
    case MF_FAIL_STORAGE:
        return MF_PERR_STORAGE;
    case MF_FAIL_DEVICE_DATA:
        return MF_PERR_DEVICE_DATA;
    case MF_FAIL_DATA_FILE:
        return MF_PERR_DATA_FILE;
    case MF_FAIL_CONNECT:
        return MF_PERR_CONNECT;
    case MF_FAIL_TARGET:
        return MF_PERR_TARGET;
    case MF_FAIL_VERIFY:
        return MF_PERR_VERIFY;
    case MF_FAIL_TIMEOUT:
        return MF_PERR_TIMEOUT;
    case MF_FAIL_PROTECTED:
        return MF_PERR_PROTECTED;
    case MF_FAIL_CANCELED:
        return MF_PERR_CANCELED;
    case MF_FAIL_CONFLICT:
        /* The preflight: the public area's rule, or no room for the production records or the
         * FLASHER.LOG line. */
        return r->error == MF_ECONFLICT ? MF_PERR_CONFLICT : MF_PERR_STORAGE;
    case MF_FAIL_SECURE:
        return MF_PERR_SECURE;
    default:
        return MF_PERR_OTHER;
    }
}

/* "#OK (Total ...)" or "#ERRnnn:text". */
static void format_result(const struct mf_cycle_result *r, char *out, size_t size)
{
    if (!r->error) {
        snprintf(out, size, "#OK (Total %u.%03us, Erase %u.%03us, Prog %u.%03us, Verify %u.%03us)",
                 r->total_ms / 1000, r->total_ms % 1000, r->erase_ms / 1000, r->erase_ms % 1000,
                 r->program_ms / 1000, r->program_ms % 1000, r->verify_ms / 1000,
                 r->verify_ms % 1000);
        return;
    }
    int code = protocol_error(r);
    if (code == MF_PERR_CANCELED)
        snprintf(out, size, "#ERR007:CANCELED.");
    else
        snprintf(out, size, "#ERR%03d:%s", code, r->message);
}

static void on_event(void *context, uint64_t origin, const struct mf_cycle_event *ev)
{
    struct mf_server *s = context;
    char line[160];
    pthread_mutex_lock(&s->lock);
    struct mf_session *ss = find_session(s, origin);
    unsigned slot = ev->slot;
    if (ss && slot >= 1 && slot <= MF_SLOTS_MAX && (ss->pending >> (slot - 1) & 1)) {
        if (!(ss->noinfo >> (slot - 1) & 1) && ss->last_phase[slot - 1] != ev->phase) {
            ss->last_phase[slot - 1] = ev->phase;
            if (ss->multi)
                snprintf(line, sizeof line, "#STATUS:%u:%s", slot, mf_phase_name(ev->phase));
            else
                snprintf(line, sizeof line, "#STATUS:%s", mf_phase_name(ev->phase));
            queue_line(s, ss, line);
        }
        if (ss->progress && ev->total) {
            snprintf(line, sizeof line, "#PROGRESS:%u:%s:%llx:%llx", slot, mf_phase_name(ev->phase),
                     (unsigned long long)ev->done, (unsigned long long)ev->total);
            queue_line(s, ss, line);
        }
    }
    pthread_mutex_unlock(&s->lock);
    wake(s);
}

static void on_done(void *context, uint64_t origin, unsigned slot, enum mf_cycle_action action,
                    const struct mf_cycle_result *r)
{
    (void)action;
    struct mf_server *s = context;
    char text[MF_CYCLE_MESSAGE_MAX + 64], line[MF_CYCLE_MESSAGE_MAX + 96];
    format_result(r, text, sizeof text);
    pthread_mutex_lock(&s->lock);
    struct mf_session *ss = find_session(s, origin);
    if (ss && slot >= 1 && slot <= MF_SLOTS_MAX && (ss->pending >> (slot - 1) & 1)) {
        ss->pending &= ~(1ull << (slot - 1));
        if (ss->multi) {
            snprintf(line, sizeof line, "#RESULT:%u:%s", slot, text);
            queue_line(s, ss, line);
            if (!ss->pending)
                queue_line(s, ss, "#DONE");
        } else {
            queue_line(s, ss, text);
        }
    }
    pthread_mutex_unlock(&s->lock);
    wake(s);
}

struct mf_programmer_sink mf_server_sink(struct mf_server *server)
{
    return (struct mf_programmer_sink){on_event, on_done, server};
}

/* ---- system work: reboot, secure area ---- */

struct system_job {
    struct mf_server *server;
    uint64_t origin;
    enum { JOB_BOOT, JOB_REBOOT, JOB_SECURE_CREATE, JOB_SECURE_REMOVE } kind;
    enum mf_mode mode;
    bool has_owner; /* securearea create with an owner to pin */
    uint8_t owner[32];
};

static void *system_main(void *arg)
{
    struct system_job *job = arg;
    struct mf_server *s = job->server;
    char error[MF_PROGRAMMER_TEXT_MAX] = "";
    int err = 0;
    switch (job->kind) {
    case JOB_BOOT:
        mf_programmer_boot(s->programmer);
        break;
    case JOB_REBOOT:
        err = mf_programmer_reboot(s->programmer, job->mode, error);
        break;
    case JOB_SECURE_CREATE:
    case JOB_SECURE_REMOVE:
        err = mf_programmer_secure_area(s->programmer, job->kind == JOB_SECURE_CREATE,
                                        job->has_owner ? job->owner : NULL, error);
        break;
    }
    pthread_mutex_lock(&s->lock);
    struct mf_session *ss = job->origin ? find_session(s, job->origin) : NULL;
    if (ss && ss->system_pending) {
        ss->system_pending = false;
        char line[MF_PROGRAMMER_TEXT_MAX + 32];
        if (err)
            snprintf(line, sizeof line, "#ERR%03d:%s",
                     err == MF_EBUSY           ? MF_PERR_BUSY
                     : job->kind == JOB_REBOOT ? MF_PERR_OTHER
                                               : MF_PERR_SECURE,
                     error);
        else
            snprintf(line, sizeof line, "#OK");
        queue_line(s, ss, line);
    }
    s->system_busy = false;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    free(job);
    return NULL;
}

/* Runs a system job on its own thread; MF_EBUSY while one runs. */
static int system_start(struct mf_server *s, int kind, enum mf_mode mode, struct mf_session *ss,
                        const uint8_t *owner)
{
    pthread_mutex_lock(&s->lock);
    if (s->system_busy) {
        pthread_mutex_unlock(&s->lock);
        return MF_EBUSY;
    }
    if (s->system_thread_joinable) {
        pthread_join(s->system_thread, NULL);
        s->system_thread_joinable = false;
    }
    struct system_job *job = calloc(1, sizeof *job);
    if (!job) {
        pthread_mutex_unlock(&s->lock);
        return MF_ENOMEM;
    }
    job->server = s;
    job->kind = kind;
    job->mode = mode;
    job->origin = ss ? ss->id : 0;
    if (owner) {
        job->has_owner = true;
        memcpy(job->owner, owner, 32);
    }
    if (ss)
        ss->system_pending = true;
    s->system_busy = true;
    if (pthread_create(&s->system_thread, NULL, system_main, job) != 0) {
        s->system_busy = false;
        pthread_mutex_unlock(&s->lock);
        free(job);
        return MF_ENOMEM;
    }
    s->system_thread_joinable = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int mf_server_boot(struct mf_server *server)
{
    return system_start(server, JOB_BOOT, MF_MODE_STANDALONE, NULL, NULL);
}

/* ---- commands ---- */

static unsigned slot_count(const struct mf_server *s)
{
    return s->programmer->slot_count;
}

static unsigned selected_count(const struct mf_session *ss)
{
    return (unsigned)__builtin_popcountll(ss->selected);
}

/* A new connection drives every slot. (Set when its first command arrives: the serial line's
 * session exists before the programmer knows its slots.) */
static void default_selection(struct mf_server *s, struct mf_session *ss)
{
    unsigned n = slot_count(s);
    if (!ss->selected)
        ss->selected = n >= 64 ? ~0ull : (1ull << n) - 1;
}

static const char *phase_of(struct mf_server *s, unsigned slot)
{
    enum mf_mode mode;
    bool init;
    mf_programmer_mode(s->programmer, &mode, &init);
    /* Starting up first: a client that waits for the end of INITIALIZING may then send
     * whatever the mode allows. */
    if (init)
        return "INITIALIZING";
    if (mode == MF_MODE_FILEACCESS)
        return "FILEACCESS";
    struct mf_slot_state st;
    mf_programmer_slot_state(s->programmer, slot, &st);
    return mf_phase_name(st.phase);
}

static void cmd_status(struct mf_server *s, struct mf_session *ss)
{
    reply(s, ss, "#ACK");
    if (selected_count(ss) == 1) {
        unsigned slot = (unsigned)__builtin_ctzll(ss->selected) + 1;
        reply(s, ss, "#STATUS:%s", phase_of(s, slot));
        return;
    }
    for (unsigned i = 1; i <= slot_count(s); i++) {
        if (ss->selected >> (i - 1) & 1)
            reply(s, ss, "#STATUS:%u:%s", i, phase_of(s, i));
    }
}

static void cmd_result(struct mf_server *s, struct mf_session *ss)
{
    reply(s, ss, "#ACK");
    for (unsigned i = 1; i <= slot_count(s); i++) {
        if (!(ss->selected >> (i - 1) & 1))
            continue;
        struct mf_slot_state st;
        mf_programmer_slot_state(s->programmer, i, &st);
        char text[MF_CYCLE_MESSAGE_MAX + 64];
        if (st.busy)
            snprintf(text, sizeof text, "BUSY");
        else if (!st.has_result)
            snprintf(text, sizeof text, "NONE");
        else
            format_result(&st.result, text, sizeof text);
        reply(s, ss, "#RESULT:%u:%s", i, text);
    }
}

/* Protocol number for a refusal of mf_programmer_submit. */
static int submit_error(int err)
{
    switch (err) {
    case MF_EBUSY:
        return MF_PERR_BUSY;
    case MF_ENOMEM:
        return MF_PERR_MEMORY;
    case MF_EPERM:
        return MF_PERR_FILE_ACCESS_MODE;
    case MF_ENOENT:
        return MF_PERR_NO_SETUP;
    case MF_EIO:
        return MF_PERR_STORAGE;
    case MF_EAUTH:
        return MF_PERR_SECURE;
    default:
        return MF_PERR_BAD_SETUP;
    }
}

/* Parses "<slot>[,<slot>...]" (decimal; blanks around the commas allowed) from the first
 * `length` bytes of `text` into `mask`. Returns 0, MF_EINVAL (not a slot list) or MF_ERANGE (a
 * slot the programmer does not have). */
static int parse_slots(const struct mf_server *s, const char *text, size_t length, uint64_t *mask)
{
    uint64_t m = 0;
    size_t i = 0;
    for (;;) {
        while (i < length && text[i] == ' ')
            i++;
        unsigned v = 0, digits = 0;
        for (; i < length && text[i] >= '0' && text[i] <= '9'; i++, digits++) {
            if (digits < 4)
                v = v * 10 + (unsigned)(text[i] - '0');
        }
        if (!digits)
            return MF_EINVAL;
        if (digits > 3 || v < 1 || v > slot_count(s))
            return MF_ERANGE;
        m |= 1ull << (v - 1);
        while (i < length && text[i] == ' ')
            i++;
        if (i == length)
            break;
        if (text[i] != ',')
            return MF_EINVAL;
        i++;
    }
    *mask = m;
    return 0;
}

/* A word naming slots: `*` (the connection's selection) or a slot list. Returns as parse_slots. */
static int slot_word(const struct mf_server *s, const struct mf_session *ss, const char *word,
                     size_t length, uint64_t *mask)
{
    if (length == 1 && *word == '*') {
        *mask = ss->selected;
        return 0;
    }
    return parse_slots(s, word, length, mask);
}

/* What a programming command's words ask for (`#AUTO NOINFO NOPATCH 1,2`). */
struct cycle_words {
    struct mf_cycle_request request;
    bool noinfo;
    bool named;   /* `*` or slot numbers given: those slots, multi-module replies */
    uint64_t run; /* the slots named */
};

/* Reads the words after the command: NOINFO; for #AUTO also NOPATCH and PATCH [<slots>] <line>
 * (the line is the rest); `*` or a slot list, as the reference's ATE takes them (`#AUTO *`,
 * `#AUTO NOPATCH 1`). Replies #NACK itself and returns false on a bad word. */
static bool cycle_words(struct mf_server *s, struct mf_session *ss, enum mf_proto_command cmd,
                        const char *args, struct cycle_words *cw)
{
    const char *p = args;
    int err = 0;
    while (*p && !err) {
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - w);
        while (*p == ' ' || *p == '\t')
            p++;
        uint64_t mask = 0;
        if (n == 6 && strncasecmp(w, "NOINFO", 6) == 0) {
            cw->noinfo = true;
        } else if (cmd == MF_CMD_AUTO && n == 7 && strncasecmp(w, "NOPATCH", 7) == 0) {
            cw->request.no_patch = true;
        } else if (cmd == MF_CMD_AUTO && n == 5 && strncasecmp(w, "PATCH", 5) == 0) {
            /* `PATCH <slots> <line>`: a first word without ':' with more text after it. */
            size_t k = strcspn(p, " \t");
            const char *after = p + k + strspn(p + k, " \t");
            if (*after && !memchr(p, ':', k) && (err = slot_word(s, ss, p, k, &mask)) == 0) {
                cw->named = true;
                cw->run |= mask;
                p = after;
            }
            if (err == MF_ERANGE)
                break;
            if (!*p) {
                reply(s, ss, "#NACK:ERR%03d:PATCH needs a patch line", MF_PERR_ARGUMENT);
                return false;
            }
            cw->request.patch_line = p;
            return true;
        } else if ((err = slot_word(s, ss, w, n, &mask)) == 0) {
            cw->named = true;
            cw->run |= mask;
        } else if (err == MF_EINVAL) {
            reply(s, ss, "#NACK:ERR%03d:Unknown option '%.*s'", MF_PERR_ARGUMENT, (int)n, w);
            return false;
        }
    }
    if (err) {
        reply(s, ss, "#NACK:ERR%03d:Slots are 1 to %u", MF_PERR_ARGUMENT, slot_count(s));
        return false;
    }
    return true;
}

static void cmd_cycle(struct mf_server *s, struct mf_session *ss, enum mf_proto_command cmd,
                      const char *args)
{
    struct cycle_words cw = {0};
    switch (cmd) {
    case MF_CMD_AUTO:
        cw.request.action = MF_ACTION_AUTO;
        break;
    case MF_CMD_ERASE:
        cw.request.action = MF_ACTION_ERASE;
        break;
    case MF_CMD_PROGRAM:
        cw.request.action = MF_ACTION_PROGRAM;
        break;
    case MF_CMD_VERIFY:
        cw.request.action = MF_ACTION_VERIFY;
        break;
    default:
        cw.request.action = MF_ACTION_START;
        break;
    }
    if (!cycle_words(s, ss, cmd, args, &cw))
        return;
    uint64_t run = cw.named ? cw.run : ss->selected;
    unsigned count = (unsigned)__builtin_popcountll(run);
    /* Only this connection's worker callbacks clear `pending` meanwhile, and only the poll thread
     * sets it: a slot seen idle here stays free of this connection's commands. */
    pthread_mutex_lock(&s->lock);
    uint64_t own = run & ss->pending;
    pthread_mutex_unlock(&s->lock);
    if (own) {
        reply(s, ss, "#NACK:ERR%03d:Busy (slot %u runs a command of this connection)", MF_PERR_BUSY,
              (unsigned)__builtin_ctzll(own) + 1);
        return;
    }
    if (count == 1) {
        unsigned slot = (unsigned)__builtin_ctzll(run) + 1;
        struct mf_slot_state st;
        mf_programmer_slot_state(s->programmer, slot, &st);
        if (st.busy) {
            reply(s, ss, "#NACK:ERR%03d:Busy (slot %u)", MF_PERR_BUSY, slot);
            return;
        }
    }
    pthread_mutex_lock(&s->lock);
    queue_line(s, ss, "#ACK");
    /* Joining slots that still run: every one of them answers per slot from this #ACK on. */
    ss->multi = ss->pending || cw.named || count > 1;
    ss->noinfo = cw.noinfo ? ss->noinfo | run : ss->noinfo & ~run;
    for (unsigned i = 0; i < MF_SLOTS_MAX; i++) {
        if (run >> i & 1)
            ss->last_phase[i] = MF_PHASE_READY;
    }
    ss->pending |= run; /* all before the first worker can finish: #DONE only after the last */
    pthread_mutex_unlock(&s->lock);
    for (unsigned slot = 1; slot <= slot_count(s); slot++) {
        if (!(run >> (slot - 1) & 1))
            continue;
        char error[MF_PROGRAMMER_TEXT_MAX];
        int err = mf_programmer_submit(s->programmer, slot, &cw.request, ss->id, error);
        if (!err)
            continue;
        char line[MF_PROGRAMMER_TEXT_MAX + 32];
        pthread_mutex_lock(&s->lock);
        ss->pending &= ~(1ull << (slot - 1));
        if (ss->multi)
            snprintf(line, sizeof line, "#RESULT:%u:#ERR%03d:%s", slot, submit_error(err), error);
        else
            snprintf(line, sizeof line, "#ERR%03d:%s", submit_error(err), error);
        queue_line(s, ss, line);
        if (ss->multi && !ss->pending)
            queue_line(s, ss, "#DONE");
        pthread_mutex_unlock(&s->lock);
    }
}

static void cmd_selmodule(struct mf_server *s, struct mf_session *ss, const char *args)
{
    uint64_t mask = 0;
    if (strcmp(args, "*") == 0) {
        mask = slot_count(s) == 64 ? ~0ull : (1ull << slot_count(s)) - 1;
    } else {
        int err = parse_slots(s, args, strlen(args), &mask);
        if (err) {
            if (err == MF_ERANGE)
                reply(s, ss, "#NACK:ERR%03d:Slots are 1 to %u", MF_PERR_ARGUMENT, slot_count(s));
            else
                reply(s, ss, "#NACK:ERR%03d:Expected <slot>[,<slot>...]", MF_PERR_ARGUMENT);
            return;
        }
    }
    ss->selected = mask;
    char line[MF_SLOTS_MAX * 4 + 16] = "#SELECTED:";
    size_t n = strlen(line);
    for (unsigned i = 1; i <= slot_count(s); i++) {
        if (mask >> (i - 1) & 1)
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%u", n > 10 ? "," : "", i);
    }
    reply(s, ss, "#ACK");
    reply(s, ss, "%s", line);
}

static void cmd_info(struct mf_server *s, struct mf_session *ss)
{
    struct mf_programmer_info info;
    mf_programmer_info(s->programmer, &info);
    reply(s, ss, "#ACK");
    reply(s, ss, "#INFO:VERSION=%s", MF_VERSION);
    reply(s, ss, "#INFO:MODE=%s", info.mode == MF_MODE_FILEACCESS ? "FILEACCESS" : "STANDALONE");
    reply(s, ss, "#INFO:STATE=%s", info.initializing ? "INITIALIZING" : "READY");
    reply(s, ss, "#INFO:AREA=%s", info.secure ? "SECURE" : "PUBLIC");
    reply(s, ss, "#INFO:PROJECT=%s", info.project);
    reply(s, ss, "#INFO:SLOTS=%u", info.slots);
    if (info.limited)
        reply(s, ss, "#INFO:CYCLES_LEFT=%llu", (unsigned long long)info.cycles_left);
    else
        reply(s, ss, "#INFO:CYCLES_LEFT=%s", info.project[0] ? "UNLIMITED" : "");
    if (info.has_serial)
        reply(s, ss, "#INFO:NEXT_SERIAL=%llu", (unsigned long long)info.next_serial);
    else
        reply(s, ss, "#INFO:NEXT_SERIAL=");
    reply(s, ss, "#INFO:SETUP=%s", info.setup_id);
    reply(s, ss, "#INFO:PROGRAMMER=%s", info.programmer);
    reply(s, ss, "#INFO:OWNER=%s", info.owner);
    reply(s, ss, "#INFO:PACKAGE=%s", info.package);
    reply(s, ss, "#INFO:PINNED=%s", info.pinned);
    reply(s, ss, "#INFO:MOVE_ERROR=%s", info.move_error);
    reply(s, ss, "#INFO:LOG=%s", info.log_error ? mf_strerror(info.log_error) : "OK");
    if (info.problem[0])
        reply(s, ss, "#INFO:PROBLEM=%s", info.problem);
    reply(s, ss, "#OK");
}

static int parse_baud(unsigned baud, speed_t *speed)
{
    static const struct {
        unsigned baud;
        speed_t speed;
    } table[] = {{1200, B1200},     {2400, B2400},     {4800, B4800},    {9600, B9600},
                 {19200, B19200},   {38400, B38400},   {57600, B57600},  {115200, B115200},
                 {230400, B230400}, {460800, B460800}, {921600, B921600}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].baud == baud) {
            *speed = table[i].speed;
            return 0;
        }
    }
    return -1;
}

static void cmd_baudrate(struct mf_server *s, struct mf_session *ss, const char *args)
{
    if (ss->channel != MF_CHANNEL_SERIAL) {
        reply(s, ss, "#ACK");
        reply(s, ss, "#ERR%03d:#BAUDRATE applies to the serial line only", MF_PERR_CHANNEL);
        return;
    }
    char *end;
    unsigned long baud = strtoul(args, &end, 10);
    speed_t speed;
    if (end == args || *end || baud > UINT32_MAX || parse_baud((unsigned)baud, &speed)) {
        reply(s, ss, "#NACK:ERR%03d:Baud rates: 1200 to 921600", MF_PERR_ARGUMENT);
        return;
    }
    reply(s, ss, "#ACK");
    reply(s, ss, "#OK");
    ss->pending_baud = (unsigned)baud; /* switched once the #OK is out */
}

/* ---- file commands ---- */

static const char *file_why(int err)
{
    return mf_strerror(err);
}

static struct mf_fat *public_fat(struct mf_server *s, struct mf_session *ss, int code)
{
    struct mf_fat *fs = mf_programmer_public(s->programmer);
    if (!fs)
        reply(s, ss, "#ERR%03d:The public area is not available", code);
    return fs;
}

/* What a path of the public area is to _SECURE, the folder a start moves into the secure area. */
enum secure_path {
    SECURE_NONE,    /* outside it */
    SECURE_FOLDER,  /* _SECURE itself */
    SECURE_PACKAGE, /* _SECURE/<name>.mfp: a sealed package */
    SECURE_OTHER,   /* anything else in it */
};

static enum secure_path secure_path(struct mf_fat *fs, const char *path)
{
    unsigned below = 0;
    int r = mf_fat_path_in(fs, path, MF_SECURE_FOLDER, &below);
    if (r == MF_ENAME || r == MF_ENAMETOOLONG || r == 0)
        return SECURE_NONE; /* a name no lookup takes fails in the command itself */
    if (r < 0)
        return SECURE_OTHER; /* the volume could not say (a read failed): refused over TCP */
    if (below == 0)
        return SECURE_FOLDER;
    const char *base = path + strlen(path);
    while (base > path && base[-1] != '/' && base[-1] != '\\')
        base--;
    size_t n = strlen(base);
    if (below == 1 && n > 4 && strcasecmp(base + n - 4, ".mfp") == 0)
        return SECURE_PACKAGE;
    return SECURE_OTHER;
}

/* Over TCP and the serial line, _SECURE takes a sealed package and nothing else: a plain or an
 * empty _SECURE would erase the installed setup at the next start, and destroying it is the local
 * connection's alone (docs/protocol.md, "_SECURE over TCP and serial"). True when the command is
 * `refused` and not on the local connection: the public area is released and the reply sent. */
static bool secure_refused(struct mf_server *s, struct mf_session *ss, bool refused)
{
    if (!refused || ss->channel == MF_CHANNEL_UNIX)
        return false;
    mf_programmer_public_release(s->programmer);
    reply(s, ss,
          "#ERR%03d:Over TCP and serial, _SECURE takes a sealed package (_SECURE/<name>.mfp) and "
          "nothing else: use the local connection",
          MF_PERR_LOCAL_ONLY);
    return true;
}

/* What #FOPEN and #FWRITE may write into _SECURE from afar (the local connection: anything): a
 * sealed package, and not even that where one signed by anyone would replace the setup (no
 * owner pinned: any owner's package installs), which destroys it as a plain _SECURE does.
 * `replaces` is mf_programmer_package_replaces, asked before the public area was taken. True
 * when refused, as secure_refused. */
static bool write_refused(struct mf_server *s, struct mf_session *ss, enum secure_path sp,
                          bool replaces)
{
    if (secure_refused(s, ss, sp == SECURE_FOLDER || sp == SECURE_OTHER))
        return true;
    if (sp != SECURE_PACKAGE || !replaces || ss->channel == MF_CHANNEL_UNIX)
        return false;
    mf_programmer_public_release(s->programmer);
    reply(s, ss,
          "#ERR%03d:Over TCP and serial, _SECURE takes no package here: no owner is pinned, so a "
          "package signed by anyone would replace the installed setup (securearea create "
          "--owner pins one): use the local connection",
          MF_PERR_LOCAL_ONLY);
    return true;
}

/* #FOPEN opens for reading and writing, creating a missing file; #FOPENREAD (`read_only`) opens an
 * existing file for reading only and never creates or changes anything. #FOPEN of
 * _SECURE/<name>.mfp also makes _SECURE when there is none (the way `mintflash push` puts a
 * package there). */
static void cmd_fopen(struct mf_server *s, struct mf_session *ss, const char *name, bool read_only)
{
    reply(s, ss, "#ACK");
    ss->file_open = false; /* an open file is closed first, also when this open fails */
    if (!*name || strlen(name) >= sizeof ss->file) {
        reply(s, ss, "#ERR%03d:File open failed (no valid name)", MF_PERR_FILE_OPEN);
        return;
    }
    bool replaces = !read_only && ss->channel != MF_CHANNEL_UNIX &&
                    mf_programmer_package_replaces(s->programmer);
    struct mf_fat *fs = public_fat(s, ss, MF_PERR_FILE_OPEN);
    if (!fs)
        return;
    enum secure_path sp = read_only ? SECURE_NONE : secure_path(fs, name);
    if (write_refused(s, ss, sp, replaces))
        return;
    struct mf_fat_stat st;
    bool existed = mf_fat_stat(fs, name, &st) == 0;
    int err = 0;
    bool made = sp == SECURE_PACKAGE && mf_fat_stat(fs, MF_SECURE_FOLDER, &st) == MF_ENOENT;
    if (made)
        err = mf_fat_mkdir(fs, MF_SECURE_FOLDER);
    struct mf_fat_file file;
    if (!err)
        err = read_only ? mf_fat_open(fs, &file, name, MF_FAT_O_RDONLY)
                        : mf_fat_open(fs, &file, name, MF_FAT_O_RDWR | MF_FAT_O_CREAT);
    if (err == MF_EACCES && !read_only)
        err = mf_fat_open(fs, &file, name, MF_FAT_O_RDONLY);
    if (!err)
        err = mf_fat_close(fs, &file);
    else if (made)
        mf_fat_rmdir(fs, MF_SECURE_FOLDER); /* never an empty _SECURE: that would erase */
    mf_programmer_public_release(s->programmer);
    if (err) {
        reply(s, ss, "#ERR%03d:File open failed (%s)", MF_PERR_FILE_OPEN, file_why(err));
        return;
    }
    if (!existed)
        mf_programmer_files_changed(s->programmer);
    ss->file_open = true;
    ss->file_read_only = read_only;
    snprintf(ss->file, sizeof ss->file, "%s", name);
    reply(s, ss, "#OK");
}

static bool need_open(struct mf_server *s, struct mf_session *ss)
{
    if (ss->file_open)
        return true;
    reply(s, ss, "#ERR255:No file opened");
    return false;
}

static void cmd_fwrite(struct mf_server *s, struct mf_session *ss, const char *args)
{
    uint64_t off, n;
    const char *p = args;
    uint8_t data[MF_PROTO_FILE_CHUNK];
    if (mf_proto_hex(&p, &off) || *p != ',' || (++p, mf_proto_hex(&p, &n)) || *p != ':' ||
        n > MF_PROTO_FILE_CHUNK || mf_proto_hex_bytes(p + 1, data, (size_t)n) ||
        off > MF_FAT_FILE_SIZE_MAX) {
        reply(s, ss, "#NACK:ERR%03d:Expected <Offset>,<NumBytes>:<Data> in hex, at most 200 bytes",
              MF_PERR_ARGUMENT);
        return;
    }
    reply(s, ss, "#ACK");
    if (!need_open(s, ss))
        return;
    if (ss->file_read_only) {
        reply(s, ss, "#ERR%03d:File write failed (opened for reading only: #FOPENREAD)",
              MF_PERR_FILE_WRITE);
        return;
    }
    bool replaces = ss->channel != MF_CHANNEL_UNIX && mf_programmer_package_replaces(s->programmer);
    struct mf_fat *fs = public_fat(s, ss, MF_PERR_FILE_WRITE);
    if (!fs)
        return;
    /* The file was taken at #FOPEN, but what may be written to _SECURE from afar can have
     * changed since (a setup installed there meanwhile): asked again (not on the local
     * connection, which may write anything: no lookup per chunk there). */
    if (ss->channel != MF_CHANNEL_UNIX && write_refused(s, ss, secure_path(fs, ss->file), replaces))
        return;
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, ss->file, MF_FAT_O_RDWR);
    if (!err) {
        err = mf_fat_seek(fs, &file, (uint32_t)off);
        int w = err ? err : mf_fat_write(fs, &file, data, (uint32_t)n);
        int cerr = mf_fat_close(fs, &file);
        err = w < 0 ? w : cerr;
    }
    mf_programmer_public_release(s->programmer);
    if (err) {
        reply(s, ss, "#ERR%03d:File write failed (%s)", MF_PERR_FILE_WRITE, file_why(err));
        return;
    }
    mf_programmer_files_changed(s->programmer);
    reply(s, ss, "#OK");
}

static void cmd_fread(struct mf_server *s, struct mf_session *ss, const char *args)
{
    uint64_t off, n;
    const char *p = args;
    if (mf_proto_hex(&p, &off) || *p != ',' || (++p, mf_proto_hex(&p, &n)) || *p) {
        reply(s, ss, "#NACK:ERR%03d:Expected <Offset>,<NumBytes> in hex", MF_PERR_ARGUMENT);
        return;
    }
    reply(s, ss, "#ACK");
    if (!need_open(s, ss))
        return;
    if (n > MF_PROTO_FILE_CHUNK)
        n = MF_PROTO_FILE_CHUNK;
    struct mf_fat *fs = public_fat(s, ss, MF_PERR_FILE_READ);
    if (!fs)
        return;
    uint8_t data[MF_PROTO_FILE_CHUNK];
    struct mf_fat_file file;
    int got = 0;
    int err = mf_fat_open(fs, &file, ss->file, MF_FAT_O_RDONLY);
    if (!err) {
        if (off < mf_fat_size(&file)) {
            err = mf_fat_seek(fs, &file, (uint32_t)off);
            got = err ? err : mf_fat_read(fs, &file, data, (uint32_t)n);
        }
        mf_fat_close(fs, &file);
        if (got < 0)
            err = got;
    }
    mf_programmer_public_release(s->programmer);
    if (err) {
        reply(s, ss, "#ERR%03d:File read failed (%s)", MF_PERR_FILE_READ, file_why(err));
        return;
    }
    char hex[2 * MF_PROTO_FILE_CHUNK + 1];
    mf_proto_hex_encode(data, (size_t)got, hex);
    reply(s, ss, "#OK:%02x:%s", (unsigned)got, hex);
}

static void cmd_fsize(struct mf_server *s, struct mf_session *ss)
{
    reply(s, ss, "#ACK");
    if (!need_open(s, ss))
        return;
    struct mf_fat *fs = public_fat(s, ss, MF_PERR_FILE_READ);
    if (!fs)
        return;
    struct mf_fat_stat st;
    int err = mf_fat_stat(fs, ss->file, &st);
    mf_programmer_public_release(s->programmer);
    if (err)
        reply(s, ss, "#ERR%03d:File read failed (%s)", MF_PERR_FILE_READ, file_why(err));
    else
        reply(s, ss, "#OK:%x", st.size);
}

/* FDELETE, MKDIR, RMDIR: one call on a name. */
static void cmd_path_op(struct mf_server *s, struct mf_session *ss, enum mf_proto_command cmd,
                        const char *name)
{
    reply(s, ss, "#ACK");
    int code = cmd == MF_CMD_MKDIR ? MF_PERR_FILE_WRITE : MF_PERR_FILE_DELETE;
    const char *what = cmd == MF_CMD_FDELETE ? "Failed to delete file"
                       : cmd == MF_CMD_MKDIR ? "Failed to create folder"
                                             : "Failed to remove folder";
    if (!*name) {
        reply(s, ss, "#ERR%03d:%s (no name)", code, what);
        return;
    }
    struct mf_fat *fs = public_fat(s, ss, code);
    if (!fs)
        return;
    enum secure_path sp = secure_path(fs, name);
    bool allowed = sp == SECURE_NONE || (cmd == MF_CMD_FDELETE && sp == SECURE_PACKAGE) ||
                   (cmd == MF_CMD_RMDIR && sp == SECURE_FOLDER);
    if (secure_refused(s, ss, !allowed))
        return;
    int err = cmd == MF_CMD_FDELETE ? mf_fat_remove(fs, name)
              : cmd == MF_CMD_MKDIR ? mf_fat_mkdir(fs, name)
                                    : mf_fat_rmdir(fs, name);
    /* Nor may a deleted package leave an empty _SECURE behind, on any connection: the next start
     * would erase the setup with it. The local connection too, where `mintflash push` tells the
     * operator to delete a refused package (an empty _SECURE is made on purpose, with #MKDIR). */
    int left = 0;
    if (!err && sp == SECURE_PACKAGE) {
        left = mf_fat_rmdir(fs, MF_SECURE_FOLDER);
        left = left == MF_ENOTEMPTY ? 0 : left;
    }
    mf_programmer_public_release(s->programmer);
    if (err) {
        reply(s, ss, "#ERR%03d:%s (%s)", code, what, file_why(err));
        return;
    }
    mf_programmer_files_changed(s->programmer);
    if (left)
        reply(s, ss, "#ERR%03d:The package is deleted, but not the empty _SECURE (%s)", code,
              file_why(left));
    else
        reply(s, ss, "#OK");
}

static void cmd_flist(struct mf_server *s, struct mf_session *ss, const char *dir)
{
    reply(s, ss, "#ACK");
    struct mf_fat *fs = public_fat(s, ss, MF_PERR_FILE_READ);
    if (!fs)
        return;
    struct mf_fat_dir d;
    struct mf_fat_stat st;
    int err = mf_fat_opendir(fs, &d, dir);
    int r = 0;
    while (!err && (r = mf_fat_readdir(fs, &d, &st)) == 1) {
        /* A name written raw into the volume may hold what no FAT name may (a CR that would end
         * the line and forge the next): shown escaped, so never a name a command can open. */
        char name[MF_PROTO_ESCAPED_SIZE(sizeof st.name)];
        mf_proto_escape(st.name, true, name, sizeof name);
        if (st.is_dir)
            reply(s, ss, "#FLIST:D:%s", name);
        else
            reply(s, ss, "#FLIST:F:%x:%s", st.size, name);
    }
    if (!err && r < 0)
        err = r;
    mf_programmer_public_release(s->programmer);
    if (err)
        reply(s, ss, "#ERR%03d:File read failed (%s)", MF_PERR_FILE_READ, file_why(err));
    else
        reply(s, ss, "#OK");
}

/* ---- dispatch ---- */

/* #IDENTITY: the programmer's public file, one #IDENTITY: line per line of it. */
static void cmd_identity(struct mf_server *s, struct mf_session *ss)
{
    struct mf_owner_programmer pub;
    char error[MF_PROGRAMMER_TEXT_MAX];
    reply(s, ss, "#ACK");
    if (mf_programmer_identity(s->programmer, &pub, error) != 0) {
        reply(s, ss, "#ERR%03d:%s", MF_PERR_SECURE, error);
        return;
    }
    char text[MF_OWNER_FILE_MAX];
    if (mf_owner_format_programmer(&pub, text, sizeof text) != 0) {
        reply(s, ss, "#ERR%03d:cannot format the identity", MF_PERR_OTHER);
        return;
    }
    for (char *line = text, *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line) - 1;
        else
            *end = '\0';
        reply(s, ss, "#IDENTITY:%s", line);
    }
    reply(s, ss, "#OK");
}

/* #TOPUP <token in hex>: applies a top-up token at once. */
static void cmd_topup(struct mf_server *s, struct mf_session *ss, const char *args)
{
    uint8_t token[MF_TOKEN_SIZE_MAX];
    size_t digits = strlen(args);
    /* From the magic on: mf_token_decode says what is wrong with a token (an old version). */
    if (digits < 2 * 8 || digits > 2 * MF_TOKEN_SIZE_MAX || digits % 2 ||
        mf_proto_hex_bytes(args, token, digits / 2) != 0) {
        reply(s, ss, "#NACK:ERR%03d:Expected a top-up token in hex (%u to %u bytes)",
              MF_PERR_ARGUMENT, MF_TOKEN_SIZE_MIN, MF_TOKEN_SIZE_MAX);
        return;
    }
    reply(s, ss, "#ACK");
    char text[MF_TOKEN_MESSAGE_MAX];
    int err = mf_programmer_topup(s->programmer, token, digits / 2, text);
    if (err)
        reply(s, ss, "#ERR%03d:%s", err == MF_EBUSY ? MF_PERR_BUSY : MF_PERR_SECURE, text);
    else
        reply(s, ss, "#OK:%s", text);
}

/* #RECORDHEAD <nonce>: the production records' head statement, signed, for the owner's nonce.
 * Every channel may ask: it says nothing the RECORDS files do not (their newest record, the
 * trust anchor's counter), and what is signed starts "MFH1", never a record. */
static void cmd_recordhead(struct mf_server *s, struct mf_session *ss, const char *args)
{
    uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE];
    if (strlen(args) != 2 * sizeof nonce || mf_proto_hex_bytes(args, nonce, sizeof nonce) != 0) {
        reply(s, ss, "#NACK:ERR%03d:Expected a nonce of %u hex digits", MF_PERR_ARGUMENT,
              (unsigned)(2 * sizeof nonce));
        return;
    }
    reply(s, ss, "#ACK");
    char line[MF_RECORD_LINE_MAX + 1], text[MF_PROGRAMMER_TEXT_MAX];
    int err = mf_programmer_record_head(s->programmer, nonce, line, sizeof line, text);
    if (!err) {
        reply(s, ss, "#RECORDHEAD:%s", line);
        reply(s, ss, "#OK");
    } else {
        int code = err == MF_EBUSY    ? MF_PERR_BUSY
                   : err == MF_ENOENT ? MF_PERR_NO_SETUP
                   : err == MF_EIO    ? MF_PERR_STORAGE
                                      : MF_PERR_SECURE;
        reply(s, ss, "#ERR%03d:%s", code, text);
    }
}

static bool is_word(const char *args, const char *word)
{
    return strcasecmp(args, word) == 0;
}

static void dispatch(struct mf_server *s, struct mf_session *ss, const char *line)
{
    const char *args;
    enum mf_proto_command cmd = mf_proto_parse(line, &args);
    /* The reference spells it #BAUDRATE<n>, without a blank (unverified): both are taken. */
    if (cmd == MF_CMD_UNKNOWN && strncasecmp(line, "#BAUDRATE", 9) == 0 && line[9] >= '0' &&
        line[9] <= '9') {
        cmd = MF_CMD_BAUDRATE;
        args = line + 9;
    }
    if (s->config.verbose >= 2)
        fprintf(stderr, "mintflashd: session %llu: %s\n", (unsigned long long)ss->id, line);
    if (cmd == MF_CMD_UNKNOWN) {
        reply(s, ss, "#NACK");
        return;
    }
    default_selection(s, ss);
    enum mf_mode mode;
    bool init;
    mf_programmer_mode(s->programmer, &mode, &init);
    bool local = ss->channel == MF_CHANNEL_UNIX;
    /* Privileged: the local connection only. */
    if ((cmd == MF_CMD_SECUREAREA || (cmd == MF_CMD_REBOOT && is_word(args, "FILEACCESS"))) &&
        !local) {
        reply(s, ss, "#NACK:ERR%03d:Only allowed on the local connection", MF_PERR_LOCAL_ONLY);
        return;
    }
    if (mode == MF_MODE_FILEACCESS && cmd != MF_CMD_STATUS && cmd != MF_CMD_INFO &&
        cmd != MF_CMD_REBOOT && cmd != MF_CMD_IDENTITY) {
        reply(s, ss, "#NACK:ERR%03d:Not available in file access mode", MF_PERR_FILE_ACCESS_MODE);
        return;
    }
    bool always = cmd == MF_CMD_STATUS || cmd == MF_CMD_INFO || cmd == MF_CMD_RESULT ||
                  cmd == MF_CMD_SELMODULE || cmd == MF_CMD_PROGRESS || cmd == MF_CMD_BAUDRATE;
    if (init && !always) {
        reply(s, ss, "#NACK:ERR%03d:Busy (starting up)", MF_PERR_BUSY);
        return;
    }
    bool no_words = cmd == MF_CMD_STATUS || cmd == MF_CMD_RESULT || cmd == MF_CMD_INFO ||
                    cmd == MF_CMD_FSIZE || cmd == MF_CMD_FCLOSE || cmd == MF_CMD_IDENTITY;
    if (no_words && *args) {
        reply(s, ss, "#NACK:ERR%03d:This command takes nothing after it", MF_PERR_ARGUMENT);
        return;
    }
    switch (cmd) {
    case MF_CMD_AUTO:
    case MF_CMD_ERASE:
    case MF_CMD_PROGRAM:
    case MF_CMD_VERIFY:
    case MF_CMD_START:
        cmd_cycle(s, ss, cmd, args);
        break;
    case MF_CMD_CANCEL: {
        /* `#CANCEL`: the selected slots; `#CANCEL 2`, `#CANCEL 1,3`, `#CANCEL *` as the
         * programming commands name them. */
        uint64_t mask = ss->selected;
        int err = *args ? slot_word(s, ss, args, strlen(args), &mask) : 0;
        if (err) {
            if (err == MF_ERANGE)
                reply(s, ss, "#NACK:ERR%03d:Slots are 1 to %u", MF_PERR_ARGUMENT, slot_count(s));
            else
                reply(s, ss, "#NACK:ERR%03d:Expected nothing, * or <slot>[,<slot>...]",
                      MF_PERR_ARGUMENT);
            break;
        }
        reply(s, ss, "#ACK");
        for (unsigned i = 1; i <= slot_count(s); i++) {
            if (mask >> (i - 1) & 1)
                mf_programmer_cancel(s->programmer, i);
        }
        reply(s, ss, "#OK");
        break;
    }
    case MF_CMD_STATUS:
        cmd_status(s, ss);
        break;
    case MF_CMD_RESULT:
        cmd_result(s, ss);
        break;
    case MF_CMD_SELECT: {
        if (!*args) {
            reply(s, ss, "#NACK:ERR%03d:Expected a project name", MF_PERR_ARGUMENT);
            break;
        }
        char error[MF_PROGRAMMER_TEXT_MAX];
        reply(s, ss, "#ACK");
        int err = mf_programmer_select(s->programmer, args, error);
        if (err)
            reply(s, ss, "#ERR%03d:%s", err == MF_ENOENT ? MF_PERR_NO_SETUP : MF_PERR_STORAGE,
                  error);
        else
            reply(s, ss, "#OK");
        break;
    }
    case MF_CMD_SELMODULE:
        cmd_selmodule(s, ss, args);
        break;
    case MF_CMD_INFO:
        cmd_info(s, ss);
        break;
    case MF_CMD_BAUDRATE:
        cmd_baudrate(s, ss, args);
        break;
    case MF_CMD_PROGRESS:
        if (is_word(args, "ON") || is_word(args, "OFF")) {
            ss->progress = is_word(args, "ON");
            reply(s, ss, "#ACK");
            reply(s, ss, "#OK");
        } else {
            reply(s, ss, "#NACK:ERR%03d:Expected ON or OFF", MF_PERR_ARGUMENT);
        }
        break;
    case MF_CMD_FOPEN:
    case MF_CMD_FOPENREAD:
        cmd_fopen(s, ss, args, cmd == MF_CMD_FOPENREAD);
        break;
    case MF_CMD_FWRITE:
        cmd_fwrite(s, ss, args);
        break;
    case MF_CMD_FREAD:
        cmd_fread(s, ss, args);
        break;
    case MF_CMD_FSIZE:
        cmd_fsize(s, ss);
        break;
    case MF_CMD_FCLOSE:
        ss->file_open = false;
        reply(s, ss, "#ACK");
        reply(s, ss, "#OK");
        break;
    case MF_CMD_FDELETE:
    case MF_CMD_MKDIR:
    case MF_CMD_RMDIR:
        cmd_path_op(s, ss, cmd, args);
        break;
    case MF_CMD_FLIST:
        cmd_flist(s, ss, args);
        break;
    case MF_CMD_SECUREAREA: {
        /* CREATE, CREATE <owner's Ed25519 public key in base64> (pins the owner), REMOVE. */
        char word[8] = "";
        const char *rest = args;
        size_t n = strcspn(rest, " \t");
        if (n < sizeof word) {
            memcpy(word, rest, n);
            word[n] = '\0';
        }
        rest += n;
        rest += strspn(rest, " \t");
        bool create = is_word(word, "CREATE");
        uint8_t owner[32];
        bool has_owner = create && *rest;
        if ((!create && !is_word(args, "REMOVE")) ||
            (has_owner && mf_owner_b64_decode(rest, strlen(rest), owner, sizeof owner) != 0)) {
            reply(s, ss,
                  "#NACK:ERR%03d:Expected CREATE, CREATE <owner key (base64, 32 bytes)> or REMOVE",
                  MF_PERR_ARGUMENT);
            break;
        }
        reply(s, ss, "#ACK");
        int err = system_start(s, create ? JOB_SECURE_CREATE : JOB_SECURE_REMOVE,
                               MF_MODE_STANDALONE, ss, has_owner ? owner : NULL);
        if (err)
            reply(s, ss, "#ERR%03d:Busy", MF_PERR_BUSY);
        break;
    }
    case MF_CMD_REBOOT: {
        bool fileaccess = is_word(args, "FILEACCESS");
        if (*args && !fileaccess) {
            reply(s, ss, "#NACK:ERR%03d:Expected nothing or FILEACCESS", MF_PERR_ARGUMENT);
            break;
        }
        reply(s, ss, "#ACK");
        /* #OK follows once the programmer is back (a client then knows it is up again). */
        int err = system_start(s, JOB_REBOOT, fileaccess ? MF_MODE_FILEACCESS : MF_MODE_STANDALONE,
                               ss, NULL);
        if (err)
            reply(s, ss, "#ERR%03d:Busy", MF_PERR_BUSY);
        break;
    }
    case MF_CMD_IDENTITY:
        cmd_identity(s, ss);
        break;
    case MF_CMD_TOPUP:
        cmd_topup(s, ss, args);
        break;
    case MF_CMD_RECORDHEAD:
        cmd_recordhead(s, ss, args);
        break;
    case MF_CMD_UNKNOWN:
        break;
    }
}

/* ---- sockets and the loop ---- */

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static int listen_tcp(struct mf_server *s, const char *spec, char *error)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--tcp %s: expected HOST:PORT", spec);
        return MF_EINVAL;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || port > 65535) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--tcp %s: the port must be a number from 0 to 65535",
                 spec);
        return MF_EINVAL;
    }
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--tcp %s: %s", spec, gai_strerror(rc));
        return MF_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, MF_SERVER_BACKLOG) != 0) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--tcp %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return MF_EIO;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    s->tcp_port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    set_nonblocking(fd);
    s->tcp_fd = fd;
    fprintf(stderr, "mintflashd: listening on tcp %s:%u\n", host, s->tcp_port);
    return 0;
}

static int listen_unix(struct mf_server *s, const char *path, char *error)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--socket %s: path too long", path);
        return MF_EINVAL;
    }
    /* The folder of the socket (0700), then a stale socket from a crash is replaced. */
    char dir[sizeof addr.sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        mkdir(dir, 0700);
        *p = '/';
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--socket %s: %s", path, strerror(errno));
        return MF_EIO;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof addr) == 0;
        if (probe >= 0)
            close(probe);
        if (alive) {
            snprintf(error, MF_SERVER_TEXT_MAX, "--socket %s: another mintflashd serves it", path);
            close(fd);
            return MF_EBUSY;
        }
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(path, 0600) != 0 ||
        listen(fd, MF_SERVER_BACKLOG) != 0) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--socket %s: %s", path, strerror(errno));
        close(fd);
        return MF_EIO;
    }
    set_nonblocking(fd);
    s->unix_fd = fd;
    snprintf(s->unix_path, sizeof s->unix_path, "%s", path);
    fprintf(stderr, "mintflashd: listening on unix %s\n", path);
    return 0;
}

/* Raw 8 data bits, 1 stop bit, `parity` 'N', 'O' or 'E', at `baud`. */
static int set_baud(int fd, unsigned baud, char parity)
{
    speed_t speed;
    struct termios t;
    if (parse_baud(baud, &speed) || tcgetattr(fd, &t) != 0)
        return -1;
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(PARENB | PARODD | CSTOPB | CSIZE | CRTSCTS);
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_iflag &= ~(tcflag_t)(INPCK | IGNPAR | PARMRK);
    if (parity != 'N') {
        /* A byte that arrives with a parity error is read as a NUL (INPCK alone), which makes
         * its whole line an invalid one (#NACK:ERR210:Invalid character): dropping the byte
         * instead could leave another valid command (#CANCEL 12 as #CANCEL 1). */
        t.c_cflag |= PARENB | (parity == 'O' ? PARODD : 0);
        t.c_iflag |= INPCK;
    }
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, speed);
    cfsetospeed(&t, speed);
    return tcsetattr(fd, TCSANOW, &t);
}

/* The serial device opened and set to `baud` and its framing: the descriptor, or -1 with errno
 * (at start, and where a hung-up line is opened again). */
static int open_line(const char *dev, unsigned baud, char parity)
{
    int fd = open(dev, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0 && set_baud(fd, baud, parity) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    return fd;
}

static struct mf_session *session_new(struct mf_server *s, int fd, enum mf_channel channel,
                                      const struct mf_peer *peer)
{
    struct mf_session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->fd = fd;
    ss->channel = channel;
    if (peer)
        ss->peer = *peer;
    ss->id = ++s->next_id;
    ss->input_us = monotonic_us();
    mf_proto_framer_init(&ss->framer);
    pthread_mutex_lock(&s->lock);
    bool room = s->session_count < MF_SERVER_CLIENTS_MAX; /* admit() makes it; never past it */
    if (room)
        s->sessions[s->session_count++] = ss;
    pthread_mutex_unlock(&s->lock);
    if (!room) {
        free(ss);
        return NULL;
    }
    return ss;
}

/* "DEV[:BAUD[:FRAME]]", FRAME 8N1 (the default), 8O1 or 8E1: the reference's current units
 * speak 9600 8N1, its legacy ones (Flasher 4/5/ST7) 115200 8O1. */
static int open_serial(struct mf_server *s, const char *spec, char *error)
{
    char dev[256];
    unsigned baud = 9600;
    snprintf(dev, sizeof dev, "%s", spec);
    s->serial_parity = 'N';
    char *colon = strrchr(dev, ':');
    if (colon && strlen(colon + 1) == 3 && colon[1] == '8' && colon[3] == '1' &&
        strchr("NOEnoe", colon[2])) {
        s->serial_parity = (char)(colon[2] & ~0x20);
        *colon = '\0';
        colon = strrchr(dev, ':');
        if (!colon) {
            snprintf(error, MF_SERVER_TEXT_MAX,
                     "--serial %s: a framing comes after a baud rate (DEV:BAUD:FRAME)", spec);
            return MF_EINVAL;
        }
    }
    if (colon) {
        char *end;
        baud = (unsigned)strtoul(colon + 1, &end, 10);
        *colon = '\0';
        speed_t sp;
        if (*end || parse_baud(baud, &sp)) {
            snprintf(error, MF_SERVER_TEXT_MAX, "--serial %s: unknown baud rate", spec);
            return MF_EINVAL;
        }
    }
    int fd = open_line(dev, baud, s->serial_parity);
    if (fd < 0) {
        snprintf(error, MF_SERVER_TEXT_MAX, "--serial %s: %s", dev, strerror(errno));
        return MF_EIO;
    }
    struct termios got;
    if (s->serial_parity != 'N' && tcgetattr(fd, &got) == 0 && !(got.c_cflag & PARENB))
        fprintf(stderr,
                "mintflashd: --serial %s: the device takes no parity (a pseudo-terminal?): "
                "bytes go out without it\n",
                dev);
    s->serial_fd = fd;
    snprintf(s->serial_device, sizeof s->serial_device, "%s", dev);
    s->serial_baud = baud;
    s->serial_session = session_new(s, fd, MF_CHANNEL_SERIAL, NULL);
    fprintf(stderr, "mintflashd: serving serial %s at %u baud, 8%c1\n", dev, baud,
            s->serial_parity);
    return s->serial_session ? 0 : MF_ENOMEM;
}

int mf_server_open(struct mf_server *s, const struct mf_server_config *config, char *error)
{
    memset(s, 0, sizeof *s);
    s->config = *config;
    s->programmer = config->programmer;
    s->tcp_fd = s->unix_fd = s->serial_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    if (pipe2(s->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(error, MF_SERVER_TEXT_MAX, "pipe: %s", strerror(errno));
        return MF_EIO;
    }
    int err = 0;
    if (config->tcp)
        err = listen_tcp(s, config->tcp, error);
    if (!err && config->unix_socket)
        err = listen_unix(s, config->unix_socket, error);
    if (!err && config->serial)
        err = open_serial(s, config->serial, error);
    if (err)
        mf_server_close(s);
    return err;
}

static void peer_of(const struct sockaddr_storage *addr, struct mf_peer *peer)
{
    memset(peer, 0, sizeof *peer);
    if (addr->ss_family == AF_INET6) {
        memcpy(peer->address, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
    } else if (addr->ss_family == AF_INET) {
        peer->address[10] = peer->address[11] = 0xff;
        memcpy(peer->address + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    }
}

/* Frees the sessions marked closed. Caller holds s->lock; poll thread only (it alone holds
 * pointers to sessions outside the lock). */
static void reap_locked(struct mf_server *s)
{
    for (unsigned i = 0; i < s->session_count;) {
        struct mf_session *ss = s->sessions[i];
        if (!ss->dead) {
            i++;
            continue;
        }
        close(ss->fd);
        free(ss->out);
        free(ss);
        s->sessions[i] = s->sessions[--s->session_count];
    }
}

static void reap(struct mf_server *s)
{
    pthread_mutex_lock(&s->lock);
    reap_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* Connections from `peer` on `channel` (every UNIX connection counts as one address). Caller
 * holds s->lock. */
static unsigned count_from(const struct mf_server *s, enum mf_channel channel,
                           const struct mf_peer *peer)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->session_count; i++) {
        const struct mf_session *ss = s->sessions[i];
        n += ss->channel == channel && !ss->dead && memcmp(&ss->peer, peer, sizeof *peer) == 0;
    }
    return n;
}

/* The connection from `peer` on `channel` that has waited longest for its client's next line,
 * among those with nothing running for them (no programming command, no system command), or
 * NULL. Caller holds s->lock. */
static struct mf_session *longest_idle(const struct mf_server *s, enum mf_channel channel,
                                       const struct mf_peer *peer)
{
    struct mf_session *idle = NULL;
    for (unsigned i = 0; i < s->session_count; i++) {
        struct mf_session *ss = s->sessions[i];
        if (ss->channel != channel || ss->dead || ss->pending || ss->system_pending ||
            memcmp(&ss->peer, peer, sizeof *peer) != 0)
            continue;
        if (!idle || ss->input_us < idle->input_us)
            idle = ss;
    }
    return idle;
}

/* Closes an idle connection for a newcomer, with one line that says why (best effort: the
 * client may be gone, which is often why it is idle). Caller holds s->lock. */
static void evict(struct mf_session *ss, const char *why)
{
    char line[160];
    int n = snprintf(line, sizeof line, "#ERR008:Connection closed: %s\r", why);
    if (ss->out_len == 0) { /* else the line could land inside a reply half sent */
        ssize_t r = write(ss->fd, line, (size_t)n);
        (void)r;
    }
    ss->dead = true;
}

/* Finds a place for a new connection on `channel` from `peer` (the UNIX socket's peers being one
 * address): a free one, or that of an idle connection giving way (docs/protocol.md, Channels).
 * Idle: nothing running for it; the longest idle is the one whose client sent nothing for
 * longest. A newcomer over its address's limit takes the place of that address's longest-idle
 * connection (a host that restarted without closing its connections gets in again). On a full
 * channel, a newcomer on the UNIX socket takes the longest-idle one's place; over TCP, a newcomer
 * whose address holds at least two fewer connections than the addresses holding most takes the
 * place of their longest-idle one. Returns the refusal's text when there is no place, else NULL
 * (the table then has room for the newcomer: sessions closed are freed first, the one closed for
 * it too). Poll thread only: it alone adds and removes sessions, and frees them. */
static const char *admit(struct mf_server *s, enum mf_channel channel, const struct mf_peer *peer)
{
    unsigned on_channel = 0,
             limit = channel == MF_CHANNEL_TCP ? MF_SERVER_TCP_MAX : MF_SERVER_UNIX_MAX;
    const char *refusal = NULL;
    pthread_mutex_lock(&s->lock);
    /* A place is free only once its session is gone from the table: a worker thread may have
     * marked one closed (a client that reads none of its lines) since the last reap, and a
     * session marked after this count holds a place the count gave it. */
    reap_locked(s);
    for (unsigned i = 0; i < s->session_count; i++)
        on_channel += s->sessions[i]->channel == channel && !s->sessions[i]->dead;
    unsigned from_peer = count_from(s, channel, peer);
    if (channel == MF_CHANNEL_TCP && from_peer >= MF_SERVER_TCP_PEER_MAX) {
        struct mf_session *idle = longest_idle(s, channel, peer);
        if (idle)
            evict(idle, "a newer connection from the same address needed its place");
        else
            refusal = "#ERR008:Too many connections from this address\r";
    } else if (on_channel >= limit) {
        /* UNIX: one address. TCP: the addresses holding most connections give way to one
         * holding fewer (by at least two, so that no two addresses take turns). */
        unsigned most = 0;
        for (unsigned i = 0; i < s->session_count; i++) {
            const struct mf_session *ss = s->sessions[i];
            unsigned n =
                ss->channel == channel && !ss->dead ? count_from(s, channel, &ss->peer) : 0;
            most = n > most ? n : most;
        }
        struct mf_session *idle = NULL;
        if (channel == MF_CHANNEL_UNIX) {
            idle = longest_idle(s, channel, peer);
        } else if (most > from_peer + 1) {
            for (unsigned i = 0; i < s->session_count; i++) {
                struct mf_session *ss = s->sessions[i];
                if (ss->channel != channel || ss->dead || count_from(s, channel, &ss->peer) < most)
                    continue;
                struct mf_session *candidate = longest_idle(s, channel, &ss->peer);
                if (candidate && (!idle || candidate->input_us < idle->input_us))
                    idle = candidate;
            }
        }
        if (idle)
            evict(idle, channel == MF_CHANNEL_UNIX
                            ? "a newer connection needed its place"
                            : "an address holding fewer connections needed its place");
        else
            refusal = "#ERR008:Too many connections\r";
    }
    reap_locked(s); /* the one closed for the newcomer */
    pthread_mutex_unlock(&s->lock);
    return refusal;
}

/* Keep-alive probes on a TCP connection: a client that vanished without closing (a host that
 * lost power, a pulled cable) is noticed and its place freed about two minutes after it last
 * sent anything, where it would otherwise hold the place for ever. */
static void keep_alive(int fd)
{
    int on = 1, idle_s = 60, interval_s = 10, probes = 6;
    unsigned timeout_ms = 120000; /* sent bytes unacknowledged this long end the connection too */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof timeout_ms);
}

/* Takes the connections waiting on a listening socket; a bounded number per round, so that a
 * flood on one channel cannot keep the loop from the others. Called where no pointer to a
 * session is held: each admission frees the sessions closed so far, so that the table never
 * holds more than its places. */
static void accept_client(struct mf_server *s, int lfd, enum mf_channel channel)
{
    for (unsigned round = 0; round < MF_SERVER_CLIENTS_MAX; round++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct mf_peer peer;
        peer_of(&addr, &peer);
        const char *refusal = admit(s, channel, &peer);
        if (refusal) {
            ssize_t r = write(fd, refusal, strlen(refusal));
            (void)r;
            close(fd);
            continue;
        }
        if (channel == MF_CHANNEL_TCP)
            keep_alive(fd);
        if (!session_new(s, fd, channel, channel == MF_CHANNEL_TCP ? &peer : NULL))
            close(fd);
    }
}

static void session_input(struct mf_server *s, struct mf_session *ss)
{
    uint8_t buf[4096];
    ssize_t n = read(ss->fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (ss->channel != MF_CHANNEL_SERIAL) {
            pthread_mutex_lock(&s->lock);
            ss->dead = true;
            pthread_mutex_unlock(&s->lock);
        } else {
            /* The serial line is always served, but a line that hung up reads nothing for ever
             * while poll() reports it ready: polling it would spin the loop at full speed. */
            if (!ss->line_down)
                fprintf(stderr,
                        "mintflashd: the serial line hung up (%s): tried again every "
                        "second\n",
                        n == 0 ? "end of file" : strerror(errno));
            ss->line_down = true;
            ss->hung_up_us = monotonic_us();
        }
        return;
    }
    if (n > 0 && ss->line_down) {
        ss->line_down = false;
        fprintf(stderr, "mintflashd: the serial line is back\n");
    }
    if (n > 0)
        ss->input_us = monotonic_us();
    for (size_t off = 0; n > 0 && off < (size_t)n;) {
        enum mf_proto_event ev;
        off += mf_proto_framer_feed(&ss->framer, buf + off, (size_t)n - off, &ev);
        switch (ev) {
        case MF_PROTO_LINE:
            dispatch(s, ss, ss->framer.line);
            break;
        case MF_PROTO_TOO_LONG:
            reply(s, ss, "#NACK:ERR%03d:Line too long", MF_PERR_ARGUMENT);
            break;
        case MF_PROTO_TOO_LONG_CP437:
            reply(s, ss, "#NACK:ERR%03d:Line too long once its code page 437 bytes are UTF-8",
                  MF_PERR_ARGUMENT);
            break;
        case MF_PROTO_BAD_CHAR:
            reply(s, ss, "#NACK:ERR%03d:Invalid character", MF_PERR_ARGUMENT);
            break;
        case MF_PROTO_NO_COMMAND:
            reply(s, ss, "#NACK");
            break;
        case MF_PROTO_NEED_MORE:
            break;
        }
    }
}

static void session_output(struct mf_server *s, struct mf_session *ss)
{
    pthread_mutex_lock(&s->lock);
    if (ss->out_len) {
        ssize_t n = write(ss->fd, ss->out, ss->out_len);
        if (n > 0) {
            memmove(ss->out, ss->out + n, ss->out_len - (size_t)n);
            ss->out_len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR && ss->channel != MF_CHANNEL_SERIAL) {
            ss->dead = true;
        }
    }
    bool drained = ss->out_len == 0;
    pthread_mutex_unlock(&s->lock);
    if (drained && ss->pending_baud) {
        tcdrain(ss->fd);
        set_baud(ss->fd, ss->pending_baud, s->serial_parity);
        s->serial_baud = ss->pending_baud;
        ss->pending_baud = 0;
    }
}

/* A hung-up tty stays hung up for good (it reads end of file or EIO for ever), and an adapter
 * plugged in again, or a new pseudo-terminal behind the same name, is a new device: so the retry
 * opens the device again by its name, at the line's baud rate. Still gone: it rests another
 * SERIAL_RETRY_US. Opened: it is polled again (hung up still, it comes back here a second later).
 * What was queued for the peer that went, and its unfinished line, are dropped. Poll thread
 * only (it alone uses the descriptor). */
static void serial_reopen(struct mf_server *s, struct mf_session *ss)
{
    int fd = open_line(s->serial_device, s->serial_baud, s->serial_parity);
    if (fd < 0) {
        ss->hung_up_us = monotonic_us();
        return;
    }
    pthread_mutex_lock(&s->lock);
    close(ss->fd);
    ss->fd = s->serial_fd = fd;
    ss->out_len = 0;
    ss->hung_up_us = 0;
    pthread_mutex_unlock(&s->lock);
    ss->pending_baud = 0;
    mf_proto_framer_init(&ss->framer);
}

int mf_server_run(struct mf_server *s)
{
    struct pollfd fds[MF_SERVER_CLIENTS_MAX + 4];
    struct mf_session *who[MF_SERVER_CLIENTS_MAX + 4];
    while (!s->stop) {
        if (s->reboot_request) {
            s->reboot_request = 0;
            if (system_start(s, JOB_REBOOT, MF_MODE_STANDALONE, NULL, NULL))
                s->reboot_request = 1; /* busy now: try again on the next round */
        }
        nfds_t n = 0;
        fds[n++] = (struct pollfd){s->wake_fd[0], POLLIN, 0};
        if (s->tcp_fd >= 0)
            fds[n++] = (struct pollfd){s->tcp_fd, POLLIN, 0};
        if (s->unix_fd >= 0)
            fds[n++] = (struct pollfd){s->unix_fd, POLLIN, 0};
        nfds_t first = n;
        struct mf_session *line = s->serial_session;
        if (line && line->hung_up_us && monotonic_us() - line->hung_up_us >= SERIAL_RETRY_US)
            serial_reopen(s, line);
        pthread_mutex_lock(&s->lock);
        for (unsigned i = 0; i < s->session_count; i++) {
            struct mf_session *ss = s->sessions[i];
            who[n] = ss;
            /* A hung-up serial line: a negative fd, which poll() passes over, until its retry. */
            fds[n++] = (struct pollfd){ss->hung_up_us ? -1 : ss->fd,
                                       (short)(POLLIN | (ss->out_len ? POLLOUT : 0)), 0};
        }
        pthread_mutex_unlock(&s->lock);
        int r = poll(fds, n, 1000);
        if (r < 0 && errno != EINTR)
            return MF_EIO;
        if (r <= 0)
            continue;
        if (fds[0].revents) {
            char drain[64];
            while (read(s->wake_fd[0], drain, sizeof drain) > 0)
                ;
        }
        for (nfds_t i = first; i < n; i++) {
            struct mf_session *ss = who[i];
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
                session_input(s, ss);
            if (fds[i].revents & POLLOUT)
                session_output(s, ss);
        }
        /* Replies queued by the dispatch go out at once where the socket takes them. */
        pthread_mutex_lock(&s->lock);
        unsigned count = s->session_count;
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < count; i++)
            session_output(s, s->sessions[i]);
        /* New connections last: taking them may free sessions (who[] is done with them). */
        for (nfds_t i = 1; i < first; i++) {
            if (fds[i].revents & POLLIN)
                accept_client(s, fds[i].fd,
                              fds[i].fd == s->tcp_fd ? MF_CHANNEL_TCP : MF_CHANNEL_UNIX);
        }
        reap(s);
    }
    return 0;
}

void mf_server_request_reboot(struct mf_server *s)
{
    s->reboot_request = 1;
    char b = 1;
    ssize_t r = write(s->wake_fd[1], &b, 1);
    (void)r;
}

void mf_server_stop(struct mf_server *s)
{
    s->stop = 1;
    char b = 1;
    ssize_t r = write(s->wake_fd[1], &b, 1);
    (void)r;
}

void mf_server_close(struct mf_server *s)
{
    if (s->system_thread_joinable) {
        pthread_join(s->system_thread, NULL);
        s->system_thread_joinable = false;
    }
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < s->session_count; i++) {
        struct mf_session *ss = s->sessions[i];
        if (ss->out_len)
            (void)!write(ss->fd, ss->out, ss->out_len);
        close(ss->fd);
        free(ss->out);
        free(ss);
    }
    s->session_count = 0;
    pthread_mutex_unlock(&s->lock);
    if (s->tcp_fd >= 0)
        close(s->tcp_fd);
    if (s->unix_fd >= 0) {
        close(s->unix_fd);
        unlink(s->unix_path);
    }
    s->tcp_fd = s->unix_fd = s->serial_fd = -1;
    if (s->wake_fd[0] > 0) {
        close(s->wake_fd[0]);
        close(s->wake_fd[1]);
        s->wake_fd[0] = s->wake_fd[1] = 0;
    }
}
