/* The protocol client of the commander: opens a connection by URL, frames commands with CR,
 * reassembles reply lines from whatever pieces the peer sends, and decides when a command's reply
 * is complete (docs/protocol.md). Nothing here prints: failures are described in r->error. */
#include "remote.h"

#include "mf_clock.h"
#include "mf_cp437.h"
#include "mf_err.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/un.h>
#include <termios.h>

/* How long mf_remote_reopen() waits between attempts while the programmer restarts. */
#define REOPEN_PAUSE_MS 100

static void remote_fail(struct mf_remote *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void remote_fail(struct mf_remote *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
}

static int errno_to_mf(int e)
{
    switch (e) {
    case ENOENT:
        return MF_ENOENT;
    case EACCES:
    case EPERM:
        return MF_EACCES;
    case ETIMEDOUT:
        return MF_ETIMEOUT;
    default:
        return MF_EIO;
    }
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

/* ---- opening ---- */

static int open_unix(struct mf_remote *r, const char *path)
{
    char fallback[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
    if (!*path) {
        if (mf_remote_default_socket(fallback, sizeof fallback)) {
            remote_fail(r, "cannot connect to %s: default socket path too long", r->url);
            return MF_ENAMETOOLONG;
        }
        path = fallback;
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        remote_fail(r, "cannot connect to %s: socket path longer than %zu bytes", r->url,
                    sizeof addr.sun_path - 1);
        return MF_ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        remote_fail(r, "cannot connect to %s: %s", r->url, strerror(errno));
        return MF_EIO;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        if (path == fallback)
            remote_fail(r, "cannot connect to %s (%s): %s", r->url, path, strerror(e));
        else
            remote_fail(r, "cannot connect to %s: %s", r->url, strerror(e));
        return errno_to_mf(e);
    }
    if (set_nonblocking(fd)) {
        remote_fail(r, "cannot connect to %s: %s", r->url, strerror(errno));
        close(fd);
        return MF_EIO;
    }
    r->fd = fd;
    return 0;
}

/* Waits for a non-blocking connect to finish. Returns 0 or an errno value. */
static int connect_wait(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    uint64_t deadline = mf_clock_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = mf_clock_ms();
        if (now >= deadline)
            return ETIMEDOUT;
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return ETIMEDOUT;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return errno;
        return err;
    }
}

static int open_tcp(struct mf_remote *r, const char *spec)
{
    char host[256];
    const char *port;
    if (spec[0] == '[') {
        const char *close_bracket = strchr(spec, ']');
        if (!close_bracket || (close_bracket[1] != '\0' && close_bracket[1] != ':')) {
            remote_fail(r, "bad device URL '%s': unterminated [IPv6 address]", r->url);
            return MF_EINVAL;
        }
        size_t n = (size_t)(close_bracket - spec - 1);
        if (n == 0 || n >= sizeof host) {
            remote_fail(r, "bad device URL '%s': bad host", r->url);
            return MF_EINVAL;
        }
        memcpy(host, spec + 1, n);
        host[n] = '\0';
        port = close_bracket[1] == ':' ? close_bracket + 2 : MF_REMOTE_TCP_DEFAULT_PORT;
    } else {
        const char *colon = strrchr(spec, ':');
        size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
        if (n == 0 || n >= sizeof host) {
            remote_fail(r, "bad device URL '%s': missing host (tcp:HOST:PORT)", r->url);
            return MF_EINVAL;
        }
        memcpy(host, spec, n);
        host[n] = '\0';
        if (strchr(host, ':')) {
            remote_fail(r, "bad device URL '%s': write an IPv6 address as [ADDRESS]:PORT", r->url);
            return MF_EINVAL;
        }
        port = colon ? colon + 1 : MF_REMOTE_TCP_DEFAULT_PORT;
    }
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0' || atoi(port) < 1 || atoi(port) > 65535) {
        remote_fail(r, "bad device URL '%s': port must be a number from 1 to 65535", r->url);
        return MF_EINVAL;
    }

    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &list);
    if (gai) {
        remote_fail(r, "cannot connect to %s: %s", r->url, gai_strerror(gai));
        return MF_EIO;
    }
    int last = ECONNREFUSED;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int e = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
            e = errno == EINPROGRESS ? connect_wait(fd, r->timeout_ms) : errno;
        if (e) {
            last = e;
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        freeaddrinfo(list);
        r->fd = fd;
        return 0;
    }
    freeaddrinfo(list);
    if (last == ETIMEDOUT)
        remote_fail(r, "cannot connect to %s: no answer within %d ms", r->url, r->timeout_ms);
    else
        remote_fail(r, "cannot connect to %s: %s", r->url, strerror(last));
    return errno_to_mf(last);
}

