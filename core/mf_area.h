/* An area's files as the job engine reads them: the public area (a FAT volume) now, the secure
 * area later, behind one interface, so that the same production setup runs unchanged from either.
 * Paths are relative to the area's root. Calls may come from several slots' threads at once: each
 * implementation serialises itself with the lock it is given. */
#ifndef MF_AREA_H
#define MF_AREA_H

#include "mf_fat.h"
#include "mf_numfile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_AREA_NAME_MAX     256u /* bytes of one name, with the NUL */
#define MF_AREA_MESSAGE_MAX  256u /* bytes of an error text, with the NUL */
/* Bytes of data files a setup loaded from the public area keeps in memory (mf_area.hold_max). */
#define MF_AREA_HOLD_DEFAULT (16u << 20)

struct mf_setup;

/* A lock handed in by the platform (a mutex on a host). NULL callbacks: no locking needed. */
struct mf_lock {
    void (*lock)(void *context);
    void (*unlock)(void *context);
    void *context;
};

void mf_lock_take(const struct mf_lock *lock);
void mf_lock_give(const struct mf_lock *lock);

/* What the next cycle of a project would take: the cycles left by each applicable count, and the
 * serial number it would get. */
struct mf_tally {
    bool root_limited; /* a count for all projects exists (Cntdown.txt at the root) */
    uint64_t root_left;
    bool project_limited; /* the project's own count exists */
    uint64_t project_left;
    bool has_serial; /* the project takes serial numbers (Serial.txt, see mf_setup) */
    uint64_t serial;
};

/* Whether a take counted the cycle. */
enum mf_area_taken {
    MF_AREA_TAKEN_NONE,    /* no count was taken: there is none, or the take failed before
                              anything durable (a serial number may be gone all the same) */
    MF_AREA_TAKEN,         /* counted, durably */
    MF_AREA_TAKEN_UNKNOWN, /* a write failed that may have counted it: the next start knows (the
                              area goes on as if it had not) */
};

struct mf_area_entry {
    char name[MF_AREA_NAME_MAX];
    bool is_dir;
    uint64_t size;
};

/* Called for each entry of a listing; a non-zero return stops the listing and is returned. */
typedef int (*mf_area_each_fn)(void *context, const struct mf_area_entry *entry);

struct mf_area {
    void *context;

    /* Size and kind of `path`: MF_ENOENT when absent. */
    int (*stat)(struct mf_area *area, const char *path, struct mf_area_entry *entry);

    /* Lists the folder `path` (without "." and ".."), in storage order. */
    int (*list)(struct mf_area *area, const char *path, mf_area_each_fn each, void *context);

    /* Reads exactly `length` bytes at `offset` of the file `path`; MF_EIO when the file is
     * shorter. */
    int (*read)(struct mf_area *area, const char *path, uint64_t offset, void *buffer,
                size_t length);

    /* Reads a decimal number file as installed (mf_numfile rules). */
    int (*read_number)(struct mf_area *area, const char *path, enum mf_numfile_syntax syntax,
                       uint64_t max, uint64_t *value);

    /* The counts and the next serial number of project `project` of `setup`, unchanged.
     * `message` (MF_AREA_MESSAGE_MAX) names the file and what is wrong on error. */
    int (*peek)(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                struct mf_tally *tally, char *message);

    /* Takes one cycle of the project: the serial number advances by the project's increment,
     * then every applicable count goes down by one, durably, before this returns. `tally` is what
     * peek returned under the same lock. *taken says whether the cycle was counted, on success
     * and on an error alike (an error after a durable count leaves it counted). */
    int (*take)(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                const struct mf_tally *tally, enum mf_area_taken *taken, char *message);

    /* Optional (may be NULL): the setup's fingerprint when the area knows it without reading
     * every file (the secure area records it at install, under its MAC). 0, or an error: then
     * it is computed. */
    int (*fingerprint)(struct mf_area *area, uint8_t fingerprint[32]);

    /* Optional (may be NULL): true when this process wrote every file of the area itself from
     * bytes it had just read, and nothing has changed them since (the secure area right after its
     * install). Reading them back at load would only read what it wrote, from the page cache;
     * so a load takes a raw binary's ranges from its size (mf_datafile_scan). A cycle still reads
     * (and the secure area authenticates) every byte it programs; the next start reads all. */
    bool (*just_installed)(struct mf_area *area);

    /* Bytes of data files a setup loaded from this area may keep in memory between cycles, so
     * that a cycle programs from memory instead of reading (and parsing) the file again: the
     * public area MF_AREA_HOLD_DEFAULT; 0 keeps only what must be held (records out of order).
     * The secure area holds nothing more: its plaintext lives only as long as a cycle needs it. */
    uint64_t hold_max;
};

/* The public area: an area over a mounted FAT volume, serialised by `lock` (copied). */
struct mf_area_fat {
    struct mf_area area; /* hand &x.area to users */
    struct mf_fat *fs;
    struct mf_lock lock;
    /* Where the last read ended, so that the next read of the same file goes on from there
     * instead of walking its cluster chain from the start (valid while the volume is unchanged). */
    struct {
        bool valid;
        char path[256];
        uint64_t generation;
        uint32_t first_cluster, pos, cluster, cluster_index;
    } hint;
};

void mf_area_fat_init(struct mf_area_fat *area, struct mf_fat *fs, const struct mf_lock *lock);

#endif
