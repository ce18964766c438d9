/* The FAT driver's API on a RAM device: format, mount, files, folders, names, space accounting
 * and the edge cases of each, on FAT12, FAT16 and FAT32 volumes. Tools nobody here wrote check
 * the same volumes in test_fat_crosscheck.c; power cuts are in test_fat_powercut.c. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_rambd.h"
#include "mf_sweep.h"
#include "mf_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* One volume flavour: every test that takes a state runs on each. */
struct flavour {
    const char *name;
    uint32_t block_size; /* the volume's sector size, too */
    uint32_t blocks;
    enum mf_fat_type type;
    uint32_t sectors_per_cluster;
    enum mf_fat_type expect;
};

static struct flavour fat12 = {"FAT12 2 MiB", 512, 4096, MF_FAT_AUTO, 0, MF_FAT12};
static struct flavour fat16 = {"FAT16 16 MiB", 512, 32768, MF_FAT_AUTO, 0, MF_FAT16};
/* FAT32 needs 65525 clusters: one-sector clusters keep the device at 34 MiB. */
static struct flavour fat32 = {"FAT32 34 MiB", 512, 69632, MF_FAT32, 1, MF_FAT32};
static struct flavour fat12_4k = {
    "FAT12 4 MiB, 4 KiB sectors", 4096, 1024, MF_FAT_AUTO, 0, MF_FAT12};

#define TEST_CLOCK 1714979290 /* 2024-05-06 07:08:10, an even second (FAT keeps 2 s steps) */

static uint8_t *memory;
static struct mf_rambd ram;
static struct mf_fat fs;
static const struct flavour *current;
static uint64_t rng_state;

static int64_t test_clock(void *context)
{
    (void)context;
    return TEST_CLOCK;
}

#define check(expr)          check_rc((expr), 0, #expr, __LINE__)
#define check_is(expr, want) check_rc((expr), (want), #expr, __LINE__)

/* Fails with both codes spelled out when `rc` is not `want`. */
static void check_rc(long rc, long want, const char *expr, int line)
{
    if (rc == want)
        return;
    fail_msg("line %d [%s]: %s gave %ld (%s), expected %ld (%s)", line,
             current ? current->name : "-", expr, rc, rc < 0 ? mf_strerror((int)rc) : "ok", want,
             want < 0 ? mf_strerror((int)want) : "ok");
}

/* The name error is MF_ENAME; MF_EINVAL would do as well for a caller. */
static void check_bad_name(int rc, const char *what)
{
    if (rc != MF_ENAME && rc != MF_EINVAL)
        fail_msg("[%s] %s: gave %d (%s), expected MF_ENAME or MF_EINVAL", current->name, what, rc,
                 rc < 0 ? mf_strerror(rc) : "ok");
}

static uint8_t random_byte(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint8_t)(rng_state >> 56);
}

static void random_fill(uint8_t *buffer, size_t size)
{
    for (size_t i = 0; i < size; i++)
        buffer[i] = random_byte();
}

static void device_new(uint32_t blocks, uint32_t block_size)
{
    free(memory);
    memory = calloc(blocks, block_size);
    assert_non_null(memory);
    mf_rambd_init(&ram, memory, block_size, blocks);
}

static void format_and_mount(const struct flavour *flavour)
{
    current = flavour;
    device_new(flavour->blocks, flavour->block_size);
    struct mf_fat_format_options options = {
        .type = flavour->type,
        .sectors_per_cluster = flavour->sectors_per_cluster,
        .volume_id = 0x1234ABCDu,
        .label = NULL,
    };
    check(mf_fat_format(&ram.bd, &options));
    check(mf_fat_mount(&fs, &ram.bd, test_clock, NULL));
    check_is(mf_fat_geometry(&fs)->type, flavour->expect);
}

static int setup(void **state)
{
    static bool seeded;
    if (!seeded) {
        rng_state = mf_test_seed("test_fat", 0x5EED0FA7u);
        seeded = true;
    }
    format_and_mount(*state);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* Tests close what they open; a leftover handle would make this fail. */
    int rc = fs.bd ? mf_fat_unmount(&fs) : 0;
    free(memory);
    memory = NULL;
    if (rc != 0) {
        fprintf(stderr, "teardown: unmount gave %d (%s)\n", rc, mf_strerror(rc));
        return -1;
    }
    return 0;
}

static void remount(void)
{
    check(mf_fat_unmount(&fs));
    check(mf_fat_mount(&fs, &ram.bd, test_clock, NULL));
}

static uint32_t cluster_size(void)
{
    const struct mf_fat_geometry *g = mf_fat_geometry(&fs);
    return g->bytes_per_sector * g->sectors_per_cluster;
}

static uint64_t free_bytes(void)
{
    uint64_t free_space, total;
    check(mf_fat_space(&fs, &free_space, &total));
    assert_true(free_space <= total);
    return free_space;
}

static void write_file(const char *path, const void *data, uint32_t size)
{
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC));
    if (size)
        check_is(mf_fat_write(&fs, &file, data, size), (long)size);
    check(mf_fat_close(&fs, &file));
}

/* Reads a whole file into a malloc'd buffer; returns its size. */
static uint32_t read_file(const char *path, uint8_t **data)
{
    struct mf_fat_file file;
    int rc = mf_fat_open(&fs, &file, path, MF_FAT_O_RDONLY);
    if (rc != 0)
        fail_msg("[%s] open \"%s\" for reading: %d (%s)", current->name, path, rc, mf_strerror(rc));
    uint32_t size = mf_fat_size(&file);
    *data = malloc(size + 1u);
    assert_non_null(*data);
    check_is(mf_fat_read(&fs, &file, *data, size + 1u), (long)size);
    check_is(mf_fat_read(&fs, &file, *data, 1), 0);
    check(mf_fat_close(&fs, &file));
    return size;
}

static void expect_file(const char *path, const void *data, uint32_t size)
{
    uint8_t *got;
    uint32_t got_size = read_file(path, &got);
    if (got_size != size)
        fail_msg("[%s] %s: %u bytes, expected %u", current->name, path, got_size, size);
    if (size && memcmp(got, data, size) != 0) {
        uint32_t i = 0;
        while (got[i] == ((const uint8_t *)data)[i])
            i++;
        fail_msg("[%s] %s: byte %u is 0x%02X, expected 0x%02X", current->name, path, i, got[i],
                 ((const uint8_t *)data)[i]);
    }
    free(got);
}

static void expect_missing(const char *path)
{
    struct mf_fat_stat st;
    check_is(mf_fat_stat(&fs, path, &st), MF_ENOENT);
}

/* The names readdir gives for `path`, newline-separated and sorted-free (in directory order). */
static unsigned list_dir(const char *path, char *names, size_t size)
{
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    check(mf_fat_opendir(&fs, &dir, path));
    unsigned count = 0;
    size_t used = 0;
    names[0] = '\0';
    int rc;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        count++;
        int n = snprintf(names + used, size - used, "%s%s\n", st.name, st.is_dir ? "/" : "");
        assert_true(n > 0 && (size_t)n < size - used);
        used += (size_t)n;
    }
    check(rc);
    return count;
}

/* ---- format and mount ---------------------------------------------------------------------- */

static void test_format_geometry(void **state)
{
    const struct flavour *flavour = *state;
    const struct mf_fat_geometry *g = mf_fat_geometry(&fs);
    assert_int_equal(g->bytes_per_sector, flavour->block_size);
    assert_int_equal(g->fat_count, 2);
    assert_int_equal(g->total_sectors, flavour->blocks);
    assert_int_equal(g->volume_id, 0x1234ABCDu);
    if (flavour->expect == MF_FAT32) {
        assert_int_equal(g->root_entries, 0);
        assert_true(g->root_cluster >= 2);
        assert_true(g->cluster_count >= 65525);
    } else {
        assert_true(g->root_entries >= 16);
        assert_true(flavour->expect == MF_FAT12
                        ? g->cluster_count <= 4084
                        : g->cluster_count > 4084 && g->cluster_count <= 65524);
    }
    assert_true(g->first_data_sector + (uint64_t)g->cluster_count * g->sectors_per_cluster <=
                g->total_sectors);
    uint64_t free_space, total;
    check(mf_fat_space(&fs, &free_space, &total));
    assert_int_equal(total, (uint64_t)g->cluster_count * cluster_size());
    /* Only the FAT32 root folder holds a cluster. */
    assert_int_equal(free_space, total - (flavour->expect == MF_FAT32 ? cluster_size() : 0));
    char names[64];
    assert_int_equal(list_dir("/", names, sizeof names), 0);
    remount();
    assert_int_equal(mf_fat_geometry(&fs)->cluster_count, g->cluster_count);
}

static void test_format_label(void **state)
{
    (void)state;
    current = &fat12;
    device_new(4096, 512);
    struct mf_fat_format_options options = {.label = "MintFlash", .volume_id = 7};
    check(mf_fat_format(&ram.bd, &options));
    check(mf_fat_mount(&fs, &ram.bd, NULL, NULL));
    assert_string_equal(mf_fat_geometry(&fs)->label, "MINTFLASH");
    /* The label's root entry is not a file. */
    char names[64];
    assert_int_equal(list_dir("/", names, sizeof names), 0);
    write_file("a.txt", "a", 1);
    assert_int_equal(list_dir("/", names, sizeof names), 1);
    check(mf_fat_unmount(&fs));
    free(memory);
    memory = NULL;
}

