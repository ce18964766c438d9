/* File-backed block device over an image file or a Linux block device (see mf_filebd.h).
 * I/O loops over pread/pwrite for short transfers and EINTR. An image file never gives back the
 * room it has on the host: erase zeroes its data in place (FALLOC_FL_ZERO_RANGE, or zeros
 * written) and leaves holes alone, and reserve gives holes their blocks (fallocate) before a
 * caller depends on writing them. Block devices are zeroed with BLKZEROOUT. */
#include "mf_filebd.h"

#include "mf_err.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILEBD_ZERO_CHUNK (64u * 1024u)

static const uint8_t filebd_zeros[FILEBD_ZERO_CHUNK];

static int filebd_code(int error)
{
    switch (error) {
    case ENOENT:
        return MF_ENOENT;
    case EACCES:
    case EPERM:
        return MF_EACCES;
    case EBUSY:
    case EWOULDBLOCK:
        return MF_EBUSY;
    case EEXIST:
        return MF_EEXIST;
    case ENOTDIR:
        return MF_ENOTDIR;
    case EISDIR:
        return MF_EISDIR;
    case EINVAL:
        return MF_EINVAL;
    case ENOSPC:
    case EDQUOT:
        return MF_ENOSPC;
    case EFBIG:
        return MF_EFBIG;
    case EROFS:
        return MF_EROFS;
    case ENOMEM:
        return MF_ENOMEM;
    case ENAMETOOLONG:
        return MF_ENAMETOOLONG;
    case EMFILE:
    case ENFILE:
        return MF_EMFILE;
    default:
        return MF_EIO;
    }
}

static int filebd_fail(struct mf_filebd *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Guards every device's message and failure count: slots' threads share one device, and
 * failures are rare enough for one lock. */
static pthread_mutex_t filebd_message_lock = PTHREAD_MUTEX_INITIALIZER;

/* Records "<path>: <text>" and returns err. */
static int filebd_fail(struct mf_filebd *f, int err, const char *fmt, ...)
{
    pthread_mutex_lock(&filebd_message_lock);
    int n = snprintf(f->message, sizeof f->message, "%s: ", f->path);
    if (n < 0 || (size_t)n >= sizeof f->message)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message + n, sizeof f->message - (size_t)n, fmt, ap);
    va_end(ap);
    f->failures++;
    pthread_mutex_unlock(&filebd_message_lock);
    return err;
}

/* Records "<path>: <what>: <strerror(errno)>" and returns the mapped code. */
static int filebd_errno(struct mf_filebd *f, const char *what, int error)
{
    return filebd_fail(f, filebd_code(error), "%s: %s", what, strerror(error));
}

static void filebd_set_path(struct mf_filebd *f, const char *path)
{
    size_t n = strlen(path);
    if (n < sizeof f->path)
        memcpy(f->path, path, n + 1);
    else /* keep the end, which names the file */
        snprintf(f->path, sizeof f->path, "...%s", path + n - (sizeof f->path - 4));
}

static int filebd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    struct mf_filebd *f = bd->context;
    uint8_t *p = buffer;
    uint64_t offset = block * bd->block_size;
    size_t left = count * bd->block_size;
    while (left) {
        ssize_t r = pread(f->fd, p, left, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return filebd_fail(f, filebd_code(errno), "read at byte %llu: %s",
                               (unsigned long long)offset, strerror(errno));
        if (r == 0)
            return filebd_fail(f, MF_EIO, "read at byte %llu: unexpected end (the image shrank?)",
                               (unsigned long long)offset);
        p += r;
        offset += (uint64_t)r;
        left -= (size_t)r;
    }
    return 0;
}

static int filebd_write_all(struct mf_filebd *f, const uint8_t *p, size_t left, uint64_t offset)
{
    while (left) {
        ssize_t r = pwrite(f->fd, p, left, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return filebd_fail(f, filebd_code(errno), "write at byte %llu: %s",
                               (unsigned long long)offset, strerror(errno));
        if (r == 0)
            return filebd_fail(f, MF_EIO, "write at byte %llu: no progress",
                               (unsigned long long)offset);
        p += r;
        offset += (uint64_t)r;
        left -= (size_t)r;
    }
    return 0;
}

static int filebd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    struct mf_filebd *f = bd->context;
    if (f->read_only)
        return filebd_fail(f, MF_EROFS, "opened read-only");
    return filebd_write_all(f, buffer, count * bd->block_size, block * bd->block_size);
}

