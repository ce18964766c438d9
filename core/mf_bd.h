/* Block device: the platform's storage as the core sees it, an array of equal blocks.
 * Shaped like littlefs' struct lfs_config: an opaque context, callbacks that take the device
 * first, and the geometry. The core reaches storage only through this interface. */
#ifndef MF_BD_H
#define MF_BD_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t mf_block_t;

struct mf_bd {
    /* Opaque to the core; owned by whoever set up the device. */
    void *context;

    /* Read `count` blocks starting at `block` into `buffer` (count * block_size bytes).
     * Returns 0 or a negative MF_E* code. */
    int (*read)(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count);

    /* Write `count` blocks starting at `block`. Storage here (files, SD cards, eMMC) overwrites
     * in place, no erase needed first. A write is only durable after a later sync. */
    int (*prog)(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count);

    /* Discard `count` blocks: afterwards they read as zero bytes. Durable after a later sync. */
    int (*erase)(const struct mf_bd *bd, mf_block_t block, size_t count);

    /* Make every completed prog and erase durable (a write barrier). */
    int (*sync)(const struct mf_bd *bd);

    /* Optional; NULL where every block has its room for good (a block device, memory). Makes
     * sure that later progs of `count` blocks from `block` cannot fail for lack of room, e.g. by
     * giving a sparse image file's holes their place on the host's disk now; changes no byte a
     * read returns. MF_ENOSPC when the room is not there (part of it may be reserved then). The
     * caller owns the range: nothing else writes it meanwhile. */
    int (*reserve)(const struct mf_bd *bd, mf_block_t block, size_t count);

    uint32_t block_size;    /* bytes per block: a power of two, at least 512 */
    mf_block_t block_count; /* number of blocks */
};

/* Checked entry points: range-check the request against the geometry (MF_EINVAL when it does
 * not fit, so that a hostile on-storage pointer can never reach outside the device), then call
 * the device. A NULL callback or a zero geometry is a contract mistake (assert). */
int mf_bd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count);
int mf_bd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count);
int mf_bd_erase(const struct mf_bd *bd, mf_block_t block, size_t count);
int mf_bd_sync(const struct mf_bd *bd);
/* 0 at once for a device without a reserve callback (range-checked all the same). */
int mf_bd_reserve(const struct mf_bd *bd, mf_block_t block, size_t count);

/* Total size in bytes. */
uint64_t mf_bd_size(const struct mf_bd *bd);

/* A slice: blocks [first, first + count) of a parent device seen as a device of its own
 * (a partition). The slice refuses anything outside its range; it shares the parent's sync and
 * reserves through the parent (when the parent can). */
struct mf_bd_slice {
    struct mf_bd bd; /* hand &slice.bd to users */
    const struct mf_bd *parent;
    mf_block_t first;
};

void mf_bd_slice_init(struct mf_bd_slice *slice, const struct mf_bd *parent, mf_block_t first,
                      mf_block_t count);

#endif
