/* Motorola S-record parser: accepted syntax, every error path with its exact message and line,
 * chunk-split invariance (every split point, then random chunkings of random files, seed
 * printed), and the writer read back by the parser. Records are built here with a helper that
 * is independent of mf_srec_write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mf_err.h"
#include "mf_image.h"
#include "mf_srec.h"
#include "mf_testutil.h"

struct capture {
    char *text;
    size_t length, capacity;
    int fail_at;
    int calls;
};

static void cap_printf(struct capture *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cap_printf(struct capture *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (c->length + (size_t)n + 1 > c->capacity) {
        c->capacity = (c->length + (size_t)n + 1) * 2;
        c->text = realloc(c->text, c->capacity);
        assert_non_null(c->text);
    }
    va_start(ap, fmt);
    vsnprintf(c->text + c->length, c->capacity - c->length, fmt, ap);
    va_end(ap);
    c->length += (size_t)n;
}

static int cap_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                    uint64_t where)
{
    struct capture *c = context;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return MF_ENOMEM;
    cap_printf(c, "D %llX line %llu:", (unsigned long long)address, (unsigned long long)where);
    for (size_t i = 0; i < length; i++)
        cap_printf(c, "%02X", bytes[i]);
    cap_printf(c, "\n");
    return 0;
}

static int cap_start(void *context, uint64_t address)
{
    struct capture *c = context;
    cap_printf(c, "S %llX\n", (unsigned long long)address);
    return 0;
}

static char *parse_cuts(const char *text, size_t n, const size_t *cuts, size_t ncuts, int fail_at)
{
    struct capture c = {.fail_at = fail_at};
    cap_printf(&c, "%s", "");
    struct mf_image_sink sink = {cap_data, cap_start, &c};
    struct mf_srec_parser p;
    mf_srec_init(&p, &sink);
    struct mf_image_error err = {0};
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && !rc; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        rc = mf_srec_feed(&p, text + at, to - at, &err);
        at = to;
    }
    if (!rc)
        rc = mf_srec_finish(&p, &err);
    cap_printf(&c, "rc=%d line=%llu err=%s\n", rc, (unsigned long long)err.line,
               rc ? err.text : "");
    return c.text;
}

static char *parse(const char *text)
{
    return parse_cuts(text, strlen(text), NULL, 0, 0);
}

/* One record line with a correct checksum; `address_bytes` from the type. */
static void rec(char *out, size_t size, unsigned type, uint32_t address, const uint8_t *data,
                unsigned length)
{
    static const unsigned address_bytes[10] = {2, 2, 3, 4, 2, 2, 3, 4, 3, 2};
    unsigned ab = address_bytes[type];
    unsigned count = ab + length + 1;
    unsigned sum = count;
    int n = snprintf(out, size, "S%u%02X", type, count);
    for (unsigned i = ab; i-- > 0;) {
        unsigned b = (address >> (8 * i)) & 0xFF;
        n += snprintf(out + n, size - (size_t)n, "%02X", b);
        sum += b;
    }
    for (unsigned i = 0; i < length; i++) {
        n += snprintf(out + n, size - (size_t)n, "%02X", data[i]);
        sum += data[i];
    }
    snprintf(out + n, size - (size_t)n, "%02X\n", ~sum & 0xFF);
}

static void expect_error(const char *text, const char *message)
{
    char *got = parse(text);
    char *nl = strstr(got, "rc=");
    assert_non_null(nl);
    char want[512];
    snprintf(want, sizeof want, "err=%s\n", message);
    if (!strstr(nl, want) || !strstr(nl, "rc=-1001 ")) {
        fprintf(stderr, "input:\n%s\nwant: %s\ngot:  %s", text, message, nl);
        fail();
    }
    free(got);
}

/* A file with every accepted record type, built with rec(). */
static char *all_types_file(const char *end)
{
    static char text[1024];
    char line[256];
    uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
    uint8_t d[4] = {0xDE, 0xAD, 0xBE, 0xEF};
    text[0] = '\0';
#define ADD(type, address, data, length)                                                           \
    do {                                                                                           \
        rec(line, sizeof line, type, address, data, length);                                       \
        line[strlen(line) - 1] = '\0';                                                             \
        strcat(text, line);                                                                        \
        strcat(text, end);                                                                         \
    } while (0)
    ADD(0, 0, hello, 5);
    ADD(1, 0x1234, d, 4);
    ADD(2, 0x123456, d, 2);
    ADD(3, 0x12345678, d, 3);
    ADD(5, 3, NULL, 0);
    ADD(1, 0xFFFE, d, 4); /* crosses 64 KiB: contiguous, as srec_cat and objcopy read it */
    ADD(6, 4, NULL, 0);
    ADD(7, 0x08000131, NULL, 0);
#undef ADD
    return text;
}

