/* Unit tests of the protocol edge's reply escaping (mf_proto_escape): no control character of a
 * quoted text leaves in a reply, and a listed name escaped is never a real FAT name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mf_proto.h"

static void test_escape_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool name;
        const char *out;
    } v[] = {
        {"FLASHER.LOG", true, "FLASHER.LOG"},
        {"caf\xc3\xa9 \xe2\x82\xac.txt", true, "caf\xc3\xa9 \xe2\x82\xac.txt"}, /* UTF-8 kept */
        {"evil\r#FLIST:F:99:RECORDS.999\rz", true, "evil<0d>#FLIST<3a>F<3a>99<3a>RECORDS.999<0d>z"},
        {"evil\r#FLIST:F:99:RECORDS.999\rz", false, "evil<0d>#FLIST:F:99:RECORDS.999<0d>z"},
        {"a\nb\x01\x1f\x7f", false, "a<0a>b<01><1f><7f>"},
        {"c1\xc2\x85\xc2\x9f|\xc2\xa0", false, "c1<85><9f>|\xc2\xa0"}, /* NEL, APC; NBSP kept */
        {"RECORDS./../x", true, "RECORDS.<2f>..<2f>x"},
        {"<3c>\"*/:>?\\|", true, "<3c>3c<3e><22><2a><2f><3a><3e><3f><5c><7c>"},
        {"<3c>", false, "<3c>"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[256];
        size_t n = mf_proto_escape(v[i].in, v[i].name, out, sizeof out);
        assert_string_equal(out, v[i].out);
        assert_int_equal(n, strlen(v[i].out));
    }
}

static void test_escape_truncates_whole(void **state)
{
    (void)state;
    char out[8];
    /* "ab" then an escape that does not fit: never half of one. */
    assert_int_equal(mf_proto_escape("ab\r\rcd", false, out, 7), 2 + 4);
    assert_string_equal(out, "ab<0d>");
    assert_int_equal(mf_proto_escape("ab\rcd", false, out, 6), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(mf_proto_escape("x\xc2\x85", false, out, 2), 1);
    assert_string_equal(out, "x");
    assert_int_equal(mf_proto_escape("x", false, out, 0), 0);
}

static void test_escape_every_byte(void **state)
{
    (void)state;
    /* Every byte value 1..255 once, in both modes: no control byte and no C1 pair comes out, and
     * the worst case fits MF_PROTO_ESCAPED_SIZE. */
    char in[256], out[MF_PROTO_ESCAPED_SIZE(255)];
    for (int i = 1; i < 256; i++)
        in[i - 1] = (char)i;
    in[255] = '\0';
    for (int name = 0; name < 2; name++) {
        size_t n = mf_proto_escape(in, name, out, sizeof out);
        assert_int_equal(n, strlen(out));
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)out[k];
            assert_true(c >= 0x20 && c != 0x7f);
            if (c == 0xc2 && k + 1 < n)
                assert_false((unsigned char)out[k + 1] >= 0x80 &&
                             (unsigned char)out[k + 1] <= 0x9f);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_vectors),
        cmocka_unit_test(test_escape_truncates_whole),
        cmocka_unit_test(test_escape_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
