/* FAT12/16/32 with long file names over a block device (see mf_fat.h for the contract).
 * Metadata (FAT and directory sectors) goes through a small write-back cache; file data goes to the
 * device directly. Every on-storage number is range-checked before use and every walk is bounded,
 * so a hostile volume ends in MF_ECORRUPT. */
#include "mf_fat.h"
#include "mf_le.h"

#include "mf_cp437.h"
#include "mf_err.h"
#include "mf_time.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- constants and little-endian helpers ---- */

#define DIRENT_SIZE         32u
#define DIR_ENTRIES_MAX     65536u /* a directory is at most 2 MiB (FAT specification) */
#define LFN_CHARS_PER_ENTRY 13u
#define LFN_ENTRIES_MAX     20u
#define ATTR_LFN            0x0Fu
#define ATTR_LFN_MASK       0x3Fu
#define DELETED_MARK        0xE5u
#define NT_LOWER_BASE       0x08u
#define NT_LOWER_EXT        0x10u
#define FAT12_MAX_CLUSTERS  4084u
#define FAT16_MAX_CLUSTERS  65524u
#define FAT32_MAX_CLUSTERS  0x0FFFFFF5u
#define TAIL_MAX            32767u /* numeric tails ~1..~32767 (a bitmap in the scratch sector) */

/* ---- time ---- */

/* FAT date/time of "now": date in the high 16 bits, time in the low 16 bits. */
static uint32_t fat_now(const struct mf_fat *fs)
{
    if (!fs->clock)
        return (uint32_t)((0u << 9 | 1u << 5 | 1u) << 16);
    int64_t t = fs->clock(fs->clock_context);
    const int64_t lo = 315532800;  /* 1980-01-01 */
    const int64_t hi = 4354819199; /* 2107-12-31 23:59:59 */
    if (t < lo)
        t = lo;
    if (t > hi)
        t = hi;
    struct mf_civil_time c;
    mf_time_to_civil(t, &c);
    uint32_t date = (uint32_t)((c.year - 1980) << 9) | (c.month << 5) | c.day;
    uint32_t time = c.hour << 11 | c.minute << 5 | c.second / 2;
    return date << 16 | time;
}

static int64_t fat_time_to_unix(uint16_t date, uint16_t time)
{
    unsigned day = date & 31u, month = (date >> 5) & 15u;
    int64_t year = 1980 + (date >> 9);
    if (day == 0 || month == 0 || month > 12)
        return 0;
    int64_t t = mf_time_days_from_civil(year, month, day) * 86400;
    unsigned hour = time >> 11, minute = (time >> 5) & 63u, second = (time & 31u) * 2u;
    if (hour < 24 && minute < 60 && second < 60)
        t += hour * 3600 + minute * 60 + second;
    return t;
}

/* ---- the metadata cache ---- */

static bool sector_in_fat1(const struct mf_fat *fs, uint32_t sector)
{
    return sector >= fs->geo.first_fat_sector &&
           sector < fs->geo.first_fat_sector + fs->geo.fat_sectors;
}

/* Every device call of a mounted volume goes through here: a failure, whatever its code (a file
 * device reports a full or read-only host file system as MF_ENOSPC or MF_EROFS, codes the volume
 * itself also gives), marks the change in progress as stopped half-way (see finish). */
static int device(struct mf_fat *fs, int err)
{
    if (err && !fs->device_error)
        fs->device_error = err;
    if (err)
        fs->device_failures++;
    return err;
}

static int dev_read(struct mf_fat *fs, uint32_t sector, void *buf, uint32_t count)
{
    if (sector >= fs->geo.total_sectors || count > fs->geo.total_sectors - sector)
        return MF_ECORRUPT;
    return device(fs, mf_bd_read(fs->bd, (mf_block_t)sector * fs->blocks_per_sector, buf,
                                 (size_t)count * fs->blocks_per_sector));
}

static int dev_write(struct mf_fat *fs, uint32_t sector, const void *buf, uint32_t count)
{
    if (sector >= fs->geo.total_sectors || count > fs->geo.total_sectors - sector)
        return MF_ECORRUPT;
    return device(fs, mf_bd_prog(fs->bd, (mf_block_t)sector * fs->blocks_per_sector, buf,
                                 (size_t)count * fs->blocks_per_sector));
}

static int dev_sync(struct mf_fat *fs)
{
    int err = device(fs, mf_bd_sync(fs->bd));
    if (!err)
        fs->data_unsynced = false;
    return err;
}

static int cache_write_back(struct mf_fat *fs, unsigned i)
{
    struct mf_fat_cache_line *line = &fs->lines[i];
    if (!line->valid || !line->dirty)
        return 0;
    int err = dev_write(fs, line->sector, fs->cache[i], 1);
    /* FAT sectors are cached by their place in the first FAT and mirrored to the others. */
    if (!err && sector_in_fat1(fs, line->sector)) {
        for (uint32_t k = 1; k < fs->geo.fat_count && !err; k++)
            err = dev_write(fs, line->sector + k * fs->geo.fat_sectors, fs->cache[i], 1);
    }
    if (err)
        return err;
    line->dirty = false;
    return 0;
}

/* Returns the cache buffer of `sector`, reading it unless `fill` is false (the caller then
 * overwrites it whole). */
static int cache_get(struct mf_fat *fs, uint32_t sector, bool fill, uint8_t **buf)
{
    unsigned victim = 0;
    for (unsigned i = 0; i < MF_FAT_CACHE_SECTORS; i++) {
        struct mf_fat_cache_line *line = &fs->lines[i];
        if (line->valid && line->sector == sector) {
            line->age = ++fs->age;
            *buf = fs->cache[i];
            return 0;
        }
        if (!line->valid || (fs->lines[victim].valid && line->age < fs->lines[victim].age))
            victim = i;
    }
    int err = cache_write_back(fs, victim);
    if (err)
        return err;
    struct mf_fat_cache_line *line = &fs->lines[victim];
    line->valid = false;
    if (fill) {
        err = dev_read(fs, sector, fs->cache[victim], 1);
        if (err)
            return err;
    }
    line->valid = true;
    line->dirty = false;
    line->sector = sector;
    line->age = ++fs->age;
    *buf = fs->cache[victim];
    return 0;
}

/* Marks the cached copy of `sector` (just obtained with cache_get) as modified. */
static void cache_dirty(struct mf_fat *fs, uint32_t sector)
{
    for (unsigned i = 0; i < MF_FAT_CACHE_SECTORS; i++) {
        if (fs->lines[i].valid && fs->lines[i].sector == sector) {
            fs->lines[i].dirty = true;
            return;
        }
    }
    assert(0 && "cache_dirty on an uncached sector");
}

/* Data written around the cache must not leave a stale cached copy (a cross-linked volume could
 * make a data sector also a directory sector). */
static void cache_forget(struct mf_fat *fs, uint32_t sector, uint32_t count)
{
    for (unsigned i = 0; i < MF_FAT_CACHE_SECTORS; i++) {
        struct mf_fat_cache_line *line = &fs->lines[i];
        if (line->valid && line->sector >= sector && line->sector - sector < count)
            line->valid = false;
    }
}

/* Writes back FAT sectors first, then directory sectors: a cut between them leaves lost
 * clusters (harmless) rather than entries pointing at free clusters. File data written since the
 * last sync is made durable before a directory sector too, so that no entry's size covers bytes
 * the medium does not hold yet (an appended line of zeros after a cut). */
static int cache_flush(struct mf_fat *fs)
{
    bool fat_written = false;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < MF_FAT_CACHE_SECTORS; i++) {
            struct mf_fat_cache_line *line = &fs->lines[i];
            if (!line->valid || !line->dirty || sector_in_fat1(fs, line->sector) != (pass == 0))
                continue;
            if (pass == 1 && (fat_written || fs->data_unsynced)) {
                /* A barrier: a directory entry never reaches the medium before the clusters it
                 * names are allocated there (a disk may reorder unsynced writes). */
                int err = dev_sync(fs);
                if (err)
                    return err;
                fat_written = false;
            }
            int err = cache_write_back(fs, i);
            if (err)
                return err;
            fat_written = fat_written || pass == 0;
        }
    }
    return 0;
}

static int commit(struct mf_fat *fs);

/* ---- the allocation table ---- */

#define FAT_FREE 0u
#define FAT_BAD  0xFFFFFFF7u
#define FAT_EOC  0xFFFFFFFFu

static bool cluster_valid(const struct mf_fat *fs, uint32_t cluster)
{
    return cluster >= 2 && cluster - 2 < fs->geo.cluster_count;
}

static uint32_t cluster_bytes(const struct mf_fat *fs)
{
    return fs->geo.bytes_per_sector * fs->geo.sectors_per_cluster;
}

static uint32_t cluster_sector(const struct mf_fat *fs, uint32_t cluster)
{
    return fs->geo.first_data_sector + (cluster - 2) * fs->geo.sectors_per_cluster;
}

/* Byte offset of the entry of `cluster` within one FAT. */
static uint32_t fat_offset(const struct mf_fat *fs, uint32_t cluster)
{
    switch (fs->geo.type) {
    case MF_FAT12:
        return cluster + cluster / 2;
    case MF_FAT16:
        return cluster * 2;
    default:
        return cluster * 4;
    }
}

static int fat_byte_ptr(struct mf_fat *fs, uint32_t offset, uint8_t **p, uint32_t *sector)
{
    uint32_t bps = fs->geo.bytes_per_sector;
    *sector = fs->geo.first_fat_sector + offset / bps;
    uint8_t *buf;
    int err = cache_get(fs, *sector, true, &buf);
    if (err)
        return err;
    *p = buf + offset % bps;
    return 0;
}

/* Reads the raw entry of `cluster` (which must be valid or 0/1 for the reserved entries). */
static int fat_read_raw(struct mf_fat *fs, uint32_t cluster, uint32_t *raw)
{
    uint32_t offset = fat_offset(fs, cluster), sector;
    uint8_t *p;
    int err = fat_byte_ptr(fs, offset, &p, &sector);
    if (err)
        return err;
    if (fs->geo.type == MF_FAT12) {
        uint32_t lo = *p;
        err = fat_byte_ptr(fs, offset + 1, &p, &sector);
        if (err)
            return err;
        uint32_t v = lo | (uint32_t)*p << 8;
        *raw = (cluster & 1) ? v >> 4 : v & 0xFFFu;
    } else if (fs->geo.type == MF_FAT16) {
        *raw = mf_le16(p);
    } else {
        *raw = mf_le32(p) & 0x0FFFFFFFu;
    }
    return 0;
}

/* The entry of `cluster` as FAT_FREE, FAT_BAD, FAT_EOC or the next cluster number (not yet
 * range-checked: callers that follow it check it). */
static int fat_get(struct mf_fat *fs, uint32_t cluster, uint32_t *next)
{
    assert(cluster_valid(fs, cluster));
    uint32_t raw;
    int err = fat_read_raw(fs, cluster, &raw);
    if (err)
        return err;
    uint32_t bad = fs->geo.type == MF_FAT12   ? 0xFF7u
                   : fs->geo.type == MF_FAT16 ? 0xFFF7u
                                              : 0x0FFFFFF7u;
    if (raw > bad)
        *next = FAT_EOC;
    else if (raw == bad)
        *next = FAT_BAD;
    else
        *next = raw;
    return 0;
}

static int fat_put_raw(struct mf_fat *fs, uint32_t cluster, uint32_t raw)
{
    uint32_t offset = fat_offset(fs, cluster), sector;
    uint8_t *p;
    int err = fat_byte_ptr(fs, offset, &p, &sector);
    if (err)
        return err;
    if (fs->geo.type == MF_FAT12) {
        if (cluster & 1)
            *p = (uint8_t)((*p & 0x0Fu) | (raw << 4));
        else
            *p = (uint8_t)raw;
        cache_dirty(fs, sector);
        err = fat_byte_ptr(fs, offset + 1, &p, &sector);
        if (err)
            return err;
        if (cluster & 1)
            *p = (uint8_t)(raw >> 4);
        else
            *p = (uint8_t)((*p & 0xF0u) | ((raw >> 8) & 0x0Fu));
    } else if (fs->geo.type == MF_FAT16) {
        mf_put_le16(p, raw);
    } else {
        mf_put_le32(p, (mf_le32(p) & 0xF0000000u) | (raw & 0x0FFFFFFFu));
    }
    cache_dirty(fs, sector);
    return 0;
}

/* Sets the entry of `cluster` to FAT_FREE, FAT_EOC or a next cluster, keeping the free count. */
static int fat_set(struct mf_fat *fs, uint32_t cluster, uint32_t value)
{
    assert(cluster_valid(fs, cluster));
    uint32_t old;
    int err = fat_read_raw(fs, cluster, &old);
    if (err)
        return err;
    uint32_t raw = value;
    if (value == FAT_EOC)
        raw = fs->geo.type == MF_FAT12 ? 0xFFFu : fs->geo.type == MF_FAT16 ? 0xFFFFu : 0x0FFFFFFFu;
    err = fat_put_raw(fs, cluster, raw);
    if (err)
        return err;
    if (fs->free_count != 0xFFFFFFFFu) {
        if (old == 0 && raw != 0)
            fs->free_count--;
        else if (old != 0 && raw == 0)
            fs->free_count++;
    }
    fs->fsinfo_dirty = true;
    return 0;
}

