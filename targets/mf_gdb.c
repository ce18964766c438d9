/* The target back end `gdb` (see mf_gdb.h and docs/internals/gdb.md): the transports (TCP,
 * termios serial), the request/reply exchange with acks, retransmission, timeouts and cancel, and
 * the target operations on top: flash through the server's memory map (vFlash*) or as RAM-like
 * memory (X/M writes, erase = the erased value written lazily), verify by qCRC, monitor commands.
 */
#include "mf_gdb.h"

#include "mf_err.h"

#include <ctype.h>
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
#include <strings.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define GDB_HEAD_MAX         48u    /* room for "vFlashWrite:<16 hex>:" and "X<16>,<8>:" */
#define GDB_IN_SIZE          16384u /* bytes read from the transport at a time */
#define GDB_REPLY_MAX        (2u * MF_GDB_PACKET_MAX) /* a reply after run-length expansion */
#define GDB_XML_MAX          (32u << 10) /* one XML document (memory map, target description) */
#define GDB_FILL_MAX         (16u << 10) /* erased bytes written per request when filling */
#define GDB_PENDING_MAX      64u         /* erased-but-not-yet-written spans kept */
#define GDB_RESENDS          3u          /* resends of one request after '-' */
#define GDB_BAD_REPLIES      3u          /* replies with bad checksums tolerated per request */
#define GDB_GARBAGE_MAX      65536u      /* bytes outside packets tolerated per request */
#define GDB_POLL_STEP_MS     20          /* longest wait between two looks at target->cancel */
#define GDB_MIN_PACKET       64u         /* a server offering less cannot take our requests */
#define GDB_OUTPUT_MAX       160u        /* bytes of monitor output kept for messages */
#define GDB_OUTPUT_PACKETS   65536u      /* console output packets of one monitor command */
#define GDB_INCLUDES_MAX     8u          /* xi:include documents followed per description */
#define GDB_REGISTERS_MAX    512u        /* registers before xPSR counted for its 'g' place */
#define GDB_SERIAL_SETTLE_MS 100u        /* wait for a stop reply after the connect interrupt */

/* GDB_FD: a connected stream socket handed in by the caller (mf_gdb_open_fd). */
enum gdb_transport { GDB_TCP, GDB_SERIAL, GDB_FD };

struct span {
    uint64_t start, end;
};

struct gdb {
    enum gdb_transport transport;
    char host[MF_GDB_SPEC_MAX];
    char port[16];
    char device[MF_GDB_SPEC_MAX];
    speed_t baud;
    int handed_fd; /* GDB_FD: the socket until the first connect takes it, then -1 */
    struct mf_rsp_options options;
    struct mf_gdb_stats stats;

    /* Buffers, allocated once. */
    uint8_t *tx; /* '$', GDB_HEAD_MAX, then the payload and "#xx" */
    size_t tx_size;
    uint8_t *rx; /* the decoder's */
    uint8_t *reply;
    size_t reply_length; /* of the last reply; reply[reply_length] is a NUL */
    char *xml;           /* two documents: [0, GDB_XML_MAX) and [GDB_XML_MAX, 2 * GDB_XML_MAX) */
    uint8_t *fill;
    uint8_t in[GDB_IN_SIZE];
    size_t in_length, in_pos;
    struct mf_rsp_decoder decoder;

    /* Of the connection: */
    int fd;
    bool connected;
    bool broken;    /* the stream is out of step (timeout, cancel mid-request, bad reply) */
    bool running;   /* continued: nothing may be sent any more */
    bool want_stop; /* the request being made is answered by a stop reply */
    bool no_ack;
    uint32_t packet_size;
    struct mf_rsp_features features;
    bool x_refused, crc_refused, p_refused;
    struct mf_rsp_memory_map map;
    bool has_map;
    bool flash_open; /* vFlashErase/Write sent since the last vFlashDone */
    struct span pending[GDB_PENDING_MAX];
    unsigned pending_count;
    char what[40]; /* the request being made, printable, for messages */
};

static const struct mf_target_ops gdb_ops;

/* ---- small helpers ---- */

static void say(char *error, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *error, size_t size, const char *fmt, ...)
{
    if (!error || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, size, fmt, ap);
    va_end(ap);
}

#define TSAY(t, ...) say((t)->error, sizeof(t)->error, __VA_ARGS__)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t short_timeout(const struct gdb *g)
{
    return g->options.timeout_ms ? g->options.timeout_ms : MF_RSP_TIMEOUT_DEFAULT;
}

static uint32_t long_timeout(const struct gdb *g)
{
    return g->options.long_timeout_ms ? g->options.long_timeout_ms : MF_RSP_LONG_TIMEOUT;
}

/* The request, printable and short, for messages. */
static void remember(struct gdb *g, const uint8_t *payload, size_t length)
{
    size_t n = 0, limit = sizeof g->what - 4;
    for (size_t i = 0; i < length && n < limit; i++)
        g->what[n++] = payload[i] >= 0x20 && payload[i] < 0x7f ? (char)payload[i] : '.';
    if (length > limit) {
        memcpy(g->what + n, "...", 3);
        n += 3;
    }
    g->what[n] = '\0';
}

/* The reply, printable and short, for messages. */
static void reply_text(const struct gdb *g, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < g->reply_length && n + 4 < size; i++)
        out[n++] = g->reply[i] >= 0x20 && g->reply[i] < 0x7f ? (char)g->reply[i] : '.';
    if (g->reply_length > n && n + 3 < size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static bool reply_is(const struct gdb *g, const char *text)
{
    return g->reply_length == strlen(text) && memcmp(g->reply, text, g->reply_length) == 0;
}

static bool cancelled(struct gdb *g, struct mf_target *t)
{
    (void)g;
    return atomic_load_explicit(&t->cancel, memory_order_relaxed);
}

static void transport_close(struct gdb *g)
{
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    g->connected = false;
}

/* ---- transport ---- */

static int timed_out(struct gdb *g, struct mf_target *t, uint32_t timeout, const char *op)
{
    g->broken = true;
    TSAY(t, "%s: no reply from the GDB server within %u ms to '%s'", op, timeout, g->what);
    return MF_ETIMEOUT;
}

static int wait_fd(struct gdb *g, struct mf_target *t, short events, uint64_t deadline,
                   uint32_t timeout, const char *op)
{
    for (;;) {
        if (cancelled(g, t)) {
            g->broken = true;
            TSAY(t, "%s: cancelled while waiting for the GDB server ('%s')", op, g->what);
            return MF_ECANCELED;
        }
        uint64_t now = now_ms();
        if (now >= deadline)
            return timed_out(g, t, timeout, op);
        uint64_t left = deadline - now;
        struct pollfd p = {.fd = g->fd, .events = events};
        int r = poll(&p, 1, left < GDB_POLL_STEP_MS ? (int)left : GDB_POLL_STEP_MS);
        if (r < 0 && errno != EINTR) {
            g->broken = true;
            TSAY(t, "%s: poll: %s", op, strerror(errno));
            return MF_EIO;
        }
        if (r > 0)
            return 0;
    }
}

static int send_bytes(struct gdb *g, struct mf_target *t, const uint8_t *data, size_t length,
                      uint32_t timeout, const char *op)
{
    uint64_t deadline = now_ms() + timeout;
    size_t done = 0;
    while (done < length) {
        ssize_t n = g->transport != GDB_SERIAL
                        ? send(g->fd, data + done, length - done, MSG_NOSIGNAL)
                        : write(g->fd, data + done, length - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int err = wait_fd(g, t, POLLOUT, deadline, timeout, op);
            if (err)
                return err;
            continue;
        }
        g->broken = true;
        TSAY(t, "%s: the connection to the GDB server is lost (%s) at '%s'", op,
             n < 0 ? strerror(errno) : "nothing written", g->what);
        return MF_EIO;
    }
    g->stats.bytes_sent += length;
    return 0;
}

/* Reads what is there (at least one byte) into g->in. The deadline holds even while bytes keep
 * coming: a server that streams acks, stop replies or console output answers nothing. */
static int fill_in(struct gdb *g, struct mf_target *t, uint64_t deadline, uint32_t timeout,
                   const char *op)
{
    for (;;) {
        if (now_ms() >= deadline)
            return timed_out(g, t, timeout, op);
        ssize_t n = read(g->fd, g->in, sizeof g->in);
        if (n > 0) {
            g->in_length = (size_t)n;
            g->in_pos = 0;
            g->stats.bytes_read += (uint64_t)n;
            return 0;
        }
        if (n == 0) {
            g->broken = true;
            TSAY(t, "%s: the GDB server closed the connection (waiting for the reply to '%s')", op,
                 g->what);
            return MF_EIO;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            g->broken = true;
            TSAY(t, "%s: the connection to the GDB server is lost (%s) at '%s'", op,
                 strerror(errno), g->what);
            return MF_EIO;
        }
        int err = wait_fd(g, t, POLLIN, deadline, timeout, op);
        if (err)
            return err;
    }
}

static int speed_of(unsigned long baud, speed_t *speed)
{
    static const struct {
        unsigned long baud;
        speed_t speed;
    } table[] = {{9600, B9600},     {19200, B19200},     {38400, B38400},    {57600, B57600},
                 {115200, B115200}, {230400, B230400},   {460800, B460800},  {500000, B500000},
                 {921600, B921600}, {1000000, B1000000}, {2000000, B2000000}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].baud == baud) {
            *speed = table[i].speed;
            return 0;
        }
    }
    return MF_EINVAL;
}

