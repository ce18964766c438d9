/* MBR partition table parsing and encoding, and the storage record in its boot-code area
 * (see mf_mbr.h). Layout of the record, at MBR_RECORD_OFFSET, little-endian:
 *   0 magic "MINTSTOR", 8 version (u16), 10 state (u8), 11 zero, 12 volume id (u32),
 *   16 label (11 bytes, NUL-padded), 27..43 zero, 44 CRC-32 (u32) of bytes 0..43 of the record
 *   followed by sector bytes 440..509 (disk signature, table). */
#include "mf_mbr.h"
#include "mf_le.h"

#include "mf_crc32.h"
#include "mf_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MBR_RECORD_OFFSET   384u
#define MBR_RECORD_CRC      44u /* offset of the CRC inside the record */
#define MBR_RECORD_SIZE     48u
#define MBR_DISK_SIGNATURE  440u
#define MBR_TABLE           446u
#define MBR_ENTRY_SIZE      16u
#define MBR_BOOT_SIGNATURE  510u
#define MBR_CRC_COVER_START 440u /* disk signature, reserved word, table */
#define MBR_CRC_COVER_END   510u
#define MBR_LABEL_LENGTH    11u
#define CHS_HEADS           255u
#define CHS_SECTORS         63u
#define CHS_CYLINDERS       1024u

static const uint8_t mbr_record_magic[8] = {'M', 'I', 'N', 'T', 'S', 'T', 'O', 'R'};

/* A boot loader that only halts: cli; hlt; jmp back to hlt. The image is never meant to boot. */
static const uint8_t mbr_boot_stub[4] = {0xFA, 0xF4, 0xEB, 0xFD};

static int mbr_fail(int err, char *reason, size_t reason_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int mbr_fail(int err, char *reason, size_t reason_size, const char *fmt, ...)
{
    if (reason && reason_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, reason_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

static uint32_t mbr_record_crc(const uint8_t *sector)
{
    uint32_t crc = mf_crc32_update(0, sector + MBR_RECORD_OFFSET, MBR_RECORD_CRC);
    return mf_crc32_update(crc, sector + MBR_CRC_COVER_START,
                           MBR_CRC_COVER_END - MBR_CRC_COVER_START);
}

int mf_mbr_check(const struct mf_mbr *mbr, uint64_t disk_sectors, char *reason, size_t reason_size)
{
    for (unsigned i = 0; i < MF_MBR_ENTRIES; i++) {
        const struct mf_mbr_entry *e = &mbr->entries[i];
        if (e->status != 0x00 && e->status != 0x80)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u has an invalid status byte 0x%02X (not 0x00 or 0x80)",
                            i + 1, e->status);
        if (e->type == MF_MBR_TYPE_EMPTY)
            continue;
        if (e->count == 0)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u has type 0x%02X but no sectors", i + 1, e->type);
        if (e->start == 0)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u starts at sector 0, over the partition table", i + 1);
        uint64_t end = (uint64_t)e->start + e->count;
        if (end > 0x100000000ull)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u (start %u, %u sectors) wraps past 2^32 sectors", i + 1,
                            e->start, e->count);
        if (end > disk_sectors)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u (sectors %u-%llu) ends beyond the disk (%llu sectors)",
                            i + 1, e->start, (unsigned long long)(end - 1),
                            (unsigned long long)disk_sectors);
        for (unsigned j = 0; j < i; j++) {
            const struct mf_mbr_entry *o = &mbr->entries[j];
            if (o->type == MF_MBR_TYPE_EMPTY)
                continue;
            uint64_t o_end = (uint64_t)o->start + o->count;
            if (e->start < o_end && o->start < end)
                return mbr_fail(MF_ECORRUPT, reason, reason_size,
                                "partition %u (sectors %u-%llu) overlaps partition %u "
                                "(sectors %u-%llu)",
                                i + 1, e->start, (unsigned long long)(end - 1), j + 1, o->start,
                                (unsigned long long)(o_end - 1));
        }
    }
    return 0;
}

