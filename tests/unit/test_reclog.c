/* The programmer's production records (mf_reclog): appended, signed and chained records that the
 * owner's verifier (mf_record) accepts; files that roll over at their size limit; a line torn by
 * a power cut is cut off; deleted or edited newest records give a GAP record; a record appended
 * before a cut of the head is taken as the head; consumed cycles without a record and cycles the
 * anchor's counter proves are noted; a full public area refuses before anything is written; and
 * a power cut at every write of an append leaves a chain the verifier calls intact. */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_owner.h"
#include "mf_rambd.h"
#include "mf_ramanchor.h"
#include "mf_reclog.h"
#include "mf_record.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_sweep.h"

#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PUBLIC_BLOCKS 4096u /* 2 MiB */
#define SECURE_BLOCKS 2048u /* 1 MiB */

struct fixture {
    uint8_t *public_mem, *secure_mem;
    struct mf_rambd public_ram, secure_ram;
    struct mf_fat fs;
    struct mf_area_fat area;
    struct mf_ramanchor anchor;
    struct mf_secure secure;
    struct mf_owner_identity id;
    struct mf_reclog log;
    int64_t now;
    char message[MF_RECLOG_MESSAGE_MAX];
};

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    randombytes_buf(buffer, length);
}

static int64_t clock_of(void *context)
{
    struct fixture *f = context;
    return f->now++;
}

static void put(struct mf_fat *fs, const char *path, const char *text)
{
    char dir[256];
    for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        memcpy(dir, path, (size_t)(p - path));
        dir[p - path] = '\0';
        int err = mf_fat_mkdir(fs, dir);
        assert_true(err == 0 || err == MF_EEXIST);
    }
    struct mf_fat_file file;
    assert_int_equal(
        mf_fat_open(fs, &file, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC), 0);
    assert_int_equal(mf_fat_write(fs, &file, text, (uint32_t)strlen(text)), (int)strlen(text));
    assert_int_equal(mf_fat_close(fs, &file), 0);
}

/* Installs a small setup (2 projects, counts 50) into the secure area. */
static void install(struct fixture *f)
{
    put(&f->fs, "_SECURE/Projects/01_A/01_J/job.ini", "[job]\ndevice = SIM-F1-64K\n");
    put(&f->fs, "_SECURE/Projects/01_A/Cntdown.txt", "50\n");
    struct mf_secure_config c = {
        .bd = &f->secure_ram.bd, .anchor = &f->anchor.anchor, .random = entropy, .reservation = 1};
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
    int err =
        mf_secure_install(&f->secure, &f->area.area, MF_SECURE_FOLDER, NULL, NULL, f->message);
    if (err)
        fail_msg("install: %s", f->message);
    assert_int_equal(mf_fat_remove_tree(&f->fs, MF_SECURE_FOLDER), 0);
}

static struct mf_reclog_config config_of(struct fixture *f)
{
    return (struct mf_reclog_config){.fs = &f->fs,
                                     .secure = &f->secure,
                                     .anchor = &f->anchor.anchor,
                                     .identity = &f->id,
                                     .utc = clock_of,
                                     .utc_context = f};
}

static int setup_fixture(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->public_mem = calloc(PUBLIC_BLOCKS, 512);
    f->secure_mem = calloc(SECURE_BLOCKS, 512);
    mf_rambd_init(&f->public_ram, f->public_mem, 512, PUBLIC_BLOCKS);
    mf_rambd_init(&f->secure_ram, f->secure_mem, 512, SECURE_BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 3};
    assert_int_equal(mf_fat_format(&f->public_ram.bd, &o), 0);
    assert_int_equal(mf_fat_mount(&f->fs, &f->public_ram.bd, NULL, NULL), 0);
    mf_area_fat_init(&f->area, &f->fs, NULL);
    mf_ramanchor_init(&f->anchor);
    uint8_t secret[64];
    memset(secret, 0x42, sizeof secret);
    mf_owner_identity_derive(secret, &f->id);
    f->now = 1700000000;
    install(f);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    struct fixture *f = *state;
    mf_secure_close(&f->secure);
    mf_fat_unmount(&f->fs);
    free(f->public_mem);
    free(f->secure_mem);
    free(f);
    return 0;
}