static int open_serial(struct gdb *g, struct mf_target *t)
{
    g->fd = open(g->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (g->fd < 0) {
        int e = errno;
        TSAY(t, "connect: cannot open %s: %s", g->device, strerror(e));
        return e == ENOENT ? MF_ENOENT : e == EACCES ? MF_EACCES : MF_EIO;
    }
    struct termios tio;
    if (tcgetattr(g->fd, &tio) != 0) {
        TSAY(t, "connect: %s is not a serial port: %s", g->device, strerror(errno));
        transport_close(g);
        return MF_EINVAL;
    }
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    /* With O_NONBLOCK, VMIN 1 makes an empty read EAGAIN (VMIN 0 would return 0, which reads
     * as a hang-up). */
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, g->baud);
    cfsetospeed(&tio, g->baud);
    if (tcsetattr(g->fd, TCSANOW, &tio) != 0) {
        TSAY(t, "connect: cannot set %s to raw mode: %s", g->device, strerror(errno));
        transport_close(g);
        return MF_EIO;
    }
    /* A serial line has no sessions: a probe may still run the application an earlier session
     * started (and ignore packets until interrupted). Interrupt it, then drop whatever comes
     * (a stop reply) and whatever the buffers hold. */
    tcflush(g->fd, TCIOFLUSH);
    static const uint8_t interrupt = MF_RSP_INTERRUPT;
    if (write(g->fd, &interrupt, 1) != 1) {
        TSAY(t, "connect: cannot write to %s: %s", g->device, strerror(errno));
        transport_close(g);
        return MF_EIO;
    }
    uint64_t until = now_ms() + GDB_SERIAL_SETTLE_MS;
    for (uint64_t now = now_ms(); now < until; now = now_ms()) {
        struct pollfd p = {.fd = g->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(until - now)) > 0 && read(g->fd, g->in, sizeof g->in) <= 0)
            break;
    }
    tcflush(g->fd, TCIFLUSH);
    return 0;
}

