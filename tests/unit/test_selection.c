/* #SELECT's rewrite of FLASHER.INI in a public setup (mf_programmer_write_selection): the other
 * lines stay, and the rewrite is all or nothing, against a power cut at every write and against
 * device errors of every code at every device call. It was a truncation followed by a write, so
 * a cut or an error in between left FLASHER.INI empty and another project ran after a restart. */
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_programmer.h"
#include "mf_rambd.h"
#include "mf_sweep.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BLOCKS 4096u

static const char old_text[] = "; settings\r\n[CONFIG]\r\nProject = 01_Alpha\r\nLogMaxKiB = 64\r\n";
static const char new_text[] = "; settings\r\n[CONFIG]\r\nLogMaxKiB = 64\r\nProject = 02_Beta\r\n";

/* FLASHER.INI's text in `text` (at most `size` - 1 bytes, NUL-terminated); MF_ENOENT when absent.
 */
static int read_ini(struct mf_fat *fs, char *text, size_t size)
{
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, "FLASHER.INI", MF_FAT_O_RDONLY);
    if (err)
        return err;
    int n = mf_fat_read(fs, &file, text, (uint32_t)size - 1);
    mf_fat_close(fs, &file);
    if (n < 0)
        return n;
    text[n] = '\0';
    return 0;
}

static int write_text(struct mf_fat *fs, const char *path, const char *text)
{
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC);
    if (err)
        return err;
    int n = mf_fat_write(fs, &file, text, (uint32_t)strlen(text));
    int cerr = mf_fat_close(fs, &file);
    return n < 0 ? n : cerr;
}

/* A volume with the old FLASHER.INI and a file written after it; with a non-NULL context also a
 * folder FLASHER.NEW of the user's, with a file in it. */
static int selection_setup(void *context, const struct mf_bd *medium)
{
    struct mf_fat_format_options o = {.volume_id = 11};
    struct mf_fat fs;
    int err = mf_fat_format(medium, &o);
    if (!err)
        err = mf_fat_mount(&fs, medium, NULL, NULL);
    if (err)
        return err;
    err = write_text(&fs, "FLASHER.INI", old_text);
    if (!err)
        err = write_text(&fs, "FLASHER.LOG", "a log line\r\n");
    if (!err && context)
        err = mf_fat_mkdir(&fs, "FLASHER.NEW");
    if (!err && context)
        err = write_text(&fs, "FLASHER.NEW/keep.txt", "the user's");
    int uerr = mf_fat_unmount(&fs);
    return err ? err : uerr;
}

/* A name #SELECT writes under left behind (FLASHER.NEW as a file, FLASHER.N1 ... N9), or the
 * user's folder FLASHER.NEW gone or changed: false. */
static bool only_the_users_left(struct mf_fat *fs, bool folder)
{
    struct mf_fat_stat st;
    char text[64];
    for (unsigned i = 1; i <= 9; i++) {
        char name[16];
        snprintf(name, sizeof name, "FLASHER.N%u", i);
        if (mf_fat_stat(fs, name, &st) != MF_ENOENT)
            return false;
    }
    int err = mf_fat_stat(fs, "FLASHER.NEW", &st);
    if (!folder)
        return err == MF_ENOENT;
    struct mf_fat_file file;
    if (err || !st.is_dir || mf_fat_open(fs, &file, "FLASHER.NEW/keep.txt", MF_FAT_O_RDONLY))
        return false;
    int n = mf_fat_read(fs, &file, text, sizeof text - 1);
    mf_fat_close(fs, &file);
    return n == 10 && memcmp(text, "the user's", 10) == 0;
}

static int selection_run(void *context, const struct mf_bd *bd)
{
    (void)context;
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    err = mf_programmer_write_selection(&fs, "02_Beta");
    int uerr = mf_fat_unmount(&fs);
    return err ? err : uerr;
}

/* FLASHER.INI holds the old or the new text, whole; the next #SELECT works (clearing what the
 * cut left) and leaves the new text and no FLASHER.NEW. */