static void test_valid_files(void **state)
{
    (void)state;
    static const char *const ends[] = {"\n", "\r\n", "\r", "  \t\n"};
    for (size_t i = 0; i < 4; i++) {
        char *got = parse(all_types_file(ends[i]));
        assert_string_equal(got, "D 1234 line 2:DEADBEEF\n"
                                 "D 123456 line 3:DEAD\n"
                                 "D 12345678 line 4:DEADBE\n"
                                 "D FFFE line 6:DEADBEEF\n"
                                 "S 8000131\n"
                                 "rc=0 line=0 err=\n");
        free(got);
    }
    /* Lower-case digits, blank lines, S8 and S9 terminations. */
    char *got = parse("\n  S1071234deadbeef7a\n\nS8041234565F");
    assert_string_equal(got, "D 1234 line 2:DEADBEEF\nS 123456\nrc=0 line=0 err=\n");
    free(got);
    got = parse("S9030000FC\n");
    assert_string_equal(got, "S 0\nrc=0 line=0 err=\n");
    free(got);
}

static void test_top_of_4gib(void **state)
{
    (void)state;
    char text[256], line[128];
    uint8_t d[16] = {0};
    rec(text, sizeof text, 3, 0xFFFFFFF0u, d, 16);
    strcat(text, "S70500000000FA\n");
    char *got = parse(text);
    assert_string_equal(got, "D FFFFFFF0 line 1:00000000000000000000000000000000\n"
                             "S 0\nrc=0 line=0 err=\n");
    free(got);
    rec(text, sizeof text, 3, 0xFFFFFFF8u, d, 16);
    rec(line, sizeof line, 7, 0, NULL, 0);
    strcat(text, line);
    expect_error(text, "line 1: data at 0xFFFFFFF8 (16 bytes) extends past 4 GiB");
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("S1071234DEADBEEF98\nS9030000FC\n",
                 "line 1: checksum mismatch (expected 0x7A, got 0x98)");
    expect_error("S1071234DEADBEXF97\n", "line 1: bad hex digit 'X'");
    expect_error("S1071234DEADBE\n", "line 1: short record (count field says 7 bytes, the line "
                                     "holds 5)");
    expect_error("S1\n", "line 1: record too short (no count byte)");
    expect_error("S107123\n", "line 1: odd number of hex digits");
    expect_error("S4030000FC\n", "line 1: record type S4 is reserved");
    expect_error("SX030000FC\n", "line 1: bad record type 'X' after 'S' (S0-S9 expected)");
    expect_error("S\n", "line 1: bad record type 0x0A after 'S' (S0-S9 expected)");
    expect_error("S1071234DEADBEEF7A00\n", "line 1: record longer than its count field (7 bytes)");
    expect_error("S1071234DEADBEEF7AS9030000FC\n", "line 1: second record on one line");
    expect_error("S3041234565F\n", "line 1: record too short for S3 (count 4, at least 5 needed)");
    expect_error(
        "S1071234DEADBEEF7A\nS5030002FA\n",
        "line 2: record count mismatch (S5 says 2, the file has 1 data records before it)");
    expect_error("S604000001FA\n", "line 1: record count mismatch (S6 says 1, the file has 0 data "
                                   "records before it)");
    expect_error("S50500000102F7\n", "line 1: S5 count record holds 2 unexpected data bytes");
    expect_error("S9050000AABB95\n", "line 1: S9 termination record holds 2 unexpected data bytes");
    expect_error("S9030000FC\nS1071234DEADBEEF7A\n",
                 "line 2: record after the termination record (S9)");
    expect_error("S9030000FC\n:", "line 2: unexpected character ':' after the termination record");
    expect_error("\r\n:00000001FF\n", "line 2: unexpected character ':' outside a record");
    expect_error("S1071234DEADBEEF7A\n",
                 "line 2: no termination record (S7-S9) or record count (S5/S6) after the last "
                 "data record: the file may be truncated");
    expect_error("S1071234DEADBEEF7A\nS5030001FB\nS1071234DEADBEEF7A\n",
                 "line 4: no termination record (S7-S9) or record count (S5/S6) after the last "
                 "data record: the file may be truncated");
    expect_error("S1071234DE", "line 1: file ends inside a record");
    expect_error("S", "line 1: file ends inside a record");
}

static void test_count_records(void **state)
{
    (void)state;
    char *got = parse("S5030000FC\nS9030000FC\n");
    assert_string_equal(got, "S 0\nrc=0 line=0 err=\n");
    free(got);
    /* srec_cat ends a file without a start address with the count, no termination record. */
    got = parse("S0030000FC\nS1071234DEADBEEF7A\nS5030001FB\n");
    assert_string_equal(got, "D 1234 line 2:DEADBEEF\nrc=0 line=0 err=\n");
    free(got);
}