static int open_tcp(struct gdb *g, struct mf_target *t)
{
    /* An address needs no lookup. A name goes to the system's resolver, which cannot be bounded
     * by our timeout nor cancelled (its own timeouts apply, resolv.conf's `timeout` and
     * `attempts`): docs/targets.md advises addresses on a production line. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *list = NULL;
    int r = getaddrinfo(g->host, g->port, &hints, &list);
    if (r == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        r = getaddrinfo(g->host, g->port, &hints, &list);
    }
    if (r != 0) {
        TSAY(t, "connect: %s:%s: %s", g->host, g->port, gai_strerror(r));
        return MF_EINVAL;
    }
    int err = MF_EIO, last = 0;
    uint32_t timeout = short_timeout(g);
    snprintf(g->what, sizeof g->what, "connect");
    /* One attempt per address the name has. */
    for (struct addrinfo *a = list; a; a = a->ai_next) {
        g->fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (g->fd < 0) {
            last = errno;
            continue;
        }
        if (connect(g->fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            last = errno;
            transport_close(g);
            continue;
        }
        err = wait_fd(g, t, POLLOUT, now_ms() + timeout, timeout, "connect");
        g->broken = false;
        if (err) {
            transport_close(g);
            if (err == MF_ECANCELED)
                break;
            TSAY(t, "connect: no answer from %s:%s within %u ms", g->host, g->port, timeout);
            continue;
        }
        int so = 0;
        socklen_t len = sizeof so;
        if (getsockopt(g->fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0 || so != 0) {
            last = so ? so : errno;
            err = MF_EIO;
            transport_close(g);
            continue;
        }
        int one = 1;
        setsockopt(g->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        err = 0;
        break;
    }
    freeaddrinfo(list);
    if (err && err != MF_ECANCELED && err != MF_ETIMEOUT)
        TSAY(t, "connect: no GDB server at %s:%s (%s)", g->host, g->port,
             last ? strerror(last) : "cannot connect");
    return err;
}

/* Takes the socket handed to mf_gdb_open_fd: it serves one connection. */
static int open_fd(struct gdb *g, struct mf_target *t)
{
    if (g->handed_fd < 0) {
        TSAY(t, "connect: the connection given to the programmer was used up (closed)");
        return MF_EBADF;
    }
    g->fd = g->handed_fd;
    g->handed_fd = -1;
    int flags = fcntl(g->fd, F_GETFL);
    if (flags < 0 || fcntl(g->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        TSAY(t, "connect: the connection given to the programmer is not usable: %s",
             strerror(errno));
        transport_close(g);
        return MF_EBADF;
    }
    return 0;
}

/* ---- packets ---- */

/* The next receive event, reading as needed. */
static int next_event(struct gdb *g, struct mf_target *t, uint64_t deadline, uint32_t timeout,
                      const char *op, uint64_t garbage_start, enum mf_rsp_event *event)
{
    for (;;) {
        if (g->in_pos < g->in_length) {
            size_t used = 0;
            *event = mf_rsp_decode(&g->decoder, g->in + g->in_pos, g->in_length - g->in_pos, &used);
            g->in_pos += used;
            if (*event != MF_RSP_EV_NONE)
                return 0;
            continue;
        }
        if (g->decoder.garbage - garbage_start > GDB_GARBAGE_MAX) {
            g->broken = true;
            TSAY(t, "%s: the GDB server answered garbage (%llu bytes that are no packet) to '%s'",
                 op, (unsigned long long)(g->decoder.garbage - garbage_start), g->what);
            return MF_EPROTO;
        }
        int err = fill_in(g, t, deadline, timeout, op);
        if (err)
            return err;
    }
}

/* Takes the packet in the decoder as the reply: run-length expanded, NUL-terminated. */
static int take_reply(struct gdb *g, struct mf_target *t, const char *op)
{
    size_t n;
    int err = mf_rsp_expand(g->decoder.buffer, g->decoder.length, g->reply, GDB_REPLY_MAX, &n);
    if (err) {
        g->broken = true;
        TSAY(t, "%s: the GDB server's reply to '%s' is %s", op, g->what,
             err == MF_ENOSPC ? "too long" : "malformed (bad run-length encoding)");
        return MF_EPROTO;
    }
    g->reply_length = n;
    g->reply[n] = '\0';
    return 0;
}

/* Is the packet a stop reply ("S05", "T05thread:01;...")? No other reply starts so: hex data
 * has no 'S' or 'T', other replies are "OK", "E..", "C..", "O..", "m..", "l..". */
static bool unsolicited_stop(const struct mf_rsp_decoder *d)
{
    const uint8_t *p = d->buffer;
    return d->length >= 3 && (p[0] == 'S' || p[0] == 'T') && isxdigit(p[1]) && isxdigit(p[2]) &&
           (p[0] == 'T' || d->length == 3);
}

/* Waits until `deadline` for a reply packet to the request already sent (and acks it). `frame`
 * and `frame_length` are the request as sent, for resending on '-'; `timeout` is what messages
 * name. */
static int await_until(struct gdb *g, struct mf_target *t, const char *op, const uint8_t *frame,
                       size_t frame_length, uint64_t deadline, uint32_t timeout, bool want_reply)
{
    uint64_t garbage = g->decoder.garbage;
    unsigned resends = 0, bad = 0;
    bool acked = g->no_ack || frame == NULL;
    if (acked && !want_reply)
        return 0;
    for (;;) {
        enum mf_rsp_event ev;
        int err = next_event(g, t, deadline, timeout, op, garbage, &ev);
        if (err)
            return err;
        switch (ev) {
        case MF_RSP_EV_ACK:
            acked = true;
            if (!want_reply)
                return 0;
            break;
        case MF_RSP_EV_NAK:
            if (!frame || acked)
                break; /* a stray '-' (servers send one at start-up): nothing to resend */
            if (++resends > GDB_RESENDS) {
                g->broken = true;
                TSAY(t, "%s: the GDB server rejected '%s' %u times (bad line?)", op, g->what,
                     resends);
                return MF_EPROTO;
            }
            g->stats.resends++;
            err = send_bytes(g, t, frame, frame_length, timeout, op);
            if (err)
                return err;
            break;
        case MF_RSP_EV_PACKET:
            if (!g->no_ack) {
                err = send_bytes(g, t, (const uint8_t *)"+", 1, timeout, op);
                if (err)
                    return err;
            }
            acked = true;
            if (!want_reply)
                break; /* console output after a continue, say: not for us */
            /* A stop reply nobody asked for: QEMU sends one when a new connection stops a
             * running machine. It answers no request of ours. */
            if (!g->want_stop && unsolicited_stop(&g->decoder)) {
                g->stats.unsolicited++;
                break;
            }
            return take_reply(g, t, op);
        case MF_RSP_EV_BAD_CHECKSUM:
            if (g->no_ack || ++bad > GDB_BAD_REPLIES) {
                g->broken = true;
                TSAY(t, "%s: the GDB server's reply to '%s' has a bad checksum", op, g->what);
                return MF_EPROTO;
            }
            g->stats.naks++;
            err = send_bytes(g, t, (const uint8_t *)"-", 1, timeout, op);
            if (err)
                return err;
            break;
        case MF_RSP_EV_OVERFLOW:
            g->broken = true;
            TSAY(t, "%s: the GDB server's reply to '%s' is longer than %u bytes", op, g->what,
                 MF_GDB_PACKET_MAX);
            return MF_EPROTO;
        default:
            break; /* an interrupt byte: not ours to act on */
        }
    }
}

static int await(struct gdb *g, struct mf_target *t, const char *op, const uint8_t *frame,
                 size_t frame_length, uint32_t timeout, bool want_reply)
{
    return await_until(g, t, op, frame, frame_length, now_ms() + timeout, timeout, want_reply);
}

/* Frames the payload at g->tx + 1 + head (length bytes) and exchanges it. */
static int exchange_at(struct gdb *g, struct mf_target *t, const char *op, size_t head,
                       size_t length, uint32_t timeout, bool want_reply)
{
    if (g->broken) {
        TSAY(t, "%s: the connection to the GDB server was lost earlier", op);
        return MF_EIO;
    }
    if (cancelled(g, t)) {
        TSAY(t, "%s: cancelled", op);
        return MF_ECANCELED;
    }
    uint8_t *frame = g->tx + head;
    remember(g, frame + 1, length);
    size_t total = mf_rsp_frame(frame, length);
    g->stats.packets++;
    if (total > g->stats.largest)
        g->stats.largest = total;
    g->reply_length = 0;
    g->reply[0] = '\0';
    int err = send_bytes(g, t, frame, total, timeout, op);
    if (!err)
        err = await(g, t, op, frame, total, timeout, want_reply);
    return err;
}

static int request(struct gdb *g, struct mf_target *t, const char *op, uint32_t timeout,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Sends a text request and waits for its reply (in g->reply). */
static int request(struct gdb *g, struct mf_target *t, const char *op, uint32_t timeout,
                   const char *fmt, ...)
{
    char *payload = (char *)g->tx + GDB_HEAD_MAX + 1;
    size_t room = g->tx_size - GDB_HEAD_MAX - 1 - MF_RSP_FRAME_EXTRA;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(payload, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room || (size_t)n + MF_RSP_FRAME_EXTRA > g->packet_size) {
        TSAY(t, "%s: request longer than the GDB server's packet size %u", op, g->packet_size);
        return MF_EINVAL;
    }
    return exchange_at(g, t, op, GDB_HEAD_MAX, (size_t)n, timeout, true);
}

/* The reply makes no sense for the request: the server is not (or no longer) speaking the
 * protocol with us. */
static int garbled(struct gdb *g, struct mf_target *t, const char *op)
{
    char text[48];
    reply_text(g, text, sizeof text);
    g->broken = true;
    TSAY(t, "%s: the GDB server answered '%s' to '%s'", op, text, g->what);
    return MF_EPROTO;
}

/* The reply was an error or something unexpected: says so. */
static int refused(struct gdb *g, struct mf_target *t, const char *op)
{
    char text[48];
    reply_text(g, text, sizeof text);
    if (mf_rsp_is_error(g->reply, g->reply_length)) {
        TSAY(t, "%s: the GDB server refused '%s' (%s)", op, g->what, text);
        return MF_EIO;
    }
    if (g->reply_length == 0) {
        TSAY(t, "%s: the GDB server does not support '%s'", op, g->what);
        return MF_ENOTSUP;
    }
    return garbled(g, t, op);
}

static int expect_ok(struct gdb *g, struct mf_target *t, const char *op)
{
    return reply_is(g, "OK") ? 0 : refused(g, t, op);
}

/* ---- monitor commands ---- */

/* Appends hex-encoded console output to `out` (printable, bounded). */
static void collect_output(const uint8_t *hex, size_t length, char *out, size_t size)
{
    size_t n = strlen(out);
    for (size_t i = 0; i + 1 < length && n + 1 < size; i += 2) {
        uint8_t c;
        if (mf_rsp_hex_decode((const char *)hex + i, &c, 1))
            return;
        if (c == '\n' || c == '\r')
            c = ' ';
        if (c >= 0x20 && c < 0x7f && !(c == ' ' && (n == 0 || out[n - 1] == ' ')))
            out[n++] = (char)c;
    }
    out[n] = '\0';
}

static bool all_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
              (p[i] >= 'A' && p[i] <= 'F')))
            return false;
    }
    return true;
}

static int monitor(struct gdb *g, struct mf_target *t, const char *op, const char *command,
                   size_t length)
{
    char *payload = (char *)g->tx + GDB_HEAD_MAX + 1;
    if (6 + 2 * length + MF_RSP_FRAME_EXTRA > g->packet_size) {
        TSAY(t, "%s: monitor command '%.*s' is too long for the GDB server", op, (int)length,
             command);
        return MF_EINVAL;
    }
    memcpy(payload, "qRcmd,", 6);
    mf_rsp_hex_encode(payload + 6, (const uint8_t *)command, length);
    g->stats.monitor++;
    /* One deadline for the whole command: console output does not extend it. */
    uint32_t timeout = long_timeout(g);
    uint64_t deadline = now_ms() + timeout;
    int err = exchange_at(g, t, op, GDB_HEAD_MAX, 6 + 2 * length, timeout, true);
    char output[GDB_OUTPUT_MAX] = "";
    /* Console output ('O' packets) comes before the final reply. */
    unsigned outputs = 0;
    while (!err && g->reply_length > 1 && g->reply[0] == 'O' && !reply_is(g, "OK")) {
        if (++outputs > GDB_OUTPUT_PACKETS) {
            g->broken = true;
            TSAY(t, "%s: 'monitor %.*s' sends output without end", op, (int)length, command);
            return MF_EPROTO;
        }
        collect_output(g->reply + 1, g->reply_length - 1, output, sizeof output);
        err = await_until(g, t, op, NULL, 0, deadline, timeout, true);
    }
    if (err == MF_ETIMEOUT && outputs)
        TSAY(t, "%s: 'monitor %.*s' did not finish within %u ms (%u output packets: %s)", op,
             (int)length, command, timeout, outputs, output);
    if (err)
        return err;
    if (reply_is(g, "OK"))
        return 0;
    if (g->reply_length == 0) {
        TSAY(t, "%s: the GDB server has no monitor commands ('monitor %.*s')", op, (int)length,
             command);
        return MF_ENOTSUP;
    }
    if (mf_rsp_is_error(g->reply, g->reply_length)) {
        char text[16];
        reply_text(g, text, sizeof text);
        TSAY(t, "%s: 'monitor %.*s' failed (%s)%s%s", op, (int)length, command, text,
             output[0] ? ": " : "", output);
        return MF_EIO;
    }
    if (g->reply_length % 2 == 0 && all_hex(g->reply, g->reply_length))
        return 0; /* the output as the final reply */
    return refused(g, t, op);
}

/* Sends 'c' and does not wait for the stop reply: the application runs from now on. */
static int resume(struct gdb *g, struct mf_target *t, const char *op)
{
    uint8_t *payload = g->tx + GDB_HEAD_MAX + 1;
    payload[0] = 'c';
    int err = exchange_at(g, t, op, GDB_HEAD_MAX, 1, short_timeout(g), false);
    if (!err)
        g->running = true;
    return err;
}

/* Runs a command list (see mf_rsp_options). */
static int run_steps(struct gdb *g, struct mf_target *t, const char *op, const char *list,
                     unsigned level)
{
    size_t pos = 0, len = strlen(list);
    struct mf_rsp_step step;
    /* Each step consumes at least one character of the list. */
    for (size_t guard = 0; guard <= len; guard++) {
        int r = mf_rsp_step_next(list, &pos, &step);
        if (r == 0)
            return 0;
        if (r < 0) {
            TSAY(t, "%s: malformed command list '%s'", op, list);
            return MF_EINVAL;
        }
        int err = 0;
        if (step.kind == MF_RSP_STEP_MONITOR) {
            char command[MF_RSP_COMMANDS_MAX + 16];
            size_t n = 0;
            /* "{level}" becomes the protection level. */
            for (size_t i = 0; i < step.text_length && n + 12 < sizeof command; i++) {
                if (step.text_length - i >= 7 && memcmp(step.text + i, "{level}", 7) == 0) {
                    n += (size_t)snprintf(command + n, sizeof command - n, "%u", level);
                    i += 6;
                } else {
                    command[n++] = step.text[i];
                }
            }
            err = monitor(g, t, op, command, n);
        } else if (step.kind == MF_RSP_STEP_ATTACH) {
            g->want_stop = true;
            err = request(g, t, op, long_timeout(g), "vAttach;%.*s", (int)step.text_length,
                          step.text);
            g->want_stop = false;
            if (!err && (g->reply_length == 0 || (g->reply[0] != 'T' && g->reply[0] != 'S')))
                err = refused(g, t, op);
        } else {
            err = resume(g, t, op);
        }
        if (err)
            return err;
    }
    return 0;
}

/* ---- memory ---- */

/* Ends a vFlash sequence: the server programs what it buffered. */
static int flash_done(struct gdb *g, struct mf_target *t, const char *op)
{
    if (!g->flash_open)
        return 0;
    g->flash_open = false;
    int err = request(g, t, op, long_timeout(g), "vFlashDone");
    return err ? err : expect_ok(g, t, op);
}

/* Writes bytes with X (binary) packets, or M (hex) ones once the server refused X. */
static int write_memory(struct gdb *g, struct mf_target *t, const char *op, uint64_t address,
                        const uint8_t *data, size_t length)
{
    size_t done = 0;
    while (done < length) {
        uint8_t *payload = g->tx + GDB_HEAD_MAX + 1;
        char head[GDB_HEAD_MAX];
        uint64_t at = address + done;
        size_t left = length - done, take, produced;
        int hl = snprintf(head, sizeof head, "%c%llx,%zx:", g->x_refused ? 'M' : 'X',
                          (unsigned long long)at, left);
        size_t room = g->packet_size - MF_RSP_FRAME_EXTRA - (size_t)hl;
        if (!g->x_refused) {
            produced = mf_rsp_escape(payload, room, data + done, left, &take);
        } else {
            take = left < room / 2 ? left : room / 2;
            mf_rsp_hex_encode((char *)payload, data + done, take);
            produced = 2 * take;
        }
        hl = snprintf(head, sizeof head, "%c%llx,%zx:", g->x_refused ? 'M' : 'X',
                      (unsigned long long)at, take);
        memcpy(payload - hl, head, (size_t)hl);
        int err = exchange_at(g, t, op, GDB_HEAD_MAX - (size_t)hl, (size_t)hl + produced,
                              short_timeout(g), true);
        if (err)
            return err;
        if (g->reply_length == 0 && !g->x_refused) {
            g->x_refused = true; /* no X: say it again in hex */
            continue;
        }
        if (!reply_is(g, "OK"))
            return refused(g, t, op);
        if (g->x_refused)
            g->stats.m_writes++;
        else
            g->stats.x_packets++;
        done += take;
    }
    return 0;
}

/* Writes the erased value of the region over [start, end). */
static int write_fill(struct gdb *g, struct mf_target *t, const char *op, uint64_t start,
                      uint64_t end)
{
    const struct mf_flash_region *r = mf_profile_region(t->profile, start);
    memset(g->fill, r ? r->erased_value : 0xFF, GDB_FILL_MAX);
    for (uint64_t a = start; a < end;) {
        size_t n = end - a < GDB_FILL_MAX ? (size_t)(end - a) : GDB_FILL_MAX;
        int err = write_memory(g, t, op, a, g->fill, n);
        if (err)
            return err;
        g->stats.fill_bytes += n;
        a += n;
    }
    return 0;
}

/* Erased spans not yet written: erasing RAM-like flash is deferred so that bytes about to be
 * programmed are not written twice. Everything still pending is written before anything reads,
 * runs or detaches. */
static int pending_flush(struct gdb *g, struct mf_target *t, const char *op)
{
    while (g->pending_count) {
        struct span s = g->pending[0];
        int err = write_fill(g, t, op, s.start, s.end);
        if (err)
            return err;
        memmove(g->pending, g->pending + 1, (g->pending_count - 1) * sizeof g->pending[0]);
        g->pending_count--;
    }
    return 0;
}

static bool pending_overlaps(const struct gdb *g, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < g->pending_count; i++) {
        if (g->pending[i].start < end && start < g->pending[i].end)
            return true;
    }
    return false;
}

