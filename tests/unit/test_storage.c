/* Storage layout on RAM devices: planning, init/open/info, secure area create/remove, foreign
 * and hostile tables, I/O errors, and power cuts at every write point (and every pair of
 * points) of init, secure_create, secure_remove and recovery. After any cut, open + recover must
 * give a READY layout that is either the old one, untouched, or the new one, wiped, whose
 * public FAT mounts and agrees with the partition table. The sweeps run on 4 MiB; under
 * MF_SOAK=1 also on 64 MiB and on 640 MiB with 4 KiB sectors (see sweep_one). */
#include "mf_bd.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_mbr.h"
#include "mf_rambd.h"
#include "mf_storage.h"
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

#define MIB       (1024u * 1024u)
#define BS        512u
#define JUNK      0xA5 /* fills old data that a wipe must remove */
#define OLD_ID    0x01D01D01u
#define NEW_ID    0x0E1E1E1Eu
#define DISK_SIG  0x5151AAAAu
#define KEEP_PATH "/keep.bin"
#define CHUNK     (256u * 1024u) /* bytes the helpers below read or write at a time */

static struct mf_fat volume; /* large: not on the stack */

struct ram {
    uint8_t *memory;
    struct mf_rambd bd;
};

static void ram_new(struct ram *ram, uint64_t bytes, uint32_t block_size)
{
    ram->memory = calloc(1, (size_t)bytes);
    assert_non_null(ram->memory);
    mf_rambd_init(&ram->bd, ram->memory, block_size, bytes / block_size);
}

static void ram_free(struct ram *ram)
{
    free(ram->memory);
    ram->memory = NULL;
}