static int filebd_write_zeros(struct mf_filebd *f, uint64_t offset, uint64_t length)
{
    while (length) {
        size_t n = length > sizeof filebd_zeros ? sizeof filebd_zeros : (size_t)length;
        int err = filebd_write_all(f, filebd_zeros, n, offset);
        if (err)
            return err;
        offset += n;
        length -= n;
    }
    return 0;
}

static bool filebd_unsupported(int error)
{
    return error == EOPNOTSUPP || error == ENOSYS || error == ENOTTY || error == EINVAL;
}

static bool filebd_no_room(int error)
{
    return error == ENOSPC || error == EDQUOT;
}

static int filebd_fallocate(struct mf_filebd *f, int mode, uint64_t offset, uint64_t length)
{
    int r;
    do
        r = fallocate(f->fd, mode, (off_t)offset, (off_t)length);
    while (r < 0 && errno == EINTR);
    return r < 0 ? errno : 0;
}

typedef int (*filebd_run_fn)(struct mf_filebd *f, uint64_t offset, uint64_t length);

/* Calls `fn` on each run of [offset, offset + length) that holds data (`data`) or that is a hole
 * (!`data`), as SEEK_DATA and SEEK_HOLE tell. A hole reads as zeros; where the file system cannot
 * tell, everything counts as data. */
static int filebd_each_run(struct mf_filebd *f, uint64_t offset, uint64_t length, bool data,
                           filebd_run_fn fn)
{
    uint64_t end = offset + length;
    while (offset < end) {
        off_t at = lseek(f->fd, (off_t)offset, SEEK_DATA);
        uint64_t data_at = at >= 0 ? (uint64_t)at : errno == ENXIO ? end : offset;
        if (data_at > end)
            data_at = end;
        uint64_t hole_at = end;
        if (data_at < end) {
            at = lseek(f->fd, (off_t)data_at, SEEK_HOLE);
            if (at >= 0 && (uint64_t)at > data_at && (uint64_t)at < end)
                hole_at = (uint64_t)at; /* else the rest counts as data: always progress */
        }
        int err = 0;
        if (!data && data_at > offset)
            err = fn(f, offset, data_at - offset);
        else if (data && hole_at > data_at)
            err = fn(f, data_at, hole_at - data_at);
        if (err)
            return err;
        offset = hole_at;
    }
    return 0;
}

/* Records "<path>: <what> bytes A-B: <reason><note>" and returns the mapped code. */
static int filebd_range_fail(struct mf_filebd *f, const char *what, uint64_t offset,
                             uint64_t length, int error, const char *note)
{
    return filebd_fail(f, filebd_code(error), "%s bytes %llu-%llu: %s%s", what,
                       (unsigned long long)offset, (unsigned long long)(offset + length - 1),
                       strerror(error), note);
}

/* The end of a fast zeroing (ZERO_RANGE, BLKZEROOUT) that returned `error`: done; or zeros
 * written where the call is not supported (`*unsupported` set for good) or found no room (zeros
 * over the file's own blocks need none); or the failure recorded. */
static int filebd_zeroed(struct mf_filebd *f, int error, bool *unsupported, uint64_t offset,
                         uint64_t length)
{
    if (error == 0)
        return 0;
    if (filebd_unsupported(error))
        *unsupported = true;
    else if (!filebd_no_room(error))
        return filebd_range_fail(f, "zeroing", offset, length, error, "");
    return filebd_write_zeros(f, offset, length);
}

/* Zeroes data of an image file where it lies: the file keeps its blocks, so a later write there
 * needs no room the host may have given away meanwhile. */
static int filebd_zero_run(struct mf_filebd *f, uint64_t offset, uint64_t length)
{
    if (f->zero_range_unsupported)
        return filebd_write_zeros(f, offset, length);
    int error = filebd_fallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
    return filebd_zeroed(f, error, &f->zero_range_unsupported, offset, length);
}

