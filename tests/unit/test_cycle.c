/* The job engine end to end on one host: a production setup on a FAT volume in RAM, programmed
 * into `sim` devices in a temp folder. Checks the bytes each device holds, the counts, the serial
 * numbers, the patches, FLASHER.LOG, the consumed-count rule, and the power-cut behaviour of the
 * authorization (the durable count and serial number before the target is touched; under
 * MF_SOAK=1 also on a large setup whose cycle rotates FLASHER.LOG, see large_setup). */
#include "mf_cycle.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_faultbd.h"
#include "mf_flashlog.h"
#include "mf_rambd.h"
#include "mf_setup.h"
#include "mf_sim.h"
#include "mf_sweep.h"
#include "mf_target.h"
#include "mf_testfat.h"
#include "mf_testutil.h"
#include "mf_uidsig.h"

#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#define DISK_BLOCKS 8192u /* 4 MiB */
#define FLASH_BASE  0x08000000u

struct fixture {
    struct mf_testfat vol;
    struct mf_area_fat area;
    struct mf_setup setup;
    bool loaded;
    struct mf_flashlog log;
    struct mf_cycle_env env;
    uint64_t clock;
    char *sim_dir;
    struct mf_target target[4];
    struct mf_slot *slot[4];
    char message[MF_SETUP_ERROR_MAX];
    uint8_t buffer[16384];
};

static uint64_t fake_ms(void *context)
{
    struct fixture *f = context;
    return f->clock += 7;
}

static int64_t fake_wall(void *context)
{
    (void)context;
    return 1764000000; /* 2025-11-24 */
}

static void put(struct mf_fat *fs, const char *path, const void *data, size_t len)
{
    assert_int_equal(mf_testfat_put(fs, path, data, len), 0);
}

static void puts_(struct mf_fat *fs, const char *path, const char *text)
{
    assert_int_equal(mf_testfat_put_text(fs, path, text), 0);
}

/* A whole file as text (malloc'd), NULL when absent. */
static char *get(struct mf_fat *fs, const char *path)
{
    char *text;
    int err = mf_testfat_get(fs, path, &text, NULL);
    assert_true(err == 0 || err == MF_ENOENT);
    return err ? NULL : text;
}

static uint64_t number(struct mf_fat *fs, const char *path)
{
    char *text = get(fs, path);
    assert_non_null(text);
    uint64_t v = strtoull(text, NULL, 10);
    free(text);
    return v;
}

/* Does some line of `text` match the extended regular expression `pattern` in whole? */
static bool line_matches(const char *text, const char *pattern)
{
    regex_t re;
    char anchored[1024];
    snprintf(anchored, sizeof anchored, "^%s\r$", pattern);
    assert_int_equal(regcomp(&re, anchored, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    bool found = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    if (!found)
        fprintf(stderr, "no line matches /%s/ in:\n%s", pattern, text);
    return found;
}

/* Deterministic firmware bytes. */
static void firmware(uint8_t *out, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        out[i] = (uint8_t)(seed >> 16);
    }
}

static int setup_fixture(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct mf_fat_format_options o = {.volume_id = 1};
    assert_int_equal(mf_testfat_init(&f->vol, 512, DISK_BLOCKS, &o), 0);
    mf_area_fat_init(&f->area, &f->vol.fs, NULL);
    f->sim_dir = mf_test_tmpdir("cycle");
    assert_non_null(f->sim_dir);
    for (unsigned i = 0; i < 4; i++) {
        f->slot[i] = calloc(1, sizeof *f->slot[i]);
        assert_int_equal(mf_sim_open(&f->target[i], f->sim_dir, i + 1, NULL), 0);
        mf_slot_init(f->slot[i], i + 1, &f->target[i]);
    }
    mf_flashlog_init(&f->log, &f->vol.fs, NULL, 64 * 1024, fake_wall, NULL);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    struct fixture *f = *state;
    for (unsigned i = 0; i < 4; i++) {
        mf_sim_close(&f->target[i]);
        free(f->slot[i]);
    }
    if (f->loaded)
        mf_setup_free(&f->setup);
    mf_test_rmtree(f->sim_dir);
    free(f->sim_dir);
    mf_testfat_free(&f->vol);
    free(f);
    return 0;
}

static int load(struct fixture *f)
{
    if (f->loaded)
        mf_setup_free(&f->setup);
    f->loaded = false;
    int err = mf_setup_load(&f->setup, &f->area.area, f->buffer, sizeof f->buffer, f->message);
    if (err)
        return err;
    f->loaded = true;
    f->env = (struct mf_cycle_env){.setup = &f->setup,
                                   .area = &f->area.area,
                                   .log = &f->log,
                                   .now_ms = fake_ms,
                                   .clock_context = f};
    return 0;
}

static int cycle(struct fixture *f, unsigned slot, enum mf_cycle_action action,
                 struct mf_cycle_result *r)
{
    struct mf_cycle_request req = {.action = action};
    return mf_cycle_run(&f->env, f->slot[slot], &req, r);
}

/* Did a cycle ever connect to the sim device of `slot` (the sim makes its folder then)? */
static bool device_made(const struct fixture *f, unsigned slot)
{
    char path[512];
    snprintf(path, sizeof path, "%s/slot%u", f->sim_dir, slot);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Slot 1's device again, now flipping a bit at FLASH_BASE + `offset` after programming. */
static void reopen_flipping(struct fixture *f, uint32_t offset)
{
    mf_sim_close(&f->target[0]);
    struct mf_sim_options o = {.faults.flip = {MF_SIM_FAULT_ALWAYS, FLASH_BASE + offset}};
    assert_int_equal(mf_sim_open(&f->target[0], f->sim_dir, 1, &o), 0);
}

/* Reads what a sim device holds. */
static uint8_t *flash(struct fixture *f, unsigned slot, size_t *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/slot%u/flash.bin", f->sim_dir, slot);
    uint8_t *data;
    assert_int_equal(mf_test_read_file(path, (char **)&data, size), 0);
    return data;
}

static const char basic_job[] = "[job]\n"
                                "device = SIM-F1-64K\n"
                                "\n"
                                "[file]\n"
                                "path = app.bin\n"
                                "address = 0x08000000\n"
                                "\n"
                                "[serial]\n"
                                "address = 0x0800F000\n"
                                "length = 4\n"
                                "encoding = le\n";

static void basic_setup(struct fixture *f, const char *cntdown, const char *serial)
{
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini", basic_job);
    if (cntdown)
        puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", cntdown);
    if (serial)
        puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", serial);
}

static void test_auto_programs_data_and_serial(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "3\r\n", "1000\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_true(r.consumed);
    assert_true(r.has_serial);
    assert_int_equal(r.serial, 1000);
    assert_true(r.has_remaining);
    assert_int_equal(r.remaining, 2);
    assert_int_equal(r.uid_length, 12);

    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_int_equal(size, 64 * 1024);
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    assert_memory_equal(mem, app, sizeof app);
    for (size_t i = sizeof app; i < 0xF000; i++)
        assert_int_equal(mem[i], 0xFF); /* nothing else written */
    assert_int_equal(mem[0xF000], 1000 & 0xFF);
    assert_int_equal(mem[0xF001], 1000 >> 8);
    assert_int_equal(mem[0xF002], 0);
    assert_int_equal(mem[0xF003], 0);
    assert_int_equal(mem[0xF004], 0xFF);
    free(mem);

    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 2);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 1001);
    char *text = get(&f->vol.fs, "Projects/01_Widget/Cntdown.txt");
    assert_string_equal(text, "2\r\n"); /* the owner's line end is kept */
    free(text);
    /* The documented layout: time, slot, command, project, UID, serial, result, timings, cycles
     * left, and the jobs run. */
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    assert_non_null(log);
    char uid[25];
    for (unsigned i = 0; i < 12; i++)
        snprintf(uid + 2 * i, 3, "%02X", r.uid[i]);
    char pattern[512];
    snprintf(pattern, sizeof pattern,
             "2025-11-2[34] [0-9]{2}:[0-9]{2}:[0-9]{2} slot 1 AUTO project \"Widget\" uid %s "
             "serial 1000 OK \\(Total [0-9]+\\.[0-9]{3}s, Erase [0-9]+\\.[0-9]{3}s, Prog "
             "[0-9]+\\.[0-9]{3}s, Verify [0-9]+\\.[0-9]{3}s\\), 2 left, job \"App\"",
             uid);
    assert_true(line_matches(log, pattern));
    free(log);
}

static void test_counts_down_to_zero_then_refuses(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "2", "5");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(r.serial, 6);
    assert_int_equal(r.remaining, 0);
    /* At 0: refused, and no device is touched (slot 3 is never even created). */
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), MF_EEXHAUSTED);
    assert_false(r.consumed);
    assert_int_equal(r.uid_length, 0);
    assert_non_null(strstr(r.message, "no programming cycles left"));
    assert_false(device_made(f, 3));
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 0);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 7);
}

/* The daemon's check before every cycle: room for the cycle's FLASHER.LOG line. */
static int log_room_preflight(void *context, char *message)
{
    struct fixture *f = context;
    char m[MF_FLASHLOG_MESSAGE_MAX];
    int err = mf_flashlog_room(&f->log, 1, m);
    if (err)
        snprintf(message, MF_CYCLE_MESSAGE_MAX, "%s", m);
    return err;
}

/* On a full volume a device was programmed and its FLASHER.LOG line went missing, unsaid: the
 * result now says so (the daemon reports it). With the daemon's check before the count, the cycle
 * is refused instead, nothing taken and no device touched, until there is room again. */
static void test_no_room_for_the_log_line(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "100", "5");
    assert_int_equal(load(f), 0);
    uint64_t free_bytes, total;
    assert_int_equal(mf_fat_space(&f->vol.fs, &free_bytes, &total), 0);
    struct mf_fat_file file;
    assert_int_equal(mf_fat_open(&f->vol.fs, &file, "FILL.BIN", MF_FAT_O_WRONLY | MF_FAT_O_CREAT),
                     0);
    assert_int_equal(mf_fat_truncate(&f->vol.fs, &file, (uint32_t)free_bytes), 0);
    assert_int_equal(mf_fat_close(&f->vol.fs, &file), 0);

    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_true(r.consumed);
    assert_int_equal(r.log_error, MF_ENOSPC);
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    assert_true(!log || !*log); /* no line */
    free(log);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 99);

    f->env.preflight = log_room_preflight;
    f->env.preflight_context = f;
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), MF_ENOSPC);
    assert_false(r.consumed);
    assert_int_equal(r.failure, MF_FAIL_CONFLICT);
    assert_int_equal(r.uid_length, 0);
    assert_non_null(strstr(r.message, "too full for FLASHER.LOG (0 bytes free, "));
    assert_false(device_made(f, 3));
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 99);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 6);

    assert_int_equal(mf_fat_remove(&f->vol.fs, "FILL.BIN"), 0);
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), 0);
    assert_true(device_made(f, 3));
    assert_int_equal(r.log_error, 0);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 98);
    log = get(&f->vol.fs, "FLASHER.LOG");
    assert_non_null(log);
    assert_true(line_matches(log,
                             "2025-11-24 [0-9:]{8} slot 3 AUTO project \"Widget\" uid [0-9A-F]+ "
                             "serial 6 OK .*"));
    free(log);
}

static void test_root_and_project_counts_both_apply(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "1");
    puts_(&f->vol.fs, "Cntdown.txt", "1\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(number(&f->vol.fs, "Cntdown.txt"), 0);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EEXHAUSTED);
}

/* Writes job.ini `path`: app.bin at the flash's start, and a serial number of `length` bytes in
 * `encoding` at `address`. */
static void put_serial_job(struct fixture *f, const char *path, uint32_t address, unsigned length,
                           const char *encoding)
{
    char job[512];
    snprintf(job, sizeof job,
             "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
             "[serial]\naddress = 0x%08X\nlength = %u\nencoding = %s\n",
             address, length, encoding);
    puts_(&f->vol.fs, path, job);
}

static void test_serial_encodings(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *encoding;
        unsigned length;
        const char *expect;
    } cases[] = {
        {"be", 4, "\x00\x01\xE2\x40"},
        {"ascii", 8, "00123456"},
        {"hex", 6, "01E240"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t app[100];
        firmware(app, sizeof app, 3);
        put(&f->vol.fs, "Projects/P/J/app.bin", app, sizeof app);
        put_serial_job(f, "Projects/P/J/job.ini", 0x08008000u, cases[i].length, cases[i].encoding);
        puts_(&f->vol.fs, "Projects/P/Serial.txt", "123456");
        assert_int_equal(load(f), 0);
        struct mf_cycle_result r;
        assert_int_equal(
            mf_sim_replace(f->sim_dir, 1, mf_profile_find("SIM-F1-64K"), NULL, NULL, NULL, 0), 0);
        assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
        size_t size;
        uint8_t *mem = flash(f, 1, &size);
        assert_memory_equal(mem + 0x8000, cases[i].expect, cases[i].length);
        free(mem);
    }
}

/* A serial number one past what the field holds, in each encoding: refused before anything is
 * taken or written. */
static void test_serial_that_does_not_fit_touches_nothing(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *encoding, *serial, *message;
        unsigned length;
    } cases[] = {
        {"le", "4294967296", "serial number 4294967296 does not fit 4 bytes", 4},
        {"be", "72057594037927936", "serial number 72057594037927936 does not fit 7 bytes", 7},
        {"ascii", "1000", "serial number 1000 does not fit 3 decimal digits", 3},
        {"hex", "256", "serial number 256 does not fit 2 hex digits", 2},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        basic_setup(f, "3", cases[i].serial);
        put_serial_job(f, "Projects/01_Widget/01_App/job.ini", 0x0800F000u, cases[i].length,
                       cases[i].encoding);
        assert_int_equal(load(f), 0);
        struct mf_cycle_result r;
        assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_ERANGE);
        assert_string_equal(r.message, cases[i].message);
        assert_false(r.consumed);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 3);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"),
                         strtoull(cases[i].serial, NULL, 10));
        size_t size;
        uint8_t *mem = flash(f, 1, &size); /* connected (created) but never written */
        for (size_t k = 0; k < size; k++)
            assert_int_equal(mem[k], 0xFF);
        free(mem);
        assert_int_equal(mf_sim_replace(f->sim_dir, 1, NULL, NULL, NULL, NULL, 0), 0);
    }
}

/* Project Widget with a `length`-byte le serial number at `address` over basic_setup's data,
 * Cntdown.txt and Serial.txt `cntdown` and `serial`: one good AUTO cycle on slot 1; returns its
 * result and what the device holds (64 KiB, malloc'd). */
static uint8_t *serial_job_cycle(struct fixture *f, const char *cntdown, const char *serial,
                                 uint32_t address, unsigned length, struct mf_cycle_result *r)
{
    basic_setup(f, cntdown, serial);
    put_serial_job(f, "Projects/01_Widget/01_App/job.ini", address, length, "le");
    assert_int_equal(load(f), 0);
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_int_equal(size, 0x10000);
    return mem;
}

/* The last serial numbers there are: UINT64_MAX - 1 is taken (Serial.txt then holds UINT64_MAX),
 * UINT64_MAX cannot advance and is refused before anything is taken. */
static void test_serial_at_the_top(void **state)
{
    struct fixture *f = *state;
    struct mf_cycle_result r;
    uint8_t *mem = serial_job_cycle(f, "3", "18446744073709551614\r\n", 0x0800F000u, 8, &r);
    assert_int_equal(r.serial, UINT64_MAX - 1);
    assert_memory_equal(mem + 0xF000, "\xFE\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8);
    free(mem);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), UINT64_MAX);
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), MF_ERANGE);
    assert_string_equal(r.message, "Projects/01_Widget/Serial.txt: serial number "
                                   "18446744073709551615 cannot advance");
    assert_false(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 2);
}

