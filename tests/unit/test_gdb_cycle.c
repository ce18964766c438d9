/* The job engine (mf_cycle_run) over the gdb back end against the fake GDB server: a server that
 * stalls, dies or answers garbage after the erase and after the program pass gives a clear error
 * of the right class, and the count is consumed exactly as with a `sim` device failing at the
 * same point (docs/jobs.md: a count is taken before the first erase and stays taken). Also one
 * whole cycle through the memory map, vFlash* and qCRC path. */
#include "mf_area.h"
#include "mf_cycle.h"
#include "mf_err.h"
#include "mf_fakegdb.h"
#include "mf_fat.h"
#include "mf_flashlog.h"
#include "mf_gdb.h"
#include "mf_setup.h"
#include "mf_sim.h"
#include "mf_target.h"
#include "mf_testfat.h"
#include "mf_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define VOLUME_BLOCKS 4096u        /* 2 MiB of FAT in RAM */
#define FLASH_SIZE    (256u << 10) /* LM3S6965: 256 KiB at 0, 1 KiB pages */
#define UID_AT        0x2000FF00u
#define APP_SIZE      6000u
#define SERIAL_AT     0x3FC00u
#define PROJECT       "Projects/01_Board"

static const uint8_t uid[8] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE};

/* Timeouts short enough for a test, long enough for a loaded machine's loopback. */
static const char job_ini[] = "[job]\n"
                              "device = LM3S6965\n"
                              "start = vector\n"
                              "[file]\n"
                              "path = app.bin\n"
                              "address = 0\n"
                              "[serial]\n"
                              "address = 0x3FC00\n"
                              "length = 4\n"
                              "[gdb]\n"
                              "timeout = 300\n"
                              "long_timeout = 600\n";

struct bench {
    struct mf_testfat vol;
    struct mf_area_fat area;
    struct mf_setup setup;
    struct mf_flashlog log;
    struct mf_cycle_env env;
    uint64_t clock;
    char *sim_dir;
    struct mf_slot slot;
    uint8_t scratch[16384];
    uint8_t app[APP_SIZE];
};

static uint64_t tick(void *context)
{
    struct bench *b = context;
    return b->clock += 3;
}

static int64_t wall(void *context)
{
    (void)context;
    return 1767225600; /* 2026-01-01 */
}

/* Writes a file of the volume, making its folders. */
static void store(struct bench *b, const char *path, const void *data, size_t size)
{
    assert_int_equal(mf_testfat_put(&b->vol.fs, path, data, size), 0);
}

/* A text file of the volume (malloc'd, NUL-terminated). */
static char *text_of(struct bench *b, const char *path)
{
    char *text;
    assert_int_equal(mf_testfat_get(&b->vol.fs, path, &text, NULL), 0);
    return text;
}

static unsigned long long count_in(struct bench *b, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, PROJECT "/%s", name);
    char *text = text_of(b, path);
    unsigned long long v = strtoull(text, NULL, 10);
    free(text);
    return v;
}

/* A fresh volume with one project (Cntdown 5, Serial 100) and its setup loaded. */
static void bench_init(struct bench *b)
{
    memset(b, 0, sizeof *b);
    struct mf_fat_format_options format = {.volume_id = 7};
    assert_int_equal(mf_testfat_init(&b->vol, 512, VOLUME_BLOCKS, &format), 0);
    mf_area_fat_init(&b->area, &b->vol.fs, NULL);
    uint32_t x = 99;
    for (size_t i = 0; i < sizeof b->app; i++) {
        x = x * 1664525u + 1013904223u;
        b->app[i] = (uint8_t)(x >> 24);
    }
    /* A vector table: SP, then a reset handler with the Thumb bit. */
    const uint8_t vector[8] = {0x00, 0x00, 0x01, 0x20, 0x09, 0x01, 0x00, 0x00};
    memcpy(b->app, vector, sizeof vector);
    store(b, PROJECT "/01_App/app.bin", b->app, sizeof b->app);
    store(b, PROJECT "/01_App/job.ini", job_ini, strlen(job_ini));
    store(b, PROJECT "/Cntdown.txt", "5\r\n", 3);
    store(b, PROJECT "/Serial.txt", "100\r\n", 5);
    char message[MF_SETUP_ERROR_MAX];
    int err = mf_setup_load(&b->setup, &b->area.area, b->scratch, sizeof b->scratch, message);
    if (err)
        fail_msg("setup: %s", message);
    assert_int_equal(b->setup.projects[0].error, 0);
    mf_flashlog_init(&b->log, &b->vol.fs, NULL, 64 * 1024, wall, NULL);
    b->env = (struct mf_cycle_env){.setup = &b->setup,
                                   .area = &b->area.area,
                                   .log = &b->log,
                                   .now_ms = tick,
                                   .clock_context = b};
    b->sim_dir = mf_test_tmpdir("gdbcycle");
    assert_non_null(b->sim_dir);
}

