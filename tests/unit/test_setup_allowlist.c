/* The public area's allow-list (mf_setup_public_file): the one list of the files the programmer
 * keeps at the public area's root (FLASHER.LOG, FLASHER.OLD, RECORDS.000 .. RECORDS.999, *.mft),
 * the conflict rule built on it (mf_setup_public_allowed: the list and the `_SECURE` folder,
 * nothing else), and the setup fingerprint's exclusions, which take the log files from it and
 * leave records and tokens in (the documented setup-id layout). */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_setup.h"
#include "mf_testfat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_allow_list(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum mf_public_file kind;
    } cases[] = {
        {"FLASHER.LOG", MF_PUBLIC_LOG},     {"flasher.log", MF_PUBLIC_LOG},
        {"Flasher.Old", MF_PUBLIC_LOG},     {"RECORDS.000", MF_PUBLIC_RECORDS},
        {"records.999", MF_PUBLIC_RECORDS}, {"more.mft", MF_PUBLIC_TOKEN},
        {"TOPUP.MFT", MF_PUBLIC_TOKEN},     {".mft", MF_PUBLIC_OTHER},
        {"RECORDS.1000", MF_PUBLIC_OTHER},  {"RECORDS.00", MF_PUBLIC_OTHER},
        {"RECORDS.0a0", MF_PUBLIC_OTHER},   {"FLASHER.LOG.bak", MF_PUBLIC_OTHER},
        {"FLASHER.INI", MF_PUBLIC_OTHER},   {"Cntdown.txt", MF_PUBLIC_OTHER},
        {"stray.txt", MF_PUBLIC_OTHER},     {"x.mft.txt", MF_PUBLIC_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (mf_setup_public_file(cases[i].name) != cases[i].kind)
            fail_msg("%s: kind %d, expected %d", cases[i].name,
                     (int)mf_setup_public_file(cases[i].name), (int)cases[i].kind);
        /* The conflict rule ignores exactly the list's files. */
        assert_int_equal(mf_setup_public_allowed(cases[i].name, false),
                         cases[i].kind != MF_PUBLIC_OTHER);
        assert_false(mf_setup_public_allowed(cases[i].name, true));
    }
    assert_true(mf_setup_public_allowed("_SECURE", true));
    assert_true(mf_setup_public_allowed("_secure", true));
    assert_false(mf_setup_public_allowed("_SECURE", false));
    assert_false(mf_setup_public_allowed("Projects", true));
}

static void test_fingerprint_exclusions(void **state)
{
    (void)state;
    assert_true(mf_setup_programmer_file("FLASHER.LOG"));
    assert_true(mf_setup_programmer_file("flasher.old"));
    assert_true(mf_setup_programmer_file("FLASHER.INI"));
    assert_true(mf_setup_programmer_file("Cntdown.txt"));
    assert_true(mf_setup_programmer_file("Projects/01_A/SERIAL.TXT"));
    assert_false(mf_setup_programmer_file("Projects/FLASHER.LOG")); /* the root's only */
    assert_false(mf_setup_programmer_file("RECORDS.000"));
    assert_false(mf_setup_programmer_file("token.mft"));
    assert_false(mf_setup_programmer_file("Projects/01_A/Patches.txt"));
}

/* On a volume: the fingerprint changes with a records file or a token at the root (they are not
 * part of what a setup may leave out), not with the log files. */
static void put(struct mf_fat *fs, const char *path, const char *text)
{
    assert_int_equal(mf_testfat_put_text(fs, path, text), 0);
}

static void test_fingerprint_on_a_volume(void **state)
{
    (void)state;
    static uint8_t buffer[4096];
    struct mf_testfat vol;
    struct mf_area_fat area;
    struct mf_fat_format_options o = {.volume_id = 9};
    assert_int_equal(mf_testfat_init(&vol, 512, 2048, &o), 0);
    mf_area_fat_init(&area, &vol.fs, NULL);
    put(&vol.fs, "app.hex", ":00000001FF\n");
    uint8_t a[32], b[32];
    assert_int_equal(mf_setup_fingerprint(&area.area, buffer, sizeof buffer, a), 0);
    put(&vol.fs, "FLASHER.LOG", "a line\r\n");
    put(&vol.fs, "FLASHER.OLD", "older\r\n");
    assert_int_equal(mf_setup_fingerprint(&area.area, buffer, sizeof buffer, b), 0);
    assert_memory_equal(a, b, 32);
    put(&vol.fs, "RECORDS.000", "record\n");
    assert_int_equal(mf_setup_fingerprint(&area.area, buffer, sizeof buffer, b), 0);
    assert_memory_not_equal(a, b, 32);
    mf_testfat_free(&vol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_fingerprint_exclusions),
        cmocka_unit_test(test_fingerprint_on_a_volume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
