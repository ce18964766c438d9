/* The simulated target back end: blank devices, NOR rules, sector maps, alignment and ranges,
 * readout protection, persistence in flash.bin and device.ini, replace, profile mismatch,
 * malformed slot files, every fault knob, cancel during a scaled delay, slot locking and
 * independent slots in parallel threads. Each test works in its own temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mf_err.h"
#include "mf_profile.h"
#include "mf_sim.h"
#include "mf_target.h"
#include "mf_testutil.h"

#define F4_BASE 0x08000000u
#define F4_SIZE (1u << 20)

struct rig {
    char *dir; /* the sim folder */
    struct mf_target target;
    struct mf_sim_options options;
    unsigned uids; /* UIDs handed out */
};

/* Deterministic UIDs: byte i of the n-th UID is n * 16 + i, so each new device differs. */
static int counting_uid(void *context, unsigned slot, uint8_t *uid, uint32_t length)
{
    struct rig *r = context;
    r->uids++;
    for (uint32_t i = 0; i < length; i++)
        uid[i] = (uint8_t)(r->uids * 16u + i + slot);
    return 0;
}

static const struct mf_profile *f4(void)
{
    const struct mf_profile *p = mf_profile_find("SIM-F4-1M");
    assert_non_null(p);
    return p;
}

static int rig_setup(void **state)
{
    struct rig *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->dir = mf_test_tmpdir("sim");
    assert_non_null(r->dir);
    r->options.uid_source = counting_uid;
    r->options.uid_context = r;
    *state = r;
    return 0;
}

static int rig_teardown(void **state)
{
    struct rig *r = *state;
    mf_sim_close(&r->target);
    assert_int_equal(mf_test_rmtree(r->dir), 0);
    free(r->dir);
    free(r);
    return 0;
}

/* Opens slot `slot` for `profile` (with the rig's options) and connects. */
static void rig_connect(struct rig *r, unsigned slot, const struct mf_profile *profile)
{
    mf_sim_close(&r->target);
    assert_int_equal(mf_sim_open(&r->target, r->dir, slot, &r->options), 0);
    r->target.profile = profile;
    int err = r->target.ops->connect(&r->target);
    if (err)
        fail_msg("connect: %s (%s)", mf_strerror(err), r->target.error);
}

static char *slot_file(struct rig *r, unsigned slot, const char *name)
{
    char rel[64];
    snprintf(rel, sizeof rel, "slot%u/%s", slot, name);
    return mf_test_path(r->dir, rel);
}

static char *read_slot_file(struct rig *r, unsigned slot, const char *name, size_t *size)
{
    char *path = slot_file(r, slot, name);
    char *data;
    assert_int_equal(mf_test_read_file(path, &data, size), 0);
    free(path);
    return data;
}

/* Replaces the text `from` in a slot's device.ini by `to`, as a user with an editor would. */
static void edit_ini(struct rig *r, unsigned slot, const char *from, const char *to)
{
    size_t size;
    char *text = read_slot_file(r, slot, "device.ini", &size);
    char *at = strstr(text, from);
    if (!at)
        fail_msg("device.ini has no '%s':\n%s", from, text);
    size_t out_size = size - strlen(from) + strlen(to);
    char *out = malloc(out_size + 1);
    assert_non_null(out);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), size - head - strlen(from));
    char *path = slot_file(r, slot, "device.ini");
    assert_int_equal(mf_test_write_file(path, out, out_size), 0);
    free(path);
    free(out);
    free(text);
}

static bool ini_has(struct rig *r, unsigned slot, const char *line)
{
    char *text = read_slot_file(r, slot, "device.ini", NULL);
    bool found = strstr(text, line) != NULL;
    free(text);
    return found;
}

static void expect_error(struct rig *r, int got, int want, const char *text)
{
    if (got != want)
        fail_msg("got %d (%s), want %d; text: %s", got, mf_strerror(got), want, r->target.error);
    if (text && !strstr(r->target.error, text))
        fail_msg("error text '%s' lacks '%s'", r->target.error, text);
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t value)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != value)
            return false;
    }
    return true;
}

static void read_flash(struct rig *r, uint64_t address, void *buffer, uint32_t length)
{
    int err = r->target.ops->read(&r->target, address, buffer, length);
    if (err)
        fail_msg("read: %s (%s)", mf_strerror(err), r->target.error);
}

static void program(struct rig *r, uint64_t address, const void *data, uint32_t length)
{
    int err = r->target.ops->program(&r->target, address, data, length);
    if (err)
        fail_msg("program: %s (%s)", mf_strerror(err), r->target.error);
}

static void test_blank_device(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    assert_string_equal(r->target.ops->name, "sim");
    assert_string_equal(r->target.error, "");

    size_t size;
    uint8_t *flash = (uint8_t *)read_slot_file(r, 1, "flash.bin", &size);
    assert_int_equal(size, F4_SIZE);
    assert_true(all_bytes(flash, size, 0xFF));
    free(flash);
    assert_true(ini_has(r, 1, "profile = SIM-F4-1M\n"));
    assert_true(ini_has(r, 1, "uid = 1112131415161718191A1B1C\n")); /* first UID, slot 1 */
    assert_true(ini_has(r, 1, "protection = 0\n"));

    uint8_t uid[12], via_read[12];
    assert_int_equal(r->target.ops->read_uid(&r->target, uid, sizeof uid), 0);
    assert_int_equal(uid[0], 0x11);
    assert_int_equal(uid[11], 0x1C);
    read_flash(r, f4()->uid_address, via_read, sizeof via_read);
    assert_memory_equal(uid, via_read, sizeof uid);
    expect_error(r, r->target.ops->read_uid(&r->target, uid, 13), MF_EINVAL, "13 bytes");

    uint8_t block[256];
    read_flash(r, F4_BASE + F4_SIZE - sizeof block, block, sizeof block);
    assert_true(all_bytes(block, sizeof block, 0xFF));

    /* The CRC of an erased range is GDB's qCRC of 0xFF bytes. */
    uint32_t crc;
    assert_int_equal(r->target.ops->crc(&r->target, F4_BASE, sizeof block, &crc), 0);
    assert_int_equal(crc, mf_target_crc(MF_TARGET_CRC_INIT, block, sizeof block));

    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    struct mf_sim_info info;
    char error[128];
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, error, sizeof error), 0);
    assert_ptr_equal(info.profile, f4());
    assert_int_equal(info.counters.connects, 1);
    assert_int_equal(info.not_erased, 0);
    assert_int_equal(info.flash_size, F4_SIZE);
}

