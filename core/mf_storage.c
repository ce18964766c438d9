/* Storage image layout (see mf_storage.h): plan, create, open, recover and repartition.
 * Every layout change follows one protocol: MBR with the new table marked FORMATTING, sync,
 * wipe and format, sync, MBR marked READY, sync. The MBR is one sector, so each of its writes
 * lands whole or not at all, and the table never disagrees with a READY public area. */
#include "mf_storage.h"
#include "mf_le.h"

#include "mf_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FAT12_MAX_CLUSTERS 4084u
#define FAT16_MAX_CLUSTERS 65524u

static int storage_fail(struct mf_storage *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int storage_fail(struct mf_storage *st, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->reason, sizeof st->reason, fmt, ap);
    va_end(ap);
    return err;
}

/* A device error, with where it happened. */
static int storage_io(struct mf_storage *st, int err, const char *what)
{
    if (err)
        storage_fail(st, err, "%s: %s", what, mf_strerror(err));
    return err;
}

static bool power_of_two(uint32_t v)
{
    return v && (v & (v - 1)) == 0;
}

/* What a FAT boot sector says, checked for plausibility only (mf_fat_mount does the rest). */
struct storage_fat_boot {
    enum mf_fat_type type;
    uint32_t volume_id;
    char label[12];
};

/* Reads a FAT boot sector (untrusted) of a partition of `partition_bytes`: the FAT type from the
 * cluster count, as the FAT specification defines it. Returns a static reason or NULL. */
static const char *storage_parse_fat_boot(const uint8_t *b, uint64_t partition_bytes,
                                          struct storage_fat_boot *out)
{
    memset(out, 0, sizeof *out);
    if (b[510] != 0x55 || b[511] != 0xAA)
        return "no boot sector signature 0x55AA";
    uint32_t bps = mf_le16(b + 11), spc = b[13], reserved = mf_le16(b + 14), fats = b[16];
    uint32_t root_entries = mf_le16(b + 17);
    if (bps < 512 || bps > MF_FAT_SECTOR_MAX || !power_of_two(bps))
        return "bad bytes per sector";
    if (!power_of_two(spc) || spc > 128)
        return "bad sectors per cluster";
    if (reserved == 0 || fats == 0)
        return "no reserved sectors or no FAT";
    uint64_t total = mf_le16(b + 19) ? mf_le16(b + 19) : mf_le32(b + 32);
    uint64_t fat_size = mf_le16(b + 22) ? mf_le16(b + 22) : mf_le32(b + 36);
    if (total == 0 || fat_size == 0)
        return "zero sectors or zero FAT size";
    if (total * bps > partition_bytes)
        return "file system larger than its partition";
    uint64_t root_sectors = ((uint64_t)root_entries * 32 + bps - 1) / bps;
    uint64_t data_start = reserved + fats * fat_size + root_sectors;
    if (data_start >= total)
        return "no room for data clusters";
    uint64_t clusters = (total - data_start) / spc;
    /* As Linux and mf_fat_mount decide: a zero 16-bit FAT size means FAT32. */
    if (mf_le16(b + 22) == 0) {
        if (root_entries != 0)
            return "FAT32 boot sector with a fixed root folder";
        out->type = MF_FAT32;
    } else if (clusters <= FAT12_MAX_CLUSTERS) {
        out->type = MF_FAT12;
    } else if (clusters <= FAT16_MAX_CLUSTERS) {
        out->type = MF_FAT16;
    } else {
        return "too many clusters for FAT16 in a FAT12/16 boot sector";
    }
    const uint8_t *ext = b + (out->type == MF_FAT32 ? 64 : 36);
    if (ext[2] == 0x29) {
        out->volume_id = mf_le32(ext + 3);
        memcpy(out->label, ext + 7, 11);
        size_t n = 11;
        while (n > 0 && (out->label[n - 1] == ' ' || out->label[n - 1] == '\0'))
            n--;
        out->label[n] = '\0';
        for (size_t i = 0; i < n; i++) {
            if ((uint8_t)out->label[i] < 0x20 || (uint8_t)out->label[i] >= 0x7F)
                out->label[i] = '?';
        }
    }
    return NULL;
}

