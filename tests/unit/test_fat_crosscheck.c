/* Our FAT driver against tools nobody here wrote, both ways, on image files in a temp folder:
 * volumes we format and fill must pass `fsck.fat -n` and read back byte-identical through
 * mtools; volumes made by mkfs.fat and filled by mtools must read back identical through our
 * driver, and stay clean for fsck.fat after our writes. Also: the FAT type and cluster size we
 * pick for a size equal what mkfs.fat picks. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB         (1024u * 1024u)
#define TOOLS_ENV   "LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1 TZ=UTC"
#define MODEL_FILES 400
#define MODEL_DIRS  64
#define PATH_BYTES  300

static char *tmpdir;
static uint64_t rng_state;

/* ---- a block device over an image file (pread/pwrite; erase punches a hole) -------------- */

struct file_bd {
    struct mf_bd bd;
    int fd;
};

static int file_bd_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    const struct file_bd *f = bd->context;
    size_t size = count * bd->block_size, done = 0;
    off_t at = (off_t)(block * bd->block_size);
    while (done < size) {
        ssize_t n = pread(f->fd, (uint8_t *)buffer + done, size - done, at + (off_t)done);
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int file_bd_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    const struct file_bd *f = bd->context;
    size_t size = count * bd->block_size, done = 0;
    off_t at = (off_t)(block * bd->block_size);
    while (done < size) {
        ssize_t n = pwrite(f->fd, (const uint8_t *)buffer + done, size - done, at + (off_t)done);
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int file_bd_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    const struct file_bd *f = bd->context;
    off_t at = (off_t)(block * bd->block_size), size = (off_t)(count * bd->block_size);
    if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, size) == 0)
        return 0;
    static const uint8_t zeros[64 * 1024];
    for (off_t done = 0; done < size;) {
        size_t n = size - done < (off_t)sizeof zeros ? (size_t)(size - done) : sizeof zeros;
        if (pwrite(f->fd, zeros, n, at + done) != (ssize_t)n)
            return MF_EIO;
        done += (off_t)n;
    }
    return 0;
}

static int file_bd_sync(const struct mf_bd *bd)
{
    (void)bd; /* the tools read the same page cache */
    return 0;
}

/* Opens `path` as a device of `block_size` blocks; with `size` != 0 the file is created sparse
 * with that size. */
static void file_bd_open_blocks(struct file_bd *f, const char *path, uint64_t size,
                                uint32_t block_size)
{
    f->fd = open(path, O_RDWR | O_CREAT | (size ? O_TRUNC : 0), 0644);
    if (f->fd < 0)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    if (size && ftruncate(f->fd, (off_t)size) != 0)
        fail_msg("cannot size %s: %s", path, strerror(errno));
    off_t end = lseek(f->fd, 0, SEEK_END);
    assert_true(end > 0 && end % block_size == 0);
    memset(&f->bd, 0, sizeof f->bd);
    f->bd.context = f;
    f->bd.read = file_bd_read;
    f->bd.prog = file_bd_prog;
    f->bd.erase = file_bd_erase;
    f->bd.sync = file_bd_sync;
    f->bd.block_size = block_size;
    f->bd.block_count = (mf_block_t)end / block_size;
}

/* Opens `path` as a device of 512-byte blocks; with `size` != 0 the file is created sparse with
 * that size. */
static void file_bd_open(struct file_bd *f, const char *path, uint64_t size)
{
    file_bd_open_blocks(f, path, size, 512);
}

static void file_bd_close(struct file_bd *f)
{
    assert_int_equal(close(f->fd), 0);
    f->fd = -1;
}

/* ---- helpers ------------------------------------------------------------------------------- */

#define check(expr) check_rc((expr), #expr, __LINE__)

static void check_rc(int rc, const char *expr, int line)
{
    if (rc != 0)
        fail_msg("line %d: %s gave %d (%s)", line, expr, rc, mf_strerror(rc));
}

static uint8_t random_byte(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint8_t)(rng_state >> 56);
}

/* Runs a shell command; fails the test unless it exits 0. Returns the output (free it). */
static struct mf_test_output run_ok(const char *format, ...) __attribute__((format(printf, 1, 2)));

static struct mf_test_output run_ok(const char *format, ...)
{
    char command[8192];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(command, sizeof command, format, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof command);
    struct mf_test_output out;
    int rc = mf_test_run(command, NULL, 0, &out);
    if (rc != 0 || out.status != 0) {
        fprintf(stderr, "command: %s\nstatus %d\nstdout:\n%s\nstderr:\n%s\n", command, out.status,
                out.out, out.err);
        mf_test_output_free(&out);
        fail_msg("command failed: %.200s", command);
    }
    return out;
}

static char *image_path(const char *name)
{
    return mf_test_path(tmpdir, name);
}

/* ---- the model: what the volume should hold ---------------------------------------------- */

struct model_file {
    char path[PATH_BYTES]; /* without a leading '/' */
    uint8_t *data;
    uint32_t size;
};

struct model {
    struct model_file files[MODEL_FILES];
    unsigned file_count;
    char dirs[MODEL_DIRS][PATH_BYTES];
    unsigned dir_count;
};

static struct model model;
static struct mf_fat fs; /* our driver, when the model is applied through it */

/* out = dir "/" name, or name alone when dir is empty (out may be dir). */
static void path_join(char *out, const char *dir, const char *name)
{
    char joined[PATH_BYTES];
    size_t a = strlen(dir), b = strlen(name);
    assert_true(a + 1 + b < sizeof joined);
    memcpy(joined, dir, a);
    if (a)
        joined[a++] = '/';
    memcpy(joined + a, name, b + 1);
    memcpy(out, joined, a + b + 1);
}

static void model_reset(void)
{
    for (unsigned i = 0; i < model.file_count; i++)
        free(model.files[i].data);
    memset(&model, 0, sizeof model);
}

