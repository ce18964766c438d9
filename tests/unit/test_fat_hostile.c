/* Hostile and damaged FAT volumes, built by hand with one defect each: every case must end in a
 * clear error (MF_ECORRUPT, MF_EINVAL at mount), never a crash, a hang or an access outside the
 * volume. The device has guard blocks past the volume that fail the test when touched, and a
 * budget of device calls that turns an endless loop into a failure instead of a hang. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SECTOR        512u
#define GUARD_BLOCKS  64u
#define GUARD_BYTE    0xA5u
#define DEVICE_BUDGET 2000000ul /* device calls per case; a correct driver needs far fewer */

/* The FAT12 volume every case starts from: 2 MiB, one sector per cluster, 2 FATs of 12
 * sectors, 32 root entries. 4069 clusters (FAT12 holds at most 4084), so the FAT spans 12
 * sectors: chains can visit more FAT sectors than the driver caches. */
#define V12_SECTORS      4096u
#define V12_FAT_SECTORS  12u
#define V12_ROOT_ENTRIES 32u
#define V12_FIRST_DATA   (1u + 2u * V12_FAT_SECTORS + V12_ROOT_ENTRIES * 32u / SECTOR)
#define V12_CLUSTERS     (V12_SECTORS - V12_FIRST_DATA)

/* The FAT32 volume: 32 reserved sectors, 65600 clusters of one sector (FAT32 needs 65525). */
#define V32_RESERVED    32u
#define V32_CLUSTERS    65600u
#define V32_FAT_SECTORS (((V32_CLUSTERS + 2u) * 4u + SECTOR - 1u) / SECTOR)
#define V32_SECTORS     (V32_RESERVED + 2u * V32_FAT_SECTORS + V32_CLUSTERS)

#define FILE_CLUSTER  2u /* FILE.TXT: clusters 2..5, 2048 bytes */
#define FILE_SIZE     2048u
#define DIR_CLUSTER   100u /* DIR: ".", "..", INNER.TXT */
#define INNER_CLUSTER 101u
#define INNER_SIZE    100u

struct volume {
    uint8_t *image; /* volume, then guard blocks */
    uint32_t sectors;
    int type; /* 12 or 32 */
    uint32_t first_fat, fat_sectors, first_root, root_entries, first_data, clusters;
};

struct device {
    struct mf_bd bd;
    unsigned long calls;
    bool outside, over_budget;
    char outside_what[160];
};

static struct volume vol;
static struct device dev;
static struct mf_fat fs;

/* ---- the guarded device ------------------------------------------------------------------ */

static bool device_touch(mf_block_t block, size_t count, const char *op)
{
    if (++dev.calls > DEVICE_BUDGET) {
        dev.over_budget = true;
        return false;
    }
    if (block + count > vol.sectors || block + count < block) {
        if (!dev.outside)
            snprintf(dev.outside_what, sizeof dev.outside_what,
                     "%s of blocks %llu..%llu, volume has %u sectors", op,
                     (unsigned long long)block, (unsigned long long)(block + count - 1),
                     vol.sectors);
        dev.outside = true;
        return false;
    }
    return true;
}

static int device_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    (void)bd;
    if (!device_touch(block, count, "read"))
        return MF_EIO;
    memcpy(buffer, vol.image + block * SECTOR, count * SECTOR);
    return 0;
}

static int device_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    (void)bd;
    if (!device_touch(block, count, "write"))
        return MF_EIO;
    memcpy(vol.image + block * SECTOR, buffer, count * SECTOR);
    return 0;
}

static int device_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    (void)bd;
    if (!device_touch(block, count, "erase"))
        return MF_EIO;
    memset(vol.image + block * SECTOR, 0, count * SECTOR);
    return 0;
}

static int device_sync(const struct mf_bd *bd)
{
    (void)bd;
    if (++dev.calls > DEVICE_BUDGET) {
        dev.over_budget = true;
        return MF_EIO;
    }
    return 0;
}

/* The device spans the volume plus the guard, unless a case shrinks it. */
static void device_init(mf_block_t blocks)
{
    memset(&dev, 0, sizeof dev);
    dev.bd.read = device_read;
    dev.bd.prog = device_prog;
    dev.bd.erase = device_erase;
    dev.bd.sync = device_sync;
    dev.bd.block_size = SECTOR;
    dev.bd.block_count = blocks;
}

static void device_check(void)
{
    if (dev.outside)
        fail_msg("the driver reached outside the volume: %s", dev.outside_what);
    if (dev.over_budget)
        fail_msg("more than %lu device calls: the driver loops", DEVICE_BUDGET);
}

/* ---- building volumes -------------------------------------------------------------------- */

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xFFFFu);
    put16(p + 2, v >> 16);
}

static uint8_t *sector_at(uint32_t sector)
{
    assert_true(sector < vol.sectors);
    return vol.image + (size_t)sector * SECTOR;
}

static uint8_t *cluster_at(uint32_t cluster)
{
    assert_true(cluster >= 2 && cluster < vol.clusters + 2);
    return sector_at(vol.first_data + cluster - 2);
}

static void fat_set(uint32_t cluster, uint32_t value)
{
    for (uint32_t copy = 0; copy < 2; copy++) {
        uint8_t *fat = sector_at(vol.first_fat + copy * vol.fat_sectors);
        if (vol.type == 32) {
            put32(fat + cluster * 4u, value & 0x0FFFFFFFu);
            continue;
        }
        uint8_t *p = fat + cluster + cluster / 2u;
        if (cluster & 1u) {
            p[0] = (uint8_t)((p[0] & 0x0Fu) | ((value & 0x0Fu) << 4));
            p[1] = (uint8_t)(value >> 4);
        } else {
            p[0] = (uint8_t)value;
            p[1] = (uint8_t)((p[1] & 0xF0u) | ((value >> 8) & 0x0Fu));
        }
    }
}

static uint32_t eoc(void)
{
    return vol.type == 32 ? 0x0FFFFFFFu : 0xFFFu;
}

/* A chain through the given clusters, ended by end-of-chain. */
static void chain(const uint32_t *clusters, size_t count)
{
    for (size_t i = 0; i < count; i++)
        fat_set(clusters[i], i + 1 < count ? clusters[i + 1] : eoc());
}

/* Directory slot `index` of the directory at `cluster` (0: the fixed FAT12 root). */
static uint8_t *slot(uint32_t cluster, uint32_t index)
{
    if (cluster == 0) {
        assert_true(index < vol.root_entries);
        return sector_at(vol.first_root) + index * 32u;
    }
    assert_true(index < SECTOR / 32u);
    return cluster_at(cluster) + index * 32u;
}