static int selection_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *p)
{
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    char text[256];
    err = read_ini(&fs, text, sizeof text);
    bool whole = !err && (strcmp(text, old_text) == 0 || strcmp(text, new_text) == 0);
    if (!whole && p->report)
        fprintf(stderr, "cut %llu (%s): FLASHER.INI %s: \"%s\"\n", (unsigned long long)p->cut_at,
                mf_faultbd_cut_mode_name(p->mode), err ? mf_strerror(err) : "holds",
                err ? "" : text);
    int again = mf_programmer_write_selection(&fs, "02_Beta");
    bool leftover = !only_the_users_left(&fs, context != NULL);
    bool selected = !again && read_ini(&fs, text, sizeof text) == 0 && !strcmp(text, new_text);
    if ((again || leftover || !selected) && p->report)
        fprintf(stderr, "cut %llu (%s): the next #SELECT: %s, FLASHER.NEW %s, text %s\n",
                (unsigned long long)p->cut_at, mf_faultbd_cut_mode_name(p->mode),
                mf_strerror(again), leftover ? "left" : "gone", selected ? "new" : "wrong");
    mf_fat_unmount(&fs);
    return whole && !again && !leftover && selected ? 0 : MF_EVERIFY;
}

static void test_keeps_the_other_lines(void **state)
{
    (void)state;
    static uint8_t memory[BLOCKS * 512];
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, 512, BLOCKS);
    assert_int_equal(selection_setup(NULL, &ram.bd), 0);
    assert_int_equal(selection_run(NULL, &ram.bd), 0);
    struct mf_fat fs;
    char text[256];
    assert_int_equal(mf_fat_mount(&fs, &ram.bd, NULL, NULL), 0);
    assert_int_equal(read_ini(&fs, text, sizeof text), 0);
    assert_string_equal(text, new_text);
    /* Without a FLASHER.INI: one with the [CONFIG] section. */
    assert_int_equal(mf_fat_remove(&fs, "FLASHER.INI"), 0);
    assert_int_equal(mf_programmer_write_selection(&fs, "03_Gamma"), 0);
    assert_int_equal(read_ini(&fs, text, sizeof text), 0);
    assert_string_equal(text, "[CONFIG]\r\nProject = 03_Gamma\r\n");
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&fs, "FLASHER.NEW", &st), MF_ENOENT);
    assert_int_equal(mf_fat_unmount(&fs), 0);
}

static void test_power_cut_at_every_write(void **state)
{
    (void)state;
    struct mf_sweep sweep = {.name = "FLASHER.INI rewrite",
                             .block_size = 512,
                             .block_count = BLOCKS,
                             .setup = selection_setup,
                             .run = selection_run,
                             .check = selection_check};
    struct mf_sweep_options options = {.seeds = 2, .pairs = true};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 6);
    /* The same with the user's folder FLASHER.NEW in the way: written as FLASHER.N1. */
    static int folder;
    sweep.name = "FLASHER.INI rewrite beside a folder FLASHER.NEW";
    sweep.context = &folder;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 6);
}

/* A folder FLASHER.NEW (the user's: #SELECT failed with MF_EISDIR at every call) is kept and
 * another name used; what a cut left under any of the names goes, whichever name is free now;
 * when every name is taken by the user, FLASHER.INI stays as it was. */
static void test_names_taken_by_the_user(void **state)
{
    (void)state;
    static uint8_t memory[BLOCKS * 512];
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, 512, BLOCKS);
    static int folder;
    assert_int_equal(selection_setup(&folder, &ram.bd), 0);
    struct mf_fat fs;
    char text[256];
    assert_int_equal(mf_fat_mount(&fs, &ram.bd, NULL, NULL), 0);
    /* FLASHER.NEW is the user's folder: FLASHER.N1 is the name used, and a plain file there is a
     * cut's leftover; FLASHER.N4, a name never reached, is the user's file whatever it holds. */
    assert_int_equal(write_text(&fs, "FLASHER.N1", "a cut's leftover"), 0);
    assert_int_equal(write_text(&fs, "FLASHER.N4", "the user's own"), 0);
    assert_int_equal(mf_programmer_write_selection(&fs, "02_Beta"), 0);
    assert_int_equal(read_ini(&fs, text, sizeof text), 0);
    assert_string_equal(text, new_text);
    assert_int_equal(mf_fat_remove(&fs, "FLASHER.N4"), 0); /* the check below wants none */
    assert_true(only_the_users_left(&fs, true));
    assert_int_equal(write_text(&fs, "FLASHER.N4", "the user's own"), 0);
    /* The folder gone, FLASHER.NEW is the name again: a leftover there goes, N2 and N4 stay. */
    assert_int_equal(mf_fat_remove(&fs, "FLASHER.NEW/keep.txt"), 0);
    assert_int_equal(mf_fat_rmdir(&fs, "FLASHER.NEW"), 0);
    assert_int_equal(write_text(&fs, "FLASHER.NEW", "left by a cut"), 0);
    assert_int_equal(write_text(&fs, "FLASHER.N2", "the user's too"), 0);
    assert_int_equal(mf_programmer_write_selection(&fs, "03_Gamma"), 0);
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&fs, "FLASHER.NEW", &st), MF_ENOENT);
    assert_int_equal(mf_fat_stat(&fs, "FLASHER.N2", &st), 0);
    assert_int_equal(st.size, 14);
    assert_int_equal(mf_fat_stat(&fs, "FLASHER.N4", &st), 0);
    assert_int_equal(st.size, 14);
    assert_int_equal(mf_fat_remove(&fs, "FLASHER.N2"), 0);
    assert_int_equal(mf_fat_remove(&fs, "FLASHER.N4"), 0);
    /* Every name a folder: refused, nothing changed. */
    assert_int_equal(mf_fat_mkdir(&fs, "FLASHER.NEW"), 0);
    for (unsigned i = 1; i <= 9; i++) {
        char name[16];
        snprintf(name, sizeof name, "FLASHER.N%u", i);
        assert_int_equal(mf_fat_mkdir(&fs, name), 0);
    }
    assert_int_equal(read_ini(&fs, text, sizeof text), 0);
    char before[256];
    memcpy(before, text, sizeof before);
    assert_int_equal(mf_programmer_write_selection(&fs, "01_Alpha"), MF_EEXIST);
    assert_int_equal(read_ini(&fs, text, sizeof text), 0);
    assert_string_equal(text, before);
    assert_int_equal(mf_fat_unmount(&fs), 0);
}