static struct model_file *model_find(const char *path)
{
    for (unsigned i = 0; i < model.file_count; i++)
        if (strcmp(model.files[i].path, path) == 0)
            return &model.files[i];
    return NULL;
}

static void model_drop(struct model_file *f)
{
    free(f->data);
    *f = model.files[--model.file_count];
    memset(&model.files[model.file_count], 0, sizeof model.files[0]);
}

/* Records a file of `size` random bytes (replacing one of the same path). */
static struct model_file *model_file(const char *path, uint32_t size)
{
    struct model_file *f = model_find(path);
    if (!f) {
        assert_true(model.file_count < MODEL_FILES);
        f = &model.files[model.file_count++];
        snprintf(f->path, sizeof f->path, "%s", path);
    }
    free(f->data);
    f->data = malloc(size ? size : 1);
    assert_non_null(f->data);
    for (uint32_t i = 0; i < size; i++)
        f->data[i] = random_byte();
    f->size = size;
    return f;
}

static void model_dir(const char *path)
{
    assert_true(model.dir_count < MODEL_DIRS);
    snprintf(model.dirs[model.dir_count++], PATH_BYTES, "%s", path);
}

/* ---- workload through our driver ----------------------------------------------------------- */

static void our_write(const char *path, uint32_t size)
{
    struct model_file *f = model_file(path, size);
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC));
    /* In uneven pieces, so partial sectors and clusters are exercised. */
    for (uint32_t done = 0; done < size;) {
        uint32_t n = 1000u + random_byte() * 97u;
        if (n > size - done)
            n = size - done;
        int rc = mf_fat_write(&fs, &file, f->data + done, n);
        if (rc != (int)n)
            fail_msg("writing %s at %u: %d", path, done, rc);
        done += n;
    }
    check(mf_fat_close(&fs, &file));
}

static void our_mkdir(const char *path)
{
    check(mf_fat_mkdir(&fs, path));
    model_dir(path);
}

static void our_remove(const char *path)
{
    check(mf_fat_remove(&fs, path));
    struct model_file *f = model_find(path);
    assert_non_null(f);
    model_drop(f);
}

static void our_rmdir(const char *path)
{
    check(mf_fat_rmdir(&fs, path));
    for (unsigned i = 0; i < model.dir_count; i++) {
        if (strcmp(model.dirs[i], path) == 0) {
            memcpy(model.dirs[i], model.dirs[--model.dir_count], PATH_BYTES);
            return;
        }
    }
    fail_msg("model has no folder %s", path);
}

/* Renames in the model: a file, or a folder and everything below it. */
static void model_rename(const char *from, const char *to)
{
    size_t len = strlen(from);
    char moved[PATH_BYTES];
    for (unsigned i = 0; i < model.file_count; i++) {
        char *p = model.files[i].path;
        if (strcmp(p, from) == 0 || (strncmp(p, from, len) == 0 && p[len] == '/')) {
            snprintf(moved, sizeof moved, "%s%s", to, p + len);
            memcpy(p, moved, PATH_BYTES);
        }
    }
    for (unsigned i = 0; i < model.dir_count; i++) {
        char *p = model.dirs[i];
        if (strcmp(p, from) == 0 || (strncmp(p, from, len) == 0 && p[len] == '/')) {
            snprintf(moved, sizeof moved, "%s%s", to, p + len);
            memcpy(p, moved, PATH_BYTES);
        }
    }
}

static void our_rename(const char *from, const char *to)
{
    check(mf_fat_rename(&fs, from, to));
    model_rename(from, to);
}

static void our_append(const char *path, uint32_t extra)
{
    struct model_file *f = model_find(path);
    assert_non_null(f);
    f->data = realloc(f->data, f->size + extra);
    assert_non_null(f->data);
    for (uint32_t i = 0; i < extra; i++)
        f->data[f->size + i] = random_byte();
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_APPEND));
    if (mf_fat_write(&fs, &file, f->data + f->size, extra) != (int)extra)
        fail_msg("appending to %s failed", path);
    check(mf_fat_close(&fs, &file));
    f->size += extra;
}

static void our_truncate(const char *path, uint32_t size)
{
    struct model_file *f = model_find(path);
    assert_non_null(f);
    f->data = realloc(f->data, size ? size : 1);
    assert_non_null(f->data);
    if (size > f->size)
        memset(f->data + f->size, 0, size - f->size);
    f->size = size;
    struct mf_fat_file file;
    check(mf_fat_open(&fs, &file, path, MF_FAT_O_RDWR));
    check(mf_fat_truncate(&fs, &file, size));
    check(mf_fat_close(&fs, &file));
}

/* Files and folders of every kind: long, UTF-8 and mixed-case names, nesting, many files, a big
 * file, fragmented files, renames, truncations and deletions. */