static void entry(uint8_t *e, const char name[11], uint8_t attributes, uint32_t cluster,
                  uint32_t size)
{
    memset(e, 0, 32);
    memcpy(e, name, 11);
    e[11] = attributes;
    put16(e + 20, cluster >> 16);
    put16(e + 22, 0);    /* 00:00:00 */
    put16(e + 24, 0x21); /* 1980-01-01 */
    put16(e + 26, cluster & 0xFFFFu);
    put32(e + 28, size);
}

static uint8_t pattern_byte(uint32_t cluster, uint32_t offset)
{
    return (uint8_t)(cluster * 31u + offset * 7u + 1u);
}

static void fill_cluster(uint32_t cluster)
{
    uint8_t *p = cluster_at(cluster);
    for (uint32_t i = 0; i < SECTOR; i++)
        p[i] = pattern_byte(cluster, i);
}

static void boot_common(uint8_t *b)
{
    b[0] = 0xEB;
    b[1] = 0x3C;
    b[2] = 0x90;
    memcpy(b + 3, "MSWIN4.1", 8);
    put16(b + 11, SECTOR);
    b[13] = 1; /* sectors per cluster */
    b[16] = 2; /* FATs */
    b[21] = 0xF8;
    put16(b + 24, 32);
    put16(b + 26, 2);
    b[510] = 0x55;
    b[511] = 0xAA;
}

/* FAT12 base: label, FILE.TXT (clusters 2..5), DIR (cluster 100) holding INNER.TXT. */
static void build_fat12(void)
{
    free(vol.image);
    memset(&vol, 0, sizeof vol);
    vol.type = 12;
    vol.sectors = V12_SECTORS;
    vol.first_fat = 1;
    vol.fat_sectors = V12_FAT_SECTORS;
    vol.first_root = 1 + 2 * V12_FAT_SECTORS;
    vol.root_entries = V12_ROOT_ENTRIES;
    vol.first_data = V12_FIRST_DATA;
    vol.clusters = V12_CLUSTERS;
    vol.image = calloc((size_t)vol.sectors + GUARD_BLOCKS, SECTOR);
    assert_non_null(vol.image);
    memset(vol.image + (size_t)vol.sectors * SECTOR, GUARD_BYTE, GUARD_BLOCKS * SECTOR);

    uint8_t *b = sector_at(0);
    boot_common(b);
    put16(b + 14, 1); /* reserved sectors */
    put16(b + 17, V12_ROOT_ENTRIES);
    put16(b + 19, V12_SECTORS);
    put16(b + 22, V12_FAT_SECTORS);
    b[36] = 0x80;
    b[38] = 0x29;
    put32(b + 39, 0x12345678u);
    memcpy(b + 43, "HOSTILE    ", 11);
    memcpy(b + 54, "FAT12   ", 8);

    fat_set(0, 0xFF8);
    fat_set(1, 0xFFF);
    entry(slot(0, 0), "HOSTILE    ", MF_FAT_ATTR_VOLUME_ID, 0, 0);
    entry(slot(0, 1), "FILE    TXT", MF_FAT_ATTR_ARCHIVE, FILE_CLUSTER, FILE_SIZE);
    entry(slot(0, 2), "DIR        ", MF_FAT_ATTR_DIRECTORY, DIR_CLUSTER, 0);
    const uint32_t file_chain[] = {2, 3, 4, 5};
    chain(file_chain, 4);
    for (uint32_t c = 2; c <= 5; c++)
        fill_cluster(c);
    fat_set(DIR_CLUSTER, eoc());
    entry(slot(DIR_CLUSTER, 0), ".          ", MF_FAT_ATTR_DIRECTORY, DIR_CLUSTER, 0);
    entry(slot(DIR_CLUSTER, 1), "..         ", MF_FAT_ATTR_DIRECTORY, 0, 0);
    entry(slot(DIR_CLUSTER, 2), "INNER   TXT", MF_FAT_ATTR_ARCHIVE, INNER_CLUSTER, INNER_SIZE);
    fat_set(INNER_CLUSTER, eoc());
    fill_cluster(INNER_CLUSTER);
    device_init(vol.sectors + GUARD_BLOCKS);
}

/* FAT32 base: root directory at cluster 2 holding FILE.TXT (cluster 3, one sector). */
static void build_fat32(void)
{
    free(vol.image);
    memset(&vol, 0, sizeof vol);
    vol.type = 32;
    vol.sectors = V32_SECTORS;
    vol.first_fat = V32_RESERVED;
    vol.fat_sectors = V32_FAT_SECTORS;
    vol.first_data = V32_RESERVED + 2 * V32_FAT_SECTORS;
    vol.clusters = V32_CLUSTERS;
    vol.image = calloc((size_t)vol.sectors + GUARD_BLOCKS, SECTOR);
    assert_non_null(vol.image);
    memset(vol.image + (size_t)vol.sectors * SECTOR, GUARD_BYTE, GUARD_BLOCKS * SECTOR);

    uint8_t *b = sector_at(0);
    boot_common(b);
    b[2] = 0x90;
    b[1] = 0x58;
    put16(b + 14, V32_RESERVED);
    put32(b + 32, V32_SECTORS);
    put32(b + 36, V32_FAT_SECTORS);
    put32(b + 44, 2); /* root cluster */
    put16(b + 48, 1); /* FSInfo */
    put16(b + 50, 6); /* backup boot sector */
    b[64] = 0x80;
    b[66] = 0x29;
    put32(b + 67, 0x32323232u);
    memcpy(b + 71, "NO NAME    ", 11);
    memcpy(b + 82, "FAT32   ", 8);
    memcpy(sector_at(6), b, SECTOR);

    uint8_t *info = sector_at(1);
    put32(info, 0x41615252u);
    put32(info + 484, 0x61417272u);
    put32(info + 488, V32_CLUSTERS - 2);
    put32(info + 492, 4);
    put32(info + 508, 0xAA550000u);

    fat_set(0, 0x0FFFFFF8u);
    fat_set(1, 0x0FFFFFFFu);
    fat_set(2, eoc());
    fat_set(3, eoc());
    fill_cluster(3);
    entry(slot(2, 0), "FILE    TXT", MF_FAT_ATTR_ARCHIVE, 3, SECTOR);
    device_init(vol.sectors + GUARD_BLOCKS);
}

static int teardown(void **state)
{
    (void)state;
    free(vol.image);
    vol.image = NULL;
    return 0;
}

