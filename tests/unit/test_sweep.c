/* Tests of the test-support library. The power-cut sweep harness runs on a toy journal: a
 * two-slot commit record (sequence number, data area, CRC) over two data areas. The correct
 * journal survives every cut mode and every pair of cuts; deliberately broken variants show that
 * the harness finds each kind of bug (wrong order, missing barrier, in-place record, a recovery
 * path that only runs after a crash), and mistakes in a scenario (swallowed errors,
 * nondeterminism) are reported too. Then the mf_testutil helpers other tests rely on. */
#include "mf_bd.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_faultbd.h"
#include "mf_sweep.h"
#include "mf_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define BS          512u
#define AREA_BLOCKS 3u
#define AREA_FIRST  2u          /* area 0: blocks 2..4, area 1: blocks 5..7 */
#define MAGIC       0x314A464Du /* "MFJ1" */

enum variant {
    JOURNAL_GOOD,         /* data, sync, record into the other slot, sync */
    JOURNAL_RECORD_FIRST, /* record before its data */
    JOURNAL_NO_BARRIER,   /* data and record, one sync at the end */
    JOURNAL_ONE_SLOT,     /* the record rewritten in place: needs block-atomic writes */
    JOURNAL_BAD_REPAIR,   /* recovery after a torn record erases both slots, then rewrites */
    JOURNAL_SWALLOW,      /* GOOD, but the scenario returns 0 whatever happened */
    JOURNAL_FLAKY,        /* GOOD, with an extra sync on every other run */
};

struct journal {
    enum variant variant;
    unsigned runs;
};

