/* FLASHER.LOG: line format, sync per line, rotation into FLASHER.OLD at the size limit, and a
 * rotation deferred while a client holds the log open. */
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_flashlog.h"
#include "mf_rambd.h"
#include "mf_sweep.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BLOCKS 4096u

struct fixture {
    uint8_t memory[BLOCKS * 512];
    struct mf_rambd ram;
    struct mf_fat fs;
    struct mf_flashlog log;
};

static int64_t fixed_clock(void *context)
{
    (void)context;
    return 1764115219; /* 2025-11-26 00:00:19 */
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    mf_rambd_init(&f->ram, f->memory, 512, BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 7};
    assert_int_equal(mf_fat_format(&f->ram.bd, &o), 0);
    assert_int_equal(mf_fat_mount(&f->fs, &f->ram.bd, NULL, NULL), 0);
    mf_flashlog_init(&f->log, &f->fs, NULL, 4096, fixed_clock, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static char *slurp(struct mf_fat *fs, const char *path, uint32_t *size)
{
    struct mf_fat_stat st;
    if (mf_fat_stat(fs, path, &st))
        return NULL;
    char *buf = calloc(1, st.size + 1);
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(fs, &file, path, MF_FAT_O_RDONLY), 0);
    assert_int_equal(mf_fat_read(fs, &file, buf, st.size), (int)st.size);
    mf_fat_close(fs, &file);
    *size = st.size;
    return buf;
}

static void test_line_format(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mf_flashlog_write(&f->log, "slot %u OK\nwith a newline", 3), 0);
    uint32_t size;
    char *text = slurp(&f->fs, MF_FLASHLOG_NAME, &size);
    assert_string_equal(text, "2025-11-26 00:00:19 slot 3 OK with a newline\r\n");
    free(text);
    /* Synced: a second mount of the same bytes sees the line. */
    struct mf_fat again;
    assert_int_equal(mf_fat_mount(&again, &f->ram.bd, NULL, NULL), 0);
    text = slurp(&again, MF_FLASHLOG_NAME, &size);
    assert_non_null(strstr(text, "slot 3 OK"));
    free(text);
}

static void test_rotation(void **state)
{
    struct fixture *f = *state;
    char long_text[200];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    for (unsigned i = 0; i < 30; i++)
        assert_int_equal(mf_flashlog_write(&f->log, "%u %s", i, long_text), 0);
    uint32_t log_size, old_size;
    char *log = slurp(&f->fs, MF_FLASHLOG_NAME, &log_size);
    char *old = slurp(&f->fs, MF_FLASHLOG_OLD_NAME, &old_size);
    assert_non_null(log);
    assert_non_null(old);
    assert_true(log_size <= 4096);
    assert_true(old_size <= 4096);
    /* The newest line is in FLASHER.LOG, the ones before it in FLASHER.OLD, none lost between. */
    assert_non_null(strstr(log, " 29 xxx"));
    const char *first = strchr(log, ' ') + 10; /* after the time */
    unsigned n = (unsigned)strtoul(first, NULL, 10);
    char want[32];
    snprintf(want, sizeof want, " %u xxx", n - 1);
    assert_non_null(strstr(old, want));
    free(log);
    free(old);
}

static void test_rotation_waits_for_an_open_log(void **state)
{
    struct fixture *f = *state;
    char text[200];
    memset(text, 'y', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_int_equal(mf_flashlog_write(&f->log, "first"), 0);
    struct mf_fat_file reader;
    assert_int_equal(mf_fat_open(&f->fs, &reader, MF_FLASHLOG_NAME, MF_FAT_O_RDONLY), 0);
    for (unsigned i = 0; i < 30; i++)
        assert_int_equal(mf_flashlog_write(&f->log, "%u %s", i, text), 0);
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&f->fs, MF_FLASHLOG_OLD_NAME, &st), MF_ENOENT);
    assert_int_equal(mf_fat_close(&f->fs, &reader), 0);
    assert_int_equal(mf_flashlog_write(&f->log, "after"), 0);
    assert_int_equal(mf_fat_stat(&f->fs, MF_FLASHLOG_OLD_NAME, &st), 0);
    assert_true(st.size > 4096); /* the deferred rotation took the long log along */
}

