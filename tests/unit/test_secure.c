/* The secure area: installing a setup from a `_SECURE` folder, reading it back, counts and serial
 * numbers anchored in the trust anchor, a restored older storage image (rollback) at K = 1 and
 * K > 1, tampering of every kind, the cryptographic erase, the size check and the device's room
 * (a full host file system) before anything is erased, the leftover check, no plaintext on the
 * medium, and a power cut at every write of the move (storage and anchor). */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_rambd.h"
#include "mf_ramanchor.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_sweep.h"
#include "mf_testfat.h"
#include "mf_testutil.h"
#include "mf_worker_thread.h"

#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PUBLIC_BLOCKS 8192u /* 4 MiB */
#define SECURE_BLOCKS 4096u /* 2 MiB */

struct fixture {
    struct mf_testfat vol; /* the public area */
    uint8_t *secure_mem;
    struct mf_rambd secure_ram;
    struct mf_area_fat public_area;
    struct mf_ramanchor anchor;
    struct mf_secure secure;
    char message[MF_SECURE_MESSAGE_MAX];
};

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    randombytes_buf(buffer, length);
}

static void put(struct mf_fat *fs, const char *path, const void *data, size_t len)
{
    assert_int_equal(mf_testfat_put(fs, path, data, len), 0);
}

static void puts_(struct mf_fat *fs, const char *path, const char *text)
{
    assert_int_equal(mf_testfat_put_text(fs, path, text), 0);
}

/* A setup in _SECURE/ with a marker string in its firmware; `tag` varies the content. */
static void make_setup(struct fixture *f, const char *tag, const char *cntdown, size_t size)
{
    uint8_t *fw = malloc(size);
    for (size_t i = 0; i < size; i++)
        fw[i] = (uint8_t)(i * 7 + tag[0]);
    char marker[64];
    int n = snprintf(marker, sizeof marker, "SECRET-MARKER-%s", tag);
    memcpy(fw + size / 2, marker, (size_t)n);
    put(&f->vol.fs, "_SECURE/Projects/01_Widget/01_App/app.bin", fw, size);
    puts_(&f->vol.fs, "_SECURE/Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
          "[serial]\naddress = 0x0800F000\n");
    puts_(&f->vol.fs, "_SECURE/Projects/01_Widget/Cntdown.txt", cntdown);
    puts_(&f->vol.fs, "_SECURE/Projects/01_Widget/Serial.txt", "500\r\n");
    puts_(&f->vol.fs, "_SECURE/FLASHER.INI", "[CONFIG]\nProject = 01_Widget\n");
    free(fw);
}

static struct mf_secure_config config_of(struct fixture *f, const struct mf_bd *bd)
{
    return (struct mf_secure_config){
        .bd = bd, .anchor = &f->anchor.anchor, .random = entropy, .reservation = 1};
}

static int setup_fixture(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->secure_mem = calloc(SECURE_BLOCKS, 512);
    mf_rambd_init(&f->secure_ram, f->secure_mem, 512, SECURE_BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 1};
    assert_int_equal(mf_testfat_init(&f->vol, 512, PUBLIC_BLOCKS, &o), 0);
    mf_area_fat_init(&f->public_area, &f->vol.fs, NULL);
    mf_ramanchor_init(&f->anchor);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    struct fixture *f = *state;
    mf_secure_close(&f->secure);
    mf_testfat_free(&f->vol);
    free(f->secure_mem);
    free(f);
    return 0;
}

static void install(struct fixture *f)
{
    struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
    mf_secure_close(&f->secure);
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
    int err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                f->message);
    if (err)
        fail_msg("install: %d %s", err, f->message);
    assert_true(f->secure.present);
    /* The fingerprint taken in passing equals the one computed over the installed files. */
    static uint8_t buffer[16384];
    uint8_t computed[32];
    assert_int_equal(mf_setup_fingerprint(&f->secure.area, buffer, sizeof buffer, computed), 0);
    assert_memory_equal(computed, f->secure.fingerprint, 32);
}

static void reopen(struct fixture *f, int expect)
{
    mf_secure_close(&f->secure);
    struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
    int err = mf_secure_open(&f->secure, &c, f->message);
    if (err != expect)
        fail_msg("reopen gave %d (%s), expected %d", err, f->message, expect);
}

/* The file under _SECURE in the public area equals the one in the secure area. */
static void same_file(struct fixture *f, const char *path)
{
    char pub[512];
    snprintf(pub, sizeof pub, "_SECURE/%s", path);
    struct mf_area_entry a, b;
    assert_int_equal(f->public_area.area.stat(&f->public_area.area, pub, &a), 0);
    assert_int_equal(f->secure.area.stat(&f->secure.area, path, &b), 0);
    assert_int_equal(a.size, b.size);
    uint8_t *x = malloc(a.size + 1), *y = malloc(b.size + 1);
    assert_int_equal(f->public_area.area.read(&f->public_area.area, pub, 0, x, a.size), 0);
    assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, y, b.size), 0);
    assert_memory_equal(x, y, a.size);
    free(x);
    free(y);
}

static bool medium_contains(const uint8_t *mem, size_t size, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(mem + i, needle, n) == 0)
            return true;
    }
    return false;
}

static void test_install_and_read_back(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "A", "5\r\n", 50000);
    install(f);
    same_file(f, "Projects/01_Widget/01_App/app.bin");
    same_file(f, "Projects/01_Widget/01_App/job.ini");
    same_file(f, "FLASHER.INI");
    struct mf_area_entry e;
    assert_int_equal(f->secure.area.stat(&f->secure.area, "projects/01_WIDGET/01_app/APP.BIN", &e),
                     0);
    assert_int_equal(e.size, 50000);
    assert_int_equal(f->secure.area.stat(&f->secure.area, "Projects/01_Widget", &e), 0);
    assert_true(e.is_dir);
    assert_int_equal(f->secure.area.stat(&f->secure.area, "Projects/nope", &e), MF_ENOENT);
    uint8_t byte;
    assert_int_equal(f->secure.area.read(&f->secure.area, "FLASHER.INI", 1000, &byte, 1), MF_EIO);
    /* A setup loads from it as from the public area. */
    struct mf_setup setup;
    static uint8_t buffer[16384];
    char msg[MF_SETUP_ERROR_MAX];
    assert_int_equal(mf_setup_load(&setup, &f->secure.area, buffer, sizeof buffer, msg), 0);
    assert_int_equal(setup.project_count, 1);
    assert_int_equal(setup.projects[0].error, 0);
    assert_string_equal(setup.projects[0].name, "Widget");
    assert_memory_equal(setup.fingerprint, f->secure.fingerprint, 32);
    mf_setup_free(&setup);
    /* Opened again (a restart): the same. */
    reopen(f, 0);
    assert_true(f->secure.present);
    same_file(f, "Projects/01_Widget/01_App/app.bin");
    /* Nothing secret in plaintext on the secure partition. */
    assert_false(medium_contains(f->secure_mem, SECURE_BLOCKS * 512u, "SECRET-MARKER-A"));
    assert_false(medium_contains(f->secure_mem, SECURE_BLOCKS * 512u, "[job]"));
}

/* Takes one cycle of project 0 as the job engine does. */
static int take_one(struct fixture *f, struct mf_setup *setup, struct mf_tally *t)
{
    char msg[MF_AREA_MESSAGE_MAX];
    int err = f->secure.area.peek(&f->secure.area, setup, 0, t, msg);
    if (err)
        return err;
    if (t->project_limited && t->project_left == 0)
        return MF_EEXHAUSTED;
    enum mf_area_taken taken;
    return f->secure.area.take(&f->secure.area, setup, 0, t, &taken, msg);
}

static void load_setup(struct fixture *f, struct mf_setup *setup)
{
    static uint8_t buffer[16384];
    char msg[MF_SETUP_ERROR_MAX];
    assert_int_equal(mf_setup_load(setup, &f->secure.area, buffer, sizeof buffer, msg), 0);
}

static void test_counts_and_serials(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "B", "3\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_tally t;
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(take_one(f, &setup, &t), 0);
        assert_int_equal(t.project_left, 3 - i);
        assert_true(t.has_serial);
        assert_int_equal(t.serial, 500 + i);
    }
    assert_int_equal(take_one(f, &setup, &t), MF_EEXHAUSTED);
    assert_int_equal(f->anchor.counter, 3); /* K = 1: one anchor increment per device */
    reopen(f, 0);
    char msg[MF_AREA_MESSAGE_MAX];
    assert_int_equal(f->secure.area.peek(&f->secure.area, &setup, 0, &t, msg), 0);
    assert_int_equal(t.project_left, 0);
    assert_int_equal(t.serial, 503);
    mf_setup_free(&setup);
}

/* Restoring an older copy of the storage gives no device beyond the limit and hands out no
 * serial number twice: until a run takes a reservation of its own, the rest of the one in
 * progress is charged (a copy's devices may sit there). */
