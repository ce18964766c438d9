/* FAT12/16/32 file system with long file names, for the public area.
 * Works over any struct mf_bd; no allocation: the caller owns the volume, file and directory
 * structs. Not thread-safe: one caller at a time per volume (the daemon holds a lock).
 * Paths are UTF-8, '/'-separated, relative to the volume root (a leading '/' is allowed);
 * "." components are skipped, ".." goes up and may not leave the root. Names are looked up
 * case-insensitively (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic), trailing dots and
 * spaces are ignored as Windows does. A hostile or damaged volume gives MF_ECORRUPT, never a
 * crash, a hang or an access outside the volume.
 * Crash behaviour: every completed call that changed the volume has synced it, in the order
 * data, FAT (both copies), directory entry; a power cut leaves what fsck.fat can repair, and
 * files completed earlier intact (assuming sector-atomic writes).
 * Device errors: any error of a device call (read, write, erase, sync), whatever its code, drops
 * the change in progress: the call returns the device's code, the volume is seen again as the
 * device holds it, and files open for writing only close from then on (MF_EIO). */
#ifndef MF_FAT_H
#define MF_FAT_H

#include "mf_bd.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_FAT_SECTOR_MAX    4096u /* largest logical sector we mount */
#define MF_FAT_CACHE_SECTORS 8u    /* metadata cache size, in sectors */
#define MF_FAT_NAME_MAX      255u  /* characters of a long name (UTF-16 units) */
#define MF_FAT_NAME_UTF8_MAX (MF_FAT_NAME_MAX * 3u + 1u) /* bytes, with the NUL */
#define MF_FAT_PATH_MAX      1024u                       /* bytes of a path, with the NUL */
#define MF_FAT_DEPTH_MAX     32u                         /* folder depth */
#define MF_FAT_FILE_SIZE_MAX 0xFFFFFFFFu

enum mf_fat_type { MF_FAT_AUTO = 0, MF_FAT12 = 12, MF_FAT16 = 16, MF_FAT32 = 32 };

/* Directory-entry attributes (as stored). */
enum {
    MF_FAT_ATTR_READ_ONLY = 0x01,
    MF_FAT_ATTR_HIDDEN = 0x02,
    MF_FAT_ATTR_SYSTEM = 0x04,
    MF_FAT_ATTR_VOLUME_ID = 0x08,
    MF_FAT_ATTR_DIRECTORY = 0x10,
    MF_FAT_ATTR_ARCHIVE = 0x20,
};

/* Open flags; exactly one of RDONLY/WRONLY/RDWR plus any of the rest. */
enum {
    MF_FAT_O_RDONLY = 0x01,
    MF_FAT_O_WRONLY = 0x02,
    MF_FAT_O_RDWR = 0x03,
    MF_FAT_O_CREAT = 0x10,  /* create when missing */
    MF_FAT_O_EXCL = 0x20,   /* with CREAT: fail with MF_EEXIST when present */
    MF_FAT_O_TRUNC = 0x40,  /* truncate to zero on open */
    MF_FAT_O_APPEND = 0x80, /* every write goes to the end */
};

/* Platform clock for timestamps: seconds since 1970-01-01 (local time is stored as given).
 * NULL means every timestamp is 1980-01-01 00:00. */
typedef int64_t (*mf_fat_clock_fn)(void *context);

struct mf_fat_format_options {
    enum mf_fat_type type;        /* MF_FAT_AUTO: chosen by size as mkfs.fat does */
    uint32_t sectors_per_cluster; /* 0: chosen by size as mkfs.fat does */
    uint32_t volume_id;           /* serial number written to the boot sector */
    const char *label;            /* up to 11 characters; NULL gives "NO NAME" */
    uint32_t hidden_sectors;      /* start of the partition on its disk, in 512-byte sectors */
};

/* Formats the whole device. Erases (discards) the data area, writes boot sector(s), both FATs and
 * an empty root directory, then syncs. MF_EINVAL when the device is too small or too big for
 * the requested type (the message-level detail is in the return code only). */
int mf_fat_format(const struct mf_bd *bd, const struct mf_fat_format_options *options);

/* Volume geometry, filled by mount. */
struct mf_fat_geometry {
    enum mf_fat_type type;
    uint32_t bytes_per_sector;
    uint32_t sectors_per_cluster;
    uint32_t reserved_sectors;
    uint32_t fat_count;
    uint32_t fat_sectors;  /* per FAT */
    uint32_t root_entries; /* FAT12/16 fixed root; 0 on FAT32 */
    uint32_t root_cluster; /* FAT32 only */
    uint32_t total_sectors;
    uint32_t cluster_count; /* data clusters, numbered 2..cluster_count+1 */
    uint32_t first_fat_sector;
    uint32_t first_root_sector; /* FAT12/16 */
    uint32_t first_data_sector;
    uint32_t fsinfo_sector; /* FAT32, 0 when absent */
    uint32_t volume_id;
    char label[12];
};

struct mf_fat_cache_line {
    uint32_t sector; /* volume sector held here */
    uint32_t age;
    bool valid, dirty;
};

