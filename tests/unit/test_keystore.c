/* The keystore trust anchor on real files in a private temp folder: creation and reopening,
 * refusal of wide permissions, foreign owners, links and foreign files, the lock, round trips,
 * the crypto-erase (the old key's bytes are nowhere in the file afterwards), the monotonic
 * counter, damaged slots, and crashes: every update torn or garbled at each byte offset, and a
 * child process killed at random moments, must leave the old state or the new one. */
#include "mf_anchor.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_keystore.h"
#include "mf_testutil.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

struct fixture {
    char *dir;
    char *path;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = mf_test_tmpdir("keystore");
    if (!f->dir) {
        free(f);
        return -1;
    }
    f->path = mf_test_path(f->dir, "anchor.keystore");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = mf_test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
    free(f);
    return rc ? -1 : 0;
}

static void expect_error(const struct mf_anchor *anchor, const char *needle)
{
    if (!strstr(anchor->error, needle))
        fail_msg("error \"%s\" does not contain \"%s\"", anchor->error, needle);
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: enough for picking offsets and delays, and repeatable from the seed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
}

static void read_raw(const char *path, uint8_t raw[MF_KEYSTORE_FILE_SIZE])
{
    char *data = NULL;
    size_t size = 0;
    assert_int_equal(mf_test_read_file(path, &data, &size), 0);
    assert_int_equal(size, MF_KEYSTORE_FILE_SIZE);
    memcpy(raw, data, MF_KEYSTORE_FILE_SIZE);
    free(data);
}

/* Writes the raw bytes back, keeping the mode 0600 (mf_test_write_file makes 0644 files). */
static void write_raw(const char *path, const uint8_t *raw, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0600), 0);
    assert_int_equal(write(fd, raw, size), (ssize_t)size);
    assert_int_equal(close(fd), 0);
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    return memmem(hay, n, needle, m) != NULL;
}

static void test_create_and_reopen(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;

    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ENOENT);
    expect_error(&a, "no keystore here");
    assert_int_equal(access(f->path, F_OK), -1);

    mode_t mask = umask(0);
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    umask(mask);
    assert_string_equal(a.name, "keystore");
    assert_ptr_equal(a.context, &ks);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, MF_KEYSTORE_FILE_SIZE);

    struct mf_anchor_state s;
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_key);
    assert_false(s.has_digest);
    uint64_t value = 99;
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, 0);
    uint8_t secret[MF_ANCHOR_IDENTITY_SIZE];
    bool present = true;
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_false(present);

    uint8_t binding[MF_ANCHOR_BINDING_SIZE], again[MF_ANCHOR_BINDING_SIZE];
    assert_int_equal(a.binding(&a, binding), 0);
    /* The binding is SHA-256 over the random id stored in both slots. */
    uint8_t raw[MF_KEYSTORE_FILE_SIZE];
    read_raw(f->path, raw);
    struct mf_keystore_slot slot;
    assert_int_equal(mf_keystore_decode_slot(raw, &slot), 0);
    uint8_t expect[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(expect, slot.id, sizeof slot.id);
    assert_memory_equal(binding, expect, sizeof expect);
    a.close(&a);

    /* Reopen without create, and with create (an existing keystore is used as it is). */
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_equal(binding, again, sizeof binding);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_equal(binding, again, sizeof binding);
    a.close(&a);

    /* Another keystore is another counter: another binding. */
    char *other = mf_test_path(f->dir, "other.keystore");
    assert_int_equal(mf_keystore_open(&ks, other, true, &a), 0);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_not_equal(binding, again, sizeof binding);
    a.close(&a);
    free(other);

    /* No temporary file is left behind. */
    struct mf_test_output out;
    assert_int_equal(mf_test_runf(&out, "ls -A %s", f->dir), 0);
    assert_string_equal(out.out, "anchor.keystore\nother.keystore\n");
    mf_test_output_free(&out);
}