static void test_format_refuses_what_does_not_fit(void **state)
{
    (void)state;
    current = &fat12;
    struct mf_fat_format_options options = {0};
    device_new(8, 512);
    assert_true(mf_fat_format(&ram.bd, &options) < 0);
    device_new(4096, 512);
    options.type = MF_FAT32;
    check_is(mf_fat_format(&ram.bd, &options), MF_EINVAL);
    options.type = MF_FAT16; /* 2 MiB cannot have 4085 clusters of 2 KiB... */
    options.sectors_per_cluster = 4;
    check_is(mf_fat_format(&ram.bd, &options), MF_EINVAL);
    options.type = MF_FAT_AUTO;
    options.sectors_per_cluster = 3;
    check_is(mf_fat_format(&ram.bd, &options), MF_EINVAL);
    /* A blank device is not a volume. */
    device_new(4096, 512);
    check_is(mf_fat_mount(&fs, &ram.bd, NULL, NULL), MF_ECORRUPT);
    free(memory);
    memory = NULL;
}

static void test_format_forced_types(void **state)
{
    (void)state;
    /* 16 MiB holds FAT12 with big clusters and FAT16 with small ones. */
    const struct {
        enum mf_fat_type type;
        uint32_t spc;
    } cases[] = {{MF_FAT12, 16}, {MF_FAT16, 1}, {MF_FAT16, 0}, {MF_FAT12, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        current = &fat16;
        device_new(32768, 512);
        struct mf_fat_format_options options = {.type = cases[i].type,
                                                .sectors_per_cluster = cases[i].spc};
        check(mf_fat_format(&ram.bd, &options));
        check(mf_fat_mount(&fs, &ram.bd, NULL, NULL));
        assert_int_equal(mf_fat_geometry(&fs)->type, cases[i].type);
        if (cases[i].spc)
            assert_int_equal(mf_fat_geometry(&fs)->sectors_per_cluster, cases[i].spc);
        write_file("x.bin", "xyz", 3);
        expect_file("x.bin", "xyz", 3);
        check(mf_fat_unmount(&fs));
    }
    free(memory);
    memory = NULL;
}

static void test_unmount_with_open_file(void **state)
{
    (void)state;
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "open.txt", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    check_is(mf_fat_write(&fs, &file, "data", 4), 4);
    check_is(mf_fat_unmount(&fs), MF_EBUSY);
    check(mf_fat_sync(&fs));
    /* After sync the data is on the device: a second mount of a copy sees it. */
    uint8_t *copy = malloc(mf_rambd_size(&ram));
    assert_non_null(copy);
    memcpy(copy, memory, mf_rambd_size(&ram));
    struct mf_rambd other;
    struct mf_fat other_fs;
    mf_rambd_init(&other, copy, ram.bd.block_size, ram.bd.block_count);
    check(mf_fat_mount(&other_fs, &other.bd, NULL, NULL));
    struct mf_fat_stat st;
    check(mf_fat_stat(&other_fs, "open.txt", &st));
    assert_int_equal(st.size, 4);
    check(mf_fat_unmount(&other_fs));
    free(copy);
    check_is(mf_fat_write(&fs, &file, "more", 4), 4);
    check(mf_fat_close(&fs, &file));
    remount();
    expect_file("open.txt", "datamore", 8);
}

/* ---- files --------------------------------------------------------------------------------- */

static void test_create_write_read(void **state)
{
    (void)state;
    write_file("hello.txt", "Hello, FAT!", 11);
    expect_file("hello.txt", "Hello, FAT!", 11);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "/hello.txt", &st));
    assert_string_equal(st.name, "hello.txt");
    assert_string_equal(st.short_name, "HELLO.TXT");
    assert_false(st.is_dir);
    assert_int_equal(st.size, 11);
    assert_true(st.attributes & MF_FAT_ATTR_ARCHIVE);
    assert_false(st.attributes & MF_FAT_ATTR_DIRECTORY);
    assert_int_equal(st.mtime, TEST_CLOCK);
    /* An empty file holds no cluster. */
    write_file("empty", NULL, 0);
    check(mf_fat_stat(&fs, "empty", &st));
    assert_int_equal(st.size, 0);
    assert_int_equal(st.first_cluster, 0);
    remount();
    expect_file("hello.txt", "Hello, FAT!", 11);
    expect_file("empty", NULL, 0);
}

/* Any split of writes and reads gives the same bytes as one piece, across many clusters. */
static void test_many_clusters_any_split(void **state)
{
    (void)state;
    const uint32_t size = 300u * 1024u + 123u;
    uint8_t *data = malloc(size), *back = malloc(size);
    assert_non_null(data);
    assert_non_null(back);
    random_fill(data, size);
    static const uint32_t pieces[] = {1, 511, 512, 513, 2048, 4095, 7777, 65536, 3};
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "big.bin", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    uint32_t done = 0;
    for (unsigned i = 0; done < size; i++) {
        uint32_t n = pieces[i % 9];
        if (n > size - done)
            n = size - done;
        check_is(mf_fat_write(&fs, &file, data + done, n), (long)n);
        done += n;
        assert_int_equal(mf_fat_tell(&file), done);
        assert_int_equal(mf_fat_size(&file), done);
    }
    check(mf_fat_close(&fs, &file));
    remount();
    for (unsigned split = 0; split < 9; split++) {
        memset(back, 0, size);
        check(mf_fat_open(&fs, &file, "big.bin", MF_FAT_O_RDONLY));
        done = 0;
        for (unsigned i = split;; i++) {
            int n = mf_fat_read(&fs, &file, back + done, pieces[i % 9]);
            assert_true(n >= 0);
            if (n == 0)
                break;
            done += (uint32_t)n;
            assert_true(done <= size);
        }
        check(mf_fat_close(&fs, &file));
        assert_int_equal(done, size);
        if (memcmp(back, data, size) != 0)
            fail_msg("[%s] read split %u differs from what was written", current->name, split);
    }
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "big.bin", &st));
    assert_int_equal(st.size, size);
    free(data);
    free(back);
}

static void test_seek_tell_and_gaps(void **state)
{
    (void)state;
    uint8_t data[5000];
    random_fill(data, sizeof data);
    write_file("s.bin", data, sizeof data);
    struct mf_fat_file file;
    uint8_t buffer[6000];
    check(mf_fat_open(&fs, &file, "s.bin", MF_FAT_O_RDWR));
    check(mf_fat_seek(&fs, &file, 4000));
    assert_int_equal(mf_fat_tell(&file), 4000);
    check_is(mf_fat_read(&fs, &file, buffer, 100), 100);
    assert_memory_equal(buffer, data + 4000, 100);
    assert_int_equal(mf_fat_tell(&file), 4100);
    check_is(mf_fat_read(&fs, &file, buffer, sizeof buffer), 900);
    check_is(mf_fat_read(&fs, &file, buffer, sizeof buffer), 0);
    /* Overwrite in the middle, across a cluster boundary. */
    uint32_t boundary = cluster_size();
    check(mf_fat_seek(&fs, &file, boundary - 3));
    check_is(mf_fat_write(&fs, &file, "ABCDEF", 6), 6);
    memcpy(data + boundary - 3, "ABCDEF", 6);
    assert_int_equal(mf_fat_size(&file), sizeof data);
    /* Seeking past the end is allowed; reading there gives nothing. */
    check(mf_fat_seek(&fs, &file, 20000));
    check_is(mf_fat_read(&fs, &file, buffer, 10), 0);
    assert_int_equal(mf_fat_size(&file), sizeof data);
    /* Writing there fills the gap with zeros. */
    check_is(mf_fat_write(&fs, &file, "END", 3), 3);
    assert_int_equal(mf_fat_size(&file), 20003);
    check(mf_fat_close(&fs, &file));
    remount();
    uint8_t *got;
    assert_int_equal(read_file("s.bin", &got), 20003);
    assert_memory_equal(got, data, sizeof data);
    for (uint32_t i = sizeof data; i < 20000; i++)
        if (got[i] != 0)
            fail_msg("[%s] gap byte %u is 0x%02X, expected 0", current->name, i, got[i]);
    assert_memory_equal(got + 20000, "END", 3);
    free(got);
}

/* Clusters freed by a deleted file still hold its bytes: a gap or a grown file must read as
 * zeros all the same. */
static void test_gaps_over_old_data_read_zero(void **state)
{
    (void)state;
    uint32_t size = 8 * cluster_size();
    uint8_t *junk = malloc(size);
    assert_non_null(junk);
    memset(junk, 0xEE, size);
    write_file("junk.bin", junk, size);
    check(mf_fat_remove(&fs, "junk.bin"));

    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "sparse.bin", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    check(mf_fat_seek(&fs, &file, 3 * cluster_size() + 100));
    check_is(mf_fat_write(&fs, &file, "x", 1), 1);
    check(mf_fat_truncate(&fs, &file, 6 * cluster_size() + 7));
    check(mf_fat_close(&fs, &file));
    uint8_t *got;
    uint32_t got_size = read_file("sparse.bin", &got);
    assert_int_equal(got_size, 6 * cluster_size() + 7);
    for (uint32_t i = 0; i < got_size; i++) {
        uint8_t want = i == 3 * cluster_size() + 100 ? 'x' : 0;
        if (got[i] != want)
            fail_msg("[%s] byte %u is 0x%02X, expected 0x%02X", current->name, i, got[i], want);
    }
    free(got);
    free(junk);
}

