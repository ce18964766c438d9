/* Fault-injecting block device for crash and error tests: wraps any struct mf_bd (the medium,
 * usually an mf_rambd) and behaves like a disk with a volatile write cache, with power cuts,
 * I/O errors and bit flips on demand. Deterministic from one seed. docs/internals/faultbd.md
 * has the full semantics; the short form is here.
 *
 * Write cache: prog and erase calls since the last sync are unsynced. Reads see them, but they
 * stay in the caller's cache buffer (at most MF_FAULTBD_LOG_MAX calls and cache_size bytes of
 * prog data) and reach the medium only on sync. When a write does not fit, everything pending is
 * flushed to the medium first, as a real cache would (counted in forced_flushes; size the cache
 * so tests that care see zero), and a prog bigger than the whole cache is written through.
 *
 * Write points: every prog, erase, reserve and sync call is one write point (also one that fails
 * with an injected MF_EIO); reads are not. With a cut armed at N, write points 1..N-1 after arming
 * complete normally; the N-th is interrupted: it does not happen (except as TORN, TORN_BYTES and
 * GARBLE say), the unsynced writes are resolved by the cut mode, and that call and every later
 * call (reads too) return MF_EPOWERLOSS until mf_faultbd_reset(), the reboot.
 *
 * Reserve goes straight to the medium's reserve (none on a RAM medium): it changes no content,
 * so it has no place in the cache; injected errors (MF_ENOSPC, say) stand for a host file system
 * without the room. */
#ifndef MF_FAULTBD_H
#define MF_FAULTBD_H

#include "mf_bd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_FAULTBD_LOG_MAX   64u   /* unsynced prog/erase calls held before a forced flush */
#define MF_FAULTBD_BLOCK_MAX 4096u /* largest block size of the medium */

/* Operation kinds, as bits (for I/O-error selection and cut reports). */
enum {
    MF_FAULTBD_OP_READ = 1u << 0,
    MF_FAULTBD_OP_PROG = 1u << 1,
    MF_FAULTBD_OP_ERASE = 1u << 2,
    MF_FAULTBD_OP_SYNC = 1u << 3,
    MF_FAULTBD_OP_RESERVE = 1u << 4,
    MF_FAULTBD_OP_WRITES =
        MF_FAULTBD_OP_PROG | MF_FAULTBD_OP_ERASE | MF_FAULTBD_OP_SYNC | MF_FAULTBD_OP_RESERVE,
    MF_FAULTBD_OP_ALL = MF_FAULTBD_OP_READ | MF_FAULTBD_OP_WRITES,
};

/* What a power cut does to the unsynced writes; one bit each so that sets can be passed around.
 * "Lands" means the block reaches the medium with the bytes the caller wrote. */
enum {
    /* No unsynced write lands: the medium keeps what the last sync (or forced flush) left. */
    MF_FAULTBD_CUT_DROP = 1u << 0,
    /* Every unsynced write lands, in call order (a write-through disk). */
    MF_FAULTBD_CUT_APPLY = 1u << 1,
    /* Each block of each unsynced write lands with probability 1/2, the writes taken in a
     * random order (so an older version of a block may end up over a newer one). */
    MF_FAULTBD_CUT_SOME = 1u << 2,
    /* Every unsynced write lands in order; the interrupted prog/erase lands as a strict prefix
     * of its blocks: k whole blocks, k random in [0, count - 1]. */
    MF_FAULTBD_CUT_TORN = 1u << 3,
    /* As TORN, and block k receives only its first m bytes, m random in [1, block_size - 1]
     * (the rest keeps its old bytes): not block-atomic. */
    MF_FAULTBD_CUT_TORN_BYTES = 1u << 4,
    /* Each block of the unsynced writes and of the interrupted prog/erase, in order, is left
     * alone, lands, or receives random bytes (1/3 each); at least one receives random bytes
     * (when there is any). Not block-atomic. */
    MF_FAULTBD_CUT_GARBLE = 1u << 5,
};

/* Modes under which every block holds either its old or one of its written contents: what a
 * non-copy-on-write file system (FAT) needs to promise "completed files are intact". */