static void test_refusals(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;

    char *nofolder = mf_test_path(f->dir, "missing/anchor.keystore");
    assert_int_equal(mf_keystore_open(&ks, nofolder, true, &a), MF_ENOENT);
    expect_error(&a, "folder does not exist");
    free(nofolder);

    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    a.close(&a);

    assert_int_equal(chmod(f->path, 0644), 0);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_EACCES);
    expect_error(&a, "permissions 0644");
    expect_error(&a, "chmod 600");
    assert_int_equal(chmod(f->path, 0620), 0);
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), MF_EACCES);
    assert_int_equal(chmod(f->path, 0604), 0); /* readable by others alone is as bad */
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_EACCES);
    expect_error(&a, "permissions 0604");
    assert_int_equal(chmod(f->path, 0600), 0);

    if (geteuid() == 0) {
        assert_int_equal(chown(f->path, 4242, 4242), 0);
        assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_EACCES);
        expect_error(&a, "belongs to user 4242");
        assert_int_equal(chown(f->path, 0, 0), 0);
    } else {
        fprintf(stderr, "keystore: not root: the foreign-owner case is not tried\n");
    }

    char *link = mf_test_path(f->dir, "link.keystore");
    assert_int_equal(symlink(f->path, link), 0);
    assert_int_equal(mf_keystore_open(&ks, link, false, &a), MF_EACCES);
    expect_error(&a, "symbolic link");
    free(link);

    char *folder = mf_test_path(f->dir, "folder.keystore");
    assert_int_equal(mkdir(folder, 0700), 0);
    assert_true(mf_keystore_open(&ks, folder, true, &a) < 0);
    assert_true(strstr(a.error, "folder.keystore") != NULL);
    free(folder);

    /* Files that are not keystores: wrong size, or the right size without a valid slot. */
    char *foreign = mf_test_path(f->dir, "foreign.keystore");
    write_raw(foreign, (const uint8_t *)"hello\n", 6);
    assert_int_equal(mf_keystore_open(&ks, foreign, true, &a), MF_EFORMAT);
    expect_error(&a, "not a mintflash keystore");
    uint8_t junk[MF_KEYSTORE_FILE_SIZE];
    randombytes_buf(junk, sizeof junk);
    write_raw(foreign, junk, sizeof junk);
    assert_int_equal(mf_keystore_open(&ks, foreign, true, &a), MF_ECORRUPT);
    expect_error(&a, "both slots are damaged");
    write_raw(foreign, junk, 0);
    assert_int_equal(mf_keystore_open(&ks, foreign, true, &a), MF_EFORMAT);
    free(foreign);

    /* The file is untouched by all these refusals. */
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    a.close(&a);
}

static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks1, ks2;
    struct mf_anchor a1, a2;
    assert_int_equal(mf_keystore_open(&ks1, f->path, true, &a1), 0);
    assert_int_equal(mf_keystore_open(&ks2, f->path, true, &a2), MF_EBUSY);
    expect_error(&a2, "in use by another program");

    /* Another process sees the lock too. */
    struct mf_test_output out;
    char *q = mf_test_shell_quote(f->path);
    assert_int_equal(mf_test_runf(&out, "flock -n -x %s true", q), 0);
    assert_int_not_equal(out.status, 0);
    mf_test_output_free(&out);

    a1.close(&a1);
    assert_int_equal(mf_test_runf(&out, "flock -n -x %s true", q), 0);
    assert_int_equal(out.status, 0);
    mf_test_output_free(&out);
    free(q);
    assert_int_equal(mf_keystore_open(&ks2, f->path, false, &a2), 0);
    a2.close(&a2);
}

static void test_round_trips(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    uint8_t key[MF_ANCHOR_KEY_SIZE], digest[MF_ANCHOR_DIGEST_SIZE];
    uint8_t identity[MF_ANCHOR_IDENTITY_SIZE], other[MF_ANCHOR_IDENTITY_SIZE];
    fill_pattern(key, sizeof key, 1);
    fill_pattern(digest, sizeof digest, 2);
    fill_pattern(identity, sizeof identity, 3);
    fill_pattern(other, sizeof other, 4);

    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.write_key(&a, key), 0);
    assert_int_equal(a.write_digest(&a, digest), 0);
    assert_int_equal(a.write_identity(&a, identity), 0);
    assert_int_equal(a.write_identity(&a, identity), 0); /* the same again: a retry */
    assert_int_equal(a.write_identity(&a, other), MF_EEXIST);
    expect_error(&a, "never replaced");
    uint8_t owner[MF_ANCHOR_OWNER_SIZE];
    fill_pattern(owner, sizeof owner, 5);
    assert_int_equal(a.write_owner(&a, owner, 77), 0);
    a.close(&a);

    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    struct mf_anchor_state s;
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_true(s.has_owner);
    assert_memory_equal(s.owner, owner, sizeof owner);
    assert_int_equal(s.package_mark, 77);
    assert_true(s.has_key);
    assert_memory_equal(s.key, key, sizeof key);
    assert_true(s.has_digest);
    assert_memory_equal(s.digest, digest, sizeof digest);
    uint8_t secret[MF_ANCHOR_IDENTITY_SIZE];
    bool present = false;
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_true(present);
    assert_memory_equal(secret, identity, sizeof identity);

    assert_int_equal(a.write_digest(&a, NULL), 0);
    assert_int_equal(a.write_key(&a, NULL), 0);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_true(s.has_owner); /* the pin outlives an erased setup */
    assert_int_equal(a.write_owner(&a, NULL, 78), 0);
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_owner);
    assert_int_equal(s.package_mark, 78);
    assert_true(sodium_is_zero(s.owner, sizeof s.owner));
    assert_false(s.has_key);
    assert_false(s.has_digest);
    assert_true(sodium_is_zero(s.key, sizeof s.key));
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_true(present); /* erasing the setup keeps the programmer's identity */
    a.close(&a);
}