/* Adds [start, end), merging with neighbours; the list stays sorted and disjoint. */
static int pending_add(struct gdb *g, struct mf_target *t, const char *op, uint64_t start,
                       uint64_t end)
{
    if (g->pending_count == GDB_PENDING_MAX) {
        int err = pending_flush(g, t, op);
        if (err)
            return err;
    }
    unsigned i = 0;
    while (i < g->pending_count && g->pending[i].end < start)
        i++;
    unsigned k = i;
    while (k < g->pending_count && g->pending[k].start <= end) {
        if (g->pending[k].start < start)
            start = g->pending[k].start;
        if (g->pending[k].end > end)
            end = g->pending[k].end;
        k++;
    }
    /* Spans i..k-1 merge into one at i. */
    if (k == i) {
        memmove(g->pending + i + 1, g->pending + i, (g->pending_count - i) * sizeof g->pending[0]);
        g->pending_count++;
    } else if (k > i + 1) {
        memmove(g->pending + i + 1, g->pending + k, (g->pending_count - k) * sizeof g->pending[0]);
        g->pending_count -= k - i - 1;
    }
    g->pending[i] = (struct span){start, end};
    return 0;
}

/* [start, end) was written: it is no longer pending. Needs one free entry (a span may split). */
static void pending_remove(struct gdb *g, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < g->pending_count;) {
        struct span *s = &g->pending[i];
        if (s->end <= start || end <= s->start) {
            i++;
            continue;
        }
        if (start <= s->start && s->end <= end) {
            memmove(s, s + 1, (g->pending_count - i - 1) * sizeof *s);
            g->pending_count--;
            continue;
        }
        if (s->start < start && end < s->end) {
            memmove(s + 1, s, (g->pending_count - i) * sizeof *s);
            g->pending_count++;
            s[0].end = start;
            s[1].start = end;
            return;
        }
        if (s->start < start)
            s->end = start;
        else
            s->start = end;
        i++;
    }
}

/* Everything the server or the device may still hold back is made real before a read. */
static int settle(struct gdb *g, struct mf_target *t, const char *op, uint64_t start, uint64_t end)
{
    int err = flash_done(g, t, op);
    if (!err && pending_overlaps(g, start, end))
        err = pending_flush(g, t, op);
    return err;
}

static int settle_all(struct gdb *g, struct mf_target *t, const char *op)
{
    int err = flash_done(g, t, op);
    return err ? err : pending_flush(g, t, op);
}