static void test_nor_rules(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const uint8_t first[8] = {0x12, 0x34, 0x56, 0x78, 0xF0, 0xFF, 0x0F, 0xAA};
    program(r, F4_BASE + 0x10, first, sizeof first);

    /* 0x12 -> 0x34 needs bits set: refused, flash unchanged. */
    const uint8_t second[8] = {0x34, 0x34, 0x56, 0x78, 0xF0, 0xFF, 0x0F, 0xAA};
    expect_error(r, r->target.ops->program(&r->target, F4_BASE + 0x10, second, sizeof second),
                 MF_EVERIFY, "program at 0x08000010: byte not erased (0x12 -> 0x34)");
    uint8_t back[8];
    read_flash(r, F4_BASE + 0x10, back, sizeof back);
    assert_memory_equal(back, first, sizeof first);

    /* The offending byte is named even deep in a long write. */
    uint8_t big[64];
    memset(big, 0xFF, sizeof big);
    big[0x14] = 0x00;
    program(r, F4_BASE + 0x100, big, sizeof big);
    big[0x14] = 0x01;
    expect_error(r, r->target.ops->program(&r->target, F4_BASE + 0x100, big, sizeof big),
                 MF_EVERIFY, "program at 0x08000114: byte not erased (0x00 -> 0x01)");

    /* And in the blocks the check takes at a time, and in the tail after them. */
    static uint8_t large[4096 + 40];
    memset(large, 0xFF, sizeof large);
    large[0xA37] = 0x5A;
    large[4096 + 33] = 0x00;
    program(r, F4_BASE + 0x1000, large, sizeof large);
    large[0xA37] = 0x5B;
    expect_error(r, r->target.ops->program(&r->target, F4_BASE + 0x1000, large, sizeof large),
                 MF_EVERIFY, "program at 0x08001a37: byte not erased (0x5A -> 0x5B)");
    large[0xA37] = 0x5A;
    large[4096 + 33] = 0x80;
    expect_error(r, r->target.ops->program(&r->target, F4_BASE + 0x1000, large, sizeof large),
                 MF_EVERIFY, "program at 0x08002021: byte not erased (0x00 -> 0x80)");

    /* Clearing more bits works, and so does writing the same bytes again. */
    const uint8_t cleared[8] = {0x10, 0x30, 0x56, 0x00, 0x00, 0x7E, 0x0F, 0x00};
    program(r, F4_BASE + 0x10, cleared, sizeof cleared);
    program(r, F4_BASE + 0x10, cleared, sizeof cleared);
    read_flash(r, F4_BASE + 0x10, back, sizeof back);
    assert_memory_equal(back, cleared, sizeof cleared);

    /* After an erase, any value can be written again. */
    assert_int_equal(r->target.ops->erase(&r->target, F4_BASE, 16u << 10), 0);
    program(r, F4_BASE + 0x10, second, sizeof second);
    read_flash(r, F4_BASE + 0x10, back, sizeof back);
    assert_memory_equal(back, second, sizeof second);
}

static void test_mixed_sectors(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    /* Sectors: 0-3 of 16 KiB from 0x08000000, 4 of 64 KiB at 0x08010000, 5.. of 128 KiB from
     * 0x08020000. Mark the first and last word of sectors 2..5. */
    const uint32_t marks[] = {0x08008000, 0x0800BFFC, 0x0800C000, 0x0800FFFC,
                              0x08010000, 0x0801FFFC, 0x08020000, 0x0803FFFC};
    const uint8_t zero[4] = {0};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        program(r, marks[i], zero, sizeof zero);

    /* Sectors 3 and 4: 16 KiB + 64 KiB. */
    assert_int_equal(r->target.ops->erase(&r->target, 0x0800C000, 0x14000), 0);
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        uint8_t word[4];
        read_flash(r, marks[i], word, sizeof word);
        bool erased = marks[i] >= 0x0800C000 && marks[i] < 0x08020000;
        if (erased ? !all_bytes(word, 4, 0xFF) : !all_bytes(word, 4, 0x00))
            fail_msg("mark at 0x%08x: erased %d, want %d", marks[i], !erased, erased);
    }

    /* A range must start and end on sector bounds. */
    expect_error(r, r->target.ops->erase(&r->target, 0x0800C000, 0x1000), MF_EINVAL,
                 "erase to 0x0800d000: not the end of a sector");
    expect_error(r, r->target.ops->erase(&r->target, 0x08010100, 0xFF00), MF_EINVAL,
                 "erase at 0x08010100: not the start of a sector");
    expect_error(r, r->target.ops->erase(&r->target, 0x08020000, 0x10000), MF_EINVAL,
                 "not the end");
    /* The last sector ends with the flash. */
    assert_int_equal(r->target.ops->erase(&r->target, 0x080E0000, 0x20000), 0);
    expect_error(r, r->target.ops->erase(&r->target, 0x080E0000, 0x20004), MF_EINVAL,
                 "run past the end");

    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    struct mf_sim_info info;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, NULL, 0), 0);
    assert_int_equal(info.counters.sector_erases, 3);
    assert_int_equal(info.not_erased, 4 * 4); /* the marks of sectors 2 and 5 */
}

static void test_ranges_and_alignment(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const uint8_t data[8] = {0};
    uint8_t buffer[8];
    uint32_t crc;
    const struct mf_target_ops *ops = r->target.ops;
    expect_error(r, ops->program(&r->target, F4_BASE + 2, data, 4), MF_EINVAL,
                 "program at 0x08000002: 4 bytes not aligned to the write size of 4");
    expect_error(r, ops->program(&r->target, F4_BASE, data, 6), MF_EINVAL, "not aligned");
    expect_error(r, ops->program(&r->target, F4_BASE - 4, data, 4), MF_EINVAL,
                 "program at 0x07fffffc: outside the flash of the SIM-F4-1M");
    expect_error(r, ops->program(&r->target, F4_BASE + F4_SIZE - 4, data, 8), MF_EINVAL,
                 "run past the end of flash at 0x08100000");
    expect_error(r, ops->read(&r->target, F4_BASE + F4_SIZE, buffer, 4), MF_EINVAL, "outside");
    expect_error(r, ops->read(&r->target, f4()->uid_address + 8, buffer, 8), MF_EINVAL,
                 "run past the UID");
    expect_error(r, ops->crc(&r->target, F4_BASE, (uint64_t)F4_SIZE + 1, &crc), MF_EINVAL,
                 "run past the end");
    expect_error(r, ops->crc(&r->target, UINT64_MAX - 2, 8, &crc), MF_EINVAL, "outside");
    expect_error(r, ops->erase(&r->target, UINT64_MAX - 2, 8), MF_EINVAL, "outside");
    /* Zero-length requests are no-ops. */
    assert_int_equal(ops->program(&r->target, F4_BASE + 1, NULL, 0), 0);
    assert_int_equal(ops->erase(&r->target, F4_BASE + 1, 0), 0);
    assert_int_equal(ops->start(&r->target, (enum mf_start_mode)7), MF_EINVAL);
    assert_int_equal(ops->disconnect(&r->target), 0);
    /* Nothing works before connect, and disconnect is always safe. */
    expect_error(r, ops->read(&r->target, F4_BASE, buffer, 4), MF_EBADF, "read: not connected");
    assert_int_equal(ops->disconnect(&r->target), 0);
}

