/* job.ini's [gdb] section reaches the job: every key is read into job->gdb, and a bad key or
 * value refuses the project with file, line and key. */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_rambd.h"
#include "mf_setup.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint8_t medium[2048 * 512];

static void load(const char *job_ini, struct mf_setup *setup, struct mf_fat *fs)
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
    struct mf_fat_file f;
    assert_int_equal(
        mf_fat_open(fs, &f, "Projects/01_W/01_App/job.ini", MF_FAT_O_WRONLY | MF_FAT_O_CREAT), 0);
    assert_int_equal(mf_fat_write(fs, &f, job_ini, (uint32_t)strlen(job_ini)),
                     (int)strlen(job_ini));
    assert_int_equal(mf_fat_close(fs, &f), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gdb_keys_reach_the_job),
        cmocka_unit_test(test_gdb_errors_name_line_and_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
