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

/* Total size in bytes. */
uint64_t mf_bd_size(const struct mf_bd *bd);

/* A slice: blocks [first, first + count) of a parent device seen as a device of its own
 * (a partition). The slice refuses anything outside its range; it shares the parent's sync. */
struct mf_bd_slice {
    struct mf_bd bd; /* hand &slice.bd to users */
    const struct mf_bd *parent;
    mf_block_t first;
};

void mf_bd_slice_init(struct mf_bd_slice *slice, const struct mf_bd *parent, mf_block_t first,
                      mf_block_t count);

#endif
