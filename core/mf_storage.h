/* The storage image: an MBR partition table over one block device, partition 1 the public area
 * (FAT), partition 2 the secure area when one exists. Creates, opens, repartitions and
 * describes that layout; crash-safe through the storage record in the MBR (docs/storage.md,
 * docs/internals/storage.md). The caller supplies every random value; no allocation. */
#ifndef MF_STORAGE_H
#define MF_STORAGE_H

#include "mf_bd.h"
#include "mf_fat.h"
#include "mf_mbr.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_STORAGE_DEFAULT_SIZE  (128ull << 20) /* bytes, the reference product's size */
#define MF_STORAGE_MIN_SIZE      (4ull << 20)   /* bytes; smaller devices are refused */
#define MF_STORAGE_ALIGN         (1ull << 20)   /* partitions start on 1 MiB boundaries */
#define MF_STORAGE_MAX_BLOCKS    0xFFFFFFFFull  /* sectors an MBR can describe */
#define MF_STORAGE_BLOCK_MAX     MF_FAT_SECTOR_MAX
#define MF_STORAGE_LABEL_DEFAULT "MINTFLASH"
#define MF_STORAGE_REASON_MAX    192u

struct mf_storage_options {
    bool secure_area;        /* reserve half of the storage for a secure area */
    uint32_t volume_id;      /* serial number of the public FAT (random, from the caller) */
    uint32_t disk_signature; /* MBR disk signature (random, from the caller) */
    const char *label;       /* public volume label, 1-11 printable ASCII; NULL: the default */
};

/* Where the areas lie, in device blocks. */
struct mf_storage_layout {
    mf_block_t public_first, public_count;
    mf_block_t secure_first, secure_count; /* secure_count 0: no secure area */
};

/* An open storage. The fields are readable; change them only through the functions below. */
struct mf_storage {
    const struct mf_bd *bd;
    struct mf_mbr mbr;
    struct mf_storage_layout layout;
    bool ours;        /* the MBR carries a valid storage record (written by mintflash) */
    bool interrupted; /* the record says FORMATTING: call mf_storage_recover() */
    struct mf_bd_slice public_area;
    struct mf_bd_slice secure_area;     /* set up only when layout.secure_count != 0 */
    char reason[MF_STORAGE_REASON_MAX]; /* why the last call failed ("" when it did not say) */
};

/* What mf_storage_info reports. Offsets and sizes in bytes from the start of the device. */
struct mf_storage_info {
    uint64_t disk_bytes;
    uint32_t block_size;
    uint32_t disk_signature;
    bool ours;
    bool interrupted;
    uint64_t public_offset, public_bytes;
    uint8_t public_type; /* MBR type byte */
    bool secure_area;
    uint64_t secure_offset, secure_bytes;
    uint8_t secure_type;
    enum mf_fat_type fat_type; /* read from the public boot sector; MF_FAT_AUTO: no valid FAT */
    uint32_t volume_id;        /* of the public FAT (when fat_type is set) */
    char label[12];            /* of the public FAT, trailing spaces removed */
};

/* Computes the layout for `bd`: partition 1 from 1 MiB to the end, or, with a secure area, to
 * half of the device rounded down to 1 MiB, partition 2 from there to the end. MF_ERANGE when
 * the device is below MF_STORAGE_MIN_SIZE or above what an MBR can describe; MF_ENOTSUP for
 * blocks larger than MF_STORAGE_BLOCK_MAX. */
int mf_storage_plan(const struct mf_bd *bd, bool secure_area, struct mf_storage_layout *layout);

/* MBR type byte for a public area of `bytes` formatted as `type`: 0x01 FAT12, 0x04 FAT16 below
 * 32 MiB, 0x06 FAT16, 0x0C FAT32 (LBA). */
uint8_t mf_storage_fat_partition_type(enum mf_fat_type type, uint64_t bytes);

/* True when `label` can be a public volume label: 1-11 printable ASCII characters, none of
 * "*+,./:;<=>?[\]| (FAT forbids them in labels). */
bool mf_storage_label_valid(const char *label);

/* Creates a new storage on `bd`, destroying what it held: MBR with state FORMATTING, sync, wipe
 * (secure partition and the gap before partition 1 erased), format of the public area, sync,
 * MBR with state READY, sync. On success `storage` is open on the new layout. A power cut
 * leaves either the old contents or the new layout marked FORMATTING (mf_storage_recover
 * completes it). Errors: those of mf_storage_plan, MF_EINVAL for a bad label, device errors;
 * storage->reason says what and where. `bd` is borrowed for the life of `storage`. */
int mf_storage_init(struct mf_storage *storage, const struct mf_bd *bd,
                    const struct mf_storage_options *options);

/* Opens the storage on `bd` (borrowed): reads and validates the MBR (mf_mbr_parse), requires
 * partition 1, allows partition 2 only with type 0xDA (the secure area) and no partitions 3-4,
 * and sets up the area slices. An MBR without our record is accepted when partition 1 holds a
 * FAT boot sector (an image made with sfdisk and mkfs.fat). A layout interrupted while
 * formatting opens with storage->interrupted set; its public area must not be mounted before
 * mf_storage_recover. Errors: MF_ECORRUPT (blank device, no or damaged table, unusable layout),
 * MF_EVERSION, MF_ENOTSUP, device errors; storage->reason says what and where. */
int mf_storage_open(struct mf_storage *storage, const struct mf_bd *bd);

/* Completes an interrupted repartition (wipe, format with the recorded volume id and label,
 * READY). Does nothing when storage->interrupted is false. Idempotent under power cuts. */
int mf_storage_recover(struct mf_storage *storage);

/* Repartition to a layout with a secure area (half the storage) / without one, wiping every
 * area and reformatting the public area with `volume_id`; the disk signature and volume label
 * are kept. Same crash protocol as mf_storage_init. MF_EEXIST when a secure area already
 * exists (create) / MF_ENOENT when none exists (remove); any open FAT volume on the public area
 * must be unmounted first. On success `storage` describes the new layout. */
int mf_storage_secure_create(struct mf_storage *storage, uint32_t volume_id);
int mf_storage_secure_remove(struct mf_storage *storage, uint32_t volume_id);

/* After a failed init, recover, secure_create or secure_remove, `storage` may describe the
 * layout that was being written rather than what the device holds: open it again. */

/* The public area as a device of its own (valid while `storage` lives and is not
 * repartitioned). */
const struct mf_bd *mf_storage_public_area(const struct mf_storage *storage);

/* The secure area, or NULL when there is none. */
const struct mf_bd *mf_storage_secure_area(const struct mf_storage *storage);

/* Fills `info` from the table and the public area's boot sector (read, not mounted: free space
 * needs mf_fat_mount + mf_fat_space). A public area that holds no valid FAT gives fat_type
 * MF_FAT_AUTO, not an error; only device errors are returned. */
int mf_storage_info(struct mf_storage *storage, struct mf_storage_info *info);

#endif
