/* MBR parsing and encoding: round trips, CHS as fdisk writes it, the storage record, and hostile
 * tables (no signature, bad status, empty or wrapping entries, entries beyond the disk,
 * overlaps, GPT) each refused with a reason that names the partition. Sectors are built byte by
 * byte from the MBR layout here, not with the encoder, so the two cannot share a mistake. */
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_mbr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define DISK 262144u /* sectors: 128 MiB */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* An MBR with the given entries (status 0, CHS left zero) and the boot signature. */
static void raw_sector(uint8_t *s, const uint8_t types[4], const uint32_t starts[4],
                       const uint32_t counts[4])
{
    memset(s, 0, 512);
    for (int i = 0; i < 4; i++) {
        uint8_t *e = s + 446 + 16 * i;
        e[4] = types[i];
        put32(e + 8, starts[i]);
        put32(e + 12, counts[i]);
    }
    s[510] = 0x55;
    s[511] = 0xAA;
}

static void one_partition(uint8_t *s, uint8_t type, uint32_t start, uint32_t count)
{
    const uint8_t types[4] = {type, 0, 0, 0};
    const uint32_t starts[4] = {start, 0, 0, 0};
    const uint32_t counts[4] = {count, 0, 0, 0};
    raw_sector(s, types, starts, counts);
}

static void expect_corrupt(const uint8_t *s, uint64_t disk, const char *needle)
{
    struct mf_mbr mbr;
    char reason[MF_MBR_REASON_MAX];
    assert_int_equal(mf_mbr_parse(s, disk, &mbr, reason, sizeof reason), MF_ECORRUPT);
    if (!strstr(reason, needle))
        fail_msg("reason \"%s\" does not mention \"%s\"", reason, needle);
}

static void test_parse_plain(void **state)
{
    (void)state;
    uint8_t s[512];
    const uint8_t types[4] = {0x0C, 0xDA, 0, 0};
    const uint32_t starts[4] = {2048, 131072, 0, 0};
    const uint32_t counts[4] = {129024, 131072, 0, 0};
    raw_sector(s, types, starts, counts);
    put32(s + 440, 0xCAFEF00Du);
    s[446] = 0x80;
    struct mf_mbr mbr;
    char reason[MF_MBR_REASON_MAX] = "x";
    assert_int_equal(mf_mbr_parse(s, DISK, &mbr, reason, sizeof reason), 0);
    assert_string_equal(reason, "");
    assert_int_equal(mbr.disk_signature, 0xCAFEF00Du);
    assert_int_equal(mbr.entries[0].status, 0x80);
    assert_int_equal(mbr.entries[0].type, 0x0C);
    assert_int_equal(mbr.entries[0].start, 2048);
    assert_int_equal(mbr.entries[0].count, 129024);
    assert_int_equal(mbr.entries[1].type, 0xDA);
    assert_int_equal(mbr.entries[1].start, 131072);
    assert_int_equal(mbr.entries[1].count, 131072);
    assert_int_equal(mbr.entries[2].type, 0);
    assert_int_equal(mbr.record.state, MF_MBR_STATE_NONE);
    assert_false(mbr.record_damaged);
    /* Exactly filling the disk is fine; the reason buffer may be NULL. */
    assert_int_equal(mf_mbr_parse(s, 262144, &mbr, NULL, 0), 0);
}

static void test_unused_entries_ignored(void **state)
{
    (void)state;
    uint8_t s[512];
    const uint8_t types[4] = {0x06, 0, 0, 0};
    const uint32_t starts[4] = {2048, 0xFFFFFFF0u, 5, 1};
    const uint32_t counts[4] = {4096, 0xFFFFFFF0u, 1000000, 2048};
    raw_sector(s, types, starts, counts);
    struct mf_mbr mbr;
    assert_int_equal(mf_mbr_parse(s, 8192, &mbr, NULL, 0), 0);
    /* An unused entry reads as all zero whatever it held. */
    assert_int_equal(mbr.entries[1].start, 0);
    assert_int_equal(mbr.entries[1].count, 0);
}