static void rollback(struct fixture *f, uint32_t reservation)
{
    make_setup(f, "C", "10\r\n", 1000);
    puts_(&f->vol.fs, "_SECURE/FLASHER.INI", "[CONFIG]\r\nReservation = 4\r\n");
    if (reservation == 1)
        puts_(&f->vol.fs, "_SECURE/FLASHER.INI", "[CONFIG]\r\n");
    install(f);
    assert_int_equal(f->secure.reservation, reservation);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0);
    uint8_t *snapshot = malloc(SECURE_BLOCKS * 512u);
    memcpy(snapshot, f->secure_mem, SECURE_BLOCKS * 512u);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(take_one(f, &setup, &t), 0);
    unsigned made = 3;
    uint64_t last_serial = t.serial;
    /* The factory restores the older image. */
    memcpy(f->secure_mem, snapshot, SECURE_BLOCKS * 512u);
    reopen(f, 0);
    unsigned after = 0;
    while (take_one(f, &setup, &t) == 0) {
        if (after == 0 && t.serial <= last_serial)
            fail_msg("K=%u: serial %llu handed out again", reservation,
                     (unsigned long long)t.serial);
        after++;
    }
    if (made + after > 10)
        fail_msg("K=%u: %u devices beyond the 10 allowed after a rollback", reservation,
                 made + after - 10);
    /* What the rollback costs: at K = 1 nothing, beyond it at most the rest of the reservation
     * the copy was made in. */
    if (made + after < 10 - (reservation - 1))
        fail_msg("K=%u: %u counts lost to a rollback", reservation, 10 - made - after);
    free(snapshot);
    mf_setup_free(&setup);
}

/* A setup with a count of 10 installed at reservation `k`, and loaded. */
static void install_counted(struct fixture *f, const char *tag, unsigned k, struct mf_setup *setup)
{
    make_setup(f, tag, "10\r\n", 1000);
    char ini[64];
    snprintf(ini, sizeof ini, "[CONFIG]\nReservation = %u\n", k);
    puts_(&f->vol.fs, "_SECURE/FLASHER.INI", ini);
    install(f);
    load_setup(f, setup);
}

/* K = 4: the factory restores the same older copy of the storage again and again, using the
 * rest of one reservation each time. Every run takes a reservation of its own, so the devices
 * beyond the limit stay below K in all, however often it restores (before: K - 1 more each time).
 */
static void test_repeated_restores_k4(void **state)
{
    struct fixture *f = *state;
    struct mf_setup setup;
    install_counted(f, "RR", 4, &setup);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0);
    unsigned made = 1;
    uint8_t *snapshot = malloc(SECURE_BLOCKS * 512u);
    memcpy(snapshot, f->secure_mem, SECURE_BLOCKS * 512u);
    for (unsigned round = 0; round < 20; round++) {
        reopen(f, 0);
        for (unsigned i = 0; i < 2 && take_one(f, &setup, &t) == 0; i++)
            made++;
        memcpy(f->secure_mem, snapshot, SECURE_BLOCKS * 512u);
    }
    reopen(f, 0);
    while (take_one(f, &setup, &t) == 0)
        made++;
    if (made > 10 + 3)
        fail_msg("%u devices from a count of 10 at K = 4", made);
    free(snapshot);
    mf_setup_free(&setup);
}

/* A clean end of the run (a stop, a restart): whether it took a counter step. */
static bool end_run(struct fixture *f)
{
    bool stepped;
    assert_int_equal(mf_secure_end_run(&f->secure, &stepped, f->message), 0);
    return stepped;
}

/* K = 4: in every run the factory copies the storage after the run's first cycle (which took a
 * reservation), makes the reservation's other K - 1 devices, and puts the copy back: in the copy
 * the anchor's counter is where it was, the rest of the reservation unused. Ended without a clean
 * stop (a power cut) or with one, each round must be charged what it made: never more than
 * K - 1 devices beyond the count of 10 in all (before: K devices per round for one count). */
static void rolling_copies(struct fixture *f, bool clean)
{
    struct mf_setup setup;
    install_counted(f, clean ? "RC" : "RU", 4, &setup);
    uint8_t *copy = malloc(SECURE_BLOCKS * 512u);
    struct mf_tally t;
    unsigned made = 0;
    for (unsigned round = 0; round < 20; round++) {
        reopen(f, 0);
        if (take_one(f, &setup, &t) != 0)
            break;
        made++;
        memcpy(copy, f->secure_mem, SECURE_BLOCKS * 512u);
        for (unsigned i = 0; i < 3 && take_one(f, &setup, &t) == 0; i++)
            made++;
        if (clean)
            end_run(f);
        memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    }
    reopen(f, 0);
    while (take_one(f, &setup, &t) == 0)
        made++;
    if (made > 10 + 3)
        fail_msg("%u devices from a count of 10 at K = 4 (%s ends)", made,
                 clean ? "clean" : "unclean");
    free(copy);
    mf_setup_free(&setup);
}

static void test_rolling_copies_unclean_k4(void **state)
{
    rolling_copies(*state, false);
}

static void test_rolling_copies_clean_k4(void **state)
{
    rolling_copies(*state, true);
}

/* What a run ended cleanly leaves is no device: ten runs with one device each, each stopped with
 * mf_secure_end_run, use the count of 10 exactly, with consecutive serial numbers. Each run takes
 * a reservation, and its end one more counter step, after which its rest and that step's
 * reservation are forfeited. Without the clean end the rest is charged (a power cut). */
static void test_restarts_forfeit_no_device(void **state)
{
    struct fixture *f = *state;
    struct mf_setup setup;
    install_counted(f, "RS", 4, &setup);
    uint64_t counter = f->anchor.counter;
    struct mf_tally t;
    for (unsigned i = 0; i < 10; i++) {
        end_run(f);
        reopen(f, 0);
        assert_int_equal(take_one(f, &setup, &t), 0);
        assert_int_equal(t.project_left, 10 - i);
        assert_int_equal(t.serial, 500 + i);
        assert_int_equal(f->anchor.counter, counter + 2 * i + 1);
    }
    end_run(f);
    reopen(f, 0);
    assert_int_equal(take_one(f, &setup, &t), MF_EEXHAUSTED);
    assert_int_equal(f->secure.state.total_used, 10);
    assert_int_equal(f->secure.state.forfeited, 10 * (3 + 4));
    /* Ended used up to its last cycle: no step. */
    mf_setup_free(&setup);
    install_counted(f, "RT", 2, &setup);
    counter = f->anchor.counter;
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_false(end_run(f));
    assert_int_equal(f->anchor.counter, counter + 1);
    reopen(f, 0);
    char msg[MF_AREA_MESSAGE_MAX];
    assert_int_equal(f->secure.area.peek(&f->secure.area, &setup, 0, &t, msg), 0);
    assert_int_equal(t.project_left, 8);
    /* A power cut instead (no end): the rest of the reservation is charged, never used. */
    assert_int_equal(take_one(f, &setup, &t), 0);
    reopen(f, 0);
    assert_int_equal(f->secure.area.peek(&f->secure.area, &setup, 0, &t, msg), 0);
    assert_int_equal(t.project_left, 6);
    assert_int_equal(t.serial, 504);
    mf_setup_free(&setup);
}

static void test_rollback_k1(void **state)
{
    rollback(*state, 1);
}

static void test_rollback_k4(void **state)
{
    rollback(*state, 4);
}

/* ---- the anchor's note: the state kept with the counter ---- */

/* The project called `folder` in `setup`. */
static unsigned project_named(const struct mf_setup *setup, const char *folder)
{
    for (unsigned i = 0; i < setup->project_count; i++) {
        if (strstr(setup->projects[i].folder, folder))
            return i;
    }
    fail_msg("no project %s", folder);
    return 0;
}

static int take_on(struct fixture *f, struct mf_setup *setup, unsigned project, struct mf_tally *t)
{
    char msg[MF_AREA_MESSAGE_MAX];
    enum mf_area_taken taken;
    int err = f->secure.area.peek(&f->secure.area, setup, project, t, msg);
    if (!err)
        err = f->secure.area.take(&f->secure.area, setup, project, t, &taken, msg);
    return err;
}

static void expect_left(struct fixture *f, struct mf_setup *setup, unsigned project, uint64_t left,
                        uint64_t serial)
{
    char msg[MF_AREA_MESSAGE_MAX];
    struct mf_tally t;
    assert_int_equal(f->secure.area.peek(&f->secure.area, setup, project, &t, msg), 0);
    if (t.project_left != left || t.serial != serial)
        fail_msg("project %u: %llu left, serial %llu; expected %llu and %llu", project,
                 (unsigned long long)t.project_left, (unsigned long long)t.serial,
                 (unsigned long long)left, (unsigned long long)serial);
}

/* Opens the installed setup over a fault-injecting device on the secure partition. */
static void open_faulty(struct fixture *f, struct mf_faultbd *fb)
{
    static uint8_t cache[128 * 512];
    struct mf_faultbd_config fc = {.cache = cache, .cache_size = sizeof cache};
    mf_faultbd_init(fb, &f->secure_ram.bd, &fc);
    mf_secure_close(&f->secure);
    struct mf_secure_config c = config_of(f, &fb->bd);
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
}

/* A restart over the same device: unsynced writes are lost. */
static void restart_faulty(struct fixture *f, struct mf_faultbd *fb)
{
    mf_secure_close(&f->secure);
    mf_faultbd_cut_now(fb, MF_FAULTBD_CUT_DROP);
    mf_faultbd_reset(fb);
    struct mf_secure_config c = config_of(f, &fb->bd);
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
}

/* At K = 1 with an anchor that keeps a note, a cycle's authorization is one anchor write and
 * no sync of the medium, and a power cut that drops every unsynced write of the medium loses
 * nothing. Without notes (the TPM) it is one anchor write and one sync. */