static speed_t baud_constant(unsigned long baud)
{
    static const struct {
        unsigned long baud;
        speed_t constant;
    } speeds[] = {
        {1200, B1200},     {2400, B2400},     {4800, B4800},     {9600, B9600},
        {19200, B19200},   {38400, B38400},   {57600, B57600},   {115200, B115200},
        {230400, B230400}, {460800, B460800}, {921600, B921600},
    };
    for (size_t i = 0; i < sizeof speeds / sizeof speeds[0]; i++) {
        if (speeds[i].baud == baud)
            return speeds[i].constant;
    }
    return B0;
}

static int serial_configure(struct mf_remote *r, int fd, unsigned long baud)
{
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0) {
        remote_fail(r, "cannot open %s: %s", r->url, strerror(errno));
        return MF_EIO;
    }
    cfmakeraw(&tio);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
    tio.c_cflag |= CS8 | CLOCAL | CREAD;
    tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    speed_t speed = baud_constant(baud);
    if (cfsetispeed(&tio, speed) < 0 || cfsetospeed(&tio, speed) < 0 ||
        tcsetattr(fd, TCSANOW, &tio) < 0) {
        remote_fail(r, "cannot set up %s: %s", r->url, strerror(errno));
        return MF_EIO;
    }
    return 0;
}

static int open_serial(struct mf_remote *r, const char *spec)
{
    char device[1024];
    unsigned long baud = MF_REMOTE_DEFAULT_BAUD;
    size_t n = strlen(spec);
    const char *colon = strrchr(spec, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        n = (size_t)(colon - spec);
        baud = strlen(colon + 1) <= 7 ? strtoul(colon + 1, NULL, 10) : 0;
        if (baud_constant(baud) == B0) {
            remote_fail(r,
                        "bad device URL '%s': unsupported speed %s (1200, 2400, 4800, 9600, "
                        "19200, 38400, 57600, 115200, 230400, 460800, 921600)",
                        r->url, colon + 1);
            return MF_EINVAL;
        }
    }
    if (n == 0 || n >= sizeof device) {
        remote_fail(r, "bad device URL '%s': missing device (serial:DEVICE[:BAUD])", r->url);
        return MF_EINVAL;
    }
    memcpy(device, spec, n);
    device[n] = '\0';
    int fd = open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        remote_fail(r, "cannot open %s: %s", r->url, strerror(e));
        return errno_to_mf(e);
    }
    if (!isatty(fd)) {
        close(fd);
        remote_fail(r, "cannot open %s: %s is not a serial device", r->url, device);
        return MF_EINVAL;
    }
    int err = serial_configure(r, fd, baud);
    if (err) {
        close(fd);
        return err;
    }
    (void)tcflush(fd, TCIOFLUSH);
    r->fd = fd;
    return 0;
}

