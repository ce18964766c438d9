/* Unit tests of the RAM block device and the fault-injecting block device: every cut mode,
 * the countdown, I/O errors, bit flips, read corruption, the cache bound, the counters and
 * reserve (passed to the medium, a write point without data).
 * Each test builds a tiny device (16 blocks of 512 bytes) and asserts on the medium's bytes. */
#include "mf_bd.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_faultbd.h"
#include "mf_rambd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BS     512u
#define BLOCKS 16u

struct rig {
    uint8_t memory[BS * BLOCKS];
    uint8_t cache[BS * 32];
    struct mf_rambd ram;
    struct mf_faultbd fb;
    const struct mf_bd *bd; /* the fault device */
};

/* A zeroed medium under a fault device with `cache_blocks` blocks of cache. */
static struct rig *rig_new(uint64_t seed, size_t cache_blocks)
{
    struct rig *r = calloc(1, sizeof *r);
    assert_non_null(r);
    assert_true(cache_blocks <= sizeof r->cache / BS);
    mf_rambd_init(&r->ram, r->memory, BS, BLOCKS);
    struct mf_faultbd_config config = {
        .seed = seed,
        .cache = cache_blocks ? r->cache : NULL,
        .cache_size = cache_blocks * BS,
    };
    mf_faultbd_init(&r->fb, &r->ram.bd, &config);
    r->bd = &r->fb.bd;
    return r;
}

/* Block contents named by a tag; no tag gives an all-zero block. */
static void fill(uint8_t *block, uint8_t tag)
{
    for (size_t i = 0; i < BS; i++)
        block[i] = (uint8_t)(tag ^ (uint8_t)(i * 13u + 1u));
}

static int same_as(const uint8_t *block, uint8_t tag)
{
    uint8_t expected[BS];
    fill(expected, tag);
    return memcmp(block, expected, BS) == 0;
}

static int is_zero(const uint8_t *block)
{
    for (size_t i = 0; i < BS; i++) {
        if (block[i])
            return 0;
    }
    return 1;
}

static const uint8_t *medium(const struct rig *r, mf_block_t block)
{
    return r->memory + block * BS;
}

/* Programs `count` blocks from `block`, block i with tag + i; returns the call's result. */
static int put(struct rig *r, mf_block_t block, uint8_t tag, size_t count)
{
    uint8_t data[BS * 8];
    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++)
        fill(data + i * BS, (uint8_t)(tag + i));
    return mf_bd_prog(r->bd, block, data, count);
}

/* Writes tag + i to blocks [block, block + count) and syncs, all succeeding. */
static void put_synced(struct rig *r, mf_block_t block, uint8_t tag, size_t count)
{
    assert_int_equal(put(r, block, tag, count), 0);
    assert_int_equal(mf_bd_sync(r->bd), 0);
}

static void test_rambd_basics(void **state)
{
    (void)state;
    uint8_t memory[BS * 4] = {0};
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, BS, 4);
    assert_int_equal(mf_rambd_size(&ram), sizeof memory);

    uint8_t a[BS * 2], back[BS * 2];
    fill(a, 7);
    fill(a + BS, 8);
    assert_int_equal(mf_bd_prog(&ram.bd, 2, a, 2), 0);
    assert_true(same_as(memory + 2 * BS, 7) && same_as(memory + 3 * BS, 8));
    assert_int_equal(mf_bd_read(&ram.bd, 2, back, 2), 0);
    assert_memory_equal(a, back, sizeof a);
    assert_int_equal(mf_bd_erase(&ram.bd, 3, 1), 0);
    assert_true(same_as(memory + 2 * BS, 7) && is_zero(memory + 3 * BS));
    assert_int_equal(mf_bd_sync(&ram.bd), 0);

    /* Out of range, through the checked entry points and directly. */
    assert_int_equal(mf_bd_read(&ram.bd, 3, back, 2), MF_EINVAL);
    assert_int_equal(ram.bd.read(&ram.bd, 4, back, 1), MF_EINVAL);
    assert_int_equal(ram.bd.prog(&ram.bd, 3, a, 2), MF_EINVAL);
    assert_int_equal(ram.bd.erase(&ram.bd, UINT64_MAX, 2), MF_EINVAL);

    /* Image load zeroes the rest; save copies out; both refuse more than the device. */
    uint8_t image[BS + 10];
    memset(image, 0x5A, sizeof image);
    assert_int_equal(mf_rambd_load(&ram, image, sizeof image), 0);
    assert_int_equal(memory[BS + 9], 0x5A);
    assert_int_equal(memory[BS + 10], 0);
    assert_true(is_zero(memory + 2 * BS));
    uint8_t saved[BS + 10];
    assert_int_equal(mf_rambd_save(&ram, saved, sizeof saved), 0);
    assert_memory_equal(saved, image, sizeof image);
    uint8_t big[BS * 4 + 1];
    assert_int_equal(mf_rambd_load(&ram, big, sizeof big), MF_EINVAL);
    assert_int_equal(memory[0], 0x5A);
    assert_int_equal(mf_rambd_save(&ram, big, sizeof big), MF_EINVAL);
}

