/* Benchmarks of the job engine, each figure next to a peer measured in the same run:
 *   1. one cycle of a 1 MiB image into a zero-latency sim device (erase, program, verify by CRC),
 *      from the public area, in MB/s, next to memcpy of the same bytes;
 *   2. parsing a large Intel HEX file (16 MiB of payload) into an image, in MB/s of HEX text,
 *      next to `objcopy -I ihex -O binary` and `srec_cat` on the same file.
 * Prints; never fails on speed. Usage: bench_cycle [MiB-of-HEX-payload] */
#include "mf_cycle.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_ihex.h"
#include "mf_image.h"
#include "mf_rambd.h"
#include "mf_setup.h"
#include "mf_sim.h"
#include "mf_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static int put(struct mf_fat *fs, const char *path, const void *data, size_t len)
{
    struct mf_fat_file f;
    int err = mf_fat_open(fs, &f, path, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC);
    if (err)
        return err;
    int n = mf_fat_write(fs, &f, data, (uint32_t)len);
    int c = mf_fat_close(fs, &f);
    return n < 0 ? n : c;
}

static uint64_t wall_ms(void *context)
{
    (void)context;
    return (uint64_t)(now_s() * 1000);
}

/* 1. A cycle from the public area into a zero-latency sim device. */
static int bench_cycle(void)
{
    enum { IMAGE = 1 << 20, DISK = 8 << 20, RUNS = 15 };
    uint8_t *disk = calloc(1, DISK), *image = malloc(IMAGE), *copy = malloc(IMAGE);
    static struct mf_rambd ram;
    static struct mf_fat fs;
    static struct mf_area_fat area;
    static struct mf_setup setup;
    static struct mf_slot slot;
    static uint8_t buffer[64 << 10];
    char message[MF_SETUP_ERROR_MAX];
    struct mf_target target = {0};
    char *dir = mf_test_tmpdir("bench");
    fill(image, IMAGE, 42);
    mf_rambd_init(&ram, disk, 512, DISK / 512);
    struct mf_fat_format_options o = {.volume_id = 1};
    int err = mf_fat_format(&ram.bd, &o);
    if (!err)
        err = mf_fat_mount(&fs, &ram.bd, NULL, NULL);
    if (!err)
        err = mf_fat_mkdir(&fs, "Projects") || mf_fat_mkdir(&fs, "Projects/P") ||
              mf_fat_mkdir(&fs, "Projects/P/J");
    if (!err)
        err = put(&fs, "Projects/P/J/app.bin", image, IMAGE);
    static const char job[] = "[job]\ndevice = SIM-F4-1M\nverify = crc\n"
                              "[file]\npath = app.bin\naddress = 0x08000000\n";
    if (!err)
        err = put(&fs, "Projects/P/J/job.ini", job, sizeof job - 1);
    mf_area_fat_init(&area, &fs, NULL);
    if (!err)
        err = mf_setup_load(&setup, &area.area, buffer, sizeof buffer, message);
    if (!err)
        err = mf_sim_open(&target, dir, 1, NULL);
    if (err) {
        fprintf(stderr, "bench: setup failed: %s %s\n", mf_strerror(err), message);
        return 1;
    }
    mf_slot_init(&slot, 1, &target);
    struct mf_cycle_env env = {.setup = &setup, .area = &area.area, .now_ms = wall_ms};
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO};
    double t[RUNS], m[RUNS];
    for (int i = 0; i < RUNS; i++) {
        struct mf_cycle_result r;
        double t0 = now_s();
        err = mf_cycle_run(&env, &slot, &req, &r);
        t[i] = now_s() - t0;
        if (err) {
            fprintf(stderr, "bench: cycle failed: %s\n", r.message);
            return 1;
        }
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now_s();
        memcpy(copy, image, IMAGE);
        __asm__ volatile("" : : "r"(copy) : "memory");
        m[i] = now_s() - t0;
    }
    double cycle = median(t, RUNS), mem = median(m, RUNS);
    double mb = IMAGE / 1e6;
    printf("%-58s %10.1f MB/s\n", "cycle, 1 MiB, zero-latency sim, public area (ours)", mb / cycle);
    printf("%-58s %10.1f MB/s\n", "memcpy of the same bytes (peer)", mb / mem);
    printf("%-58s %10.3f x   (goal >= 0.5 in issue 9)\n", "ratio ours / memcpy",
           (mb / cycle) / (mb / mem));
    mf_sim_close(&target);
    mf_setup_free(&setup);
    mf_test_rmtree(dir);
    free(dir);
    free(disk);
    free(image);
    free(copy);
    return 0;
}

