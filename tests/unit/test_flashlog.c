/* FLASHER.LOG: line format, sync per line, rotation into FLASHER.OLD at the size limit, and a
 * rotation deferred while a client holds the log open. */
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_flashlog.h"
#include "mf_rambd.h"
#include "mf_sweep.h"
#include "mf_testfat.h"

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
    struct mf_testfat vol;
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
    struct mf_fat_format_options o = {.volume_id = 7};
    assert_int_equal(mf_testfat_init(&f->vol, 512, BLOCKS, &o), 0);
    mf_flashlog_init(&f->log, &f->vol.fs, NULL, 4096, fixed_clock, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mf_testfat_free(&f->vol);
    free(f);
    return 0;
}

/* A whole file as text (malloc'd) and its size; NULL when absent. */
static char *slurp(struct mf_fat *fs, const char *path, uint32_t *size)
{
    char *text;
    size_t length;
    int err = mf_testfat_get(fs, path, &text, &length);
    assert_true(err == 0 || err == MF_ENOENT);
    *size = (uint32_t)length;
    return err ? NULL : text;
}

static void test_line_format(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mf_flashlog_write(&f->log, "slot %u OK\nwith a newline", 3), 0);
    uint32_t size;
    char *text = slurp(&f->vol.fs, MF_FLASHLOG_NAME, &size);
    assert_string_equal(text, "2025-11-26 00:00:19 slot 3 OK with a newline\r\n");
    free(text);
    /* Synced: a second mount of the same bytes sees the line. */
    struct mf_fat again;
    assert_int_equal(mf_fat_mount(&again, &f->vol.ram.bd, NULL, NULL), 0);
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
    char *log = slurp(&f->vol.fs, MF_FLASHLOG_NAME, &log_size);
    char *old = slurp(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &old_size);
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
    assert_int_equal(mf_fat_open(&f->vol.fs, &reader, MF_FLASHLOG_NAME, MF_FAT_O_RDONLY), 0);
    for (unsigned i = 0; i < 30; i++)
        assert_int_equal(mf_flashlog_write(&f->log, "%u %s", i, text), 0);
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &st), MF_ENOENT);
    assert_int_equal(mf_fat_close(&f->vol.fs, &reader), 0);
    assert_int_equal(mf_flashlog_write(&f->log, "after"), 0);
    assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &st), 0);
    assert_true(st.size > 4096); /* the deferred rotation took the long log along */
}

/* ---- whole lines ---- */

#define LINE_START "2025-11-26 00:00:19 "

/* Is `text` (`size` bytes) nothing but whole log lines, each "<time> <text>\r\n" with no line end
 * inside and with a known text: "line <n>" followed by `fill` characters only? */
static bool whole_lines(const char *text, uint32_t size, char fill)
{
    size_t start = strlen(LINE_START);
    for (uint32_t at = 0; at < size;) {
        const char *end = memchr(text + at, '\n', size - at);
        if (!end || end == text + at || end[-1] != '\r')
            return false;
        uint32_t len = (uint32_t)(end - (text + at)) - 1; /* without CR LF */
        if (len < start || memcmp(text + at, LINE_START, start) != 0 ||
            memcmp(text + at + start, "line ", 5) != 0)
            return false;
        for (uint32_t i = (uint32_t)start + 5; i < len; i++) {
            char c = text[at + i];
            if (!(c >= '0' && c <= '9') && c != ' ' && c != fill)
                return false;
        }
        at += len + 2;
    }
    return true;
}

/* A log that does not end with a line end (a tool cut its last line): the next line goes on a
 * line of its own instead of being glued onto it. */
