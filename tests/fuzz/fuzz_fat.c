/* Fuzz target for the FAT driver: the input is a volume image. It is mounted on a RAM device,
 * every folder is walked (bounded), every file is stat'ed and read, then a few writes are tried.
 * Errors are expected; a crash, a hang or an access outside the device is the bug to find. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_BLOCK         512u
#define FUZZ_MIN_BYTES     (64u * 1024u)        /* seeds are cut after their last used sector */
#define FUZZ_MAX_BYTES     (4u * 1024u * 1024u) /* bigger claims meet a smaller device */
#define FUZZ_WALK_DEPTH    8u
#define FUZZ_WALK_ENTRIES  600u
#define FUZZ_READ_BUDGET   (2u * 1024u * 1024u) /* bytes of file data read per input */
#define FUZZ_DEVICE_BUDGET 200000u              /* device calls per input: more is a hang */

struct fuzz_device {
    uint8_t *data;
    mf_block_t blocks;
    unsigned long calls;
};

/* The device aborts on its own range check too: the driver must never ask outside it, even when
 * it bypasses the checked mf_bd_* entry points. */
static void fuzz_check(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct fuzz_device *dev = bd->context;
    if (block > dev->blocks || count > dev->blocks - block) {
        fprintf(stderr, "fuzz_fat: access outside the device: block %llu count %zu of %llu\n",
                (unsigned long long)block, count, (unsigned long long)dev->blocks);
        abort();
    }
    if (++dev->calls > FUZZ_DEVICE_BUDGET) {
        fprintf(stderr, "fuzz_fat: more than %u device calls for one input: a loop\n",
                FUZZ_DEVICE_BUDGET);
        abort();
    }
}

static int fuzz_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    struct fuzz_device *dev = bd->context;
    fuzz_check(bd, block, count);
    memcpy(buffer, dev->data + block * FUZZ_BLOCK, count * FUZZ_BLOCK);
    return 0;
}

static int fuzz_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    struct fuzz_device *dev = bd->context;
    fuzz_check(bd, block, count);
    memcpy(dev->data + block * FUZZ_BLOCK, buffer, count * FUZZ_BLOCK);
    return 0;
}

static int fuzz_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct fuzz_device *dev = bd->context;
    fuzz_check(bd, block, count);
    memset(dev->data + block * FUZZ_BLOCK, 0, count * FUZZ_BLOCK);
    return 0;
}

static int fuzz_sync(const struct mf_bd *bd)
{
    struct fuzz_device *dev = bd->context;
    if (++dev->calls > FUZZ_DEVICE_BUDGET)
        abort();
    return 0;
}

static uint32_t fuzz_le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t fuzz_le32(const uint8_t *p)
{
    return fuzz_le16(p) | fuzz_le16(p + 2) << 16;
}

/* The device is as big as the boot sector says (so cut seeds mount), within the limits. */
static size_t fuzz_device_bytes(const uint8_t *data, size_t size)
{
    uint64_t bytes = size;
    if (size >= 36) {
        uint32_t sector = fuzz_le16(data + 11);
        uint32_t total = fuzz_le16(data + 19);
        if (total == 0)
            total = fuzz_le32(data + 32);
        if (sector >= 512 && sector <= 4096 && (sector & (sector - 1)) == 0)
            bytes = (uint64_t)total * sector;
    }
    if (bytes < size)
        bytes = size;
    if (bytes < FUZZ_MIN_BYTES)
        bytes = FUZZ_MIN_BYTES;
    if (bytes > FUZZ_MAX_BYTES)
        bytes = FUZZ_MAX_BYTES;
    return (size_t)((bytes + FUZZ_BLOCK - 1) / FUZZ_BLOCK * FUZZ_BLOCK);
}

/* Every result must be 0, a count within what was asked, or one of our error codes. */
static void fuzz_expect_result(int result, int64_t max_count, const char *what)
{
    if (result > max_count || (result < 0 && strcmp(mf_strerror(result), "unknown error") == 0)) {
        fprintf(stderr, "fuzz_fat: %s returned %d\n", what, result);
        abort();
    }
}