static void our_workload(uint32_t big_size, unsigned many)
{
    uint32_t csize =
        mf_fat_geometry(&fs)->sectors_per_cluster * mf_fat_geometry(&fs)->bytes_per_sector;
    char path[PATH_BYTES];
    our_mkdir("Projects");
    our_mkdir("Projects/01_Demo");
    our_mkdir("Projects/01_Demo/01_Job");
    our_write("Projects/01_Demo/01_Job/job.ini", 200);
    our_write("CntDown.txt", 3);
    our_write("readme.txt", 1500);
    our_write("UPPER.TXT", 10);
    our_write("lower.TXT", 11);
    our_write("A file with a rather long name, and spaces.txt", 5000);
    our_write("Grüße.txt", 40);
    our_write("Привет мир.txt", 41);
    our_write("日本語.txt", 42);
    our_mkdir("empty");
    our_mkdir("gone");
    char deep[PATH_BYTES] = "";
    for (int level = 1; level <= 6; level++) {
        char name[16];
        snprintf(name, sizeof name, "Nest level %d", level);
        path_join(deep, deep, name);
        our_mkdir(deep);
    }
    path_join(path, deep, "leaf.bin");
    our_write(path, 777);
    our_mkdir("many");
    for (unsigned i = 0; i < many; i++) {
        snprintf(path, sizeof path, "many/file %03u with a long name.dat", i);
        our_write(path, (i * 37u) % 3000u);
    }
    our_write("big file.bin", big_size);

    /* Fragmentation: every other small file goes, a bigger one fills the holes, and an early
     * file grows past clusters that others took. */
    our_mkdir("frag");
    for (unsigned i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "frag/p%02u", i);
        our_write(path, 3 * csize + 17);
    }
    for (unsigned i = 1; i < 20; i += 2) {
        snprintf(path, sizeof path, "frag/p%02u", i);
        our_remove(path);
    }
    our_write("frag/fragmented.bin", 45 * csize + 5);
    our_append("frag/p00", 2 * csize + 3);

    our_rename("CntDown.txt", "Projects/CntDown.txt");
    our_rename("Nest level 1/Nest level 2", "moved nest");
    our_rename("many/file 005 with a long name.dat", "many/renamed.dat");
    our_rename("readme.txt", "README.md");
    our_truncate("frag/p02", 100);
    our_truncate("frag/p04", 7 * csize + 1);
    our_truncate("README.md", 0);
    for (unsigned i = 10; i < 20 && i < many; i++) {
        snprintf(path, sizeof path, "many/file %03u with a long name.dat", i);
        our_remove(path);
    }
    our_rmdir("gone");
}

/* ---- checks ---------------------------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The model's listing: one path per entry, folders with a trailing '/'. */
static unsigned model_listing(char **entries)
{
    unsigned n = 0;
    for (unsigned i = 0; i < model.dir_count; i++) {
        entries[n] = malloc(PATH_BYTES + 2);
        snprintf(entries[n++], PATH_BYTES + 2, "%s/", model.dirs[i]);
    }
    for (unsigned i = 0; i < model.file_count; i++) {
        entries[n] = malloc(PATH_BYTES + 2);
        snprintf(entries[n++], PATH_BYTES + 2, "%s", model.files[i].path);
    }
    qsort(entries, n, sizeof entries[0], compare_strings);
    return n;
}

static void compare_listings(const char *who, char **got, unsigned got_count)
{
    static char *want[MODEL_FILES + MODEL_DIRS];
    unsigned want_count = model_listing(want);
    qsort(got, got_count, sizeof got[0], compare_strings);
    bool same = got_count == want_count;
    for (unsigned i = 0; same && i < want_count; i++)
        same = strcmp(got[i], want[i]) == 0;
    if (!same) {
        fprintf(stderr, "%s lists %u entries, the model %u:\n", who, got_count, want_count);
        for (unsigned i = 0, j = 0; i < got_count || j < want_count;) {
            int c = i >= got_count ? 1 : j >= want_count ? -1 : strcmp(got[i], want[j]);
            if (c < 0)
                fprintf(stderr, "  only %s: %s\n", who, got[i++]);
            else if (c > 0)
                fprintf(stderr, "  only model: %s\n", want[j++]);
            else
                i++, j++;
        }
    }
    for (unsigned i = 0; i < want_count; i++)
        free(want[i]);
    if (!same)
        fail_msg("%s's listing differs from the model (see above)", who);
}

/* fsck.fat -n: exit 0 and nothing but its banner and the summary line. Returns the used and
 * total clusters it reports. */
static void fsck_clean(const char *image, uint32_t *used, uint32_t *total)
{
    char *quoted = mf_test_shell_quote(image);
    struct mf_test_output out;
    assert_int_equal(mf_test_runf(&out, "fsck.fat -n %s 2>&1", quoted), 0);
    free(quoted);
    unsigned lines = 0;
    for (const char *p = out.out; *p; p++)
        lines += *p == '\n';
    const char *summary = strchr(out.out, '\n');
    unsigned files = 0;
    int parsed = 0;
    if (summary) {
        const char *colon = strstr(summary, ": ");
        if (colon)
            parsed = sscanf(colon, ": %u files, %u/%u clusters", &files, used, total);
    }
    if (out.status != 0 || lines != 2 || strncmp(out.out, "fsck.fat ", 9) != 0 || parsed != 3) {
        fprintf(stderr, "fsck.fat -n %s (status %d):\n%s\n", image, out.status, out.out);
        mf_test_output_free(&out);
        fail_msg("fsck.fat -n does not pass %s (see above)", image);
    }
    mf_test_output_free(&out);
}

/* Everything the model holds, seen by the tools: fsck.fat clean (with our free count), mdir's
 * listing, and every file's bytes copied out by mcopy; one file through mtype. */