static void test_hostile_tables(void **state)
{
    (void)state;
    uint8_t s[512];

    memset(s, 0, sizeof s);
    expect_corrupt(s, DISK, "0x55AA");
    one_partition(s, 0x06, 2048, 4096);
    s[511] = 0x55;
    expect_corrupt(s, DISK, "0x55AA");

    one_partition(s, 0x06, 2048, 4096);
    s[446 + 16 * 2] = 0x01; /* status of an unused entry: a FAT boot sector looks like this */
    expect_corrupt(s, DISK, "partition 3 has an invalid status byte 0x01");

    one_partition(s, 0x06, 2048, 0);
    expect_corrupt(s, DISK, "partition 1 has type 0x06 but no sectors");

    one_partition(s, 0x06, 0, 4096);
    expect_corrupt(s, DISK, "partition 1 starts at sector 0");

    one_partition(s, 0x06, 0xFFFFFF00u, 0x200);
    expect_corrupt(s, 0x200000000ull, "partition 1 (start 4294967040, 512 sectors) wraps");
    one_partition(s, 0x06, 2, 0xFFFFFFFFu);
    expect_corrupt(s, 0x200000000ull, "wraps");
    /* Ending exactly at 2^32 sectors is the last layout an MBR can describe, not a wrap. */
    struct mf_mbr mbr;
    one_partition(s, 0x06, 1, 0xFFFFFFFFu);
    assert_int_equal(mf_mbr_parse(s, 0x200000000ull, &mbr, NULL, 0), 0);
    expect_corrupt(s, 0xFFFFFFFFull, "ends beyond the disk");

    one_partition(s, 0x06, 2048, DISK);
    expect_corrupt(s, DISK, "partition 1 (sectors 2048-264191) ends beyond the disk (262144");

    {
        const uint8_t types[4] = {0x06, 0xDA, 0, 0};
        const uint32_t starts[4] = {2048, 4095, 0, 0};
        const uint32_t counts[4] = {2048, 100, 0, 0};
        raw_sector(s, types, starts, counts);
        expect_corrupt(s, DISK, "partition 2 (sectors 4095-4194) overlaps partition 1");
    }
    {
        /* One entry inside another, in the later slots. */
        const uint8_t types[4] = {0x06, 0, 0x83, 0x83};
        const uint32_t starts[4] = {2048, 0, 10000, 10001};
        const uint32_t counts[4] = {2048, 0, 5000, 1};
        raw_sector(s, types, starts, counts);
        expect_corrupt(s, DISK, "partition 4 (sectors 10001-10001) overlaps partition 3");
    }
    {
        /* Adjacent is not overlapping. */
        const uint8_t types[4] = {0x06, 0xDA, 0, 0};
        const uint32_t starts[4] = {2048, 4096, 0, 0};
        const uint32_t counts[4] = {2048, 2048, 0, 0};
        raw_sector(s, types, starts, counts);
        assert_int_equal(mf_mbr_parse(s, DISK, &mbr, NULL, 0), 0);
    }

    one_partition(s, 0xEE, 1, 0xFFFFFFFFu);
    expect_corrupt(s, DISK, "GPT");
}

static void test_chs(void **state)
{
    (void)state;
    uint8_t chs[3];
    /* What fdisk writes for the usual 1 MiB start. */
    mf_mbr_chs(2048, chs);
    assert_int_equal(chs[0], 0x20);
    assert_int_equal(chs[1], 0x21);
    assert_int_equal(chs[2], 0x00);
    mf_mbr_chs(0, chs);
    assert_memory_equal(chs, ((uint8_t[]){0, 1, 0}), 3);
    /* Cylinder 300 (0x12C): high bits in the sector byte. */
    mf_mbr_chs(300ull * 16065 + 2 * 63 + 4, chs);
    assert_memory_equal(chs, ((uint8_t[]){2, 5 | 0x40, 0x2C}), 3);
    /* The last addressable sector, then the LBA-only marker. */
    mf_mbr_chs(1024ull * 16065 - 1, chs);
    assert_memory_equal(chs, ((uint8_t[]){254, 63 | 0xC0, 0xFF}), 3);
    mf_mbr_chs(1024ull * 16065, chs);
    assert_memory_equal(chs, ((uint8_t[]){0xFE, 0xFF, 0xFF}), 3);
    mf_mbr_chs(0xFFFFFFFFull, chs);
    assert_memory_equal(chs, ((uint8_t[]){0xFE, 0xFF, 0xFF}), 3);
}