static void test_protection(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    const uint8_t data[4] = {1, 2, 3, 4};
    program(r, F4_BASE, data, sizeof data);
    expect_error(r, ops->protect(&r->target, 0), MF_EINVAL, "levels 1..2");
    expect_error(r, ops->protect(&r->target, 3), MF_EINVAL, "levels 1..2");
    assert_int_equal(ops->protect(&r->target, 1), 0);
    assert_true(ini_has(r, 1, "protection = 1\n")); /* at once, not only at disconnect */

    uint8_t buffer[4];
    uint32_t crc;
    expect_error(r, ops->read(&r->target, F4_BASE, buffer, 4), MF_EACCES,
                 "read at 0x08000000: readout protection level 1");
    expect_error(r, ops->crc(&r->target, F4_BASE, 4, &crc), MF_EACCES, "readout protection");
    expect_error(r, ops->program(&r->target, F4_BASE + 4, data, 4), MF_EACCES, "unlock first");
    expect_error(r, ops->erase(&r->target, F4_BASE, 16u << 10), MF_EACCES, "protection");
    expect_error(r, ops->erase_chip(&r->target), MF_EACCES, "protection");
    uint8_t uid[12];
    assert_int_equal(ops->read_uid(&r->target, uid, sizeof uid), 0);
    assert_int_equal(ops->read(&r->target, f4()->uid_address, buffer, 4), 0);
    assert_memory_equal(buffer, uid, 4);

    /* Protection survives a reconnect. */
    rig_connect(r, 1, f4());
    ops = r->target.ops;
    expect_error(r, ops->read(&r->target, F4_BASE, buffer, 4), MF_EACCES, "protection");

    /* Unlock = mass erase + level 0. */
    assert_int_equal(ops->unlock(&r->target), 0);
    read_flash(r, F4_BASE, buffer, 4);
    assert_true(all_bytes(buffer, 4, 0xFF));
    assert_true(ini_has(r, 1, "protection = 0\n"));
    assert_int_equal(ops->unlock(&r->target), 0); /* unprotected: a no-op */
    assert_int_equal(ops->disconnect(&r->target), 0);
    struct mf_sim_info info;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, NULL, 0), 0);
    assert_int_equal(info.counters.unlocks, 1);
    assert_int_equal(info.counters.protects, 1);
    assert_int_equal(info.not_erased, 0);

    /* A part without protection says so. */
    rig_connect(r, 2, mf_profile_find("LM3S6965"));
    expect_error(r, r->target.ops->protect(&r->target, 1), MF_ENOTSUP, "no readout protection");
}

static void test_persistence(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 3, f4());
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    program(r, F4_BASE + 0x20000, data, sizeof data);
    /* Shared mapping: another reader sees the bytes before disconnect. */
    size_t size;
    uint8_t *file = (uint8_t *)read_slot_file(r, 3, "flash.bin", &size);
    assert_memory_equal(file + 0x20000, data, sizeof data);
    free(file);
    assert_int_equal(r->target.ops->start(&r->target, MF_START_VECTOR), 0);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    assert_true(ini_has(r, 3, "state = running\n"));
    assert_true(ini_has(r, 3, "start_mode = vector\n"));
    assert_true(ini_has(r, 3, "programs = 1\n"));
    assert_true(ini_has(r, 3, "programmed_bytes = 1024\n"));
    assert_false(ini_has(r, 3, "last_program = \n"));
    mf_sim_close(&r->target);

    rig_connect(r, 3, f4());
    uint8_t back[1024];
    read_flash(r, F4_BASE + 0x20000, back, sizeof back);
    assert_memory_equal(back, data, sizeof data);
    uint32_t crc;
    assert_int_equal(r->target.ops->crc(&r->target, F4_BASE + 0x20000, sizeof data, &crc), 0);
    assert_int_equal(crc, mf_target_crc(MF_TARGET_CRC_INIT, data, sizeof data));
    uint8_t uid[12];
    assert_int_equal(r->target.ops->read_uid(&r->target, uid, sizeof uid), 0);
    assert_int_equal(uid[0], 0x13); /* still the first UID: no new device */
    assert_int_equal(r->uids, 1);
    mf_sim_close(&r->target); /* disconnects */

    struct mf_sim_info info;
    assert_int_equal(mf_sim_inspect(r->dir, 3, &info, NULL, 0), 0);
    assert_int_equal(info.counters.connects, 2);
    assert_int_equal(info.counters.programs, 1);
    assert_int_equal(info.counters.starts, 1);
    assert_false(info.running); /* halted by the second connect */
    size_t programmed = 0;
    for (size_t i = 0; i < sizeof data; i++)
        programmed += data[i] != 0xFF;
    assert_int_equal(info.not_erased, programmed);
}

static void test_replace(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const uint8_t data[4] = {0};
    program(r, F4_BASE, data, 4);
    assert_int_equal(r->target.ops->protect(&r->target, 2), 0);
    mf_sim_close(&r->target);

    struct mf_sim_info before, after;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &before, NULL, 0), 0);
    char error[128];
    assert_int_equal(mf_sim_replace(r->dir, 1, NULL, NULL, &r->options, error, sizeof error), 0);
    assert_int_equal(mf_sim_inspect(r->dir, 1, &after, NULL, 0), 0);
    assert_ptr_equal(after.profile, f4());
    assert_memory_not_equal(before.uid, after.uid, 12);
    assert_int_equal(after.protection, 0);
    assert_int_equal(after.not_erased, 0);
    assert_int_equal(after.counters.connects, 0);

    /* Another profile, a given UID. */
    const struct mf_profile *n52 = mf_profile_find("SIM-N52-512K");
    const uint8_t uid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(mf_sim_replace(r->dir, 1, n52, uid, NULL, error, sizeof error), 0);
    assert_int_equal(mf_sim_inspect(r->dir, 1, &after, NULL, 0), 0);
    assert_ptr_equal(after.profile, n52);
    assert_memory_equal(after.uid, uid, 8);
    assert_int_equal(after.flash_size, 512u << 10);

    /* A programmer that stays open across the replacement sees the new device at its next
     * connect (it must not keep using the old file). */
    rig_connect(r, 1, n52);
    program(r, 0, uid, 8);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    assert_int_equal(mf_sim_replace(r->dir, 1, NULL, NULL, &r->options, error, sizeof error), 0);
    assert_int_equal(r->target.ops->connect(&r->target), 0);
    uint8_t back[8], new_uid[8];
    read_flash(r, 0, back, sizeof back);
    assert_true(all_bytes(back, sizeof back, 0xFF));
    assert_int_equal(r->target.ops->read_uid(&r->target, new_uid, 8), 0);
    assert_memory_not_equal(new_uid, uid, 8);
    mf_sim_close(&r->target);

    /* No device, no profile: nothing to keep, and no folder is made. */
    assert_int_equal(mf_sim_replace(r->dir, 5, NULL, NULL, NULL, error, sizeof error), MF_ENOENT);
    assert_non_null(strstr(error, "slot 5 holds no device"));
    char *slot5 = mf_test_path(r->dir, "slot5");
    struct stat st;
    assert_int_not_equal(stat(slot5, &st), 0);
    free(slot5);
    assert_int_equal(mf_sim_replace(r->dir, 0, f4(), NULL, NULL, error, sizeof error), MF_EINVAL);
}

static void test_wrong_profile(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 2, mf_profile_find("SIM-N52-512K"));
    mf_sim_close(&r->target);
    assert_int_equal(mf_sim_open(&r->target, r->dir, 2, &r->options), 0);
    r->target.profile = f4();
    expect_error(r, r->target.ops->connect(&r->target), MF_ECONFLICT,
                 "slot 2 holds a SIM-N52-512K, the job needs SIM-F4-1M");
    /* The refused connect left the device alone and the slot unlocked. */
    r->target.profile = mf_profile_find("SIM-N52-512K");
    assert_int_equal(r->target.ops->connect(&r->target), 0);
}

