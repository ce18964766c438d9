/* File-backed block device (Linux): a struct mf_bd over an image file or a real block device.
 * Writes take an exclusive lock (flock) on the image so two programs never write one image at
 * once; read-only opens take a shared lock. Errors map to MF_E* codes; the text of the last
 * failure, with the image's name and the system's reason, is kept for messages. */
#ifndef MF_FILEBD_H
#define MF_FILEBD_H

#include "mf_bd.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_FILEBD_BLOCK_SIZE  512u /* block size of image files */
#define MF_FILEBD_MESSAGE_MAX 512u

struct mf_filebd {
    struct mf_bd bd; /* hand &file.bd to users */
    int fd;          /* -1 when closed */
    bool read_only;
    bool block_device;
    bool zero_range_unsupported; /* FALLOC_FL_ZERO_RANGE failed once: write zeros */
    bool reserve_unsupported;    /* fallocate failed once: write zeros into holes */
    bool zeroout_unsupported;    /* BLKZEROOUT failed once: write zeros */
    char path[256];              /* for messages, shortened when longer */
    char message[MF_FILEBD_MESSAGE_MAX];
    uint64_t failures; /* failed calls so far (under the module's message lock) */
};

/* Opens an existing image file or block device. Read-only takes a shared lock, read-write an
 * exclusive one; both without waiting: MF_EBUSY ("<path>: in use by another program") when
 * the other kind is held. Files use MF_FILEBD_BLOCK_SIZE blocks (a partial last block is
 * ignored), block devices their logical block size. A block device opened for writing is also
 * opened O_EXCL, so a mounted one is refused (MF_EBUSY). Other errors: MF_ENOENT, MF_EACCES,
 * MF_EINVAL (neither a regular file nor a block device, or smaller than one block), MF_EIO. */
int mf_filebd_open(struct mf_filebd *file, const char *path, bool read_only);

/* Creates an image of `size` bytes (a positive multiple of MF_FILEBD_BLOCK_SIZE; MF_EINVAL
 * otherwise), locked exclusively. A regular file is created or, once locked, truncated and
 * extended sparse (no data blocks allocated). With `overwrite` false an existing file that is
 * not empty is refused (MF_EEXIST), checked under the lock. A block device is used in place:
 * its first `size` bytes (size 0: all of it; MF_ENOSPC when larger than the device), nothing
 * erased here. Errors as mf_filebd_open, plus MF_ENOSPC, MF_EFBIG from the file system. */
int mf_filebd_create(struct mf_filebd *file, const char *path, uint64_t size, bool overwrite);

/* Releases the lock and closes. Does not sync (call mf_bd_sync first when writing). Returns 0
 * or MF_EIO when close reports a failed write. Safe on a closed device. */
int mf_filebd_close(struct mf_filebd *file);

/* Text of the last failure of an open/create/read/prog/erase/sync, such as
 * "img.bin: in use by another program (locked)" or "img.bin: write at byte 4096: No space left
 * on device"; "" when none. Valid until the next call on `file`. */
const char *mf_filebd_last_error(const struct mf_filebd *file);

/* For a device several threads use: the number of failed calls so far and, when `text` is not
 * NULL, a copy of the last failure's text (`size` bytes with the NUL), both taken together. A
 * caller compares the number before and after an operation to learn whether the device failed
 * during it, and why. */
uint64_t mf_filebd_failure(const struct mf_filebd *file, char *text, size_t size);

#endif
