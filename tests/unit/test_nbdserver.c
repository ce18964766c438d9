/* The NBD server (mf_nbdserver) on 127.0.0.1 against real clients nobody here wrote: nbdinfo
 * and nbdcopy (libnbd-bin), mtools on the copied volume and, where FUSE works, through nbdfuse;
 * plus a raw-socket client for what those never send: requests beyond the end, bad magic,
 * garbage, concurrent unaligned writers, idle and half-finished clients at stop.
 * Each test serves partition 1 of a 32 MiB RAM disk made by mf_storage (with a secure area), whose
 * other bytes hold a known pattern that must never change; each starts its server on a free port
 * and its teardown always stops it and checks that no thread was left behind. */
#include "mf_area.h"
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_nbd.h"
#include "mf_nbdserver.h"
#include "mf_rambd.h"
#include "mf_storage.h"
#include "mf_testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#define DISK_BYTES  (32u << 20)
#define BS          512u
#define HELLO_TEXT  "Hello from the FAT driver.\n"
#define JOB_TEXT    "[job]\nname = demo\n"
#define REQUEST_MAG 0x25609513u
#define REPLY_MAG   0x67446698u

/* ---- fixture ---- */

struct fixture {
    char *dir;
    uint8_t *disk;
    uint8_t *snapshot; /* the disk after setup: bytes outside partition 1 must stay so */
    struct mf_rambd ram;
    struct mf_storage storage;
    uint64_t public_offset, public_bytes;
    /* The partition as served: forwards to the storage's slice, checking the lock. */
    struct mf_bd checked;
    pthread_mutex_t mutex;
    atomic_int owner; /* gettid() of the holder, 0 when free */
    atomic_ulong unlocked_calls;
    struct mf_lock lock;
    struct mf_nbdserver server;
    pthread_mutex_t log_mutex;
    char *log;
    size_t log_size;
    int threads_before;
};

static struct fixture *fx_of(void **state)
{
    return *state;
}

static int thread_count(void)
{
    char *status = NULL;
    if (mf_test_read_file("/proc/self/status", &status, NULL) != 0)
        return -1;
    const char *t = strstr(status, "\nThreads:");
    int n = t ? atoi(t + 9) : -1;
    free(status);
    return n;
}

static void fx_lock(void *context)
{
    struct fixture *f = context;
    pthread_mutex_lock(&f->mutex);
    atomic_store(&f->owner, (int)gettid());
}

static void fx_unlock(void *context)
{
    struct fixture *f = context;
    atomic_store(&f->owner, 0);
    pthread_mutex_unlock(&f->mutex);
}

static const struct mf_bd *public_slice(const struct mf_bd *bd)
{
    struct fixture *f = bd->context;
    if (atomic_load(&f->owner) != (int)gettid())
        atomic_fetch_add(&f->unlocked_calls, 1);
    return mf_storage_public_area(&f->storage);
}

static int checked_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    return mf_bd_read(public_slice(bd), block, buffer, count);
}

static int checked_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    return mf_bd_prog(public_slice(bd), block, buffer, count);
}

static int checked_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    return mf_bd_erase(public_slice(bd), block, count);
}

static int checked_sync(const struct mf_bd *bd)
{
    return mf_bd_sync(public_slice(bd));
}

static void fx_log(void *context, enum mf_nbdserver_level level, const char *message)
{
    struct fixture *f = context;
    char line[600];
    int n =
        snprintf(line, sizeof line, "%s %s\n", level == MF_NBDSERVER_ERROR ? "E" : "I", message);
    if (n < 0)
        return;
    pthread_mutex_lock(&f->log_mutex);
    char *grown = realloc(f->log, f->log_size + (size_t)n + 1);
    if (grown) {
        f->log = grown;
        memcpy(f->log + f->log_size, line, (size_t)n + 1);
        f->log_size += (size_t)n;
    }
    pthread_mutex_unlock(&f->log_mutex);
}

static bool log_has(struct fixture *f, const char *needle)
{
    pthread_mutex_lock(&f->log_mutex);
    bool found = f->log && strstr(f->log, needle) != NULL;
    pthread_mutex_unlock(&f->log_mutex);
    return found;
}

static void expect_log(struct fixture *f, const char *needle)
{
    if (!log_has(f, needle)) {
        pthread_mutex_lock(&f->log_mutex);
        fprintf(stderr, "server log:\n%s", f->log ? f->log : "");
        pthread_mutex_unlock(&f->log_mutex);
        fail_msg("the server log does not say \"%s\"", needle);
    }
}

static uint8_t outside_pattern(size_t i)
{
    return (uint8_t)(0xA5 ^ (i * 7u) ^ (i >> 11));
}