static void one_write_per_cycle(struct fixture *f, bool notes)
{
    if (!notes)
        mf_ramanchor_no_notes(&f->anchor);
    make_setup(f, "N", "10\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_faultbd fb;
    open_faulty(f, &fb);
    uint64_t writes = f->anchor.writes;
    struct mf_tally t;
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(f->anchor.writes - writes, 3);
    assert_int_equal(fb.counters.syncs, notes ? 0 : 3);
    assert_int_equal(fb.counters.forced_flushes, 0);
    restart_faulty(f, &fb);
    expect_left(f, &setup, 0, 7, 503);
    mf_secure_close(&f->secure);
    mf_setup_free(&setup);
}

static void test_one_anchor_write_per_cycle(void **state)
{
    one_write_per_cycle(*state, true);
}

static void test_one_anchor_write_and_one_sync_without_notes(void **state)
{
    one_write_per_cycle(*state, false);
}

/* A restored older image at K = 1: with the note, every project's count and serial number is
 * exactly what was used; without it, the cycles the counter proves are charged to every project
 * (docs/security.md). Then both state records on the medium destroyed: the note alone opens it;
 * without a note that is refused. */
static void rollback_two_projects(struct fixture *f, bool notes)
{
    if (!notes)
        mf_ramanchor_no_notes(&f->anchor);
    make_setup(f, "R", "10\r\n", 1000);
    puts_(&f->vol.fs, "_SECURE/Projects/02_Gadget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = ../../01_Widget/01_App/app.bin\n"
          "address = 0x08000000\n[serial]\naddress = 0x0800F000\n");
    puts_(&f->vol.fs, "_SECURE/Projects/02_Gadget/Cntdown.txt", "5\r\n");
    puts_(&f->vol.fs, "_SECURE/Projects/02_Gadget/Serial.txt", "900\r\n");
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    unsigned widget = project_named(&setup, "01_Widget"),
             gadget = project_named(&setup, "02_Gadget");
    struct mf_tally t;
    assert_int_equal(take_on(f, &setup, widget, &t), 0);
    uint8_t *snapshot = malloc(SECURE_BLOCKS * 512u);
    memcpy(snapshot, f->secure_mem, SECURE_BLOCKS * 512u);
    assert_int_equal(take_on(f, &setup, widget, &t), 0);
    assert_int_equal(take_on(f, &setup, gadget, &t), 0);
    assert_int_equal(take_on(f, &setup, widget, &t), 0);
    memcpy(f->secure_mem, snapshot, SECURE_BLOCKS * 512u);
    reopen(f, 0);
    if (notes) {
        expect_left(f, &setup, widget, 7, 503);
        expect_left(f, &setup, gadget, 4, 901);
    } else {
        /* 4 cycles proven, 1 recorded: 3 charged to each project. */
        expect_left(f, &setup, widget, 6, 504);
        expect_left(f, &setup, gadget, 2, 903);
    }
    assert_int_equal(take_on(f, &setup, gadget, &t), 0);
    /* Both state records on the medium destroyed (state records: after the two headers). */
    memset(f->secure_mem + 2 * 512, 0x5a, 2 * 4096);
    if (notes) {
        reopen(f, 0);
        expect_left(f, &setup, widget, 7, 503);
        expect_left(f, &setup, gadget, 3, 902);
    } else {
        reopen(f, MF_EAUTH);
        assert_non_null(strstr(f->message, "no state record"));
    }
    free(snapshot);
    mf_setup_free(&setup);
}

static void test_rollback_with_a_note_is_exact(void **state)
{
    rollback_two_projects(*state, true);
}

static void test_rollback_without_a_note_charges_every_project(void **state)
{
    rollback_two_projects(*state, false);
}

/* ---- a count's write that fails ---- */

static enum mf_area_taken take_failing(struct fixture *f, struct mf_setup *setup, int expect)
{
    char msg[MF_AREA_MESSAGE_MAX];
    struct mf_tally t;
    enum mf_area_taken taken = MF_AREA_TAKEN_UNKNOWN;
    assert_int_equal(f->secure.area.peek(&f->secure.area, setup, 0, &t, msg), 0);
    int err = f->secure.area.take(&f->secure.area, setup, 0, &t, &taken, msg);
    if (err != expect)
        fail_msg("take gave %d (%s), expected %d", err, msg, expect);
    return taken;
}

/* The anchor's write of a count fails. `mode`: it refused (nothing changed, and it says so),
 * it was lost, or it landed (both unknown to the anchor). The take says which of "not taken",
 * "unknown" it is; this run goes on as if not taken unless the anchor's counter shows it (a
 * landed write), and a restart finds exactly what became durable. `notes` false: an anchor
 * without notes (the TPM). */
static void anchor_write_fails(struct fixture *f, enum mf_ramanchor_fail mode, bool notes)
{
    if (!notes)
        mf_ramanchor_no_notes(&f->anchor);
    make_setup(f, "W", "10\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_faultbd fb;
    open_faulty(f, &fb);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0); /* 500 */
    f->anchor.fail_at = f->anchor.writes + 1;
    f->anchor.fail_mode = mode;
    enum mf_area_taken taken = take_failing(f, &setup, MF_EIO);
    f->anchor.fail_at = 0;
    assert_int_equal(taken,
                     mode == MF_RAMANCHOR_REFUSED ? MF_AREA_TAKEN_NONE : MF_AREA_TAKEN_UNKNOWN);
    bool landed = mode == MF_RAMANCHOR_LANDED;
    /* In this run: a counter that shows the landed write charges it (serial 501 skipped). */
    expect_left(f, &setup, 0, landed ? 8 : 9, landed ? 502 : 501);
    /* After a restart: the same (with a note the state is the landed one; without, the counter
     * proves it). */
    restart_faulty(f, &fb);
    expect_left(f, &setup, 0, landed ? 8 : 9, landed ? 502 : 501);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(t.serial, landed ? 502 : 501);
    restart_faulty(f, &fb);
    expect_left(f, &setup, 0, landed ? 7 : 8, landed ? 503 : 502);
    mf_secure_close(&f->secure);
    mf_setup_free(&setup);
}

static void test_anchor_refuses_a_count(void **state)
{
    anchor_write_fails(*state, MF_RAMANCHOR_REFUSED, true);
}

static void test_anchor_loses_a_count(void **state)
{
    anchor_write_fails(*state, MF_RAMANCHOR_LOST, true);
}

static void test_anchor_count_lands_unknown(void **state)
{
    anchor_write_fails(*state, MF_RAMANCHOR_LANDED, true);
}

static void test_anchor_without_notes_refuses_a_count(void **state)
{
    anchor_write_fails(*state, MF_RAMANCHOR_REFUSED, false);
}

static void test_anchor_without_notes_count_lands_unknown(void **state)
{
    anchor_write_fails(*state, MF_RAMANCHOR_LANDED, false);
}

/* K = 1: an anchor write that failed but landed (the count perhaps taken), then a clean end of
 * the run. What the counter proves beyond the state is no rest of a reservation: the end takes
 * no counter step (at K = 1 it never does), and the next start charges the landed count as a
 * start after a power cut would, which its production records account for ("counter-ahead").
 * Before: one more anchor write, both counts forfeited, the landed one left without a record.
 * `notes` false: an anchor without notes (the TPM at Reservation = 1). */
static void landed_count_then_a_clean_end(struct fixture *f, bool notes)
{
    if (!notes)
        mf_ramanchor_no_notes(&f->anchor);
    make_setup(f, "E", "10\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0); /* 500 */
    f->anchor.fail_at = f->anchor.writes + 1;
    f->anchor.fail_mode = MF_RAMANCHOR_LANDED;
    assert_int_equal(take_failing(f, &setup, MF_EIO), MF_AREA_TAKEN_UNKNOWN);
    f->anchor.fail_at = 0;
    uint64_t counter = f->anchor.counter, writes = f->anchor.writes;
    assert_false(end_run(f));
    assert_int_equal(f->anchor.counter, counter);
    assert_int_equal(f->anchor.writes, writes);
    reopen(f, 0);
    expect_left(f, &setup, 0, 8, 502);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(t.serial, 502);
    assert_int_equal(f->secure.state.forfeited, 0);
    mf_setup_free(&setup);
}

static void test_landed_count_then_a_clean_end(void **state)
{
    landed_count_then_a_clean_end(*state, true);
}

static void test_landed_count_then_a_clean_end_without_notes(void **state)
{
    landed_count_then_a_clean_end(*state, false);
}

/* The anchor took the count, the medium's copy of the state failed: the cycle is taken (the note,
 * or the counter, proves it), the state in memory says so, and it is charged once, in this run
 * and after a restart. */
static void medium_write_fails_after_the_counter(struct fixture *f, bool notes)
{
    if (!notes)
        mf_ramanchor_no_notes(&f->anchor);
    make_setup(f, "M", "10\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_faultbd fb;
    open_faulty(f, &fb);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0); /* 500 */
    uint64_t used = f->secure.state.total_used;
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_PROG, 1, false);
    assert_int_equal(take_failing(f, &setup, MF_EIO), MF_AREA_TAKEN);
    assert_int_equal(f->secure.state.total_used, used + 1);
    expect_left(f, &setup, 0, 8, 502);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(t.serial, 502);
    assert_int_equal(f->secure.state.total_used, used + 2);
    restart_faulty(f, &fb);
    expect_left(f, &setup, 0, 7, 503);
    mf_secure_close(&f->secure);
    mf_setup_free(&setup);
}

static void test_medium_fails_after_the_note(void **state)
{
    medium_write_fails_after_the_counter(*state, true);
}

static void test_medium_fails_after_the_counter(void **state)
{
    medium_write_fails_after_the_counter(*state, false);
}

/* Inside a reservation (K = 4) only the medium's state record counts a cycle: a failed write of
 * it is "unknown" (a failed sync may have landed), the run goes on as if not taken, and a
 * restart finds what became durable. */
static void test_medium_fails_inside_a_reservation(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "K", "10\r\n", 1000);
    puts_(&f->vol.fs, "_SECURE/FLASHER.INI", "[CONFIG]\r\nReservation = 4\r\n");
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_faultbd fb;
    open_faulty(f, &fb);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0); /* takes the reservation */
    uint64_t counter = f->anchor.counter;
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_SYNC, 1, false);
    assert_int_equal(take_failing(f, &setup, MF_EIO), MF_AREA_TAKEN_UNKNOWN);
    assert_int_equal(f->anchor.counter, counter);
    expect_left(f, &setup, 0, 9, 501);
    restart_faulty(f, &fb); /* the unsynced record is lost, and the run ended uncleanly: */
    expect_left(f, &setup, 0, 6, 504); /* the reservation's rest is charged */
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_PROG, 1, false);
    assert_int_equal(take_failing(f, &setup, MF_EIO), MF_AREA_TAKEN);
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_SYNC, 1, false);
    assert_int_equal(take_failing(f, &setup, MF_EIO), MF_AREA_TAKEN_UNKNOWN);
    mf_secure_close(&f->secure);
    mf_setup_free(&setup);
}

