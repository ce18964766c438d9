/* RAM block device: a struct mf_bd over memory the caller owns, for tests and as the medium
 * under the fault-injecting device (mf_faultbd). Nothing is allocated here; writes land at once
 * (sync has nothing to do) and erase zeroes, as the block-device interface promises. */
#ifndef MF_RAMBD_H
#define MF_RAMBD_H

#include "mf_bd.h"

#include <stddef.h>
#include <stdint.h>

struct mf_rambd {
    struct mf_bd bd; /* hand &ram.bd to users */
    uint8_t *memory; /* block_size * block_count bytes, owned by the caller */
};

/* Sets up `ram` over `memory`, block_size * block_count bytes that the caller keeps alive for
 * the device's lifetime and frees afterwards. The memory's current bytes are the device's
 * contents (zero it first for a blank device). block_size must be a power of two of at least
 * 512 and the total size must fit a size_t (asserts). Out-of-range requests that bypass
 * mf_bd_read() and friends get MF_EINVAL. */
void mf_rambd_init(struct mf_rambd *ram, void *memory, uint32_t block_size, mf_block_t block_count);

/* Device size in bytes. */
size_t mf_rambd_size(const struct mf_rambd *ram);

/* Loads an image: copies `size` bytes of `data` to the start of the device and zeroes the
 * rest. MF_EINVAL (device unchanged) when `size` exceeds the device. */
int mf_rambd_load(struct mf_rambd *ram, const void *data, size_t size);

/* Saves the first `size` bytes of the device into `data` (caller's buffer). MF_EINVAL when
 * `size` exceeds the device. */
int mf_rambd_save(const struct mf_rambd *ram, void *data, size_t size);

#endif