static void test_reads_see_unsynced_writes(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    uint8_t buffer[BS * 3];

    assert_int_equal(put(r, 3, 40, 2), 0);
    assert_int_equal(mf_faultbd_pending(&r->fb), 1);
    assert_true(is_zero(medium(r, 3)) && is_zero(medium(r, 4)));
    assert_int_equal(mf_bd_read(r->bd, 2, buffer, 3), 0);
    assert_true(is_zero(buffer) && same_as(buffer + BS, 40) && same_as(buffer + 2 * BS, 41));

    /* Later writes win over earlier ones in what reads see. */
    assert_int_equal(put(r, 4, 50, 1), 0);
    assert_int_equal(mf_bd_read(r->bd, 4, buffer, 1), 0);
    assert_true(same_as(buffer, 50));

    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_int_equal(mf_faultbd_pending(&r->fb), 0);
    assert_true(same_as(medium(r, 3), 40) && same_as(medium(r, 4), 50));

    /* An unsynced erase reads as zero but leaves the medium until the sync. */
    assert_int_equal(mf_bd_erase(r->bd, 3, 1), 0);
    assert_int_equal(mf_bd_read(r->bd, 3, buffer, 2), 0);
    assert_true(is_zero(buffer) && same_as(buffer + BS, 50));
    assert_true(same_as(medium(r, 3), 40));
    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_true(is_zero(medium(r, 3)));
    free(r);
}

static void test_counters(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    uint8_t buffer[BS * 2];
    assert_int_equal(put(r, 0, 1, 2), 0);
    assert_int_equal(mf_bd_erase(r->bd, 5, 3), 0);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 2), 0);
    assert_int_equal(mf_bd_read(r->bd, 6, buffer, 1), 0);
    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_int_equal(r->bd->prog(r->bd, 0, buffer, 0), 0); /* empty calls do not count */
    assert_int_equal(r->bd->read(r->bd, 99, buffer, 1), MF_EINVAL);

    const struct mf_faultbd_counters *c = mf_faultbd_counters(&r->fb);
    assert_int_equal(c->reads, 2);
    assert_int_equal(c->progs, 1);
    assert_int_equal(c->erases, 1);
    assert_int_equal(c->syncs, 1);
    assert_int_equal(c->bytes_read, 3 * BS);
    assert_int_equal(c->bytes_written, 2 * BS);
    assert_int_equal(c->bytes_erased, 3 * BS);
    assert_int_equal(c->write_points, 3);
    assert_int_equal(c->forced_flushes, 0);
    assert_int_equal(c->io_errors, 0);
    assert_int_equal(c->cuts, 0);
    assert_int_equal(mf_faultbd_seed(&r->fb), 1);

    mf_faultbd_reset_counters(&r->fb);
    assert_int_equal(c->reads + c->progs + c->erases + c->syncs + c->write_points, 0);
    assert_int_equal(c->bytes_read + c->bytes_written + c->bytes_erased, 0);
    free(r);
}

struct cut_log {
    int calls;
    struct mf_faultbd_cut cut;
    struct mf_faultbd *fb;
    int powered_off_inside;
};

static void on_cut(void *arg, const struct mf_faultbd_cut *cut)
{
    struct cut_log *log = arg;
    log->calls++;
    log->cut = *cut;
    log->powered_off_inside = mf_faultbd_powered_off(log->fb);
}

static void test_cut_countdown_and_reboot(void **state)
{
    (void)state;
    struct rig *r = rig_new(9, 8);
    struct cut_log log = {.fb = &r->fb};
    mf_faultbd_init(&r->fb, &r->ram.bd,
                    &(struct mf_faultbd_config){.seed = 9,
                                                .cache = r->cache,
                                                .cache_size = 8 * BS,
                                                .on_cut = on_cut,
                                                .on_cut_arg = &log});
    uint8_t buffer[BS];

    put_synced(r, 0, 1, 1); /* write points before arming do not count */
    assert_null(mf_faultbd_last_cut(&r->fb));
    mf_faultbd_arm_cut(&r->fb, 3, MF_FAULTBD_CUT_DROP);
    assert_int_equal(put(r, 1, 2, 1), 0);                 /* 1 */
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0); /* reads are no write points */
    assert_int_equal(mf_bd_erase(r->bd, 0, 1), 0);        /* 2 */
    assert_false(mf_faultbd_powered_off(&r->fb));
    assert_int_equal(log.calls, 0);
    assert_int_equal(mf_bd_sync(r->bd), MF_EPOWERLOSS); /* 3: interrupted */
    assert_true(mf_faultbd_powered_off(&r->fb));

    assert_int_equal(log.calls, 1);
    assert_true(log.powered_off_inside);
    assert_int_equal(log.cut.write_point, 5);
    assert_int_equal(log.cut.op, MF_FAULTBD_OP_SYNC);
    assert_int_equal(log.cut.mode, MF_FAULTBD_CUT_DROP);
    assert_int_equal(log.cut.pending_blocks, 2);
    assert_int_equal(log.cut.landed_blocks, 0);
    assert_int_equal(log.cut.seed, 9);
    const struct mf_faultbd_cut *last = mf_faultbd_last_cut(&r->fb);
    assert_non_null(last);
    assert_memory_equal(last, &log.cut, sizeof log.cut);

    /* Powered off: everything fails and nothing counts. */
    struct mf_faultbd_counters before = *mf_faultbd_counters(&r->fb);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), MF_EPOWERLOSS);
    assert_int_equal(put(r, 0, 3, 1), MF_EPOWERLOSS);
    assert_int_equal(mf_bd_erase(r->bd, 0, 1), MF_EPOWERLOSS);
    assert_int_equal(mf_bd_sync(r->bd), MF_EPOWERLOSS);
    assert_memory_equal(&before, mf_faultbd_counters(&r->fb), sizeof before);
    assert_int_equal(before.cuts, 1);

    /* DROP kept the synced block and lost the unsynced prog and erase. */
    assert_true(same_as(medium(r, 0), 1) && is_zero(medium(r, 1)));

    /* Reboot: the same medium, nothing armed any more. */
    mf_faultbd_reset(&r->fb);
    assert_false(mf_faultbd_powered_off(&r->fb));
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
    assert_true(same_as(buffer, 1));
    for (int i = 0; i < 20; i++)
        put_synced(r, (mf_block_t)(i % BLOCKS), (uint8_t)i, 1);
    assert_int_equal(log.calls, 1);

    /* Arming replaces, disarming cancels; the countdown starts at arming. */
    mf_faultbd_arm_cut(&r->fb, 1, MF_FAULTBD_CUT_DROP);
    mf_faultbd_arm_cut(&r->fb, 2, MF_FAULTBD_CUT_DROP);
    assert_int_equal(put(r, 0, 1, 1), 0);
    mf_faultbd_disarm_cut(&r->fb);
    put_synced(r, 0, 1, 1);
    assert_int_equal(log.calls, 1);

    /* An armed countdown survives a counter reset. */
    mf_faultbd_arm_cut(&r->fb, 2, MF_FAULTBD_CUT_DROP);
    mf_faultbd_reset_counters(&r->fb);
    assert_int_equal(put(r, 0, 1, 1), 0);
    assert_int_equal(put(r, 0, 1, 1), MF_EPOWERLOSS);
    assert_int_equal(mf_faultbd_counters(&r->fb)->write_points, 2);
    free(r);
}

