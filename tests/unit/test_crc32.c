/* CRC-32 against known answers (the CRC catalogue's check values for CRC-32/ISO-HDLC and
 * CRC-32/MPEG-2, the rest computed with Python's zlib.crc32), piecewise use equal to one call, and
 * every fast path (tables, carry-less multiplication) equal to a plain bit-by-bit CRC written here
 * from the definition, for every length 0..1024 at every start offset 0..15 and for long random
 * buffers, in both bit orders; the MSB-first one also equal to mf_target_crc; threads racing to be
 * the first caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mf_crc32.h"
#include "mf_target.h"
#include "mf_testutil.h"

#include <pthread.h>
#include <stdlib.h>

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

/* The definitions, one bit at a time: the references for the fast paths. */
static uint32_t reference_reflected(uint32_t crc, const uint8_t *p, size_t length)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < length; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static uint32_t reference_msb(uint32_t c, const uint8_t *p, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        c ^= (uint32_t)p[i] << 24;
        for (int k = 0; k < 8; k++)
            c = (c & 0x80000000u) ? (c << 1) ^ 0x04C11DB7u : c << 1;
    }
    return c;
}

/* A seeded xorshift generator, so that a failure repeats. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(next_random(state) >> 24);
}

/* Threads that all make their first call at once: the tables are built by one of them while the
 * others go byte by byte; every answer must be right. Runs first, before any table exists. */
enum { RACERS = 8, RACE_SIZE = 4096 + 13 };

struct racer {
    pthread_barrier_t *start;
    const uint8_t *data;
    uint32_t reflected, msb;
};

static void *race(void *context)
{
    struct racer *r = context;
    pthread_barrier_wait(r->start);
    r->reflected = mf_crc32_update(0, r->data, RACE_SIZE);
    r->msb = mf_crc32_msb_update(0xFFFFFFFFu, r->data + 1, RACE_SIZE - 1);
    return NULL;
}

static void test_first_callers_at_once(void **state)
{
    (void)state;
    static uint8_t data[RACE_SIZE];
    uint64_t seed = 0xC0FFEEull;
    fill_random(data, sizeof data, &seed);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
    struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (struct racer){.start = &start, .data = data};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);
    uint32_t reflected = reference_reflected(0, data, RACE_SIZE);
    uint32_t msb = reference_msb(0xFFFFFFFFu, data + 1, RACE_SIZE - 1);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(racers[i].reflected, reflected);
        assert_int_equal(racers[i].msb, msb);
    }
}

static void test_msb_known_answers(void **state)
{
    (void)state;
    assert_int_equal(mf_crc32_msb_update(0xFFFFFFFFu, NULL, 0), 0xFFFFFFFFu);
    assert_int_equal(mf_crc32_msb_update(0xFFFFFFFFu, "123456789", 9), 0x0376E6E7u);
    assert_int_equal(mf_crc32_msb_update(0xFFFFFFFFu, "123456789", 9),
                     mf_target_crc(MF_TARGET_CRC_INIT, "123456789", 9));
}

/* Every length 0..1024 at every misaligned start, from a zero and from a running register, on
 * every path. */
static void check_every_length_and_start(void)
{
    enum { MAX = 1024, STARTS = 16 };
    uint8_t *buf = malloc(MAX + STARTS);
    assert_non_null(buf);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    fill_random(buf, MAX + STARTS, &seed);
    for (size_t start = 0; start < STARTS; start++) {
        const uint8_t *p = buf + start;
        for (size_t n = 0; n <= MAX; n++) {
            uint32_t from = (uint32_t)(n * 2654435761u + start);
            if (mf_crc32_update(0, p, n) != reference_reflected(0, p, n) ||
                mf_crc32_update(from, p, n) != reference_reflected(from, p, n))
                fail_msg("reflected: length %zu at offset %zu", n, start);
            if (mf_crc32_msb_update(0xFFFFFFFFu, p, n) != reference_msb(0xFFFFFFFFu, p, n) ||
                mf_crc32_msb_update(from, p, n) != reference_msb(from, p, n) ||
                mf_crc32_msb_update(from, p, n) != mf_target_crc(from, p, n))
                fail_msg("msb first: length %zu at offset %zu", n, start);
        }
    }
    free(buf);
}

static void test_every_length_and_start(void **state)
{
    (void)state;
    static const enum mf_crc32_path paths[] = {MF_CRC32_PATH_BYTES, MF_CRC32_PATH_TABLES,
                                               MF_CRC32_PATH_CLMUL, MF_CRC32_PATH_FASTEST};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        mf_crc32_set_path(paths[i]);
        check_every_length_and_start();
    }
    assert_int_equal(mf_crc32_set_path(MF_CRC32_PATH_FASTEST), MF_CRC32_PATH_FASTEST);
}

/* Long buffers (the folding loop many times over) in random pieces, and with all-zero and
 * all-one bytes, which catch a wrong constant that random data might hide less well. */
static void check_long_buffers(void)
{
    enum { SIZE = (1 << 20) + 77 };
    uint8_t *buf = malloc(SIZE);
    assert_non_null(buf);
    uint64_t seed = mf_test_seed("crc32", 0x5EEDull) | 1u; /* xorshift needs a non-zero state */
    for (int round = 0; round < 4; round++) {
        if (round == 0)
            fill_random(buf, SIZE, &seed);
        else
            memset(buf, round == 1 ? 0x00 : round == 2 ? 0xFF : 0x80, SIZE);
        uint32_t whole = reference_reflected(0, buf, SIZE);
        uint32_t whole_msb = reference_msb(0xFFFFFFFFu, buf, SIZE);
        assert_int_equal(mf_crc32_update(0, buf, SIZE), whole);
        assert_int_equal(mf_crc32_msb_update(0xFFFFFFFFu, buf, SIZE), whole_msb);
        uint32_t crc = 0, msb = 0xFFFFFFFFu;
        for (size_t at = 0; at < SIZE;) {
            size_t n = (size_t)(next_random(&seed) % 70000u);
            if (n > SIZE - at)
                n = SIZE - at;
            crc = mf_crc32_update(crc, buf + at, n);
            msb = mf_crc32_msb_update(msb, buf + at, n);
            at += n;
        }
        assert_int_equal(crc, whole);
        assert_int_equal(msb, whole_msb);
        if (round >= 1)
            assert_int_equal(mf_crc32_fill(0, buf[0], SIZE), whole);
    }
    free(buf);
}

static void test_long_buffers(void **state)
{
    (void)state;
    mf_crc32_set_path(MF_CRC32_PATH_TABLES);
    check_long_buffers();
    mf_crc32_set_path(MF_CRC32_PATH_CLMUL);
    check_long_buffers();
    mf_crc32_set_path(MF_CRC32_PATH_FASTEST);
    check_long_buffers();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_callers_at_once),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_fill),
        cmocka_unit_test(test_split_anywhere),
        cmocka_unit_test(test_msb_known_answers),
        cmocka_unit_test(test_every_length_and_start),
        cmocka_unit_test(test_long_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
