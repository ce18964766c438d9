/* Intel HEX parser: accepted syntax, every error path with its exact message and line, chunk-
 * split invariance (every split point, then random chunkings of random files, seed printed),
 * and the writer read back by the parser. Inputs are built here with a record helper that is
 * independent of mf_ihex_write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mf_err.h"
#include "mf_ihex.h"
#include "mf_image.h"
#include "mf_testutil.h"

/* Capture: every sink call as a line of text, so that two parses compare as strings. */
struct capture {
    char *text;
    size_t length, capacity;
    int fail_at; /* data call number (from 1) that returns MF_ENOMEM; 0: never */
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

/* Parses `text` (length n) cut at the given points; returns the malloc'd capture with the
 * result appended ("rc=... err=..."). */
static char *parse_cuts(const char *text, size_t n, const size_t *cuts, size_t ncuts, int fail_at)
{
    struct capture c = {.fail_at = fail_at};
    cap_printf(&c, "%s", "");
    struct mf_image_sink sink = {cap_data, cap_start, &c};
    struct mf_ihex_parser p;
    mf_ihex_init(&p, &sink);
    struct mf_image_error err = {0};
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && !rc; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        rc = mf_ihex_feed(&p, text + at, to - at, &err);
        at = to;
    }
    if (!rc)
        rc = mf_ihex_finish(&p, &err);
    cap_printf(&c, "rc=%d line=%llu err=%s\n", rc, (unsigned long long)err.line,
               rc ? err.text : "");
    return c.text;
}

static char *parse(const char *text)
{
    return parse_cuts(text, strlen(text), NULL, 0, 0);
}

/* One record line with a correct checksum. */
static void rec(char *out, size_t size, unsigned type, unsigned address, const uint8_t *data,
                unsigned length)
{
    unsigned sum = length + (address >> 8) + (address & 0xFF) + type;
    int n = snprintf(out, size, ":%02X%04X%02X", length, address & 0xFFFF, type);
    for (unsigned i = 0; i < length; i++) {
        n += snprintf(out + n, size - (size_t)n, "%02X", data[i]);
        sum += data[i];
    }
    snprintf(out + n, size - (size_t)n, "%02X\n", (0x100 - (sum & 0xFF)) & 0xFF);
}

/* Expects the parse of `text` to fail with MF_EFORMAT and exactly `message`. */
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

static const char *const valid_files[] = {
    /* Data, start linear address, end. */
    ":10010000214601360121470136007EFE09D2190140\n"
    ":100110002146017E17C20001FF5F16002148011928\n"
    ":0400000500000131C5\n"
    ":00000001FF\n",
    /* Extended linear address, CR LF, lower case, blanks, no final newline. */
    ":020000040800f2\r\n"
    ":04fff000deadbeefd5  \r\n"
    "\r\n"
    "\t:020000040801F1\r\n"
    ":0400000001020304F2\r\n"
    ":00000001FF",
    /* Extended segment address and start segment address, CR line ends. */
    ":020000021000EC\r"
    ":0300100041424327\r"
    ":0400000312345678E5\r"
    ":00000001FF\r",
};

static void test_valid_files(void **state)
{
    (void)state;
    char *got = parse(valid_files[0]);
    assert_string_equal(got, "D 100 line 1:214601360121470136007EFE09D21901\n"
                             "D 110 line 2:2146017E17C20001FF5F160021480119\n"
                             "S 131\n"
                             "rc=0 line=0 err=\n");
    free(got);
    got = parse(valid_files[1]);
    assert_string_equal(got, "D 800FFF0 line 2:DEADBEEF\n"
                             "D 8010000 line 5:01020304\n"
                             "rc=0 line=0 err=\n");
    free(got);
    got = parse(valid_files[2]);
    /* Segment 0x1000 -> base 0x10000; CS:IP 1234:5678 -> 0x12340 + 0x5678. */
    assert_string_equal(got, "D 10010 line 2:414243\n"
                             "S 179B8\n"
                             "rc=0 line=0 err=\n");
    free(got);
}