/* Common start of the mode tests: blocks 1 (tag 10) and 5 (tag 50) synced, then unsynced: block
 * 1 <- 11, block 2 <- 20, erase 5. The cut is armed at the next call. */
static void mode_setup(struct rig *r, unsigned mode)
{
    put_synced(r, 1, 10, 1);
    put_synced(r, 5, 50, 1);
    assert_int_equal(put(r, 1, 11, 1), 0);
    assert_int_equal(put(r, 2, 20, 1), 0);
    assert_int_equal(mf_bd_erase(r->bd, 5, 1), 0);
    mf_faultbd_arm_cut(&r->fb, 1, mode);
}

static void test_cut_drop(void **state)
{
    (void)state;
    struct rig *r = rig_new(3, 8);
    mode_setup(r, MF_FAULTBD_CUT_DROP);
    assert_int_equal(put(r, 7, 70, 1), MF_EPOWERLOSS);
    assert_true(same_as(medium(r, 1), 10));
    assert_true(is_zero(medium(r, 2)));
    assert_true(same_as(medium(r, 5), 50));
    assert_true(is_zero(medium(r, 7)));
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->pending_blocks, 3);
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->landed_blocks, 0);

    mf_faultbd_reset(&r->fb);
    uint8_t buffer[BS];
    assert_int_equal(mf_bd_read(r->bd, 1, buffer, 1), 0);
    assert_true(same_as(buffer, 10));
    free(r);
}

static void test_cut_apply(void **state)
{
    (void)state;
    struct rig *r = rig_new(3, 8);
    mode_setup(r, MF_FAULTBD_CUT_APPLY);
    assert_int_equal(put(r, 7, 70, 1), MF_EPOWERLOSS);
    assert_true(same_as(medium(r, 1), 11));
    assert_true(same_as(medium(r, 2), 20));
    assert_true(is_zero(medium(r, 5)));
    assert_true(is_zero(medium(r, 7))); /* the interrupted write does not happen */
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->landed_blocks, 3);
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->op, MF_FAULTBD_OP_PROG);
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->block, 7);
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->count, 1);
    free(r);
}

/* SOME: blocks 0..7 synced with tag 100 + b, then rewritten unsynced with 200 + b (one call
 * each); block 9 written twice unsynced (30, then 31). Returns the bit set of the blocks 0..7 that
 * landed, checking that each block holds exactly one of its versions. */
static unsigned some_outcome(uint64_t seed, uint8_t *block9_tag, uint32_t *crc, int *both9)
{
    struct rig *r = rig_new(seed, 16);
    for (mf_block_t b = 0; b < 8; b++)
        put_synced(r, b, (uint8_t)(100 + b), 1);
    for (mf_block_t b = 0; b < 8; b++)
        assert_int_equal(put(r, b, (uint8_t)(200 + b), 1), 0);
    assert_int_equal(put(r, 9, 30, 1), 0);
    assert_int_equal(put(r, 9, 31, 1), 0);
    mf_faultbd_arm_cut(&r->fb, 1, MF_FAULTBD_CUT_SOME);
    assert_int_equal(mf_bd_sync(r->bd), MF_EPOWERLOSS);

    unsigned landed = 0, count = 0;
    for (mf_block_t b = 0; b < 8; b++) {
        if (same_as(medium(r, b), (uint8_t)(200 + b))) {
            landed |= 1u << b;
            count++;
        } else {
            assert_true(same_as(medium(r, b), (uint8_t)(100 + b)));
        }
    }
    *block9_tag = is_zero(medium(r, 9)) ? 0 : same_as(medium(r, 9), 30) ? 30 : 31;
    assert_true(*block9_tag == 0 || same_as(medium(r, 9), *block9_tag));
    if (*block9_tag)
        count++;
    const struct mf_faultbd_cut *cut = mf_faultbd_last_cut(&r->fb);
    assert_int_equal(cut->pending_blocks, 10);
    /* landed_blocks counts both writes of block 9 when both landed, one hiding the other. */
    assert_true(cut->landed_blocks == count || cut->landed_blocks == count + 1);
    *both9 = cut->landed_blocks == count + 1;
    assert_int_equal(mf_faultbd_medium_crc32(&r->fb, crc), 0);
    free(r);
    return landed;
}

