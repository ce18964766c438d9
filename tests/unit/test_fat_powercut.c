/* Power cuts and I/O errors under the FAT driver: a sequence of file operations runs on the
 * fault-injecting device with a cut at every write point (mf_sweep). After each cut and reboot
 * the volume mounts, our driver walks all of it, `fsck.fat -a` repairs what the cut left, and
 * every file completed before the cut is intact byte for byte, for our driver and for mtype.
 * The non-block-atomic modes only have to mount (or give MF_ECORRUPT) and never crash. */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_rambd.h"
#include "mf_sweep.h"
#include "mf_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define VOLUME_BLOCKS 2048u /* 1 MiB FAT12, 2 KiB clusters */
#define PATH_BYTES    96
#define MAX_FILES     16

/* ---- the scenario ---------------------------------------------------------------------------- */

enum step_kind { WRITE, APPEND, MKDIR, RENAME, TRUNCATE, REMOVE, RMDIR };

struct step {
    enum step_kind kind;
    const char *path;
    const char *to;  /* RENAME */
    uint32_t size;   /* WRITE: bytes, APPEND: extra bytes, TRUNCATE: new size */
    uint32_t pieces; /* WRITE, APPEND: number of write calls */
};

/* Each step ends with a closed file or a finished call: a "completed" change. */
static const struct step steps[] = {
    {WRITE, "a.txt", NULL, 3000, 1},
    {WRITE, "Long name file.bin", NULL, 9000, 3},
    {MKDIR, "dir", NULL, 0, 0},
    {WRITE, "dir/b.txt", NULL, 100, 1},
    {APPEND, "a.txt", NULL, 5000, 2},
    {RENAME, "Long name file.bin", "dir/moved long name.bin", 0, 0},
    {TRUNCATE, "dir/moved long name.bin", NULL, 2500, 0},
    {REMOVE, "a.txt", NULL, 0, 0},
    {WRITE, "c.txt", NULL, 4500, 2},
    {RENAME, "dir", "renamed dir", 0, 0},
    {TRUNCATE, "c.txt", NULL, 7000, 0},
    {MKDIR, "renamed dir/sub", NULL, 0, 0},
    {WRITE, "renamed dir/sub/d.txt", NULL, 2100, 1},
    {REMOVE, "renamed dir/b.txt", NULL, 0, 0},
    {MKDIR, "empty", NULL, 0, 0},
    {RMDIR, "empty", NULL, 0, 0},
    {APPEND, "pre.txt", NULL, 700, 1},
};
#define STEP_COUNT (sizeof steps / sizeof steps[0])

struct file_state {
    char path[PATH_BYTES];
    uint8_t data[16384];
    uint32_t size;
};

struct state {
    struct file_state files[MAX_FILES];
    unsigned count;
};

struct context {
    unsigned done; /* steps completed by the last run */
    char *tmpdir;
    char *image;
    uint8_t *buffer;          /* the whole volume, for the tools */
    unsigned fsck_repairs;    /* cuts after which fsck.fat -a had something to repair */
    unsigned fsck_passes_max; /* most runs of fsck.fat -a one cut needed */
};

static struct context ctx;

/* The bytes a step writes: a function of the step and the offset, so any run writes the same. */
static uint8_t step_byte(unsigned step, uint32_t offset)
{
    uint32_t x = (step + 1u) * 2654435761u ^ offset * 40503u;
    return (uint8_t)(x >> 13 ^ x);
}

static struct file_state *state_find(struct state *s, const char *path)
{
    for (unsigned i = 0; i < s->count; i++)
        if (strcmp(s->files[i].path, path) == 0)
            return &s->files[i];
    return NULL;
}