static int remote_connect(struct mf_remote *r)
{
    r->fd = -1;
    r->peer_closed = false;
    r->in_len = 0;
    r->in_overflow = false;
    r->error[0] = '\0';
    const char *url = r->url;
    int err;
    if (strncmp(url, "unix:", 5) == 0) {
        r->kind = MF_REMOTE_UNIX;
        err = open_unix(r, url + 5);
    } else if (strncmp(url, "tcp:", 4) == 0) {
        r->kind = MF_REMOTE_TCP;
        err = open_tcp(r, url + 4);
    } else if (strncmp(url, "serial:", 7) == 0) {
        r->kind = MF_REMOTE_SERIAL;
        err = open_serial(r, url + 7);
    } else {
        remote_fail(r, "bad device URL '%s' (unix:PATH, tcp:HOST:PORT or serial:DEVICE[:BAUD])",
                    url);
        err = MF_EINVAL;
    }
    if (!err)
        r->connects++;
    return err;
}

int mf_remote_open(struct mf_remote *r, const char *url, int timeout_ms)
{
    volatile sig_atomic_t *interrupted = r->interrupted;
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->interrupted = interrupted;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : MF_REMOTE_DEFAULT_TIMEOUT_MS;
    if (strlen(url) >= sizeof r->url) {
        remote_fail(r, "device URL longer than %zu bytes", sizeof r->url - 1);
        return MF_EINVAL;
    }
    memcpy(r->url, url, strlen(url) + 1);
    return remote_connect(r);
}

void mf_remote_attach(struct mf_remote *r, int fd, enum mf_remote_kind kind, const char *url,
                      int timeout_ms)
{
    volatile sig_atomic_t *interrupted = r->interrupted;
    memset(r, 0, sizeof *r);
    r->interrupted = interrupted;
    r->fd = fd;
    r->connects = 1;
    r->kind = kind;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : MF_REMOTE_DEFAULT_TIMEOUT_MS;
    snprintf(r->url, sizeof r->url, "%s", url);
    (void)set_nonblocking(fd);
}

void mf_remote_close(struct mf_remote *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->in_len = 0;
    r->in_overflow = false;
}