static void test_line_after_a_cut_line(void **state)
{
    struct fixture *f = *state;
    struct mf_fat_file file;
    assert_int_equal(
        mf_fat_open(&f->vol.fs, &file, MF_FLASHLOG_NAME, MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    static const char cut[] = LINE_START "slot 1 AUTO project \"Demo\" uid 933D3437";
    assert_int_equal(mf_fat_write(&f->vol.fs, &file, cut, sizeof cut - 1), (int)sizeof cut - 1);
    assert_int_equal(mf_fat_close(&f->vol.fs, &file), 0);
    assert_int_equal(mf_flashlog_write(&f->log, "next"), 0);
    assert_int_equal(mf_flashlog_write(&f->log, "and on"), 0);
    uint32_t size;
    char *text = slurp(&f->vol.fs, MF_FLASHLOG_NAME, &size);
    assert_string_equal(text, LINE_START "slot 1 AUTO project \"Demo\" uid 933D3437\r\n" LINE_START
                                         "next\r\n" LINE_START "and on\r\n");
    free(text);
}

struct error_rig {
    struct mf_rambd ram;
    struct mf_fat fs;
    struct mf_flashlog log;
    char fill[2000]; /* the line goes into a second cluster */
};

static int error_prepare(void *context, const struct mf_bd *bd)
{
    struct error_rig *rig = context;
    mf_flashlog_init(&rig->log, &rig->fs, NULL, 1u << 20, fixed_clock, NULL);
    return mf_fat_mount(&rig->fs, bd, NULL, NULL);
}

static int error_run(void *context)
{
    struct error_rig *rig = context;
    return mf_flashlog_write(&rig->log, "line 3 %s", rig->fill);
}

/* The line is refused (or whole), whole or absent afterwards, and the next line, on the same
 * mount once the device works again, is a line of its own. */
static void error_check(void *context, const struct mf_sweep_io_point *p)
{
    struct error_rig *rig = context;
    int next = mf_flashlog_write(&rig->log, "line 4");
    uint32_t size;
    char *text = slurp(&rig->fs, MF_FLASHLOG_NAME, &size);
    static const char last[] = LINE_START "line 4\r\n";
    bool whole = text && whole_lines(text, size, 'w') && size >= sizeof last - 1 &&
                 memcmp(text + size - (sizeof last - 1), last, sizeof last - 1) == 0;
    /* An error finish_rename's look-ups meet (and let go) may fail nothing. */
    bool there = text && strstr(text, "line 3 ") != NULL;
    if ((p->run_error != p->code && !(p->run_error == 0 && there)) || next || !whole)
        fail_msg("%s at call %llu%s: the line gave %d (%s), the next %d (%s), the log %s:\n%s",
                 mf_strerror(p->code), (unsigned long long)p->at, p->persistent ? " and after" : "",
                 p->run_error, mf_strerror(p->run_error), next, mf_strerror(next),
                 whole ? "whole" : "not whole lines", text ? text : "(none)");
    free(text);
    assert_int_equal(mf_fat_unmount(&rig->fs), 0);
}

/* The append of a line that spans clusters fails at each device call in turn, once or for good,
 * with each code a file device gives (a full or read-only host file system gives MF_ENOSPC or
 * MF_EACCES, not MF_EIO). (A half-written line stayed, with the next glued onto it.) */
static void test_device_error_mid_line(void **state)
{
    (void)state;
    static uint8_t memory[BLOCKS * 512], snapshot[BLOCKS * 512];
    static struct error_rig rig;
    mf_rambd_init(&rig.ram, memory, 512, BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 3};
    assert_int_equal(mf_fat_format(&rig.ram.bd, &o), 0);
    assert_int_equal(error_prepare(&rig, &rig.ram.bd), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(mf_flashlog_write(&rig.log, "line %u", i), 0);
    assert_int_equal(mf_fat_unmount(&rig.fs), 0);
    memcpy(snapshot, memory, sizeof memory);
    memset(rig.fill, 'w', sizeof rig.fill - 1);
    rig.fill[sizeof rig.fill - 1] = '\0';
    struct mf_sweep_io sweep = {.medium = &rig.ram.bd,
                                .memory = memory,
                                .snapshot = snapshot,
                                .size = sizeof memory,
                                .context = &rig,
                                .prepare = error_prepare,
                                .run = error_run,
                                .check = error_check};
    assert_true(mf_sweep_io_run(&sweep) > 6);
}

/* ---- room for a line ---- */

/* FILL.BIN takes every free byte of the volume but `leave`. */
static void fill_leaving(struct mf_fat *fs, uint64_t leave)
{
    int err = mf_fat_remove(fs, "FILL.BIN");
    assert_true(err == 0 || err == MF_ENOENT);
    uint64_t free_bytes, total;
    assert_int_equal(mf_fat_space(fs, &free_bytes, &total), 0);
    assert_true(free_bytes >= leave);
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(fs, &file, "FILL.BIN", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    assert_int_equal(mf_fat_truncate(fs, &file, (uint32_t)(free_bytes - leave)), 0);
    assert_int_equal(mf_fat_close(fs, &file), 0);
    assert_int_equal(mf_fat_space(fs, &free_bytes, &total), 0);
    assert_int_equal(free_bytes, leave);
}

static uint64_t cluster_of(struct mf_fat *fs)
{
    const struct mf_fat_geometry *g = mf_fat_geometry(fs);
    return (uint64_t)g->bytes_per_sector * g->sectors_per_cluster;
}

/* The check names FLASHER.LOG and the bytes free and needed: whole clusters for the longest
 * line beyond what the log's last cluster still holds. */
static void test_room_for_a_line(void **state)
{
    struct fixture *f = *state;
    uint64_t cluster = cluster_of(&f->vol.fs), need = (2048 + cluster - 1) / cluster * cluster;
    char m[MF_FLASHLOG_MESSAGE_MAX], want[MF_FLASHLOG_MESSAGE_MAX];
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), 0);
    fill_leaving(&f->vol.fs, need - cluster);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), MF_ENOSPC);
    snprintf(want, sizeof want,
             "the public area is too full for FLASHER.LOG (%llu bytes free, %llu needed): free "
             "space",
             (unsigned long long)(need - cluster), (unsigned long long)need);
    assert_string_equal(m, want);
    fill_leaving(&f->vol.fs, need);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), 0);
    assert_int_equal(mf_flashlog_room(&f->log, 2, m), MF_ENOSPC); /* one line per slot */
    assert_int_equal(mf_flashlog_write(&f->log, "line 0"), 0);
    /* The rest of the log's last cluster counts. */
    fill_leaving(&f->vol.fs, 0);
    uint32_t size;
    free(slurp(&f->vol.fs, MF_FLASHLOG_NAME, &size));
    uint64_t room = (size + cluster - 1) / cluster * cluster - size;
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), room >= 2048 ? 0 : MF_ENOSPC);
}