static void test_tampering_is_refused(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "D", "5", 40000);
    f->anchor.counter = 5; /* installed at counter 5 */
    install(f);
    uint8_t *copy = malloc(SECURE_BLOCKS * 512u);
    memcpy(copy, f->secure_mem, SECURE_BLOCKS * 512u);
    uint8_t buf[64];
    /* Chunks in path order: FLASHER.INI is chunk 0, app.bin chunks 1 to 3. A flipped byte in a
     * chunk: reading it fails, nothing else does. */
    f->secure_mem[9216 + 16896 + 100] ^= 0x40;
    assert_int_equal(f->secure.area.read(&f->secure.area, "Projects/01_Widget/01_App/app.bin", 0,
                                         buf, sizeof buf),
                     MF_EAUTH);
    assert_int_equal(f->secure.area.read(&f->secure.area, "FLASHER.INI", 0, buf, 10), 0);
    memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    /* Two chunks swapped: each now claims another place. */
    memcpy(f->secure_mem + 9216 + 16896, copy + 9216 + 2 * 16896, 16896);
    memcpy(f->secure_mem + 9216 + 2 * 16896, copy + 9216 + 16896, 16896);
    assert_int_equal(f->secure.area.read(&f->secure.area, "Projects/01_Widget/01_App/app.bin",
                                         20000, buf, sizeof buf),
                     MF_EAUTH);
    memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    /* The header. A refusal leaves the trust anchor as it was (key, digest, counter). */
    struct mf_anchor_state anchor_before = f->anchor.state;
    uint64_t counter_before = f->anchor.counter;
    f->secure_mem[20] ^= 1;
    reopen(f, MF_EAUTH);
    assert_memory_equal(&anchor_before, &f->anchor.state, sizeof anchor_before);
    assert_int_equal(counter_before, f->anchor.counter);
    memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    /* Both state records. */
    f->secure_mem[1024 + 100] ^= 1;
    f->secure_mem[5120 + 100] ^= 1;
    reopen(f, MF_EAUTH);
    assert_memory_equal(&anchor_before, &f->anchor.state, sizeof anchor_before);
    assert_int_equal(counter_before, f->anchor.counter);
    memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    reopen(f, 0);
    assert_true(f->secure.present);
    /* Another trust anchor (another programmer, or a counter defined again). */
    struct mf_ramanchor other = f->anchor;
    randombytes_buf(f->anchor.id, sizeof f->anchor.id);
    reopen(f, MF_EAUTH);
    f->anchor = other;
    f->anchor.anchor.context = &f->anchor;
    reopen(f, 0);
    /* A counter below the installed one (an anchor that was reset). */
    f->anchor.counter = 3;
    reopen(f, MF_EAUTH);
    assert_non_null(strstr(f->message, "counter"));
    free(copy);
}

/* A secure area written by a newer format is refused as such (not as damaged), before its MAC,
 * and the trust anchor is left as it was. */
static void test_newer_format_is_refused(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "V", "5", 3000);
    install(f);
    struct mf_anchor_state before = f->anchor.state;
    uint64_t counter = f->anchor.counter;
    unsigned changed = 0;
    for (unsigned slot = 0; slot < 2; slot++) {
        uint8_t *h = f->secure_mem + (size_t)slot * 512u; /* the two header blocks */
        if (memcmp(h, "MFSECURE", 8) == 0) {
            h[8] = (uint8_t)(MF_SECURE_VERSION + 1);
            h[9] = 0;
            changed++;
        }
    }
    assert_true(changed >= 1);
    reopen(f, MF_EVERSION);
    assert_non_null(strstr(f->message, "newer than this programmer reads"));
    assert_memory_equal(&before, &f->anchor.state, sizeof before);
    assert_int_equal(counter, f->anchor.counter);
}

/* The worker thread, counting the jobs it takes. */
static struct {
    struct mf_worker_thread thread;
    unsigned jobs;
} counted;

static bool counted_try_start(void *context, void (*fn)(void *arg), void *arg)
{
    (void)context;
    bool taken = counted.thread.worker.try_start(counted.thread.worker.context, fn, arg);
    counted.jobs += taken;
    return taken;
}

static void counted_wait(void *context)
{
    (void)context;
    counted.thread.worker.wait(counted.thread.worker.context);
}

#define WORKER_FILE "Projects/01_Widget/01_App/app.bin"

/* Installs a setup whose WORKER_FILE has 60000 bytes (four chunks) and returns them (to free). */
static uint8_t *worker_setup(struct fixture *f)
{
    make_setup(f, "W", "5", 60000);
    install(f);
    uint8_t *plain = malloc(60000);
    assert_int_equal(f->secure.area.read(&f->secure.area, WORKER_FILE, 0, plain, 60000), 0);
    return plain;
}

/* With a worker thread, long reads are decrypted by the reader and the worker at once: the same
 * bytes at every offset and length, and a tampered chunk in either half still fails, also when the
 * worker is busy with another reader's job. */
static void test_reads_with_a_worker(void **state)
{
    struct fixture *f = *state;
    static const char path[] = WORKER_FILE;
    uint8_t *got = malloc(60000), *plain = worker_setup(f);
    assert_int_equal(mf_worker_thread_start(&counted.thread), 0);
    counted.jobs = 0;
    struct mf_worker_thread *tp = &counted.thread;
    const struct mf_worker w = {NULL, counted_try_start, counted_wait, NULL};
    mf_secure_close(&f->secure);
    struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
    c.worker = &w;
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
    static const struct {
        uint32_t offset, length;
    } reads[] = {{0, 60000}, {0, 49152}, {16384, 32768}, {100, 50000}, {16384, 43616}, {0, 1}};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        memset(got, 0xEE, 60000);
        assert_int_equal(
            f->secure.area.read(&f->secure.area, path, reads[i].offset, got, reads[i].length), 0);
        assert_memory_equal(got, plain + reads[i].offset, reads[i].length);
    }
    assert_int_equal(counted.jobs, 5); /* the reads with two whole chunks or more */
    /* The worker busy with someone else's job: this reader does it all. */
    assert_true(tp->worker.try_start(tp->worker.context, (void (*)(void *))free, NULL));
    unsigned before = counted.jobs;
    assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, got, 60000), 0);
    assert_memory_equal(got, plain, 60000);
    assert_int_equal(counted.jobs, before);
    tp->worker.wait(tp->worker.context);
    /* A flipped byte in the first chunk (the worker's half) and in the third (the reader's). */
    uint8_t *copy = malloc(SECURE_BLOCKS * 512u);
    memcpy(copy, f->secure_mem, SECURE_BLOCKS * 512u);
    for (unsigned chunk = 0; chunk < 3; chunk += 2) {
        /* Chunks in path order: FLASHER.INI is chunk 0, app.bin from chunk 1 on (16896 bytes
         * stored each, from byte 9216). */
        f->secure_mem[9216 + (1 + chunk) * 16896 + 200] ^= 0x01;
        assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, got, 60000), MF_EAUTH);
        memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    }
    assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, got, 60000), 0);
    mf_secure_close(&f->secure);
    mf_worker_thread_stop(tp);
    free(copy);
    free(plain);
    free(got);
}

/* A worker of this test's own, driven by `mode`: LATE takes a job but runs it only when waited
 * for (its thread never got a core in time); EAGER runs it at once, before the reader goes on. */
static struct {
    enum { LATE, EAGER } mode;
    void (*fn)(void *);
    void *arg;
    unsigned runs, withdrawn;
} fake;

static bool fake_try_start(void *context, void (*fn)(void *arg), void *arg)
{
    (void)context;
    if (fake.mode == EAGER) {
        fn(arg);
        fake.runs++;
        return true;
    }
    fake.fn = fn;
    fake.arg = arg;
    return true;
}

