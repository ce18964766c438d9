/* Fault-injecting block device (see mf_faultbd.h): a write-back cache over a medium, with power
 * cuts resolved by mode, injected I/O errors, bit flips and counters. Every random choice comes
 * from splitmix64 seeded by the configured seed, so a failing case repeats from its seed. */
#include "mf_faultbd.h"

#include "mf_crc32.h"
#include "mf_err.h"

#include <assert.h>
#include <string.h>

uint64_t mf_faultbd_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* Modulo bias is irrelevant at the bounds used here (block counts, byte offsets). */
static uint64_t mf_faultbd_below(uint64_t *state, uint64_t bound)
{
    return bound ? mf_faultbd_random(state) % bound : 0;
}

const char *mf_faultbd_cut_mode_name(unsigned mode)
{
    switch (mode) {
    case MF_FAULTBD_CUT_DROP:
        return "drop";
    case MF_FAULTBD_CUT_APPLY:
        return "apply";
    case MF_FAULTBD_CUT_SOME:
        return "some";
    case MF_FAULTBD_CUT_TORN:
        return "torn";
    case MF_FAULTBD_CUT_TORN_BYTES:
        return "torn-bytes";
    case MF_FAULTBD_CUT_GARBLE:
        return "garble";
    default:
        return "?";
    }
}

static struct mf_faultbd *mf_faultbd_of(const struct mf_bd *bd)
{
    return bd->context;
}

static size_t mf_faultbd_bytes(const struct mf_faultbd *fb, size_t blocks)
{
    return blocks * fb->bd.block_size;
}

/* Writes `count` blocks of a prog (data) or an erase (data NULL) to the medium. */
static int mf_faultbd_put(struct mf_faultbd *fb, unsigned op, mf_block_t block, const void *data,
                          size_t count)
{
    if (op == MF_FAULTBD_OP_PROG)
        return mf_bd_prog(fb->medium, block, data, count);
    return mf_bd_erase(fb->medium, block, count);
}

static const uint8_t *mf_faultbd_entry_data(const struct mf_faultbd *fb,
                                            const struct mf_faultbd_entry *entry)
{
    if (entry->op != MF_FAULTBD_OP_PROG)
        return NULL;
    return fb->cache + mf_faultbd_bytes(fb, entry->data);
}

static void mf_faultbd_forget(struct mf_faultbd *fb)
{
    fb->log_len = 0;
    fb->cache_used = 0;
}

/* Writes the pending log to the medium in call order and syncs it. On a medium error the
 * entries not yet written stay pending. */
static int mf_faultbd_flush(struct mf_faultbd *fb)
{
    size_t done = 0;
    int err = 0;
    for (; done < fb->log_len; done++) {
        const struct mf_faultbd_entry *entry = &fb->log[done];
        err = mf_faultbd_put(fb, entry->op, entry->block, mf_faultbd_entry_data(fb, entry),
                             entry->count);
        if (err)
            break;
    }
    if (done == fb->log_len) {
        mf_faultbd_forget(fb);
        return err ? err : mf_bd_sync(fb->medium);
    }
    memmove(fb->log, fb->log + done, (fb->log_len - done) * sizeof fb->log[0]);
    fb->log_len -= done;
    return err;
}

static int mf_faultbd_append(struct mf_faultbd *fb, unsigned op, mf_block_t block, const void *data,
                             size_t count)
{
    size_t need = op == MF_FAULTBD_OP_PROG ? count : 0;
    if (fb->cache_blocks == 0) {
        int err = mf_faultbd_put(fb, op, block, data, count);
        return err ? err : mf_bd_sync(fb->medium);
    }
    if (fb->log_len == MF_FAULTBD_LOG_MAX || need > fb->cache_blocks - fb->cache_used) {
        fb->counters.forced_flushes++;
        int err = mf_faultbd_flush(fb);
        if (err)
            return err;
        if (need > fb->cache_blocks) {
            err = mf_faultbd_put(fb, op, block, data, count);
            return err ? err : mf_bd_sync(fb->medium);
        }
    }
    struct mf_faultbd_entry *entry = &fb->log[fb->log_len++];
    *entry = (struct mf_faultbd_entry){.op = op, .block = block, .count = count};
    if (need) {
        entry->data = fb->cache_used;
        memcpy(fb->cache + mf_faultbd_bytes(fb, fb->cache_used), data, mf_faultbd_bytes(fb, count));
        fb->cache_used += need;
    }
    return 0;
}