struct error_rig {
    struct mf_rambd ram;
    struct mf_fat fs;
};

static int error_prepare(void *context, const struct mf_bd *bd)
{
    struct error_rig *rig = context;
    return mf_fat_mount(&rig->fs, bd, NULL, NULL);
}

static int error_run(void *context)
{
    struct error_rig *rig = context;
    return mf_programmer_write_selection(&rig->fs, "02_Beta");
}

/* Refused with the device's code, or done (a failure after the switch only loses the old
 * clusters: FLASHER.INI then holds the new text); the storage works again and the same mount goes
 * on (a later change commits whatever was cached): FLASHER.INI holds the old or the new text,
 * also after a remount. */
static void error_check(void *context, const struct mf_sweep_io_point *p)
{
    struct error_rig *rig = context;
    char text[256];
    bool whole = false;
    if (p->run_error == 0 || p->run_error == p->code) {
        assert_int_equal(write_text(&rig->fs, "OTHER.TXT", "x"), 0);
        assert_int_equal(mf_fat_unmount(&rig->fs), 0);
        assert_int_equal(mf_fat_mount(&rig->fs, &rig->ram.bd, NULL, NULL), 0);
        whole =
            read_ini(&rig->fs, text, sizeof text) == 0 &&
            ((p->run_error == 0 && strcmp(text, new_text) == 0) ||
             (p->run_error != 0 && (strcmp(text, old_text) == 0 || strcmp(text, new_text) == 0)));
    }
    if ((p->run_error != p->code && p->run_error != 0) || !whole)
        fail_msg("%s at call %llu%s: the rewrite gave %d (%s), FLASHER.INI %s",
                 mf_strerror(p->code), (unsigned long long)p->at, p->persistent ? " and after" : "",
                 p->run_error, mf_strerror(p->run_error),
                 whole ? "whole" : "not the old or new text");
    assert_int_equal(mf_fat_unmount(&rig->fs), 0);
}

/* A device error at every device call of the rewrite, once or for good, of every code a file
 * device gives. */
static void test_device_error_at_every_call(void **state)
{
    (void)state;
    static uint8_t memory[BLOCKS * 512], snapshot[BLOCKS * 512];
    static struct error_rig rig;
    mf_rambd_init(&rig.ram, memory, 512, BLOCKS);
    assert_int_equal(selection_setup(NULL, &rig.ram.bd), 0);
    memcpy(snapshot, memory, sizeof memory);
    struct mf_sweep_io sweep = {.medium = &rig.ram.bd,
                                .memory = memory,
                                .snapshot = snapshot,
                                .size = sizeof memory,
                                .context = &rig,
                                .prepare = error_prepare,
                                .run = error_run,
                                .check = error_check};
    assert_true(mf_sweep_io_run(&sweep) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keeps_the_other_lines),
        cmocka_unit_test(test_power_cut_at_every_write),
        cmocka_unit_test(test_names_taken_by_the_user),
        cmocka_unit_test(test_device_error_at_every_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