static void fake_wait(void *context)
{
    (void)context;
    if (fake.fn) {
        fake.fn(fake.arg);
        fake.runs++;
    }
    fake.fn = NULL;
}

static bool fake_withdraw(void *context)
{
    (void)context;
    if (!fake.fn)
        return false;
    fake.fn = NULL;
    fake.withdrawn++;
    return true;
}

/* Reads share their chunks with the worker by taking the next one in turn: a worker that begins
 * late finds the reader did them all (and one not begun is withdrawn: never run), one that runs
 * first does them all; the bytes are the same, and a tampered chunk fails whoever takes it. */
static void test_reads_with_a_late_or_eager_worker(void **state)
{
    struct fixture *f = *state;
    static const char path[] = WORKER_FILE;
    uint8_t *got = malloc(60000), *plain = worker_setup(f);
    uint8_t *copy = malloc(SECURE_BLOCKS * 512u);
    memcpy(copy, f->secure_mem, SECURE_BLOCKS * 512u);
    for (unsigned round = 0; round < 3; round++) {
        memset(&fake, 0, sizeof fake);
        fake.mode = round == 2 ? EAGER : LATE;
        const struct mf_worker w = {NULL, fake_try_start, fake_wait,
                                    round == 0 ? fake_withdraw : NULL};
        mf_secure_close(&f->secure);
        struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
        c.worker = &w;
        assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
        memset(got, 0xEE, 60000);
        assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, got, 60000), 0);
        assert_memory_equal(got, plain, 60000);
        /* withdrawn: never run; late without withdraw: run once, with nothing left to do */
        assert_int_equal(fake.withdrawn, round == 0 ? 1 : 0);
        assert_int_equal(fake.runs, round == 0 ? 0 : 1);
        f->secure_mem[9216 + 2 * 16896 + 200] ^= 0x01; /* app.bin's second chunk */
        assert_int_equal(f->secure.area.read(&f->secure.area, path, 0, got, 60000), MF_EAUTH);
        memcpy(f->secure_mem, copy, SECURE_BLOCKS * 512u);
    }
    reopen(f, 0); /* without the worker of this scope */
    free(copy);
    free(plain);
    free(got);
}

/* The install seals and writes every other batch of chunks on the worker while it reads and
 * hashes the next: the setup reads back byte for byte after a reopen, its fingerprint is the one
 * computed over its files, also when the worker is busy with another job all along. */
static void test_install_with_a_worker(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "I", "5", 600000); /* 37 chunks: three batches */
    uint8_t *extra = malloc(70000);
    randombytes_buf(extra, 70000);
    put(&f->vol.fs, "_SECURE/Projects/01_Widget/extra.bin", extra, 70000);
    assert_int_equal(mf_worker_thread_start(&counted.thread), 0);
    struct mf_worker_thread *tp = &counted.thread;
    const struct mf_worker w = {NULL, counted_try_start, counted_wait, NULL};
    for (unsigned busy = 0; busy < 2; busy++) {
        counted.jobs = 0;
        if (busy)
            assert_true(tp->worker.try_start(tp->worker.context, (void (*)(void *))free, NULL));
        mf_secure_close(&f->secure);
        struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
        c.worker = &w;
        assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
        int err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                    f->message);
        if (err)
            fail_msg("install: %d %s", err, f->message);
        if (busy) {
            assert_int_equal(counted.jobs, 0);
            tp->worker.wait(tp->worker.context);
        } else {
            assert_true(counted.jobs >= 2); /* every full batch but the last */
        }
        reopen(f, 0);
        assert_true(f->secure.present);
        same_file(f, "Projects/01_Widget/01_App/app.bin");
        same_file(f, "Projects/01_Widget/extra.bin");
        same_file(f, "FLASHER.INI");
        static uint8_t buffer[16384];
        uint8_t computed[32];
        assert_int_equal(mf_setup_fingerprint(&f->secure.area, buffer, sizeof buffer, computed), 0);
        assert_memory_equal(computed, f->secure.fingerprint, 32);
    }
    mf_worker_thread_stop(tp);
    free(extra);
}

/* Right after its install the load takes a raw binary's ranges from its size, without reading it
 * back: a chunk damaged since (here on purpose) goes unnoticed by that load, but a cycle's read
 * refuses it, and the load of the next open reads every chunk and reports it. */
static void test_load_after_install_reads_no_raw_binary(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "J", "5", 60000);
    install(f);
    /* app.bin's third chunk (FLASHER.INI is chunk 0, app.bin from chunk 1 on). */
    f->secure_mem[9216 + 3 * 16896 + 200] ^= 0x01;
    struct mf_setup setup;
    load_setup(f, &setup);
    assert_int_equal(setup.project_count, 1);
    assert_int_equal(setup.projects[0].error, 0);
    uint8_t *got = malloc(60000);
    assert_int_equal(
        f->secure.area.read(&f->secure.area, "Projects/01_Widget/01_App/app.bin", 0, got, 60000),
        MF_EAUTH);
    mf_setup_free(&setup);
    reopen(f, 0);
    load_setup(f, &setup);
    assert_int_equal(setup.projects[0].error, MF_EAUTH);
    assert_non_null(strstr(setup.projects[0].message, "app.bin"));
    mf_setup_free(&setup);
    free(got);
}

static void test_reinstall_erases_the_old_setup(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "E", "5", 100000);
    install(f);
    uint8_t old_key[32];
    memcpy(old_key, f->anchor.state.key, 32);
    size_t medium = SECURE_BLOCKS * 512u;
    uint8_t *before = malloc(medium);
    memcpy(before, f->secure_mem, medium);
    assert_int_equal(mf_fat_remove(&f->vol.fs, "_SECURE/Projects/01_Widget/01_App/app.bin"), 0);
    make_setup(f, "F", "7", 2000);
    install(f);
    assert_memory_not_equal(old_key, f->anchor.state.key, 32);
    /* Not only the key: no block of the old setup's ciphertext is left where the smaller new one
     * did not write (each block now differs or is erased). */
    static const uint8_t erased[512];
    for (size_t at = 0; at < medium; at += 512) {
        if (memcmp(f->secure_mem + at, before + at, 512) == 0 &&
            memcmp(f->secure_mem + at, erased, 512) != 0)
            fail_msg("block %zu of the old setup is still there", at / 512);
    }
    free(before);
    same_file(f, "Projects/01_Widget/01_App/app.bin");
    assert_false(medium_contains(f->secure_mem, SECURE_BLOCKS * 512u, "SECRET-MARKER-E"));
    assert_false(medium_contains(f->secure_mem, SECURE_BLOCKS * 512u, "SECRET-MARKER-F"));
    /* Erased: the anchor forgets; nothing is present afterwards. */
    assert_int_equal(mf_secure_erase(&f->anchor.anchor, f->message), 0);
    reopen(f, 0);
    assert_false(f->secure.present);
}

static void test_too_big_is_refused_before_erasing(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "G", "5", 10000);
    install(f);
    uint64_t counter = f->anchor.counter;
    uint8_t key[32];
    memcpy(key, f->anchor.state.key, 32);
    put(&f->vol.fs, "_SECURE/big.bin", f->vol.memory, 3u << 20); /* more than the 2 MiB partition */
    reopen(f, 0);
    int err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                f->message);
    assert_int_equal(err, MF_ENOSPC);
    assert_non_null(strstr(f->message, "nothing was moved"));
    assert_memory_equal(key, f->anchor.state.key, 32); /* the old setup was not erased */
    assert_int_equal(counter, f->anchor.counter);
    reopen(f, 0);
    assert_true(f->secure.present);
    struct mf_area_entry e;
    assert_int_equal(f->secure.area.stat(&f->secure.area, "big.bin", &e), MF_ENOENT);
}

/* The storage cannot give the new setup its room (an image file whose host file system is full:
 * the device's reserve says MF_ENOSPC, injected at the move's first write, and every write after
 * it fails the same way): refused before the old setup is erased, the message names the cause,
 * no byte of the medium and nothing in the anchor changed, and the old setup still reads and
 * counts, also after a restart. A power cut at that first write leaves the old setup too. Once
 * the room is there the same folder moves. */