/* ---- checks ------------------------------------------------------------------------------ */

#define assert_error(expr, ...) check_error((expr), #expr, __FILE__, __LINE__, __VA_ARGS__, 1)

/* Fails unless `rc` is one of the listed codes (the list ends at the sentinel 1). */
static void check_error(int rc, const char *expr, const char *file, int line, ...)
{
    va_list ap;
    va_start(ap, line);
    char wanted[160] = "";
    size_t used = 0;
    for (int code = va_arg(ap, int); code != 1; code = va_arg(ap, int)) {
        if (rc == code) {
            va_end(ap);
            return;
        }
        int n = snprintf(wanted + used, sizeof wanted - used, " %d (%s)", code,
                         code == 0 ? "ok" : mf_strerror(code));
        if (n > 0 && (size_t)n < sizeof wanted - used)
            used += (size_t)n;
    }
    va_end(ap);
    fail_msg("%s:%d: %s gave %d (%s); expected one of:%s", file, line, expr, rc,
             rc >= 0 ? "no error" : mf_strerror(rc), wanted);
}

static void mount_ok(void)
{
    int rc = mf_fat_mount(&fs, &dev.bd, NULL, NULL);
    if (rc != 0)
        fail_msg("mount of the case's volume failed: %d (%s)", rc, mf_strerror(rc));
}

static void unmount_ok(void)
{
    int rc = mf_fat_unmount(&fs);
    device_check();
    if (rc != 0)
        fail_msg("unmount failed: %d (%s)", rc, mf_strerror(rc));
}

static void expect_mount_refused(const char *what)
{
    int rc = mf_fat_mount(&fs, &dev.bd, NULL, NULL);
    device_check();
    if (rc != MF_ECORRUPT && rc != MF_EINVAL)
        fail_msg("%s: mount gave %d (%s), expected MF_ECORRUPT or MF_EINVAL", what, rc,
                 rc >= 0 ? "no error" : mf_strerror(rc));
}

/* Reads the whole file; returns the last result (0 at a clean end, else the error) and the
 * bytes read. Bounded by the budget of calls. */
static int read_all(const char *path, uint8_t *buffer, uint32_t capacity, uint32_t *total)
{
    struct mf_fat_file file;
    *total = 0;
    int rc = mf_fat_open(&fs, &file, path, MF_FAT_O_RDONLY);
    if (rc != 0)
        return rc;
    static uint8_t sink[SECTOR * 4];
    for (unsigned calls = 0; calls < 100000u; calls++) {
        rc = mf_fat_read(&fs, &file, sink, sizeof sink);
        if (rc <= 0)
            break;
        if (buffer && *total + (uint32_t)rc <= capacity)
            memcpy(buffer + *total, sink, (size_t)rc);
        *total += (uint32_t)rc;
    }
    int close_rc = mf_fat_close(&fs, &file);
    assert_int_equal(close_rc, 0);
    device_check();
    return rc;
}

/* Bounded walk of the whole tree (our own stack, depth-limited). Returns the number of
 * entries seen, or the first error. */
static long walk(unsigned max_depth, unsigned max_entries)
{
    struct level {
        struct mf_fat_dir dir;
        char path[MF_FAT_PATH_MAX];
    };
    static struct level stack[40];
    static struct mf_fat_stat st;
    unsigned depth = 1;
    long seen = 0;
    assert_true(max_depth <= 40);
    strcpy(stack[0].path, "");
    int rc = mf_fat_opendir(&fs, &stack[0].dir, "/");
    if (rc != 0)
        return rc;
    while (depth > 0) {
        struct level *level = &stack[depth - 1];
        rc = mf_fat_readdir(&fs, &level->dir, &st);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            depth--;
            continue;
        }
        if (++seen > (long)max_entries)
            fail_msg("walk: more than %u entries, readdir does not stop", max_entries);
        if (!st.is_dir || depth >= max_depth)
            continue;
        struct level *next = &stack[depth];
        static char joined[MF_FAT_PATH_MAX];
        int n = snprintf(joined, sizeof joined, "%s/%s", level->path, st.name);
        if (n < 0 || (size_t)n >= sizeof joined)
            continue;
        memcpy(next->path, joined, (size_t)n + 1);
        rc = mf_fat_opendir(&fs, &next->dir, next->path);
        if (rc != 0)
            return rc;
        depth++;
    }
    return seen;
}

/* ---- the control: the hand-built volumes are valid ----------------------------------------- */

static void test_control_fat12_volume_is_valid(void **state)
{
    (void)state;
    build_fat12();
    mount_ok();
    assert_int_equal(mf_fat_geometry(&fs)->type, MF_FAT12);
    assert_int_equal(mf_fat_geometry(&fs)->cluster_count, V12_CLUSTERS);

    static uint8_t data[FILE_SIZE];
    uint32_t total;
    assert_int_equal(read_all("FILE.TXT", data, sizeof data, &total), 0);
    assert_int_equal(total, FILE_SIZE);
    for (uint32_t i = 0; i < FILE_SIZE; i++)
        if (data[i] != pattern_byte(FILE_CLUSTER + i / SECTOR, i % SECTOR))
            fail_msg("FILE.TXT byte %u differs", i);
    assert_int_equal(read_all("dir/inner.txt", NULL, 0, &total), 0);
    assert_int_equal(total, INNER_SIZE);
    assert_int_equal(walk(8, 100), 3);

    /* Writing until full stays inside the volume (the guard would say otherwise). */
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&fs, &file, "FULL.BIN", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    static uint8_t chunk[64 * SECTOR];
    memset(chunk, 0x5A, sizeof chunk);
    int rc;
    unsigned rounds = 0;
    while ((rc = mf_fat_write(&fs, &file, chunk, sizeof chunk)) == (int)sizeof chunk)
        assert_true(++rounds < 1000);
    assert_int_equal(rc, MF_ENOSPC);
    assert_int_equal(mf_fat_close(&fs, &file), 0);
    unmount_ok();
    for (size_t i = (size_t)vol.sectors * SECTOR; i < ((size_t)vol.sectors + GUARD_BLOCKS) * SECTOR;
         i++)
        assert_int_equal(vol.image[i], GUARD_BYTE);
}

static void test_control_fat32_volume_is_valid(void **state)
{
    (void)state;
    build_fat32();
    mount_ok();
    assert_int_equal(mf_fat_geometry(&fs)->type, MF_FAT32);
    assert_int_equal(mf_fat_geometry(&fs)->cluster_count, V32_CLUSTERS);
    uint32_t total;
    assert_int_equal(read_all("file.txt", NULL, 0, &total), 0);
    assert_int_equal(total, SECTOR);
    assert_int_equal(walk(8, 100), 1);
    unmount_ok();
}