static void test_truncate(void **state)
{
    (void)state;
    uint32_t csize = cluster_size();
    uint32_t size = 5 * csize + 10;
    uint8_t *data = malloc(size);
    assert_non_null(data);
    random_fill(data, size);
    uint64_t empty = free_bytes();
    write_file("t.bin", data, size);
    assert_int_equal(free_bytes(), empty - 6ull * csize);

    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "t.bin", MF_FAT_O_RDWR));
    /* Shrink into the middle of a cluster. */
    check(mf_fat_truncate(&fs, &file, 2 * csize + 5));
    assert_int_equal(mf_fat_size(&file), 2 * csize + 5);
    assert_int_equal(free_bytes(), empty - 3ull * csize);
    /* Shrink to a cluster boundary. */
    check(mf_fat_truncate(&fs, &file, 2 * csize));
    assert_int_equal(free_bytes(), empty - 2ull * csize);
    /* Grow: the new bytes are zeros, even where the old content was. */
    check(mf_fat_truncate(&fs, &file, 4 * csize + 1));
    assert_int_equal(free_bytes(), empty - 5ull * csize);
    /* The position did not move. */
    assert_int_equal(mf_fat_tell(&file), 0);
    check(mf_fat_close(&fs, &file));
    remount();
    uint8_t *got;
    assert_int_equal(read_file("t.bin", &got), 4 * csize + 1);
    assert_memory_equal(got, data, 2 * csize);
    for (uint32_t i = 2 * csize; i < 4 * csize + 1; i++)
        if (got[i] != 0)
            fail_msg("[%s] grown byte %u is 0x%02X", current->name, i, got[i]);
    free(got);
    /* To zero: no cluster left. */
    check(mf_fat_open(&fs, &file, "t.bin", MF_FAT_O_RDWR));
    check(mf_fat_truncate(&fs, &file, 0));
    check(mf_fat_close(&fs, &file));
    assert_int_equal(free_bytes(), empty);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "t.bin", &st));
    assert_int_equal(st.size, 0);
    assert_int_equal(st.first_cluster, 0);
    /* Read-only handles cannot truncate. */
    check(mf_fat_open(&fs, &file, "t.bin", MF_FAT_O_RDONLY));
    check_is(mf_fat_truncate(&fs, &file, 10), MF_EBADF);
    check(mf_fat_close(&fs, &file));
    free(data);
}

static void test_open_flags(void **state)
{
    (void)state;
    struct mf_fat_file file;
    uint8_t buffer[16];
    check_is(mf_fat_open(&fs, &file, "none.txt", MF_FAT_O_RDONLY), MF_ENOENT);
    check_is(mf_fat_open(&fs, &file, "none.txt", MF_FAT_O_RDWR), MF_ENOENT);
    check(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_EXCL));
    check_is(mf_fat_write(&fs, &file, "0123456789", 10), 10);
    check_is(mf_fat_read(&fs, &file, buffer, 1), MF_EBADF);
    check(mf_fat_close(&fs, &file));
    check_is(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_EXCL),
             MF_EEXIST);
    check_is(mf_fat_open(&fs, &file, "F.TXT", MF_FAT_O_RDWR | MF_FAT_O_CREAT | MF_FAT_O_EXCL),
             MF_EEXIST);
    /* CREAT without EXCL opens the existing file as it is. */
    check(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    assert_int_equal(mf_fat_size(&file), 10);
    check(mf_fat_close(&fs, &file));
    check(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_RDONLY));
    check_is(mf_fat_write(&fs, &file, "x", 1), MF_EBADF);
    check(mf_fat_close(&fs, &file));
    /* APPEND: every write goes to the end, wherever the position is. */
    check(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_RDWR | MF_FAT_O_APPEND));
    check(mf_fat_seek(&fs, &file, 2));
    check_is(mf_fat_read(&fs, &file, buffer, 2), 2);
    assert_memory_equal(buffer, "23", 2);
    check_is(mf_fat_write(&fs, &file, "ab", 2), 2);
    check(mf_fat_seek(&fs, &file, 0));
    check_is(mf_fat_write(&fs, &file, "cd", 2), 2);
    assert_int_equal(mf_fat_tell(&file), 14);
    check(mf_fat_close(&fs, &file));
    expect_file("f.txt", "0123456789abcd", 14);
    /* TRUNC empties the file and returns its clusters. */
    uint64_t before = free_bytes();
    check(mf_fat_open(&fs, &file, "f.txt", MF_FAT_O_WRONLY | MF_FAT_O_TRUNC));
    assert_int_equal(mf_fat_size(&file), 0);
    check(mf_fat_close(&fs, &file));
    assert_int_equal(free_bytes(), before + cluster_size());
    expect_file("f.txt", NULL, 0);
    /* Folders are not files; bad flags are refused. */
    check(mf_fat_mkdir(&fs, "dir"));
    check_is(mf_fat_open(&fs, &file, "dir", MF_FAT_O_RDONLY), MF_EISDIR);
    check_is(mf_fat_open(&fs, &file, "dir", MF_FAT_O_RDWR | MF_FAT_O_CREAT), MF_EISDIR);
    check_is(mf_fat_open(&fs, &file, "/", MF_FAT_O_RDONLY), MF_EISDIR);
    check_is(mf_fat_open(&fs, &file, "f.txt", 0), MF_EINVAL);
    check_is(mf_fat_open(&fs, &file, "f.txt/x", MF_FAT_O_RDONLY), MF_ENOTDIR);
    check_is(mf_fat_open(&fs, &file, "nodir/x", MF_FAT_O_RDWR | MF_FAT_O_CREAT), MF_ENOENT);
}

static void test_two_handles_on_one_file(void **state)
{
    (void)state;
    struct mf_fat_file writer, reader, other;
    uint8_t buffer[64];
    check(mf_fat_open(&fs, &writer, "shared.txt", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    check(mf_fat_open(&fs, &reader, "shared.txt", MF_FAT_O_RDONLY));
    assert_int_equal(mf_fat_size(&reader), 0);
    check_is(mf_fat_write(&fs, &writer, "first line\n", 11), 11);
    /* The reader sees the new size and bytes at once. */
    assert_int_equal(mf_fat_size(&reader), 11);
    check_is(mf_fat_read(&fs, &reader, buffer, sizeof buffer), 11);
    assert_memory_equal(buffer, "first line\n", 11);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "shared.txt", &st));
    assert_int_equal(st.size, 11);
    /* A third handle opened now starts from the current size. */
    check(mf_fat_open(&fs, &other, "SHARED.TXT", MF_FAT_O_WRONLY | MF_FAT_O_APPEND));
    assert_int_equal(mf_fat_size(&other), 11);
    check_is(mf_fat_write(&fs, &other, "second\n", 7), 7);
    assert_int_equal(mf_fat_size(&writer), 18);
    check_is(mf_fat_read(&fs, &reader, buffer, sizeof buffer), 7);
    assert_memory_equal(buffer, "second\n", 7);
    /* A file open anywhere cannot be removed or renamed. */
    check_is(mf_fat_remove(&fs, "shared.txt"), MF_EBUSY);
    /* Shrinking through one handle: the others read no further than the new end. */
    check(mf_fat_truncate(&fs, &writer, 5));
    assert_int_equal(mf_fat_size(&reader), 5);
    check_is(mf_fat_read(&fs, &reader, buffer, sizeof buffer), 0);
    check(mf_fat_seek(&fs, &reader, 0));
    check_is(mf_fat_read(&fs, &reader, buffer, sizeof buffer), 5);
    assert_memory_equal(buffer, "first", 5);
    check(mf_fat_close(&fs, &other));
    check(mf_fat_close(&fs, &reader));
    check(mf_fat_close(&fs, &writer));
    check(mf_fat_remove(&fs, "shared.txt"));
    expect_missing("shared.txt");
}

/* ---- folders ------------------------------------------------------------------------------- */

static void test_mkdir_rmdir(void **state)
{
    (void)state;
    uint64_t empty = free_bytes();
    check(mf_fat_mkdir(&fs, "a"));
    assert_int_equal(free_bytes(), empty - cluster_size());
    check(mf_fat_mkdir(&fs, "a/b"));
    check(mf_fat_mkdir(&fs, "/a/b/c/"));
    check_is(mf_fat_mkdir(&fs, "a"), MF_EEXIST);
    check_is(mf_fat_mkdir(&fs, "A/B"), MF_EEXIST);
    check_is(mf_fat_mkdir(&fs, "x/y"), MF_ENOENT);
    write_file("a/b/file.txt", "in b", 4);
    check_is(mf_fat_mkdir(&fs, "a/b/file.txt"), MF_EEXIST);
    check_is(mf_fat_mkdir(&fs, "a/b/file.txt/z"), MF_ENOTDIR);

    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "a/b", &st));
    assert_true(st.is_dir);
    assert_true(st.attributes & MF_FAT_ATTR_DIRECTORY);
    assert_int_equal(st.size, 0);
    check(mf_fat_stat(&fs, "/", &st));
    assert_true(st.is_dir);
    /* A new folder lists as empty ("." and ".." are not shown). */
    char names[256];
    assert_int_equal(list_dir("a/b/c", names, sizeof names), 0);
    assert_int_equal(list_dir("a/b", names, sizeof names), 2);

    check_is(mf_fat_rmdir(&fs, "a/b"), MF_ENOTEMPTY);
    check_is(mf_fat_rmdir(&fs, "a/b/file.txt"), MF_ENOTDIR);
    check_is(mf_fat_rmdir(&fs, "a/nothing"), MF_ENOENT);
    assert_true(mf_fat_rmdir(&fs, "/") < 0);
    check(mf_fat_rmdir(&fs, "a/b/c"));
    expect_missing("a/b/c");
    check(mf_fat_remove(&fs, "a/b/file.txt"));
    check(mf_fat_rmdir(&fs, "a/b"));
    check(mf_fat_rmdir(&fs, "a"));
    assert_int_equal(free_bytes(), empty);
    assert_int_equal(list_dir("/", names, sizeof names), 0);
    /* A folder whose entries were all deleted is empty again. */
    check(mf_fat_mkdir(&fs, "again"));
    write_file("again/x", "x", 1);
    check(mf_fat_remove(&fs, "again/x"));
    check(mf_fat_rmdir(&fs, "again"));
    struct mf_fat_dir dir;
    check_is(mf_fat_opendir(&fs, &dir, "again"), MF_ENOENT);
    write_file("plain", "p", 1);
    check_is(mf_fat_opendir(&fs, &dir, "plain"), MF_ENOTDIR);
}