/* Many slots and a small limit (4 KiB): the log rotates as it goes, so the room asked for is at
 * most what a new log holds before it rotates again (the limit and one line), not a line per slot
 * (which never fitted in a volume that is full but for the two logs): then every slot's longest
 * line goes in. */
static void test_room_with_many_slots_and_a_small_limit(void **state)
{
    struct fixture *f = *state;
    char text[2000], m[MF_FLASHLOG_MESSAGE_MAX];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    for (unsigned i = 0; i < 6; i++) /* FLASHER.OLD and FLASHER.LOG, both near the limit */
        assert_int_equal(mf_flashlog_write(&f->log, "%u %s", i, text), 0);
    uint64_t cluster = cluster_of(&f->vol.fs);
    uint64_t most = (4096 + 2048 + cluster - 1) / cluster * cluster;
    fill_leaving(&f->vol.fs, most);
    if (mf_flashlog_room(&f->log, 8, m) != 0)
        fail_msg("%s", m);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(mf_flashlog_write(&f->log, "slot %u %s", i + 1, text), 0);
}

/* A failure free space does not show (a full host file system under the image makes every write
 * fail with MF_ENOSPC on a volume with room): after a line failed, the check logs that one is
 * missing, and refuses while even that fails. */
static void test_room_after_a_failed_line(void **state)
{
    (void)state;
    static uint8_t memory[BLOCKS * 512];
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, 512, BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 5};
    assert_int_equal(mf_fat_format(&ram.bd, &o), 0);
    struct mf_faultbd fb;
    mf_faultbd_init(&fb, &ram.bd, NULL);
    struct mf_fat fs;
    struct mf_flashlog log;
    assert_int_equal(mf_fat_mount(&fs, &fb.bd, NULL, NULL), 0);
    mf_flashlog_init(&log, &fs, NULL, 4096, fixed_clock, NULL);
    char m[MF_FLASHLOG_MESSAGE_MAX];
    assert_int_equal(mf_flashlog_write(&log, "line 0"), 0);
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_PROG, 1, true);
    mf_faultbd_fail_io_code(&fb, MF_ENOSPC);
    assert_int_equal(mf_flashlog_write(&log, "line 1"), MF_ENOSPC);
    assert_int_equal(mf_flashlog_room(&log, 1, m), MF_ENOSPC);
    assert_string_equal(m, "FLASHER.LOG cannot be written: no space left");
    mf_faultbd_fail_io_off(&fb);
    assert_int_equal(mf_flashlog_room(&log, 1, m), 0);
    assert_int_equal(mf_flashlog_room(&log, 1, m), 0); /* said once */
    uint32_t size;
    char *text = slurp(&fs, MF_FLASHLOG_NAME, &size);
    assert_string_equal(text, LINE_START
                        "line 0\r\n" LINE_START
                        "at least one line before this one is missing from FLASHER.LOG: no space "
                        "left\r\n");
    free(text);
    assert_int_equal(mf_fat_unmount(&fs), 0);
}

