/* The commander's side of the ASCII command protocol (docs/protocol.md): connecting to a
 * programmer by URL (unix:PATH, tcp:HOST:PORT, serial:DEVICE[:BAUD]), sending one command and
 * collecting its #ACK, status and progress lines and final reply, with bounded waits.
 * Also the default socket path rule, shared with the daemon (header-only, see below). */
#ifndef MF_REMOTE_H
#define MF_REMOTE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The longest command line the daemon accepts (docs/protocol.md), without its CR. */
#define MF_REMOTE_COMMAND_MAX        2048
/* The longest reply line the client accepts, without its terminator. The longest documented
 * reply is #OK:<n>:<1024 hex digits>; the rest is room for long file names in #FLIST. */
#define MF_REMOTE_REPLY_MAX          4096
/* A silent peer is an error after this long (a cycle's status lines keep the wait alive). */
#define MF_REMOTE_DEFAULT_TIMEOUT_MS 60000
/* Data bytes per #FWRITE / #FREAD (the reference's limit, 0x200). */
#define MF_REMOTE_CHUNK              512
/* One exchange reads at most this many lines: a peer that never ends a reply is cut off. */
#define MF_REMOTE_LINES_MAX          1000000
/* Slots a programmer may have (docs/protocol.md). */
#define MF_REMOTE_SLOTS_MAX          64
#define MF_REMOTE_DEFAULT_BAUD       9600
#define MF_REMOTE_TCP_DEFAULT_PORT   "2323"

/* The daemon's default UNIX socket, one rule for both programs:
 * $XDG_RUNTIME_DIR/mintflash/mintflashd.sock, or /tmp/mintflash-<uid>/mintflashd.sock when
 * XDG_RUNTIME_DIR is unset or empty. mf_remote_default_socket_dir() writes the folder (the daemon
 * creates it, mode 0700), mf_remote_default_socket() the socket path. Both return 0, or -1 when
 * `size` is too small (out is then ""). Header-only so that mintflashd needs no other file. */
static inline int mf_remote_default_socket_dir(char *out, size_t size)
{
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    int n;
    if (runtime && *runtime)
        n = snprintf(out, size, "%s/mintflash", runtime);
    else
        n = snprintf(out, size, "/tmp/mintflash-%lu", (unsigned long)getuid());
    if (n < 0 || (size_t)n >= size) {
        if (size)
            out[0] = '\0';
        return -1;
    }
    return 0;
}

