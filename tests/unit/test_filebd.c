/* File-backed block device on real files in a private temp folder: sparse creation, sizes,
 * read/write round trips, erase reading zero (keeping the image's blocks, holes left alone),
 * reserve (holes get their blocks, no byte changes), the lock against a second writer (also seen
 * by util-linux flock(1), a tool nobody here wrote), read-only opens, and the error codes and
 * messages for missing, odd, shrunk and non-file paths. As root: a real block device (a loop
 * device over an image file), and images on small real file systems (tmpfs, a loop-mounted ext4)
 * filled up, where writing a hole fails for lack of space but writing a reserved range and
 * rewriting an erased one do not. Those are skipped without root, mount or losetup. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_filebd.h"
#include "mf_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB (1024u * 1024u)

struct dirs {
    char *dir;
    char *image;
    char loop[64]; /* a loop device this test set up, detached by teardown; "" when none */
    char *mounted; /* a file system this test mounted, unmounted by teardown; NULL when none */
};

static int setup(void **state)
{
    struct dirs *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->dir = mf_test_tmpdir("filebd");
    if (!d->dir) {
        free(d);
        return -1;
    }
    d->image = mf_test_path(d->dir, "storage.img");
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dirs *d = *state;
    if (d->mounted) {
        if (umount2(d->mounted, 0) != 0 && umount2(d->mounted, MNT_DETACH) != 0)
            fprintf(stderr, "could not unmount %s: %s\n", d->mounted, strerror(errno));
        free(d->mounted);
    }
    if (d->loop[0]) {
        /* Only the device this test attached, by its name. */
        struct mf_test_output out;
        if (mf_test_runf(&out, "losetup -d '%s'", d->loop) != 0 || out.status != 0)
            fprintf(stderr, "could not detach %s: %s", d->loop, out.err ? out.err : "");
        mf_test_output_free(&out);
    }
    int rc = mf_test_rmtree(d->dir);
    free(d->image);
    free(d->dir);
    free(d);
    return rc ? -1 : 0;
}