/* Logs up to 60 lines of varying length; before each, the check. Where it says there is room,
 * the line must go in. Counts the answers and the rotations; stops at the first "no room". */
static void lines_after_checks(struct fixture *f, const char *text, unsigned *yes,
                               unsigned *rotated, unsigned *no)
{
    char m[MF_FLASHLOG_MESSAGE_MAX];
    for (unsigned i = 0; i < 60 && !*no; i++) {
        int room = mf_flashlog_room(&f->log, 1, m);
        assert_true(room == 0 || room == MF_ENOSPC);
        struct mf_fat_stat before, after;
        assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_NAME, &before), 0);
        int err = mf_flashlog_write(&f->log, "%u %.*s", i, (int)(i * 397 % 1990), text);
        if (room == 0 && err)
            fail_msg("line %u: the check found room, the line gave %d (%s)", i, err,
                     mf_strerror(err));
        *yes += room == 0;
        *no += room != 0;
        *rotated += !err && mf_fat_stat(&f->vol.fs, MF_FLASHLOG_NAME, &after) == 0 &&
                    after.size < before.size;
    }
}

/* The promise, line after line on a volume without a free cluster: when the check says there is
 * room, the next line (of any length) goes in, in the log's last cluster or in a new log after a
 * rotation that frees FLASHER.OLD's clusters; without FLASHER.OLD to free, the check soon says
 * there is none. */
static void test_room_is_kept(void **state)
{
    struct fixture *f = *state;
    uint64_t cluster = cluster_of(&f->vol.fs);
    char text[2000];
    memset(text, 'v', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    /* FLASHER.OLD there, FLASHER.LOG in its last cluster before the 4 KiB limit. */
    struct mf_fat_stat st = {.size = 0}, old;
    for (unsigned i = 0; i < 200; i++) {
        assert_int_equal(mf_flashlog_write(&f->log, "%u %.40s", i, text), 0);
        assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_NAME, &st), 0);
        if (mf_fat_stat(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &old) == 0 && st.size > 4096 - cluster)
            break;
    }
    assert_true(st.size > 4096 - cluster);
    fill_leaving(&f->vol.fs, 0);
    unsigned yes = 0, rotated = 0, no = 0;
    lines_after_checks(f, text, &yes, &rotated, &no);
    assert_true(yes == 60 && rotated > 0 && no == 0); /* rotations keep making room */
    assert_int_equal(mf_fat_remove(&f->vol.fs, MF_FLASHLOG_OLD_NAME), 0);
    fill_leaving(&f->vol.fs, 0);
    yes = rotated = 0;
    lines_after_checks(f, text, &yes, &rotated, &no);
    assert_int_equal(no, 1);
}