#define MF_FAULTBD_CUT_ATOMIC                                                                      \
    (MF_FAULTBD_CUT_DROP | MF_FAULTBD_CUT_APPLY | MF_FAULTBD_CUT_SOME | MF_FAULTBD_CUT_TORN)
#define MF_FAULTBD_CUT_ALL                                                                         \
    (MF_FAULTBD_CUT_ATOMIC | MF_FAULTBD_CUT_TORN_BYTES | MF_FAULTBD_CUT_GARBLE)

/* What happened at the last power cut. */
struct mf_faultbd_cut {
    uint64_t write_point; /* counters.write_points at the cut (the interrupted one) */
    unsigned mode;        /* one MF_FAULTBD_CUT_* bit */
    unsigned op;          /* MF_FAULTBD_OP_* interrupted; 0 for mf_faultbd_cut_now() */
    mf_block_t block;     /* range of the interrupted prog/erase (count 0 for a sync, reserve) */
    size_t count;
    uint64_t seed;           /* the device's seed */
    uint64_t pending_blocks; /* unsynced block writes at the cut, the interrupted one excluded */
    uint64_t landed_blocks;  /* block writes that landed intact (the interrupted one's included) */
    uint64_t garbled_blocks; /* GARBLE: blocks that received random bytes */
    size_t torn_blocks;      /* TORN*: whole blocks of the interrupted prog/erase that landed */
    uint32_t torn_bytes;     /* TORN_BYTES: bytes of the next block that landed */
    int medium_error;        /* first error the medium returned while the cut was applied */
};

struct mf_faultbd_counters {
    /* Calls accepted (before power loss), failed or not. */
    uint64_t reads, progs, erases, syncs, reserves;
    uint64_t bytes_read, bytes_written, bytes_erased; /* of successful calls */
    uint64_t write_points;                            /* prog + erase + sync + reserve calls */
    uint64_t forced_flushes; /* cache overflows that pushed unsynced writes to the medium */
    uint64_t io_errors;      /* injected I/O error results (MF_EIO unless chosen otherwise) */
    uint64_t read_flips;     /* bits flipped in read results */
    uint64_t cuts;           /* power cuts */
};

/* Called at a cut after the medium has its final contents, before the interrupted call returns
 * MF_EPOWERLOSS. The device is powered off: do not call it from here. */
typedef void (*mf_faultbd_cut_fn)(void *arg, const struct mf_faultbd_cut *cut);

/* Zero-init means: seed 0, no cache (every write goes to the medium at once, so only TORN,
 * TORN_BYTES and GARBLE act on the interrupted call), no callback. */
struct mf_faultbd_config {
    uint64_t seed;            /* drives every random choice; print it on failure */
    void *cache;              /* the volatile write cache, owned by the caller */
    size_t cache_size;        /* its bytes: holds cache_size / block_size blocks of prog data */
    mf_faultbd_cut_fn on_cut; /* optional */
    void *on_cut_arg;
};

struct mf_faultbd_entry {
    unsigned op; /* MF_FAULTBD_OP_PROG or MF_FAULTBD_OP_ERASE */
    mf_block_t block;
    size_t count;
    size_t data; /* prog: first cache block holding the data */
};

/* The fields after `bd` are private; read them through the functions below. */
struct mf_faultbd {
    struct mf_bd bd; /* hand &fb.bd to the code under test; same geometry as the medium */
    const struct mf_bd *medium;
    struct mf_faultbd_config config;
    uint8_t *cache;
    size_t cache_blocks, cache_used;
    struct mf_faultbd_entry log[MF_FAULTBD_LOG_MAX];
    size_t log_len;
    bool powered_off;
    bool cut_armed;
    unsigned cut_mode;
    uint64_t cut_at; /* absolute write point */
    unsigned eio_ops;
    bool eio_persistent;
    int eio_code;
    uint64_t eio_at, eio_seen;
    uint32_t read_flip_one_in;
    uint64_t read_rng;
    struct mf_faultbd_counters counters;
    struct mf_faultbd_cut last_cut;
    uint8_t scratch[MF_FAULTBD_BLOCK_MAX];
};