static void verify_with_tools(const char *image, const char *offset, uint64_t free_bytes,
                              uint32_t cluster_bytes)
{
    char target[PATH_BYTES * 2];
    snprintf(target, sizeof target, "%s%s", image, offset);
    char *quoted = mf_test_shell_quote(target);
    if (offset[0] == '\0') {
        uint32_t used, total;
        fsck_clean(image, &used, &total);
        if ((uint64_t)(total - used) * cluster_bytes != free_bytes)
            fail_msg("fsck.fat counts %u of %u clusters used; our driver said %llu bytes free",
                     used, total, (unsigned long long)free_bytes);
    }

    struct mf_test_output out = run_ok(TOOLS_ENV " mdir -/ -b -a -i %s ::", quoted);
    static char *got[MODEL_FILES + MODEL_DIRS + 8];
    unsigned count = 0;
    for (char *line = strtok(out.out, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "::/", 3) != 0)
            fail_msg("unexpected mdir line: %s", line);
        assert_true(count < MODEL_FILES + MODEL_DIRS + 8);
        got[count++] = strdup(line + 3);
    }
    mf_test_output_free(&out);
    compare_listings("mdir", got, count);
    for (unsigned i = 0; i < count; i++)
        free(got[i]);

    char *copy_dir = mf_test_path(tmpdir, "copied");
    mf_test_rmtree(copy_dir);
    char *quoted_dir = mf_test_shell_quote(copy_dir);
    out = run_ok("mkdir %s && " TOOLS_ENV " mcopy -s -n -i %s '::*' %s/", quoted_dir, quoted,
                 quoted_dir);
    mf_test_output_free(&out);
    for (unsigned i = 0; i < model.file_count; i++) {
        const struct model_file *f = &model.files[i];
        char *host = mf_test_path(copy_dir, f->path);
        char *data;
        size_t size;
        if (mf_test_read_file(host, &data, &size) != 0)
            fail_msg("mcopy did not copy out %s", f->path);
        if (size != f->size || memcmp(data, f->data, size) != 0)
            fail_msg("mcopy reads %s as %zu bytes that differ from the %u written", f->path, size,
                     f->size);
        free(data);
        free(host);
    }
    mf_test_rmtree(copy_dir);
    free(quoted_dir);
    free(copy_dir);

    /* mtype on the biggest file. */
    const struct model_file *big = &model.files[0];
    for (unsigned i = 1; i < model.file_count; i++)
        if (model.files[i].size > big->size)
            big = &model.files[i];
    char *quoted_file = mf_test_shell_quote(big->path);
    out = run_ok(TOOLS_ENV " mtype -i %s ::%s", quoted, quoted_file);
    if (out.out_size != big->size || memcmp(out.out, big->data, big->size) != 0)
        fail_msg("mtype reads %s as %zu bytes that differ", big->path, out.out_size);
    mf_test_output_free(&out);
    free(quoted_file);
    free(quoted);
}

/* Everything the model holds, seen by our driver: the listing from a walk, and the bytes. */
static void verify_with_driver(void)
{
    static char *got[MODEL_FILES + MODEL_DIRS + 8];
    static char paths[MODEL_DIRS + 1][PATH_BYTES];
    unsigned count = 0, dirs = 1, next_dir = 0;
    paths[0][0] = '\0';
    while (next_dir < dirs) { /* breadth-first over the folders found */
        const char *base = paths[next_dir++];
        struct mf_fat_dir dir;
        struct mf_fat_stat st;
        check(mf_fat_opendir(&fs, &dir, base[0] ? base : "/"));
        int rc;
        while ((rc = mf_fat_readdir(&fs, &dir, &st)) == 1) {
            char path[PATH_BYTES];
            path_join(path, base, st.name);
            assert_true(count < MODEL_FILES + MODEL_DIRS + 8);
            got[count] = malloc(PATH_BYTES + 2);
            snprintf(got[count++], PATH_BYTES + 2, "%s%s", path, st.is_dir ? "/" : "");
            if (st.is_dir) {
                assert_true(dirs <= MODEL_DIRS);
                memcpy(paths[dirs++], path, PATH_BYTES);
            } else {
                const struct model_file *f = model_find(path);
                if (f && st.size != f->size)
                    fail_msg("our driver: %s has %u bytes, the model %u", path, st.size, f->size);
            }
        }
        check(rc);
    }
    compare_listings("our driver", got, count);
    for (unsigned i = 0; i < count; i++)
        free(got[i]);

    for (unsigned i = 0; i < model.file_count; i++) {
        const struct model_file *f = &model.files[i];
        struct mf_fat_file file;
        check(mf_fat_open(&fs, &file, f->path, MF_FAT_O_RDONLY));
        uint8_t *data = malloc(f->size + 1u);
        assert_non_null(data);
        int n = mf_fat_read(&fs, &file, data, f->size + 1u);
        if (n != (int)f->size || memcmp(data, f->data, f->size) != 0)
            fail_msg("our driver reads %s as %d bytes that differ from the %u written", f->path, n,
                     f->size);
        check(mf_fat_close(&fs, &file));
        free(data);
    }
}

static int setup(void **state)
{
    (void)state;
    tmpdir = mf_test_tmpdir("fatcross");
    assert_non_null(tmpdir);
    rng_state = mf_test_seed("test_fat_crosscheck", 0xC0551C4Eu);
    model_reset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_reset();
    int rc = mf_test_rmtree(tmpdir);
    free(tmpdir);
    tmpdir = NULL;
    return rc == 0 ? 0 : -1;
}

/* ---- FAT type and cluster size by size, as mkfs.fat picks them ------------------------------ */

struct picked {
    int type;
    uint32_t spc, reserved, fat_sectors, root_entries, clusters;
};

static void mkfs_pick(const char *image, uint64_t size, struct picked *p)
{
    char *quoted = mf_test_shell_quote(image);
    struct mf_test_output out = run_ok("rm -f %s && truncate -s %llu %s && mkfs.fat %s", quoted,
                                       (unsigned long long)size, quoted, quoted);
    mf_test_output_free(&out);
    free(quoted);
    uint8_t b[512];
    int fd = open(image, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, sizeof b, 0), (ssize_t)sizeof b);
    close(fd);
    uint32_t bps = b[11] | b[12] << 8, total = b[19] | b[20] << 8;
    if (total == 0)
        total = (uint32_t)(b[32] | b[33] << 8 | b[34] << 16 | (uint32_t)b[35] << 24);
    p->spc = b[13];
    p->reserved = b[14] | b[15] << 8;
    p->root_entries = b[17] | b[18] << 8;
    p->fat_sectors = b[22] | b[23] << 8;
    if (p->fat_sectors == 0)
        p->fat_sectors = (uint32_t)(b[36] | b[37] << 8 | b[38] << 16 | (uint32_t)b[39] << 24);
    uint32_t first_data =
        p->reserved + b[16] * p->fat_sectors + (p->root_entries * 32 + bps - 1) / bps;
    p->clusters = (total - first_data) / p->spc;
    p->type = p->clusters <= 4084 ? 12 : p->clusters <= 65524 ? 16 : 32;
}

