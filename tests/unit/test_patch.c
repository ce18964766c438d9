/* Patches.txt and SNList.txt lines: the line reader at its limit (MF_TEXT_LINE_MAX characters)
 * and line ends, the patch parser at the documented limits (8 patches of 64 bytes; the
 * reference's 4 of 32 fit), and SNList.txt lines with the blanks docs/jobs.md allows. */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_patch.h"
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
    struct mf_area_fat area;
    char line[MF_TEXT_LINE_MAX + 1];
    char text[4 * MF_TEXT_LINE_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct mf_fat_format_options o = {.volume_id = 3};
    assert_int_equal(mf_testfat_init(&f->vol, 512, BLOCKS, &o), 0);
    mf_area_fat_init(&f->area, &f->vol.fs, NULL);
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

/* "<n>,<addr>,<len>:<data>..." with `digits`-digit addresses and no blanks. */
static size_t patch_line(char *out, size_t size, unsigned patches, unsigned bytes, int digits)
{
    size_t n = (size_t)snprintf(out, size, "%X", patches);
    for (unsigned i = 0; i < patches; i++) {
        n += (size_t)snprintf(out + n, size - n, ",%0*X,%X:", digits, 0x08000000u + 0x100u * i,
                              bytes);
        for (unsigned k = 0; k < bytes; k++)
            n += (size_t)snprintf(out + n, size - n, "%02X", (i + k) & 0xFF);
    }
    return n;
}

static void test_line_reader_limit_and_line_ends(void **state)
{
    struct fixture *f = *state;
    size_t n = 0;
    memset(f->text, 'A', MF_TEXT_LINE_MAX); /* line 0: exactly at the limit */
    n += MF_TEXT_LINE_MAX;
    f->text[n++] = '\r';
    f->text[n++] = '\n';
    memset(f->text + n, 'B', MF_TEXT_LINE_MAX + 1); /* line 1: one character more */
    n += MF_TEXT_LINE_MAX + 1;
    f->text[n++] = '\n';
    n += (size_t)snprintf(f->text + n, sizeof f->text - n, "third\rfourth"); /* CR; no end */
    assert_int_equal(mf_testfat_put(&f->vol.fs, "T.TXT", f->text, n), 0);

    struct mf_area *a = &f->area.area;
    assert_int_equal(mf_text_line(a, "T.TXT", 0, f->line), 0);
    assert_int_equal(strlen(f->line), MF_TEXT_LINE_MAX);
    assert_int_equal(mf_text_line(a, "T.TXT", 1, f->line), MF_EFBIG);
    assert_int_equal(mf_text_line(a, "T.TXT", 2, f->line), 0); /* a long line before: no matter */
    assert_string_equal(f->line, "third");
    assert_int_equal(mf_text_line(a, "T.TXT", 3, f->line), 0);
    assert_string_equal(f->line, "fourth");
    assert_int_equal(mf_text_line(a, "T.TXT", 4, f->line), MF_ENOENT);
    assert_int_equal(mf_text_line(a, "NONE.TXT", 0, f->line), MF_ENOENT);
}

static void test_patch_limits(void **state)
{
    struct fixture *f = *state;
    struct mf_patch_line out;
    char message[MF_PATCH_ERROR_MAX];

    /* Ours at the limit, with the longest addresses: fits a line with room to spare. */
    size_t n = patch_line(f->text, sizeof f->text, 8, 64, 16);
    assert_int_equal(n, 1193);
    assert_true(n < MF_TEXT_LINE_MAX);
    assert_int_equal(mf_patch_parse(f->text, &out, message), 0);
    assert_int_equal(out.count, 8);
    for (unsigned i = 0; i < 8; i++) {
        assert_int_equal(out.patches[i].address, 0x08000000u + 0x100u * i);
        assert_int_equal(out.patches[i].length, 64);
        assert_int_equal(out.patches[i].bytes[63], (i + 63) & 0xFF);
    }
    /* The reference's limit and its documented example. */
    patch_line(f->text, sizeof f->text, 4, 32, 8);
    assert_int_equal(mf_patch_parse(f->text, &out, message), 0);
    assert_int_equal(out.count, 4);
    assert_int_equal(mf_patch_parse("3,100025,3:AABBCC,100063,2:DDEE,100078,1:FF", &out, message),
                     0);
    assert_int_equal(out.count, 3);
    assert_int_equal(out.patches[2].address, 0x100078);
    assert_int_equal(out.patches[2].bytes[0], 0xFF);
    /* Blanks around the items. */
    assert_int_equal(mf_patch_parse(" 1 , 8000010 , 2 : AA BB ", &out, message), MF_EFORMAT);
    assert_int_equal(mf_patch_parse(" 1 , 8000010 , 2 : AABB ", &out, message), 0);
    assert_int_equal(out.patches[0].bytes[1], 0xBB);

    /* One past each limit: refused, saying which. */
    patch_line(f->text, sizeof f->text, 9, 1, 8);
    assert_int_equal(mf_patch_parse(f->text, &out, message), MF_EFORMAT);
    assert_string_equal(message, "NumPatches is 0x9: a line holds from 1 to 8 patches");
    patch_line(f->text, sizeof f->text, 2, 65, 8);
    assert_int_equal(mf_patch_parse(f->text, &out, message), MF_EFORMAT);
    assert_string_equal(message, "patch 1: NumBytes is 0x41 (65): a patch holds from 1 to 64 "
                                 "(0x40) bytes");
    /* Each malformed line with what it says; addresses of 16 hex digits at most, and no range
     * past the top of the address space. */
    static const char *const bad[][2] = {
        {"0", "NumPatches is 0x0: a line holds from 1 to 8 patches"},
        {"1,8000000,2:AA", "patch 1: 2 data bytes expected (two hex digits each), found 1"},
        {"1,8000000,2;AABB", "patch 1: expected ',<Addr>,<NumBytes>:<Data>' (hex)"},
        {"1,8000000,1:AA xyz", "unexpected text after 1 patches: 'xyz'"},
        {"1,10000000000000000,1:00", "patch 1: expected ',<Addr>,<NumBytes>:<Data>' (hex)"},
        {"1,FFFFFFFFFFFFFFFF,2:0000", "patch 1: address range wraps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mf_patch_parse(bad[i][0], &out, message), MF_EFORMAT);
        assert_string_equal(message, bad[i][1]);
    }
    assert_int_equal(mf_patch_parse("1,FFFFFFFFFFFFFFFD,2:a0Bf", &out, message), 0);
    assert_int_equal(out.patches[0].address, 0xFFFFFFFFFFFFFFFDull);
    assert_memory_equal(out.patches[0].bytes, "\xA0\xBF", 2);
}

static void test_snlist_lines(void **state)
{
    (void)state;
    uint8_t out[8];
    char message[MF_PATCH_ERROR_MAX];
    /* The documented example, and blanks between byte pairs and around the line. */
    assert_int_equal(mf_snlist_parse("0102030455667788", out, 8, message), 0);
    assert_memory_equal(out, "\x01\x02\x03\x04\x55\x66\x77\x88", 8);
    assert_int_equal(mf_snlist_parse("\t01 02 03\t04 ", out, 4, message), 0);
    assert_memory_equal(out, "\x01\x02\x03\x04", 4);
    assert_int_equal(mf_snlist_parse("AB", out, 4, message), 0); /* short: zero-filled */
    assert_memory_equal(out, "\xAB\x00\x00\x00", 4);
    assert_int_equal(mf_snlist_parse("0 1", out, 4, message), MF_EFORMAT); /* not inside a pair */
    assert_int_equal(mf_snlist_parse("   ", out, 4, message), MF_EFORMAT);
    assert_string_equal(message, "empty line");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_reader_limit_and_line_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snlist_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