int mf_remote_reopen(struct mf_remote *r)
{
    mf_remote_close(r);
    /* The restarted programmer starts with all slots selected. */
    r->selected = 0;
    r->selected_slot = 0;
    r->slots = 0;
    uint64_t deadline = mf_clock_ms() + (uint64_t)r->timeout_ms;
    for (;;) {
        int err = remote_connect(r);
        if (!err || err == MF_EINVAL || err == MF_ENAMETOOLONG || mf_clock_ms() >= deadline)
            return err;
        if (r->interrupted && *r->interrupted)
            return err;
        struct timespec pause = {0, REOPEN_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

int mf_remote_set_baud(struct mf_remote *r, unsigned long baud)
{
    if (r->kind != MF_REMOTE_SERIAL || r->fd < 0) {
        remote_fail(r, "%s is not a serial line", r->url);
        return MF_ENOTSUP;
    }
    if (baud_constant(baud) == B0) {
        remote_fail(r, "unsupported speed %lu", baud);
        return MF_EINVAL;
    }
    (void)tcdrain(r->fd);
    return serial_configure(r, r->fd, baud);
}

/* ---- line I/O ---- */

static int send_all(struct mf_remote *r, const char *data, size_t size)
{
    uint64_t deadline = mf_clock_ms() + (uint64_t)r->timeout_ms;
    size_t done = 0;
    while (done < size) {
        ssize_t n;
        if (r->kind == MF_REMOTE_SERIAL)
            n = write(r->fd, data + done, size - done);
        else
            n = send(r->fd, data + done, size - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t now = mf_clock_ms();
            if (now >= deadline) {
                remote_fail(r, "%s does not take what is sent (%d ms)", r->url, r->timeout_ms);
                return MF_ETIMEOUT;
            }
            struct pollfd p = {.fd = r->fd, .events = POLLOUT};
            (void)poll(&p, 1, (int)(deadline - now));
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            r->peer_closed = true;
        remote_fail(r, "cannot send to %s: %s", r->url,
                    n < 0 ? strerror(errno) : "nothing written");
        return MF_EIO;
    }
    return 0;
}

/* Takes one complete line out of the input buffer into `line` (control bytes and bytes that are
 * not UTF-8 as '?').
 * Returns 1 with a line, 0 when more input is needed, MF_EPROTO for an overlong line (whose
 * rest is then skipped up to its terminator). */
static int take_line(struct mf_remote *r, char *line)
{
    for (;;) {
        size_t end = 0;
        while (end < r->in_len && r->in[end] != '\r' && r->in[end] != '\n')
            end++;
        if (end == r->in_len) {
            if (r->in_overflow) {
                r->in_len = 0;
                return 0;
            }
            if (r->in_len > MF_REMOTE_REPLY_MAX) {
                r->in_overflow = true;
                r->in_len = 0;
                remote_fail(r, "reply line from %s longer than %d bytes", r->url,
                            MF_REMOTE_REPLY_MAX);
                return MF_EPROTO;
            }
            return 0;
        }
        bool skip = r->in_overflow || end == 0;
        if (!skip && end > MF_REMOTE_REPLY_MAX) {
            memmove(r->in, r->in + end + 1, r->in_len - end - 1);
            r->in_len -= end + 1;
            remote_fail(r, "reply line from %s longer than %d bytes", r->url, MF_REMOTE_REPLY_MAX);
            return MF_EPROTO;
        }
        if (!skip) {
            /* C0, DEL, the C1 controls written as UTF-8 (C2 80..C2 9F: CSI, OSC, ...) and every
             * byte that is not part of well-formed UTF-8 (a raw 9B is CSI to a terminal in an
             * 8-bit mode; the reference's names are code page 437) become '?' byte for byte: a
             * hostile programmer's names and texts are printed to a terminal, and no escape
             * sequence of theirs may reach it. */
            for (size_t i = 0, used; i < end; i += used) {
                unsigned code;
                uint32_t character;
                used = mf_utf8_control(r->in + i, end - i, &code);
                if (used) {
                    memset(line + i, '?', used);
                } else if ((used = mf_utf8_decode(r->in + i, end - i, &character)) != 0) {
                    memcpy(line + i, r->in + i, used);
                } else {
                    line[i] = '?';
                    used = 1;
                }
            }
            line[end] = '\0';
        }
        r->in_overflow = false;
        memmove(r->in, r->in + end + 1, r->in_len - end - 1);
        r->in_len -= end + 1;
        if (!skip)
            return 1;
    }
}

/* Reads what the peer has sent, waiting until `deadline` (monotonic ms). Returns 0 when bytes
 * arrived, MF_ETIMEOUT, MF_EIO (closed or failed), or MF_ECANCELED (interrupted). */
static int fill(struct mf_remote *r, uint64_t deadline)
{
    for (;;) {
        if (r->interrupted && *r->interrupted)
            return MF_ECANCELED;
        uint64_t now = mf_clock_ms();
        if (now >= deadline) {
            remote_fail(r, "no reply from %s for %d.%03d s", r->url, r->timeout_ms / 1000,
                        r->timeout_ms % 1000);
            return MF_ETIMEOUT;
        }
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            remote_fail(r, "cannot read from %s: %s", r->url, strerror(errno));
            return MF_EIO;
        }
        if (n == 0)
            continue;
        ssize_t got = read(r->fd, r->in + r->in_len, sizeof r->in - r->in_len);
        if (got > 0) {
            r->in_len += (size_t)got;
            return 0;
        }
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        r->peer_closed = true;
        if (got == 0)
            remote_fail(r, "connection to %s closed by the programmer", r->url);
        else
            remote_fail(r, "cannot read from %s: %s", r->url, strerror(errno));
        return MF_EIO;
    }
}

/* Drops what arrived before a command was sent: replies an earlier command left (a
 * #STATUS:READY after an #OK, the rest of an abandoned exchange). Notes a closed peer. */
static void drain(struct mf_remote *r)
{
    r->in_len = 0;
    r->in_overflow = false;
    for (int round = 0; round < 64; round++) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            return;
        ssize_t got = read(r->fd, r->in, sizeof r->in);
        if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
            r->peer_closed = true;
            return;
        }
    }
}

/* ---- parsers ---- */

/* Up to `max` hex digits (at least one). Returns the number of characters used, or 0. */
static size_t parse_hex(const char *s, size_t max, uint64_t *value)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < max && isxdigit((unsigned char)s[i])) {
        int c = (unsigned char)s[i];
        int d = isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
        v = (v << 4) | (uint64_t)d;
        i++;
    }
    if (i == 0 || isxdigit((unsigned char)s[i]))
        return 0;
    *value = v;
    return i;
}