static void test_key_change_wipes_old_key(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    uint8_t key_a[MF_ANCHOR_KEY_SIZE], key_b[MF_ANCHOR_KEY_SIZE], digest[MF_ANCHOR_DIGEST_SIZE];
    fill_pattern(key_a, sizeof key_a, 10);
    fill_pattern(key_b, sizeof key_b, 11);
    fill_pattern(digest, sizeof digest, 12);
    uint8_t raw[MF_KEYSTORE_FILE_SIZE];

    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.write_key(&a, key_a), 0);
    uint64_t value;
    for (int i = 0; i < 3; i++)
        assert_int_equal(a.counter_increment(&a, &value), 0);
    assert_int_equal(a.write_digest(&a, digest), 0);
    read_raw(f->path, raw);
    assert_true(contains(raw, sizeof raw, key_a, sizeof key_a)); /* the test can see a key */

    assert_int_equal(a.write_key(&a, key_b), 0);
    read_raw(f->path, raw);
    assert_false(contains(raw, sizeof raw, key_a, sizeof key_a));
    assert_true(contains(raw, sizeof raw, key_b, sizeof key_b));
    assert_true(contains(raw + MF_KEYSTORE_SLOT_SIZE, MF_KEYSTORE_SLOT_SIZE, key_b, sizeof key_b));
    assert_true(contains(raw, MF_KEYSTORE_SLOT_SIZE, key_b, sizeof key_b));

    /* Single-slot updates after the change keep the new key in both slots, never the old. */
    assert_int_equal(a.counter_increment(&a, &value), 0);
    assert_int_equal(value, 4);
    assert_int_equal(a.write_key(&a, NULL), 0);
    read_raw(f->path, raw);
    assert_false(contains(raw, sizeof raw, key_a, sizeof key_a));
    assert_false(contains(raw, sizeof raw, key_b, sizeof key_b));
    a.close(&a);
}

static void test_counter_monotonic(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    uint64_t value = 0, read = 0;
    for (uint64_t i = 1; i <= 50; i++) {
        assert_int_equal(a.counter_increment(&a, &value), 0);
        assert_int_equal(value, i);
        assert_int_equal(a.counter_read(&a, &read), 0);
        assert_int_equal(read, i);
    }
    a.close(&a);
    for (uint64_t round = 0; round < 3; round++) {
        assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
        assert_int_equal(a.counter_read(&a, &read), 0);
        assert_int_equal(read, 50 + round);
        assert_int_equal(a.counter_increment(&a, &value), 0);
        assert_int_equal(value, 51 + round);
        a.close(&a);
    }

    /* Measured, not asserted: the cost of one durable increment (one write, one sync). */
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    struct timespec t0, t1;
    const int n = 200;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++)
        assert_int_equal(a.counter_increment(&a, &value), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
    printf("keystore: counter increment: %.1f us each (mean of %d, 1 pwrite + 1 fdatasync, %s)\n",
           us / n, n, f->dir);
    a.close(&a);
}

static void expect_open_counter(const char *path, uint64_t counter)
{
    struct mf_keystore ks;
    struct mf_anchor a;
    assert_int_equal(mf_keystore_open(&ks, path, false, &a), 0);
    uint64_t value = 0;
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, counter);
    a.close(&a);
}