static void test_crossing_64k_linear_is_contiguous(void **state)
{
    (void)state;
    uint8_t data[16];
    for (unsigned i = 0; i < 16; i++)
        data[i] = (uint8_t)i;
    char text[256], line[64];
    uint8_t base[2] = {0x00, 0x01};
    rec(text, sizeof text, 4, 0, base, 2);
    rec(line, sizeof line, 0, 0xFFF8, data, 16);
    strcat(text, line);
    strcat(text, ":00000001FF\n");
    char *got = parse(text);
    assert_string_equal(got, "D 1FFF8 line 2:000102030405060708090A0B0C0D0E0F\nrc=0 line=0 err=\n");
    free(got);
    /* The same without any extended address record. */
    rec(text, sizeof text, 0, 0xFFF8, data, 16);
    strcat(text, ":00000001FF\n");
    got = parse(text);
    assert_string_equal(got, "D FFF8 line 1:000102030405060708090A0B0C0D0E0F\nrc=0 line=0 err=\n");
    free(got);
}

static void test_top_of_4gib(void **state)
{
    (void)state;
    uint8_t data[16] = {0};
    char text[256], line[64];
    uint8_t base[2] = {0xFF, 0xFF};
    rec(text, sizeof text, 4, 0, base, 2);
    rec(line, sizeof line, 0, 0xFFF0, data, 16);
    strcat(text, line);
    strcat(text, ":00000001FF\n");
    char *got = parse(text);
    assert_string_equal(got,
                        "D FFFFFFF0 line 2:00000000000000000000000000000000\nrc=0 line=0 err=\n");
    free(got);
    rec(text, sizeof text, 4, 0, base, 2);
    rec(line, sizeof line, 0, 0xFFF8, data, 16);
    strcat(text, line);
    strcat(text, ":00000001FF\n");
    expect_error(text, "line 2: data at 0xFFFFFFF8 (16 bytes) extends past 4 GiB");
}

static void test_errors(void **state)
{
    (void)state;
    expect_error(":10010000214601360121470136007EFE09D2190141\n:00000001FF\n",
                 "line 1: checksum mismatch (expected 0x40, got 0x41)");
    expect_error(":00000001FF\n:0400000001020304F2\n",
                 "line 2: record after the end-of-file record");
    expect_error(":0400000001020G04F2\n", "line 1: bad hex digit 'G'");
    expect_error(":04000000010203\n", "line 1: short record (length field says 4 data bytes, the "
                                      "line holds 2)");
    expect_error(":0400\n", "line 1: record too short (2 bytes, at least 5 needed)");
    expect_error(":\n", "line 1: record too short (0 bytes, at least 5 needed)");
    expect_error(":0400000001020304F\n", "line 1: odd number of hex digits");
    expect_error(":00000006FA\n", "line 1: record type 0x06 out of range (00-05)");
    expect_error(":0400000001020304F2AB\n",
                 "line 1: record longer than its length field (4 data bytes)");
    expect_error(":0400000001020304F2:00000001FF\n", "line 1: second record on one line");
    expect_error(":03000004080000F1\n",
                 "line 1: extended linear address record (04) must hold 2 data bytes, not 3");
    expect_error(":0100000100FE\n",
                 "line 1: end-of-file record (01) must hold 0 data bytes, not 1");
    expect_error(":020000050000F9\n",
                 "line 1: start linear address record (05) must hold 4 data bytes, not 2");
    expect_error("\n\nhello\n", "line 3: unexpected character 'h' outside a record");
    expect_error(":00000001FF\nx", "line 2: unexpected character 'x' after the end-of-file record");
    expect_error(":00000001FF\n\x01",
                 "line 2: unexpected character 0x01 after the end-of-file record");
    expect_error(":0400000001020304F2\n",
                 "line 2: no end-of-file record (type 01): the file may be "
                 "truncated");
    expect_error("", "line 1: no end-of-file record (type 01): the file may be truncated");
    expect_error(":00000001FF\n:04000000010", "line 2: record after the end-of-file record");
    expect_error(":0400000001020", "line 1: file ends inside a record");
    /* 02 then data crossing the segment end; 04 and 02 both non-zero. */
    expect_error(":020000020000FC\n:04FFFE0001020304F5\n:00000001FF\n",
                 "line 2: data record crosses the end of its 64 KiB segment (offset 0xFFFE + 4 "
                 "bytes); tools disagree on where the rest goes");
    expect_error(":020000040001F9\n:020000021000EC\n:0400000001020304F2\n:00000001FF\n",
                 "line 3: data record with both an extended segment address (02) and an extended "
                 "linear address (04) in effect: its address is ambiguous");
    expect_error(":020000021000EC\n:020000040000FA\n:0400000001020304F2\n:00000001FF\n",
                 "line 3: data record with both an extended segment address (02) and an extended "
                 "linear address (04) in effect: its address is ambiguous");
    /* Line numbers count LF, CR LF and lone CR each as one line end. */
    expect_error("\r\n\r\n\n\r:00000006FA\n", "line 5: record type 0x06 out of range (00-05)");
}

