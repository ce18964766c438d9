/* job.ini's [gdb] section reaches the job: every key is read into job->gdb, and a bad key or
 * value refuses the project with file, line and key. */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_rambd.h"
#include "mf_setup.h"
#include "mf_testfat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint8_t medium[2048 * 512];

static void put(struct mf_fat *fs, const char *path, const char *text)
{
    assert_int_equal(mf_testfat_put_text(fs, path, text), 0);
}

/* A project of one job, or two when `second` is not NULL (Projects/01_W/02_More). */
static void load2(const char *job_ini, const char *second, struct mf_setup *setup,
                  struct mf_fat *fs);

static void load(const char *job_ini, struct mf_setup *setup, struct mf_fat *fs)
{
    load2(job_ini, NULL, setup, fs);
}

static void load2(const char *job_ini, const char *second, struct mf_setup *setup,
                  struct mf_fat *fs)
{
    static struct mf_rambd ram;
    memset(medium, 0, sizeof medium);
    mf_rambd_init(&ram, medium, 512, sizeof medium / 512);
    struct mf_fat_format_options o = {.volume_id = 1};
    assert_int_equal(mf_fat_format(&ram.bd, &o), 0);
    assert_int_equal(mf_fat_mount(fs, &ram.bd, NULL, NULL), 0);
    assert_int_equal(mf_fat_mkdir(fs, "Projects"), 0);
    assert_int_equal(mf_fat_mkdir(fs, "Projects/01_W"), 0);
    assert_int_equal(mf_fat_mkdir(fs, "Projects/01_W/01_App"), 0);
    put(fs, "Projects/01_W/01_App/job.ini", job_ini);
    if (second) {
        assert_int_equal(mf_fat_mkdir(fs, "Projects/01_W/02_More"), 0);
        put(fs, "Projects/01_W/02_More/job.ini", second);
    }
    static struct mf_area_fat area;
    mf_area_fat_init(&area, fs, NULL);
    static uint8_t buffer[16384];
    char message[MF_SETUP_ERROR_MAX];
    assert_int_equal(mf_setup_load(setup, &area.area, buffer, sizeof buffer, message), 0);
    assert_int_equal(setup->project_count, 1);
}

static void test_gdb_keys_reach_the_job(void **state)
{
    (void)state;
    struct mf_setup setup;
    struct mf_fat fs;
    load("[job]\ndevice = SIM-F4-1M\n[gdb]\nconnect = monitor swdp_scan && attach 1\n"
         "reset = monitor reset halt\nrun = monitor reset run\ntimeout = 2500\n"
         "long_timeout = 90000\nprotect = monitor lock {level}\n",
         &setup, &fs);
    const struct mf_project *p = &setup.projects[0];
    assert_int_equal(p->error, 0);
    const struct mf_rsp_options *g = &p->jobs[0].gdb;
    assert_string_equal(g->connect, "monitor swdp_scan && attach 1");
    assert_string_equal(g->reset, "monitor reset halt");
    assert_string_equal(g->run, "monitor reset run");
    assert_string_equal(g->protect, "monitor lock {level}");
    assert_int_equal(g->timeout_ms, 2500);
    assert_int_equal(g->long_timeout_ms, 90000);
    assert_string_equal(g->halt, ""); /* not given: the default */
    mf_setup_free(&setup);
    mf_fat_unmount(&fs);
}

static void test_gdb_errors_name_line_and_key(void **state)
{
    (void)state;
    static const struct {
        const char *ini, *want;
    } cases[] = {
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\nbogus = 1\n",
         "Projects/01_W/01_App/job.ini:4: unknown key 'bogus' in [gdb]"},
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\ntimeout = 0\n",
         "Projects/01_W/01_App/job.ini:4: [gdb] timeout: "},
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\nreset = reboot please\n",
         "Projects/01_W/01_App/job.ini:4: [gdb] reset: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mf_setup setup;
        struct mf_fat fs;
        load(cases[i].ini, &setup, &fs);
        const struct mf_project *p = &setup.projects[0];
        assert_int_not_equal(p->error, 0);
        if (strncmp(p->message, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: %s", i, p->message);
        mf_setup_free(&setup);
        mf_fat_unmount(&fs);
    }
}

/* One connection serves the cycle, set up by the first job's [gdb]: a later job may repeat it or
 * leave it out, but one that says otherwise is refused, naming its line. */
static void test_later_job_gdb_must_match(void **state)
{
    (void)state;
    static const char first[] =
        "[job]\ndevice = SIM-F4-1M\n[gdb]\nconnect = attach 1\ntimeout = 2500\n";
    static const struct {
        const char *second, *want; /* want NULL: accepted */
    } cases[] = {
        {"[job]\ndevice = SIM-F4-1M\n", NULL},
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\ntimeout = 2500\nconnect = attach 1\n", NULL},
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\nconnect = attach 2\ntimeout = 2500\n",
         "Projects/01_W/02_More/job.ini:4: [gdb] differs from the first job's "
         "(Projects/01_W/01_App): one connection serves the cycle"},
        {"[job]\ndevice = SIM-F4-1M\n[gdb]\nconnect = attach 1\n",
         "Projects/01_W/02_More/job.ini:4: [gdb] differs from the first job's"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mf_setup setup;
        struct mf_fat fs;
        load2(first, cases[i].second, &setup, &fs);
        const struct mf_project *p = &setup.projects[0];
        if (!cases[i].want) {
            if (p->error)
                fail_msg("case %zu: refused: %s", i, p->message);
            assert_int_equal(p->job_count, 2);
        } else if (!p->error || strncmp(p->message, cases[i].want, strlen(cases[i].want)) != 0) {
            fail_msg("case %zu: %s", i, p->error ? p->message : "accepted");
        }
        mf_setup_free(&setup);
        mf_fat_unmount(&fs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gdb_keys_reach_the_job),
        cmocka_unit_test(test_gdb_errors_name_line_and_key),
        cmocka_unit_test(test_later_job_gdb_must_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