static int filebd_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct mf_filebd *f = bd->context;
    if (f->read_only)
        return filebd_fail(f, MF_EROFS, "opened read-only");
    uint64_t offset = block * bd->block_size;
    uint64_t length = (uint64_t)count * bd->block_size;
    if (!f->block_device)
        return filebd_each_run(f, offset, length, true, filebd_zero_run);
    if (f->zeroout_unsupported)
        return filebd_write_zeros(f, offset, length);
    uint64_t range[2] = {offset, length};
    int r;
    do
        r = ioctl(f->fd, BLKZEROOUT, range);
    while (r < 0 && errno == EINTR);
    return filebd_zeroed(f, r < 0 ? errno : 0, &f->zeroout_unsupported, offset, length);
}

static int filebd_reserve(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct mf_filebd *f = bd->context;
    if (f->read_only)
        return filebd_fail(f, MF_EROFS, "opened read-only");
    if (f->block_device)
        return 0; /* every block is there */
    uint64_t offset = block * bd->block_size;
    uint64_t length = (uint64_t)count * bd->block_size;
    if (!f->reserve_unsupported) {
        int error = filebd_fallocate(f, 0, offset, length);
        if (error == 0)
            return 0;
        if (!filebd_unsupported(error))
            return filebd_range_fail(f, "reserving", offset, length, error,
                                     error == ENOSPC ? " (the image's file system is full)" : "");
        f->reserve_unsupported = true;
    }
    /* Without fallocate, zeros written into the holes (what they read as) take their blocks. */
    return filebd_each_run(f, offset, length, false, filebd_write_zeros);
}

static int filebd_sync(const struct mf_bd *bd)
{
    struct mf_filebd *f = bd->context;
    if (f->read_only)
        return 0;
    int r;
    do
        r = fdatasync(f->fd);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return filebd_errno(f, "sync", errno);
    return 0;
}

static void filebd_reset(struct mf_filebd *f, const char *path, bool read_only)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->read_only = read_only;
    filebd_set_path(f, path);
}

/* Takes the lock and fills the geometry; closes the descriptor on failure. `limit` (bytes, 0:
 * none) caps a block device's size. */