static void open_log(struct fixture *f, char *notes)
{
    struct mf_reclog_config c = config_of(f);
    int err = mf_reclog_open(&f->log, &c, notes, f->message);
    if (err)
        fail_msg("open: %d %s", err, f->message);
}

static void append(struct fixture *f, unsigned slot, uint64_t serial, bool ok)
{
    uint8_t uid[12];
    memset(uid, (int)slot, sizeof uid);
    struct mf_reclog_entry e = {.project = "A",
                                .slot = slot,
                                .uid = uid,
                                .uid_length = sizeof uid,
                                .has_serial = true,
                                .serial = serial,
                                .ok = ok};
    int err = mf_reclog_append(&f->log, &e, f->message);
    if (err)
        fail_msg("append: %d %s", err, f->message);
}

/* Reads every RECORDS file in order into the verifier; returns the number of files. */
static unsigned verify_all(struct fixture *f, struct mf_record_verifier *v)
{
    mf_record_verifier_init(v, &f->id.pub, NULL, NULL);
    unsigned files = 0;
    for (unsigned n = 0; n < MF_RECLOG_FILES_MAX; n++) {
        char name[16];
        snprintf(name, sizeof name, "RECORDS.%03u", n % 1000u);
        struct mf_fat_file file;
        if (mf_fat_open(&f->fs, &file, name, MF_FAT_O_RDONLY) != 0)
            break;
        uint32_t size = mf_fat_size(&file);
        char *text = malloc(size + 1);
        assert_int_equal(mf_fat_read(&f->fs, &file, text, size), (int)size);
        mf_fat_close(&f->fs, &file);
        uint64_t line = 1;
        for (char *p = text, *end; p < text + size; p = end + 1, line++) {
            end = memchr(p, '\n', (size_t)(text + size - p));
            if (!end)
                end = text + size;
            assert_int_equal(mf_record_verifier_line(v, name, line, p, (size_t)(end - p)), 0);
        }
        free(text);
        files++;
    }
    return files;
}

static void test_append_and_verify(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    for (unsigned i = 0; i < 10; i++)
        append(f, 1 + i % 3, 1000 + i, i != 4);
    struct mf_record_verifier v;
    assert_int_equal(verify_all(f, &v), 1);
    assert_int_equal(v.records, 10);
    assert_int_equal(v.verified, 10);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.total_count, 1);
    assert_int_equal(v.totals[0].ok, 9);
    assert_int_equal(v.totals[0].failed, 1);
    assert_memory_equal(v.totals[0].setup, f->secure.fingerprint, 32);
    mf_record_verifier_free(&v);
    assert_int_equal(f->secure.state.record_seq, 10);
    assert_int_equal(f->secure.state.recorded, 10);
    /* A reopen finds everything in order and writes nothing. */
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_string_equal(notes, "");
    assert_int_equal(f->secure.state.record_seq, 10);
}

static void test_files_roll_over(void **state)
{
    struct fixture *f = *state;
    struct mf_reclog_config c = config_of(f);
    c.file_max = 2048;
    assert_int_equal(mf_reclog_open(&f->log, &c, NULL, f->message), 0);
    for (unsigned i = 0; i < 30; i++)
        append(f, 1, i, true);
    struct mf_record_verifier v;
    unsigned files = verify_all(f, &v);
    assert_true(files >= 5);
    assert_int_equal(v.verified, 30);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
    for (unsigned n = 0; n < files; n++) {
        char name[16];
        snprintf(name, sizeof name, "RECORDS.%03u", n % 1000u);
        struct mf_fat_stat st;
        assert_int_equal(mf_fat_stat(&f->fs, name, &st), 0);
        assert_true(st.size <= 2048);
    }
    /* Reopened, it goes on in the newest file. */
    assert_int_equal(mf_reclog_open(&f->log, &c, NULL, f->message), 0);
    append(f, 1, 99, true);
    assert_int_equal(verify_all(f, &v), files + (f->log.current >= files ? 1 : 0));
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.verified, 31);
    mf_record_verifier_free(&v);
}

