/* Power cuts and I/O errors under the FAT driver: a sequence of file operations
 * runs on the fault-injecting device with a cut at every write point
 * (mf_sweep). After each cut and reboot the volume mounts, our driver walks all
 * of it, `fsck.fat -a` repairs what the cut left, and every file completed
 * before the cut is intact byte for byte, for our driver and for mtype. The
 * non-block-atomic modes only have to mount (or give MF_ECORRUPT) and never
 * crash. The steps run on a 1 MiB FAT12 volume; under MF_SOAK=1 also on a
 * 32 MiB FAT16 and a 64 MiB FAT32 volume, with files 64 times larger and
 * 1000 files in the folder that grows (see `volumes`). */
#include "mf_bd.h"
#include "mf_crc32.h"
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
#include <time.h>

#include <cmocka.h>

#define PATH_BYTES     96
#define MAX_FILES      1100
#define MAX_FILE_BYTES (16384u * 64u) /* the largest file of any volume's steps, and more */
#define MAX_SEGMENTS   4

/* A volume the steps run on. */
struct volume {
    const char *name;
    uint32_t blocks;              /* 512-byte sectors */
    enum mf_fat_type format;      /* asked of mf_fat_format (MF_FAT_AUTO: by size) */
    uint32_t sectors_per_cluster; /* asked of mf_fat_format (0: by size) */
    enum mf_fat_type type;        /* what the volume must be */
    uint32_t scale;               /* the steps' file sizes are multiplied by this */
    uint32_t many;                /* files the MANY step creates */
    /* Under MF_SOAK=1, for the large volumes (0: as mf_sweep and the small volume do): write
     * points a sweep tries per mode, I/O errors tried per kind (once, persistent), and the
     * tools' share of the distinct volumes (every n-th). See sweep_on_volume. */
    uint64_t sweep_points, io_points;
    unsigned tools_every;
};

static const struct volume volumes[] = {
    /* 2 KiB clusters: the only one outside MF_SOAK=1. */
    {"1 MiB FAT12", 2048, MF_FAT_AUTO, 0, MF_FAT12, 1, 40, 0, 0, 1},
    /* What mf_fat_format chooses for 32 MiB: FAT16 with 2 KiB clusters. */
    {"32 MiB FAT16", 65536, MF_FAT_AUTO, 0, MF_FAT16, 64, 1000, 400, 250, 8},
    /* mf_fat_format would choose FAT16 for 64 MiB too: FAT32 asked for, with 512-byte clusters
     * (about 130,000 of them, well past FAT16's 65,524), the kind mkfs.fat -F 32 -s 1 makes. */
    {"64 MiB FAT32", 131072, MF_FAT32, 1, MF_FAT32, 64, 1000, 400, 250, 8},
};
#define VOLUME_COUNT (sizeof volumes / sizeof volumes[0])

static const struct volume *vol = &volumes[0];

static size_t volume_bytes(void)
{
    return (size_t)vol->blocks * 512u;
}

/* The volumes a test runs on: the first, or all of them under MF_SOAK=1. */
static size_t volumes_to_run(void)
{
    return mf_test_soak() ? VOLUME_COUNT : 1;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* mf_sweep_run on the current volume. Under MF_SOAK=1 mf_sweep tries every write point; on the
 * large volumes that would take hours (4,150 and 7,326 write points, and a run of the steps
 * takes 0.15 s: the driver scans the folder of 1000 entries at every create), so there the
 * sweep tries vol->sweep_points points per mode, spread over the whole run, as outside soak:
 * MF_SOAK is hidden from the harness for the call. */
static int sweep_on_volume(const struct mf_sweep *sweep, const struct mf_sweep_options *options,
                           struct mf_sweep_result *result)
{
    if (!mf_test_soak() || !vol->sweep_points)
        return mf_sweep_run(sweep, options, result);
    struct mf_sweep_options spread = *options;
    spread.max_points = vol->sweep_points;
    unsetenv("MF_SOAK");
    int err = mf_sweep_run(sweep, &spread, result);
    setenv("MF_SOAK", "1", 1);
    return err;
}

/* ---- the scenario
 * ----------------------------------------------------------------------------
 */

enum step_kind { WRITE, APPEND, MKDIR, RENAME, TRUNCATE, REMOVE, RMDIR, MANY };

struct step {
    enum step_kind kind;
    const char *path;
    const char *to;  /* RENAME */
    uint32_t size;   /* WRITE: bytes, APPEND: extra bytes, TRUNCATE: new size (each times
                        vol->scale); MANY: files on the 1 MiB volume (vol->many) */
    uint32_t pieces; /* WRITE, APPEND: number of write calls */
};

/* Each step ends with a closed file or a finished call: a "completed" change.
 */
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
    {MANY, "renamed dir/sub", NULL, 40, 0}, /* empty files: the folder grows by clusters */
    {WRITE, "renamed dir/sub/d.txt", NULL, 2100, 1},
    {REMOVE, "renamed dir/b.txt", NULL, 0, 0},
    {MKDIR, "empty", NULL, 0, 0},
    {RMDIR, "empty", NULL, 0, 0},
    {APPEND, "pre.txt", NULL, 700, 1},
};
#define STEP_COUNT (sizeof steps / sizeof steps[0])
#define PRE_STEP   99u /* the bytes of "pre.txt", which exists from the start */
#define PRE_SIZE   1234u