static void test_damaged_slots(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    uint8_t key[MF_ANCHOR_KEY_SIZE];
    fill_pattern(key, sizeof key, 20);
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.write_key(&a, key), 0);
    uint64_t value;
    for (int i = 0; i < 6; i++)
        assert_int_equal(a.counter_increment(&a, &value), 0);
    unsigned newest = ks.current;
    a.close(&a);

    uint8_t good[MF_KEYSTORE_FILE_SIZE], raw[MF_KEYSTORE_FILE_SIZE];
    read_raw(f->path, good);

    /* Garbage in the older slot: the newest state, and the slot is repaired at open. */
    memcpy(raw, good, sizeof raw);
    randombytes_buf(raw + (1u - newest) * MF_KEYSTORE_SLOT_SIZE, MF_KEYSTORE_SLOT_SIZE);
    write_raw(f->path, raw, sizeof raw);
    expect_open_counter(f->path, 6);
    read_raw(f->path, raw);
    struct mf_keystore_slot s0, s1;
    assert_int_equal(mf_keystore_decode_slot(raw, &s0), 0);
    assert_int_equal(mf_keystore_decode_slot(raw + MF_KEYSTORE_SLOT_SIZE, &s1), 0);

    /* Garbage in the newest slot: the other one, one update older, is used. */
    memcpy(raw, good, sizeof raw);
    memset(raw + newest * MF_KEYSTORE_SLOT_SIZE + 100, 0x5a, 40);
    write_raw(f->path, raw, sizeof raw);
    expect_open_counter(f->path, 5);

    /* Both slots garbage: a clear error, and the file is left as it is for inspection. */
    memcpy(raw, good, sizeof raw);
    raw[MF_KEYSTORE_SLOT_SIZE - 1] ^= 1;
    raw[2 * MF_KEYSTORE_SLOT_SIZE - 1] ^= 1;
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ECORRUPT);
    expect_error(&a, "both slots are damaged");
    uint8_t after[MF_KEYSTORE_FILE_SIZE];
    read_raw(f->path, after);
    assert_memory_equal(after, raw, sizeof raw);

    /* Two valid slots that contradict each other. */
    struct mf_keystore_slot slot;
    assert_int_equal(mf_keystore_decode_slot(good + newest * MF_KEYSTORE_SLOT_SIZE, &slot), 0);
    slot.id[0] ^= 1;
    memcpy(raw, good, sizeof raw);
    mf_keystore_encode_slot(&slot, raw + newest * MF_KEYSTORE_SLOT_SIZE);
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ECORRUPT);
    expect_error(&a, "different keystores");

    assert_int_equal(mf_keystore_decode_slot(good + newest * MF_KEYSTORE_SLOT_SIZE, &slot), 0);
    slot.counter = 1; /* newer slot, lower counter */
    memcpy(raw, good, sizeof raw);
    mf_keystore_encode_slot(&slot, raw + newest * MF_KEYSTORE_SLOT_SIZE);
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ECORRUPT);
    expect_error(&a, "below the older");

    /* Two slots of one sequence number: neither is known to be the newer. */
    struct mf_keystore_slot other;
    assert_int_equal(mf_keystore_decode_slot(good + (1u - newest) * MF_KEYSTORE_SLOT_SIZE, &other),
                     0);
    assert_int_equal(mf_keystore_decode_slot(good + newest * MF_KEYSTORE_SLOT_SIZE, &slot), 0);
    slot.sequence = other.sequence;
    memcpy(raw, good, sizeof raw);
    mf_keystore_encode_slot(&slot, raw + newest * MF_KEYSTORE_SLOT_SIZE);
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ECORRUPT);
    char want[64];
    snprintf(want, sizeof want, "both slots carry sequence number %llu",
             (unsigned long long)other.sequence);
    expect_error(&a, want);
    /* Sequence numbers start at 1: a slot of 0 was never written by us. */
    slot.sequence = 0;
    uint8_t zero[MF_KEYSTORE_SLOT_SIZE];
    mf_keystore_encode_slot(&slot, zero);
    assert_int_equal(mf_keystore_decode_slot(zero, &slot), MF_ECORRUPT);

    /* The counter at its top: one more increment reaches UINT64_MAX, the next is refused and
     * changes nothing (the counter never wraps to 0). */
    assert_int_equal(mf_keystore_decode_slot(good + newest * MF_KEYSTORE_SLOT_SIZE, &slot), 0);
    slot.counter = UINT64_MAX - 1;
    memcpy(raw, good, sizeof raw);
    mf_keystore_encode_slot(&slot, raw + newest * MF_KEYSTORE_SLOT_SIZE);
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.counter_increment(&a, &value), 0);
    assert_int_equal(value, UINT64_MAX);
    assert_int_equal(a.counter_increment(&a, &value), MF_ERANGE);
    expect_error(&a, "counter at its maximum");
    assert_true(a.unchanged);
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, UINT64_MAX);
    a.close(&a);
    expect_open_counter(f->path, UINT64_MAX);

    /* A slot of a newer format version is never skipped over. */
    memcpy(raw, good, sizeof raw);
    uint8_t *p = raw + (1u - newest) * MF_KEYSTORE_SLOT_SIZE;
    p[8] = MF_KEYSTORE_VERSION + 1;
    uint32_t crc = mf_crc32_update(0, p, MF_KEYSTORE_SLOT_SIZE - 4);
    for (unsigned i = 0; i < 4; i++)
        p[MF_KEYSTORE_SLOT_SIZE - 4 + i] = (uint8_t)(crc >> (8 * i));
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_EVERSION);
    expect_error(&a, "newer mintflash");

    /* An absent key that is not zero is hostile, even with a correct checksum. */
    assert_int_equal(mf_keystore_decode_slot(good, &slot), 0);
    uint8_t one[MF_KEYSTORE_SLOT_SIZE];
    slot.has_key = false;
    mf_keystore_encode_slot(&slot, one);
    assert_int_equal(mf_keystore_decode_slot(one, &slot), 0);
    one[50] = 1;
    crc = mf_crc32_update(0, one, MF_KEYSTORE_SLOT_SIZE - 4);
    for (unsigned i = 0; i < 4; i++)
        one[MF_KEYSTORE_SLOT_SIZE - 4 + i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(mf_keystore_decode_slot(one, &slot), MF_ECORRUPT);
}

/* Notes: kept with the counter across reopening and other writes, dropped by a key change,
 * bounded in size; a version 1 file (slots only) opens, keeps its state and gets its note
 * areas. */