static void test_cut_some(void **state)
{
    (void)state;
    uint8_t tag9;
    uint32_t crc;
    int both9;
    unsigned all = 0, none = 0xFFu, first = some_outcome(1, &tag9, &crc, &both9);
    int differs = 0, seen9[32] = {0}, older_on_top = 0, newer_on_top = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        uint8_t again9;
        uint32_t again_crc;
        int again_both9;
        unsigned landed = some_outcome(seed, &tag9, &crc, &both9);
        /* Same seed, same outcome. */
        assert_int_equal(some_outcome(seed, &again9, &again_crc, &again_both9), landed);
        assert_int_equal(again9, tag9);
        assert_int_equal(again_crc, crc);
        all |= landed;
        none &= landed;
        differs |= landed != first;
        seen9[tag9] = 1;
        older_on_top |= both9 && tag9 == 30;
        newer_on_top |= both9 && tag9 == 31;
    }
    /* Not degenerate: every block landed under some seed and was lost under another. */
    assert_int_equal(all, 0xFFu);
    assert_int_equal(none, 0);
    assert_true(differs);
    assert_true(seen9[0] && seen9[30] && seen9[31]);
    /* The writes land in a random order: with both versions of block 9 landing, either ends on
     * top. */
    assert_true(older_on_top && newer_on_top);
}

/* TORN over an 8-block prog at block 0 (synced tag 100 + b before), with an earlier unsynced
 * write to block 10. Returns k, the blocks that landed. */
static size_t torn_outcome(uint64_t seed, unsigned mode, int erase, uint32_t *part)
{
    struct rig *r = rig_new(seed, 16);
    for (mf_block_t b = 0; b < 8; b++)
        put_synced(r, b, (uint8_t)(100 + b), 1);
    assert_int_equal(put(r, 10, 77, 1), 0);
    mf_faultbd_arm_cut(&r->fb, 1, mode);
    if (erase)
        assert_int_equal(mf_bd_erase(r->bd, 0, 8), MF_EPOWERLOSS);
    else
        assert_int_equal(put(r, 0, 200, 8), MF_EPOWERLOSS);
    assert_true(same_as(medium(r, 10), 77)); /* earlier unsynced writes land */

    const struct mf_faultbd_cut *cut = mf_faultbd_last_cut(&r->fb);
    size_t k = cut->torn_blocks;
    assert_true(k < 8); /* a strict prefix */
    for (mf_block_t b = 0; b < 8; b++) {
        uint8_t old_tag = (uint8_t)(100 + b), new_tag = (uint8_t)(200 + b);
        const uint8_t *got = medium(r, b);
        if (b < k) {
            assert_true(erase ? is_zero(got) : same_as(got, new_tag));
        } else if (b == k && mode == MF_FAULTBD_CUT_TORN_BYTES) {
            uint8_t old_bytes[BS], new_bytes[BS];
            fill(old_bytes, old_tag);
            fill(new_bytes, new_tag);
            if (erase)
                memset(new_bytes, 0, BS);
            assert_true(cut->torn_bytes >= 1 && cut->torn_bytes < BS);
            assert_memory_equal(got, new_bytes, cut->torn_bytes);
            assert_memory_equal(got + cut->torn_bytes, old_bytes + cut->torn_bytes,
                                BS - cut->torn_bytes);
            *part = cut->torn_bytes;
        } else {
            assert_true(same_as(got, old_tag));
        }
    }
    assert_int_equal(cut->landed_blocks, 1 + k);
    if (mode == MF_FAULTBD_CUT_TORN)
        assert_int_equal(cut->torn_bytes, 0);
    free(r);
    return k;
}

static void test_cut_torn(void **state)
{
    (void)state;
    int seen[8] = {0};
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint32_t part = 0;
        size_t k = torn_outcome(seed, MF_FAULTBD_CUT_TORN, 0, &part);
        assert_int_equal(torn_outcome(seed, MF_FAULTBD_CUT_TORN, 0, &part), k);
        seen[k] = 1;
        torn_outcome(seed, MF_FAULTBD_CUT_TORN, 1, &part);
    }
    int distinct = 0;
    for (int k = 0; k < 8; k++)
        distinct += seen[k];
    assert_true(seen[0] && distinct >= 4);

    /* A one-block write is torn to nothing. */
    struct rig *r = rig_new(5, 8);
    put_synced(r, 3, 30, 1);
    mf_faultbd_arm_cut(&r->fb, 1, MF_FAULTBD_CUT_TORN);
    assert_int_equal(put(r, 3, 31, 1), MF_EPOWERLOSS);
    assert_true(same_as(medium(r, 3), 30));
    free(r);
}

static void test_cut_torn_bytes(void **state)
{
    (void)state;
    uint32_t parts_min = BS, parts_max = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint32_t part = 0, again = 0;
        size_t k = torn_outcome(seed, MF_FAULTBD_CUT_TORN_BYTES, 0, &part);
        assert_int_equal(torn_outcome(seed, MF_FAULTBD_CUT_TORN_BYTES, 0, &again), k);
        assert_int_equal(again, part);
        parts_min = part < parts_min ? part : parts_min;
        parts_max = part > parts_max ? part : parts_max;
        torn_outcome(seed, MF_FAULTBD_CUT_TORN_BYTES, 1, &part);
    }
    assert_true(parts_min < parts_max);
}