struct counter {
    uint64_t bytes;
};

static int count_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                      uint64_t where)
{
    (void)address;
    (void)bytes;
    (void)where;
    ((struct counter *)context)->bytes += length;
    return 0;
}

static int write_file(void *context, const void *bytes, size_t length)
{
    return fwrite(bytes, 1, length, context) == length ? 0 : MF_EIO;
}

static double run_tool(const char *command)
{
    double t0 = now_s();
    int rc = system(command);
    double t = now_s() - t0;
    return rc == 0 ? t : -1;
}

/* 2. Intel HEX parse speed. */
static int bench_hex(unsigned mib)
{
    size_t payload = (size_t)mib << 20;
    uint8_t *data = malloc(payload);
    fill(data, payload, 7);
    char *dir = mf_test_tmpdir("benchhex");
    char *hex = mf_test_path(dir, "big.hex"), *bin = mf_test_path(dir, "big.bin");
    struct mf_image img;
    mf_image_init(&img, NULL);
    uint32_t src;
    struct mf_image_error ierr;
    int err = mf_image_add_source(&img, "gen", MF_IMAGE_FORMAT_BIN, &src, &ierr);
    if (!err)
        err = mf_image_add(&img, src, 0x08000000, data, payload, 0, &ierr);
    if (!err)
        err = mf_image_finish(&img, &ierr);
    FILE *f = fopen(hex, "wb");
    if (!err && f)
        err = mf_ihex_write(&img, 32, write_file, f, &ierr);
    if (f)
        fclose(f);
    mf_image_free(&img);
    char *text;
    size_t text_size;
    if (err || mf_test_read_file(hex, &text, &text_size)) {
        fprintf(stderr, "bench: cannot make the HEX file\n");
        return 1;
    }
    enum { RUNS = 5 };
    double ours[RUNS];
    for (int i = 0; i < RUNS; i++) {
        struct counter c = {0};
        struct mf_image_sink sink = {count_data, NULL, &c};
        struct mf_ihex_parser p;
        double t0 = now_s();
        mf_ihex_init(&p, &sink);
        err = mf_ihex_feed(&p, text, text_size, &ierr);
        if (!err)
            err = mf_ihex_finish(&p, &ierr);
        ours[i] = now_s() - t0;
        if (err || c.bytes != payload) {
            fprintf(stderr, "bench: parse failed: %s\n", ierr.text);
            return 1;
        }
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "objcopy -I ihex -O binary %s %s", hex, bin);
    double objcopy[RUNS], srec[RUNS];
    for (int i = 0; i < RUNS; i++)
        objcopy[i] = run_tool(cmd);
    snprintf(cmd, sizeof cmd, "srec_cat %s -intel -o %s -binary", hex, bin);
    for (int i = 0; i < RUNS; i++)
        srec[i] = run_tool(cmd);
    double mb = (double)text_size / 1e6;
    double o = median(ours, RUNS), oc = median(objcopy, RUNS), sc = median(srec, RUNS);
    printf("%-58s %10.1f MB/s\n", "Intel HEX parse, streaming (ours)", mb / o);
    if (oc > 0)
        printf("%-58s %10.1f MB/s   ratio ours/objcopy %.1f x (goal >= 2)\n",
               "objcopy -I ihex -O binary (peer)", mb / oc, oc / o);
    else
        printf("%-58s %10s\n", "objcopy -I ihex -O binary (peer)", "failed");
    if (sc > 0)
        printf("%-58s %10.1f MB/s   ratio ours/srec_cat %.1f x\n", "srec_cat (peer)", mb / sc,
               sc / o);
    printf("(HEX file: %.1f MB of text for %u MiB of payload, 32-byte records)\n", mb, mib);
    free(text);
    free(data);
    mf_test_rmtree(dir);
    free(dir);
    free(hex);
    free(bin);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned mib = argc > 1 ? (unsigned)atoi(argv[1]) : 16;
    printf("mintflash job engine benchmark\n\n");
    int rc = bench_cycle();
    printf("\n");
    rc |= bench_hex(mib ? mib : 16);
    return rc;
}