static void test_notes(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.note_max, MF_ANCHOR_NOTE_MAX);
    uint8_t key[MF_ANCHOR_KEY_SIZE], note[MF_ANCHOR_NOTE_MAX + 8], got[MF_ANCHOR_NOTE_MAX];
    fill_pattern(key, sizeof key, 3);
    assert_int_equal(a.write_key(&a, key), 0);
    uint64_t value;
    assert_int_equal(a.counter_increment(&a, &value), 0);
    size_t size = 1;
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, 0);
    /* A version 1 file: what this keystore was before its first note. */
    a.close(&a);
    uint8_t raw[MF_KEYSTORE_FILE_SIZE];
    read_raw(f->path, raw);
    write_raw(f->path, raw, MF_KEYSTORE_FILE_SIZE_V1);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, MF_KEYSTORE_FILE_SIZE);
    /* Written, not a hole: a note's write later needs no new space on the host. */
    int fd = open(f->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 0, SEEK_HOLE), (off_t)MF_KEYSTORE_FILE_SIZE);
    close(fd);
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, 1);

    randombytes_buf(note, sizeof note);
    assert_int_equal(a.counter_increment_note(&a, note, 0, &value), MF_EINVAL);
    assert_int_equal(a.counter_increment_note(&a, note, MF_ANCHOR_NOTE_MAX + 1, &value), MF_EINVAL);
    expect_error(&a, "note of");
    assert_int_equal(a.counter_increment_note(&a, note, 3000, &value), 0);
    assert_int_equal(value, 2);
    /* Other writes keep it, reopening too. */
    uint8_t digest[MF_ANCHOR_DIGEST_SIZE];
    fill_pattern(digest, sizeof digest, 4);
    assert_int_equal(a.write_digest(&a, digest), 0);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, 3000);
    assert_memory_equal(got, note, 3000);
    assert_int_equal(a.counter_increment_note(&a, note + 5, MF_ANCHOR_NOTE_MAX, &value), 0);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, MF_ANCHOR_NOTE_MAX);
    assert_memory_equal(got, note + 5, MF_ANCHOR_NOTE_MAX);
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, 3);
    /* Slots with notes in a file cut to version 1's size: no valid slot is left. */
    a.close(&a);
    read_raw(f->path, raw);
    write_raw(f->path, raw, MF_KEYSTORE_FILE_SIZE_V1);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), MF_ECORRUPT);
    expect_error(&a, "both slots are damaged");
    write_raw(f->path, raw, sizeof raw);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    /* A new key is a new setup: its note is gone. */
    fill_pattern(key, sizeof key, 5);
    assert_int_equal(a.write_key(&a, key), 0);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, 0);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, 0);
    a.close(&a);
}

/* ---- crash simulation: every write torn or garbled at each byte ---- */

struct snapshot {
    uint64_t counter;
    bool has_key;
    uint8_t key[MF_ANCHOR_KEY_SIZE];
    bool has_digest;
    uint8_t digest[MF_ANCHOR_DIGEST_SIZE];
    bool has_identity;
    uint8_t identity[MF_ANCHOR_IDENTITY_SIZE];
    size_t note_size;
    uint8_t note[MF_ANCHOR_NOTE_MAX];
};

static void take_snapshot(struct mf_anchor *a, struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    struct mf_anchor_state st;
    assert_int_equal(a->read_state(a, &st), 0);
    s->has_key = st.has_key;
    memcpy(s->key, st.key, sizeof s->key);
    s->has_digest = st.has_digest;
    memcpy(s->digest, st.digest, sizeof s->digest);
    assert_int_equal(a->counter_read(a, &s->counter), 0);
    assert_int_equal(a->read_identity(a, s->identity, &s->has_identity), 0);
    assert_int_equal(a->read_note(a, s->note, &s->note_size), 0);
}

static bool same_snapshot(const struct snapshot *x, const struct snapshot *y)
{
    return memcmp(x, y, sizeof *x) == 0;
}

enum op { OP_INCREMENT, OP_INCREMENT_NOTE, OP_DIGEST, OP_KEY, OP_KEY_ERASE, OP_IDENTITY };

/* The note written by OP_INCREMENT_NOTE with `seed`: its size varies with the seed, its bytes
 * are random (a pattern would contain the keys' patterns, which the wipe checks look for). */
static size_t op_note(uint8_t seed, uint8_t note[MF_ANCHOR_NOTE_MAX])
{
    size_t size = 1000u + (size_t)seed * 389u % (MF_ANCHOR_NOTE_MAX - 1000u);
    for (size_t i = 0; i < size; i++)
        note[i] = (uint8_t)rng_next();
    return size;
}

