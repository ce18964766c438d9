/* Sealed setup packages (mf_package): round trips through the writer and the checking reader, the
 * package's files as an area (and installed into a secure area through it), and every way to
 * break one: a flipped byte in every region, truncation at many lengths, another programmer,
 * another owner, outside the validity dates, and packages that are signed but lie (built by an
 * independent writer in this file, straight from the format in docs/internals/owner.md). A
 * generated setup of 64 MiB packs and opens in bounded memory (512 MiB with MF_SOAK=1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_owner.h"
#include "mf_package.h"
#include "mf_rambd.h"
#include "mf_ramanchor.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_testfat.h"
#include "mf_testutil.h"

#include <sodium.h>

/* ---- fixtures: identities, input files, packages in memory ---- */

struct who {
    uint8_t secret[64];
    struct mf_owner_identity id;
};

static void make_who(struct who *w)
{
    randombytes_buf(w->secret, sizeof w->secret);
    mf_owner_identity_derive(w->secret, &w->id);
}

struct input {
    const char *path;
    const uint8_t *data; /* NULL: generated from the offset */
    uint64_t size;
};

static uint8_t generated(uint32_t index, uint64_t offset)
{
    uint64_t x = offset * 0x9E3779B97F4A7C15ull + index;
    return (uint8_t)(x >> 29 ^ x >> 47);
}

struct inputs {
    const struct input *files;
    unsigned count;
    unsigned reads;        /* calls so far */
    unsigned change_after; /* when non-zero: from this read on, content differs */
};

static int inputs_read(void *context, uint32_t index, uint64_t offset, void *buffer, size_t length)
{
    struct inputs *in = context;
    const struct input *f = &in->files[index];
    in->reads++;
    if (offset > f->size || length > f->size - offset)
        return MF_EIO;
    uint8_t *out = buffer;
    for (size_t i = 0; i < length; i++)
        out[i] = f->data ? f->data[offset + i] : generated(index, offset + i);
    if (in->change_after && in->reads >= in->change_after && length)
        out[0] ^= 1;
    return 0;
}

struct blob {
    uint8_t *data;
    size_t size, capacity;
};

static int blob_write(void *context, const void *data, size_t length)
{
    struct blob *b = context;
    if (b->size + length > b->capacity) {
        size_t cap = b->capacity ? b->capacity : 4096;
        while (cap < b->size + length)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return MF_ENOMEM;
        b->data = p;
        b->capacity = cap;
    }
    memcpy(b->data + b->size, data, length);
    b->size += length;
    return 0;
}

static void blob_free(struct blob *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Reads a package from memory, with one byte optionally flipped. */
struct reader {
    const uint8_t *data;
    size_t size;
    size_t flip_at; /* SIZE_MAX: none */
    uint8_t flip;
};

static int reader_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    struct reader *r = context;
    if (offset > r->size || length > r->size - offset)
        return MF_EIO;
    memcpy(buffer, r->data + offset, length);
    if (r->flip_at >= offset && r->flip_at - offset < length)
        ((uint8_t *)buffer)[r->flip_at - offset] ^= r->flip;
    return 0;
}

struct fixture {
    struct who a, b, c;
    uint8_t owner_seed[32], owner_pk[32];
    uint8_t other_seed[32], other_pk[32];
    char message[MF_PACKAGE_MESSAGE_MAX];
};

static int setup_fixture(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    make_who(&f->a);
    make_who(&f->b);
    make_who(&f->c);
    uint8_t sk[64];
    randombytes_buf(f->owner_seed, 32);
    mf_owner_keypair_from_seed(f->owner_seed, f->owner_pk, sk);
    randombytes_buf(f->other_seed, 32);
    mf_owner_keypair_from_seed(f->other_seed, f->other_pk, sk);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    free(*state);
    return 0;
}

/* A production setup like examples/demo-job, plus files that span chunks, an empty file, a
 * deep folder and names that only differ from the order of the setup id by case. */
static const char flasher_ini[] = "[CONFIG]\nProject = 01_Demo\n";
static const char job_ini[] = "[job]\ndevice = SIM-F4-1M\nerase = sectors\nverify = crc\n\n"
                              "[file]\npath = firmware.bin\nbase = 0x08000000\n";
static const char cntdown[] = "5\n";
static const char serial[] = "1000\n";
static const char notes[] = "notes for the owner\n";

static const struct input demo_files[] = {
    {"Projects/01_Demo/01_Firmware/job.ini", (const uint8_t *)job_ini, sizeof job_ini - 1},
    {"FLASHER.INI", (const uint8_t *)flasher_ini, sizeof flasher_ini - 1},
    {"Projects/01_Demo/Cntdown.txt", (const uint8_t *)cntdown, sizeof cntdown - 1},
    {"Projects/01_Demo/Serial.txt", (const uint8_t *)serial, sizeof serial - 1},
    {"Projects/01_Demo/01_Firmware/firmware.bin", NULL, 12288},
    {"Projects/01_Demo/big.bin", NULL, 2 * MF_PACKAGE_CHUNK + 100},
    {"Projects/01_Demo/exact.bin", NULL, MF_PACKAGE_CHUNK},
    {"empty.txt", (const uint8_t *)"", 0},
    {"docs/a/b/c/notes.txt", (const uint8_t *)notes, sizeof notes - 1},
    {"Docs-x.txt", (const uint8_t *)notes, 5},
    {"zeta.txt", (const uint8_t *)notes, 3},
};
#define DEMO_COUNT (sizeof demo_files / sizeof demo_files[0])

static int pack(struct fixture *f, const struct input *files, unsigned count,
                const uint8_t (*to)[32], unsigned to_count, int64_t nb, int64_t na,
                const uint8_t *seed, struct blob *out, uint8_t id[32])
{
    struct inputs in = {files, count, 0, 0};
    struct mf_package_input list[64];
    assert_true(count <= 64);
    for (unsigned i = 0; i < count; i++)
        list[i] = (struct mf_package_input){files[i].path, files[i].size};
    struct mf_package_spec spec = {
        .files = list,
        .file_count = count,
        .read = inputs_read,
        .read_context = &in,
        .recipients = to,
        .recipient_count = to_count,
        .not_before = nb,
        .not_after = na,
        .owner_seed = seed,
        .write = blob_write,
        .write_context = out,
    };
    return mf_package_write(&spec, id, f->message);
}

