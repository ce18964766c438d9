/* Fuzz target: hostile client byte streams against the NBD protocol engine (mf_nbd), from the
 * greeting on: handshake options, then requests with their payloads.
 * Properties checked: nothing outside the exported partition of the RAM disk ever changes; the
 * lock is balanced and never held while sending; the same input fed whole and fed in pieces
 * gives the same output bytes, the same disk and the same end (split invariance).
 * Input: byte 0 chooses the setup (bit 0: read-only export; bit 1: 4096-byte device blocks,
 * else 512; bit 2: export named "" rather than "public"; bits 2-7: the piece sizes of the
 * second run), the rest is what the client sends. The export is the middle two thirds of a
 * 24 KiB RAM disk.
 * docs/internals/nbd.md says how the seed corpus was made. */
#include "mf_bd.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_nbd.h"
#include "mf_rambd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DISK_BYTES   (48u * 512u) /* 48 blocks of 512 or 6 of 4096 */
#define BUFFER_BYTES (24u << 10)  /* engine working memory: a small staging area, many pieces */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    uint8_t disk[DISK_BYTES];
    uint8_t buffer[BUFFER_BYTES];
    struct mf_rambd ram;
    struct mf_bd_slice slice;
    struct mf_nbd nbd;
    int lock_depth;
    uint32_t out_crc;
    uint64_t out_bytes;
    int result;
};

static struct run runs[2];

static void run_lock(void *context)
{
    struct run *r = context;
    if (r->lock_depth != 0)
        abort(); /* never taken twice */
    r->lock_depth++;
}

static void run_unlock(void *context)
{
    struct run *r = context;
    if (r->lock_depth != 1)
        abort();
    r->lock_depth--;
}

static int run_send(void *context, const void *data, size_t size)
{
    struct run *r = context;
    if (r->lock_depth != 0)
        abort(); /* the lock is never held while the client is being written to */
    r->out_crc = mf_crc32_update(r->out_crc, data, size);
    r->out_bytes += size;
    return 0;
}

static uint8_t guard_byte(size_t i)
{
    return (uint8_t)(i * 29u + 5u);
}

/* One session over the whole input; pieces of 1 + (seed-driven) bytes when `piece_seed` != 0. */
static void run_session(struct run *r, uint8_t setup, const uint8_t *input, size_t size,
                        unsigned piece_seed)
{
    uint32_t bs = (setup & 2) ? 4096u : 512u;
    mf_block_t blocks = DISK_BYTES / bs;
    mf_block_t first = blocks / 6, count = blocks - 2 * (blocks / 6);
    for (size_t i = 0; i < DISK_BYTES; i++)
        r->disk[i] = guard_byte(i);
    mf_rambd_init(&r->ram, r->disk, bs, blocks);
    mf_bd_slice_init(&r->slice, &r->ram.bd, first, count);
    r->lock_depth = 0;
    r->out_crc = 0;
    r->out_bytes = 0;
    const struct mf_lock lock = {.lock = run_lock, .unlock = run_unlock, .context = r};
    const struct mf_nbd_config config = {
        .bd = &r->slice.bd,
        .lock = &lock,
        .export_name = (setup & 4) ? "" : NULL,
        .read_only = (setup & 1) != 0,
        .send = run_send,
        .send_context = r,
        .buffer = r->buffer,
        .buffer_size = sizeof r->buffer,
    };
    if (mf_nbd_init(&r->nbd, &config) != 0)
        abort();
    r->result = mf_nbd_start(&r->nbd);
    uint32_t state = piece_seed * 2654435761u + 1u;
    for (size_t at = 0; at < size && r->result == 0;) {
        size_t n = size - at;
        if (piece_seed) {
            state = state * 1103515245u + 12345u;
            size_t piece = 1u + (state >> 16) % (1u + piece_seed * 7u);
            if (piece < n)
                n = piece;
        }
        r->result = mf_nbd_input(&r->nbd, input + at, n);
        at += n;
    }
    if (r->lock_depth != 0)
        abort();
    /* Everything outside the partition keeps its bytes. */
    size_t start = (size_t)first * bs, end = start + (size_t)count * bs;
    for (size_t i = 0; i < DISK_BYTES; i++) {
        if ((i < start || i >= end) && r->disk[i] != guard_byte(i))
            abort();
    }
    /* A closed session says why, an open one does not. */
    if (mf_nbd_closed(&r->nbd) != (mf_nbd_reason(&r->nbd)[0] != '\0'))
        abort();
    if ((r->result != 0) && !mf_nbd_closed(&r->nbd))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t setup = data[0];
    run_session(&runs[0], setup, data + 1, size - 1, 0);
    run_session(&runs[1], setup, data + 1, size - 1, 1u + (setup >> 2));
    if (runs[0].result != runs[1].result || runs[0].out_crc != runs[1].out_crc ||
        runs[0].out_bytes != runs[1].out_bytes ||
        mf_nbd_closed(&runs[0].nbd) != mf_nbd_closed(&runs[1].nbd) ||
        memcmp(runs[0].disk, runs[1].disk, DISK_BYTES) != 0 ||
        strcmp(mf_nbd_reason(&runs[0].nbd), mf_nbd_reason(&runs[1].nbd)) != 0)
        abort();
    return 0;
}