struct record {
    uint32_t seq;
    uint32_t area;
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The CRC sits in the last 4 bytes, so any torn write of a record is detected. */
static void encode_record(uint8_t *block, struct record record)
{
    for (size_t i = 12; i < BS - 4; i++)
        block[i] = (uint8_t)(record.seq + i);
    put_u32(block, MAGIC);
    put_u32(block + 4, record.seq);
    put_u32(block + 8, record.area);
    put_u32(block + BS - 4, mf_crc32_update(0, block, BS - 4));
}

/* 1 valid, 0 empty (all zero), -1 broken (something, but not a valid record). */
static int decode_record(const uint8_t *block, struct record *record)
{
    if (get_u32(block) == MAGIC && get_u32(block + BS - 4) == mf_crc32_update(0, block, BS - 4) &&
        get_u32(block + 8) < 2) {
        record->seq = get_u32(block + 4);
        record->area = get_u32(block + 8);
        return 1;
    }
    for (size_t i = 0; i < BS; i++) {
        if (block[i])
            return -1;
    }
    return 0;
}

static void fill_data(uint8_t *data, uint32_t seq)
{
    for (size_t i = 0; i < AREA_BLOCKS * BS; i++)
        data[i] = (uint8_t)(seq * 131u + i * 7u + (i >> 8));
}

struct recovered {
    struct record record;
    unsigned slot;
    int state[2]; /* decode_record() of each slot */
};

static int journal_recover(const struct mf_bd *bd, struct recovered *out)
{
    uint8_t block[BS];
    struct record records[2];
    for (unsigned slot = 0; slot < 2; slot++) {
        int err = mf_bd_read(bd, slot, block, 1);
        if (err)
            return err;
        out->state[slot] = decode_record(block, &records[slot]);
    }
    int best = -1;
    for (unsigned slot = 0; slot < 2; slot++) {
        if (out->state[slot] == 1 && (best < 0 || records[slot].seq > records[best].seq))
            best = (int)slot;
    }
    if (best < 0)
        return MF_ECORRUPT;
    out->slot = (unsigned)best;
    out->record = records[best];
    return 0;
}

static int write_record(const struct mf_bd *bd, unsigned slot, struct record record)
{
    uint8_t block[BS];
    encode_record(block, record);
    return mf_bd_prog(bd, slot, block, 1);
}

static int write_data(const struct mf_bd *bd, uint32_t area, uint32_t seq)
{
    uint8_t data[AREA_BLOCKS * BS];
    fill_data(data, seq);
    return mf_bd_prog(bd, AREA_FIRST + area * AREA_BLOCKS, data, AREA_BLOCKS);
}

/* Called after a crash left a broken slot. */
static int journal_repair(const struct mf_bd *bd, enum variant variant, const struct recovered *r)
{
    unsigned broken = r->slot ^ 1u;
    if (variant != JOURNAL_BAD_REPAIR) {
        int err = mf_bd_erase(bd, broken, 1);
        return err ? err : mf_bd_sync(bd);
    }
    /* The bug: for a moment no slot holds a valid record. */
    int err = mf_bd_erase(bd, 0, 2);
    if (!err)
        err = write_record(bd, 0, r->record);
    return err ? err : mf_bd_sync(bd);
}

/* The scenario: recover, then commit the next version. */
static int journal_run(void *context, const struct mf_bd *bd)
{
    struct journal *j = context;
    j->runs++;
    int err = 0;
    if (j->variant == JOURNAL_FLAKY && j->runs % 2 == 1)
        err = mf_bd_sync(bd);
    struct recovered r;
    if (!err)
        err = journal_recover(bd, &r);
    if (!err && r.state[r.slot ^ 1u] < 0)
        err = journal_repair(bd, j->variant, &r);
    if (err)
        return j->variant == JOURNAL_SWALLOW ? 0 : err;

    struct record next = {.seq = r.record.seq + 1, .area = r.record.area ^ 1u};
    unsigned slot = j->variant == JOURNAL_ONE_SLOT ? 0 : r.slot ^ 1u;
    switch (j->variant) {
    case JOURNAL_RECORD_FIRST:
        err = write_record(bd, slot, next);
        err = err ? err : mf_bd_sync(bd);
        err = err ? err : write_data(bd, next.area, next.seq);
        err = err ? err : mf_bd_sync(bd);
        break;
    case JOURNAL_NO_BARRIER:
        err = write_data(bd, next.area, next.seq);
        err = err ? err : write_record(bd, slot, next);
        err = err ? err : mf_bd_sync(bd);
        break;
    default:
        err = write_data(bd, next.area, next.seq);
        err = err ? err : mf_bd_sync(bd);
        err = err ? err : write_record(bd, slot, next);
        err = err ? err : mf_bd_sync(bd);
        break;
    }
    return j->variant == JOURNAL_SWALLOW ? 0 : err;
}

/* Version 1 in slot 0 and area 0; slot 1 empty. */
static int journal_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    int err = write_record(medium, 0, (struct record){.seq = 1, .area = 0});
    err = err ? err : write_data(medium, 0, 1);
    return err ? err : mf_bd_sync(medium);
}

/* Invariants: a valid record whose area holds exactly its version; never older than the
 * start; a completed run has committed at least once more. */
static int journal_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    (void)context;
    struct recovered r;
    int err = journal_recover(bd, &r);
    if (err) {
        if (point->report)
            fprintf(stderr, "journal: no valid record after cut %llu (slots %d %d)\n",
                    (unsigned long long)point->cut_at, r.state[0], r.state[1]);
        return err;
    }
    uint8_t data[AREA_BLOCKS * BS], expected[AREA_BLOCKS * BS];
    err = mf_bd_read(bd, AREA_FIRST + r.record.area * AREA_BLOCKS, data, AREA_BLOCKS);
    if (err)
        return err;
    fill_data(expected, r.record.seq);
    if (memcmp(data, expected, sizeof data) != 0) {
        if (point->report)
            fprintf(stderr, "journal: record %u points at area %u, which does not hold it\n",
                    r.record.seq, r.record.area);
        return MF_EVERIFY;
    }
    uint32_t lowest = point->completed ? 2 : 1;
    uint32_t highest = point->second_run ? 3 : 2;
    if (r.record.seq < lowest || r.record.seq > highest) {
        if (point->report)
            fprintf(stderr, "journal: sequence %u outside [%u, %u]\n", r.record.seq, lowest,
                    highest);
        return MF_EVERIFY;
    }
    return 0;
}