static void pack_demo(struct fixture *f, struct blob *out, uint8_t id[32])
{
    const uint8_t(*to)[32] = (const uint8_t(*)[32])f->a.id.pub.x25519;
    int err = pack(f, demo_files, DEMO_COUNT, to, 1, 0, 0, f->owner_seed, out, id);
    if (err)
        fail_msg("pack: %d %s", err, f->message);
}

static int open_as(struct fixture *f, struct mf_package *p, struct reader *r, const struct who *w,
                   const uint8_t *pinned, int64_t now)
{
    return mf_package_open(p, reader_read, r, r->size, w->id.x25519_secret, w->id.pub.x25519,
                           pinned, now, f->message);
}

/* The setup id as the format defines it, computed here independently: the files sorted by
 * upper-cased path, those the programmer changes left out. */
static char up(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
}

static int upper_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)up(*a), y = (unsigned char)up(*b);
        if (x != y || !x)
            return x - y;
    }
}

static bool excluded(const char *path)
{
    const char *base = strrchr(path, '/');
    bool root = !base;
    base = base ? base + 1 : path;
    if (!strcasecmp(base, "cntdown.txt") || !strcasecmp(base, "serial.txt"))
        return true;
    return root && (!strcasecmp(base, "flasher.ini") || !strcasecmp(base, "flasher.log") ||
                    !strcasecmp(base, "flasher.old"));
}