static int read_memory(struct gdb *g, struct mf_target *t, const char *op, uint64_t address,
                       uint8_t *out, size_t length)
{
    size_t most = (g->packet_size - MF_RSP_FRAME_EXTRA) / 2;
    for (size_t done = 0; done < length;) {
        size_t want = length - done < most ? length - done : most;
        int err = request(g, t, op, short_timeout(g), "m%llx,%zx",
                          (unsigned long long)(address + done), want);
        if (err)
            return err;
        size_t got = g->reply_length / 2;
        if (mf_rsp_is_error(g->reply, g->reply_length) || g->reply_length == 0)
            return refused(g, t, op);
        /* A server may return fewer bytes than asked, never more. */
        if (g->reply_length % 2 || got > want ||
            mf_rsp_hex_decode((const char *)g->reply, out + done, got))
            return garbled(g, t, op);
        done += got;
    }
    return 0;
}

/* Reads a qXfer object whole into `out` (at most GDB_XML_MAX - 1 bytes, NUL-terminated). */
static int read_object(struct gdb *g, struct mf_target *t, const char *op, const char *object,
                       const char *annex, char *out, size_t *length)
{
    size_t have = 0;
    size_t chunk = g->packet_size - MF_RSP_FRAME_EXTRA - 1;
    if (chunk > GDB_XML_MAX / 4)
        chunk = GDB_XML_MAX / 4;
    for (;;) {
        int err = request(g, t, op, short_timeout(g), "qXfer:%s:read:%s:%zx,%zx", object, annex,
                          have, chunk);
        if (err)
            return err;
        if (g->reply_length == 0 || (g->reply[0] != 'm' && g->reply[0] != 'l'))
            return refused(g, t, op);
        size_t n;
        if (mf_rsp_unescape(g->reply + 1, g->reply_length - 1, &n)) {
            g->reply_length = 0;
            TSAY(t, "%s: the GDB server's reply to '%s' ends in an escape", op, g->what);
            return MF_EPROTO;
        }
        if (n > GDB_XML_MAX - 1 - have) {
            TSAY(t, "%s: %s %s is larger than %u bytes", op, object, annex, GDB_XML_MAX - 1);
            return MF_EPROTO;
        }
        memcpy(out + have, g->reply + 1, n);
        have += n;
        if (g->reply[0] == 'l')
            break;
        if (n == 0) {
            TSAY(t, "%s: the GDB server sent an empty part of %s without ending it", op, object);
            return MF_EPROTO;
        }
    }
    out[have] = '\0';
    *length = have;
    return 0;
}

/* ---- the operations ---- */

static int gdb_disconnect(struct mf_target *t);

/* Common entry of an operation: connected, not running, not cancelled. */
static int enter(struct gdb *g, struct mf_target *t, const char *op)
{
    t->error[0] = '\0';
    if (!g->connected) {
        TSAY(t, "%s: not connected", op);
        return MF_EBADF;
    }
    if (g->broken) {
        TSAY(t, "%s: the connection to the GDB server was lost earlier", op);
        return MF_EIO;
    }
    if (g->running) {
        TSAY(t, "%s: the application runs (connect again to reach the device)", op);
        return MF_EBUSY;
    }
    if (cancelled(g, t)) {
        TSAY(t, "%s: cancelled", op);
        return MF_ECANCELED;
    }
    return 0;
}

static bool stop_reply(const struct gdb *g)
{
    return g->reply_length > 0 &&
           (g->reply[0] == 'S' || g->reply[0] == 'T' || g->reply[0] == 'W' || g->reply[0] == 'X');
}

static int halt(struct gdb *g, struct mf_target *t)
{
    if (g->options.halt[0])
        return run_steps(g, t, "halt", g->options.halt, 0);
    g->want_stop = true;
    int err = request(g, t, "halt", short_timeout(g), "?");
    g->want_stop = false;
    if (err != MF_ETIMEOUT)
        return err ? err : stop_reply(g) ? 0 : refused(g, t, "halt");
    /* No answer: the target runs (a server left in 'continue'). Interrupt it; the stop reply
     * that comes answers both. */
    g->broken = false;
    static const uint8_t interrupt = MF_RSP_INTERRUPT;
    err = send_bytes(g, t, &interrupt, 1, short_timeout(g), "halt");
    g->want_stop = true;
    if (!err)
        err = await(g, t, "halt", NULL, 0, short_timeout(g), true);
    g->want_stop = false;
    if (!err && !stop_reply(g))
        err = refused(g, t, "halt");
    if (err == MF_ETIMEOUT)
        TSAY(t, "halt: the target does not stop (no reply to '?' nor to an interrupt)");
    return err;
}

static int read_memory_map(struct gdb *g, struct mf_target *t)
{
    size_t n;
    int err = read_object(g, t, "connect", "memory-map", "", g->xml, &n);
    if (err)
        return err;
    char why[96];
    err = mf_rsp_parse_memory_map(g->xml, n, &g->map, why, sizeof why);
    if (err) {
        TSAY(t, "connect: the GDB server's %s", why);
        return MF_EPROTO;
    }
    g->has_map = true;
    for (unsigned i = 0; i < g->map.count; i++)
        g->stats.flash_regions += g->map.regions[i].type == MF_RSP_MEM_FLASH;
    return 0;
}

static int gdb_connect(struct mf_target *t)
{
    struct gdb *g = t->context;
    t->error[0] = '\0';
    if (g->connected)
        gdb_disconnect(t);
    if (!t->profile) {
        TSAY(t, "connect: no device profile");
        return MF_EINVAL;
    }
    g->broken = g->running = false;
    g->no_ack = g->x_refused = g->crc_refused = g->p_refused = g->has_map = false;
    g->flash_open = false;
    g->pending_count = 0;
    g->packet_size = MF_RSP_PACKET_SIZE_DEFAULT;
    g->stats.flash_regions = 0;
    g->in_length = g->in_pos = 0;
    mf_rsp_decoder_init(&g->decoder, g->rx, MF_GDB_PACKET_MAX);
    if (cancelled(g, t)) {
        TSAY(t, "connect: cancelled");
        return MF_ECANCELED;
    }
    int err = g->transport == GDB_TCP  ? open_tcp(g, t)
              : g->transport == GDB_FD ? open_fd(g, t)
                                       : open_serial(g, t);
    if (err)
        return err;
    g->connected = true;
    /* Acknowledge whatever the server sent before we came (as GDB does). */
    snprintf(g->what, sizeof g->what, "+");
    err = send_bytes(g, t, (const uint8_t *)"+", 1, short_timeout(g), "connect");
    if (!err)
        err = request(g, t, "connect", short_timeout(g), "qSupported:vContSupported+");
    if (!err && mf_rsp_parse_supported(g->reply, g->reply_length, &g->features)) {
        char text[48];
        reply_text(g, text, sizeof text);
        TSAY(t, "connect: the GDB server's qSupported reply '%s' is malformed", text);
        err = MF_EPROTO;
    }
    if (!err && g->features.packet_size < GDB_MIN_PACKET) {
        TSAY(t, "connect: the GDB server's packet size %u is below %u", g->features.packet_size,
             GDB_MIN_PACKET);
        err = MF_EPROTO;
    }
    if (!err) {
        g->packet_size = g->features.packet_size < MF_GDB_PACKET_MAX ? g->features.packet_size
                                                                     : MF_GDB_PACKET_MAX;
        g->stats.packet_size = g->packet_size;
    }
    if (!err && g->features.no_ack) {
        err = request(g, t, "connect", short_timeout(g), "QStartNoAckMode");
        if (!err && reply_is(g, "OK"))
            g->no_ack = true; /* the OK was acked above, the last ack of the connection */
        else if (!err)
            err = refused(g, t, "connect");
    }
    g->stats.no_ack = g->no_ack;
    if (!err && g->options.connect[0])
        err = run_steps(g, t, "connect", g->options.connect, 0);
    if (!err)
        err = halt(g, t);
    if (!err && g->features.memory_map)
        err = read_memory_map(g, t);
    g->stats.memory_map = g->has_map;
    if (!err && g->options.reset[0])
        err = run_steps(g, t, "reset", g->options.reset, 0);
    if (err) {
        transport_close(g);
        return err;
    }
    return 0;
}

static int gdb_disconnect(struct mf_target *t)
{
    struct gdb *g = t->context;
    if (!g || !g->connected)
        return 0;
    int err = 0;
    /* What the server or the device holds back is made real; after a cancel, what was erased
     * lazily stays as it is (a cancelled erase). */
    if (!g->broken && !g->running && !atomic_load(&t->cancel))
        err = settle_all(g, t, "disconnect");
    /* No detach: 'D' makes most servers resume the device, which would run whatever its
     * registers held before programming (QEMU aborts on the lock-up that follows). Closing the
     * connection leaves a halted device halted and a started one running. */
    transport_close(g);
    return err;
}