/* ---- a power cut at every write of a rotation ---- */

static char full_log[4096]; /* FLASHER.LOG as the setup leaves it, one line short of rotating */
static uint32_t full_size;

static int rotation_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat_format_options o = {.volume_id = 9};
    struct mf_fat fs;
    int err = mf_fat_format(medium, &o);
    if (!err)
        err = mf_fat_mount(&fs, medium, NULL, NULL);
    if (err)
        return err;
    struct mf_flashlog log;
    mf_flashlog_init(&log, &fs, NULL, 4096, fixed_clock, NULL);
    char text[200];
    memset(text, 'z', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    for (unsigned i = 0; i < 18 && !err; i++)
        err = mf_flashlog_write(&log, "%u %s", i, text);
    char *got = err ? NULL : slurp(&fs, MF_FLASHLOG_NAME, &full_size);
    if (got)
        memcpy(full_log, got, full_size);
    free(got);
    return err ? err : mf_fat_unmount(&fs);
}

/* Mounts `bd` into `fs` and logs "<label> " and 399 times `fill` (a line that rotates a full log
 * of the 4 KiB limit). */
static int log_long_line(const struct mf_bd *bd, struct mf_fat *fs, const char *label, char fill)
{
    int err = mf_fat_mount(fs, bd, NULL, NULL);
    if (err)
        return err;
    struct mf_flashlog log;
    mf_flashlog_init(&log, fs, NULL, 4096, fixed_clock, NULL);
    char text[400];
    memset(text, fill, sizeof text - 1);
    text[sizeof text - 1] = '\0';
    return mf_flashlog_write(&log, "%s %s", label, text);
}

/* The line that rotates FLASHER.LOG into FLASHER.OLD. */
static int rotation_run(void *context, const struct mf_bd *bd)
{
    (void)context;
    struct mf_fat fs;
    return log_long_line(bd, &fs, "rotating", 'r');
}

/* After the cut the programmer starts and logs again (a rotation, when the first did not finish
 * it): the full log is then FLASHER.OLD, byte for byte, and it shares no cluster with the new
 * FLASHER.LOG. (Without finishing an interrupted rename, the second rotation freed the clusters
 * both names held and the new line overwrote them.) */
static int rotation_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *p)
{
    (void)context;
    struct mf_fat fs;
    int err = log_long_line(bd, &fs, "after", 'a');
    if (err)
        return err;
    uint32_t old_size, cur_size;
    char *old = slurp(&fs, MF_FLASHLOG_OLD_NAME, &old_size);
    char *cur = slurp(&fs, MF_FLASHLOG_NAME, &cur_size);
    struct mf_fat_stat a, b;
    bool shared = mf_fat_stat(&fs, MF_FLASHLOG_OLD_NAME, &a) == 0 &&
                  mf_fat_stat(&fs, MF_FLASHLOG_NAME, &b) == 0 && a.first_cluster == b.first_cluster;
    bool whole = old && old_size == full_size && memcmp(old, full_log, full_size) == 0;
    bool newest = cur && strstr(cur, " after aaa") != NULL;
    if (!whole || shared || !newest)
        fprintf(stderr, "cut %llu (%s): FLASHER.OLD %s, %s, the new line %s\n",
                (unsigned long long)p->cut_at, mf_faultbd_cut_mode_name(p->mode),
                whole ? "whole" : "not the full log", shared ? "shares its clusters" : "its own",
                newest ? "there" : "missing");
    free(old);
    free(cur);
    return whole && !shared && newest ? 0 : MF_EVERIFY;
}

static void test_power_cut_during_rotation(void **state)
{
    (void)state;
    struct mf_sweep sweep = {.name = "FLASHER.LOG rotation",
                             .block_size = 512,
                             .block_count = BLOCKS,
                             .setup = rotation_setup,
                             .run = rotation_run,
                             .check = rotation_check};
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ALL & ~MF_FAULTBD_CUT_GARBLE,
                                       .seeds = 2};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_waits_for_an_open_log, setup, teardown),
        cmocka_unit_test(test_power_cut_during_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