static void test_patches_by_serial_line(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "1");
    /* Line 0 is never used (the serial number starts at 1). */
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt",
          "1,8000010,2:0000\r\n"
          "2,8000010,3:AABBCC,800C000,1:5A\r\n"
          "1,8000020,1:77\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_int_equal(mem[0x10], 0xAA); /* over the data */
    assert_int_equal(mem[0x11], 0xBB);
    assert_int_equal(mem[0x12], 0xCC);
    assert_int_equal(mem[0xC000], 0x5A); /* where no data is */
    assert_int_equal(mem[0xC001], 0xFF);
    free(mem);

    /* NOPATCH: the data as it is, yet the line is still taken with the serial number. */
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .no_patch = true};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[1], &req, &r), 0);
    mem = flash(f, 2, &size);
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    assert_int_equal(mem[0x20], app[0x20]);
    assert_int_equal(mem[0x10], app[0x10]);
    free(mem);

    /* An inline patch line replaces the file's. */
    req = (struct mf_cycle_request){.action = MF_ACTION_AUTO, .patch_line = "1,8000100,4:01020304"};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
    mem = flash(f, 3, &size);
    assert_memory_equal(mem + 0x100, "\x01\x02\x03\x04", 4);
    free(mem);

    /* Used up: no line 4. The cycle is refused before the target is touched. */
    assert_int_equal(mf_sim_replace(f->sim_dir, 1, NULL, NULL, NULL, NULL, 0), 0);
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_ENOENT);
    assert_false(r.consumed);
    /* Named as an editor counts lines (and job.ini errors do), with the number that selected it
     * (the reference counts from 0). */
    assert_string_equal(r.message, "Projects/01_Widget/Patches.txt:5 (Serial.txt 4 selects it, "
                                   "counting lines from 0): no such line (the patches are used "
                                   "up)");
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 7);
}

/* A Patches.txt line of 8 patches of 64 bytes, each `address` + 0x100 * i, 16-digit addresses
 * and blanks around the items: the longest line of ours, 1193 characters without the blanks. */
static size_t full_patch_line(char *out, size_t size, unsigned patches, unsigned bytes)
{
    size_t n = (size_t)snprintf(out, size, "%X", patches);
    for (unsigned i = 0; i < patches; i++) {
        n += (size_t)snprintf(out + n, size - n, " , %016X , %X : ", 0x08004000u + 0x100u * i,
                              bytes);
        for (unsigned k = 0; k < bytes; k++)
            n += (size_t)snprintf(out + n, size - n, "%02X", (unsigned)(i * 64 + k) & 0xFF);
    }
    return n;
}

/* The limits of a Patches.txt line: 8 patches of 64 bytes work from the file and inline; a ninth
 * patch, a 65th byte and a line longer than MF_TEXT_LINE_MAX are refused with what is wrong and
 * where, before anything is taken. */
static void test_patch_line_limits(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "0");
    static char text[4 * MF_TEXT_LINE_MAX];
    size_t n = full_patch_line(text, sizeof text, 8, 64);
    assert_true(n > 1193 && n <= MF_TEXT_LINE_MAX);
    text[n++] = '\n';
    n += full_patch_line(text + n, sizeof text - n, 9, 1); /* line 2: nine patches */
    text[n++] = '\n';
    n += full_patch_line(text + n, sizeof text - n, 1, 65); /* line 3: 65 bytes */
    text[n++] = '\n';
    memset(text + n, ' ', MF_TEXT_LINE_MAX); /* line 4: blanks past the limit, then a patch */
    n += MF_TEXT_LINE_MAX;
    n += (size_t)snprintf(text + n, sizeof text - n, "1,8004000,1:00\n");
    put(&f->vol.fs, "Projects/01_Widget/Patches.txt", text, n);
    assert_int_equal(load(f), 0);

    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    for (unsigned i = 0; i < 8; i++) {
        for (unsigned k = 0; k < 64; k++)
            assert_int_equal(mem[0x4000 + 0x100 * i + k], (i * 64 + k) & 0xFF);
        assert_int_equal(mem[0x4000 + 0x100 * i + 64], 0xFF);
    }
    free(mem);

    static const char *const refused[] = {
        "Projects/01_Widget/Patches.txt:2 (Serial.txt 1 selects it, counting lines from 0): "
        "NumPatches is 0x9: a line holds from 1 to 8 patches",
        "Projects/01_Widget/Patches.txt:3 (Serial.txt 2 selects it, counting lines from 0): "
        "patch 1: NumBytes is 0x41 (65): a patch holds from 1 to 64 (0x40) bytes",
        "Projects/01_Widget/Patches.txt:4 (Serial.txt 3 selects it, counting lines from 0): "
        "line 4 is longer than 2048 characters",
    };
    for (unsigned i = 0; i < 3; i++) {
        char serial[8];
        snprintf(serial, sizeof serial, "%u\r\n", i + 1);
        puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", serial);
        assert_int_equal(mf_sim_replace(f->sim_dir, 1, NULL, NULL, NULL, NULL, 0), 0);
        int err = cycle(f, 0, MF_ACTION_AUTO, &r);
        assert_int_equal(err, i == 2 ? MF_EFBIG : MF_EFORMAT);
        assert_string_equal(r.message, refused[i]);
        assert_false(r.consumed);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), i + 1);
    }
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 9);

    /* The same limits inline (#AUTO PATCH): the full line works, also padded to the longest a line
     * may be; one character more than a line holds is refused. */
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "0");
    n = full_patch_line(text, sizeof text, 8, 64);
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .patch_line = text};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[1], &req, &r), 0);
    mem = flash(f, 2, &size);
    assert_int_equal(mem[0x4000 + 0x700 + 63], (7 * 64 + 63) & 0xFF);
    free(mem);
    memset(text + n, ' ', MF_TEXT_LINE_MAX - n); /* exactly as long as a line may be */
    text[MF_TEXT_LINE_MAX] = '\0';
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
    text[MF_TEXT_LINE_MAX] = ' ';
    text[MF_TEXT_LINE_MAX + 1] = '\0';
    assert_int_equal(mf_cycle_run(&f->env, f->slot[3], &req, &r), MF_EFBIG);
    assert_string_equal(r.message, "#AUTO PATCH: the line is longer than 2048 characters");
    assert_false(r.consumed);
}

/* Two jobs, Boot at 0x08000000 and App at 0x08004000 (2000 bytes: its sectors end at 0x08004800),
 * `boot_patches` and `app_patches` their `patches =` settings, Serial.txt 1 selecting line 1 of
 * Patches.txt. */
static void two_job_patch_setup(struct fixture *f, const char *boot_patches,
                                const char *app_patches, const char *line)
{
    uint8_t boot[1000], app[2000];
    firmware(boot, sizeof boot, 11);
    firmware(app, sizeof app, 12);
    char ini[256];
    put(&f->vol.fs, "Projects/01_Widget/01_Boot/boot.bin", boot, sizeof boot);
    snprintf(ini, sizeof ini,
             "[job]\ndevice = SIM-F1-64K\npatches = %s\n[file]\npath = boot.bin\n"
             "address = 0x08000000\n",
             boot_patches);
    puts_(&f->vol.fs, "Projects/01_Widget/01_Boot/job.ini", ini);
    put(&f->vol.fs, "Projects/01_Widget/02_App/app.bin", app, sizeof app);
    snprintf(ini, sizeof ini,
             "[job]\ndevice = SIM-F1-64K\npatches = %s\n[file]\npath = app.bin\n"
             "address = 0x08004000\n",
             app_patches);
    puts_(&f->vol.fs, "Projects/01_Widget/02_App/job.ini", ini);
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "1\r\n");
    char text[256];
    snprintf(text, sizeof text, "1,8000000,1:00\r\n%s\r\n", line);
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt", text);
    assert_int_equal(load(f), 0);
}

/* A patch is laid by the job whose bytes or sectors it lies in, so that no later job's erase
 * removes it: in the later job's bytes, in its sector beside its bytes, in nobody's sector, and in
 * the earlier job's bytes; the device holds both jobs' data and every patch. A patch in the bytes
 * or sectors of a job with `patches = no`, or with no job taking patches, is refused before
 * anything is taken. */
static void test_patches_with_several_jobs(void **state)
{
    struct fixture *f = *state;
    uint8_t boot[1000], app[2000];
    firmware(boot, sizeof boot, 11);
    firmware(app, sizeof app, 12);
    two_job_patch_setup(f, "yes", "yes",
                        "4,8004010,2:BBBB,80047F0,2:CCCC,800A000,2:DDDD,8000010,2:EEEE");
    struct mf_cycle_result r;
    if (cycle(f, 0, MF_ACTION_AUTO, &r) != 0)
        fail_msg("%s", r.message);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    memcpy(boot + 0x10, "\xEE\xEE", 2);
    memcpy(app + 0x10, "\xBB\xBB", 2);
    assert_memory_equal(mem, boot, sizeof boot);
    assert_memory_equal(mem + 0x4000, app, sizeof app);
    assert_memory_equal(mem + 0x47F0, "\xCC\xCC", 2);
    assert_memory_equal(mem + 0xA000, "\xDD\xDD", 2);
    size_t programmed = 0;
    for (size_t i = 0; i < size; i++)
        programmed += mem[i] != 0xFF;
    size_t expected = 0;
    for (size_t i = 0; i < sizeof boot; i++)
        expected += boot[i] != 0xFF;
    for (size_t i = 0; i < sizeof app; i++)
        expected += app[i] != 0xFF;
    assert_int_equal(programmed, expected + 4);
    free(mem);

    /* The later job takes no patches: a patch in its bytes or its sector is refused (it would be
     * erased, or laid over a job that wants none); in nobody's sector the first job lays it. */
    const char *refused[] = {"1,8004010,2:BBBB", "1,80047F0,2:CCCC"};
    for (size_t i = 0; i < 2; i++) {
        two_job_patch_setup(f, "yes", "no", refused[i]);
        assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), MF_ECONFLICT);
        assert_false(r.consumed);
        assert_int_equal(r.failure, MF_FAIL_DEVICE_DATA); /* #ERR212 */
        char want[160];
        snprintf(want, sizeof want,
                 "patch 1 at 0x%s is in the bytes or sectors of job App, which takes no patches "
                 "(patches = no)",
                 i == 0 ? "8004010" : "80047F0");
        if (!strstr(r.message, want))
            fail_msg("'%s' lacks '%s'", r.message, want);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 1);
    }
    two_job_patch_setup(f, "yes", "no", "1,800A000,2:DDDD");
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0);
    mem = flash(f, 2, &size);
    assert_memory_equal(mem + 0xA000, "\xDD\xDD", 2);
    firmware(app, sizeof app, 12);
    assert_memory_equal(mem + 0x4000, app, sizeof app);
    free(mem);

    two_job_patch_setup(f, "no", "no", "1,800A000,2:DDDD");
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), MF_ECONFLICT);
    assert_false(r.consumed);
    assert_non_null(strstr(r.message, "patch 1: no job of project Widget takes patches"));
    /* #AUTO NOPATCH needs none. */
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .no_patch = true};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
}

/* A count or serial number file is rewritten with the line end its owner's editor wrote after the
 * number (CR LF, LF, a lone CR, or none), then blanks up to its old length. */
static void test_number_files_keep_their_line_end(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *before;
        uint64_t value;
        const char *after;
    } cases[] = {
        {"5\r\n", 4, "4\r\n"},   {"5\n", 4, "4\n"},         {"5\r", 4, "4\r"},
        {"5", 4, "4"},           {"10\r", 9, "9\r "},       {"9\r", 10, "10\r"},
        {"10\r\n", 9, "9\r\n "}, {"7 \n\r\n", 6, "6\n   "}, {"8\r\r\n", 7, "7\r  "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        puts_(&f->vol.fs, "Cntdown.txt", cases[i].before);
        assert_int_equal(mf_numfile_write(&f->vol.fs, "Cntdown.txt", cases[i].value), 0);
        char *text = get(&f->vol.fs, "Cntdown.txt");
        if (strcmp(text, cases[i].after) != 0)
            fail_msg("'%s' -> %llu gave '%s', want '%s'", cases[i].before,
                     (unsigned long long)cases[i].value, text, cases[i].after);
        free(text);
    }
}

/* Serial.txt advances in every cycle also when no job programs the number and no list needs it:
 * FLASHER.LOG names the number each device took (the reference's ATE does so too). */
static void test_serial_taken_without_a_serial_field(void **state)
{
    struct fixture *f = *state;
    uint8_t app[256];
    firmware(app, sizeof app, 3);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "123123-123\r\n");
    /* An SNList.txt no job uses is not read: its one line selects nothing here. */
    puts_(&f->vol.fs, "Projects/01_Widget/SNList.txt", "A1B2C3D4\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_true(r.has_serial);
    assert_int_equal(r.serial, 123123);
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(r.serial, 123124);
    char *text = get(&f->vol.fs, "Projects/01_Widget/Serial.txt");
    assert_string_equal(text, "123125\r\n    ");
    free(text);
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    assert_true(line_matches(
        log, ".* slot 2 AUTO project \"Widget\" uid [0-9A-F]{24} serial 123124 OK .*"));
    free(log);
}

/* A FLASHER.INI brought from the reference runs: its keys for functions this programmer has not
 * are listed for the log and change nothing; a key nobody knows is an error naming the line. */
static void test_flasher_ini_reference_keys(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "1");
    puts_(&f->vol.fs, "FLASHER.INI",
          "[CONFIG]\r\nProject = \"Widget\"\r\nShowDatCRCAfterProgramming = \"1\"\r\n"
          "AutoPowerOffOnIdle = \"300\"\r\n");
    if (load(f) != 0)
        fail_msg("%s", f->message);
    assert_string_equal(f->setup.ignored_keys,
                        "FLASHER.INI:3: ShowDatCRCAfterProgramming, FLASHER.INI:4: "
                        "AutoPowerOffOnIdle");
    assert_string_equal(mf_setup_project(&f->setup)->name, "Widget");
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);

    puts_(&f->vol.fs, "FLASHER.INI", "[CONFIG]\nProject = Widget\nProjct = Widget\n");
    assert_int_equal(load(f), MF_EFORMAT);
    assert_string_equal(f->message,
                        "FLASHER.INI:3: unknown key 'Projct' in [CONFIG] (known: Project, "
                        "LogMaxKiB, Reservation; the reference's AutoPowerOffOnIdle and "
                        "ShowDatCRCAfterProgramming are ignored)");
    puts_(&f->vol.fs, "FLASHER.INI", "[CONFIG]\nProject = Widget\n");
    assert_int_equal(load(f), 0);
    assert_string_equal(f->setup.ignored_keys, "");
}

/* Patches across the sectors of two jobs on 1 KiB sectors (Boot at 0x08000000, App after it):
 * each refused before anything is taken, naming why, where laying it would lose bytes: over the
 * bytes of both jobs (with App erasing by sectors or not at all), in Boot's bytes and App's
 * sector (App's erase would remove its tail), in App's bytes and Boot's sector (App's erase would
 * remove Boot's bytes). A patch in Boot's bytes and a sector nobody uses is laid by Boot. */