static void run_op(struct mf_anchor *a, enum op op, uint8_t seed)
{
    uint8_t buf[MF_ANCHOR_IDENTITY_SIZE];
    fill_pattern(buf, sizeof buf, seed);
    uint64_t value;
    uint8_t note[MF_ANCHOR_NOTE_MAX];
    switch (op) {
    case OP_INCREMENT:
        assert_int_equal(a->counter_increment(a, &value), 0);
        break;
    case OP_INCREMENT_NOTE:
        assert_int_equal(a->counter_increment_note(a, note, op_note(seed, note), &value), 0);
        break;
    case OP_DIGEST:
        assert_int_equal(a->write_digest(a, buf), 0);
        break;
    case OP_KEY:
        assert_int_equal(a->write_key(a, buf), 0);
        break;
    case OP_KEY_ERASE:
        assert_int_equal(a->write_key(a, NULL), 0);
        break;
    case OP_IDENTITY:
        assert_int_equal(a->write_identity(a, buf), 0);
        break;
    }
}

/* Opens the keystore made of `image` and checks that it shows `old` or `new` (`allow_old`
 * false: only new). When it shows new, no key other than new's may remain in the file after the
 * open (the repair). Returns 1 when it showed new. */
static int check_image(const char *path, const uint8_t *image, const struct snapshot *old,
                       const struct snapshot *new, bool allow_old, const char *what, size_t at)
{
    write_raw(path, image, MF_KEYSTORE_FILE_SIZE);
    struct mf_keystore ks;
    struct mf_anchor a;
    int rc = mf_keystore_open(&ks, path, false, &a);
    if (rc != 0)
        fail_msg("%s at byte %zu: open failed: %s", what, at, a.error);
    struct snapshot got;
    take_snapshot(&a, &got);
    a.close(&a);
    bool is_new = same_snapshot(&got, new);
    if (!is_new && !(allow_old && same_snapshot(&got, old)))
        fail_msg("%s at byte %zu: the state is neither the old nor the new one (counter %llu)",
                 what, at, (unsigned long long)got.counter);
    if (is_new && old->has_key && (!new->has_key || memcmp(old->key, new->key, 32) != 0)) {
        uint8_t raw[MF_KEYSTORE_FILE_SIZE];
        read_raw(path, raw);
        if (contains(raw, sizeof raw, old->key, sizeof old->key))
            fail_msg("%s at byte %zu: the old key is still in the file", what, at);
    }
    return is_new ? 1 : 0;
}

/* Every prefix of the write of bytes [base, base + size) from `before` to `after` (a torn
 * write) and every single garbled byte of it; `step` > 1 takes every step-th prefix and byte. */
static void sweep_range(const char *path, const uint8_t *before, const uint8_t *after, size_t base,
                        size_t size, size_t step, const struct snapshot *old,
                        const struct snapshot *new, bool allow_old, const char *what, int *news)
{
    uint8_t image[MF_KEYSTORE_FILE_SIZE];
    for (size_t k = 0; k <= size; k += (k + step > size && k < size) ? size - k : step) {
        memcpy(image, before, sizeof image);
        memcpy(image + base, after + base, k);
        *news += check_image(path, image, old, new, allow_old || k < size, what, k);
    }
    for (size_t k = 0; k < size; k += step) {
        memcpy(image, after, sizeof image);
        image[base + k] ^= (uint8_t)(1u + (rng_next() % 255u));
        *news += check_image(path, image, old, new, true, what, k);
    }
}

/* The write of one slot. */
static void sweep_write(const char *path, const uint8_t *before, const uint8_t *after,
                        unsigned slot, const struct snapshot *old, const struct snapshot *new,
                        bool allow_old, const char *what, int *news)
{
    sweep_range(path, before, after, (size_t)slot * MF_KEYSTORE_SLOT_SIZE, MF_KEYSTORE_SLOT_SIZE, 1,
                old, new, allow_old, what, news);
}