static void bench_free(struct bench *b)
{
    mf_setup_free(&b->setup);
    mf_test_rmtree(b->sim_dir);
    free(b->sim_dir);
    mf_testfat_free(&b->vol);
}

/* What a cycle did to the counts. */
struct outcome {
    int error;
    enum mf_cycle_failure failure;
    bool consumed;
    unsigned long long countdown_taken, serials_taken;
    char message[MF_CYCLE_MESSAGE_MAX];
};

static void run_cycle(struct bench *b, struct mf_target *target, struct outcome *o)
{
    unsigned long long countdown = count_in(b, "Cntdown.txt"), serial = count_in(b, "Serial.txt");
    mf_slot_init(&b->slot, 1, target);
    struct mf_cycle_request request = {.action = MF_ACTION_AUTO};
    struct mf_cycle_result r;
    mf_cycle_run(&b->env, &b->slot, &request, &r);
    o->error = r.error;
    o->failure = r.failure;
    o->consumed = r.consumed;
    o->countdown_taken = countdown - count_in(b, "Cntdown.txt");
    o->serials_taken = count_in(b, "Serial.txt") - serial;
    snprintf(o->message, sizeof o->message, "%s", r.message);
}

/* A QEMU-like server (RAM-like flash, no map, no qCRC) or an OpenOCD-like one (memory map with
 * 1 KiB blocks, vFlash*, qCRC), with the LM3S6965's memory. */
static struct mf_fakegdb_config server(bool memory_map)
{
    struct mf_fakegdb_config c = {
        .windows = {{.base = 0, .size = FLASH_SIZE, .flash = true, .initial = 0xFF},
                    {.base = 0x20000000u, .size = 64u << 10}},
        .packet_size = 0x1000,
        .offer_packet_size = true,
        .no_ack = true,
        .memory_map = memory_map,
        .flash_block = 1024,
        .crc = memory_map,
    };
    return c;
}

/* One cycle on the fake server as `config` says; the fake is left running for more checks. */
static struct mf_fakegdb *gdb_cycle(struct bench *b, const struct mf_fakegdb_config *config,
                                    struct outcome *o)
{
    struct mf_fakegdb *fake = mf_fakegdb_start(config, false);
    assert_non_null(fake);
    assert_int_equal(mf_fakegdb_write(fake, UID_AT, uid, sizeof uid), 0);
    struct mf_target target = {0};
    if (mf_gdb_open(&target, mf_fakegdb_spec(fake), NULL))
        fail_msg("gdb open: %s", target.error);
    /* As the daemon does: the project's [gdb] settings drive the server. */
    mf_gdb_set_options(&target, &b->setup.projects[0].jobs[0].gdb);
    run_cycle(b, &target, o);
    mf_gdb_close(&target);
    /* The engine left nothing open. */
    assert_int_equal(mf_fakegdb_wait_closed(fake, 1), 0);
    return fake;
}

static void sim_cycle(struct bench *b, const struct mf_sim_faults *faults, struct outcome *o)
{
    struct mf_sim_options options = {.faults = *faults};
    struct mf_target target = {0};
    assert_int_equal(mf_sim_open(&target, b->sim_dir, 1, &options), 0);
    run_cycle(b, &target, o);
    mf_sim_close(&target);
}

/* Where the server fails, what the cycle must say, and the sim device failing at that point. */
struct fault_case {
    const char *name;
    bool memory_map;
    const char *prefix; /* the request the fault answers */
    unsigned skip;
    enum mf_fakegdb_fault fault;
    int error;
    enum mf_cycle_failure failure;
    const char *text;                /* in the cycle's message */
    const struct mf_sim_faults *sim; /* the sim device failing at the same point, */
    bool sim_same_error;             /* with the same error code (else: the same class) */
};