static int filebd_setup(struct mf_filebd *f, uint64_t limit)
{
    int r;
    do
        r = flock(f->fd, (f->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno == EWOULDBLOCK
                      ? filebd_fail(f, MF_EBUSY,
                                    "in use by another program (locked; is mintflashd or another "
                                    "mintflash using it?)")
                      : filebd_errno(f, "lock", errno);
        mf_filebd_close(f);
        return err;
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0) {
        int err = filebd_errno(f, "stat", errno);
        mf_filebd_close(f);
        return err;
    }
    uint32_t block_size = MF_FILEBD_BLOCK_SIZE;
    uint64_t bytes;
    if (S_ISREG(st.st_mode)) {
        bytes = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        int logical = 0;
        if (ioctl(f->fd, BLKSSZGET, &logical) < 0 || ioctl(f->fd, BLKGETSIZE64, &bytes) < 0) {
            int err = filebd_errno(f, "block device geometry", errno);
            mf_filebd_close(f);
            return err;
        }
        if (logical < 512 || logical > 65536 || (logical & (logical - 1))) {
            int err = filebd_fail(f, MF_ENOTSUP, "unusual logical block size %d", logical);
            mf_filebd_close(f);
            return err;
        }
        block_size = (uint32_t)logical;
        f->block_device = true;
        if (limit) {
            if (limit > bytes) {
                int err = filebd_fail(f, MF_ENOSPC,
                                      "the device holds %llu bytes, fewer than the %llu asked for",
                                      (unsigned long long)bytes, (unsigned long long)limit);
                mf_filebd_close(f);
                return err;
            }
            bytes = limit;
        }
    } else {
        int err = filebd_fail(f, MF_EINVAL, "neither a regular file nor a block device");
        mf_filebd_close(f);
        return err;
    }
    if (bytes < block_size) {
        int err = filebd_fail(f, MF_EINVAL, "too small (%llu bytes; not even one %u-byte block)",
                              (unsigned long long)bytes, block_size);
        mf_filebd_close(f);
        return err;
    }
    f->bd = (struct mf_bd){
        .context = f,
        .read = filebd_read,
        .prog = filebd_prog,
        .erase = filebd_erase,
        .sync = filebd_sync,
        .reserve = filebd_reserve,
        .block_size = block_size,
        .block_count = bytes / block_size,
    };
    return 0;
}

int mf_filebd_open(struct mf_filebd *f, const char *path, bool read_only)
{
    filebd_reset(f, path, read_only);
    struct stat st;
    if (stat(path, &st) < 0)
        return filebd_errno(f, "cannot open", errno);
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
    if (S_ISBLK(st.st_mode) && !read_only)
        flags |= O_EXCL; /* refused while mounted */
    do
        f->fd = open(path, flags);
    while (f->fd < 0 && errno == EINTR);
    if (f->fd < 0)
        return filebd_errno(f, "cannot open", errno);
    return filebd_setup(f, 0);
}

int mf_filebd_create(struct mf_filebd *f, const char *path, uint64_t size, bool overwrite)
{
    filebd_reset(f, path, false);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
        if (size % MF_FILEBD_BLOCK_SIZE)
            return filebd_fail(f, MF_EINVAL, "size %llu is not a multiple of %u bytes",
                               (unsigned long long)size, MF_FILEBD_BLOCK_SIZE);
        do
            f->fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_EXCL);
        while (f->fd < 0 && errno == EINTR);
        if (f->fd < 0)
            return filebd_errno(f, "cannot open", errno);
        return filebd_setup(f, size);
    }
    if (size == 0 || size % MF_FILEBD_BLOCK_SIZE || size > (uint64_t)INT64_MAX)
        return filebd_fail(f, MF_EINVAL, "size %llu is not a positive multiple of %u bytes",
                           (unsigned long long)size, MF_FILEBD_BLOCK_SIZE);
    bool created = true;
    do
        f->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644);
    while (f->fd < 0 && errno == EINTR);
    if (f->fd < 0 && errno == EEXIST) {
        created = false;
        do
            f->fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        while (f->fd < 0 && errno == EINTR);
    }
    if (f->fd < 0)
        return filebd_errno(f, "cannot create", errno);
    int err = 0;
    int r;
    do
        r = flock(f->fd, LOCK_EX | LOCK_NB);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        err = errno == EWOULDBLOCK ? filebd_fail(f, MF_EBUSY,
                                                 "in use by another program (locked; is "
                                                 "mintflashd or another mintflash using it?)")
                                   : filebd_errno(f, "lock", errno);
    if (!err && fstat(f->fd, &st) < 0)
        err = filebd_errno(f, "stat", errno);
    if (!err && !S_ISREG(st.st_mode))
        err = filebd_fail(f, MF_EINVAL, "neither a regular file nor a block device");
    if (!err && !overwrite && st.st_size > 0)
        err = filebd_fail(f, MF_EEXIST, "already exists and is not empty (%llu bytes)",
                          (unsigned long long)st.st_size);
    /* Truncating to zero first drops every old data block: the new image is all holes. */
    if (!err && (ftruncate(f->fd, 0) < 0 || ftruncate(f->fd, (off_t)size) < 0))
        err = filebd_errno(f, "cannot set the size", errno);
    if (err) {
        char message[sizeof f->message];
        memcpy(message, f->message, sizeof message);
        if (created)
            unlink(path);
        mf_filebd_close(f);
        memcpy(f->message, message, sizeof message);
        return err;
    }
    /* The lock is held already; flock again is a no-op that keeps the code in one place. */
    return filebd_setup(f, 0);
}

int mf_filebd_close(struct mf_filebd *f)
{
    if (f->fd < 0)
        return 0;
    int r = close(f->fd); /* releases the lock */
    f->fd = -1;
    if (r < 0 && errno != EINTR)
        return filebd_errno(f, "close", errno);
    return 0;
}

const char *mf_filebd_last_error(const struct mf_filebd *f)
{
    return f->message;
}

uint64_t mf_filebd_failure(const struct mf_filebd *f, char *text, size_t size)
{
    pthread_mutex_lock(&filebd_message_lock);
    uint64_t n = f->failures;
    if (text && size)
        snprintf(text, size, "%s", f->message);
    pthread_mutex_unlock(&filebd_message_lock);
    return n;
}
