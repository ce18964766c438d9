/* The public area as an mf_area (see mf_area.h). */
#include "mf_area.h"

#include "mf_err.h"
#include "mf_setup.h"

#include <stdio.h>
#include <string.h>

void mf_lock_take(const struct mf_lock *lock)
{
    if (lock && lock->lock)
        lock->lock(lock->context);
}

void mf_lock_give(const struct mf_lock *lock)
{
    if (lock && lock->unlock)
        lock->unlock(lock->context);
}

static struct mf_area_fat *fat_of(struct mf_area *area)
{
    return area->context;
}

static void entry_from_stat(struct mf_area_entry *entry, const struct mf_fat_stat *st)
{
    memset(entry, 0, sizeof *entry);
    size_t n = strlen(st->name);
    if (n >= sizeof entry->name)
        n = sizeof entry->name - 1;
    memcpy(entry->name, st->name, n);
    entry->is_dir = st->is_dir;
    entry->size = st->size;
}

static int fat_stat(struct mf_area *area, const char *path, struct mf_area_entry *entry)
{
    struct mf_area_fat *a = fat_of(area);
    struct mf_fat_stat st;
    mf_lock_take(&a->lock);
    int err = mf_fat_stat(a->fs, path, &st);
    mf_lock_give(&a->lock);
    if (!err)
        entry_from_stat(entry, &st);
    return err;
}

static int fat_list(struct mf_area *area, const char *path, mf_area_each_fn each, void *context)
{
    struct mf_area_fat *a = fat_of(area);
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    struct mf_area_entry entry;
    mf_lock_take(&a->lock);
    int err = mf_fat_opendir(a->fs, &dir, path);
    while (!err) {
        int r = mf_fat_readdir(a->fs, &dir, &st);
        if (r <= 0) {
            err = r;
            break;
        }
        entry_from_stat(&entry, &st);
        /* The callback runs unlocked: it may call back into the area. */
        mf_lock_give(&a->lock);
        err = each(context, &entry);
        mf_lock_take(&a->lock);
    }
    mf_lock_give(&a->lock);
    return err;
}

static int fat_read(struct mf_area *area, const char *path, uint64_t offset, void *buffer,
                    size_t length)
{
    struct mf_area_fat *a = fat_of(area);
    struct mf_fat_file file;
    if (offset > MF_FAT_FILE_SIZE_MAX || length > MF_FAT_FILE_SIZE_MAX - offset)
        return MF_EIO;
    mf_lock_take(&a->lock);
    int err = mf_fat_open(a->fs, &file, path, MF_FAT_O_RDONLY);
    if (!err) {
        err = mf_fat_seek(a->fs, &file, (uint32_t)offset);
        if (a->hint.valid && a->hint.generation == a->fs->generation &&
            a->hint.first_cluster == file.first_cluster && a->hint.pos <= offset &&
            strcmp(a->hint.path, path) == 0) {
            /* Go on from the cluster the last read ended in (read walks forward from it). */
            file.cluster = a->hint.cluster;
            file.cluster_index = a->hint.cluster_index;
        }
        uint8_t *dst = buffer;
        while (!err && length > 0) {
            uint32_t chunk = length > (1u << 30) ? (1u << 30) : (uint32_t)length;
            int n = mf_fat_read(a->fs, &file, dst, chunk);
            if (n < 0)
                err = n;
            else if (n == 0)
                err = MF_EIO; /* the file is shorter than asked */
            else {
                dst += n;
                length -= (size_t)n;
            }
        }
        a->hint.valid = !err && file.cluster != 0 && strlen(path) < sizeof a->hint.path;
        if (a->hint.valid) {
            strcpy(a->hint.path, path);
            a->hint.generation = a->fs->generation;
            a->hint.first_cluster = file.first_cluster;
            a->hint.pos = file.pos;
            a->hint.cluster = file.cluster;
            a->hint.cluster_index = file.cluster_index;
        }
        mf_fat_close(a->fs, &file);
    }
    mf_lock_give(&a->lock);
    return err;
}

static int fat_read_number(struct mf_area *area, const char *path, enum mf_numfile_syntax syntax,
                           uint64_t max, uint64_t *value)
{
    struct mf_area_fat *a = fat_of(area);
    mf_lock_take(&a->lock);
    int err = mf_numfile_read(a->fs, path, syntax, max, value);
    mf_lock_give(&a->lock);
    return err;
}

