/* The scripted fake GDB server (see mf_fakegdb.h): one thread, one client at a time, a memory
 * model of a few windows, replies built by hand. Written plainly and apart from core/mf_rsp. */
#include "mf_fakegdb.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define FAKE_PACKET_CAP (256u << 10) /* a request we can hold, whatever we offered */
#define FAKE_REPLY_CAP  (256u << 10)

struct mf_fakegdb {
    struct mf_fakegdb_config config;
    uint8_t *memory[MF_FAKEGDB_WINDOWS];
    pthread_t thread;
    pthread_mutex_t lock;
    int listen_fd; /* TCP, or -1 */
    int pty_fd;    /* pty master, or -1 */
    int wake[2];   /* a byte here stops the thread */
    char spec[128];
    struct mf_fakegdb_stats stats;
    char map_xml[2048];

    /* Of the current connection (the server thread only). */
    int fd;
    bool no_ack;
    bool running;
    bool stalled;
    bool flash_open;
    unsigned packets;
    bool nak_done, corrupt_done, expect_resend;
    unsigned fault_seen; /* packets that matched fault_prefix */
    uint8_t packet[FAKE_PACKET_CAP];
    size_t packet_length;
    uint8_t reply[FAKE_REPLY_CAP];
    size_t reply_length;
    uint8_t frame[2 * FAKE_REPLY_CAP + 8];
    size_t frame_length;
};

/* ---- helpers ---- */

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A hex number at *p (advanced); -1 when there is none. */
static int number(const char **p, const char *end, uint64_t *value)
{
    uint64_t v = 0;
    const char *s = *p;
    while (*p < end && hexv(**p) >= 0)
        v = v * 16 + (uint64_t)hexv(*(*p)++);
    if (*p == s)
        return -1;
    *value = v;
    return 0;
}

static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint32_t)p[i] << 24;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x80000000u) ? (crc << 1) ^ 0x04C11DB7u : crc << 1;
    }
    return crc;
}

static uint8_t *window(struct mf_fakegdb *f, uint64_t address, uint64_t length, bool *flash)
{
    for (unsigned i = 0; i < MF_FAKEGDB_WINDOWS; i++) {
        const struct mf_fakegdb_window *w = &f->config.windows[i];
        if (w->size && address >= w->base && address - w->base <= w->size &&
            length <= w->size - (address - w->base)) {
            if (flash)
                *flash = w->flash;
            return f->memory[i] + (address - w->base);
        }
    }
    return NULL;
}

static void set_reply(struct mf_fakegdb *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_reply(struct mf_fakegdb *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)f->reply, sizeof f->reply, fmt, ap);
    va_end(ap);
    f->reply_length = n < 0 ? 0 : (size_t)n;
}

static void reply_hex(struct mf_fakegdb *f, const uint8_t *data, size_t n)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        f->reply[2 * i] = (uint8_t)d[data[i] >> 4];
        f->reply[2 * i + 1] = (uint8_t)d[data[i] & 15];
    }
    f->reply_length = 2 * n;
}

/* Binary reply data: '#', '$', '}' and '*' escaped. */
static void reply_binary(struct mf_fakegdb *f, char prefix, const uint8_t *data, size_t n)
{
    size_t o = 0;
    f->reply[o++] = (uint8_t)prefix;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = data[i];
        if (c == '#' || c == '$' || c == '}' || c == '*') {
            f->reply[o++] = '}';
            f->reply[o++] = c ^ 0x20;
        } else {
            f->reply[o++] = c;
        }
    }
    f->reply_length = o;
}