/* ---- boot sector --------------------------------------------------------------------------- */

static void test_missing_boot_signature(void **state)
{
    (void)state;
    build_fat12();
    sector_at(0)[510] = 0;
    sector_at(0)[511] = 0;
    expect_mount_refused("no 0x55AA signature");
}

static void test_bad_bytes_per_sector(void **state)
{
    (void)state;
    const uint32_t values[] = {0, 1, 3, 128, 256, 511, 513, 1000, 0xFFFF};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        build_fat12();
        put16(sector_at(0) + 11, values[i]);
        char what[64];
        snprintf(what, sizeof what, "bytes per sector %u", values[i]);
        expect_mount_refused(what);
        teardown(NULL);
    }
}

static void test_bad_sectors_per_cluster(void **state)
{
    (void)state;
    const uint8_t values[] = {0, 3, 5, 6, 7, 12, 48, 255};
    for (size_t i = 0; i < sizeof values; i++) {
        build_fat12();
        sector_at(0)[13] = values[i];
        char what[64];
        snprintf(what, sizeof what, "sectors per cluster %u", values[i]);
        expect_mount_refused(what);
        teardown(NULL);
    }
}

static void test_total_sectors_beyond_device(void **state)
{
    (void)state;
    build_fat12();
    put16(sector_at(0) + 19, 0);
    put32(sector_at(0) + 32, V12_SECTORS + GUARD_BLOCKS + 1);
    expect_mount_refused("total sectors past the device (32-bit field)");
    teardown(NULL);

    build_fat12();
    device_init(V12_SECTORS - 8); /* the device is shorter than the volume says */
    expect_mount_refused("device shorter than the volume");
    teardown(NULL);

    build_fat12();
    put16(sector_at(0) + 19, 0);
    put32(sector_at(0) + 32, 0);
    expect_mount_refused("zero total sectors");
    teardown(NULL);

    build_fat12();
    put16(sector_at(0) + 19, 0);
    put32(sector_at(0) + 32, 0xFFFFFFFFu);
    expect_mount_refused("4G total sectors");
}

static void test_layout_does_not_fit(void **state)
{
    (void)state;
    const struct {
        unsigned offset, width;
        uint32_t value;
        const char *what;
    } cases[] = {
        {22, 2, 1, "FAT of 1 sector for 4069 clusters"},
        {22, 2, V12_FAT_SECTORS - 2, "FAT 2 sectors too small"},
        {14, 2, 0, "no reserved sector"},
        {16, 1, 0, "no FAT"},
        {17, 2, 0xFFF0, "root directory larger than the volume"},
        {14, 2, V12_SECTORS, "reserved sectors fill the volume"},
        {22, 2, 0x7FFF, "FATs larger than the volume"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_fat12();
        uint8_t *b = sector_at(0);
        if (cases[i].width == 1)
            b[cases[i].offset] = (uint8_t)cases[i].value;
        else
            put16(b + cases[i].offset, cases[i].value);
        expect_mount_refused(cases[i].what);
        teardown(NULL);
    }
}

static void test_fat32_root_cluster_out_of_range(void **state)
{
    (void)state;
    const uint32_t values[] = {0, 1, V32_CLUSTERS + 2, 0x0FFFFFF7u, 0x0FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        build_fat32();
        put32(sector_at(0) + 44, values[i]);
        int rc = mf_fat_mount(&fs, &dev.bd, NULL, NULL);
        device_check();
        if (rc == 0) {
            /* Mount may defer the check; the first use of the root must not. */
            struct mf_fat_dir dir;
            struct mf_fat_stat st;
            int use = mf_fat_opendir(&fs, &dir, "/");
            if (use == 0)
                use = mf_fat_readdir(&fs, &dir, &st);
            device_check();
            if (use != MF_ECORRUPT)
                fail_msg("root cluster 0x%X: mount ok, listing the root gave %d", values[i], use);
            assert_error(mf_fat_open(&fs, &(struct mf_fat_file){0}, "NEW.TXT",
                                     MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
                         MF_ECORRUPT);
            unmount_ok();
        } else if (rc != MF_ECORRUPT && rc != MF_EINVAL) {
            fail_msg("root cluster 0x%X: mount gave %d", values[i], rc);
        }
        teardown(NULL);
    }
}

static void test_fat32_hostile_fsinfo(void **state)
{
    (void)state;
    build_fat32();
    put32(sector_at(1) + 488, 0xFFFFFFF0u); /* free count larger than the volume */
    put32(sector_at(1) + 492, 0x7FFFFFF0u); /* next-free hint out of range */
    mount_ok();
    uint64_t free_bytes, total_bytes;
    assert_int_equal(mf_fat_space(&fs, &free_bytes, &total_bytes), 0);
    assert_true(free_bytes <= total_bytes);
    assert_int_equal(total_bytes, (uint64_t)V32_CLUSTERS * SECTOR);
    struct mf_fat_file file;
    static uint8_t data[8 * SECTOR];
    memset(data, 0x33, sizeof data);
    assert_int_equal(mf_fat_open(&fs, &file, "new.bin", MF_FAT_O_RDWR | MF_FAT_O_CREAT), 0);
    assert_int_equal(mf_fat_write(&fs, &file, data, sizeof data), (int)sizeof data);
    assert_int_equal(mf_fat_close(&fs, &file), 0);
    uint32_t total;
    assert_int_equal(read_all("file.txt", NULL, 0, &total), 0);
    assert_int_equal(total, SECTOR);
    static uint8_t back[sizeof data];
    assert_int_equal(read_all("new.bin", back, sizeof back, &total), 0);
    assert_int_equal(total, sizeof data);
    assert_memory_equal(back, data, sizeof data);
    unmount_ok();

    /* An FSInfo sector number pointing into the data area: never written there. */
    build_fat32();
    const uint32_t victim = 0xFFFEu - (V32_RESERVED + 2 * V32_FAT_SECTORS) + 2;
    put16(sector_at(0) + 48, 0xFFFE);
    fat_set(victim, eoc());
    fill_cluster(victim);
    int rc = mf_fat_mount(&fs, &dev.bd, NULL, NULL);
    device_check();
    if (rc == 0) {
        assert_int_equal(mf_fat_space(&fs, &free_bytes, &total_bytes), 0);
        assert_int_equal(mf_fat_open(&fs, &file, "more.bin", MF_FAT_O_RDWR | MF_FAT_O_CREAT), 0);
        assert_int_equal(mf_fat_write(&fs, &file, data, sizeof data), (int)sizeof data);
        assert_int_equal(mf_fat_close(&fs, &file), 0);
        unmount_ok();
        for (uint32_t i = 0; i < SECTOR; i++)
            if (cluster_at(victim)[i] != pattern_byte(victim, i))
                fail_msg("the driver wrote FSInfo into data sector 0xFFFE");
    } else {
        assert_error(rc, MF_ECORRUPT, MF_EINVAL);
    }
}

/* ---- cluster chains ------------------------------------------------------------------------ */

/* FILE.TXT's chain loops through 10 clusters in 10 different FAT sectors (more than the driver
 * caches), and its size claims more than the volume holds. */
static void make_file_loop(void)
{
    uint32_t loop[10];
    for (uint32_t i = 0; i < 10; i++)
        loop[i] = 2 + i * 400;
    chain(loop, 10);
    fat_set(loop[9], loop[0]);
    put32(slot(0, 1) + 28, 3u * 1024u * 1024u);
}

static void test_file_chain_loop_read(void **state)
{
    (void)state;
    build_fat12();
    make_file_loop();
    mount_ok();
    uint32_t total;
    int rc = read_all("FILE.TXT", NULL, 0, &total);
    if (rc != MF_ECORRUPT || total > V12_CLUSTERS * SECTOR)
        fail_msg("reading a file whose chain loops gave %d after %u bytes (the volume holds %u "
                 "bytes); expected MF_ECORRUPT within them",
                 rc, total, V12_CLUSTERS * SECTOR);
    struct mf_fat_file file;
    static uint8_t buffer[64];
    assert_int_equal(mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_RDONLY), 0);
    assert_error(mf_fat_seek(&fs, &file, 2500000), 0, MF_ECORRUPT);
    assert_error(mf_fat_read(&fs, &file, buffer, sizeof buffer), MF_ECORRUPT);
    assert_int_equal(mf_fat_close(&fs, &file), 0);
    unmount_ok();
}

static void test_file_chain_loop_write(void **state)
{
    (void)state;
    build_fat12();
    make_file_loop();
    mount_ok();
    struct mf_fat_file file;
    static uint8_t buffer[64];
    assert_int_equal(mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_RDWR), 0);
    assert_error(mf_fat_seek(&fs, &file, 3u * 1024u * 1024u), 0, MF_ECORRUPT);
    assert_error(mf_fat_write(&fs, &file, buffer, sizeof buffer), MF_ECORRUPT);
    assert_error(mf_fat_truncate(&fs, &file, 3u * 1024u * 1024u + 4096u), MF_ECORRUPT);
    assert_error(mf_fat_close(&fs, &file), 0, MF_ECORRUPT);
    device_check();

    assert_int_equal(mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_WRONLY | MF_FAT_O_APPEND), 0);
    assert_error(mf_fat_write(&fs, &file, buffer, sizeof buffer), MF_ECORRUPT);
    assert_error(mf_fat_close(&fs, &file), 0, MF_ECORRUPT);
    unmount_ok();
}