static void test_bad_slot_files(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    mf_sim_close(&r->target);
    assert_int_equal(mf_sim_open(&r->target, r->dir, 1, &r->options), 0);
    r->target.profile = f4();

    edit_ini(r, 1, "protection = 0", "protection = 7");
    expect_error(r, r->target.ops->connect(&r->target), MF_EFORMAT,
                 "slot1/device.ini: protection 7, a SIM-F4-1M has levels 0..2");
    edit_ini(r, 1, "protection = 7", "protection = 0\ncolour = blue");
    expect_error(r, r->target.ops->connect(&r->target), MF_EFORMAT,
                 "slot1/device.ini:7: unknown key 'colour' in [device]");
    edit_ini(r, 1, "colour = blue", "");
    edit_ini(r, 1, "uid = ", "uid = 00");
    expect_error(r, r->target.ops->connect(&r->target), MF_EFORMAT, "uid has 13 bytes");
    edit_ini(r, 1, "uid = 00", "uid = ");
    edit_ini(r, 1, "program = off", "program = once");
    expect_error(r, r->target.ops->connect(&r->target), MF_EFORMAT,
                 "fault program needs a byte count");
    edit_ini(r, 1, "program = once", "program = off");
    assert_int_equal(r->target.ops->connect(&r->target), 0);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);

    char *path = slot_file(r, 1, "flash.bin");
    assert_int_equal(truncate(path, 1000), 0);
    free(path);
    expect_error(r, r->target.ops->connect(&r->target), MF_ECORRUPT,
                 "slot1/flash.bin is 1000 bytes, a SIM-F4-1M has 1048576");
    char error[128];
    struct mf_sim_info info;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, error, sizeof error), MF_ECORRUPT);
    assert_non_null(strstr(error, "flash.bin is 1000 bytes"));
    assert_int_equal(mf_sim_inspect(r->dir, 9, &info, error, sizeof error), MF_ENOENT);
    assert_non_null(strstr(error, "slot 9 holds no device"));
}

static void test_fault_connect_erase(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    const uint8_t data[4] = {0};
    program(r, F4_BASE, data, 4);
    assert_int_equal(ops->disconnect(&r->target), 0);

    edit_ini(r, 1, "connect = off", "connect = once");
    expect_error(r, ops->connect(&r->target), MF_EIO, "fault injected");
    assert_true(ini_has(r, 1, "connect = off\n")); /* fired: gone from device.ini */
    assert_int_equal(ops->connect(&r->target), 0);

    /* erase always: every erase fails and leaves the flash alone. */
    assert_int_equal(ops->disconnect(&r->target), 0);
    edit_ini(r, 1, "erase = off", "erase = always");
    assert_int_equal(ops->connect(&r->target), 0);
    for (int i = 0; i < 2; i++) {
        expect_error(r, ops->erase(&r->target, F4_BASE, 16u << 10), MF_EIO, "fault injected");
        expect_error(r, ops->erase_chip(&r->target), MF_EIO, "fault injected");
    }
    uint8_t back[4];
    read_flash(r, F4_BASE, back, 4);
    assert_true(all_bytes(back, 4, 0x00));
    assert_int_equal(ops->disconnect(&r->target), 0);
    assert_true(ini_has(r, 1, "erase = always\n"));

    /* Set in the options, a knob replaces device.ini's: here "off" there, "once" here. */
    mf_sim_close(&r->target);
    r->options.faults.connect.mode = MF_SIM_FAULT_ALWAYS;
    assert_int_equal(mf_sim_open(&r->target, r->dir, 1, &r->options), 0);
    r->target.profile = f4();
    expect_error(r, r->target.ops->connect(&r->target), MF_EIO, "does not answer");
    expect_error(r, r->target.ops->connect(&r->target), MF_EIO, "does not answer");
    mf_sim_close(&r->target);
    r->options.faults.connect.mode = MF_SIM_FAULT_OFF;
    r->options.faults.erase.mode = MF_SIM_FAULT_ONCE;
    rig_connect(r, 1, f4());
    expect_error(r, r->target.ops->erase(&r->target, F4_BASE, 16u << 10), MF_EIO, "fault");
    assert_int_equal(r->target.ops->erase(&r->target, F4_BASE, 16u << 10), 0);
    assert_true(ini_has(r, 1, "erase = always\n")); /* device.ini's knob untouched */
}

static void test_fault_program_and_flip(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->disconnect(&r->target), 0);
    edit_ini(r, 1, "program = off", "program = 10 once");
    assert_true(ops->connect(&r->target) == 0);

    uint8_t data[16];
    memset(data, 0x00, sizeof data);
    program(r, F4_BASE, data, 4); /* 4 of 10 */
    expect_error(r, ops->program(&r->target, F4_BASE + 4, data, 8), MF_EIO,
                 "program at 0x08000008: I/O error after 8 bytes (fault injected)");
    uint8_t back[16];
    read_flash(r, F4_BASE, back, sizeof back);
    assert_true(all_bytes(back, 8, 0x00));     /* up to the write-size boundary before 10 */
    assert_true(all_bytes(back + 8, 8, 0xFF)); /* the rest was not written */
    assert_true(ini_has(r, 1, "program = off\n"));
    program(r, F4_BASE + 8, data, 8); /* once: gone */

    /* flip: the byte is inverted in bit 0 after the write, so a verify sees it. */
    assert_int_equal(ops->disconnect(&r->target), 0);
    edit_ini(r, 1, "flip = off", "flip = 0x08000102 always");
    assert_int_equal(ops->connect(&r->target), 0);
    program(r, F4_BASE + 0x100, data, 4);
    read_flash(r, F4_BASE + 0x100, back, 4);
    const uint8_t flipped[4] = {0x00, 0x00, 0x01, 0x00};
    assert_memory_equal(back, flipped, 4);
    uint32_t crc;
    assert_int_equal(ops->crc(&r->target, F4_BASE + 0x100, 4, &crc), 0);
    assert_int_not_equal(crc, mf_target_crc(MF_TARGET_CRC_INIT, data, 4));
    program(r, F4_BASE + 0x200, data, 4); /* not covering the address: untouched */
    read_flash(r, F4_BASE + 0x200, back, 4);
    assert_true(all_bytes(back, 4, 0x00));
    assert_true(ini_has(r, 1, "flip = 0x08000102 always\n"));
}

static void test_fault_timeout(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->disconnect(&r->target), 0);
    edit_ini(r, 1, "timeout = off", "timeout = crc once");
    assert_int_equal(ops->connect(&r->target), 0);
    uint32_t crc;
    expect_error(r, ops->crc(&r->target, F4_BASE, 4, &crc), MF_ETIMEOUT, "crc: timed out");
    assert_int_equal(ops->crc(&r->target, F4_BASE, 4, &crc), 0);
    assert_int_equal(ops->disconnect(&r->target), 0);

    edit_ini(r, 1, "timeout = off", "timeout = connect always");
    expect_error(r, ops->connect(&r->target), MF_ETIMEOUT, "connect: timed out");
    expect_error(r, ops->connect(&r->target), MF_ETIMEOUT, "connect: timed out");
    edit_ini(r, 1, "timeout = connect always", "timeout = program once");
    assert_int_equal(ops->connect(&r->target), 0);
    const uint8_t data[4] = {0};
    expect_error(r, ops->program(&r->target, F4_BASE, data, 4), MF_ETIMEOUT, "program");
    program(r, F4_BASE, data, 4);
}