/* Appends raw bytes to RECORDS.000 (a torn line, or an edit). */
static void raw_append(struct fixture *f, const char *text)
{
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&f->fs, &file, "RECORDS.000", MF_FAT_O_WRONLY | MF_FAT_O_APPEND),
                     0);
    assert_int_equal(mf_fat_write(&f->fs, &file, text, (uint32_t)strlen(text)), (int)strlen(text));
    assert_int_equal(mf_fat_close(&f->fs, &file), 0);
}

static void test_torn_line_is_cut(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    append(f, 1, 1, true);
    append(f, 1, 2, true);
    raw_append(f, "MFR1 seq=3 prev=00"); /* the power went mid-line */
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_string_equal(notes, "");
    append(f, 1, 3, true);
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_int_equal(v.malformed, 0);
    assert_int_equal(v.verified, 3);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
}

/* Keeps the first `lines` lines of RECORDS.000. */
static void keep_lines(struct fixture *f, unsigned lines)
{
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&f->fs, &file, "RECORDS.000", MF_FAT_O_RDWR), 0);
    uint32_t size = mf_fat_size(&file);
    char *text = malloc(size);
    assert_int_equal(mf_fat_read(&f->fs, &file, text, size), (int)size);
    uint32_t cut = 0;
    for (unsigned n = 0; n < lines; n++)
        cut = (uint32_t)((char *)memchr(text + cut, '\n', size - cut) - text) + 1;
    free(text);
    assert_int_equal(mf_fat_truncate(&f->fs, &file, cut), 0);
    assert_int_equal(mf_fat_close(&f->fs, &file), 0);
}

static void test_deleted_newest_gives_a_gap(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    for (unsigned i = 0; i < 6; i++)
        append(f, 1, i, true);
    keep_lines(f, 4); /* records 5 and 6 deleted */
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_non_null(strstr(notes, "production records 5 to 6 are missing"));
    assert_int_equal(f->secure.state.record_seq, 7);
    append(f, 1, 6, true);
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_int_equal(v.gaps, 1);
    assert_int_equal(v.bad_signatures, 0);
    assert_false(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);

    /* Every newest record deleted, the file gone: a gap from 1. */
    assert_int_equal(mf_fat_remove(&f->fs, "RECORDS.000"), 0);
    open_log(f, notes);
    assert_non_null(strstr(notes, "production records 1 to 8 are missing"));
}

/* A new setup's records go on from the old setup's newest: one chain, intact; deleting the
 * earlier setup's records shows as records missing at the chain's start. */
static void test_chain_goes_on_across_setups(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    for (unsigned i = 0; i < 3; i++)
        append(f, 1, i, true);
    uint8_t first_setup[32];
    memcpy(first_setup, f->secure.fingerprint, 32);
    put(&f->fs, "_SECURE/Projects/01_A/01_J/notes.txt", "setup 2\n"); /* another setup */
    mf_secure_close(&f->secure);
    install(f);
    assert_memory_not_equal(first_setup, f->secure.fingerprint, 32);
    assert_int_equal(f->secure.state.record_seq, 3);
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_string_equal(notes, "");
    append(f, 1, 5000, true);
    assert_int_equal(f->secure.state.record_seq, 4);
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.records, 4);
    assert_int_equal(v.total_count, 2); /* totals per setup */
    mf_record_verifier_free(&v);
    /* The first setup's records deleted (the file rewritten with the newest line only). */
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&f->fs, &file, "RECORDS.000", MF_FAT_O_RDWR), 0);
    uint32_t size = mf_fat_size(&file);
    char *text = malloc(size);
    assert_int_equal(mf_fat_read(&f->fs, &file, text, size), (int)size);
    assert_int_equal(mf_fat_close(&f->fs, &file), 0);
    char *last = text;
    for (char *p = text; p < text + size - 1; p++) {
        if (*p == '\n')
            last = p + 1;
    }
    char *keep = strndup(last, (size_t)(text + size - last));
    put(&f->fs, "RECORDS.000", keep);
    free(keep);
    free(text);
    verify_all(f, &v);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.chain_breaks, 1);
    mf_record_verifier_free(&v);
}