static void test_file_chain_loop_remove(void **state)
{
    (void)state;
    build_fat12();
    make_file_loop();
    mount_ok();
    /* Freeing a looping chain must stop too. */
    assert_error(mf_fat_remove(&fs, "FILE.TXT"), 0, MF_ECORRUPT);
    uint64_t free_bytes, total_bytes;
    assert_int_equal(mf_fat_space(&fs, &free_bytes, &total_bytes), 0);
    assert_true(free_bytes <= total_bytes);
    struct mf_fat_stat st;
    assert_error(mf_fat_stat(&fs, "FILE.TXT", &st), MF_ENOENT);
    assert_true(walk(8, 100) >= 2);
    unmount_ok();
}

static void test_file_chain_loop_truncate(void **state)
{
    (void)state;
    build_fat12();
    make_file_loop();
    mount_ok();
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_RDWR), 0);
    /* The chain cut after cluster 2 (index 1 = cluster 400) loops back to 2: freeing "the
     * rest" must not free the part that was kept. */
    int rc = mf_fat_truncate(&fs, &file, 1000);
    assert_error(rc, 0, MF_ECORRUPT);
    assert_error(mf_fat_close(&fs, &file), 0, MF_ECORRUPT);
    device_check();
    if (rc == 0) {
        static uint8_t data[1000];
        uint32_t total;
        rc = read_all("FILE.TXT", data, sizeof data, &total);
        if (rc != 0 || total != 1000)
            fail_msg("truncate of a looping chain said ok, but the kept 1000 bytes read back "
                     "as %d (%u bytes): it freed the clusters it kept",
                     rc, total);
    }
    rc = mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_RDWR | MF_FAT_O_TRUNC);
    assert_error(rc, 0, MF_ECORRUPT);
    if (rc == 0)
        assert_int_equal(mf_fat_close(&fs, &file), 0);
    unmount_ok();
}

static void test_single_cluster_self_loop(void **state)
{
    (void)state;
    build_fat12();
    fat_set(FILE_CLUSTER, FILE_CLUSTER);
    put32(slot(0, 1) + 28, 3u * 1024u * 1024u);
    mount_ok();
    uint32_t total;
    int rc = read_all("FILE.TXT", NULL, 0, &total);
    if (rc != MF_ECORRUPT || total > V12_CLUSTERS * SECTOR)
        fail_msg("reading a file whose cluster points to itself gave %d after %u bytes; "
                 "expected MF_ECORRUPT within %u bytes",
                 rc, total, V12_CLUSTERS * SECTOR);
    assert_error(mf_fat_remove(&fs, "FILE.TXT"), 0, MF_ECORRUPT);
    unmount_ok();
}