static void test_remove(void **state)
{
    (void)state;
    uint64_t empty = free_bytes();
    uint8_t data[3000];
    random_fill(data, sizeof data);
    write_file("gone.bin", data, sizeof data);
    check(mf_fat_mkdir(&fs, "folder"));
    check_is(mf_fat_remove(&fs, "folder"), MF_EISDIR);
    check_is(mf_fat_remove(&fs, "/"), MF_EISDIR);
    check_is(mf_fat_remove(&fs, "missing"), MF_ENOENT);
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "gone.bin", MF_FAT_O_RDONLY));
    check_is(mf_fat_remove(&fs, "gone.bin"), MF_EBUSY);
    check(mf_fat_close(&fs, &file));
    check(mf_fat_remove(&fs, "GONE.BIN"));
    expect_missing("gone.bin");
    check_is(mf_fat_remove(&fs, "gone.bin"), MF_ENOENT);
    check(mf_fat_rmdir(&fs, "folder"));
    assert_int_equal(free_bytes(), empty);
    remount();
    assert_int_equal(free_bytes(), empty);
    expect_missing("gone.bin");
}

/* A tree of 16 folders, each with a file and a subfolder holding two more, all 8.3 names. */
static void make_tree(const char *top, uint8_t *data, uint32_t size)
{
    check(mf_fat_mkdir(&fs, top));
    for (unsigned i = 0; i < 16; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/P%02u", top, i);
        check(mf_fat_mkdir(&fs, path));
        snprintf(path, sizeof path, "%s/P%02u/CNT.TXT", top, i);
        write_file(path, "5\r\n", 3);
        snprintf(path, sizeof path, "%s/P%02u/APP", top, i);
        check(mf_fat_mkdir(&fs, path));
        snprintf(path, sizeof path, "%s/P%02u/APP/A.BIN", top, i);
        data[0] = (uint8_t)i;
        write_file(path, data, size);
        snprintf(path, sizeof path, "%s/P%02u/APP/J.INI", top, i);
        write_file(path, "[job]\n", 6);
    }
}

/* A tree goes with a few barriers, not a few per folder: the wiped removal erases every file
 * first (files that lie one after the other with one device call) behind one sync, then removes
 * the entries of up to 64 files and folders, whatever folders they are in, behind one more. The
 * files are gone, every cluster is free again, and no byte of them is left on the device. */
static void test_remove_tree_barriers(void **state)
{
    (void)state;
    uint64_t empty = free_bytes();
    uint32_t size = 3 * cluster_size();
    uint8_t *data = malloc(size);
    memset(data, 0xA5, size);
    for (unsigned pass = 0; pass < 2; pass++) {
        unsigned wiped = pass == 0; /* first: a plain removal leaves the bytes in free space */
        make_tree("TREE", data, size);
        check(mf_fat_unmount(&fs));
        struct mf_faultbd fb;
        mf_faultbd_init(&fb, &ram.bd, NULL);
        check(mf_fat_mount(&fs, &fb.bd, test_clock, NULL));
        mf_faultbd_reset_counters(&fb);
        if (wiped)
            check(mf_fat_remove_tree_wiped(&fs, "TREE"));
        else
            check(mf_fat_remove_tree(&fs, "TREE"));
        /* 81 entries: two lists of removals, each behind a barrier (the second's commit also
         * puts one between the first's freed chains and its entries), and the last commit; the
         * wiped removal one more after the erases, of two runs per folder (CNT.TXT alone, then
         * A.BIN and J.INI, which follow each other). The removal one folder at a time took
         * about 160. */
        const struct mf_faultbd_counters *n = mf_faultbd_counters(&fb);
        if (n->syncs > 4u + wiped)
            fail_msg("[%s] %s: %llu syncs", current->name, wiped ? "wiped" : "plain",
                     (unsigned long long)n->syncs);
        assert_true(n->erases <= (wiped ? 32u : 0u));
        check(mf_fat_unmount(&fs));
        check(mf_fat_mount(&fs, &ram.bd, test_clock, NULL));
        expect_missing("TREE");
        assert_int_equal(free_bytes(), empty);
        if (wiped) {
            uint8_t run[64];
            memset(run, 0xA5, sizeof run);
            size_t total = (size_t)current->blocks * current->block_size;
            for (size_t i = 0; i + sizeof run <= total; i += sizeof run)
                assert_true(memcmp(memory + i, run, sizeof run) != 0);
        }
    }
    make_tree("TREE", data, size);
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "TREE/P03/APP/A.BIN", MF_FAT_O_RDONLY));
    check_is(mf_fat_remove_tree(&fs, "TREE"), MF_EBUSY);
    check(mf_fat_close(&fs, &file));
    check_is(mf_fat_remove_tree(&fs, "/"), MF_EBUSY);
    check_is(mf_fat_remove_tree(&fs, "TREE/P03/APP/A.BIN"), MF_ENOTDIR);
    check(mf_fat_remove_tree(&fs, "TREE"));
    check_is(mf_fat_remove_tree(&fs, "TREE"), MF_ENOENT);
    assert_int_equal(free_bytes(), empty);
    free(data);
}

static void test_rename_and_move(void **state)
{
    (void)state;
    uint64_t empty = free_bytes();
    check(mf_fat_mkdir(&fs, "src"));
    check(mf_fat_mkdir(&fs, "src/inner"));
    check(mf_fat_mkdir(&fs, "dst"));
    write_file("src/a.txt", "file a", 6);
    write_file("src/inner/deep.txt", "deep", 4);
    write_file("b.txt", "file b", 6);
    uint64_t used = free_bytes();

    /* Within a folder, to a long name and back to a short one. */
    check(mf_fat_rename(&fs, "src/a.txt", "src/A renamed file.txt"));
    expect_missing("src/a.txt");
    expect_file("src/a renamed FILE.txt", "file a", 6);
    /* Across folders. */
    check(mf_fat_rename(&fs, "src/A renamed file.txt", "dst/a.txt"));
    expect_missing("src/A renamed file.txt");
    expect_file("dst/a.txt", "file a", 6);
    /* A folder with everything in it. */
    check(mf_fat_rename(&fs, "src/inner", "dst/moved inner"));
    expect_missing("src/inner");
    expect_file("dst/moved inner/deep.txt", "deep", 4);
    write_file("dst/moved inner/new.txt", "new", 3);
    check(mf_fat_mkdir(&fs, "dst/moved inner/sub"));
    check(mf_fat_rename(&fs, "dst/moved inner/deep.txt", "dst/moved inner/sub/deep.txt"));
    check(mf_fat_rename(&fs, "dst/moved inner", "inner at root"));
    expect_file("inner at root/sub/deep.txt", "deep", 4);
    expect_file("inner at root/new.txt", "new", 3);
    /* Only a case change. */
    check(mf_fat_rename(&fs, "b.txt", "B.txt"));
    char names[512];
    list_dir("/", names, sizeof names);
    assert_non_null(strstr(names, "B.txt\n"));
    assert_null(strstr(names, "b.txt\n"));
    expect_file("b.txt", "file b", 6);

    /* Refusals. */
    check_is(mf_fat_rename(&fs, "B.txt", "dst/a.txt"), MF_EEXIST);
    check_is(mf_fat_rename(&fs, "B.txt", "DST"), MF_EEXIST);
    check_is(mf_fat_rename(&fs, "missing", "x"), MF_ENOENT);
    check_is(mf_fat_rename(&fs, "B.txt", "nowhere/B.txt"), MF_ENOENT);
    check_is(mf_fat_rename(&fs, "dst", "dst/inside"), MF_EINVAL);
    check_is(mf_fat_rename(&fs, "inner at root", "inner at root/sub/deeper"), MF_EINVAL);
    check_bad_name(mf_fat_rename(&fs, "B.txt", "bad:name"), "rename to bad:name");
    expect_file("B.txt", "file b", 6);
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "B.txt", MF_FAT_O_RDONLY));
    check_is(mf_fat_rename(&fs, "B.txt", "C.txt"), MF_EBUSY);
    check(mf_fat_close(&fs, &file));

    /* Renames neither take nor free space: only new.txt and sub took a cluster each (no
     * folder here outgrows its first cluster). */
    assert_int_equal(free_bytes(), used - 2ull * cluster_size());
    remount();
    expect_file("dst/a.txt", "file a", 6);
    expect_file("inner at root/sub/deep.txt", "deep", 4);
    /* Emptying and removing the moved folders works from their new places. */
    check(mf_fat_remove(&fs, "inner at root/sub/deep.txt"));
    check(mf_fat_rmdir(&fs, "inner at root/sub"));
    check(mf_fat_remove(&fs, "inner at root/new.txt"));
    check(mf_fat_rmdir(&fs, "inner at root"));
    check(mf_fat_remove(&fs, "dst/a.txt"));
    check(mf_fat_rmdir(&fs, "dst"));
    check(mf_fat_rmdir(&fs, "src"));
    check(mf_fat_remove(&fs, "b.txt"));
    assert_int_equal(free_bytes(), empty);
}