static void expected_setup_id(const struct input *files, unsigned count, uint8_t id[32])
{
    unsigned order[64];
    for (unsigned i = 0; i < count; i++)
        order[i] = i;
    for (unsigned i = 1; i < count; i++) {
        for (unsigned j = i; j > 0 && upper_cmp(files[order[j - 1]].path, files[order[j]].path) > 0;
             j--) {
            unsigned t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (unsigned k = 0; k < count; k++) {
        const struct input *in = &files[order[k]];
        if (excluded(in->path))
            continue;
        char u[300];
        size_t n = strlen(in->path);
        for (size_t i = 0; i <= n; i++)
            u[i] = up(in->path[i]);
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(in->size >> (8 * i));
        crypto_hash_sha256_update(&st, (const uint8_t *)u, n + 1);
        crypto_hash_sha256_update(&st, le, 8);
        for (uint64_t o = 0; o < in->size; o++) {
            uint8_t byte = in->data ? in->data[o] : generated(order[k], o);
            crypto_hash_sha256_update(&st, &byte, 1);
        }
    }
    crypto_hash_sha256_final(&st, id);
}

/* ---- bounded memory (first: ru_maxrss is the process's peak so far) ---- */

struct file_sink {
    int fd;
    uint64_t size;
};

static int file_write(void *context, const void *data, size_t length)
{
    struct file_sink *s = context;
    const uint8_t *p = data;
    for (size_t done = 0; done < length;) {
        ssize_t n = write(s->fd, p + done, length - done);
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    s->size += length;
    return 0;
}

static int file_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    struct file_sink *s = context;
    ssize_t n = pread(s->fd, buffer, length, (off_t)offset);
    return n == (ssize_t)length ? 0 : MF_EIO;
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_bounded_memory(void **state)
{
    struct fixture *f = *state;
#ifdef MF_UNDER_ASAN
    const uint64_t big = 8ull << 20; /* ASan's own memory makes RSS meaningless here */
#else
    const uint64_t big = mf_test_soak() ? 512ull << 20 : 64ull << 20;
#endif
    long before = peak_kib();
    char *dir = mf_test_tmpdir("package-big");
    assert_non_null(dir);
    char *path = mf_test_path(dir, "big.mfp");
    struct file_sink sink = {-1, 0};
    sink.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(sink.fd >= 0);
    const struct input files[] = {
        {"FLASHER.INI", (const uint8_t *)flasher_ini, sizeof flasher_ini - 1},
        {"Projects/01_Big/01_Job/image.bin", NULL, big - 1000},
        {"Projects/01_Big/01_Job/tail.bin", NULL, 1000},
    };
    struct inputs in = {files, 3, 0, 0};
    struct mf_package_input list[3];
    for (unsigned i = 0; i < 3; i++)
        list[i] = (struct mf_package_input){files[i].path, files[i].size};
    struct mf_package_spec spec = {.files = list,
                                   .file_count = 3,
                                   .read = inputs_read,
                                   .read_context = &in,
                                   .recipients = (const uint8_t(*)[32])f->a.id.pub.x25519,
                                   .recipient_count = 1,
                                   .owner_seed = f->owner_seed,
                                   .write = file_write,
                                   .write_context = &sink};
    uint8_t id[32];
    int err = mf_package_write(&spec, id, f->message);
    if (err)
        fail_msg("%s", f->message);
    struct mf_package p;
    err = mf_package_open(&p, file_read, &sink, sink.size, f->a.id.x25519_secret,
                          f->a.id.pub.x25519, f->owner_pk, 0, f->message);
    if (err)
        fail_msg("%s", f->message);
    assert_memory_equal(p.setup_id, id, 32);
    assert_int_equal(p.total_bytes, big + sizeof flasher_ini - 1);
    /* Through the area in 16 KiB reads, as mf_secure_install reads: spot-check bytes. */
    uint8_t *buf = malloc(16384);
    for (uint64_t off = 0; off < big - 1000; off += 16384) {
        size_t n = big - 1000 - off < 16384 ? (size_t)(big - 1000 - off) : 16384;
        assert_int_equal(p.area.read(&p.area, "Projects/01_Big/01_Job/image.bin", off, buf, n), 0);
        assert_int_equal(buf[n - 1], generated(1, off + n - 1));
    }
    free(buf);
    mf_package_close(&p);
    long growth = peak_kib() - before;
    fprintf(stderr, "bounded memory: %llu MiB package, peak RSS grew by %ld KiB\n",
            (unsigned long long)(sink.size >> 20), growth);
#ifndef MF_UNDER_ASAN
    assert_true(growth < 16 * 1024);
#endif
    close(sink.fd);
    unlink(path);
    free(path);
    mf_test_rmtree(dir);
    free(dir);
}

/* ---- round trip and the area ---- */

struct listing {
    char names[32][MF_AREA_NAME_MAX];
    bool dirs[32];
    uint64_t sizes[32];
    unsigned count;
};

static int collect(void *context, const struct mf_area_entry *e)
{
    struct listing *l = context;
    assert_true(l->count < 32);
    strcpy(l->names[l->count], e->name);
    l->dirs[l->count] = e->is_dir;
    l->sizes[l->count++] = e->size;
    return 0;
}

static bool listed(const struct listing *l, const char *name, bool dir, uint64_t size)
{
    for (unsigned i = 0; i < l->count; i++) {
        if (strcmp(l->names[i], name) == 0)
            return l->dirs[i] == dir && (dir || l->sizes[i] == size);
    }
    return false;
}

/* The same files in a FAT volume: mf_setup_fingerprint over it is the setup id by definition. */
static void fat_fingerprint(const struct input *files, unsigned count, uint8_t id[32])
{
    struct mf_testfat vol;
    struct mf_fat_format_options o = {.volume_id = 7};
    assert_int_equal(mf_testfat_init(&vol, 512, 16384, &o), 0);
    uint8_t *buf = malloc(4096);
    for (unsigned i = 0; i < count; i++) {
        char dir[300];
        strcpy(dir, files[i].path);
        for (char *s = strchr(dir, '/'); s; s = strchr(s + 1, '/')) {
            *s = '\0';
            int err = mf_fat_mkdir(&vol.fs, dir);
            assert_true(err == 0 || err == MF_EEXIST);
            *s = '/';
        }
        struct mf_fat_file file;
        assert_int_equal(
            mf_fat_open(&vol.fs, &file, files[i].path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
        for (uint64_t off = 0; off < files[i].size;) {
            size_t n = files[i].size - off < 4096 ? (size_t)(files[i].size - off) : 4096;
            for (size_t k = 0; k < n; k++)
                buf[k] = files[i].data ? files[i].data[off + k] : generated(i, off + k);
            assert_int_equal(mf_fat_write(&vol.fs, &file, buf, (uint32_t)n), (int)n);
            off += n;
        }
        assert_int_equal(mf_fat_close(&vol.fs, &file), 0);
    }
    struct mf_area_fat area;
    mf_area_fat_init(&area, &vol.fs, NULL);
    assert_int_equal(mf_setup_fingerprint(&area.area, buf, 4096, id), 0);
    mf_fat_unmount(&vol.fs);
    free(buf);
    mf_testfat_free(&vol);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32], want[32], fat_id[32];
    pack_demo(f, &b, id);
    expected_setup_id(demo_files, DEMO_COUNT, want);
    assert_memory_equal(id, want, 32);
    fat_fingerprint(demo_files, DEMO_COUNT, fat_id);
    assert_memory_equal(id, fat_id, 32);

    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    int err = open_as(f, &p, &r, &f->a, NULL, 1700000000);
    if (err)
        fail_msg("open: %d %s", err, f->message);
    assert_memory_equal(p.setup_id, id, 32);
    assert_memory_equal(p.owner, f->owner_pk, 32);
    assert_int_equal(p.file_count, DEMO_COUNT);
    assert_int_equal(p.recipient_count, 1);
    uint64_t total = 0;
    for (unsigned i = 0; i < DEMO_COUNT; i++)
        total += demo_files[i].size;
    assert_int_equal(p.total_bytes, total);

    /* The area: every file, whole and in pieces across chunk boundaries, any case. */
    struct mf_area *a = &p.area;
    uint8_t *buf = malloc(3 * MF_PACKAGE_CHUNK);
    for (unsigned i = 0; i < DEMO_COUNT; i++) {
        struct mf_area_entry e;
        assert_int_equal(a->stat(a, demo_files[i].path, &e), 0);
        assert_false(e.is_dir);
        assert_int_equal(e.size, demo_files[i].size);
        assert_int_equal(a->read(a, demo_files[i].path, 0, buf, (size_t)demo_files[i].size), 0);
        for (uint64_t k = 0; k < demo_files[i].size; k++) {
            uint8_t want_byte = demo_files[i].data ? demo_files[i].data[k] : generated(i, k);
            if (buf[k] != want_byte)
                fail_msg("%s byte %llu", demo_files[i].path, (unsigned long long)k);
        }
    }
    const char *big = "projects/01_demo/BIG.BIN";
    uint64_t cuts[] = {0,
                       1,
                       MF_PACKAGE_CHUNK - 1,
                       MF_PACKAGE_CHUNK,
                       MF_PACKAGE_CHUNK + 1,
                       2 * MF_PACKAGE_CHUNK - 3,
                       2 * MF_PACKAGE_CHUNK + 99};
    for (unsigned i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t n = (size_t)(2 * MF_PACKAGE_CHUNK + 100 - cuts[i]);
        assert_int_equal(a->read(a, big, cuts[i], buf, n), 0);
        assert_int_equal(buf[0], generated(5, cuts[i]));
        assert_int_equal(buf[n - 1], generated(5, cuts[i] + n - 1));
    }
    assert_int_equal(a->read(a, big, 2 * MF_PACKAGE_CHUNK + 100, buf, 0), 0);
    assert_int_equal(a->read(a, big, 2 * MF_PACKAGE_CHUNK + 99, buf, 2), MF_EIO);
    assert_int_equal(a->read(a, big, UINT64_MAX, buf, 1), MF_EIO);
    assert_int_equal(a->read(a, "Projects", 0, buf, 1), MF_EISDIR);
    assert_int_equal(a->read(a, "nothing", 0, buf, 1), MF_ENOENT);
    /* mf_secure_install with the folder "" asks for "/path". */
    assert_int_equal(a->read(a, "/FLASHER.INI", 0, buf, 5), 0);
    assert_memory_equal(buf, "[CONF", 5);
    free(buf);

    struct mf_area_entry e;
    assert_int_equal(a->stat(a, "", &e), 0);
    assert_true(e.is_dir);
    assert_int_equal(a->stat(a, "projects/01_DEMO", &e), 0);
    assert_true(e.is_dir);
    assert_string_equal(e.name, "01_DEMO");
    assert_int_equal(a->stat(a, "docs/a/b/c", &e), 0);
    assert_true(e.is_dir);
    assert_int_equal(a->stat(a, "docs/a/b/c/", &e), MF_ENOENT);
    assert_int_equal(a->stat(a, "docs/a/b/cc", &e), MF_ENOENT);
    assert_int_equal(a->stat(a, "Projects/01_Dem", &e), MF_ENOENT);

    struct listing l = {0};
    assert_int_equal(a->list(a, "", collect, &l), 0);
    assert_int_equal(l.count, 6);
    assert_true(listed(&l, "FLASHER.INI", false, sizeof flasher_ini - 1));
    assert_true(listed(&l, "Projects", true, 0));
    assert_true(listed(&l, "docs", true, 0));
    assert_true(listed(&l, "Docs-x.txt", false, 5));
    assert_true(listed(&l, "empty.txt", false, 0));
    assert_true(listed(&l, "zeta.txt", false, 3));
    memset(&l, 0, sizeof l);
    assert_int_equal(a->list(a, "/Projects/01_Demo", collect, &l), 0);
    assert_int_equal(l.count, 5);
    assert_true(listed(&l, "01_Firmware", true, 0));
    assert_true(listed(&l, "big.bin", false, 2 * MF_PACKAGE_CHUNK + 100));
    assert_true(listed(&l, "Cntdown.txt", false, 2));
    memset(&l, 0, sizeof l);
    assert_int_equal(a->list(a, "docs", collect, &l), 0);
    assert_int_equal(l.count, 1);
    assert_true(listed(&l, "a", true, 0));
    assert_int_equal(a->list(a, "zeta.txt", collect, &l), MF_ENOTDIR);
    assert_int_equal(a->list(a, "nothing", collect, &l), MF_ENOENT);

    uint64_t v;
    assert_int_equal(
        a->read_number(a, "Projects/01_Demo/Cntdown.txt", MF_NUMFILE_STRICT, UINT32_MAX, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(
        a->read_number(a, "Projects/01_Demo/Serial.txt", MF_NUMFILE_LEADING, UINT64_MAX, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(a->read_number(a, "Projects/01_Demo/big.bin", MF_NUMFILE_STRICT, 9, &v),
                     MF_EFBIG);
    assert_int_equal(a->read_number(a, "zeta.txt", MF_NUMFILE_STRICT, 9, &v), MF_EFORMAT);
    assert_int_equal(a->read_number(a, "none.txt", MF_NUMFILE_STRICT, 9, &v), MF_ENOENT);
    char message[MF_AREA_MESSAGE_MAX];
    struct mf_tally tally;
    assert_int_equal(a->peek(a, NULL, 0, &tally, message), MF_ENOTSUP);
    enum mf_area_taken taken;
    assert_int_equal(a->take(a, NULL, 0, &tally, &taken, message), MF_ENOTSUP);
    assert_int_equal(taken, MF_AREA_TAKEN_NONE);

    /* The setup id by the area's own walk. */
    uint8_t *fbuf = malloc(16384), walked[32];
    assert_int_equal(mf_setup_fingerprint(a, fbuf, 16384, walked), 0);
    free(fbuf);
    assert_memory_equal(walked, id, 32);

    mf_package_close(&p);
    mf_package_close(&p); /* twice is harmless */
    blob_free(&b);
}

/* After open, a replaced chunk (the package changed underneath) is refused on read. */
static void test_area_detects_change(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32];
    pack_demo(f, &b, id);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), 0);
    uint8_t buf[64];
    assert_int_equal(p.area.read(&p.area, "zeta.txt", 0, buf, 3), 0);
    r.flip_at = b.size - 64 - 18; /* inside the last chunk's ciphertext (zeta.txt) */
    r.flip = 0x80;
    assert_int_equal(p.area.read(&p.area, "zeta.txt", 0, buf, 3), 0); /* still the cached chunk */
    assert_int_equal(p.area.read(&p.area, "FLASHER.INI", 0, buf, 3), 0);
    /* Part of the file: the chunk's tag refuses it (no whole-file checksum to fall back on). */
    assert_int_equal(p.area.read(&p.area, "zeta.txt", 1, buf, 1), MF_EAUTH);
    assert_int_equal(p.area.read(&p.area, "zeta.txt", 0, buf, 3), MF_EAUTH);
    mf_package_close(&p);
    blob_free(&b);
}

/* ---- the package installs into a secure area with the folder "" ---- */

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    randombytes_buf(buffer, length);
}

static void test_secure_install(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32];
    pack_demo(f, &b, id);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->a, f->owner_pk, 0), 0);

    const unsigned blocks = 4096;
    uint8_t *mem = calloc(blocks, 512);
    struct mf_rambd ram;
    mf_rambd_init(&ram, mem, 512, blocks);
    struct mf_ramanchor anchor;
    mf_ramanchor_init(&anchor);
    struct mf_secure_config config = {
        .bd = &ram.bd, .anchor = &anchor.anchor, .random = entropy, .reservation = 1};
    struct mf_secure secure;
    char message[MF_SECURE_MESSAGE_MAX];
    assert_int_equal(mf_secure_open(&secure, &config, message), 0);
    int err = mf_secure_install(&secure, &p.area, "", NULL, NULL, message);
    if (err)
        fail_msg("install: %d %s", err, message);
    assert_true(secure.present);
    assert_memory_equal(secure.fingerprint, p.setup_id, 32);
    assert_int_equal(secure.file_count, DEMO_COUNT);
    assert_int_equal(secure.state.projects[0].limit, 5);
    assert_int_equal(secure.state.projects[0].serial_next, 1000);
    mf_package_close(&p);

    /* And it reads back as a setup. */
    struct mf_area_entry e;
    assert_int_equal(secure.area.stat(&secure.area, "Projects/01_Demo/big.bin", &e), 0);
    assert_int_equal(e.size, 2 * MF_PACKAGE_CHUNK + 100);
    uint8_t byte;
    assert_int_equal(
        secure.area.read(&secure.area, "Projects/01_Demo/big.bin", MF_PACKAGE_CHUNK + 7, &byte, 1),
        0);
    assert_int_equal(byte, generated(5, MF_PACKAGE_CHUNK + 7));
    mf_secure_close(&secure);
    free(mem);
    blob_free(&b);
}

/* ---- who may open it ---- */

static void test_recipients(void **state)
{
    struct fixture *f = *state;
    uint8_t to[2][32], id[32];
    memcpy(to[0], f->b.id.pub.x25519, 32);
    memcpy(to[1], f->c.id.pub.x25519, 32);
    struct blob b = {0};
    assert_int_equal(
        pack(f, demo_files, 3, (const uint8_t(*)[32])to, 2, 0, 0, f->owner_seed, &b, id), 0);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->b, NULL, 0), 0);
    assert_int_equal(p.recipient_count, 2);
    mf_package_close(&p);
    assert_int_equal(open_as(f, &p, &r, &f->c, NULL, 0), 0);
    mf_package_close(&p);
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EACCES);
    assert_non_null(strstr(f->message, "not addressed to this programmer"));
    assert_non_null(strstr(f->message, "2 other programmers"));

    /* Our public key with another secret key (a copied .pub, a wrong identity). */
    struct who fake = f->b;
    randombytes_buf(fake.id.x25519_secret, 32);
    assert_int_equal(open_as(f, &p, &r, &fake, NULL, 0), MF_EAUTH);
    assert_non_null(strstr(f->message, "does not open"));
    blob_free(&b);
}

