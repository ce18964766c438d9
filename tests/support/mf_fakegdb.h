/* A scripted fake GDB server for tests of the gdb target back end: a thread serving the remote
 * serial protocol on a loopback TCP port (or a pseudo terminal, for the serial transport) over a
 * small memory model, with knobs for what real servers differ in (memory map and vFlash*, qCRC,
 * X refused, no-ack mode, packet size, run-length encoded replies, monitor commands) and for
 * faults (stalls, disconnects, garbage, nonsense replies, bad checksums, rejected requests).
 * Its packet parser is written apart from core/mf_rsp on purpose: a shared bug must not cancel
 * itself out. Not thread-safe against itself: one test thread drives one server. */
#ifndef MF_FAKEGDB_H
#define MF_FAKEGDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_FAKEGDB_WINDOWS 3u
#define MF_FAKEGDB_SCRIPTS 8u
#define MF_FAKEGDB_LOG_MAX 4096u /* bytes of the monitor command log */

/* A piece of memory the server holds: flash (vFlash* may erase and program it; M and X write it
 * as RAM, as QEMU does) or RAM. */
struct mf_fakegdb_window {
    uint64_t base;
    uint32_t size;
    bool flash;
    uint8_t initial; /* value of every byte at start */
};

/* A reply given to every packet that starts with `prefix`, instead of the model's. */
struct mf_fakegdb_script {
    const char *prefix;
    const char *reply; /* sent as it is (framed); "" is the empty reply */
};

/* What a fault at a chosen request does (see fault_prefix). */
enum mf_fakegdb_fault {
    MF_FAKEGDB_NO_FAULT = 0,
    MF_FAKEGDB_STALL,    /* answer nothing from then on (the connection stays open) */
    MF_FAKEGDB_CLOSE,    /* close the connection instead of answering */
    MF_FAKEGDB_FLOOD,    /* send 100 KiB of noise instead of the reply */
    MF_FAKEGDB_NONSENSE, /* answer with a framed "Zzz?" */
};

struct mf_fakegdb_config {
    struct mf_fakegdb_window windows[MF_FAKEGDB_WINDOWS]; /* size 0: unused */
    uint32_t packet_size;     /* PacketSize offered (0: 0x1000); bigger requests are refused */
    bool offer_packet_size;   /* false: qSupported says nothing about it (clients assume 400) */
    bool no_ack;              /* offer QStartNoAckMode */
    bool memory_map;          /* offer qXfer:memory-map:read (made from the windows) */
    uint32_t flash_block;     /* blocksize in the map and for vFlashErase (0: 1024) */
    const char *target_xml;   /* offer qXfer:features:read with this target.xml (NULL: not) */
    const char *include_name; /* an annex it may include, */
    const char *include_xml;  /* and its text */
    bool crc;                 /* answer qCRC */
    bool refuse_x;            /* answer X with the empty reply (M must be used) */
    bool refuse_p;            /* answer P with the empty reply (G must be used) */
    bool monitor;             /* answer qRcmd: "fail..." fails with output, others succeed */
    uint32_t monitor_drip_ms; /* with monitor_drips: each command's output comes as that many */
    unsigned monitor_drips;   /* 'O' packets, one every monitor_drip_ms, before its result */
    bool ipv6;                /* listen on [::1] instead of 127.0.0.1 */
    bool rle;                 /* run-length encode replies where it pays */
    uint32_t short_reads;     /* answer m with at most this many bytes (0: all) */
    uint32_t reply_delay_ms;  /* wait this long before each reply */
    bool stop_on_connect;     /* greet a connection with a stop reply, as QEMU does when a
                                 connection stops a running machine */
    /* Faults, each at the N-th packet of a connection (1-based; 0: never). */
    unsigned stall_at;     /* answer nothing from then on (the connection stays open) */
    unsigned close_at;     /* close the connection instead of answering */
    unsigned garbage_at;   /* send 300 bytes of noise before the reply (tolerable) */
    unsigned flood_at;     /* send 100 KiB of noise instead of the reply */
    unsigned nonsense_at;  /* answer with a framed "Zzz?" */
    unsigned corrupt_at;   /* send the reply with a wrong checksum (once; resent on '-') */
    unsigned nak_at;       /* answer the request with '-' (once; the client must resend) */
    unsigned ack_flood_at; /* send '+' without pause instead of the reply (for up to 10 s) */
    /* A fault at a chosen request: at the first packet starting with `fault_prefix` after
     * `fault_skip` such packets were answered (counted per connection; NULL: none). */
    const char *fault_prefix;
    unsigned fault_skip;
    enum mf_fakegdb_fault fault;
    struct mf_fakegdb_script scripts[MF_FAKEGDB_SCRIPTS];
};