static void mf_faultbd_note(struct mf_faultbd_cut *cut, int err)
{
    if (err && !cut->medium_error)
        cut->medium_error = err;
}

/* One block of a write, landing intact. */
static void mf_faultbd_land(struct mf_faultbd *fb, struct mf_faultbd_cut *cut, unsigned op,
                            mf_block_t block, const uint8_t *data)
{
    mf_faultbd_note(cut, mf_faultbd_put(fb, op, block, data, 1));
    cut->landed_blocks++;
}

static void mf_faultbd_garble(struct mf_faultbd *fb, struct mf_faultbd_cut *cut, mf_block_t block,
                              uint64_t *rng)
{
    for (size_t i = 0; i < fb->bd.block_size; i += 8) {
        uint64_t r = mf_faultbd_random(rng);
        memcpy(fb->scratch + i, &r, sizeof r);
    }
    mf_faultbd_note(cut, mf_bd_prog(fb->medium, block, fb->scratch, 1));
    cut->garbled_blocks++;
}

/* Block `index` of a write as one landing unit: its data (prog) or NULL (erase). */
static const uint8_t *mf_faultbd_unit_data(const struct mf_faultbd *fb, const uint8_t *data,
                                           size_t index)
{
    return data ? data + mf_faultbd_bytes(fb, index) : NULL;
}