static void test_pinned_owner(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32];
    pack_demo(f, &b, id);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->a, f->owner_pk, 0), 0);
    mf_package_close(&p);
    assert_int_equal(open_as(f, &p, &r, &f->a, f->other_pk, 0), MF_EPERM);
    struct mf_owner_key theirs, ours;
    mf_owner_key_from_public(f->owner_pk, &theirs);
    mf_owner_key_from_public(f->other_pk, &ours);
    assert_non_null(strstr(f->message, theirs.fingerprint));
    assert_non_null(strstr(f->message, ours.fingerprint));

    /* Another owner re-signing our package does not make it theirs: the owner field is signed. */
    blob_free(&b);
    const uint8_t(*to)[32] = (const uint8_t(*)[32])f->a.id.pub.x25519;
    assert_int_equal(pack(f, demo_files, DEMO_COUNT, to, 1, 0, 0, f->other_seed, &b, id), 0);
    r = (struct reader){b.data, b.size, SIZE_MAX, 0};
    assert_int_equal(open_as(f, &p, &r, &f->a, f->owner_pk, 0), MF_EPERM);
    memcpy(b.data + 12, f->owner_pk, 32); /* claim to be the pinned owner */
    assert_int_equal(open_as(f, &p, &r, &f->a, f->owner_pk, 0), MF_EAUTH);
    assert_non_null(strstr(f->message, "bad signature"));
    blob_free(&b);
}