/* A decimal slot number 1..MF_REMOTE_SLOTS_MAX. Returns the characters used, or 0. */
static size_t parse_slot(const char *s, int *slot)
{
    size_t i = 0;
    int v = 0;
    while (i < 3 && isdigit((unsigned char)s[i]))
        v = v * 10 + (s[i++] - '0');
    if (i == 0 || isdigit((unsigned char)s[i]) || v < 1 || v > MF_REMOTE_SLOTS_MAX)
        return 0;
    *slot = v;
    return i;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int mf_remote_error_code(const char *line, const char **text)
{
    const char *p = line;
    int slot;
    if (has_prefix(p, "#RESULT:")) {
        size_t n = parse_slot(p + 8, &slot);
        if (!n || p[8 + n] != ':')
            return -1;
        p += 8 + n + 1;
    } else if (has_prefix(p, "#NACK:")) {
        p += 6;
    } else if (*p != '#') {
        return -1;
    }
    if (*p == '#')
        p++;
    if (!has_prefix(p, "ERR") || !isdigit((unsigned char)p[3]) || !isdigit((unsigned char)p[4]) ||
        !isdigit((unsigned char)p[5]))
        return -1;
    if (p[6] != '\0' && p[6] != ':')
        return -1;
    int code = (p[3] - '0') * 100 + (p[4] - '0') * 10 + (p[5] - '0');
    if (text)
        *text = p[6] == ':' ? p + 7 : p + 6;
    return code;
}

int mf_remote_parse_status(const char *line, int *slot, char *state, size_t size)
{
    if (!has_prefix(line, "#STATUS:") || size == 0)
        return -1;
    const char *p = line + 8;
    *slot = 0;
    size_t n = parse_slot(p, slot);
    if (n && p[n] == ':')
        p += n + 1;
    else
        *slot = 0;
    size_t len = strlen(p);
    if (len == 0 || len >= size || strchr(p, ':'))
        return -1;
    memcpy(state, p, len + 1);
    return 0;
}

int mf_remote_parse_result(const char *line, int *slot, const char **result)
{
    if (!has_prefix(line, "#RESULT:"))
        return -1;
    size_t n = parse_slot(line + 8, slot);
    if (!n || line[8 + n] != ':' || line[9 + n] == '\0')
        return -1;
    *result = line + 9 + n;
    return 0;
}

int mf_remote_parse_progress(const char *line, struct mf_remote_progress *p)
{
    if (!has_prefix(line, "#PROGRESS:"))
        return -1;
    const char *s = line + 10;
    size_t n = parse_slot(s, &p->slot);
    if (!n || s[n] != ':')
        return -1;
    s += n + 1;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof p->state)
        return -1;
    memcpy(p->state, s, (size_t)(colon - s));
    p->state[colon - s] = '\0';
    s = colon + 1;
    n = parse_hex(s, 16, &p->done);
    if (!n || s[n] != ':')
        return -1;
    s += n + 1;
    n = parse_hex(s, 16, &p->total);
    if (!n || s[n] != '\0')
        return -1;
    return 0;
}

