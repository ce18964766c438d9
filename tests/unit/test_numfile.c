/* Number files (mf_numfile): Cntdown.txt and Serial.txt parsed at their limits (the largest
 * value and one above it, 512 bytes and one more, a UTF-8 BOM, blanks around the digits, text
 * after them in each syntax). Updates and their line ends: unit.cycle
 * (test_number_files_keep_their_line_end), power cuts during them: its authorization sweeps. */
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_numfile.h"
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

/* Parses `text` (NUL-terminated) and returns the error; *value is set on success. */
static int parse(const char *text, enum mf_numfile_syntax syntax, uint64_t max, uint64_t *value)
{
    *value = 12345;
    return mf_numfile_parse(text, (uint32_t)strlen(text), syntax, max, value);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum mf_numfile_syntax syntax;
        uint64_t max;
        int err;
        uint64_t value;
    } cases[] = {
        {"5", MF_NUMFILE_STRICT, UINT32_MAX, 0, 5},
        {"\xEF\xBB\xBF"
         "5\r\n",
         MF_NUMFILE_STRICT, UINT32_MAX, 0, 5}, /* a BOM, as Windows editors write */
        {" \t\r\n42 \t\r\n", MF_NUMFILE_STRICT, UINT32_MAX, 0, 42},
        {"4294967295", MF_NUMFILE_STRICT, UINT32_MAX, 0, 4294967295u},
        {"4294967296", MF_NUMFILE_STRICT, UINT32_MAX, MF_EFORMAT, 0},
        {"4294967299", MF_NUMFILE_STRICT, UINT32_MAX, MF_EFORMAT, 0},
        {"18446744073709551615", MF_NUMFILE_LEADING, UINT64_MAX, 0, UINT64_MAX},
        {"18446744073709551616", MF_NUMFILE_LEADING, UINT64_MAX, MF_EFORMAT, 0},
        {"00000000000000000000007", MF_NUMFILE_STRICT, UINT32_MAX, 0, 7},
        {"", MF_NUMFILE_STRICT, UINT32_MAX, MF_EFORMAT, 0},
        {" \r\n", MF_NUMFILE_LEADING, UINT64_MAX, MF_EFORMAT, 0},
        {"\xEF\xBB\xBF", MF_NUMFILE_STRICT, UINT32_MAX, MF_EFORMAT, 0},
        {"-5", MF_NUMFILE_LEADING, UINT64_MAX, MF_EFORMAT, 0},
        {"5 6", MF_NUMFILE_STRICT, UINT32_MAX, MF_EFORMAT, 0},
        {"123123-123", MF_NUMFILE_STRICT, UINT64_MAX, MF_EFORMAT, 0},
        {"123123-123", MF_NUMFILE_LEADING, UINT64_MAX, 0, 123123},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v;
        int err = parse(cases[i].text, cases[i].syntax, cases[i].max, &v);
        if (err != cases[i].err || (!err && v != cases[i].value))
            fail_msg("case %zu: got %d %llu, want %d %llu", i, err, (unsigned long long)v,
                     cases[i].err, (unsigned long long)cases[i].value);
    }
}

/* A file of exactly MF_NUMFILE_SIZE_MAX bytes is read, and written; one byte more is refused
 * and left as it is. */
static void test_size_limit(void **state)
{
    (void)state;
    struct mf_testfat vol;
    struct mf_fat_format_options o = {.volume_id = 5};
    assert_int_equal(mf_testfat_init(&vol, 512, BLOCKS, &o), 0);
    static char text[MF_NUMFILE_SIZE_MAX + 1];
    memset(text, ' ', sizeof text);
    text[0] = '9';
    assert_int_equal(mf_testfat_put(&vol.fs, "Cntdown.txt", text, MF_NUMFILE_SIZE_MAX), 0);
    uint64_t v = 0;
    assert_int_equal(mf_numfile_read(&vol.fs, "Cntdown.txt", MF_NUMFILE_STRICT, UINT32_MAX, &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(mf_numfile_write(&vol.fs, "Cntdown.txt", 10), 0);
    assert_int_equal(mf_numfile_read(&vol.fs, "Cntdown.txt", MF_NUMFILE_STRICT, UINT32_MAX, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(mf_testfat_put(&vol.fs, "Cntdown.txt", text, MF_NUMFILE_SIZE_MAX + 1), 0);
    assert_int_equal(mf_numfile_read(&vol.fs, "Cntdown.txt", MF_NUMFILE_STRICT, UINT32_MAX, &v),
                     MF_EFBIG);
    assert_int_equal(mf_numfile_write(&vol.fs, "Cntdown.txt", 8), MF_EFBIG);
    char *back;
    size_t size;
    assert_int_equal(mf_testfat_get(&vol.fs, "Cntdown.txt", &back, &size), 0);
    assert_int_equal(size, MF_NUMFILE_SIZE_MAX + 1);
    assert_memory_equal(back, text, size);
    free(back);
    assert_int_equal(mf_numfile_read(&vol.fs, "Absent.txt", MF_NUMFILE_STRICT, 9, &v), MF_ENOENT);
    mf_testfat_free(&vol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_size_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