static void test_patches_across_two_jobs_sectors(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint32_t boot_size, app_at, app_size;
        const char *app_erase, *line, *message;
    } cases[] = {
        {0x400, 0x400, 0x400, "sectors", "1,80003FE,4:A1A2A3A4",
         "patch 1 at 0x80003FE lies in the bytes of two jobs (Boot and App)"},
        {0x400, 0x400, 0x400, "none", "1,80003FE,4:A1A2A3A4",
         "patch 1 at 0x80003FE lies in the bytes of two jobs (Boot and App)"},
        {0x3F0, 0x420, 0x100, "sectors",
         "1,80003EE,20:0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20",
         "patch 1 at 0x80003EE lies in the sector at 0x8000400, which job App erases after job "
         "Boot laid the patch"},
        {0x3F0, 0x400, 0x100, "sectors", "1,80003F8,10:0102030405060708090A0B0C0D0E0F10",
         "patch 1 at 0x80003F8: job App, which lays it, would erase the sector at 0x8000000 with "
         "bytes of job Boot"},
        {0x3F0, 0x800, 0x100, "sectors",
         "1,80003EE,20:0102030405060708090A0B0C0D0E0F10"
         "1112131415161718191A1B1C1D1E1F20",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t boot[0x500], app[0x400];
        firmware(boot, cases[i].boot_size, 21);
        firmware(app, cases[i].app_size, 22);
        char ini[256];
        put(&f->vol.fs, "Projects/01_Widget/01_Boot/boot.bin", boot, cases[i].boot_size);
        puts_(&f->vol.fs, "Projects/01_Widget/01_Boot/job.ini",
              "[job]\ndevice = SIM-F1-64K\n[file]\npath = boot.bin\naddress = 0x08000000\n");
        put(&f->vol.fs, "Projects/01_Widget/02_App/app.bin", app, cases[i].app_size);
        snprintf(ini, sizeof ini,
                 "[job]\ndevice = SIM-F1-64K\nerase = %s\n[file]\npath = app.bin\n"
                 "address = 0x%X\n",
                 cases[i].app_erase, 0x08000000u + cases[i].app_at);
        puts_(&f->vol.fs, "Projects/01_Widget/02_App/job.ini", ini);
        puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
        puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "1\r\n");
        char text[256];
        snprintf(text, sizeof text, "1,8000000,1:00\r\n%s\r\n", cases[i].line);
        puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt", text);
        if (load(f) != 0)
            fail_msg("case %zu: %s", i, f->message);
        assert_int_equal(
            mf_sim_replace(f->sim_dir, 1, mf_profile_find("SIM-F1-64K"), NULL, NULL, NULL, 0), 0);
        struct mf_cycle_result r;
        int err = cycle(f, 0, MF_ACTION_AUTO, &r);
        if (cases[i].message) {
            if (err != MF_ECONFLICT || !strstr(r.message, cases[i].message))
                fail_msg("case %zu: %d '%s', want '%s'", i, err, r.message, cases[i].message);
            assert_false(r.consumed);
            assert_int_equal(r.failure, MF_FAIL_DEVICE_DATA);
            assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
            continue;
        }
        if (err)
            fail_msg("case %zu: %s", i, r.message);
        size_t size;
        uint8_t *mem = flash(f, 1, &size);
        for (uint32_t k = 0; k < 0x20; k++)
            boot[0x3EE + k] = (uint8_t)(k + 1); /* the patch, over Boot's tail and beyond */
        assert_memory_equal(mem, boot, 0x40E);
        assert_memory_equal(mem + cases[i].app_at, app, cases[i].app_size);
        free(mem);
    }
}

/* Projects/<project>/01_App: `size` bytes of `app` at 0x08000000 on a SIM-F1-64K. */
static void put_app_project(struct fixture *f, const char *project, const uint8_t *app, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "Projects/%s/01_App/app.bin", project);
    put(&f->vol.fs, path, app, size);
    snprintf(path, sizeof path, "Projects/%s/01_App/job.ini", project);
    puts_(&f->vol.fs, path,
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n");
}

/* A project is found by its name as the FAT volume finds its folder: without regard to case, also
 * beyond ASCII (`#SELECT CAFÉ` selects `01_Café`), with or without its prefix. */
static void test_project_names_beyond_ascii(void **state)
{
    struct fixture *f = *state;
    uint8_t app[64];
    firmware(app, sizeof app, 5);
    put_app_project(f, "01_Café", app, sizeof app);
    put_app_project(f, "02_Ωmega", app, sizeof app);
    puts_(&f->vol.fs, "FLASHER.INI", "[CONFIG]\nProject = ΩMEGA\n");
    if (load(f) != 0)
        fail_msg("%s", f->message);
    assert_string_equal(mf_setup_project(&f->setup)->name, "Ωmega");
    unsigned index;
    const char *cafe[] = {"Café", "CAFÉ", "café", "01_CAFÉ"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(mf_setup_find(&f->setup, cafe[i], &index), 0);
        assert_int_equal(index, 0);
    }
    assert_int_equal(mf_setup_find(&f->setup, "Cafe", &index), MF_ENOENT);
    assert_int_equal(mf_setup_find(&f->setup,
                                   "CAF"
                                   "\x90",
                                   &index),
                     MF_ENOENT); /* not UTF-8 */
}

static void test_bad_inline_patch_is_refused(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "1");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .patch_line = "1,8000100,4:0102"};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_EFORMAT);
    assert_false(r.consumed);
    assert_non_null(strstr(r.message, "#AUTO PATCH"));
    req.patch_line = "1,20000000,1:00"; /* outside the flash */
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ERANGE);
    assert_false(r.consumed);
    req.patch_line = "1,800FFFD,4:01020304"; /* its last byte one past the flash's end */
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ERANGE);
    assert_string_equal(r.message, "patch 1: 0x800FFFD+4 is outside the flash of SIM-F1-64K");
    req.patch_line = "1,800F003,2:AABB"; /* over the serial number's last byte */
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ECONFLICT);
    assert_string_equal(r.message, "per-device data overlaps at 0x800F003 (the serial number of "
                                   "job App and patch 1)");
    assert_false(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
    /* Right before and right after the serial number, and up to the flash's last byte: all laid
     * down. */
    req.patch_line = "3,800EFFE,2:CCDD,800F004,2:AABB,800FFFC,4:01020304";
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_int_equal(size, 0x10000);
    assert_memory_equal(mem + 0xEFFD, "\xFF\xCC\xDD\x01\x00\x00\x00\xAA\xBB\xFF", 10);
    assert_memory_equal(mem + 0xFFFB, "\xFF\x01\x02\x03\x04", 5);
    free(mem);
}

static void test_snlist_line(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "0");
    puts_(&f->vol.fs, "Projects/01_Widget/SNList.txt", "0102030405\nAABB\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_memory_equal(mem + 0xF000, "\x01\x02\x03\x04", 4); /* longer line: cut */
    free(mem);
    mem = flash(f, 2, &size);
    assert_memory_equal(mem + 0xF000, "\xAA\xBB\x00\x00", 4); /* shorter: zero-filled */
    free(mem);
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), MF_ENOENT); /* list used up */
    assert_false(r.consumed);
}

/* Project Widget: one SIM-F4-1M job of `n` firmware bytes (seed `seed`, returned, malloc'd) at
 * 0x08000000 with `verify`, and `more` (sections) in its job.ini. */
static uint8_t *one_file_job(struct fixture *f, size_t n, uint32_t seed, const char *verify,
                             const char *more)
{
    uint8_t *app = malloc(n);
    firmware(app, n, seed);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, n);
    char job[256];
    snprintf(job, sizeof job,
             "[job]\ndevice = SIM-F4-1M\nverify = %s\n[file]\npath = app.bin\n"
             "address = 0x08000000\n%s",
             verify, more);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini", job);
    return app;
}

/* Whole 64 KiB windows of data go to the device straight from the data read (no copy into the
 * window); a window with an overlay (the serial number) or only partly covered is collected as
 * before. The device holds exactly the data, the serial number and nothing else; a bit that
 * flips in a window sent straight is found by the CRC verify and by the readback verify, with
 * its address. */
static void whole_windows(struct fixture *f, const char *verify, uint32_t flip, bool held)
{
    if (!held)
        f->area.area.hold_max = 0; /* every cycle reads the file */
    size_t n = 0x40000 + 0x123;    /* windows 0, 1 and 3 whole, 2 with the serial, 4 partly */
    uint8_t *app = one_file_job(f, n, 9, verify, "[serial]\naddress = 0x08020010\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "4660\r\n");
    assert_int_equal(load(f), 0);
    assert_true((mf_setup_project(&f->setup)->jobs[0].files[0].held != NULL) == held);
    struct mf_cycle_result r;
    if (flip) {
        reopen_flipping(f, flip);
        assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EVERIFY);
        char want[64];
        snprintf(want, sizeof want, "verify failed at 0x%X ", FLASH_BASE + flip);
        if (!strstr(r.message, want))
            fail_msg("\"%s\" does not name 0x%X", r.message, FLASH_BASE + flip);
        free(app);
        return;
    }
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    memcpy(app + 0x20010, "\x34\x12\x00\x00", 4);
    assert_memory_equal(mem, app, n);
    for (size_t i = n; i < 0x60000; i++)
        assert_int_equal(mem[i], 0xFF);
    free(mem);
    /* A verify alone passes over the same windows and leaves the serial number out, also where
     * it lies over the data (docs/protocol.md, #VERIFY). */
    if (cycle(f, 0, MF_ACTION_VERIFY, &r) != 0)
        fail_msg("verify alone: %s", r.message);
    free(app);
}

static void test_whole_windows_from_the_data(void **state)
{
    whole_windows(*state, "crc", 0, true);
}

static void test_whole_windows_streamed(void **state)
{
    whole_windows(*state, "crc", 0, false);
}

static void test_whole_windows_crc_finds_a_flipped_bit(void **state)
{
    whole_windows(*state, "crc", 0x30123, true);
}

static void test_whole_windows_streamed_crc_finds_a_flipped_bit(void **state)
{
    whole_windows(*state, "crc", 0x30123, false);
}

static void test_whole_windows_readback_finds_a_flipped_bit(void **state)
{
    whole_windows(*state, "readback", 0x1FFFF, true);
}

static void test_verify_failure_consumes_the_count(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    /* The device flips a bit after programming: verify fails after the count was taken. */
    reopen_flipping(f, 0x123);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EVERIFY);
    assert_true(r.consumed);
    assert_non_null(strstr(r.message, "verify failed at 0x8000123"));
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 101);
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    /* An error line has the timings too, and the job that failed. */
    assert_true(line_matches(log, "[-0-9]{10} [:0-9]{8} slot 1 AUTO project \"Widget\" uid "
                                  "[0-9A-F]{24} serial 100 ERROR job App: verify failed at "
                                  "0x8000123 \\(expected 0x[0-9A-F]{2}, read 0x[0-9A-F]{2}\\) "
                                  "\\(count consumed\\) \\(Total [0-9]+\\.[0-9]{3}s, Erase "
                                  "[0-9]+\\.[0-9]{3}s, Prog [0-9]+\\.[0-9]{3}s, Verify "
                                  "[0-9]+\\.[0-9]{3}s\\), 4 left, job \"App\""));
    free(log);
}

/* What a device sees of a verify: every read and CRC request, hashed in order. */
static const struct mf_target_ops *traced_ops;
static uint64_t trace_hash, trace_calls;

static void trace(char op, uint64_t address, uint64_t length)
{
    uint64_t words[3] = {(uint64_t)op, address, length};
    for (size_t i = 0; i < 3; i++)
        trace_hash = (trace_hash ^ words[i]) * 0x100000001B3ull;
    trace_calls++;
}

static int traced_read(struct mf_target *t, uint64_t address, void *buffer, uint32_t length)
{
    trace('r', address, length);
    return traced_ops->read(t, address, buffer, length);
}

static int traced_crc(struct mf_target *t, uint64_t address, uint64_t length, uint32_t *crc)
{
    trace('c', address, length);
    return traced_ops->crc(t, address, length, crc);
}

/* Sets the byte at `offset` of slot 1's flash.bin to `value` (the sim sees it at connect). */
static void poke_flash(struct fixture *f, size_t offset, uint8_t value)
{
    char path[512];
    snprintf(path, sizeof path, "%s/slot1/flash.bin", f->sim_dir);
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    assert_int_equal(fseek(file, (long)offset, SEEK_SET), 0);
    assert_int_equal(fputc(value, file), value);
    assert_int_equal(fclose(file), 0);
}

/* A setup that runs from the secure area (env.sealed): a verify that finds a difference names no
 * address and no byte, and the device sees the same requests wherever the difference is, or
 * whether there is one: a device under the factory's control learns one bit per verify, not the
 * firmware byte by byte (#VERIFY costs no count). In CRC and readback mode, after a program
 * pass (the runs' CRCs) and alone. */
static void sealed_verify(struct fixture *f, const char *verify)
{
    size_t n = 0x30123; /* whole windows and a partial one */
    uint8_t *app = one_file_job(f, n, 23, verify, "");
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "100\r\n");
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);

    static struct mf_target_ops ops;
    traced_ops = f->target[0].ops;
    ops = *traced_ops;
    ops.read = traced_read;
    ops.crc = traced_ops->crc ? traced_crc : NULL;
    f->target[0].ops = &ops;
    const size_t wrong[] = {SIZE_MAX, 0, n - 1, 0x1234, 0x10000, 0x2FFFF};
    uint64_t want_hash = 0, want_calls = 0;
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        if (wrong[i] != SIZE_MAX)
            poke_flash(f, wrong[i], (uint8_t)~app[wrong[i]]);
        trace_hash = 0xCBF29CE484222325ull;
        trace_calls = 0;
        int err = cycle(f, 0, MF_ACTION_VERIFY, &r);
        if (wrong[i] == SIZE_MAX) {
            assert_int_equal(err, 0);
            want_hash = trace_hash;
            want_calls = trace_calls;
            assert_true(want_calls > 0);
            continue;
        }
        assert_int_equal(err, MF_EVERIFY);
        assert_string_equal(r.message, "job App: verify failed (the setup runs from the secure "
                                       "area: where is not shown)");
        if (trace_hash != want_hash || trace_calls != want_calls)
            fail_msg("verify = %s, a difference at 0x%zX: the device saw %llu other requests",
                     verify, wrong[i], (unsigned long long)trace_calls);
        poke_flash(f, wrong[i], app[wrong[i]]);
    }
    f->target[0].ops = traced_ops; /* mf_sim_close knows its own */

    /* After a program pass: the device flips a bit of what it was given. The runs' CRCs are
     * all asked for, and the verify reports no place; the FLASHER.LOG line neither. */
    uint64_t auto_hash = 0, auto_calls = 0;
    const uint32_t flips[] = {0x123, 0x2FF00};
    for (size_t i = 0; i < 2; i++) {
        reopen_flipping(f, flips[i]);
        traced_ops = f->target[0].ops;
        ops = *traced_ops;
        ops.read = traced_read;
        ops.crc = traced_ops->crc ? traced_crc : NULL;
        f->target[0].ops = &ops;
        trace_hash = 0xCBF29CE484222325ull;
        trace_calls = 0;
        assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EVERIFY);
        f->target[0].ops = traced_ops;
        assert_true(r.consumed);
        assert_null(strstr(r.message, "0x"));
        if (i == 0) {
            auto_hash = trace_hash;
            auto_calls = trace_calls;
        } else if (trace_hash != auto_hash || trace_calls != auto_calls) {
            fail_msg("verify = %s after programming: the requests differ with the flipped bit",
                     verify);
        }
    }
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    assert_non_null(strstr(log, "verify failed (the setup runs from the secure area"));
    assert_null(strstr(log, "expected 0x"));
    assert_null(strstr(log, "CRC mismatch"));
    free(log);
    free(app);
}

static void test_sealed_verify_crc_names_nothing(void **state)
{
    sealed_verify(*state, "crc");
}

static void test_sealed_verify_readback_names_nothing(void **state)
{
    sealed_verify(*state, "readback");
}

/* #AUTO PATCH changes the owner's bytes: from the secure area only in a job whose job.ini allows
 * it (operator_patches = yes), refused before anything is taken otherwise; Patches.txt (the
 * owner's) and the public area are as before. */
static void test_sealed_operator_patches(void **state)
{
    struct fixture *f = *state;
    uint8_t app[4096];
    firmware(app, sizeof app, 29);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    const char *job = "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n";
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini", job);
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .patch_line = "1,8000000,4:41414141"};
    struct mf_cycle_result r;
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ECONFLICT);
    assert_int_equal(r.failure, MF_FAIL_DEVICE_DATA);
    assert_false(r.consumed);
    assert_string_equal(r.message, "#AUTO PATCH: patch 1 at 0x8000000 is in job App, which runs "
                                   "from the secure area and takes no patches from the operator "
                                   "(operator_patches = no)");
    size_t size;
    if (device_made(f, 1)) {
        uint8_t *mem = flash(f, 1, &size);
        assert_int_not_equal(mem[0], 0x41);
        free(mem);
    }
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);

    /* Not sealed (the public area: whoever runs it can change job.ini anyway): laid down. */
    f->env.sealed = false;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[1], &req, &r), 0);
    uint8_t *mem = flash(f, 2, &size);
    assert_memory_equal(mem, "AAAA", 4);
    free(mem);

    /* The owner allows it. */
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\noperator_patches = yes\n[file]\npath = app.bin\n"
          "address = 0x08000000\n");
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
    mem = flash(f, 3, &size);
    assert_memory_equal(mem, "AAAA", 4);
    assert_memory_equal(mem + 4, app + 4, sizeof app - 4);
    free(mem);
}

