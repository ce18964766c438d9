/* Owner-side keys and key files (mf_owner): identities and fingerprints against known answers
 * (computed with Python's `cryptography` 38 and `hashlib` from the secrets below), the three key
 * files round trip and refuse every malformed variant, and the text helpers (base64, hex, UTC
 * times, UTF-8) take hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mf_err.h"
#include "mf_owner.h"

#include <sodium.h>

/* Identity secret 00 01 .. 3f; owner seed 40 41 .. 5f. */
static const char vec_x25519[] = "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f";
static const char vec_ed25519[] =
    "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7";
static const char vec_id[] = "210cab05a7385ef0447c44bb000318a1da18ba9febf30bcaf81b521245ee0f77";
static const char vec_fingerprint[] = "210C-AB05-A738-5EF0-447C";
static const char vec_programmer_file[] = "mintflash-programmer 1\n"
                                          "fingerprint: 210C-AB05-A738-5EF0-447C\n"
                                          "x25519: j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=\n"
                                          "ed25519: Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=\n";
static const char vec_owner_pk[] =
    "2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d";
static const char vec_owner_file[] = "mintflash-owner 1\n"
                                     "fingerprint: 922F-83B1-177B-2A6F-7013\n"
                                     "ed25519: JUO5L/EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0=\n";
static const char vec_secret_file[] =
    "mintflash-owner-secret 1\n"
    "ed25519-seed: QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=\n";

static void hex_of(const uint8_t *data, size_t n, char *out)
{
    mf_owner_hex_encode(data, n, out);
}

static void test_identity_known_answers(void **state)
{
    (void)state;
    uint8_t secret[64];
    for (int i = 0; i < 64; i++)
        secret[i] = (uint8_t)i;
    struct mf_owner_identity id;
    mf_owner_identity_derive(secret, &id);
    char hex[65];
    hex_of(id.pub.x25519, 32, hex);
    assert_string_equal(hex, vec_x25519);
    hex_of(id.pub.ed25519, 32, hex);
    assert_string_equal(hex, vec_ed25519);
    hex_of(id.pub.id, 32, hex);
    assert_string_equal(hex, vec_id);
    assert_string_equal(id.pub.fingerprint, vec_fingerprint);
    /* The Ed25519 secret key signs for the public key. */
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)"x", 1, id.ed25519_secret);
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"x", 1, id.pub.ed25519), 0);

    char text[MF_OWNER_FILE_MAX];
    assert_int_equal(mf_owner_format_programmer(&id.pub, text, sizeof text), 0);
    assert_string_equal(text, vec_programmer_file);
    assert_int_equal(mf_owner_format_programmer(&id.pub, text, 40), MF_EINVAL);

    mf_owner_identity_wipe(&id);
    static const uint8_t zeros[64];
    assert_memory_equal(id.x25519_secret, zeros, 32);
    assert_memory_equal(id.ed25519_secret, zeros, 64);
}

static void test_owner_known_answers(void **state)
{
    (void)state;
    uint8_t seed[32], pk[32], sk[64];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0x40 + i);
    mf_owner_keypair_from_seed(seed, pk, sk);
    char hex[65];
    hex_of(pk, 32, hex);
    assert_string_equal(hex, vec_owner_pk);
    struct mf_owner_key key;
    mf_owner_key_from_public(pk, &key);
    assert_string_equal(key.fingerprint, "922F-83B1-177B-2A6F-7013");
    char text[MF_OWNER_FILE_MAX];
    assert_int_equal(mf_owner_format_public(&key, text, sizeof text), 0);
    assert_string_equal(text, vec_owner_file);
    assert_int_equal(mf_owner_format_secret(seed, text, sizeof text), 0);
    assert_string_equal(text, vec_secret_file);
}