struct mf_fat_file;

/* A mounted volume. Treat as opaque. */
struct mf_fat {
    const struct mf_bd *bd;
    mf_fat_clock_fn clock;
    void *clock_context;
    struct mf_fat_geometry geo;
    uint32_t blocks_per_sector; /* device blocks per volume sector */
    uint32_t free_count;        /* free clusters, 0xFFFFFFFF = not yet counted */
    uint32_t next_free;         /* allocation hint */
    uint32_t age;
    uint64_t generation;      /* goes up with every change that is committed or abandoned */
    int device_error;         /* first device error since the cache last matched the device, or 0 */
    uint64_t device_failures; /* device calls that failed since the mount */
    bool data_unsynced;       /* file data written straight to the device since the last sync */
    bool fsinfo_dirty;
    struct mf_fat_file *open_files;
    struct mf_fat_cache_line lines[MF_FAT_CACHE_SECTORS];
    uint8_t cache[MF_FAT_CACHE_SECTORS][MF_FAT_SECTOR_MAX];
    uint8_t scratch[MF_FAT_SECTOR_MAX]; /* partial data sectors */
};

/* Mounts the volume on `bd` (the partition, not the disk). Validates the boot sector and the
 * geometry against the device size: MF_ECORRUPT when they do not fit. `clock` may be NULL. */
int mf_fat_mount(struct mf_fat *fs, const struct mf_bd *bd, mf_fat_clock_fn clock,
                 void *clock_context);

/* Writes back everything cached and syncs the device. Open files stay open. */
int mf_fat_sync(struct mf_fat *fs);

/* Syncs and forgets the volume; every open file must be closed first (MF_EBUSY otherwise). */
int mf_fat_unmount(struct mf_fat *fs);

/* Geometry of the mounted volume. */
const struct mf_fat_geometry *mf_fat_geometry(const struct mf_fat *fs);

/* Free and total bytes of the data area. Counts free clusters on first use (reads the FAT). */
int mf_fat_space(struct mf_fat *fs, uint64_t *free_bytes, uint64_t *total_bytes);

/* Information on one directory entry. */
struct mf_fat_stat {
    char name[MF_FAT_NAME_UTF8_MAX]; /* long name when present, else the short name */
    char short_name[13];             /* 8.3 name as stored, "NAME.EXT" */
    uint8_t attributes;
    bool is_dir;
    uint32_t size;
    uint32_t first_cluster;
    int64_t mtime; /* seconds since 1970, from the FAT date and time */
};

int mf_fat_stat(struct mf_fat *fs, const char *path, struct mf_fat_stat *st);

/* Whether `path` names the folder `folder` at the root, or anything inside it, as this volume's
 * lookups resolve it: any case, '/' or '\\', "." and "..", trailing dots and blanks, the short
 * name of the entry. Returns 1 (with `*below` the components under `folder`, 0 for the folder
 * itself), 0 (not there, or the root itself), or a negative MF_E* code (a path no lookup takes). */
int mf_fat_path_in(struct mf_fat *fs, const char *path, const char *folder, unsigned *below);

/* An open file. Treat as opaque; valid between open and close. */
struct mf_fat_file {
    struct mf_fat_file *next;
    uint32_t entry_sector; /* sector and byte offset of the 8.3 directory entry */
    uint16_t entry_offset;
    uint8_t flags;
    bool failed;  /* a device error dropped its unsynced changes: unusable */
    bool dirty;   /* size or first cluster changed, entry not yet written */
    bool written; /* data changed: update the modification time */
    uint32_t first_cluster;
    uint32_t size;
    uint32_t pos;
    uint32_t cluster;       /* cluster holding pos (or the last one at end), 0 = unknown */
    uint32_t cluster_index; /* index of `cluster` in the chain */
};

/* Opens (and with MF_FAT_O_CREAT creates) a file. Directories: MF_EISDIR. */
int mf_fat_open(struct mf_fat *fs, struct mf_fat_file *file, const char *path, int flags);

/* Reads up to `size` bytes (at most INT32_MAX) at the current position. Returns the number of
 * bytes read (0 at end of file) or a negative error. */
int mf_fat_read(struct mf_fat *fs, struct mf_fat_file *file, void *buffer, uint32_t size);

/* Writes `size` bytes (at most INT32_MAX) at the current position (the end with O_APPEND),
 * growing the file; a position past the end fills the gap with zeros. Returns `size` or a
 * negative error (MF_ENOSPC when the volume is full, MF_EFBIG past 4 GiB - 1). Data is on the
 * device but only durable after mf_fat_file_sync or mf_fat_close. */
int mf_fat_write(struct mf_fat *fs, struct mf_fat_file *file, const void *buffer, uint32_t size);

/* Sets the position (may be past the end). */
int mf_fat_seek(struct mf_fat *fs, struct mf_fat_file *file, uint32_t position);
uint32_t mf_fat_tell(const struct mf_fat_file *file);
uint32_t mf_fat_size(const struct mf_fat_file *file);