static void test_dates(void **state)
{
    struct fixture *f = *state;
    const int64_t nb = 1767225600, na = 1798761599; /* 2026-01-01 .. 2026-12-31T23:59:59Z */
    struct blob b = {0};
    uint8_t id[32];
    const uint8_t(*to)[32] = (const uint8_t(*)[32])f->a.id.pub.x25519;
    assert_int_equal(pack(f, demo_files, DEMO_COUNT, to, 1, nb, na, f->owner_seed, &b, id), 0);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, nb - 1), MF_ERANGE);
    assert_non_null(strstr(f->message, "not valid before 2026-01-01T00:00:00Z"));
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, nb), 0);
    assert_int_equal(p.not_before, nb);
    assert_int_equal(p.not_after, na);
    mf_package_close(&p);
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, na), 0);
    mf_package_close(&p);
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, na + 1), MF_ERANGE);
    assert_non_null(strstr(f->message, "expired at 2026-12-31T23:59:59Z"));
    /* Moving the dates breaks the signature (and the manifest's associated data). */
    uint8_t later[8];
    for (int i = 0; i < 8; i++)
        later[i] = (uint8_t)((uint64_t)(na + 86400 * 365) >> (8 * i));
    memcpy(b.data + 84, later, 8);
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, na + 1), MF_EAUTH);
    assert_non_null(strstr(f->message, "bad signature"));
    /* Bounds the wrong way round: refused as damaged, before any key is tried. */
    for (int i = 0; i < 8; i++) {
        b.data[76 + i] = (uint8_t)((uint64_t)na >> (8 * i));
        b.data[84 + i] = (uint8_t)((uint64_t)nb >> (8 * i));
    }
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, nb), MF_EFORMAT);
    assert_string_equal(f->message, "header: not valid after a time before it is valid: damaged");
    blob_free(&b);

    /* Only one bound set. */
    assert_int_equal(pack(f, demo_files, 3, to, 1, 0, na, f->owner_seed, &b, id), 0);
    r = (struct reader){b.data, b.size, SIZE_MAX, 0};
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, INT64_MIN), 0);
    mf_package_close(&p);
    blob_free(&b);
}

/* ---- tampering and truncation ---- */

/* Offsets of the regions of a package packed by pack_demo. */
struct layout {
    size_t header, manifest_end, size;
};

static struct layout layout_of(const struct blob *b)
{
    struct layout l;
    l.header = (size_t)(b->data[8] | b->data[9] << 8 | b->data[10] << 16);
    size_t m =
        (size_t)(b->data[l.header] | b->data[l.header + 1] << 8 | b->data[l.header + 2] << 16);
    l.manifest_end = l.header + 4 + m;
    l.size = b->size;
    return l;
}

static void expect_refused(struct fixture *f, struct reader *r, size_t at, const char *region)
{
    struct mf_package p;
    int err = open_as(f, &p, r, &f->a, NULL, 0);
    if (err == 0)
        fail_msg("a flipped byte at %zu (%s) was accepted", at, region);
    if (!f->message[0])
        fail_msg("refusal without a message at %zu (%s)", at, region);
}