static void crash_one(const char *path, enum op op, uint8_t seed, const char *what)
{
    struct mf_keystore ks;
    struct mf_anchor a;
    uint8_t before[MF_KEYSTORE_FILE_SIZE], after[MF_KEYSTORE_FILE_SIZE];
    struct snapshot old, new;

    assert_int_equal(mf_keystore_open(&ks, path, false, &a), 0);
    take_snapshot(&a, &old);
    unsigned older = 1u - ks.current;
    a.close(&a);
    read_raw(path, before);

    assert_int_equal(mf_keystore_open(&ks, path, false, &a), 0);
    run_op(&a, op, seed);
    take_snapshot(&a, &new);
    a.close(&a);
    read_raw(path, after);
    assert_false(same_snapshot(&old, &new));

    int news = 0;
    bool both = op == OP_KEY || op == OP_KEY_ERASE || op == OP_IDENTITY;
    if (!both && new.note_size) {
        /* Two writes, the note area then the slot, with one fdatasync: either may reach the
         * medium first, and either may be torn. */
        size_t note = MF_KEYSTORE_FILE_SIZE_V1 + (size_t)older * MF_KEYSTORE_NOTE_SIZE;
        size_t slot = (size_t)older * MF_KEYSTORE_SLOT_SIZE;
        uint8_t middle[MF_KEYSTORE_FILE_SIZE];
        memcpy(middle, before, sizeof middle); /* the note first */
        memcpy(middle + note, after + note, MF_KEYSTORE_NOTE_SIZE);
        sweep_range(path, before, middle, note, MF_KEYSTORE_NOTE_SIZE, 7, &old, &old, true, what,
                    &news);
        sweep_write(path, middle, after, older, &old, &new, true, what, &news);
        memcpy(middle, before, sizeof middle); /* the slot first */
        memcpy(middle + slot, after + slot, MF_KEYSTORE_SLOT_SIZE);
        sweep_range(path, middle, after, note, MF_KEYSTORE_NOTE_SIZE, 7, &old, &new, true, what,
                    &news);
    } else if (!both) {
        assert_memory_equal(before + (1u - older) * MF_KEYSTORE_SLOT_SIZE,
                            after + (1u - older) * MF_KEYSTORE_SLOT_SIZE, MF_KEYSTORE_SLOT_SIZE);
        sweep_write(path, before, after, older, &old, &new, true, what, &news);
    } else {
        /* First write: the older slot; second write: the other one. */
        uint8_t middle[MF_KEYSTORE_FILE_SIZE];
        memcpy(middle, before, sizeof middle);
        memcpy(middle + older * MF_KEYSTORE_SLOT_SIZE, after + older * MF_KEYSTORE_SLOT_SIZE,
               MF_KEYSTORE_SLOT_SIZE);
        sweep_write(path, before, middle, older, &old, &new, true, what, &news);
        sweep_write(path, middle, after, 1u - older, &old, &new, false, what, &news);
    }
    assert_true(news > 0); /* the sweep saw the new state at least once */
    write_raw(path, after, sizeof after);
}

static char *fast_tmpdir(void)
{
    /* The sweep opens the keystore thousands of times; on tmpfs its syncs cost nothing, and the
     * tearing is simulated here, not by the file system. */
    char template[] = "/dev/shm/mf-keystore-crash-XXXXXX";
    if (access("/dev/shm", W_OK) == 0 && mkdtemp(template))
        return strdup(template);
    return mf_test_tmpdir("keystore-crash");
}

static int setup_fast(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = fast_tmpdir();
    if (!f->dir) {
        free(f);
        return -1;
    }
    f->path = mf_test_path(f->dir, "anchor.keystore");
    *state = f;
    return 0;
}

/* A write the file system refuses (its device gone read-only; here a descriptor that cannot
 * write) says the keystore is unchanged, and it is: the counter and the note read back as
 * before, also after a reopen; the next write that works replaces the refused one. */
static void test_refused_write_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct mf_keystore ks;
    struct mf_anchor a;
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    uint8_t key[MF_ANCHOR_KEY_SIZE], note[3000], got[MF_ANCHOR_NOTE_MAX];
    fill_pattern(key, sizeof key, 7);
    assert_int_equal(a.write_key(&a, key), 0);
    uint64_t value;
    fill_pattern(note, sizeof note, 1);
    assert_int_equal(a.counter_increment_note(&a, note, sizeof note, &value), 0);
    assert_int_equal(value, 1);
    int read_only = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_true(read_only >= 0);
    int writable = dup(ks.fd);
    assert_true(writable >= 0);
    assert_true(dup2(read_only, ks.fd) >= 0);
    for (unsigned i = 0; i < 2; i++) {
        uint8_t other[3000];
        fill_pattern(other, sizeof other, (uint8_t)(2 + i));
        a.unchanged = false;
        int err = i == 0 ? a.counter_increment_note(&a, other, sizeof other, &value)
                         : a.counter_increment(&a, &value);
        assert_true(err < 0);
        assert_true(a.unchanged);
        expect_error(&a, "write of");
        assert_int_equal(a.counter_read(&a, &value), 0);
        assert_int_equal(value, 1);
    }
    size_t size = 0;
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, sizeof note);
    assert_memory_equal(got, note, sizeof note);
    /* The file holds the state from before: a restart reads it, and its next write counts
     * once. */
    assert_true(dup2(writable, ks.fd) >= 0);
    close(writable);
    close(read_only);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, 1);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_int_equal(size, sizeof note);
    assert_memory_equal(got, note, sizeof note);
    fill_pattern(note, sizeof note, 9);
    assert_int_equal(a.counter_increment_note(&a, note, sizeof note, &value), 0);
    assert_int_equal(value, 2);
    a.close(&a);
    assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
    assert_int_equal(a.counter_read(&a, &value), 0);
    assert_int_equal(value, 2);
    assert_int_equal(a.read_note(&a, got, &size), 0);
    assert_memory_equal(got, note, sizeof note);
    a.close(&a);
}

