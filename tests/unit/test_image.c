/* Sparse image model: merging and sorting, the overlap policies against a byte-array model with
 * random pieces (seed printed), overlap messages naming both sources, bounds, reads with gaps,
 * CRC, the raw binary writer, format detection and names, and whole-file loading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_image.h"
#include "mf_testutil.h"

static uint32_t add_source(struct mf_image *image, const char *name, enum mf_image_format f)
{
    uint32_t source = 99;
    assert_int_equal(mf_image_add_source(image, name, f, &source, NULL), 0);
    return source;
}

static void fill_ramp(uint8_t *data, size_t length, uint8_t first)
{
    for (size_t i = 0; i < length; i++)
        data[i] = (uint8_t)(first + i);
}

static void test_in_order_records_merge(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t s = add_source(&image, "fw.hex", MF_IMAGE_FORMAT_IHEX);
    uint8_t data[4096];
    fill_ramp(data, sizeof data, 0);
    for (unsigned i = 0; i < 256; i++)
        assert_int_equal(
            mf_image_add(&image, s, 0x08000000u + 16 * i, data + 16 * i, 16, i + 1, NULL), 0);
    assert_int_equal(mf_image_add(&image, s, 0x08010000u, data, 3, 300, NULL), 0);
    assert_int_equal(mf_image_add(&image, s, 0x08010003u, data, 0, 301, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    size_t count;
    const struct mf_image_segment *seg = mf_image_segments(&image, &count);
    assert_int_equal(count, 2);
    assert_int_equal(seg[0].address, 0x08000000u);
    assert_int_equal(seg[0].size, 4096);
    assert_memory_equal(seg[0].data, data, 4096);
    assert_int_equal(seg[1].address, 0x08010000u);
    assert_int_equal(seg[1].size, 3);
    assert_memory_equal(seg[1].data, data, 3);
    assert_int_equal(mf_image_size(&image), 4099);
    uint64_t low, end;
    mf_image_span(&image, &low, &end);
    assert_int_equal(low, 0x08000000u);
    assert_int_equal(end, 0x08010003u);
    uint32_t crc = mf_crc32_update(mf_crc32_update(0, data, 4096), data, 3);
    assert_int_equal(mf_image_crc32(&image), crc);
    uint64_t start;
    assert_false(mf_image_start(&image, &start));
    mf_image_free(&image);
}

static void test_reverse_order_sorts(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t s = add_source(&image, "rev.hex", MF_IMAGE_FORMAT_IHEX);
    uint8_t data[16000];
    fill_ramp(data, sizeof data, 7);
    for (unsigned i = 1000; i-- > 0;)
        assert_int_equal(
            mf_image_add(&image, s, 0x1000 + 16 * i, data + 16 * i, 16, 1000 - i, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    size_t count;
    const struct mf_image_segment *seg = mf_image_segments(&image, &count);
    assert_int_equal(count, 1);
    assert_int_equal(seg[0].address, 0x1000);
    assert_int_equal(seg[0].size, sizeof data);
    assert_memory_equal(seg[0].data, data, sizeof data);
    mf_image_free(&image);
}

/* Random pieces in a 4 KiB window against a model that replays the policy byte by byte. */
static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static void test_random_pieces_against_model(void **state)
{
    (void)state;
    uint64_t seed = mf_test_seed("test_image", 0x1AA6Eull);
    rng_state = seed | 1;
    enum { WINDOW = 4096 };
    static uint8_t model[WINDOW], got[WINDOW];
    static bool loaded[WINDOW];
    unsigned conflicts = 0;
    for (unsigned iteration = 0; iteration < 300; iteration++) {
        enum mf_image_overlap policy = (enum mf_image_overlap)(rng() % 3);
        struct mf_image_config config = {.overlap = policy};
        struct mf_image image;
        mf_image_init(&image, &config);
        uint64_t base = rng() % 2 ? 0 : 0xFFFFFFFFFFFFF000ull - WINDOW; /* also near 2^64 */
        uint32_t sources[3];
        sources[0] = add_source(&image, "a.hex", MF_IMAGE_FORMAT_IHEX);
        sources[1] = add_source(&image, "b.bin", MF_IMAGE_FORMAT_BIN);
        sources[2] = add_source(&image, "c.elf", MF_IMAGE_FORMAT_ELF);
        memset(loaded, 0, sizeof loaded);
        bool overlap = false;
        unsigned pieces = 1 + rng() % 60;
        uint64_t where[3] = {1, 0, 0};
        for (unsigned p = 0; p < pieces; p++) {
            uint8_t data[300];
            size_t length = 1 + rng() % (rng() % 4 ? 40 : 300);
            size_t at = rng() % (WINDOW - length);
            /* Often continue right after the previous piece, to exercise merging. */
            uint32_t s = sources[rng() % 3];
            for (size_t i = 0; i < length; i++)
                data[i] = (uint8_t)rng();
            assert_int_equal(mf_image_add(&image, s, base + at, data, length, where[s], NULL), 0);
            where[s] += s == 0 ? 1 : length;
            for (size_t i = 0; i < length; i++) {
                if (loaded[at + i])
                    overlap = true;
                if (!loaded[at + i] || policy != MF_IMAGE_OVERLAP_FIRST_WINS)
                    model[at + i] = data[i];
                loaded[at + i] = true;
            }
        }
        struct mf_image_error err;
        int rc = mf_image_finish(&image, &err);
        if (policy == MF_IMAGE_OVERLAP_ERROR && overlap) {
            assert_int_equal(rc, MF_ECONFLICT);
            assert_non_null(strstr(err.text, "overlapping data at 0x"));
            conflicts++;
            mf_image_free(&image);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(mf_image_read(&image, base, got, WINDOW, 0xEE), 0);
        for (size_t i = 0; i < WINDOW; i++) {
            if (got[i] != (loaded[i] ? model[i] : 0xEE)) {
                fprintf(stderr, "seed 0x%llx iteration %u: byte %zu differs\n",
                        (unsigned long long)seed, iteration, i);
                fail();
            }
        }
        /* Segments are the maximal runs of loaded bytes. */
        size_t count, expect = 0;
        const struct mf_image_segment *seg = mf_image_segments(&image, &count);
        uint64_t size = 0;
        for (size_t i = 0; i < WINDOW; i++) {
            size += loaded[i];
            if (loaded[i] && (i == 0 || !loaded[i - 1])) {
                assert_true(expect < count);
                assert_int_equal(seg[expect].address, base + i);
                expect++;
            }
        }
        assert_int_equal(count, expect);
        assert_int_equal(mf_image_size(&image), size);
        mf_image_free(&image);
    }
    assert_true(conflicts > 10);
}

static void test_overlap_messages(void **state)
{
    (void)state;
    struct mf_image image;
    struct mf_image_error err;
    uint8_t data[64] = {0};
    /* Two files. */
    mf_image_init(&image, NULL);
    uint32_t a = add_source(&image, "boot.hex", MF_IMAGE_FORMAT_IHEX);
    uint32_t b = add_source(&image, "app.bin", MF_IMAGE_FORMAT_BIN);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(mf_image_add(&image, a, 0x08000000u + 16 * i, data, 16, 3 + i, NULL), 0);
    assert_int_equal(mf_image_add(&image, b, 0x08000030u, data, 64, 0, NULL), 0);
    assert_int_equal(mf_image_finish(&image, &err), MF_ECONFLICT);
    assert_string_equal(err.text, "overlapping data at 0x08000030-0x0800003F: boot.hex lines 3-6 "
                                  "and app.bin offset 0x0");
    mf_image_free(&image);
    /* Later data loaded first in address order: the earlier-loaded source is named first. */
    mf_image_init(&image, NULL);
    a = add_source(&image, "app.elf", MF_IMAGE_FORMAT_ELF);
    b = add_source(&image, "patch.hex", MF_IMAGE_FORMAT_IHEX);
    assert_int_equal(mf_image_add(&image, a, 0x1010, data, 32, 0x200, NULL), 0);
    assert_int_equal(mf_image_add(&image, b, 0x1000, data, 20, 12, NULL), 0);
    assert_int_equal(mf_image_finish(&image, &err), MF_ECONFLICT);
    assert_string_equal(err.text, "overlapping data at 0x00001010-0x00001013: app.elf offset "
                                  "0x200 and patch.hex line 12");
    mf_image_free(&image);
    /* Within one file. */
    mf_image_init(&image, NULL);
    a = add_source(&image, "fw.hex", MF_IMAGE_FORMAT_IHEX);
    assert_int_equal(mf_image_add(&image, a, 0x100, data, 16, 1, NULL), 0);
    assert_int_equal(mf_image_add(&image, a, 0x200, data, 16, 2, NULL), 0);
    assert_int_equal(mf_image_add(&image, a, 0x20F, data, 2, 3, NULL), 0);
    assert_int_equal(mf_image_finish(&image, &err), MF_ECONFLICT);
    assert_string_equal(err.text, "overlapping data at 0x0000020F-0x0000020F: fw.hex line 2 and "
                                  "fw.hex line 3");
    mf_image_free(&image);
    /* The exact file offset of the overlapping byte inside a long run. */
    mf_image_init(&image, NULL);
    a = add_source(&image, "x.bin", MF_IMAGE_FORMAT_BIN);
    b = add_source(&image, "y.bin", MF_IMAGE_FORMAT_BIN);
    assert_int_equal(mf_image_add(&image, a, 0, data, 64, 0, NULL), 0);
    assert_int_equal(mf_image_add(&image, a, 64, data, 64, 64, NULL), 0);
    assert_int_equal(mf_image_add(&image, b, 100, data, 1, 0, NULL), 0);
    assert_int_equal(mf_image_finish(&image, &err), MF_ECONFLICT);
    assert_string_equal(err.text, "overlapping data at 0x00000064-0x00000064: x.bin offset 0x64 "
                                  "and y.bin offset 0x0");
    mf_image_free(&image);
}

static void test_policies(void **state)
{
    (void)state;
    for (int policy = MF_IMAGE_OVERLAP_LAST_WINS; policy <= MF_IMAGE_OVERLAP_FIRST_WINS; policy++) {
        struct mf_image_config config = {.overlap = (enum mf_image_overlap)policy};
        struct mf_image image;
        mf_image_init(&image, &config);
        uint32_t a = add_source(&image, "a.hex", MF_IMAGE_FORMAT_IHEX);
        uint32_t b = add_source(&image, "b.hex", MF_IMAGE_FORMAT_IHEX);
        uint8_t ones[8], twos[4];
        memset(ones, 1, sizeof ones);
        memset(twos, 2, sizeof twos);
        assert_int_equal(mf_image_add(&image, a, 10, ones, 8, 1, NULL), 0);
        assert_int_equal(mf_image_add(&image, b, 8, twos, 4, 1, NULL), 0);
        assert_int_equal(mf_image_finish(&image, NULL), 0);
        uint8_t got[12];
        assert_int_equal(mf_image_read(&image, 6, got, sizeof got, 0xFF), 0);
        if (policy == MF_IMAGE_OVERLAP_LAST_WINS) {
            const uint8_t want[12] = {0xFF, 0xFF, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1};
            assert_memory_equal(got, want, 12);
        } else {
            const uint8_t want[12] = {0xFF, 0xFF, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1};
            assert_memory_equal(got, want, 12);
        }
        size_t count;
        mf_image_segments(&image, &count);
        assert_int_equal(count, 1);
        assert_int_equal(mf_image_size(&image), 10);
        mf_image_free(&image);
    }
}

static void test_bounds(void **state)
{
    (void)state;
    struct mf_image image;
    struct mf_image_error err;
    uint8_t data[100] = {0};
    struct mf_image_config small = {.max_bytes = 150, .max_pieces = 3};
    mf_image_init(&image, &small);
    uint32_t s = add_source(&image, "big.bin", MF_IMAGE_FORMAT_BIN);
    assert_int_equal(mf_image_add(&image, s, 0, data, 100, 0, &err), 0);
    assert_int_equal(mf_image_add(&image, s, 1000, data, 51, 0, &err), MF_EFBIG);
    assert_string_equal(err.text, "image larger than the limit of 150 bytes");
    assert_int_equal(mf_image_add(&image, s, 1000, data, 10, 0, &err), 0);
    assert_int_equal(mf_image_add(&image, s, 2000, data, 10, 0, &err), 0);
    assert_int_equal(mf_image_add(&image, s, 2010, data, 10, 10, &err), 0); /* merges */
    assert_int_equal(mf_image_add(&image, s, 3000, data, 10, 0, &err), MF_EFBIG);
    assert_string_equal(err.text, "more than 3 separate runs of data (records not adjacent to the "
                                  "one before them)");
    /* Address space end: the last byte address 2^64 - 1 cannot be loaded. */
    assert_int_equal(mf_image_add(&image, s, UINT64_MAX - 9, data, 10, 0, &err), MF_ERANGE);
    assert_string_equal(err.text, "data at 0xFFFFFFFFFFFFFFF6 (10 bytes) passes the end of the "
                                  "64-bit address space");
    assert_int_equal(mf_image_add(&image, 7, 0, data, 1, 0, &err), MF_EINVAL);
    assert_int_equal(mf_image_finish(&image, &err), 0);
    assert_int_equal(mf_image_add(&image, s, 0, data, 1, 0, &err), MF_EINVAL);
    uint32_t other;
    assert_int_equal(mf_image_add_source(&image, "late", MF_IMAGE_FORMAT_BIN, &other, &err),
                     MF_EINVAL);
    mf_image_free(&image);

    mf_image_init(&image, NULL);
    for (unsigned i = 0; i < MF_IMAGE_MAX_SOURCES; i++)
        add_source(&image, "f", MF_IMAGE_FORMAT_BIN);
    assert_int_equal(mf_image_add_source(&image, "one too many", MF_IMAGE_FORMAT_BIN, &other, &err),
                     MF_EINVAL);
    assert_string_equal(err.text, "more than 1024 files in one image");
    mf_image_free(&image);

    /* The highest loadable bytes. */
    mf_image_init(&image, NULL);
    s = add_source(&image, "top.bin", MF_IMAGE_FORMAT_BIN);
    assert_int_equal(mf_image_add(&image, s, UINT64_MAX - 10, data, 10, 0, &err), 0);
    assert_int_equal(mf_image_finish(&image, &err), 0);
    uint64_t low, end;
    mf_image_span(&image, &low, &end);
    assert_int_equal(end, UINT64_MAX);
    uint8_t byte;
    assert_int_equal(mf_image_read(&image, UINT64_MAX, &byte, 1, 0), MF_ERANGE);
    mf_image_free(&image);
}

static void test_read_and_crc(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t s = add_source(&image, "r.bin", MF_IMAGE_FORMAT_BIN);
    uint8_t a[4] = {1, 2, 3, 4}, b[2] = {9, 8};
    assert_int_equal(mf_image_add(&image, s, 0x10, a, 4, 0, NULL), 0);
    assert_int_equal(mf_image_add(&image, s, 0x20, b, 2, 4, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    uint8_t got[0x20];
    assert_int_equal(mf_image_read(&image, 0x8, got, sizeof got, 0xFF), 0);
    for (size_t i = 0; i < sizeof got; i++) {
        uint64_t address = 0x8 + i;
        uint8_t want = address >= 0x10 && address < 0x14   ? a[address - 0x10]
                       : address >= 0x20 && address < 0x22 ? b[address - 0x20]
                                                           : 0xFF;
        assert_int_equal(got[i], want);
    }
    assert_int_equal(mf_image_read(&image, 0x12, got, 1, 0), 0);
    assert_int_equal(got[0], 3);
    assert_int_equal(mf_image_read(&image, 0x100, got, 4, 0x5A), 0);
    assert_int_equal(got[3], 0x5A);
    const uint8_t all[6] = {1, 2, 3, 4, 9, 8};
    assert_int_equal(mf_image_crc32(&image), mf_crc32_update(0, all, 6));
    mf_image_free(&image);

    /* An empty image. */
    mf_image_init(&image, NULL);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    size_t count = 9;
    mf_image_segments(&image, &count);
    assert_int_equal(count, 0);
    assert_int_equal(mf_image_crc32(&image), 0);
    assert_int_equal(mf_image_read(&image, 0, got, 4, 0x11), 0);
    assert_int_equal(got[0], 0x11);
    mf_image_free(&image);
}

struct sink_buffer {
    uint8_t data[1 << 16];
    size_t length;
    int fail_after; /* calls that succeed before MF_EIO; -1: never fail */
};

static int buffer_write(void *context, const void *bytes, size_t length)
{
    struct sink_buffer *b = context;
    if (b->fail_after == 0)
        return MF_EIO;
    if (b->fail_after > 0)
        b->fail_after--;
    assert_true(b->length + length <= sizeof b->data);
    memcpy(b->data + b->length, bytes, length);
    b->length += length;
    return 0;
}

static void test_write_bin(void **state)
{
    (void)state;
    struct mf_image image;
    mf_image_init(&image, NULL);
    uint32_t s = add_source(&image, "w.bin", MF_IMAGE_FORMAT_BIN);
    uint8_t a[3] = {1, 2, 3};
    assert_int_equal(mf_image_add(&image, s, 0x20000000u, a, 3, 0, NULL), 0);
    assert_int_equal(mf_image_add(&image, s, 0x20000000u + 5000 + 3, a, 1, 3, NULL), 0);
    assert_int_equal(mf_image_finish(&image, NULL), 0);
    static struct sink_buffer out;
    memset(&out, 0, sizeof out);
    out.fail_after = -1;
    assert_int_equal(mf_image_write_bin(&image, 0xFF, buffer_write, &out), 0);
    assert_int_equal(out.length, 5004);
    assert_memory_equal(out.data, a, 3);
    for (size_t i = 3; i < 5003; i++)
        assert_int_equal(out.data[i], 0xFF);
    assert_int_equal(out.data[5003], 1);
    for (int ok = 0; ok < 4; ok++) {
        memset(&out, 0, sizeof out);
        out.fail_after = ok;
        /* Segment, two gap pieces (4096 + 904), segment. */
        assert_int_equal(mf_image_write_bin(&image, 0xFF, buffer_write, &out), MF_EIO);
    }
    mf_image_free(&image);
}

static void test_detect(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        size_t length; /* 0: strlen */
        enum mf_image_format want;
    } cases[] = {
        {"\177ELF\x01\x01\x01", 7, MF_IMAGE_FORMAT_ELF},
        {":10010000214601360121470136007EFE09D2190140\r\n", 0, MF_IMAGE_FORMAT_IHEX},
        {"\r\n\n  :020000040800F2\n", 0, MF_IMAGE_FORMAT_IHEX},
        {":02000004", 0, MF_IMAGE_FORMAT_IHEX}, /* head ends inside the line */
        {":020000040800f2\n", 0, MF_IMAGE_FORMAT_IHEX},
        {"S00600004844521B\nS1071234DEADBEEF7A\n", 0, MF_IMAGE_FORMAT_SREC},
        {"S1071234deadbeef7a", 0, MF_IMAGE_FORMAT_SREC},
        {"S9030000FC", 0, MF_IMAGE_FORMAT_SREC},
        {"", 0, MF_IMAGE_FORMAT_BIN},
        {"\n\n", 0, MF_IMAGE_FORMAT_BIN},
        {":", 0, MF_IMAGE_FORMAT_BIN},
        {": this is a note\n", 0, MF_IMAGE_FORMAT_BIN},
        {":1234\n", 0, MF_IMAGE_FORMAT_BIN}, /* too short for a record */
        {"Some text\n", 0, MF_IMAGE_FORMAT_BIN},
        {"SX030000FC\n", 0, MF_IMAGE_FORMAT_BIN},
        {":10010000214601360121470136007EFE09D2190140\n\x01\x02", 0, MF_IMAGE_FORMAT_BIN},
        {"\177EL", 3, MF_IMAGE_FORMAT_BIN},
        {"\0\0\0\0", 4, MF_IMAGE_FORMAT_BIN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].length ? cases[i].length : strlen(cases[i].head);
        enum mf_image_format got = mf_image_detect(cases[i].head, n);
        if (got != cases[i].want) {
            fprintf(stderr, "case %zu: want %s, got %s\n", i, mf_image_format_name(cases[i].want),
                    mf_image_format_name(got));
            fail();
        }
    }
}

static void test_format_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum mf_image_format format;
    } names[] = {
        {"auto", MF_IMAGE_FORMAT_AUTO},  {"bin", MF_IMAGE_FORMAT_BIN},
        {"binary", MF_IMAGE_FORMAT_BIN}, {"ihex", MF_IMAGE_FORMAT_IHEX},
        {"hex", MF_IMAGE_FORMAT_IHEX},   {"srec", MF_IMAGE_FORMAT_SREC},
        {"s19", MF_IMAGE_FORMAT_SREC},   {"s28", MF_IMAGE_FORMAT_SREC},
        {"s37", MF_IMAGE_FORMAT_SREC},   {"mot", MF_IMAGE_FORMAT_SREC},
        {"elf", MF_IMAGE_FORMAT_ELF},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum mf_image_format f = MF_IMAGE_FORMAT_AUTO;
        assert_int_equal(mf_image_format_parse(names[i].name, &f), 0);
        assert_int_equal(f, names[i].format);
    }
    enum mf_image_format f;
    assert_int_equal(mf_image_format_parse("HEX", &f), MF_EINVAL);
    assert_int_equal(mf_image_format_parse("", &f), MF_EINVAL);
    assert_int_equal(mf_image_format_parse(NULL, &f), MF_EINVAL);
    assert_string_equal(mf_image_format_name(MF_IMAGE_FORMAT_SREC), "srec");
    assert_string_equal(mf_image_format_title(MF_IMAGE_FORMAT_IHEX), "Intel HEX");
    assert_string_equal(mf_image_format_name((enum mf_image_format)42), "unknown");
}