static struct mf_mbr sample_mbr(enum mf_mbr_state state)
{
    struct mf_mbr mbr = {
        .disk_signature = 0x12345678u,
        .entries = {{0, 0x06, 2048, 129024}, {0, 0xDA, 131072, 131072}},
        .record = {.state = state, .volume_id = 0xA1B2C3D4u, .label = "PROD LINE 1"},
    };
    return mbr;
}

static void test_encode_layout(void **state)
{
    (void)state;
    struct mf_mbr mbr = sample_mbr(MF_MBR_STATE_READY);
    uint8_t s[512];
    memset(s, 0xEE, sizeof s);
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), 0);
    assert_int_equal(s[510], 0x55);
    assert_int_equal(s[511], 0xAA);
    assert_memory_equal(s + 440, ((uint8_t[]){0x78, 0x56, 0x34, 0x12, 0, 0}), 6);
    /* Start 2048 = C/H/S 0/32/33; end 131071 = 8/40/32 (255 heads, 63 sectors). */
    const uint8_t p1[16] = {0x00, 0x20, 0x21, 0x00, 0x06, 40,   32,   8,
                            0x00, 0x08, 0x00, 0x00, 0x00, 0xF8, 0x01, 0x00};
    assert_memory_equal(s + 446, p1, 16);
    assert_int_equal(s[446 + 16 + 4], 0xDA);
    assert_memory_equal(s + 446 + 32, (uint8_t[32]){0}, 32);
    /* The storage record sits in the boot-code area, never in the table. */
    assert_memory_equal(s + 384, "MINTSTOR", 8);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int st = MF_MBR_STATE_NONE; st <= MF_MBR_STATE_FORMATTING; st++) {
        struct mf_mbr in = sample_mbr((enum mf_mbr_state)st), out;
        if (st == MF_MBR_STATE_NONE)
            memset(&in.record, 0, sizeof in.record);
        uint8_t s[512];
        assert_int_equal(mf_mbr_encode(&in, DISK, s), 0);
        assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
        assert_int_equal(out.disk_signature, in.disk_signature);
        assert_memory_equal(out.entries, in.entries, sizeof in.entries);
        assert_int_equal(out.record.state, st);
        assert_int_equal(out.record.volume_id, in.record.volume_id);
        assert_string_equal(out.record.label, in.record.label);
        assert_false(out.record_damaged);
    }
}

static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t s[512];
    struct mf_mbr mbr = sample_mbr(MF_MBR_STATE_READY);
    mbr.entries[1].start = 131071; /* overlap */
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), MF_EINVAL);
    mbr = sample_mbr(MF_MBR_STATE_READY);
    assert_int_equal(mf_mbr_encode(&mbr, DISK - 1, s), MF_EINVAL); /* beyond the disk */
    mbr = sample_mbr(MF_MBR_STATE_READY);
    mbr.entries[0].status = 0x81;
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), MF_EINVAL);
    mbr = sample_mbr(MF_MBR_STATE_READY);
    memcpy(mbr.record.label, "ABCDEFGHIJKL", 12); /* 12 characters, no NUL */
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), MF_EINVAL);
    mbr = sample_mbr(MF_MBR_STATE_READY);
    mbr.record.label[0] = '\t';
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), MF_EINVAL);
    mbr = sample_mbr(MF_MBR_STATE_READY);
    mbr.record.state = (enum mf_mbr_state)7;
    assert_int_equal(mf_mbr_encode(&mbr, DISK, s), MF_EINVAL);
}