static struct mf_sweep journal_sweep(struct journal *j, const char *name)
{
    return (struct mf_sweep){
        .name = name,
        .block_size = BS,
        .block_count = 16,
        .cache_blocks = 16,
        .context = j,
        .setup = journal_setup,
        .run = journal_run,
        .check = journal_check,
    };
}

/* Failures found when sweeping `variant` over `modes` (pairs as asked). */
static uint64_t sweep_failures(enum variant variant, unsigned modes, bool pairs,
                               struct mf_sweep_result *result)
{
    struct journal j = {.variant = variant};
    struct mf_sweep sweep = journal_sweep(&j, "toy-journal");
    struct mf_sweep_options options = {
        .modes = modes, .seeds = 8, .pairs = pairs, .max_reports = 2};
    struct mf_sweep_result local;
    if (!result)
        result = &local;
    int err = mf_sweep_run(&sweep, &options, result);
    assert_int_equal(err, result->failures ? MF_EVERIFY : 0);
    return result->failures;
}

static void test_good_journal_survives_everything(void **state)
{
    (void)state;
    struct mf_sweep_result result;
    assert_int_equal(sweep_failures(JOURNAL_GOOD, MF_FAULTBD_CUT_ALL, false, &result), 0);
    /* data prog, sync, record prog, sync */
    assert_int_equal(result.write_points, 4);
    /* drop and apply once per point, the four random modes `seeds` times (8, or 64 in soak). */
    uint64_t seeds = mf_test_soak() ? 64 : 8;
    assert_int_equal(result.cuts, 4 * (2 + 4 * seeds));

    assert_int_equal(sweep_failures(JOURNAL_GOOD, MF_FAULTBD_CUT_ALL, true, &result), 0);
    assert_true(result.cuts > 4 * (2 + 4 * seeds));
}

static void test_wrong_order_is_caught(void **state)
{
    (void)state;
    struct mf_sweep_result result;
    assert_true(sweep_failures(JOURNAL_RECORD_FIRST, MF_FAULTBD_CUT_DROP, false, &result) > 0);
    /* The cut at the data write (point 3) leaves a record without its data. */
    assert_int_equal(result.first_failure.mode, MF_FAULTBD_CUT_DROP);
    assert_int_equal(result.first_failure.cut_at, 3);
    assert_non_null(strstr(result.first_reason, "check returned"));
}

/* Only a cache that reorders writes (SOME) or garbles them shows a missing barrier. */
static void test_missing_barrier_needs_reordering(void **state)
{
    (void)state;
    unsigned in_order = MF_FAULTBD_CUT_DROP | MF_FAULTBD_CUT_APPLY | MF_FAULTBD_CUT_TORN;
    assert_int_equal(sweep_failures(JOURNAL_NO_BARRIER, in_order, false, NULL), 0);
    struct mf_sweep_result result;
    assert_true(sweep_failures(JOURNAL_NO_BARRIER, MF_FAULTBD_CUT_SOME, false, &result) > 0);
    assert_int_equal(result.first_failure.cut_at, 3); /* the one sync */
}

/* An in-place record is fine on block-atomic storage and breaks under torn or garbled writes:
 * the reason the modes are separable. */
static void test_in_place_record_needs_atomic_blocks(void **state)
{
    (void)state;
    assert_int_equal(sweep_failures(JOURNAL_ONE_SLOT, MF_FAULTBD_CUT_ATOMIC, false, NULL), 0);
    assert_true(sweep_failures(JOURNAL_ONE_SLOT, MF_FAULTBD_CUT_TORN_BYTES, false, NULL) > 0);
    assert_true(sweep_failures(JOURNAL_ONE_SLOT, MF_FAULTBD_CUT_GARBLE, false, NULL) > 0);
}