static int write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n) {
        /* send: a client that went away must not end the test with SIGPIPE. */
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd q = {.fd = fd, .events = POLLOUT};
            poll(&q, 1, 100);
            continue;
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Frames the reply (run-length encoded when asked), with a wrong checksum when `corrupt`. */
static void frame_reply(struct mf_fakegdb *f, bool corrupt)
{
    size_t o = 0;
    f->frame[o++] = '$';
    unsigned sum = 0;
    for (size_t i = 0; i < f->reply_length;) {
        uint8_t c = f->reply[i];
        size_t run = 1;
        while (i + run < f->reply_length && f->reply[i + run] == c && run < 98)
            run++;
        /* 4 or more: "c*n" with n - 29 = run - 1; counts 6 and 7 would give '#' and '$'. */
        if (f->config.rle && run >= 4 && run - 1 + 29 != '#' && run - 1 + 29 != '$' && c != '*' &&
            c != '#' && c != '$') {
            uint8_t seq[3] = {c, '*', (uint8_t)(run - 1 + 29)};
            for (int k = 0; k < 3; k++) {
                f->frame[o++] = seq[k];
                sum += seq[k];
            }
            i += run;
        } else {
            f->frame[o++] = c;
            sum += c;
            i++;
        }
    }
    if (corrupt)
        sum += 1;
    o += (size_t)snprintf((char *)f->frame + o, 4, "#%02x", sum & 0xFFu);
    f->frame_length = o;
}

static int send_reply(struct mf_fakegdb *f)
{
    if (f->config.reply_delay_ms) {
        struct timespec ts = {f->config.reply_delay_ms / 1000,
                              (long)(f->config.reply_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    bool corrupt = f->config.corrupt_at && f->packets == f->config.corrupt_at && !f->corrupt_done;
    if (corrupt)
        f->corrupt_done = true;
    frame_reply(f, corrupt);
    int r = write_all(f->fd, f->frame, f->frame_length);
    if (corrupt) /* the good one is what a '-' brings */
        frame_reply(f, false);
    return r;
}

/* ---- the model ---- */

static void log_monitor(struct mf_fakegdb *f, const char *text)
{
    size_t n = strlen(f->stats.monitor_log);
    snprintf(f->stats.monitor_log + n, sizeof f->stats.monitor_log - n, "%s\n", text);
}

/* Unescapes binary request data in place; the new length. */
static size_t unescape(uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '}' && i + 1 < n)
            p[o++] = p[++i] ^ 0x20;
        else
            p[o++] = p[i];
    }
    return o;
}

static bool starts(const struct mf_fakegdb *f, const char *prefix)
{
    size_t n = strlen(prefix);
    return f->packet_length >= n && memcmp(f->packet, prefix, n) == 0;
}

static void xfer(struct mf_fakegdb *f, const char *text, const char *args, const char *end)
{
    uint64_t off, len;
    if (number(&args, end, &off) || args >= end || *args++ != ',' || number(&args, end, &len)) {
        set_reply(f, "E01");
        return;
    }
    size_t total = strlen(text);
    if (off >= total) {
        reply_binary(f, 'l', NULL, 0);
        return;
    }
    size_t n = total - off < len ? total - off : (size_t)len;
    reply_binary(f, off + n >= total ? 'l' : 'm', (const uint8_t *)text + off, n);
}

/* Sends `text` as console output (an 'O' packet); -1 when the client went away. */
static int send_output(struct mf_fakegdb *f, const char *text)
{
    reply_hex(f, (const uint8_t *)text, strlen(text));
    memmove(f->reply + 1, f->reply, f->reply_length);
    f->reply[0] = 'O';
    f->reply_length++;
    return send_reply(f);
}

/* Sleeps `ms` without holding the lock; false when the server is to stop. */
static bool pause_unlocked(struct mf_fakegdb *f, uint32_t ms)
{
    pthread_mutex_unlock(&f->lock);
    struct pollfd q = {.fd = f->wake[0], .events = POLLIN};
    int r = poll(&q, 1, (int)ms);
    pthread_mutex_lock(&f->lock);
    return r == 0;
}

/* A slow monitor command: its output in monitor_drips 'O' packets, monitor_drip_ms apart. False
 * when the client went away or the server is to stop. */
static bool drip(struct mf_fakegdb *f, const char *text)
{
    for (unsigned i = 0; i < f->config.monitor_drips; i++) {
        if (!pause_unlocked(f, f->config.monitor_drip_ms))
            return false;
        char out[64];
        snprintf(out, sizeof out, "%.20s: still busy (%u)\n", text, i + 1);
        if (send_output(f, out))
            return false;
    }
    return true;
}

/* Acks without end instead of a reply: up to 10 s, until the client goes away or the server is
 * to stop. */
static void ack_flood(struct mf_fakegdb *f)
{
    uint8_t acks[4096];
    memset(acks, '+', sizeof acks);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_mutex_unlock(&f->lock);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 10)
            break;
        struct pollfd q[2] = {{.fd = f->fd, .events = POLLOUT},
                              {.fd = f->wake[0], .events = POLLIN}};
        if (poll(q, 2, 100) < 0 || q[1].revents)
            break;
        if (q[0].revents & (POLLERR | POLLHUP))
            break;
        if ((q[0].revents & POLLOUT) && send(f->fd, acks, sizeof acks, MSG_NOSIGNAL) < 0 &&
            errno != EAGAIN && errno != EINTR)
            break;
    }
    pthread_mutex_lock(&f->lock);
}