/* The profile's region holding [address, address + length), or an error text. */
static const struct mf_flash_region *flash_range(struct mf_target *t, const char *op,
                                                 uint64_t address, uint64_t length)
{
    const struct mf_flash_region *r = mf_profile_region(t->profile, address);
    if (!r || length > r->size - (address - r->start)) {
        TSAY(t, "%s at 0x%08llx: %llu bytes are not inside one flash region of %s", op,
             (unsigned long long)address, (unsigned long long)length, t->profile->name);
        return NULL;
    }
    return r;
}

static int gdb_read_uid(struct mf_target *t, uint8_t *uid, uint32_t length)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "read UID");
    uint64_t a = t->profile->uid_address;
    if (!err)
        err = settle(g, t, "read UID", a, a + length);
    return err ? err : read_memory(g, t, "read UID", a, uid, length);
}

static int gdb_unlock(struct mf_target *t)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "unlock");
    if (err || !g->options.unlock[0])
        return err; /* nothing configured: the device is taken as unprotected */
    err = settle_all(g, t, "unlock");
    return err ? err : run_steps(g, t, "unlock", g->options.unlock, 0);
}

/* vFlashErase over [start, end), split at the server's regions and checked against its blocks. */
static int flash_erase(struct gdb *g, struct mf_target *t, uint64_t start, uint64_t end)
{
    for (uint64_t a = start; a < end;) {
        const struct mf_rsp_memory *m = mf_rsp_map_find(&g->map, a);
        uint64_t stop =
            m->start + m->length < end && m->start + m->length > a ? m->start + m->length : end;
        if ((a - m->start) % m->blocksize || (stop - m->start) % m->blocksize) {
            TSAY(t,
                 "erase 0x%08llx-0x%08llx: the GDB server erases blocks of %llu bytes there "
                 "(its memory map), the profile %s has other sectors",
                 (unsigned long long)start, (unsigned long long)(end - 1),
                 (unsigned long long)m->blocksize, t->profile->name);
            return MF_EINVAL;
        }
        g->flash_open = true;
        g->stats.flash_erases++;
        int err = request(g, t, "erase", long_timeout(g), "vFlashErase:%llx,%llx",
                          (unsigned long long)a, (unsigned long long)(stop - a));
        if (!err)
            err = expect_ok(g, t, "erase");
        if (err)
            return err;
        a = stop;
    }
    return 0;
}

/* Is [start, end) flash in the server's map (all of it)? */
static bool map_flash(const struct gdb *g, uint64_t start, uint64_t end)
{
    if (!g->has_map)
        return false;
    for (uint64_t a = start; a < end;) {
        const struct mf_rsp_memory *m = mf_rsp_map_find(&g->map, a);
        if (!m || m->type != MF_RSP_MEM_FLASH)
            return false;
        a = m->start + m->length;
        if (a == 0)
            break; /* the region ends at the top of the address space */
    }
    return true;
}

static int erase_range(struct gdb *g, struct mf_target *t, uint64_t start, uint64_t end)
{
    if (map_flash(g, start, end))
        return flash_erase(g, t, start, end);
    if (g->has_map && mf_rsp_map_find(&g->map, start)) {
        const struct mf_rsp_memory *m = mf_rsp_map_find(&g->map, start);
        if (m->type == MF_RSP_MEM_ROM) {
            TSAY(t, "erase at 0x%08llx: the GDB server's memory map says ROM there",
                 (unsigned long long)start);
            return MF_EACCES;
        }
    }
    return pending_add(g, t, "erase", start, end);
}

static int gdb_erase(struct mf_target *t, uint64_t address, uint64_t length)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "erase");
    if (err || length == 0)
        return err;
    if (!flash_range(t, "erase", address, length))
        return MF_EINVAL;
    return erase_range(g, t, address, address + length);
}

static int gdb_erase_chip(struct mf_target *t)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "erase chip");
    if (err)
        return err;
    if (g->options.mass_erase[0]) {
        err = settle_all(g, t, "erase chip");
        return err ? err : run_steps(g, t, "erase chip", g->options.mass_erase, 0);
    }
    for (unsigned i = 0; i < t->profile->flash_count && !err; i++) {
        const struct mf_flash_region *r = &t->profile->flash[i];
        err = erase_range(g, t, r->start, r->start + r->size);
    }
    return err;
}

static int flash_write(struct gdb *g, struct mf_target *t, uint64_t address, const uint8_t *data,
                       size_t length)
{
    size_t done = 0;
    while (done < length) {
        uint64_t at = address + done;
        const struct mf_rsp_memory *m = mf_rsp_map_find(&g->map, at);
        size_t left = length - done;
        if (m->start + m->length - at < left && m->start + m->length > at)
            left = (size_t)(m->start + m->length - at); /* one region per packet */
        uint8_t *payload = g->tx + GDB_HEAD_MAX + 1;
        char head[GDB_HEAD_MAX];
        int hl = snprintf(head, sizeof head, "vFlashWrite:%llx:", (unsigned long long)at);
        size_t take;
        size_t produced = mf_rsp_escape(payload, g->packet_size - MF_RSP_FRAME_EXTRA - (size_t)hl,
                                        data + done, left, &take);
        memcpy(payload - hl, head, (size_t)hl);
        g->flash_open = true;
        g->stats.flash_writes++;
        int err = exchange_at(g, t, "program", GDB_HEAD_MAX - (size_t)hl, (size_t)hl + produced,
                              long_timeout(g), true);
        if (!err)
            err = expect_ok(g, t, "program");
        if (err)
            return err;
        done += take;
    }
    return 0;
}

static int gdb_program(struct mf_target *t, uint64_t address, const void *data, uint32_t length)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "program");
    if (err || length == 0)
        return err;
    const struct mf_flash_region *r = flash_range(t, "program", address, length);
    if (!r)
        return MF_EINVAL;
    if ((address - r->start) % r->write_size != 0 || length % r->write_size != 0) {
        TSAY(t, "program at 0x%08llx: %u bytes not aligned to the write size of %u",
             (unsigned long long)address, length, r->write_size);
        return MF_EINVAL;
    }
    if (map_flash(g, address, address + length))
        return flash_write(g, t, address, data, length);
    /* A span may split in two when a write lands inside it. */
    if (g->pending_count >= GDB_PENDING_MAX - 1) {
        err = pending_flush(g, t, "program");
        if (err)
            return err;
    }
    err = write_memory(g, t, "program", address, data, length);
    if (!err)
        pending_remove(g, address, address + length);
    return err;
}

static int gdb_read(struct mf_target *t, uint64_t address, void *buffer, uint32_t length)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "read");
    if (!err && length)
        err = settle(g, t, "read", address, address + length);
    return err || !length ? err : read_memory(g, t, "read", address, buffer, length);
}

static int gdb_crc(struct mf_target *t, uint64_t address, uint64_t length, uint32_t *crc)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "crc");
    if (err)
        return err;
    if (length == 0) {
        *crc = MF_TARGET_CRC_INIT;
        return 0;
    }
    if (g->crc_refused) {
        TSAY(t, "crc: the GDB server has no qCRC");
        return MF_ENOTSUP;
    }
    err = settle(g, t, "crc", address, address + length);
    if (err)
        return err;
    g->stats.crc_requests++;
    err = request(g, t, "crc", long_timeout(g), "qCRC:%llx,%llx", (unsigned long long)address,
                  (unsigned long long)length);
    if (err)
        return err;
    if (g->reply_length == 0) {
        g->crc_refused = true;
        TSAY(t, "crc: the GDB server has no qCRC");
        return MF_ENOTSUP;
    }
    if (mf_rsp_is_error(g->reply, g->reply_length)) {
        /* Unreadable there (protection, say): the engine reads back and reports what it finds. */
        refused(g, t, "crc");
        return MF_ENOTSUP;
    }
    uint64_t v;
    size_t end;
    if (g->reply[0] != 'C' ||
        mf_rsp_hex_u64((const char *)g->reply + 1, g->reply_length - 1, &v, &end) ||
        end != g->reply_length - 1 || v > UINT32_MAX)
        return garbled(g, t, "crc");
    *crc = (uint32_t)v;
    return 0;
}