static void test_sink_error_and_sticky(void **state)
{
    (void)state;
    const char *text = all_types_file("\n");
    char *got = parse_cuts(text, strlen(text), NULL, 0, 3);
    assert_string_equal(got, "D 1234 line 2:DEADBEEF\n"
                             "D 123456 line 3:DEAD\n"
                             "rc=-12 line=4 err=line 4: out of memory\n");
    free(got);
    struct capture c = {0};
    struct mf_image_sink sink = {cap_data, NULL, &c};
    struct mf_srec_parser p;
    mf_srec_init(&p, &sink);
    struct mf_image_error err;
    assert_int_equal(mf_srec_feed(&p, "S4", 2, &err), MF_EFORMAT);
    assert_int_equal(mf_srec_feed(&p, "S9030000FC\n", 11, &err), MF_EFORMAT);
    assert_int_equal(mf_srec_finish(&p, &err), MF_EFORMAT);
    assert_int_equal(c.calls, 0);
}

static void check_every_split(const char *text)
{
    size_t n = strlen(text);
    char *whole = parse(text);
    for (size_t cut = 0; cut <= n; cut++) {
        char *split = parse_cuts(text, n, &cut, 1, 0);
        if (strcmp(split, whole) != 0) {
            fprintf(stderr, "split at %zu differs:\n%s\nvs one-shot:\n%s", cut, split, whole);
            fail();
        }
        free(split);
    }
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i;
    char *bytewise = parse_cuts(text, n, cuts, n, 0);
    assert_string_equal(bytewise, whole);
    free(bytewise);
    free(cuts);
    free(whole);
}

static void test_every_split_point(void **state)
{
    (void)state;
    check_every_split(all_types_file("\n"));
    check_every_split(all_types_file("\r\n"));
    check_every_split(all_types_file("\r"));
    check_every_split("S1071234DEADBEEF98\r\nS9030000FC\r\n");
    check_every_split("S1071234DEADBEXF97\n");
    check_every_split("S4030000FC\n");
    check_every_split("\r\n\rS1071234DEADBEEF7A00\n");
}

static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static char *random_file(size_t *out_length)
{
    size_t capacity = 64 * 1024, n = 0;
    char *text = malloc(capacity);
    assert_non_null(text);
    unsigned records = rng() % 40, data_records = 0;
    static const char *const ends[] = {"\n", "\r\n", "\r", " \n", "\t\r\n", "\n\n"};
    for (unsigned r = 0; r < records; r++) {
        uint8_t data[255];
        static const unsigned types[] = {1, 2, 3, 1, 2, 3, 0, 5};
        unsigned type = types[rng() % 8];
        unsigned length = type == 5 ? 0 : rng() % 40;
        for (unsigned i = 0; i < length; i++)
            data[i] = (uint8_t)rng();
        uint32_t address = rng();
        if (type == 5)
            address = rng() % 4 ? data_records : rng() % 40;
        if (type == 3 && rng() % 4 == 0)
            address |= 0xFFFFFF00u; /* near the top: sometimes past 4 GiB */
        if (type >= 1 && type <= 3)
            data_records++;
        char line[600];
        rec(line, sizeof line, type, address, data, length);
        size_t ll = strlen(line) - 1;
        if (rng() % 2) {
            for (size_t i = 2; i < ll; i++)
                line[i] = (char)(line[i] >= 'A' && line[i] <= 'F' ? line[i] + 32 : line[i]);
        }
        const char *end = ends[rng() % 6];
        memcpy(text + n, line, ll);
        n += ll;
        memcpy(text + n, end, strlen(end));
        n += strlen(end);
    }
    if (rng() % 8) {
        char line[64];
        rec(line, sizeof line, 7 + rng() % 3, rng() & 0xFFFF, NULL, 0);
        n += (size_t)snprintf(text + n, capacity - n, "%s", line);
    }
    if (n && rng() % 4 == 0) {
        static const char junk[] = "S4G\r\n x9";
        text[rng() % n] = junk[rng() % (sizeof junk - 1)];
    }
    if (n && rng() % 8 == 0)
        n = rng() % n;
    text[n] = '\0';
    *out_length = n;
    return text;
}