/* The broken repair only runs after a crash, so only pairs of cuts reach a cut inside it. */
static void test_recovery_bug_needs_pairs(void **state)
{
    (void)state;
    assert_int_equal(sweep_failures(JOURNAL_BAD_REPAIR, MF_FAULTBD_CUT_TORN_BYTES, false, NULL), 0);
    struct mf_sweep_result result;
    assert_true(sweep_failures(JOURNAL_BAD_REPAIR, MF_FAULTBD_CUT_TORN_BYTES, true, &result) > 0);
    assert_true(result.first_failure.second_run);
    assert_true(result.first_failure.cut_at2 > 0);
    assert_int_equal(result.first_failure.mode, MF_FAULTBD_CUT_TORN_BYTES);
}

static void test_swallowed_error_is_reported(void **state)
{
    (void)state;
    struct mf_sweep_result result;
    assert_true(sweep_failures(JOURNAL_SWALLOW, MF_FAULTBD_CUT_DROP, false, &result) > 0);
    assert_int_equal(result.failures, result.write_points);
    assert_non_null(strstr(result.first_reason, "returned 0 after the power cut"));
}

static void test_nondeterminism_is_reported(void **state)
{
    (void)state;
    struct mf_sweep_result result;
    /* The fault-free run (odd) makes 5 write points, every cut run (even) only 4. */
    assert_true(sweep_failures(JOURNAL_FLAKY, MF_FAULTBD_CUT_DROP, false, &result) > 0);
    assert_int_equal(result.write_points, 5);
    assert_non_null(strstr(result.first_reason, "was not reached"));
}

static void test_limits(void **state)
{
    (void)state;
    struct journal j = {.variant = JOURNAL_RECORD_FIRST};
    struct mf_sweep sweep = journal_sweep(&j, "limits");
    struct mf_sweep_result result;

    /* stop_after ends the sweep at the first failure. */
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ALL, .stop_after = 1};
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), MF_EVERIFY);
    assert_int_equal(result.failures, 1);

    /* max_points spreads the cuts (seed 1, W 4, at most 2: points 2 and 4), except in soak. */
    j.variant = JOURNAL_GOOD;
    options = (struct mf_sweep_options){.modes = MF_FAULTBD_CUT_DROP, .max_points = 2};
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_int_equal(result.cuts, mf_test_soak() ? 4 : 2);
    options.max_points = 3;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_int_equal(result.cuts, mf_test_soak() ? 4 : 2);
    options.max_points = 4;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_int_equal(result.cuts, 4);

    /* Defaults: the block-atomic modes. */
    assert_int_equal(mf_sweep_run(&sweep, NULL, &result), 0);
    assert_int_equal(result.cuts, 4 * (2 + 2 * (mf_test_soak() ? 8 : 1)));
}

static int setup_fails(void *context, const struct mf_bd *medium)
{
    (void)context;
    (void)medium;
    return MF_ENOSPC;
}

static int check_fails(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    (void)context;
    (void)bd;
    (void)point;
    return MF_ECORRUPT;
}

static void test_harness_errors(void **state)
{
    (void)state;
    struct journal j = {.variant = JOURNAL_GOOD};
    struct mf_sweep sweep = journal_sweep(&j, "errors");
    sweep.setup = setup_fails;
    assert_int_equal(mf_sweep_run(&sweep, NULL, NULL), MF_ENOSPC);

    /* Without setup the medium is blank: the journal's fault-free run finds no record. */
    sweep.setup = NULL;
    assert_int_equal(mf_sweep_run(&sweep, NULL, NULL), MF_ECORRUPT);

    /* A check failing after the fault-free run stops the sweep: nothing else can be trusted. */
    sweep = journal_sweep(&j, "errors");
    sweep.check = check_fails;
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, NULL, &result), MF_ECORRUPT);
    assert_int_equal(result.cuts, 0);
}