static int count_free(struct mf_fat *fs)
{
    uint32_t n = 0;
    for (uint32_t c = 2; c < fs->geo.cluster_count + 2; c++) {
        uint32_t raw;
        int err = fat_read_raw(fs, c, &raw);
        if (err)
            return err;
        n += raw == 0;
    }
    fs->free_count = n;
    return 0;
}

/* Finds a free cluster and marks it end-of-chain. MF_ENOSPC when there is none. */
static int cluster_alloc(struct mf_fat *fs, uint32_t *cluster)
{
    uint32_t n = fs->geo.cluster_count;
    if (fs->free_count == 0)
        return MF_ENOSPC;
    uint32_t start = fs->next_free;
    if (!cluster_valid(fs, start))
        start = 2;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = 2 + (start - 2 + i) % n, raw;
        int err = fat_read_raw(fs, c, &raw);
        if (err)
            return err;
        if (raw == 0) {
            err = fat_set(fs, c, FAT_EOC);
            if (err)
                return err;
            fs->next_free = c + 1;
            *cluster = c;
            return 0;
        }
    }
    fs->free_count = 0;
    return MF_ENOSPC;
}

/* Follows the chain from `cluster` one step; MF_ECORRUPT for anything but a valid cluster or
 * the end (`*next` = FAT_EOC). */
static int chain_next(struct mf_fat *fs, uint32_t cluster, uint32_t *next)
{
    int err = fat_get(fs, cluster, next);
    if (err)
        return err;
    if (*next == FAT_EOC)
        return 0;
    if (!cluster_valid(fs, *next))
        return MF_ECORRUPT;
    return 0;
}

/* Frees the chain starting at `cluster` (bounded: a loop is reported, not followed forever). */
static int chain_free(struct mf_fat *fs, uint32_t cluster)
{
    for (uint32_t steps = 0; cluster != FAT_EOC; steps++) {
        if (steps > fs->geo.cluster_count || !cluster_valid(fs, cluster))
            return MF_ECORRUPT;
        uint32_t next;
        int err = fat_get(fs, cluster, &next);
        if (err)
            return err;
        if (next == FAT_FREE)
            return MF_ECORRUPT; /* a chain runs into a free cluster: stop, nothing to free */
        err = fat_set(fs, cluster, FAT_FREE);
        if (err)
            return err;
        if (next != FAT_EOC && !cluster_valid(fs, next))
            return MF_ECORRUPT;
        cluster = next;
    }
    return 0;
}

/* Zeroes a cluster on the device (new directory clusters must read as empty). */
static int cluster_zero(struct mf_fat *fs, uint32_t cluster)
{
    uint32_t first = cluster_sector(fs, cluster);
    memset(fs->scratch, 0, fs->geo.bytes_per_sector);
    for (uint32_t s = 0; s < fs->geo.sectors_per_cluster; s++) {
        int err = dev_write(fs, first + s, fs->scratch, 1);
        if (err)
            return err;
    }
    cache_forget(fs, first, fs->geo.sectors_per_cluster);
    return 0;
}

/* ---- names ---- */

/* Simple upper-case mapping for the scripts users name files in most: ASCII, Latin-1,
 * Latin Extended-A, Greek and Cyrillic. Other characters compare exactly. */
static uint16_t upcase16(uint16_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') ? (uint16_t)(c - 32) : c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
        return (uint16_t)(c - 32);
    if (c == 0xFF)
        return 0x178;
    if (c >= 0x100 && c <= 0x17F) {
        bool odd_lower = (c <= 0x137) || (c >= 0x14A && c <= 0x177);
        bool even_lower = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if ((odd_lower && (c & 1)) || (even_lower && !(c & 1)))
            return (uint16_t)(c - 1);
        return c;
    }
    if ((c >= 0x3B1 && c <= 0x3C1) || (c >= 0x3C3 && c <= 0x3CB))
        return (uint16_t)(c - 32);
    if (c == 0x3C2)
        return 0x3A3;
    /* Greek with tonos: ά έ ή ί and ό ύ ώ. */
    if (c == 0x3AC)
        return 0x386;
    if (c >= 0x3AD && c <= 0x3AF)
        return (uint16_t)(c - 37);
    if (c == 0x3CC)
        return 0x38C;
    if (c == 0x3CD || c == 0x3CE)
        return (uint16_t)(c - 63);
    if (c >= 0x430 && c <= 0x44F)
        return (uint16_t)(c - 32);
    if (c >= 0x450 && c <= 0x45F)
        return (uint16_t)(c - 80);
    return c;
}

static bool name_equal(const uint16_t *a, size_t alen, const uint16_t *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (upcase16(a[i]) != upcase16(b[i]))
            return false;
    }
    return true;
}

/* Decodes UTF-8 into UTF-16. MF_ENAME for invalid UTF-8, MF_ENAMETOOLONG past `max` units. */
static int utf8_to_utf16(const char *s, size_t len, uint16_t *out, size_t max, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t bytes = mf_utf8_decode(s + i, len - i, &c);
        if (!bytes)
            return MF_ENAME;
        i += bytes;
        if (c >= 0x10000) {
            if (k + 2 > max)
                return MF_ENAMETOOLONG;
            c -= 0x10000;
            out[k++] = (uint16_t)(0xD800 | (c >> 10));
            out[k++] = (uint16_t)(0xDC00 | (c & 0x3FF));
        } else {
            if (k + 1 > max)
                return MF_ENAMETOOLONG;
            out[k++] = (uint16_t)c;
        }
    }
    *n = k;
    return 0;
}

/* Encodes UTF-16 (unpaired surrogates become U+FFFD) as NUL-terminated UTF-8. `size` must be at
 * least 3 * n + 1. */
static void utf16_to_utf8(const uint16_t *in, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && in[i + 1] >= 0xDC00 && in[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (in[i + 1] - 0xDC00u);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD;
        }
        uint8_t buf[4];
        size_t len;
        if (c < 0x80) {
            buf[0] = (uint8_t)c, len = 1;
        } else if (c < 0x800) {
            buf[0] = (uint8_t)(0xC0 | (c >> 6)), buf[1] = (uint8_t)(0x80 | (c & 0x3F)), len = 2;
        } else if (c < 0x10000) {
            buf[0] = (uint8_t)(0xE0 | (c >> 12)), buf[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            buf[2] = (uint8_t)(0x80 | (c & 0x3F)), len = 3;
        } else {
            buf[0] = (uint8_t)(0xF0 | (c >> 18)), buf[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
            buf[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)), buf[3] = (uint8_t)(0x80 | (c & 0x3F));
            len = 4;
        }
        if (k + len + 1 > size)
            break;
        memcpy(out + k, buf, len);
        k += len;
    }
    out[k] = '\0';
}

/* A path component as a lookup key: UTF-16, trailing dots and spaces removed. */
struct name {
    /* Room for the longest name a parse accepts (255 + 2) and for the 20 * 13 characters of a
     * hostile long-name sequence. */
    uint16_t c[LFN_ENTRIES_MAX * LFN_CHARS_PER_ENTRY];
    size_t len;
};

_Static_assert(sizeof(((struct name *)0)->c) / sizeof(uint16_t) >= MF_FAT_NAME_MAX + 2,
               "name buffer");

bool mf_fat_names_match(const char *a, const char *b)
{
    struct name x, y;
    if (utf8_to_utf16(a, strlen(a), x.c, MF_FAT_NAME_MAX, &x.len) != 0 ||
        utf8_to_utf16(b, strlen(b), y.c, MF_FAT_NAME_MAX, &y.len) != 0)
        return false;
    return name_equal(x.c, x.len, y.c, y.len);
}

static bool lfn_char_valid(uint16_t c)
{
    return c >= 0x20 && !strchr("\"*/:<>?\\|", c < 0x80 ? (int)c : 'a');
}

/* Parses one component; MF_ENAME for names no FAT volume can hold. */
static int name_parse(const char *s, size_t len, struct name *name)
{
    int err = utf8_to_utf16(s, len, name->c, MF_FAT_NAME_MAX + 2, &name->len);
    if (err == MF_ENAMETOOLONG || (!err && name->len > MF_FAT_NAME_MAX))
        return MF_ENAMETOOLONG;
    if (err)
        return err;
    while (name->len > 0 && (name->c[name->len - 1] == '.' || name->c[name->len - 1] == ' '))
        name->len--;
    if (name->len == 0)
        return MF_ENAME;
    for (size_t i = 0; i < name->len; i++) {
        if (!lfn_char_valid(name->c[i]))
            return MF_ENAME;
    }
    return 0;
}

static bool sfn_char_valid(uint16_t c)
{
    if (c >= 'A' && c <= 'Z')
        return true;
    if (c >= '0' && c <= '9')
        return true;
    return c < 0x80 && c > 0x20 && strchr("!#$%&'()-@^_`{}~", (int)c) != NULL;
}

/* How a name maps to an 8.3 entry. */
enum sfn_fit {
    SFN_EXACT,    /* stored as 8.3 alone; case kept by the NT case bits */
    SFN_LOSSLESS, /* upper-cased it is a valid 8.3 name, but the case is mixed: needs an LFN */
    SFN_LOSSY,    /* needs an LFN and a generated short name with a numeric tail */
};

static enum sfn_fit sfn_from_name(const struct name *name, uint8_t sfn[11], uint8_t *nt)
{
    memset(sfn, ' ', 11);
    *nt = 0;
    size_t dot = name->len;
    for (size_t i = 0; i < name->len; i++) {
        if (name->c[i] == '.') {
            if (dot != name->len)
                return SFN_LOSSY; /* two dots */
            dot = i;
        }
    }
    size_t base_len = dot, ext_len = dot < name->len ? name->len - dot - 1 : 0;
    if (base_len == 0 || base_len > 8 || ext_len > 3 || (dot < name->len && ext_len == 0))
        return SFN_LOSSY;
    bool lower[2] = {false, false}, upper[2] = {false, false};
    for (size_t i = 0; i < name->len; i++) {
        if (i == dot)
            continue;
        uint16_t c = name->c[i], u = upcase16(c);
        if (!sfn_char_valid(u))
            return SFN_LOSSY;
        int part = i > dot;
        if (c != u)
            lower[part] = true;
        else if (c >= 'A' && c <= 'Z')
            upper[part] = true;
        sfn[part ? 8 + (i - dot - 1) : i] = (uint8_t)u;
    }
    if ((lower[0] && upper[0]) || (lower[1] && upper[1]))
        return SFN_LOSSLESS;
    *nt = (uint8_t)((lower[0] ? NT_LOWER_BASE : 0) | (lower[1] ? NT_LOWER_EXT : 0));
    return SFN_EXACT;
}

/* The basis of a generated short name (Windows' rules, simplified): upper case, characters
 * without an 8.3 form become '_', spaces and leading dots dropped, the last dot starts the
 * extension. */
static void sfn_basis(const struct name *name, uint8_t sfn[11], size_t *base_len)
{
    memset(sfn, ' ', 11);
    size_t last_dot = name->len;
    for (size_t i = 0; i < name->len; i++) {
        if (name->c[i] == '.')
            last_dot = i;
    }
    size_t start = 0;
    while (start < name->len && (name->c[start] == '.' || name->c[start] == ' '))
        start++;
    if (last_dot < start)
        last_dot = name->len; /* the only dots were leading ones */
    size_t b = 0, e = 0;
    for (size_t i = start; i < name->len; i++) {
        uint16_t c = upcase16(name->c[i]);
        if (c == ' ' || (c == '.' && i != last_dot))
            continue;
        if (i == last_dot)
            continue;
        uint8_t out = sfn_char_valid(c) ? (uint8_t)c : '_';
        if (i < last_dot) {
            if (b < 8)
                sfn[b++] = out;
        } else if (e < 3) {
            sfn[8 + e++] = out;
        }
    }
    if (b == 0)
        sfn[b++] = '_';
    *base_len = b;
}

static uint8_t sfn_checksum(const uint8_t sfn[11])
{
    uint8_t sum = 0;
    for (int i = 0; i < 11; i++)
        sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + sfn[i]);
    return sum;
}

/* The lower case of a short name's upper-case letter, as the NT case bits ask: ASCII and the
 * upper-case letters code page 437 has (Latin-1's and Greek's). */
static uint16_t downcase_sfn(uint16_t c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
        (c >= 0x391 && c <= 0x3A9 && c != 0x3A2))
        return (uint16_t)(c + 32);
    return c;
}

