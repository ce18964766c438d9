/* Classic MBR partition table (one 512-byte sector): parse for hostile input, encode for
 * writing. The boot-code area, unused here, carries the mintflash storage record: the layout
 * state (READY / FORMATTING) that makes repartitioning crash-safe, since the whole table and
 * the record are one sector and so one atomic write. */
#ifndef MF_MBR_H
#define MF_MBR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_MBR_SIZE       512u /* bytes of the MBR (the first 512 of block 0) */
#define MF_MBR_ENTRIES    4u   /* primary partition entries */
#define MF_MBR_REASON_MAX 128u /* bytes of a parse failure text, with the NUL */

#define MF_MBR_RECORD_VERSION 1u /* storage record version this code writes and reads */

/* Partition type bytes used here. */
enum {
    MF_MBR_TYPE_EMPTY = 0x00,
    MF_MBR_TYPE_FAT12 = 0x01,
    MF_MBR_TYPE_FAT16_SMALL = 0x04, /* FAT16 below 32 MiB (fewer than 65536 sectors) */
    MF_MBR_TYPE_FAT16 = 0x06,
    MF_MBR_TYPE_FAT32_CHS = 0x0B,
    MF_MBR_TYPE_FAT32_LBA = 0x0C,
    MF_MBR_TYPE_FAT16_LBA = 0x0E,
    MF_MBR_TYPE_NON_FS_DATA = 0xDA, /* the secure area: opaque data, no file system */
    MF_MBR_TYPE_GPT_PROTECTIVE = 0xEE,
};

/* One primary entry. type 0 means unused: such an entry's other fields are ignored when
 * parsing and written as zeros. */
struct mf_mbr_entry {
    uint8_t status; /* 0x00, or 0x80 (active) */
    uint8_t type;
    uint32_t start; /* first sector (LBA) */
    uint32_t count; /* sectors */
};

enum mf_mbr_state {
    MF_MBR_STATE_NONE = 0,       /* no (valid) storage record: an MBR not written by us */
    MF_MBR_STATE_READY = 1,      /* the partitions hold what the table says */
    MF_MBR_STATE_FORMATTING = 2, /* a repartition was started: wipe and format are due */
};

/* The mintflash storage record kept in the boot-code area. Its CRC-32 covers the record and
 * the rest of the sector up to the 0x55AA signature (disk signature and table), so that a table
 * edited by another tool (fdisk keeps the boot code) no longer counts as ours. */
struct mf_mbr_record {
    enum mf_mbr_state state;
    uint32_t volume_id; /* for the public area's format, so a recovery reformats identically */
    char label[12];     /* the same: 0-11 characters, NUL-terminated; "" means the default */
};

struct mf_mbr {
    uint32_t disk_signature;
    struct mf_mbr_entry entries[MF_MBR_ENTRIES];
    struct mf_mbr_record record;
    bool record_damaged; /* parse: a record's magic was there but its CRC did not match */
};

/* Parses `sector` (MF_MBR_SIZE bytes, untrusted) of a disk of `disk_sectors` sectors into
 * `mbr`. MF_ECORRUPT with a reason ("partition 2 overlaps partition 1", ...) when the 0x55AA
 * signature is missing, a status byte is neither 0x00 nor 0x80, an entry is a GPT protective
 * one (0xEE), or a used entry is empty, starts at sector 0, wraps 32 bits, ends beyond the
 * disk or overlaps another; MF_EVERSION when a valid storage record has a version this code
 * does not know. A damaged record is not an
 * error: the MBR then parses as foreign (state NONE, record_damaged). `reason` (may be NULL)
 * receives reason_size bytes at most, always NUL-terminated. */
int mf_mbr_parse(const uint8_t *sector, uint64_t disk_sectors, struct mf_mbr *mbr, char *reason,
                 size_t reason_size);

/* Checks the entries of `mbr` as mf_mbr_parse does (MF_ECORRUPT / reason), without encoding. */
int mf_mbr_check(const struct mf_mbr *mbr, uint64_t disk_sectors, char *reason, size_t reason_size);

/* Encodes `mbr` into `sector` (MF_MBR_SIZE bytes, overwritten whole): a tiny halt loop as boot
 * code, the storage record when record.state is not NONE, disk signature, entries with CHS
 * computed for 255 heads and 63 sectors per track (0xFE 0xFF 0xFF beyond cylinder 1023), and
 * 0x55AA. Refuses (MF_EINVAL) entries mf_mbr_check would refuse on a disk of `disk_sectors`
 * sectors, or a label longer than 11 bytes. */
int mf_mbr_encode(const struct mf_mbr *mbr, uint64_t disk_sectors, uint8_t *sector);

/* The 3-byte CHS address of `lba` as stored in an entry (head, sector | cylinder high bits,
 * cylinder low byte). */
void mf_mbr_chs(uint64_t lba, uint8_t chs[3]);

/* Short name of a partition type ("FAT32 (LBA)", "non-FS data", ...) or "unknown". */
const char *mf_mbr_type_name(uint8_t type);

#endif