static int gdb_protect(struct mf_target *t, unsigned level)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "protect");
    if (err)
        return err;
    if (!g->options.protect[0]) {
        TSAY(t, "protect: no [gdb] protect command is set for this job");
        return MF_ENOTSUP;
    }
    err = settle_all(g, t, "protect");
    return err ? err : run_steps(g, t, "protect", g->options.protect, level);
}

/* Where xPSR is, from the target description. */
struct xpsr_place {
    int regnum;    /* -1: the description does not name it (or there is none) */
    unsigned bits; /* its size */
    size_t offset; /* bytes before it in a 'g' reply: the registers numbered below it */
    bool offset_known;
};

/* The registers met before xPSR, for its place in a 'g' reply. */
struct register_walk {
    unsigned next; /* GDB's numbering, carried across documents */
    unsigned count;
    bool overflow;
    uint16_t regnum[GDB_REGISTERS_MAX], bits[GDB_REGISTERS_MAX];
    struct xpsr_place *xpsr;
};

/* One <reg> of the walk: xPSR stops it, the others before it are kept for its place. */
static bool register_each(void *context, const char *name, size_t name_length, unsigned regnum,
                          unsigned bitsize)
{
    struct register_walk *w = context;
    if (name_length == 4 && strncasecmp(name, "xpsr", 4) == 0) {
        w->xpsr->regnum = (int)regnum;
        w->xpsr->bits = bitsize;
        return true;
    }
    if (w->count == GDB_REGISTERS_MAX)
        w->overflow = true;
    else {
        w->regnum[w->count] = (uint16_t)regnum;
        w->bits[w->count++] = (uint16_t)bitsize;
    }
    return false;
}

/* Walks the <reg> elements of a description from *pos (mf_rsp_tdesc_walk): 2 at xPSR, 1 after an
 * <xi:include> (its href in `include`), 0 at the end, MF_EFORMAT for what it cannot read. */
static int walk_registers(const char *xml, size_t length, size_t *pos, struct register_walk *w,
                          char *include, size_t include_size)
{
    return mf_rsp_tdesc_walk(xml, length, pos, &w->next, register_each, w, include, include_size);
}

/* xPSR's number and its place in a 'g' reply from the target description (one level of
 * xi:include followed, as QEMU and OpenOCD need; includes inside an included document are
 * skipped). In a 'g' reply the registers follow each other in number order, each as large as
 * the description says, so xPSR comes after every register numbered below it; registers the
 * description lists after xPSR are not counted. */
static void find_xpsr(struct gdb *g, struct mf_target *t, struct xpsr_place *place)
{
    *place = (struct xpsr_place){.regnum = -1};
    if (!g->features.features)
        return;
    char *top = g->xml, *sub = g->xml + GDB_XML_MAX;
    size_t top_length, sub_length, pos = 0;
    if (read_object(g, t, "start", "features", "target.xml", top, &top_length))
        return;
    struct register_walk walk = {.xpsr = place}, *w = &walk;
    char include[64], nested[64];
    int r = 0;
    for (unsigned includes = 0; includes <= GDB_INCLUDES_MAX; includes++) {
        r = walk_registers(top, top_length, &pos, w, include, sizeof include);
        if (r != 1)
            break;
        if (read_object(g, t, "start", "features", include, sub, &sub_length))
            return;
        size_t sub_pos = 0;
        for (unsigned k = 0; k <= GDB_INCLUDES_MAX; k++) {
            r = walk_registers(sub, sub_length, &sub_pos, w, nested, sizeof nested);
            if (r != 1)
                break;
        }
        if (r != 0)
            break;
    }
    if (r != 2) {
        place->regnum = -1;
        return;
    }
    size_t bits = 0;
    for (unsigned i = 0; i < w->count; i++)
        bits += (int)w->regnum[i] < place->regnum ? w->bits[i] : 0u;
    /* Registers the walk could not keep, or sizes that are not whole bytes: unknown place. */
    place->offset_known = !w->overflow && bits % 8 == 0;
    place->offset = bits / 8;
}

/* Writes a 32-bit register with P (the value in target order: little-endian on Cortex-M). */
static int write_register(struct gdb *g, struct mf_target *t, unsigned number, uint32_t value)
{
    int err = request(g, t, "start", short_timeout(g), "P%x=%02x%02x%02x%02x", number,
                      value & 0xFFu, (value >> 8) & 0xFFu, (value >> 16) & 0xFFu, value >> 24);
    if (err)
        return err;
    if (g->reply_length == 0) {
        g->p_refused = true;
        return MF_ENOTSUP;
    }
    return expect_ok(g, t, "start");
}