static void test_crash_torn_writes(void **state)
{
    struct fixture *f = *state;
    rng_state = mf_test_seed("keystore torn writes", 0x6b657973746f7265ULL) | 1;
    struct mf_keystore ks;
    struct mf_anchor a;
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    a.close(&a);

    crash_one(f->path, OP_INCREMENT, 1, "increment");
    crash_one(f->path, OP_KEY, 2, "first key");
    crash_one(f->path, OP_INCREMENT, 3, "increment with a key");
    crash_one(f->path, OP_INCREMENT_NOTE, 9, "increment with a note");
    crash_one(f->path, OP_INCREMENT_NOTE, 10, "increment with another note");
    crash_one(f->path, OP_DIGEST, 4, "digest with a note");
    crash_one(f->path, OP_KEY, 5, "key change");
    crash_one(f->path, OP_IDENTITY, 6, "identity");
    crash_one(f->path, OP_INCREMENT, 7, "increment with an identity");
    crash_one(f->path, OP_KEY_ERASE, 8, "key erase");
}

/* ---- crash simulation: a child killed at random moments ---- */

struct report {
    uint64_t counter;
    uint32_t key_round; /* the key written last: fill_pattern(seed = key_round) */
};

static void child_loop(const char *path, int out)
{
    struct mf_keystore ks;
    struct mf_anchor a;
    if (mf_keystore_open(&ks, path, false, &a) != 0)
        _exit(2);
    uint64_t value = 0;
    struct report r;
    memset(&r, 0, sizeof r);
    if (a.counter_read(&a, &r.counter) != 0)
        _exit(3);
    struct mf_anchor_state st;
    if (a.read_state(&a, &st) != 0 || !st.has_key)
        _exit(4);
    r.key_round = st.key[0]; /* rounds are told apart by their first byte */
    for (uint32_t i = 0; i < 100000; i++) {
        if (i % 5 == 4) {
            uint8_t key[MF_ANCHOR_KEY_SIZE];
            uint32_t next = (r.key_round + 1) % 200;
            fill_pattern(key, sizeof key, (uint8_t)next);
            key[0] = (uint8_t)next;
            if (a.write_key(&a, key) != 0)
                _exit(5);
            r.key_round = next;
        } else {
            if (a.counter_increment(&a, &value) != 0)
                _exit(6);
            r.counter = value;
        }
        if (write(out, &r, sizeof r) != (ssize_t)sizeof r)
            _exit(7);
    }
    _exit(0);
}

static void key_of_round(uint32_t round, uint8_t key[MF_ANCHOR_KEY_SIZE])
{
    fill_pattern(key, MF_ANCHOR_KEY_SIZE, (uint8_t)round);
    key[0] = (uint8_t)round;
}

static void test_crash_killed_child(void **state)
{
    struct fixture *f = *state;
    rng_state = mf_test_seed("keystore killed child", 0x6b696c6c6b696c6cULL) | 1;
    struct mf_keystore ks;
    struct mf_anchor a;
    uint8_t key[MF_ANCHOR_KEY_SIZE];
    key_of_round(0, key);
    assert_int_equal(mf_keystore_open(&ks, f->path, true, &a), 0);
    assert_int_equal(a.write_key(&a, key), 0);
    a.close(&a);

    uint64_t counter = 0;
    uint32_t round = 0;
    const int kills = mf_test_soak() ? 300 : 30;
    for (int kill_no = 0; kill_no < kills; kill_no++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_loop(f->path, fds[1]);
        }
        close(fds[1]);
        struct timespec delay = {0, (long)(rng_next() % 3000000u)};
        nanosleep(&delay, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("kill %d: the child ended by itself (status %d)", kill_no, status);
        struct report r, last = {counter, round};
        while (read(fds[0], &r, sizeof r) == (ssize_t)sizeof r)
            last = r;
        close(fds[0]);

        /* The state on disk is the last completed operation's or the one in progress. */
        assert_int_equal(mf_keystore_open(&ks, f->path, false, &a), 0);
        uint64_t value = 0;
        assert_int_equal(a.counter_read(&a, &value), 0);
        struct mf_anchor_state st;
        assert_int_equal(a.read_state(&a, &st), 0);
        a.close(&a);
        assert_true(st.has_key);
        uint32_t now = st.key[0];
        if (value == last.counter + 1) {
            assert_int_equal(now, last.key_round); /* the increment in progress landed */
        } else {
            assert_int_equal(value, last.counter);
            if (now != last.key_round)
                assert_int_equal(now, (last.key_round + 1) % 200); /* a key change landed */
        }
        key_of_round(now, key);
        assert_memory_equal(st.key, key, sizeof key);

        /* After the open, only the current key is in the file. */
        uint8_t raw[MF_KEYSTORE_FILE_SIZE], old[MF_ANCHOR_KEY_SIZE];
        read_raw(f->path, raw);
        uint32_t previous = (now + 199) % 200;
        key_of_round(previous, old);
        assert_false(contains(raw, sizeof raw, old, sizeof old));
        counter = value;
        round = now;
    }
    printf("keystore: %d kills, counter reached %llu, key round %u\n", kills,
           (unsigned long long)counter, round);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_change_wipes_old_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_write_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_torn_writes, setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_crash_killed_child, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