/* A file written whole under another name takes the place of the old one: its contents, the old
 * clusters freed, `from` gone; onto a missing name it is a move. */
static void test_replace(void **state)
{
    (void)state;
    uint64_t empty = free_bytes();
    uint32_t csize = cluster_size(), big = 3 * csize;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    random_fill(data, big);
    check(mf_fat_mkdir(&fs, "dir"));
    write_file("dir/Settings file.ini", data, big);
    write_file("new.tmp", "new text", 8);
    uint64_t both = free_bytes();
    check(mf_fat_replace(&fs, "new.tmp", "DIR/settings FILE.INI"));
    expect_missing("new.tmp");
    expect_file("dir/Settings file.ini", "new text", 8);
    assert_int_equal(free_bytes(), both + big);
    char names[256];
    list_dir("dir", names, sizeof names);
    assert_string_equal(names, "Settings file.ini\n"); /* the name as it was */
    /* Onto a name not there, across folders. */
    write_file("other.tmp", data, big);
    check(mf_fat_replace(&fs, "other.tmp", "dir/Fresh.bin"));
    expect_missing("other.tmp");
    expect_file("dir/Fresh.bin", data, big);
    /* Refusals leave both as they were. */
    struct mf_fat_file file;
    check_is(mf_fat_replace(&fs, "missing", "dir/Fresh.bin"), MF_ENOENT);
    check_is(mf_fat_replace(&fs, "dir/Fresh.bin", "nowhere/x"), MF_ENOENT);
    check_is(mf_fat_replace(&fs, "dir/Fresh.bin", "dir"), MF_EISDIR);
    check_is(mf_fat_replace(&fs, "dir", "dir/Fresh.bin"), MF_EISDIR);
    check(mf_fat_open(&fs, &file, "dir/Fresh.bin", MF_FAT_O_RDONLY));
    check_is(mf_fat_replace(&fs, "dir/Fresh.bin", "dir/Settings file.ini"), MF_EBUSY);
    check_is(mf_fat_replace(&fs, "dir/Settings file.ini", "dir/Fresh.bin"), MF_EBUSY);
    check(mf_fat_close(&fs, &file));
    /* Onto itself: at most a change of case. */
    check(mf_fat_replace(&fs, "dir/Fresh.bin", "dir/FRESH.BIN"));
    list_dir("dir", names, sizeof names);
    assert_non_null(strstr(names, "FRESH.BIN\n"));
    remount();
    expect_file("dir/Settings file.ini", "new text", 8);
    expect_file("dir/fresh.bin", data, big);
    check(mf_fat_remove(&fs, "dir/Settings file.ini"));
    check(mf_fat_remove(&fs, "dir/fresh.bin"));
    check(mf_fat_rmdir(&fs, "dir"));
    assert_int_equal(free_bytes(), empty);
    free(data);
}

static void test_readdir_listing(void **state)
{
    (void)state;
    check(mf_fat_mkdir(&fs, "list"));
    check(mf_fat_mkdir(&fs, "list/Sub Folder"));
    const struct {
        const char *name;
        uint32_t size;
    } files[] = {{"one.txt", 1}, {"Two Words.bin", 2000}, {"THREE", 0}, {"four.TXT", 70000}};
    uint8_t *data = calloc(1, 70000);
    assert_non_null(data);
    char path[64];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "list/%s", files[i].name);
        write_file(path, data, files[i].size);
    }
    check(mf_fat_remove(&fs, "list/THREE"));
    write_file("list/five", data, 5);

    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    check(mf_fat_opendir(&fs, &dir, "list"));
    unsigned seen = 0, mask = 0;
    int rc;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        seen++;
        if (strcmp(st.name, "Sub Folder") == 0) {
            assert_true(st.is_dir);
            mask |= 1;
            continue;
        }
        assert_false(st.is_dir);
        if (strcmp(st.name, "five") == 0) {
            assert_int_equal(st.size, 5);
            mask |= 2;
            continue;
        }
        bool known = false;
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(st.name, files[i].name) == 0 && i != 2) {
                assert_int_equal(st.size, files[i].size);
                mask |= 4u << i;
                known = true;
            }
        }
        if (!known)
            fail_msg("[%s] readdir gave an unexpected \"%s\"", current->name, st.name);
    }
    check(rc);
    assert_int_equal(seen, 5);
    assert_int_equal(mask, 1 | 2 | 4 | 8 | 32);
    /* At the end it stays at the end. */
    check_is(mf_fat_readdir(&fs, &dir, &st), 0);
    free(data);
}

static void test_space_accounting(void **state)
{
    (void)state;
    uint32_t csize = cluster_size();
    uint64_t empty = free_bytes();
    uint8_t *data = calloc(1, 3 * csize + 1);
    assert_non_null(data);
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "grow.bin", MF_FAT_O_WRONLY | MF_FAT_O_CREAT));
    assert_int_equal(free_bytes(), empty);
    check_is(mf_fat_write(&fs, &file, data, 1), 1);
    assert_int_equal(free_bytes(), empty - csize);
    check_is(mf_fat_write(&fs, &file, data, csize - 1), (long)csize - 1);
    assert_int_equal(free_bytes(), empty - csize);
    check_is(mf_fat_write(&fs, &file, data, 1), 1);
    assert_int_equal(free_bytes(), empty - 2ull * csize);
    check_is(mf_fat_write(&fs, &file, data, 2 * csize), (long)2 * csize);
    assert_int_equal(free_bytes(), empty - 4ull * csize);
    check(mf_fat_close(&fs, &file));
    check(mf_fat_mkdir(&fs, "d"));
    assert_int_equal(free_bytes(), empty - 5ull * csize);
    remount(); /* counted again from the FAT */
    assert_int_equal(free_bytes(), empty - 5ull * csize);
    check(mf_fat_remove(&fs, "grow.bin"));
    assert_int_equal(free_bytes(), empty - csize);
    check(mf_fat_rmdir(&fs, "d"));
    assert_int_equal(free_bytes(), empty);
    free(data);
}

/* ---- names --------------------------------------------------------------------------------- */

static void test_long_names(void **state)
{
    (void)state;
    char name[600], path[620];
    memset(name, 0, sizeof name);
    for (int i = 0; i < 255; i++)
        name[i] = (char)('a' + i % 26);
    memcpy(name + 251, ".txt", 4);
    write_file(name, "255", 3);
    expect_file(name, "255", 3);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, name, &st));
    assert_string_equal(st.name, name);
    assert_int_equal(strlen(st.short_name) <= 12, 1);
    char names[1024];
    list_dir("/", names, sizeof names);
    snprintf(path, sizeof path, "%s\n", name);
    assert_string_equal(names, path);

    /* 256 characters is one too many. */
    name[255] = 'z';
    struct mf_fat_file file;
    check_is(mf_fat_open(&fs, &file, name, MF_FAT_O_WRONLY | MF_FAT_O_CREAT), MF_ENAMETOOLONG);
    check_is(mf_fat_mkdir(&fs, name), MF_ENAMETOOLONG);
    name[255] = '\0';
    name[0] = 'Z';
    check_is(mf_fat_rename(&fs, st.name, name), 0);

    /* 255 two-byte characters (510 bytes of UTF-8) still count as 255. */
    size_t used = 0;
    for (int i = 0; i < 255; i++) {
        memcpy(name + used, "\xD0\x96", 2); /* Cyrillic Zhe */
        used += 2;
    }
    name[used] = '\0';
    snprintf(path, sizeof path, "/%s", name);
    write_file(path, "zhe", 3);
    check(mf_fat_stat(&fs, path, &st));
    assert_string_equal(st.name, name);
    memcpy(name + used, "\xD0\x96", 3);
    check_is(mf_fat_mkdir(&fs, name), MF_ENAMETOOLONG);
}

static void test_utf8_names(void **state)
{
    (void)state;
    static const char *names[] = {
        "Grüße.txt",
        "Привет мир.txt",
        "Ελληνικά.dat",
        "日本語のファイル名.txt",
        "emoji \xF0\x9F\x98\x80.txt",
        "Crème brûlée",
    };
    char path[128];
    for (size_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s", names[i]);
        write_file(path, names[i], (uint32_t)strlen(names[i]));
    }
    remount();
    for (size_t i = 0; i < 6; i++)
        expect_file(names[i], names[i], (uint32_t)strlen(names[i]));
    char listing[1024];
    assert_int_equal(list_dir("/", listing, sizeof listing), 6);
    for (size_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s\n", names[i]);
        if (!strstr(listing, path))
            fail_msg("[%s] readdir does not give \"%s\": %s", current->name, names[i], listing);
    }
    /* Case-insensitive beyond ASCII: Latin-1, Cyrillic, Greek. */
    expect_file("GRÜßE.TXT", names[0], (uint32_t)strlen(names[0]));
    expect_file("ПРИВЕТ МИР.TXT", names[1], (uint32_t)strlen(names[1]));
    expect_file("привет мир.txt", names[1], (uint32_t)strlen(names[1]));
    expect_file("ΕΛΛΗΝΙΚά.DAT", names[2], (uint32_t)strlen(names[2]));
    expect_file("CRÈME BRÛLÉE", names[5], (uint32_t)strlen(names[5]));
    struct mf_fat_file file;
    check_is(mf_fat_open(&fs, &file, "grüsse.txt", MF_FAT_O_RDONLY), MF_ENOENT);
    check_is(
        mf_fat_open(&fs, &file, "ПРИВЕТ МИР.TXT", MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_EXCL),
        MF_EEXIST);
    /* Last, as the rarest: a letter with tonos, U+03AC and its capital U+0386. */
    expect_file("ΕΛΛΗΝΙΚΆ.DAT", names[2], (uint32_t)strlen(names[2]));
}