/* Whole-file loading through a reader. */
struct mem_file {
    const uint8_t *data;
    size_t size;
    uint64_t fail_from;
};

static int mem_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    const struct mem_file *f = context;
    if (offset > f->size || length > f->size - offset || offset + length > f->fail_from)
        return MF_EIO;
    memcpy(buffer, f->data + offset, length);
    return 0;
}

static int load_text(struct mf_image *image, const char *name, enum mf_image_format format,
                     uint64_t base, const void *data, size_t size, struct mf_image_error *err)
{
    struct mem_file f = {data, size, UINT64_MAX};
    return mf_image_load(image, name, format, base, mem_read, &f, size, err);
}

static void test_load(void **state)
{
    (void)state;
    struct mf_image image;
    struct mf_image_error err;
    const char *hex = ":020000040800F2\n:0400000001020304F2\n:0400000508000131BD\n:00000001FF\n";
    const char *srec = "S30908000004AABBCCDDDC\nS70508000131C0\n";
    mf_image_init(&image, NULL);
    assert_int_equal(load_text(&image, "a.hex", MF_IMAGE_FORMAT_AUTO, 0, hex, strlen(hex), &err),
                     0);
    assert_int_equal(load_text(&image, "b.srec", MF_IMAGE_FORMAT_AUTO, 0, srec, strlen(srec), &err),
                     0);
    const uint8_t raw[3] = {0x11, 0x22, 0x33};
    assert_int_equal(load_text(&image, "c.bin", MF_IMAGE_FORMAT_BIN, 0x08000008, raw, 3, &err), 0);
    /* A minimal ELF32 little-endian file: one PT_LOAD of 2 bytes at paddr 0x0800000B. */
    uint8_t elf[52 + 32 + 2] = {0x7F, 'E', 'L', 'F', 1, 1, 1};
    elf[28] = 52; /* e_phoff */
    elf[42] = 32; /* e_phentsize */
    elf[44] = 1;  /* e_phnum */
    uint8_t *ph = elf + 52;
    ph[0] = 1;       /* PT_LOAD */
    ph[4] = 52 + 32; /* p_offset */
    ph[12] = 0x0B;   /* p_paddr 0x0800000B */
    ph[15] = 0x08;
    ph[16] = ph[20] = 2; /* p_filesz, p_memsz */
    elf[84] = 0x44;
    elf[85] = 0x55;
    assert_int_equal(load_text(&image, "d.elf", MF_IMAGE_FORMAT_AUTO, 0, elf, sizeof elf, &err), 0);
    assert_int_equal(mf_image_finish(&image, &err), 0);
    size_t count;
    const struct mf_image_segment *seg = mf_image_segments(&image, &count);
    assert_int_equal(count, 1);
    assert_int_equal(seg[0].address, 0x08000000);
    const uint8_t want[13] = {1, 2, 3, 4, 0xAA, 0xBB, 0xCC, 0xDD, 0x11, 0x22, 0x33, 0x44, 0x55};
    assert_int_equal(seg[0].size, sizeof want);
    assert_memory_equal(seg[0].data, want, sizeof want);
    uint64_t start;
    assert_true(mf_image_start(&image, &start)); /* the first file's start wins */
    assert_int_equal(start, 0x08000131);
    mf_image_free(&image);

    /* Errors carry the name. */
    mf_image_init(&image, NULL);
    const char *bad = ":00000001FF\n:0400000001020304F3\n";
    assert_int_equal(load_text(&image, "fw.hex", MF_IMAGE_FORMAT_IHEX, 0, bad, strlen(bad), &err),
                     MF_EFORMAT);
    assert_string_equal(err.text, "fw.hex: line 2: record after the end-of-file record");
    assert_int_equal(err.line, 2);
    assert_int_equal(
        load_text(&image, "fw.hex", MF_IMAGE_FORMAT_AUTO, 0x1000, hex, strlen(hex), &err),
        MF_EINVAL);
    assert_string_equal(err.text, "fw.hex: a base address applies to raw binary input only (this "
                                  "is Intel HEX)");
    assert_int_equal(load_text(&image, "x.bin", MF_IMAGE_FORMAT_BIN, UINT64_MAX - 1, raw, 3, &err),
                     MF_ERANGE);
    assert_string_equal(err.text, "x.bin: 3 bytes at 0xFFFFFFFFFFFFFFFE pass the end of the "
                                  "64-bit address space");
    assert_int_equal(load_text(&image, "short.elf", MF_IMAGE_FORMAT_AUTO, 0, elf, 20, &err),
                     MF_EFORMAT);
    assert_string_equal(err.text, "short.elf: offset 0x14: file ends inside the ELF32 header (52 "
                                  "bytes needed)");
    struct mem_file broken = {(const uint8_t *)hex, strlen(hex), 0};
    assert_int_equal(mf_image_load(&image, "gone.hex", MF_IMAGE_FORMAT_AUTO, 0, mem_read, &broken,
                                   strlen(hex), &err),
                     MF_EIO);
    assert_string_equal(err.text, "gone.hex: offset 0x0: cannot read: input/output error");
    assert_int_equal(mf_image_load(&image, "gone.hex", MF_IMAGE_FORMAT_IHEX, 0, mem_read, &broken,
                                   strlen(hex), &err),
                     MF_EIO);
    assert_string_equal(err.text, "gone.hex: offset 0x0: cannot read: input/output error");
    mf_image_free(&image);

    /* Image bounds hit while parsing are reported at the record's line. */
    struct mf_image_config tiny = {.max_bytes = 6};
    mf_image_init(&image, &tiny);
    const char *two = ":0400000001020304F2\n:0400040001020304EE\n:00000001FF\n";
    assert_int_equal(load_text(&image, "big.hex", MF_IMAGE_FORMAT_AUTO, 0, two, strlen(two), &err),
                     MF_EFBIG);
    assert_string_equal(err.text, "big.hex: line 2: image larger than the limit of 6 bytes");
    mf_image_free(&image);

    /* Raw binary: bytes at base, in load chunks, `where` the file offset. */
    static uint8_t blob[200000];
    fill_ramp(blob, sizeof blob, 3);
    mf_image_init(&image, NULL);
    assert_int_equal(
        load_text(&image, "blob", MF_IMAGE_FORMAT_AUTO, 0x100000000ull, blob, sizeof blob, &err),
        0);
    assert_int_equal(mf_image_finish(&image, &err), 0);
    seg = mf_image_segments(&image, &count);
    assert_int_equal(count, 1);
    assert_int_equal(seg[0].address, 0x100000000ull);
    assert_int_equal(seg[0].size, sizeof blob);
    assert_memory_equal(seg[0].data, blob, sizeof blob);
    mf_image_free(&image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_records_merge),
        cmocka_unit_test(test_reverse_order_sorts),
        cmocka_unit_test(test_random_pieces_against_model),
        cmocka_unit_test(test_overlap_messages),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_read_and_crc),
        cmocka_unit_test(test_write_bin),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