/* ---- layouts where the room check once passed and the line then failed ---- */

/* Logs lines of about 1000 bytes into a new FLASHER.LOG until the next one would rotate it (4 KiB
 * limit). */
static void log_up_to_the_limit(struct mf_flashlog *log, struct mf_fat *fs)
{
    char text[1000];
    memset(text, 'l', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    struct mf_fat_stat st;
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(mf_flashlog_write(log, "%u %s", i, text), 0);
    assert_int_equal(mf_fat_stat(fs, MF_FLASHLOG_NAME, &st), 0);
    assert_true(st.size + 1100 > 4096);
}

/* The longest line there is (it is cut to MF_FLASHLOG_LINE_MAX). */
static int log_longest_line(struct mf_flashlog *log)
{
    static char text[MF_FLASHLOG_LINE_MAX + 100];
    memset(text, 'L', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    return mf_flashlog_write(log, "%s", text);
}

/* (a) The first rotation, FLASHER.OLD absent, with a root folder that has no free entry: on FAT12
 * a fixed root, full; on FAT32 a root cluster, full, and no free cluster but what the line needs.
 * The rotation's new name (FLASHER.OLD by a rename that wrote a new entry, now the new FLASHER.LOG
 * after a rename in place) found no entry on FAT12, and took a new root cluster from the line's on
 * FAT32, after the check had found room. The check counts the entry now: it refuses where the line
 * would fail, and passes with a free entry (FAT12) or one more free cluster (FAT32). */
static void room_with_a_full_root(const struct mf_fat_format_options *o, mf_block_t blocks)
{
    struct mf_testfat vol;
    struct mf_flashlog log;
    assert_int_equal(mf_testfat_init(&vol, 512, blocks, o), 0);
    mf_flashlog_init(&log, &vol.fs, NULL, 4096, fixed_clock, NULL);
    log_up_to_the_limit(&log, &vol.fs);
    fill_leaving(&vol.fs, 0);
    int err = 0;
    for (unsigned i = 0; i < 70000 && !err; i++) {
        char name[16];
        struct mf_fat_file file;
        snprintf(name, sizeof name, "E%05u.TXT", i);
        err = mf_fat_open(&vol.fs, &file, name, MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
        if (!err)
            assert_int_equal(mf_fat_close(&vol.fs, &file), 0);
    }
    assert_int_equal(err, MF_ENOSPC); /* the root folder is full */
    bool fat32 = mf_fat_geometry(&vol.fs)->type == MF_FAT32;
    uint64_t cluster = cluster_of(&vol.fs);
    uint64_t need = (MF_FLASHLOG_LINE_MAX + cluster - 1) / cluster * cluster;
    fill_leaving(&vol.fs, need);
    char m[MF_FLASHLOG_MESSAGE_MAX], want[MF_FLASHLOG_MESSAGE_MAX];
    assert_int_equal(mf_flashlog_room(&log, 1, m), MF_ENOSPC);
    if (fat32)
        snprintf(want, sizeof want,
                 "the public area is too full for FLASHER.LOG (%llu bytes free, %llu needed): "
                 "free space",
                 (unsigned long long)need, (unsigned long long)(need + cluster));
    else
        snprintf(want, sizeof want,
                 "FLASHER.LOG: the root folder of the public area is full: remove a file there");
    assert_string_equal(m, want);
    assert_int_not_equal(log_longest_line(&log), 0); /* the check is right */
    mf_flashlog_init(&log, &vol.fs, NULL, 4096, fixed_clock, NULL);
    if (fat32)
        fill_leaving(&vol.fs, need + cluster);
    else
        assert_int_equal(mf_fat_remove(&vol.fs, "E00000.TXT"), 0);
    if (mf_flashlog_room(&log, 1, m) != 0)
        fail_msg("%s", m);
    assert_int_equal(log_longest_line(&log), 0);
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&vol.fs, MF_FLASHLOG_OLD_NAME, &st), 0);
    assert_int_equal(mf_fat_unmount(&vol.fs), 0);
    mf_testfat_free(&vol);
}

static void test_room_with_a_full_root_folder(void **state)
{
    (void)state;
    struct mf_fat_format_options fat12 = {.volume_id = 12};
    room_with_a_full_root(&fat12, BLOCKS);
    struct mf_fat_format_options fat32 = {
        .type = MF_FAT32, .sectors_per_cluster = 1, .volume_id = 32};
    room_with_a_full_root(&fat32, 131072);
}

/* Sets the first cluster and size of the root entry named `sfn` (11 bytes, as stored) in the
 * volume's memory. */
static void patch_entry(uint8_t *memory, size_t size, const char *sfn, uint32_t cluster,
                        uint32_t bytes)
{
    for (size_t at = 0; at + 32 <= size; at += 32) {
        uint8_t *e = memory + at;
        if (memcmp(e, sfn, 11) == 0 && (e[11] & 0x18) == 0) {
            e[26] = (uint8_t)cluster, e[27] = (uint8_t)(cluster >> 8);
            e[20] = (uint8_t)(cluster >> 16), e[21] = (uint8_t)(cluster >> 24);
            for (unsigned i = 0; i < 4; i++)
                e[28 + i] = (uint8_t)(bytes >> (8 * i));
            return;
        }
    }
    fail_msg("no entry %s", sfn);
}

/* (b) FLASHER.LOG and FLASHER.OLD naming the same clusters (a rotation cut by an earlier version,
 * whose rename wrote the new entry before removing the old): the check counted FLASHER.LOG's
 * bytes as the log's and FLASHER.OLD's clusters as coming free, so it found room on a full volume;
 * the line then gave the clusters to FLASHER.OLD and needed new ones for the new log. */
static void test_room_with_two_names_of_one_log(void **state)
{
    struct fixture *f = *state;
    log_up_to_the_limit(&f->log, &f->vol.fs);
    assert_int_equal(mf_fat_rename(&f->vol.fs, MF_FLASHLOG_NAME, MF_FLASHLOG_OLD_NAME), 0);
    struct mf_fat_stat old;
    assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &old), 0);
    assert_int_equal(mf_testfat_put_text(&f->vol.fs, MF_FLASHLOG_NAME, ""), 0);
    assert_int_equal(mf_fat_unmount(&f->vol.fs), 0);
    patch_entry(f->vol.memory, (size_t)BLOCKS * 512, "FLASHER LOG", old.first_cluster, old.size);
    assert_int_equal(mf_fat_mount(&f->vol.fs, &f->vol.ram.bd, NULL, NULL), 0);
    struct mf_fat_stat cur;
    assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_NAME, &cur), 0);
    assert_int_equal(cur.first_cluster, old.first_cluster);
    char m[MF_FLASHLOG_MESSAGE_MAX];
    fill_leaving(&f->vol.fs, 0);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), MF_ENOSPC);
    assert_int_equal(mf_fat_stat(&f->vol.fs, MF_FLASHLOG_NAME, &cur), MF_ENOENT);
    uint64_t cluster = cluster_of(&f->vol.fs);
    fill_leaving(&f->vol.fs, (MF_FLASHLOG_LINE_MAX + cluster - 1) / cluster * cluster);
    if (mf_flashlog_room(&f->log, 1, m) != 0)
        fail_msg("%s", m);
    assert_int_equal(log_longest_line(&f->log), 0);
    uint32_t size;
    char *text = slurp(&f->vol.fs, MF_FLASHLOG_OLD_NAME, &size);
    assert_int_equal(size, old.size); /* the log before the cut, whole */
    free(text);
}