static void mf_faultbd_cut_some(struct mf_faultbd *fb, struct mf_faultbd_cut *cut, uint64_t *rng)
{
    size_t order[MF_FAULTBD_LOG_MAX];
    for (size_t i = 0; i < fb->log_len; i++)
        order[i] = i;
    for (size_t i = fb->log_len; i > 1; i--) {
        size_t j = (size_t)mf_faultbd_below(rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < fb->log_len; i++) {
        const struct mf_faultbd_entry *entry = &fb->log[order[i]];
        const uint8_t *data = mf_faultbd_entry_data(fb, entry);
        for (size_t b = 0; b < entry->count; b++) {
            if (mf_faultbd_random(rng) & 1u)
                mf_faultbd_land(fb, cut, entry->op, entry->block + b,
                                mf_faultbd_unit_data(fb, data, b));
        }
    }
}

static void mf_faultbd_apply_all(struct mf_faultbd *fb, struct mf_faultbd_cut *cut)
{
    for (size_t i = 0; i < fb->log_len; i++) {
        const struct mf_faultbd_entry *entry = &fb->log[i];
        mf_faultbd_note(cut, mf_faultbd_put(fb, entry->op, entry->block,
                                            mf_faultbd_entry_data(fb, entry), entry->count));
        cut->landed_blocks += entry->count;
    }
}

static void mf_faultbd_cut_torn(struct mf_faultbd *fb, struct mf_faultbd_cut *cut,
                                const uint8_t *data, uint64_t *rng)
{
    mf_faultbd_apply_all(fb, cut);
    if (cut->count == 0)
        return;
    size_t whole = (size_t)mf_faultbd_below(rng, cut->count);
    if (whole) {
        mf_faultbd_note(cut, mf_faultbd_put(fb, cut->op, cut->block, data, whole));
        cut->landed_blocks += whole;
    }
    cut->torn_blocks = whole;
    if (cut->mode != MF_FAULTBD_CUT_TORN_BYTES)
        return;
    uint32_t size = fb->bd.block_size;
    uint32_t part = 1u + (uint32_t)mf_faultbd_below(rng, size - 1u);
    mf_block_t block = cut->block + whole;
    int err = mf_bd_read(fb->medium, block, fb->scratch, 1);
    if (!err) {
        if (data)
            memcpy(fb->scratch, mf_faultbd_unit_data(fb, data, whole), part);
        else
            memset(fb->scratch, 0, part);
        err = mf_bd_prog(fb->medium, block, fb->scratch, 1);
    }
    mf_faultbd_note(cut, err);
    cut->torn_bytes = part;
}

static void mf_faultbd_cut_garble(struct mf_faultbd *fb, struct mf_faultbd_cut *cut,
                                  const uint8_t *data, uint64_t *rng)
{
    uint64_t units = cut->pending_blocks + cut->count;
    if (units == 0)
        return;
    uint64_t forced = mf_faultbd_below(rng, units);
    uint64_t unit = 0;
    for (size_t i = 0; i <= fb->log_len; i++) {
        unsigned op = cut->op;
        mf_block_t block = cut->block;
        size_t count = cut->count;
        const uint8_t *bytes = data;
        if (i < fb->log_len) {
            op = fb->log[i].op;
            block = fb->log[i].block;
            count = fb->log[i].count;
            bytes = mf_faultbd_entry_data(fb, &fb->log[i]);
        }
        for (size_t b = 0; b < count; b++, unit++) {
            uint64_t choice = unit == forced ? 2 : mf_faultbd_below(rng, 3);
            if (choice == 1)
                mf_faultbd_land(fb, cut, op, block + b, mf_faultbd_unit_data(fb, bytes, b));
            else if (choice == 2)
                mf_faultbd_garble(fb, cut, block + b, rng);
        }
    }
}

/* The power cut: resolve the unsynced writes (and the interrupted call `op` over
 * block/count/data, op 0 when none) by mode, then power off. */
static void mf_faultbd_cut(struct mf_faultbd *fb, unsigned mode, unsigned op, mf_block_t block,
                           size_t count, const void *data)
{
    struct mf_faultbd_cut *cut = &fb->last_cut;
    *cut = (struct mf_faultbd_cut){
        .write_point = fb->counters.write_points,
        .mode = mode,
        .op = op,
        .block = block,
        .count = op == MF_FAULTBD_OP_PROG || op == MF_FAULTBD_OP_ERASE ? count : 0,
        .seed = fb->config.seed,
    };
    for (size_t i = 0; i < fb->log_len; i++)
        cut->pending_blocks += fb->log[i].count;
    /* Derived from the write point, so cuts at different points make independent choices. */
    uint64_t rng = fb->config.seed ^ (cut->write_point * 0xD1B54A32D192ED03u);

    switch (mode) {
    case MF_FAULTBD_CUT_DROP:
        break;
    case MF_FAULTBD_CUT_APPLY:
        mf_faultbd_apply_all(fb, cut);
        break;
    case MF_FAULTBD_CUT_SOME:
        mf_faultbd_cut_some(fb, cut, &rng);
        break;
    case MF_FAULTBD_CUT_TORN:
    case MF_FAULTBD_CUT_TORN_BYTES:
        mf_faultbd_cut_torn(fb, cut, data, &rng);
        break;
    case MF_FAULTBD_CUT_GARBLE:
        mf_faultbd_cut_garble(fb, cut, data, &rng);
        break;
    default:
        assert(0 && "unknown cut mode");
        break;
    }
    mf_faultbd_note(cut, mf_bd_sync(fb->medium));
    mf_faultbd_forget(fb);
    fb->powered_off = true;
    fb->cut_armed = false;
    fb->counters.cuts++;
    if (fb->config.on_cut)
        fb->config.on_cut(fb->config.on_cut_arg, cut);
}

/* The common start of every call: power, range, counting, the cut countdown and injected I/O
 * errors. Returns 0 when the call may go ahead. */
static int mf_faultbd_begin(struct mf_faultbd *fb, unsigned op, mf_block_t block, size_t count,
                            const void *data)
{
    if (fb->powered_off)
        return MF_EPOWERLOSS;
    if (op != MF_FAULTBD_OP_SYNC &&
        (block > fb->bd.block_count || count > fb->bd.block_count - block))
        return MF_EINVAL;
    if (count == 0 && op != MF_FAULTBD_OP_SYNC)
        return 0; /* nothing happens, nothing counts */
    switch (op) {
    case MF_FAULTBD_OP_READ:
        fb->counters.reads++;
        break;
    case MF_FAULTBD_OP_PROG:
        fb->counters.progs++;
        break;
    case MF_FAULTBD_OP_ERASE:
        fb->counters.erases++;
        break;
    case MF_FAULTBD_OP_RESERVE:
        fb->counters.reserves++;
        break;
    default:
        fb->counters.syncs++;
        break;
    }
    if (op & MF_FAULTBD_OP_WRITES) {
        fb->counters.write_points++;
        if (fb->cut_armed && fb->counters.write_points == fb->cut_at) {
            mf_faultbd_cut(fb, fb->cut_mode, op, block, count, data);
            return MF_EPOWERLOSS;
        }
    }
    if (fb->eio_ops & op) {
        fb->eio_seen++;
        if (fb->eio_seen == fb->eio_at || (fb->eio_persistent && fb->eio_seen > fb->eio_at)) {
            fb->counters.io_errors++;
            return fb->eio_code;
        }
    }
    return 0;
}

static void mf_faultbd_overlay(const struct mf_faultbd *fb, mf_block_t block, uint8_t *buffer,
                               size_t count)
{
    mf_block_t end = block + count;
    for (size_t i = 0; i < fb->log_len; i++) {
        const struct mf_faultbd_entry *entry = &fb->log[i];
        mf_block_t lo = entry->block > block ? entry->block : block;
        mf_block_t entry_end = entry->block + entry->count;
        mf_block_t hi = entry_end < end ? entry_end : end;
        if (lo >= hi)
            continue;
        uint8_t *dst = buffer + mf_faultbd_bytes(fb, (size_t)(lo - block));
        size_t size = mf_faultbd_bytes(fb, (size_t)(hi - lo));
        const uint8_t *src = mf_faultbd_entry_data(fb, entry);
        if (src)
            memcpy(dst, src + mf_faultbd_bytes(fb, (size_t)(lo - entry->block)), size);
        else
            memset(dst, 0, size);
    }
}

static int mf_faultbd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    struct mf_faultbd *fb = mf_faultbd_of(bd);
    int err = mf_faultbd_begin(fb, MF_FAULTBD_OP_READ, block, count, NULL);
    if (err || count == 0)
        return err;
    err = mf_bd_read(fb->medium, block, buffer, count);
    if (err)
        return err;
    mf_faultbd_overlay(fb, block, buffer, count);
    if (fb->read_flip_one_in) {
        uint8_t *bytes = buffer;
        for (size_t b = 0; b < count; b++) {
            if (mf_faultbd_below(&fb->read_rng, fb->read_flip_one_in) != 0)
                continue;
            uint64_t bit = mf_faultbd_below(&fb->read_rng, (uint64_t)bd->block_size * 8u);
            bytes[mf_faultbd_bytes(fb, b) + bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
            fb->counters.read_flips++;
        }
    }
    fb->counters.bytes_read += mf_faultbd_bytes(fb, count);
    return 0;
}

static int mf_faultbd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer,
                           size_t count)
{
    struct mf_faultbd *fb = mf_faultbd_of(bd);
    int err = mf_faultbd_begin(fb, MF_FAULTBD_OP_PROG, block, count, buffer);
    if (err || count == 0)
        return err;
    err = mf_faultbd_append(fb, MF_FAULTBD_OP_PROG, block, buffer, count);
    if (!err)
        fb->counters.bytes_written += mf_faultbd_bytes(fb, count);
    return err;
}