static void test_bases_set_to_zero_are_not_ambiguous(void **state)
{
    (void)state;
    /* 04 0000 after 02 0000: both readings give the same address. */
    char *got = parse(":020000020000FC\n:020000040000FA\n:0400100001020304E2\n:00000001FF\n");
    assert_string_equal(got, "D 10 line 3:01020304\nrc=0 line=0 err=\n");
    free(got);
}

static void test_sink_error_and_sticky(void **state)
{
    (void)state;
    const char *text = valid_files[0];
    char *got = parse_cuts(text, strlen(text), NULL, 0, 2);
    assert_string_equal(got, "D 100 line 1:214601360121470136007EFE09D21901\n"
                             "rc=-12 line=2 err=line 2: out of memory\n");
    free(got);

    struct capture c = {0};
    struct mf_image_sink sink = {cap_data, NULL, &c};
    struct mf_ihex_parser p;
    mf_ihex_init(&p, &sink);
    struct mf_image_error err;
    assert_int_equal(mf_ihex_feed(&p, "zz", 2, &err), MF_EFORMAT);
    assert_int_equal(err.line, 1);
    assert_int_equal(mf_ihex_feed(&p, ":00000001FF\n", 12, &err), MF_EFORMAT);
    assert_int_equal(mf_ihex_finish(&p, &err), MF_EFORMAT);
    assert_int_equal(c.calls, 0);
    free(c.text);
}

/* Parsing with every single split point, and byte by byte, gives the one-shot result. */
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
    for (size_t i = 0; i < sizeof valid_files / sizeof valid_files[0]; i++)
        check_every_split(valid_files[i]);
    check_every_split(":10010000214601360121470136007EFE09D2190141\n:00000001FF\n");
    check_every_split(":0400000001020G04F2\n");
    check_every_split(":04000000010203\r\n");
    check_every_split(":0400000001020304F2AB\r\n:00000001FF\r\n");
    check_every_split("\r\n\r\n\n\r:00000006FA\n");
    check_every_split(":020000040001F9\n:020000021000EC\n:0400000001020304F2\n:00000001FF\n");
}

/* Random files: random records (data, 02, 04, 03, 05, mostly valid), random line ends and
 * blanks, sometimes one corrupted character; each parsed one-shot and in random chunks. */
static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64* */
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
    unsigned records = rng() % 40;
    static const char *const ends[] = {"\n", "\r\n", "\r", " \n", "\t\r\n", "\n\n"};
    for (unsigned r = 0; r < records; r++) {
        uint8_t data[255];
        unsigned type = rng() % 8 < 5 ? 0 : rng() % 6;
        unsigned length = type == 0 ? rng() % 40 : type == 2 || type == 4 ? 2 : type == 1 ? 0 : 4;
        if (type == 1)
            type = 0;
        if (type == 2 && rng() % 2)
            memset(data, 0, 2);
        for (unsigned i = 0; i < length; i++)
            data[i] = (uint8_t)rng();
        if (type == 2 || type == 4)
            data[0] = (uint8_t)(rng() % 4 == 0 ? 0xFF : data[0] & 0x0F);
        char line[600];
        rec(line, sizeof line, type, rng() & 0xFFFF, data, length);
        size_t ll = strlen(line) - 1; /* without the '\n' */
        if (rng() % 2) {
            for (size_t i = 1; i < ll; i++)
                line[i] = (char)(line[i] >= 'A' && line[i] <= 'F' ? line[i] + 32 : line[i]);
        }
        const char *end = ends[rng() % 6];
        memcpy(text + n, line, ll);
        n += ll;
        memcpy(text + n, end, strlen(end));
        n += strlen(end);
    }
    if (rng() % 8)
        n += (size_t)snprintf(text + n, capacity - n, ":00000001FF%s", rng() % 2 ? "\r\n" : "");
    if (n && rng() % 4 == 0) {
        static const char junk[] = ":0G\r\n x";
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
    uint64_t seed = mf_test_seed("test_ihex", 0x1E5C0FFEEull);
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
    /* The generator must produce both outcomes, or the test proves little. */
    assert_true(valid > 20);
    assert_true(valid < 390);
}

