/* SHA-256 with the CPU's SHA extensions equals libsodium's for every length 0..1100, fed whole
 * and in random pieces, for a 5 MiB buffer, and for the FIPS 180-4 examples; the portable path
 * (forced) gives the same. */
#include "mf_sha256.h"

#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void ours(const uint8_t *data, size_t length, size_t piece, uint8_t out[32])
{
    struct mf_sha256 sha;
    mf_sha256_init(&sha);
    for (size_t done = 0; done < length;) {
        size_t n = piece && piece < length - done ? piece : length - done;
        mf_sha256_update(&sha, data + done, n);
        done += n;
    }
    mf_sha256_final(&sha, out);
}

static void check_all(void)
{
    static uint8_t data[5u << 20];
    randombytes_buf(data, sizeof data);
    uint8_t want[32], got[32];
    for (size_t len = 0; len <= 1100; len++) {
        crypto_hash_sha256(want, data + 3, len);
        for (size_t piece = 0; piece <= 130; piece += len % 7 + 1) {
            ours(data + 3, len, piece, got);
            if (memcmp(want, got, 32) != 0)
                fail_msg("length %zu in pieces of %zu differs (native %d)", len, piece,
                         mf_sha256_native());
        }
    }
    crypto_hash_sha256(want, data, sizeof data);
    ours(data, sizeof data, 0, got);
    assert_memory_equal(want, got, 32);
    ours(data, sizeof data, 4093, got);
    assert_memory_equal(want, got, 32);
    /* FIPS 180-4, "abc" and the 448-bit message. */
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    ours((const uint8_t *)"abc", 3, 0, got);
    assert_memory_equal(abc, got, 32);
    static const uint8_t long_msg[32] = {0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8,
                                         0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                                         0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67,
                                         0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1};
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ours((const uint8_t *)m, strlen(m), 0, got);
    assert_memory_equal(long_msg, got, 32);
}

static void test_native(void **state)
{
    (void)state;
    mf_sha256_allow_native(true);
    if (!mf_sha256_native())
        printf("(this CPU has no SHA extensions: the portable path is tested twice)\n");
    check_all();
}

static void test_portable(void **state)
{
    (void)state;
    mf_sha256_allow_native(false);
    assert_false(mf_sha256_native());
    check_all();
    mf_sha256_allow_native(true);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native),
        cmocka_unit_test(test_portable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