static int mf_faultbd_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct mf_faultbd *fb = mf_faultbd_of(bd);
    int err = mf_faultbd_begin(fb, MF_FAULTBD_OP_ERASE, block, count, NULL);
    if (err || count == 0)
        return err;
    err = mf_faultbd_append(fb, MF_FAULTBD_OP_ERASE, block, NULL, count);
    if (!err)
        fb->counters.bytes_erased += mf_faultbd_bytes(fb, count);
    return err;
}

static int mf_faultbd_reserve(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct mf_faultbd *fb = mf_faultbd_of(bd);
    int err = mf_faultbd_begin(fb, MF_FAULTBD_OP_RESERVE, block, count, NULL);
    if (err || count == 0)
        return err;
    return mf_bd_reserve(fb->medium, block, count);
}

static int mf_faultbd_sync(const struct mf_bd *bd)
{
    struct mf_faultbd *fb = mf_faultbd_of(bd);
    int err = mf_faultbd_begin(fb, MF_FAULTBD_OP_SYNC, 0, 0, NULL);
    return err ? err : mf_faultbd_flush(fb);
}

void mf_faultbd_init(struct mf_faultbd *fb, const struct mf_bd *medium,
                     const struct mf_faultbd_config *config)
{
    assert(fb && medium);
    assert(medium->block_size >= 512 && medium->block_size <= MF_FAULTBD_BLOCK_MAX);
    memset(fb, 0, sizeof *fb);
    if (config)
        fb->config = *config;
    assert(fb->config.cache || fb->config.cache_size == 0);
    fb->medium = medium;
    fb->cache = fb->config.cache;
    fb->cache_blocks = fb->config.cache_size / medium->block_size;
    fb->read_rng = fb->config.seed ^ 0x5EEDF11Bu;
    fb->bd = (struct mf_bd){
        .context = fb,
        .read = mf_faultbd_read,
        .prog = mf_faultbd_prog,
        .erase = mf_faultbd_erase,
        .sync = mf_faultbd_sync,
        .reserve = mf_faultbd_reserve,
        .block_size = medium->block_size,
        .block_count = medium->block_count,
    };
}