static int check_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int check_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("storage check: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return MF_EVERIFY;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An open, READY storage whose table matches the plan and whose public FAT mounts and agrees
 * with it: size, partition type, hidden sectors, volume id and label. Leaves `volume` mounted
 * on success. */
static int verify_ready(struct mf_storage *st, const struct mf_bd *bd, bool secure_area)
{
    if (!st->ours || st->interrupted || st->mbr.record.state != MF_MBR_STATE_READY)
        return check_fail("not a READY storage of ours (ours %d, interrupted %d)", st->ours,
                          st->interrupted);
    struct mf_storage_layout plan;
    int err = mf_storage_plan(bd, secure_area, &plan);
    if (err)
        return check_fail("plan: %d", err);
    if (memcmp(&plan, &st->layout, sizeof plan) != 0)
        return check_fail("layout %llu+%llu / %llu+%llu differs from the plan",
                          (unsigned long long)st->layout.public_first,
                          (unsigned long long)st->layout.public_count,
                          (unsigned long long)st->layout.secure_first,
                          (unsigned long long)st->layout.secure_count);
    const struct mf_bd *pub = mf_storage_public_area(st);
    if ((mf_storage_secure_area(st) != NULL) != secure_area)
        return check_fail("secure area slice present: %d", mf_storage_secure_area(st) != NULL);
    err = mf_fat_mount(&volume, pub, NULL, NULL);
    if (err)
        return check_fail("public FAT does not mount: %s", mf_strerror(err));
    const struct mf_fat_geometry *g = mf_fat_geometry(&volume);
    uint64_t fat_bytes = (uint64_t)g->total_sectors * g->bytes_per_sector;
    if (fat_bytes != mf_bd_size(pub))
        return check_fail("FAT spans %llu bytes, its partition %llu", (unsigned long long)fat_bytes,
                          (unsigned long long)mf_bd_size(pub));
    uint8_t want_type = mf_storage_fat_partition_type(g->type, mf_bd_size(pub));
    if (st->mbr.entries[0].type != want_type)
        return check_fail("partition 1 type 0x%02X for FAT%d (want 0x%02X)",
                          st->mbr.entries[0].type, (int)g->type, want_type);
    if (secure_area && st->mbr.entries[1].type != MF_MBR_TYPE_NON_FS_DATA)
        return check_fail("partition 2 type 0x%02X", st->mbr.entries[1].type);
    uint8_t boot[4096];
    err = mf_bd_read(pub, 0, boot, 1);
    if (err)
        return check_fail("boot sector: %s", mf_strerror(err));
    uint32_t hidden = rd32(boot + 28);
    if (hidden != st->layout.public_first * (bd->block_size / 512))
        return check_fail("hidden sectors %u, partition starts at %llu", hidden,
                          (unsigned long long)st->layout.public_first);
    if (g->volume_id != st->mbr.record.volume_id)
        return check_fail("FAT volume id %08X, record %08X", g->volume_id,
                          st->mbr.record.volume_id);
    const char *label = st->mbr.record.label[0] ? st->mbr.record.label : MF_STORAGE_LABEL_DEFAULT;
    if (strcmp(g->label, label) != 0)
        return check_fail("FAT label \"%s\", record \"%s\"", g->label, label);
    return 0;
}

static int unmount(int rc)
{
    if (volume.bd)
        mf_fat_unmount(&volume);
    return rc;
}

static int write_file(const struct mf_bd *pub, const char *path, uint8_t fill, uint32_t size)
{
    int err = mf_fat_mount(&volume, pub, NULL, NULL);
    if (err)
        return err;
    struct mf_fat_file f;
    err = mf_fat_open(&volume, &f, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC);
    static uint8_t chunk[CHUNK];
    memset(chunk, fill, sizeof chunk);
    for (uint32_t done = 0; !err && done < size; done += sizeof chunk) {
        uint32_t n = size - done < sizeof chunk ? size - done : (uint32_t)sizeof chunk;
        int w = mf_fat_write(&volume, &f, chunk, n);
        err = w < 0 ? w : w == (int)n ? 0 : MF_ENOSPC;
    }
    if (!err)
        err = mf_fat_close(&volume, &f);
    int err2 = mf_fat_unmount(&volume);
    return err ? err : err2;
}

/* The file exists with `size` bytes of `fill` (volume mounted). */
static int file_intact(const char *path, uint8_t fill, uint32_t size)
{
    struct mf_fat_file f;
    int err = mf_fat_open(&volume, &f, path, MF_FAT_O_RDONLY);
    if (err)
        return check_fail("%s: %s", path, mf_strerror(err));
    static uint8_t chunk[CHUNK], want[CHUNK];
    memset(want, fill, sizeof want);
    uint32_t total = 0;
    int n;
    while ((n = mf_fat_read(&volume, &f, chunk, sizeof chunk)) > 0) {
        if (memcmp(chunk, want, (size_t)n) != 0) {
            int i = 0;
            while (chunk[i] == fill)
                i++;
            mf_fat_close(&volume, &f);
            return check_fail("%s: byte %u is 0x%02X", path, total + (uint32_t)i, chunk[i]);
        }
        total += (uint32_t)n;
    }
    mf_fat_close(&volume, &f);
    if (n < 0 || total != size)
        return check_fail("%s: read %u of %u bytes (%d)", path, total, size, n);
    return 0;
}

static int root_empty(void)
{
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    int err = mf_fat_opendir(&volume, &dir, "/");
    if (!err)
        err = mf_fat_readdir(&volume, &dir, &st);
    if (err < 0)
        return check_fail("root folder: %s", mf_strerror(err));
    if (err == 1)
        return check_fail("root folder still holds \"%s\"", st.name);
    return 0;
}

/* Calls `each` for every block of `bd`, read CHUNK bytes at a time; stops at its first error. */
static int each_block(const struct mf_bd *bd, const char *what,
                      int (*each)(const uint8_t *block, uint32_t size, mf_block_t number,
                                  const void *arg),
                      const void *arg)
{
    static uint8_t chunk[CHUNK];
    size_t per_read = sizeof chunk / bd->block_size;
    for (mf_block_t b = 0; b < bd->block_count; b += per_read) {
        size_t count = bd->block_count - b < per_read ? (size_t)(bd->block_count - b) : per_read;
        int err = mf_bd_read(bd, b, chunk, count);
        if (err)
            return check_fail("%s: reading block %llu: %s", what, (unsigned long long)b,
                              mf_strerror(err));
        for (size_t i = 0; i < count; i++) {
            err = each(chunk + i * bd->block_size, bd->block_size, b + i, arg);
            if (err)
                return err;
        }
    }
    return 0;
}

static int not_junk(const uint8_t *block, uint32_t size, mf_block_t number, const void *arg)
{
    (void)arg;
    static uint8_t junk[MF_STORAGE_BLOCK_MAX];
    if (junk[0] != JUNK)
        memset(junk, JUNK, sizeof junk);
    if (memcmp(block, junk, size) == 0)
        return check_fail("block %llu still holds old data after a wipe",
                          (unsigned long long)number);
    return 0;
}

/* No block of the device holds the junk of the old contents. */
static int no_junk(const struct mf_bd *bd)
{
    return each_block(bd, "wiped device", not_junk, NULL);
}

struct expected_value {
    uint8_t value;
    const char *what;
};

static int is_value(const uint8_t *block, uint32_t size, mf_block_t number, const void *arg)
{
    const struct expected_value *e = arg;
    static uint8_t want[MF_STORAGE_BLOCK_MAX];
    static int filled = -1;
    if (filled != e->value) {
        memset(want, e->value, sizeof want);
        filled = e->value;
    }
    if (memcmp(block, want, size) == 0)
        return 0;
    uint32_t i = 0;
    while (block[i] == e->value)
        i++;
    return check_fail("%s: byte %u of block %llu is 0x%02X, not 0x%02X", e->what, i,
                      (unsigned long long)number, block[i], e->value);
}

static int all_value(const struct mf_bd *bd, uint8_t value, const char *what)
{
    struct expected_value e = {value, what};
    return each_block(bd, what, is_value, &e);
}

/* ---- plan and type bytes ---- */

static struct mf_bd fake_bd(uint32_t block_size, mf_block_t count)
{
    struct mf_bd bd = {.block_size = block_size, .block_count = count};
    return bd;
}

static void test_plan(void **state)
{
    (void)state;
    struct mf_storage_layout l;
    struct mf_bd bd = fake_bd(BS, 4 * MIB / BS);
    assert_int_equal(mf_storage_plan(&bd, false, &l), 0);
    assert_int_equal(l.public_first, 2048);
    assert_int_equal(l.public_count, 6144);
    assert_int_equal(l.secure_count, 0);
    assert_int_equal(mf_storage_plan(&bd, true, &l), 0);
    assert_int_equal(l.public_first, 2048);
    assert_int_equal(l.public_count, 2048);
    assert_int_equal(l.secure_first, 4096);
    assert_int_equal(l.secure_count, 4096);

    bd = fake_bd(BS, 128 * (MIB / BS));
    assert_int_equal(mf_storage_plan(&bd, true, &l), 0);
    assert_int_equal(l.public_count, 129024); /* 63 MiB */
    assert_int_equal(l.secure_first, 131072); /* at 64 MiB */
    assert_int_equal(l.secure_count, 131072); /* 64 MiB */

    /* Half of 7 MiB rounds down to 3 MiB: the secure area starts on a MiB boundary. */
    bd = fake_bd(BS, 7 * (MIB / BS) + 1);
    assert_int_equal(mf_storage_plan(&bd, true, &l), 0);
    assert_int_equal(l.secure_first, 6144);
    assert_int_equal(l.secure_count, 7 * 2048 + 1 - 6144);
    assert_int_equal(l.public_first + l.public_count, l.secure_first);

    bd = fake_bd(4096, 8 * (MIB / 4096));
    assert_int_equal(mf_storage_plan(&bd, true, &l), 0);
    assert_int_equal(l.public_first, 256);
    assert_int_equal(l.secure_first, 1024);

    bd = fake_bd(BS, 4 * MIB / BS - 1);
    assert_int_equal(mf_storage_plan(&bd, false, &l), MF_ERANGE);
    bd = fake_bd(BS, MF_STORAGE_MAX_BLOCKS);
    assert_int_equal(mf_storage_plan(&bd, true, &l), 0);
    assert_int_equal(l.secure_first + l.secure_count, MF_STORAGE_MAX_BLOCKS);
    bd = fake_bd(BS, MF_STORAGE_MAX_BLOCKS + 1);
    assert_int_equal(mf_storage_plan(&bd, false, &l), MF_ERANGE);
    bd = fake_bd(8192, 1024);
    assert_int_equal(mf_storage_plan(&bd, false, &l), MF_ENOTSUP);
}

static void test_partition_types(void **state)
{
    (void)state;
    assert_int_equal(mf_storage_fat_partition_type(MF_FAT12, 3 * MIB), 0x01);
    assert_int_equal(mf_storage_fat_partition_type(MF_FAT16, 32 * MIB - 512), 0x04);
    assert_int_equal(mf_storage_fat_partition_type(MF_FAT16, 32 * MIB), 0x06);
    assert_int_equal(mf_storage_fat_partition_type(MF_FAT32, 1024ull * MIB), 0x0C);
}

/* ---- init, open, info ---- */

static void init_and_check(uint64_t bytes, uint32_t block_size, bool secure, enum mf_fat_type fat,
                           uint8_t type)
{
    struct ram ram;
    ram_new(&ram, bytes, block_size);
    struct mf_storage st;
    struct mf_storage_options o = {
        .secure_area = secure, .volume_id = NEW_ID, .disk_signature = DISK_SIG, .label = "LINE 7"};
    int err = mf_storage_init(&st, &ram.bd.bd, &o);
    if (err)
        fail_msg("init %llu bytes: %s (%s)", (unsigned long long)bytes, mf_strerror(err),
                 st.reason);
    assert_int_equal(st.mbr.entries[0].type, type);
    assert_int_equal(verify_ready(&st, &ram.bd.bd, secure), 0);
    assert_int_equal(mf_fat_geometry(&volume)->type, fat);
    assert_int_equal(unmount(0), 0);

    /* Opening afresh sees the same. */
    struct mf_storage again;
    assert_int_equal(mf_storage_open(&again, &ram.bd.bd), 0);
    assert_true(again.ours);
    assert_int_equal(again.mbr.disk_signature, DISK_SIG);
    assert_string_equal(again.mbr.record.label, "LINE 7");
    assert_int_equal(verify_ready(&again, &ram.bd.bd, secure), 0);
    assert_int_equal(unmount(0), 0);

    struct mf_storage_info info;
    assert_int_equal(mf_storage_info(&again, &info), 0);
    assert_int_equal(info.disk_bytes, bytes);
    assert_int_equal(info.block_size, block_size);
    assert_int_equal(info.disk_signature, DISK_SIG);
    assert_true(info.ours);
    assert_false(info.interrupted);
    assert_int_equal(info.public_offset, MIB);
    assert_int_equal(info.public_bytes, again.layout.public_count * block_size);
    assert_int_equal(info.public_type, type);
    assert_int_equal(info.secure_area, secure);
    if (secure) {
        assert_int_equal(info.secure_offset + info.secure_bytes, bytes);
        assert_int_equal(info.secure_offset % MIB, 0);
        assert_int_equal(info.secure_type, 0xDA);
        assert_int_equal(all_value(mf_storage_secure_area(&again), 0, "secure area"), 0);
    } else {
        assert_int_equal(info.public_offset + info.public_bytes, bytes);
    }
    assert_int_equal(info.fat_type, fat);
    assert_int_equal(info.volume_id, NEW_ID);
    assert_string_equal(info.label, "LINE 7");
    ram_free(&ram);
}

static void test_init_sizes(void **state)
{
    (void)state;
    init_and_check(4 * MIB, BS, false, MF_FAT12, 0x01);
    init_and_check(4 * MIB, BS, true, MF_FAT12, 0x01);
    init_and_check(16 * MIB, BS, false, MF_FAT16, 0x04);
    init_and_check(48 * MIB, BS, false, MF_FAT16, 0x06);
    init_and_check(8 * MIB, 4096, true, MF_FAT12, 0x01);
    if (mf_test_soak()) /* 640 MiB of RAM */
        init_and_check(640ull * MIB, BS, false, MF_FAT32, 0x0C);
}

static void test_init_refuses(void **state)
{
    (void)state;
    struct ram ram;
    ram_new(&ram, 4 * MIB - BS, BS);
    struct mf_storage st;
    struct mf_storage_options o = {.volume_id = 1};
    assert_int_equal(mf_storage_init(&st, &ram.bd.bd, &o), MF_ERANGE);
    assert_non_null(strstr(st.reason, "smaller than the minimum"));
    assert_int_equal(all_value(&ram.bd.bd, 0, "refused device"), 0); /* nothing written */
    ram_free(&ram);

    ram_new(&ram, 4 * MIB, BS);
    const char *bad_labels[] = {"", "TWELVE CHARS", "A/B", "tab\there", "\xC3\xA9t\xC3\xA9"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        o.label = bad_labels[i];
        assert_int_equal(mf_storage_init(&st, &ram.bd.bd, &o), MF_EINVAL);
        assert_non_null(strstr(st.reason, "volume label"));
    }
    assert_int_equal(all_value(&ram.bd.bd, 0, "refused device"), 0);
    ram_free(&ram);
}

static void test_secure_create_remove(void **state)
{
    (void)state;
    struct ram ram;
    ram_new(&ram, 8 * MIB, BS);
    struct mf_storage st;
    struct mf_storage_options o = {
        .volume_id = OLD_ID, .disk_signature = DISK_SIG, .label = "KEEPME"};
    assert_int_equal(mf_storage_init(&st, &ram.bd.bd, &o), 0);
    assert_int_equal(mf_storage_secure_remove(&st, NEW_ID), MF_ENOENT);
    assert_non_null(strstr(st.reason, "no secure area"));
    assert_int_equal(write_file(mf_storage_public_area(&st), KEEP_PATH, JUNK, 5 * MIB), 0);

    assert_int_equal(mf_storage_secure_create(&st, NEW_ID), 0);
    assert_int_equal(verify_ready(&st, &ram.bd.bd, true), 0);
    assert_int_equal(root_empty(), 0); /* "all configuration and data files ... are lost" */
    assert_int_equal(unmount(0), 0);
    assert_int_equal(no_junk(&ram.bd.bd), 0);
    assert_int_equal(st.mbr.disk_signature, DISK_SIG);
    assert_string_equal(st.mbr.record.label, "KEEPME");
    assert_int_equal(mf_storage_secure_create(&st, NEW_ID), MF_EEXIST);

    /* Junk in both areas, then remove: everything wiped, one public area. */
    assert_int_equal(write_file(mf_storage_public_area(&st), KEEP_PATH, JUNK, 2 * MIB), 0);
    const struct mf_bd *sec = mf_storage_secure_area(&st);
    uint8_t junk[BS];
    memset(junk, JUNK, sizeof junk);
    for (mf_block_t b = 0; b < sec->block_count; b++)
        assert_int_equal(mf_bd_prog(sec, b, junk, 1), 0);
    assert_int_equal(mf_storage_secure_remove(&st, OLD_ID), 0);
    assert_null(mf_storage_secure_area(&st));
    assert_int_equal(verify_ready(&st, &ram.bd.bd, false), 0);
    assert_int_equal(root_empty(), 0);
    assert_int_equal(unmount(0), 0);
    assert_int_equal(no_junk(&ram.bd.bd), 0);

    struct mf_storage again;
    assert_int_equal(mf_storage_open(&again, &ram.bd.bd), 0);
    assert_int_equal(again.layout.secure_count, 0);
    assert_string_equal(again.mbr.record.label, "KEEPME");
    ram_free(&ram);
}

/* ---- foreign and hostile tables ---- */

/* Writes a table by hand: one FAT partition of another tool (type 0x83 as sfdisk's default),
 * optionally more entries. */
static void write_table(const struct mf_bd *bd, const struct mf_mbr *mbr)
{
    uint8_t block[4096] = {0};
    assert_int_equal(mf_mbr_encode(mbr, bd->block_count, block), 0);
    assert_int_equal(mf_bd_prog(bd, 0, block, 1), 0);
}

static void test_foreign_image(void **state)
{
    (void)state;
    struct ram ram;
    ram_new(&ram, 6 * MIB, BS);
    struct mf_mbr mbr = {.disk_signature = 0xF0F0F0F0u,
                         .entries = {{0x80, 0x83, 63, 6 * 2048 - 63}}};
    write_table(&ram.bd.bd, &mbr);
    struct mf_storage st;
    assert_int_equal(mf_storage_open(&st, &ram.bd.bd), MF_ECORRUPT);
    assert_non_null(strstr(st.reason, "partition 1 (type 0x83, at sector 63) holds no FAT"));

    struct mf_bd_slice part;
    mf_bd_slice_init(&part, &ram.bd.bd, 63, 6 * 2048 - 63);
    struct mf_fat_format_options f = {.volume_id = 0x1234, .hidden_sectors = 63};
    assert_int_equal(mf_fat_format(&part.bd, &f), 0);
    assert_int_equal(write_file(&part.bd, "/user.txt", 'u', 4096), 0);
    assert_int_equal(mf_storage_open(&st, &ram.bd.bd), 0);
    assert_false(st.ours);
    assert_false(st.interrupted);
    assert_int_equal(st.layout.public_first, 63);
    assert_int_equal(mf_fat_mount(&volume, mf_storage_public_area(&st), NULL, NULL), 0);
    assert_int_equal(file_intact("/user.txt", 'u', 4096), 0);
    assert_int_equal(unmount(0), 0);
    struct mf_storage_info info;
    assert_int_equal(mf_storage_info(&st, &info), 0);
    assert_false(info.ours);
    assert_int_equal(info.fat_type, MF_FAT12);
    assert_int_equal(info.volume_id, 0x1234);
    assert_string_equal(info.label, "NO NAME");

    /* Repartitioning makes it ours, keeping the disk signature. */
    assert_int_equal(mf_storage_secure_create(&st, NEW_ID), 0);
    assert_int_equal(verify_ready(&st, &ram.bd.bd, true), 0);
    assert_int_equal(unmount(0), 0);
    assert_int_equal(st.mbr.disk_signature, 0xF0F0F0F0u);
    ram_free(&ram);
}

static void expect_open_corrupt(const struct mf_bd *bd, const char *needle)
{
    struct mf_storage st;
    int err = mf_storage_open(&st, bd);
    if (err != MF_ECORRUPT || !strstr(st.reason, needle))
        fail_msg("open: %d \"%s\", expected MF_ECORRUPT mentioning \"%s\"", err, st.reason, needle);
}

static void test_open_refuses(void **state)
{
    (void)state;
    struct ram ram;
    ram_new(&ram, 8 * MIB, BS);
    expect_open_corrupt(&ram.bd.bd, "blank");
    ram.memory[510] = 0x55;
    expect_open_corrupt(&ram.bd.bd, "0x55AA");

    struct mf_storage st;
    struct mf_storage_options o = {.secure_area = true, .volume_id = OLD_ID};
    assert_int_equal(mf_storage_init(&st, &ram.bd.bd, &o), 0);
    struct mf_mbr good = st.mbr, mbr;

    mbr = good;
    mbr.entries[1].type = 0x83;
    write_table(&ram.bd.bd, &mbr);
    expect_open_corrupt(&ram.bd.bd, "partition 2 has type 0x83; a secure area has type 0xDA");

    mbr = good;
    mbr.entries[3] = (struct mf_mbr_entry){0, 0x83, 1000, 10};
    write_table(&ram.bd.bd, &mbr);
    expect_open_corrupt(&ram.bd.bd, "partition 4 (type 0x83) is not part");

    mbr = good;
    mbr.entries[0] = (struct mf_mbr_entry){0};
    write_table(&ram.bd.bd, &mbr);
    expect_open_corrupt(&ram.bd.bd, "partition 1 (the public area) is missing");

    mbr = good;
    mbr.entries[0].type = 0x83; /* with our record: we never write that */
    write_table(&ram.bd.bd, &mbr);
    expect_open_corrupt(&ram.bd.bd, "type 0x83, not FAT");

    /* Overlapping entries (the encoder refuses them, so patch the bytes). */
    uint8_t block[BS];
    assert_int_equal(mf_mbr_encode(&good, ram.bd.bd.block_count, block), 0);
    put32(block + 446 + 16 + 8, good.entries[1].start - 1);
    put32(block + 446 + 16 + 12, good.entries[1].count + 1);
    assert_int_equal(mf_bd_prog(&ram.bd.bd, 0, block, 1), 0);
    expect_open_corrupt(&ram.bd.bd, "partition 2 (sectors 8191-16383) overlaps partition 1");

    /* The table edited by another tool (type byte changed): opens as foreign, FAT intact. */
    assert_int_equal(mf_mbr_encode(&good, ram.bd.bd.block_count, block), 0);
    block[446 + 4] = MF_MBR_TYPE_FAT16_LBA;
    assert_int_equal(mf_bd_prog(&ram.bd.bd, 0, block, 1), 0);
    assert_int_equal(mf_storage_open(&st, &ram.bd.bd), 0);
    assert_false(st.ours);
    assert_true(st.mbr.record_damaged);
    assert_int_equal(st.layout.secure_count, good.entries[1].count);

    /* A newer record version (with a valid CRC) is refused rather than guessed at. */
    assert_int_equal(mf_mbr_encode(&good, ram.bd.bd.block_count, block), 0);
    block[384 + 8] = 2;
    uint32_t crc = mf_crc32_update(0, block + 384, 44);
    put32(block + 384 + 44, mf_crc32_update(crc, block + 440, 70));
    assert_int_equal(mf_bd_prog(&ram.bd.bd, 0, block, 1), 0);
    assert_int_equal(mf_storage_open(&st, &ram.bd.bd), MF_EVERSION);
    assert_non_null(strstr(st.reason, "version 2"));
    ram_free(&ram);
}

/* ---- interruption, recovery, I/O errors ---- */

struct fault_rig {
    struct ram ram;
    uint8_t cache[64 * BS];
    struct mf_faultbd fb;
};

static void rig_new(struct fault_rig *rig, uint64_t bytes)
{
    ram_new(&rig->ram, bytes, BS);
    struct mf_faultbd_config c = {.seed = 7, .cache = rig->cache, .cache_size = sizeof rig->cache};
    mf_faultbd_init(&rig->fb, &rig->ram.bd.bd, &c);
}

static void test_interrupted_then_recovered(void **state)
{
    (void)state;
    struct fault_rig rig;
    rig_new(&rig, 4 * MIB);
    struct mf_storage st;
    struct mf_storage_options o = {.volume_id = NEW_ID, .disk_signature = DISK_SIG};
    /* Write point 3 is the erase of the gap, right after the FORMATTING table is synced. */
    mf_faultbd_arm_cut(&rig.fb, 3, MF_FAULTBD_CUT_DROP);
    assert_int_equal(mf_storage_init(&st, &rig.fb.bd, &o), MF_EPOWERLOSS);
    assert_non_null(strstr(st.reason, "power"));
    mf_faultbd_reset(&rig.fb);

    assert_int_equal(mf_storage_open(&st, &rig.fb.bd), 0);
    assert_true(st.ours);
    assert_true(st.interrupted);
    struct mf_storage_info info;
    assert_int_equal(mf_storage_info(&st, &info), 0);
    assert_true(info.interrupted);
    assert_int_equal(info.fat_type, MF_FAT_AUTO);
    assert_int_equal(mf_storage_recover(&st), 0);
    assert_false(st.interrupted);
    assert_int_equal(verify_ready(&st, &rig.fb.bd, false), 0);
    assert_int_equal(unmount(0), 0);
    assert_int_equal(mf_storage_recover(&st), 0); /* nothing left to do */
    ram_free(&rig.ram);
}

static void test_io_errors(void **state)
{
    (void)state;
    struct fault_rig rig;
    rig_new(&rig, 4 * MIB);
    struct mf_storage st;
    struct mf_storage_options o = {.volume_id = OLD_ID, .disk_signature = DISK_SIG};
    assert_int_equal(mf_storage_init(&st, &rig.fb.bd, &o), 0);
    mf_faultbd_reset_counters(&rig.fb);
    assert_int_equal(mf_storage_secure_create(&st, NEW_ID), 0);
    uint64_t points = mf_faultbd_counters(&rig.fb)->write_points;
    assert_true(points >= 8);

    /* A failed write at every point of secure_create: MF_EIO with a reason, never a crash;
     * afterwards (errors gone, unsynced writes lost) open + recover ends on a valid layout.
     * One point past the end nothing fails. */
    for (uint64_t n = 1; n <= points + 1; n++) {
        for (int persistent = 0; persistent < 2; persistent++) {
            assert_int_equal(mf_storage_open(&st, &rig.fb.bd), 0);
            assert_int_equal(mf_storage_recover(&st), 0);
            if (st.layout.secure_count)
                assert_int_equal(mf_storage_secure_remove(&st, OLD_ID), 0);
            mf_faultbd_fail_io(&rig.fb, MF_FAULTBD_OP_WRITES, n, persistent != 0);
            int err = mf_storage_secure_create(&st, NEW_ID);
            mf_faultbd_fail_io_off(&rig.fb);
            if (err != (n <= points ? MF_EIO : 0))
                fail_msg("failed write %llu of %llu: %s", (unsigned long long)n,
                         (unsigned long long)points, mf_strerror(err));
            if (err)
                assert_non_null(strstr(st.reason, mf_strerror(MF_EIO)));
            mf_faultbd_reset(&rig.fb);
            assert_int_equal(mf_storage_open(&st, &rig.fb.bd), 0);
            assert_int_equal(mf_storage_recover(&st), 0);
            bool secure = st.layout.secure_count != 0;
            assert_int_equal(verify_ready(&st, &rig.fb.bd, secure), 0);
            assert_int_equal(unmount(0), 0);
        }
    }

    /* A failing read of the table is reported as such. */
    mf_faultbd_fail_io(&rig.fb, MF_FAULTBD_OP_READ, 1, false);
    assert_int_equal(mf_storage_open(&st, &rig.fb.bd), MF_EIO);
    assert_non_null(strstr(st.reason, "reading the partition table"));
    ram_free(&rig.ram);
}

/* ---- power-cut sweeps ---- */

enum operation { OP_INIT, OP_SECURE_CREATE, OP_SECURE_REMOVE };

/* A device a sweep runs on. */
struct image {
    uint64_t bytes;
    uint32_t block_size;
};

struct scenario {
    enum operation op;
    bool blank;       /* the device starts blank (else: a READY storage with old contents) */
    bool old_secure;  /* the old layout has a secure area */
    bool new_secure;  /* the new one has */
    bool atomic_only; /* false: non-atomic cut modes, weaker check (see check_any) */
    /* Set by sweep_one for each image. */
    struct image image;
    unsigned fat_seen; /* bits (1 << FAT type): public FATs the checks found READY */
};

/* The old public area holds a file of this size: without a secure area it reaches into the
 * second half of the storage (what a secure area would take). */
static uint32_t keep_size(const struct scenario *sc)
{
    return sc->old_secure ? 512 * 1024 : (uint32_t)(sc->image.bytes / 8 * 3);
}

static int setup_old(void *context, const struct mf_bd *medium)
{
    const struct scenario *sc = context;
    if (sc->blank)
        return 0;
    struct mf_storage st;
    struct mf_storage_options o = {.secure_area = sc->old_secure,
                                   .volume_id = OLD_ID,
                                   .disk_signature = DISK_SIG,
                                   .label = "OLD"};
    int err = mf_storage_init(&st, medium, &o);
    if (!err)
        err = write_file(mf_storage_public_area(&st), KEEP_PATH, JUNK, keep_size(sc));
    if (!err && sc->old_secure) {
        const struct mf_bd *sec = mf_storage_secure_area(&st);
        static uint8_t junk[CHUNK];
        memset(junk, JUNK, sizeof junk);
        size_t per_prog = sizeof junk / sec->block_size;
        for (mf_block_t b = 0; b < sec->block_count && !err; b += per_prog) {
            size_t count =
                sec->block_count - b < per_prog ? (size_t)(sec->block_count - b) : per_prog;
            err = mf_bd_prog(sec, b, junk, count);
        }
    }
    return err;
}

/* The operation, resumable: a storage already carrying the new volume id only needs recovery. */
static int run_op(void *context, const struct mf_bd *bd)
{
    const struct scenario *sc = context;
    struct mf_storage st;
    int err = mf_storage_open(&st, bd);
    if (err == MF_EPOWERLOSS)
        return err;
    if (!err && st.interrupted)
        err = mf_storage_recover(&st);
    if (!err && st.ours && st.mbr.record.volume_id == NEW_ID)
        return 0;
    struct mf_storage_options o = {.secure_area = sc->new_secure,
                                   .volume_id = NEW_ID,
                                   .disk_signature = DISK_SIG,
                                   .label = "NEW"};
    switch (sc->op) {
    case OP_INIT:
        return mf_storage_init(&st, bd, &o);
    case OP_SECURE_CREATE:
        return err ? err : mf_storage_secure_create(&st, NEW_ID);
    case OP_SECURE_REMOVE:
        return err ? err : mf_storage_secure_remove(&st, NEW_ID);
    }
    return MF_EINVAL;
}

static int check_consistent(void *context, const struct mf_bd *bd,
                            const struct mf_sweep_point *point)
{
    (void)point;
    struct scenario *sc = context;
    struct mf_storage st;
    int err = mf_storage_open(&st, bd);
    if (err) {
        /* Only a blank start that never got its first table written may stay blank. */
        if (sc->blank && err == MF_ECORRUPT && strstr(st.reason, "blank"))
            return all_value(bd, 0, "device left blank");
        return check_fail("open: %s (%s)", mf_strerror(err), st.reason);
    }
    if (st.interrupted && (err = mf_storage_recover(&st)) != 0)
        return check_fail("recover: %s (%s)", mf_strerror(err), st.reason);
    bool is_new = st.ours && st.mbr.record.volume_id == NEW_ID;
    bool is_old = st.ours && st.mbr.record.volume_id == OLD_ID && !sc->blank;
    if (!is_new && !is_old)
        return check_fail("neither the old nor the new storage (ours %d, volume id %08X)", st.ours,
                          st.mbr.record.volume_id);
    err = verify_ready(&st, bd, is_new ? sc->new_secure : sc->old_secure);
    if (!err)
        sc->fat_seen |= 1u << mf_fat_geometry(&volume)->type;
    if (!err && is_old)
        err = file_intact(KEEP_PATH, JUNK, keep_size(sc));
    if (!err && is_old && sc->old_secure)
        err = all_value(mf_storage_secure_area(&st), JUNK, "old secure area");
    if (!err && is_new)
        err = root_empty();
    const char *label = sc->op == OP_INIT ? "NEW" : "OLD"; /* repartitions keep the label */
    if (!err && is_new && strcmp(st.mbr.record.label, label) != 0)
        err = check_fail("label \"%s\", expected \"%s\"", st.mbr.record.label, label);
    unmount(0);
    if (!err && is_new)
        err = no_junk(bd);
    if (!err && is_new && sc->new_secure)
        err = all_value(mf_storage_secure_area(&st), 0, "new secure area");
    return err;
}

/* Non-atomic cuts (torn bytes, garbage) may destroy the one-sector table itself; then open must
 * fail cleanly. Whatever opens as ours and READY after recovery must be fully consistent. */
static int check_any(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct scenario *sc = context;
    (void)point;
    struct mf_storage st;
    int err = mf_storage_open(&st, bd);
    if (err)
        return err == MF_ECORRUPT || err == MF_EVERSION
                   ? 0
                   : check_fail("open: %s (%s)", mf_strerror(err), st.reason);
    if (!st.ours)
        return 0;
    if (st.interrupted && (err = mf_storage_recover(&st)) != 0)
        return check_fail("recover: %s (%s)", mf_strerror(err), st.reason);
    err = verify_ready(&st, bd, st.layout.secure_count != 0);
    if (!err)
        sc->fat_seen |= 1u << mf_fat_geometry(&volume)->type;
    return unmount(err);
}

/* The public FAT mf_storage_init makes on `image` (as mkfs.fat would choose). */
static enum mf_fat_type expected_fat(const struct image *image, bool secure)
{
    uint64_t public_bytes = secure ? image->bytes / 2 - MIB : image->bytes - MIB;
    if (image->bytes <= 4 * MIB)
        return MF_FAT12;
    return public_bytes >= 512ull * MIB ? MF_FAT32 : MF_FAT16;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void sweep_image(const char *name, struct scenario *sc, bool pairs)
{
    struct mf_sweep sweep = {
        .name = name,
        .block_size = sc->image.block_size,
        .block_count = sc->image.bytes / sc->image.block_size,
        .context = sc,
        .setup = setup_old,
        .run = run_op,
        .check = sc->atomic_only ? check_consistent : check_any,
    };
    bool large = sc->image.bytes > 4 * MIB;
    struct mf_sweep_options options = {
        .modes = sc->atomic_only ? MF_FAULTBD_CUT_ATOMIC
                                 : MF_FAULTBD_CUT_TORN_BYTES | MF_FAULTBD_CUT_GARBLE,
        .seed = mf_test_seed(name, 0x5707A6E),
        /* Large images: one seed (8 under MF_SOAK=1), so that a soak stays within minutes. */
        .seeds = large             ? 1
                 : sc->atomic_only ? 2
                                   : 4,
        .pairs = pairs,
    };
    struct mf_sweep_result result;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    sc->fat_seen = 0;
    int err = mf_sweep_run(&sweep, &options, &result);
    fprintf(stderr, "sweep %s: %llu MiB, %u-byte sectors, %.1f s\n", name,
            (unsigned long long)(sc->image.bytes / MIB), sc->image.block_size,
            seconds_since(&start));
    if (err)
        fail_msg("sweep %s: %s; first failure: %s", name, mf_strerror(err), result.first_reason);
    assert_true(result.cuts >= result.write_points);
    /* The image's own FAT types were reached: the new layout's, and (where every cut keeps the
     * old layout readable until the switch) the old one's. */
    unsigned want = 1u << expected_fat(&sc->image, sc->new_secure);
    if (!sc->blank && sc->atomic_only)
        want |= 1u << expected_fat(&sc->image, sc->old_secure);
    if ((sc->fat_seen & want) != want)
        fail_msg("sweep %s: the checks found FATs 0x%x, expected 0x%x", name, sc->fat_seen, want);
}

/* A sweep on 4 MiB; under MF_SOAK=1 also on 64 MiB (FAT16) and on 640 MiB with 4 KiB sectors
 * (FAT32 without a secure area, FAT16 with one), the largest without pairs. */
static void sweep_one(const char *name, struct scenario *sc, bool pairs)
{
    sc->image = (struct image){4 * MIB, BS};
    sweep_image(name, sc, pairs);
    if (!mf_test_soak())
        return;
    char large[64];
    snprintf(large, sizeof large, "%s-64m", name);
    sc->image = (struct image){64 * MIB, BS};
    sweep_image(large, sc, pairs);
    snprintf(large, sizeof large, "%s-640m-4k", name);
    sc->image = (struct image){640ull * MIB, 4096};
    sweep_image(large, sc, false);
}

static void test_sweep_init_blank(void **state)
{
    (void)state;
    struct scenario plain = {.op = OP_INIT, .blank = true, .atomic_only = true};
    sweep_one("init-blank", &plain, true);
    struct scenario secure = {
        .op = OP_INIT, .blank = true, .new_secure = true, .atomic_only = true};
    sweep_one("init-blank-secure", &secure, false);
}

static void test_sweep_reinit(void **state)
{
    (void)state;
    struct scenario sc = {
        .op = OP_INIT, .old_secure = true, .new_secure = false, .atomic_only = true};
    sweep_one("reinit", &sc, false);
}

static void test_sweep_secure_create(void **state)
{
    (void)state;
    struct scenario sc = {.op = OP_SECURE_CREATE, .new_secure = true, .atomic_only = true};
    sweep_one("secure-create", &sc, true);
}

static void test_sweep_secure_remove(void **state)
{
    (void)state;
    struct scenario sc = {.op = OP_SECURE_REMOVE, .old_secure = true, .atomic_only = true};
    sweep_one("secure-remove", &sc, true);
}

static void test_sweep_not_atomic(void **state)
{
    (void)state;
    struct scenario create = {.op = OP_SECURE_CREATE, .new_secure = true};
    sweep_one("secure-create-torn", &create, false);
    struct scenario remove = {.op = OP_SECURE_REMOVE, .old_secure = true};
    sweep_one("secure-remove-torn", &remove, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_partition_types),
        cmocka_unit_test(test_init_sizes),
        cmocka_unit_test(test_init_refuses),
        cmocka_unit_test(test_secure_create_remove),
        cmocka_unit_test(test_foreign_image),
        cmocka_unit_test(test_open_refuses),
        cmocka_unit_test(test_interrupted_then_recovered),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_sweep_init_blank),
        cmocka_unit_test(test_sweep_reinit),
        cmocka_unit_test(test_sweep_secure_create),
        cmocka_unit_test(test_sweep_secure_remove),
        cmocka_unit_test(test_sweep_not_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