/* What the server saw, summed over its connections. */
struct mf_fakegdb_stats {
    unsigned connections;
    unsigned closed;          /* connections (or serial sessions) that ended */
    unsigned packets;         /* good packets received */
    unsigned bad_checksums;   /* packets received with a wrong checksum */
    unsigned oversize;        /* packets longer than the PacketSize offered (refused with E01) */
    uint32_t largest;         /* largest packet received, framing included */
    unsigned acks, naks;      /* '+' and '-' received */
    unsigned resent;          /* replies sent again after a '-' */
    unsigned requests_resent; /* requests the client sent again after our '-' */
    unsigned no_ack;          /* QStartNoAckMode accepted */
    unsigned x_writes, m_writes, m_reads;
    unsigned flash_erases, flash_writes, flash_done;
    unsigned crc;
    unsigned reads_in_flash_sequence; /* m or qCRC between vFlashErase/Write and vFlashDone */
    unsigned nor_violations;          /* vFlashWrite bytes that needed a bit set */
    unsigned monitor;
    char monitor_log[MF_FAKEGDB_LOG_MAX]; /* every monitor command, each followed by '\n' */
    unsigned registers_written;           /* P packets */
    uint32_t sp, pc, xpsr; /* r13, r15, xPSR (25): 0 at start, then as written by P or G (the
                              'g' registers are r0..r15 and xPSR, as QEMU's description says) */
    unsigned g_writes;
    unsigned continues; /* c or vCont;c */
    unsigned detaches;
    unsigned interrupts;
    unsigned attaches;
    unsigned faults; /* fault_prefix faults given */
};

struct mf_fakegdb;

/* Starts a server on 127.0.0.1 ([::1] with config->ipv6; a free port) or, with `pty`, on a new
 * pseudo terminal. The config is copied (the strings it points to must outlive the server). NULL on
 * failure (printed on stderr). */
struct mf_fakegdb *mf_fakegdb_start(const struct mf_fakegdb_config *config, bool pty);

/* Stops the thread, closes everything, frees. NULL is fine. */
void mf_fakegdb_stop(struct mf_fakegdb *fake);

/* "gdb:tcp:127.0.0.1:PORT", "gdb:tcp:[::1]:PORT" or "gdb:serial:/dev/pts/N" for mf_gdb_open (valid
 * until stop). */
const char *mf_fakegdb_spec(const struct mf_fakegdb *fake);

/* Copies memory out of / into the model (0, or -1 when the range is not inside one window). */
int mf_fakegdb_read(struct mf_fakegdb *fake, uint64_t address, void *out, size_t length);
int mf_fakegdb_write(struct mf_fakegdb *fake, uint64_t address, const void *data, size_t length);

void mf_fakegdb_stats(struct mf_fakegdb *fake, struct mf_fakegdb_stats *stats);

/* Waits (up to 10 s) until `closed` connections have ended, so that everything the client sent
 * before closing is counted (a client in no-ack mode does not wait for the server). 0, or -1
 * when they did not. */
int mf_fakegdb_wait_closed(struct mf_fakegdb *fake, unsigned closed);

/* Changes the fault_prefix fault (NULL or MF_FAKEGDB_NO_FAULT: none) for the next packets. */
void mf_fakegdb_fault_at(struct mf_fakegdb *fake, const char *prefix, unsigned skip,
                         enum mf_fakegdb_fault fault);

/* Changes the fault knobs (for the next packets; counts restart at the next connection). */
void mf_fakegdb_faults(struct mf_fakegdb *fake, unsigned stall_at, unsigned close_at);

#endif