static void test_random_chunkings(void **state)
{
    (void)state;
    uint64_t seed = mf_test_seed("test_srec", 0x5EC0FFEEull);
    rng_state = seed | 1;
    unsigned valid = 0;
    for (unsigned iteration = 0; iteration < 400; iteration++) {
        size_t n;
        char *text = random_file(&n);
        char *whole = parse_cuts(text, n, NULL, 0, 0);
        if (strstr(whole, "rc=0 "))
            valid++;
        for (unsigned round = 0; round < 8; round++) {
            size_t cuts[64], ncuts = 0, at = 0;
            while (ncuts < 64 && n > at) {
                at += 1 + rng() % (round < 4 ? 8u : 200u);
                if (at >= n)
                    break;
                cuts[ncuts++] = at;
            }
            char *split = parse_cuts(text, n, cuts, ncuts, 0);
            if (strcmp(split, whole) != 0) {
                fprintf(stderr, "seed 0x%llx iteration %u: chunked parse differs\n",
                        (unsigned long long)seed, iteration);
                fail();
            }
            free(split);
        }
        free(whole);
        free(text);
    }
    assert_true(valid > 20);
    assert_true(valid < 390);
}

static int buf_write(void *context, const void *bytes, size_t length)
{
    struct capture *c = context;
    cap_printf(c, "%.*s", (int)length, (const char *)bytes);
    return 0;
}

/* Builds a finished image from (address, length) runs filled with a ramp. */
static void make_image(struct mf_image *image, const uint64_t *runs, size_t count, bool start,
                       uint64_t start_address)
{
    mf_image_init(image, NULL);
    uint32_t source;
    assert_int_equal(mf_image_add_source(image, "t", MF_IMAGE_FORMAT_BIN, &source, NULL), 0);
    for (size_t i = 0; i < count; i++) {
        uint8_t data[64];
        for (unsigned k = 0; k < sizeof data; k++)
            data[k] = (uint8_t)(0xA0 + k);
        assert_true(runs[2 * i + 1] <= sizeof data);
        assert_int_equal(
            mf_image_add(image, source, runs[2 * i], data, (size_t)runs[2 * i + 1], i * 100, NULL),
            0);
    }
    if (start)
        mf_image_set_start(image, start_address);
    assert_int_equal(mf_image_finish(image, NULL), 0);
}

static char *write_srec(const struct mf_image *image, unsigned record_size)
{
    struct capture out = {0};
    cap_printf(&out, "%s", "");
    assert_int_equal(mf_srec_write(image, record_size, buf_write, &out, NULL), 0);
    return out.text;
}

static void test_writer(void **state)
{
    (void)state;
    struct mf_image image;
    /* Everything below 64 KiB: S1 and S9. */
    const uint64_t small[] = {0x100, 20, 0x200, 2};
    make_image(&image, small, 2, false, 0);
    char *text = write_srec(&image, 16);
    assert_string_equal(text, "S0030000FC\n"
                              "S1130100A0A1A2A3A4A5A6A7A8A9AAABACADAEAF73\n"
                              "S1070110B0B1B2B321\n"
                              "S1050200A0A1B7\n"
                              "S5030003F9\n"
                              "S9030000FC\n");
    char *back = parse(text);
    assert_string_equal(back, "D 100 line 2:A0A1A2A3A4A5A6A7A8A9AAABACADAEAF\n"
                              "D 110 line 3:B0B1B2B3\n"
                              "D 200 line 4:A0A1\n"
                              "S 0\nrc=0 line=0 err=\n");
    free(back);
    free(text);
    mf_image_free(&image);

    /* A start address above 64 KiB widens the records to S2/S8. */
    make_image(&image, small, 1, true, 0x123456);
    text = write_srec(&image, 32);
    assert_string_equal(text, "S0030000FC\n"
                              "S218000100A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3A8\n"
                              "S5030001FB\n"
                              "S8041234565F\n");
    free(text);
    mf_image_free(&image);

    /* Above 16 MiB: S3/S7; the record size is capped at what S3 can hold (250). */
    const uint64_t high[] = {0x08000000, 4};
    make_image(&image, high, 1, true, 0x08000131);
    text = write_srec(&image, 255);
    assert_string_equal(text, "S0030000FC\n"
                              "S30908000000A0A1A2A368\n"
                              "S5030001FB\n"
                              "S70508000131C0\n");
    back = parse(text);
    assert_string_equal(back, "D 8000000 line 2:A0A1A2A3\nS 8000131\nrc=0 line=0 err=\n");
    free(back);
    free(text);
    mf_image_free(&image);

    /* Nothing at or above 4 GiB. */
    const uint64_t above[] = {0xFFFFFFFFull, 2};
    make_image(&image, above, 1, false, 0);
    struct mf_image_error err;
    struct capture out = {0};
    assert_int_equal(mf_srec_write(&image, 16, buf_write, &out, &err), MF_ERANGE);
    assert_string_equal(err.text, "data up to 0x100000000 lies beyond 4 GiB: S-records cannot "
                                  "hold it");
    assert_null(out.text);
    mf_image_free(&image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_top_of_4gib),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_count_records),
        cmocka_unit_test(test_sink_error_and_sticky),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_random_chunkings),
        cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