int mf_remote_parse_fread(const char *line, uint8_t *buf, size_t cap, size_t *count)
{
    if (!has_prefix(line, "#OK:"))
        return -1;
    const char *s = line + 4;
    uint64_t n;
    size_t used = parse_hex(s, 8, &n);
    if (!used || s[used] != ':' || n > cap)
        return -1;
    s += used + 1;
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t byte;
        char pair[3] = {s[2 * i], s[2 * i + 1], '\0'};
        if (parse_hex(pair, 2, &byte) != 2)
            return -1;
        buf[i] = (uint8_t)byte;
    }
    *count = (size_t)n;
    return 0;
}

int mf_remote_parse_size(const char *line, uint64_t *size)
{
    if (!has_prefix(line, "#OK:"))
        return -1;
    size_t used = parse_hex(line + 4, 16, size);
    return used && line[4 + used] == '\0' ? 0 : -1;
}

int mf_remote_parse_flist(const char *line, bool *is_dir, uint64_t *size, const char **name)
{
    if (has_prefix(line, "#FLIST:D:")) {
        *is_dir = true;
        *size = 0;
        *name = line + 9;
    } else if (has_prefix(line, "#FLIST:F:")) {
        size_t used = parse_hex(line + 9, 16, size);
        if (!used || line[9 + used] != ':')
            return -1;
        *is_dir = false;
        *name = line + 9 + used + 1;
    } else {
        return -1;
    }
    return **name ? 0 : -1;
}

int mf_remote_parse_selected(const char *line, int *count, int *single)
{
    if (!has_prefix(line, "#SELECTED:"))
        return -1;
    const char *s = line + 10;
    *count = 0;
    *single = 0;
    if (strcmp(s, "*") == 0 || *s == '\0')
        return 0;
    int n = 0, first = 0;
    for (int i = 0; i < MF_REMOTE_SLOTS_MAX; i++) {
        int slot;
        size_t used = parse_slot(s, &slot);
        if (!used)
            return -1;
        if (n == 0)
            first = slot;
        n++;
        s += used;
        if (*s == '\0') {
            *count = n;
            *single = n == 1 ? first : 0;
            return 0;
        }
        if (*s != ',')
            return -1;
        s++;
    }
    return -1;
}

/* ---- one exchange ---- */

enum reply_shape { SHAPE_FINAL, SHAPE_STATUS, SHAPE_RESULT, SHAPE_SELECTED };

/* Whether `command` is `keyword` (any case), alone or followed by a blank and its words. */
static bool keyword_is(const char *command, const char *keyword)
{
    size_t n = strlen(keyword);
    return strncasecmp(command, keyword, n) == 0 && (command[n] == '\0' || command[n] == ' ');
}

static enum reply_shape command_shape(const char *command)
{
    static const struct {
        const char *keyword;
        enum reply_shape shape;
    } shapes[] = {
        {"#STATUS", SHAPE_STATUS}, {"#RESULT", SHAPE_RESULT}, {"#SELMODULE", SHAPE_SELECTED}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (keyword_is(command, shapes[i].keyword))
            return shapes[i].shape;
    }
    return SHAPE_FINAL;
}

bool mf_remote_is_cycle(const char *command)
{
    static const char *const cycles[] = {"#AUTO", "#ERASE", "#PROGRAM", "#VERIFY", "#START"};
    for (size_t i = 0; i < sizeof cycles / sizeof cycles[0]; i++) {
        if (keyword_is(command, cycles[i]))
            return true;
    }
    return false;
}

/* Commands whose reply may take long while the programmer works: the cycles, and a restart
 * (which may move a large _SECURE). Their #STATUS and #PROGRESS lines keep the wait alive; for
 * any other command they do not, or a programmer that sends nothing else would hold it forever. */
static bool long_running(const char *command)
{
    return mf_remote_is_cycle(command) || keyword_is(command, "#REBOOT");
}