static void test_cut_garble(void **state)
{
    (void)state;
    uint64_t kept_total = 0, landed_total = 0;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct rig *r = rig_new(seed, 16);
        put_synced(r, 8, 80, 2);
        for (mf_block_t b = 0; b < 4; b++)
            put_synced(r, b, (uint8_t)(100 + b), 1);
        assert_int_equal(put(r, 0, 200, 4), 0);
        mf_faultbd_arm_cut(&r->fb, 1, MF_FAULTBD_CUT_GARBLE);
        assert_int_equal(mf_bd_sync(r->bd), MF_EPOWERLOSS);

        uint64_t garbage = 0, landed = 0;
        for (mf_block_t b = 0; b < 4; b++) {
            if (same_as(medium(r, b), (uint8_t)(200 + b)))
                landed++;
            else if (!same_as(medium(r, b), (uint8_t)(100 + b)))
                garbage++;
        }
        const struct mf_faultbd_cut *cut = mf_faultbd_last_cut(&r->fb);
        assert_true(garbage >= 1);
        assert_int_equal(cut->garbled_blocks, garbage);
        assert_int_equal(cut->landed_blocks, landed);
        landed_total += landed;
        kept_total += 4 - landed - garbage;
        /* Synced blocks no write touched stay intact. */
        assert_true(same_as(medium(r, 8), 80) && same_as(medium(r, 9), 81));
        for (mf_block_t b = 10; b < BLOCKS; b++)
            assert_true(is_zero(medium(r, b)));
        free(r);
    }

    /* Garbling is one of three outcomes, not the only one. */
    assert_true(landed_total > 0 && kept_total > 0);

    /* With nothing pending, the interrupted write itself is garbled. */
    struct rig *r = rig_new(2, 8);
    put_synced(r, 12, 120, 1);
    mf_faultbd_arm_cut(&r->fb, 1, MF_FAULTBD_CUT_GARBLE);
    assert_int_equal(put(r, 12, 121, 1), MF_EPOWERLOSS);
    assert_false(same_as(medium(r, 12), 120) || same_as(medium(r, 12), 121));
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->garbled_blocks, 1);
    free(r);
}

/* Under every block-atomic mode, each block ends with one of the versions written to it; the
 * garbling modes are the ones that can leave something else. */
static void test_atomic_modes_keep_whole_blocks(void **state)
{
    (void)state;
    const unsigned modes[] = {MF_FAULTBD_CUT_DROP,       MF_FAULTBD_CUT_APPLY,
                              MF_FAULTBD_CUT_SOME,       MF_FAULTBD_CUT_TORN,
                              MF_FAULTBD_CUT_TORN_BYTES, MF_FAULTBD_CUT_GARBLE};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        int mixed = 0;
        for (uint64_t seed = 1; seed <= 20; seed++) {
            struct rig *r = rig_new(seed, 16);
            for (mf_block_t b = 0; b < 8; b++)
                put_synced(r, b, (uint8_t)(100 + b), 1);
            assert_int_equal(put(r, 0, 150, 4), 0);
            assert_int_equal(mf_bd_erase(r->bd, 2, 1), 0);
            mf_faultbd_arm_cut(&r->fb, 1, modes[m]);
            assert_int_equal(put(r, 2, 200, 6), MF_EPOWERLOSS);
            for (mf_block_t b = 0; b < 8; b++) {
                const uint8_t *got = medium(r, b);
                int whole = same_as(got, (uint8_t)(100 + b)) ||
                            (b < 4 && same_as(got, (uint8_t)(150 + b))) ||
                            (b == 2 && is_zero(got)) ||
                            (b >= 2 && same_as(got, (uint8_t)(200 + b - 2)));
                mixed |= !whole;
            }
            free(r);
        }
        if (modes[m] & MF_FAULTBD_CUT_ATOMIC)
            assert_false(mixed);
        else
            assert_true(mixed);
    }
    assert_int_equal(MF_FAULTBD_CUT_ALL & ~MF_FAULTBD_CUT_ATOMIC,
                     MF_FAULTBD_CUT_TORN_BYTES | MF_FAULTBD_CUT_GARBLE);
}

static void test_cut_now_and_reset(void **state)
{
    (void)state;
    struct rig *r = rig_new(4, 8);
    put_synced(r, 0, 1, 1);
    assert_int_equal(put(r, 0, 2, 1), 0);
    mf_faultbd_cut_now(&r->fb, MF_FAULTBD_CUT_APPLY);
    assert_true(mf_faultbd_powered_off(&r->fb));
    assert_int_equal(mf_faultbd_last_cut(&r->fb)->op, 0);
    assert_true(same_as(medium(r, 0), 2));
    mf_faultbd_cut_now(&r->fb, MF_FAULTBD_CUT_DROP); /* already off: nothing */
    assert_int_equal(mf_faultbd_counters(&r->fb)->cuts, 1);

    /* A reboot without a cut forgets what was not synced. */
    mf_faultbd_reset(&r->fb);
    assert_int_equal(put(r, 0, 3, 1), 0);
    mf_faultbd_reset(&r->fb);
    uint8_t buffer[BS];
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
    assert_true(same_as(buffer, 2) && same_as(medium(r, 0), 2));
    assert_int_equal(mf_faultbd_pending(&r->fb), 0);
    free(r);
}

static void test_eio_transient(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    uint8_t buffer[BS];
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_PROG, 2, false);
    assert_int_equal(put(r, 0, 1, 1), 0);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0); /* reads not selected */
    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_int_equal(put(r, 1, 2, 1), MF_EIO);
    assert_int_equal(mf_bd_read(r->bd, 1, buffer, 1), 0);
    assert_true(is_zero(buffer)); /* the failed write had no effect */
    assert_int_equal(put(r, 1, 3, 1), 0);
    assert_int_equal(put(r, 2, 4, 1), 0);
    assert_int_equal(mf_faultbd_counters(&r->fb)->io_errors, 1);
    assert_int_equal(mf_faultbd_counters(&r->fb)->bytes_written, 3 * BS);
    /* Failing calls are still write points (a cut may come there). */
    assert_int_equal(mf_faultbd_counters(&r->fb)->write_points, 5);

    /* Reads can be chosen as well. */
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_READ, 1, false);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), MF_EIO);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
    assert_true(same_as(buffer, 1));

    /* The n-th of all kinds together. */
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_ALL, 3, false);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
    assert_int_equal(mf_bd_erase(r->bd, 5, 1), 0);
    assert_int_equal(mf_bd_sync(r->bd), MF_EIO);
    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_int_equal(mf_faultbd_counters(&r->fb)->io_errors, 3);
    free(r);
}