/* Rewrites the record CRC after a deliberate edit, as a forger would. */
static void reseal(uint8_t *s)
{
    uint32_t crc = mf_crc32_update(0, s + 384, 44);
    crc = mf_crc32_update(crc, s + 440, 70);
    put32(s + 384 + 44, crc);
}

static void test_record_hostile(void **state)
{
    (void)state;
    struct mf_mbr mbr = sample_mbr(MF_MBR_STATE_FORMATTING), out;
    uint8_t good[512], s[512];
    assert_int_equal(mf_mbr_encode(&mbr, DISK, good), 0);

    /* A table edited by another tool (fdisk keeps the boot code): no longer ours. */
    memcpy(s, good, sizeof s);
    s[446 + 4] = 0x0C;
    assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
    assert_int_equal(out.record.state, MF_MBR_STATE_NONE);
    assert_true(out.record_damaged);
    /* The disk signature is covered too; so is the record itself. */
    memcpy(s, good, sizeof s);
    s[441] ^= 1;
    assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
    assert_true(out.record_damaged);
    memcpy(s, good, sizeof s);
    s[384 + 12] ^= 0x80;
    assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
    assert_true(out.record_damaged);
    /* Bytes outside the record and the table are not covered (boot code). */
    memcpy(s, good, sizeof s);
    s[100] = 0x90;
    assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
    assert_int_equal(out.record.state, MF_MBR_STATE_FORMATTING);

    char reason[MF_MBR_REASON_MAX];
    memcpy(s, good, sizeof s);
    s[384 + 8] = 2;
    reseal(s);
    assert_int_equal(mf_mbr_parse(s, DISK, &out, reason, sizeof reason), MF_EVERSION);
    assert_non_null(strstr(reason, "version 2"));

    memcpy(s, good, sizeof s);
    s[384 + 10] = 9;
    reseal(s);
    assert_int_equal(mf_mbr_parse(s, DISK, &out, reason, sizeof reason), MF_ECORRUPT);
    assert_non_null(strstr(reason, "unknown state 9"));

    memcpy(s, good, sizeof s);
    s[384 + 16 + 3] = 0x07;
    reseal(s);
    assert_int_equal(mf_mbr_parse(s, DISK, &out, reason, sizeof reason), MF_ECORRUPT);
    assert_non_null(strstr(reason, "label byte 0x07 at 3"));

    /* Bytes after the label's NUL must stay zero: no hidden data behind a short label. */
    memcpy(s, good, sizeof s);
    memset(s + 384 + 16, 0, 11);
    s[384 + 16] = 'A';
    s[384 + 16 + 5] = 'B';
    reseal(s);
    assert_int_equal(mf_mbr_parse(s, DISK, &out, reason, sizeof reason), MF_ECORRUPT);

    /* An empty label is allowed. */
    memcpy(s, good, sizeof s);
    memset(s + 384 + 16, 0, 11);
    reseal(s);
    assert_int_equal(mf_mbr_parse(s, DISK, &out, NULL, 0), 0);
    assert_string_equal(out.record.label, "");
}

static void test_reason_truncates(void **state)
{
    (void)state;
    uint8_t s[512];
    one_partition(s, 0x06, 2048, DISK);
    struct mf_mbr mbr;
    char reason[12];
    memset(reason, 'x', sizeof reason);
    assert_int_equal(mf_mbr_parse(s, DISK, &mbr, reason, sizeof reason), MF_ECORRUPT);
    assert_int_equal(strlen(reason), sizeof reason - 1);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(mf_mbr_type_name(0x0C), "FAT32 (LBA)");
    assert_string_equal(mf_mbr_type_name(0xDA), "non-FS data");
    assert_string_equal(mf_mbr_type_name(0x83), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain),      cmocka_unit_test(test_unused_entries_ignored),
        cmocka_unit_test(test_hostile_tables),   cmocka_unit_test(test_chs),
        cmocka_unit_test(test_encode_layout),    cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_refuses),   cmocka_unit_test(test_record_hostile),
        cmocka_unit_test(test_reason_truncates), cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