static void test_tamper_every_region(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32];
    /* Every byte of a small package (header, recipients, manifest, chunks, signature), with two
     * patterns. */
    static const unsigned small[] = {0, 1, 2, 3, 7, 8, 9, 10};
    struct input small_files[8];
    for (unsigned i = 0; i < 8; i++)
        small_files[i] = demo_files[small[i]];
    uint8_t to[2][32];
    memcpy(to[0], f->b.id.pub.x25519, 32);
    memcpy(to[1], f->a.id.pub.x25519, 32);
    assert_int_equal(
        pack(f, small_files, 8, (const uint8_t(*)[32])to, 2, 0, 0, f->owner_seed, &b, id), 0);
    struct layout l = layout_of(&b);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    for (size_t at = 0; at < b.size; at++) {
        const char *region = at < l.header         ? "header"
                             : at < l.manifest_end ? "manifest"
                             : at < b.size - 64    ? "chunks"
                                                   : "signature";
        r.flip_at = at;
        r.flip = 0x01;
        expect_refused(f, &r, at, region);
        r.flip = 0xA5;
        expect_refused(f, &r, at, region);
    }
    blob_free(&b);

    /* The full demo: probes in every chunk, with the message that names it. */
    pack_demo(f, &b, id);
    l = layout_of(&b);
    r = (struct reader){b.data, b.size, SIZE_MAX, 0};
    /* In every chunk: its first bytes, its middle, its tag. */
    size_t at = l.manifest_end;
    unsigned chunks = 0;
    /* Files are stored in setup-id order: walk them sorted to find each chunk. */
    size_t sizes[DEMO_COUNT];
    const char *paths[DEMO_COUNT];
    for (unsigned i = 0; i < DEMO_COUNT; i++) {
        paths[i] = demo_files[i].path;
        sizes[i] = (size_t)demo_files[i].size;
    }
    for (unsigned i = 1; i < DEMO_COUNT; i++) {
        for (unsigned j = i; j > 0 && upper_cmp(paths[j - 1], paths[j]) > 0; j--) {
            const char *tp = paths[j];
            paths[j] = paths[j - 1];
            paths[j - 1] = tp;
            size_t ts = sizes[j];
            sizes[j] = sizes[j - 1];
            sizes[j - 1] = ts;
        }
    }
    for (unsigned i = 0; i < DEMO_COUNT; i++) {
        for (size_t off = 0; off < sizes[i]; off += MF_PACKAGE_CHUNK) {
            size_t n = sizes[i] - off < MF_PACKAGE_CHUNK ? sizes[i] - off : MF_PACKAGE_CHUNK;
            size_t stored = n + MF_PACKAGE_TAG;
            size_t probes[] = {0, 1, stored / 2, n - 1, n, stored - 1};
            for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
                r.flip_at = at + probes[k];
                r.flip = 0x10;
                struct mf_package p;
                int err = open_as(f, &p, &r, &f->a, NULL, 0);
                if (err != MF_EAUTH || !strstr(f->message, "bad signature") ||
                    !strstr(f->message, paths[i]) || !strstr(f->message, "chunk"))
                    fail_msg("flip in %s at %zu: %d %s", paths[i], r.flip_at, err, f->message);
            }
            at += stored;
            chunks++;
        }
    }
    assert_int_equal(at, l.size - 64);
    assert_int_equal(chunks, 12);
    /* Every byte of the signature. */
    for (at = l.size - 64; at < l.size; at++) {
        r.flip_at = at;
        r.flip = 0x40;
        struct mf_package p;
        assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EAUTH);
        assert_non_null(strstr(f->message, "bad signature"));
        assert_null(strstr(f->message, "first damage"));
    }
    /* A header byte the reader checks late, e.g. the setup id: caught by the signature. */
    r.flip_at = 50;
    r.flip = 1;
    struct mf_package p;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EAUTH);
    assert_non_null(strstr(f->message, "bad signature"));
    assert_non_null(strstr(f->message, "manifest"));
    blob_free(&b);
}

static void test_truncation(void **state)
{
    struct fixture *f = *state;
    struct blob b = {0};
    uint8_t id[32];
    pack_demo(f, &b, id);
    struct reader r = {b.data, 0, SIZE_MAX, 0};
    struct mf_package p;
    size_t lengths[2400];
    unsigned n = 0;
    for (size_t len = 0; len < 700; len++)
        lengths[n++] = len;
    for (size_t len = 700; len < b.size; len += 509)
        lengths[n++] = len;
    for (size_t len = b.size - 80; len < b.size; len++)
        lengths[n++] = len;
    for (unsigned i = 0; i < n; i++) {
        r.size = lengths[i];
        int err = open_as(f, &p, &r, &f->a, NULL, 0);
        if (err == 0 || !f->message[0])
            fail_msg("truncated to %zu: accepted or silent", lengths[i]);
    }
    r.size = b.size - 1;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EFORMAT);
    assert_non_null(strstr(f->message, "truncated"));
    r.size = 100;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EFORMAT);
    assert_non_null(strstr(f->message, "truncated"));
    r.size = 3;
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EFORMAT);
    /* Extended. */
    struct blob longer = {0};
    blob_write(&longer, b.data, b.size);
    blob_write(&longer, "\0", 1);
    r = (struct reader){longer.data, longer.size, SIZE_MAX, 0};
    assert_int_equal(open_as(f, &p, &r, &f->a, NULL, 0), MF_EFORMAT);
    assert_non_null(strstr(f->message, "after the end"));
    blob_free(&longer);
    blob_free(&b);
}

/* ---- an independent writer, for packages that are signed but lie ---- */

struct forged_file {
    const char *path;
    const char *content;
    uint64_t size;  /* declared in the manifest (content's length when 0 and content != "") */
    bool wrong_sha; /* declare another checksum */
};

struct forgery {
    const struct forged_file *files;
    unsigned count;
    const uint8_t *setup_id; /* NULL: a random one */
    uint32_t file_count;     /* 0: count */
    uint8_t version;         /* 0: 1 */
    bool unopenable;         /* our recipient entry holds garbage */
    size_t trailing;         /* bytes after the payload, before the signature */
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void forge(struct fixture *f, const struct forgery *g, struct blob *out)
{
    uint8_t key[32], header[124 + 112], header_hash[32], nonce[24];
    randombytes_buf(key, 32);
    memset(header, 0, sizeof header);
    memcpy(header, "MFPKG\0\1\0", 8);
    header[6] = g->version ? g->version : 1;
    put_le(header + 8, sizeof header, 4);
    memcpy(header + 12, f->owner_pk, 32);
    if (g->setup_id)
        memcpy(header + 44, g->setup_id, 32);
    else
        randombytes_buf(header + 44, 32);
    randombytes_buf(header + 92, 16);
    put_le(header + 108, g->file_count ? g->file_count : g->count, 4);
    uint64_t total = 0;
    for (unsigned i = 0; i < g->count; i++)
        total += strlen(g->files[i].content);
    put_le(header + 112, total, 8);
    put_le(header + 120, 1, 4);
    memcpy(header + 124, f->a.id.pub.x25519, 32);
    if (g->unopenable)
        randombytes_buf(header + 156, 80);
    else
        crypto_box_seal(header + 156, key, 32, f->a.id.pub.x25519);
    crypto_hash_sha256(header_hash, header, sizeof header);
    crypto_sign_state sign;
    crypto_sign_init(&sign);
    blob_write(out, header, sizeof header);

    uint8_t manifest[4096];
    size_t m = 0;
    for (unsigned i = 0; i < g->count; i++) {
        const struct forged_file *ff = &g->files[i];
        size_t n = strlen(ff->path), c = strlen(ff->content);
        put_le(manifest + m, n, 2);
        memcpy(manifest + m + 2, ff->path, n);
        put_le(manifest + m + 2 + n, ff->size ? ff->size : c, 8);
        crypto_hash_sha256(manifest + m + 10 + n, (const uint8_t *)ff->content, c);
        if (ff->wrong_sha)
            manifest[m + 10 + n] ^= 1;
        m += 42 + n;
    }
    uint8_t len[4];
    put_le(len, m + 16, 4);
    blob_write(out, len, 4);
    memcpy(nonce, header + 92, 16);
    put_le(nonce + 16, UINT64_MAX, 8);
    uint8_t sealed[4096 + 16];
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed, NULL, manifest, m, header_hash, 32, NULL,
                                               nonce, key);
    blob_write(out, sealed, m + 16);
    uint64_t global = 0;
    for (unsigned i = 0; i < g->count; i++) {
        const char *c = g->files[i].content;
        size_t n = strlen(c);
        if (!n)
            continue; /* small contents: one chunk each */
        uint8_t ad[41];
        memcpy(ad, header_hash, 32);
        put_le(ad + 32, i, 4);
        put_le(ad + 36, 0, 4);
        ad[40] = 1;
        put_le(nonce + 16, global++, 8);
        crypto_aead_xchacha20poly1305_ietf_encrypt(sealed, NULL, (const uint8_t *)c, n, ad, 41,
                                                   NULL, nonce, key);
        blob_write(out, sealed, n + 16);
    }
    for (size_t i = 0; i < g->trailing; i++)
        blob_write(out, "x", 1);
    crypto_sign_update(&sign, out->data, out->size);
    uint8_t sk[64], pk[32], sig[64];
    mf_owner_keypair_from_seed(f->owner_seed, pk, sk);
    crypto_sign_final_create(&sign, sig, NULL, sk);
    blob_write(out, sig, 64);
}