/* The name a short entry shows: decoded from code page 437, NT case bits applied. */
static void sfn_display(const uint8_t *entry, struct name *out)
{
    size_t k = 0;
    uint8_t nt = entry[12];
    for (int part = 0; part < 2; part++) {
        int from = part ? 8 : 0, to = part ? 11 : 8, end = to;
        while (end > from && entry[end - 1] == ' ')
            end--;
        if (part && end > from)
            out->c[k++] = '.';
        for (int i = from; i < end; i++) {
            uint8_t b = entry[i];
            if (i == 0 && b == 0x05)
                b = 0xE5;
            uint16_t c = b < 0x20 ? 0xFFFD : mf_cp437_decode(b);
            if (nt & (part ? NT_LOWER_EXT : NT_LOWER_BASE))
                c = downcase_sfn(c);
            out->c[k++] = c;
        }
    }
    out->len = k;
}

static void sfn_string(const uint8_t *entry, char out[13])
{
    size_t k = 0;
    /* Kept printable ASCII: bytes of other code pages show as '?'. */
    for (int i = 0; i < 11; i++) {
        if (i < 8 && entry[i] == ' ') {
            i = 7;
            continue;
        }
        if (entry[i] == ' ')
            break;
        if (i == 8)
            out[k++] = '.';
        out[k++] = (entry[i] < 0x20 || entry[i] >= 0x7F) ? '?' : (char)entry[i];
    }
    out[k] = '\0';
}

/* ---- directories ---- */

/* A position in a directory: the fixed FAT12/16 root (first_cluster 0) or a cluster chain. */
struct dir_iter {
    uint32_t first_cluster;
    uint32_t cluster;       /* cluster holding entry `index` (or the last one reached) */
    uint32_t cluster_index; /* index of `cluster` in the chain */
    uint32_t index;         /* entry index */
};

static uint32_t root_dir_cluster(const struct mf_fat *fs)
{
    return fs->geo.type == MF_FAT32 ? fs->geo.root_cluster : 0;
}

static void dir_iter_init(struct dir_iter *it, uint32_t first_cluster, uint32_t index)
{
    it->first_cluster = first_cluster;
    it->cluster = first_cluster;
    it->cluster_index = 0;
    it->index = index;
}

static int dir_locate(struct mf_fat *fs, struct dir_iter *it, uint32_t *sector, uint32_t *offset);

/* At the 2 MiB limit of a directory: 0 when its chain ends there, MF_ECORRUPT when it goes on
 * (a loop, or a directory no FAT may have). */
static int dir_past_limit(struct mf_fat *fs, struct dir_iter *it)
{
    if (it->first_cluster == 0)
        return 0;
    uint32_t per_cluster = fs->geo.bytes_per_sector / DIRENT_SIZE * fs->geo.sectors_per_cluster;
    uint32_t last = (DIR_ENTRIES_MAX - 1) / per_cluster;
    struct dir_iter probe;
    uint32_t sector, offset;
    dir_iter_init(&probe, it->first_cluster, (last + 1) * per_cluster - 1);
    int r = dir_locate(fs, &probe, &sector, &offset);
    if (r < 0)
        return r;
    if (r == 0)
        return 0; /* shorter than the limit */
    uint32_t next;
    int err = chain_next(fs, probe.cluster, &next);
    if (err)
        return err;
    return next == FAT_EOC ? 0 : MF_ECORRUPT;
}

/* Finds the sector and byte offset of entry it->index. Returns 1, 0 past the end of the
 * directory (it->cluster then holds the last cluster), or an error. */
static int dir_locate(struct mf_fat *fs, struct dir_iter *it, uint32_t *sector, uint32_t *offset)
{
    uint32_t per_sector = fs->geo.bytes_per_sector / DIRENT_SIZE;
    if (it->index >= DIR_ENTRIES_MAX)
        return dir_past_limit(fs, it);
    if (it->first_cluster == 0) {
        if (it->index >= fs->geo.root_entries)
            return 0;
        *sector = fs->geo.first_root_sector + it->index / per_sector;
        *offset = (it->index % per_sector) * DIRENT_SIZE;
        return 1;
    }
    if (!cluster_valid(fs, it->first_cluster))
        return MF_ECORRUPT;
    uint32_t per_cluster = per_sector * fs->geo.sectors_per_cluster;
    uint32_t want = it->index / per_cluster;
    if (want < it->cluster_index || !cluster_valid(fs, it->cluster)) {
        it->cluster = it->first_cluster;
        it->cluster_index = 0;
    }
    while (it->cluster_index < want) { /* bounded: want < DIR_ENTRIES_MAX */
        uint32_t next;
        int err = chain_next(fs, it->cluster, &next);
        if (err)
            return err;
        if (next == FAT_EOC)
            return 0;
        it->cluster = next;
        it->cluster_index++;
    }
    uint32_t within = it->index % per_cluster;
    *sector = cluster_sector(fs, it->cluster) + within / per_sector;
    *offset = (within % per_sector) * DIRENT_SIZE;
    return 1;
}

/* Pointer to entry it->index in the cache (valid until the next cache call). 1/0/error as
 * dir_locate. */
static int dir_entry(struct mf_fat *fs, struct dir_iter *it, uint8_t **entry, uint32_t *sector,
                     uint32_t *offset)
{
    *entry = NULL;
    *sector = 0;
    *offset = 0;
    int found = dir_locate(fs, it, sector, offset);
    if (found <= 0)
        return found;
    uint8_t *buf;
    int err = cache_get(fs, *sector, true, &buf);
    if (err)
        return err;
    *entry = buf + *offset;
    return 1;
}

/* One directory entry as found by a scan. */
struct found {
    uint32_t dir;        /* first cluster of the directory holding it (0 = fixed root) */
    uint32_t first_slot; /* index of its first LFN entry (== slot without LFN) */
    uint32_t slot;       /* index of its 8.3 entry */
    uint32_t sector;     /* where the 8.3 entry is */
    uint16_t offset;
    uint8_t entry[DIRENT_SIZE];
    bool has_lfn;
    struct name lfn;
};

static bool entry_is_dir(const uint8_t *entry)
{
    return (entry[11] & MF_FAT_ATTR_DIRECTORY) != 0;
}

static uint32_t entry_cluster(const struct mf_fat *fs, const uint8_t *entry)
{
    uint32_t c = mf_le16(entry + 26);
    if (fs->geo.type == MF_FAT32)
        c |= (uint32_t)mf_le16(entry + 20) << 16;
    return c;
}

static void entry_set_cluster(uint8_t *entry, uint32_t cluster)
{
    mf_put_le16(entry + 26, cluster & 0xFFFFu);
    mf_put_le16(entry + 20, cluster >> 16);
}

/* Advances `it` to the next visible entry (skipping deleted entries, volume labels, "." and
 * ".."), assembling its long name. Returns 1 with `f` filled, 0 at the end, or an error. */
static int dir_next(struct mf_fat *fs, struct dir_iter *it, struct found *f)
{
    uint8_t lfn_sum = 0, lfn_next = 0; /* next expected LFN sequence number, 0 = none */
    uint32_t lfn_start = 0, lfn_count = 0;
    for (;; it->index++) {
        uint8_t *e;
        uint32_t sector, offset;
        int r = dir_entry(fs, it, &e, &sector, &offset);
        if (r <= 0)
            return r;
        if (e[0] == 0x00)
            return 0;
        if (e[0] == DELETED_MARK) {
            lfn_next = 0;
            continue;
        }
        if ((e[11] & ATTR_LFN_MASK) == ATTR_LFN) {
            uint8_t seq = e[0] & 0x1Fu;
            if (e[0] & 0x40u) {
                if (seq == 0 || seq > LFN_ENTRIES_MAX) {
                    lfn_next = 0;
                    continue;
                }
                lfn_sum = e[13];
                lfn_start = it->index;
                lfn_count = seq;
                for (size_t i = 0; i < (size_t)seq * LFN_CHARS_PER_ENTRY; i++)
                    f->lfn.c[i] = 0xFFFF;
            } else if (lfn_next == 0 || seq != lfn_next || e[13] != lfn_sum) {
                lfn_next = 0;
                continue;
            }
            static const uint8_t char_offsets[LFN_CHARS_PER_ENTRY] = {1,  3,  5,  7,  9,  14, 16,
                                                                      18, 20, 22, 24, 28, 30};
            size_t base = (size_t)(seq - 1) * LFN_CHARS_PER_ENTRY;
            for (size_t i = 0; i < LFN_CHARS_PER_ENTRY; i++)
                f->lfn.c[base + i] = mf_le16(e + char_offsets[i]);
            lfn_next = (uint8_t)(seq - 1);
            if (lfn_next == 0)
                lfn_next = 0xFF; /* complete: the 8.3 entry must follow */
            continue;
        }
        if ((e[11] & MF_FAT_ATTR_VOLUME_ID) || e[0] == '.') {
            lfn_next = 0;
            continue;
        }
        f->has_lfn = false;
        if (lfn_next == 0xFF && lfn_sum == sfn_checksum(e)) {
            size_t len = 0, max = (size_t)lfn_count * LFN_CHARS_PER_ENTRY;
            while (len < max && f->lfn.c[len] != 0)
                len++;
            if (len > 0 && len <= MF_FAT_NAME_MAX) {
                f->has_lfn = true;
                f->lfn.len = len;
            }
        }
        f->dir = it->first_cluster;
        f->first_slot = f->has_lfn ? lfn_start : it->index;
        f->slot = it->index;
        f->sector = sector;
        f->offset = (uint16_t)offset;
        memcpy(f->entry, e, DIRENT_SIZE);
        it->index++;
        return 1;
    }
}

/* Looks `name` up in directory `dir`: 1 found, 0 not there, or an error. */
static int dir_find(struct mf_fat *fs, uint32_t dir, const struct name *name, struct found *f)
{
    struct dir_iter it;
    dir_iter_init(&it, dir, 0);
    for (;;) {
        int r = dir_next(fs, &it, f);
        if (r <= 0)
            return r;
        if (f->has_lfn && name_equal(name->c, name->len, f->lfn.c, f->lfn.len))
            return 1;
        struct name shown;
        sfn_display(f->entry, &shown);
        if (name_equal(name->c, name->len, shown.c, shown.len))
            return 1;
    }
}

/* Assembles a new 8.3 entry's fixed fields. */
static void entry_init(const struct mf_fat *fs, uint8_t e[DIRENT_SIZE], uint8_t attr,
                       uint32_t cluster)
{
    memset(e, 0, DIRENT_SIZE);
    e[11] = attr;
    uint32_t now = fat_now(fs);
    mf_put_le16(e + 14, now & 0xFFFFu);
    mf_put_le16(e + 16, now >> 16);
    mf_put_le16(e + 18, now >> 16);
    mf_put_le16(e + 22, now & 0xFFFFu);
    mf_put_le16(e + 24, now >> 16);
    entry_set_cluster(e, cluster);
}

/* Picks the smallest free numeric tail for a generated short name in `dir`. The scratch sector
 * serves as the bitmap of tails in use. */
static int dir_pick_tail(struct mf_fat *fs, uint32_t dir, uint8_t sfn[11], size_t base_len)
{
    uint8_t *used = fs->scratch;
    memset(used, 0, (TAIL_MAX + 8) / 8);
    struct dir_iter it;
    struct found f;
    dir_iter_init(&it, dir, 0);
    for (;;) {
        int r = dir_next(fs, &it, &f);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        const uint8_t *e = f.entry;
        if (memcmp(e + 8, sfn + 8, 3) != 0)
            continue;
        size_t t = 1;
        while (t < 7 && e[t] != '~')
            t++;
        if (t >= 7)
            continue;
        size_t d = t + 1;
        uint32_t num = 0;
        while (d < 8 && e[d] >= '0' && e[d] <= '9' && num <= TAIL_MAX)
            num = num * 10 + (uint32_t)(e[d++] - '0');
        size_t digits = d - t - 1, rest = d;
        while (rest < 8 && e[rest] == ' ')
            rest++;
        if (digits == 0 || num == 0 || num > TAIL_MAX || rest != 8)
            continue;
        size_t prefix = base_len < 7 - digits ? base_len : 7 - digits;
        if (t != prefix || memcmp(e, sfn, prefix) != 0)
            continue;
        used[num / 8] = (uint8_t)(used[num / 8] | (1u << (num % 8)));
    }
    for (uint32_t num = 1; num <= TAIL_MAX; num++) {
        if (used[num / 8] & (1u << (num % 8)))
            continue;
        char digits[8];
        size_t nd = 0;
        for (uint32_t v = num; v; v /= 10)
            digits[nd++] = (char)('0' + v % 10);
        size_t prefix = base_len < 7 - nd ? base_len : 7 - nd;
        size_t k = prefix;
        sfn[k++] = '~';
        while (nd)
            sfn[k++] = (uint8_t)digits[--nd];
        while (k < 8)
            sfn[k++] = ' ';
        return 0;
    }
    return MF_ENOSPC;
}

/* Looks for `needed` consecutive free entries in `dir`. Returns 1 with *start at the first of
 * them; 0 when the folder has no such run: then *start and *run are the free entries at its end
 * (the run to grow), it->cluster its last cluster; or an error. */