static int fat_write_number(struct mf_area *area, const char *path, uint64_t value)
{
    struct mf_area_fat *a = fat_of(area);
    mf_lock_take(&a->lock);
    int err = mf_numfile_write(a->fs, path, value);
    mf_lock_give(&a->lock);
    return err;
}

/* The three number files of a project in the public area: its count, the root count, its serial
 * number (empty string when it has none). */
static void number_paths(const struct mf_setup *setup, const struct mf_project *p,
                         char paths[3][MF_SETUP_PATH_MAX + 16])
{
    paths[0][0] = paths[1][0] = paths[2][0] = '\0';
    if (p->has_cntdown)
        snprintf(paths[0], sizeof paths[0], "%s/%s", p->folder, MF_FILE_CNTDOWN);
    if (setup->has_root_cntdown)
        snprintf(paths[1], sizeof paths[1], "%s", MF_FILE_CNTDOWN);
    if (mf_project_takes_serial(p))
        snprintf(paths[2], sizeof paths[2], "%s/%s", p->folder, MF_FILE_SERIAL);
}

static int fat_peek(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                    struct mf_tally *tally, char *message)
{
    const struct mf_project *p = &setup->projects[project];
    char paths[3][MF_SETUP_PATH_MAX + 16];
    number_paths(setup, p, paths);
    memset(tally, 0, sizeof *tally);
    uint64_t *values[3] = {&tally->project_left, &tally->root_left, &tally->serial};
    bool *flags[3] = {&tally->project_limited, &tally->root_limited, &tally->has_serial};
    for (int i = 0; i < 3; i++) {
        if (!paths[i][0])
            continue;
        int err = fat_read_number(area, paths[i], i == 2 ? MF_NUMFILE_LEADING : MF_NUMFILE_STRICT,
                                  i == 2 ? UINT64_MAX : UINT32_MAX, values[i]);
        if (err) {
            snprintf(message, MF_AREA_MESSAGE_MAX, "%.200s: %s", paths[i],
                     err != MF_EFORMAT ? mf_strerror(err)
                     : i == 2          ? "does not start with a decimal number"
                                       : "not a decimal number from 0 to 4294967295");
            return err;
        }
        *flags[i] = true;
    }
    return 0;
}

static int fat_take(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                    const struct mf_tally *tally, enum mf_area_taken *taken, char *message)
{
    *taken = MF_AREA_TAKEN_NONE;
    const struct mf_project *p = &setup->projects[project];
    char paths[3][MF_SETUP_PATH_MAX + 16];
    number_paths(setup, p, paths);
    /* Serial number first, then the counts: a cut in between leaves a gap in the serial numbers,
     * never a count taken without its serial number (which would repeat it). Each file is
     * updated crash-safely (mf_numfile_write). */
    const int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        if (!paths[i][0])
            continue;
        uint64_t value = i == 2   ? tally->serial + p->serial_increment
                         : i == 0 ? tally->project_left - 1
                                  : tally->root_left - 1;
        int err = fat_write_number(area, paths[i], value);
        if (err) {
            /* A count file's write that failed may have landed; the serial number's touches no
             * count. A count written before stays counted. */
            if (i != 2 && *taken == MF_AREA_TAKEN_NONE)
                *taken = MF_AREA_TAKEN_UNKNOWN;
            snprintf(message, MF_AREA_MESSAGE_MAX, "%.200s: cannot %s: %s", paths[i],
                     i == 2 ? "advance" : "count down", mf_strerror(err));
            return err;
        }
        if (i != 2)
            *taken = MF_AREA_TAKEN;
    }
    return 0;
}

void mf_area_fat_init(struct mf_area_fat *area, struct mf_fat *fs, const struct mf_lock *lock)
{
    memset(area, 0, sizeof *area);
    area->fs = fs;
    if (lock)
        area->lock = *lock;
    area->area = (struct mf_area){
        .context = area,
        .stat = fat_stat,
        .list = fat_list,
        .read = fat_read,
        .read_number = fat_read_number,
        .peek = fat_peek,
        .take = fat_take,
        .hold_max = MF_AREA_HOLD_DEFAULT,
    };
}
