/* A FAT volume in RAM for the C tests and benchmarks (see mf_testfat.h): no test framework. */
#include "mf_testfat.h"

#include "mf_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mf_testfat_init(struct mf_testfat *vol, uint32_t block_size, mf_block_t block_count,
                    const struct mf_fat_format_options *options)
{
    static const struct mf_fat_format_options defaults = {0};
    vol->memory =
        block_count <= SIZE_MAX / block_size ? calloc((size_t)block_count, block_size) : NULL;
    if (!vol->memory) {
        fprintf(stderr, "mf_testfat_init: out of memory (%llu blocks of %u bytes)\n",
                (unsigned long long)block_count, block_size);
        return MF_ENOMEM;
    }
    mf_rambd_init(&vol->ram, vol->memory, block_size, block_count);
    int err = mf_fat_format(&vol->ram.bd, options ? options : &defaults);
    if (err) {
        fprintf(stderr, "mf_testfat_init: format: %s\n", mf_strerror(err));
    } else {
        err = mf_fat_mount(&vol->fs, &vol->ram.bd, NULL, NULL);
        if (err)
            fprintf(stderr, "mf_testfat_init: mount: %s\n", mf_strerror(err));
    }
    if (err)
        mf_testfat_free(vol);
    return err;
}

void mf_testfat_free(struct mf_testfat *vol)
{
    free(vol->memory);
    vol->memory = NULL;
}

int mf_testfat_put(struct mf_fat *fs, const char *path, const void *data, size_t size)
{
    char folder[MF_FAT_PATH_MAX];
    if (strlen(path) >= sizeof folder) {
        fprintf(stderr, "mf_testfat_put: path too long: %s\n", path);
        return MF_ENAMETOOLONG;
    }
    if (size > INT32_MAX) {
        fprintf(stderr, "mf_testfat_put: %s: %zu bytes is too large\n", path, size);
        return MF_EFBIG;
    }
    for (const char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
        memcpy(folder, path, (size_t)(slash - path));
        folder[slash - path] = '\0';
        int err = mf_fat_mkdir(fs, folder);
        if (err && err != MF_EEXIST) {
            fprintf(stderr, "mf_testfat_put: mkdir %s: %s\n", folder, mf_strerror(err));
            return err;
        }
    }
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC);
    if (err) {
        fprintf(stderr, "mf_testfat_put: open %s: %s\n", path, mf_strerror(err));
        return err;
    }
    int written = mf_fat_write(fs, &file, data, (uint32_t)size);
    int closed = mf_fat_close(fs, &file);
    if (written >= 0 && (size_t)written != size)
        written = MF_EIO;
    err = written < 0 ? written : closed;
    if (err)
        fprintf(stderr, "mf_testfat_put: %s %s: %s\n", written < 0 ? "write" : "close", path,
                mf_strerror(err));
    return err;
}

int mf_testfat_put_text(struct mf_fat *fs, const char *path, const char *text)
{
    return mf_testfat_put(fs, path, text, strlen(text));
}

int mf_testfat_get(struct mf_fat *fs, const char *path, char **data, size_t *size)
{
    *data = NULL;
    if (size)
        *size = 0;
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_RDONLY);
    if (err) {
        if (err != MF_ENOENT)
            fprintf(stderr, "mf_testfat_get: open %s: %s\n", path, mf_strerror(err));
        return err;
    }
    uint32_t length = mf_fat_size(&file);
    char *buffer = length < INT32_MAX ? malloc((size_t)length + 1) : NULL;
    int got = buffer ? mf_fat_read(fs, &file, buffer, length) : MF_ENOMEM;
    int closed = mf_fat_close(fs, &file);
    if (got >= 0 && (uint32_t)got != length)
        got = MF_EIO;
    err = got < 0 ? got : closed;
    if (err) {
        fprintf(stderr, "mf_testfat_get: %s %s: %s\n", got < 0 ? "read" : "close", path,
                mf_strerror(err));
        free(buffer);
        return err;
    }
    buffer[length] = '\0';
    *data = buffer;
    if (size)
        *size = length;
    return 0;
}