static int dir_free_run(struct mf_fat *fs, uint32_t dir, uint32_t needed, struct dir_iter *it,
                        uint32_t *start, uint32_t *run)
{
    bool ended = false; /* after the end marker every entry counts as free */
    *run = 0;
    *start = 0;
    dir_iter_init(it, dir, 0);
    for (;; it->index++) {
        uint8_t *e;
        uint32_t sector, offset;
        int r = dir_entry(fs, it, &e, &sector, &offset);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (e[0] == 0x00)
            ended = true;
        if (!ended && e[0] != DELETED_MARK) {
            *run = 0;
            continue;
        }
        if ((*run)++ == 0)
            *start = it->index;
        if (*run == needed)
            return 1;
    }
    if (dir == 0)
        return MF_ENOSPC; /* the fixed root of FAT12/16 cannot grow */
    if (*run == 0)
        *start = it->index;
    if (*start + needed > DIR_ENTRIES_MAX)
        return MF_ENOSPC;
    return 0;
}

/* Finds `needed` consecutive free entries in `dir`, growing a cluster directory when full. */
static int dir_alloc_slots(struct mf_fat *fs, uint32_t dir, uint32_t needed, uint32_t *first)
{
    struct dir_iter it;
    uint32_t run, start;
    int r = dir_free_run(fs, dir, needed, &it, &start, &run);
    if (r < 0)
        return r;
    *first = start;
    if (r == 1)
        return 0;
    uint32_t per_cluster = fs->geo.bytes_per_sector / DIRENT_SIZE * fs->geo.sectors_per_cluster;
    uint32_t last = it.cluster;
    while (run < needed) {
        uint32_t c;
        int err = cluster_alloc(fs, &c);
        if (!err)
            err = cluster_zero(fs, c);
        if (!err)
            err = fat_set(fs, last, c);
        if (err)
            return err;
        last = c;
        run += per_cluster;
    }
    return 0;
}

/* Writes `entry` (32 bytes) at it->index. */
static int dir_put(struct mf_fat *fs, struct dir_iter *it, const uint8_t *entry, uint32_t *sector,
                   uint32_t *offset)
{
    uint8_t *e;
    int r = dir_entry(fs, it, &e, sector, offset);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ECORRUPT;
    memcpy(e, entry, DIRENT_SIZE);
    cache_dirty(fs, *sector);
    return 0;
}

/* Adds `name` to `dir` with the fixed fields of `proto` (attributes, cluster, size, times).
 * `avoid` is a short name that must not be reused (a case-only rename keeps the old entry until
 * the new one is written). */
static int dir_add(struct mf_fat *fs, uint32_t dir, const struct name *name, const uint8_t *proto,
                   const uint8_t *avoid, struct found *f)
{
    uint8_t sfn[11], nt;
    enum sfn_fit fit = sfn_from_name(name, sfn, &nt);
    if (fit != SFN_LOSSY && avoid && memcmp(sfn, avoid, 11) == 0)
        fit = SFN_LOSSY;
    if (fit == SFN_LOSSY) {
        size_t base_len;
        sfn_basis(name, sfn, &base_len);
        nt = 0;
        int err = dir_pick_tail(fs, dir, sfn, base_len);
        if (err)
            return err;
    }
    uint32_t lfn_entries = fit == SFN_EXACT ? 0 : (uint32_t)(name->len + 12) / 13;
    uint32_t first = 0;
    int err = dir_alloc_slots(fs, dir, lfn_entries + 1, &first);
    if (err)
        return err;
    static const uint8_t char_offsets[LFN_CHARS_PER_ENTRY] = {1,  3,  5,  7,  9,  14, 16,
                                                              18, 20, 22, 24, 28, 30};
    uint8_t sum = sfn_checksum(sfn), e[DIRENT_SIZE];
    uint32_t sector = 0, offset, previous = 0;
    struct dir_iter it;
    /* Sector by sector from the first entry, each made durable before the next: a cut then
     * leaves a long name whose end is missing (fsck.fat deletes such an orphaned part), never
     * the end of a long name without its start (which fsck.fat leaves alone). */
    dir_iter_init(&it, dir, first);
    for (uint32_t k = lfn_entries; k >= 1; k--, it.index++) {
        memset(e, 0, sizeof e);
        e[0] = (uint8_t)(k | (k == lfn_entries ? 0x40u : 0u));
        e[11] = ATTR_LFN;
        e[13] = sum;
        for (size_t i = 0; i < LFN_CHARS_PER_ENTRY; i++) {
            size_t pos = (size_t)(k - 1) * LFN_CHARS_PER_ENTRY + i;
            uint16_t c = pos < name->len ? name->c[pos] : pos == name->len ? 0x0000 : 0xFFFF;
            mf_put_le16(e + char_offsets[i], c);
        }
        err = dir_locate(fs, &it, &sector, &offset);
        if (err < 0)
            return err;
        if (k != lfn_entries && sector != previous && (err = commit(fs)) != 0)
            return err;
        previous = sector;
        err = dir_put(fs, &it, e, &sector, &offset);
        if (err)
            return err;
    }
    memcpy(e, proto, DIRENT_SIZE);
    memcpy(e, sfn, 11);
    e[12] = nt;
    err = dir_locate(fs, &it, &sector, &offset);
    if (err < 0)
        return err;
    if (lfn_entries && sector != previous && (err = commit(fs)) != 0)
        return err;
    err = dir_put(fs, &it, e, &sector, &offset);
    if (err)
        return err;
    f->dir = dir;
    f->first_slot = first;
    f->slot = it.index;
    f->sector = sector;
    f->offset = (uint16_t)offset;
    memcpy(f->entry, e, DIRENT_SIZE);
    f->has_lfn = lfn_entries > 0;
    f->lfn = *name;
    return 0;
}

/* Marks an entry and its long-name entries deleted, from the 8.3 entry backwards, sector by
 * sector, each durable before the next (the mirror image of dir_add): a cut leaves at most the
 * start of a long name, which fsck.fat deletes as an orphaned part. With `replacement`, the 8.3
 * entry becomes that entry instead (a rename in place): only the long name goes. */
static int dir_remove(struct mf_fat *fs, const struct found *f, const uint8_t *replacement)
{
    struct dir_iter it;
    uint32_t previous = f->sector;
    for (uint32_t index = f->slot + 1; index-- > f->first_slot;) {
        uint8_t *e;
        uint32_t sector, offset;
        dir_iter_init(&it, f->dir, index);
        int r = dir_locate(fs, &it, &sector, &offset);
        if (r < 0)
            return r;
        if (r == 0)
            return MF_ECORRUPT;
        if (sector != previous) {
            int err = commit(fs);
            if (err)
                return err;
            previous = sector;
        }
        r = dir_entry(fs, &it, &e, &sector, &offset);
        if (r < 0)
            return r;
        if (r == 0)
            return MF_ECORRUPT;
        if (replacement && index == f->slot)
            memcpy(e, replacement, DIRENT_SIZE);
        else
            e[0] = DELETED_MARK;
        cache_dirty(fs, sector);
    }
    return 0;
}

/* ---- paths ---- */

struct path {
    char buf[MF_FAT_PATH_MAX];
    uint16_t start[MF_FAT_DEPTH_MAX], len[MF_FAT_DEPTH_MAX];
    unsigned count;
};

/* Splits a path into components ('/' or '\\' separated), dropping "." and resolving ".." against
 * the components before it. MF_ENAME when ".." would leave the root. */
static int path_split(const char *path, struct path *p)
{
    size_t n = 0;
    while (n < MF_FAT_PATH_MAX && path[n])
        n++;
    if (n >= MF_FAT_PATH_MAX)
        return MF_ENAMETOOLONG;
    memcpy(p->buf, path, n + 1);
    p->count = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (p->buf[i] == '/' || p->buf[i] == '\\'))
            i++;
        size_t s = i;
        while (i < n && p->buf[i] != '/' && p->buf[i] != '\\')
            i++;
        size_t len = i - s;
        if (len == 0)
            break;
        if (len == 1 && p->buf[s] == '.')
            continue;
        if (len == 2 && p->buf[s] == '.' && p->buf[s + 1] == '.') {
            if (p->count == 0)
                return MF_ENAME;
            p->count--;
            continue;
        }
        if (p->count >= MF_FAT_DEPTH_MAX)
            return MF_ENAMETOOLONG;
        p->start[p->count] = (uint16_t)s;
        p->len[p->count] = (uint16_t)len;
        p->count++;
    }
    return 0;
}

static int path_name(const struct path *p, unsigned i, struct name *name)
{
    return name_parse(p->buf + p->start[i], p->len[i], name);
}

/* Walks the first `count` components, all folders, to the directory they name. `visited`
 * (optional, `count` long) receives the cluster of each. */
static int path_walk(struct mf_fat *fs, const struct path *p, unsigned count, uint32_t *dir,
                     uint32_t *visited)
{
    uint32_t d = root_dir_cluster(fs);
    for (unsigned i = 0; i < count; i++) {
        struct name name;
        struct found f;
        int err = path_name(p, i, &name);
        if (err)
            return err;
        int r = dir_find(fs, d, &name, &f);
        if (r < 0)
            return r;
        if (r == 0)
            return MF_ENOENT;
        if (!entry_is_dir(f.entry))
            return MF_ENOTDIR;
        d = entry_cluster(fs, f.entry);
        if (!cluster_valid(fs, d))
            return MF_ECORRUPT;
        if (visited)
            visited[i] = d;
    }
    *dir = d;
    return 0;
}

struct lookup {
    struct path path;
    bool is_root;    /* the path names the root folder */
    uint32_t parent; /* folder holding the last component */
    struct name last;
    struct found f; /* the entry, when found */
    uint32_t visited[MF_FAT_DEPTH_MAX];
};

/* Resolves `path`: 1 found, 0 when only the last component is missing, or an error. */
static int lookup(struct mf_fat *fs, const char *path, struct lookup *l)
{
    int err = path_split(path, &l->path);
    if (err)
        return err;
    l->is_root = l->path.count == 0;
    if (l->is_root)
        return 1;
    unsigned last = l->path.count - 1;
    err = path_walk(fs, &l->path, last, &l->parent, l->visited);
    if (err)
        return err;
    err = path_name(&l->path, last, &l->last);
    if (err)
        return err;
    return dir_find(fs, l->parent, &l->last, &l->f);
}

static int fsinfo_write(struct mf_fat *fs)
{
    if (fs->geo.type != MF_FAT32 || !fs->geo.fsinfo_sector || !fs->fsinfo_dirty)
        return 0;
    if (fs->free_count == 0xFFFFFFFFu) {
        int err = count_free(fs);
        if (err)
            return err;
    }
    uint8_t *b;
    int err = cache_get(fs, fs->geo.fsinfo_sector, true, &b);
    if (err)
        return err;
    if (mf_le32(b) == 0x41615252u && mf_le32(b + 484) == 0x61417272u) {
        mf_put_le32(b + 488, fs->free_count);
        mf_put_le32(b + 492, cluster_valid(fs, fs->next_free) ? fs->next_free : 0xFFFFFFFFu);
        cache_dirty(fs, fs->geo.fsinfo_sector);
    }
    fs->fsinfo_dirty = false;
    return 0;
}

/* Ends every changing call: metadata written back (FAT before directories), then a barrier. */
static int commit(struct mf_fat *fs)
{
    fs->generation++;
    int err = fsinfo_write(fs);
    if (!err)
        err = cache_flush(fs);
    if (!err)
        err = dev_sync(fs);
    if (!err)
        fs->device_error = 0; /* what is cached is what the device holds */
    return err;
}

/* After a failed change, what is cached may be half-done: drop it, so that the volume is seen as
 * the device holds it (the last committed state plus whatever reached the device). */
static int abandon(struct mf_fat *fs, int err)
{
    fs->generation++;
    fs->device_error = 0;
    for (unsigned i = 0; i < MF_FAT_CACHE_SECTORS; i++)
        fs->lines[i].valid = false;
    fs->free_count = 0xFFFFFFFFu;
    /* Open files may hold sizes and clusters whose FAT changes were just dropped: writing their
     * entries now would point them past their chains. They only close from here on. */
    for (struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (f->dirty || f->written || (f->flags & MF_FAT_O_WRONLY))
            f->failed = true;
    }
    return err;
}

/* Ends a changing call. On success: commit. A call that failed after a device error, whatever
 * its code, stopped half-way: forget the cache (abandon); so after a failed commit. On any other
 * error the cached state is consistent (each step keeps it so): commit it too. The caller gets
 * the first error, the device's own code when it was the device's. (A device error a read-only
 * call met left nothing half-done: a call that succeeds after it commits.) */
static int finish(struct mf_fat *fs, int err)
{
    if (!err || !fs->device_error) {
        int cerr = commit(fs);
        if (!err)
            err = cerr;
    }
    return fs->device_error ? abandon(fs, err) : err;
}

/* ---- mount and format ---- */