/* Handles f->packet, leaving the reply in f->reply; false: no reply at all (continue). */
static bool handle(struct mf_fakegdb *f)
{
    const char *p = (const char *)f->packet, *end = p + f->packet_length;
    uint64_t a, n;
    for (unsigned i = 0; i < MF_FAKEGDB_SCRIPTS; i++) {
        const struct mf_fakegdb_script *s = &f->config.scripts[i];
        if (s->prefix && starts(f, s->prefix)) {
            set_reply(f, "%s", s->reply);
            return true;
        }
    }
    f->reply_length = 0;
    if (starts(f, "qSupported")) {
        char features[256] = "";
        if (f->config.offer_packet_size)
            snprintf(features, sizeof features, "PacketSize=%x;", f->config.packet_size);
        if (f->config.no_ack)
            strcat(features, "QStartNoAckMode+;");
        if (f->config.memory_map)
            strcat(features, "qXfer:memory-map:read+;");
        if (f->config.target_xml)
            strcat(features, "qXfer:features:read+;");
        strcat(features, "vContSupported+;qRelocInsn-");
        set_reply(f, "%s", features);
    } else if (starts(f, "QStartNoAckMode")) {
        if (f->config.no_ack) {
            f->no_ack = true;
            f->stats.no_ack++;
            set_reply(f, "OK");
        }
    } else if (f->packet_length == 1 && p[0] == '?') {
        set_reply(f, "T05thread:01;");
    } else if (starts(f, "qXfer:memory-map:read::") && f->config.memory_map) {
        xfer(f, f->map_xml, p + 23, end);
    } else if (starts(f, "qXfer:features:read:") && f->config.target_xml) {
        const char *annex = p + 20, *colon = memchr(annex, ':', (size_t)(end - annex));
        if (!colon) {
            set_reply(f, "E01");
        } else if ((size_t)(colon - annex) == 10 && memcmp(annex, "target.xml", 10) == 0) {
            xfer(f, f->config.target_xml, colon + 1, end);
        } else if (f->config.include_name &&
                   (size_t)(colon - annex) == strlen(f->config.include_name) &&
                   memcmp(annex, f->config.include_name, (size_t)(colon - annex)) == 0) {
            xfer(f, f->config.include_xml, colon + 1, end);
        } else {
            set_reply(f, "E00");
        }
    } else if (p[0] == 'm') {
        p++;
        uint8_t *mem;
        if (number(&p, end, &a) || p >= end || *p++ != ',' || number(&p, end, &n)) {
            set_reply(f, "E01");
        } else if (!(mem = window(f, a, n, NULL)) || 2 * n + 4 > f->config.packet_size) {
            set_reply(f, "E0E");
        } else {
            f->stats.m_reads++;
            if (f->flash_open)
                f->stats.reads_in_flash_sequence++;
            if (f->config.short_reads && n > f->config.short_reads)
                n = f->config.short_reads;
            reply_hex(f, mem, (size_t)n);
        }
    } else if (p[0] == 'M' || p[0] == 'X') {
        bool binary = p[0] == 'X';
        p++;
        if (binary && f->config.refuse_x)
            return true;
        uint8_t *mem;
        if (number(&p, end, &a) || p >= end || *p++ != ',' || number(&p, end, &n) || p >= end ||
            *p++ != ':') {
            set_reply(f, "E01");
            return true;
        }
        uint8_t *data = (uint8_t *)p;
        size_t have = (size_t)(end - p);
        if (binary)
            have = unescape(data, have);
        else if (have % 2 == 0) {
            for (size_t i = 0; i < have / 2; i++)
                data[i] = (uint8_t)(hexv(data[2 * i]) << 4 | hexv(data[2 * i + 1]));
            have /= 2;
        }
        if (have != n || !(mem = window(f, a, n, NULL))) {
            set_reply(f, "E02");
            return true;
        }
        memcpy(mem, data, (size_t)n);
        if (binary)
            f->stats.x_writes++;
        else
            f->stats.m_writes++;
        set_reply(f, "OK");
    } else if (starts(f, "vFlashErase:") && f->config.memory_map) {
        p += 12;
        bool flash = false;
        uint8_t *mem;
        uint32_t block = f->config.flash_block;
        if (number(&p, end, &a) || p >= end || *p++ != ',' || number(&p, end, &n) ||
            !(mem = window(f, a, n, &flash)) || !flash || a % block || n % block) {
            set_reply(f, "E03");
            return true;
        }
        memset(mem, 0xFF, (size_t)n);
        f->flash_open = true;
        f->stats.flash_erases++;
        set_reply(f, "OK");
    } else if (starts(f, "vFlashWrite:") && f->config.memory_map) {
        p += 12;
        bool flash = false;
        uint8_t *mem;
        if (number(&p, end, &a) || p >= end || *p++ != ':') {
            set_reply(f, "E01");
            return true;
        }
        uint8_t *data = (uint8_t *)p;
        size_t have = unescape(data, (size_t)(end - p));
        if (!(mem = window(f, a, have, &flash)) || !flash) {
            set_reply(f, "E.memtype");
            return true;
        }
        for (size_t i = 0; i < have; i++) {
            if ((mem[i] & data[i]) != data[i])
                f->stats.nor_violations++;
            mem[i] &= data[i];
        }
        f->flash_open = true;
        f->stats.flash_writes++;
        set_reply(f, "OK");
    } else if (starts(f, "vFlashDone") && f->config.memory_map) {
        f->flash_open = false;
        f->stats.flash_done++;
        set_reply(f, "OK");
    } else if (starts(f, "qCRC:") && f->config.crc) {
        p += 5;
        uint8_t *mem;
        if (number(&p, end, &a) || p >= end || *p++ != ',' || number(&p, end, &n) ||
            !(mem = window(f, a, n, NULL))) {
            set_reply(f, "E01");
            return true;
        }
        if (f->flash_open)
            f->stats.reads_in_flash_sequence++;
        f->stats.crc++;
        set_reply(f, "C%08x", crc_bitwise(0xFFFFFFFFu, mem, (size_t)n));
    } else if (starts(f, "qRcmd,") && f->config.monitor) {
        char text[512];
        size_t k = 0;
        for (p += 6; p + 1 < end && k + 1 < sizeof text; p += 2)
            text[k++] = (char)(hexv(p[0]) << 4 | hexv(p[1]));
        text[k] = '\0';
        f->stats.monitor++;
        log_monitor(f, text);
        if (f->config.monitor_drips && !drip(f, text))
            return false;
        /* Console output first, as servers do, then the result. */
        char out[600];
        snprintf(out, sizeof out, "%s: %s\n", strncmp(text, "fail", 4) ? "ok" : "boom", text);
        if (send_output(f, out))
            return false;
        set_reply(f, "%s", strncmp(text, "fail", 4) ? "OK" : "E01");
    } else if (p[0] == 'P') {
        if (f->config.refuse_p)
            return true;
        p++;
        uint64_t reg;
        uint8_t v[4];
        if (number(&p, end, &reg) || p >= end || *p++ != '=' || end - p != 8) {
            set_reply(f, "E01");
            return true;
        }
        for (int i = 0; i < 4; i++)
            v[i] = (uint8_t)(hexv(p[2 * i]) << 4 | hexv(p[2 * i + 1]));
        uint32_t value =
            (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
        f->stats.registers_written++;
        if (reg == 13)
            f->stats.sp = value;
        else if (reg == 15)
            f->stats.pc = value;
        else if (reg == 25)
            f->stats.xpsr = value;
        set_reply(f, "OK");
    } else if (f->packet_length == 1 && p[0] == 'g') {
        /* r0..r15 and xPSR, as QEMU sends them once the client read its description. */
        uint8_t regs[17 * 4] = {0};
        const uint32_t model[3][2] = {{13, f->stats.sp}, {15, f->stats.pc}, {16, f->stats.xpsr}};
        for (int r = 0; r < 3; r++) {
            for (int b = 0; b < 4; b++)
                regs[model[r][0] * 4 + (uint32_t)b] = (uint8_t)(model[r][1] >> (8 * b));
        }
        reply_hex(f, regs, sizeof regs);
    } else if (p[0] == 'G') {
        if (f->packet_length != 1 + 17 * 8) {
            set_reply(f, "E01");
            return true;
        }
        uint8_t v[17 * 4];
        for (size_t i = 0; i < sizeof v; i++)
            v[i] = (uint8_t)(hexv(p[1 + 2 * i]) << 4 | hexv(p[2 + 2 * i]));
        f->stats.sp =
            (uint32_t)v[52] | (uint32_t)v[53] << 8 | (uint32_t)v[54] << 16 | (uint32_t)v[55] << 24;
        f->stats.pc =
            (uint32_t)v[60] | (uint32_t)v[61] << 8 | (uint32_t)v[62] << 16 | (uint32_t)v[63] << 24;
        f->stats.xpsr =
            (uint32_t)v[64] | (uint32_t)v[65] << 8 | (uint32_t)v[66] << 16 | (uint32_t)v[67] << 24;
        f->stats.g_writes++;
        set_reply(f, "OK");
    } else if ((f->packet_length == 1 && p[0] == 'c') || starts(f, "vCont;c")) {
        f->stats.continues++;
        f->running = true;
        return false;
    } else if (starts(f, "vCont?")) {
        set_reply(f, "vCont;c;C;s;S");
    } else if (starts(f, "vAttach;")) {
        f->stats.attaches++;
        set_reply(f, "T05");
    } else if (f->packet_length == 1 && p[0] == 'D') {
        f->stats.detaches++;
        set_reply(f, "OK");
    }
    return true;
}

/* ---- the connection ---- */

static void noise(struct mf_fakegdb *f, size_t n)
{
    uint8_t junk[1024];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)("garbage!\r\n~@"[i % 13]);
    while (n) {
        size_t k = n < sizeof junk ? n : sizeof junk;
        if (write_all(f->fd, junk, k))
            return;
        n -= k;
    }
}