/* What the volume holds after steps[0..count): the model. "pre.txt" exists from the start. */
static void state_after(struct state *s, unsigned count)
{
    memset(s, 0, sizeof *s);
    struct file_state *pre = &s->files[s->count++];
    strcpy(pre->path, "pre.txt");
    pre->size = 1234;
    for (uint32_t i = 0; i < pre->size; i++)
        pre->data[i] = step_byte(99, i);
    for (unsigned k = 0; k < count; k++) {
        const struct step *st = &steps[k];
        struct file_state *f = state_find(s, st->path);
        size_t len = strlen(st->path);
        switch (st->kind) {
        case WRITE:
            if (!f) {
                f = &s->files[s->count++];
                snprintf(f->path, sizeof f->path, "%s", st->path);
            }
            f->size = st->size;
            for (uint32_t i = 0; i < st->size; i++)
                f->data[i] = step_byte(k, i);
            break;
        case APPEND:
            for (uint32_t i = 0; i < st->size; i++)
                f->data[f->size + i] = step_byte(k, i);
            f->size += st->size;
            break;
        case TRUNCATE:
            if (st->size > f->size)
                memset(f->data + f->size, 0, st->size - f->size);
            f->size = st->size;
            break;
        case REMOVE:
            *f = s->files[--s->count];
            break;
        case RENAME:
            for (unsigned i = 0; i < s->count; i++) {
                char *p = s->files[i].path;
                if (strcmp(p, st->path) == 0 || (strncmp(p, st->path, len) == 0 && p[len] == '/')) {
                    char moved[PATH_BYTES];
                    snprintf(moved, sizeof moved, "%s%s", st->to, p + len);
                    memcpy(p, moved, sizeof moved);
                }
            }
            break;
        case MKDIR:
        case RMDIR:
            break;
        }
    }
}

/* Runs steps[k] through the driver. */
static int step_run(struct mf_fat *fs, unsigned k)
{
    const struct step *st = &steps[k];
    static uint8_t data[16384];
    struct mf_fat_file file;
    int err = 0;
    switch (st->kind) {
    case WRITE:
    case APPEND: {
        for (uint32_t i = 0; i < st->size; i++)
            data[i] = step_byte(k, i);
        int flags = MF_FAT_O_WRONLY |
                    (st->kind == WRITE ? MF_FAT_O_CREAT | MF_FAT_O_TRUNC : MF_FAT_O_APPEND);
        err = mf_fat_open(fs, &file, st->path, flags);
        if (err)
            return err;
        uint32_t piece = (st->size + st->pieces - 1) / st->pieces;
        for (uint32_t done = 0; done < st->size && !err;) {
            uint32_t n = st->size - done < piece ? st->size - done : piece;
            int w = mf_fat_write(fs, &file, data + done, n);
            err = w < 0 ? w : w == (int)n ? 0 : MF_EIO;
            done += n;
        }
        int close_err = mf_fat_close(fs, &file);
        return err ? err : close_err;
    }
    case MKDIR:
        return mf_fat_mkdir(fs, st->path);
    case RMDIR:
        return mf_fat_rmdir(fs, st->path);
    case RENAME:
        return mf_fat_rename(fs, st->path, st->to);
    case REMOVE:
        return mf_fat_remove(fs, st->path);
    case TRUNCATE:
        err = mf_fat_open(fs, &file, st->path, MF_FAT_O_RDWR);
        if (err)
            return err;
        err = mf_fat_truncate(fs, &file, st->size);
        int close_err = mf_fat_close(fs, &file);
        return err ? err : close_err;
    }
    return MF_EINVAL;
}

static int scenario_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat_format_options options = {.volume_id = 0xC07C07u};
    int err = mf_fat_format(medium, &options);
    if (err)
        return err;
    static struct mf_fat fs;
    err = mf_fat_mount(&fs, medium, NULL, NULL);
    if (err)
        return err;
    struct state s;
    state_after(&s, 0);
    struct mf_fat_file file;
    err = mf_fat_open(&fs, &file, "pre.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
    if (!err) {
        int w = mf_fat_write(&fs, &file, s.files[0].data, s.files[0].size);
        err = w == (int)s.files[0].size ? 0 : MF_EIO;
        int close_err = mf_fat_close(&fs, &file);
        err = err ? err : close_err;
    }
    int unmount_err = mf_fat_unmount(&fs);
    return err ? err : unmount_err;
}

static int scenario_run(void *context, const struct mf_bd *bd)
{
    struct context *c = context;
    static struct mf_fat fs;
    c->done = 0;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    for (unsigned k = 0; k < STEP_COUNT; k++) {
        err = step_run(&fs, k);
        if (err) {
            /* The volume may be unusable now (power is off): forget the open handles. */
            fs.open_files = NULL;
            return err;
        }
        c->done = k + 1;
    }
    return mf_fat_unmount(&fs);
}

/* ---- checks ---------------------------------------------------------------------------------- */

static bool report;