const struct mf_fat_geometry *mf_fat_geometry(const struct mf_fat *fs)
{
    return &fs->geo;
}

static bool power_of_two(uint32_t v)
{
    return v && !(v & (v - 1));
}

int mf_fat_mount(struct mf_fat *fs, const struct mf_bd *bd, mf_fat_clock_fn clock,
                 void *clock_context)
{
    assert(fs && bd);
    memset(fs, 0, sizeof *fs);
    fs->bd = bd;
    fs->clock = clock;
    fs->clock_context = clock_context;
    fs->free_count = 0xFFFFFFFFu;
    fs->next_free = 2;
    if (bd->block_size > MF_FAT_SECTOR_MAX)
        return MF_ENOTSUP;
    uint8_t *b = fs->scratch;
    int err = mf_bd_read(bd, 0, b, 1);
    if (err)
        return err;
    struct mf_fat_geometry *g = &fs->geo;
    g->bytes_per_sector = mf_le16(b + 11);
    g->sectors_per_cluster = b[13];
    g->reserved_sectors = mf_le16(b + 14);
    g->fat_count = b[16];
    g->root_entries = mf_le16(b + 17);
    g->total_sectors = mf_le16(b + 19) ? mf_le16(b + 19) : mf_le32(b + 32);
    uint32_t fat16_sectors = mf_le16(b + 22);
    g->fat_sectors = fat16_sectors ? fat16_sectors : mf_le32(b + 36);
    if (b[510] != 0x55 || b[511] != 0xAA)
        return MF_ECORRUPT;
    if (g->bytes_per_sector < 512 || g->bytes_per_sector > MF_FAT_SECTOR_MAX ||
        !power_of_two(g->bytes_per_sector))
        return MF_ECORRUPT;
    if (g->bytes_per_sector < bd->block_size)
        return MF_ENOTSUP;
    if (!power_of_two(g->sectors_per_cluster) || g->reserved_sectors == 0 || g->fat_count == 0 ||
        g->fat_count > 2 || g->fat_sectors == 0)
        return MF_ECORRUPT;
    fs->blocks_per_sector = g->bytes_per_sector / bd->block_size;
    if (g->total_sectors == 0 || g->total_sectors > bd->block_count / fs->blocks_per_sector)
        return MF_ECORRUPT;
    uint64_t root_sectors =
        ((uint64_t)g->root_entries * DIRENT_SIZE + g->bytes_per_sector - 1) / g->bytes_per_sector;
    uint64_t first_root = (uint64_t)g->reserved_sectors + (uint64_t)g->fat_count * g->fat_sectors;
    uint64_t first_data = first_root + root_sectors;
    if (first_data >= g->total_sectors)
        return MF_ECORRUPT;
    g->first_fat_sector = g->reserved_sectors;
    g->first_root_sector = (uint32_t)first_root;
    g->first_data_sector = (uint32_t)first_data;
    g->cluster_count = (uint32_t)((g->total_sectors - first_data) / g->sectors_per_cluster);
    if (g->cluster_count == 0)
        return MF_ECORRUPT;
    if (fat16_sectors == 0) {
        if (g->root_entries != 0 || mf_le16(b + 42) != 0 || g->cluster_count > FAT32_MAX_CLUSTERS)
            return MF_ECORRUPT;
        g->type = MF_FAT32;
        g->root_cluster = mf_le32(b + 44);
        uint32_t fsinfo = mf_le16(b + 48);
        g->fsinfo_sector = (fsinfo && fsinfo < g->reserved_sectors) ? fsinfo : 0;
        if (b[66] == 0x29) {
            g->volume_id = mf_le32(b + 67);
            memcpy(g->label, b + 71, 11);
        }
    } else {
        if (g->root_entries == 0)
            return MF_ECORRUPT;
        g->type = g->cluster_count <= FAT12_MAX_CLUSTERS   ? MF_FAT12
                  : g->cluster_count <= FAT16_MAX_CLUSTERS ? MF_FAT16
                                                           : MF_FAT_AUTO;
        if (g->type == MF_FAT_AUTO)
            return MF_ECORRUPT;
        if (b[38] == 0x29) {
            g->volume_id = mf_le32(b + 39);
            memcpy(g->label, b + 43, 11);
        }
    }
    /* The FAT must hold an entry for every cluster. */
    uint64_t last_byte =
        (uint64_t)fat_offset(fs, g->cluster_count + 1) + (g->type == MF_FAT32 ? 4 : 2);
    if (last_byte > (uint64_t)g->fat_sectors * g->bytes_per_sector)
        return MF_ECORRUPT;
    if (g->type == MF_FAT32 && !cluster_valid(fs, g->root_cluster))
        return MF_ECORRUPT;
    size_t label_len = 11;
    while (label_len > 0 && (g->label[label_len - 1] == ' ' || g->label[label_len - 1] == '\0'))
        label_len--;
    g->label[label_len] = '\0';
    if (g->fsinfo_sector) {
        err = dev_read(fs, g->fsinfo_sector, b, 1);
        if (err)
            return err;
        /* Only the allocation hint is taken; the free count is recounted when needed. */
        if (mf_le32(b) == 0x41615252u && mf_le32(b + 484) == 0x61417272u &&
            cluster_valid(fs, mf_le32(b + 492)))
            fs->next_free = mf_le32(b + 492);
    }
    return 0;
}

int mf_fat_sync(struct mf_fat *fs)
{
    for (struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (f->dirty || f->written) {
            int err = mf_fat_file_sync(fs, f);
            if (err)
                return err;
        }
    }
    return finish(fs, 0);
}

int mf_fat_unmount(struct mf_fat *fs)
{
    if (fs->open_files)
        return MF_EBUSY;
    int err = finish(fs, 0);
    fs->bd = NULL;
    return err;
}

int mf_fat_space(struct mf_fat *fs, uint64_t *free_bytes, uint64_t *total_bytes)
{
    if (fs->free_count == 0xFFFFFFFFu) {
        int err = count_free(fs);
        if (err)
            return err;
    }
    *free_bytes = (uint64_t)fs->free_count * cluster_bytes(fs);
    *total_bytes = (uint64_t)fs->geo.cluster_count * cluster_bytes(fs);
    return 0;
}

/* Geometry for a format: data clusters and FAT length for one FAT type and cluster size. */
struct layout {
    enum mf_fat_type type;
    uint32_t sectors_per_cluster, reserved, root_entries, fat_sectors, clusters;
};

static uint32_t round_up(uint32_t v, uint32_t to)
{
    return (v + to - 1) / to * to;
}

/* Fills `l` for (type, sectors_per_cluster) over `total` sectors; false when it does not fit or
 * the cluster count is outside the type's range. Structures are aligned to clusters above 8192
 * sectors, as mkfs.fat does. */
static bool layout_try(struct layout *l, enum mf_fat_type type, uint32_t spc, uint32_t total,
                       uint32_t bps)
{
    bool align = total > 8192;
    l->type = type;
    l->sectors_per_cluster = spc;
    l->reserved = type == MF_FAT32 ? 32 : 1;
    if (align)
        l->reserved = round_up(l->reserved, spc);
    uint32_t root_sectors = 0;
    if (type != MF_FAT32) {
        root_sectors = (512 * DIRENT_SIZE + bps - 1) / bps;
        if (align)
            root_sectors = round_up(root_sectors, spc);
    }
    l->root_entries = root_sectors * (bps / DIRENT_SIZE);
    if ((uint64_t)l->reserved + root_sectors >= total)
        return false;
    uint32_t data = total - l->reserved - root_sectors;
    uint64_t entries = data / spc + 2;
    uint64_t fat_bytes = type == MF_FAT12 ? (entries * 3 + 1) / 2 : entries * (type / 8);
    uint64_t fat_sectors = (fat_bytes + bps - 1) / bps;
    if (align)
        fat_sectors = (fat_sectors + spc - 1) / spc * spc;
    if (2 * fat_sectors >= data)
        return false;
    l->fat_sectors = (uint32_t)fat_sectors;
    l->clusters = (uint32_t)((data - 2 * fat_sectors) / spc);
    switch (type) {
    case MF_FAT12:
        return l->clusters >= 1 && l->clusters <= FAT12_MAX_CLUSTERS;
    case MF_FAT16:
        return l->clusters > FAT12_MAX_CLUSTERS && l->clusters <= FAT16_MAX_CLUSTERS;
    default:
        return l->clusters > FAT16_MAX_CLUSTERS && l->clusters <= FAT32_MAX_CLUSTERS;
    }
}

int mf_fat_format(const struct mf_bd *bd, const struct mf_fat_format_options *options)
{
    assert(bd && options);
    uint32_t bps = bd->block_size;
    if (bps > MF_FAT_SECTOR_MAX)
        return MF_ENOTSUP;
    if (bd->block_count > 0xFFFFFFFFu || bd->block_count < 16)
        return MF_EINVAL;
    uint32_t total = (uint32_t)bd->block_count;
    uint64_t bytes = (uint64_t)total * bps;
    enum mf_fat_type type = options->type;
    if (type == MF_FAT_AUTO && bytes >= 512ull << 20)
        type = MF_FAT32;
    uint32_t spc;
    if (type == MF_FAT32) {
        uint64_t mb = bytes >> 20;
        spc = mb > 32768 ? 64 : mb > 16384 ? 32 : mb > 8192 ? 16 : mb > 260 ? 8 : 1;
    } else {
        spc = 4;
    }
    spc = spc * 512 / bps ? spc * 512 / bps : 1;
    uint32_t max_spc = 128;
    if (options->sectors_per_cluster) {
        if (!power_of_two(options->sectors_per_cluster) || options->sectors_per_cluster > 128)
            return MF_EINVAL;
        spc = max_spc = options->sectors_per_cluster;
    }
    struct layout l;
    bool found = false;
    for (; spc <= max_spc && !found; spc <<= 1) {
        if (type == MF_FAT_AUTO)
            found = layout_try(&l, MF_FAT12, spc, total, bps) ||
                    layout_try(&l, MF_FAT16, spc, total, bps);
        else
            found = layout_try(&l, type, spc, total, bps);
    }
    if (!found)
        return MF_EINVAL;

    int err = mf_bd_erase(bd, 0, bd->block_count);
    if (err)
        return err;
    uint8_t b[MF_FAT_SECTOR_MAX];
    memset(b, 0, bps);
    b[0] = 0xEB;
    b[1] = l.type == MF_FAT32 ? 0x58 : 0x3C;
    b[2] = 0x90;
    memcpy(b + 3, "MINTFLSH", 8);
    mf_put_le16(b + 11, bps);
    b[13] = (uint8_t)l.sectors_per_cluster;
    mf_put_le16(b + 14, l.reserved);
    b[16] = 2;
    mf_put_le16(b + 17, l.root_entries);
    if (total < 65536 && l.type != MF_FAT32)
        mf_put_le16(b + 19, total);
    else
        mf_put_le32(b + 32, total);
    b[21] = 0xF8;
    bool small = bytes < (512ull << 20);
    mf_put_le16(b + 24, small ? 32 : 63);
    mf_put_le16(b + 26, small ? 64 : 255);
    mf_put_le32(b + 28, options->hidden_sectors);
    char label[11];
    memset(label, ' ', sizeof label);
    const char *text = options->label ? options->label : "NO NAME";
    for (size_t i = 0; i < sizeof label && text[i]; i++)
        label[i] = (char)upcase16((uint8_t)text[i]);
    uint8_t *ext = b + (l.type == MF_FAT32 ? 64 : 36);
    if (l.type == MF_FAT32) {
        mf_put_le32(b + 36, l.fat_sectors);
        mf_put_le32(b + 44, 2); /* root folder cluster */
        mf_put_le16(b + 48, 1); /* FSInfo sector */
        mf_put_le16(b + 50, 6); /* backup boot sector */
    } else {
        mf_put_le16(b + 22, l.fat_sectors);
    }
    ext[0] = 0x80; /* drive number of a fixed disk */
    ext[2] = 0x29;
    mf_put_le32(ext + 3, options->volume_id);
    memcpy(ext + 7, label, 11);
    memcpy(ext + 18,
           l.type == MF_FAT12   ? "FAT12   "
           : l.type == MF_FAT16 ? "FAT16   "
                                : "FAT32   ",
           8);
    ext[26] = 0xF4; /* boot code: halt */
    b[510] = 0x55;
    b[511] = 0xAA;
    err = mf_bd_prog(bd, 0, b, 1);
    if (!err && l.type == MF_FAT32)
        err = mf_bd_prog(bd, 6, b, 1);
    if (err)
        return err;
    if (l.type == MF_FAT32) {
        memset(b, 0, bps);
        mf_put_le32(b, 0x41615252u);
        mf_put_le32(b + 484, 0x61417272u);
        mf_put_le32(b + 488, l.clusters - 1); /* the root folder holds one cluster */
        mf_put_le32(b + 492, 3);
        mf_put_le32(b + 508, 0xAA550000u);
        err = mf_bd_prog(bd, 1, b, 1);
        if (!err)
            err = mf_bd_prog(bd, 7, b, 1);
        if (err)
            return err;
    }
    memset(b, 0, bps);
    if (l.type == MF_FAT12) {
        b[0] = 0xF8, b[1] = 0xFF, b[2] = 0xFF;
    } else if (l.type == MF_FAT16) {
        mf_put_le16(b, 0xFFF8), mf_put_le16(b + 2, 0xFFFF);
    } else {
        mf_put_le32(b, 0x0FFFFFF8u), mf_put_le32(b + 4, 0x0FFFFFFFu),
            mf_put_le32(b + 8, 0x0FFFFFFFu);
    }
    for (uint32_t k = 0; k < 2 && !err; k++)
        err = mf_bd_prog(bd, l.reserved + k * l.fat_sectors, b, 1);
    if (!err && options->label) {
        memset(b, 0, bps);
        memcpy(b, label, 11);
        b[11] = MF_FAT_ATTR_VOLUME_ID;
        /* The first root sector: the fixed root, or cluster 2 on FAT32. */
        err = mf_bd_prog(bd, l.reserved + 2 * l.fat_sectors, b, 1);
    }
    if (!err)
        err = mf_bd_sync(bd);
    return err;
}