static bool storage_is_fat_type(uint8_t type)
{
    switch (type) {
    case MF_MBR_TYPE_FAT12:
    case MF_MBR_TYPE_FAT16_SMALL:
    case MF_MBR_TYPE_FAT16:
    case MF_MBR_TYPE_FAT32_CHS:
    case MF_MBR_TYPE_FAT32_LBA:
    case MF_MBR_TYPE_FAT16_LBA:
        return true;
    default:
        return false;
    }
}

uint8_t mf_storage_fat_partition_type(enum mf_fat_type type, uint64_t bytes)
{
    switch (type) {
    case MF_FAT12:
        return MF_MBR_TYPE_FAT12;
    case MF_FAT16:
        return bytes < (32ull << 20) ? MF_MBR_TYPE_FAT16_SMALL : MF_MBR_TYPE_FAT16;
    default:
        return MF_MBR_TYPE_FAT32_LBA;
    }
}

int mf_storage_plan(const struct mf_bd *bd, bool secure_area, struct mf_storage_layout *layout)
{
    memset(layout, 0, sizeof *layout);
    if (bd->block_size > MF_STORAGE_BLOCK_MAX)
        return MF_ENOTSUP;
    uint64_t bytes = mf_bd_size(bd);
    if (bytes < MF_STORAGE_MIN_SIZE || bd->block_count > MF_STORAGE_MAX_BLOCKS)
        return MF_ERANGE;
    mf_block_t align = MF_STORAGE_ALIGN / bd->block_size;
    layout->public_first = align;
    if (!secure_area) {
        layout->public_count = bd->block_count - align;
        return 0;
    }
    mf_block_t half = bd->block_count / 2 / align * align;
    layout->public_count = half - align;
    layout->secure_first = half;
    layout->secure_count = bd->block_count - half;
    return 0;
}

static void storage_set_slices(struct mf_storage *st)
{
    mf_bd_slice_init(&st->public_area, st->bd, st->layout.public_first, st->layout.public_count);
    if (st->layout.secure_count)
        mf_bd_slice_init(&st->secure_area, st->bd, st->layout.secure_first,
                         st->layout.secure_count);
    else
        memset(&st->secure_area, 0, sizeof st->secure_area);
}

/* Writes st->mbr to block 0 (the rest of a block larger than the MBR is zeroed) and syncs. */
static int storage_write_mbr(struct mf_storage *st)
{
    uint8_t block[MF_STORAGE_BLOCK_MAX];
    memset(block, 0, st->bd->block_size);
    int err = mf_mbr_encode(&st->mbr, st->bd->block_count, block);
    if (err)
        return storage_fail(st, err, "refusing to write an invalid partition table");
    err = mf_bd_prog(st->bd, 0, block, 1);
    if (!err)
        err = mf_bd_sync(st->bd);
    return storage_io(st, err, "writing the partition table (block 0)");
}

/* Erases [first, first + count) in pieces, so that a size_t count never overflows. */
static int storage_erase(struct mf_storage *st, mf_block_t first, mf_block_t count,
                         const char *what)
{
    while (count) {
        mf_block_t n = count > (mf_block_t)0x40000000u ? (mf_block_t)0x40000000u : count;
        int err = mf_bd_erase(st->bd, first, (size_t)n);
        if (err)
            return storage_fail(st, err, "wiping the %s (blocks %llu-%llu): %s", what,
                                (unsigned long long)first, (unsigned long long)(first + n - 1),
                                mf_strerror(err));
        first += n;
        count -= n;
    }
    return 0;
}