static bool is_ok_line(const char *line)
{
    return has_prefix(line, "#OK") &&
           (line[3] == '\0' || line[3] == ' ' || line[3] == ':' || line[3] == '(');
}

/* The facts a reply tells about slots, from whichever command it answers. */
static void note_slots(struct mf_remote *r, const char *line)
{
    int count, single;
    if (mf_remote_parse_selected(line, &count, &single) == 0) {
        r->selected = count;
        r->selected_slot = single;
        if (!count && r->slots)
            r->selected = r->slots;
        if (!single && r->selected == 1)
            r->selected_slot = 1;
    } else if (has_prefix(line, "#INFO:SLOTS=")) {
        int slots;
        size_t used = parse_slot(line + 12, &slots);
        if (used && line[12 + used] == '\0')
            r->slots = slots;
    }
}

/* When the selection is unknown, it is every slot: #INFO tells how many there are. */
static int learn_selection(struct mf_remote *r)
{
    struct mf_remote_reply *info = malloc(sizeof *info);
    if (!info) {
        remote_fail(r, "out of memory");
        return MF_ENOMEM;
    }
    int err = 0;
    if (!r->slots) {
        err = mf_remote_command(r, "#INFO", NULL, NULL, 0, info);
        if (!err && info->outcome != MF_REMOTE_OK)
            r->slots = 1; /* an #INFO-less peer: assume the reference's single unit */
    }
    free(info);
    if (err)
        return err;
    if (!r->slots)
        r->slots = 1;
    r->selected = r->slots;
    if (r->slots == 1)
        r->selected_slot = 1;
    return 0;
}

static void set_final(struct mf_remote_reply *reply, enum mf_remote_outcome outcome,
                      const char *line)
{
    reply->outcome = outcome;
    snprintf(reply->final, sizeof reply->final, "%s", line);
    if (outcome != MF_REMOTE_OK)
        reply->code = mf_remote_error_code(line, NULL);
}