/* ---- files ---- */

static bool file_writable(const struct mf_fat_file *file)
{
    return (file->flags & MF_FAT_O_WRONLY) != 0;
}

static bool file_readable(const struct mf_fat_file *file)
{
    return (file->flags & MF_FAT_O_RDONLY) != 0;
}

static bool same_entry(const struct mf_fat_file *a, uint32_t sector, uint16_t offset)
{
    return a->entry_sector == sector && a->entry_offset == offset;
}

static bool entry_open(const struct mf_fat *fs, uint32_t sector, uint16_t offset)
{
    for (const struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (same_entry(f, sector, offset))
            return true;
    }
    return false;
}

/* Other handles on the same file see its new size and chain; a shrunk chain voids their
 * cached cluster. */
static void file_share(struct mf_fat *fs, const struct mf_fat_file *file, bool shrunk)
{
    for (struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (f == file || !same_entry(f, file->entry_sector, file->entry_offset))
            continue;
        f->size = file->size;
        f->first_cluster = file->first_cluster;
        if (shrunk || f->first_cluster == 0)
            f->cluster = 0;
    }
}

/* Clusters a file of `size` bytes occupies. */
static uint32_t clusters_for(const struct mf_fat *fs, uint64_t size)
{
    return (uint32_t)((size + cluster_bytes(fs) - 1) / cluster_bytes(fs));
}

/* The cluster holding chain index `index` of the file, allocating missing clusters when
 * `grow` (the caller made sure there is space). A chain shorter than the size says is
 * MF_ECORRUPT. */
static int file_cluster(struct mf_fat *fs, struct mf_fat_file *file, uint32_t index, bool grow,
                        uint32_t *cluster)
{
    /* No file has more clusters than the volume: a size or chain saying so is damage (a loop). */
    if (index >= fs->geo.cluster_count)
        return grow && clusters_for(fs, file->size) < fs->geo.cluster_count ? MF_ENOSPC
                                                                            : MF_ECORRUPT;
    if (file->first_cluster == 0) {
        if (!grow)
            return MF_ECORRUPT;
        uint32_t c;
        int err = cluster_alloc(fs, &c);
        if (err)
            return err;
        file->first_cluster = c;
        file->dirty = true;
        file->cluster = c;
        file->cluster_index = 0;
    }
    if (file->cluster == 0 || file->cluster_index > index) {
        if (!cluster_valid(fs, file->first_cluster))
            return MF_ECORRUPT;
        file->cluster = file->first_cluster;
        file->cluster_index = 0;
    }
    while (file->cluster_index < index) { /* bounded by the file size */
        uint32_t next;
        int err = chain_next(fs, file->cluster, &next);
        if (err)
            return err;
        if (next == FAT_EOC) {
            if (!grow)
                return MF_ECORRUPT;
            err = cluster_alloc(fs, &next);
            if (!err)
                err = fat_set(fs, file->cluster, next);
            if (err)
                return err;
        }
        file->cluster = next;
        file->cluster_index++;
    }
    *cluster = file->cluster;
    return 0;
}

/* Makes sure growing the file to `new_size` will not run out of space half-way. */
static int file_reserve(struct mf_fat *fs, const struct mf_fat_file *file, uint64_t new_size)
{
    uint32_t have = clusters_for(fs, file->size), need = clusters_for(fs, new_size);
    if (need <= have)
        return 0;
    if (fs->free_count == 0xFFFFFFFFu) {
        int err = count_free(fs);
        if (err)
            return err;
    }
    return need - have > fs->free_count ? MF_ENOSPC : 0;
}

/* Writes `n` bytes of `src` (zeros when NULL) at file->pos. */
static int file_put(struct mf_fat *fs, struct mf_fat_file *file, const uint8_t *src, uint32_t n)
{
    uint32_t bps = fs->geo.bytes_per_sector, csize = cluster_bytes(fs);
    while (n > 0) {
        uint32_t cluster;
        int err = file_cluster(fs, file, file->pos / csize, true, &cluster);
        if (err)
            return err;
        uint32_t in_cluster = file->pos % csize, in_sector = in_cluster % bps;
        uint32_t sector = cluster_sector(fs, cluster) + in_cluster / bps, done;
        if (in_sector == 0 && n >= bps && src) {
            uint32_t sectors = n / bps, left = (csize - in_cluster) / bps;
            if (sectors > left)
                sectors = left;
            err = dev_write(fs, sector, src, sectors);
            cache_forget(fs, sector, sectors);
            fs->data_unsynced = true;
            done = sectors * bps;
        } else {
            done = bps - in_sector < n ? bps - in_sector : n;
            /* Keep what the sector holds of the file; bytes past the end read as zero. */
            uint32_t sector_start = file->pos - in_sector;
            if (sector_start < file->size && (in_sector != 0 || done != bps))
                err = dev_read(fs, sector, fs->scratch, 1);
            else
                memset(fs->scratch, 0, bps);
            if (!err && sector_start + bps > file->size && file->size > sector_start)
                memset(fs->scratch + (file->size - sector_start), 0,
                       bps - (file->size - sector_start));
            if (!err) {
                if (src)
                    memcpy(fs->scratch + in_sector, src, done);
                else
                    memset(fs->scratch + in_sector, 0, done);
                err = dev_write(fs, sector, fs->scratch, 1);
                cache_forget(fs, sector, 1);
                fs->data_unsynced = true;
            }
        }
        if (err)
            return err;
        if (src)
            src += done;
        n -= done;
        file->pos += done;
        if (file->pos > file->size) {
            file->size = file->pos;
            file->dirty = true;
        }
        file->written = true;
    }
    return 0;
}

/* Writes the file's size, first cluster and (when its data changed) modification time into its
 * directory entry (cached). */
static int file_entry_update(struct mf_fat *fs, struct mf_fat_file *file)
{
    uint8_t *buf;
    int err = cache_get(fs, file->entry_sector, true, &buf);
    if (err)
        return err;
    uint8_t *e = buf + file->entry_offset;
    entry_set_cluster(e, file->first_cluster);
    mf_put_le32(e + 28, file->size);
    if (file->written) {
        uint32_t now = fat_now(fs);
        mf_put_le16(e + 22, now & 0xFFFFu);
        mf_put_le16(e + 24, now >> 16);
        mf_put_le16(e + 18, now >> 16);
        e[11] |= MF_FAT_ATTR_ARCHIVE;
    }
    cache_dirty(fs, file->entry_sector);
    file->dirty = false;
    file->written = false;
    return 0;
}

/* Checks that the chain from `cluster` ends within the volume without meeting `stop` (a cluster
 * the caller keeps): freeing it then cannot free anything else. */
static int chain_check(struct mf_fat *fs, uint32_t cluster, uint32_t stop)
{
    for (uint32_t steps = 0; cluster != FAT_EOC; steps++) {
        if (steps > fs->geo.cluster_count || cluster == stop || !cluster_valid(fs, cluster))
            return MF_ECORRUPT;
        int err = chain_next(fs, cluster, &cluster);
        if (err)
            return err;
    }
    return 0;
}

/* Shrinks the file to `size`. The entry is written and made durable first: a cut afterwards
 * leaves lost clusters, never an entry larger than its chain. */
static int file_shrink(struct mf_fat *fs, struct mf_fat_file *file, uint32_t size)
{
    uint32_t keep = clusters_for(fs, size), last = 0, rest = 0;
    int err = 0;
    if (keep == 0) {
        rest = file->first_cluster;
        if (rest && !cluster_valid(fs, rest))
            return MF_ECORRUPT;
    } else {
        err = file_cluster(fs, file, keep - 1, false, &last);
        uint32_t next = FAT_EOC;
        if (!err)
            err = chain_next(fs, last, &next);
        if (err)
            return err;
        rest = next == FAT_EOC ? 0 : next;
    }
    if (rest) {
        err = chain_check(fs, rest, last);
        if (err)
            return err;
    }
    file->size = size;
    if (keep == 0)
        file->first_cluster = 0;
    file->cluster = 0;
    file->dirty = true;
    file->written = true;
    file_share(fs, file, true);
    err = file_entry_update(fs, file);
    if (!err)
        err = commit(fs);
    if (!err && last)
        err = fat_set(fs, last, FAT_EOC);
    if (!err && rest)
        err = chain_free(fs, rest);
    return err;
}

int mf_fat_open(struct mf_fat *fs, struct mf_fat_file *file, const char *path, int flags)
{
    int access = flags & MF_FAT_O_RDWR;
    if (access == 0 || (flags & ~0xF3))
        return MF_EINVAL;
    size_t len = strlen(path);
    if (len && (path[len - 1] == '/' || path[len - 1] == '\\'))
        return MF_EISDIR; /* a name ending in a separator names a folder */
    struct lookup l;
    int r = lookup(fs, path, &l);
    if (r < 0)
        return r;
    if (l.is_root)
        return MF_EISDIR;
    bool writable = (access & MF_FAT_O_WRONLY) != 0;
    if (r == 1) {
        if (entry_is_dir(l.f.entry))
            return MF_EISDIR;
        if ((flags & MF_FAT_O_CREAT) && (flags & MF_FAT_O_EXCL))
            return MF_EEXIST;
        if (writable && (l.f.entry[11] & MF_FAT_ATTR_READ_ONLY))
            return MF_EACCES;
        uint32_t c = entry_cluster(fs, l.f.entry), size = mf_le32(l.f.entry + 28);
        if ((c != 0 && !cluster_valid(fs, c)) || (c == 0 && size != 0))
            return MF_ECORRUPT;
    } else {
        if (!(flags & MF_FAT_O_CREAT))
            return MF_ENOENT;
        uint8_t proto[DIRENT_SIZE];
        entry_init(fs, proto, MF_FAT_ATTR_ARCHIVE, 0);
        int err = finish(fs, dir_add(fs, l.parent, &l.last, proto, NULL, &l.f));
        if (err)
            return err;
    }
    memset(file, 0, sizeof *file);
    file->entry_sector = l.f.sector;
    file->entry_offset = l.f.offset;
    file->flags = (uint8_t)flags;
    file->first_cluster = entry_cluster(fs, l.f.entry);
    file->size = mf_le32(l.f.entry + 28);
    /* Another handle may hold a newer size than the entry. */
    for (struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (same_entry(f, file->entry_sector, file->entry_offset)) {
            file->size = f->size;
            file->first_cluster = f->first_cluster;
            break;
        }
    }
    file->next = fs->open_files;
    fs->open_files = file;
    if ((flags & MF_FAT_O_TRUNC) && writable && file->size > 0) {
        int err = finish(fs, file_shrink(fs, file, 0));
        if (err) {
            mf_fat_close(fs, file);
            return err;
        }
    }
    return 0;
}

int mf_fat_read(struct mf_fat *fs, struct mf_fat_file *file, void *buffer, uint32_t size)
{
    if (!file_readable(file))
        return MF_EBADF;
    if (file->failed)
        return MF_EIO;
    if (size > INT32_MAX)
        size = INT32_MAX;
    if (file->pos >= file->size)
        return 0;
    if (size > file->size - file->pos)
        size = file->size - file->pos;
    uint8_t *dst = buffer;
    uint32_t bps = fs->geo.bytes_per_sector, csize = cluster_bytes(fs), left = size;
    while (left > 0) {
        uint32_t cluster;
        int err = file_cluster(fs, file, file->pos / csize, false, &cluster);
        if (err)
            return err;
        uint32_t in_cluster = file->pos % csize, in_sector = in_cluster % bps;
        uint32_t sector = cluster_sector(fs, cluster) + in_cluster / bps, done;
        if (in_sector == 0 && left >= bps) {
            /* Whole sectors straight into the caller's buffer, across physically adjacent
             * clusters in one request. */
            uint32_t sectors = (csize - in_cluster) / bps, want = left / bps;
            while (sectors < want) {
                uint32_t next;
                err = chain_next(fs, file->cluster, &next);
                if (err)
                    return err;
                if (next != file->cluster + 1)
                    break;
                file->cluster = next;
                file->cluster_index++;
                sectors += fs->geo.sectors_per_cluster;
            }
            if (sectors > want)
                sectors = want;
            err = dev_read(fs, sector, dst, sectors);
            done = sectors * bps;
        } else {
            done = bps - in_sector < left ? bps - in_sector : left;
            err = dev_read(fs, sector, fs->scratch, 1);
            if (!err)
                memcpy(dst, fs->scratch + in_sector, done);
        }
        if (err)
            return err;
        dst += done;
        left -= done;
        file->pos += done;
    }
    return (int)size;
}