/* #AUTO NOPATCH leaves out the owner's Patches.txt line: from the secure area refused before
 * anything is taken unless every job takes patches from the operator; in the public area, and
 * where the owner allows it, the data goes as it is and the line is still taken. */
static void test_sealed_nopatch(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "10", "1");
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt",
          "x\r\n1,8000010,2:0000\r\n1,8000010,2:0000\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .no_patch = true};
    struct mf_cycle_result r;
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ECONFLICT);
    assert_int_equal(r.failure, MF_FAIL_DEVICE_DATA);
    assert_false(r.consumed);
    assert_false(r.has_serial);
    assert_string_equal(r.message,
                        "#AUTO NOPATCH: Projects/01_Widget/Patches.txt came with the owner's "
                        "setup, which runs from the secure area, and not every job of it takes "
                        "patches from the operator (operator_patches = no): its line is not left "
                        "out");
    size_t size;
    if (device_made(f, 1)) { /* connected for its UID, never erased or programmed */
        uint8_t *blank = flash(f, 1, &size);
        for (size_t i = 0; i < size; i++)
            assert_int_equal(blank[i], 0xFF);
        free(blank);
    }
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 1);

    /* Without NOPATCH the owner's line goes on. */
    req.no_patch = false;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[1], &req, &r), 0);
    uint8_t *mem = flash(f, 2, &size);
    assert_memory_equal(mem + 0x10, "\0\0", 2);
    free(mem);

    /* The owner lets the operator patch every job: NOPATCH is the operator's to choose. */
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\noperator_patches = yes\n[file]\npath = app.bin\n"
          "address = 0x08000000\n[serial]\naddress = 0x0800F000\nlength = 4\nencoding = le\n");
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    req.no_patch = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
    assert_true(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 3);
}

/* #AUTO PATCH applies its line instead of Patches.txt: from the secure area, where the owner's
 * Patches.txt holds data for a job that takes no patches from the operator, a line into a job that
 * does would leave the owner's line out as #AUTO NOPATCH would, so it is refused the same way
 * before anything is taken; without Patches.txt, or where every job takes the operator's patches,
 * it goes on. */
static void test_sealed_patch_keeps_the_owners_line(void **state)
{
    struct fixture *f = *state;
    uint8_t boot[1000], app[2000];
    firmware(boot, sizeof boot, 11);
    firmware(app, sizeof app, 12);
    put(&f->vol.fs, "Projects/01_Widget/01_Boot/boot.bin", boot, sizeof boot);
    puts_(&f->vol.fs, "Projects/01_Widget/01_Boot/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = boot.bin\naddress = 0x08000000\n");
    put(&f->vol.fs, "Projects/01_Widget/02_App/app.bin", app, sizeof app);
    puts_(&f->vol.fs, "Projects/01_Widget/02_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\noperator_patches = yes\n[file]\npath = app.bin\n"
          "address = 0x08004000\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "1\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt", "x\r\n1,8000010,2:AAAA\r\n");
    assert_int_equal(load(f), 0);
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .patch_line = "1,8004010,2:BBBB"};
    struct mf_cycle_result r;
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ECONFLICT);
    assert_int_equal(r.failure, MF_FAIL_DEVICE_DATA);
    assert_false(r.consumed);
    assert_false(r.has_serial);
    assert_string_equal(r.message,
                        "#AUTO PATCH: Projects/01_Widget/Patches.txt came with the owner's "
                        "setup, which runs from the secure area, and not every job of it takes "
                        "patches from the operator (operator_patches = no): its line is not left "
                        "out");
    size_t size;
    if (device_made(f, 1)) { /* connected for its UID, never erased or programmed */
        uint8_t *blank = flash(f, 1, &size);
        for (size_t i = 0; i < size; i++)
            assert_int_equal(blank[i], 0xFF);
        free(blank);
    }
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 1);

    /* No Patches.txt: the operator's line goes into the job that takes it. */
    assert_int_equal(mf_fat_remove(&f->vol.fs, "Projects/01_Widget/Patches.txt"), 0);
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[1], &req, &r), 0);
    uint8_t *mem = flash(f, 2, &size);
    assert_memory_equal(mem + 0x4010, "\xBB\xBB", 2);
    assert_memory_equal(mem + 0x10, boot + 0x10, 2);
    free(mem);

    /* A job that takes no patches at all (patches = no) holds none of the owner's: the line into
     * the job that takes the operator's goes on beside Patches.txt. */
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt", "x\r\nx\r\n1,8004020,2:AAAA\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/01_Boot/job.ini",
          "[job]\ndevice = SIM-F1-64K\npatches = no\n[file]\npath = boot.bin\n"
          "address = 0x08000000\n");
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[2], &req, &r), 0);
    mem = flash(f, 3, &size);
    assert_memory_equal(mem + 0x4010, "\xBB\xBB", 2);
    assert_memory_equal(mem + 0x4020, app + 0x20, 2);
    free(mem);

    /* Every job takes the operator's patches: the line is the operator's to give. */
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt", "x\r\nx\r\nx\r\n1,8000010,2:AAAA\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/01_Boot/job.ini",
          "[job]\ndevice = SIM-F1-64K\noperator_patches = yes\n[file]\npath = boot.bin\n"
          "address = 0x08000000\n");
    assert_int_equal(load(f), 0);
    f->env.sealed = true;
    assert_int_equal(mf_cycle_run(&f->env, f->slot[3], &req, &r), 0);
    mem = flash(f, 4, &size);
    assert_memory_equal(mem + 0x4010, "\xBB\xBB", 2);
    assert_memory_equal(mem + 0x10, boot + 0x10, 2);
    free(mem);
}

/* An area that counts the bytes read from one file and passes everything to the FAT area. */
struct counting_area {
    struct mf_area area;
    struct mf_area *inner;
    const char *path;
    uint64_t bytes;
};

static int counting_read(struct mf_area *area, const char *path, uint64_t offset, void *buffer,
                         size_t length)
{
    struct counting_area *c = (struct counting_area *)area;
    if (strcmp(path, c->path) == 0)
        c->bytes += length;
    return c->inner->read(c->inner, path, offset, buffer, length);
}

/* From now on the fixture's cycles read through `counter`, counting the basic setup's app.bin. */
static void count_reads(struct fixture *f, struct counting_area *counter)
{
    *counter =
        (struct counting_area){.inner = &f->area.area, .path = "Projects/01_Widget/01_App/app.bin"};
    counter->area = f->area.area;
    counter->area.read = counting_read;
    f->env.area = &counter->area;
}

/* Verify by CRC checks what the program pass wrote against the device's CRCs: the data file is
 * read once per cycle. A readback verify, and verify alone, read it again. A CRC mismatch still
 * names the first differing byte (test_verify_failure_consumes_the_count). */
static void test_crc_verify_reads_the_data_once(void **state)
{
    struct fixture *f = *state;
    f->area.area.hold_max = 0; /* streamed: kept in memory, it is not read at all (below) */
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    struct counting_area counter;
    count_reads(f, &counter);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(counter.bytes, 3000);
    counter.bytes = 0;
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), 0);
    assert_int_equal(counter.bytes, 3000);

    /* Readback: the data goes past the device twice. */
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\nverify = readback\n[file]\npath = app.bin\n"
          "address = 0x08000000\n");
    assert_int_equal(load(f), 0);
    f->env.area = &counter.area;
    counter.bytes = 0;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(counter.bytes, 6000);
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    size_t size;
    uint8_t *bytes = flash(f, 1, &size);
    assert_memory_equal(bytes, app, sizeof app);
    free(bytes);
}

/* A setup in the public area keeps its data files in memory (mf_area.hold_max): no cycle reads
 * them, whatever the action and the verify mode; the devices get the data all the same. */
static void test_held_data_is_not_read_by_cycles(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    assert_non_null(mf_setup_project(&f->setup)->jobs[0].files[0].held);
    struct counting_area counter;
    count_reads(f, &counter);
    /* The load reads the file once (the scan, which keeps it; the fingerprint hashes what it
     * kept) and its head once, for the format. The fingerprint is the one read from the files. */
    mf_setup_free(&f->setup);
    f->loaded = false;
    assert_int_equal(
        mf_setup_load(&f->setup, &counter.area, f->buffer, sizeof f->buffer, f->message), 0);
    f->loaded = true;
    assert_int_equal(counter.bytes, 3000 + MF_IMAGE_DETECT_BYTES);
    uint8_t read_back[32];
    assert_int_equal(mf_setup_fingerprint(&f->area.area, f->buffer, sizeof f->buffer, read_back),
                     0);
    assert_memory_equal(read_back, f->setup.fingerprint, 32);
    counter.bytes = 0;
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), 0);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\nverify = readback\n[file]\npath = app.bin\n"
          "address = 0x08000000\n");
    assert_int_equal(load(f), 0);
    f->env.area = &counter.area;
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(counter.bytes, 0);
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    for (unsigned slot = 1; slot <= 2; slot++) {
        size_t size;
        uint8_t *bytes = flash(f, slot, &size);
        assert_memory_equal(bytes, app, sizeof app);
        free(bytes);
    }
}

/* The CRC of a device that refuses it at run time (a GDB server without qCRC, say). */
static int crc_refused(struct mf_target *t, uint64_t address, uint64_t length, uint32_t *crc)
{
    (void)t;
    (void)address;
    (void)length;
    (void)crc;
    return MF_ENOTSUP;
}

/* Where a flip in held data is found: before anything is reserved or connected (no count, no
 * device), in the program pass (the count taken, the device erased, nothing of the file on it),
 * or by the verify (the device programmed). */
enum found { EARLY, IN_PASS, BY_VERIFY };

/* A held file of 0x20000 + 0x123 bytes at the flash's start (two whole windows and a partial
 * one), with `extra` in its job.ini and a count of 10; after one good cycle, byte `at` of the
 * held copy flips (a bit that went bad in memory). The next cycle (`action`, slot 2's new
 * device) must fail with `error` where `found` says, its message holding `text`: never program
 * the flipped byte into a device and call it good. */
static void held_flip(struct fixture *f, const char *extra, uint32_t at,
                      enum mf_cycle_action action, int error, enum found found, const char *text)
{
    size_t n = 0x20123;
    uint8_t *app = malloc(n);
    firmware(app, n, 13);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, n);
    char job[256];
    snprintf(job, sizeof job,
             "[job]\ndevice = SIM-F4-1M\n%s[file]\npath = app.bin\naddress = 0x08000000\n%s",
             strncmp(extra, "verify", 6) == 0 ? extra : "",
             strncmp(extra, "verify", 6) == 0 ? "" : extra);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini", job);
    puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", "7\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
    assert_int_equal(load(f), 0);
    const struct mf_datafile *file = &mf_setup_project(&f->setup)->jobs[0].files[0];
    assert_non_null(file->held);
    assert_int_equal(file->block_count, 3); /* two whole windows, the 0x123 bytes after them */
    size_t count;
    const struct mf_image_segment *seg = mf_image_segments(file->held, &count);
    assert_int_equal(count, 1);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    ((uint8_t *)seg[0].data)[at] ^= 0x40;
    assert_int_equal(cycle(f, 1, action, &r), error);
    if (!strstr(r.message, text))
        fail_msg("\"%s\" does not say \"%s\"", r.message, text);
    assert_int_equal(r.failure, found == BY_VERIFY && error == MF_EVERIFY ? MF_FAIL_VERIFY
                                                                          : MF_FAIL_DATA_FILE);
    assert_int_equal(r.consumed, found != EARLY && action != MF_ACTION_VERIFY);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), r.consumed ? 8 : 9);
    char path[512];
    snprintf(path, sizeof path, "%s/slot2/flash.bin", f->sim_dir);
    FILE *device = fopen(path, "rb");
    if (found == EARLY && device)
        fail_msg("the device was connected");
    if (device)
        fclose(device);
    if (found == IN_PASS) {
        /* Stopped before the program pass: nothing of the file reached the device. */
        size_t size;
        uint8_t *mem = flash(f, 2, &size);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(mem[k], 0xFF);
        free(mem);
    }
    free(app);
}

/* A whole window sent as held goes with the CRC taken at the load: the device's CRC differs, and
 * the held bytes are found to be the cause (102, not a verify failure of the device). */
static void test_held_flip_in_a_whole_window(void **state)
{
    held_flip(*state, "", 0x10005, MF_ACTION_AUTO, MF_ECORRUPT, BY_VERIFY,
              "app.bin: the data held in memory for 0x8010000-0x801FFFF changed since the setup "
              "was loaded");
}

/* Programmed without a verify, the same window is checked before anything is programmed. */
static void test_held_flip_programmed_alone(void **state)
{
    held_flip(*state, "", 0x10005, MF_ACTION_PROGRAM, MF_ECORRUPT, EARLY,
              "for 0x8010000-0x801FFFF changed");
}

/* The partial window at the end, the window holding the serial number, and every window when the
 * verify reads back or there is none, are checked against the load's CRCs before anything is
 * programmed. */
static void test_held_flip_in_a_partial_window(void **state)
{
    held_flip(*state, "", 0x20100, MF_ACTION_AUTO, MF_ECORRUPT, EARLY,
              "app.bin: the data held in memory for 0x8020000-0x8020122 changed since the setup "
              "was loaded");
}

static void test_held_flip_in_the_serial_window(void **state)
{
    held_flip(*state, "[serial]\naddress = 0x08010010\n", 0x10005, MF_ACTION_AUTO, MF_ECORRUPT,
              IN_PASS, "for 0x8010000-0x801FFFF changed");
}

static void test_held_flip_with_readback_verify(void **state)
{
    held_flip(*state, "verify = readback\n", 0x5, MF_ACTION_AUTO, MF_ECORRUPT, EARLY,
              "for 0x8000000-0x800FFFF changed");
}

/* Such a device is read back instead: the held bytes it is compared with are checked against
 * the load's CRC first (the flipped byte was programmed: the verify catches it). */
static void test_held_flip_when_the_device_refuses_the_crc(void **state)
{
    struct fixture *f = *state;
    static struct mf_target_ops ops;
    const struct mf_target_ops *sim = f->target[1].ops;
    ops = *sim;
    ops.crc = crc_refused;
    f->target[1].ops = &ops;
    held_flip(f, "", 0x10005, MF_ACTION_AUTO, MF_ECORRUPT, BY_VERIFY,
              "for 0x8010000-0x801FFFF changed");
    f->target[1].ops = sim; /* mf_sim_close knows its own */
}

/* A bit that flips while the program pass runs (after its checks), in a block programmed later,
 * with no verify pass to check again (a readback's pass would, at its start): the check after
 * the job's passes finds it. */
static uint8_t *flip_in_program; /* the held byte the next program call flips first */
static const struct mf_target_ops *sim_ops;

/* Slot 1's device with the sim's operations in a copy the caller changes one of (restore
 * f->target[0].ops = sim_ops before the fixture closes the sim). */
static struct mf_target_ops *sim_ops_of_slot1(struct fixture *f)
{
    static struct mf_target_ops ops;
    sim_ops = f->target[0].ops;
    ops = *sim_ops;
    f->target[0].ops = &ops;
    return &ops;
}

static int program_then_flip(struct mf_target *t, uint64_t address, const void *data,
                             uint32_t length)
{
    if (flip_in_program)
        *flip_in_program ^= 0x40;
    flip_in_program = NULL;
    return sim_ops->program(t, address, data, length);
}