/* The second half of the protocol: the table says FORMATTING; wipe, format, mark READY. */
static int storage_complete(struct mf_storage *st)
{
    const struct mf_storage_layout *l = &st->layout;
    /* The gap after the MBR, up to the first partition (ours put partition 1 first; a crafted
     * table may not, and the gap must never reach into a partition). */
    mf_block_t first = l->public_first;
    if (l->secure_count && l->secure_first < first)
        first = l->secure_first;
    int err = storage_erase(st, 1, first - 1, "gap before the first partition");
    if (!err && l->secure_count)
        err = storage_erase(st, l->secure_first, l->secure_count, "secure area");
    if (err)
        return err;

    const struct mf_bd *pub = &st->public_area.bd;
    struct mf_fat_format_options format = {
        .type = MF_FAT_AUTO,
        .volume_id = st->mbr.record.volume_id,
        .label = st->mbr.record.label[0] ? st->mbr.record.label : MF_STORAGE_LABEL_DEFAULT,
        .hidden_sectors = (uint32_t)(l->public_first * (st->bd->block_size / 512u)),
    };
    err = mf_fat_format(pub, &format);
    if (err)
        return storage_fail(st, err, "formatting the public area (%llu bytes at offset %llu): %s",
                            (unsigned long long)mf_bd_size(pub),
                            (unsigned long long)(l->public_first * st->bd->block_size),
                            mf_strerror(err));
    err = mf_bd_sync(st->bd);
    if (err)
        return storage_io(st, err, "syncing the formatted public area");

    /* The type byte follows the FAT type the format chose; until now it was provisional. */
    uint8_t boot[MF_STORAGE_BLOCK_MAX];
    err = mf_bd_read(pub, 0, boot, 1);
    if (err)
        return storage_io(st, err, "reading back the public boot sector");
    struct storage_fat_boot fat;
    const char *why = storage_parse_fat_boot(boot, mf_bd_size(pub), &fat);
    if (why)
        return storage_fail(st, MF_EIO, "the public area just formatted does not read back: %s",
                            why);
    st->mbr.entries[0].type = mf_storage_fat_partition_type(fat.type, mf_bd_size(pub));
    st->mbr.record.state = MF_MBR_STATE_READY;
    err = storage_write_mbr(st);
    if (err)
        return err;
    st->interrupted = false;
    return 0;
}

/* The first half: the new table, marked FORMATTING, made durable; then the second half. */
static int storage_repartition(struct mf_storage *st, const struct mf_storage_layout *layout,
                               uint32_t disk_signature, uint32_t volume_id, const char *label)
{
    struct mf_mbr *mbr = &st->mbr;
    memset(mbr, 0, sizeof *mbr);
    mbr->disk_signature = disk_signature;
    uint64_t public_bytes = layout->public_count * st->bd->block_size;
    mbr->entries[0] = (struct mf_mbr_entry){
        .type = public_bytes >= (512ull << 20) ? MF_MBR_TYPE_FAT32_LBA : MF_MBR_TYPE_FAT16,
        .start = (uint32_t)layout->public_first,
        .count = (uint32_t)layout->public_count,
    };
    if (layout->secure_count)
        mbr->entries[1] = (struct mf_mbr_entry){
            .type = MF_MBR_TYPE_NON_FS_DATA,
            .start = (uint32_t)layout->secure_first,
            .count = (uint32_t)layout->secure_count,
        };
    mbr->record.state = MF_MBR_STATE_FORMATTING;
    mbr->record.volume_id = volume_id;
    size_t n = strlen(label);
    memcpy(mbr->record.label, label, n + 1);

    st->ours = true;
    st->interrupted = true;
    st->layout = *layout;
    storage_set_slices(st);
    int err = storage_write_mbr(st);
    if (err)
        return err;
    return storage_complete(st);
}

bool mf_storage_label_valid(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > 11)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)label[i];
        if (c < 0x20 || c >= 0x7F || strchr("\"*+,./:;<=>?[\\]|", c))
            return false;
    }
    return true;
}

static int storage_plan_checked(struct mf_storage *st, const struct mf_bd *bd, bool secure_area,
                                struct mf_storage_layout *layout)
{
    int err = mf_storage_plan(bd, secure_area, layout);
    if (err == MF_ENOTSUP)
        return storage_fail(st, err, "blocks of %u bytes are not supported (at most %u)",
                            bd->block_size, MF_STORAGE_BLOCK_MAX);
    if (err == MF_ERANGE && mf_bd_size(bd) < MF_STORAGE_MIN_SIZE)
        return storage_fail(st, err,
                            "storage of %llu bytes is smaller than the minimum, %llu "
                            "bytes (%llu MiB)",
                            (unsigned long long)mf_bd_size(bd),
                            (unsigned long long)MF_STORAGE_MIN_SIZE,
                            (unsigned long long)(MF_STORAGE_MIN_SIZE >> 20));
    if (err == MF_ERANGE)
        return storage_fail(st, err,
                            "storage of %llu blocks is larger than an MBR can describe "
                            "(%llu blocks)",
                            (unsigned long long)bd->block_count,
                            (unsigned long long)MF_STORAGE_MAX_BLOCKS);
    return err;
}