static void test_eio_persistent(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    uint8_t buffer[BS];
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_SYNC | MF_FAULTBD_OP_PROG, 2, true);
    assert_int_equal(put(r, 0, 1, 1), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(mf_bd_sync(r->bd), MF_EIO);
        assert_int_equal(put(r, 1, 2, 1), MF_EIO);
    }
    assert_int_equal(mf_bd_erase(r->bd, 4, 1), 0);
    /* A failed sync left the write pending: visible, but not on the medium. */
    assert_int_equal(mf_faultbd_pending(&r->fb), 2);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
    assert_true(same_as(buffer, 1) && is_zero(medium(r, 0)));
    assert_int_equal(mf_faultbd_counters(&r->fb)->io_errors, 10);

    mf_faultbd_fail_io_off(&r->fb);
    assert_int_equal(mf_bd_sync(r->bd), 0);
    assert_true(same_as(medium(r, 0), 1));

    /* The reboot clears a persistent failure too. */
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_ALL, 1, true);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), MF_EIO);
    mf_faultbd_reset(&r->fb);
    assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);

    /* Another code, as a file device on a full host file system: still without effect; the next
     * arming is MF_EIO again. */
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_PROG, 1, true);
    mf_faultbd_fail_io_code(&r->fb, MF_ENOSPC);
    assert_int_equal(put(r, 2, 5, 1), MF_ENOSPC);
    assert_int_equal(put(r, 2, 5, 1), MF_ENOSPC);
    assert_int_equal(mf_bd_read(r->bd, 2, buffer, 1), 0);
    assert_true(is_zero(buffer));
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_PROG, 1, false);
    assert_int_equal(put(r, 2, 5, 1), MF_EIO);
    free(r);
}

static void test_flip_bit(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    put_synced(r, 1, 9, 1);
    uint32_t crc, flipped, back;
    assert_int_equal(mf_faultbd_medium_crc32(&r->fb, &crc), 0);
    assert_int_equal(crc, mf_crc32_update(0, r->memory, sizeof r->memory));
    uint8_t before = r->memory[700];
    assert_int_equal(mf_faultbd_flip_bit(&r->fb, 700, 3), 0);
    assert_int_equal(r->memory[700], before ^ 0x08);
    assert_int_equal(mf_faultbd_medium_crc32(&r->fb, &flipped), 0);
    assert_int_not_equal(flipped, crc);
    assert_int_equal(mf_faultbd_flip_bit(&r->fb, 700, 3), 0);
    assert_int_equal(mf_faultbd_medium_crc32(&r->fb, &back), 0);
    assert_int_equal(back, crc);
    assert_int_equal(mf_faultbd_flip_bit(&r->fb, BS * BLOCKS, 0), MF_EINVAL);
    assert_int_equal(mf_faultbd_flip_bit(&r->fb, BS * BLOCKS - 1, 7), 0);
    assert_int_equal(r->memory[BS * BLOCKS - 1], 0x80);
    /* Reading the medium for the CRC is not counted as reads. */
    assert_int_equal(mf_faultbd_counters(&r->fb)->reads, 0);
    free(r);
}

static int bits_differing(const uint8_t *a, const uint8_t *b, size_t size)
{
    int bits = 0;
    for (size_t i = 0; i < size; i++)
        bits += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    return bits;
}

static void test_corrupt_reads(void **state)
{
    (void)state;
    uint8_t first[BS * 4];
    for (int pass = 0; pass < 2; pass++) {
        struct rig *r = rig_new(77, 8);
        put_synced(r, 0, 5, 4);
        uint32_t crc, after;
        assert_int_equal(mf_faultbd_medium_crc32(&r->fb, &crc), 0);
        mf_faultbd_corrupt_reads(&r->fb, 1);
        uint8_t buffer[BS * 4];
        assert_int_equal(mf_bd_read(r->bd, 0, buffer, 4), 0);
        for (size_t b = 0; b < 4; b++)
            assert_int_equal(bits_differing(buffer + b * BS, medium(r, b), BS), 1);
        assert_int_equal(mf_faultbd_counters(&r->fb)->read_flips, 4);
        assert_int_equal(mf_faultbd_medium_crc32(&r->fb, &after), 0);
        assert_int_equal(after, crc);
        /* Same seed, same flips. */
        if (pass == 0)
            memcpy(first, buffer, sizeof first);
        else
            assert_memory_equal(first, buffer, sizeof first);

        /* One in two: some blocks hit, some not, over enough reads. */
        mf_faultbd_corrupt_reads(&r->fb, 2);
        int hit = 0, clean = 0;
        for (int i = 0; i < 32; i++) {
            assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
            if (same_as(buffer, 5))
                clean++;
            else
                hit++;
        }
        assert_true(hit > 0 && clean > 0);
        mf_faultbd_corrupt_reads(&r->fb, 0);
        assert_int_equal(mf_bd_read(r->bd, 0, buffer, 1), 0);
        assert_true(same_as(buffer, 5));
        free(r);
    }
}