static void test_mixed_case_names(void **state)
{
    (void)state;
    write_file("CntDown.txt", "1000", 4);
    expect_file("CNTDOWN.TXT", "1000", 4);
    expect_file("cntdown.txt", "1000", 4);
    expect_file("cNTdOWN.tXT", "1000", 4);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "cntdown.txt", &st));
    assert_string_equal(st.name, "CntDown.txt");
    assert_string_equal(st.short_name, "CNTDOWN.TXT");
    /* All-lower and all-upper 8.3 names keep their case too. */
    write_file("readme.txt", "r", 1);
    write_file("LOUD.TXT", "L", 1);
    write_file("lower.TXT", "l", 1);
    remount();
    char listing[256];
    assert_int_equal(list_dir("/", listing, sizeof listing), 4);
    assert_non_null(strstr(listing, "CntDown.txt\n"));
    assert_non_null(strstr(listing, "readme.txt\n"));
    assert_non_null(strstr(listing, "LOUD.TXT\n"));
    assert_non_null(strstr(listing, "lower.TXT\n"));
    /* Creating under another case is the same file. */
    struct mf_fat_file file;
    check_is(
        mf_fat_open(&fs, &file, "CNTDOWN.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_EXCL),
        MF_EEXIST);
    check(
        mf_fat_open(&fs, &file, "CNTDOWN.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC));
    check_is(mf_fat_write(&fs, &file, "999", 3), 3);
    check(mf_fat_close(&fs, &file));
    expect_file("CntDown.txt", "999", 3);
    assert_int_equal(list_dir("/", listing, sizeof listing), 4);
}

static void test_trailing_dots_and_spaces(void **state)
{
    (void)state;
    write_file("trail.txt. . ", "t", 1);
    expect_file("trail.txt", "t", 1);
    expect_file("trail.txt...", "t", 1);
    expect_file("TRAIL.TXT  ", "t", 1);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "trail.txt", &st));
    assert_string_equal(st.name, "trail.txt");
    check(mf_fat_mkdir(&fs, "folder."));
    check(mf_fat_stat(&fs, "folder", &st));
    assert_true(st.is_dir);
    write_file("folder ./x", "x", 1);
    expect_file("folder/x", "x", 1);
    /* Leading spaces and inner dots are part of the name. */
    write_file(" lead", "l", 1);
    expect_missing("lead");
    expect_file(" lead", "l", 1);
    write_file("a.b.c", "abc", 3);
    expect_missing("a.b");
}