/* (c) A folder FLASHER.OLD (or FLASHER.LOG): the check found room, and every line that had to
 * rotate the log failed with MF_EISDIR. Now lines that go in without a rotation pass, and the
 * check refuses, naming the folder, before a line that would rotate. The folder stays. */
static void test_room_with_a_folder_in_the_way(void **state)
{
    struct fixture *f = *state;
    char m[MF_FLASHLOG_MESSAGE_MAX];
    assert_int_equal(mf_fat_mkdir(&f->vol.fs, MF_FLASHLOG_OLD_NAME), 0);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), 0);
    log_up_to_the_limit(&f->log, &f->vol.fs); /* lines that do not rotate */
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), MF_EISDIR);
    assert_string_equal(m, "FLASHER.OLD is a folder, so FLASHER.LOG cannot rotate: remove or "
                           "rename the folder");
    assert_int_equal(log_longest_line(&f->log), MF_EISDIR); /* what the check spares a cycle */
    assert_int_equal(mf_fat_rmdir(&f->vol.fs, MF_FLASHLOG_OLD_NAME), 0);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), 0);
    assert_int_equal(log_longest_line(&f->log), 0);
    /* FLASHER.LOG a folder: no line at all. */
    assert_int_equal(mf_fat_remove(&f->vol.fs, MF_FLASHLOG_NAME), 0);
    assert_int_equal(mf_fat_mkdir(&f->vol.fs, MF_FLASHLOG_NAME), 0);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), MF_EISDIR);
    assert_string_equal(m, "FLASHER.LOG is a folder, so FLASHER.LOG cannot be written: remove or "
                           "rename the folder");
    assert_int_equal(mf_flashlog_write(&f->log, "x"), MF_EISDIR);
}