static void test_cache_bound(void **state)
{
    (void)state;
    /* Two blocks of cache: the third unsynced block forces the first two out. */
    struct rig *r = rig_new(1, 2);
    assert_int_equal(put(r, 1, 1, 1), 0);
    assert_int_equal(put(r, 2, 2, 1), 0);
    assert_int_equal(mf_faultbd_counters(&r->fb)->forced_flushes, 0);
    assert_int_equal(put(r, 3, 3, 1), 0);
    assert_int_equal(mf_faultbd_counters(&r->fb)->forced_flushes, 1);
    mf_faultbd_cut_now(&r->fb, MF_FAULTBD_CUT_DROP);
    assert_true(same_as(medium(r, 1), 1) && same_as(medium(r, 2), 2));
    assert_true(is_zero(medium(r, 3)));
    mf_faultbd_reset(&r->fb);

    /* Bigger than the whole cache: written through at once. */
    assert_int_equal(put(r, 4, 40, 3), 0);
    assert_int_equal(mf_faultbd_counters(&r->fb)->forced_flushes, 2);
    mf_faultbd_cut_now(&r->fb, MF_FAULTBD_CUT_DROP);
    assert_true(same_as(medium(r, 4), 40) && same_as(medium(r, 6), 42));
    free(r);

    /* The call log has its own bound (erases take no cache space). */
    r = rig_new(1, 2);
    for (unsigned i = 0; i < MF_FAULTBD_LOG_MAX; i++)
        assert_int_equal(mf_bd_erase(r->bd, i % BLOCKS, 1), 0);
    assert_int_equal(mf_faultbd_pending(&r->fb), MF_FAULTBD_LOG_MAX);
    assert_int_equal(mf_faultbd_counters(&r->fb)->forced_flushes, 0);
    assert_int_equal(mf_bd_erase(r->bd, 0, 1), 0);
    assert_int_equal(mf_faultbd_pending(&r->fb), 1);
    assert_int_equal(mf_faultbd_counters(&r->fb)->forced_flushes, 1);
    free(r);

    /* No cache at all: a write-through disk, so DROP loses nothing. */
    r = rig_new(1, 0);
    assert_int_equal(put(r, 0, 1, 2), 0);
    assert_int_equal(mf_bd_erase(r->bd, 1, 1), 0);
    assert_true(same_as(medium(r, 0), 1) && is_zero(medium(r, 1)));
    mf_faultbd_cut_now(&r->fb, MF_FAULTBD_CUT_DROP);
    assert_true(same_as(medium(r, 0), 1));
    free(r);
}

/* A fault device as the medium of another: medium errors during a cut are reported. */
static void test_medium_error_during_cut(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 0);
    uint8_t cache[BS * 4];
    struct mf_faultbd outer;
    mf_faultbd_init(&outer, r->bd,
                    &(struct mf_faultbd_config){.cache = cache, .cache_size = sizeof cache});
    uint8_t data[BS];
    fill(data, 1);
    assert_int_equal(mf_bd_prog(&outer.bd, 0, data, 1), 0);
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_PROG, 1, true);
    mf_faultbd_cut_now(&outer, MF_FAULTBD_CUT_APPLY);
    assert_int_equal(mf_faultbd_last_cut(&outer)->medium_error, MF_EIO);
    assert_true(is_zero(medium(r, 0)));

    /* And a failing medium surfaces from sync, keeping the write pending. */
    mf_faultbd_reset(&outer);
    mf_faultbd_fail_io(&r->fb, MF_FAULTBD_OP_PROG, 1, false);
    assert_int_equal(mf_bd_prog(&outer.bd, 0, data, 1), 0);
    assert_int_equal(mf_bd_sync(&outer.bd), MF_EIO);
    assert_int_equal(mf_faultbd_pending(&outer), 1);
    assert_int_equal(mf_bd_sync(&outer.bd), 0);
    assert_true(same_as(medium(r, 0), 1));
    free(r);
}

static void test_mode_names(void **state)
{
    (void)state;
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_DROP), "drop");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_APPLY), "apply");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_SOME), "some");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_TORN), "torn");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_TORN_BYTES), "torn-bytes");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_GARBLE), "garble");
    assert_string_equal(mf_faultbd_cut_mode_name(MF_FAULTBD_CUT_ATOMIC), "?");
    assert_string_equal(mf_strerror(MF_EPOWERLOSS), "power lost (emulated)");
}

/* A partition slice over the fault device passes faults through. */
static void test_slice_over_faultbd(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    struct mf_bd_slice slice;
    mf_bd_slice_init(&slice, r->bd, 8, 8);
    mf_faultbd_arm_cut(&r->fb, 2, MF_FAULTBD_CUT_DROP);
    uint8_t data[BS];
    fill(data, 3);
    assert_int_equal(mf_bd_prog(&slice.bd, 0, data, 1), 0);
    assert_int_equal(mf_bd_sync(&slice.bd), MF_EPOWERLOSS);
    assert_true(is_zero(medium(r, 8)));
    assert_int_equal(mf_bd_read(&slice.bd, 0, data, 1), MF_EPOWERLOSS);
    free(r);
}

/* A medium that can reserve: the RAM device plus a record of its reserve calls. */
struct reserving {
    struct mf_bd bd;
    const struct mf_bd *ram;
    unsigned calls;
    mf_block_t block;
    size_t count;
    int result;
};

static int reserving_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    return mf_bd_read(((const struct reserving *)bd->context)->ram, block, buffer, count);
}

static int reserving_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer,
                          size_t count)
{
    return mf_bd_prog(((const struct reserving *)bd->context)->ram, block, buffer, count);
}