static void test_no_room_is_refused_before_erasing(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "R", "5", 10000);
    install(f);
    static uint8_t old_app[10000], medium[SECURE_BLOCKS * 512u];
    assert_int_equal(f->secure.area.read(&f->secure.area, "Projects/01_Widget/01_App/app.bin", 0,
                                         old_app, sizeof old_app),
                     0);
    uint8_t old_fingerprint[32];
    memcpy(old_fingerprint, f->secure.fingerprint, 32);
    make_setup(f, "S", "7", 50000);
    struct mf_faultbd fb;
    open_faulty(f, &fb);
    memcpy(medium, f->secure_mem, sizeof medium);
    struct mf_ramanchor anchor = f->anchor;
    mf_faultbd_reset_counters(&fb);
    mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_WRITES, 1, true);
    mf_faultbd_fail_io_code(&fb, MF_ENOSPC);
    int err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                f->message);
    mf_faultbd_fail_io_off(&fb);
    assert_int_equal(err, MF_ENOSPC);
    if (!strstr(f->message, "cannot reserve") || !strstr(f->message, "no space left") ||
        !strstr(f->message, "nothing was moved"))
        fail_msg("message: %s", f->message);
    const struct mf_faultbd_counters *n = mf_faultbd_counters(&fb);
    assert_int_equal(n->reserves, 1); /* the first write, and the only one tried */
    assert_int_equal(n->progs + n->erases + n->syncs, 0);
    assert_int_equal(n->io_errors, 1);
    assert_memory_equal(medium, f->secure_mem, sizeof medium);
    assert_int_equal(f->anchor.writes, anchor.writes);
    assert_memory_equal(f->anchor.state.key, anchor.state.key, 32);
    assert_memory_equal(f->anchor.state.digest, anchor.state.digest, 32);
    assert_int_equal(f->anchor.counter, anchor.counter);

    /* The old setup runs on, in this open and after a restart. */
    struct mf_setup setup;
    for (int restart = 0; restart < 2; restart++) {
        if (restart)
            restart_faulty(f, &fb);
        assert_true(f->secure.present);
        assert_memory_equal(f->secure.fingerprint, old_fingerprint, 32);
        static uint8_t got[10000];
        assert_int_equal(f->secure.area.read(&f->secure.area, "Projects/01_Widget/01_App/app.bin",
                                             0, got, sizeof got),
                         0);
        assert_memory_equal(got, old_app, sizeof got);
        load_setup(f, &setup);
        struct mf_tally t;
        assert_int_equal(take_one(f, &setup, &t), 0);
        assert_int_equal(t.serial, 500 + (unsigned)restart);
        mf_setup_free(&setup);
    }

    /* A cut at that first write (the reservation) leaves the old setup whole as well. */
    memcpy(old_fingerprint, f->secure.fingerprint, 32);
    memcpy(medium, f->secure_mem, sizeof medium);
    anchor = f->anchor;
    mf_faultbd_arm_cut(&fb, 1, MF_FAULTBD_CUT_DROP);
    err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                            f->message);
    assert_int_equal(err, MF_EPOWERLOSS);
    assert_int_equal(mf_faultbd_last_cut(&fb)->op, MF_FAULTBD_OP_RESERVE);
    assert_memory_equal(medium, f->secure_mem, sizeof medium);
    assert_memory_equal(f->anchor.state.key, anchor.state.key, 32);
    restart_faulty(f, &fb);
    assert_true(f->secure.present);
    assert_memory_equal(f->secure.fingerprint, old_fingerprint, 32);

    /* With room again, the same folder moves. */
    err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                            f->message);
    if (err)
        fail_msg("install: %d %s", err, f->message);
    assert_memory_not_equal(f->anchor.state.key, anchor.state.key, 32);
    same_file(f, "Projects/01_Widget/01_App/app.bin");
    mf_secure_close(&f->secure);
}

static void test_bad_counter_file_is_refused_before_erasing(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "H", "5", 1000);
    install(f);
    uint8_t key[32];
    memcpy(key, f->anchor.state.key, 32);
    puts_(&f->vol.fs, "_SECURE/Projects/01_Widget/Cntdown.txt", "12abc");
    int err = mf_secure_install(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                f->message);
    assert_int_equal(err, MF_EFORMAT);
    assert_non_null(strstr(f->message, "Cntdown.txt"));
    assert_memory_equal(key, f->anchor.state.key, 32);
}

/* After an install, the removal of its folder is pending until recorded, across reopening:
 * whatever `_SECURE` then holds is what is left of it (the caller removes it, never moves it). */
static void test_removal_pending(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "I", "5", 5000);
    assert_false(mf_secure_removal_pending(&f->secure)); /* nothing installed */
    install(f);
    assert_true(mf_secure_removal_pending(&f->secure));
    reopen(f, 0);
    assert_true(mf_secure_removal_pending(&f->secure));
    assert_int_equal(mf_secure_folder_removed(&f->secure), 0);
    assert_false(mf_secure_removal_pending(&f->secure));
    reopen(f, 0);
    assert_true(f->secure.state.folder_removed);
    assert_false(mf_secure_removal_pending(&f->secure));
}

/* ---- power cut at every write of the move ---- */

struct cut {
    struct fixture *f;
    struct mf_ramanchor before; /* the anchor when the old setup was installed */
    uint8_t old_key[32];
    struct mf_faultbd *device; /* of the current run */
    uint64_t anchor_cut;       /* cut at this anchor write (0: the sweep cuts the storage) */
    bool anchor_after;
    unsigned anchor_writes; /* of a clean run */
};

static int cut_setup(void *context, const struct mf_bd *medium)
{
    struct cut *c = context;
    return mf_bd_prog(medium, 0, c->f->secure_mem, SECURE_BLOCKS);
}

static int cut_run(void *context, const struct mf_bd *bd)
{
    struct cut *c = context;
    struct fixture *f = c->f;
    f->anchor = c->before;
    f->anchor.anchor.context = &f->anchor;
    f->anchor.power =
        (struct mf_faultbd *)(void *)((const char *)bd - offsetof(struct mf_faultbd, bd));
    f->anchor.writes = 0;
    f->anchor.cut_at = c->anchor_cut;
    f->anchor.cut_after = c->anchor_after;
    struct mf_secure s;
    struct mf_secure_config config = config_of(f, bd);
    int err = mf_secure_open(&s, &config, f->message);
    if (!err)
        err = mf_secure_install(&s, &f->public_area.area, MF_SECURE_FOLDER, NULL, NULL, f->message);
    c->anchor_writes = (unsigned)f->anchor.writes;
    mf_secure_close(&s);
    return err;
}

static int cut_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct cut *c = context;
    struct fixture *f = c->f;
    f->anchor.power = NULL;
    f->anchor.cut_at = 0;
    struct mf_secure s;
    struct mf_secure_config config = config_of(f, bd);
    int err = mf_secure_open(&s, &config, f->message);
    if (err) {
        fprintf(stderr, "cut at %llu: open refused: %s\n", (unsigned long long)point->cut_at,
                f->message);
        return err;
    }
    int rc = 0;
    bool old_key = memcmp(f->anchor.state.key, c->old_key, 32) == 0;
    if (s.present) {
        /* Old and intact (the key was never replaced) or new and complete: never a mix. */
        uint8_t a[2048], b[2048];
        err = s.area.read(&s.area, "Projects/01_Widget/01_App/app.bin", 0, a, sizeof a);
        if (!err)
            err = f->public_area.area.read(
                &f->public_area.area, "_SECURE/Projects/01_Widget/01_App/app.bin", 0, b, sizeof b);
        bool is_new = !err && memcmp(a, b, sizeof a) == 0;
        if (err || (!is_new && !old_key)) {
            fprintf(stderr, "cut at %llu: a setup is present but neither old nor new (%d)\n",
                    (unsigned long long)point->cut_at, err);
            rc = MF_EVERIFY;
        }
    } else if (old_key && c->before.state.has_key) {
        fprintf(stderr, "cut at %llu: the old key is still there but no setup is present\n",
                (unsigned long long)point->cut_at);
        rc = MF_EVERIFY;
    }
    mf_secure_close(&s);
    return rc;
}

static void test_power_cut_during_the_move(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "OLD", "5", 20000);
    install(f);
    mf_secure_close(&f->secure);
    make_setup(f, "NEW", "9", 24000);
    /* More chunks than one batch of the install's pipeline (16): a cut between two batches' writes
     * and inside a long one. */
    uint8_t *extra = malloc(300u << 10);
    randombytes_buf(extra, 300u << 10);
    put(&f->vol.fs, "_SECURE/Projects/01_Widget/extra.bin", extra, 300u << 10);
    free(extra);
    if (mf_test_soak()) {
        /* make soak: a large setup (many chunks, clusters and write points) */
        uint8_t *big = malloc(768u << 10);
        randombytes_buf(big, 768u << 10);
        put(&f->vol.fs, "_SECURE/Projects/01_Widget/data.bin", big, 768u << 10);
        free(big);
    }
    struct cut c = {.f = f, .before = f->anchor};
    memcpy(c.old_key, f->anchor.state.key, 32);
    struct mf_sweep sweep = {.name = "secure move",
                             .block_size = 512,
                             .block_count = SECURE_BLOCKS,
                             .context = &c,
                             .setup = cut_setup,
                             .run = cut_run,
                             .check = cut_check};
    struct mf_sweep_options options = {.seeds = 2, .max_points = 60};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points > 5);
    /* And at every anchor write, landed or not: first count them in a clean run. */
    {
        static uint8_t medium[SECURE_BLOCKS * 512u];
        memcpy(medium, f->secure_mem, sizeof medium);
        struct mf_rambd ram;
        mf_rambd_init(&ram, medium, 512, SECURE_BLOCKS);
        struct mf_faultbd fb;
        mf_faultbd_init(&fb, &ram.bd, NULL);
        c.anchor_cut = 0;
        assert_int_equal(cut_run(&c, &fb.bd), 0);
    }
    unsigned writes = c.anchor_writes;
    assert_true(writes >= 3); /* key, digest cleared, digest */
    for (unsigned m = 1; m <= writes; m++) {
        for (int after = 0; after < 2; after++) {
            static uint8_t medium[SECURE_BLOCKS * 512u];
            memcpy(medium, f->secure_mem, sizeof medium);
            struct mf_rambd ram;
            mf_rambd_init(&ram, medium, 512, SECURE_BLOCKS);
            struct mf_faultbd fb;
            mf_faultbd_init(&fb, &ram.bd, NULL);
            c.anchor_cut = m;
            c.anchor_after = after;
            if (cut_run(&c, &fb.bd) == 0)
                fail_msg("a cut at anchor write %u (%s) was not noticed", m,
                         after ? "landed" : "lost");
            mf_faultbd_reset(&fb);
            struct mf_sweep_point point = {.cut_at = 1000 + m};
            assert_int_equal(cut_check(&c, &fb.bd, &point), 0);
        }
    }
}