static uint32_t read_budget;

static void fuzz_read_file(struct mf_fat *fs, const char *path)
{
    static uint8_t buffer[4096];
    struct mf_fat_file file;
    int rc = mf_fat_open(fs, &file, path, MF_FAT_O_RDONLY);
    fuzz_expect_result(rc, 0, "open");
    if (rc != 0)
        return;
    uint32_t total = 0;
    while (read_budget > 0) {
        uint32_t want = read_budget < sizeof buffer ? read_budget : (uint32_t)sizeof buffer;
        int n = mf_fat_read(fs, &file, buffer, want);
        fuzz_expect_result(n, want, "read");
        if (n <= 0)
            break;
        read_budget -= (uint32_t)n;
        total += (uint32_t)n;
    }
    if (total > mf_fat_size(&file)) {
        fprintf(stderr, "fuzz_fat: read %u bytes of a %u-byte file %s\n", total, mf_fat_size(&file),
                path);
        abort();
    }
    /* A second pass from the middle takes the seek path through the chain. */
    if (mf_fat_seek(fs, &file, mf_fat_size(&file) / 2) == 0)
        fuzz_expect_result(mf_fat_read(fs, &file, buffer, 512), 512, "read after seek");
    fuzz_expect_result(mf_fat_close(fs, &file), 0, "close");
}

struct fuzz_level {
    struct mf_fat_dir dir;
    size_t path_length;
};

/* Depth-first walk with an explicit stack: the volume decides the shape, not our C stack. */
static void fuzz_walk(struct mf_fat *fs, char *first_file, char *first_dir)
{
    static struct fuzz_level stack[FUZZ_WALK_DEPTH];
    static char path[MF_FAT_PATH_MAX];
    static struct mf_fat_stat st, again;
    unsigned depth = 0, entries = 0;

    path[0] = '\0';
    if (mf_fat_opendir(fs, &stack[0].dir, "/") != 0)
        return;
    stack[0].path_length = 0;
    depth = 1;
    while (depth > 0 && entries < FUZZ_WALK_ENTRIES) {
        struct fuzz_level *level = &stack[depth - 1];
        int rc = mf_fat_readdir(fs, &level->dir, &st);
        fuzz_expect_result(rc, 1, "readdir");
        if (rc <= 0) {
            depth--;
            continue;
        }
        entries++;
        if (memchr(st.name, '\0', sizeof st.name) == NULL ||
            memchr(st.short_name, '\0', sizeof st.short_name) == NULL) {
            fprintf(stderr, "fuzz_fat: readdir returned an unterminated name\n");
            abort();
        }
        path[level->path_length] = '\0';
        int n =
            snprintf(path + level->path_length, sizeof path - level->path_length, "/%s", st.name);
        if (n < 0 || (size_t)n >= sizeof path - level->path_length)
            continue;
        fuzz_expect_result(mf_fat_stat(fs, path, &again), 0, "stat");
        if (st.is_dir) {
            if (first_dir[0] == '\0')
                memcpy(first_dir, path, strlen(path) + 1);
            if (depth < FUZZ_WALK_DEPTH && mf_fat_opendir(fs, &stack[depth].dir, path) == 0) {
                stack[depth].path_length = level->path_length + (size_t)n;
                depth++;
            }
        } else {
            if (first_file[0] == '\0')
                memcpy(first_file, path, strlen(path) + 1);
            fuzz_read_file(fs, path);
        }
    }
}