static void test_held_flip_during_the_program_pass(void **state)
{
    struct fixture *f = *state;
    size_t n = 0x20123;
    uint8_t *app = malloc(n);
    firmware(app, n, 17);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, n);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F4-1M\nverify = none\n[file]\npath = app.bin\n"
          "address = 0x08000000\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10\r\n");
    assert_int_equal(load(f), 0);
    size_t count;
    const struct mf_image_segment *seg =
        mf_image_segments(mf_setup_project(&f->setup)->jobs[0].files[0].held, &count);
    static struct mf_target_ops ops;
    sim_ops = f->target[0].ops;
    ops = *sim_ops;
    ops.program = program_then_flip;
    f->target[0].ops = &ops;
    flip_in_program = (uint8_t *)seg[0].data + 0x20100;
    struct mf_cycle_result r;
    int err = cycle(f, 0, MF_ACTION_AUTO, &r);
    f->target[0].ops = sim_ops; /* mf_sim_close knows its own */
    assert_int_equal(err, MF_ECORRUPT);
    assert_int_equal(r.failure, MF_FAIL_DATA_FILE);
    assert_true(r.consumed);
    assert_non_null(strstr(r.message, "for 0x8020000-0x8020122 changed since the setup"));
    free(app);
}

static void test_held_flip_without_verify(void **state)
{
    held_flip(*state, "verify = none\n", 0x5, MF_ACTION_AUTO, MF_ECORRUPT, EARLY,
              "for 0x8000000-0x800FFFF changed");
}

/* The load's fingerprint takes held raw binaries from memory: the same as read from the files,
 * also where job.ini spells a name in another case than the folder. */
static void test_fingerprint_from_held_data(void **state)
{
    struct fixture *f = *state;
    uint8_t app[5000], boot[700];
    firmware(app, sizeof app, 31);
    firmware(boot, sizeof boot, 32);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    put(&f->vol.fs, "Projects/01_Widget/01_App/boot.bin", boot, sizeof boot);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = APP.BIN\naddress = 0x08001000\n"
          "[file]\npath = boot.bin\naddress = 0x08000000\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "3\r\n");
    assert_int_equal(load(f), 0);
    assert_int_equal(mf_setup_project(&f->setup)->error, 0);
    assert_non_null(mf_setup_project(&f->setup)->jobs[0].files[0].held);
    uint8_t read_back[32];
    assert_int_equal(mf_setup_fingerprint(&f->area.area, f->buffer, sizeof f->buffer, read_back),
                     0);
    assert_memory_equal(read_back, f->setup.fingerprint, 32);
}

/* What is held is bounded by hold_max: the selected project's files first, then the others in
 * order, each file whole or not at all; files over the limit are streamed, and all run. */
static void test_held_data_bounded_selected_first(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"01_A", "02_B", "03_C"};
    uint8_t app[40000];
    for (unsigned i = 0; i < 3; i++) {
        firmware(app, sizeof app, 20 + i);
        put_app_project(f, names[i], app, sizeof app);
    }
    puts_(&f->vol.fs, "FLASHER.INI", "[CONFIG]\nProject = 02_B\n");
    f->area.area.hold_max = 2 * sizeof app - 1; /* room for one file */
    assert_int_equal(load(f), 0);
    assert_null(f->setup.projects[0].jobs[0].files[0].held);
    assert_non_null(f->setup.projects[1].jobs[0].files[0].held);
    assert_null(f->setup.projects[2].jobs[0].files[0].held);
    f->area.area.hold_max = 2 * sizeof app;
    assert_int_equal(load(f), 0);
    assert_non_null(f->setup.projects[0].jobs[0].files[0].held);
    assert_non_null(f->setup.projects[1].jobs[0].files[0].held);
    assert_null(f->setup.projects[2].jobs[0].files[0].held);
    /* A project that cannot run keeps nothing by choice: its job's second file is not raw
     * binary as it says (no address), so the first one, scanned and kept, is let go. */
    puts_(&f->vol.fs, "Projects/01_A/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
          "[file]\npath = app.bin\nformat = bin\n");
    assert_int_equal(load(f), 0);
    assert_int_not_equal(f->setup.projects[0].error, 0);
    assert_null(f->setup.projects[0].jobs[0].files[0].held);
    assert_non_null(f->setup.projects[1].jobs[0].files[0].held);
    assert_non_null(f->setup.projects[2].jobs[0].files[0].held); /* the room A left */
    puts_(&f->vol.fs, "Projects/01_A/01_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n");
    assert_int_equal(load(f), 0);
    /* Held or not, every project programs its own data. */
    for (unsigned i = 0; i < 3; i++) {
        f->setup.selected = i;
        struct mf_cycle_result r;
        assert_int_equal(cycle(f, i, MF_ACTION_AUTO, &r), 0);
        size_t size;
        uint8_t *bytes = flash(f, i + 1, &size);
        firmware(app, sizeof app, 20 + i);
        assert_memory_equal(bytes, app, sizeof app);
        free(bytes);
    }
}

static void test_connect_failure_consumes_nothing(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    mf_sim_close(&f->target[0]);
    struct mf_sim_options o = {.faults.connect = {MF_SIM_FAULT_ALWAYS, 0}};
    assert_int_equal(mf_sim_open(&f->target[0], f->sim_dir, 1, &o), 0);
    struct mf_cycle_reserved reserved = {0};
    f->env.reserved = &reserved;
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EIO);
    assert_false(r.consumed);
    /* The count promised while connecting is given back: no slot finds it taken later. */
    assert_int_equal(reserved.total, 0);
    assert_int_equal(reserved.project[0], 0);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 5);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 100);
}

static void test_program_failure_after_authorization(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    mf_sim_close(&f->target[0]);
    struct mf_sim_options o = {.faults.program = {MF_SIM_FAULT_ALWAYS, 1000}};
    assert_int_equal(mf_sim_open(&f->target[0], f->sim_dir, 1, &o), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EIO);
    assert_true(r.consumed);
    /* The sim names the failing byte; the engine does not say it twice. */
    assert_string_equal(r.message, "job App: program at 0x080003e8: I/O error after 1000 bytes "
                                   "(fault injected)");
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 101); /* a gap at 100 */
}

/* A device programmed and verified whose disconnect fails (the probe lost it as it let go): the
 * cycle is not reported good, and its count stays taken. */
static int disconnect_fails(struct mf_target *t)
{
    int err = sim_ops->disconnect(t);
    snprintf(t->error, sizeof t->error, "the probe lost the device");
    return err ? err : MF_EIO;
}

static void test_disconnect_failure_is_reported(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    sim_ops_of_slot1(f)->disconnect = disconnect_fails;
    struct mf_cycle_result r;
    int err = cycle(f, 0, MF_ACTION_AUTO, &r);
    f->target[0].ops = sim_ops;
    assert_int_equal(err, MF_EIO);
    assert_int_equal(r.failure, MF_FAIL_TARGET);
    assert_string_equal(r.message, "disconnect: the probe lost the device"); /* no job's */
    assert_true(r.consumed);
    assert_int_equal(r.serial, 100);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
    char *log = get(&f->vol.fs, "FLASHER.LOG");
    assert_true(line_matches(log, ".* slot 1 AUTO project \"Widget\" uid [0-9A-F]{24} serial 100 "
                                  "ERROR disconnect: the probe lost the device \\(count "
                                  "consumed\\) \\(Total .*, 4 left, job -"));
    free(log);
}

/* #VERIFY compares no serial number, also one laid over the data's bytes and sharing write units
 * (of 2 bytes) with them: the device holds the serial number there, the data file other bytes. */
static void test_verify_leaves_out_a_serial_over_the_data(void **state)
{
    struct fixture *f = *state;
    struct mf_cycle_result r;
    uint8_t *mem = serial_job_cycle(f, "5", "7", 0x08000011u, 4, &r);
    assert_memory_equal(mem + 0x11, "\x07\x00\x00\x00", 4);
    free(mem);
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), 0);
    assert_false(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
}

static void test_erase_verify_start_actions(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    /* Verify alone: passes (the serial number bytes are left out), consumes nothing. */
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), 0);
    assert_false(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 4);
    /* Erase alone: the data's sectors go back to 0xFF; no count. */
    assert_int_equal(cycle(f, 0, MF_ACTION_ERASE, &r), 0);
    assert_false(r.consumed);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    for (size_t i = 0; i < 3000; i++)
        assert_int_equal(mem[i], 0xFF);
    free(mem);
    /* ... so verify now fails. */
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), MF_EVERIFY);
    assert_int_equal(cycle(f, 0, MF_ACTION_START, &r), 0);
    /* Program: erase + program without verify, one count. */
    assert_int_equal(cycle(f, 0, MF_ACTION_PROGRAM, &r), 0);
    assert_true(r.consumed);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 3);
}

/* A HEX file whose records go backwards is held in memory and still programmed exactly. */
/* An Intel HEX file written from the highest address down is held sorted, also when it does not
 * fit the hold limit (`hold_max`): its records out of order leave no other way. */
static void unordered_hex(struct fixture *f, uint64_t hold_max)
{
    f->area.area.hold_max = hold_max;
    /* Records written from the highest address down. */
    char hex[4096] = ":020000040800F2\n";
    uint8_t data[256];
    firmware(data, sizeof data, 11);
    for (int rec = 15; rec >= 0; rec--) {
        uint16_t addr = (uint16_t)(0x4000 + rec * 16);
        char line[64];
        unsigned sum = 16 + (addr >> 8) + (addr & 0xFF);
        int n = snprintf(line, sizeof line, ":10%04X00", addr);
        for (int i = 0; i < 16; i++) {
            n += snprintf(line + n, sizeof line - (size_t)n, "%02X", data[rec * 16 + i]);
            sum += data[rec * 16 + i];
        }
        snprintf(line + n, sizeof line - (size_t)n, "%02X\n", (0x100 - (sum & 0xFF)) & 0xFF);
        strcat(hex, line);
    }
    strcat(hex, ":00000001FF\n");
    uint8_t boot[1024];
    firmware(boot, sizeof boot, 5);
    put(&f->vol.fs, "Projects/01_W/01_Boot/boot.bin", boot, sizeof boot);
    puts_(&f->vol.fs, "Projects/01_W/01_Boot/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = boot.bin\naddress = 0x08000000\n");
    puts_(&f->vol.fs, "Projects/01_W/02_App/app.hex", hex);
    puts_(&f->vol.fs, "Projects/01_W/02_App/job.ini",
          "[job]\ndevice = SIM-F1-64K\nverify = readback\n[file]\npath = app.hex\n");
    assert_int_equal(load(f), 0);
    const struct mf_project *p = mf_setup_project(&f->setup);
    assert_int_equal(p->error, 0);
    assert_int_equal(p->job_count, 2);
    assert_non_null(p->jobs[1].files[0].held);
    assert_false(p->jobs[1].files[0].held_by_choice);
    assert_true((p->jobs[0].files[0].held != NULL) == (hold_max >= sizeof boot));
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_false(r.consumed); /* no Cntdown.txt: unlimited, nothing to take */
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_memory_equal(mem, boot, sizeof boot);
    assert_memory_equal(mem + 0x4000, data, sizeof data);
    assert_int_equal(mem[0x4100], 0xFF);
    free(mem);
}

static void test_unordered_hex_and_several_jobs(void **state)
{
    unordered_hex(*state, MF_AREA_HOLD_DEFAULT);
}

static void test_unordered_hex_beyond_the_hold_limit(void **state)
{
    unordered_hex(*state, 100); /* the HEX file's capture stops at its 7th record */
}

static void expect_setup_error(struct fixture *f, const char *job_ini, const char *fragment)
{
    puts_(&f->vol.fs, "Projects/P/J/job.ini", job_ini);
    uint8_t app[64] = {0};
    put(&f->vol.fs, "Projects/P/J/app.bin", app, sizeof app);
    assert_int_equal(load(f), 0);
    const struct mf_project *p = mf_setup_project(&f->setup);
    if (!p->error || !strstr(p->message, fragment))
        fail_msg("expected an error with '%s', got %d '%s'", fragment, p->error, p->message);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), p->error);
    assert_string_equal(r.message, p->message);
}

static void test_setup_errors_name_file_line_and_key(void **state)
{
    struct fixture *f = *state;
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\neras = chip\n",
                       "Projects/P/J/job.ini:3: unknown key 'eras' in [job]");
    expect_setup_error(f, "[job]\ndevice = NOPE\n", "job.ini:2: [job] device: 'NOPE' is not");
    expect_setup_error(f, "[job]\nerase = sectors\n", "[job] device is missing");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\n",
                       "app.bin is raw binary: it needs an address");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x0\n",
                       "outside the flash of SIM-F1-64K");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\n[file]\npath = missing.bin\n",
                       "missing.bin: no such file");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\nverify = maybe\n",
                       "verify: 'maybe' is not crc, readback or none");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\n[extra]\nkey = 1\n",
                       "job.ini:4: unknown section [extra]");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\nprotect = 3\n", "has levels up to 1");
    expect_setup_error(f,
                       "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
                       "[file]\npath = app.bin\naddress = 0x08000020\n",
                       "Projects/P/J/job.ini: overlapping data at 0x8000020-0x800003F: app.bin "
                       "offset 0x20 (job.ini line 4) and app.bin offset 0x0 (job.ini line "
                       "7); [job] overlap = first or last says which wins");
    expect_setup_error(f, "[job]\ndevice = SIM-F1-64K\noverlap = both\n",
                       "job.ini:3: [job] overlap: 'both' is not error, first or last");
    expect_setup_error(f,
                       "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
                       "[serial]\naddress = 0x08000100\n",
                       "Serial.txt is missing");
}

/* An Intel HEX file of `len` bytes at `address` (below 4 GiB), 16 bytes per record after an
 * extended linear address record: the data for address + 16 * k is on line k + 2. */
static void hex_file(char *out, size_t size, uint32_t address, const uint8_t *data, size_t len)
{
    size_t n = (size_t)snprintf(
        out, size, ":02000004%04X%02X\n", address >> 16,
        (0x100u - ((6u + (address >> 24) + ((address >> 16) & 0xFF)) & 0xFFu)) & 0xFFu);
    for (size_t at = 0; at < len; at += 16) {
        unsigned count = len - at < 16 ? (unsigned)(len - at) : 16;
        unsigned low = (unsigned)((address + at) & 0xFFFF);
        unsigned sum = count + (low >> 8) + (low & 0xFF);
        n += (size_t)snprintf(out + n, size - n, ":%02X%04X00", count, low);
        for (unsigned i = 0; i < count; i++) {
            n += (size_t)snprintf(out + n, size - n, "%02X", data[at + i]);
            sum += data[at + i];
        }
        n += (size_t)snprintf(out + n, size - n, "%02X\n", (0x100u - (sum & 0xFFu)) & 0xFFu);
    }
    snprintf(out + n, size - n, ":00000001FF\n");
}

/* Writes Projects/P/J/job.ini: [job] with SIM-F1-64K and the `settings` line(s), then `files`;
 * loads the setup and returns the project. */
static const struct mf_project *overlap_job(struct fixture *f, const char *settings,
                                            const char *files)
{
    char job[512];
    snprintf(job, sizeof job, "[job]\ndevice = SIM-F1-64K\n%s\n%s", settings, files);
    puts_(&f->vol.fs, "Projects/P/J/job.ini", job);
    assert_int_equal(load(f), 0);
    return mf_setup_project(&f->setup);
}

/* [job] overlap: where files hold data for the same address, an error naming both files, their
 * job.ini lines and the places in them; or the file listed first (last) wins, the other's bytes
 * are left out in programming and verifying, and only what remains must not share a write unit.
 * Three files: a.bin [0, 0x100), b.hex [0x80, 0x180), c.bin [0xC0, 0xD0). */