/* A complete, well-checksummed packet arrived: reacts. Returns -1 to end the connection. */
static int on_packet(struct mf_fakegdb *f, size_t frame_size)
{
    pthread_mutex_lock(&f->lock);
    if (f->running) { /* a running target hears nothing but an interrupt (as a probe) */
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    f->packets++;
    f->stats.packets++;
    if (f->expect_resend) {
        f->stats.requests_resent++;
        f->expect_resend = false;
    }
    if (frame_size > f->stats.largest)
        f->stats.largest = (uint32_t)frame_size;
    const struct mf_fakegdb_config *c = &f->config;
    int result = 0;
    enum mf_fakegdb_fault fault = MF_FAKEGDB_NO_FAULT;
    if (c->fault && c->fault_prefix && !f->stalled && starts(f, c->fault_prefix) &&
        ++f->fault_seen > c->fault_skip) {
        fault = c->fault;
        f->stats.faults++;
    }
    if ((c->stall_at && f->packets >= c->stall_at) || fault == MF_FAKEGDB_STALL)
        f->stalled = true;
    if (f->stalled)
        goto out;
    if ((c->close_at && f->packets == c->close_at) || fault == MF_FAKEGDB_CLOSE) {
        result = -1;
        goto out;
    }
    if (c->nak_at && f->packets == c->nak_at && !f->nak_done && !f->no_ack) {
        f->nak_done = true;
        f->expect_resend = true;
        f->packets--; /* the resend is the same packet */
        write_all(f->fd, "-", 1);
        goto out;
    }
    if (!f->no_ack && write_all(f->fd, "+", 1)) {
        result = -1;
        goto out;
    }
    if ((c->flood_at && f->packets == c->flood_at) || fault == MF_FAKEGDB_FLOOD) {
        noise(f, 100u << 10);
        goto out;
    }
    if (c->ack_flood_at && f->packets == c->ack_flood_at) {
        ack_flood(f);
        goto out;
    }
    if (c->garbage_at && f->packets == c->garbage_at)
        noise(f, 300);
    if (frame_size > c->packet_size) {
        f->stats.oversize++;
        set_reply(f, "E01");
    } else if ((c->nonsense_at && f->packets == c->nonsense_at) || fault == MF_FAKEGDB_NONSENSE) {
        set_reply(f, "Zzz?");
    } else if (!handle(f)) {
        goto out;
    }
    if (send_reply(f))
        result = -1;
out:
    pthread_mutex_unlock(&f->lock);
    return result;
}

enum { RX_IDLE, RX_DATA, RX_SUM1, RX_SUM2 };

/* Serves one connection; returns when it ends or the server stops (true). */
static bool serve(struct mf_fakegdb *f)
{
    /* A serial probe keeps running what it ran when the line was closed. */
    if (f->pty_fd < 0)
        f->running = false;
    f->no_ack = f->stalled = f->flash_open = false;
    f->packets = f->fault_seen = 0;
    f->nak_done = f->corrupt_done = f->expect_resend = false;
    f->frame_length = 0;
    if (f->config.stop_on_connect && f->pty_fd < 0) {
        pthread_mutex_lock(&f->lock);
        set_reply(f, "T02thread:01;");
        send_reply(f);
        pthread_mutex_unlock(&f->lock);
    }
    int state = RX_IDLE;
    unsigned sum = 0, check = 0;
    size_t frame_size = 0;
    uint8_t buf[4096];
    for (;;) {
        struct pollfd q[2] = {{.fd = f->fd, .events = POLLIN},
                              {.fd = f->wake[0], .events = POLLIN}};
        if (poll(q, 2, -1) < 0 && errno != EINTR)
            return true;
        if (q[1].revents)
            return true;
        if (!q[0].revents)
            continue;
        ssize_t got = read(f->fd, buf, sizeof buf);
        if (got <= 0) {
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            return false;
        }
        for (ssize_t i = 0; i < got; i++) {
            uint8_t ch = buf[i];
            switch (state) {
            case RX_IDLE:
                if (ch == '$') {
                    state = RX_DATA;
                    f->packet_length = 0;
                    sum = 0;
                } else if (ch == '+') {
                    pthread_mutex_lock(&f->lock);
                    f->stats.acks++;
                    pthread_mutex_unlock(&f->lock);
                } else if (ch == '-') {
                    pthread_mutex_lock(&f->lock);
                    f->stats.naks++;
                    if (f->frame_length && !f->stalled) {
                        f->stats.resent++;
                        write_all(f->fd, f->frame, f->frame_length);
                    }
                    pthread_mutex_unlock(&f->lock);
                } else if (ch == 0x03) {
                    pthread_mutex_lock(&f->lock);
                    f->stats.interrupts++;
                    if (f->running) {
                        f->running = false;
                        set_reply(f, "T02thread:01;");
                        send_reply(f);
                    }
                    pthread_mutex_unlock(&f->lock);
                }
                break;
            case RX_DATA:
                if (ch == '#') {
                    state = RX_SUM1;
                } else {
                    sum += ch;
                    if (f->packet_length < sizeof f->packet - 1)
                        f->packet[f->packet_length++] = ch;
                }
                break;
            case RX_SUM1:
                check = (unsigned)(hexv(ch) << 4);
                state = hexv(ch) < 0 ? RX_IDLE : RX_SUM2;
                break;
            default:
                state = RX_IDLE;
                frame_size = f->packet_length + 4;
                f->packet[f->packet_length] = '\0';
                if (hexv(ch) < 0 || (check | (unsigned)hexv(ch)) != (sum & 0xFFu)) {
                    pthread_mutex_lock(&f->lock);
                    f->stats.bad_checksums++;
                    pthread_mutex_unlock(&f->lock);
                    if (!f->no_ack)
                        write_all(f->fd, "-", 1);
                    break;
                }
                if (on_packet(f, frame_size))
                    return false;
                break;
            }
        }
    }
}

static void *fake_main(void *arg)
{
    struct mf_fakegdb *f = arg;
    if (f->pty_fd >= 0) {
        /* A serial line has no connections: a session ends when the client closes its side
         * (reads fail until it opens it again). */
        f->fd = f->pty_fd;
        for (;;) {
            pthread_mutex_lock(&f->lock);
            f->stats.connections++;
            pthread_mutex_unlock(&f->lock);
            bool stop = serve(f);
            pthread_mutex_lock(&f->lock);
            f->stats.closed++;
            pthread_mutex_unlock(&f->lock);
            if (stop)
                return NULL;
            for (;;) {
                struct pollfd q = {.fd = f->wake[0], .events = POLLIN};
                if (poll(&q, 1, 10) > 0)
                    return NULL;
                struct pollfd m = {.fd = f->pty_fd, .events = POLLIN};
                if (poll(&m, 1, 0) > 0 && !(m.revents & POLLHUP))
                    break;
            }
        }
    }
    for (;;) {
        struct pollfd q[2] = {{.fd = f->listen_fd, .events = POLLIN},
                              {.fd = f->wake[0], .events = POLLIN}};
        if (poll(q, 2, -1) < 0 && errno != EINTR)
            return NULL;
        if (q[1].revents)
            return NULL;
        if (!q[0].revents)
            continue;
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        /* The '+' and the reply are two writes: without this, Nagle holds the reply back until
         * the client's delayed ACK (40 ms per exchange in acknowledged mode). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        f->fd = fd;
        pthread_mutex_lock(&f->lock);
        f->stats.connections++;
        pthread_mutex_unlock(&f->lock);
        bool stop = serve(f);
        close(fd);
        f->fd = -1;
        pthread_mutex_lock(&f->lock);
        f->stats.closed++;
        pthread_mutex_unlock(&f->lock);
        if (stop)
            return NULL;
    }
}

/* ---- life cycle ---- */

static void make_map(struct mf_fakegdb *f)
{
    size_t n = (size_t)snprintf(f->map_xml, sizeof f->map_xml,
                                "<?xml version=\"1.0\"?>\n<!DOCTYPE memory-map PUBLIC "
                                "\"+//IDN gnu.org//DTD GDB Memory Map V1.0//EN\" "
                                "\"http://sourceware.org/gdb/gdb-memory-map.dtd\">\n"
                                "<memory-map>\n");
    for (unsigned i = 0; i < MF_FAKEGDB_WINDOWS; i++) {
        const struct mf_fakegdb_window *w = &f->config.windows[i];
        if (!w->size)
            continue;
        if (w->flash)
            n += (size_t)snprintf(f->map_xml + n, sizeof f->map_xml - n,
                                  "  <memory type=\"flash\" start=\"0x%llx\" length=\"0x%x\">\n"
                                  "    <property name=\"blocksize\">0x%x</property>\n"
                                  "  </memory>\n",
                                  (unsigned long long)w->base, w->size, f->config.flash_block);
        else
            n += (size_t)snprintf(f->map_xml + n, sizeof f->map_xml - n,
                                  "  <memory type=\"ram\" start=\"0x%llx\" length=\"0x%x\"/>\n",
                                  (unsigned long long)w->base, w->size);
    }
    snprintf(f->map_xml + n, sizeof f->map_xml - n, "</memory-map>\n");
}

struct mf_fakegdb *mf_fakegdb_start(const struct mf_fakegdb_config *config, bool pty)
{
    struct mf_fakegdb *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->config = *config;
    if (!f->config.packet_size)
        f->config.packet_size = 0x1000;
    if (!f->config.flash_block)
        f->config.flash_block = 1024;
    f->listen_fd = f->pty_fd = f->fd = -1;
    f->wake[0] = f->wake[1] = -1;
    for (unsigned i = 0; i < MF_FAKEGDB_WINDOWS; i++) {
        if (!config->windows[i].size)
            continue;
        f->memory[i] = malloc(config->windows[i].size);
        if (!f->memory[i])
            goto fail;
        memset(f->memory[i], config->windows[i].initial, config->windows[i].size);
    }
    make_map(f);
    pthread_mutex_init(&f->lock, NULL);
    if (pipe(f->wake) != 0)
        goto fail;
    if (pty) {
        f->pty_fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (f->pty_fd < 0 || grantpt(f->pty_fd) || unlockpt(f->pty_fd)) {
            perror("fakegdb: pty");
            goto fail;
        }
        struct termios tio;
        if (tcgetattr(f->pty_fd, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(f->pty_fd, TCSANOW, &tio);
        }
        snprintf(f->spec, sizeof f->spec, "gdb:serial:%s", ptsname(f->pty_fd));
    } else {
        union {
            struct sockaddr any;
            struct sockaddr_in v4;
            struct sockaddr_in6 v6;
        } sa = {0};
        socklen_t len = config->ipv6 ? sizeof sa.v6 : sizeof sa.v4;
        if (config->ipv6)
            sa.v6 =
                (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        else
            sa.v4 =
                (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7F000001)};
        f->listen_fd = socket(sa.any.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (f->listen_fd < 0 || bind(f->listen_fd, &sa.any, len) || listen(f->listen_fd, 4) ||
            getsockname(f->listen_fd, &sa.any, &len)) {
            perror("fakegdb: listen");
            goto fail;
        }
        if (config->ipv6)
            snprintf(f->spec, sizeof f->spec, "gdb:tcp:[::1]:%u", ntohs(sa.v6.sin6_port));
        else
            snprintf(f->spec, sizeof f->spec, "gdb:tcp:127.0.0.1:%u", ntohs(sa.v4.sin_port));
    }
    if (pthread_create(&f->thread, NULL, fake_main, f) != 0)
        goto fail;
    return f;
fail:
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    if (f->pty_fd >= 0)
        close(f->pty_fd);
    if (f->wake[0] >= 0) {
        close(f->wake[0]);
        close(f->wake[1]);
    }
    for (unsigned i = 0; i < MF_FAKEGDB_WINDOWS; i++)
        free(f->memory[i]);
    free(f);
    return NULL;
}

void mf_fakegdb_stop(struct mf_fakegdb *f)
{
    if (!f)
        return;
    write_all(f->wake[1], "x", 1);
    pthread_join(f->thread, NULL);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    if (f->pty_fd >= 0)
        close(f->pty_fd);
    close(f->wake[0]);
    close(f->wake[1]);
    pthread_mutex_destroy(&f->lock);
    for (unsigned i = 0; i < MF_FAKEGDB_WINDOWS; i++)
        free(f->memory[i]);
    free(f);
}

const char *mf_fakegdb_spec(const struct mf_fakegdb *f)
{
    return f->spec;
}

int mf_fakegdb_read(struct mf_fakegdb *f, uint64_t address, void *out, size_t length)
{
    pthread_mutex_lock(&f->lock);
    uint8_t *mem = window(f, address, length, NULL);
    if (mem)
        memcpy(out, mem, length);
    pthread_mutex_unlock(&f->lock);
    return mem ? 0 : -1;
}

int mf_fakegdb_write(struct mf_fakegdb *f, uint64_t address, const void *data, size_t length)
{
    pthread_mutex_lock(&f->lock);
    uint8_t *mem = window(f, address, length, NULL);
    if (mem)
        memcpy(mem, data, length);
    pthread_mutex_unlock(&f->lock);
    return mem ? 0 : -1;
}

void mf_fakegdb_stats(struct mf_fakegdb *f, struct mf_fakegdb_stats *stats)
{
    pthread_mutex_lock(&f->lock);
    *stats = f->stats;
    pthread_mutex_unlock(&f->lock);
}

int mf_fakegdb_wait_closed(struct mf_fakegdb *f, unsigned closed)
{
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&f->lock);
        bool done = f->stats.closed >= closed;
        pthread_mutex_unlock(&f->lock);
        if (done)
            return 0;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

void mf_fakegdb_fault_at(struct mf_fakegdb *f, const char *prefix, unsigned skip,
                         enum mf_fakegdb_fault fault)
{
    pthread_mutex_lock(&f->lock);
    f->config.fault_prefix = prefix;
    f->config.fault_skip = skip;
    f->config.fault = fault;
    pthread_mutex_unlock(&f->lock);
}

void mf_fakegdb_faults(struct mf_fakegdb *f, unsigned stall_at, unsigned close_at)
{
    pthread_mutex_lock(&f->lock);
    f->config.stall_at = stall_at;
    f->config.close_at = close_at;
    pthread_mutex_unlock(&f->lock);
}