static void test_format_picks_like_mkfs(void **state)
{
    (void)state;
    static const uint32_t sizes_mib[] = {1,   4,   8,   9,   16,  32,   64,
                                         128, 256, 260, 511, 512, 1024, 2048};
    char *theirs = image_path("mkfs.img"), *ours = image_path("ours.img");
    unsigned mismatches = 0;
    for (size_t i = 0; i < sizeof sizes_mib / sizeof sizes_mib[0]; i++) {
        uint64_t size = (uint64_t)sizes_mib[i] * MIB;
        struct picked p;
        mkfs_pick(theirs, size, &p);
        unlink(theirs);

        struct file_bd dev;
        file_bd_open(&dev, ours, size);
        struct mf_fat_format_options options = {.volume_id = 0x600DF00Du};
        check(mf_fat_format(&dev.bd, &options));
        check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
        const struct mf_fat_geometry *g = mf_fat_geometry(&fs);
        fprintf(stderr,
                "%4u MiB  mkfs.fat: FAT%d spc %3u rsv %2u fat %5u root %3u clusters %7u\n"
                "          ours:     FAT%d spc %3u rsv %2u fat %5u root %3u clusters %7u\n",
                sizes_mib[i], p.type, p.spc, p.reserved, p.fat_sectors, p.root_entries, p.clusters,
                g->type, g->sectors_per_cluster, g->reserved_sectors, g->fat_sectors,
                g->root_entries, g->cluster_count);
        if ((int)g->type != p.type || g->sectors_per_cluster != p.spc) {
            fprintf(stderr, "  ^ mismatch\n");
            mismatches++;
        }
        check(mf_fat_unmount(&fs));
        file_bd_close(&dev);
        uint32_t used, total;
        fsck_clean(ours, &used, &total);
        assert_int_equal(used, g->type == MF_FAT32 ? 1 : 0);
        unlink(ours);
    }
    free(theirs);
    free(ours);
    if (mismatches)
        fail_msg("%u sizes got another FAT type or cluster size than mkfs.fat gives", mismatches);
}

/* ---- our volumes, read by the tools ---------------------------------------------------------- */

static void ours_then_tools(enum mf_fat_type type, uint32_t spc, uint64_t size, uint32_t big,
                            unsigned many, uint32_t sector)
{
    char *image = image_path("ours.img");
    struct file_bd dev;
    file_bd_open_blocks(&dev, image, size, sector);
    struct mf_fat_format_options options = {
        .type = type, .sectors_per_cluster = spc, .volume_id = 0xC0FFEEu, .label = "OURS"};
    check(mf_fat_format(&dev.bd, &options));
    uint32_t used, total;
    fsck_clean(image, &used, &total);

    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    assert_int_equal(mf_fat_geometry(&fs)->type, type);
    assert_int_equal(mf_fat_geometry(&fs)->bytes_per_sector, sector);
    our_workload(big, many);
    uint32_t cluster_bytes =
        mf_fat_geometry(&fs)->sectors_per_cluster * mf_fat_geometry(&fs)->bytes_per_sector;
    uint64_t free_bytes, total_bytes;
    check(mf_fat_space(&fs, &free_bytes, &total_bytes));
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    verify_with_tools(image, "", free_bytes, cluster_bytes);
    free(image);
}

/* remove_tree removes files in batches (entries first, then chains): a tree of 150 files in three
 * levels goes whole, the volume is clean for fsck.fat and every cluster is free again. */
static void test_remove_tree_is_clean(void **state)
{
    (void)state;
    char *image = image_path("tree.img");
    struct file_bd dev;
    file_bd_open_blocks(&dev, image, 8u << 20, 512);
    struct mf_fat_format_options options = {.volume_id = 0x7EEu};
    check(mf_fat_format(&dev.bd, &options));
    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    uint64_t free_before, total;
    check(mf_fat_space(&fs, &free_before, &total));
    static const char *const dirs[] = {"tree", "tree/a", "tree/a/deep", "tree/b"};
    for (size_t d = 0; d < 4; d++)
        check(mf_fat_mkdir(&fs, dirs[d]));
    for (unsigned i = 0; i < 150; i++) {
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s/file number %03u.bin", dirs[i % 4], i);
        our_write(path, (i * 53u) % 4000u);
    }
    check(mf_fat_remove_tree(&fs, "tree"));
    struct mf_fat_stat st;
    assert_int_equal(mf_fat_stat(&fs, "tree", &st), MF_ENOENT);
    uint64_t free_after;
    check(mf_fat_space(&fs, &free_after, &total));
    assert_int_equal(free_after, free_before);
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    uint32_t used, clusters;
    fsck_clean(image, &used, &clusters);
    free(image);
}

static void test_ours_fat12_read_by_tools(void **state)
{
    (void)state;
    ours_then_tools(MF_FAT12, 0, 6u * MIB, 2500u * 1024u, 120, 512);
}

static void test_ours_fat16_read_by_tools(void **state)
{
    (void)state;
    ours_then_tools(MF_FAT16, 0, 24u * MIB, 5u * MIB, 200, 512);
}

static void test_ours_fat16_small_clusters_read_by_tools(void **state)
{
    (void)state;
    ours_then_tools(MF_FAT16, 1, 20u * MIB, 3u * MIB, 60, 512);
}

static void test_ours_fat32_read_by_tools(void **state)
{
    (void)state;
    ours_then_tools(MF_FAT32, 1, 40u * MIB, 5u * MIB, 200, 512);
}