/* A read-only FLASHER.LOG (mattrib +r, a PC's file manager): the check passed and the line then
 * failed with MF_EACCES, leaving a device unlogged. Now the check refuses, naming it. */
static void test_room_with_a_read_only_log(void **state)
{
    struct fixture *f = *state;
    char m[MF_FLASHLOG_MESSAGE_MAX];
    assert_int_equal(mf_flashlog_write(&f->log, "a line"), 0);
    assert_int_equal(mf_fat_unmount(&f->vol.fs), 0);
    uint8_t *entry = f->vol.memory;
    size_t medium = (size_t)BLOCKS * 512;
    while (entry + 32 <= f->vol.memory + medium && memcmp(entry, "FLASHER LOG", 11) != 0)
        entry += 32;
    assert_true(entry + 32 <= f->vol.memory + medium);
    entry[11] |= MF_FAT_ATTR_READ_ONLY;
    assert_int_equal(mf_fat_mount(&f->vol.fs, &f->vol.ram.bd, NULL, NULL), 0);
    assert_int_equal(mf_flashlog_room(&f->log, 1, m), MF_EACCES);
    assert_string_equal(m, "FLASHER.LOG is read-only, so it cannot be written: clear its "
                           "read-only attribute");
    assert_int_equal(log_longest_line(&f->log), MF_EACCES); /* what the check spares a cycle */
}

/* ---- a power cut at every write of a rotation ---- */

/* Formats `medium`, mounts it into `fs` and opens its FLASHER.LOG (4 KiB limit) into `log`. */
static int fresh_log(const struct mf_bd *medium, struct mf_fat *fs, struct mf_flashlog *log)
{
    struct mf_fat_format_options o = {.volume_id = 9};
    int err = mf_fat_format(medium, &o);
    if (!err)
        err = mf_fat_mount(fs, medium, NULL, NULL);
    if (!err)
        mf_flashlog_init(log, fs, NULL, 4096, fixed_clock, NULL);
    return err;
}

static char full_log[4096]; /* FLASHER.LOG as the setup leaves it, one line short of rotating */
static uint32_t full_size;