static void test_fault_syntax(void **state)
{
    (void)state;
    struct mf_sim_faults f = {0};
    char error[128];
    assert_int_equal(mf_sim_fault_parse("program", "0x1000 always", &f, error, sizeof error), 0);
    assert_int_equal(f.program.mode, MF_SIM_FAULT_ALWAYS);
    assert_int_equal(f.program.arg, 0x1000);
    assert_int_equal(mf_sim_fault_parse("Timeout", "erase once", &f, error, sizeof error), 0);
    assert_int_equal(f.timeout.arg, MF_SIM_PHASE_ERASE);
    assert_int_equal(mf_sim_fault_parse("connect", "once", &f, error, sizeof error), 0);
    assert_int_equal(mf_sim_fault_parse("connect", "off", &f, error, sizeof error), 0);
    assert_int_equal(f.connect.mode, MF_SIM_FAULT_OFF);
    char text[64];
    mf_sim_fault_format("program", &f.program, text, sizeof text);
    assert_string_equal(text, "4096 always");
    mf_sim_fault_format("timeout", &f.timeout, text, sizeof text);
    assert_string_equal(text, "erase once");

    assert_int_equal(mf_sim_fault_parse("melt", "once", &f, error, sizeof error), MF_EINVAL);
    assert_int_equal(mf_sim_fault_parse("timeout", "nowhere once", &f, error, sizeof error),
                     MF_EFORMAT);
    assert_non_null(strstr(error, "unknown phase 'nowhere'"));
    assert_int_equal(mf_sim_fault_parse("erase", "5 once", &f, error, sizeof error), MF_EFORMAT);
    assert_int_equal(mf_sim_fault_parse("flip", "0xZZ once", &f, error, sizeof error), MF_EFORMAT);
    assert_int_equal(mf_sim_fault_parse("program", "1 2 once", &f, error, sizeof error),
                     MF_EFORMAT);
    assert_int_equal(mf_sim_fault_parse("program", "1 twice", &f, error, sizeof error), MF_EFORMAT);
    assert_int_equal(
        mf_sim_fault_parse("program", "99999999999999999999 once", &f, error, sizeof error),
        MF_EFORMAT);
}

struct canceller {
    struct mf_target *target;
};

static void *cancel_soon(void *arg)
{
    struct canceller *c = arg;
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    atomic_store(&c->target->cancel, 1);
    return NULL;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_timing_and_cancel(void **state)
{
    struct rig *r = *state;
    /* One short scaled case: connect + one 1 KiB page erase of the F1 part at 1/20 speed take
     * at least (20 ms + 20 ms) / 20 = 2 ms. Only the lower bound is certain. */
    const struct mf_profile *f1 = mf_profile_find("SIM-F1-64K");
    r->options.time_scale = 0.05;
    double t0 = now_seconds();
    rig_connect(r, 1, f1);
    assert_int_equal(r->target.ops->erase(&r->target, 0x08000000, 1024), 0);
    assert_true(now_seconds() - t0 >= 0.002);

    /* A chip erase of the F4 part at 10x its time would take 80 s: the cancel stops it. */
    r->options.time_scale = 10.0;
    rig_connect(r, 2, f4());
    pthread_t thread;
    struct canceller c = {&r->target};
    assert_int_equal(pthread_create(&thread, NULL, cancel_soon, &c), 0);
    int err = r->target.ops->erase_chip(&r->target);
    pthread_join(thread, NULL);
    expect_error(r, err, MF_ECANCELED, "erase chip: cancelled");
    atomic_store(&r->target.cancel, 0);
    /* Set before a call, the cancel stops it at once, also without delays. */
    r->options.time_scale = 0;
    rig_connect(r, 2, f4());
    atomic_store(&r->target.cancel, 1);
    const uint8_t data[4] = {0};
    expect_error(r, r->target.ops->program(&r->target, F4_BASE, data, 4), MF_ECANCELED,
                 "cancelled");
    atomic_store(&r->target.cancel, 0);
    program(r, F4_BASE, data, 4);

    struct mf_sim_options bad = {.time_scale = -1.0};
    struct mf_target t = {0};
    assert_int_equal(mf_sim_open(&t, r->dir, 1, &bad), MF_EINVAL);
    assert_int_equal(mf_sim_open(&t, r->dir, 1000, NULL), MF_EINVAL);
    mf_sim_close(&t); /* safe after a failed open */
}

static void test_slot_lock(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    struct mf_target other = {0};
    assert_int_equal(mf_sim_open(&other, r->dir, 1, &r->options), 0);
    other.profile = f4();
    int err = other.ops->connect(&other);
    assert_int_equal(err, MF_EBUSY);
    assert_non_null(strstr(other.error, "slot 1 is in use"));
    char error[128];
    assert_int_equal(mf_sim_replace(r->dir, 1, NULL, NULL, NULL, error, sizeof error), MF_EBUSY);
    /* Inspecting needs no lock. */
    struct mf_sim_info info;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, NULL, 0), 0);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    assert_int_equal(other.ops->connect(&other), 0);
    mf_sim_close(&other);
}

struct slot_job {
    const char *dir;
    unsigned slot;
    int result;
};

/* Connect, erase, program a slot-specific pattern over 64 KiB, verify by CRC, disconnect. */
static void *slot_worker(void *arg)
{
    struct slot_job *job = arg;
    struct mf_target t = {0};
    job->result = -1;
    if (mf_sim_open(&t, job->dir, job->slot, NULL) != 0)
        return NULL;
    t.profile = mf_profile_find("SIM-N52-512K");
    uint8_t chunk[4096];
    int err = t.ops->connect(&t);
    if (!err)
        err = t.ops->erase(&t, 0, 64u << 10);
    uint32_t want = MF_TARGET_CRC_INIT, got = 0;
    for (uint32_t at = 0; !err && at < (64u << 10); at += sizeof chunk) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (uint8_t)(job->slot * 31u + at / 4096u + i);
        err = t.ops->program(&t, at, chunk, sizeof chunk);
        want = mf_target_crc(want, chunk, sizeof chunk);
    }
    if (!err)
        err = t.ops->crc(&t, 0, 64u << 10, &got);
    if (!err && got != want)
        err = MF_EVERIFY;
    if (!err)
        err = t.ops->disconnect(&t);
    mf_sim_close(&t);
    job->result = err;
    return NULL;
}

static void test_parallel_slots(void **state)
{
    struct rig *r = *state;
    enum { SLOTS = 8 };
    pthread_t threads[SLOTS];
    struct slot_job jobs[SLOTS];
    for (unsigned i = 0; i < SLOTS; i++) {
        jobs[i] = (struct slot_job){r->dir, i + 1, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, slot_worker, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].result, 0);
    }
    unsigned slots[16];
    size_t count;
    assert_int_equal(mf_sim_slots(r->dir, slots, 16, &count, NULL, 0), 0);
    assert_int_equal(count, SLOTS);
    struct mf_sim_info first, second;
    assert_int_equal(mf_sim_inspect(r->dir, 1, &first, NULL, 0), 0);
    assert_int_equal(mf_sim_inspect(r->dir, 2, &second, NULL, 0), 0);
    assert_memory_not_equal(first.uid, second.uid, 8); /* random UIDs */
    assert_int_equal(first.counters.programmed_bytes, 64u << 10);
}

static void test_slot_listing(void **state)
{
    struct rig *r = *state;
    const char *names[] = {"slot3", "slot12", "slot01", "slotx", "slot0", "slot1000", "other"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *path = mf_test_path(r->dir, names[i]);
        assert_int_equal(mkdir(path, 0755), 0);
        free(path);
    }
    char *file = mf_test_path(r->dir, "slot4");
    assert_int_equal(mf_test_write_file(file, "x", 1), 0); /* a file, not a slot */
    free(file);
    unsigned slots[1];
    size_t count;
    assert_int_equal(mf_sim_slots(r->dir, slots, 1, &count, NULL, 0), 0);
    assert_int_equal(count, 2);
    assert_int_equal(slots[0], 3);
    char *missing = mf_test_path(r->dir, "nothing");
    char error[128];
    assert_int_equal(mf_sim_slots(missing, slots, 1, &count, error, sizeof error), MF_ENOENT);
    free(missing);
}