static int complain(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int complain(const char *format, ...)
{
    if (report) {
        va_list ap;
        va_start(ap, format);
        fprintf(stderr, "  ");
        vfprintf(stderr, format, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    return MF_EVERIFY;
}

/* Reads a whole file; returns its size or a negative error. */
static long read_whole(struct mf_fat *fs, const char *path, uint8_t *buffer, uint32_t capacity)
{
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_RDONLY);
    if (err)
        return err;
    long total = 0;
    for (unsigned calls = 0; calls < 1000; calls++) {
        int n = mf_fat_read(fs, &file, buffer + total, capacity - (uint32_t)total);
        if (n < 0) {
            total = n;
            break;
        }
        if (n == 0)
            break;
        total += n;
        if ((uint32_t)total == capacity)
            break;
    }
    mf_fat_close(fs, &file);
    return total;
}

/* Walks every folder (bounded) and reads every file. Returns the first error, 0 when all
 * was readable. */
static int walk_all(struct mf_fat *fs, unsigned *entries)
{
    static char paths[64][PATH_BYTES * 2];
    static uint8_t buffer[64 * 1024];
    unsigned dirs = 1, next = 0;
    int first_error = 0;
    paths[0][0] = '\0';
    *entries = 0;
    while (next < dirs && *entries < 2000) {
        const char *base = paths[next++];
        struct mf_fat_dir dir;
        struct mf_fat_stat st;
        int rc = mf_fat_opendir(fs, &dir, base[0] ? base : "/");
        while (rc == 0 && (rc = mf_fat_readdir(fs, &dir, &st)) == 1 && ++*entries < 2000) {
            char path[PATH_BYTES * 2];
            size_t base_len = strlen(base), name_len = strlen(st.name);
            if (base_len + name_len + 2 > sizeof path)
                continue;
            memcpy(path, base, base_len);
            path[base_len] = '/';
            memcpy(path + base_len + 1, st.name, name_len + 1);
            if (st.is_dir) {
                if (dirs < 64)
                    memcpy(paths[dirs++], path, sizeof path);
            } else {
                long n = read_whole(fs, path, buffer, sizeof buffer);
                if (n < 0 && !first_error)
                    first_error = (int)n;
            }
            rc = 0;
        }
        if (rc < 0 && !first_error)
            first_error = rc;
    }
    return first_error;
}

static bool under(const char *path, const char *folder)
{
    size_t len = strlen(folder);
    return strcmp(path, folder) == 0 || (strncmp(path, folder, len) == 0 && path[len] == '/');
}

/* Checks one file of the model against the volume. `flux` is the step in flight (NULL when
 * none) and `next` the state it would have made: a file it touches may be in the old state or
 * the new one, with what a repair leaves in between. */
static int check_file(struct mf_fat *fs, const struct file_state *f, const struct step *flux,
                      const struct state *next)
{
    static uint8_t got[32768];
    if (!flux || !under(f->path, flux->path)) {
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n < 0)
            return complain("%s: %ld (%s), expected %u intact bytes", f->path, n,
                            mf_strerror((int)n), f->size);
        if ((uint32_t)n != f->size || memcmp(got, f->data, f->size) != 0)
            return complain("%s: %ld bytes that differ from the %u completed before the cut",
                            f->path, n, f->size);
        return 0;
    }
    switch (flux->kind) {
    case REMOVE: {
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n == MF_ENOENT)
            return 0;
        if (n != (long)f->size || memcmp(got, f->data, f->size) != 0)
            return complain("%s (being removed): %ld bytes, neither gone nor intact", f->path, n);
        return 0;
    }
    case RENAME: {
        char moved[PATH_BYTES];
        snprintf(moved, sizeof moved, "%s%s", flux->to, f->path + strlen(flux->path));
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n == (long)f->size && memcmp(got, f->data, f->size) == 0)
            return 0;
        n = read_whole(fs, moved, got, sizeof got);
        if (n == (long)f->size && memcmp(got, f->data, f->size) == 0)
            return 0;
        return complain("%s (being renamed to %s): intact under neither name", f->path, moved);
    }
    case WRITE:
    case APPEND:
    case TRUNCATE: {
        /* Old bytes stay, up to the shorter of old and new size; a repair may cut the file at
         * a cluster boundary, never into the part both states share. */
        const struct file_state *after = state_find((struct state *)next, f->path);
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n < 0)
            return complain("%s (being changed): %ld (%s)", f->path, n, mf_strerror((int)n));
        uint32_t keep = f->size;
        if (after && after->size < keep)
            keep = after->size;
        if (flux->kind == WRITE)
            return 0; /* rewritten from the start: any content */
        if ((uint32_t)n < keep || memcmp(got, f->data, keep) != 0)
            return complain("%s (being changed): %ld bytes, the first %u of them not intact",
                            f->path, n, keep);
        return 0;
    }
    default:
        return 0;
    }
}

