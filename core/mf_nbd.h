/* Network Block Device protocol, server side, for file access mode: exports one struct mf_bd
 * (the public area, partition 1) to one client connection. Portable: no sockets or threads here;
 * the platform feeds the client's bytes in (any split) and sends what comes out through a
 * callback. docs/internals/nbd.md describes the states and the choices made within the spec. */
#ifndef MF_NBD_H
#define MF_NBD_H

#include "mf_area.h"
#include "mf_bd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_NBD_PORT_DEFAULT    10809u   /* IANA port for NBD */
#define MF_NBD_EXPORT_DEFAULT  "public" /* the export's name; "" (the default export) also works */
#define MF_NBD_NAME_MAX        255u     /* bytes of a configured export name, without the NUL */
#define MF_NBD_DESCRIPTION     "mintflash public area (partition 1)"
#define MF_NBD_BLOCK_MINIMUM   1u          /* advertised: any offset and length work (RMW) */
#define MF_NBD_BLOCK_PREFERRED 4096u       /* advertised (or the device block size if larger) */
#define MF_NBD_REQUEST_MAX     (32u << 20) /* advertised maximum: longest READ/WRITE, bytes */
#define MF_NBD_OPTION_MAX      8192u       /* option data kept; longer known options: TOO_BIG */
#define MF_NBD_OPTIONS_MAX     1024u       /* options in one handshake before we hang up */
#define MF_NBD_BUFFER_MIN      (16u << 10) /* least working memory (see struct mf_nbd_config) */
#define MF_NBD_REASON_MAX      192u        /* bytes of mf_nbd_reason(), with the NUL */

/* Sends all `size` bytes to the client (blocking until done), or returns a negative MF_E* code;
 * after a failure the session is over. */
typedef int (*mf_nbd_send_fn)(void *context, const void *data, size_t size);

struct mf_nbd_config {
    const struct mf_bd *bd;     /* the export, borrowed; its size is the export size */
    const struct mf_lock *lock; /* copied; taken around every access to `bd`; NULL: none */
    const char *export_name;    /* NULL: MF_NBD_EXPORT_DEFAULT; copied */
    bool read_only;             /* advertise NBD_FLAG_READ_ONLY and refuse WRITE and TRIM */
    mf_nbd_send_fn send;
    void *send_context;
    /* Working memory, owned by the caller, reused for every option and request: at least
     * MF_NBD_BUFFER_MIN bytes and 2 device blocks. One device block of it is the
     * read-modify-write scratch, the rest the staging area for reads, writes and option data
     * (larger is faster; 256 KiB is plenty). */
    void *buffer;
    size_t buffer_size;
};

enum mf_nbd_phase {
    MF_NBD_PHASE_NEW = 0,      /* set up; mf_nbd_start not called yet */
    MF_NBD_PHASE_HANDSHAKE,    /* greeting sent: client flags and options */
    MF_NBD_PHASE_TRANSMISSION, /* an export was chosen: requests */
    MF_NBD_PHASE_CLOSED,       /* over: the client ended it, or an error did (see reason) */
};

/* What one session did (for logs and tests). */
struct mf_nbd_stats {
    uint64_t options;  /* options received */
    uint64_t requests; /* transmission requests received (DISC included) */
    uint64_t reads, writes, trims, flushes;
    uint64_t error_replies; /* requests answered with an error */
    uint64_t bytes_read, bytes_written, bytes_trimmed;
};

/* One client session. Treat as opaque; read it through the functions below. */
struct mf_nbd {
    const struct mf_bd *bd;
    struct mf_lock lock;
    bool read_only;
    char export_name[MF_NBD_NAME_MAX + 1];
    mf_nbd_send_fn send;
    void *send_context;
    uint8_t *scratch; /* one device block */
    uint8_t *stage;
    size_t stage_size; /* a multiple of the device block size */
    uint64_t export_size;
    uint16_t transmission_flags;

    enum mf_nbd_phase phase;
    int state;
    bool no_zeroes;
    uint8_t header[28]; /* the fixed-size part of the message being received */
    size_t header_fill;
    uint64_t consumed;      /* client bytes taken in so far */
    uint64_t message_start; /* where the current message began, for error texts */

    uint32_t option;
    uint32_t option_length;
    uint32_t option_fill;

    uint16_t command_flags;
    uint16_t command;
    uint64_t handle;
    uint64_t offset;
    uint32_t length;
    uint64_t write_pos; /* next export byte of the WRITE payload */
    uint64_t write_end;
    uint64_t stage_base;  /* export byte at stage[0]: block aligned */
    uint32_t remaining;   /* payload bytes still to come */
    uint32_t write_error; /* NBD error to answer the WRITE with; 0: the data goes to bd */

    int error; /* what ended the session: 0 for a clean end */
    char reason[MF_NBD_REASON_MAX];
    struct mf_nbd_stats stats;
};

/* True for a name mf_nbd_init accepts: at most MF_NBD_NAME_MAX bytes of printable ASCII. */
bool mf_nbd_name_valid(const char *name);

/* Sets up a session over `config` (copied; bd, buffer and the send context are borrowed and
 * must outlive the session). MF_EINVAL for an invalid export name or a buffer too small. A NULL
 * bd, send callback or buffer, or a device of zero blocks, is a contract mistake (assert). */
int mf_nbd_init(struct mf_nbd *nbd, const struct mf_nbd_config *config);

/* Sends the server greeting (fixed newstyle, NO_ZEROES offered). Call once, before any input.
 * Returns the send callback's error, which closes the session. */
int mf_nbd_start(struct mf_nbd *nbd);

/* Takes `size` bytes from the client, in any split, and does what they ask: replies go out
 * through the send callback, reads and writes go to the device under the lock (which is never
 * held while sending). Returns 0 while the session goes on and after a clean end (the client's
 * NBD_OPT_ABORT or NBD_CMD_DISC: mf_nbd_closed() is then true and later bytes are ignored), or
 * a negative code when the connection must be dropped: MF_EPROTO (the client broke the
 * protocol: bad magic, unknown client flags, too many options), MF_ENOENT (NBD_OPT_EXPORT_NAME
 * for an export that does not exist, which the protocol answers by hanging up), MF_EIO (a
 * device error in the middle of a read reply), or the send callback's error. The same code is
 * returned again by every later call; mf_nbd_reason() says what and where. */
int mf_nbd_input(struct mf_nbd *nbd, const void *data, size_t size);

enum mf_nbd_phase mf_nbd_phase(const struct mf_nbd *nbd);
bool mf_nbd_closed(const struct mf_nbd *nbd);

/* Why the session ended ("client sent NBD_CMD_DISC", "request at byte 1234: bad magic ..."),
 * "" while it runs. Valid as long as the session struct. */
const char *mf_nbd_reason(const struct mf_nbd *nbd);

/* The export as advertised: size in bytes and transmission flags. */
uint64_t mf_nbd_export_size(const struct mf_nbd *nbd);
uint16_t mf_nbd_transmission_flags(const struct mf_nbd *nbd);

const struct mf_nbd_stats *mf_nbd_stats(const struct mf_nbd *nbd);

#endif