static void expect_message(const struct mf_filebd *f, const char *needle)
{
    const char *m = mf_filebd_last_error(f);
    if (!strstr(m, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", m, needle);
}

static void test_create_sparse(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    mode_t mask = umask(022);
    assert_int_equal(mf_filebd_create(&f, d->image, 64 * MIB, false), 0);
    umask(mask);
    assert_int_equal(f.bd.block_size, 512);
    assert_int_equal(f.bd.block_count, 64 * MIB / 512);
    assert_int_equal(mf_bd_size(&f.bd), 64 * MIB);
    struct stat st;
    assert_int_equal(stat(d->image, &st), 0);
    assert_int_equal(st.st_size, 64 * MIB);
    assert_true((uint64_t)st.st_blocks * 512 < MIB); /* holes, not 64 MiB of zeros */
    assert_int_equal(st.st_mode & 0777, 0644);

    uint8_t block[512];
    assert_int_equal(mf_bd_read(&f.bd, 64 * MIB / 512 - 1, block, 1), 0);
    for (size_t i = 0; i < sizeof block; i++)
        assert_int_equal(block[i], 0);
    assert_int_equal(mf_filebd_close(&f), 0);
    assert_int_equal(mf_filebd_close(&f), 0); /* closing twice is harmless */
}

static void test_round_trip_and_erase(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    assert_int_equal(mf_filebd_create(&f, d->image, 8 * MIB, false), 0);
    static uint8_t data[MIB], back[MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + i / 512);
    assert_int_equal(mf_bd_prog(&f.bd, 2048, data, sizeof data / 512), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_filebd_close(&f), 0);

    assert_int_equal(mf_filebd_open(&f, d->image, false), 0);
    assert_int_equal(f.bd.block_count, 8 * MIB / 512);
    assert_int_equal(mf_bd_read(&f.bd, 2048, back, sizeof back / 512), 0);
    assert_memory_equal(back, data, sizeof data);

    struct stat before, after;
    assert_int_equal(stat(d->image, &before), 0);
    /* Erase a range inside the data: those blocks read zero, their neighbours keep theirs. */
    assert_int_equal(mf_bd_erase(&f.bd, 2048 + 8, 1000), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, 2048, back, sizeof back / 512), 0);
    assert_memory_equal(back, data, 8 * 512);
    for (size_t i = 8 * 512; i < 1008 * 512; i++) {
        if (back[i] != 0)
            fail_msg("byte %zu of an erased range is 0x%02X", i, back[i]);
    }
    assert_memory_equal(back + 1008 * 512, data + 1008 * 512, sizeof data - 1008 * 512);
    assert_int_equal(stat(d->image, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    /* Zeroed in place: the image keeps its room on the host for a later write there. */
    assert_true(after.st_blocks >= before.st_blocks);
    /* Erasing holes allocates nothing. */
    assert_int_equal(mf_bd_erase(&f.bd, 6 * MIB / 512, 2 * MIB / 512), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    struct stat holes;
    assert_int_equal(stat(d->image, &holes), 0);
    assert_int_equal(holes.st_blocks, after.st_blocks);
    assert_int_equal(mf_filebd_close(&f), 0);
}

/* Reserve gives a range's holes their blocks and changes no byte; on a read-only device it is
 * refused, outside the device never tried. */
static void test_reserve(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    assert_int_equal(mf_filebd_create(&f, d->image, 8 * MIB, false), 0);
    static uint8_t data[64 * 1024], back[2 * MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 11 + 5);
    mf_block_t at = 2 * MIB / 512;
    assert_int_equal(mf_bd_prog(&f.bd, at + 100, data, sizeof data / 512), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    struct stat before, after;
    assert_int_equal(stat(d->image, &before), 0);
    assert_int_equal(mf_bd_reserve(&f.bd, at, 2 * MIB / 512), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(stat(d->image, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    assert_true((uint64_t)after.st_blocks * 512 >= 2 * MIB);
    assert_true((uint64_t)after.st_blocks * 512 < 4 * MIB); /* that range, not the whole image */
    assert_int_equal(mf_bd_read(&f.bd, at, back, sizeof back / 512), 0);
    for (size_t i = 0; i < sizeof back; i++) {
        uint8_t want = i >= 100 * 512 && i < 100 * 512 + sizeof data ? data[i - 100 * 512] : 0;
        if (back[i] != want)
            fail_msg("byte %zu of the reserved range is 0x%02X, not 0x%02X", i, back[i], want);
    }
    assert_int_equal(mf_bd_reserve(&f.bd, f.bd.block_count - 1, 2), MF_EINVAL);
    assert_int_equal(mf_filebd_close(&f), 0);
    assert_int_equal(mf_filebd_open(&f, d->image, true), 0);
    assert_int_equal(mf_bd_reserve(&f.bd, 0, 1), MF_EROFS);
    assert_int_equal(mf_filebd_close(&f), 0);
}

/* Fills the file system that holds `dir` with a file "filler" until it takes no byte more. */
static void fill_up(const char *dir)
{
    char *path = mf_test_path(dir, "filler");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static uint8_t chunk[64 * 1024];
    memset(chunk, 0xA5, sizeof chunk);
    for (size_t size = sizeof chunk; size >= 512; size /= 2) {
        while (write(fd, chunk, size) == (ssize_t)size)
            continue;
    }
    fsync(fd);
    assert_int_equal(close(fd), 0);
    free(path);
}

/* Can the file system holding `dir` take `size` more bytes of a new file? (The file goes again.) */
static bool has_room(const char *dir, size_t size)
{
    char *path = mf_test_path(dir, "more");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static uint8_t chunk[64 * 1024];
    bool room = true;
    for (size_t done = 0; room && done < size; done += sizeof chunk)
        room = write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk;
    room = room && fsync(fd) == 0;
    close(fd);
    unlink(path);
    free(path);
    return room;
}

/* A 32 MiB image on a file system of a few MiB (`dir`), filled up: a write into a hole fails
 * with MF_ENOSPC and says so, as does a reserve (naming the full file system); a range reserved
 * before takes its write; an erase gives no room back (nothing else can take it) and its range
 * takes the same bytes again; erasing holes needs no room. */
static void check_full_file_system(const char *dir, const char *kind)
{
    print_message("%s\n", kind);
    char *image = mf_test_path(dir, "storage.img");
    struct mf_filebd f;
    assert_int_equal(mf_filebd_create(&f, image, 32 * MIB, false), 0);
    static uint8_t data[MIB], back[MIB];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 29 + i / 4096 + 3);
    const mf_block_t written = MIB / 512, reserved = 8 * MIB / 512, n = MIB / 512;
    assert_int_equal(mf_bd_prog(&f.bd, written, data, n), 0);
    assert_int_equal(mf_bd_reserve(&f.bd, reserved, n), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    fill_up(dir);

    assert_int_equal(mf_bd_prog(&f.bd, 20 * MIB / 512, data, 128), MF_ENOSPC);
    expect_message(&f, "storage.img: write at byte 20971520: No space left on device");
    assert_int_equal(mf_bd_reserve(&f.bd, 16 * MIB / 512, 2 * n), MF_ENOSPC);
    expect_message(&f, "storage.img: reserving bytes 16777216-18874367: No space left on device "
                       "(the image's file system is full)");

    assert_int_equal(mf_bd_prog(&f.bd, reserved, data, n), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, reserved, back, n), 0);
    assert_memory_equal(back, data, sizeof data);

    assert_int_equal(mf_bd_erase(&f.bd, written, n), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, written, back, n), 0);
    for (size_t i = 0; i < sizeof back; i++) {
        if (back[i] != 0)
            fail_msg("%s: byte %zu of an erased range is 0x%02X", kind, i, back[i]);
    }
    assert_false(has_room(dir, 256 * 1024));
    assert_int_equal(mf_bd_prog(&f.bd, written, data, n), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, written, back, n), 0);
    assert_memory_equal(back, data, sizeof data);

    assert_int_equal(mf_bd_erase(&f.bd, 24 * MIB / 512, 4 * n), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_filebd_close(&f), 0);
    free(image);
}

/* Mounts are made in a mount namespace of this process's own, so that none outlives the test
 * (also when it is killed); teardown unmounts them all the same. */
static bool private_mounts(void)
{
    static int done; /* 0: not tried, 1: yes, -1: not possible */
    if (!done)
        done = unshare(CLONE_NEWNS) == 0 && mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
                   ? 1
                   : -1;
    return done > 0;
}

static void test_full_tmpfs(void **state)
{
    struct dirs *d = *state;
    if (geteuid() != 0 || !private_mounts()) {
        print_message("skipped: mounting a small tmpfs needs root (and a mount namespace)\n");
        skip();
    }
    d->mounted = mf_test_path(d->dir, "tmpfs");
    assert_int_equal(mkdir(d->mounted, 0700), 0);
    if (mount("mintflash-test", d->mounted, "tmpfs", 0, "size=4m,mode=0700") != 0) {
        print_message("skipped: cannot mount a tmpfs: %s\n", strerror(errno));
        free(d->mounted);
        d->mounted = NULL;
        skip();
    }
    check_full_file_system(d->mounted, "tmpfs of 4 MiB");
}

static void test_full_ext4(void **state)
{
    struct dirs *d = *state;
    if (geteuid() != 0 || !private_mounts()) {
        print_message("skipped: mounting an ext4 image needs root (and a mount namespace)\n");
        skip();
    }
    char *fs = mf_test_path(d->dir, "ext4.img"), *at = mf_test_path(d->dir, "ext4");
    assert_int_equal(mkdir(at, 0700), 0);
    char *qfs = mf_test_shell_quote(fs), *qat = mf_test_shell_quote(at);
    struct mf_test_output out;
    int err = mf_test_runf(&out, "truncate -s 16M %s && mkfs.ext4 -q -F %s && mount -o loop %s %s",
                           qfs, qfs, qfs, qat);
    free(qfs);
    free(qat);
    free(fs);
    if (err || out.status != 0) {
        print_message("skipped: cannot make and mount an ext4 image: %s\n", out.err ? out.err : "");
        mf_test_output_free(&out);
        free(at);
        skip();
    }
    mf_test_output_free(&out);
    d->mounted = at;
    check_full_file_system(d->mounted, "ext4 of 16 MiB");
}

static void test_create_refuses(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    assert_int_equal(mf_filebd_create(&f, d->image, 1000, false), MF_EINVAL);
    expect_message(&f, "not a positive multiple of 512");
    assert_int_equal(mf_filebd_create(&f, d->image, 0, false), MF_EINVAL);
    assert_int_equal(access(d->image, F_OK), -1); /* nothing left behind */

    assert_int_equal(mf_test_write_file(d->image, "old contents", 12), 0);
    assert_int_equal(mf_filebd_create(&f, d->image, 4 * MIB, false), MF_EEXIST);
    expect_message(&f, "storage.img: already exists and is not empty (12 bytes)");
    char *text;
    size_t size;
    assert_int_equal(mf_test_read_file(d->image, &text, &size), 0);
    assert_string_equal(text, "old contents"); /* untouched, and not unlinked */
    free(text);

    /* An empty file may be used; overwrite replaces contents with zeros. */
    assert_int_equal(mf_filebd_create(&f, d->image, 4 * MIB, true), 0);
    uint8_t block[512];
    assert_int_equal(mf_bd_read(&f.bd, 0, block, 1), 0);
    assert_int_equal(block[0], 0);
    assert_int_equal(mf_filebd_close(&f), 0);
    assert_int_equal(mf_test_write_file(d->image, "", 0), 0);
    assert_int_equal(mf_filebd_create(&f, d->image, 4 * MIB, false), 0);
    assert_int_equal(mf_filebd_close(&f), 0);

    char *missing_dir = mf_test_path(d->dir, "no/such/folder.img");
    assert_int_equal(mf_filebd_create(&f, missing_dir, 4 * MIB, false), MF_ENOENT);
    expect_message(&f, "folder.img: cannot create: No such file or directory");
    free(missing_dir);
    assert_int_equal(mf_filebd_create(&f, d->dir, 4 * MIB, true), MF_EISDIR);
}

static void test_open_errors(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    assert_int_equal(mf_filebd_open(&f, d->image, true), MF_ENOENT);
    expect_message(&f, "storage.img: cannot open: No such file or directory");

    assert_int_equal(mf_filebd_open(&f, d->dir, true), MF_EINVAL);
    expect_message(&f, "neither a regular file nor a block device");

    assert_int_equal(mf_test_write_file(d->image, "", 0), 0);
    assert_int_equal(mf_filebd_open(&f, d->image, true), MF_EINVAL);
    expect_message(&f, "too small (0 bytes");

    /* A partial last block is ignored. */
    static uint8_t odd[1000];
    assert_int_equal(mf_test_write_file(d->image, odd, sizeof odd), 0);
    assert_int_equal(mf_filebd_open(&f, d->image, true), 0);
    assert_int_equal(f.bd.block_count, 1);
    assert_int_equal(mf_filebd_close(&f), 0);

    /* The image shrinks under an open device: a clear error, not zeros. */
    assert_int_equal(mf_filebd_create(&f, d->image, 4 * MIB, true), 0);
    assert_int_equal(truncate(d->image, 2 * MIB), 0);
    uint8_t block[512];
    assert_int_equal(mf_bd_read(&f.bd, 4 * MIB / 512 - 1, block, 1), MF_EIO);
    expect_message(&f, "read at byte 4193792: unexpected end");
    assert_int_equal(mf_filebd_close(&f), 0);

    if (getuid() != 0) { /* root reads anything */
        assert_int_equal(chmod(d->image, 0), 0);
        assert_int_equal(mf_filebd_open(&f, d->image, true), MF_EACCES);
        expect_message(&f, "Permission denied");
        assert_int_equal(chmod(d->image, 0644), 0);
    }
}

static void test_lock(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd writer, other, reader1, reader2;
    assert_int_equal(mf_filebd_create(&writer, d->image, 4 * MIB, false), 0);

    assert_int_equal(mf_filebd_open(&other, d->image, false), MF_EBUSY);
    expect_message(&other, "storage.img: in use by another program");
    assert_int_equal(mf_filebd_open(&other, d->image, true), MF_EBUSY);
    assert_int_equal(mf_filebd_create(&other, d->image, 4 * MIB, true), MF_EBUSY);
    assert_int_equal(access(d->image, F_OK), 0); /* a refused create leaves the image alone */

    /* Another program sees the lock too. */
    char *q = mf_test_shell_quote(d->image);
    struct mf_test_output out;
    assert_int_equal(mf_test_runf(&out, "flock -n -s %s true", q), 0);
    assert_int_equal(out.status, 1);
    mf_test_output_free(&out);

    assert_int_equal(mf_filebd_close(&writer), 0);
    assert_int_equal(mf_test_runf(&out, "flock -n %s true", q), 0);
    assert_int_equal(out.status, 0);
    mf_test_output_free(&out);

    /* Readers share; a writer waits for all of them. */
    assert_int_equal(mf_filebd_open(&reader1, d->image, true), 0);
    assert_int_equal(mf_filebd_open(&reader2, d->image, true), 0);
    assert_int_equal(mf_filebd_open(&other, d->image, false), MF_EBUSY);
    assert_int_equal(mf_test_runf(&out, "flock -n -s %s true", q), 0);
    assert_int_equal(out.status, 0);
    mf_test_output_free(&out);
    assert_int_equal(mf_filebd_close(&reader1), 0);
    assert_int_equal(mf_filebd_open(&other, d->image, false), MF_EBUSY);
    assert_int_equal(mf_filebd_close(&reader2), 0);
    assert_int_equal(mf_filebd_open(&other, d->image, false), 0);
    assert_int_equal(mf_filebd_close(&other), 0);
    free(q);
}

static void test_read_only(void **state)
{
    struct dirs *d = *state;
    struct mf_filebd f;
    assert_int_equal(mf_filebd_create(&f, d->image, 4 * MIB, false), 0);
    assert_int_equal(mf_filebd_close(&f), 0);
    assert_int_equal(mf_filebd_open(&f, d->image, true), 0);
    uint8_t block[512] = {1};
    assert_int_equal(mf_bd_prog(&f.bd, 0, block, 1), MF_EROFS);
    expect_message(&f, "read-only");
    assert_int_equal(mf_bd_erase(&f.bd, 0, 1), MF_EROFS);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, 0, block, 1), 0);
    assert_int_equal(block[0], 0);
    /* Out-of-range requests never reach the file. */
    assert_int_equal(mf_bd_read(&f.bd, f.bd.block_count, block, 1), MF_EINVAL);
    assert_int_equal(mf_filebd_close(&f), 0);
}

/* A real block device: a loop device over an 8 MiB image file. The kernel gives the geometry;
 * writes reach the backing file; erase reads zero; read-only opens read; a second writer is
 * refused; create uses the device in place, its first `size` bytes, and refuses more than it
 * holds. Skipped (cmocka skip, exit 77 for CTest) without root or a loop device. */
static void test_loop_device(void **state)
{
    struct dirs *d = *state;
    if (geteuid() != 0) {
        print_message("skipped: a loop device needs root\n");
        skip();
    }
    assert_int_equal(mf_test_write_file(d->image, "", 0), 0);
    assert_int_equal(truncate(d->image, 8 * MIB), 0);
    char *q = mf_test_shell_quote(d->image);
    struct mf_test_output out;
    int err = mf_test_runf(&out, "losetup --find --show %s", q);
    free(q);
    if (err || out.status != 0 || strncmp(out.out, "/dev/", 5) != 0 ||
        strlen(out.out) >= sizeof d->loop) {
        print_message("skipped: losetup could not set up a loop device: %s\n",
                      out.err ? out.err : "");
        mf_test_output_free(&out);
        skip();
    }
    snprintf(d->loop, sizeof d->loop, "%.*s", (int)strcspn(out.out, "\n"), out.out);
    mf_test_output_free(&out);

    struct mf_filebd f, other;
    assert_int_equal(mf_filebd_open(&f, d->loop, false), 0);
    assert_true(f.block_device);
    assert_true(f.bd.block_size >= 512);
    assert_int_equal(mf_bd_size(&f.bd), 8 * MIB);
    uint32_t bs = f.bd.block_size;

    /* A second writer, and a reader while it writes, are refused. */
    assert_int_equal(mf_filebd_open(&other, d->loop, false), MF_EBUSY);
    assert_int_equal(mf_filebd_open(&other, d->loop, true), MF_EBUSY);

    static uint8_t data[64 * 1024], back[64 * 1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13 + i / 4096 + 1);
    mf_block_t at = (1 * MIB) / bs;
    assert_int_equal(mf_bd_prog(&f.bd, at, data, sizeof data / bs), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    /* Erase two blocks in the middle: they read zero, their neighbours keep their bytes. */
    assert_int_equal(mf_bd_erase(&f.bd, at + 4, 2), 0);
    assert_int_equal(mf_bd_sync(&f.bd), 0);
    assert_int_equal(mf_bd_read(&f.bd, at, back, sizeof back / bs), 0);
    memset(data + 4 * bs, 0, 2 * bs);
    assert_memory_equal(back, data, sizeof data);
    assert_int_equal(mf_bd_read(&f.bd, f.bd.block_count, back, 1), MF_EINVAL);
    assert_int_equal(mf_bd_reserve(&f.bd, 0, f.bd.block_count), 0); /* every block is there */
    assert_int_equal(mf_filebd_close(&f), 0);

    /* The bytes went through the device to the backing file. */
    char *image;
    size_t size;
    assert_int_equal(mf_test_read_file(d->image, &image, &size), 0);
    assert_int_equal(size, 8 * MIB);
    assert_memory_equal(image + MIB, data, sizeof data);
    free(image);

    assert_int_equal(mf_filebd_open(&f, d->loop, true), 0);
    assert_int_equal(mf_bd_read(&f.bd, at, back, sizeof back / bs), 0);
    assert_memory_equal(back, data, sizeof data);
    assert_int_equal(mf_bd_prog(&f.bd, at, data, 1), MF_EROFS);
    assert_int_equal(mf_filebd_close(&f), 0);

    /* Create: in place, the first `size` bytes or all of it, never more than it holds. */
    assert_int_equal(mf_filebd_create(&f, d->loop, 16 * MIB, true), MF_ENOSPC);
    assert_int_equal(mf_filebd_create(&f, d->loop, 4 * MIB, true), 0);
    assert_int_equal(mf_bd_size(&f.bd), 4 * MIB);
    assert_int_equal(mf_bd_read(&f.bd, at, back, 1), 0);
    assert_memory_equal(back, data, bs); /* nothing erased by create */
    assert_int_equal(mf_filebd_close(&f), 0);
    assert_int_equal(mf_filebd_create(&f, d->loop, 0, true), 0);
    assert_int_equal(mf_bd_size(&f.bd), 8 * MIB);
    assert_int_equal(mf_filebd_close(&f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_and_erase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_ext4, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
