/* NBD server threads and sockets (see mf_nbdserver.h). The protocol is mf_nbd's; this file only
 * moves bytes between sockets and sessions. Ownership: the accept thread creates clients and
 * reaps the finished ones; a client thread never closes its own socket (it shuts it down), so a
 * descriptor is closed exactly once, after its thread was joined, and stop can always reach it. */
#include "mf_nbdserver.h"

#include "mf_err.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define INPUT_SIZE (64u << 10) /* bytes taken from the socket per recv */
#define BACKOFF_MS 100         /* pause of the accept loop when out of descriptors */
#define PEER_MAX   80u

struct mf_nbdserver_client {
    struct mf_nbdserver_client *next;
    struct mf_nbdserver *server;
    unsigned long id;
    int fd;
    pthread_t thread;
    bool finished; /* under server->mutex */
    char peer[PEER_MAX];
    struct mf_nbd session;
    uint8_t *buffer; /* the session's working memory */
    uint8_t input[INPUT_SIZE];
};

/* ---- log ---- */

static void server_log(struct mf_nbdserver *s, enum mf_nbdserver_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void server_log(struct mf_nbdserver *s, enum mf_nbdserver_level level, const char *fmt, ...)
{
    if (!s->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->log_mutex);
    s->log(s->log_context, level, line);
    pthread_mutex_unlock(&s->log_mutex);
}

static int start_fail(struct mf_nbdserver *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int start_fail(struct mf_nbdserver *s, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->message, sizeof s->message, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- threads ---- */

/* Creates a thread with every asynchronous signal blocked, so that SIGTERM and friends keep
 * going to the daemon's own threads and never interrupt ours. */
static int spawn(pthread_t *thread, void *(*main_fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, main_fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void wake(struct mf_nbdserver *s)
{
    const uint8_t byte = 1;
    ssize_t n;
    do
        n = write(s->wake[1], &byte, 1);
    while (n < 0 && errno == EINTR);
    /* A full pipe (EAGAIN) already guarantees a wake-up. */
}

static bool stopping(struct mf_nbdserver *s)
{
    pthread_mutex_lock(&s->mutex);
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->mutex);
    return stop;
}

/* ---- one client ---- */

static int client_send(void *context, const void *data, size_t size)
{
    struct mf_nbdserver_client *c = context;
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = send(c->fd, p, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return MF_EIO;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

static void set_receive_timeout(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000u),
                         .tv_usec = (suseconds_t)(ms % 1000u) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void *client_main(void *arg)
{
    struct mf_nbdserver_client *c = arg;
    struct mf_nbdserver *s = c->server;
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_receive_timeout(c->fd, s->handshake_timeout_ms);
    server_log(s, MF_NBDSERVER_INFO, "nbd: client %lu (%s) connected", c->id, c->peer);

    const char *why = NULL; /* why the loop ended when the session did not say */
    char system_error[96] = "";
    int err = mf_nbd_start(&c->session);
    while (!err && !mf_nbd_closed(&c->session)) {
        ssize_t n = recv(c->fd, c->input, sizeof c->input, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            why = "the client closed the connection";
            break;
        }
        if (n < 0) {
            if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
                mf_nbd_phase(&c->session) == MF_NBD_PHASE_HANDSHAKE) {
                snprintf(system_error, sizeof system_error,
                         "no export chosen within %u ms of connecting", s->handshake_timeout_ms);
            } else {
                snprintf(system_error, sizeof system_error, "receive failed: %s", strerror(errno));
            }
            why = system_error;
            break;
        }
        bool was_handshake = mf_nbd_phase(&c->session) == MF_NBD_PHASE_HANDSHAKE;
        err = mf_nbd_input(&c->session, c->input, (size_t)n);
        if (was_handshake && mf_nbd_phase(&c->session) == MF_NBD_PHASE_TRANSMISSION) {
            set_receive_timeout(c->fd, 0); /* an idle mounted device may wait for hours */
            server_log(s, MF_NBDSERVER_INFO,
                       "nbd: client %lu (%s) uses the export (%" PRIu64 " bytes, %s)", c->id,
                       c->peer, mf_nbd_export_size(&c->session),
                       s->read_only ? "read-only" : "read-write");
        }
    }

    const struct mf_nbd_stats *st = mf_nbd_stats(&c->session);
    char summary[160];
    snprintf(summary, sizeof summary,
             "%" PRIu64 " requests (%" PRIu64 " refused), %" PRIu64 " bytes read, %" PRIu64
             " written, %" PRIu64 " trimmed",
             st->requests, st->error_replies, st->bytes_read, st->bytes_written, st->bytes_trimmed);
    if (stopping(s)) {
        server_log(s, MF_NBDSERVER_INFO, "nbd: client %lu (%s) disconnected: server stopping; %s",
                   c->id, c->peer, summary);
    } else if (err) {
        server_log(s, MF_NBDSERVER_ERROR, "nbd: client %lu (%s) dropped: %s; %s", c->id, c->peer,
                   mf_nbd_reason(&c->session), summary);
    } else {
        const char *how = mf_nbd_closed(&c->session) ? mf_nbd_reason(&c->session) : why;
        server_log(s, MF_NBDSERVER_INFO, "nbd: client %lu (%s) disconnected: %s; %s", c->id,
                   c->peer, how ? how : "?", summary);
    }

    /* Marked finished before the client sees the hang-up, so that by the time it can connect
     * again its slot is reaped first (the reaper joins this thread before closing the socket). */
    pthread_mutex_lock(&s->mutex);
    c->finished = true;
    pthread_mutex_unlock(&s->mutex);
    wake(s);
    (void)shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void client_free(struct mf_nbdserver_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buffer);
    free(c);
}

/* Joins and frees the clients whose threads have ended. Accept thread only. */
static void reap(struct mf_nbdserver *s)
{
    struct mf_nbdserver_client *done = NULL;
    pthread_mutex_lock(&s->mutex);
    struct mf_nbdserver_client **link = &s->clients;
    while (*link) {
        struct mf_nbdserver_client *c = *link;
        if (c->finished) {
            *link = c->next;
            c->next = done;
            done = c;
            s->client_count--;
        } else {
            link = &c->next;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    while (done) {
        struct mf_nbdserver_client *next = done->next;
        pthread_join(done->thread, NULL);
        client_free(done);
        done = next;
    }
}

static void peer_text(const struct sockaddr_storage *addr, socklen_t len, char *out, size_t size)
{
    char host[64], port[8]; /* numeric: an IPv6 address with a scope fits */
    if (getnameinfo((const struct sockaddr *)addr, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, size, "?");
        return;
    }
    if (addr->ss_family == AF_INET6)
        snprintf(out, size, "[%s]:%s", host, port);
    else
        snprintf(out, size, "%s:%s", host, port);
}

/* Accepts one connection and starts its thread. Returns true when out of descriptors or
 * memory, so that the loop pauses instead of spinning on a connection it cannot take. */
static bool accept_one(struct mf_nbdserver *s)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &len, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return false;
        server_log(s, MF_NBDSERVER_ERROR, "nbd: accepting a connection on %s failed: %s",
                   s->address, strerror(errno));
        return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
    }
    char peer[PEER_MAX];
    peer_text(&addr, len, peer, sizeof peer);

    pthread_mutex_lock(&s->mutex);
    bool full = s->client_count >= s->max_clients;
    pthread_mutex_unlock(&s->mutex);
    if (full) {
        server_log(s, MF_NBDSERVER_ERROR,
                   "nbd: connection from %s turned away: %u clients already connected", peer,
                   s->max_clients);
        close(fd);
        return false;
    }

    struct mf_nbdserver_client *c = calloc(1, sizeof *c);
    uint8_t *buffer = malloc(MF_NBDSERVER_BUFFER_SIZE);
    if (!c || !buffer) {
        server_log(s, MF_NBDSERVER_ERROR, "nbd: connection from %s turned away: out of memory",
                   peer);
        free(c);
        free(buffer);
        close(fd);
        return true;
    }
    c->server = s;
    c->fd = fd;
    c->buffer = buffer;
    c->id = ++s->next_id;
    memcpy(c->peer, peer, sizeof peer);
    const struct mf_nbd_config config = {
        .bd = s->bd,
        .lock = &s->lock,
        .export_name = s->export_name,
        .read_only = s->read_only,
        .send = client_send,
        .send_context = c,
        .buffer = buffer,
        .buffer_size = MF_NBDSERVER_BUFFER_SIZE,
    };
    int err = mf_nbd_init(&c->session, &config);
    assert(err == 0); /* name and buffer were checked at start */
    (void)err;

    /* Listed before the thread runs: only this thread reaps, and it is busy here. */
    pthread_mutex_lock(&s->mutex);
    c->next = s->clients;
    s->clients = c;
    s->client_count++;
    pthread_mutex_unlock(&s->mutex);
    int rc = spawn(&c->thread, client_main, c);
    if (rc != 0) {
        pthread_mutex_lock(&s->mutex);
        s->clients = c->next;
        s->client_count--;
        pthread_mutex_unlock(&s->mutex);
        server_log(s, MF_NBDSERVER_ERROR, "nbd: connection from %s turned away: no thread: %s",
                   peer, strerror(rc));
        client_free(c);
        return true;
    }
    return false;
}

static void *accept_main(void *arg)
{
    struct mf_nbdserver *s = arg;
    bool backoff = false;
    for (;;) {
        struct pollfd fds[2] = {
            {.fd = s->wake[0], .events = POLLIN},
            {.fd = s->listen_fd, .events = POLLIN},
        };
        /* While backing off, only the wake pipe is watched (the listener would stay ready). */
        int n = poll(fds, backoff ? 1 : 2, backoff ? BACKOFF_MS : -1);
        if (n < 0 && errno != EINTR) {
            server_log(s, MF_NBDSERVER_ERROR, "nbd: poll failed: %s", strerror(errno));
            backoff = true;
            continue;
        }
        backoff = false;
        if (n > 0 && fds[0].revents) {
            uint8_t drain[64];
            while (read(s->wake[0], drain, sizeof drain) > 0)
                ;
        }
        if (stopping(s))
            break;
        reap(s);
        if (n > 0 && (fds[1].revents & POLLIN))
            backoff = accept_one(s);
    }
    return NULL;
}

/* ---- start and stop ---- */

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port texts. */
static bool split_address(const char *address, char *host, size_t host_size, char *port,
                          size_t port_size)
{
    const char *colon;
    const char *host_start = address;
    size_t host_len;
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (!close || close[1] != ':')
            return false;
        host_start = address + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon)
            return false;
        host_len = (size_t)(colon - address);
    }
    const char *port_text = colon + 1;
    size_t port_len = strlen(port_text);
    if (host_len == 0 || host_len >= host_size || port_len == 0 || port_len > 5 ||
        port_len >= port_size)
        return false;
    unsigned long value = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (port_text[i] < '0' || port_text[i] > '9')
            return false;
        value = value * 10u + (unsigned long)(port_text[i] - '0');
    }
    if (value > 65535u)
        return false;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(port, port_text, port_len + 1);
    return true;
}

static int bind_error(int error)
{
    switch (error) {
    case EADDRINUSE:
        return MF_EBUSY;
    case EACCES:
    case EPERM:
        return MF_EACCES;
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
        return MF_EINVAL;
    case ENOMEM:
    case ENOBUFS:
        return MF_ENOMEM;
    default:
        return MF_EIO;
    }
}

static int open_listener(struct mf_nbdserver *s, const char *address)
{
    char host[256], port[8];
    if (!split_address(address, host, sizeof host, port, sizeof port))
        return start_fail(s, MF_EINVAL,
                          "nbd: \"%.100s\" is not HOST:PORT (examples: 127.0.0.1:10809, "
                          "[::1]:10809, localhost:0)",
                          address);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    int rc = getaddrinfo(host, port, &hints, &list);
    if (rc != 0)
        return start_fail(s, MF_EINVAL, "nbd: %.100s: %s", address, gai_strerror(rc));
    int last_errno = EADDRNOTAVAIL;
    const char *last_step = "bind";
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            last_step = "socket";
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            last_errno = errno;
            last_step = "bind";
            close(fd);
            continue;
        }
        if (listen(fd, 16) != 0) {
            last_errno = errno;
            last_step = "listen";
            close(fd);
            continue;
        }
        s->listen_fd = fd;
        break;
    }
    freeaddrinfo(list);
    if (s->listen_fd < 0)
        return start_fail(s, bind_error(last_errno), "nbd: %.100s: %s: %s", address, last_step,
                          last_errno == EADDRINUSE ? "address in use (another server?)"
                                                   : strerror(last_errno));

    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    if (getsockname(s->listen_fd, (struct sockaddr *)&bound, &len) != 0)
        return start_fail(s, MF_EIO, "nbd: %.100s: getsockname: %s", address, strerror(errno));
    if (bound.ss_family == AF_INET6)
        s->port = ntohs(((const struct sockaddr_in6 *)&bound)->sin6_port);
    else
        s->port = ntohs(((const struct sockaddr_in *)&bound)->sin_port);
    peer_text(&bound, len, s->address, sizeof s->address);
    return 0;
}