static void check_case(const struct fault_case *fc)
{
    struct bench b;
    bench_init(&b);
    struct mf_fakegdb_config config = server(fc->memory_map);
    config.fault_prefix = fc->prefix;
    config.fault_skip = fc->skip;
    config.fault = fc->fault;
    struct outcome g, s;
    struct mf_fakegdb *fake = gdb_cycle(&b, &config, &g);
    struct mf_fakegdb_stats st;
    mf_fakegdb_stats(fake, &st);
    if (st.faults != 1)
        fail_msg("%s: the fault was given %u times: %s", fc->name, st.faults, g.message);
    if (g.error != fc->error || g.failure != fc->failure || !strstr(g.message, fc->text))
        fail_msg("%s: expected %s (class %d) saying '%s'; got %s (class %d): %s", fc->name,
                 mf_strerror(fc->error), (int)fc->failure, fc->text, mf_strerror(g.error),
                 (int)g.failure, g.message);
    /* After the erase began, the count and the serial number are taken, and the log says so. */
    assert_true(g.consumed);
    assert_int_equal(g.countdown_taken, 1);
    assert_int_equal(g.serials_taken, 1);
    char *log = text_of(&b, "FLASHER.LOG");
    if (!strstr(log, "serial 100 ERROR") || !strstr(log, "(count consumed)"))
        fail_msg("%s: FLASHER.LOG does not show the consumed count:\n%s", fc->name, log);
    free(log);

    /* The same point on a sim device: the same rule. */
    sim_cycle(&b, fc->sim, &s);
    if (s.consumed != g.consumed || s.countdown_taken != g.countdown_taken ||
        s.serials_taken != g.serials_taken || s.failure != g.failure ||
        (fc->sim_same_error && s.error != g.error))
        fail_msg("%s: sim gave %s (class %d, consumed %d, %llu/%llu taken): %s; gdb gave %s "
                 "(class %d, consumed %d, %llu/%llu taken)",
                 fc->name, mf_strerror(s.error), (int)s.failure, s.consumed, s.countdown_taken,
                 s.serials_taken, s.message, mf_strerror(g.error), (int)g.failure, g.consumed,
                 g.countdown_taken, g.serials_taken);

    /* The server comes back healthy: the next device takes the next count and serial number. */
    mf_fakegdb_fault_at(fake, NULL, 0, MF_FAKEGDB_NO_FAULT);
    mf_fakegdb_stop(fake);
    config.fault = MF_FAKEGDB_NO_FAULT;
    struct outcome ok;
    fake = gdb_cycle(&b, &config, &ok);
    if (ok.error)
        fail_msg("%s: the cycle after the fault: %s", fc->name, ok.message);
    assert_int_equal(count_in(&b, "Cntdown.txt"), 2);
    assert_int_equal(count_in(&b, "Serial.txt"), 103);
    uint8_t serial[4];
    assert_int_equal(mf_fakegdb_read(fake, SERIAL_AT, serial, 4), 0);
    assert_memory_equal(serial, "\x66\x00\x00\x00", 4); /* 102, little-endian */
    mf_fakegdb_stop(fake);
    bench_free(&b);
}

/* The sim device failing at the same points. */
static const struct mf_sim_faults sim_program_timeout = {
    .timeout = {MF_SIM_FAULT_ALWAYS, MF_SIM_PHASE_PROGRAM}};
static const struct mf_sim_faults sim_crc_timeout = {
    .timeout = {MF_SIM_FAULT_ALWAYS, MF_SIM_PHASE_CRC}};
static const struct mf_sim_faults sim_program_fails = {.program = {MF_SIM_FAULT_ALWAYS, 0}};

/* After the erase: the program pass meets the fault (QEMU-like: the erase is written lazily, so
 * the first X is the first change; OpenOCD-like: vFlashErase came first, vFlashWrite fails). */