/* A part with two regions: flash.bin holds them one after the other, in region order. */
static const struct mf_profile two_regions = {
    .name = "TEST-2R",
    .description = "two regions",
    .flash = {{.start = 0x1000,
               .size = 0x2000,
               .groups = {{0x1000, 2}},
               .group_count = 1,
               .write_size = 8,
               .erased_value = 0xFF},
              {.start = 0x10000,
               .size = 0x400,
               .groups = {{0x100, 4}},
               .group_count = 1,
               .write_size = 1,
               .erased_value = 0x00}},
    .flash_count = 2,
    .uid_address = 0x20000,
    .uid_length = 4,
    .protect_levels = 1,
};

static void test_two_regions(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, &two_regions);
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    program(r, 0x10000 + 0x10, data, 3); /* write size 1 there */
    program(r, 0x1000 + 0x1FF8, data, 8);
    expect_error(r, r->target.ops->program(&r->target, 0x1000 + 0x1FF8, data, 16), MF_EINVAL,
                 "run past the end");
    /* Erased value 0x00: every bit must be set by an erase before programming zeros over ones. */
    const uint8_t zeros[1] = {0};
    expect_error(r, r->target.ops->program(&r->target, 0x10010, zeros, 1), MF_EVERIFY,
                 "(0x01 -> 0x00)");
    assert_int_equal(r->target.ops->erase_chip(&r->target), 0);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    size_t size;
    uint8_t *file = (uint8_t *)read_slot_file(r, 1, "flash.bin", &size);
    assert_int_equal(size, 0x2400);
    assert_true(all_bytes(file, 0x2000, 0xFF));
    assert_true(all_bytes(file + 0x2000, 0x400, 0x00));
    free(file);

    rig_connect(r, 1, &two_regions);
    program(r, 0x1000 + 0x1FF8, data, 8);
    program(r, 0x10000 + 0x10, data, 3);
    assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    file = (uint8_t *)read_slot_file(r, 1, "flash.bin", &size);
    assert_memory_equal(file + 0x1FF8, data, 8);
    assert_memory_equal(file + 0x2000 + 0x10, data, 3);
    free(file);
    struct mf_sim_info info;
    char error[128];
    /* Not a built-in profile: inspect cannot know it. */
    assert_int_equal(mf_sim_inspect(r->dir, 1, &info, error, sizeof error), MF_EFORMAT);
    assert_non_null(strstr(error, "unknown profile 'TEST-2R'"));
}

/* A part without a UID (DEVICES.INI may describe one): device.ini says `uid =` with nothing
 * after it, and the device connects again and again. */
static void test_part_without_uid(void **state)
{
    struct rig *r = *state;
    struct mf_profile no_uid = two_regions;
    no_uid.name = "TEST-NOUID";
    no_uid.uid_length = 0;
    no_uid.uid_address = 0;
    for (int i = 0; i < 3; i++) {
        rig_connect(r, 1, &no_uid);
        const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        if (i == 0)
            program(r, 0x1000, data, 8);
        assert_int_equal(r->target.ops->disconnect(&r->target), 0);
    }
    size_t size;
    char *ini = read_slot_file(r, 1, "device.ini", &size);
    assert_non_null(strstr(ini, "\nuid = \n"));
    free(ini);
}

/* ---- What a connection knows to be erased (docs/internals/sim.md): after an erase the sim skips
 * the NOR check where nothing was programmed since; every case below must still be refused. */

/* A program the NOR rules refuse: MF_EVERIFY with `text`, the flash unchanged. */
static void program_refused(struct rig *r, uint64_t address, const uint8_t *data, uint32_t length,
                            const char *text)
{
    uint8_t *before = malloc(length), *after = malloc(length);
    assert_non_null(before);
    assert_non_null(after);
    read_flash(r, address, before, length);
    expect_error(r, r->target.ops->program(&r->target, address, data, length), MF_EVERIFY, text);
    read_flash(r, address, after, length);
    assert_memory_equal(before, after, length);
    free(before);
    free(after);
}

/* `length` bytes of `fill`, with `value` at `at` (when inside). */
static void fill_with(uint8_t *data, size_t length, uint8_t fill, size_t at, uint8_t value)
{
    memset(data, fill, length);
    if (at < length)
        data[at] = value;
}

static void test_erased_then_programmed(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    uint8_t first[256], second[256], back[256];
    fill_with(first, sizeof first, 0xFF, 0x37, 0x12);
    fill_with(second, sizeof second, 0xFF, 0x37, 0x34);

    /* The same bytes twice after an erase: the second program needs bits set. */
    assert_int_equal(ops->erase(&r->target, F4_BASE, 16u << 10), 0);
    program(r, F4_BASE, first, sizeof first);
    program_refused(r, F4_BASE, second, sizeof second,
                    "program at 0x08000037: byte not erased (0x12 -> 0x34)");
    read_flash(r, F4_BASE, back, sizeof back);
    assert_memory_equal(back, first, sizeof first);

    /* The end of a sector, then its start (erased: fine), then the end again (refused). */
    const uint64_t sector1 = F4_BASE + 0x4000, end1 = F4_BASE + 0x8000;
    assert_int_equal(ops->erase(&r->target, sector1, 16u << 10), 0);
    program(r, end1 - sizeof first, first, sizeof first);
    program(r, sector1, first, sizeof first);
    program(r, sector1 + 0x2000, first, sizeof first); /* between the two: still erased */
    program_refused(r, end1 - sizeof second, second, sizeof second,
                    "program at 0x08007f37: byte not erased (0x12 -> 0x34)");
    program_refused(r, sector1 + 0x2000, second, sizeof second, "at 0x08006037");
    program_refused(r, sector1, second, sizeof second, "at 0x08004037");
    /* Clearing more bits stays allowed, as it was before the erase was remembered. */
    fill_with(second, sizeof second, 0xFF, 0x37, 0x02);
    program(r, end1 - sizeof second, second, sizeof second);
    read_flash(r, end1 - sizeof back, back, sizeof back);
    assert_memory_equal(back, second, sizeof second);

    /* Erasing again forgets the programmed bytes: any value goes. */
    assert_int_equal(ops->erase(&r->target, sector1, 16u << 10), 0);
    fill_with(second, sizeof second, 0xFF, 0x37, 0x34);
    program(r, end1 - sizeof second, second, sizeof second);
    program(r, sector1, second, sizeof second);
}