void mf_faultbd_arm_cut(struct mf_faultbd *fb, uint64_t n, unsigned mode)
{
    assert(n >= 1);
    assert(mode && (mode & (mode - 1)) == 0 && (mode & MF_FAULTBD_CUT_ALL) == mode);
    fb->cut_armed = true;
    fb->cut_mode = mode;
    fb->cut_at = fb->counters.write_points + n;
}

void mf_faultbd_disarm_cut(struct mf_faultbd *fb)
{
    fb->cut_armed = false;
}

void mf_faultbd_cut_now(struct mf_faultbd *fb, unsigned mode)
{
    assert(mode && (mode & (mode - 1)) == 0 && (mode & MF_FAULTBD_CUT_ALL) == mode);
    if (!fb->powered_off)
        mf_faultbd_cut(fb, mode, 0, 0, 0, NULL);
}

void mf_faultbd_reset(struct mf_faultbd *fb)
{
    mf_faultbd_forget(fb);
    fb->powered_off = false;
    fb->cut_armed = false;
    fb->eio_ops = 0;
    fb->read_flip_one_in = 0;
}

bool mf_faultbd_powered_off(const struct mf_faultbd *fb)
{
    return fb->powered_off;
}

void mf_faultbd_fail_io(struct mf_faultbd *fb, unsigned ops, uint64_t n, bool persistent)
{
    assert(n >= 1 && (ops & MF_FAULTBD_OP_ALL) == ops);
    fb->eio_ops = ops;
    fb->eio_at = n;
    fb->eio_seen = 0;
    fb->eio_persistent = persistent;
    fb->eio_code = MF_EIO;
}

void mf_faultbd_fail_io_code(struct mf_faultbd *fb, int error)
{
    assert(error < 0 && error != MF_EPOWERLOSS);
    fb->eio_code = error;
}

void mf_faultbd_fail_io_off(struct mf_faultbd *fb)
{
    fb->eio_ops = 0;
}

int mf_faultbd_flip_bit(struct mf_faultbd *fb, uint64_t offset, unsigned bit)
{
    assert(bit < 8);
    uint32_t size = fb->bd.block_size;
    if (offset / size >= fb->bd.block_count)
        return MF_EINVAL;
    mf_block_t block = offset / size;
    int err = mf_bd_read(fb->medium, block, fb->scratch, 1);
    if (err)
        return err;
    fb->scratch[offset % size] ^= (uint8_t)(1u << bit);
    err = mf_bd_prog(fb->medium, block, fb->scratch, 1);
    return err ? err : mf_bd_sync(fb->medium);
}

void mf_faultbd_corrupt_reads(struct mf_faultbd *fb, uint32_t one_in)
{
    fb->read_flip_one_in = one_in;
}

size_t mf_faultbd_pending(const struct mf_faultbd *fb)
{
    return fb->log_len;
}

const struct mf_faultbd_counters *mf_faultbd_counters(const struct mf_faultbd *fb)
{
    return &fb->counters;
}

void mf_faultbd_reset_counters(struct mf_faultbd *fb)
{
    uint64_t write_points = fb->counters.write_points;
    memset(&fb->counters, 0, sizeof fb->counters);
    /* An armed countdown is relative to the write point it was armed at. */
    if (fb->cut_armed)
        fb->cut_at -= write_points;
}

const struct mf_faultbd_cut *mf_faultbd_last_cut(const struct mf_faultbd *fb)
{
    return fb->last_cut.mode ? &fb->last_cut : NULL;
}

uint64_t mf_faultbd_seed(const struct mf_faultbd *fb)
{
    return fb->config.seed;
}

int mf_faultbd_medium_crc32(struct mf_faultbd *fb, uint32_t *crc)
{
    uint32_t value = 0;
    for (mf_block_t block = 0; block < fb->bd.block_count; block++) {
        int err = mf_bd_read(fb->medium, block, fb->scratch, 1);
        if (err)
            return err;
        value = mf_crc32_update(value, fb->scratch, fb->bd.block_size);
    }
    *crc = value;
    return 0;
}
