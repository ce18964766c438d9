/* A FAT volume in RAM for the C tests and benchmarks: zeroed memory, a RAM block device over it,
 * formatted and mounted, plus writing a file with its parent folders and reading a whole file.
 * No test framework inside (the benchmarks link it too): functions return 0 or a negative MF_E*
 * code and print what failed on stderr (a missing file excepted), and callers check them. */
#ifndef MF_TESTFAT_H
#define MF_TESTFAT_H

#include "mf_fat.h"
#include "mf_rambd.h"

#include <stddef.h>
#include <stdint.h>

struct mf_testfat {
    uint8_t *memory; /* block_size * block_count bytes, malloc'd by mf_testfat_init */
    struct mf_rambd ram;
    struct mf_fat fs; /* mounted without a clock (every timestamp 1980-01-01) */
};

/* Allocates block_count zeroed blocks of block_size bytes, puts a RAM device over them, formats
 * it with `options` (NULL: the defaults) and mounts it. MF_ENOMEM, or the format's or the
 * mount's error; after an error nothing is left allocated. */
int mf_testfat_init(struct mf_testfat *vol, uint32_t block_size, mf_block_t block_count,
                    const struct mf_fat_format_options *options);

/* Frees the memory (the volume is not unmounted: the RAM device needs no sync). Harmless after a
 * failed init or a second time. */
void mf_testfat_free(struct mf_testfat *vol);

/* Creates or truncates `path` and writes `size` bytes of `data`, making the missing parent
 * folders first. MF_ENAMETOOLONG for a path over MF_FAT_PATH_MAX, MF_EFBIG over INT32_MAX
 * bytes, else the first error of mkdir (MF_EEXIST excepted), open, write or close. */
int mf_testfat_put(struct mf_fat *fs, const char *path, const void *data, size_t size);

/* mf_testfat_put() of a NUL-terminated text, without the NUL. */
int mf_testfat_put_text(struct mf_fat *fs, const char *path, const char *text);

/* Reads the whole file into a malloc'd buffer with a NUL after the last byte, so that text can be
 * used as a string; *size (may be NULL) gets the length without the NUL. On an error *data is
 * NULL and *size 0: MF_ENOENT (not printed) when the file or a folder on its path is missing,
 * MF_ENOMEM, MF_EIO for a short read, else the error of open, read or close. */
int mf_testfat_get(struct mf_fat *fs, const char *path, char **data, size_t *size);

#endif