/* A setup installed without the chain's head (a cut during its install): the chain goes on
 * from the newest record of ours in the files all the same. */
static void test_chain_adopts_the_newest_record(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    append(f, 1, 1, true);
    append(f, 1, 2, true);
    put(&f->fs, "_SECURE/Projects/01_A/01_J/notes.txt", "setup 2\n");
    mf_secure_close(&f->secure);
    install(f);
    static const uint8_t zeros[32];
    assert_int_equal(mf_secure_record_head(&f->secure, 0, zeros, 0, f->message), 0);
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_string_equal(notes, "");
    assert_int_equal(f->secure.state.record_seq, 2);
    append(f, 1, 3, true);
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.records, 3);
    assert_int_equal(v.chains, 1);
    mf_record_verifier_free(&v);
}

static void test_edited_newest_gives_a_gap(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    for (unsigned i = 0; i < 3; i++)
        append(f, 1, i, true);
    keep_lines(f, 2);
    raw_append(f, "MFR1 seq=3 forged\n");
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    if (!strstr(notes, "production records 3 to 3 are missing or changed"))
        fail_msg("notes: %s", notes);
}

static void test_head_catches_up(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    append(f, 1, 1, true);
    uint8_t hash1[32];
    memcpy(hash1, f->secure.state.record_hash, 32);
    append(f, 1, 2, true);
    /* The power went after record 2 was appended, before its head was recorded. */
    assert_int_equal(mf_secure_record_head(&f->secure, 1, hash1, 1, f->message), 0);
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_string_equal(notes, "");
    assert_int_equal(f->secure.state.record_seq, 2);
    assert_int_equal(f->secure.state.recorded, 2);
    append(f, 1, 3, true);
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.verified, 3);
    mf_record_verifier_free(&v);
}

static void test_unrecorded_and_counter_ahead(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    static uint8_t buffer[16384];
    struct mf_setup setup;
    char msg[MF_SETUP_ERROR_MAX];
    assert_int_equal(mf_setup_load(&setup, &f->secure.area, buffer, sizeof buffer, msg), 0);
    struct mf_tally t;
    char m[MF_AREA_MESSAGE_MAX];
    /* Two cycles take their counts; the power goes before either is recorded. */
    assert_int_equal(f->secure.area.peek(&f->secure.area, &setup, 0, &t, m), 0);
    assert_int_equal(f->secure.area.take(&f->secure.area, &setup, 0, &t, m), 0);
    assert_int_equal(f->secure.area.take(&f->secure.area, &setup, 0, &t, m), 0);
    char notes[MF_RECLOG_MESSAGE_MAX];
    open_log(f, notes);
    assert_non_null(strstr(notes, "2 cycle(s) took a count but have no record"));
    assert_int_equal(f->secure.state.recorded, 2);
    /* The counter moved on without the state (a restored image, or a cut in between). */
    f->anchor.counter += 3;
    open_log(f, notes);
    assert_non_null(strstr(notes, "proves 3 cycle(s) more"));
    open_log(f, notes); /* noted once, not at every start */
    assert_string_equal(notes, "");
    struct mf_record_verifier v;
    verify_all(f, &v);
    assert_int_equal(v.verified, 2);
    assert_int_equal(v.totals[0].failed, 2);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
    mf_setup_free(&setup);
}