int mf_nbdserver_start(struct mf_nbdserver *server, const char *address, const struct mf_bd *bd,
                       const struct mf_lock *lock, const struct mf_nbdserver_options *options)
{
    assert(server && bd);
    struct mf_nbdserver *s = server;
    static const struct mf_nbdserver_options defaults = {0};
    if (!options)
        options = &defaults;
    if (!address)
        address = MF_NBDSERVER_ADDRESS_DEFAULT;
    memset(s, 0, sizeof *s);
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    s->bd = bd;
    if (lock)
        s->lock = *lock;
    s->read_only = options->read_only;
    s->max_clients = options->max_clients ? options->max_clients : MF_NBDSERVER_CLIENTS_DEFAULT;
    s->handshake_timeout_ms =
        options->handshake_timeout_ms ? options->handshake_timeout_ms : MF_NBDSERVER_HANDSHAKE_MS;
    s->log = options->log;
    s->log_context = options->log_context;

    const char *name = options->export_name ? options->export_name : MF_NBD_EXPORT_DEFAULT;
    if (!mf_nbd_name_valid(name))
        return start_fail(s, MF_EINVAL,
                          "nbd: export name must be at most %u printable ASCII characters",
                          MF_NBD_NAME_MAX);
    memcpy(s->export_name, name, strlen(name) + 1);
    if (s->max_clients > MF_NBDSERVER_CLIENTS_MAX)
        return start_fail(s, MF_EINVAL, "nbd: at most %u clients can be allowed",
                          MF_NBDSERVER_CLIENTS_MAX);
    if (bd->block_size > MF_NBDSERVER_BUFFER_SIZE / 2 || bd->block_count == 0)
        return start_fail(s, MF_EINVAL, "nbd: the device geometry cannot be served");

    int err = open_listener(s, address);
    if (err) {
        if (s->listen_fd >= 0)
            close(s->listen_fd);
        s->listen_fd = -1;
        s->port = 0;
        return err;
    }
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        err = start_fail(s, MF_EIO, "nbd: pipe: %s", strerror(errno));
        close(s->listen_fd);
        s->listen_fd = -1;
        s->port = 0;
        return err;
    }
    pthread_mutex_init(&s->mutex, NULL);
    pthread_mutex_init(&s->log_mutex, NULL);
    int rc = spawn(&s->accept_thread, accept_main, s);
    if (rc != 0) {
        err = start_fail(s, MF_ENOMEM, "nbd: cannot start the accept thread: %s", strerror(rc));
        pthread_mutex_destroy(&s->mutex);
        pthread_mutex_destroy(&s->log_mutex);
        close(s->wake[0]);
        close(s->wake[1]);
        close(s->listen_fd);
        s->wake[0] = s->wake[1] = s->listen_fd = -1;
        s->port = 0;
        return err;
    }
    s->running = true;
    server_log(s, MF_NBDSERVER_INFO,
               "nbd: serving the public area (%" PRIu64 " bytes, %s) on %s as export \"%s\"",
               mf_bd_size(bd), s->read_only ? "read-only" : "read-write", s->address,
               s->export_name);
    return 0;
}