static void test_erased_across_sectors(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    /* Sector 3 (0x0800C000) has programmed bytes and is not erased in this connection; sector 2
     * (0x08008000) is. A program over both is refused as a whole: sector 2's part stays erased. */
    const uint8_t zeros[4] = {0};
    program(r, 0x0800C010, zeros, sizeof zeros);
    assert_int_equal(ops->erase(&r->target, 0x08008000, 16u << 10), 0);
    static uint8_t data[512], back[512];
    memset(data, 0x5A, sizeof data);
    program_refused(r, 0x0800BF00, data, sizeof data,
                    "program at 0x0800c010: byte not erased (0x00 -> 0x5A)");
    read_flash(r, 0x0800BF00, back, 256);
    assert_true(all_bytes(back, 256, 0xFF));
    program(r, 0x0800BF00, data, 256); /* the part in sector 2 alone */
    program(r, 0x0800C014, data, 16);  /* sector 3 past the mark: erased bytes */

    /* Both sectors erased: one program over the bound, then each side is known programmed. */
    assert_int_equal(ops->erase(&r->target, 0x08008000, 32u << 10), 0);
    program(r, 0x0800BF00, data, sizeof data);
    read_flash(r, 0x0800BF00, back, sizeof back);
    assert_memory_equal(back, data, sizeof data);
    uint8_t other[16];
    memset(other, 0xA5, sizeof other);
    program_refused(r, 0x0800BFF0, other, sizeof other,
                    "program at 0x0800bff0: byte not erased (0x5A -> 0xA5)");
    program_refused(r, 0x0800C0F0, other, sizeof other,
                    "program at 0x0800c0f0: byte not erased (0x5A -> 0xA5)");
    program(r, 0x0800C100, other, sizeof other); /* past the program: still erased */

    /* Sector 4 (64 KiB) erased, sector 5 not, with a mark at its start; the refused byte of a
     * long program that ends in sector 5 is named there. */
    program(r, 0x08020000, zeros, sizeof zeros);
    assert_int_equal(ops->erase(&r->target, 0x08010000, 64u << 10), 0);
    static uint8_t large[0x10000 + 64];
    memset(large, 0x33, sizeof large);
    program_refused(r, 0x08010000 + 64, large, sizeof large,
                    "program at 0x08020000: byte not erased (0x00 -> 0x33)");
    read_flash(r, 0x08010000, back, sizeof back);
    assert_true(all_bytes(back, sizeof back, 0xFF));
}

/* Writes `value` at `offset` of a slot's flash.bin, as `dd conv=notrunc` would between cycles. */
static void poke_flash(struct rig *r, unsigned slot, long offset, uint8_t value)
{
    char *path = slot_file(r, slot, "flash.bin");
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, offset, SEEK_SET), 0);
    assert_int_equal(fputc(value, file), value);
    assert_int_equal(fclose(file), 0);
    free(path);
}

static void test_erased_then_edited_between_cycles(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->erase(&r->target, F4_BASE, 16u << 10), 0);
    assert_int_equal(ops->erase_chip(&r->target), 0);
    assert_int_equal(ops->disconnect(&r->target), 0);
    poke_flash(r, 1, 0x40, 0x00);
    poke_flash(r, 1, 0x20000 + 0x10, 0x0F);
    /* The same programmer, flash.bin still mapped: what the last connection erased is checked
     * again. */
    assert_int_equal(ops->connect(&r->target), 0);
    uint8_t data[256];
    memset(data, 0x5A, sizeof data);
    program_refused(r, F4_BASE, data, sizeof data,
                    "program at 0x08000040: byte not erased (0x00 -> 0x5A)");
    program_refused(r, F4_BASE + 0x20000, data, sizeof data,
                    "program at 0x08020010: byte not erased (0x0F -> 0x5A)");
    program(r, F4_BASE + 0x100, data, sizeof data);
}

static void test_mass_erase_then_programmed(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    uint8_t data[64], more[64], back[64];
    fill_with(data, sizeof data, 0x5A, 64, 0);
    fill_with(more, sizeof more, 0x5A, 9, 0xA5);
    program(r, F4_BASE + 0x80000, more, sizeof more);

    assert_int_equal(ops->erase_chip(&r->target), 0);
    program(r, F4_BASE + 0x80000, data, sizeof data);
    program_refused(r, F4_BASE + 0x80000, more, sizeof more,
                    "program at 0x08080009: byte not erased (0x5A -> 0xA5)");

    assert_int_equal(ops->protect(&r->target, 1), 0);
    assert_int_equal(ops->unlock(&r->target), 0);
    read_flash(r, F4_BASE + 0x80000, back, sizeof back);
    assert_true(all_bytes(back, sizeof back, 0xFF));
    program(r, F4_BASE + 0xFFFC0, data, sizeof data);
    program_refused(r, F4_BASE + 0xFFFC0, more, sizeof more, "at 0x080fffc9");
    read_flash(r, F4_BASE + 0xFFFC0, back, sizeof back);
    assert_memory_equal(back, data, sizeof data);
}

/* The program fault writes bytes before failing, the flip fault changes one after: both are
 * programmed bytes for the NOR check that follows. */
static void test_erased_then_faults(void **state)
{
    struct rig *r = *state;
    r->options.faults.program = (struct mf_sim_fault){MF_SIM_FAULT_ONCE, 8};
    r->options.faults.flip = (struct mf_sim_fault){MF_SIM_FAULT_ALWAYS, F4_BASE + 0x102};
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->erase(&r->target, F4_BASE, 16u << 10), 0);
    uint8_t zeros[16] = {0}, data[16];
    memset(data, 0x5A, sizeof data);
    expect_error(r, ops->program(&r->target, F4_BASE, zeros, sizeof zeros), MF_EIO,
                 "I/O error after 8 bytes");
    program_refused(r, F4_BASE, data, 8, "program at 0x08000000: byte not erased (0x00 -> 0x5A)");
    program(r, F4_BASE + 8, data, 8);

    program(r, F4_BASE + 0x100, zeros, 4);
    uint8_t back[4];
    read_flash(r, F4_BASE + 0x100, back, sizeof back);
    const uint8_t flipped[4] = {0x00, 0x00, 0x01, 0x00}, needs_bit[4] = {0x00, 0x00, 0x02, 0x00};
    assert_memory_equal(back, flipped, sizeof flipped);
    program_refused(r, F4_BASE + 0x100, needs_bit, sizeof needs_bit,
                    "program at 0x08000102: byte not erased (0x01 -> 0x02)");
}

/* Two regions: each has its own sectors (and erased value) in what the sim remembers. */
static void test_erased_two_regions(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, &two_regions);
    const struct mf_target_ops *ops = r->target.ops;
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8}, more[8] = {2, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t lower[8] = {0xF0, 2, 3, 4, 5, 6, 7, 8};
    program(r, 0x1000, data, sizeof data);
    program(r, 0x10100, data, sizeof data);
    /* Region 2's first sector erased: region 1's first sector and region 2's second are not. */
    assert_int_equal(ops->erase(&r->target, 0x10000, 0x100), 0);
    program_refused(r, 0x1000, lower, sizeof lower, "program at 0x00001000: byte not erased");
    program_refused(r, 0x10100, more, sizeof more, "program at 0x00010100: byte not erased");
    program(r, 0x10000, data, sizeof data);
    /* Erased value 0x00: setting bits programs, clearing one needs an erase. */
    program_refused(r, 0x10000, more, sizeof more,
                    "program at 0x00010000: byte not erased (0x01 -> 0x02)");
    assert_int_equal(ops->erase_chip(&r->target), 0);
    program(r, 0x1000, lower, sizeof lower);
    program(r, 0x10100, more, sizeof more);
    program_refused(r, 0x10100, data, sizeof data, "(0x02 -> 0x01)");
    program_refused(r, 0x1000, data, sizeof data, "(0xF0 -> 0x01)");
}