static void test_invalid_names(void **state)
{
    (void)state;
    static const char *bad[] = {
        "a:b",  "a*b",       "a?b",      "a<b",         "a>b",      "a|b",
        "a\"b", "tab\tname", "bell\x07", "\x1F",        ".",        "..",
        "...",  " ",         " . ",      "bad\xFF.txt", "half\xC3", "\xED\xA0\x80surrogate",
    };
    struct mf_fat_file file;
    char what[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(what, sizeof what, "create name %zu", i);
        int rc = mf_fat_open(&fs, &file, bad[i], MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
        if (rc == MF_EISDIR && (strcmp(bad[i], ".") == 0))
            continue; /* "." is the root itself */
        check_bad_name(rc, what);
        snprintf(what, sizeof what, "mkdir name %zu", i);
        rc = mf_fat_mkdir(&fs, bad[i]);
        if (rc == MF_EEXIST && strcmp(bad[i], ".") == 0)
            continue;
        check_bad_name(rc, what);
    }
    check(mf_fat_mkdir(&fs, "d"));
    check_bad_name(mf_fat_mkdir(&fs, "d/b:d"), "mkdir d/b:d");
    /* ".." may not leave the root. */
    check_bad_name(mf_fat_open(&fs, &file, "../x.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
                   "../x.txt");
    check_bad_name(mf_fat_open(&fs, &file, "d/../../x.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
                   "d/../../x.txt");
    check_bad_name(mf_fat_mkdir(&fs, "/.."), "/..");
    /* Nothing of that reached the volume. */
    char listing[64];
    assert_int_equal(list_dir("/", listing, sizeof listing), 1);
    assert_string_equal(listing, "d/\n");
    assert_int_equal(list_dir("d", listing, sizeof listing), 0);
}

static void test_dot_paths(void **state)
{
    (void)state;
    check(mf_fat_mkdir(&fs, "a"));
    check(mf_fat_mkdir(&fs, "a/./b"));
    write_file("./a/b/../x.txt", "x", 1);
    expect_file("a/x.txt", "x", 1);
    expect_file("/a//b/..//./x.txt", "x", 1);
    write_file("a/b/./y.txt", "y", 1);
    expect_file("a/b/y.txt", "y", 1);
    expect_file("a/../a/b/../b/y.txt", "y", 1);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "a/b/..", &st));
    assert_true(st.is_dir);
    check(mf_fat_rename(&fs, "a/b/../x.txt", "./a/b/x.txt"));
    expect_file("a/b/x.txt", "x", 1);
    char listing[64];
    assert_int_equal(list_dir("a/b/.", listing, sizeof listing), 2);
    assert_int_equal(list_dir("a/b/..", listing, sizeof listing), 1);
}

static void test_deep_paths(void **state)
{
    (void)state;
    /* MF_FAT_DEPTH_MAX components: MF_FAT_DEPTH_MAX - 1 folders and a file. */
    char path[256];
    path[0] = '\0';
    for (unsigned level = 1; level < MF_FAT_DEPTH_MAX; level++) {
        char part[16];
        snprintf(part, sizeof part, "%sd%u", level > 1 ? "/" : "", level);
        strcat(path, part);
        check(mf_fat_mkdir(&fs, path));
    }
    char file_path[MF_FAT_PATH_MAX];
    snprintf(file_path, sizeof file_path, "%s/leaf.txt", path);
    write_file(file_path, "leaf", 4);
    remount();
    expect_file(file_path, "leaf", 4);
    /* One more level is refused, not a crash. */
    snprintf(file_path, sizeof file_path, "%s/d%u/leaf.txt", path, MF_FAT_DEPTH_MAX);
    struct mf_fat_file file;
    int rc = mf_fat_open(&fs, &file, file_path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
    if (rc >= 0)
        fail_msg("[%s] a path of %u components was accepted", current->name, MF_FAT_DEPTH_MAX + 1);
    /* A path longer than MF_FAT_PATH_MAX is refused. */
    char *long_path = malloc(MF_FAT_PATH_MAX + 16);
    assert_non_null(long_path);
    memset(long_path, 'p', MF_FAT_PATH_MAX + 8);
    for (size_t i = 100; i < MF_FAT_PATH_MAX + 8; i += 100)
        long_path[i] = '/';
    long_path[MF_FAT_PATH_MAX + 8] = '\0';
    check_is(mf_fat_mkdir(&fs, long_path), MF_ENAMETOOLONG);
    free(long_path);
}

/* Hundreds of entries: the folder grows past one cluster and every entry is found again. */
static void test_directory_growth(void **state)
{
    (void)state;
    const unsigned count = 400;
    check(mf_fat_mkdir(&fs, "many"));
    uint64_t before = free_bytes();
    char path[96];
    for (unsigned i = 0; i < count; i++) {
        snprintf(path, sizeof path, i % 2 ? "many/F%u.TXT" : "many/A long name number %u.data", i);
        write_file(path, path, (uint32_t)strlen(path));
    }
    /* The folder took more clusters: at most as the entries need. */
    uint64_t data_clusters = count; /* each file holds one cluster */
    uint64_t dir_clusters = (before - free_bytes()) / cluster_size() - data_clusters;
    assert_true(dir_clusters >= 1);
    uint64_t slots = count / 2 * 1 + count / 2 * 4; /* 8.3 names; 3 LFN entries + 1 */
    assert_true(dir_clusters <= slots * 32 / cluster_size() + 1);
    remount();
    for (unsigned i = 0; i < count; i++) {
        snprintf(path, sizeof path, i % 2 ? "many/f%u.txt" : "many/a LONG name number %u.DATA", i);
        char real[96];
        snprintf(real, sizeof real, i % 2 ? "many/F%u.TXT" : "many/A long name number %u.data", i);
        expect_file(path, real, (uint32_t)strlen(real));
    }
    char *listing = malloc(count * 48);
    assert_non_null(listing);
    assert_int_equal(list_dir("many", listing, count * 48), count);
    free(listing);
    /* Removing every other one and adding new ones reuses the freed slots. */
    for (unsigned i = 0; i < count; i += 2) {
        snprintf(path, sizeof path, "many/A long name number %u.data", i);
        check(mf_fat_remove(&fs, path));
    }
    uint64_t after_removal = free_bytes();
    for (unsigned i = 0; i < count / 2; i++) {
        snprintf(path, sizeof path, "many/N%u", i);
        write_file(path, NULL, 0);
    }
    assert_int_equal(free_bytes(), after_removal);
}

/* The fixed root of FAT12/16 holds root_entries entries; FAT32's root grows like any folder. */
static void test_root_directory_full(void **state)
{
    const struct flavour *flavour = *state;
    uint32_t entries = mf_fat_geometry(&fs)->root_entries;
    char path[32];
    uint32_t limit = flavour->expect == MF_FAT32 ? 1000 : entries;
    for (uint32_t i = 0; i < limit; i++) {
        snprintf(path, sizeof path, "R%u", i);
        write_file(path, NULL, 0);
    }
    struct mf_fat_file file;
    uint64_t before = free_bytes();
    if (flavour->expect == MF_FAT32) {
        /* The root folder grows: a cluster for the entries past what it holds free. */
        uint64_t need;
        check(mf_fat_dir_need(&fs, "/", 1 + cluster_size() / 32, &need));
        check_is(need != 0, 1);
        write_file("one more", "1", 1);
        expect_file("ONE MORE", "1", 1);
        return;
    }
    check_is(mf_fat_open(&fs, &file, "X1", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), MF_ENOSPC);
    check_is(mf_fat_mkdir(&fs, "D1"), MF_ENOSPC);
    check_is(mf_fat_mkdir(&fs, "A long folder name"), MF_ENOSPC);
    check_is(mf_fat_rename(&fs, "R5", "Renamed with a long name"), MF_ENOSPC);
    expect_file("R5", NULL, 0);
    uint64_t need = 1;
    check_is(mf_fat_dir_need(&fs, "/", 1, &need), MF_ENOSPC);
    /* A short name in the same folder: renamed in place, no free entry needed. */
    check(mf_fat_rename(&fs, "R5", "FLASHER.OLD"));
    check_is(mf_fat_stat(&fs, "R5", &(struct mf_fat_stat){0}), MF_ENOENT);
    expect_file("flasher.old", NULL, 0);
    check(mf_fat_rename(&fs, "FLASHER.OLD", "r5"));
    expect_file("R5", NULL, 0);
    /* One slot freed: a short name fits, a long one (more slots) does not. */
    check(mf_fat_remove(&fs, "R7"));
    check(mf_fat_dir_need(&fs, "/", 1, &need));
    check_is(need, 0);
    check_is(mf_fat_dir_need(&fs, "/", 2, &need), MF_ENOSPC);
    check_is(mf_fat_mkdir(&fs, "Long name needs slots"), MF_ENOSPC);
    uint64_t lost = before - free_bytes();
    check(mf_fat_mkdir(&fs, "D1"));
    check_is(mf_fat_open(&fs, &file, "X2", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), MF_ENOSPC);
    remount();
    char *listing = malloc(entries * 16u);
    assert_non_null(listing);
    assert_int_equal(list_dir("/", listing, entries * 16u), entries);
    free(listing);
    /* Subfolders still grow. */
    for (uint32_t i = 0; i < 100; i++) {
        snprintf(path, sizeof path, "D1/sub file %u", i);
        write_file(path, NULL, 0);
    }
    /* A refused mkdir must not keep the cluster it took (checked last, so the rest runs). */
    if (lost != 0)
        fail_msg("[%s] mkdir refused with MF_ENOSPC on a full root kept %llu bytes (lost "
                 "clusters)",
                 current->name, (unsigned long long)lost);
}

/* Filling the volume: ENOSPC, and a write that does not fit changes nothing. */
static void test_volume_full(void **state)
{
    (void)state;
    uint32_t csize = cluster_size();
    uint8_t *chunk = malloc(64u * 1024u);
    assert_non_null(chunk);
    random_fill(chunk, 64u * 1024u);
    write_file("keep.txt", "keep me", 7);
    check(mf_fat_mkdir(&fs, "dir"));

    /* Fill with one file, to the last cluster. */
    uint64_t left = free_bytes();
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, "dir/fill.bin", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    uint64_t written = 0;
    while (left - written > 64u * 1024u) {
        check_is(mf_fat_write(&fs, &file, chunk, 64u * 1024u), 64 * 1024);
        written += 64u * 1024u;
    }
    /* The rest (a whole number of clusters) goes in as the chunk's start, so that the file
     * reads as the chunk repeated. */
    uint32_t rest = (uint32_t)(left - written), tail = rest - csize;
    if (tail > 0) {
        check_is(mf_fat_write(&fs, &file, chunk, tail), (long)tail);
        written += tail;
    }
    uint64_t free_before = free_bytes();
    assert_int_equal(free_before, csize);
    /* Too big for what is left: refused whole. */
    check_is(mf_fat_write(&fs, &file, chunk, csize + 1), MF_ENOSPC);
    assert_int_equal(mf_fat_size(&file), written);
    assert_int_equal(mf_fat_tell(&file), written);
    assert_int_equal(free_bytes(), free_before);
    check_is(mf_fat_truncate(&fs, &file, (uint32_t)written + 2 * csize), MF_ENOSPC);
    assert_int_equal(mf_fat_size(&file), written);
    /* What fits still goes in. */
    check_is(mf_fat_write(&fs, &file, chunk + tail, csize), (long)csize);
    written += csize;
    assert_int_equal(free_bytes(), 0);
    check_is(mf_fat_write(&fs, &file, chunk, 1), MF_ENOSPC);
    check(mf_fat_close(&fs, &file));

    check_is(mf_fat_mkdir(&fs, "no room"), MF_ENOSPC);
    struct mf_fat_file other;
    check(mf_fat_open(&fs, &other, "zero.txt", MF_FAT_O_RDWR | MF_FAT_O_CREAT));
    check_is(mf_fat_write(&fs, &other, "z", 1), MF_ENOSPC);
    assert_int_equal(mf_fat_size(&other), 0);
    check(mf_fat_close(&fs, &other));
    remount();
    assert_int_equal(free_bytes(), 0);
    expect_file("keep.txt", "keep me", 7);
    expect_file("zero.txt", NULL, 0);
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "dir/fill.bin", &st));
    assert_int_equal(st.size, written);
    /* The content is what was written, chunk after chunk. */
    check(mf_fat_open(&fs, &file, "dir/fill.bin", MF_FAT_O_RDONLY));
    uint8_t *back = malloc(64u * 1024u);
    assert_non_null(back);
    uint64_t at = 0;
    while (at < written) {
        uint32_t want = written - at < 64u * 1024u ? (uint32_t)(written - at) : 64u * 1024u;
        check_is(mf_fat_read(&fs, &file, back, want), (long)want);
        if (memcmp(back, chunk, want) != 0)
            fail_msg("[%s] fill.bin differs near byte %llu", current->name, (unsigned long long)at);
        at += want;
    }
    check(mf_fat_close(&fs, &file));
    check(mf_fat_remove(&fs, "dir/fill.bin"));
    assert_int_equal(free_bytes(), left);
    free(back);
    free(chunk);
}

/* ---- device errors ------------------------------------------------------------------------ */

enum change { CHANGE_TRUNCATE, CHANGE_APPEND };

/* Runs `change` on KEEP.TXT (holding `data`): a truncating open, or an append of `more`. */
static int run_change(enum change change, const uint8_t *more, uint32_t more_size)
{
    struct mf_fat_file file;
    if (change == CHANGE_TRUNCATE) {
        int err = mf_fat_open(&fs, &file, "KEEP.TXT", MF_FAT_O_WRONLY | MF_FAT_O_TRUNC);
        return err ? err : mf_fat_close(&fs, &file);
    }
    int err = mf_fat_open(&fs, &file, "KEEP.TXT", MF_FAT_O_WRONLY | MF_FAT_O_APPEND);
    if (err)
        return err;
    int w = mf_fat_write(&fs, &file, more, more_size);
    int cerr = mf_fat_close(&fs, &file);
    return w < 0 ? w : cerr;
}

struct change_rig {
    enum change change;
    const uint8_t *data; /* KEEP.TXT holds `size` bytes of it, an append adds `more_size` more */
    uint32_t size, more_size;
    size_t bytes;
    uint8_t *as_eio; /* the device after the same error as MF_EIO */
};

static int change_prepare(void *context, const struct mf_bd *bd)
{
    (void)context;
    return mf_fat_mount(&fs, bd, test_clock, NULL);
}

static int change_run(void *context)
{
    struct change_rig *rig = context;
    return run_change(rig->change, rig->data + rig->size, rig->more_size);
}

/* The change gave the device's code; a change that succeeds and a remount later, KEEP.TXT is as
 * before or as changed, whole, and the device holds what the same error as MF_EIO left (the codes
 * come in turn, MF_EIO first). */
static void change_check(void *context, const struct mf_sweep_io_point *p)
{
    struct change_rig *rig = context;
    const char *what = rig->change == CHANGE_TRUNCATE ? "truncation" : "append";
    if (p->run_error != p->code)
        fail_msg("[%s] %s, %s at call %llu%s: gave %d (%s)", current->name, what,
                 mf_strerror(p->code), (unsigned long long)p->at, p->persistent ? " and after" : "",
                 p->run_error, mf_strerror(p->run_error));
    write_file("NEXT.TXT", "next", 4); /* commits whatever is cached */
    remount();
    uint8_t *got;
    uint32_t got_size = read_file("KEEP.TXT", &got), size = rig->size;
    bool before = got_size == size && memcmp(got, rig->data, size) == 0;
    bool after = rig->change == CHANGE_TRUNCATE
                     ? got_size == 0
                     : got_size == size + rig->more_size &&
                           memcmp(got, rig->data, size + rig->more_size) == 0;
    free(got);
    check(mf_fat_unmount(&fs));
    if (p->code == MF_EIO)
        memcpy(rig->as_eio, memory, rig->bytes);
    if ((!before && !after) || memcmp(memory, rig->as_eio, rig->bytes) != 0)
        fail_msg("[%s] %s, %s at call %llu%s: KEEP.TXT %s, the device %s the same error as MF_EIO",
                 current->name, what, mf_strerror(p->code), (unsigned long long)p->at,
                 p->persistent ? " and after" : "", before || after ? "whole" : "torn",
                 memcmp(memory, rig->as_eio, rig->bytes) ? "differs from" : "as after");
}