static void test_full_public_area(void **state)
{
    struct fixture *f = *state;
    open_log(f, NULL);
    int room = mf_reclog_room(&f->log, 8, f->message);
    if (room)
        fail_msg("room: %s", f->message);
    /* Fill the public area. */
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&f->fs, &file, "filler.bin", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    static uint8_t block[64 << 10];
    while (mf_fat_write(&f->fs, &file, block, sizeof block) == (int)sizeof block)
        ;
    while (mf_fat_write(&f->fs, &file, block, 512) == 512)
        ;
    mf_fat_close(&f->fs, &file);
    assert_int_equal(mf_reclog_room(&f->log, 1, f->message), MF_ENOSPC);
    assert_non_null(strstr(f->message, "too full for the production records"));
    uint64_t seq = f->secure.state.record_seq;
    struct mf_reclog_entry e = {.project = "A", .slot = 1, .ok = true};
    int err = mf_reclog_append(&f->log, &e, f->message);
    assert_int_equal(err, MF_ENOSPC);
    assert_int_equal(f->secure.state.record_seq, seq); /* nothing recorded as written */
    struct mf_fat_stat st;
    assert_true(mf_fat_stat(&f->fs, "RECORDS.000", &st) == MF_ENOENT || st.size == 0);
}

/* ---- power cut at every write of appends ---- */

struct cut_ctx {
    struct fixture *f;
    uint8_t *secure_snapshot;
    struct mf_ramanchor anchor_snapshot;
    struct mf_fat fs;
    unsigned appended; /* records fully appended in the run (head recorded) */
};

static int cut_setup(void *context, const struct mf_bd *medium)
{
    (void)context;
    struct mf_fat_format_options o = {.volume_id = 9};
    return mf_fat_format(medium, &o);
}

static int cut_run(void *context, const struct mf_bd *bd)
{
    struct cut_ctx *c = context;
    struct fixture *f = c->f;
    memcpy(f->secure_mem, c->secure_snapshot, (size_t)SECURE_BLOCKS * 512);
    f->anchor = c->anchor_snapshot;
    mf_secure_close(&f->secure);
    struct mf_secure_config sc = {
        .bd = &f->secure_ram.bd, .anchor = &f->anchor.anchor, .random = entropy, .reservation = 1};
    int err = mf_secure_open(&f->secure, &sc, f->message);
    if (err)
        return err;
    err = mf_fat_mount(&c->fs, bd, NULL, NULL);
    if (err)
        return err;
    struct mf_reclog_config rc = config_of(f);
    rc.fs = &c->fs;
    rc.file_max = 1500; /* a roll-over inside the run */
    err = mf_reclog_open(&f->log, &rc, NULL, f->message);
    for (unsigned i = 0; i < 6 && !err; i++) {
        struct mf_reclog_entry e = {
            .project = "A", .slot = 1, .has_serial = true, .serial = i, .ok = true};
        err = mf_reclog_append(&f->log, &e, f->message);
    }
    int uerr = mf_fat_unmount(&c->fs);
    return err ? err : uerr;
}