static void test_overlap_first_or_last_wins(void **state)
{
    struct fixture *f = *state;
    uint8_t a[0x101], b[0x100], c[0x10];
    firmware(a, sizeof a, 21);
    firmware(b, sizeof b, 22);
    firmware(c, sizeof c, 23);
    static char hex[8192];
    hex_file(hex, sizeof hex, FLASH_BASE + 0x80, b, sizeof b);
    put(&f->vol.fs, "Projects/P/J/a.bin", a, 0x100);
    puts_(&f->vol.fs, "Projects/P/J/b.hex", hex);
    put(&f->vol.fs, "Projects/P/J/c.bin", c, sizeof c);
    static const char files[] = "[file]\n"                /* 4 */
                                "path = a.bin\n"          /* 5 */
                                "address = 0x08000000\n"  /* 6 */
                                "[file]\n"                /* 7 */
                                "path = b.hex\n"          /* 8 */
                                "[file]\n"                /* 9 */
                                "path = c.bin\n"          /* 10 */
                                "address = 0x080000C0\n"; /* 11 */

    /* No overlap key: an error, before any device is touched. */
    const struct mf_project *p = overlap_job(f, "; no overlap key", files);
    assert_int_equal(p->error, MF_ECONFLICT);
    assert_string_equal(p->message,
                        "Projects/P/J/job.ini: overlapping data at 0x8000080-0x80000BF: a.bin "
                        "offset 0x80 (job.ini line 5) and b.hex line 2 (job.ini line 8); [job] "
                        "overlap = first or last says which wins");

    static const char *const cases[][2] = {
        {"last", "crc"}, {"last", "readback"}, {"first", "crc"}, {"first", "readback"}};
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char settings[64];
        snprintf(settings, sizeof settings, "overlap = %s\nverify = %s", cases[i][0], cases[i][1]);
        p = overlap_job(f, settings, files);
        if (p->error)
            fail_msg("%s: %s", settings, p->message);
        assert_int_equal(p->jobs[0].range_count, 1);
        assert_int_equal(p->jobs[0].data_bytes, 0x180);
        assert_int_equal(
            mf_sim_replace(f->sim_dir, 1, mf_profile_find("SIM-F1-64K"), NULL, NULL, NULL, 0), 0);
        struct mf_cycle_result r;
        if (cycle(f, 0, MF_ACTION_AUTO, &r))
            fail_msg("%s: %s", settings, r.message);
        /* Verifying alone reads the same resolution back. */
        assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r), 0);
        size_t size;
        uint8_t *mem = flash(f, 1, &size);
        uint8_t want[0x190];
        memset(want, 0xFF, sizeof want);
        if (strcmp(cases[i][0], "last") == 0) {
            memcpy(want, a, 0x80);
            memcpy(want + 0x80, b, 0x100);
            memcpy(want + 0xC0, c, 0x10);
        } else {
            memcpy(want + 0x80, b, 0x100);
            memcpy(want, a, 0x100);
        }
        assert_memory_equal(mem, want, sizeof want);
        free(mem);
    }

    /* What remains after the resolution may not share a write unit (2 bytes here): a.bin one
     * byte longer ends inside the unit where b.hex goes on under `first`; `last` has b.hex start
     * on a unit of its own. */
    put(&f->vol.fs, "Projects/P/J/a.bin", a, 0x101);
    p = overlap_job(f, "overlap = first", files);
    assert_int_equal(p->error, MF_ECONFLICT);
    assert_string_equal(p->message,
                        "Projects/P/J/job.ini: a.bin offset 0x100 (job.ini line 5) and b.hex "
                        "line 10 (job.ini line 8) share the 2-byte write unit at 0x8000100 after "
                        "overlap = first; flash programs it once: put that data in one file");
    assert_int_equal(overlap_job(f, "overlap = last", files)->error, 0);

    /* Without an overlap, a shared write unit is refused as before. */
    put(&f->vol.fs, "Projects/P/J/a.bin", a, 0x81);
    hex_file(hex, sizeof hex, FLASH_BASE + 0x81, b, 0x7F);
    puts_(&f->vol.fs, "Projects/P/J/b.hex", hex);
    put(&f->vol.fs, "Projects/P/J/c.bin", c, 0); /* empty: no data */
    p = overlap_job(f, "overlap = last", files);
    assert_int_equal(p->error, MF_ECONFLICT);
    assert_string_equal(p->message,
                        "Projects/P/J/job.ini: a.bin offset 0x80 (job.ini line 5) and b.hex line 2 "
                        "(job.ini line 8) share the 2-byte write unit at 0x8000080; flash programs "
                        "it once: put that data in one file");
}

/* The last count taken elsewhere while this device connects (another programmer's slot without a
 * reservation, the public area edited): the count is read again under the lock before it is
 * taken, and a count at 0 refuses the device, whichever count it is; it never wraps. */
static struct mf_fat *gone_fs;
static const char *gone_path;

static int connect_then_count_gone(struct mf_target *t)
{
    assert_int_equal(mf_testfat_put_text(gone_fs, gone_path, "0\r\n"), 0);
    return sim_ops->connect(t);
}

static void test_count_gone_while_connecting(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100");
    puts_(&f->vol.fs, "Cntdown.txt", "3\r\n");
    assert_int_equal(load(f), 0);
    sim_ops_of_slot1(f)->connect = connect_then_count_gone;
    gone_fs = &f->vol.fs;
    static const char *const paths[] = {"Projects/01_Widget/Cntdown.txt", "Cntdown.txt"};
    for (unsigned i = 0; i < 2; i++) {
        gone_path = paths[i];
        struct mf_cycle_result r;
        int err = cycle(f, 0, MF_ACTION_AUTO, &r);
        assert_int_equal(err, MF_EEXHAUSTED);
        char want[96];
        snprintf(want, sizeof want, "no programming cycles left (%s = 0)", paths[i]);
        assert_string_equal(r.message, want);
        assert_false(r.consumed);
        assert_false(r.has_serial);
        assert_int_equal(number(&f->vol.fs, paths[i]), 0);
        assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 100);
        puts_(&f->vol.fs, paths[i], i ? "3\r\n" : "5\r\n");
    }
    f->target[0].ops = sim_ops;
    /* Nothing was programmed: the device's flash is as it came. */
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    for (size_t i = 0; i < size; i++)
        assert_int_equal(mem[i], 0xFF);
    free(mem);
}

/* Several slots drawing from one count: never more devices than counts, never a serial twice. */
static void test_slots_share_counts_exactly(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "3", "50");
    assert_int_equal(load(f), 0);
    struct mf_cycle_reserved reserved = {0};
    f->env.reserved = &reserved;
    struct mf_cycle_result r[4];
    unsigned ok = 0, exhausted = 0;
    for (unsigned i = 0; i < 4; i++) {
        int err = cycle(f, i, MF_ACTION_AUTO, &r[i]);
        ok += err == 0;
        exhausted += err == MF_EEXHAUSTED;
    }
    assert_int_equal(ok, 3);
    assert_int_equal(exhausted, 1);
    assert_int_equal(reserved.total, 0);
    assert_int_equal(reserved.project[0], 0);
    assert_int_equal(r[0].serial, 50);
    assert_int_equal(r[1].serial, 51);
    assert_int_equal(r[2].serial, 52);
}

/* Counts held by connecting slots are held per project: a slot of project A connecting leaves B
 * its own last count, while the root's count is every project's (a #SELECT between two slots'
 * starts makes them run different projects). */
static void test_reservations_are_per_project(void **state)
{
    struct fixture *f = *state;
    uint8_t app[2000];
    firmware(app, sizeof app, 31);
    put_app_project(f, "01_A", app, sizeof app);
    put_app_project(f, "02_B", app, sizeof app);
    puts_(&f->vol.fs, "Projects/01_A/Cntdown.txt", "1\r\n");
    puts_(&f->vol.fs, "Projects/02_B/Cntdown.txt", "1\r\n");
    assert_int_equal(load(f), 0);
    /* As if a slot were connecting for A, its count promised. */
    struct mf_cycle_reserved reserved = {.total = 1, .project = {1}};
    f->env.reserved = &reserved;
    struct mf_cycle_result r;
    f->setup.selected = 0;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EEXHAUSTED);
    assert_string_equal(r.message,
                        "no programming cycles left (Projects/01_A/Cntdown.txt = 1, the rest "
                        "taken by other slots)");
    assert_false(device_made(f, 1));
    f->setup.selected = 1;
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r), 0); /* B's own count */
    assert_true(r.consumed);
    assert_int_equal(reserved.total, 1);
    assert_int_equal(reserved.project[0], 1);
    assert_int_equal(reserved.project[1], 0);
    /* The root's count is shared: one left and one held is none for anyone. */
    puts_(&f->vol.fs, "Projects/02_B/Cntdown.txt", "5\r\n");
    puts_(&f->vol.fs, "Cntdown.txt", "1\r\n");
    assert_int_equal(load(f), 0);
    f->env.reserved = &reserved;
    f->setup.selected = 1;
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), MF_EEXHAUSTED);
    assert_false(r.consumed);
    reserved = (struct mf_cycle_reserved){0};
    assert_int_equal(cycle(f, 2, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(reserved.total, 0);
    /* Both counts at 0 while B's slot holds one of the root's: A's own count is what ran out,
     * and none of it is taken by other slots. */
    puts_(&f->vol.fs, "Projects/01_A/Cntdown.txt", "0\r\n");
    puts_(&f->vol.fs, "Cntdown.txt", "0\r\n");
    assert_int_equal(load(f), 0);
    reserved = (struct mf_cycle_reserved){.total = 1, .project = {0, 1}};
    f->env.reserved = &reserved;
    f->setup.selected = 0;
    assert_int_equal(cycle(f, 3, MF_ACTION_AUTO, &r), MF_EEXHAUSTED);
    assert_string_equal(r.message, "no programming cycles left (Projects/01_A/Cntdown.txt = 0)");
    assert_int_equal(reserved.total, 1);
    assert_int_equal(reserved.project[0], 0);
}

/* The setup's fingerprint ignores the counters the programmer changes, and nothing else. */
static void test_fingerprint(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "3", "7");
    uint8_t a[32], b[32], c[32];
    assert_int_equal(load(f), 0);
    memcpy(a, f->setup.fingerprint, 32);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    puts_(&f->vol.fs, "FLASHER.INI", "[CONFIG]\nProject = 01_Widget\n");
    assert_int_equal(mf_setup_fingerprint(&f->area.area, f->buffer, sizeof f->buffer, b), 0);
    assert_memory_equal(a, b, 32); /* counts, serial, log and selection changed: same setup */
    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    app[1234] ^= 1;
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    assert_int_equal(mf_setup_fingerprint(&f->area.area, f->buffer, sizeof f->buffer, c), 0);
    assert_memory_not_equal(a, c, 32); /* one bit of the firmware: another setup */
}

/* ---- per-device UID signatures ([signature]) ---- */

static const uint8_t uid_a[12] = {0xC7, 0x9E, 0x7A, 0x27, 0x60, 0x60,
                                  0xF5, 0xD8, 0x26, 0xF7, 0x24, 0x3A};
static const uint8_t uid_b[12] = {0x61, 0xAD, 0x76, 0xA3, 0xCA, 0x13,
                                  0x09, 0x25, 0x41, 0x74, 0x1F, 0x04};

static void signing_seed(uint8_t seed[32])
{
    for (unsigned i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0xA0 + i);
}

/* Writes a key file in the "mintflash-owner-secret 1" format, spelled out here rather than made
 * by mf_owner, so that the test does not trust the code it checks. */
static void put_key(struct fixture *f, const char *path, const uint8_t seed[32])
{
    char b64[64], text[160];
    sodium_bin2base64(b64, sizeof b64, seed, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof text, "mintflash-owner-secret 1\ned25519-seed: %s\n", b64);
    puts_(&f->vol.fs, path, text);
}

/* The documented message: "MFSIG1" || setup id (32) || UID length (1) || UID || serial (u64 LE),
 * built independently of mf_uidsig. */
static size_t documented_message(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                                 uint64_t serial, uint8_t *out)
{
    size_t n = 0;
    memcpy(out, "MFSIG1", 6);
    n += 6;
    memcpy(out + n, setup_id, 32);
    n += 32;
    out[n++] = (uint8_t)uid_length;
    memcpy(out + n, uid, uid_length);
    n += uid_length;
    for (unsigned i = 0; i < 8; i++)
        out[n++] = (uint8_t)(serial >> (8 * i));
    return n;
}

/* Does `sig` hold for this device under the public key, by libsodium directly? */
static bool signature_holds(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                            uint64_t serial, const uint8_t public_key[32], const uint8_t *sig)
{
    uint8_t message[6 + 32 + 1 + MF_PROFILE_UID_MAX + 8];
    size_t n = documented_message(setup_id, uid, uid_length, serial, message);
    return crypto_sign_verify_detached(sig, message, n, public_key) == 0;
}

/* A fresh SIM-F1-64K device with a known UID in a slot (1-based). */
static void fresh_device(struct fixture *f, unsigned slot, const uint8_t uid[12])
{
    assert_int_equal(
        mf_sim_replace(f->sim_dir, slot, mf_profile_find("SIM-F1-64K"), uid, NULL, NULL, 0), 0);
}

static const char signature_job[] = "[job]\n"                  /* 1 */
                                    "device = SIM-F1-64K\n"    /* 2 */
                                    "\n"                       /* 3 */
                                    "[file]\n"                 /* 4 */
                                    "path = app.bin\n"         /* 5 */
                                    "address = 0x08000000\n"   /* 6 */
                                    "\n"                       /* 7 */
                                    "[serial]\n"               /* 8 */
                                    "address = 0x0800F000\n"   /* 9 */
                                    "length = 4\n"             /* 10 */
                                    "\n"                       /* 11 */
                                    "[signature]\n"            /* 12 */
                                    "address = 0x0800F100\n"   /* 13 */
                                    "key = uid-signing.key\n"; /* 14 */

static void signature_setup(struct fixture *f, const char *serial)
{
    uint8_t app[3000], seed[32];
    firmware(app, sizeof app, 7);
    signing_seed(seed);
    put(&f->vol.fs, "Projects/01_Widget/01_App/app.bin", app, sizeof app);
    puts_(&f->vol.fs, "Projects/01_Widget/01_App/job.ini", signature_job);
    put_key(f, "Projects/01_Widget/01_App/uid-signing.key", seed);
    puts_(&f->vol.fs, "Projects/01_Widget/Cntdown.txt", "10");
    if (serial)
        puts_(&f->vol.fs, "Projects/01_Widget/Serial.txt", serial);
}

static void test_signature_binds_uid_serial_and_setup(void **state)
{
    struct fixture *f = *state;
    signature_setup(f, "1000");
    assert_int_equal(load(f), 0);
    const struct mf_project *p = mf_setup_project(&f->setup);
    assert_int_equal(p->error, 0);
    assert_true(p->jobs[0].signature);
    assert_int_equal(p->jobs[0].signature_address, 0x0800F100);

    uint8_t seed[32], pk[32], sk[64];
    signing_seed(seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    const uint8_t *setup_id = f->setup.fingerprint;

    fresh_device(f, 1, uid_a);
    fresh_device(f, 2, uid_b);
    struct mf_cycle_result r1, r2;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r1), 0);
    assert_int_equal(cycle(f, 1, MF_ACTION_AUTO, &r2), 0);
    assert_int_equal(r1.uid_length, 12);
    assert_memory_equal(r1.uid, uid_a, 12);
    assert_memory_equal(r2.uid, uid_b, 12);
    assert_int_equal(r1.serial, 1000);
    assert_int_equal(r2.serial, 1001);

    size_t size;
    uint8_t *mem1 = flash(f, 1, &size), *mem2 = flash(f, 2, &size);
    const uint8_t *sig1 = mem1 + 0xF100, *sig2 = mem2 + 0xF100;
    /* Ed25519 is deterministic: the bytes are exactly libsodium's signature of the documented
     * message. */
    uint8_t message[6 + 32 + 1 + 12 + 8], expect[64];
    size_t n = documented_message(setup_id, uid_a, 12, 1000, message);
    assert_int_equal(n, 59);
    crypto_sign_detached(expect, NULL, message, n, sk);
    assert_memory_equal(sig1, expect, 64);
    assert_true(signature_holds(setup_id, uid_a, 12, 1000, pk, sig1));
    assert_true(signature_holds(setup_id, uid_b, 12, 1001, pk, sig2));
    assert_int_equal(mf_uidsig_verify(setup_id, uid_a, 12, 1000, pk, sig1), 0);
    assert_int_equal(mf_uidsig_verify(setup_id, uid_b, 12, 1001, pk, sig2), 0);
    /* Not for another device, another serial number, another setup or another key. */
    assert_memory_not_equal(sig1, sig2, 64);
    assert_false(signature_holds(setup_id, uid_b, 12, 1000, pk, sig1));
    assert_false(signature_holds(setup_id, uid_a, 12, 1001, pk, sig1));
    assert_false(signature_holds(setup_id, uid_a, 11, 1000, pk, sig1));
    assert_int_equal(mf_uidsig_verify(setup_id, uid_b, 12, 1000, pk, sig1), MF_EAUTH);
    assert_int_equal(mf_uidsig_verify(setup_id, uid_a, 12, 1001, pk, sig1), MF_EAUTH);
    uint8_t other_setup[32];
    memcpy(other_setup, setup_id, 32);
    other_setup[31] ^= 1;
    assert_false(signature_holds(other_setup, uid_a, 12, 1000, pk, sig1));
    uint8_t other_pk[32], other_sk[64], other_seed[32];
    memcpy(other_seed, seed, 32);
    other_seed[0] ^= 1;
    crypto_sign_seed_keypair(other_pk, other_sk, other_seed);
    assert_false(signature_holds(setup_id, uid_a, 12, 1000, other_pk, sig1));
    /* The serial number and the data are there too, and nothing else was written. */
    assert_int_equal(mem1[0xF000], 1000 & 0xFF);
    assert_int_equal(mem1[0xF001], 1000 >> 8);
    assert_int_equal(mem1[0xF0FF], 0xFF);
    assert_int_equal(mem1[0xF140], 0xFF);
    free(mem1);
    free(mem2);

    /* Verify alone leaves the per-device bytes out, as for the serial number: it passes. */
    assert_int_equal(cycle(f, 0, MF_ACTION_VERIFY, &r1), 0);
    assert_false(r1.consumed);

    /* The key file is part of the setup: another key is another setup id. */
    uint8_t before[32], after[32];
    memcpy(before, setup_id, 32);
    put_key(f, "Projects/01_Widget/01_App/uid-signing.key", other_seed);
    assert_int_equal(mf_setup_fingerprint(&f->area.area, f->buffer, sizeof f->buffer, after), 0);
    assert_memory_not_equal(before, after, 32);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(other_sk, sizeof other_sk);
}