/* Two temporary folders, removed by the teardown even when an assertion fails. */
struct util_dirs {
    char *dir, *outside;
};

static int util_dirs_setup(void **state)
{
    struct util_dirs *dirs = calloc(1, sizeof *dirs);
    if (!dirs)
        return -1;
    dirs->dir = mf_test_tmpdir("testutil");
    dirs->outside = mf_test_tmpdir("testutil-outside");
    *state = dirs;
    return dirs->dir && dirs->outside ? 0 : -1;
}

static int util_dirs_teardown(void **state)
{
    struct util_dirs *dirs = *state;
    int err = 0;
    for (int i = 0; i < 2; i++) {
        char *path = i ? dirs->outside : dirs->dir;
        if (path && mf_test_rmtree(path) != 0)
            err = -1;
        free(path);
    }
    free(dirs);
    return err;
}

static void test_util_files(void **state)
{
    struct util_dirs *dirs = *state;
    const char *dir = dirs->dir, *outside = dirs->outside;
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);

    /* Binary round trip, with the convenience NUL after the end. */
    char *path = mf_test_path(dir, "data.bin");
    const char bytes[] = {'a', 0, 'b', '\n', (char)0xFF};
    assert_int_equal(mf_test_write_file(path, bytes, sizeof bytes), 0);
    char *back;
    size_t size;
    assert_int_equal(mf_test_read_file(path, &back, &size), 0);
    assert_int_equal(size, sizeof bytes);
    assert_memory_equal(back, bytes, sizeof bytes);
    assert_int_equal(back[size], 0);
    free(back);

    /* Bigger than the first read buffer. */
    size_t big_size = 100000;
    char *big = malloc(big_size);
    assert_non_null(big);
    for (size_t i = 0; i < big_size; i++)
        big[i] = (char)('A' + i % 23);
    assert_int_equal(mf_test_write_file(path, big, big_size), 0);
    assert_int_equal(mf_test_read_file(path, &back, NULL), 0);
    assert_memory_equal(back, big, big_size);
    assert_int_equal(back[big_size], 0);
    free(back);
    free(big);

    char *missing = mf_test_path(dir, "missing");
    assert_int_equal(mf_test_read_file(missing, &back, &size), MF_ENOENT);
    assert_null(back);
    assert_int_equal(size, 0);

    /* A tree with an unreadable folder and a symlink out of it: the link's target survives. */
    char *kept = mf_test_path(outside, "kept");
    assert_int_equal(mf_test_write_file(kept, "x", 1), 0);
    char *sub = mf_test_path(dir, "sub");
    char *deep = mf_test_path(sub, "deep");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(deep, 0755), 0);
    char *file = mf_test_path(deep, "f");
    assert_int_equal(mf_test_write_file(file, "y", 1), 0);
    char *link = mf_test_path(sub, "link");
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(chmod(deep, 0), 0);
    assert_int_equal(mf_test_rmtree(dir), 0);
    assert_int_not_equal(lstat(dir, &st), 0);
    assert_int_equal(lstat(kept, &st), 0);
    assert_int_equal(mf_test_rmtree(dir), 0); /* already gone: fine */

    assert_int_equal(mf_test_rmtree("/"), MF_EINVAL);
    assert_int_equal(mf_test_rmtree(""), MF_EINVAL);
    assert_int_equal(mf_test_rmtree("relative/path"), MF_EINVAL);
    free(link);
    free(file);
    free(deep);
    free(sub);
    free(kept);
    free(missing);
    free(path);
}