static int open_forged(struct fixture *f, const struct forgery *g)
{
    struct blob b = {0};
    forge(f, g, &b);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package p;
    int err = open_as(f, &p, &r, &f->a, f->owner_pk, 0);
    if (!err)
        mf_package_close(&p);
    blob_free(&b);
    return err;
}

static void forged_id(const struct forged_file *files, unsigned count, uint8_t id[32])
{
    struct input in[16];
    for (unsigned i = 0; i < count; i++)
        in[i] = (struct input){files[i].path, (const uint8_t *)files[i].content,
                               strlen(files[i].content)};
    expected_setup_id(in, count, id);
}

static void test_signed_but_lying(void **state)
{
    struct fixture *f = *state;
    const struct forged_file good[] = {
        {"FLASHER.INI", "[CONFIG]\n", 0, false},
        {"Projects/01_A/Cntdown.txt", "3\n", 0, false},
        {"Projects/01_A/x.bin", "xyz", 0, false},
        {"projects/01_a/Y.bin", "yy", 0, false},
    };
    uint8_t id[32];
    forged_id(good, 4, id);
    /* The independent writer's package opens: the format is what both sides think it is. */
    struct forgery g = {good, 4, id, 0, 0, false, 0};
    assert_int_equal(open_forged(f, &g), 0);

    uint8_t other[32];
    memcpy(other, id, 32);
    other[31] ^= 1;
    g.setup_id = other;
    assert_int_equal(open_forged(f, &g), MF_EVERIFY);
    assert_non_null(strstr(f->message, "setup id mismatch"));
    g.setup_id = id;

    struct forged_file bad[4];
    memcpy(bad, good, sizeof bad);
    bad[2].wrong_sha = true;
    g.files = bad;
    assert_int_equal(open_forged(f, &g), MF_EVERIFY);
    assert_non_null(strstr(f->message, "Projects/01_A/x.bin"));
    assert_non_null(strstr(f->message, "SHA-256"));

    memcpy(bad, good, sizeof bad);
    bad[3].path = "PROJECTS/01_A/X.BIN"; /* the same name as bad[2], ignoring case */
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);
    assert_non_null(strstr(f->message, "named twice"));

    memcpy(bad, good, sizeof bad);
    bad[0].path = "ZZZ.INI"; /* out of order */
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);
    assert_non_null(strstr(f->message, "out of order"));

    static const char *const bad_paths[] = {
        "Projects/../x.bin", "Projects/./x.bin", "/Projects/x.bin",  "Projects//x.bin",
        "Projects/x.bin/",   "Projects\\x.bin",  "Projects/x\n.bin", "Projects/\xC0\xAF.bin"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        memcpy(bad, good, sizeof bad);
        bad[2].path = bad_paths[i];
        assert_int_equal(open_forged(f, &g), MF_EFORMAT);
        assert_non_null(strstr(f->message, "not a valid path"));
    }

    const struct forged_file conflict[] = {
        {"A", "1", 0, false},
        {"A-B", "2", 0, false},
        {"a/c", "3", 0, false},
    };
    struct forgery h = {conflict, 3, NULL, 0, 0, false, 0};
    assert_int_equal(open_forged(f, &h), MF_EFORMAT);
    assert_non_null(strstr(f->message, "also a folder"));

    memcpy(bad, good, sizeof bad);
    bad[2].size = 4; /* declared size differs from the stored chunk */
    g.files = bad;
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);

    g.files = good;
    g.version = 2;
    assert_int_equal(open_forged(f, &g), MF_EVERSION);
    assert_non_null(strstr(f->message, "version 2"));
    g.version = 0;
    g.file_count = 4097;
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);
    assert_non_null(strstr(f->message, "4097 files"));
    g.file_count = 5; /* more files than the manifest holds */
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);
    g.file_count = 0;
    g.unopenable = true;
    assert_int_equal(open_forged(f, &g), MF_EAUTH);
    assert_non_null(strstr(f->message, "does not open"));
    assert_null(strstr(f->message, "bad signature"));
    g.unopenable = false;
    g.trailing = 3;
    assert_int_equal(open_forged(f, &g), MF_EFORMAT);
    assert_non_null(strstr(f->message, "3 bytes after the end"));
}

/* ---- the writer refuses bad input ---- */