/* Reads the storage record, if any, into mbr->record. */
static int mbr_parse_record(const uint8_t *sector, struct mf_mbr *mbr, char *reason,
                            size_t reason_size)
{
    const uint8_t *r = sector + MBR_RECORD_OFFSET;
    mbr->record = (struct mf_mbr_record){.state = MF_MBR_STATE_NONE};
    mbr->record_damaged = false;
    if (memcmp(r, mbr_record_magic, sizeof mbr_record_magic) != 0)
        return 0;
    if (mf_le32(r + MBR_RECORD_CRC) != mbr_record_crc(sector)) {
        mbr->record_damaged = true;
        return 0;
    }
    uint16_t version = mf_le16(r + 8);
    if (version != MF_MBR_RECORD_VERSION)
        return mbr_fail(MF_EVERSION, reason, reason_size,
                        "storage record version %u is not supported (this mintflash reads %u)",
                        version, MF_MBR_RECORD_VERSION);
    uint8_t state = r[10];
    if (state != MF_MBR_STATE_READY && state != MF_MBR_STATE_FORMATTING)
        return mbr_fail(MF_ECORRUPT, reason, reason_size, "storage record has an unknown state %u",
                        state);
    const uint8_t *label = r + 16;
    size_t length = 0;
    while (length < MBR_LABEL_LENGTH && label[length] != 0)
        length++;
    for (size_t i = 0; i < MBR_LABEL_LENGTH; i++) {
        bool printable = label[i] >= 0x20 && label[i] < 0x7F;
        if (i < length ? !printable : label[i] != 0)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "storage record has an invalid volume label byte 0x%02X at %zu",
                            label[i], i);
    }
    mbr->record.state = (enum mf_mbr_state)state;
    mbr->record.volume_id = mf_le32(r + 12);
    memcpy(mbr->record.label, label, length);
    mbr->record.label[length] = '\0';
    return 0;
}

int mf_mbr_parse(const uint8_t *sector, uint64_t disk_sectors, struct mf_mbr *mbr, char *reason,
                 size_t reason_size)
{
    memset(mbr, 0, sizeof *mbr);
    if (reason && reason_size)
        reason[0] = '\0';
    if (sector[MBR_BOOT_SIGNATURE] != 0x55 || sector[MBR_BOOT_SIGNATURE + 1] != 0xAA)
        return mbr_fail(MF_ECORRUPT, reason, reason_size,
                        "no partition table (bytes 510-511 are 0x%02X%02X, not 0x55AA)",
                        sector[MBR_BOOT_SIGNATURE], sector[MBR_BOOT_SIGNATURE + 1]);
    mbr->disk_signature = mf_le32(sector + MBR_DISK_SIGNATURE);
    for (unsigned i = 0; i < MF_MBR_ENTRIES; i++) {
        const uint8_t *p = sector + MBR_TABLE + i * MBR_ENTRY_SIZE;
        struct mf_mbr_entry *e = &mbr->entries[i];
        /* Checked on every entry, used or not: what tells a table from a FAT boot sector. */
        if (p[0] != 0x00 && p[0] != 0x80)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u has an invalid status byte 0x%02X (not 0x00 or 0x80)",
                            i + 1, p[0]);
        e->type = p[4];
        /* Said first: its entry usually covers more than the disk, a less useful reason. */
        if (e->type == MF_MBR_TYPE_GPT_PROTECTIVE)
            return mbr_fail(MF_ECORRUPT, reason, reason_size,
                            "partition %u is a GPT protective entry (type 0xEE): GPT disks are "
                            "not supported, only MBR",
                            i + 1);
        if (e->type != MF_MBR_TYPE_EMPTY) {
            e->status = p[0];
            e->start = mf_le32(p + 8);
            e->count = mf_le32(p + 12);
        }
    }
    int err = mf_mbr_check(mbr, disk_sectors, reason, reason_size);
    if (!err)
        err = mbr_parse_record(sector, mbr, reason, reason_size);
    return err;
}