/* A step's size on the current volume. */
static uint32_t step_size(const struct step *st)
{
    return st->kind == MANY ? vol->many : st->size * vol->scale;
}

/* A stretch of a file: `length` bytes from `at` are step_byte(step, from + i), or zeros when
 * `step` is ZEROS (a file grown by a truncate). */
#define ZEROS UINT32_MAX
struct segment {
    uint32_t at, length, step, from;
};

struct file_state {
    char path[PATH_BYTES];
    uint32_t size;
    unsigned segment_count;
    struct segment segments[MAX_SEGMENTS];
};

struct state {
    struct file_state files[MAX_FILES];
    unsigned count;
};

struct context {
    unsigned done; /* steps completed by the last run */
    char *tmpdir;
    char *image;
    uint8_t *buffer;           /* the whole volume, for the tools */
    char *script;              /* tools_script, as a file */
    unsigned fsck_repairs;     /* cuts after which fsck.fat -a had something to repair */
    unsigned fsck_runs_max;    /* most runs of fsck.fat -a one cut needed */
    unsigned distinct_volumes; /* checked by the tools */
    unsigned tools_runs;
    uint64_t seen[16384]; /* first_sight's keys */
    unsigned seen_count;
};

static struct context ctx;

/* A new volume: the counters of the last one are gone (the temp folder stays). */
static void context_next_volume(void)
{
    ctx.fsck_repairs = ctx.fsck_runs_max = ctx.distinct_volumes = ctx.tools_runs = 0;
    ctx.seen_count = 0;
}

/* The bytes a step writes: a function of the step and the offset, so any run
 * writes the same. */
static uint8_t step_byte(unsigned step, uint32_t offset)
{
    uint32_t x = (step + 1u) * 2654435761u ^ offset * 40503u;
    return (uint8_t)(x >> 13 ^ x);
}

/* Writes the file's `length` bytes from `offset` of the model into `out`. */
static void file_bytes(const struct file_state *f, uint32_t offset, uint32_t length, uint8_t *out)
{
    memset(out, 0, length);
    for (unsigned i = 0; i < f->segment_count; i++) {
        const struct segment *g = &f->segments[i];
        uint32_t from = offset > g->at ? offset : g->at;
        uint32_t to = offset + length < g->at + g->length ? offset + length : g->at + g->length;
        if (g->step == ZEROS)
            continue;
        for (uint32_t x = from; x < to; x++)
            out[x - offset] = step_byte(g->step, g->from + x - g->at);
    }
}

static void file_add(struct file_state *f, uint32_t length, uint32_t step)
{
    assert_true(f->segment_count < MAX_SEGMENTS);
    f->segments[f->segment_count++] = (struct segment){f->size, length, step, 0};
    f->size += length;
}

/* Cuts the file to `size` bytes (a truncate to a smaller size). */
static void file_cut(struct file_state *f, uint32_t size)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < f->segment_count; i++) {
        struct segment *g = &f->segments[i];
        if (g->at >= size)
            continue;
        if (g->at + g->length > size)
            g->length = size - g->at;
        f->segments[kept++] = *g;
    }
    f->segment_count = kept;
    f->size = size;
}

static struct file_state *state_find(struct state *s, const char *path)
{
    for (unsigned i = 0; i < s->count; i++)
        if (strcmp(s->files[i].path, path) == 0)
            return &s->files[i];
    return NULL;
}

/* The name of the MANY step's file i. */
static void many_name(char *path, size_t size, const char *folder, uint32_t i)
{
    snprintf(path, size, "%s/entry number %02u with a long name", folder, i);
}

