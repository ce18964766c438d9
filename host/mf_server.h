/* The daemon's channels: TCP, a UNIX socket (the stand-in for USB) and a serial line, served by
 * one poll loop; one session per connection speaks the ASCII protocol (docs/protocol.md) against
 * the programmer, with programming commands running on several slots at once. Worker threads
 * report through mf_server_sink(); the loop writes their lines. */
#ifndef MF_SERVER_H
#define MF_SERVER_H

#include "mf_programmer.h"
#include "mf_proto.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Connections at once, per channel, so that whatever TCP clients do the UNIX socket (the
 * owner's and operator's local connection) and the serial line keep their places; one TCP peer
 * address may hold only part of the TCP places. One more takes an idle connection's place, or
 * gets "#ERR008:Too many connections" (from this address) and is closed (docs/protocol.md,
 * Channels). */
#define MF_SERVER_TCP_MAX      224u
#define MF_SERVER_TCP_PEER_MAX 64u
#define MF_SERVER_UNIX_MAX     31u
/* All of them: the serial line is one. */
#define MF_SERVER_CLIENTS_MAX  (MF_SERVER_TCP_MAX + MF_SERVER_UNIX_MAX + 1u)
#define MF_SERVER_OUTPUT_MAX   (1u << 20) /* bytes queued for one client before it is dropped */
#define MF_SERVER_BACKLOG      64 /* connections the kernel queues until accepted (a burst of them) */
#define MF_SERVER_TEXT_MAX     320u

struct mf_server_config {
    const char *tcp;         /* "HOST:PORT" (port 0: any free one), or NULL */
    const char *unix_socket; /* path, or NULL */
    const char *serial;      /* "DEVICE[:BAUD]", or NULL */
    struct mf_programmer *programmer;
    int verbose;
};

enum mf_channel { MF_CHANNEL_TCP, MF_CHANNEL_UNIX, MF_CHANNEL_SERIAL };

struct mf_session;

struct mf_server {
    struct mf_server_config config;
    struct mf_programmer *programmer;
    int tcp_fd, unix_fd, serial_fd, wake_fd[2];
    char serial_parity;      /* 'N', 'O', 'E' (--serial DEV:BAUD:8O1) */
    char serial_device[256]; /* the serial line's device, opened again after a hang-up */
    unsigned serial_baud;    /* its baud rate now (#BAUDRATE changes it) */
    unsigned tcp_port;       /* the bound port */
    char unix_path[256];
    pthread_mutex_t lock; /* sessions' output and pending commands */
    struct mf_session *sessions[MF_SERVER_CLIENTS_MAX];
    unsigned session_count;
    struct mf_session *serial_session;
    uint64_t next_id;
    volatile int stop;
    volatile int reboot_request;
    pthread_t system_thread; /* reboot / secure-area work */
    bool system_busy;
    bool system_thread_joinable;
};

/* Opens the listening sockets and the serial line (errors: address in use, no such device, with
 * `error` filled). */
int mf_server_open(struct mf_server *server, const struct mf_server_config *config, char *error);

/* The sink to hand the programmer, routing its reports to the sessions. */
struct mf_programmer_sink mf_server_sink(struct mf_server *server);

/* Serves until mf_server_stop. */
int mf_server_run(struct mf_server *server);

/* Makes mf_server_run return (async-signal-safe). */
void mf_server_stop(struct mf_server *server);

/* Asks for a restart in stand-alone mode, as a power cycle (async-signal-safe: SIGHUP). */
void mf_server_request_reboot(struct mf_server *server);

/* Closes every connection and socket (the UNIX socket file is removed). */
void mf_server_close(struct mf_server *server);

/* Starts mf_programmer_boot on the server's system thread (the channels answer
 * #STATUS:INITIALIZING meanwhile). */
int mf_server_boot(struct mf_server *server);

#endif