static inline int mf_remote_default_socket(char *out, size_t size)
{
    if (mf_remote_default_socket_dir(out, size))
        return -1;
    size_t used = 0;
    while (out[used])
        used++;
    int n = snprintf(out + used, size - used, "/mintflashd.sock");
    if (n < 0 || (size_t)n >= size - used) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

enum mf_remote_kind { MF_REMOTE_UNIX, MF_REMOTE_TCP, MF_REMOTE_SERIAL };

/* One connection. Zero-initialise, then mf_remote_open() or mf_remote_attach(). */
struct mf_remote {
    int fd; /* -1 when closed */
    enum mf_remote_kind kind;
    char url[1024];    /* as given, for messages */
    int timeout_ms;    /* silence allowed while waiting for a reply */
    bool peer_closed;  /* the peer closed the connection: reopen before the next command */
    char error[1536];  /* what the last failed call did not do, and why */
    int slots;         /* the programmer's slots (#INFO SLOTS=), 0 while unknown */
    int selected;      /* slots this connection drives, 0 while unknown (all at first) */
    int selected_slot; /* the selected slot when only one is, else 0 */
    unsigned connects; /* successful connects so far: per-connection state is stale
                        * when this moves (the programmer forgets #PROGRESS ON) */
    volatile sig_atomic_t *interrupted; /* optional: set by a signal handler to stop a wait */
    size_t in_len;                      /* bytes buffered in `in` */
    bool in_overflow;                   /* discarding the rest of an overlong line */
    char in[MF_REMOTE_REPLY_MAX + 256];
};

/* Parses `url` and connects: unix:PATH (unix: alone = the default socket), tcp:HOST[:PORT]
 * (IPv6 as [addr]:port; port 2323 by default), serial:DEVICE[:BAUD] (raw 8N1, 9600 by
 * default). `timeout_ms` (<= 0: the default) bounds the connect and every later wait.
 * Returns 0, MF_EINVAL for a malformed URL, or MF_EIO / MF_ETIMEOUT / MF_ENOENT / MF_EACCES
 * when the connection fails; r->error then says, e.g.
 * "cannot connect to tcp:127.0.0.1:2323: Connection refused". */
int mf_remote_open(struct mf_remote *r, const char *url, int timeout_ms);

/* Uses an already connected descriptor (the tests' fake servers); `url` names it in messages.
 * The connection owns `fd` from now on (mf_remote_close closes it). Never fails. */
void mf_remote_attach(struct mf_remote *r, int fd, enum mf_remote_kind kind, const char *url,
                      int timeout_ms);

/* Closes the connection (safe on a closed or zeroed one); the URL and slot facts stay. */
void mf_remote_close(struct mf_remote *r);

/* Reopens a connection to the same URL after the peer closed it (a reboot): retries for up to
 * the timeout while the programmer restarts. Returns as mf_remote_open(). */
int mf_remote_reopen(struct mf_remote *r);

/* Serial only: sets the local line speed (after #BAUDRATE). MF_EINVAL for a speed termios has
 * no constant for, MF_ENOTSUP on other connections, MF_EIO on a termios failure. */
int mf_remote_set_baud(struct mf_remote *r, unsigned long baud);

/* How a command's exchange ended. */
enum mf_remote_outcome {
    MF_REMOTE_OK,   /* #OK..., or #DONE after per-slot results that were all #OK, or the status
                     * and result lines a #STATUS / #RESULT asked for */
    MF_REMOTE_ERR,  /* #ERRnnn:..., or #DONE after at least one failed slot */
    MF_REMOTE_NACK, /* #NACK or #NACK:ERRnnn:... (unknown command, or refused now) */
};

struct mf_remote_reply {
    enum mf_remote_outcome outcome;
    bool acked;       /* the #ACK arrived */
    int code;         /* nnn of #ERRnnn / #NACK:ERRnnn, or of the first failed slot; -1 */
    bool interrupted; /* a signal arrived; #CANCEL was sent for a cycle */
    int failed_slots; /* #RESULT:<slot>:#ERR... lines seen in the exchange */
    char final[MF_REMOTE_REPLY_MAX + 1]; /* the final line without its terminator, or the first
                                          * failed slot's #RESULT line */
};

/* Called with every line of an exchange other than #ACK and the final line, which is in the
 * reply (for #STATUS / #RESULT the last slot's line, for #SELMODULE the #SELECTED: line):
 * status, progress, #INFO:, #FLIST:, #RESULT: lines, and lines that do not start with '#'.
 * `line` is NUL-terminated, without its terminator, control bytes (C0, DEL, and C1 controls
 * written as UTF-8, C2 80..C2 9F) and bytes that are not part of well-formed UTF-8 replaced by
 * '?', one for each byte. */
typedef void (*mf_remote_line_fn)(void *ctx, const char *line);

/* Flags of mf_remote_command(). */
#define MF_REMOTE_CANCEL_ON_INTERRUPT 1u /* an interrupt sends #CANCEL (cycles) */
#define MF_REMOTE_PASS_ACK            2u /* also pass the #ACK to on_line (raw transcripts) */

/* Sends `command` (a protocol line without CR, at most MF_REMOTE_COMMAND_MAX bytes, starting
 * with '#') followed by CR, and reads until its final reply:
 * - any command: #NACK... before the #ACK; after it #OK..., #ERRnnn... or #DONE;
 * - #STATUS: the single-slot #STATUS:<STATE>, or one #STATUS:<slot>:<STATE> per selected slot;
 * - #RESULT: one #RESULT:<slot>:<result> per selected slot.
 * For #STATUS and #RESULT the number of selected slots must be known: when it is not, an #INFO
 * exchange runs first (its lines are not passed on). #SELECTED: and #INFO:SLOTS= lines are noted
 * in r. Lines read before the #ACK that are not a #NACK are stale replies of an earlier command
 * (a #STATUS:READY after an #OK) and are dropped, as is what arrived before the command was sent.
 * A connection the peer closed (a reboot) is reopened first. Every line that starts with '#'
 * restarts the timeout, but #STATUS and #PROGRESS lines only for a programming command
 * (mf_remote_is_cycle) and #REBOOT; other lines do not.
 * With MF_REMOTE_CANCEL_ON_INTERRUPT, when *r->interrupted becomes non-zero "#CANCEL" is sent
 * once (and *r->interrupted cleared) and the exchange goes on until both finals have arrived;
 * the command's final is kept in reply. Otherwise, or at a second interrupt, the wait ends with
 * MF_ECANCELED.
 * Returns 0 when a final reply arrived (see reply->outcome), else MF_EIO (the peer closed or
 * the connection failed), MF_ETIMEOUT, MF_EPROTO (overlong line, endless reply), MF_EINVAL
 * (bad command), MF_ECANCELED; r->error says which. */
int mf_remote_command(struct mf_remote *r, const char *command, mf_remote_line_fn on_line,
                      void *ctx, unsigned flags, struct mf_remote_reply *reply);

/* Whether `command` is a programming command (#AUTO, #ERASE, #PROGRAM, #VERIFY, #START, any
 * case, with or without words after it). */
bool mf_remote_is_cycle(const char *command);

/* ---- reply parsers (hostile input: they check every length and number) ---- */

/* "#ERRnnn[:text]", "#NACK:ERRnnn[:text]", "#RESULT:<s>:#ERRnnn..." (also without the inner '#'):
 * the code, or -1 when the line carries none. *text (may be NULL) points into `line` at the text
 * after "nnn:" (or "" when there is none). */
int mf_remote_error_code(const char *line, const char **text);

/* "#STATUS:<STATE>" (slot 0) or "#STATUS:<slot>:<STATE>". Returns 0, or -1 when malformed.
 * `state` gets at most size-1 bytes. */
int mf_remote_parse_status(const char *line, int *slot, char *state, size_t size);

/* "#RESULT:<slot>:<result>": the slot and a pointer into `line` at the result text. 0 or -1. */
int mf_remote_parse_result(const char *line, int *slot, const char **result);

struct mf_remote_progress {
    int slot;
    char state[32];
    uint64_t done, total;
};

/* "#PROGRESS:<slot>:<STATE>:<done-hex>:<total-hex>". Returns 0, or -1 when malformed.
 * done may exceed total (an erase covers whole sectors): a display caps it at 100%. */
int mf_remote_parse_progress(const char *line, struct mf_remote_progress *p);

/* "#OK:<n>:<hex data>" (the #FREAD reply): decodes the data into buf (at most `cap` bytes);
 * *n gets the count. Returns 0, or -1 when malformed, when n does not match the data, or when
 * it exceeds cap. */
int mf_remote_parse_fread(const char *line, uint8_t *buf, size_t cap, size_t *n);

/* "#OK:<hex>" (the #FSIZE reply). Returns 0 or -1. */
int mf_remote_parse_size(const char *line, uint64_t *size);

/* "#FLIST:D:<name>" or "#FLIST:F:<hex size>:<name>". *is_dir, *size (0 for a folder) and *name
 * (a pointer into line). Returns 0 or -1. */
int mf_remote_parse_flist(const char *line, bool *is_dir, uint64_t *size, const char **name);

/* "#SELECTED:1,2,...": the number of slots and, when exactly one, which (else 0). "*" or an
 * empty list: 0 (unknown). Returns 0 or -1. */
int mf_remote_parse_selected(const char *line, int *count, int *single);

#endif
