/* The target back end `gdb`: a device behind a GDB server (OpenOCD, pyOCD, Black Magic Probe,
 * J-Link GDB Server, QEMU), reached over TCP or a serial port, driven with the remote serial
 * protocol of core/mf_rsp. It implements struct mf_target_ops; see docs/targets.md for the servers
 * and docs/internals/gdb.md for how it works. One connection per slot, opened by connect and closed
 * by disconnect; every wait on the server is bounded by a timeout and watches target->cancel
 * (a host name's lookup is the system resolver's, see mf_gdb_open). */
#ifndef MF_GDB_H
#define MF_GDB_H

#include "mf_rsp.h"
#include "mf_target.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_GDB_PACKET_MAX (64u << 10) /* largest packet used, whatever the server offers */
#define MF_GDB_SPEC_MAX   256u        /* bytes of a --target spec */
#define MF_GDB_BAUD       115200u     /* serial speed when the spec names none */

/* What a connection did, for tests and benchmarks (counted since mf_gdb_open). */
struct mf_gdb_stats {
    uint64_t packets;      /* requests sent (not counting resends) */
    uint64_t resends;      /* requests sent again after a '-' */
    uint64_t naks;         /* replies we rejected (bad checksum) */
    uint64_t bytes_sent;   /* everything written, framing and acks included */
    uint64_t bytes_read;   /* everything read */
    uint64_t largest;      /* largest frame sent, in bytes */
    uint64_t x_packets;    /* binary memory writes */
    uint64_t m_writes;     /* hex memory writes (after the server refused X) */
    uint64_t flash_writes; /* vFlashWrite packets */
    uint64_t flash_erases; /* vFlashErase packets */
    uint64_t fill_bytes;   /* erased value written over RAM-like flash (no memory map) */
    uint64_t crc_requests; /* qCRC packets */
    uint64_t monitor;      /* qRcmd packets */
    uint64_t unsolicited;  /* stop replies that answered nothing (skipped) */
    /* Of the last connection: */
    uint32_t packet_size; /* the size used (the server's, at most MF_GDB_PACKET_MAX) */
    bool no_ack;          /* QStartNoAckMode in effect */
    bool memory_map;      /* the server gave a memory map */
    unsigned flash_regions;
};

/* Makes `target` a gdb device for `spec`: "gdb:tcp:HOST:PORT" (HOST may be empty for
 * 127.0.0.1, or an [IPv6] address; an address is used as it is, a name is looked up at each
 * connect by the system's resolver, whose wait our timeouts and cancel do not bound) or
 * "gdb:serial:DEVICE[:BAUD]". Sets target->ops and
 * ->context (allocated here, with the packet buffers; release with mf_gdb_close). Nothing is
 * opened before connect. `options` (the job's [gdb] settings) may be NULL for the defaults; it
 * is copied. Errors: MF_EINVAL for a malformed spec or an unknown baud rate, MF_ENOMEM; the text
 * is in target->error. */
int mf_gdb_open(struct mf_target *target, const char *spec, const struct mf_rsp_options *options);

/* As mf_gdb_open, on a connection the caller made: `fd`, a connected stream socket (tests and the
 * fuzz target hand in one end of a socketpair). It is taken over in every case (closed on
 * failure, by disconnect, or by mf_gdb_close when never used) and made non-blocking. It serves
 * one connect: a later connect fails with MF_EBADF. Errors: MF_EINVAL for a negative fd,
 * MF_ENOMEM. */
int mf_gdb_open_fd(struct mf_target *target, int fd, const struct mf_rsp_options *options);

/* Disconnects if needed and frees the context; target->ops and ->context become NULL. Safe on a
 * target that mf_gdb_open failed on, or that is closed. */
void mf_gdb_close(struct mf_target *target);

/* Is `target` a gdb device (opened by mf_gdb_open)? */
bool mf_gdb_is(const struct mf_target *target);

/* Replaces the settings (e.g. with the job's before a cycle); `options` NULL restores the
 * defaults. Takes effect at the next connect; call it only between cycles. */
void mf_gdb_set_options(struct mf_target *target, const struct mf_rsp_options *options);

/* Copies the counters. */
void mf_gdb_stats(const struct mf_target *target, struct mf_gdb_stats *stats);

#endif