static void fuzz_write_some(struct mf_fat *fs, const char *first_file, const char *first_dir)
{
    static uint8_t pattern[5000];
    struct mf_fat_file file;
    uint64_t free_bytes, total_bytes;

    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7u);
    fuzz_expect_result(mf_fat_space(fs, &free_bytes, &total_bytes), 0, "space");

    if (mf_fat_open(fs, &file, "/fuzz new file.txt", MF_FAT_O_RDWR | MF_FAT_O_CREAT) == 0) {
        fuzz_expect_result(mf_fat_write(fs, &file, pattern, sizeof pattern), sizeof pattern,
                           "write");
        fuzz_expect_result(mf_fat_seek(fs, &file, 100), 0, "seek");
        fuzz_expect_result(mf_fat_read(fs, &file, pattern, 64), 64, "read back");
        fuzz_expect_result(mf_fat_truncate(fs, &file, 1000), 0, "truncate");
        fuzz_expect_result(mf_fat_close(fs, &file), 0, "close");
    }
    fuzz_expect_result(mf_fat_mkdir(fs, "/fuzzdir"), 0, "mkdir");
    fuzz_expect_result(mf_fat_rename(fs, "/fuzz new file.txt", "/fuzzdir/renamed.txt"), 0,
                       "rename");
    fuzz_expect_result(mf_fat_remove(fs, "/fuzzdir/renamed.txt"), 0, "remove");
    fuzz_expect_result(mf_fat_rmdir(fs, "/fuzzdir"), 0, "rmdir");

    /* The volume's own entries: their chains and directories are the hostile part. */
    if (first_file[0] != '\0') {
        if (mf_fat_open(fs, &file, first_file, MF_FAT_O_WRONLY | MF_FAT_O_APPEND) == 0) {
            fuzz_expect_result(mf_fat_write(fs, &file, pattern, 700), 700, "append");
            fuzz_expect_result(mf_fat_close(fs, &file), 0, "close");
        }
        if (first_dir[0] != '\0') {
            char target[MF_FAT_PATH_MAX];
            if (snprintf(target, sizeof target, "%s/moved file", first_dir) < (int)sizeof target)
                fuzz_expect_result(mf_fat_rename(fs, first_file, target), 0, "rename");
        }
        fuzz_expect_result(mf_fat_remove(fs, first_file), 0, "remove");
    }
    if (first_dir[0] != '\0') {
        fuzz_expect_result(mf_fat_rename(fs, first_dir, "/moved folder"), 0, "rename folder");
        fuzz_expect_result(mf_fat_rmdir(fs, "/moved folder"), 0, "rmdir");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mf_fat fs;
    static char first_file[MF_FAT_PATH_MAX], first_dir[MF_FAT_PATH_MAX];
    struct fuzz_device dev;
    struct mf_bd bd;

    size_t bytes = fuzz_device_bytes(data, size);
    dev.data = calloc(1, bytes);
    if (!dev.data)
        return 0;
    memcpy(dev.data, data, size < bytes ? size : bytes);
    dev.blocks = bytes / FUZZ_BLOCK;
    dev.calls = 0;
    memset(&bd, 0, sizeof bd);
    bd.context = &dev;
    bd.read = fuzz_read;
    bd.prog = fuzz_prog;
    bd.erase = fuzz_erase;
    bd.sync = fuzz_sync;
    bd.block_size = FUZZ_BLOCK;
    bd.block_count = dev.blocks;

    read_budget = FUZZ_READ_BUDGET;
    if (mf_fat_mount(&fs, &bd, NULL, NULL) == 0) {
        first_file[0] = first_dir[0] = '\0';
        fuzz_walk(&fs, first_file, first_dir);
        fuzz_write_some(&fs, first_file, first_dir);
        fuzz_expect_result(mf_fat_unmount(&fs), 0, "unmount");
        /* What we wrote on the hostile volume must again be walkable. */
        if (mf_fat_mount(&fs, &bd, NULL, NULL) == 0) {
            first_file[0] = first_dir[0] = '\0';
            fuzz_walk(&fs, first_file, first_dir);
            fuzz_expect_result(mf_fat_unmount(&fs), 0, "unmount");
        }
    }
    free(dev.data);
    return 0;
}