static int reserving_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    return mf_bd_erase(((const struct reserving *)bd->context)->ram, block, count);
}

static int reserving_sync(const struct mf_bd *bd)
{
    return mf_bd_sync(((const struct reserving *)bd->context)->ram);
}

static int reserving_reserve(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct reserving *m = bd->context;
    m->calls++;
    m->block = block;
    m->count = count;
    return m->result;
}

/* Reserve: straight to the medium's reserve (none on RAM), range-checked, a write point of its
 * own that holds no data in the cache; injected errors stand in for a full host file system; a cut
 * there lands nothing of its own, and a slice reserves through its parent at its offset. */
static void test_reserve(void **state)
{
    (void)state;
    struct rig *r = rig_new(1, 8);
    assert_int_equal(mf_bd_reserve(&r->ram.bd, 0, BLOCKS), 0); /* RAM: nothing to do */
    struct reserving m = {.ram = &r->ram.bd};
    m.bd = r->ram.bd;
    m.bd.context = &m;
    m.bd.read = reserving_read;
    m.bd.prog = reserving_prog;
    m.bd.erase = reserving_erase;
    m.bd.sync = reserving_sync;
    m.bd.reserve = reserving_reserve;
    static uint8_t cache[BS * 8];
    struct mf_faultbd fb;
    mf_faultbd_init(&fb, &m.bd,
                    &(struct mf_faultbd_config){.cache = cache, .cache_size = sizeof cache});

    uint8_t data[BS];
    fill(data, 7);
    assert_int_equal(mf_bd_prog(&fb.bd, 1, data, 1), 0);
    assert_int_equal(mf_bd_reserve(&fb.bd, 4, 6), 0);
    assert_int_equal(m.calls, 1);
    assert_true(m.block == 4 && m.count == 6);
    assert_int_equal(mf_faultbd_pending(&fb), 1); /* the prog only */
    assert_int_equal(mf_faultbd_counters(&fb)->reserves, 1);
    assert_int_equal(mf_faultbd_counters(&fb)->write_points, 2);
    assert_int_equal(mf_bd_reserve(&fb.bd, BLOCKS - 1, 2), MF_EINVAL);
    assert_int_equal(mf_bd_reserve(&fb.bd, 3, 0), 0);
    assert_int_equal(m.calls, 1);
    assert_int_equal(mf_faultbd_counters(&fb)->write_points, 2);

    /* The medium's refusal comes back as it is; an injected one never reaches the medium. */
    m.result = MF_ENOSPC;
    assert_int_equal(mf_bd_reserve(&fb.bd, 0, 1), MF_ENOSPC);
    assert_int_equal(m.calls, 2);
    m.result = 0;
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_PROG, 1, true);
    assert_int_equal(mf_bd_reserve(&fb.bd, 0, 1), 0); /* not a prog */
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_WRITES, 1, false);
    mf_faultbd_fail_io_code(&fb, MF_ENOSPC);
    assert_int_equal(mf_bd_reserve(&fb.bd, 0, 1), MF_ENOSPC);
    assert_int_equal(m.calls, 3);
    mf_faultbd_fail_io_off(&fb);

    /* Through a slice: at the slice's offset. A slice over RAM has nothing to reserve. */
    struct mf_bd_slice slice;
    mf_bd_slice_init(&slice, &fb.bd, 8, 8);
    assert_int_equal(mf_bd_reserve(&slice.bd, 2, 3), 0);
    assert_true(m.calls == 4 && m.block == 10 && m.count == 3);
    assert_int_equal(mf_bd_reserve(&slice.bd, 6, 3), MF_EINVAL);
    struct mf_bd_slice plain;
    mf_bd_slice_init(&plain, &r->ram.bd, 8, 8);
    assert_null(plain.bd.reserve);
    assert_int_equal(mf_bd_reserve(&plain.bd, 0, 8), 0);

    /* A cut at a reserve: the unsynced writes go as the mode says, the reserve lands nothing. */
    mf_faultbd_arm_cut(&fb, 1, MF_FAULTBD_CUT_TORN);
    assert_int_equal(mf_bd_reserve(&fb.bd, 0, 8), MF_EPOWERLOSS);
    assert_int_equal(m.calls, 4);
    const struct mf_faultbd_cut *cut = mf_faultbd_last_cut(&fb);
    assert_non_null(cut);
    assert_int_equal(cut->op, MF_FAULTBD_OP_RESERVE);
    assert_int_equal(cut->count, 0);
    assert_int_equal(cut->torn_blocks, 0);
    assert_true(same_as(medium(r, 1), 7)); /* the pending prog, applied by TORN */
    for (mf_block_t b = 0; b < BLOCKS; b++)
        assert_true(b == 1 || is_zero(medium(r, b)));
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rambd_basics),
        cmocka_unit_test(test_reads_see_unsynced_writes),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_cut_countdown_and_reboot),
        cmocka_unit_test(test_cut_drop),
        cmocka_unit_test(test_cut_apply),
        cmocka_unit_test(test_cut_some),
        cmocka_unit_test(test_cut_torn),
        cmocka_unit_test(test_cut_torn_bytes),
        cmocka_unit_test(test_cut_garble),
        cmocka_unit_test(test_atomic_modes_keep_whole_blocks),
        cmocka_unit_test(test_cut_now_and_reset),
        cmocka_unit_test(test_eio_transient),
        cmocka_unit_test(test_eio_persistent),
        cmocka_unit_test(test_flip_bit),
        cmocka_unit_test(test_corrupt_reads),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_medium_error_during_cut),
        cmocka_unit_test(test_mode_names),
        cmocka_unit_test(test_slice_over_faultbd),
        cmocka_unit_test(test_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