static void test_cluster_out_of_range(void **state)
{
    (void)state;
    const struct {
        uint32_t first, second;
        const char *what;
    } cases[] = {
        {V12_CLUSTERS + 2, 0, "first cluster one past the last"},
        {0xFF0, 0, "first cluster 0xFF0"},
        {1, 0, "first cluster 1 (reserved)"},
        {FILE_CLUSTER, V12_CLUSTERS + 2, "chain goes one past the last cluster"},
        {FILE_CLUSTER, 0, "chain reaches a free cluster"},
        {FILE_CLUSTER, 1, "chain reaches cluster 1"},
        {FILE_CLUSTER, 0xFF7, "chain reaches a bad-cluster mark"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_fat12();
        uint8_t *e = slot(0, 1);
        put16(e + 26, cases[i].first);
        if (cases[i].first == FILE_CLUSTER)
            fat_set(FILE_CLUSTER, cases[i].second);
        mount_ok();
        uint32_t total;
        int rc = read_all("FILE.TXT", NULL, 0, &total);
        if (rc != MF_ECORRUPT)
            fail_msg("%s: reading gave %d, expected MF_ECORRUPT", cases[i].what, rc);
        if (total > SECTOR)
            fail_msg("%s: read %u bytes, only the first cluster is valid", cases[i].what, total);

        struct mf_fat_file file;
        static uint8_t buffer[3000];
        rc = mf_fat_open(&fs, &file, "FILE.TXT", MF_FAT_O_WRONLY | MF_FAT_O_APPEND);
        if (rc == 0) {
            rc = mf_fat_write(&fs, &file, buffer, sizeof buffer);
            assert_error(mf_fat_close(&fs, &file), 0, MF_ECORRUPT);
        }
        if (rc != MF_ECORRUPT)
            fail_msg("%s: appending gave %d, expected MF_ECORRUPT", cases[i].what, rc);
        assert_error(mf_fat_remove(&fs, "FILE.TXT"), 0, MF_ECORRUPT);
        unmount_ok();
        teardown(NULL);
    }
}

static void test_file_size_larger_than_chain(void **state)
{
    (void)state;
    build_fat12();
    const uint32_t short_chain[] = {2, 3};
    chain(short_chain, 2);
    fat_set(4, 0);
    fat_set(5, 0);
    put32(slot(0, 1) + 28, 10000);
    mount_ok();
    static uint8_t data[10000];
    uint32_t total;
    assert_error(read_all("FILE.TXT", data, sizeof data, &total), MF_ECORRUPT);
    assert_true(total <= 2 * SECTOR);
    for (uint32_t i = 0; i < total; i++)
        assert_int_equal(data[i], pattern_byte(FILE_CLUSTER + i / SECTOR, i % SECTOR));
    unmount_ok();
    teardown(NULL);

    build_fat12();
    put16(slot(0, 1) + 26, 0); /* no chain at all, size 2048 */
    mount_ok();
    assert_error(read_all("FILE.TXT", NULL, 0, &total), MF_ECORRUPT);
    assert_int_equal(total, 0);
    unmount_ok();
}

/* ---- directories --------------------------------------------------------------------------- */

/* DIR's chain loops through 12 clusters (more than the driver caches) of deleted entries, with
 * one live entry in the first. */
static void make_directory_loop(void)
{
    uint32_t loop[12];
    for (uint32_t i = 0; i < 12; i++) {
        loop[i] = DIR_CLUSTER + 10 + i * 3;
        for (uint32_t k = 0; k < SECTOR / 32u; k++) {
            uint8_t *e = slot(loop[i], k);
            entry(e, "XDELETEDTXT", MF_FAT_ATTR_ARCHIVE, 0, 0);
            e[0] = 0xE5;
        }
    }
    entry(slot(loop[0], 0), ".          ", MF_FAT_ATTR_DIRECTORY, loop[0], 0);
    entry(slot(loop[0], 1), "..         ", MF_FAT_ATTR_DIRECTORY, 0, 0);
    entry(slot(loop[0], 2), "LIVE    TXT", MF_FAT_ATTR_ARCHIVE, 0, 0);
    chain(loop, 12);
    fat_set(loop[11], loop[0]);
    put16(slot(0, 2) + 26, loop[0]);
}

static void test_directory_chain_loop(void **state)
{
    (void)state;
    build_fat12();
    make_directory_loop();
    mount_ok();
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_opendir(&fs, &dir, "DIR"), 0);
    int rc;
    unsigned entries = 0;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        if (++entries > 70000u)
            fail_msg("readdir of a looping directory returned more than 70000 entries");
    }
    device_check();
    if (rc != MF_ECORRUPT)
        fail_msg("readdir of a looping directory ended with %d after %u entries", rc, entries);

    assert_error(mf_fat_stat(&fs, "DIR/NOPE.TXT", &st), MF_ECORRUPT);
    assert_error(
        mf_fat_open(&fs, &(struct mf_fat_file){0}, "DIR/NEW.TXT", MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
        MF_ECORRUPT);
    assert_error(mf_fat_mkdir(&fs, "DIR/SUB"), MF_ECORRUPT);
    assert_error(mf_fat_rename(&fs, "FILE.TXT", "DIR/FILE.TXT"), MF_ECORRUPT);
    assert_error(mf_fat_rmdir(&fs, "DIR"), MF_ECORRUPT, MF_ENOTEMPTY);
    device_check();
    /* The rest of the volume is still usable. */
    uint32_t total;
    assert_int_equal(read_all("FILE.TXT", NULL, 0, &total), 0);
    assert_int_equal(total, FILE_SIZE);
    unmount_ok();
}