/* 4 KiB sectors (a device of 4 KiB blocks). */
static void test_ours_4k_sectors_read_by_tools(void **state)
{
    (void)state;
    ours_then_tools(MF_FAT16, 0, 32u * MIB, 3u * MIB, 60, 4096);
}

/* The storage image's layout: an MBR, the volume in partition 1 at 1 MiB. */
static void test_ours_in_partition_read_by_tools(void **state)
{
    (void)state;
    char *image = image_path("disk.img");
    struct file_bd disk;
    file_bd_open(&disk, image, 16u * MIB);
    uint8_t mbr[512] = {0};
    const uint32_t first = 2048, count = (uint32_t)disk.bd.block_count - 2048;
    uint8_t *entry = mbr + 446;
    entry[1] = 0xFE, entry[2] = 0xFF, entry[3] = 0xFF;
    entry[4] = 0x06; /* FAT16 */
    entry[5] = 0xFE, entry[6] = 0xFF, entry[7] = 0xFF;
    for (int i = 0; i < 4; i++) {
        entry[8 + i] = (uint8_t)(first >> (8 * i));
        entry[12 + i] = (uint8_t)(count >> (8 * i));
    }
    mbr[510] = 0x55, mbr[511] = 0xAA;
    check(mf_bd_prog(&disk.bd, 0, mbr, 1));

    struct mf_bd_slice part;
    mf_bd_slice_init(&part, &disk.bd, first, count);
    struct mf_fat_format_options options = {.hidden_sectors = first, .volume_id = 0x1D15Cu};
    check(mf_fat_format(&part.bd, &options));
    check(mf_fat_mount(&fs, &part.bd, NULL, NULL));
    our_mkdir("Projects");
    our_write("Projects/firmware.bin", 300000);
    our_write("CntDown.txt", 5);
    our_write("Long name in a partition.txt", 4000);
    uint64_t free_bytes, total_bytes;
    check(mf_fat_space(&fs, &free_bytes, &total_bytes));
    check(mf_fat_unmount(&fs));
    file_bd_close(&disk);

    /* The partition table is intact and the tools find the volume through it. */
    char *quoted = mf_test_shell_quote(image);
    struct mf_test_output out = run_ok("sfdisk -d %s", quoted);
    const char *start = strstr(out.out, "start=");
    if (!start || strtoul(start + 6, NULL, 10) != first)
        fail_msg("sfdisk -d does not show partition 1 at sector %u:\n%s", first, out.out);
    mf_test_output_free(&out);
    verify_with_tools(image, "@@1M", free_bytes, 0);
    /* fsck.fat on the partition's bytes alone. */
    char *part_image = image_path("part.img");
    char *quoted_part = mf_test_shell_quote(part_image);
    out = run_ok("dd if=%s of=%s bs=1M skip=1 status=none", quoted, quoted_part);
    mf_test_output_free(&out);
    uint32_t used, total;
    fsck_clean(part_image, &used, &total);
    free(quoted_part);
    free(part_image);
    free(quoted);
    free(image);
}

/* ---- volumes of mkfs.fat and mtools, read and written by us -----------------------------------
 */

static char *script;
static size_t script_used, script_size;