static bool modes_keep_order(unsigned mode)
{
    return mode == MF_FAULTBD_CUT_DROP || mode == MF_FAULTBD_CUT_APPLY ||
           mode == MF_FAULTBD_CUT_TORN;
}

/* The volume image through the tools: write it out; when the cut kept the write order, no
 * entry may point at a free cluster (the driver writes the FAT before the entries that use
 * it, and removes entries before freeing); let fsck.fat -a repair it (a folder left under two
 * names takes it two passes); check that fsck.fat -n is then clean; load the repaired bytes. */
static int repair_with_fsck(const struct mf_bd *bd, unsigned mode)
{
    size_t size = (size_t)VOLUME_BLOCKS * 512u;
    int err = mf_bd_read(bd, 0, ctx.buffer, VOLUME_BLOCKS);
    if (err)
        return complain("reading the volume back: %d", err);
    if (mf_test_write_file(ctx.image, ctx.buffer, size) != 0)
        return MF_EIO;
    char *quoted = mf_test_shell_quote(ctx.image);
    struct mf_test_output out;
    int rc;
    if (modes_keep_order(mode)) {
        rc = mf_test_runf(&out, "fsck.fat -n %s 2>&1", quoted);
        if (rc == 0 && strstr(out.out, "free cluster")) {
            complain("an entry points at a free cluster after an ordered cut:\n%s", out.out);
            mf_test_output_free(&out);
            free(quoted);
            return MF_EVERIFY;
        }
        mf_test_output_free(&out);
    }
    unsigned passes = 0;
    do {
        rc = mf_test_runf(&out, "fsck.fat -a %s 2>&1", quoted);
        passes++;
        /* 0: nothing to do, 1: errors found and corrected. */
        if (rc != 0 || (out.status != 0 && out.status != 1)) {
            complain("fsck.fat -a gave status %d:\n%s", out.status, out.out);
            mf_test_output_free(&out);
            free(quoted);
            return MF_EVERIFY;
        }
        rc = out.status;
        mf_test_output_free(&out);
    } while (rc == 1 && passes < 3);
    if (passes > 1)
        ctx.fsck_repairs++; /* the first run corrected something */
    if (passes > ctx.fsck_passes_max)
        ctx.fsck_passes_max = passes;
    rc = mf_test_runf(&out, "fsck.fat -n %s 2>&1", quoted);
    unsigned lines = 0;
    for (const char *p = out.out; *p; p++)
        lines += *p == '\n';
    if (rc != 0 || out.status != 0 || lines != 2) {
        complain("after %u runs of fsck.fat -a, fsck.fat -n still complains (status %d):\n%s",
                 passes, out.status, out.out);
        mf_test_output_free(&out);
        free(quoted);
        return MF_EVERIFY;
    }
    mf_test_output_free(&out);
    free(quoted);
    char *data;
    size_t got;
    if (mf_test_read_file(ctx.image, &data, &got) != 0 || got != size)
        return complain("cannot read the repaired image back");
    memcpy(ctx.buffer, data, size);
    free(data);
    err = mf_bd_prog(bd, 0, ctx.buffer, VOLUME_BLOCKS);
    if (!err)
        err = mf_bd_sync(bd);
    return err;
}

/* The intact files, read by mtype in one go: the output is their bytes, one after another. */
static int check_with_mtype(const struct state *s, const struct step *flux)
{
    char *command = malloc(64 * 1024);
    uint8_t *expected = malloc(MAX_FILES * 16384);
    if (!command || !expected)
        return MF_ENOMEM;
    char *quoted = mf_test_shell_quote(ctx.image);
    size_t used =
        (size_t)snprintf(command, 64 * 1024, "set -e; export LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1; ");
    size_t expected_size = 0;
    for (unsigned i = 0; i < s->count; i++) {
        const struct file_state *f = &s->files[i];
        if (flux && under(f->path, flux->path))
            continue;
        char target[PATH_BYTES + 4];
        snprintf(target, sizeof target, "::%s", f->path);
        char *quoted_target = mf_test_shell_quote(target);
        used += (size_t)snprintf(command + used, 64 * 1024 - used, "mtype -i %s %s; ", quoted,
                                 quoted_target);
        free(quoted_target);
        memcpy(expected + expected_size, f->data, f->size);
        expected_size += f->size;
    }
    struct mf_test_output out;
    int rc = mf_test_run(command, NULL, 0, &out);
    int err = 0;
    if (rc != 0 || out.status != 0)
        err = complain("mtype failed (status %d): %s", out.status, out.err);
    else if (out.out_size != expected_size || memcmp(out.out, expected, expected_size) != 0)
        err = complain("mtype reads the completed files as %zu bytes that differ from the %zu "
                       "expected",
                       out.out_size, expected_size);
    mf_test_output_free(&out);
    free(quoted);
    free(command);
    free(expected);
    return err;
}