static void test_root_chain_loop_fat32(void **state)
{
    (void)state;
    build_fat32();
    fat_set(2, 2);
    for (uint32_t k = 1; k < SECTOR / 32u; k++) { /* deleted entries: no end marker */
        entry(slot(2, k), "XDELETEDTXT", MF_FAT_ATTR_ARCHIVE, 0, 0);
        slot(2, k)[0] = 0xE5;
    }
    mount_ok();
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    int rc = mf_fat_opendir(&fs, &dir, "/");
    unsigned entries = 0;
    while (rc == 0 && (rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        if (++entries > 70000u)
            fail_msg("readdir of a looping root returned more than 70000 entries");
        rc = 0;
    }
    device_check();
    if (rc != MF_ECORRUPT)
        fail_msg("readdir of a root whose cluster points to itself ended with %d after %u "
                 "entries",
                 rc, entries);
    assert_error(mf_fat_stat(&fs, "NOPE.TXT", &st), MF_ECORRUPT);
    assert_error(mf_fat_mkdir(&fs, "NEWDIR"), MF_ECORRUPT);
    unmount_ok();
}

static void test_subdirectory_cluster_zero(void **state)
{
    (void)state;
    build_fat12();
    put16(slot(0, 2) + 26, 0);
    static uint8_t root_before[V12_ROOT_ENTRIES * 32u];
    memcpy(root_before, slot(0, 0), sizeof root_before);
    mount_ok();
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    assert_error(mf_fat_opendir(&fs, &dir, "DIR"), MF_ECORRUPT);
    assert_error(mf_fat_stat(&fs, "DIR/FILE.TXT", &st), MF_ECORRUPT);
    assert_error(
        mf_fat_open(&fs, &(struct mf_fat_file){0}, "DIR/NEW.TXT", MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
        MF_ECORRUPT);
    assert_error(mf_fat_mkdir(&fs, "DIR/SUB"), MF_ECORRUPT);
    assert_error(mf_fat_rename(&fs, "FILE.TXT", "DIR/MOVED.TXT"), MF_ECORRUPT);
    assert_int_equal(mf_fat_sync(&fs), 0);
    device_check();
    /* None of that may have landed in the root or cluster 0's imagined place before it. */
    assert_memory_equal(slot(0, 0), root_before, sizeof root_before);
    uint32_t total;
    assert_int_equal(read_all("FILE.TXT", NULL, 0, &total), 0);
    assert_int_equal(total, FILE_SIZE);
    unmount_ok();
}

static void test_directory_contains_itself(void **state)
{
    (void)state;
    build_fat12();
    entry(slot(DIR_CLUSTER, 3), "SELF       ", MF_FAT_ATTR_DIRECTORY, DIR_CLUSTER, 0);
    mount_ok();

    /* A walk of the whole tree stays bounded (here by our depth limit). */
    long seen = walk(30, 200);
    assert_true(seen >= 3 || seen == MF_ECORRUPT);

    /* Paths deeper than MF_FAT_DEPTH_MAX are refused, whatever the volume says. */
    static char path[MF_FAT_PATH_MAX];
    strcpy(path, "DIR");
    for (unsigned i = 0; i < 100; i++)
        strcat(path, "/SELF");
    struct mf_fat_stat st;
    int rc = mf_fat_stat(&fs, path, &st);
    if (rc >= 0)
        fail_msg("a path of 101 folders was accepted");
    strcat(path, "/INNER.TXT");
    assert_true(mf_fat_open(&fs, &(struct mf_fat_file){0}, path, MF_FAT_O_RDONLY) < 0);

    assert_error(mf_fat_rename(&fs, "DIR", "DIR/SELF/MOVED"), MF_EINVAL, MF_ECORRUPT);
    assert_true(mf_fat_rmdir(&fs, "DIR/SELF") < 0);
    assert_true(mf_fat_rmdir(&fs, "DIR") < 0);
    device_check();
    uint32_t total;
    assert_int_equal(read_all("DIR/INNER.TXT", NULL, 0, &total), 0);
    assert_int_equal(total, INNER_SIZE);
    unmount_ok();
}

static void test_dotdot_points_to_itself(void **state)
{
    (void)state;
    build_fat12();
    /* DIR's ".." names DIR itself; OTHER is a folder in the root. */
    entry(slot(DIR_CLUSTER, 1), "..         ", MF_FAT_ATTR_DIRECTORY, DIR_CLUSTER, 0);
    entry(slot(0, 3), "OTHER      ", MF_FAT_ATTR_DIRECTORY, 200, 0);
    fat_set(200, eoc());
    entry(slot(200, 0), ".          ", MF_FAT_ATTR_DIRECTORY, 200, 0);
    entry(slot(200, 1), "..         ", MF_FAT_ATTR_DIRECTORY, 0, 0);
    mount_ok();
    /* Checking "OTHER is not an ancestor of DIR" may walk up through ".." entries. */
    assert_error(mf_fat_rename(&fs, "OTHER", "DIR/OTHER"), 0, MF_ECORRUPT);
    assert_error(mf_fat_rename(&fs, "DIR", "DIR/INNER.TXT/X"), MF_EINVAL, MF_ENOTDIR, MF_ECORRUPT);
    struct mf_fat_stat st;
    assert_error(mf_fat_stat(&fs, "DIR/../FILE.TXT", &st), 0, MF_ECORRUPT);
    long seen = walk(30, 200);
    assert_true(seen >= 3 || seen == MF_ECORRUPT);
    unmount_ok();
}

/* ---- long names ---------------------------------------------------------------------------- */

static uint8_t sfn_checksum(const uint8_t name[11])
{
    uint8_t sum = 0;
    for (int i = 0; i < 11; i++)
        sum = (uint8_t)(((sum & 1u) << 7) + (sum >> 1) + name[i]);
    return sum;
}

enum {
    LFN_BAD_CHECKSUM = 1,
    LFN_ASCENDING = 2, /* entries in the wrong physical order */
    LFN_NO_LAST_FLAG = 4,
    LFN_GAP = 8,      /* the middle entry is missing */
    LFN_ORD_ZERO = 16 /* a sequence number of 0 */
};

/* Writes `units` as LFN entries before an 8.3 entry at root slot `index`; returns the slot
 * after the 8.3 entry. */
static uint32_t long_entry(uint32_t index, const uint16_t *units, unsigned length,
                           const char sfn[11], unsigned flags)
{
    unsigned parts = (length + 12u) / 13u;
    uint8_t checksum = sfn_checksum((const uint8_t *)sfn);
    if (flags & LFN_BAD_CHECKSUM)
        checksum ^= 0x5A;
    static const unsigned offsets[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
    for (unsigned p = 0; p < parts; p++) {
        unsigned ord = (flags & LFN_ASCENDING) ? p + 1u : parts - p;
        if ((flags & LFN_GAP) && parts >= 3 && ord == 2)
            continue;
        uint8_t *e = slot(0, index++);
        memset(e, 0, 32);
        e[0] = (uint8_t)ord;
        if (ord == parts && !(flags & LFN_NO_LAST_FLAG))
            e[0] |= 0x40;
        if ((flags & LFN_ORD_ZERO) && ord == parts)
            e[0] = 0x40; /* "last" flag on sequence number 0 (a plain 0 would end the folder) */
        e[11] = 0x0F;
        e[13] = checksum;
        for (unsigned k = 0; k < 13; k++) {
            unsigned at = (ord - 1u) * 13u + k;
            uint32_t unit = at < length ? units[at] : at == length ? 0 : 0xFFFF;
            put16(e + offsets[k], unit);
        }
    }
    entry(slot(0, index++), sfn, MF_FAT_ATTR_ARCHIVE, 0, 0);
    return index;
}

static unsigned ascii_units(const char *text, uint16_t *units)
{
    unsigned n = 0;
    while (text[n]) {
        units[n] = (uint8_t)text[n];
        n++;
    }
    return n;
}

/* Returns the name readdir gives for the root entry whose short name is `short_name`. */
static void name_of(const char *short_name, char *name, size_t size)
{
    struct mf_fat_dir dir;
    static struct mf_fat_stat st;
    assert_int_equal(mf_fat_opendir(&fs, &dir, "/"), 0);
    int rc;
    unsigned guard = 0;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1 && ++guard < 100) {
        if (strcmp(st.short_name, short_name) == 0) {
            snprintf(name, size, "%s", st.name);
            return;
        }
    }
    fail_msg("no entry with the short name %s in the root (readdir %d)", short_name, rc);
}

static void test_lfn_sequences(void **state)
{
    (void)state;
    static const char *long_name = "A long file name of forty characters.txt";
    uint16_t units[64];
    unsigned length = ascii_units(long_name, units);
    const struct {
        unsigned flags;
        const char *what;
    } cases[] = {
        {0, "valid (control)"},
        {LFN_BAD_CHECKSUM, "bad checksum"},
        {LFN_ASCENDING, "entries in ascending order"},
        {LFN_NO_LAST_FLAG, "no last-entry flag"},
        {LFN_GAP, "middle entry missing"},
        {LFN_ORD_ZERO, "sequence number 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_fat12();
        long_entry(3, units, length, "ALONGF~1TXT", cases[i].flags);
        mount_ok();
        char name[MF_FAT_NAME_UTF8_MAX];
        name_of("ALONGF~1.TXT", name, sizeof name);
        struct mf_fat_stat st;
        if (cases[i].flags == 0) {
            assert_string_equal(name, long_name);
            assert_int_equal(mf_fat_stat(&fs, long_name, &st), 0);
        } else {
            if (strcmp(name, "ALONGF~1.TXT") != 0)
                fail_msg("%s: readdir gave \"%s\", expected the short name", cases[i].what, name);
            int rc = mf_fat_stat(&fs, long_name, &st);
            if (rc != MF_ENOENT)
                fail_msg("%s: the broken long name was found (%d)", cases[i].what, rc);
        }
        assert_int_equal(mf_fat_stat(&fs, "alongf~1.txt", &st), 0);
        assert_int_equal(walk(8, 100), 4);
        unmount_ok();
        teardown(NULL);
    }
}

/* Offset of the first byte that breaks UTF-8 (surrogates and overlong forms included), or -1. */
static long utf8_error_at(const char *text)
{
    const uint8_t *p = (const uint8_t *)text;
    for (size_t i = 0; p[i];) {
        unsigned extra;
        uint32_t cp, min;
        if (p[i] < 0x80) {
            i++;
            continue;
        } else if ((p[i] & 0xE0) == 0xC0) {
            extra = 1, cp = p[i] & 0x1Fu, min = 0x80;
        } else if ((p[i] & 0xF0) == 0xE0) {
            extra = 2, cp = p[i] & 0x0Fu, min = 0x800;
        } else if ((p[i] & 0xF8) == 0xF0) {
            extra = 3, cp = p[i] & 0x07u, min = 0x10000;
        } else {
            return (long)i;
        }
        for (unsigned k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return (long)i;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (long)i;
        i += extra + 1;
    }
    return -1;
}

static void test_lfn_orphans_and_junk(void **state)
{
    (void)state;
    uint16_t units[64];
    unsigned length = ascii_units("Orphaned long name entries", units);
    build_fat12();
    /* LFN entries followed by a deleted 8.3 entry, then by the end of the directory. */
    uint32_t next = long_entry(3, units, length, "ORPHAN  TXT", 0);
    slot(0, next - 1)[0] = 0xE5;
    next = long_entry(next, units, length, "ORPHAN2 TXT", 0);
    memset(slot(0, next - 1), 0, 32);
    mount_ok();
    assert_int_equal(walk(8, 100), 3);
    unmount_ok();
    teardown(NULL);

    /* An unpaired surrogate and a NUL inside the name: the name given back is valid UTF-8. */
    build_fat12();
    length = ascii_units("bad surrogate name.txt", units);
    units[3] = 0xD800;
    units[8] = 0xDC00;
    next = long_entry(3, units, length, "BADSUR~1TXT", 0);
    length = ascii_units("embedded nul.txt", units);
    units[4] = 0;
    long_entry(next, units, length, "EMBEDD~1TXT", 0);
    mount_ok();
    struct mf_fat_dir dir;
    static struct mf_fat_stat st;
    assert_int_equal(mf_fat_opendir(&fs, &dir, "/"), 0);
    int rc;
    unsigned n = 0;
    while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
        assert_true(++n < 100);
        assert_non_null(memchr(st.name, 0, sizeof st.name));
        assert_true(st.name[0] != '\0');
        long bad = utf8_error_at(st.name);
        if (bad >= 0)
            fail_msg("readdir name \"%s\" is not valid UTF-8 at byte %ld", st.name, bad);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 4);
    unmount_ok();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_control_fat12_volume_is_valid, teardown),
        cmocka_unit_test_teardown(test_control_fat32_volume_is_valid, teardown),
        cmocka_unit_test_teardown(test_missing_boot_signature, teardown),
        cmocka_unit_test_teardown(test_bad_bytes_per_sector, teardown),
        cmocka_unit_test_teardown(test_bad_sectors_per_cluster, teardown),
        cmocka_unit_test_teardown(test_total_sectors_beyond_device, teardown),
        cmocka_unit_test_teardown(test_layout_does_not_fit, teardown),
        cmocka_unit_test_teardown(test_fat32_root_cluster_out_of_range, teardown),
        cmocka_unit_test_teardown(test_fat32_hostile_fsinfo, teardown),
        cmocka_unit_test_teardown(test_file_chain_loop_read, teardown),
        cmocka_unit_test_teardown(test_file_chain_loop_write, teardown),
        cmocka_unit_test_teardown(test_file_chain_loop_remove, teardown),
        cmocka_unit_test_teardown(test_file_chain_loop_truncate, teardown),
        cmocka_unit_test_teardown(test_single_cluster_self_loop, teardown),
        cmocka_unit_test_teardown(test_cluster_out_of_range, teardown),
        cmocka_unit_test_teardown(test_file_size_larger_than_chain, teardown),
        cmocka_unit_test_teardown(test_directory_chain_loop, teardown),
        cmocka_unit_test_teardown(test_root_chain_loop_fat32, teardown),
        cmocka_unit_test_teardown(test_subdirectory_cluster_zero, teardown),
        cmocka_unit_test_teardown(test_directory_contains_itself, teardown),
        cmocka_unit_test_teardown(test_dotdot_points_to_itself, teardown),
        cmocka_unit_test_teardown(test_lfn_sequences, teardown),
        cmocka_unit_test_teardown(test_lfn_orphans_and_junk, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
