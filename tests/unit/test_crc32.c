/* CRC-32 against known answers (the CRC catalogue's check value for CRC-32/ISO-HDLC, the rest
 * computed with Python's zlib.crc32), and piecewise use equal to one call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mf_crc32.h"

static void test_known_answers(void **state)
{
    (void)state;
    assert_int_equal(mf_crc32_update(0, NULL, 0), 0);
    assert_int_equal(mf_crc32_update(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(mf_crc32_update(0, "a", 1), 0xE8B7BE43u);
    const char *fox = "The quick brown fox jumps over the lazy dog";
    assert_int_equal(mf_crc32_update(0, fox, strlen(fox)), 0x414FA339u);
    uint8_t ramp[1024];
    for (size_t i = 0; i < sizeof ramp; i++)
        ramp[i] = (uint8_t)i;
    assert_int_equal(mf_crc32_update(0, ramp, sizeof ramp), 0xB70B4C26u);
}

static void test_fill(void **state)
{
    (void)state;
    assert_int_equal(mf_crc32_fill(0, 0xFF, 1000), 0xE0533230u);
    assert_int_equal(mf_crc32_fill(0, 0x00, 0), 0);
    /* Fill continues a CRC like update does. */
    uint8_t buf[300];
    memset(buf, 0x5A, sizeof buf);
    uint32_t head = mf_crc32_update(0, "123", 3);
    assert_int_equal(mf_crc32_fill(head, 0x5A, sizeof buf), mf_crc32_update(head, buf, sizeof buf));
}

static void test_split_anywhere(void **state)
{
    (void)state;
    uint8_t data[257];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37u + 11u);
    uint32_t whole = mf_crc32_update(0, data, sizeof data);
    for (size_t cut = 0; cut <= sizeof data; cut++) {
        uint32_t crc = mf_crc32_update(0, data, cut);
        crc = mf_crc32_update(crc, data + cut, sizeof data - cut);
        assert_int_equal(crc, whole);
    }
    uint32_t bytewise = 0;
    for (size_t i = 0; i < sizeof data; i++)
        bytewise = mf_crc32_update(bytewise, data + i, 1);
    assert_int_equal(bytewise, whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_fill),
        cmocka_unit_test(test_split_anywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