static void script_add(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void script_add(const char *format, ...)
{
    if (script_size - script_used < 4096) {
        script_size = script_size ? script_size * 2 : 65536;
        script = realloc(script, script_size);
        assert_non_null(script);
    }
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(script + script_used, script_size - script_used, format, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < script_size - script_used);
    script_used += (size_t)n;
}

static unsigned host_files;

/* Adds a file to the model and an mcopy of it to the script. */
static void tools_write(const char *path, uint32_t size)
{
    struct model_file *f = model_file(path, size);
    char name[32];
    snprintf(name, sizeof name, "host-%u", host_files++);
    char *host = mf_test_path(tmpdir, name);
    assert_int_equal(mf_test_write_file(host, f->data, f->size), 0);
    char *quoted_host = mf_test_shell_quote(host);
    char target[PATH_BYTES + 2];
    snprintf(target, sizeof target, "::%s", path);
    char *quoted_target = mf_test_shell_quote(target);
    script_add("mcopy -o -i \"$I\" %s %s\n", quoted_host, quoted_target);
    free(quoted_target);
    free(quoted_host);
    free(host);
}

static void tools_mkdir(const char *path)
{
    model_dir(path);
    char target[PATH_BYTES + 2];
    snprintf(target, sizeof target, "::%s", path);
    char *quoted = mf_test_shell_quote(target);
    script_add("mmd -i \"$I\" %s\n", quoted);
    free(quoted);
}

static void tools_remove(const char *path)
{
    struct model_file *f = model_find(path);
    assert_non_null(f);
    model_drop(f);
    char target[PATH_BYTES + 2];
    snprintf(target, sizeof target, "::%s", path);
    char *quoted = mf_test_shell_quote(target);
    script_add("mdel -i \"$I\" %s\n", quoted);
    free(quoted);
}

static void tools_then_ours(int fat_bits, uint32_t spc, uint32_t size_mib, uint32_t big,
                            unsigned many, uint32_t sector)
{
    char *image = image_path("mkfs.img");
    char *quoted = mf_test_shell_quote(image);
    script_used = 0;
    host_files = 0;
    char cluster_option[32];
    snprintf(cluster_option, sizeof cluster_option, "-S %u", sector);
    if (spc)
        snprintf(cluster_option, sizeof cluster_option, "-S %u -s %u", sector, spc);
    script_add("set -e\nexport " TOOLS_ENV "\nI=%s\nrm -f \"$I\"\ntruncate -s %uM \"$I\"\n"
               "mkfs.fat -F %d %s -n MKFS \"$I\" >/dev/null\n",
               quoted, size_mib, fat_bits, cluster_option);
    char path[PATH_BYTES];
    tools_mkdir("Projects");
    tools_mkdir("Projects/01_Demo");
    tools_mkdir("Projects/01_Demo/01_Job");
    tools_write("Projects/01_Demo/01_Job/job.ini", 300);
    tools_write("CntDown.txt", 4);
    tools_write("A long file name made by mtools.txt", 3000);
    tools_write("Grüße aus mtools.txt", 33);
    tools_write("Кириллица.bin", 66);
    tools_write("UPPER.TXT", 5);
    tools_write("mixed Case Name.Txt", 6);
    char deep[PATH_BYTES] = "";
    for (int level = 1; level <= 5; level++) {
        char name[16];
        snprintf(name, sizeof name, "deep folder %d", level);
        path_join(deep, deep, name);
        tools_mkdir(deep);
    }
    path_join(path, deep, "bottom.txt");
    tools_write(path, 123);
    tools_mkdir("many");
    for (unsigned i = 0; i < many; i++) {
        snprintf(path, sizeof path, "many/mtools file number %u.dat", i);
        tools_write(path, (i * 53u) % 5000u);
    }
    tools_mkdir("frag");
    for (unsigned i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "frag/f%02u.bin", i);
        tools_write(path, 9000 + i);
    }
    for (unsigned i = 0; i < 20; i += 2) {
        snprintf(path, sizeof path, "frag/f%02u.bin", i);
        tools_remove(path);
    }
    tools_write("frag/fills the holes.bin", 150000);
    tools_write("big file.bin", big);
    tools_mkdir("empty folder");

    char *script_path = image_path("fill.sh");
    assert_int_equal(mf_test_write_file(script_path, script, script_used), 0);
    char *quoted_script = mf_test_shell_quote(script_path);
    struct mf_test_output out = run_ok("sh %s", quoted_script);
    mf_test_output_free(&out);
    free(quoted_script);
    free(script_path);
    uint32_t used, total;
    fsck_clean(image, &used, &total);

    /* Our driver reads what the tools wrote. */
    struct file_bd dev;
    file_bd_open(&dev, image, 0);
    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    assert_int_equal((int)mf_fat_geometry(&fs)->type, fat_bits);
    assert_int_equal(mf_fat_geometry(&fs)->bytes_per_sector, sector);
    assert_string_equal(mf_fat_geometry(&fs)->label, "MKFS");
    verify_with_driver();
    uint64_t free_bytes, total_bytes;
    check(mf_fat_space(&fs, &free_bytes, &total_bytes));
    uint32_t cluster_bytes =
        mf_fat_geometry(&fs)->sectors_per_cluster * mf_fat_geometry(&fs)->bytes_per_sector;
    assert_int_equal(total_bytes, (uint64_t)total * cluster_bytes);
    assert_int_equal(free_bytes, (uint64_t)(total - used) * cluster_bytes);

    /* Our writes on their volume keep it clean for fsck.fat and readable by mtools. */
    our_append("frag/fills the holes.bin", 70000);
    our_append("frag/f01.bin", 20000);
    our_write("written by us.txt", 12345);
    our_mkdir("Projects/02_Ours");
    our_write("Projects/02_Ours/job.ini", 99);
    our_rename("mixed Case Name.Txt", "Projects/02_Ours/moved Name.txt");
    our_rename("deep folder 1/deep folder 2", "Projects/deep moved");
    our_remove("frag/f03.bin");
    our_remove("big file.bin");
    our_truncate("frag/f05.bin", 50);
    our_truncate("many/mtools file number 7.dat", 20000);
    our_rmdir("empty folder");
    for (unsigned i = 0; i < many; i += 3) {
        snprintf(path, sizeof path, "many/mtools file number %u.dat", i);
        our_remove(path);
    }
    check(mf_fat_space(&fs, &free_bytes, &total_bytes));
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    verify_with_tools(image, "", free_bytes, cluster_bytes);
    /* And our driver still agrees after a fresh mount. */
    file_bd_open(&dev, image, 0);
    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    verify_with_driver();
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    free(quoted);
    free(image);
}

static void test_mkfs_fat12_read_by_us(void **state)
{
    (void)state;
    tools_then_ours(12, 0, 6, 2200u * 1024u, 80, 512);
}

static void test_mkfs_fat16_read_by_us(void **state)
{
    (void)state;
    tools_then_ours(16, 0, 24, 4u * MIB, 150, 512);
}

static void test_mkfs_fat32_read_by_us(void **state)
{
    (void)state;
    tools_then_ours(32, 1, 40, 4u * MIB, 150, 512);
}

/* 4 KiB logical sectors, read through a device of 512-byte blocks. */
static void test_mkfs_4k_sectors_read_by_us(void **state)
{
    (void)state;
    tools_then_ours(16, 1, 32, 3u * MIB, 60, 4096);
}

/* A fresh 2 MiB FAT12 image made by mkfs.fat in the temporary folder, and a host file holding
 * `text`, both as shell-quoted paths (freed by the caller). */
struct small_image {
    char *image, *quoted, *host, *quoted_host;
};

static struct small_image small_image(const char *name, const char *text)
{
    struct small_image m;
    char host_name[64];
    snprintf(host_name, sizeof host_name, "%s.txt", name);
    m.image = image_path(name);
    m.quoted = mf_test_shell_quote(m.image);
    m.host = image_path(host_name);
    assert_int_equal(mf_test_write_file(m.host, text, strlen(text)), 0);
    m.quoted_host = mf_test_shell_quote(m.host);
    struct mf_test_output out =
        run_ok("set -e; rm -f %s; truncate -s 2M %s; mkfs.fat -F 12 %s >/dev/null", m.quoted,
               m.quoted, m.quoted);
    mf_test_output_free(&out);
    return m;
}