static void test_parse_round_trip(void **state)
{
    (void)state;
    char message[MF_OWNER_MESSAGE_MAX];
    struct mf_owner_programmer p;
    assert_int_equal(
        mf_owner_parse_programmer(vec_programmer_file, strlen(vec_programmer_file), &p, message),
        0);
    char hex[65];
    hex_of(p.id, 32, hex);
    assert_string_equal(hex, vec_id);
    assert_string_equal(p.fingerprint, vec_fingerprint);

    struct mf_owner_key key;
    assert_int_equal(mf_owner_parse_public(vec_owner_file, strlen(vec_owner_file), &key, message),
                     0);
    hex_of(key.ed25519, 32, hex);
    assert_string_equal(hex, vec_owner_pk);

    uint8_t seed[32];
    assert_int_equal(mf_owner_parse_secret(vec_secret_file, strlen(vec_secret_file), seed, message),
                     0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(seed[i], 0x40 + i);

    /* CRLF, a BOM, blank lines, keys in another order, spaces around the value. */
    static const char relaxed[] = "\xEF\xBB\xBFmintflash-programmer 1\r\n\r\n"
                                  "ed25519:Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=  \r\n"
                                  "x25519: \tj0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=\r\n"
                                  "fingerprint: 210C-AB05-A738-5EF0-447C";
    assert_int_equal(mf_owner_parse_programmer(relaxed, strlen(relaxed), &p, message), 0);
    assert_string_equal(p.fingerprint, vec_fingerprint);
}

/* Replaces the first `from` in `text` by `to`, into `out`. */
static void edit(const char *text, const char *from, const char *to, char *out)
{
    const char *at = strstr(text, from);
    assert_non_null(at);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
}

static void expect_programmer_error(const char *text, int err, const char *fragment)
{
    char message[MF_OWNER_MESSAGE_MAX];
    struct mf_owner_programmer p;
    int got = mf_owner_parse_programmer(text, strlen(text), &p, message);
    if (got != err || !strstr(message, fragment))
        fail_msg("got %d '%s', want %d with '%s'", got, message, err, fragment);
}

static void test_programmer_file_errors(void **state)
{
    (void)state;
    char t[2048];
    const char *v = vec_programmer_file;
    edit(v, "210C-AB05", "210C-AB06", t);
    expect_programmer_error(t, MF_EFORMAT, "does not match the keys");
    edit(v, "x25519: j0DF", "x25519: k0DF", t);
    expect_programmer_error(t, MF_EFORMAT, "does not match the keys");
    edit(v, "x25519:", "x25518:", t);
    expect_programmer_error(t, MF_EFORMAT, "unknown key 'x25518'");
    edit(v, "fingerprint: 210C-AB05-A738-5EF0-447C\n", "", t);
    expect_programmer_error(t, MF_EFORMAT, "no 'fingerprint' line");
    edit(v, "ed25519:", "ed25519: AAAA\ned25519:", t);
    expect_programmer_error(t, MF_EFORMAT, "given twice");
    edit(v, "mintflash-programmer 1", "mintflash-programmer 2", t);
    expect_programmer_error(t, MF_EVERSION, "not supported");
    edit(v, "mintflash-programmer 1", "mintflash-owner 1", t);
    expect_programmer_error(t, MF_EFORMAT, "not a mintflash-programmer file");
    edit(v, "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=",
         "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc", t);
    expect_programmer_error(t, MF_EFORMAT, "ed25519: not 32 bytes in base64");
    edit(v, "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=",
         "Kay64UG8yvCyLhqU000Lx YeUm0L/hLIl5S8kyKWbdc=", t);
    expect_programmer_error(t, MF_EFORMAT, "ed25519: not 32 bytes in base64");
    /* Non-canonical: the last character carries bits beyond the 32 bytes. */
    edit(v, "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=",
         "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdd=", t);
    expect_programmer_error(t, MF_EFORMAT, "ed25519: not 32 bytes in base64");
    edit(v, "x25519: ", "x25519 ", t);
    expect_programmer_error(t, MF_EFORMAT, "line 3: not 'key: value'");
    edit(v, "fingerprint", "finger\x01print", t);
    expect_programmer_error(t, MF_EFORMAT, "control characters");
    expect_programmer_error("", MF_EFORMAT, "empty");
    expect_programmer_error("\n\n\r\n", MF_EFORMAT, "empty");
    expect_programmer_error("hello", MF_EFORMAT, "not a mintflash-programmer file");

    /* A NUL inside, and an over-long file or line. */
    char message[MF_OWNER_MESSAGE_MAX];
    struct mf_owner_programmer p;
    char withnul[sizeof vec_programmer_file];
    memcpy(withnul, vec_programmer_file, sizeof withnul);
    withnul[30] = '\0';
    assert_int_equal(mf_owner_parse_programmer(withnul, sizeof withnul - 1, &p, message),
                     MF_EFORMAT);
    static char big[MF_OWNER_FILE_MAX + 2];
    memset(big, '\n', sizeof big);
    assert_int_equal(mf_owner_parse_programmer(big, sizeof big, &p, message), MF_EFBIG);
    /* Exactly MF_OWNER_FILE_MAX bytes (a valid file and blank lines) is a file; one more is not. */
    memcpy(big, vec_programmer_file, strlen(vec_programmer_file));
    assert_int_equal(mf_owner_parse_programmer(big, MF_OWNER_FILE_MAX, &p, message), 0);
    assert_string_equal(p.fingerprint, vec_fingerprint);
    assert_int_equal(mf_owner_parse_programmer(big, MF_OWNER_FILE_MAX + 1, &p, message), MF_EFBIG);
    char want[96];
    snprintf(want, sizeof want, "longer than %u bytes: not a mintflash-programmer file",
             MF_OWNER_FILE_MAX);
    assert_string_equal(message, want);
    /* A line of 255 bytes is read (and found wrong); one of 256 is not read at all. */
    char line255[400];
    snprintf(line255, sizeof line255, "mintflash-programmer 1\nfingerprint: %0242d\n", 0);
    assert_int_equal(mf_owner_parse_programmer(line255, strlen(line255), &p, message), MF_EFORMAT);
    assert_string_equal(message, "no 'x25519' line in the mintflash-programmer file");
    snprintf(line255, sizeof line255, "mintflash-programmer 1\nfingerprint: %0243d\n", 0);
    assert_int_equal(mf_owner_parse_programmer(line255, strlen(line255), &p, message), MF_EFORMAT);
    assert_string_equal(message, "line 2: longer than 255 bytes");
    char longline[600];
    strcpy(longline, "mintflash-programmer 1\nfingerprint: ");
    memset(longline + strlen(longline), 'A', 400);
    longline[37 + 400] = '\0';
    expect_programmer_error(longline, MF_EFORMAT, "longer than");
}

static void test_owner_files_errors(void **state)
{
    (void)state;
    char message[MF_OWNER_MESSAGE_MAX], t[1024];
    struct mf_owner_key key;
    uint8_t seed[32];
    /* A secret file is not a public file and the other way round. */
    assert_int_equal(mf_owner_parse_public(vec_secret_file, strlen(vec_secret_file), &key, message),
                     MF_EFORMAT);
    assert_non_null(strstr(message, "not a mintflash-owner file"));
    assert_int_equal(mf_owner_parse_secret(vec_owner_file, strlen(vec_owner_file), seed, message),
                     MF_EFORMAT);
    edit(vec_owner_file, "922F", "922E", t);
    assert_int_equal(mf_owner_parse_public(t, strlen(t), &key, message), MF_EFORMAT);
    edit(vec_secret_file, "ed25519-seed", "seed", t);
    assert_int_equal(mf_owner_parse_secret(t, strlen(t), seed, message), MF_EFORMAT);
    assert_non_null(strstr(message, "unknown key 'seed'"));
    edit(vec_secret_file, "1\n", "1\nfingerprint: x\n", t);
    assert_int_equal(mf_owner_parse_secret(t, strlen(t), seed, message), MF_EFORMAT);
    edit(vec_secret_file, "QEFC", "QEF", t);
    assert_int_equal(mf_owner_parse_secret(t, strlen(t), seed, message), MF_EFORMAT);
    assert_non_null(strstr(message, "ed25519-seed"));
    edit(vec_secret_file, "secret 1", "secret 9", t);
    assert_int_equal(mf_owner_parse_secret(t, strlen(t), seed, message), MF_EVERSION);
}

static void test_base64_hex(void **state)
{
    (void)state;
    uint8_t data[5] = {0xFB, 0xFF, 0x00, 0x10, 0x7E}, back[5];
    char text[16];
    assert_int_equal(mf_owner_b64_size(5), 9);
    assert_int_equal(mf_owner_b64_encode(data, 5, text, 8), MF_EINVAL);
    assert_int_equal(mf_owner_b64_encode(data, 5, text, sizeof text), 0);
    assert_string_equal(text, "+/8AEH4="); /* standard alphabet, padded */
    assert_int_equal(mf_owner_b64_decode(text, 8, back, 5), 0);
    assert_memory_equal(back, data, 5);
    assert_int_equal(mf_owner_b64_decode("+/8AEH4", 7, back, 5), MF_EFORMAT);
    assert_int_equal(mf_owner_b64_decode("-_8AEH4=", 8, back, 5), MF_EFORMAT); /* URL alphabet */
    assert_int_equal(mf_owner_b64_decode("+/8AEH5=", 8, back, 5), MF_EFORMAT); /* stray bits */
    assert_int_equal(mf_owner_b64_decode("+/8AEH4=", 8, back, 4), MF_EFORMAT);

    char hex[11];
    mf_owner_hex_encode(data, 5, hex);
    assert_string_equal(hex, "fbff00107e");
    assert_int_equal(mf_owner_hex_decode("FBff00107E", 10, back, 5), 0);
    assert_memory_equal(back, data, 5);
    assert_int_equal(mf_owner_hex_decode("fbff00107", 9, back, 5), MF_EFORMAT);
    assert_int_equal(mf_owner_hex_decode("fbff00107e00", 12, back, 5), MF_EFORMAT); /* longer */
    assert_int_equal(mf_owner_hex_decode("fbff00107g", 10, back, 5), MF_EFORMAT);
    assert_int_equal(mf_owner_hex_decode(" bff00107e", 10, back, 5), MF_EFORMAT);
}

static void test_time(void **state)
{
    (void)state;
    char text[MF_OWNER_TIME_SIZE];
    mf_owner_time_format(0, text);
    assert_string_equal(text, "1970-01-01T00:00:00Z");
    mf_owner_time_format(951782400, text); /* date -u -d 2000-02-29 +%s */
    assert_string_equal(text, "2000-02-29T00:00:00Z");
    mf_owner_time_format(1735689599, text);
    assert_string_equal(text, "2024-12-31T23:59:59Z");
    mf_owner_time_format(253402300799, text); /* the last second with a 4-digit year */
    assert_string_equal(text, "9999-12-31T23:59:59Z");
    mf_owner_time_format(253402300800, text); /* 10000-01-01: no 4-digit year, and unparsable */
    assert_string_equal(text, "@253402300800");
    mf_owner_time_format(INT64_MAX, text);
    assert_string_equal(text, "@9223372036854775807");
    mf_owner_time_format(-62167219201, text); /* one second before the year 0000 */
    assert_int_equal(text[0], '@');

    int64_t t;
    assert_int_equal(mf_owner_time_parse("2024-12-31T23:59:59Z", 20, false, &t), 0);
    assert_int_equal(t, 1735689599);
    assert_int_equal(mf_owner_time_parse("2000-02-29", 10, true, &t), 0);
    assert_int_equal(t, 951782400);
    assert_int_equal(mf_owner_time_parse("2000-02-29", 10, false, &t), MF_EFORMAT);
    static const char *const bad[] = {
        "1900-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z",
        "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z",
        "2024-01-01 00:00:00Z", "2024-01-01T00:00:00+", "2024-1-01T00:00:00Z",
        "+024-01-01T00:00:00Z", "2024-01-01T0a:00:00Z", "2024/01/01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (mf_owner_time_parse(bad[i], strlen(bad[i]), true, &t) != MF_EFORMAT)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(mf_owner_time_parse("2024-02-29T12:00:00Z", 20, false, &t), 0);
    assert_int_equal(mf_owner_time_parse("2400-02-29T00:00:00Z", 20, false, &t), 0);
    /* Round trip over a range of times. */
    for (int64_t s = 0; s < 4102444800; s += 86399 * 37 + 1234) {
        mf_owner_time_format(s, text);
        assert_int_equal(mf_owner_time_parse(text, strlen(text), false, &t), 0);
        assert_int_equal(t, s);
    }
}

static void test_text_ok(void **state)
{
    (void)state;
    assert_true(mf_owner_text_ok("", 0));
    assert_true(mf_owner_text_ok("Widget 01_x", 11));
    static const char utf8[] = "Gr\xC3\xBC\xC3\x9F"
                               "e \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_true(mf_owner_text_ok(utf8, strlen(utf8)));
    static const char *const bad[] = {
        "a\x01",
        "\x7F",
        "\xC3",
        "\xC0\x80",
        "\xE0\x80\x80",
        "\xED\xA0\x80",
        "\xF4\x90\x80\x80",
        "\xF5\x80\x80\x80",
        "\x80",
        "\xC3\x28",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(mf_owner_text_ok(bad[i], strlen(bad[i])));
    assert_false(mf_owner_text_ok("a\0b", 3));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_known_answers),
        cmocka_unit_test(test_owner_known_answers),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_programmer_file_errors),
        cmocka_unit_test(test_owner_files_errors),
        cmocka_unit_test(test_base64_hex),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_text_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