static void test_fault_after_erase(void **state)
{
    (void)state;
    static const struct fault_case cases[] = {
        {"stall at the first X", false, "X", 0, MF_FAKEGDB_STALL, MF_ETIMEOUT, MF_FAIL_TIMEOUT,
         "program at 0x0: no reply from the GDB server within 300 ms to 'X0,", &sim_program_timeout,
         true},
        {"death at the first X", false, "X", 0, MF_FAKEGDB_CLOSE, MF_EIO, MF_FAIL_TARGET,
         "program at 0x0: the GDB server closed the connection (waiting for the reply to 'X0,",
         &sim_program_fails, true},
        {"garbage at the second X", false, "X", 1, MF_FAKEGDB_FLOOD, MF_EPROTO, MF_FAIL_TARGET,
         "the GDB server answered garbage (", &sim_program_fails, false},
        {"death at the first vFlashWrite", true, "vFlashWrite", 0, MF_FAKEGDB_CLOSE, MF_EIO,
         MF_FAIL_TARGET, "program at 0x0: the GDB server closed the connection", &sim_program_fails,
         true},
        {"nonsense to vFlashWrite", true, "vFlashWrite", 0, MF_FAKEGDB_NONSENSE, MF_EPROTO,
         MF_FAIL_TARGET, "the GDB server answered 'Zzz?' to 'vFlashWrite:0:", &sim_program_fails,
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
}

/* After the program pass: the verify pass meets the fault (its first request is qCRC, which the
 * QEMU-like server does not support; then the read-back's m, or vFlashDone and qCRC). A link
 * lost or garbled while verifying is the target's failure (#ERR207), not a mismatch (#ERR205). */
static void test_fault_after_program(void **state)
{
    (void)state;
    static const struct fault_case cases[] = {
        {"stall at qCRC", false, "qCRC", 0, MF_FAKEGDB_STALL, MF_ETIMEOUT, MF_FAIL_TIMEOUT,
         "verify: CRC at 0x0: no reply from the GDB server within 600 ms to 'qCRC:0,",
         &sim_crc_timeout, true},
        {"death at the read-back", false, "m0,", 0, MF_FAKEGDB_CLOSE, MF_EIO, MF_FAIL_TARGET,
         "the GDB server closed the connection (waiting for the reply to 'm0,", &sim_program_fails,
         false},
        {"garbage at the read-back", false, "m0,", 0, MF_FAKEGDB_FLOOD, MF_EPROTO, MF_FAIL_TARGET,
         "the GDB server answered garbage (", &sim_program_fails, false},
        {"stall at vFlashDone", true, "vFlashDone", 0, MF_FAKEGDB_STALL, MF_ETIMEOUT,
         MF_FAIL_TIMEOUT, "no reply from the GDB server within 600 ms to 'vFlashDone'",
         &sim_crc_timeout, true},
        {"death at qCRC", true, "qCRC", 0, MF_FAKEGDB_CLOSE, MF_EIO, MF_FAIL_TARGET,
         "verify: CRC at 0x0: the GDB server closed the connection", &sim_program_fails, false},
        {"nonsense to qCRC", true, "qCRC", 0, MF_FAKEGDB_NONSENSE, MF_EPROTO, MF_FAIL_TARGET,
         "verify: CRC at 0x0: the GDB server answered 'Zzz?' to 'qCRC:0,", &sim_program_fails,
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i]);
}

/* A whole cycle through the memory map: vFlashErase by the map's blocks, vFlashWrite,
 * vFlashDone before the first qCRC, verify by qCRC, the vector start. */
static void test_memory_map_cycle(void **state)
{
    (void)state;
    struct bench b;
    bench_init(&b);
    struct mf_fakegdb_config config = server(true);
    struct outcome o;
    struct mf_fakegdb *fake = gdb_cycle(&b, &config, &o);
    if (o.error)
        fail_msg("cycle: %s", o.message);
    assert_true(o.consumed);
    assert_int_equal(count_in(&b, "Cntdown.txt"), 4);
    assert_int_equal(count_in(&b, "Serial.txt"), 101);
    static uint8_t flash[FLASH_SIZE];
    assert_int_equal(mf_fakegdb_read(fake, 0, flash, sizeof flash), 0);
    assert_memory_equal(flash, b.app, sizeof b.app);
    for (size_t i = sizeof b.app; i < sizeof flash; i++) {
        uint8_t want = i == SERIAL_AT ? 100 : 0xFF;
        if (i > SERIAL_AT && i < SERIAL_AT + 4)
            want = 0;
        if (flash[i] != want)
            fail_msg("flash[0x%zx] = 0x%02x, expected 0x%02x", i, flash[i], want);
    }
    struct mf_fakegdb_stats st;
    mf_fakegdb_stats(fake, &st);
    assert_true(st.flash_erases >= 1);
    assert_true(st.flash_writes >= 2);
    assert_true(st.flash_done >= 1);
    assert_true(st.crc >= 2); /* the data and the serial number's page */
    assert_int_equal(st.x_writes, 0);
    assert_int_equal(st.m_writes, 0);
    assert_int_equal(st.reads_in_flash_sequence, 0);
    assert_int_equal(st.nor_violations, 0);
    assert_int_equal(st.sp, 0x20010000u);
    assert_int_equal(st.pc, 0x108u);
    assert_int_equal(st.continues, 1);
    char *log = text_of(&b, "FLASHER.LOG");
    assert_non_null(strstr(log, "uid 1032547698BADCFE serial 100 OK"));
    free(log);
    mf_fakegdb_stop(fake);
    bench_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_map_cycle),
        cmocka_unit_test(test_fault_after_erase),
        cmocka_unit_test(test_fault_after_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