int mf_fat_write(struct mf_fat *fs, struct mf_fat_file *file, const void *buffer, uint32_t size)
{
    if (!file_writable(file))
        return MF_EBADF;
    if (file->failed)
        return MF_EIO;
    if (size > INT32_MAX)
        return MF_EINVAL;
    if (file->flags & MF_FAT_O_APPEND)
        file->pos = file->size;
    if (size == 0)
        return 0;
    if ((uint64_t)file->pos + size > MF_FAT_FILE_SIZE_MAX)
        return MF_EFBIG;
    int err = file_reserve(fs, file, (uint64_t)file->pos + size);
    if (err)
        return err;
    if (file->pos > file->size) {
        uint32_t target = file->pos;
        file->pos = file->size;
        err = file_put(fs, file, NULL, target - file->size);
    }
    if (!err)
        err = file_put(fs, file, buffer, size);
    file_share(fs, file, false);
    if (err)
        return finish(fs, err);
    return (int)size;
}

int mf_fat_seek(struct mf_fat *fs, struct mf_fat_file *file, uint32_t position)
{
    (void)fs;
    file->pos = position;
    return 0;
}

uint32_t mf_fat_tell(const struct mf_fat_file *file)
{
    return file->pos;
}

uint32_t mf_fat_size(const struct mf_fat_file *file)
{
    return file->size;
}

int mf_fat_truncate(struct mf_fat *fs, struct mf_fat_file *file, uint32_t size)
{
    if (!file_writable(file))
        return MF_EBADF;
    if (file->failed)
        return MF_EIO;
    int err = 0;
    if (size > file->size) {
        err = file_reserve(fs, file, size);
        if (err)
            return err;
        uint32_t pos = file->pos;
        file->pos = file->size;
        err = file_put(fs, file, NULL, size - file->size);
        file->pos = pos;
        file_share(fs, file, false);
        if (!err)
            err = file_entry_update(fs, file);
    } else if (size < file->size) {
        err = file_shrink(fs, file, size);
    }
    return finish(fs, err);
}

int mf_fat_file_sync(struct mf_fat *fs, struct mf_fat_file *file)
{
    if (file->failed)
        return MF_EIO;
    int err = 0;
    if (file_writable(file) && (file->dirty || file->written))
        err = file_entry_update(fs, file);
    return finish(fs, err);
}

int mf_fat_close(struct mf_fat *fs, struct mf_fat_file *file)
{
    int err = file->failed ? MF_EIO : 0;
    if (!file->failed && file_writable(file) && (file->dirty || file->written))
        err = mf_fat_file_sync(fs, file);
    for (struct mf_fat_file **p = &fs->open_files; *p; p = &(*p)->next) {
        if (*p == file) {
            *p = file->next;
            break;
        }
    }
    return err;
}

/* ---- folders and names ---- */

static void stat_fill(const struct mf_fat *fs, const struct found *f, struct mf_fat_stat *st)
{
    memset(st, 0, sizeof *st);
    if (f->has_lfn) {
        utf16_to_utf8(f->lfn.c, f->lfn.len, st->name, sizeof st->name);
    } else {
        struct name shown;
        sfn_display(f->entry, &shown);
        utf16_to_utf8(shown.c, shown.len, st->name, sizeof st->name);
    }
    sfn_string(f->entry, st->short_name);
    st->attributes = f->entry[11];
    st->is_dir = entry_is_dir(f->entry);
    st->size = st->is_dir ? 0 : mf_le32(f->entry + 28);
    st->first_cluster = entry_cluster(fs, f->entry);
    st->mtime = fat_time_to_unix(mf_le16(f->entry + 24), mf_le16(f->entry + 22));
}

int mf_fat_stat(struct mf_fat *fs, const char *path, struct mf_fat_stat *st)
{
    struct lookup l;
    int r = lookup(fs, path, &l);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ENOENT;
    if (l.is_root) {
        memset(st, 0, sizeof *st);
        strcpy(st->name, "/");
        strcpy(st->short_name, "/");
        st->attributes = MF_FAT_ATTR_DIRECTORY;
        st->is_dir = true;
        st->first_cluster = root_dir_cluster(fs);
        return 0;
    }
    stat_fill(fs, &l.f, st);
    /* An open handle may hold a newer size than the entry. */
    for (const struct mf_fat_file *f = fs->open_files; f; f = f->next) {
        if (same_entry(f, l.f.sector, l.f.offset))
            st->size = f->size;
    }
    return 0;
}

int mf_fat_path_in(struct mf_fat *fs, const char *path, const char *folder, unsigned *below)
{
    struct path p;
    struct name top, want;
    int err = path_split(path, &p);
    if (!err && p.count == 0)
        return 0;
    if (!err)
        err = path_name(&p, 0, &top);
    if (!err)
        err = name_parse(folder, strlen(folder), &want);
    if (err)
        return err;
    *below = p.count - 1;
    if (name_equal(top.c, top.len, want.c, want.len))
        return 1;
    /* Another name for the same entry: its short name. */
    struct found a, b;
    uint32_t root = root_dir_cluster(fs);
    int r = dir_find(fs, root, &top, &a);
    if (r > 0)
        r = dir_find(fs, root, &want, &b);
    if (r <= 0)
        return r;
    return a.sector == b.sector && a.offset == b.offset;
}

/* The first cluster of the folder `path` (0 for the fixed FAT12/16 root). */
static int lookup_folder(struct mf_fat *fs, const char *path, uint32_t *first)
{
    struct lookup l;
    int r = lookup(fs, path, &l);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ENOENT;
    *first = root_dir_cluster(fs);
    if (l.is_root)
        return 0;
    if (!entry_is_dir(l.f.entry))
        return MF_ENOTDIR;
    *first = entry_cluster(fs, l.f.entry);
    return cluster_valid(fs, *first) ? 0 : MF_ECORRUPT;
}

int mf_fat_opendir(struct mf_fat *fs, struct mf_fat_dir *dir, const char *path)
{
    uint32_t first;
    int err = lookup_folder(fs, path, &first);
    if (err)
        return err;
    dir->first_cluster = first;
    dir->cluster = first;
    dir->cluster_index = 0;
    dir->index = 0;
    return 0;
}

int mf_fat_readdir(struct mf_fat *fs, struct mf_fat_dir *dir, struct mf_fat_stat *st)
{
    struct dir_iter it = {dir->first_cluster, dir->cluster, dir->cluster_index, dir->index};
    struct found f;
    int r = dir_next(fs, &it, &f);
    dir->cluster = it.cluster;
    dir->cluster_index = it.cluster_index;
    dir->index = it.index;
    if (r == 1)
        stat_fill(fs, &f, st);
    return r;
}

int mf_fat_dir_need(struct mf_fat *fs, const char *path, uint32_t entries, uint64_t *bytes)
{
    *bytes = 0;
    uint32_t dir;
    int r = lookup_folder(fs, path, &dir);
    if (r || entries == 0)
        return r;
    struct dir_iter it;
    uint32_t run, start;
    r = dir_free_run(fs, dir, entries, &it, &start, &run);
    if (r < 0)
        return r;
    if (r == 0) {
        uint32_t per_cluster = fs->geo.bytes_per_sector / DIRENT_SIZE * fs->geo.sectors_per_cluster;
        *bytes = (uint64_t)((entries - run + per_cluster - 1) / per_cluster) * cluster_bytes(fs);
    }
    return 0;
}

int mf_fat_mkdir(struct mf_fat *fs, const char *path)
{
    uint64_t failures = fs->device_failures;
    struct lookup l;
    int r = lookup(fs, path, &l);
    if (r < 0)
        return r;
    if (r == 1)
        return MF_EEXIST;
    uint32_t c;
    int err = cluster_alloc(fs, &c);
    if (!err)
        err = cluster_zero(fs, c);
    uint8_t e[DIRENT_SIZE];
    if (!err) {
        /* "." and "..": ".." of a folder in the root points at cluster 0, also on FAT32. */
        struct dir_iter it;
        uint32_t sector, offset;
        dir_iter_init(&it, c, 0);
        entry_init(fs, e, MF_FAT_ATTR_DIRECTORY, c);
        memcpy(e, ".          ", 11);
        err = dir_put(fs, &it, e, &sector, &offset);
        it.index = 1;
        entry_init(fs, e, MF_FAT_ATTR_DIRECTORY, l.parent == root_dir_cluster(fs) ? 0 : l.parent);
        memcpy(e, "..         ", 11);
        if (!err)
            err = dir_put(fs, &it, e, &sector, &offset);
    }
    if (!err) {
        entry_init(fs, e, MF_FAT_ATTR_DIRECTORY, c);
        err = dir_add(fs, l.parent, &l.last, e, NULL, &l.f);
        if (err && fs->device_failures == failures)
            fat_set(fs, c, FAT_FREE); /* refused (root full): the cluster goes back */
    }
    return finish(fs, err);
}

/* 1 when the folder starting at `cluster` holds nothing but "." and "..". */
static int dir_empty(struct mf_fat *fs, uint32_t cluster)
{
    struct dir_iter it;
    struct found f;
    dir_iter_init(&it, cluster, 0);
    int r = dir_next(fs, &it, &f);
    return r < 0 ? r : r == 0;
}

/* Looks up the folder `path` to be removed: not the root, a folder, its first cluster valid. */
static int lookup_removable_folder(struct mf_fat *fs, const char *path, struct lookup *l,
                                   uint32_t *cluster)
{
    int r = lookup(fs, path, l);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ENOENT;
    if (l->is_root)
        return MF_EBUSY;
    if (!entry_is_dir(l->f.entry))
        return MF_ENOTDIR;
    *cluster = entry_cluster(fs, l->f.entry);
    return cluster_valid(fs, *cluster) ? 0 : MF_ECORRUPT;
}

int mf_fat_rmdir(struct mf_fat *fs, const char *path)
{
    struct lookup l;
    uint32_t c;
    int r = lookup_removable_folder(fs, path, &l, &c);
    if (r)
        return r;
    r = dir_empty(fs, c);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ENOTEMPTY;
    /* The entry goes first, as for files: a cut leaves a lost cluster, never an entry pointing
     * at a free one. */
    int err = dir_remove(fs, &l.f, NULL);
    if (!err)
        err = commit(fs);
    if (!err)
        err = chain_free(fs, c);
    return finish(fs, err);
}

/* Looks up `path` as lookup does (1 found, 0 missing); a file found must be one that may be
 * removed: a file, not open. Its first cluster goes to `cluster` (0 when none or missing). */
static int lookup_closed_file(struct mf_fat *fs, const char *path, struct lookup *l,
                              uint32_t *cluster)
{
    *cluster = 0;
    int r = lookup(fs, path, l);
    if (r <= 0)
        return r;
    if (l->is_root || entry_is_dir(l->f.entry))
        return MF_EISDIR;
    if (entry_open(fs, l->f.sector, l->f.offset))
        return MF_EBUSY;
    *cluster = entry_cluster(fs, l->f.entry);
    return 1;
}

int mf_fat_remove(struct mf_fat *fs, const char *path)
{
    struct lookup l;
    uint32_t c;
    int r = lookup_closed_file(fs, path, &l, &c);
    if (r == 0)
        return MF_ENOENT;
    if (r < 0)
        return r;
    /* The entry goes first: a cut in between leaves lost clusters, never an entry pointing at
     * freed ones. */
    int err = dir_remove(fs, &l.f, NULL);
    if (!err)
        err = commit(fs);
    if (!err && c != 0) {
        if (!cluster_valid(fs, c))
            err = MF_ECORRUPT;
        else
            err = chain_free(fs, c);
    }
    return finish(fs, err);
}

int mf_fat_remove_alias(struct mf_fat *fs, const char *path, const char *other)
{
    struct lookup l, o;
    int r = lookup(fs, path, &l);
    if (r == 0)
        return MF_ENOENT;
    if (r > 0)
        r = lookup(fs, other, &o);
    if (r == 0)
        return MF_ENOENT;
    if (r < 0)
        return r;
    if (l.is_root || o.is_root || entry_is_dir(l.f.entry) || entry_is_dir(o.f.entry))
        return MF_EISDIR;
    uint32_t c = entry_cluster(fs, l.f.entry);
    if (c == 0 || c != entry_cluster(fs, o.f.entry) ||
        (l.f.sector == o.f.sector && l.f.offset == o.f.offset))
        return MF_EINVAL; /* not two names of the same clusters */
    if (entry_open(fs, l.f.sector, l.f.offset))
        return MF_EBUSY;
    int err = dir_remove(fs, &l.f, NULL);
    if (!err)
        err = commit(fs);
    return finish(fs, err);
}