static int check_files(struct mf_fat *fs, const struct state *before, const struct step *flux,
                       const struct state *next)
{
    for (unsigned i = 0; i < before->count; i++) {
        int err = check_file(fs, &before->files[i], flux, next);
        if (err)
            return err;
    }
    return 0;
}

static int scenario_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct context *c = context;
    report = point->report;
    static struct state before, next;
    state_after(&before, c->done);
    const struct step *flux = c->done < STEP_COUNT && point->cut_at ? &steps[c->done] : NULL;
    state_after(&next, flux ? c->done + 1 : c->done);

    /* As the cut left it: mounts, walks, and the untouched files are already intact. */
    static struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return complain("mount after the cut (step %u of %zu in flight): %d (%s)", c->done,
                        STEP_COUNT, err, mf_strerror(err));
    unsigned entries;
    walk_all(&fs, &entries);
    err = check_files(&fs, &before, flux, &next);
    if (err) {
        complain("before fsck.fat, with step %u in flight", c->done);
        return err;
    }
    err = mf_fat_unmount(&fs);
    if (err)
        return complain("unmount: %d", err);

    /* Repaired by fsck.fat: everything is readable and the files are intact, for both. */
    err = repair_with_fsck(bd, point->mode);
    if (err)
        return err;
    err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return complain("mount after fsck.fat -a: %d (%s)", err, mf_strerror(err));
    err = walk_all(&fs, &entries);
    if (err)
        return complain("after fsck.fat -a our driver cannot read everything: %d (%s)", err,
                        mf_strerror(err));
    err = check_files(&fs, &before, flux, &next);
    if (err) {
        complain("after fsck.fat -a, with step %u in flight", c->done);
        return err;
    }
    mf_fat_unmount(&fs);
    return check_with_mtype(&before, flux);
}

/* Garbling modes: the volume mounts (or is refused as corrupt) and is walked without a crash. */
static int garble_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    (void)context;
    report = point->report;
    static struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err == MF_ECORRUPT)
        return 0;
    if (err)
        return complain("mount after a garbling cut: %d (%s)", err, mf_strerror(err));
    /* Any error is fine here (a garbled name may not even be valid as a path). */
    unsigned entries;
    walk_all(&fs, &entries);
    /* Writing on it must not crash either. */
    struct mf_fat_file file;
    if (mf_fat_open(&fs, &file, "after garble.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT) == 0) {
        mf_fat_write(&fs, &file, "x", 1);
        mf_fat_close(&fs, &file);
    }
    fs.open_files = NULL;
    mf_fat_unmount(&fs);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&ctx, 0, sizeof ctx);
    ctx.tmpdir = mf_test_tmpdir("fatcut");
    if (!ctx.tmpdir)
        return -1;
    ctx.image = mf_test_path(ctx.tmpdir, "volume.img");
    ctx.buffer = malloc((size_t)VOLUME_BLOCKS * 512u);
    return ctx.buffer ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = mf_test_rmtree(ctx.tmpdir);
    free(ctx.tmpdir);
    free(ctx.image);
    free(ctx.buffer);
    return rc == 0 ? 0 : -1;
}

static void test_power_cut_at_every_write(void **state)
{
    (void)state;
    struct mf_sweep sweep = {
        .name = "fat-steps",
        .block_size = 512,
        .block_count = VOLUME_BLOCKS,
        .context = &ctx,
        .setup = scenario_setup,
        .run = scenario_run,
        .check = scenario_check,
    };
    /* Every point under MF_SOAK=1; about 60 per mode otherwise (each check runs the tools). */
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ATOMIC, .max_points = 60};
    struct mf_sweep_result result;
    int err = mf_sweep_run(&sweep, &options, &result);
    fprintf(stderr,
            "fat power cuts: %llu write points, %llu cuts checked, fsck.fat repaired "
            "after %u (fsck.fat -a ran up to %u times), %llu failures\n",
            (unsigned long long)result.write_points, (unsigned long long)result.cuts,
            ctx.fsck_repairs, ctx.fsck_passes_max, (unsigned long long)result.failures);
    if (err)
        fail_msg("power-cut sweep: %d (%s); first: %s", err, mf_strerror(err), result.first_reason);
    assert_true(result.write_points > 50);
    assert_true(result.cuts >= 4 * 30);
}