/* Without Serial.txt the signature binds serial number 0; over data, it replaces the data's
 * bytes, as the serial number does; readback verify compares it. */
static void test_signature_without_serial_over_data(void **state)
{
    struct fixture *f = *state;
    uint8_t app[3000], seed[32], pk[32], sk[64];
    firmware(app, sizeof app, 9);
    signing_seed(seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    put(&f->vol.fs, "Projects/P/J/app.bin", app, sizeof app);
    put_key(f, "Projects/P/J/keys/sig.key", seed);
    puts_(&f->vol.fs, "Projects/P/J/job.ini",
          "[job]\ndevice = SIM-F1-64K\nverify = readback\n[file]\npath = app.bin\n"
          "address = 0x08000000\n[signature]\nkey = keys/sig.key\naddress = 0x08000802\n");
    assert_int_equal(load(f), 0);
    assert_int_equal(mf_setup_project(&f->setup)->error, 0);
    fresh_device(f, 1, uid_b);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_false(r.has_serial);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_memory_equal(mem, app, 0x802);
    assert_true(signature_holds(f->setup.fingerprint, uid_b, 12, 0, pk, mem + 0x802));
    assert_memory_equal(mem + 0x842, app + 0x842, sizeof app - 0x842);
    free(mem);
    sodium_memzero(sk, sizeof sk);
}

/* The verify phase checks the signature bytes: a bit that flips in them after programming fails
 * the cycle, with the count consumed. */
static void test_signature_is_verified(void **state)
{
    struct fixture *f = *state;
    signature_setup(f, "7");
    assert_int_equal(load(f), 0);
    fresh_device(f, 1, uid_a);
    reopen_flipping(f, 0xF105);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), MF_EVERIFY);
    assert_true(r.consumed);
    assert_non_null(strstr(r.message, "verify failed at 0x800F105"));
}

/* A patch on the signature's bytes is refused before anything is taken. */
static void test_patch_over_signature_is_refused(void **state)
{
    struct fixture *f = *state;
    signature_setup(f, "1");
    assert_int_equal(load(f), 0);
    struct mf_cycle_result r;
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO, .patch_line = "1,800F13F,2:0102"};
    assert_int_equal(mf_cycle_run(&f->env, f->slot[0], &req, &r), MF_ECONFLICT);
    assert_false(r.consumed);
    assert_non_null(strstr(r.message,
                           "per-device data overlaps at 0x800F13F (the signature of job App and "
                           "patch 1)"));
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 10);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 1);
}

static void test_signature_errors_name_file_line_and_key(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    signing_seed(seed);
    put_key(f, "Projects/P/J/sig.key", seed);
    static const char head[] = "[job]\ndevice = SIM-F1-64K\n"; /* lines 1-2 */
    char job[512];
#define SIGNATURE_CASE(body, fragment)                                                             \
    do {                                                                                           \
        snprintf(job, sizeof job, "%s%s", head, body);                                             \
        expect_setup_error(f, job, fragment);                                                      \
    } while (0)
    SIGNATURE_CASE("[signature]\nkey = sig.key\n",
                   "Projects/P/J/job.ini:4: [signature] address is missing");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\n",
                   "Projects/P/J/job.ini:4: [signature] key is missing");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = sig.key\nadress = 1\n",
                   "Projects/P/J/job.ini:6: unknown key 'adress' in [signature]");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = sig.key\n"
                   "[signature]\naddress = 0x0800F100\n",
                   "Projects/P/J/job.ini:7: a second [signature] section");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = sig.key\naddress = 0x0800F100\n",
                   "Projects/P/J/job.ini:6: [signature] address: given twice (first on line 4)");
    SIGNATURE_CASE("[signature]\naddress = nowhere\nkey = sig.key\n",
                   "Projects/P/J/job.ini:4: [signature] address: 'nowhere' is not an address");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey =\n",
                   "Projects/P/J/job.ini:5: [signature] key: '' is not a file name");
    SIGNATURE_CASE("[signature]\naddress = 0x0800FFC1\nkey = sig.key\n",
                   "Projects/P/J/job.ini:4: [signature] address: 0x800FFC1+64 is outside the "
                   "flash of SIM-F1-64K");
    SIGNATURE_CASE("[signature]\naddress = 0x07FFFFF0\nkey = sig.key\n",
                   "Projects/P/J/job.ini:4: [signature] address: 0x7FFFFF0+64 is outside");
    SIGNATURE_CASE("[serial]\naddress = 0x0800F03E\n[signature]\naddress = 0x0800F000\n"
                   "key = sig.key\n",
                   "Projects/P/J/job.ini:6: [signature] address: per-device data overlaps at "
                   "0x800F03E: the signature at 0x800F000+64 and the serial number at "
                   "0x800F03E+4");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = sig.key\n[serial]\n"
                   "address = 0x0800EFFD\n",
                   "Projects/P/J/job.ini:4: [signature] address: per-device data overlaps at "
                   "0x800F000: the signature at 0x800F000+64 and the serial number at "
                   "0x800EFFD+4");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = nope.key\n",
                   "Projects/P/J/job.ini:5: [signature] key: nope.key: no such file");
    puts_(&f->vol.fs, "Projects/P/J/pub.key", "mintflash-owner 1\nfingerprint: x\ned25519: y\n");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = pub.key\n",
                   "Projects/P/J/job.ini:5: [signature] key: pub.key: line 1: not a "
                   "mintflash-owner-secret file");
    puts_(&f->vol.fs, "Projects/P/J/short.key",
          "mintflash-owner-secret 1\ned25519-seed: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n");
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = short.key\n",
                   "Projects/P/J/job.ini:5: [signature] key: short.key: ed25519-seed: not 32 "
                   "bytes in base64");
    char big[5000];
    memset(big, 'A', sizeof big);
    put(&f->vol.fs, "Projects/P/J/big.key", big, sizeof big);
    SIGNATURE_CASE("[signature]\naddress = 0x0800F000\nkey = big.key\n",
                   "Projects/P/J/job.ini:5: [signature] key: big.key: larger than 4096 bytes");
#undef SIGNATURE_CASE
}

/* Fields of different jobs: overlaps, and a later job whose sector erase would remove them. */
static void test_signature_across_jobs(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32], app[64] = {0};
    signing_seed(seed);
    put(&f->vol.fs, "Projects/P/1_A/app.bin", app, sizeof app);
    puts_(&f->vol.fs, "Projects/P/1_A/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n"
          "[serial]\naddress = 0x0800F020\n");
    puts_(&f->vol.fs, "Projects/P/Serial.txt", "1");
    put_key(f, "Projects/P/2_B/sig.key", seed);
    puts_(&f->vol.fs, "Projects/P/2_B/job.ini",
          "[job]\ndevice = SIM-F1-64K\nerase = none\n[signature]\naddress = 0x0800F000\n"
          "key = sig.key\n");
    assert_int_equal(load(f), 0);
    const struct mf_project *p = mf_setup_project(&f->setup);
    assert_int_equal(p->error, MF_ECONFLICT);
    assert_string_equal(p->message,
                        "Projects/P/2_B/job.ini:5: [signature] address: per-device data overlaps "
                        "at 0x800F020: the signature at 0x800F000+64 and the serial number at "
                        "0x800F020+4 of job A");
    /* Apart, but in the sector of job A's data, which job B's erase would remove. */
    puts_(&f->vol.fs, "Projects/P/2_B/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[signature]\naddress = 0x08000200\nkey = sig.key\n");
    assert_int_equal(load(f), 0);
    p = mf_setup_project(&f->setup);
    assert_int_equal(p->error, MF_ECONFLICT);
    assert_non_null(strstr(p->message, "Projects/P/2_B: its sector at 0x8000000 also holds data "
                                       "or per-device bytes of job A"));
    /* Its own sector, erased by sectors: both jobs run, and each device's signature holds. */
    puts_(&f->vol.fs, "Projects/P/2_B/job.ini",
          "[job]\ndevice = SIM-F1-64K\n[signature]\naddress = 0x08001000\nkey = sig.key\n");
    assert_int_equal(load(f), 0);
    assert_int_equal(mf_setup_project(&f->setup)->error, 0);
    fresh_device(f, 1, uid_a);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    uint8_t pk[32], sk[64];
    crypto_sign_seed_keypair(pk, sk, seed);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_true(signature_holds(f->setup.fingerprint, uid_a, 12, 1, pk, mem + 0x1000));
    assert_int_equal(mem[0xF020], 1);
    free(mem);
    sodium_memzero(sk, sizeof sk);
}

/* ---- power cut during the authorization ---- */

struct cut_case {
    uint8_t *image;    /* the volume with the setup, before the cycle */
    mf_block_t blocks; /* its size; 0: DISK_BLOCKS */
    char *sim_dir;
    /* Both counts (root 5, project 7), serial 1, and the SNList.txt and Patches.txt lines it
     * selects; else the project's count alone (5) and serial 100. */
    bool both;
    /* The large setup (MF_SOAK=1; see large_setup): the selected project's folder, its first
     * serial number (count 5), and FLASHER.LOG as it was filled to just under its limit. */
    const char *project;
    uint64_t serial;
    char *log;
    size_t log_size;
    bool log_rotated; /* the fault-free run's check found FLASHER.LOG rotated */
};

static mf_block_t cut_blocks(const struct cut_case *cc)
{
    return cc->blocks ? cc->blocks : DISK_BLOCKS;
}

static int cut_setup(void *context, const struct mf_bd *medium)
{
    struct cut_case *cc = context;
    return mf_bd_prog(medium, 0, cc->image, cut_blocks(cc));
}

static int cut_run(void *context, const struct mf_bd *bd)
{
    struct cut_case *cc = context;
    struct mf_fat fs;
    struct mf_area_fat area;
    struct mf_setup setup;
    struct mf_flashlog log;
    char message[MF_SETUP_ERROR_MAX];
    static uint8_t buffer[8192];
    static struct mf_slot slot;
    struct mf_target target = {0};
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err)
        return err;
    mf_area_fat_init(&area, &fs, NULL);
    err = mf_setup_load(&setup, &area.area, buffer, sizeof buffer, message);
    if (err)
        return err;
    mf_flashlog_init(&log, &fs, NULL, setup.log_max_bytes, fake_wall, NULL);
    /* A fresh device every run, so that "was it modified" is its counter. */
    err = mf_sim_replace(cc->sim_dir, 1, mf_profile_find("SIM-F1-64K"), NULL, NULL, NULL, 0);
    if (!err)
        err = mf_sim_open(&target, cc->sim_dir, 1, NULL);
    if (err) {
        mf_setup_free(&setup);
        return err;
    }
    mf_slot_init(&slot, 1, &target);
    uint64_t clock = 0;
    struct mf_cycle_env env = {
        .setup = &setup, .area = &area.area, .log = &log, .now_ms = NULL, .clock_context = &clock};
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO};
    struct mf_cycle_result r;
    err = mf_cycle_run(&env, &slot, &req, &r);
    /* The log line is the cycle's last write: its failure is the cycle's too. */
    if (!err && log.last_error)
        err = log.last_error;
    mf_sim_close(&target);
    mf_setup_free(&setup);
    return err;
}

/* The device holds, at the serial number's address (0xF000) and the patch's (0x100), the bytes
 * of the SNList.txt and Patches.txt line the cycle took, or is still erased there: never another
 * line's bytes. */
static int device_holds_line(const struct cut_case *cc, const struct mf_sweep_point *point,
                             const uint8_t serial[4], const uint8_t patch[2])
{
    char path[512];
    snprintf(path, sizeof path, "%s/slot1/flash.bin", cc->sim_dir);
    char *mem;
    size_t size;
    int err = mf_test_read_file(path, &mem, &size);
    if (err || size < 0x10000)
        return err ? err : MF_EIO;
    bool serial_ok =
        memcmp(mem + 0xF000, serial, 4) == 0 || memcmp(mem + 0xF000, "\xFF\xFF\xFF\xFF", 4) == 0;
    bool patch_ok = memcmp(mem + 0x100, patch, 2) == 0 ||
                    ((uint8_t)mem[0x100] == 0xFF && (uint8_t)mem[0x101] == 0xFF);
    free(mem);
    if (!serial_ok || !patch_ok) {
        fprintf(stderr, "cut at %llu: the device holds bytes of another line\n",
                (unsigned long long)point->cut_at);
        return MF_EVERIFY;
    }
    return 0;
}

/* Each count at most one lower than before (and exactly one lower when the device was modified),
 * the serial number past the one the device took, and what the device holds is that serial
 * number's SNList.txt and Patches.txt line. */
static int cut_check_both(const struct cut_case *cc, const struct mf_sweep_point *point,
                          bool modified, uint64_t project, uint64_t root, uint64_t serial)
{
    uint64_t most_project = modified ? 6 : 7, most_root = modified ? 4 : 5;
    if (project > most_project || project + 1 < most_project || root > most_root ||
        root + 1 < most_root || serial < (modified ? 2u : 1u) || serial > 2) {
        fprintf(stderr,
                "cut at %llu: project count %llu (%llu..%llu), root count %llu (%llu..%llu), "
                "serial %llu, device %s\n",
                (unsigned long long)point->cut_at, (unsigned long long)project,
                (unsigned long long)(most_project - 1), (unsigned long long)most_project,
                (unsigned long long)root, (unsigned long long)(most_root - 1),
                (unsigned long long)most_root, (unsigned long long)serial,
                modified ? "modified" : "untouched");
        return MF_EVERIFY;
    }
    return device_holds_line(cc, point, (const uint8_t *)"\x22\x22\x22\x22",
                             (const uint8_t *)"\xA5\x5A");
}

/* The large setup's SNList.txt and Patches.txt line n: bytes no other line has. */
static uint32_t snlist_bytes(uint64_t n)
{
    return 0x10000000u + (uint32_t)n;
}

static uint16_t patch_bytes(uint64_t n)
{
    return (uint16_t)(n ^ 0x5A5Au);
}

/* The large setup: as the single count (at most one count and one serial number per cut), and
 * what the device holds is the SNList.txt and Patches.txt line of the serial number it took. */