/* What the volume holds after steps[0..count): the model. "pre.txt" exists from
 * the start. */
static void state_after(struct state *s, unsigned count)
{
    s->count = 0;
    struct file_state *pre = &s->files[s->count++];
    memset(pre, 0, sizeof *pre);
    strcpy(pre->path, "pre.txt");
    file_add(pre, PRE_SIZE * vol->scale, PRE_STEP);
    for (unsigned k = 0; k < count; k++) {
        const struct step *st = &steps[k];
        struct file_state *f = state_find(s, st->path);
        size_t len = strlen(st->path);
        uint32_t size = step_size(st);
        switch (st->kind) {
        case WRITE:
            if (!f) {
                f = &s->files[s->count++];
                snprintf(f->path, sizeof f->path, "%s", st->path);
            }
            f->size = 0;
            f->segment_count = 0;
            file_add(f, size, k);
            break;
        case APPEND:
            file_add(f, size, k);
            break;
        case TRUNCATE:
            if (size > f->size)
                file_add(f, size - f->size, ZEROS);
            else
                file_cut(f, size);
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
        case MANY:
            assert_true(s->count + size <= MAX_FILES);
            for (uint32_t i = 0; i < size; i++) {
                f = &s->files[s->count++];
                many_name(f->path, sizeof f->path, st->path, i);
                f->size = 0;
                f->segment_count = 0;
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
    static uint8_t data[MAX_FILE_BYTES];
    uint32_t size = step_size(st);
    struct mf_fat_file file;
    int err = 0;
    switch (st->kind) {
    case WRITE:
    case APPEND: {
        for (uint32_t i = 0; i < size; i++)
            data[i] = step_byte(k, i);
        int flags = MF_FAT_O_WRONLY |
                    (st->kind == WRITE ? MF_FAT_O_CREAT | MF_FAT_O_TRUNC : MF_FAT_O_APPEND);
        err = mf_fat_open(fs, &file, st->path, flags);
        if (err)
            return err;
        uint32_t piece = (size + st->pieces - 1) / st->pieces;
        for (uint32_t done = 0; done < size && !err;) {
            uint32_t n = size - done < piece ? size - done : piece;
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
    case MANY:
        for (uint32_t i = 0; i < size && !err; i++) {
            char path[PATH_BYTES];
            many_name(path, sizeof path, st->path, i);
            err = mf_fat_open(fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
            if (!err)
                err = mf_fat_close(fs, &file);
        }
        return err;
    case TRUNCATE:
        err = mf_fat_open(fs, &file, st->path, MF_FAT_O_RDWR);
        if (err)
            return err;
        err = mf_fat_truncate(fs, &file, size);
        int close_err = mf_fat_close(fs, &file);
        return err ? err : close_err;
    }
    return MF_EINVAL;
}

static int scenario_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat_format_options options = {.type = vol->format,
                                            .sectors_per_cluster = vol->sectors_per_cluster,
                                            .volume_id = 0xC07C07u};
    int err = mf_fat_format(medium, &options);
    if (err)
        return err;
    static struct mf_fat fs;
    err = mf_fat_mount(&fs, medium, NULL, NULL);
    if (err)
        return err;
    const struct mf_fat_geometry *g = mf_fat_geometry(&fs);
    if (g->type != vol->type) {
        fprintf(stderr, "%s: formatted as FAT%d (%u clusters of %u bytes)\n", vol->name,
                (int)g->type, g->cluster_count, g->sectors_per_cluster * g->bytes_per_sector);
        mf_fat_unmount(&fs);
        return MF_EINVAL;
    }
    static struct state s;
    state_after(&s, 0);
    static uint8_t data[MAX_FILE_BYTES];
    file_bytes(&s.files[0], 0, s.files[0].size, data);
    struct mf_fat_file file;
    err = mf_fat_open(&fs, &file, "pre.txt", MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
    if (!err) {
        int w = mf_fat_write(&fs, &file, data, s.files[0].size);
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
        err = step_run(&fs, k); /* closes what it opened, also on errors */
        if (err)
            return err;
        c->done = k + 1;
    }
    return mf_fat_unmount(&fs);
}

/* ---- checks
 * ----------------------------------------------------------------------------------
 */

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
    for (unsigned calls = 0; calls < 100000; calls++) {
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

/* The empty files the last walk_all found, by path without the leading '/',
 * sorted: check_file looks an empty file up here rather than opening it, which
 * in the large volumes' folder of 1000 files would scan the folder once per file. */
#define WALK_MAX 2000u
static char empty_files[WALK_MAX][PATH_BYTES * 2];
static unsigned empty_count;

static int compare_paths(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Walks every folder (bounded) and reads every file that is not empty. Returns
 * the first error, 0 when all was readable. */
static int walk_all(struct mf_fat *fs, unsigned *entries)
{
    static char paths[64][PATH_BYTES * 2];
    static uint8_t buffer[MAX_FILE_BYTES];
    unsigned dirs = 1, next = 0;
    int first_error = 0;
    paths[0][0] = '\0';
    *entries = 0;
    empty_count = 0;
    while (next < dirs && *entries < WALK_MAX) {
        const char *base = paths[next++];
        struct mf_fat_dir dir;
        struct mf_fat_stat st;
        int rc = mf_fat_opendir(fs, &dir, base[0] ? base : "/");
        while (rc == 0 && (rc = mf_fat_readdir(fs, &dir, &st)) == 1 && ++*entries < WALK_MAX) {
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
            } else if (st.size == 0) {
                memcpy(empty_files[empty_count++], path + 1, sizeof path - 1);
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
    qsort(empty_files, empty_count, sizeof empty_files[0], compare_paths);
    return first_error;
}

static bool under(const char *path, const char *folder)
{
    size_t len = strlen(folder);
    return strcmp(path, folder) == 0 || (strncmp(path, folder, len) == 0 && path[len] == '/');
}

/* Before fsck.fat has run, a file the step in flight was changing may be
 * inconsistent (its size beyond its chain: MF_ECORRUPT); after a repair, or
 * after a mere I/O error, not. */
static bool flux_may_be_corrupt;

/* Checks one file of the model against the volume. `flux` is the step in flight
 * (NULL when none) and `next` the state it would have made: a file it touches
 * may be in the old state or the new one, with what a repair leaves in between.
 */
static int check_file(struct mf_fat *fs, const struct file_state *f, const struct step *flux,
                      const struct state *next)
{
    static uint8_t got[MAX_FILE_BYTES + 1], want[MAX_FILE_BYTES];
    file_bytes(f, 0, f->size, want);
    if (f->size == 0 && (!flux || !under(f->path, flux->path))) {
        if (!bsearch(f->path, empty_files, empty_count, sizeof empty_files[0], compare_paths))
            return complain("%s: not in its folder as an empty file", f->path);
        return 0;
    }
    if (!flux || !under(f->path, flux->path)) {
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n < 0)
            return complain("%s: %ld (%s), expected %u intact bytes", f->path, n,
                            mf_strerror((int)n), f->size);
        if ((uint32_t)n != f->size || memcmp(got, want, f->size) != 0)
            return complain("%s: %ld bytes that differ from the %u completed before the cut",
                            f->path, n, f->size);
        return 0;
    }
    switch (flux->kind) {
    case REMOVE: {
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n == MF_ENOENT)
            return 0;
        if (n != (long)f->size || memcmp(got, want, f->size) != 0)
            return complain("%s (being removed): %ld bytes, neither gone nor intact", f->path, n);
        return 0;
    }
    case RENAME: {
        char moved[PATH_BYTES];
        snprintf(moved, sizeof moved, "%s%s", flux->to, f->path + strlen(flux->path));
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n == (long)f->size && memcmp(got, want, f->size) == 0)
            return 0;
        n = read_whole(fs, moved, got, sizeof got);
        if (n == (long)f->size && memcmp(got, want, f->size) == 0)
            return 0;
        return complain("%s (being renamed to %s): intact under neither name", f->path, moved);
    }
    case WRITE:
    case APPEND:
    case TRUNCATE: {
        /* Old bytes stay, up to the shorter of old and new size; a repair may cut
         * the file at a cluster boundary, never into the part both states share. */
        const struct file_state *after = state_find((struct state *)next, f->path);
        long n = read_whole(fs, f->path, got, sizeof got);
        if (n == MF_ECORRUPT && flux_may_be_corrupt)
            return 0;
        if (n < 0)
            return complain("%s (being changed): %ld (%s)", f->path, n, mf_strerror((int)n));
        uint32_t keep = f->size;
        if (after && after->size < keep)
            keep = after->size;
        if (flux->kind == WRITE)
            return 0; /* rewritten from the start: any content */
        if ((uint32_t)n < keep || memcmp(got, want, keep) != 0)
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

/* The tools' part of a check in one shell (one fork per check keeps the sweep
 * fast): what fsck.fat -n says of the volume as the cut left it, fsck.fat -a
 * until it has nothing more to repair (a folder left under two names takes it
 * two runs), fsck.fat -n again, and mtype of the files that must be intact, one
 * after another. Exit status: 0 when all ran. */
static const char tools_script[] =
    "img=$1; logs=$2; shift 2\n"
    "fsck.fat -n \"$img\" >\"$logs/before.txt\" 2>&1\n"
    "runs=0\n"
    "while [ $runs -lt 3 ]; do\n"
    "  runs=$((runs + 1))\n"
    "  fsck.fat -a \"$img\" >>\"$logs/repair.txt\" 2>&1 && break\n"
    "  status=$?\n"
    "  [ $status -eq 1 ] || { echo \"fsck.fat -a: status $status\"; exit 3; }\n"
    "done\n"
    "echo $runs >\"$logs/runs.txt\"\n"
    "fsck.fat -n \"$img\" >\"$logs/after.txt\" 2>&1 || { cat "
    "\"$logs/after.txt\"; exit 4; }\n"
    "export LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1\n"
    "for f in \"$@\"; do mtype -i \"$img\" \"::$f\" || exit 5; done "
    ">\"$logs/mtype.bin\"\n";

static char *log_text(const char *name)
{
    char *path = mf_test_path(ctx.tmpdir, name), *text = NULL;
    if (mf_test_read_file(path, &text, NULL) != 0)
        text = NULL;
    free(path);
    return text;
}

static unsigned count_lines(const char *text)
{
    unsigned lines = 0;
    for (; *text; text++)
        lines += *text == '\n';
    return lines;
}

/* Runs the tools on the volume and loads fsck.fat's repair back into `bd`. When
 * the cut kept the write order, no entry may point at a free cluster (the
 * driver writes the FAT before the entries that use it, and removes entries
 * before freeing their clusters). */
static int check_with_tools(const struct mf_bd *bd, unsigned mode, const struct state *s,
                            const struct step *flux)
{
    size_t size = volume_bytes();
    int err = mf_bd_read(bd, 0, ctx.buffer, vol->blocks);
    if (err)
        return complain("reading the volume back: %d", err);
    if (mf_test_write_file(ctx.image, ctx.buffer, size) != 0)
        return MF_EIO;
    static const char *logs[] = {"before.txt", "repair.txt", "runs.txt", "after.txt", "mtype.bin"};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char *path = mf_test_path(ctx.tmpdir, logs[i]);
        remove(path);
        free(path);
    }

    /* The command line and what mtype must print. */
    static char command[16384];
    size_t expected_capacity = 0;
    for (unsigned i = 0; i < s->count; i++)
        expected_capacity += s->files[i].size;
    uint8_t *expected = malloc(expected_capacity + 1);
    if (!expected)
        return complain("out of memory");
    char *quoted_script = mf_test_shell_quote(ctx.script),
         *quoted_image = mf_test_shell_quote(ctx.image),
         *quoted_logs = mf_test_shell_quote(ctx.tmpdir);
    size_t used = (size_t)snprintf(command, sizeof command, "sh %s %s %s", quoted_script,
                                   quoted_image, quoted_logs);
    free(quoted_script);
    free(quoted_image);
    free(quoted_logs);
    size_t expected_size = 0;
    for (unsigned i = 0; i < s->count; i++) {
        const struct file_state *f = &s->files[i];
        if ((flux && under(f->path, flux->path)) || f->size == 0)
            continue;
        char *quoted = mf_test_shell_quote(f->path);
        used += (size_t)snprintf(command + used, sizeof command - used, " %s", quoted);
        free(quoted);
        file_bytes(f, 0, f->size, expected + expected_size);
        expected_size += f->size;
    }
    if (used >= sizeof command) {
        free(expected);
        return complain("command line too long");
    }
    ctx.tools_runs++;
    struct mf_test_output out;
    int rc = mf_test_run(command, NULL, 0, &out);
    int status = out.status;
    char *output = strdup(out.out);
    mf_test_output_free(&out);
    char *before = log_text("before.txt"), *after = log_text("after.txt");
    char *runs = log_text("runs.txt");
    char *mtype = NULL;
    size_t mtype_size = 0;
    char *mtype_path = mf_test_path(ctx.tmpdir, "mtype.bin");
    if (mf_test_read_file(mtype_path, &mtype, &mtype_size) != 0)
        mtype = NULL;
    free(mtype_path);

    err = 0;
    if (rc != 0 || !before) {
        err = complain("the tools did not run (%d)", rc);
    } else if (modes_keep_order(mode) && strstr(before, "free cluster")) {
        err = complain("an entry points at a free cluster after a cut that kept the write "
                       "order:\n%s",
                       before);
    } else if (status == 3) {
        err = complain("fsck.fat -a failed: %s", output);
    } else if (status == 4 || !after || count_lines(after) != 2) {
        if (after && strstr(after, "Long filename fragment"))
            complain("the cut left long-name entries without their 8.3 entry, which "
                     "fsck.fat "
                     "does not repair (the 8.3 entry must be durable before the long-name "
                     "entries of another sector)");
        err = complain("after %s run(s) of fsck.fat -a, fsck.fat -n still complains:\n%s",
                       runs ? runs : "?", after ? after : output);
    } else if (status != 0 || !mtype) {
        err = complain("mtype cannot read the completed files (status %d): %s", status, output);
    } else if (mtype_size != expected_size || memcmp(mtype, expected, expected_size) != 0) {
        err = complain("mtype reads the completed files as %zu bytes that differ from the %zu "
                       "expected",
                       mtype_size, expected_size);
    }
    if (!err && runs && atoi(runs) > 1) {
        ctx.fsck_repairs++;
        if ((unsigned)atoi(runs) > ctx.fsck_runs_max)
            ctx.fsck_runs_max = (unsigned)atoi(runs);
    }
    free(output);
    free(before);
    free(after);
    free(runs);
    free(mtype);
    free(expected);
    if (err)
        return err;

    char *data;
    size_t got;
    if (mf_test_read_file(ctx.image, &data, &got) != 0 || got != size)
        return complain("cannot read the repaired image back");
    memcpy(ctx.buffer, data, size);
    free(data);
    err = mf_bd_prog(bd, 0, ctx.buffer, vol->blocks);
    if (!err)
        err = mf_bd_sync(bd);
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

/* A hash of the whole volume, 8 bytes at a time (a CRC of 64 MiB at every cut would cost more
 * than the check). */
static uint64_t volume_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i + 8 <= size; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDu;
        h ^= h >> 29;
    }
    return h;
}

/* Many cuts leave the same bytes (every cut between two syncs, under DROP): the
 * tools' verdict on a volume with the same expectations is the same, so each
 * (volume, completed steps) pair is checked once. Returns true the first time.
 */
static bool first_sight(const struct mf_bd *bd, unsigned done, bool ordered)
{
    if (mf_bd_read(bd, 0, ctx.buffer, vol->blocks) != 0)
        return true;
    uint64_t key = (volume_hash(ctx.buffer, volume_bytes()) << 8) ^ ((uint64_t)done << 1) ^ ordered;
    for (unsigned i = 0; i < ctx.seen_count; i++)
        if (ctx.seen[i] == key)
            return false;
    if (ctx.seen_count < sizeof ctx.seen / sizeof ctx.seen[0])
        ctx.seen[ctx.seen_count++] = key;
    ctx.distinct_volumes++;
    return true;
}

/* The driver checks run at every point. The tools (processes) run at every
 * point too, except under the sanitizers, where a fork of the big test process
 * is slow: there at every 5th point (all of them with MF_SOAK=1). */
static bool tools_due(const struct mf_sweep_point *point)
{
#ifdef MF_UNDER_ASAN
    return point->cut_at % 5 == 0 || mf_test_soak();
#else
    (void)point;
    return true;
#endif
}

/* On the large volumes a run of fsck.fat and mtype costs more than a whole run of
 * the steps: the tools check the fault-free run and every vol->tools_every-th
 * distinct volume (counted by first_sight). */
static bool tools_sampled(const struct mf_sweep_point *point)
{
    return vol->tools_every <= 1 || point->cut_at == 0 ||
           ctx.distinct_volumes % vol->tools_every == 1;
}

static int scenario_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct context *c = context;
    report = point->report;
    static struct state before, next;
    state_after(&before, c->done);
    const struct step *flux = c->done < STEP_COUNT && point->cut_at ? &steps[c->done] : NULL;
    state_after(&next, flux ? c->done + 1 : c->done);

    /* As the cut left it: mounts, walks, and the untouched files are already
     * intact. */
    static struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return complain("mount after the cut (step %u of %zu in flight): %d (%s)", c->done,
                        STEP_COUNT, err, mf_strerror(err));
    unsigned entries;
    walk_all(&fs, &entries);
    flux_may_be_corrupt = true;
    err = check_files(&fs, &before, flux, &next);
    flux_may_be_corrupt = false;
    if (err) {
        complain("before fsck.fat, with step %u in flight", c->done);
        return err;
    }
    err = mf_fat_unmount(&fs);
    if (err)
        return complain("unmount: %d", err);

    /* The tools run where they are due (see tools_due), once per distinct volume.
     */
    if (!tools_due(point) || !first_sight(bd, c->done, modes_keep_order(point->mode)) ||
        !tools_sampled(point))
        return 0;

    /* Repaired by fsck.fat: everything is readable and the files are intact, for
     * both. */
    err = check_with_tools(bd, point->mode, &before, flux);
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
    return mf_fat_unmount(&fs);
}

/* Garbling modes: the volume mounts (or is refused as corrupt) and is walked
 * without a crash. */
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
    mf_fat_unmount(&fs);
    return 0;
}

/* Only the sweep that runs the tools has a temp folder: a sanitizer abort
 * elsewhere (a test failing hard) then leaves nothing behind. */
static int setup_plain(void **state)
{
    (void)state;
    memset(&ctx, 0, sizeof ctx);
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
    ctx.script = mf_test_path(ctx.tmpdir, "tools.sh");
    if (mf_test_write_file(ctx.script, tools_script, strlen(tools_script)) != 0)
        return -1;
    size_t largest = 0;
    for (size_t i = 0; i < volumes_to_run(); i++)
        if (volumes[i].blocks > largest)
            largest = volumes[i].blocks;
    ctx.buffer = malloc(largest * 512u);
    return ctx.buffer ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = mf_test_rmtree(ctx.tmpdir);
    free(ctx.tmpdir);
    free(ctx.image);
    free(ctx.script);
    free(ctx.buffer);
    return rc == 0 ? 0 : -1;
}

static void test_power_cut_at_every_write(void **state)
{
    (void)state;
    uint64_t first_points = 0;
    for (size_t i = 0; i < volumes_to_run(); i++) {
        vol = &volumes[i];
        context_next_volume();
        struct mf_sweep sweep = {
            .name = "fat-steps",
            .block_size = 512,
            .block_count = vol->blocks,
            .context = &ctx,
            .setup = scenario_setup,
            .run = scenario_run,
            .check = scenario_check,
        };
        /* Every write point, in each block-atomic mode; the random ones with more
         * seeds under MF_SOAK=1. */
        struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ATOMIC};
        struct mf_sweep_result result;
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int err = sweep_on_volume(&sweep, &options, &result);
        fprintf(stderr,
                "fat power cuts on %s: %llu write points, %llu cuts checked (%u distinct "
                "volumes, %u checked by the tools), fsck.fat repaired after %u (fsck.fat -a ran "
                "up to %u times), %llu failures, %.1f s\n",
                vol->name, (unsigned long long)result.write_points, (unsigned long long)result.cuts,
                ctx.distinct_volumes, ctx.tools_runs, ctx.fsck_repairs, ctx.fsck_runs_max,
                (unsigned long long)result.failures, seconds_since(&start));
        if (err)
            fail_msg("power-cut sweep on %s: %d (%s); first: %s", vol->name, err, mf_strerror(err),
                     result.first_reason);

        assert_true(result.write_points > 100);
        /* Four modes at every point tried: all of them, or a spread (sweep_on_volume). */
        uint64_t tried =
            mf_test_soak() && vol->sweep_points ? vol->sweep_points / 2 : result.write_points;
        assert_true(result.cuts >= 4 * tried);
        assert_true(ctx.tools_runs > 0);
        if (i == 0)
            first_points = result.write_points;
        else /* the 1000 files and the larger writes are really there */
            assert_true(result.write_points > 5 * first_points);
    }
    vol = &volumes[0];
}

static void test_garbling_cuts_never_crash(void **state)
{
    (void)state;
    for (size_t i = 0; i < volumes_to_run(); i++) {
        vol = &volumes[i];
        struct mf_sweep sweep = {
            .name = "fat-garble",
            .block_size = 512,
            .block_count = vol->blocks,
            .context = &ctx,
            .setup = scenario_setup,
            .run = scenario_run,
            .check = garble_check,
        };
        /* Two seeds per point; one on the large volumes, whose points are a spread anyway. */
        struct mf_sweep_options options = {.modes =
                                               MF_FAULTBD_CUT_TORN_BYTES | MF_FAULTBD_CUT_GARBLE,
                                           .seeds = vol->sweep_points ? 1 : 2};
        struct mf_sweep_result result;
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int err = sweep_on_volume(&sweep, &options, &result);
        fprintf(stderr, "fat garbling cuts on %s: %llu cuts checked, %.1f s\n", vol->name,
                (unsigned long long)result.cuts, seconds_since(&start));
        if (err)
            fail_msg("garbling sweep on %s: %d (%s); first: %s", vol->name, err, mf_strerror(err),
                     result.first_reason);
        assert_true(result.cuts > 100);
    }
    vol = &volumes[0];
}

/* An I/O error at the n-th device call (reads too): the call fails with MF_EIO,
 * nothing crashes, and after the error is gone the volume mounts with every
 * completed file intact. */
static void io_errors_on(const struct volume *v)
{
    vol = v;
    size_t size = volume_bytes();
    /* Static: a failure leaves the test by a long jump, and nothing leaks. */
    static uint8_t *snapshot, *memory;
    static size_t allocated;
    static uint8_t cache[64u * 512u];
    if (allocated < size) {
        free(snapshot);
        free(memory);
        snapshot = malloc(size);
        memory = malloc(size);
        assert_non_null(snapshot);
        assert_non_null(memory);
        allocated = size;
    }
    memset(snapshot, 0, size);
    struct mf_rambd ram;
    mf_rambd_init(&ram, snapshot, 512, vol->blocks);
    assert_int_equal(scenario_setup(&ctx, &ram.bd), 0);
    mf_rambd_init(&ram, memory, 512, vol->blocks);

    struct mf_faultbd fb;
    struct mf_faultbd_config config = {.seed = 1, .cache = cache, .cache_size = 64u * 512u};
    memcpy(memory, snapshot, size);
    mf_faultbd_init(&fb, &ram.bd, &config);
    assert_int_equal(scenario_run(&ctx, &fb.bd), 0);
    const struct mf_faultbd_counters *counters = mf_faultbd_counters(&fb);
    uint64_t calls = counters->reads + counters->progs + counters->erases + counters->syncs;
    assert_true(calls > 50);
    /* Every call under MF_SOAK=1 (on the large volumes, vol->io_points spread over
     * all of them); else 150. */
    uint64_t points = mf_test_soak() ? vol->io_points : 150;
    uint64_t stride = points ? (calls + points - 1) / points : 1;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    uint64_t tried = 0;

    for (int persistent = 0; persistent < 2; persistent++) {
        for (uint64_t n = 1; n <= calls; n += stride) {
            tried++;
            memcpy(memory, snapshot, size);
            mf_faultbd_init(&fb, &ram.bd, &config);
            mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_ALL, n, persistent);
            int err = scenario_run(&ctx, &fb.bd);
            if (err != MF_EIO)
                fail_msg("I/O error at call %llu on %s (%s): the run gave %d (%s), expected "
                         "MF_EIO",
                         (unsigned long long)n, vol->name, persistent ? "persistent" : "once", err,
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
                fail_msg("mount after an I/O error at call %llu on %s: %d", (unsigned long long)n,
                         vol->name, err);
            unsigned entries;
            walk_all(&fs, &entries);
            if (check_files(&fs, &before, flux, &next) != 0)
                fail_msg("files damaged by an I/O error at call %llu on %s (%s), step %u in "
                         "flight",
                         (unsigned long long)n, vol->name, persistent ? "persistent" : "once",
                         ctx.done);
            assert_int_equal(mf_fat_unmount(&fs), 0);
        }
    }
    fprintf(stderr, "fat I/O errors on %s: %llu device calls, %llu errors tried, %.1f s\n",
            vol->name, (unsigned long long)calls, (unsigned long long)tried, seconds_since(&start));
}

static void test_io_error_at_every_call(void **state)
{
    (void)state;
    for (size_t i = 0; i < volumes_to_run(); i++)
        io_errors_on(&volumes[i]);
    vol = &volumes[0];
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_cut_at_every_write, setup, teardown),
        cmocka_unit_test_setup(test_garbling_cuts_never_crash, setup_plain),
        cmocka_unit_test_setup(test_io_error_at_every_call, setup_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