/* ---- power cut at every write of a cycle's authorization (state record, reservation) ---- */

struct auth_cut {
    struct fixture *f;
    struct mf_ramanchor before;
    struct mf_setup setup;
    unsigned completed; /* takes that returned 0 since the medium was restored */
    uint64_t anchor_cut;
    bool anchor_after;
    bool fresh; /* the next run starts from the restored medium: the anchor too */
    unsigned k; /* the reservation */
};

/* The medium starts as the installed setup left it. */
static int auth_setup(void *context, const struct mf_bd *medium)
{
    struct auth_cut *c = context;
    return mf_bd_prog(medium, 0, c->f->secure_mem, SECURE_BLOCKS);
}

static int auth_run(void *context, const struct mf_bd *bd)
{
    struct auth_cut *c = context;
    struct fixture *f = c->f;
    /* A run right after a reboot (the second of a pair) goes on with the anchor as the first
     * left it; a run on the restored medium starts from the anchor as it was then. */
    if (c->fresh) {
        f->anchor = c->before;
        f->anchor.anchor.context = &f->anchor;
        c->fresh = false;
        c->completed = 0;
    }
    f->anchor.writes = 0;
    f->anchor.power =
        (struct mf_faultbd *)(void *)((const char *)bd - offsetof(struct mf_faultbd, bd));
    f->anchor.cut_at = c->anchor_cut;
    f->anchor.cut_after = c->anchor_after;
    struct mf_secure s;
    struct mf_secure_config config = config_of(f, bd);
    int err = mf_secure_open(&s, &config, f->message);
    for (unsigned i = 0; i < 5 && !err; i++) {
        char msg[MF_AREA_MESSAGE_MAX];
        struct mf_tally t;
        enum mf_area_taken taken;
        err = s.area.peek(&s.area, &c->setup, 0, &t, msg);
        if (!err)
            err = s.area.take(&s.area, &c->setup, 0, &t, &taken, msg);
        if (!err)
            c->completed++;
    }
    mf_secure_close(&s);
    return err;
}

static int auth_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct auth_cut *c = context;
    struct fixture *f = c->f;
    f->anchor.power = NULL;
    f->anchor.cut_at = 0;
    struct mf_secure s;
    struct mf_secure_config config = config_of(f, bd);
    int err = mf_secure_open(&s, &config, f->message);
    if (err) {
        fprintf(stderr, "cut %llu/%llu: open refused: %s\n", (unsigned long long)point->cut_at,
                (unsigned long long)c->anchor_cut, f->message);
        return err;
    }
    char msg[MF_AREA_MESSAGE_MAX];
    struct mf_tally t;
    err = s.area.peek(&s.area, &c->setup, 0, &t, msg);
    mf_secure_close(&s);
    c->fresh = true;
    if (err)
        return err;
    /* 20 cycles before; `completed` devices certainly authorized, one more maybe per cut. Never
     * more cycles left than 20 minus the completed ones; at most the rest of one reservation
     * (K) lost per cut; serial numbers never behind the completed ones. */
    uint64_t cuts = point->second_run ? 2 : 1;
    uint64_t most = 20 - c->completed, least = most >= c->k * cuts ? most - c->k * cuts : 0;
    if (t.project_left > most || t.project_left < least || t.serial < 100 + c->completed) {
        fprintf(stderr,
                "cut %llu/%llu (%s): %u completed, %llu left (allowed %llu..%llu), serial %llu\n",
                (unsigned long long)point->cut_at, (unsigned long long)c->anchor_cut,
                mf_faultbd_cut_mode_name(point->mode), c->completed,
                (unsigned long long)t.project_left, (unsigned long long)least,
                (unsigned long long)most, (unsigned long long)t.serial);
        return MF_EVERIFY;
    }
    return 0;
}

/* At K = 3 (anchor writes with notes every third cycle, synced state records between) and at
 * K = 1 (every cycle one anchor write with its note, the medium's state records unsynced). */
static void power_cut_during_authorization(struct fixture *f, unsigned k)
{
    make_setup(f, "AUTH", "20", 3000);
    puts_(&f->vol.fs, "_SECURE/Projects/01_Widget/Serial.txt", "100\r\n");
    char ini[64];
    snprintf(ini, sizeof ini, "[CONFIG]\nReservation = %u\n", k);
    puts_(&f->vol.fs, "_SECURE/FLASHER.INI", ini);
    install(f);
    struct auth_cut c = {.f = f, .before = f->anchor, .fresh = true, .k = k};
    load_setup(f, &c.setup);
    mf_secure_close(&f->secure);
    struct mf_sweep sweep = {.name = "secure authorization",
                             .block_size = 512,
                             .block_count = SECURE_BLOCKS,
                             .context = &c,
                             .setup = auth_setup,
                             .run = auth_run,
                             .check = auth_check};
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ALL, .seeds = 2, .pairs = true};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 5);
    /* And at every anchor write (the reservations), landed or not. */
    for (unsigned m = 1; m <= (k == 1 ? 5u : 2u); m++) {
        for (int after = 0; after < 2; after++) {
            static uint8_t medium[SECURE_BLOCKS * 512u];
            memcpy(medium, f->secure_mem, sizeof medium);
            struct mf_rambd ram;
            mf_rambd_init(&ram, medium, 512, SECURE_BLOCKS);
            struct mf_faultbd fb;
            mf_faultbd_init(&fb, &ram.bd, NULL);
            c.anchor_cut = m;
            c.anchor_after = after;
            c.fresh = true;
            assert_int_not_equal(auth_run(&c, &fb.bd), 0);
            mf_faultbd_reset(&fb);
            struct mf_sweep_point point = {.cut_at = 0};
            assert_int_equal(auth_check(&c, &fb.bd, &point), 0);
        }
    }
    mf_setup_free(&c.setup);
}

static void test_power_cut_during_authorization(void **state)
{
    power_cut_during_authorization(*state, 3);
}

static void test_power_cut_during_authorization_k1(void **state)
{
    power_cut_during_authorization(*state, 1);
}

/* ---- power cut at every write of the _SECURE folder's removal after the move ---- */

#define REMOVAL_MARKER "PLAINTEXT-OF-THE-MOVED-SETUP"

struct removal_cut {
    struct fixture *f;
    uint8_t *public_snapshot; /* the public area as the move left it: _SECURE still there */
    uint8_t *secure_snapshot; /* the secure area then: its removal not yet recorded */
};

/* A firmware with the marker in every 512-byte piece: any sector of it left anywhere shows. */
static void marked(struct fixture *f, const char *path, size_t size, unsigned seed)
{
    uint8_t *b = malloc(size);
    for (size_t i = 0; i < size; i++)
        b[i] = (uint8_t)(i * 13 + seed);
    for (size_t o = 0; o + 100 + sizeof REMOVAL_MARKER < size; o += 512)
        memcpy(b + o + 100, REMOVAL_MARKER, sizeof REMOVAL_MARKER - 1);
    put(&f->vol.fs, path, b, size);
    free(b);
}

static int removal_setup(void *context, const struct mf_bd *medium)
{
    struct removal_cut *c = context;
    return mf_bd_prog(medium, 0, c->public_snapshot, PUBLIC_BLOCKS);
}

/* What the daemon does after a move (finish_removal). */
static int removal_run(void *context, const struct mf_bd *bd)
{
    (void)context;
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (!err)
        err = mf_fat_remove_tree_wiped(&fs, MF_SECURE_FOLDER);
    if (!err)
        err = mf_fat_wipe_free(&fs);
    return err;
}

/* The next start (boot_secure): the removal is not recorded, so whatever `_SECURE` holds is
 * removed as what is left of the installed folder; then the free space is wiped. Afterwards no
 * byte of the moved files may be anywhere on the public area. */
static int removal_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct removal_cut *c = context;
    struct fixture *f = c->f;
    memcpy(f->secure_mem, c->secure_snapshot, SECURE_BLOCKS * 512u);
    mf_secure_close(&f->secure);
    struct mf_secure_config config = config_of(f, &f->secure_ram.bd);
    int err = mf_secure_open(&f->secure, &config, f->message);
    if (err || !f->secure.present || f->secure.state.folder_removed) {
        fprintf(stderr, "cut %llu: the secure area after the move: %d %s\n",
                (unsigned long long)point->cut_at, err, f->message);
        return err ? err : MF_EVERIFY;
    }
    struct mf_fat fs;
    err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err) {
        fprintf(stderr, "cut %llu (%s): the public area does not mount: %s\n",
                (unsigned long long)point->cut_at, mf_faultbd_cut_mode_name(point->mode),
                mf_strerror(err));
        return err;
    }
    if (!mf_secure_removal_pending(&f->secure)) {
        fprintf(stderr, "cut %llu: what is left of _SECURE would be moved as a new setup\n",
                (unsigned long long)point->cut_at);
        return MF_EVERIFY;
    }
    struct mf_fat_stat st;
    if (mf_fat_stat(&fs, MF_SECURE_FOLDER, &st) == 0 && st.is_dir)
        err = mf_fat_remove_tree_wiped(&fs, MF_SECURE_FOLDER);
    if (!err)
        err = mf_fat_wipe_free(&fs);
    if (err) {
        fprintf(stderr, "cut %llu (%s): finishing the removal: %s\n",
                (unsigned long long)point->cut_at, mf_faultbd_cut_mode_name(point->mode),
                mf_strerror(err));
        return err;
    }
    static uint8_t medium[PUBLIC_BLOCKS * 512u];
    err = mf_bd_read(bd, 0, medium, PUBLIC_BLOCKS);
    if (!err && medium_contains(medium, sizeof medium, REMOVAL_MARKER)) {
        fprintf(stderr, "cut %llu (%s): plaintext of the moved setup is still on the medium\n",
                (unsigned long long)point->cut_at, mf_faultbd_cut_mode_name(point->mode));
        return MF_EVERIFY;
    }
    return err;
}