static int cut_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct cut_ctx *c = context;
    struct fixture *f = c->f;
    (void)point;
    int err = mf_fat_mount(&c->fs, bd, NULL, NULL);
    if (err) {
        fprintf(stderr, "records sweep: the public area does not mount: %d\n", err);
        return err;
    }
    struct mf_reclog_config rc = config_of(f);
    rc.fs = &c->fs;
    rc.file_max = 1500;
    if (getenv("MF_RECLOG_DUMP")) {
        for (unsigned n = 0; n < 3; n++) {
            char name[16];
            snprintf(name, sizeof name, "RECORDS.%03u", n);
            struct mf_fat_file file;
            if (mf_fat_open(&c->fs, &file, name, MF_FAT_O_RDONLY) != 0)
                continue;
            static char text[8192];
            int got = mf_fat_read(&c->fs, &file, text, sizeof text - 1);
            mf_fat_close(&c->fs, &file);
            fprintf(stderr, "---- %s (%d bytes, head %llu):\n", name, got,
                    (unsigned long long)f->secure.state.record_seq);
            for (int i = 0; i < got; i++)
                fputc(text[i] >= 32 || text[i] == '\n' ? text[i] : '.', stderr);
        }
    }
    char notes[MF_RECLOG_MESSAGE_MAX];
    err = mf_reclog_open(&f->log, &rc, notes, f->message);
    struct mf_reclog_entry e = {.project = "A", .slot = 2, .ok = true};
    if (!err)
        err = mf_reclog_append(&f->log, &e, f->message);
    if (err) {
        fprintf(stderr, "records sweep: %s\n", f->message);
        mf_fat_unmount(&c->fs);
        return err;
    }
    /* Every record whose head was recorded is in the files, chained: the verifier says intact. */
    struct mf_fat saved = f->fs;
    f->fs = c->fs;
    struct mf_record_verifier v;
    verify_all(f, &v);
    f->fs = saved;
    /* Intact; or, when a cut left a file whose FAT entries lag its size (the FAT's own crash
     * semantics: fsck.fat repairs that), one torn line kept at that file's end. */
    bool intact = v.chain_breaks == 0 && v.bad_signatures == 0 && v.foreign == 0 && v.gaps == 0 &&
                  (v.malformed == 0 || (v.malformed == 1 && strstr(notes, "go on in")));
    if (!intact)
        fprintf(stderr,
                "records sweep: not intact after the cut: %llu records, %llu malformed, %llu "
                "breaks, %llu gaps (notes: %s)\n",
                (unsigned long long)v.records, (unsigned long long)v.malformed,
                (unsigned long long)v.chain_breaks, (unsigned long long)v.gaps, notes);
    if (v.verified != f->secure.state.record_seq) {
        fprintf(stderr, "records sweep: %llu records verified, the head says %llu (notes: %s)\n",
                (unsigned long long)v.verified, (unsigned long long)f->secure.state.record_seq,
                notes);
        intact = false;
    }
    mf_record_verifier_free(&v);
    mf_fat_unmount(&c->fs);
    return intact ? 0 : MF_ECORRUPT;
}

static void test_power_cut_during_appends(void **state)
{
    struct fixture *f = *state;
    struct cut_ctx c = {.f = f};
    c.secure_snapshot = malloc((size_t)SECURE_BLOCKS * 512);
    memcpy(c.secure_snapshot, f->secure_mem, (size_t)SECURE_BLOCKS * 512);
    c.anchor_snapshot = f->anchor;
    struct mf_sweep sweep = {.name = "records append",
                             .block_size = 512,
                             .block_count = 2048,
                             .context = &c,
                             .setup = cut_setup,
                             .run = cut_run,
                             .check = cut_check};
    struct mf_sweep_options o = {.modes = MF_FAULTBD_CUT_ATOMIC};
    struct mf_sweep_result r;
    int err = mf_sweep_run(&sweep, &o, &r);
    free(c.secure_snapshot);
    assert_int_equal(err, 0);
    assert_int_equal(r.failures, 0);
    assert_true(r.write_points > 10);
    printf("sweep records append: %llu write points, %llu cuts checked\n",
           (unsigned long long)r.write_points, (unsigned long long)r.cuts);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_verify, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_files_roll_over, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_torn_line_is_cut, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_deleted_newest_gives_a_gap, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_chain_goes_on_across_setups, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_chain_adopts_the_newest_record, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_edited_newest_gives_a_gap, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_head_catches_up, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_unrecorded_and_counter_ahead, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_full_public_area, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_appends, setup_fixture,
                                        teardown_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