static int cut_check_large(const struct cut_case *cc, const struct mf_sweep_point *point,
                           bool modified, uint64_t count, uint64_t serial)
{
    uint64_t most = modified ? 4 : 5;
    if (count > most || count + 1 < most || serial < cc->serial + (modified ? 1 : 0) ||
        serial > cc->serial + 1) {
        fprintf(stderr, "cut at %llu: count %llu (%llu..%llu), serial %llu (device %s)\n",
                (unsigned long long)point->cut_at, (unsigned long long)count,
                (unsigned long long)(most - 1), (unsigned long long)most,
                (unsigned long long)serial, modified ? "modified" : "untouched");
        return MF_EVERIFY;
    }
    uint32_t sn = snlist_bytes(cc->serial);
    uint16_t patch = patch_bytes(cc->serial);
    uint8_t want_serial[4] = {(uint8_t)(sn >> 24), (uint8_t)(sn >> 16), (uint8_t)(sn >> 8),
                              (uint8_t)sn};
    uint8_t want_patch[2] = {(uint8_t)(patch >> 8), (uint8_t)patch};
    return device_holds_line(cc, point, want_serial, want_patch);
}

/* The full FLASHER.LOG is never lost: it is FLASHER.LOG still (not rotated yet) or FLASHER.OLD,
 * byte for byte. After the fault-free run, it is FLASHER.OLD and the new FLASHER.LOG holds the
 * cycle's line. */
static int cut_check_log(struct cut_case *cc, struct mf_fat *fs, const struct mf_sweep_point *point)
{
    /* Either file may be missing after a cut: then it is NULL. */
    char *log, *old;
    size_t log_size, old_size;
    bool has_log = mf_testfat_get(fs, MF_FLASHLOG_NAME, &log, &log_size) == 0;
    bool has_old = mf_testfat_get(fs, MF_FLASHLOG_OLD_NAME, &old, &old_size) == 0;
    bool as_log = has_log && log_size == cc->log_size && memcmp(log, cc->log, log_size) == 0;
    bool as_old = has_old && old_size == cc->log_size && memcmp(old, cc->log, old_size) == 0;
    char line[64];
    snprintf(line, sizeof line, " serial %llu OK ", (unsigned long long)cc->serial);
    bool rotated = as_old && log && strstr(log, line) && log_size < 1024;
    free(log);
    free(old);
    if (!as_log && !as_old) {
        fprintf(stderr,
                "cut at %llu: the full FLASHER.LOG is neither FLASHER.LOG nor "
                "FLASHER.OLD\n",
                (unsigned long long)point->cut_at);
        return MF_EVERIFY;
    }
    if (point->cut_at == 0) {
        if (!rotated) {
            fprintf(stderr, "the cycle did not rotate FLASHER.LOG nor log its line\n");
            return MF_EVERIFY;
        }
        cc->log_rotated = true;
    }
    return 0;
}

static int cut_check(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point)
{
    struct cut_case *cc = context;
    struct mf_fat fs;
    int err = mf_fat_mount(&fs, bd, NULL, NULL);
    if (err) {
        fprintf(stderr, "volume does not mount: %s\n", mf_strerror(err));
        return err;
    }
    const char *project = cc->project ? cc->project : "Projects/01_Widget";
    char count_path[MF_SETUP_PATH_MAX], serial_path[MF_SETUP_PATH_MAX];
    snprintf(count_path, sizeof count_path, "%s/Cntdown.txt", project);
    snprintf(serial_path, sizeof serial_path, "%s/Serial.txt", project);
    uint64_t count, serial, root = 0;
    err = mf_numfile_read(&fs, count_path, MF_NUMFILE_STRICT, UINT32_MAX, &count);
    if (!err)
        err = mf_numfile_read(&fs, serial_path, MF_NUMFILE_LEADING, UINT64_MAX, &serial);
    if (!err && cc->both)
        err = mf_numfile_read(&fs, "Cntdown.txt", MF_NUMFILE_STRICT, UINT32_MAX, &root);
    if (err) {
        fprintf(stderr, "count or serial unreadable: %s\n", mf_strerror(err));
        return err;
    }
    if (cc->log) {
        err = cut_check_log(cc, &fs, point);
        if (err)
            return err;
    }
    struct mf_sim_info info;
    char text[256];
    err = mf_sim_inspect(cc->sim_dir, 1, &info, text, sizeof text);
    if (err) {
        fprintf(stderr, "sim: %s\n", text);
        return err;
    }
    bool modified = info.counters.programmed_bytes > 0 || info.counters.sector_erases > 0;
    if (cc->both)
        return cut_check_both(cc, point, modified, count, root, serial);
    if (cc->project)
        return cut_check_large(cc, point, modified, count, serial);
    /* Never more cycles than before minus the devices modified; never a serial number twice. */
    uint64_t most = modified ? 4 : 5;
    if (count > most || serial < (modified ? 101u : 100u)) {
        fprintf(stderr, "cut at %llu: count %llu (at most %llu), serial %llu (device %s)\n",
                (unsigned long long)point->cut_at, (unsigned long long)count,
                (unsigned long long)most, (unsigned long long)serial,
                modified ? "modified" : "untouched");
        return MF_EVERIFY;
    }
    /* At most one count lost per cut. */
    if (count + 1 < most) {
        fprintf(stderr, "cut at %llu lost more than one count: %llu\n",
                (unsigned long long)point->cut_at, (unsigned long long)count);
        return MF_EVERIFY;
    }
    return 0;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Cuts the power at every write of one cycle from the setup in cc->image (every mode's seeds
 * twice); every check must hold. Returns the cycle's write points. */
static uint64_t cut_sweep(struct cut_case *cc, const char *name)
{
    struct mf_sweep sweep = {.name = name,
                             .block_size = 512,
                             .block_count = cut_blocks(cc),
                             .context = cc,
                             .setup = cut_setup,
                             .run = cut_run,
                             .check = cut_check};
    struct mf_sweep_options options = {.seeds = 2};
    struct mf_sweep_result result;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(mf_sweep_run(&sweep, &options, &result), 0);
    fprintf(stderr, "sweep %s: %.1f s\n", name, seconds_since(&start));
    assert_int_equal(result.failures, 0);
    return result.write_points;
}

#define LARGE_DISK_BLOCKS 65536u /* 32 MiB */
#define LARGE_PROJECTS    16u
#define LARGE_LINES       10000u
#define LARGE_SERIAL      9876u /* selects a line near the end of SNList.txt and Patches.txt */

/* The large setup on a 32 MiB volume: 16 projects, the 9th selected by FLASHER.INI, which has
 * count 5, Serial.txt 9876 and 10,000-line SNList.txt and Patches.txt; FLASHER.LOG filled to
 * 40 bytes under its limit (LogMaxKiB's default), so that the cycle's line rotates it. */
static void large_setup(struct cut_case *cc)
{
    cc->blocks = LARGE_DISK_BLOCKS;
    cc->image = calloc(LARGE_DISK_BLOCKS, 512);
    assert_non_null(cc->image);
    struct mf_rambd ram;
    mf_rambd_init(&ram, cc->image, 512, LARGE_DISK_BLOCKS);
    struct mf_fat_format_options o = {.volume_id = 2};
    assert_int_equal(mf_fat_format(&ram.bd, &o), 0);
    static struct mf_fat fs;
    assert_int_equal(mf_fat_mount(&fs, &ram.bd, NULL, NULL), 0);

    uint8_t app[3000];
    firmware(app, sizeof app, 7);
    for (unsigned i = 1; i <= LARGE_PROJECTS; i++) {
        char folder[64], path[128];
        if (i == 9)
            snprintf(folder, sizeof folder, "Projects/09_Widget");
        else
            snprintf(folder, sizeof folder, "Projects/%02u_Product%02u", i, i);
        snprintf(path, sizeof path, "%s/01_App/app.bin", folder);
        put(&fs, path, app, sizeof app);
        snprintf(path, sizeof path, "%s/01_App/job.ini", folder);
        puts_(&fs, path,
              i == 9
                  ? basic_job
                  : "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.bin\naddress = 0x08000000\n");
        snprintf(path, sizeof path, "%s/Cntdown.txt", folder);
        puts_(&fs, path, i == 9 ? "5\r\n" : "50\r\n");
    }
    cc->project = "Projects/09_Widget";
    cc->serial = LARGE_SERIAL;
    char number[32];
    snprintf(number, sizeof number, "%u\r\n", LARGE_SERIAL);
    puts_(&fs, "Projects/09_Widget/Serial.txt", number);
    puts_(&fs, "FLASHER.INI", "[CONFIG]\r\nProject = Widget\r\n");

    size_t capacity = (size_t)LARGE_LINES * 24, used = 0;
    char *text = malloc(capacity);
    assert_non_null(text);
    for (unsigned n = 0; n < LARGE_LINES; n++)
        used += (size_t)snprintf(text + used, capacity - used, "%08X\r\n", snlist_bytes(n));
    put(&fs, "Projects/09_Widget/SNList.txt", text, used);
    used = 0;
    for (unsigned n = 0; n < LARGE_LINES; n++)
        used +=
            (size_t)snprintf(text + used, capacity - used, "1,8000100,2:%04X\r\n", patch_bytes(n));
    put(&fs, "Projects/09_Widget/Patches.txt", text, used);
    free(text);

    /* Earlier cycles' lines, then one line of the length that leaves 40 bytes. */
    const uint32_t limit = 1024u * 1024u;
    char *lines = malloc(limit);
    assert_non_null(lines);
    used = 0;
    for (unsigned n = 0; used + 400 < limit - 40; n++)
        used += (size_t)snprintf(lines + used, limit - used,
                                 "2025-11-24 08:00:00 slot 1 AUTO project \"Widget\" uid "
                                 "C79E7A276060F5D826F7243A serial %u OK (Total 0.349s, Erase "
                                 "0.256s, Prog 0.061s, Verify 0.012s), 4 left, job \"App\"\r\n",
                                 n);
    size_t pad = limit - 40 - used;
    memcpy(lines + used, "2025-11-24 08:00:00 ", 20);
    memset(lines + used + 20, '-', pad - 22);
    memcpy(lines + used + pad - 2, "\r\n", 2);
    used += pad;
    put(&fs, MF_FLASHLOG_NAME, lines, used);
    cc->log = lines;
    cc->log_size = used;

    /* All 16 projects load without an error, and the 9th is the one selected. */
    struct mf_area_fat area;
    mf_area_fat_init(&area, &fs, NULL);
    struct mf_setup setup;
    static uint8_t buffer[8192];
    char message[MF_SETUP_ERROR_MAX];
    assert_int_equal(mf_setup_load(&setup, &area.area, buffer, sizeof buffer, message), 0);
    assert_int_equal(setup.project_count, LARGE_PROJECTS);
    for (unsigned i = 0; i < setup.project_count; i++)
        assert_int_equal(setup.projects[i].error, 0);
    assert_string_equal(mf_setup_project(&setup)->name, "Widget");
    assert_int_equal(setup.log_max_bytes, limit);
    mf_setup_free(&setup);
    assert_int_equal(mf_fat_unmount(&fs), 0);
}

static void test_power_cut_during_authorization(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "5", "100\r\n");
    assert_int_equal(mf_fat_sync(&f->vol.fs), 0);
    struct cut_case cc = {.image = f->vol.memory, .sim_dir = f->sim_dir};
    /* serial, count and log each write */
    uint64_t points = cut_sweep(&cc, "cycle authorization");
    assert_true(points >= 6);
    if (!mf_test_soak())
        return;
    struct cut_case large = {.sim_dir = f->sim_dir};
    large_setup(&large);
    /* The same, and FLASHER.LOG's rotation (remove, rename) on top. */
    uint64_t large_points =
        cut_sweep(&large, "cycle authorization, 32 MiB, 16 projects, 10,000 lines, full log");
    fprintf(stderr, "cycle authorization: %llu write points (%llu on 4 MiB)\n",
            (unsigned long long)large_points, (unsigned long long)points);
    assert_true(large_points > points);
    assert_true(large.log_rotated);
    free(large.log);
    free(large.image);
}

/* The same with a count at the root and one in the project (a cycle takes one from each) and
 * the SNList.txt and Patches.txt lines the serial number selects. */
static void test_power_cut_with_both_counts_and_lines(void **state)
{
    struct fixture *f = *state;
    basic_setup(f, "7\r\n", "1\r\n");
    puts_(&f->vol.fs, "Cntdown.txt", "5\n");
    puts_(&f->vol.fs, "Projects/01_Widget/SNList.txt", "11111111\r\n22222222\r\n33333333\r\n");
    puts_(&f->vol.fs, "Projects/01_Widget/Patches.txt",
          "1,8000100,2:1111\r\n1,8000100,2:A55A\r\n1,8000100,2:3333\r\n");
    assert_int_equal(mf_fat_sync(&f->vol.fs), 0);
    struct cut_case cc = {.image = f->vol.memory, .sim_dir = f->sim_dir, .both = true};
    /* serial, two counts and the log each write */
    assert_true(cut_sweep(&cc, "cycle authorization, root and project counts") >= 8);
    /* Without a cut, the cycle does what the checks expect of a modified device. */
    assert_int_equal(load(f), 0);
    assert_int_equal(
        mf_sim_replace(f->sim_dir, 1, mf_profile_find("SIM-F1-64K"), NULL, NULL, NULL, 0), 0);
    struct mf_cycle_result r;
    assert_int_equal(cycle(f, 0, MF_ACTION_AUTO, &r), 0);
    assert_int_equal(r.serial, 1);
    assert_int_equal(number(&f->vol.fs, "Cntdown.txt"), 4);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Cntdown.txt"), 6);
    assert_int_equal(number(&f->vol.fs, "Projects/01_Widget/Serial.txt"), 2);
    size_t size;
    uint8_t *mem = flash(f, 1, &size);
    assert_memory_equal(mem + 0xF000, "\x22\x22\x22\x22", 4);
    assert_memory_equal(mem + 0x100, "\xA5\x5A", 2);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auto_programs_data_and_serial, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_counts_down_to_zero_then_refuses, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_no_room_for_the_log_line, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_root_and_project_counts_both_apply, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_serial_encodings, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_serial_that_does_not_fit_touches_nothing,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_serial_at_the_top, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_patches_by_serial_line, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_patches_with_several_jobs, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_number_files_keep_their_line_end, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_serial_taken_without_a_serial_field, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_flasher_ini_reference_keys, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_patches_across_two_jobs_sectors, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_project_names_beyond_ascii, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_bad_inline_patch_is_refused, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_snlist_line, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_whole_windows_from_the_data, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_whole_windows_streamed, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_whole_windows_crc_finds_a_flipped_bit, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_whole_windows_streamed_crc_finds_a_flipped_bit,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_whole_windows_readback_finds_a_flipped_bit,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_sealed_verify_crc_names_nothing, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_sealed_verify_readback_names_nothing, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_sealed_nopatch, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_sealed_patch_keeps_the_owners_line, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_sealed_operator_patches, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_verify_failure_consumes_the_count, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_crc_verify_reads_the_data_once, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_data_is_not_read_by_cycles, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_in_a_whole_window, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_programmed_alone, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_in_a_partial_window, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_in_the_serial_window, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_with_readback_verify, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_when_the_device_refuses_the_crc,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_during_the_program_pass, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_flip_without_verify, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_held_data_bounded_selected_first, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_fingerprint_from_held_data, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_connect_failure_consumes_nothing, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_program_failure_after_authorization, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_disconnect_failure_is_reported, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_verify_leaves_out_a_serial_over_the_data,
                                        setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_erase_verify_start_actions, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_unordered_hex_and_several_jobs, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_unordered_hex_beyond_the_hold_limit, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_setup_errors_name_file_line_and_key, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_overlap_first_or_last_wins, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_patch_line_limits, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_count_gone_while_connecting, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_reservations_are_per_project, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_slots_share_counts_exactly, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_fingerprint, setup_fixture, teardown_fixture),
        cmocka_unit_test_setup_teardown(test_signature_binds_uid_serial_and_setup, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_signature_without_serial_over_data, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_signature_is_verified, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_patch_over_signature_is_refused, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_signature_errors_name_file_line_and_key, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_signature_across_jobs, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_during_authorization, setup_fixture,
                                        teardown_fixture),
        cmocka_unit_test_setup_teardown(test_power_cut_with_both_counts_and_lines, setup_fixture,
                                        teardown_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