static void write_fat_file(struct mf_fat *fs, const char *path, const char *text)
{
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    assert_int_equal(mf_fat_write(fs, &file, text, (uint32_t)strlen(text)), (int)strlen(text));
    assert_int_equal(mf_fat_close(fs, &file), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    f->threads_before = thread_count();
    f->dir = mf_test_tmpdir("nbdserver");
    f->disk = calloc(1, DISK_BYTES);
    f->snapshot = malloc(DISK_BYTES);
    if (!f->dir || !f->disk || !f->snapshot)
        return -1;
    pthread_mutex_init(&f->mutex, NULL);
    pthread_mutex_init(&f->log_mutex, NULL);
    mf_rambd_init(&f->ram, f->disk, BS, DISK_BYTES / BS);
    struct mf_storage_options options = {
        .secure_area = true, .volume_id = 0x2024abcd, .disk_signature = 0x11223344};
    if (mf_storage_init(&f->storage, &f->ram.bd, &options) != 0)
        return -1;
    struct mf_storage_info info;
    if (mf_storage_info(&f->storage, &info) != 0)
        return -1;
    f->public_offset = info.public_offset;
    f->public_bytes = info.public_bytes;

    /* Known bytes everywhere outside partition 1 but the MBR: the gap and the secure area. */
    for (size_t i = BS; i < DISK_BYTES; i++) {
        if (i < f->public_offset || i >= f->public_offset + f->public_bytes)
            f->disk[i] = outside_pattern(i);
    }
    /* Files written by our FAT driver, for the clients to find. */
    static struct mf_fat fs;
    if (mf_fat_mount(&fs, mf_storage_public_area(&f->storage), NULL, NULL) != 0)
        return -1;
    write_fat_file(&fs, "HELLO.TXT", HELLO_TEXT);
    assert_int_equal(mf_fat_mkdir(&fs, "Projects"), 0);
    assert_int_equal(mf_fat_mkdir(&fs, "Projects/Demo"), 0);
    write_fat_file(&fs, "Projects/Demo/job.ini", JOB_TEXT);
    if (mf_fat_unmount(&fs) != 0)
        return -1;
    memcpy(f->snapshot, f->disk, DISK_BYTES);

    const struct mf_bd *slice = mf_storage_public_area(&f->storage);
    f->checked = (struct mf_bd){
        .context = f,
        .read = checked_read,
        .prog = checked_prog,
        .erase = checked_erase,
        .sync = checked_sync,
        .block_size = slice->block_size,
        .block_count = slice->block_count,
    };
    f->lock = (struct mf_lock){.lock = fx_lock, .unlock = fx_unlock, .context = f};
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = fx_of(state);
    int rc = 0;
    if (!f)
        return -1;
    mf_nbdserver_stop(&f->server); /* also after a failed assertion */
    int threads = thread_count();
    if (threads != f->threads_before) {
        fprintf(stderr, "teardown: %d threads before the test, %d after the stop\n",
                f->threads_before, threads);
        rc = -1;
    }
    if (atomic_load(&f->unlocked_calls) != 0) {
        fprintf(stderr, "teardown: %lu device calls without the lock\n",
                (unsigned long)atomic_load(&f->unlocked_calls));
        rc = -1;
    }
    if (f->dir && mf_test_rmtree(f->dir) != 0)
        rc = -1;
    pthread_mutex_destroy(&f->mutex);
    pthread_mutex_destroy(&f->log_mutex);
    free(f->dir);
    free(f->disk);
    free(f->snapshot);
    free(f->log);
    free(f);
    return rc;
}

static void start(struct fixture *f, const struct mf_nbdserver_options *extra)
{
    struct mf_nbdserver_options options = extra ? *extra : (struct mf_nbdserver_options){0};
    options.log = fx_log;
    options.log_context = f;
    int err = mf_nbdserver_start(&f->server, "127.0.0.1:0", &f->checked, &f->lock, &options);
    if (err)
        fail_msg("mf_nbdserver_start: %s: %s", mf_strerror(err), mf_nbdserver_message(&f->server));
    assert_true(mf_nbdserver_port(&f->server) != 0);
}

static char *uri(struct fixture *f, const char *export_name)
{
    char *text = malloc(96);
    assert_non_null(text);
    snprintf(text, 96, "nbd://127.0.0.1:%u/%s", (unsigned)mf_nbdserver_port(&f->server),
             export_name);
    return text;
}

/* Runs a shell command (printf-style) and returns its output; fails the test on a non-zero
 * exit status unless `may_fail`. */
static struct mf_test_output run(bool may_fail, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static struct mf_test_output run(bool may_fail, const char *format, ...)
{
    char command[4096];
    va_list ap;
    va_start(ap, format);
    vsnprintf(command, sizeof command, format, ap);
    va_end(ap);
    struct mf_test_output out;
    assert_int_equal(mf_test_run(command, NULL, 0, &out), 0);
    if (!may_fail && out.status != 0)
        fail_msg("`%s` exited with %d:\n%s%s", command, out.status, out.out, out.err);
    return out;
}

/* Everything outside partition 1 still holds its bytes. */
static void check_outside(struct fixture *f)
{
    uint64_t end = f->public_offset + f->public_bytes;
    for (size_t i = 0; i < DISK_BYTES; i++) {
        if ((i < f->public_offset || i >= end) && f->disk[i] != f->snapshot[i])
            fail_msg("disk byte %zu, outside partition 1, changed", i);
    }
}

static const uint8_t *partition(const struct fixture *f)
{
    return f->disk + f->public_offset;
}

static char *path_in(struct fixture *f, const char *name)
{
    char *p = mf_test_path(f->dir, name);
    char *q = mf_test_shell_quote(p);
    free(p);
    return q;
}

static void read_file_or_fail(const char *quoted_path_unquoted, uint8_t **data, size_t *size)
{
    char *text = NULL;
    assert_int_equal(mf_test_read_file(quoted_path_unquoted, &text, size), 0);
    *data = (uint8_t *)text;
}

/* Reads a file of the public area through our FAT driver. */
static char *fat_read(struct fixture *f, const char *path)
{
    static struct mf_fat fs;
    assert_int_equal(mf_fat_mount(&fs, mf_storage_public_area(&f->storage), NULL, NULL), 0);
    struct mf_fat_file file;
    int err = mf_fat_open(&fs, &file, path, MF_FAT_O_RDONLY);
    if (err)
        fail_msg("%s: %s", path, mf_strerror(err));
    uint32_t size = mf_fat_size(&file);
    char *text = calloc(1, size + 1u);
    assert_non_null(text);
    assert_int_equal(mf_fat_read(&fs, &file, text, size), (int)size);
    assert_int_equal(mf_fat_close(&fs, &file), 0);
    assert_int_equal(mf_fat_unmount(&fs), 0);
    return text;
}

/* ---- raw client ---- */

static int raw_connect(struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(mf_nbdserver_port(&f->server))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        fail_msg("connect: %s", strerror(errno));
    return fd;
}

static void raw_send(int fd, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("send: %s", strerror(errno));
        p += n;
        size -= (size_t)n;
    }
}

/* Receives exactly `size` bytes; false at end of stream. */
static bool raw_recv(int fd, void *data, size_t size)
{
    uint8_t *p = data;
    while (size) {
        ssize_t n = recv(fd, p, size, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        size -= (size_t)n;
    }
    return true;
}

/* True when the server hung up: end of stream (after any bytes still queued). */
static bool raw_hung_up(int fd)
{
    uint8_t byte;
    for (int i = 0; i < 1 << 20; i++) {
        ssize_t n = recv(fd, &byte, 1, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
    return false;
}

static void put_be(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v = v << 8 | p[i];
    return v;
}

/* Greeting, flags, NBD_OPT_GO for "": returns the export size. */
static uint64_t raw_handshake(int fd)
{
    uint8_t greeting[18];
    assert_true(raw_recv(fd, greeting, sizeof greeting));
    assert_memory_equal(greeting, "NBDMAGICIHAVEOPT", 16);
    uint8_t go[4 + 16 + 6] = {0};
    put_be(go, 3, 4);
    memcpy(go + 4, "IHAVEOPT", 8);
    put_be(go + 12, 7, 4);
    put_be(go + 16, 6, 4);
    raw_send(fd, go, sizeof go);
    uint64_t size = 0;
    for (int replies = 0; replies < 16; replies++) {
        uint8_t h[20];
        assert_true(raw_recv(fd, h, sizeof h));
        uint32_t type = (uint32_t)get_be(h + 12, 4);
        uint32_t length = (uint32_t)get_be(h + 16, 4);
        uint8_t data[64];
        assert_true(length <= sizeof data);
        assert_true(raw_recv(fd, data, length));
        if (type == 3 && get_be(data, 2) == 0)
            size = get_be(data + 2, 8);
        if (type == 1)
            return size;
        assert_int_equal(type, 3);
    }
    fail_msg("no ACK to NBD_OPT_GO");
    return 0;
}

static void raw_request(int fd, uint16_t type, uint64_t handle, uint64_t offset, uint32_t length)
{
    uint8_t r[28];
    put_be(r, REQUEST_MAG, 4);
    put_be(r + 4, 0, 2);
    put_be(r + 6, type, 2);
    put_be(r + 8, handle, 8);
    put_be(r + 16, offset, 8);
    put_be(r + 24, length, 4);
    raw_send(fd, r, sizeof r);
}

static uint32_t raw_reply(int fd, uint64_t handle)
{
    uint8_t r[16];
    assert_true(raw_recv(fd, r, sizeof r));
    assert_int_equal(get_be(r, 4), REPLY_MAG);
    assert_true(get_be(r + 8, 8) == handle);
    return (uint32_t)get_be(r + 4, 4);
}

/* ---- tests with real clients ---- */

static void test_nbdinfo(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    char *u = uri(f, "");
    struct mf_test_output out = run(false, "nbdinfo --json '%s'", u);
    char expected[64];
    snprintf(expected, sizeof expected, "\"export-size\": %llu",
             (unsigned long long)f->public_bytes);
    assert_non_null(strstr(out.out, expected));
    assert_non_null(strstr(out.out, "\"block_size_minimum\": 1,"));
    assert_non_null(strstr(out.out, "\"block_size_preferred\": 4096,"));
    assert_non_null(strstr(out.out, "\"block_size_maximum\": 33554432,"));
    assert_non_null(strstr(out.out, "\"is_read_only\": false"));
    assert_non_null(strstr(out.out, "\"can_flush\": true"));
    assert_non_null(strstr(out.out, "\"can_fua\": true"));
    assert_non_null(strstr(out.out, "\"can_trim\": true"));
    assert_non_null(strstr(out.out, "\"export-name\": \"public\""));
    mf_test_output_free(&out);
    free(u);

    /* Listed under its name; "public" works, another name does not. */
    u = uri(f, "");
    out = run(false, "nbdinfo --list '%s'", u);
    assert_non_null(strstr(out.out, "export=\"public\""));
    assert_non_null(strstr(out.out, MF_NBD_DESCRIPTION));
    mf_test_output_free(&out);
    free(u);
    u = uri(f, "public");
    out = run(false, "nbdinfo --size '%s'", u);
    assert_int_equal(strtoull(out.out, NULL, 10), f->public_bytes);
    mf_test_output_free(&out);
    free(u);
    u = uri(f, "secure");
    out = run(true, "nbdinfo --size '%s'", u);
    assert_int_not_equal(out.status, 0);
    mf_test_output_free(&out);
    free(u);
    expect_log(f, "connected");
    expect_log(f, "NBD_CMD_DISC");
}

static void test_nbdcopy_reads_partition_and_mtools_lists_it(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    char *u = uri(f, "");
    char *image = path_in(f, "out.img");
    struct mf_test_output out = run(false, "nbdcopy '%s' %s", u, image);
    mf_test_output_free(&out);

    char *plain = mf_test_path(f->dir, "out.img");
    uint8_t *copy;
    size_t size;
    read_file_or_fail(plain, &copy, &size);
    assert_int_equal(size, f->public_bytes);
    assert_memory_equal(copy, partition(f), size); /* byte-identical to partition 1 */
    free(copy);
    free(plain);

    out = run(false, "MTOOLS_SKIP_CHECK=1 mdir -i %s ::", image);
    assert_non_null(strstr(out.out, "HELLO"));
    assert_non_null(strstr(out.out, "Projects"));
    mf_test_output_free(&out);
    out = run(false, "MTOOLS_SKIP_CHECK=1 mtype -i %s ::Projects/Demo/job.ini", image);
    assert_string_equal(out.out, JOB_TEXT);
    mf_test_output_free(&out);
    check_outside(f);
    free(image);
    free(u);
}

static void test_mcopy_onto_copy_then_nbdcopy_back(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    char *u = uri(f, "public");
    char *image = path_in(f, "volume.img");
    char *note = path_in(f, "note.txt");
    char *plain_note = mf_test_path(f->dir, "note.txt");
    static const char note_text[] = "Written by mcopy on a copy, sent back through nbdcopy.\n";
    assert_int_equal(mf_test_write_file(plain_note, note_text, strlen(note_text)), 0);

    struct mf_test_output out = run(false, "nbdcopy '%s' %s", u, image);
    mf_test_output_free(&out);
    out = run(false,
              "export MTOOLS_SKIP_CHECK=1; mcopy -i %s %s ::NOTE.TXT && mmd -i %s ::Outbox && "
              "mcopy -i %s %s ::Outbox/LONG-NAME-NOTE.txt",
              image, note, image, image, note);
    mf_test_output_free(&out);
    out = run(false, "nbdcopy --flush %s '%s'", image, u);
    mf_test_output_free(&out);

    /* The partition now holds the edited volume, byte for byte ... */
    char *plain = mf_test_path(f->dir, "volume.img");
    uint8_t *copy;
    size_t size;
    read_file_or_fail(plain, &copy, &size);
    assert_int_equal(size, f->public_bytes);
    assert_memory_equal(copy, partition(f), size);
    free(copy);
    free(plain);
    /* ... which our FAT driver reads: the new files and the old ones. */
    char *text = fat_read(f, "NOTE.TXT");
    assert_string_equal(text, note_text);
    free(text);
    text = fat_read(f, "Outbox/long-name-note.TXT");
    assert_string_equal(text, note_text);
    free(text);
    text = fat_read(f, "HELLO.TXT");
    assert_string_equal(text, HELLO_TEXT);
    free(text);
    check_outside(f);
    free(plain_note);
    free(note);
    free(image);
    free(u);
}

static void test_nbdcopy_writes_whole_partition(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    uint8_t *data = malloc(f->public_bytes);
    assert_non_null(data);
    uint64_t seed = mf_test_seed("nbdcopy write", 0xfeed);
    for (size_t i = 0; i < f->public_bytes; i += 8) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(data + i, &seed, 8);
    }
    memset(data + 4096, 0, 1u << 20); /* a run of zeros: nbdcopy may treat it specially */
    char *plain = mf_test_path(f->dir, "in.img");
    assert_int_equal(mf_test_write_file(plain, data, f->public_bytes), 0);
    char *image = mf_test_shell_quote(plain);
    char *u = uri(f, "");
    struct mf_test_output out = run(false, "nbdcopy --flush %s '%s'", image, u);
    mf_test_output_free(&out);
    assert_memory_equal(partition(f), data, f->public_bytes);
    check_outside(f);

    /* Read back through the device as well (not only the RAM behind it). */
    uint8_t block[BS];
    const struct mf_bd *bd = mf_storage_public_area(&f->storage);
    assert_int_equal(mf_bd_read(bd, bd->block_count - 1, block, 1), 0);
    assert_memory_equal(block, data + f->public_bytes - BS, BS);
    free(data);
    free(image);
    free(plain);
    free(u);
}

static void test_read_only_server(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, &(struct mf_nbdserver_options){.read_only = true, .export_name = "area"});
    char *u = uri(f, "area");
    struct mf_test_output out = run(false, "nbdinfo --json '%s'", u);
    assert_non_null(strstr(out.out, "\"is_read_only\": true"));
    assert_non_null(strstr(out.out, "\"can_trim\": false"));
    mf_test_output_free(&out);
    char *plain = mf_test_path(f->dir, "zeros.img");
    uint8_t *zeros = calloc(1, f->public_bytes);
    assert_non_null(zeros);
    assert_int_equal(mf_test_write_file(plain, zeros, f->public_bytes), 0);
    free(zeros);
    char *image = mf_test_shell_quote(plain);
    out = run(true, "nbdcopy %s '%s'", image, u);
    assert_int_not_equal(out.status, 0);
    mf_test_output_free(&out);
    assert_memory_equal(f->disk, f->snapshot, DISK_BYTES); /* nothing changed at all */
    free(image);
    free(plain);
    free(u);
}

/* The live export through FUSE, written by mtools: only where nbdfuse can mount. */
static void test_nbdfuse_mtools(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    char *u = uri(f, "");
    char *dir = mf_test_shell_quote(f->dir);
    static const char script[] =
        "set -u; d=%s; mkdir \"$d/mnt\"; printf 'through fuse\\n' > \"$d/fuse.txt\"\n"
        "command -v nbdfuse >/dev/null || { echo 'no nbdfuse'; exit 77; }\n"
        "nbdfuse -P \"$d/pid\" \"$d/mnt\" '%s' 2>\"$d/fuse.err\" & f=$!\n"
        "done_fuse() { umount \"$d/mnt\" 2>/dev/null || fusermount3 -u \"$d/mnt\" 2>/dev/null;"
        " wait $f 2>/dev/null; }\n"
        "trap done_fuse EXIT\n"
        /* a hang guard, not a timing check: give up after 400 polls */
        "i=0; while [ ! -s \"$d/pid\" ]; do\n"
        "  kill -0 $f 2>/dev/null || { echo \"cannot mount: $(cat \"$d/fuse.err\")\"; exit 77; }\n"
        "  i=$((i+1)); [ $i -gt 400 ] && { echo 'nbdfuse never became ready'; exit 1; }\n"
        "  sleep 0.05; done\n"
        "export MTOOLS_SKIP_CHECK=1\n"
        "mdir -i \"$d/mnt/nbd\" :: && mcopy -i \"$d/mnt/nbd\" \"$d/fuse.txt\" ::FUSE.TXT\n";
    struct mf_test_output out = run(true, script, dir, u);
    if (out.status == 77) {
        fprintf(stderr, "nbdfuse test skipped: %s", out.out);
        mf_test_output_free(&out);
        free(dir);
        free(u);
        skip();
    }
    if (out.status != 0)
        fail_msg("nbdfuse script exited with %d:\n%s%s", out.status, out.out, out.err);
    assert_non_null(strstr(out.out, "HELLO"));
    mf_test_output_free(&out);
    char *text = fat_read(f, "FUSE.TXT");
    assert_string_equal(text, "through fuse\n");
    free(text);
    check_outside(f);
    free(dir);
    free(u);
}

/* ---- raw clients ---- */

static void test_requests_beyond_the_end(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    int fd = raw_connect(f);
    uint64_t size = raw_handshake(fd);
    assert_true(size == f->public_bytes);

    raw_request(fd, 0, 1, size, 512); /* read past the end */
    assert_int_equal(raw_reply(fd, 1), 22);
    raw_request(fd, 0, 2, size - 512, 1024); /* straddles the end */
    assert_int_equal(raw_reply(fd, 2), 22);
    uint8_t payload[4096];
    memset(payload, 0xCC, sizeof payload);
    raw_request(fd, 1, 3, size - 100, sizeof payload); /* write straddling into partition 2 */
    raw_send(fd, payload, sizeof payload);
    assert_int_equal(raw_reply(fd, 3), 28);
    raw_request(fd, 1, 4, size, 1);
    raw_send(fd, payload, 1);
    assert_int_equal(raw_reply(fd, 4), 28);
    raw_request(fd, 1, 5, UINT64_MAX - 10, 512); /* wraps */
    raw_send(fd, payload, 512);
    assert_int_equal(raw_reply(fd, 5), 28);
    raw_request(fd, 4, 6, size - 512, 4096); /* trim past the end */
    assert_int_equal(raw_reply(fd, 6), 22);
    check_outside(f);
    assert_memory_equal(f->disk, f->snapshot, DISK_BYTES);

    /* The last bytes inside still work, unaligned. */
    raw_request(fd, 1, 7, size - 3, 3);
    raw_send(fd, "END", 3);
    assert_int_equal(raw_reply(fd, 7), 0);
    raw_request(fd, 0, 8, size - 5, 5);
    assert_int_equal(raw_reply(fd, 8), 0);
    uint8_t back[5];
    assert_true(raw_recv(fd, back, sizeof back));
    assert_memory_equal(back + 2, "END", 3);
    assert_memory_equal(partition(f) + size - 3, "END", 3);
    raw_request(fd, 2, 9, 0, 0);
    assert_true(raw_hung_up(fd));
    close(fd);
    check_outside(f);
}

static void test_hostile_clients_do_not_disturb_others(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    int good = raw_connect(f);
    raw_handshake(good);

    /* Bad request magic after a good handshake: dropped. */
    int bad = raw_connect(f);
    raw_handshake(bad);
    uint8_t junk[28];
    memset(junk, 0x41, sizeof junk);
    raw_send(bad, junk, sizeof junk);
    assert_true(raw_hung_up(bad));
    close(bad);
    expect_log(f, "dropped: request at byte 26: bad magic 0x41414141");

    /* Garbage instead of client flags, then garbage options. */
    bad = raw_connect(f);
    uint8_t greeting[18];
    assert_true(raw_recv(bad, greeting, sizeof greeting));
    raw_send(bad, "\xff\xff\xff\xff", 4);
    assert_true(raw_hung_up(bad));
    close(bad);
    bad = raw_connect(f);
    assert_true(raw_recv(bad, greeting, sizeof greeting));
    raw_send(bad, "\0\0\0\x03GET / HTTP/1.1\r\n\r\n", 23);
    assert_true(raw_hung_up(bad));
    close(bad);
    expect_log(f, "bad magic");

    /* An unknown export through the old-style option: the protocol says hang up. */
    bad = raw_connect(f);
    assert_true(raw_recv(bad, greeting, sizeof greeting));
    uint8_t opt[4 + 16 + 6];
    put_be(opt, 3, 4);
    memcpy(opt + 4, "IHAVEOPT", 8);
    put_be(opt + 12, 1, 4);
    put_be(opt + 16, 6, 4);
    memcpy(opt + 20, "secure", 6);
    raw_send(bad, opt, sizeof opt);
    assert_true(raw_hung_up(bad));
    close(bad);
    expect_log(f, "NBD_OPT_EXPORT_NAME asks for an export that does not exist");

    /* Connect and leave at once. */
    bad = raw_connect(f);
    close(bad);

    /* The first client never noticed. */
    raw_request(good, 0, 42, 0, 512);
    assert_int_equal(raw_reply(good, 42), 0);
    uint8_t block[512];
    assert_true(raw_recv(good, block, sizeof block));
    assert_memory_equal(block, partition(f), sizeof block);
    raw_request(good, 2, 43, 0, 0);
    assert_true(raw_hung_up(good));
    close(good);
    check_outside(f);
}

struct writer {
    struct fixture *f;
    int index;
    int failures;
};

#define WRITERS     4
#define SLICE_BYTES 100u   /* each writer owns every 4th 100-byte slice: blocks are shared */
#define REGION      65536u /* bytes of the partition the writers share */
#define ROUNDS      3

static uint8_t writer_byte(int index, int round, size_t offset)
{
    return (uint8_t)(index * 61 + round * 17 + (int)(offset % 251));
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(mf_nbdserver_port(&w->f->server))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        w->failures++;
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    uint8_t greeting[18];
    uint8_t go[4 + 16 + 6] = {0};
    put_be(go, 3, 4);
    memcpy(go + 4, "IHAVEOPT", 8);
    put_be(go + 12, 7, 4);
    put_be(go + 16, 6, 4);
    if (!raw_recv(fd, greeting, sizeof greeting) ||
        send(fd, go, sizeof go, MSG_NOSIGNAL) != (ssize_t)sizeof go) {
        w->failures++;
        close(fd);
        return NULL;
    }
    for (int replies = 0;; replies++) { /* INFO_EXPORT, INFO_BLOCK_SIZE, ACK */
        uint8_t h[20], data[64];
        uint32_t length;
        if (replies > 8 || !raw_recv(fd, h, sizeof h) ||
            (length = (uint32_t)get_be(h + 16, 4)) > sizeof data || !raw_recv(fd, data, length)) {
            w->failures++;
            close(fd);
            return NULL;
        }
        if (get_be(h + 12, 4) == 1)
            break;
    }
    uint8_t message[28 + SLICE_BYTES];
    for (int round = 0; round < ROUNDS; round++) {
        for (uint64_t offset = (uint64_t)w->index * SLICE_BYTES; offset + SLICE_BYTES <= REGION;
             offset += WRITERS * SLICE_BYTES) {
            put_be(message, REQUEST_MAG, 4);
            put_be(message + 4, 0, 2);
            put_be(message + 6, 1, 2);
            put_be(message + 8, offset, 8);
            put_be(message + 16, offset, 8);
            put_be(message + 24, SLICE_BYTES, 4);
            for (size_t i = 0; i < SLICE_BYTES; i++)
                message[28 + i] = writer_byte(w->index, round, offset + i);
            uint8_t reply[16];
            if (send(fd, message, sizeof message, MSG_NOSIGNAL) != (ssize_t)sizeof message ||
                !raw_recv(fd, reply, sizeof reply) || get_be(reply + 4, 4) != 0) {
                w->failures++;
                close(fd);
                return NULL;
            }
        }
    }
    put_be(message + 6, 2, 2); /* NBD_CMD_DISC */
    put_be(message + 16, 0, 8);
    put_be(message + 24, 0, 4);
    (void)send(fd, message, 28, MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static void test_concurrent_unaligned_writers(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, &(struct mf_nbdserver_options){.max_clients = WRITERS});
    pthread_t threads[WRITERS];
    struct writer writers[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        writers[i] = (struct writer){.f = f, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, writer_main, &writers[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(writers[i].failures, 0);
    /* Every slice holds its writer's last round: no read-modify-write undid another's bytes. */
    const uint8_t *p = partition(f);
    for (size_t offset = 0; offset < REGION; offset++) {
        int index = (int)((offset / SLICE_BYTES) % WRITERS);
        uint8_t expected = offset / SLICE_BYTES * SLICE_BYTES + SLICE_BYTES <= REGION
                               ? writer_byte(index, ROUNDS - 1, offset)
                               : f->snapshot[f->public_offset + offset];
        if (p[offset] != expected)
            fail_msg("partition byte %zu is 0x%02X, expected 0x%02X (writer %d)", offset, p[offset],
                     expected, index);
    }
    check_outside(f);
}

static void test_stop_with_clients_connected(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, NULL);
    uint16_t port = mf_nbdserver_port(&f->server);
    int idle = raw_connect(f); /* in transmission, idle */
    raw_handshake(idle);
    int early = raw_connect(f); /* greeting received, nothing sent */
    uint8_t greeting[18];
    assert_true(raw_recv(early, greeting, sizeof greeting));
    int half = raw_connect(f); /* half a request header, half a write payload */
    raw_handshake(half);
    uint8_t r[28];
    put_be(r, REQUEST_MAG, 4);
    put_be(r + 4, 0, 2);
    put_be(r + 6, 1, 2);
    put_be(r + 8, 1, 8);
    put_be(r + 16, 0, 8);
    put_be(r + 24, 1024, 4);
    raw_send(half, r, sizeof r);
    raw_send(half, "partial", 7);
    /* Every client is being served before the stop (their greetings came from their threads). */
    raw_request(idle, 0, 5, 0, 8);
    assert_int_equal(raw_reply(idle, 5), 0);
    uint8_t eight[8];
    assert_true(raw_recv(idle, eight, sizeof eight));
    assert_int_equal(mf_nbdserver_clients(&f->server), 3);

    assert_int_equal(mf_nbdserver_stop(&f->server), 0);
    assert_int_equal(thread_count(), f->threads_before);
    assert_true(raw_hung_up(idle));
    assert_true(raw_hung_up(early));
    assert_true(raw_hung_up(half));
    close(idle);
    close(early);
    close(half);
    assert_int_equal(mf_nbdserver_port(&f->server), 0);
    assert_int_equal(mf_nbdserver_stop(&f->server), 0); /* twice is harmless */
    expect_log(f, "server stopping");
    assert_memory_equal(f->disk, f->snapshot, DISK_BYTES); /* the half write never landed */

    /* The same port can be served again at once. */
    char address[32];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)port);
    int err = mf_nbdserver_start(&f->server, address, &f->checked, &f->lock, NULL);
    if (err)
        fail_msg("restart: %s", mf_nbdserver_message(&f->server));
    assert_int_equal(mf_nbdserver_port(&f->server), port);
    int again = raw_connect(f);
    assert_true(raw_handshake(again) == f->public_bytes);
    close(again);
}

static void test_start_errors(void **state)
{
    struct fixture *f = fx_of(state);
    static const char *const bad[] = {"127.0.0.1",       "127.0.0.1:",    ":10809",
                                      "127.0.0.1:65536", "127.0.0.1:12a", "[::1:10809",
                                      "[::1]10809",      "192.0.2.300:1"};
    struct mf_nbdserver s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int err = mf_nbdserver_start(&s, bad[i], &f->checked, NULL, NULL);
        if (err != MF_EINVAL)
            fail_msg("\"%s\": %d (%s)", bad[i], err, mf_nbdserver_message(&s));
        assert_true(mf_nbdserver_message(&s)[0] != '\0');
        assert_int_equal(mf_nbdserver_stop(&s), 0);
    }
    int err = mf_nbdserver_start(&s, "127.0.0.1:0", &f->checked, NULL,
                                 &(struct mf_nbdserver_options){.export_name = "bad\nname"});
    assert_int_equal(err, MF_EINVAL);
    err = mf_nbdserver_start(&s, "127.0.0.1:0", &f->checked, NULL,
                             &(struct mf_nbdserver_options){.max_clients = 1000});
    assert_int_equal(err, MF_EINVAL);

    /* The address in use: a second server on the first one's port. */
    start(f, NULL);
    char address[32];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)mf_nbdserver_port(&f->server));
    err = mf_nbdserver_start(&s, address, &f->checked, NULL, NULL);
    assert_int_equal(err, MF_EBUSY);
    assert_non_null(strstr(mf_nbdserver_message(&s), "in use"));
    assert_int_equal(mf_nbdserver_stop(&s), 0);
    assert_int_equal(mf_nbdserver_port(&s), 0);

    /* A name that resolves works as well as a number. */
    err = mf_nbdserver_start(&s, "localhost:0", &f->checked, NULL, NULL);
    if (err)
        fail_msg("localhost:0: %s", mf_nbdserver_message(&s));
    assert_true(mf_nbdserver_port(&s) != 0);
    assert_int_equal(mf_nbdserver_stop(&s), 0);
}