/* Writer: an image written as HEX reads back to the same records, and the text is as specified:
 * 04 records where the upper half changes, no record across a 64 KiB boundary, 05, 01. */
static int buf_write(void *context, const void *bytes, size_t length)
{
    struct capture *c = context;
    cap_printf(c, "%.*s", (int)length, (const char *)bytes);
    return 0;
}

static void test_writer(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t source;
    assert_int_equal(mf_image_add_source(&image, "t", MF_IMAGE_FORMAT_BIN, &source, NULL), 0);
    uint8_t data[40];
    for (unsigned i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(0xA0 + i);
    assert_int_equal(mf_image_add(&image, source, 0x1FFF0, data, 20, 0, NULL), 0);
    assert_int_equal(mf_image_add(&image, source, 0x100, data, 3, 100, NULL), 0);
    mf_image_set_start(&image, 0x08000131);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    struct capture out = {0};
    cap_printf(&out, "%s", "");
    assert_int_equal(mf_ihex_write(&image, 16, buf_write, &out, NULL), 0);
    assert_string_equal(out.text, ":03010000A0A1A219\n"
                                  ":020000040001F9\n"
                                  ":10FFF000A0A1A2A3A4A5A6A7A8A9AAABACADAEAF89\n"
                                  ":020000040002F8\n"
                                  ":04000000B0B1B2B336\n"
                                  ":0400000508000131BD\n"
                                  ":00000001FF\n");
    char *back = parse(out.text);
    assert_string_equal(back, "D 100 line 1:A0A1A2\n"
                              "D 1FFF0 line 3:A0A1A2A3A4A5A6A7A8A9AAABACADAEAF\n"
                              "D 20000 line 5:B0B1B2B3\n"
                              "S 8000131\n"
                              "rc=0 line=0 err=\n");
    free(back);
    free(out.text);
    mf_image_free(&image);

    /* Data at or above 4 GiB cannot be written. */
    mf_image_init(&image, NULL);
    assert_int_equal(mf_image_add_source(&image, "t", MF_IMAGE_FORMAT_BIN, &source, NULL), 0);
    assert_int_equal(mf_image_add(&image, source, 0xFFFFFFFEull, data, 4, 0, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    struct mf_image_error err;
    memset(&out, 0, sizeof out);
    assert_int_equal(mf_ihex_write(&image, 16, buf_write, &out, &err), MF_ERANGE);
    assert_string_equal(err.text, "data up to 0x100000001 lies beyond 4 GiB: Intel HEX cannot "
                                  "hold it");
    assert_null(out.text);
    mf_image_free(&image);
}

static int failing_write(void *context, const void *bytes, size_t length)
{
    (void)bytes;
    (void)length;
    int *left = context;
    return (*left)-- > 0 ? 0 : MF_EIO;
}

static void test_writer_error_propagates(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t source;
    assert_int_equal(mf_image_add_source(&image, "t", MF_IMAGE_FORMAT_BIN, &source, NULL), 0);
    uint8_t data[64] = {0};
    assert_int_equal(mf_image_add(&image, source, 0, data, sizeof data, 0, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    for (int ok = 0; ok < 6; ok++) {
        int left = ok;
        int rc = mf_ihex_write(&image, 16, failing_write, &left, NULL);
        /* 4 data records and the end record: 5 writes in all. */
        assert_int_equal(rc, ok < 5 ? MF_EIO : 0);
    }
    mf_image_free(&image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_crossing_64k_linear_is_contiguous),
        cmocka_unit_test(test_top_of_4gib),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bases_set_to_zero_are_not_ambiguous),
        cmocka_unit_test(test_sink_error_and_sticky),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_random_chunkings),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_writer_error_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