static void test_util_run(void **state)
{
    (void)state;
    struct mf_test_output out;
    assert_int_equal(mf_test_run("echo out; echo err >&2; exit 3", NULL, 0, &out), 0);
    assert_int_equal(out.status, 3);
    assert_string_equal(out.out, "out\n");
    assert_int_equal(out.out_size, 4);
    assert_string_equal(out.err, "err\n");
    mf_test_output_free(&out);

    /* Silent commands give empty strings; no input means /dev/null. */
    assert_int_equal(mf_test_run("cat", NULL, 0, &out), 0);
    assert_int_equal(out.status, 0);
    assert_string_equal(out.out, "");
    assert_string_equal(out.err, "");
    mf_test_output_free(&out);

    /* Input and output both far bigger than a pipe's buffer. */
    size_t size = 300000;
    char *input = malloc(size);
    assert_non_null(input);
    for (size_t i = 0; i < size; i++)
        input[i] = (char)(i * 7 % 251);
    assert_int_equal(mf_test_run("cat; cat /dev/null >&2", input, size, &out), 0);
    assert_int_equal(out.status, 0);
    assert_int_equal(out.out_size, size);
    assert_memory_equal(out.out, input, size);
    mf_test_output_free(&out);

    /* A command that stops reading its input does not kill the test. */
    assert_int_equal(mf_test_run("head -c 1 >/dev/null; echo done", input, size, &out), 0);
    assert_int_equal(out.status, 0);
    assert_string_equal(out.out, "done\n");
    mf_test_output_free(&out);
    free(input);

    assert_int_equal(mf_test_run("kill -TERM $$", NULL, 0, &out), 0);
    assert_int_equal(out.status, 128 + 15);
    mf_test_output_free(&out);

    /* Quoting survives quotes, spaces and dollars. */
    const char *text = "it's a $HOME \"test\" \\ `x`";
    char *quoted = mf_test_shell_quote(text);
    assert_int_equal(mf_test_runf(&out, "printf '%%s' %s", quoted), 0);
    assert_string_equal(out.out, text);
    mf_test_output_free(&out);
    free(quoted);
}

/* Sets or unsets an environment variable, returning the old value (malloc'd or NULL). */
static char *swap_env(const char *name, const char *value)
{
    const char *old = getenv(name);
    char *saved = old ? strdup(old) : NULL;
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
    return saved;
}

static void test_util_env(void **state)
{
    (void)state;
    char *soak = swap_env("MF_SOAK", "1");
    assert_true(mf_test_soak());
    free(swap_env("MF_SOAK", "0"));
    assert_false(mf_test_soak());
    free(swap_env("MF_SOAK", NULL));
    assert_false(mf_test_soak());
    free(swap_env("MF_SOAK", soak));
    free(soak);

    char *seed = swap_env("MF_SEED", "0x10");
    assert_int_equal(mf_test_seed("test_util_env", 5), 16);
    free(swap_env("MF_SEED", "12"));
    assert_int_equal(mf_test_seed("test_util_env", 5), 12);
    free(swap_env("MF_SEED", "junk"));
    assert_int_equal(mf_test_seed("test_util_env", 5), 5);
    free(swap_env("MF_SEED", NULL));
    assert_int_equal(mf_test_seed("test_util_env", 5), 5);
    free(swap_env("MF_SEED", seed));
    free(seed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_journal_survives_everything),
        cmocka_unit_test(test_wrong_order_is_caught),
        cmocka_unit_test(test_missing_barrier_needs_reordering),
        cmocka_unit_test(test_in_place_record_needs_atomic_blocks),
        cmocka_unit_test(test_recovery_bug_needs_pairs),
        cmocka_unit_test(test_swallowed_error_is_reported),
        cmocka_unit_test(test_nondeterminism_is_reported),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_harness_errors),
        cmocka_unit_test_setup_teardown(test_util_files, util_dirs_setup, util_dirs_teardown),
        cmocka_unit_test(test_util_run),
        cmocka_unit_test(test_util_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