/* The removal erases every file before its entry goes: a cut anywhere leaves no plaintext behind
 * once the next start has finished it (with mf_fat_remove_tree, lost clusters kept it). */
static void test_power_cut_during_the_removal(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "R", "5", 100);
    marked(f, "_SECURE/Projects/01_Widget/01_App/app.bin", 40000, 1);
    char path[96];
    for (unsigned i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "_SECURE/Projects/01_Widget/01_App/extra%u.bin", i);
        marked(f, path, 1500 + 700 * i, 2 + i);
    }
    /* More files in one folder than a removal batch takes (64): cuts at a batch's edge too. */
    for (unsigned i = 0; i < 70; i++) {
        snprintf(path, sizeof path, "_SECURE/Projects/01_Widget/Many/part%02u.bin", i);
        marked(f, path, 600, 20 + i);
    }
    if (mf_test_soak()) /* make soak: a large file too (many clusters, long chains; the 70 small
                            files take a 16 KiB chunk each in the secure area) */
        marked(f, "_SECURE/Projects/01_Widget/data.bin", 512u << 10, 9);
    install(f);
    struct removal_cut c = {.f = f,
                            .public_snapshot = malloc(PUBLIC_BLOCKS * 512u),
                            .secure_snapshot = malloc(SECURE_BLOCKS * 512u)};
    assert_true(medium_contains(f->vol.memory, PUBLIC_BLOCKS * 512u, REMOVAL_MARKER));
    memcpy(c.public_snapshot, f->vol.memory, PUBLIC_BLOCKS * 512u);
    memcpy(c.secure_snapshot, f->secure_mem, SECURE_BLOCKS * 512u);
    struct mf_sweep sweep = {.name = "_SECURE removal",
                             .block_size = 512,
                             .block_count = PUBLIC_BLOCKS,
                             .context = &c,
                             .setup = removal_setup,
                             .run = removal_run,
                             .check = removal_check};
    /* Garbled directory sectors are beyond what a FAT volume survives (the FAT sweeps leave
     * them out too): fsck.fat's ground. */
    struct mf_sweep_options options = {.modes = MF_FAULTBD_CUT_ALL & ~MF_FAULTBD_CUT_GARBLE,
                                       .seeds = 2};
    struct mf_sweep_result result;
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    assert_true(result.write_points >= 10);
    free(c.public_snapshot);
    free(c.secure_snapshot);
}

static int install_origin(struct fixture *f, const struct mf_secure_origin *origin)
{
    struct mf_secure_config c = config_of(f, &f->secure_ram.bd);
    mf_secure_close(&f->secure);
    assert_int_equal(mf_secure_open(&f->secure, &c, f->message), 0);
    return mf_secure_install_from(&f->secure, &f->public_area.area, MF_SECURE_FOLDER, origin, NULL,
                                  NULL, f->message);
}

/* A package's owner and not-before time: recorded in the header, the anchor's mark follows; a
 * package not newer than the mark (a replay) and, once pinned, a plain folder or another owner's
 * package are refused before anything is erased. */
static void test_origin_pin_and_mark(void **state)
{
    struct fixture *f = *state;
    struct mf_secure_origin a = {.package_mark = 1000}, b = {.package_mark = 2000};
    memset(a.owner, 0xA1, 32);
    memset(b.owner, 0xB2, 32);
    make_setup(f, "P", "5\r\n", 1000);
    assert_int_equal(install_origin(f, &a), 0);
    assert_true(f->secure.has_owner);
    assert_memory_equal(f->secure.owner, a.owner, 32);
    assert_int_equal(f->anchor.state.package_mark, 1000);
    reopen(f, 0);
    assert_true(f->secure.present && f->secure.has_owner);
    assert_int_equal(f->secure.package_mark, 1000);
    uint8_t fingerprint[32];
    memcpy(fingerprint, f->secure.fingerprint, 32);

    /* The same package again: a replay. */
    assert_int_equal(install_origin(f, &a), MF_EPERM);
    assert_non_null(strstr(f->message, "not later than that of the last package"));
    assert_true(f->secure.present);
    assert_memory_equal(f->secure.fingerprint, fingerprint, 32);

    /* Pinned to owner A: a plain folder and B's package are refused, the setup stays. */
    assert_int_equal(f->anchor.anchor.write_owner(&f->anchor.anchor, a.owner, 1000), 0);
    assert_int_equal(install_origin(f, NULL), MF_EPERM);
    assert_non_null(strstr(f->message, "pinned to owner"));
    assert_int_equal(install_origin(f, &b), MF_EPERM);
    assert_non_null(strstr(f->message, "but this programmer is pinned to"));
    reopen(f, 0);
    assert_true(f->secure.present);
    assert_memory_equal(f->secure.owner, a.owner, 32);

    /* A's newer package: installed, the pin stays, the mark moves. */
    struct mf_secure_origin a2 = a;
    a2.package_mark = 3000;
    assert_int_equal(install_origin(f, &a2), 0);
    assert_true(f->anchor.state.has_owner);
    assert_memory_equal(f->anchor.state.owner, a.owner, 32);
    assert_int_equal(f->anchor.state.package_mark, 3000);

    /* A cut after the header's digest but before the mark: the next open catches it up. */
    assert_int_equal(f->anchor.anchor.write_owner(&f->anchor.anchor, a.owner, 1000), 0);
    reopen(f, 0);
    assert_int_equal(f->anchor.state.package_mark, 3000);
}

/* Top-up limits and the records' head live in the state record and survive a reopen. */
static void test_limits_and_record_head(void **state)
{
    struct fixture *f = *state;
    make_setup(f, "L", "2\r\n", 1000);
    install(f);
    struct mf_setup setup;
    load_setup(f, &setup);
    struct mf_tally t;
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(take_one(f, &setup, &t), MF_EEXHAUSTED);
    assert_int_equal(mf_secure_set_limit(&f->secure, 0, 5, f->message), 0);
    assert_int_equal(mf_secure_set_limit(&f->secure, -1, 4, f->message), 0);
    assert_int_equal(mf_secure_set_limit(&f->secure, 7, 4, f->message), MF_ENOENT);
    uint8_t hash[32];
    memset(hash, 0x5C, sizeof hash);
    assert_int_equal(mf_secure_record_head(&f->secure, 2, hash, 2, f->message), 0);
    reopen(f, 0);
    assert_int_equal(f->secure.state.record_seq, 2);
    assert_memory_equal(f->secure.state.record_hash, hash, 32);
    assert_int_equal(f->secure.state.recorded, 2);
    char msg[MF_AREA_MESSAGE_MAX];
    assert_int_equal(f->secure.area.peek(&f->secure.area, &setup, 0, &t, msg), 0);
    assert_int_equal(t.project_left, 3);
    assert_true(t.root_limited);
    assert_int_equal(t.root_left, 2);
    assert_int_equal(take_one(f, &setup, &t), 0);
    assert_int_equal(f->secure.state.record_seq, 2); /* a cycle keeps the head */
    mf_setup_free(&setup);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_and_read_back, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_counts_and_serials, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rollback_k1, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rollback_k4, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_repeated_restores_k4, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rolling_copies_unclean_k4, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rolling_copies_clean_k4, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_restarts_forfeit_no_device, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_one_anchor_write_per_cycle, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_one_anchor_write_and_one_sync_without_notes,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rollback_with_a_note_is_exact, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_rollback_without_a_note_charges_every_project,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_anchor_refuses_a_count, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_anchor_loses_a_count, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_anchor_count_lands_unknown, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_anchor_without_notes_refuses_a_count, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_anchor_without_notes_count_lands_unknown,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_landed_count_then_a_clean_end, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_landed_count_then_a_clean_end_without_notes,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_medium_fails_after_the_note, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_medium_fails_after_the_counter, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_medium_fails_inside_a_reservation, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_tampering_is_refused, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_newer_format_is_refused, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_reads_with_a_late_or_eager_worker, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_reads_with_a_late_or_eager_worker, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_reads_with_a_worker, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_install_with_a_worker, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_load_after_install_reads_no_raw_binary, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_reinstall_erases_the_old_setup, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_too_big_is_refused_before_erasing, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_no_room_is_refused_before_erasing, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_bad_counter_file_is_refused_before_erasing,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_removal_pending, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_origin_pin_and_mark, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_limits_and_record_head, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_the_move, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_authorization_k1, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_authorization, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_the_removal, setup_fixture,
                                        teardown_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