int mf_storage_init(struct mf_storage *st, const struct mf_bd *bd,
                    const struct mf_storage_options *options)
{
    memset(st, 0, sizeof *st);
    st->bd = bd;
    const char *label = options->label ? options->label : MF_STORAGE_LABEL_DEFAULT;
    if (!mf_storage_label_valid(label))
        return storage_fail(st, MF_EINVAL,
                            "volume label \"%.32s\" is not 1-11 printable ASCII characters "
                            "without any of \"*+,./:;<=>?[\\]|",
                            label);
    struct mf_storage_layout layout;
    int err = storage_plan_checked(st, bd, options->secure_area, &layout);
    if (err)
        return err;
    return storage_repartition(st, &layout, options->disk_signature, options->volume_id, label);
}

static bool storage_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i])
            return false;
    }
    return true;
}

int mf_storage_open(struct mf_storage *st, const struct mf_bd *bd)
{
    memset(st, 0, sizeof *st);
    st->bd = bd;
    if (bd->block_size > MF_STORAGE_BLOCK_MAX)
        return storage_fail(st, MF_ENOTSUP, "blocks of %u bytes are not supported (at most %u)",
                            bd->block_size, MF_STORAGE_BLOCK_MAX);
    if (bd->block_count == 0)
        return storage_fail(st, MF_ECORRUPT, "the storage is empty (0 bytes)");
    uint8_t block[MF_STORAGE_BLOCK_MAX];
    int err = mf_bd_read(bd, 0, block, 1);
    if (err)
        return storage_io(st, err, "reading the partition table (block 0)");
    if (storage_all_zero(block, MF_MBR_SIZE))
        return storage_fail(st, MF_ECORRUPT,
                            "no partition table: the first sector is blank (not initialised)");
    char why[MF_MBR_REASON_MAX];
    err = mf_mbr_parse(block, bd->block_count, &st->mbr, why, sizeof why);
    if (err)
        return storage_fail(st, err, "partition table: %s", why);

    const struct mf_mbr_entry *e = st->mbr.entries;
    struct storage_fat_boot bare;
    if (e[0].type == MF_MBR_TYPE_EMPTY && e[1].type == MF_MBR_TYPE_EMPTY &&
        !storage_parse_fat_boot(block, mf_bd_size(bd), &bare))
        return storage_fail(st, MF_ECORRUPT,
                            "no partition table: the image is a bare FAT volume; a storage image "
                            "has an MBR with the FAT volume as partition 1");
    if (e[0].type == MF_MBR_TYPE_EMPTY)
        return storage_fail(st, MF_ECORRUPT,
                            "partition table: partition 1 (the public area) "
                            "is missing");
    if (e[1].type != MF_MBR_TYPE_EMPTY && e[1].type != MF_MBR_TYPE_NON_FS_DATA)
        return storage_fail(st, MF_ECORRUPT,
                            "partition table: partition 2 has type 0x%02X; a secure area has "
                            "type 0x%02X",
                            e[1].type, MF_MBR_TYPE_NON_FS_DATA);
    for (unsigned i = 2; i < MF_MBR_ENTRIES; i++) {
        if (e[i].type != MF_MBR_TYPE_EMPTY)
            return storage_fail(st, MF_ECORRUPT,
                                "partition table: partition %u (type 0x%02X) is not part of a "
                                "storage layout (public area, secure area)",
                                i + 1, e[i].type);
    }
    st->layout.public_first = e[0].start;
    st->layout.public_count = e[0].count;
    if (e[1].type != MF_MBR_TYPE_EMPTY) {
        st->layout.secure_first = e[1].start;
        st->layout.secure_count = e[1].count;
    }
    st->ours = st->mbr.record.state != MF_MBR_STATE_NONE;
    st->interrupted = st->mbr.record.state == MF_MBR_STATE_FORMATTING;
    if (st->ours && !storage_is_fat_type(e[0].type))
        return storage_fail(st, MF_ECORRUPT,
                            "partition table: partition 1 (the public area) has type 0x%02X, "
                            "not FAT",
                            e[0].type);
    storage_set_slices(st);

    /* Another tool's table: ours only if partition 1 holds a FAT (whatever its type byte). */
    if (!st->ours) {
        err = mf_bd_read(&st->public_area.bd, 0, block, 1);
        if (err)
            return storage_io(st, err, "reading the boot sector of partition 1");
        struct storage_fat_boot fat;
        const char *not_fat = storage_parse_fat_boot(block, mf_bd_size(&st->public_area.bd), &fat);
        if (not_fat)
            return storage_fail(st, MF_ECORRUPT,
                                "partition 1 (type 0x%02X, at sector %u) holds no FAT file "
                                "system: %s",
                                e[0].type, e[0].start, not_fat);
    }
    return 0;
}