int mf_nbdserver_stop(struct mf_nbdserver *server)
{
    struct mf_nbdserver *s = server;
    if (!s || !s->running)
        return 0;
    pthread_mutex_lock(&s->mutex);
    s->stopping = true;
    pthread_mutex_unlock(&s->mutex);
    wake(s);
    pthread_join(s->accept_thread, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;

    /* Only this thread changes the list now; clients still set their finished flags. */
    pthread_mutex_lock(&s->mutex);
    unsigned count = s->client_count;
    for (struct mf_nbdserver_client *c = s->clients; c; c = c->next)
        (void)shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mutex);
    struct mf_nbdserver_client *c = s->clients;
    while (c) {
        struct mf_nbdserver_client *next = c->next;
        pthread_join(c->thread, NULL);
        client_free(c);
        c = next;
    }
    pthread_mutex_lock(&s->mutex);
    s->clients = NULL;
    s->client_count = 0;
    pthread_mutex_unlock(&s->mutex);
    server_log(s, MF_NBDSERVER_INFO, "nbd: stopped serving on %s (%u clients disconnected)",
               s->address, count);

    close(s->wake[0]);
    close(s->wake[1]);
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_destroy(&s->mutex);
    pthread_mutex_destroy(&s->log_mutex);
    s->running = false;
    s->port = 0;
    return 0;
}

uint16_t mf_nbdserver_port(const struct mf_nbdserver *server)
{
    return server && server->running ? server->port : 0;
}

unsigned mf_nbdserver_clients(struct mf_nbdserver *server)
{
    if (!server || !server->running)
        return 0;
    pthread_mutex_lock(&server->mutex);
    unsigned n = server->client_count;
    pthread_mutex_unlock(&server->mutex);
    return n;
}

const char *mf_nbdserver_message(const struct mf_nbdserver *server)
{
    return server->message;
}