static void test_writer_refuses(void **state)
{
    struct fixture *f = *state;
    const uint8_t(*to)[32] = (const uint8_t(*)[32])f->a.id.pub.x25519;
    uint8_t id[32];
    struct blob b = {0};
    static const char *const bad_paths[] = {"",   "/abs", "a//b",      "a/./b", "../a",
                                            "a/", "a\\b", "tab\there", "\xFF"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        struct input in[1] = {{bad_paths[i], (const uint8_t *)"x", 1}};
        assert_int_equal(pack(f, in, 1, to, 1, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
        assert_non_null(strstr(f->message, "not a valid path"));
        assert_int_equal(b.size, 0);
    }
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = '\0';
    struct input one[1] = {{longname, (const uint8_t *)"x", 1}};
    assert_int_equal(pack(f, one, 1, to, 1, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
    longname[255] = '\0';
    assert_int_equal(pack(f, one, 1, to, 1, 0, 0, f->owner_seed, &b, id), 0);
    blob_free(&b);

    struct input dup[2] = {{"Projects/a.txt", (const uint8_t *)"x", 1},
                           {"PROJECTS/A.TXT", (const uint8_t *)"y", 1}};
    assert_int_equal(pack(f, dup, 2, to, 1, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
    assert_non_null(strstr(f->message, "two files"));
    struct input clash[2] = {{"x", (const uint8_t *)"x", 1}, {"X/y", (const uint8_t *)"y", 1}};
    assert_int_equal(pack(f, clash, 2, to, 1, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
    assert_non_null(strstr(f->message, "also a folder"));
    assert_int_equal(pack(f, dup, 0, to, 1, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
    assert_non_null(strstr(f->message, "no files"));
    assert_int_equal(pack(f, dup, 1, to, 0, 0, 0, f->owner_seed, &b, id), MF_EINVAL);
    uint8_t many[65][32];
    for (int i = 0; i < 65; i++)
        memcpy(many[i], f->a.id.pub.x25519, 32);
    assert_int_equal(pack(f, dup, 1, (const uint8_t(*)[32])many, 65, 0, 0, f->owner_seed, &b, id),
                     MF_EINVAL);
    assert_int_equal(pack(f, dup, 1, (const uint8_t(*)[32])many, 64, 0, 0, f->owner_seed, &b, id),
                     0);
    blob_free(&b);
    assert_int_equal(pack(f, dup, 1, to, 1, 200, 100, f->owner_seed, &b, id), MF_EINVAL);
    /* A low-order X25519 point cannot receive a key. */
    uint8_t zero[1][32] = {{0}};
    assert_int_equal(pack(f, dup, 1, (const uint8_t(*)[32])zero, 1, 0, 0, f->owner_seed, &b, id),
                     MF_EINVAL);
    assert_non_null(strstr(f->message, "recipient 1"));
    blob_free(&b);

    /* A file that changes between the two passes. */
    struct mf_package_input list[1] = {{"a.bin", 100}};
    struct input in[1] = {{"a.bin", NULL, 100}};
    struct inputs ins = {in, 1, 0, 2};
    struct mf_package_spec spec = {.files = list,
                                   .file_count = 1,
                                   .read = inputs_read,
                                   .read_context = &ins,
                                   .recipients = to,
                                   .recipient_count = 1,
                                   .owner_seed = f->owner_seed,
                                   .write = blob_write,
                                   .write_context = &b};
    assert_int_equal(mf_package_write(&spec, id, f->message), MF_EVERIFY);
    assert_non_null(strstr(f->message, "changed while"));
    blob_free(&b);
    /* A file shorter than listed. */
    list[0].size = 101;
    ins.change_after = 0;
    assert_int_equal(mf_package_write(&spec, id, f->message), MF_EIO);
    assert_non_null(strstr(f->message, "a.bin: cannot read"));
    blob_free(&b);
}

static void test_header_only(void **state)
{
    struct fixture *f = *state;
    uint8_t to[2][32], id[32], got[2][32];
    memcpy(to[0], f->b.id.pub.x25519, 32);
    memcpy(to[1], f->c.id.pub.x25519, 32);
    struct blob b = {0};
    assert_int_equal(
        pack(f, demo_files, DEMO_COUNT, (const uint8_t(*)[32])to, 2, 5, 6, f->owner_seed, &b, id),
        0);
    struct reader r = {b.data, b.size, SIZE_MAX, 0};
    struct mf_package_header h;
    assert_int_equal(mf_package_read_header(reader_read, &r, b.size, &h, got, 2, f->message), 0);
    assert_memory_equal(h.setup_id, id, 32);
    assert_memory_equal(h.owner, f->owner_pk, 32);
    assert_memory_equal(got, to, sizeof to);
    assert_int_equal(h.not_before, 5);
    assert_int_equal(h.not_after, 6);
    assert_int_equal(h.file_count, DEMO_COUNT);
    /* A header announcing no files, or more than a package holds: damaged. */
    static const uint32_t counts[] = {0, MF_PACKAGE_FILES_MAX + 1};
    for (size_t i = 0; i < 2; i++) {
        uint8_t saved[4];
        memcpy(saved, b.data + 108, 4);
        for (int k = 0; k < 4; k++)
            b.data[108 + k] = (uint8_t)(counts[i] >> (8 * k));
        assert_int_equal(mf_package_read_header(reader_read, &r, b.size, &h, NULL, 0, f->message),
                         MF_EFORMAT);
        char want[64];
        snprintf(want, sizeof want, "header: %u files (a package holds 1 to %u)", counts[i],
                 MF_PACKAGE_FILES_MAX);
        assert_string_equal(f->message, want);
        memcpy(b.data + 108, saved, 4);
    }
    r.size = 10;
    assert_int_equal(mf_package_read_header(reader_read, &r, 10, &h, NULL, 0, f->message),
                     MF_EFORMAT);
    blob_free(&b);
}

static void test_programmer_files(void **state)
{
    (void)state;
    assert_true(mf_package_programmer_file("FLASHER.INI"));
    assert_true(mf_package_programmer_file("flasher.log"));
    assert_true(mf_package_programmer_file("Flasher.Old"));
    assert_false(mf_package_programmer_file("sub/FLASHER.INI"));
    assert_true(mf_package_programmer_file("CNTDOWN.TXT"));
    assert_true(mf_package_programmer_file("Projects/x/serial.txt"));
    assert_false(mf_package_programmer_file("Projects/x/serial.txt.bak"));
    assert_false(mf_package_programmer_file("SNList.txt"));
    /* The setup id leaves out the allow-list's log files only: production records and tokens
     * count where a package holds them (the documented layout, docs/owner-tools.md). */
    assert_false(mf_package_programmer_file("RECORDS.000"));
    assert_false(mf_package_programmer_file("more.mft"));
    /* One rule with the setup's fingerprint. */
    static const char *const paths[] = {"FLASHER.INI",   "flasher.log", "FLASHER.OLD",
                                        "a/FLASHER.LOG", "Cntdown.txt", "P/x/Serial.txt",
                                        "RECORDS.001",   "x.mft",       "app.hex"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        assert_int_equal(mf_package_programmer_file(paths[i]), mf_setup_programmer_file(paths[i]));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_area_detects_change),
        cmocka_unit_test(test_secure_install),
        cmocka_unit_test(test_recipients),
        cmocka_unit_test(test_pinned_owner),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_tamper_every_region),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_signed_but_lying),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_header_only),
        cmocka_unit_test(test_programmer_files),
    };
    return cmocka_run_group_tests(tests, setup_fixture, teardown_fixture);
}