/* Sets up `fb` over `medium` (borrowed, must outlive fb). `config` is copied (NULL: all zero);
 * its cache buffer is borrowed. Nothing is armed; counters start at zero. The medium's block
 * size must not exceed MF_FAULTBD_BLOCK_MAX (assert). */
void mf_faultbd_init(struct mf_faultbd *fb, const struct mf_bd *medium,
                     const struct mf_faultbd_config *config);

/* Arms a power cut at the n-th write point from now (n >= 1, assert), with one
 * MF_FAULTBD_CUT_* mode. Replaces an earlier arming. */
void mf_faultbd_arm_cut(struct mf_faultbd *fb, uint64_t n, unsigned mode);
void mf_faultbd_disarm_cut(struct mf_faultbd *fb);

/* Cuts the power now, between calls (no call is interrupted, so TORN behaves as APPLY and
 * GARBLE only touches unsynced writes). No-op when already off. */
void mf_faultbd_cut_now(struct mf_faultbd *fb, unsigned mode);

/* The reboot: power on, unsynced writes forgotten (as DROP would, when no cut resolved them),
 * and nothing armed: no cut, no I/O errors, no read corruption. Counters and seed are kept, so
 * the same medium can be remounted through the same device. */
void mf_faultbd_reset(struct mf_faultbd *fb);

bool mf_faultbd_powered_off(const struct mf_faultbd *fb);

/* Makes the n-th call (n >= 1, assert) from now whose kind is in `ops` (MF_FAULTBD_OP_* bits)
 * fail with MF_EIO, without effect; with `persistent`, that call and every later one of those
 * kinds fail. A failed sync leaves the unsynced writes pending. Replaces an earlier setting. */
void mf_faultbd_fail_io(struct mf_faultbd *fb, unsigned ops, uint64_t n, bool persistent);
/* Makes the errors armed by the last mf_faultbd_fail_io return `error` instead of MF_EIO, as a
 * file device reports a full or read-only host file system (MF_ENOSPC, MF_EROFS, MF_EACCES,
 * MF_EFBIG): still a failure of the device, without effect. The next mf_faultbd_fail_io sets
 * MF_EIO again. */
void mf_faultbd_fail_io_code(struct mf_faultbd *fb, int error);
void mf_faultbd_fail_io_off(struct mf_faultbd *fb);

/* Flips bit `bit` (0..7) of the byte at `offset` on the medium (durable contents; unsynced
 * writes over that block still hide it until they land). Works powered off too. MF_EINVAL
 * beyond the device; medium errors as returned. */
int mf_faultbd_flip_bit(struct mf_faultbd *fb, uint64_t offset, unsigned bit);

/* Read corruption: each block a read returns has, with probability 1/one_in, one random bit
 * flipped in the caller's buffer (the medium is untouched). 0 turns it off; 1 hits every block. */
void mf_faultbd_corrupt_reads(struct mf_faultbd *fb, uint32_t one_in);

/* Unsynced prog/erase calls held in the cache. */
size_t mf_faultbd_pending(const struct mf_faultbd *fb);

const struct mf_faultbd_counters *mf_faultbd_counters(const struct mf_faultbd *fb);
void mf_faultbd_reset_counters(struct mf_faultbd *fb);

/* The last cut since init, or NULL. */
const struct mf_faultbd_cut *mf_faultbd_last_cut(const struct mf_faultbd *fb);

uint64_t mf_faultbd_seed(const struct mf_faultbd *fb);

/* CRC-32 (mf_crc32) of the whole medium: its durable contents, without the unsynced writes,
 * read directly and not counted. Medium errors as returned. */
int mf_faultbd_medium_crc32(struct mf_faultbd *fb, uint32_t *crc);

/* The device's PRNG (splitmix64), for tests that need reproducible numbers: any state works. */
uint64_t mf_faultbd_random(uint64_t *state);

/* Short lowercase name of one MF_FAULTBD_CUT_* bit ("drop", "torn-bytes", ...), or "?". */
const char *mf_faultbd_cut_mode_name(unsigned mode);

#endif
