/* UID signatures (mf_uidsig): the published message layout and a signature against known answers
 * (made with Python's `cryptography` 38 from the seed 40 41 .. 5f), and every field bound: another
 * UID, serial number or setup, a flipped signature bit or another key fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mf_err.h"
#include "mf_owner.h"
#include "mf_uidsig.h"

#include <sodium.h>

static const char known_message[] =
    "4d4653494731"
    "2222222222222222222222222222222222222222222222222222222222222222"
    "0c"
    "0102030405060708090a0b0c"
    "e803000000000000";
static const char known_signature[] =
    "24eb46699000c9822c9c427c73f4b8df84ffbebec1ece341a487164d0a1456ae"
    "a0f9a8072c534dbad59fdc956528226f80d97d4922c64b74ca1645db291e2b01";

static void fixed(uint8_t setup[32], uint8_t uid[12], uint8_t seed[32], uint8_t pk[32])
{
    memset(setup, 0x22, 32);
    for (int i = 0; i < 12; i++)
        uid[i] = (uint8_t)(i + 1);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0x40 + i);
    uint8_t sk[64];
    mf_owner_keypair_from_seed(seed, pk, sk);
}

static void test_known_answers(void **state)
{
    (void)state;
    uint8_t setup[32], uid[12], seed[32], pk[32];
    fixed(setup, uid, seed, pk);
    uint8_t message[MF_UIDSIG_MESSAGE_MAX];
    size_t length;
    assert_int_equal(mf_uidsig_message(setup, uid, 12, 1000, message, &length), 0);
    char hex[2 * MF_UIDSIG_MESSAGE_MAX + 1];
    mf_owner_hex_encode(message, length, hex);
    assert_string_equal(hex, known_message);

    uint8_t sig[64];
    assert_int_equal(mf_uidsig_sign(setup, uid, 12, 1000, seed, sig), 0);
    mf_owner_hex_encode(sig, 64, hex);
    assert_string_equal(hex, known_signature);
    assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1000, pk, sig), 0);
}

static void test_everything_bound(void **state)
{
    (void)state;
    uint8_t setup[32], uid[12], seed[32], pk[32], sig[64];
    fixed(setup, uid, seed, pk);
    assert_int_equal(mf_uidsig_sign(setup, uid, 12, 1000, seed, sig), 0);
    assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1001, pk, sig), MF_EAUTH);
    assert_int_equal(mf_uidsig_verify(setup, uid, 11, 1000, pk, sig), MF_EAUTH);
    uid[11] ^= 1;
    assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1000, pk, sig), MF_EAUTH);
    uid[11] ^= 1;
    setup[0] ^= 1;
    assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1000, pk, sig), MF_EAUTH);
    setup[0] ^= 1;
    for (int bit = 0; bit < 512; bit++) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1000, pk, sig), MF_EAUTH);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    assert_int_equal(mf_uidsig_verify(setup, uid, 12, 1000, other_pk, sig), MF_EAUTH);

    /* The length byte keeps UID and serial number apart: 12-byte UID + serial differs from a
     * 13-byte UID whose last byte is the serial's first. */
    uint8_t long_uid[13];
    memcpy(long_uid, uid, 12);
    long_uid[12] = 0xE8;
    assert_int_equal(mf_uidsig_verify(setup, long_uid, 13, 3, pk, sig), MF_EAUTH);

    /* Empty and the longest UIDs; one byte more is refused. */
    uint8_t big[MF_UIDSIG_UID_MAX + 1];
    memset(big, 0xAB, sizeof big);
    assert_int_equal(mf_uidsig_sign(setup, big, 0, 0, seed, sig), 0);
    assert_int_equal(mf_uidsig_verify(setup, big, 0, 0, pk, sig), 0);
    assert_int_equal(mf_uidsig_sign(setup, big, MF_UIDSIG_UID_MAX, UINT64_MAX, seed, sig), 0);
    assert_int_equal(mf_uidsig_verify(setup, big, MF_UIDSIG_UID_MAX, UINT64_MAX, pk, sig), 0);
    assert_int_equal(mf_uidsig_sign(setup, big, MF_UIDSIG_UID_MAX + 1, 0, seed, sig), MF_EINVAL);
    assert_int_equal(mf_uidsig_verify(setup, big, MF_UIDSIG_UID_MAX + 1, 0, pk, sig), MF_EINVAL);
    uint8_t message[MF_UIDSIG_MESSAGE_MAX];
    size_t length;
    assert_int_equal(mf_uidsig_message(setup, big, MF_UIDSIG_UID_MAX, 0, message, &length), 0);
    assert_int_equal(length, MF_UIDSIG_MESSAGE_MAX);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_everything_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