/* A device error of any code drops the change it stopped, as MF_EIO does: a file device says
 * MF_ENOSPC, MF_EROFS, MF_EACCES or MF_EFBIG for a full or read-only host file system, and a
 * truncation refused half-way with such a code was written out by the next change once the
 * device worked again (FLASHER.INI emptied, its clusters lost), an append torn. At every device
 * call of a truncation and of an append, once or for good, with each code. */
static void test_device_errors_drop_the_change(void **state)
{
    (void)state;
    uint32_t csize = cluster_size();
    struct change_rig rig = {.size = 2 * csize + 100, .more_size = 3 * csize + 7};
    uint8_t *data = malloc(rig.size + rig.more_size);
    assert_non_null(data);
    random_fill(data, rig.size + rig.more_size);
    rig.data = data;
    write_file("KEEP.TXT", data, rig.size);
    check(mf_fat_unmount(&fs));
    rig.bytes = (size_t)current->blocks * current->block_size;
    uint8_t *snapshot = malloc(rig.bytes);
    rig.as_eio = malloc(rig.bytes);
    assert_non_null(snapshot);
    assert_non_null(rig.as_eio);
    memcpy(snapshot, memory, rig.bytes);
    struct mf_sweep_io sweep = {.medium = &ram.bd,
                                .memory = memory,
                                .snapshot = snapshot,
                                .size = rig.bytes,
                                .context = &rig,
                                .prepare = change_prepare,
                                .run = change_run,
                                .check = change_check};
    for (rig.change = CHANGE_TRUNCATE; rig.change <= CHANGE_APPEND; rig.change++)
        assert_true(mf_sweep_io_run(&sweep) >= 4);
    memcpy(memory, snapshot, rig.bytes);
    check(mf_fat_mount(&fs, &ram.bd, test_clock, NULL));
    free(rig.as_eio);
    free(snapshot);
    free(data);
}

/* Many long names with the same start: generated short names all differ, all are found. */
static void test_short_name_collisions(void **state)
{
    (void)state;
    const unsigned count = 300;
    check(mf_fat_mkdir(&fs, "col"));
    char path[64], content[16];
    for (unsigned i = 1; i <= count; i++) {
        snprintf(path, sizeof path, "col/long file name %u.txt", i);
        snprintf(content, sizeof content, "%u", i);
        write_file(path, content, (uint32_t)strlen(content));
    }
    remount();
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    check(mf_fat_opendir(&fs, &dir, "col"));
    static char shorts[300][13];
    unsigned seen = 0;
    int rc;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        assert_true(seen < count);
        for (unsigned k = 0; k < seen; k++)
            if (strcmp(shorts[k], st.short_name) == 0)
                fail_msg("[%s] short name %s given twice", current->name, st.short_name);
        memcpy(shorts[seen++], st.short_name, 13);
        unsigned number = 0;
        if (sscanf(st.name, "long file name %u.txt", &number) != 1)
            fail_msg("[%s] unexpected name \"%s\"", current->name, st.name);
        snprintf(content, sizeof content, "%u", number);
        assert_int_equal(st.size, strlen(content));
        assert_true(strchr(st.short_name, '~') != NULL);
    }
    check(rc);
    assert_int_equal(seen, count);
    for (unsigned i = 1; i <= count; i++) {
        snprintf(path, sizeof path, "col/LONG FILE NAME %u.TXT", i);
        snprintf(content, sizeof content, "%u", i);
        expect_file(path, content, (uint32_t)strlen(content));
    }
    /* Each short name reaches its own file. */
    for (unsigned k = 0; k < count; k++) {
        snprintf(path, sizeof path, "col/%.12s", shorts[k]);
        check(mf_fat_stat(&fs, path, &st));
        assert_string_equal(st.short_name, shorts[k]);
    }
}

/* mf_fat_path_in: a folder at the root in any spelling a lookup takes, its short name included,
 * and the components under it; the root itself is in no folder. */
static void test_path_in(void **state)
{
    (void)state;
    check(mf_fat_mkdir(&fs, "A long folder"));
    check(mf_fat_mkdir(&fs, "Other"));
    check(mf_fat_mkdir(&fs, "Other/A long folder"));
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "A long folder", &st));
    assert_true(strchr(st.short_name, '~') != NULL);
    char alias[64];
    snprintf(alias, sizeof alias, "%s/x/y.txt", st.short_name);
    static const struct {
        const char *path;
        int in;
        unsigned below;
    } cases[] = {
        {"A long folder", 1, 0},
        {"a LONG folder./", 1, 0},
        {"/A long folder/x", 1, 1},
        {"Other/../A long folder/x\\y", 1, 2},
        {"", 0, 0},
        {"/", 0, 0},
        {".", 0, 0},
        {"Other", 0, 0}, /* beside it in the same root sector: another entry */
        {"Other/A long folder", 0, 0},
        {"Missing/x", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned below = 99;
        int in = mf_fat_path_in(&fs, cases[i].path, "A long folder", &below);
        if (in != cases[i].in || (in == 1 && below != cases[i].below))
            fail_msg("[%s] \"%s\": %d, %u below", current->name, cases[i].path, in, below);
    }
    /* Its short name is another name of the same entry. */
    unsigned below = 99;
    assert_int_equal(mf_fat_path_in(&fs, alias, "A long folder", &below), 1);
    assert_int_equal(below, 2);
    assert_int_equal(mf_fat_path_in(&fs, "A long folder/x", st.short_name, &below), 1);
    assert_int_equal(below, 1);
    /* A folder that is not there: no other name reaches it. */
    assert_int_equal(mf_fat_path_in(&fs, "Other/x", "Gone", &below), 0);
    /* A path no lookup takes. */
    assert_true(mf_fat_path_in(&fs, "../x", "A long folder", &below) < 0);
}

static void test_timestamps(void **state)
{
    (void)state;
    write_file("t.txt", "t", 1);
    check(mf_fat_mkdir(&fs, "folder"));
    struct mf_fat_stat st;
    check(mf_fat_stat(&fs, "t.txt", &st));
    assert_int_equal(st.mtime, TEST_CLOCK);
    check(mf_fat_stat(&fs, "folder", &st));
    assert_int_equal(st.mtime, TEST_CLOCK);
    /* Without a clock every time is 1980-01-01 00:00. */
    check(mf_fat_unmount(&fs));
    check(mf_fat_mount(&fs, &ram.bd, NULL, NULL));
    write_file("u.txt", "u", 1);
    check(mf_fat_stat(&fs, "u.txt", &st));
    assert_int_equal(st.mtime, 315532800);
}

#define ALL_FLAVOURS(test)                                                                         \
    cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &fat12),                       \
        cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &fat16),                   \
        cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &fat32),                   \
        cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &fat12_4k)
#define FAT12_ONLY(test) cmocka_unit_test_prestate_setup_teardown(test, setup, teardown, &fat12)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ALL_FLAVOURS(test_format_geometry),
        cmocka_unit_test(test_format_label),
        cmocka_unit_test(test_format_refuses_what_does_not_fit),
        cmocka_unit_test(test_format_forced_types),
        FAT12_ONLY(test_unmount_with_open_file),
        ALL_FLAVOURS(test_create_write_read),
        ALL_FLAVOURS(test_many_clusters_any_split),
        ALL_FLAVOURS(test_seek_tell_and_gaps),
        ALL_FLAVOURS(test_gaps_over_old_data_read_zero),
        ALL_FLAVOURS(test_truncate),
        ALL_FLAVOURS(test_open_flags),
        ALL_FLAVOURS(test_two_handles_on_one_file),
        ALL_FLAVOURS(test_mkdir_rmdir),
        ALL_FLAVOURS(test_remove),
        ALL_FLAVOURS(test_remove_tree_barriers),
        ALL_FLAVOURS(test_rename_and_move),
        ALL_FLAVOURS(test_replace),
        ALL_FLAVOURS(test_readdir_listing),
        ALL_FLAVOURS(test_space_accounting),
        ALL_FLAVOURS(test_long_names),
        ALL_FLAVOURS(test_utf8_names),
        ALL_FLAVOURS(test_mixed_case_names),
        ALL_FLAVOURS(test_trailing_dots_and_spaces),
        ALL_FLAVOURS(test_invalid_names),
        ALL_FLAVOURS(test_dot_paths),
        ALL_FLAVOURS(test_deep_paths),
        ALL_FLAVOURS(test_directory_growth),
        ALL_FLAVOURS(test_root_directory_full),
        ALL_FLAVOURS(test_volume_full),
        /* The same code on every type; the small volumes keep the many runs quick. */
        FAT12_ONLY(test_device_errors_drop_the_change),
        cmocka_unit_test_prestate_setup_teardown(test_device_errors_drop_the_change, setup,
                                                 teardown, &fat12_4k),
        ALL_FLAVOURS(test_short_name_collisions),
        ALL_FLAVOURS(test_path_in),
        FAT12_ONLY(test_timestamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