static void small_image_free(struct small_image *m)
{
    free(m->quoted_host);
    free(m->host);
    free(m->quoted);
    free(m->image);
}

/* Short names in code page 437 that mtools stores with the NT lower-case bits and no long name
 * ("CAFE2É  TXT", flags base and extension) show in lower case, the letters beyond ASCII too, as
 * Windows and Linux show them (`mdir -b` lowers only ASCII: not compared here); either case
 * opens them. */
static void test_cp437_short_names_in_lower_case(void **state)
{
    (void)state;
    struct small_image m = small_image("cp437.img", "seven b");
    struct mf_test_output out = run_ok(TOOLS_ENV " mcopy -i %s %s '::cafe2é.txt'; " TOOLS_ENV
                                                 " mdir -i %s :: | grep -q '^cafe2é   txt'",
                                       m.quoted, m.quoted_host, m.quoted);
    mf_test_output_free(&out);
    struct file_bd dev;
    file_bd_open(&dev, m.image, 0);
    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    struct mf_fat_dir dir;
    check(mf_fat_opendir(&fs, &dir, "/"));
    struct mf_fat_stat st;
    unsigned entries = 0;
    while (mf_fat_readdir(&fs, &dir, &st) == 1) {
        entries++;
        assert_string_equal(st.name, "cafe2é.txt");
        assert_string_equal(st.short_name, "CAFE2?.TXT"); /* no long name; kept ASCII shows */
    }
    bool seen = entries == 1;
    assert_true(seen);
    const char *names[] = {"cafe2é.txt", "CAFE2É.TXT", "Cafe2É.txt"};
    for (size_t i = 0; i < 3; i++) {
        struct mf_fat_file file;
        check(mf_fat_open(&fs, &file, names[i], MF_FAT_O_RDONLY));
        char buf[8];
        assert_int_equal(mf_fat_read(&fs, &file, buf, sizeof buf), 7);
        assert_memory_equal(buf, "seven b", 7);
        check(mf_fat_close(&fs, &file));
    }
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    small_image_free(&m);
}

/* A file replaced whole (mf_fat_replace, as #SELECT rewrites FLASHER.INI) keeps the attributes
 * another system gave it (hidden, here) and gets the archive bit; a read-only one is refused as a
 * writable open of it is, and stays as it was. */
static void test_replace_keeps_attributes(void **state)
{
    (void)state;
    struct small_image m = small_image("attrib.img", "old text");
    struct mf_test_output out =
        run_ok(TOOLS_ENV
               " mcopy -i %s %s ::HIDDEN.INI; " TOOLS_ENV " mcopy -i %s %s ::LOCKED.INI; " TOOLS_ENV
               " mattrib -i %s -a +h ::HIDDEN.INI; " TOOLS_ENV " mattrib -i %s -a +r ::LOCKED.INI",
               m.quoted, m.quoted_host, m.quoted, m.quoted_host, m.quoted, m.quoted);
    mf_test_output_free(&out);
    struct file_bd dev;
    file_bd_open(&dev, m.image, 0);
    check(mf_fat_mount(&fs, &dev.bd, NULL, NULL));
    const char *targets[] = {"HIDDEN.INI", "LOCKED.INI"};
    for (size_t i = 0; i < 2; i++) {
        struct mf_fat_file file;
        check(mf_fat_open(&fs, &file, "NEW.TMP", MF_FAT_O_WRONLY | MF_FAT_O_CREAT));
        assert_int_equal(mf_fat_write(&fs, &file, "new text", 8), 8);
        check(mf_fat_close(&fs, &file));
        int err = mf_fat_replace(&fs, "NEW.TMP", targets[i]);
        assert_int_equal(err, i == 0 ? 0 : MF_EACCES);
        if (err)
            check(mf_fat_remove(&fs, "NEW.TMP"));
    }
    check(mf_fat_unmount(&fs));
    file_bd_close(&dev);
    out = run_ok(TOOLS_ENV " mattrib -i %s ::HIDDEN.INI ::LOCKED.INI; " TOOLS_ENV
                           " mattrib -i %s -h ::HIDDEN.INI; " TOOLS_ENV
                           " mtype -i %s ::HIDDEN.INI; " TOOLS_ENV
                           " mtype -i %s ::LOCKED.INI; fsck.fat -n %s >/dev/null",
                 m.quoted, m.quoted, m.quoted, m.quoted, m.quoted);
    /* mattrib's flags stand before the name: "  A   H      ::/HIDDEN.INI". */
    const char *hidden = strstr(out.out, "::/HIDDEN.INI"),
               *locked = strstr(out.out, "::/LOCKED.INI");
    const char *line2 = locked ? memrchr(out.out, '\n', (size_t)(locked - out.out)) : NULL;
    bool ok = hidden && locked && line2 && hidden < line2 &&
              memchr(out.out, 'A', (size_t)(hidden - out.out)) &&
              memchr(out.out, 'H', (size_t)(hidden - out.out)) &&
              !memchr(out.out, 'R', (size_t)(hidden - out.out)) &&
              memchr(line2, 'R', (size_t)(locked - line2)) &&
              !memchr(line2, 'A', (size_t)(locked - line2)) && strstr(out.out, "new textold text");
    if (!ok)
        fail_msg("attributes or contents after the replace:\n%s", out.out);
    mf_test_output_free(&out);
    small_image_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format_picks_like_mkfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_tree_is_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ours_fat12_read_by_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ours_fat16_read_by_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ours_fat16_small_clusters_read_by_tools, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ours_fat32_read_by_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ours_4k_sectors_read_by_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ours_in_partition_read_by_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkfs_fat12_read_by_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkfs_fat16_read_by_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkfs_fat32_read_by_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkfs_4k_sectors_read_by_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cp437_short_names_in_lower_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_keeps_attributes, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(script);
    return failed;
}