int mf_fat_rename(struct mf_fat *fs, const char *from, const char *to)
{
    struct lookup src, dst;
    int r = lookup(fs, from, &src);
    if (r < 0)
        return r;
    if (r == 0)
        return MF_ENOENT;
    if (src.is_root)
        return MF_EBUSY;
    if (entry_open(fs, src.f.sector, src.f.offset))
        return MF_EBUSY;
    r = lookup(fs, to, &dst);
    if (r < 0)
        return r;
    if (dst.is_root)
        return MF_EEXIST;
    bool same = r == 1 && dst.f.sector == src.f.sector && dst.f.offset == src.f.offset;
    if (r == 1 && !same)
        return MF_EEXIST;
    bool is_dir = entry_is_dir(src.f.entry);
    uint32_t moved = entry_cluster(fs, src.f.entry);
    if (is_dir) {
        if (!cluster_valid(fs, moved))
            return MF_ECORRUPT;
        /* A folder cannot move into itself or below itself. */
        for (unsigned i = 0; i + 1 < dst.path.count; i++) {
            if (dst.visited[i] == moved)
                return MF_EINVAL;
        }
    }
    uint8_t sfn[11], nt;
    if (dst.parent == src.parent && sfn_from_name(&dst.last, sfn, &nt) == SFN_EXACT) {
        /* A short name in the same folder: the 8.3 entry is rewritten where it is (any long name
         * of the old one goes). A cut leaves the old name or the new, and the rename needs no free
         * entry, so no new folder cluster: FLASHER.LOG's rotation on a full volume. */
        uint8_t renamed[DIRENT_SIZE];
        memcpy(renamed, src.f.entry, DIRENT_SIZE);
        memcpy(renamed, sfn, 11);
        renamed[12] = nt;
        return finish(fs, dir_remove(fs, &src.f, renamed));
    }
    struct found added;
    /* The new entry is written and made durable before the old one goes: a cut leaves the file
     * under the old name, or under both (fsck.fat then reports a duplicate), never under none. */
    int err = dir_add(fs, dst.parent, &dst.last, src.f.entry, same ? src.f.entry : NULL, &added);
    if (!err)
        err = commit(fs);
    if (!err)
        err = dir_remove(fs, &src.f, NULL);
    if (!err && is_dir && dst.parent != src.parent) {
        struct dir_iter it;
        uint8_t *e;
        uint32_t sector, offset;
        dir_iter_init(&it, moved, 1);
        r = dir_entry(fs, &it, &e, &sector, &offset);
        if (r < 0)
            err = r;
        else if (r == 1 && e[0] == '.' && e[1] == '.') {
            entry_set_cluster(e, dst.parent == root_dir_cluster(fs) ? 0 : dst.parent);
            cache_dirty(fs, sector);
        }
    }
    return finish(fs, err);
}

int mf_fat_replace(struct mf_fat *fs, const char *from, const char *to)
{
    struct lookup src, dst;
    uint32_t moved, old;
    int r = lookup_closed_file(fs, from, &src, &moved);
    if (r == 0)
        return MF_ENOENT;
    if (r > 0)
        r = lookup_closed_file(fs, to, &dst, &old);
    if (r < 0)
        return r;
    if ((moved && !cluster_valid(fs, moved)) || (old && !cluster_valid(fs, old)))
        return MF_ECORRUPT;
    bool present = r == 1;
    if (present && dst.f.sector == src.f.sector && dst.f.offset == src.f.offset)
        return mf_fat_rename(fs, from, to); /* one file: a change of case at most */
    if (present && (dst.f.entry[11] & MF_FAT_ATTR_READ_ONLY))
        return MF_EACCES; /* as a writable open of it is refused */
    if (old == moved)
        old = 0; /* two names of one chain (a cut rename): it stays with `to` */
    uint64_t failures = fs->device_failures;
    /* `from`'s name goes first, then `to`'s entry takes its clusters with one sector write: a cut
     * leaves `to` as it was or as `from` was, at worst with `from`'s or its old clusters lost,
     * never two names of one chain. */
    int err = dir_remove(fs, &src.f, NULL);
    if (!err)
        err = commit(fs);
    if (!err && present) {
        uint8_t *buf;
        err = cache_get(fs, dst.f.sector, true, &buf);
        if (!err) {
            uint8_t *e = buf + dst.f.offset;
            e[11] |= MF_FAT_ATTR_ARCHIVE; /* its own attributes (hidden, system), changed */
            memcpy(e + 13, src.f.entry + 13, DIRENT_SIZE - 13u); /* times, cluster, size */
            cache_dirty(fs, dst.f.sector);
        }
    } else if (!err) {
        struct found added;
        err = dir_add(fs, dst.parent, &dst.last, src.f.entry, NULL, &added);
        if (err && fs->device_failures == failures && moved)
            chain_free(fs, moved); /* refused (a full folder): nothing names the clusters */
    }
    if (!err)
        err = commit(fs);
    if (err || !old)
        return finish(fs, err);
    /* Switched: `to` is `from` now, whatever happens to its old clusters. A failure to free them
     * only loses them (fsck.fat reclaims lost clusters): the replace has taken place. */
    finish(fs, chain_free(fs, old));
    return 0;
}

/* Erases `count` clusters from `first` on the device and forgets them in the cache. */
static int cluster_erase(struct mf_fat *fs, uint32_t first, uint32_t count)
{
    uint32_t sector = cluster_sector(fs, first);
    int err = device(
        fs, mf_bd_erase(fs->bd, (mf_block_t)sector * fs->blocks_per_sector,
                        (size_t)count * fs->geo.sectors_per_cluster * fs->blocks_per_sector));
    cache_forget(fs, sector, count * fs->geo.sectors_per_cluster);
    return err;
}

/* Clusters to erase, gathered into runs of consecutive ones: one device call per run, also
 * across files that lie one after the other. */
struct erase_run {
    uint32_t first, count;
};

static int erase_run_end(struct mf_fat *fs, struct erase_run *run)
{
    int err = run->count ? cluster_erase(fs, run->first, run->count) : 0;
    run->count = 0;
    return err;
}

static int erase_run_add(struct mf_fat *fs, struct erase_run *run, uint32_t cluster)
{
    int err = 0;
    if (run->count && cluster != run->first + run->count)
        err = erase_run_end(fs, run);
    if (!run->count)
        run->first = cluster;
    run->count++;
    return err;
}

int mf_fat_wipe_free(struct mf_fat *fs)
{
    int err = commit(fs);
    struct erase_run run = {0, 0};
    for (uint32_t c = 2; !err && c < fs->geo.cluster_count + 2; c++) {
        uint32_t raw;
        err = fat_read_raw(fs, c, &raw);
        if (!err && raw == 0)
            err = erase_run_add(fs, &run, c);
    }
    if (!err)
        err = erase_run_end(fs, &run);
    if (!err)
        err = dev_sync(fs);
    return err ? finish(fs, err) : 0;
}

/* Adds the clusters of the chain that starts at `cluster` to `run`; the chain itself stays. */
static int chain_erase(struct mf_fat *fs, uint32_t cluster, struct erase_run *run)
{
    int err = 0;
    for (uint32_t steps = 0; cluster != FAT_EOC && !err; steps++) {
        if (steps > fs->geo.cluster_count || !cluster_valid(fs, cluster))
            return MF_ECORRUPT;
        uint32_t next;
        err = fat_get(fs, cluster, &next);
        if (err)
            return err;
        if (next == FAT_FREE)
            return MF_ECORRUPT;
        err = erase_run_add(fs, run, cluster);
        cluster = next;
    }
    return err;
}

/* Entries removed whose chains are freed once the removals are durable: a cut then leaves lost
 * clusters, never an entry pointing at freed ones. A full list is committed and freed (one
 * barrier per REMOVE_PENDING entries, whatever folders they are in). */
#define REMOVE_PENDING 64u

struct removal {
    uint32_t chains[REMOVE_PENDING];
    unsigned count;
};

static int removal_release(struct mf_fat *fs, struct removal *rm)
{
    int err = commit(fs);
    for (unsigned i = 0; i < rm->count && !err; i++)
        err = cluster_valid(fs, rm->chains[i]) ? chain_free(fs, rm->chains[i]) : MF_ECORRUPT;
    rm->count = 0;
    return err;
}

static int removal_add(struct mf_fat *fs, struct removal *rm, const struct found *f)
{
    int err = rm->count == REMOVE_PENDING ? removal_release(fs, rm) : 0;
    if (!err)
        err = dir_remove(fs, f, NULL);
    uint32_t cluster = entry_cluster(fs, f->entry);
    if (!err && cluster)
        rm->chains[rm->count++] = cluster;
    return err;
}

/* One folder of a tree being walked: where its listing goes on, and its own entry. */
struct tree_level {
    struct dir_iter it;
    struct found self;
};

/* Walks the folder `top` (its entry) depth first, without recursion: with `rm`, removes each
 * file's entry, and each folder's once its listing has ended (deepest first, `top` last); else
 * adds each file's clusters to `run`. Bounded: depth MF_FAT_DEPTH_MAX, a folder inside itself
 * and more entries than the volume can hold are reported as damage. */
static int tree_walk(struct mf_fat *fs, const struct found *top, struct removal *rm,
                     struct erase_run *run)
{
    struct tree_level *stack = malloc((MF_FAT_DEPTH_MAX + 1) * sizeof *stack);
    if (!stack)
        return MF_ENOMEM;
    uint64_t limit = (uint64_t)fs->geo.cluster_count * (cluster_bytes(fs) / DIRENT_SIZE) + 65536u;
    unsigned depth = 1;
    stack[0].self = *top;
    dir_iter_init(&stack[0].it, entry_cluster(fs, top->entry), 0);
    int err = 0;
    for (uint64_t steps = 0; depth > 0 && !err; steps++) {
        struct tree_level *level = &stack[depth - 1];
        struct found f;
        int r = steps > limit ? MF_ECORRUPT : dir_next(fs, &level->it, &f);
        if (r < 0) {
            err = r;
        } else if (r == 0) {
            err = rm ? removal_add(fs, rm, &level->self) : 0;
            depth--;
        } else if (entry_is_dir(f.entry)) {
            uint32_t c = entry_cluster(fs, f.entry);
            err = cluster_valid(fs, c) ? 0 : MF_ECORRUPT;
            for (unsigned i = 0; i < depth && !err; i++) {
                if (stack[i].it.first_cluster == c)
                    err = MF_ECORRUPT; /* a loop in the folders */
            }
            if (!err && depth > MF_FAT_DEPTH_MAX)
                err = MF_ENAMETOOLONG;
            if (!err) {
                stack[depth].self = f;
                dir_iter_init(&stack[depth].it, c, 0);
                depth++;
            }
        } else if (entry_open(fs, f.sector, f.offset)) {
            err = MF_EBUSY;
        } else if (rm) {
            err = removal_add(fs, rm, &f);
        } else if (entry_cluster(fs, f.entry)) {
            err = chain_erase(fs, entry_cluster(fs, f.entry), run);
        }
    }
    free(stack);
    return err;
}

/* With `wipe`, every file's clusters in the whole tree are erased first, behind one barrier, so
 * that no entry goes before the bytes it points at are gone: whatever a cut leaves (entries,
 * lost clusters) holds nothing of the files. Then the entries go, files before their folders,
 * and the chains are freed a list at a time (struct removal). */
static int remove_tree(struct mf_fat *fs, const char *path, bool wipe)
{
    struct lookup l;
    uint32_t cluster;
    int err = lookup_removable_folder(fs, path, &l, &cluster);
    if (err)
        return err;
    uint64_t failures = fs->device_failures;
    struct removal rm = {.count = 0};
    if (wipe) {
        struct erase_run run = {0, 0};
        err = tree_walk(fs, &l.f, NULL, &run);
        if (!err)
            err = erase_run_end(fs, &run);
        if (!err)
            err = commit(fs);
    }
    if (!err)
        err = tree_walk(fs, &l.f, &rm, NULL);
    if (fs->device_failures == failures) {
        /* Also after a refusal (an open file): what was removed so far is committed and its
         * chains freed, as each step keeps the volume consistent. A device that failed in this
         * call (not in an earlier one) leaves it to finish. */
        int rerr = removal_release(fs, &rm);
        if (!err)
            err = rerr;
    }
    return finish(fs, err);
}

int mf_fat_remove_tree(struct mf_fat *fs, const char *path)
{
    return remove_tree(fs, path, false);
}

int mf_fat_remove_tree_wiped(struct mf_fat *fs, const char *path)
{
    return remove_tree(fs, path, true);
}