int mf_storage_recover(struct mf_storage *st)
{
    if (!st->interrupted)
        return 0;
    st->reason[0] = '\0';
    return storage_complete(st);
}

static const char *storage_current_label(const struct mf_storage *st)
{
    return st->ours && st->mbr.record.label[0] ? st->mbr.record.label : MF_STORAGE_LABEL_DEFAULT;
}

int mf_storage_secure_create(struct mf_storage *st, uint32_t volume_id)
{
    st->reason[0] = '\0';
    if (st->layout.secure_count && !st->interrupted)
        return storage_fail(st, MF_EEXIST, "a secure area already exists");
    struct mf_storage_layout layout;
    int err = storage_plan_checked(st, st->bd, true, &layout);
    if (err)
        return err;
    char label[12];
    snprintf(label, sizeof label, "%s", storage_current_label(st));
    return storage_repartition(st, &layout, st->mbr.disk_signature, volume_id, label);
}

int mf_storage_secure_remove(struct mf_storage *st, uint32_t volume_id)
{
    st->reason[0] = '\0';
    if (!st->layout.secure_count && !st->interrupted)
        return storage_fail(st, MF_ENOENT, "there is no secure area to remove");
    struct mf_storage_layout layout;
    int err = storage_plan_checked(st, st->bd, false, &layout);
    if (err)
        return err;
    char label[12];
    snprintf(label, sizeof label, "%s", storage_current_label(st));
    return storage_repartition(st, &layout, st->mbr.disk_signature, volume_id, label);
}

const struct mf_bd *mf_storage_public_area(const struct mf_storage *st)
{
    return &st->public_area.bd;
}

const struct mf_bd *mf_storage_secure_area(const struct mf_storage *st)
{
    return st->layout.secure_count ? &st->secure_area.bd : NULL;
}

int mf_storage_info(struct mf_storage *st, struct mf_storage_info *info)
{
    memset(info, 0, sizeof *info);
    uint32_t bs = st->bd->block_size;
    info->disk_bytes = mf_bd_size(st->bd);
    info->block_size = bs;
    info->disk_signature = st->mbr.disk_signature;
    info->ours = st->ours;
    info->interrupted = st->interrupted;
    info->public_offset = st->layout.public_first * bs;
    info->public_bytes = st->layout.public_count * bs;
    info->public_type = st->mbr.entries[0].type;
    info->secure_area = st->layout.secure_count != 0;
    info->secure_offset = st->layout.secure_first * bs;
    info->secure_bytes = st->layout.secure_count * bs;
    info->secure_type = st->mbr.entries[1].type;
    if (st->interrupted)
        return 0;
    uint8_t boot[MF_STORAGE_BLOCK_MAX];
    int err = mf_bd_read(&st->public_area.bd, 0, boot, 1);
    if (err)
        return storage_io(st, err, "reading the public boot sector");
    struct storage_fat_boot fat;
    if (!storage_parse_fat_boot(boot, info->public_bytes, &fat)) {
        info->fat_type = fat.type;
        info->volume_id = fat.volume_id;
        memcpy(info->label, fat.label, sizeof info->label);
    }
    return 0;
}