int mf_remote_command(struct mf_remote *r, const char *command, mf_remote_line_fn on_line,
                      void *ctx, unsigned flags, struct mf_remote_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    reply->code = -1;
    reply->outcome = MF_REMOTE_ERR;
    size_t len = strlen(command);
    if (command[0] != '#' || len > MF_REMOTE_COMMAND_MAX) {
        remote_fail(r, "not a protocol command (a '#' and at most %d bytes): '%.40s'",
                    MF_REMOTE_COMMAND_MAX, command);
        return MF_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)command[i] < 0x20 || command[i] == 0x7f) {
            remote_fail(r, "command contains a control character at byte %zu", i);
            return MF_EINVAL;
        }
    }

    if (r->fd >= 0)
        drain(r);
    if (r->fd < 0 || r->peer_closed) {
        int err = mf_remote_reopen(r);
        if (err)
            return err;
    }
    enum reply_shape shape = command_shape(command);
    if ((shape == SHAPE_STATUS || shape == SHAPE_RESULT) && !r->selected) {
        int err = learn_selection(r);
        if (err)
            return err;
    }

    char *out = malloc(len + 2);
    char *line = malloc(MF_REMOTE_REPLY_MAX + 1);
    char *failure = malloc(MF_REMOTE_REPLY_MAX + 1);
    int err = 0;
    if (!out || !line || !failure) {
        remote_fail(r, "out of memory");
        err = MF_ENOMEM;
        goto cleanup;
    }
    memcpy(out, command, len);
    out[len] = '\r';
    err = send_all(r, out, len + 1);
    if (err)
        goto cleanup;

    bool acked = false, cancel_sent = false, have_final = false;
    int finals_needed = 1, counted = 0;
    uint64_t deadline = mf_clock_ms() + (uint64_t)r->timeout_ms;
    for (long lines = 0;; lines++) {
        if (lines >= MF_REMOTE_LINES_MAX) {
            remote_fail(r, "reply from %s does not end (more than %d lines)", r->url,
                        MF_REMOTE_LINES_MAX);
            err = MF_EPROTO;
            goto cleanup;
        }
        int got;
        while ((got = take_line(r, line)) == 0) {
            err = fill(r, deadline);
            if (err == MF_ECANCELED && (flags & MF_REMOTE_CANCEL_ON_INTERRUPT) && !cancel_sent) {
                *r->interrupted = 0;
                reply->interrupted = true;
                cancel_sent = true;
                finals_needed++;
                err = send_all(r, "#CANCEL\r", 8);
            } else if (err == MF_ECANCELED) {
                reply->interrupted = true;
                remote_fail(r, "interrupted while waiting for %s", r->url);
            }
            if (err)
                goto cleanup;
        }
        if (got < 0) {
            err = got;
            goto cleanup;
        }
        if (line[0] != '#') {
            if (on_line)
                on_line(ctx, line); /* noise or a greeting: it does not keep the wait alive */
            continue;
        }
        if (long_running(command) ||
            !(has_prefix(line, "#STATUS:") || has_prefix(line, "#PROGRESS:")))
            deadline = mf_clock_ms() + (uint64_t)r->timeout_ms;
        note_slots(r, line);

        int final = -1; /* outcome of this line when it ends the reply */
        if (strcmp(line, "#ACK") == 0) {
            acked = reply->acked = true;
            if ((flags & MF_REMOTE_PASS_ACK) && on_line)
                on_line(ctx, line);
            continue;
        }
        if (has_prefix(line, "#NACK") && (line[5] == '\0' || line[5] == ':')) {
            final = MF_REMOTE_NACK;
        } else if (!acked) {
            continue; /* a stale reply of an earlier command */
        } else if (shape == SHAPE_STATUS && has_prefix(line, "#STATUS:")) {
            int slot;
            char state[64];
            if ((mf_remote_parse_status(line, &slot, state, sizeof state) == 0 && slot == 0) ||
                ++counted >= r->selected) {
                final = MF_REMOTE_OK;
            } else {
                if (on_line)
                    on_line(ctx, line);
                continue;
            }
        } else if (shape == SHAPE_RESULT && has_prefix(line, "#RESULT:")) {
            if (++counted < r->selected) {
                if (on_line)
                    on_line(ctx, line);
                continue;
            }
            final = MF_REMOTE_OK;
        } else if (shape == SHAPE_SELECTED && has_prefix(line, "#SELECTED:")) {
            final = MF_REMOTE_OK;
        } else if (is_ok_line(line)) {
            final = MF_REMOTE_OK;
        } else if (mf_remote_error_code(line, NULL) >= 0 && !has_prefix(line, "#RESULT:")) {
            final = MF_REMOTE_ERR;
        } else if (strcmp(line, "#DONE") == 0) {
            final = reply->failed_slots ? MF_REMOTE_ERR : MF_REMOTE_OK;
        } else {
            if (has_prefix(line, "#RESULT:") && mf_remote_error_code(line, NULL) >= 0 &&
                reply->failed_slots++ == 0)
                memcpy(failure, line, strlen(line) + 1); /* names a multi-slot run's failure */
            if (on_line)
                on_line(ctx, line);
            continue;
        }

        /* A final line. After a #CANCEL two arrive (the cancel's and the command's); the
         * command's is the one that is not a bare "#OK". */
        if (!have_final || (cancel_sent && strcmp(reply->final, "#OK") == 0)) {
            bool slot_failed = final == MF_REMOTE_ERR && strcmp(line, "#DONE") == 0;
            set_final(reply, (enum mf_remote_outcome) final, slot_failed ? failure : line);
            have_final = true;
        }
        if (--finals_needed == 0)
            break;
        counted = 0;
    }
cleanup:
    free(out);
    free(line);
    free(failure);
    return err;
}