void mf_mbr_chs(uint64_t lba, uint8_t chs[3])
{
    uint64_t cylinder = lba / (CHS_HEADS * CHS_SECTORS);
    if (cylinder >= CHS_CYLINDERS) {
        /* Past what CHS can address: the "use LBA" marker, cylinder 1023 head 254 sector 63. */
        chs[0] = 0xFE;
        chs[1] = 0xFF;
        chs[2] = 0xFF;
        return;
    }
    uint32_t head = (uint32_t)(lba / CHS_SECTORS % CHS_HEADS);
    uint32_t sector = (uint32_t)(lba % CHS_SECTORS) + 1;
    chs[0] = (uint8_t)head;
    chs[1] = (uint8_t)(sector | ((cylinder >> 2) & 0xC0));
    chs[2] = (uint8_t)(cylinder & 0xFF);
}

int mf_mbr_encode(const struct mf_mbr *mbr, uint64_t disk_sectors, uint8_t *sector)
{
    if (mf_mbr_check(mbr, disk_sectors, NULL, 0) != 0)
        return MF_EINVAL;
    if (mbr->record.state != MF_MBR_STATE_NONE && mbr->record.state != MF_MBR_STATE_READY &&
        mbr->record.state != MF_MBR_STATE_FORMATTING)
        return MF_EINVAL;
    size_t label_length = 0;
    while (label_length < sizeof mbr->record.label && mbr->record.label[label_length])
        label_length++;
    if (label_length > MBR_LABEL_LENGTH)
        return MF_EINVAL;
    for (size_t i = 0; i < label_length; i++) {
        uint8_t c = (uint8_t)mbr->record.label[i];
        if (c < 0x20 || c >= 0x7F)
            return MF_EINVAL;
    }

    memset(sector, 0, MF_MBR_SIZE);
    memcpy(sector, mbr_boot_stub, sizeof mbr_boot_stub);
    mf_put_le32(sector + MBR_DISK_SIGNATURE, mbr->disk_signature);
    for (unsigned i = 0; i < MF_MBR_ENTRIES; i++) {
        const struct mf_mbr_entry *e = &mbr->entries[i];
        if (e->type == MF_MBR_TYPE_EMPTY)
            continue;
        uint8_t *p = sector + MBR_TABLE + i * MBR_ENTRY_SIZE;
        p[0] = e->status;
        mf_mbr_chs(e->start, p + 1);
        p[4] = e->type;
        mf_mbr_chs((uint64_t)e->start + e->count - 1, p + 5);
        mf_put_le32(p + 8, e->start);
        mf_put_le32(p + 12, e->count);
    }
    sector[MBR_BOOT_SIGNATURE] = 0x55;
    sector[MBR_BOOT_SIGNATURE + 1] = 0xAA;
    if (mbr->record.state != MF_MBR_STATE_NONE) {
        uint8_t *r = sector + MBR_RECORD_OFFSET;
        memcpy(r, mbr_record_magic, sizeof mbr_record_magic);
        mf_put_le16(r + 8, MF_MBR_RECORD_VERSION);
        r[10] = (uint8_t)mbr->record.state;
        mf_put_le32(r + 12, mbr->record.volume_id);
        memcpy(r + 16, mbr->record.label, label_length);
        mf_put_le32(r + MBR_RECORD_CRC, mbr_record_crc(sector));
    }
    return 0;
}

const char *mf_mbr_type_name(uint8_t type)
{
    switch (type) {
    case MF_MBR_TYPE_EMPTY:
        return "empty";
    case MF_MBR_TYPE_FAT12:
        return "FAT12";
    case MF_MBR_TYPE_FAT16_SMALL:
        return "FAT16 <32M";
    case MF_MBR_TYPE_FAT16:
        return "FAT16";
    case MF_MBR_TYPE_FAT32_CHS:
        return "FAT32";
    case MF_MBR_TYPE_FAT32_LBA:
        return "FAT32 (LBA)";
    case MF_MBR_TYPE_FAT16_LBA:
        return "FAT16 (LBA)";
    case MF_MBR_TYPE_NON_FS_DATA:
        return "non-FS data";
    case MF_MBR_TYPE_GPT_PROTECTIVE:
        return "GPT protective";
    default:
        return "unknown";
    }
}