static int rotation_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat fs;
    struct mf_flashlog log;
    int err = fresh_log(medium, &fs, &log);
    if (err)
        return err;
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
    /* As the cut left it: never FLASHER.LOG and FLASHER.OLD naming the same clusters (the rename
     * is in place), the layout an earlier version's cut left (test_room_with_two_names_of_one_log
     * shows what the check then does). */
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    struct mf_fat_stat a, b;
    bool cut_shared = mf_fat_stat(&fs, MF_FLASHLOG_OLD_NAME, &a) == 0 &&
                      mf_fat_stat(&fs, MF_FLASHLOG_NAME, &b) == 0 &&
                      a.first_cluster == b.first_cluster;
    mf_fat_unmount(&fs);
    if (cut_shared) {
        fprintf(stderr, "cut %llu (%s): FLASHER.LOG and FLASHER.OLD share their clusters\n",
                (unsigned long long)p->cut_at, mf_faultbd_cut_mode_name(p->mode));
        return MF_EVERIFY;
    }
    err = log_long_line(bd, &fs, "after", 'a');
    if (err)
        return err;
    uint32_t old_size, cur_size;
    char *old = slurp(&fs, MF_FLASHLOG_OLD_NAME, &old_size);
    char *cur = slurp(&fs, MF_FLASHLOG_NAME, &cur_size);
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

/* ---- a power cut at every write of a line appended within the log's last cluster ---- */

static char short_log[1024]; /* FLASHER.LOG before the append: three short lines */
static uint32_t short_size;

static int append_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat fs;
    struct mf_flashlog log;
    int err = fresh_log(medium, &fs, &log);
    if (err)
        return err;
    for (unsigned i = 0; i < 3 && !err; i++)
        err = mf_flashlog_write(&log, "line %u short", i);
    char *got = err ? NULL : slurp(&fs, MF_FLASHLOG_NAME, &short_size);
    if (got)
        memcpy(short_log, got, short_size);
    free(got);
    return err ? err : mf_fat_unmount(&fs);
}

static int append_run(void *context, const struct mf_bd *bd)
{
    (void)context;
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    struct mf_flashlog log;
    mf_flashlog_init(&log, &fs, NULL, 4096, fixed_clock, NULL);
    return mf_flashlog_write(&log, "line new short");
}

/* The earlier lines byte for byte, then the new line whole or nothing: no bytes the medium never
 * got (zeros) under a size that covers them. Before, the directory entry's new size could reach
 * the medium before the line's data. */
static int append_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *p)
{
    (void)context;
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    uint32_t size;
    char *text = slurp(&fs, MF_FLASHLOG_NAME, &size);
    mf_fat_unmount(&fs);
    bool kept = text && size >= short_size && memcmp(text, short_log, short_size) == 0;
    const char *tail = kept ? text + short_size : "";
    uint32_t tail_size = kept ? size - short_size : 0;
    bool whole = kept && (tail_size == 0 || (tail_size > 16 && tail[tail_size - 1] == '\n' &&
                                             memchr(tail, '\0', tail_size) == NULL &&
                                             strstr(tail, " line new short\r\n") != NULL));
    if (!whole)
        fprintf(stderr, "cut %llu (%s): %s, %u bytes after them%s\n", (unsigned long long)p->cut_at,
                mf_faultbd_cut_mode_name(p->mode),
                kept ? "earlier lines kept" : "EARLIER LINES LOST", tail_size,
                kept && memchr(tail, '\0', tail_size) ? ", zeros among them" : "");
    free(text);
    return whole ? 0 : MF_EVERIFY;
}

static void test_power_cut_during_an_append(void **state)
{
    (void)state;
    struct mf_sweep sweep = {.name = "FLASHER.LOG append",
                             .block_size = 512,
                             .block_count = BLOCKS,
                             .setup = append_setup,
                             .run = append_run,
                             .check = append_check};
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ATOMIC, .seeds = 8, .pairs = true};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_waits_for_an_open_log, setup, teardown),
        cmocka_unit_test(test_power_cut_during_rotation),
        cmocka_unit_test(test_power_cut_during_an_append),
        cmocka_unit_test_setup_teardown(test_line_after_a_cut_line, setup, teardown),
        cmocka_unit_test(test_device_error_mid_line),
        cmocka_unit_test_setup_teardown(test_room_for_a_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_with_many_slots_and_a_small_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_room_is_kept, setup, teardown),
        cmocka_unit_test(test_room_with_a_full_root_folder),
        cmocka_unit_test_setup_teardown(test_room_with_two_names_of_one_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_with_a_folder_in_the_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_with_a_read_only_log, setup, teardown),
        cmocka_unit_test(test_room_after_a_failed_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