/* device.ini is rewritten in place: a shorter text leaves nothing of the longer one behind. */
static void test_ini_rewrite_shorter(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->disconnect(&r->target), 0);
    edit_ini(r, 1, "program = off", "program = 0x000000000000000000000000000000004 once");
    edit_ini(r, 1, "timeout = off\n",
             "timeout = off\n; a note left by an operator, longer than anything the programmer "
             "writes back in its place: the rewrite must not leave its tail behind\n");
    for (int round = 0; round < 2; round++) {
        assert_int_equal(ops->connect(&r->target), 0);
        if (round == 0) {
            /* The knob fires: device.ini is rewritten during the connection. */
            const uint8_t zeros[8] = {0};
            expect_error(r, ops->program(&r->target, F4_BASE, zeros, sizeof zeros), MF_EIO,
                         "fault injected");
            assert_true(ini_has(r, 1, "program = off\n"));
        }
        assert_int_equal(ops->disconnect(&r->target), 0);
        size_t size;
        char *text = read_slot_file(r, 1, "device.ini", &size);
        const char *last = "\ntimeout = off\n";
        if (size < strlen(last) || strcmp(text + size - strlen(last), last) != 0 ||
            strstr(text, "operator") || strstr(text, "0x000"))
            fail_msg("device.ini after round %d:\n%s", round, text);
        free(text);
        struct mf_sim_info info;
        char error[160];
        if (mf_sim_inspect(r->dir, 1, &info, error, sizeof error) != 0)
            fail_msg("%s", error);
        assert_int_equal(info.faults.program.mode, MF_SIM_FAULT_OFF);
        assert_int_equal(info.counters.programmed_bytes, 4);
    }
}

/* A programmer keeps the slot folder and what device.ini said from one connection to the next:
 * an edit between cycles (also one that keeps the file's length) and a slot folder replaced by
 * another are still seen at the next connect, and the lock is the new folder's. */
static void test_kept_between_connections(void **state)
{
    struct rig *r = *state;
    rig_connect(r, 1, f4());
    const struct mf_target_ops *ops = r->target.ops;
    assert_int_equal(ops->disconnect(&r->target), 0);
    assert_int_equal(ops->connect(&r->target), 0);
    assert_int_equal(ops->disconnect(&r->target), 0);
    assert_true(ini_has(r, 1, "connects = 2\n"));

    /* The same length, another value: parsed again. */
    edit_ini(r, 1, "connects = 2\n", "connects = 7\n");
    assert_int_equal(ops->connect(&r->target), 0);
    assert_int_equal(ops->disconnect(&r->target), 0);
    assert_true(ini_has(r, 1, "connects = 8\n"));
    edit_ini(r, 1, "connect = off", "connect = once");
    expect_error(r, ops->connect(&r->target), MF_EIO, "fault injected");
    assert_true(ini_has(r, 1, "connect = off\n"));
    assert_int_equal(ops->connect(&r->target), 0);
    uint8_t uid_before[12], uid_after[12];
    assert_int_equal(ops->read_uid(&r->target, uid_before, sizeof uid_before), 0);
    assert_int_equal(ops->disconnect(&r->target), 0);

    /* The slot folder moved away and a new device made in its place by another programmer. */
    char *slot1 = mf_test_path(r->dir, "slot1");
    char *moved = mf_test_path(r->dir, "slot1.old");
    assert_int_equal(rename(slot1, moved), 0);
    struct mf_target other = {0};
    assert_int_equal(mf_sim_open(&other, r->dir, 1, &r->options), 0);
    other.profile = f4();
    assert_int_equal(other.ops->connect(&other), 0);
    const uint8_t mark[4] = {0x12, 0x34, 0x56, 0x78};
    assert_int_equal(other.ops->program(&other, F4_BASE, mark, sizeof mark), 0);
    assert_int_equal(other.ops->disconnect(&other), 0);

    assert_int_equal(ops->connect(&r->target), 0);
    assert_int_equal(ops->read_uid(&r->target, uid_after, sizeof uid_after), 0);
    assert_memory_not_equal(uid_before, uid_after, sizeof uid_after);
    uint8_t back[4];
    read_flash(r, F4_BASE, back, sizeof back);
    assert_memory_equal(back, mark, sizeof mark);
    /* Locked is the folder now at the path, not the one moved away. */
    expect_error(r, other.ops->connect(&other), MF_EBUSY, NULL);
    assert_non_null(strstr(other.error, "slot 1 is in use"));
    assert_int_equal(ops->disconnect(&r->target), 0);
    assert_true(ini_has(r, 1, "connects = 2\n"));
    assert_int_equal(other.ops->connect(&other), 0);
    mf_sim_close(&other);
    assert_int_equal(mf_test_rmtree(moved), 0);
    free(moved);
    free(slot1);
}

/* Connect makes the sim folder and the slot folder when they are missing, and says why it
 * cannot. */
static void test_connect_makes_folders(void **state)
{
    struct rig *r = *state;
    char *fresh = mf_test_path(r->dir, "fresh");
    struct mf_target t = {0};
    assert_int_equal(mf_sim_open(&t, fresh, 2, &r->options), 0);
    t.profile = f4();
    assert_int_equal(t.ops->connect(&t), 0);
    assert_int_equal(t.ops->disconnect(&t), 0);
    assert_int_equal(t.ops->connect(&t), 0); /* the folders exist now */
    mf_sim_close(&t);
    char *ini = mf_test_path(fresh, "slot2/device.ini");
    struct stat st;
    assert_int_equal(stat(ini, &st), 0);
    free(ini);

    /* A file where the slot folder should be; a file as the sim folder; no parent folder. */
    char *slot3 = mf_test_path(fresh, "slot3");
    assert_int_equal(mf_test_write_file(slot3, "x", 1), 0);
    free(slot3);
    assert_int_equal(mf_sim_open(&t, fresh, 3, &r->options), 0);
    t.profile = f4();
    assert_int_equal(t.ops->connect(&t), MF_ENOTDIR);
    assert_non_null(strstr(t.error, "fresh/slot3: Not a directory"));
    mf_sim_close(&t);

    char *plain = mf_test_path(r->dir, "plain");
    assert_int_equal(mf_test_write_file(plain, "x", 1), 0);
    assert_int_equal(mf_sim_open(&t, plain, 1, &r->options), 0);
    t.profile = f4();
    assert_int_equal(t.ops->connect(&t), MF_ENOTDIR);
    assert_non_null(strstr(t.error, "plain/slot1: cannot create the folder (Not a directory)"));
    mf_sim_close(&t);
    free(plain);

    char *deep = mf_test_path(r->dir, "missing/sims");
    assert_int_equal(mf_sim_open(&t, deep, 1, &r->options), 0);
    t.profile = f4();
    assert_int_equal(t.ops->connect(&t), MF_ENOENT);
    assert_non_null(
        strstr(t.error, "missing/sims: cannot create the folder (No such file or directory)"));
    mf_sim_close(&t);
    free(deep);
    free(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blank_device, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_nor_rules, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_mixed_sectors, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_ranges_and_alignment, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_protection, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_persistence, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_replace, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_profile, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_bad_slot_files, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_fault_connect_erase, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_fault_program_and_flip, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_fault_timeout, rig_setup, rig_teardown),
        cmocka_unit_test(test_fault_syntax),
        cmocka_unit_test_setup_teardown(test_timing_and_cancel, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_slot_lock, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_parallel_slots, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_slot_listing, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_part_without_uid, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_two_regions, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_erased_then_programmed, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_erased_across_sectors, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_erased_then_edited_between_cycles, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(test_mass_erase_then_programmed, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_erased_then_faults, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_erased_two_regions, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_ini_rewrite_shorter, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_connect_makes_folders, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_kept_between_connections, rig_setup, rig_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