static void test_garbling_cuts_never_crash(void **state)
{
    (void)state;
    struct mf_sweep sweep = {
        .name = "fat-garble",
        .block_size = 512,
        .block_count = VOLUME_BLOCKS,
        .context = &ctx,
        .setup = scenario_setup,
        .run = scenario_run,
        .check = garble_check,
    };
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_TORN_BYTES | MF_FAULTBD_CUT_GARBLE,
                                       .seeds = 2};
    struct mf_sweep_result result;
    int err = mf_sweep_run(&sweep, &options, &result);
    if (err)
        fail_msg("garbling sweep: %d (%s); first: %s", err, mf_strerror(err), result.first_reason);
    assert_true(result.cuts > 100);
}

/* An I/O error at the n-th device call (reads too): the call fails with MF_EIO, nothing
 * crashes, and after the error is gone the volume mounts with every completed file intact. */
static void test_io_error_at_every_call(void **state)
{
    (void)state;
    size_t size = (size_t)VOLUME_BLOCKS * 512u;
    uint8_t *snapshot = calloc(1, size), *memory = malloc(size);
    uint8_t *cache = malloc(64u * 512u);
    assert_non_null(snapshot);
    assert_non_null(memory);
    assert_non_null(cache);
    struct mf_rambd ram;
    mf_rambd_init(&ram, snapshot, 512, VOLUME_BLOCKS);
    assert_int_equal(scenario_setup(&ctx, &ram.bd), 0);
    mf_rambd_init(&ram, memory, 512, VOLUME_BLOCKS);

    struct mf_faultbd fb;
    struct mf_faultbd_config config = {.seed = 1, .cache = cache, .cache_size = 64u * 512u};
    memcpy(memory, snapshot, size);
    mf_faultbd_init(&fb, &ram.bd, &config);
    assert_int_equal(scenario_run(&ctx, &fb.bd), 0);
    const struct mf_faultbd_counters *counters = mf_faultbd_counters(&fb);
    uint64_t calls = counters->reads + counters->progs + counters->erases + counters->syncs;
    assert_true(calls > 50);
    uint64_t stride = mf_test_soak() ? 1 : (calls + 149) / 150;

    for (int persistent = 0; persistent < 2; persistent++) {
        for (uint64_t n = 1; n <= calls; n += stride) {
            memcpy(memory, snapshot, size);
            mf_faultbd_init(&fb, &ram.bd, &config);
            mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_ALL, n, persistent);
            int err = scenario_run(&ctx, &fb.bd);
            if (err != MF_EIO)
                fail_msg("I/O error at call %llu (%s): the run gave %d (%s), expected MF_EIO",
                         (unsigned long long)n, persistent ? "persistent" : "once", err,
                         err ? mf_strerror(err) : "ok");
            mf_faultbd_reset(&fb); /* the reboot: unsynced writes are lost */
            struct mf_sweep_point point = {.report = true, .cut_at = n};
            static struct mf_fat fs;
            static struct state before, next;
            state_after(&before, ctx.done);
            const struct step *flux = ctx.done < STEP_COUNT ? &steps[ctx.done] : NULL;
            state_after(&next, flux ? ctx.done + 1 : ctx.done);
            report = point.report;
            err = mf_fat_mount(&fs, &fb.bd, NULL, NULL);
            if (err)
                fail_msg("mount after an I/O error at call %llu: %d", (unsigned long long)n, err);
            unsigned entries;
            walk_all(&fs, &entries);
            if (check_files(&fs, &before, flux, &next) != 0)
                fail_msg("files damaged by an I/O error at call %llu (%s), step %u in flight",
                         (unsigned long long)n, persistent ? "persistent" : "once", ctx.done);
            assert_int_equal(mf_fat_unmount(&fs), 0);
        }
    }
    free(snapshot);
    free(memory);
    free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_cut_at_every_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbling_cuts_never_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_error_at_every_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