/* Shrinks or grows (with zeros) the file to `size`. */
int mf_fat_truncate(struct mf_fat *fs, struct mf_fat_file *file, uint32_t size);

/* Writes the directory entry and syncs the volume. */
int mf_fat_file_sync(struct mf_fat *fs, struct mf_fat_file *file);

/* Syncs (when written) and closes. The file struct may be reused afterwards. */
int mf_fat_close(struct mf_fat *fs, struct mf_fat_file *file);

/* An open directory listing. */
struct mf_fat_dir {
    uint32_t first_cluster; /* 0 = fixed FAT12/16 root */
    uint32_t cluster;       /* current cluster (0 with the fixed root) */
    uint32_t cluster_index; /* index of `cluster` in the chain */
    uint32_t index;         /* entry index from the start of the directory */
};

int mf_fat_opendir(struct mf_fat *fs, struct mf_fat_dir *dir, const char *path);

/* Do two names (UTF-8) name the same file, as this FAT layer matches names (without regard to
 * case, also beyond ASCII: `Café` and `CAFÉ`)? False for names that are not UTF-8 or too long. */
bool mf_fat_names_match(const char *a, const char *b);

/* Reads the next entry ("." and ".." and volume labels are skipped). Returns 1 with `st` filled,
 * 0 at the end, or a negative error. */
int mf_fat_readdir(struct mf_fat *fs, struct mf_fat_dir *dir, struct mf_fat_stat *st);

/* Bytes of new clusters the folder `path` takes before `entries` more directory entries fit in
 * it side by side (a file with a short name takes one; a long name one more per 13 characters):
 * 0 when it has them free. MF_ENOSPC when they never fit (the fixed root folder of FAT12/16 is
 * full, or the folder would pass its 2 MiB limit); MF_ENOTDIR for a file. Changes nothing. */
int mf_fat_dir_need(struct mf_fat *fs, const char *path, uint32_t entries, uint64_t *bytes);

/* Creates a folder (its parent must exist). */
int mf_fat_mkdir(struct mf_fat *fs, const char *path);

/* Removes an empty folder (MF_ENOTEMPTY otherwise). */
int mf_fat_rmdir(struct mf_fat *fs, const char *path);

/* Removes a file (MF_EISDIR for a folder, MF_EBUSY while it is open). */
int mf_fat_remove(struct mf_fat *fs, const char *path);

/* Removes the name `path` of a file whose clusters `other` (another name) holds too, as a power
 * cut in the middle of a rename leaves them (both entries written, the old one not yet removed):
 * the clusters stay with `other`. MF_EINVAL when the two do not share their first cluster. */
int mf_fat_remove_alias(struct mf_fat *fs, const char *path, const char *other);

/* Removes a folder and everything in it (files first, each folder after its contents), without
 * recursion (bounded by MF_FAT_DEPTH_MAX). Entries go before the clusters they point at are
 * freed, behind a barrier for up to 64 entries at a time, whatever folders they are in: a cut
 * leaves lost clusters at worst, never an entry pointing at freed ones. MF_EBUSY for the root
 * or a file that is open (what was removed before it stays removed). */
int mf_fat_remove_tree(struct mf_fat *fs, const char *path);

/* The same, with every file's clusters in the whole tree erased (discarded) and synced before the
 * first entry goes, so that a cut at any point leaves no byte of the files anywhere but in files
 * still in the tree: for secret files (the `_SECURE` folder once it is moved). Consecutive
 * clusters are erased with one device call, also across files. mf_fat_wipe_free afterwards
 * erases the folders' clusters freed on the way. */
int mf_fat_remove_tree_wiped(struct mf_fat *fs, const char *path);

/* Erases (discards: afterwards they read as zeros) every free cluster, so that no byte of a deleted
 * file stays readable on the device; then syncs. Used after secret files were deleted. */
int mf_fat_wipe_free(struct mf_fat *fs);

/* Renames or moves a file or folder. The target must not exist (MF_EEXIST); a folder cannot be
 * moved into itself (MF_EINVAL). A cut leaves the entry under the old name, or under both. Within
 * one folder to a name that is a short (8.3) name as it stands (FLASHER.OLD, not "Long name.txt"),
 * the entry is renamed where it is: no free entry (so no new folder cluster) is needed, and a cut
 * leaves the old name or the new, never both. */
int mf_fat_rename(struct mf_fat *fs, const char *from, const char *to);

/* Renames the file `from` to `to`, replacing the file `to` when there is one: for a file rewritten
 * whole, first written under another name and closed. A cut leaves `to` as it was (or absent, as
 * it was) or with `from`'s contents, never empty or a mix, at worst with the clusters of one of
 * them lost (fsck.fat reclaims them); `from` is gone or still there as it was. On an error `from`
 * may be gone too (`to` is as it was). A `to` there keeps its name and its attributes (hidden,
 * system; archive set); a read-only one is refused (MF_EACCES), as writing to it is. MF_EISDIR
 * for a folder, MF_EBUSY while either is open. */
int mf_fat_replace(struct mf_fat *fs, const char *from, const char *to);

#endif