static void put_register(char *hex, uint32_t value)
{
    uint8_t bytes[4];
    for (int i = 0; i < 4; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
    mf_rsp_hex_encode(hex, bytes, 4);
}

/* Without P: read all registers with g, change SP and PC (r13, r15: the first registers of every
 * ARM layout) and, when `xpsr` is known, xPSR, and write them back with G. */
static int write_registers_g(struct gdb *g, struct mf_target *t, uint32_t sp, uint32_t pc,
                             const struct xpsr_place *xpsr, uint32_t xpsr_value)
{
    int err = request(g, t, "start", short_timeout(g), "g");
    if (err)
        return err;
    if (g->reply_length < 16 * 8 || g->reply_length % 2 || !all_hex(g->reply, g->reply_length))
        return refused(g, t, "start");
    char *payload = (char *)g->tx + GDB_HEAD_MAX + 1;
    size_t n = g->reply_length;
    if (1 + n + MF_RSP_FRAME_EXTRA > g->packet_size) {
        TSAY(t, "start: the registers do not fit a packet of %u bytes", g->packet_size);
        return MF_EPROTO;
    }
    if (xpsr && (!xpsr->offset_known || xpsr->bits != 32 || 2 * (xpsr->offset + 4) > n)) {
        /* Without the Thumb bit the application would fault at its first instruction. */
        TSAY(t,
             "start: cannot place xPSR (register %d, %u bits) in the server's %zu bytes of 'g' "
             "registers",
             xpsr->regnum, xpsr->bits, n / 2);
        return MF_EPROTO;
    }
    payload[0] = 'G';
    memcpy(payload + 1, g->reply, n);
    put_register(payload + 1 + 13 * 8, sp);
    put_register(payload + 1 + 15 * 8, pc);
    if (xpsr)
        put_register(payload + 1 + 2 * xpsr->offset, xpsr_value);
    err = exchange_at(g, t, "start", GDB_HEAD_MAX, 1 + n, short_timeout(g), true);
    return err ? err : expect_ok(g, t, "start");
}

static int start_vector(struct gdb *g, struct mf_target *t)
{
    uint8_t vector[8];
    uint64_t base = t->profile->flash[0].start;
    int err = read_memory(g, t, "start", base, vector, sizeof vector);
    if (err)
        return err;
    uint32_t sp = (uint32_t)vector[0] | (uint32_t)vector[1] << 8 | (uint32_t)vector[2] << 16 |
                  (uint32_t)vector[3] << 24;
    uint32_t pc = (uint32_t)vector[4] | (uint32_t)vector[5] << 8 | (uint32_t)vector[6] << 16 |
                  (uint32_t)vector[7] << 24;
    /* The vector holds the Thumb bit; the PC register does not, xPSR's T bit carries it (on both
     * paths, when the description names xPSR). */
    struct xpsr_place xpsr;
    find_xpsr(g, t, &xpsr);
    bool thumb = xpsr.regnum >= 0 && (pc & 1u);
    err = write_register(g, t, 13, sp);
    if (!err)
        err = write_register(g, t, 15, pc & ~1u);
    if (err == MF_ENOTSUP && g->p_refused)
        err = write_registers_g(g, t, sp, pc & ~1u, thumb ? &xpsr : NULL, 1u << 24);
    else if (!err && thumb)
        err = write_register(g, t, (unsigned)xpsr.regnum, 1u << 24);
    return err ? err : resume(g, t, "start");
}

static int gdb_start(struct mf_target *t, enum mf_start_mode mode)
{
    struct gdb *g = t->context;
    int err = enter(g, t, "start");
    if (err)
        return err;
    if (mode != MF_START_RESET && mode != MF_START_VECTOR) {
        TSAY(t, "start: unknown mode %d", (int)mode);
        return MF_EINVAL;
    }
    err = settle_all(g, t, "start");
    if (err)
        return err;
    if (mode == MF_START_RESET && g->options.run[0])
        return run_steps(g, t, "start", g->options.run, 0);
    return start_vector(g, t);
}

/* The engine puts each error in its own context ("connect: ...", "program at 0x...: ..."): the
 * operation's own name is taken off the front of the text, a sub-step's ("halt: ") stays. */
static int plain(struct mf_target *t, const char *op, int err)
{
    size_t n = strlen(op);
    if (err && strncmp(t->error, op, n) == 0 && t->error[n] == ':' && t->error[n + 1] == ' ')
        memmove(t->error, t->error + n + 2, strlen(t->error + n + 2) + 1);
    return err;
}

static int op_connect(struct mf_target *t)
{
    return plain(t, "connect", gdb_connect(t));
}

static int op_read_uid(struct mf_target *t, uint8_t *uid, uint32_t length)
{
    return plain(t, "read UID", gdb_read_uid(t, uid, length));
}

static int op_unlock(struct mf_target *t)
{
    return plain(t, "unlock", gdb_unlock(t));
}

static int op_erase(struct mf_target *t, uint64_t address, uint64_t length)
{
    return plain(t, "erase", gdb_erase(t, address, length));
}

static int op_erase_chip(struct mf_target *t)
{
    return plain(t, "erase chip", gdb_erase_chip(t));
}

static int op_program(struct mf_target *t, uint64_t address, const void *data, uint32_t length)
{
    return plain(t, "program", gdb_program(t, address, data, length));
}

static int op_read(struct mf_target *t, uint64_t address, void *buffer, uint32_t length)
{
    return plain(t, "read", gdb_read(t, address, buffer, length));
}

static int op_crc(struct mf_target *t, uint64_t address, uint64_t length, uint32_t *crc)
{
    return plain(t, "crc", gdb_crc(t, address, length, crc));
}

static int op_protect(struct mf_target *t, unsigned level)
{
    return plain(t, "protect", gdb_protect(t, level));
}

static int op_start(struct mf_target *t, enum mf_start_mode mode)
{
    return plain(t, "start", gdb_start(t, mode));
}

static int op_disconnect(struct mf_target *t)
{
    return plain(t, "disconnect", gdb_disconnect(t));
}

static const struct mf_target_ops gdb_ops = {
    .name = "gdb",
    .connect = op_connect,
    .read_uid = op_read_uid,
    .unlock = op_unlock,
    .erase = op_erase,
    .erase_chip = op_erase_chip,
    .program = op_program,
    .read = op_read,
    .crc = op_crc,
    .protect = op_protect,
    .start = op_start,
    .disconnect = op_disconnect,
};

/* ---- open and close ---- */

static int parse_spec(struct gdb *g, struct mf_target *t, const char *spec)
{
    size_t n = strlen(spec);
    if (n >= MF_GDB_SPEC_MAX) {
        TSAY(t, "gdb: target spec longer than %u characters", MF_GDB_SPEC_MAX - 1);
        return MF_EINVAL;
    }
    if (strncmp(spec, "gdb:tcp:", 8) == 0) {
        const char *rest = spec + 8, *colon = strrchr(rest, ':');
        if (!colon || !colon[1] || strlen(colon + 1) >= sizeof g->port) {
            TSAY(t, "gdb: '%s' is not gdb:tcp:HOST:PORT", spec);
            return MF_EINVAL;
        }
        for (const char *p = colon + 1; *p; p++) {
            if (*p < '0' || *p > '9') {
                TSAY(t, "gdb: '%s': the port must be a number", spec);
                return MF_EINVAL;
            }
        }
        size_t hl = (size_t)(colon - rest);
        if (hl >= 2 && rest[0] == '[' && rest[hl - 1] == ']') {
            rest++;
            hl -= 2;
        }
        if (hl == 0)
            snprintf(g->host, sizeof g->host, "127.0.0.1");
        else
            snprintf(g->host, sizeof g->host, "%.*s", (int)hl, rest);
        snprintf(g->port, sizeof g->port, "%s", colon + 1);
        g->transport = GDB_TCP;
        return 0;
    }
    if (strncmp(spec, "gdb:serial:", 11) == 0 && spec[11]) {
        const char *rest = spec + 11, *colon = strrchr(rest, ':');
        unsigned long baud = MF_GDB_BAUD;
        size_t dl = strlen(rest);
        if (colon && colon[1] >= '0' && colon[1] <= '9') {
            char *end;
            baud = strtoul(colon + 1, &end, 10);
            if (*end) {
                TSAY(t, "gdb: '%s': the baud rate must be a number", spec);
                return MF_EINVAL;
            }
            dl = (size_t)(colon - rest);
        }
        if (speed_of(baud, &g->baud)) {
            TSAY(t, "gdb: '%s': %lu baud is not supported (9600 to 2000000, the usual steps)", spec,
                 baud);
            return MF_EINVAL;
        }
        if (dl == 0) {
            TSAY(t, "gdb: '%s' names no serial device", spec);
            return MF_EINVAL;
        }
        snprintf(g->device, sizeof g->device, "%.*s", (int)dl, rest);
        g->transport = GDB_SERIAL;
        return 0;
    }
    TSAY(t, "gdb: '%s' is not gdb:tcp:HOST:PORT or gdb:serial:DEVICE[:BAUD]", spec);
    return MF_EINVAL;
}

static void gdb_free(struct gdb *g)
{
    if (!g)
        return;
    if (g->handed_fd >= 0)
        close(g->handed_fd);
    free(g->tx);
    free(g->rx);
    free(g->reply);
    free(g->xml);
    free(g->fill);
    free(g);
}

/* Allocates the context; `spec` NULL: the socket `fd` (mf_gdb_open_fd), taken over even on
 * failure. */
static int gdb_new(struct mf_target *target, const char *spec, int fd,
                   const struct mf_rsp_options *options)
{
    target->ops = NULL;
    target->context = NULL;
    target->error[0] = '\0';
    struct gdb *g = calloc(1, sizeof *g);
    if (!g) {
        if (!spec && fd >= 0)
            close(fd);
        TSAY(target, "gdb: out of memory");
        return MF_ENOMEM;
    }
    g->fd = -1;
    g->handed_fd = spec ? -1 : fd;
    int err = 0;
    if (spec)
        err = parse_spec(g, target, spec);
    else if (fd < 0) {
        TSAY(target, "gdb: no connection given");
        err = MF_EINVAL;
    } else
        g->transport = GDB_FD;
    if (err) {
        gdb_free(g);
        return err;
    }
    if (options)
        g->options = *options;
    g->tx_size = 1 + GDB_HEAD_MAX + MF_GDB_PACKET_MAX + MF_RSP_FRAME_EXTRA;
    g->tx = malloc(g->tx_size);
    g->rx = malloc(MF_GDB_PACKET_MAX);
    g->reply = malloc(GDB_REPLY_MAX + 1);
    g->xml = malloc(2 * GDB_XML_MAX);
    g->fill = malloc(GDB_FILL_MAX);
    if (!g->tx || !g->rx || !g->reply || !g->xml || !g->fill) {
        gdb_free(g);
        TSAY(target, "gdb: out of memory");
        return MF_ENOMEM;
    }
    target->ops = &gdb_ops;
    target->context = g;
    return 0;
}

int mf_gdb_open(struct mf_target *target, const char *spec, const struct mf_rsp_options *options)
{
    return gdb_new(target, spec ? spec : "", -1, options);
}

int mf_gdb_open_fd(struct mf_target *target, int fd, const struct mf_rsp_options *options)
{
    return gdb_new(target, NULL, fd, options);
}

void mf_gdb_close(struct mf_target *target)
{
    if (target->ops == &gdb_ops && target->context) {
        gdb_disconnect(target);
        gdb_free(target->context);
    }
    target->ops = NULL;
    target->context = NULL;
}

bool mf_gdb_is(const struct mf_target *target)
{
    return target->ops == &gdb_ops;
}

void mf_gdb_set_options(struct mf_target *target, const struct mf_rsp_options *options)
{
    if (!mf_gdb_is(target) || !target->context)
        return;
    struct gdb *g = target->context;
    if (options)
        g->options = *options;
    else
        mf_rsp_options_init(&g->options);
}

void mf_gdb_stats(const struct mf_target *target, struct mf_gdb_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    if (mf_gdb_is(target) && target->context)
        *stats = ((const struct gdb *)target->context)->stats;
}
