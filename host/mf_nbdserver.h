/* NBD server for file access mode (Linux): a listening TCP socket, an accept thread and one
 * thread per client, each running an mf_nbd session over the same device and lock. The daemon
 * starts it when it enters file access mode and stops it before it leaves; stop closes the
 * listener, disconnects every client and joins every thread. Events go to a log callback. */
#ifndef MF_NBDSERVER_H
#define MF_NBDSERVER_H

#include "mf_area.h"
#include "mf_bd.h"
#include "mf_nbd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define MF_NBDSERVER_ADDRESS_DEFAULT "127.0.0.1:10809" /* loopback, the IANA NBD port */
#define MF_NBDSERVER_CLIENTS_DEFAULT 8u
#define MF_NBDSERVER_CLIENTS_MAX     64u
#define MF_NBDSERVER_BUFFER_SIZE     (256u << 10) /* mf_nbd working memory per client, bytes */
#define MF_NBDSERVER_HANDSHAKE_MS    30000u /* default time a client gets to choose the export */
#define MF_NBDSERVER_MESSAGE_MAX     320u

enum mf_nbdserver_level {
    MF_NBDSERVER_INFO,  /* listening, client connected / chose the export / disconnected */
    MF_NBDSERVER_ERROR, /* a client dropped for breaking the protocol, a device error, ... */
};

/* Receives one line of text without a newline ("nbd: client 3 (127.0.0.1:51234) connected").
 * Calls are serialised by the server, so the callback need not be thread-safe, but it may run
 * on any of the server's threads and must not call back into the server. */
typedef void (*mf_nbdserver_log_fn)(void *context, enum mf_nbdserver_level level,
                                    const char *message);

struct mf_nbdserver_options {
    bool read_only;                /* export read-only (NBD_FLAG_READ_ONLY; writes get EPERM) */
    const char *export_name;       /* NULL: MF_NBD_EXPORT_DEFAULT ("" always works too) */
    unsigned max_clients;          /* 0: MF_NBDSERVER_CLIENTS_DEFAULT; more are turned away */
    unsigned handshake_timeout_ms; /* 0: MF_NBDSERVER_HANDSHAKE_MS */
    mf_nbdserver_log_fn log;       /* NULL: no log */
    void *log_context;
};

struct mf_nbdserver_client;

/* A server. The caller owns the struct (zero it, or let a failed start leave it stopped); the
 * fields are private. Per-client memory (about 320 KiB each) is allocated at accept. */
struct mf_nbdserver {
    bool running;
    int listen_fd;
    int wake[2]; /* self-pipe: wakes the accept thread to reap clients or to stop */
    pthread_t accept_thread;
    pthread_mutex_t mutex; /* clients list, stopping */
    pthread_mutex_t log_mutex;
    bool stopping;
    struct mf_nbdserver_client *clients;
    unsigned client_count;
    unsigned long next_id;
    const struct mf_bd *bd;
    struct mf_lock lock;
    bool read_only;
    char export_name[MF_NBD_NAME_MAX + 1];
    unsigned max_clients;
    unsigned handshake_timeout_ms;
    mf_nbdserver_log_fn log;
    void *log_context;
    char address[80]; /* where it listens, "127.0.0.1:10809" */
    uint16_t port;
    char message[MF_NBDSERVER_MESSAGE_MAX];
};

/* Starts serving `bd` (the public area: borrowed, must outlive the server) on `address`,
 * "HOST:PORT" or "[IPv6]:PORT" (HOST a numeric address or a name; PORT 0 picks a free port,
 * see mf_nbdserver_port); NULL means MF_NBDSERVER_ADDRESS_DEFAULT. `lock` (copied; NULL: none)
 * is taken around every device access of every client, so the daemon can share the device.
 * `options` may be NULL (all defaults). On success the server runs until mf_nbdserver_stop.
 * Errors (nothing left running or open, `server` stopped, mf_nbdserver_message says what):
 * MF_EINVAL (bad address or export name), MF_EBUSY (address in use), MF_EACCES (port needs
 * privileges), MF_ENOMEM, MF_EIO. */
int mf_nbdserver_start(struct mf_nbdserver *server, const char *address, const struct mf_bd *bd,
                       const struct mf_lock *lock, const struct mf_nbdserver_options *options);

/* Stops: closes the listener, hangs up on every client (a request being served completes
 * first) and joins every thread. Safe on a stopped or zeroed server; returns 0. */
int mf_nbdserver_stop(struct mf_nbdserver *server);

/* The port it listens on (the one picked for port 0); 0 when not running. */
uint16_t mf_nbdserver_port(const struct mf_nbdserver *server);

/* Clients connected right now. */
unsigned mf_nbdserver_clients(struct mf_nbdserver *server);

/* Text of the last start failure ("127.0.0.1:10809: address in use"), "" when none. */
const char *mf_nbdserver_message(const struct mf_nbdserver *server);

#endif