/* The handshake timeout is long enough for a and b to finish theirs on a loaded machine (ASan,
 * two cores, other builds): 300 ms once dropped one there. */
static void test_client_limit_and_handshake_timeout(void **state)
{
    struct fixture *f = fx_of(state);
    start(f, &(struct mf_nbdserver_options){.max_clients = 2, .handshake_timeout_ms = 1500});
    int a = raw_connect(f);
    raw_handshake(a);
    int b = raw_connect(f);
    raw_handshake(b);
    int c = raw_connect(f);
    assert_true(raw_hung_up(c)); /* turned away without a greeting */
    close(c);
    expect_log(f, "turned away: 2 clients already connected");

    /* A client that never chooses an export is let go; one in transmission is not. Once b's
     * hang-up is seen, its slot is free (the server reaps before it accepts). */
    raw_request(b, 2, 9, 0, 0);
    assert_true(raw_hung_up(b));
    close(b);
    int slow = raw_connect(f);
    uint8_t greeting[18];
    assert_true(raw_recv(slow, greeting, sizeof greeting));
    assert_true(raw_hung_up(slow));
    close(slow);
    expect_log(f, "no export chosen within 1500 ms");
    raw_request(a, 0, 1, 0, 4);
    assert_int_equal(raw_reply(a, 1), 0);
    uint8_t four[4];
    assert_true(raw_recv(a, four, sizeof four));
    close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nbdinfo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbdcopy_reads_partition_and_mtools_lists_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mcopy_onto_copy_then_nbdcopy_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbdcopy_writes_whole_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbdfuse_mtools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_beyond_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_clients_do_not_disturb_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_unaligned_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_clients_connected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_limit_and_handshake_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
