/* Benchmarks of the job engine, each figure next to a peer measured in the same run:
 *   1. parsing a large Intel HEX file (16 MiB of payload) into an image, in MB/s of HEX text,
 *      next to `objcopy -I ihex -O binary` and `srec_cat` on the same file;
 *   2. one cycle (erase, program, verify by CRC) into a zero-latency sim device from the public
 *      area, in MB/s, next to memcpy of the same bytes; 64 KiB, 256 KiB and 1 MiB images;
 *   3. the same from the secure area, next to XChaCha20-Poly1305 decryption alone of the same
 *      bytes in the secure area's chunks (libsodium);
 *   4. the CRC the cycle verifies with, each way it can be computed.
 * Lines "ROW\t..." are rows of `make bench`'s table (scripts/bench); the rest are details.
 * Prints; never fails on speed. Usage: bench_cycle [MiB-of-HEX-payload]; `bench_cycle cycles`:
 * 2 and 3 alone; `bench_cycle profile`: 5000 public-area cycles of 1 MiB, for a profiler. */
#include "mf_crc32.h"
#include "mf_cycle.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_ihex.h"
#include "mf_image.h"
#include "mf_rambd.h"
#include "mf_ramanchor.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_sim.h"
#include "mf_target.h"
#include "mf_testfat.h"
#include "mf_testutil.h"
#include "mf_worker_thread.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CYCLE_RUNS 15

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

static uint64_t wall_ms(void *context)
{
    (void)context;
    return (uint64_t)(now_s() * 1000);
}

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    randombytes_buf(buffer, length);
}

/* A one-project setup programming `image` into a SIM-F4-1M, in the public area of a RAM disk or,
 * with `secure`, moved from there into a secure area on another RAM disk (RAM trust anchor). */
struct bench_setup {
    struct mf_testfat public_vol;
    uint8_t *secure_mem;
    struct mf_rambd secure_ram;
    struct mf_area_fat public_area;
    struct mf_ramanchor anchor;
    struct mf_secure secure;
    bool is_secure;
    struct mf_area *area;
    struct mf_setup setup;
    const uint8_t *image; /* what the device must hold afterwards */
    size_t size;
    uint8_t buffer[64 << 10];
};

enum { PUBLIC_DISK = 16 << 20, SECURE_DISK = 8 << 20 };

static int setup_make(struct bench_setup *b, const uint8_t *image, size_t size, bool secure)
{
    static const char job[] = "[job]\ndevice = SIM-F4-1M\nverify = crc\n"
                              "[file]\npath = app.bin\naddress = 0x08000000\n";
    char message[MF_SETUP_ERROR_MAX > MF_SECURE_MESSAGE_MAX ? MF_SETUP_ERROR_MAX
                                                            : MF_SECURE_MESSAGE_MAX] = "";
    const char *root = secure ? MF_SECURE_FOLDER "/" : "";
    char path[128];
    memset(b, 0, sizeof *b);
    b->image = image;
    b->size = size;
    b->secure_mem = secure ? calloc(1, SECURE_DISK) : NULL;
    if (secure && !b->secure_mem)
        return MF_ENOMEM;
    struct mf_fat *fs = &b->public_vol.fs;
    struct mf_fat_format_options o = {.volume_id = 1};
    int err = mf_testfat_init(&b->public_vol, 512, PUBLIC_DISK / 512, &o);
    snprintf(path, sizeof path, "%sProjects/01_P/01_J/app.bin", root);
    if (!err)
        err = mf_testfat_put(fs, path, image, size);
    snprintf(path, sizeof path, "%sProjects/01_P/01_J/job.ini", root);
    if (!err)
        err = mf_testfat_put(fs, path, job, sizeof job - 1);
    mf_area_fat_init(&b->public_area, fs, NULL);
    b->area = &b->public_area.area;
    if (!err && secure) {
        mf_rambd_init(&b->secure_ram, b->secure_mem, 512, SECURE_DISK / 512);
        mf_ramanchor_init(&b->anchor);
        /* As the daemon does: a worker thread shares the decryption of long reads. */
        static struct mf_worker_thread worker;
        static bool worker_started;
        if (!worker_started)
            worker_started = mf_worker_thread_start(&worker) == 0;
        struct mf_secure_config c = {.bd = &b->secure_ram.bd,
                                     .anchor = &b->anchor.anchor,
                                     .random = entropy,
                                     .reservation = 1,
                                     .worker = worker_started ? &worker.worker : NULL};
        err = mf_secure_open(&b->secure, &c, message);
        if (!err)
            err = mf_secure_install(&b->secure, &b->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                    message);
        b->is_secure = true;
        b->area = &b->secure.area;
    }
    if (!err)
        err = mf_setup_load(&b->setup, b->area, b->buffer, sizeof b->buffer, message);
    if (err)
        fprintf(stderr, "bench: setup failed: %s %s\n", mf_strerror(err), message);
    return err;
}

static void setup_free(struct bench_setup *b)
{
    mf_setup_free(&b->setup);
    if (b->is_secure)
        mf_secure_close(&b->secure);
    mf_testfat_free(&b->public_vol);
    free(b->secure_mem);
}

/* Median seconds of one cycle of the setup into a zero-latency sim device. */
static int time_cycles(struct bench_setup *b, double *seconds)
{
    static struct mf_slot slot;
    struct mf_target target = {0};
    char *dir = mf_test_tmpdir("bench");
    int err = dir ? mf_sim_open(&target, dir, 1, NULL) : MF_ENOMEM;
    if (err) {
        fprintf(stderr, "bench: sim: %s\n", target.error);
        free(dir);
        return err;
    }
    mf_slot_init(&slot, 1, &target);
    struct mf_cycle_env env = {.setup = &b->setup, .area = b->area, .now_ms = wall_ms};
    struct mf_cycle_request req = {.action = MF_ACTION_AUTO};
    double t[CYCLE_RUNS + 1];
    for (int i = 0; i <= CYCLE_RUNS && !err; i++) {
        struct mf_cycle_result r;
        double t0 = now_s();
        err = mf_cycle_run(&env, &slot, &req, &r);
        t[i] = now_s() - t0;
        if (err)
            fprintf(stderr, "bench: cycle failed: %s\n", r.message);
    }
    /* The first cycle makes the device (flash.bin): not counted. */
    *seconds = err ? 0 : median(t + 1, CYCLE_RUNS);
    mf_sim_close(&target);
    /* A figure for a cycle that did not program is worth nothing: the device must hold it. */
    char *flash = mf_test_path(dir, "slot1/flash.bin"), *bytes = NULL;
    size_t flash_size = 0;
    if (!err && (mf_test_read_file(flash, &bytes, &flash_size) != 0 || flash_size < b->size ||
                 memcmp(bytes, b->image, b->size) != 0)) {
        fprintf(stderr, "bench: the device does not hold the image after the cycles\n");
        err = MF_EVERIFY;
    }
    free(bytes);
    free(flash);
    mf_test_rmtree(dir);
    free(dir);
    return err;
}

static double time_memcpy(const uint8_t *image, size_t size)
{
    uint8_t *copy = malloc(size);
    double m[CYCLE_RUNS];
    for (int i = 0; i < CYCLE_RUNS; i++) {
        double t0 = now_s();
        memcpy(copy, image, size);
        __asm__ volatile("" : : "r"(copy) : "memory");
        m[i] = now_s() - t0;
    }
    free(copy);
    return median(m, CYCLE_RUNS);
}

/* What any cycle that erases, programs and verifies by CRC must do to the bytes, in memory and
 * nothing else: erase (memset to 0xFF), program (memcpy), the device's CRC of what it holds (the
 * CRC of what is sent can be known beforehand: held data has it from the load). The floor under
 * the public-area row, next to its memcpy; `*no_erase` the same without the memset, as if erasing
 * cost nothing at all. */
static double time_floor(const uint8_t *image, size_t size, double *no_erase)
{
    uint8_t *device = malloc(size);
    double m[CYCLE_RUNS], n[CYCLE_RUNS];
    uint32_t sink = 0;
    for (int i = 0; i < CYCLE_RUNS; i++) {
        double t0 = now_s();
        memset(device, 0xFF, size);
        __asm__ volatile("" : : "r"(device) : "memory");
        double t1 = now_s();
        memcpy(device, image, size);
        sink ^= mf_target_crc(MF_TARGET_CRC_INIT, device, size);
        double t2 = now_s();
        m[i] = t2 - t0;
        n[i] = t2 - t1;
    }
    __asm__ volatile("" : : "r"(sink) : "memory");
    free(device);
    *no_erase = median(n, CYCLE_RUNS);
    return median(m, CYCLE_RUNS);
}

/* XChaCha20-Poly1305 decryption alone of `size` bytes in MF_SECURE_CHUNK chunks, as the secure
 * area stores them (16-byte tag and 17 bytes of associated data per chunk). */
static double time_decrypt(const uint8_t *image, size_t size)
{
    size_t chunks = (size + MF_SECURE_CHUNK - 1) / MF_SECURE_CHUNK;
    size_t stored = MF_SECURE_CHUNK + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *sealed = calloc(chunks, stored), *plain = calloc(1, MF_SECURE_CHUNK),
            *whole = calloc(chunks, MF_SECURE_CHUNK);
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] = {0}, ad[17] = {0};
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    memcpy(whole, image, size);
    for (size_t i = 0; i < chunks; i++) {
        nonce[0] = (uint8_t)i;
        nonce[1] = (uint8_t)(i >> 8);
        crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + i * stored, NULL,
                                                   whole + i * MF_SECURE_CHUNK, MF_SECURE_CHUNK, ad,
                                                   sizeof ad, NULL, nonce, key);
    }
    double d[CYCLE_RUNS];
    int bad = 0;
    for (int r = 0; r < CYCLE_RUNS; r++) {
        double t0 = now_s();
        for (size_t i = 0; i < chunks; i++) {
            nonce[0] = (uint8_t)i;
            nonce[1] = (uint8_t)(i >> 8);
            bad |= crypto_aead_xchacha20poly1305_ietf_decrypt(
                plain, NULL, NULL, sealed + i * stored, stored, ad, sizeof ad, nonce, key);
        }
        d[r] = now_s() - t0;
    }
    if (bad)
        fprintf(stderr, "bench: decryption failed\n");
    free(sealed);
    free(plain);
    free(whole);
    return median(d, CYCLE_RUNS);
}

/* 2 and 3. Cycles from either area at three image sizes; the table gets 1 MiB. */
static int bench_cycles(void)
{
    static const size_t sizes[] = {64u << 10, 256u << 10, 1u << 20};
    static struct bench_setup b;
    uint8_t *image = malloc(1u << 20);
    fill(image, 1u << 20, 42);
    printf("cycle into a zero-latency sim device (SIM-F4-1M, erase by sectors, verify by CRC), "
           "median of %d:\n",
           CYCLE_RUNS);
    printf("  %-10s %22s %22s %14s %18s\n", "image", "public area", "secure area", "memcpy",
           "decryption alone");
    int err = 0;
    double floors[3] = {0}, bare[3] = {0}, mems[3] = {0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !err; i++) {
        size_t size = sizes[i];
        double pub = 0, sec = 0;
        err = setup_make(&b, image, size, false);
        if (!err)
            err = time_cycles(&b, &pub);
        setup_free(&b);
        if (!err)
            err = setup_make(&b, image, size, true);
        if (!err)
            err = time_cycles(&b, &sec);
        setup_free(&b);
        if (err)
            break;
        double mem = time_memcpy(image, size), dec = time_decrypt(image, size);
        floors[i] = time_floor(image, size, &bare[i]);
        mems[i] = mem;
        double mb = (double)size / 1e6;
        printf("  %4zu KiB   %7.2f ms %8.1f MB/s %7.2f ms %8.1f MB/s %8.0f MB/s %12.0f MB/s\n",
               size >> 10, pub * 1e3, mb / pub, sec * 1e3, mb / sec, mb / mem, mb / dec);
        if (size == 1u << 20) {
            printf("ROW\t20\tone cycle, 1 MiB image, zero-latency sim, public area\t%.0f MB/s"
                   "\tmemcpy: %.0f MB/s\t%.4fx\t>= 0.5x memcpy\t%s\n",
                   mb / pub, mb / mem, mem / pub, mem / pub >= 0.5 ? "yes" : "no");
            printf("ROW\t30\tone cycle, 1 MiB image, zero-latency sim, secure area\t%.0f MB/s"
                   "\tXChaCha20-Poly1305 decryption alone: %.0f MB/s\t%.3fx"
                   "\t>= 0.8x decryption\t%s\n",
                   mb / sec, mb / dec, dec / sec, dec / sec >= 0.8 ? "yes" : "no");
        }
    }
    if (!err) {
        printf("the floor of a cycle, in memory alone (erase: memset 0xFF; program: memcpy; "
               "verify: CRC-32 of the device's bytes), and the same if erasing were free, "
               "median of %d:\n",
               CYCLE_RUNS);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            printf("  %4zu KiB   %7.3f ms %8.1f MB/s   %.3fx memcpy;   without the erase: %7.3f ms "
                   "%.3fx memcpy\n",
                   sizes[i] >> 10, floors[i] * 1e3, (double)sizes[i] / 1e6 / floors[i],
                   mems[i] / floors[i], bare[i] * 1e3, mems[i] / bare[i]);
    }
    if (err) {
        printf(
            "ROW\t20\tone cycle, 1 MiB image, zero-latency sim, public area\tfailed: %s (see the "
            "details)\t-\t-\t>= 0.5x memcpy\t-\n",
            mf_strerror(err));
        printf(
            "ROW\t30\tone cycle, 1 MiB image, zero-latency sim, secure area\tfailed: %s (see the "
            "details)\t-\t-\t>= 0.8x decryption\t-\n",
            mf_strerror(err));
    }
    free(image);
    return err;
}

/* Many public-area cycles of the 1 MiB image into one device, for a profiler: prints the mean. */
static int profile_public(void)
{
    enum { CYCLES = 5000 };
    static struct bench_setup b;
    static struct mf_slot slot;
    uint8_t *image = malloc(1u << 20);
    fill(image, 1u << 20, 42);
    struct mf_target target = {0};
    char *dir = mf_test_tmpdir("bench");
    int err = setup_make(&b, image, 1u << 20, false);
    if (!err)
        err = dir ? mf_sim_open(&target, dir, 1, NULL) : MF_ENOMEM;
    if (!err) {
        mf_slot_init(&slot, 1, &target);
        struct mf_cycle_env env = {.setup = &b.setup, .area = b.area, .now_ms = wall_ms};
        struct mf_cycle_request req = {.action = MF_ACTION_AUTO};
        struct mf_cycle_result r;
        err = mf_cycle_run(&env, &slot, &req, &r); /* makes the device */
        double t0 = now_s();
        for (int i = 0; i < CYCLES && !err; i++)
            err = mf_cycle_run(&env, &slot, &req, &r);
        if (err)
            fprintf(stderr, "bench: cycle failed: %s\n", r.message);
        else
            printf("public area, 1 MiB: %.4f ms per cycle, mean of %d\n",
                   (now_s() - t0) / CYCLES * 1e3, CYCLES);
        mf_sim_close(&target);
    }
    setup_free(&b);
    if (dir)
        mf_test_rmtree(dir);
    free(dir);
    free(image);
    return err ? 1 : 0;
}

/* 4. The CRC of the verify step: the device's (the sim's, mf_crc32_msb_update) and the
 * engine's own (mf_target_crc, core/mf_target.c), per way of computing it. */
static void bench_crc(void)
{
    enum { SIZE = 1 << 20, RUNS = 21 };
    static const struct {
        enum mf_crc32_path path;
        const char *name;
    } paths[] = {
        {MF_CRC32_PATH_FASTEST, "fastest the CPU has"},
        {MF_CRC32_PATH_CLMUL, "128-bit carry-less multiply"},
        {MF_CRC32_PATH_TABLES, "slicing by 16 (portable)"},
        {MF_CRC32_PATH_BYTES, "one table step per byte"},
    };
    uint8_t *data = malloc(SIZE);
    fill(data, SIZE, 3);
    volatile uint32_t sink = 0;
    double t[RUNS];
    printf("CRC-32 of 1 MiB, median of %d (the results are identical):\n", RUNS);
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        mf_crc32_set_path(paths[p].path);
        double msb, reflected;
        for (int i = 0; i < RUNS; i++) {
            double t0 = now_s();
            sink ^= mf_crc32_msb_update(MF_TARGET_CRC_INIT, data, SIZE);
            t[i] = now_s() - t0;
        }
        msb = median(t, RUNS);
        for (int i = 0; i < RUNS; i++) {
            double t0 = now_s();
            sink ^= mf_crc32_update(0, data, SIZE);
            t[i] = now_s() - t0;
        }
        reflected = median(t, RUNS);
        printf("  %-30s  MSB first (qCRC) %8.0f MB/s   reflected (zlib) %8.0f MB/s\n",
               paths[p].name, SIZE / msb / 1e6, SIZE / reflected / 1e6);
    }
    mf_crc32_set_path(MF_CRC32_PATH_FASTEST);
    for (int i = 0; i < RUNS; i++) {
        double t0 = now_s();
        sink ^= mf_target_crc(MF_TARGET_CRC_INIT, data, SIZE);
        t[i] = now_s() - t0;
    }
    double target = median(t, RUNS);
    printf("  %-30s  MSB first (qCRC) %8.0f MB/s   (%.2f ms per MiB, once per cycle)\n",
           "mf_target_crc (mf_cycle.c)", SIZE / target / 1e6, target * 1e3);
    free(data);
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

/* 1. Intel HEX parse speed. */
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
    snprintf(cmd, sizeof cmd, "srec_cat %s -intel -o %s -binary 2>/dev/null", hex, bin);
    for (int i = 0; i < RUNS; i++)
        srec[i] = run_tool(cmd);
    double mb = (double)text_size / 1e6;
    double o = median(ours, RUNS), oc = median(objcopy, RUNS), sc = median(srec, RUNS);
    printf("Intel HEX, %u MiB of payload (%.1f MB of text, 32-byte records), median of %d:\n", mib,
           mb, RUNS);
    printf("  %-40s %10.1f MB/s\n", "streaming parser (ours)", mb / o);
    char objcopy_text[64] = "failed", srec_text[64] = "srec_cat failed";
    if (oc > 0) {
        printf("  %-40s %10.1f MB/s\n", "objcopy -I ihex -O binary", mb / oc);
        snprintf(objcopy_text, sizeof objcopy_text, "%.0f MB/s", mb / oc);
    }
    if (sc > 0) {
        printf("  %-40s %10.1f MB/s\n", "srec_cat", mb / sc);
        snprintf(srec_text, sizeof srec_text, "srec_cat: %.0f MB/s", mb / sc);
    }
    char ratio[32] = "-";
    if (oc > 0)
        snprintf(ratio, sizeof ratio, "%.1fx", oc / o);
    printf("ROW\t10\tparse Intel HEX, %u MiB payload (%.1f MB text) into an image\t%.0f MB/s"
           "\tobjcopy -I ihex -O binary: %s; %s\t%s\t>= 2x objcopy\t%s\n",
           mib, mb, mb / o, objcopy_text, srec_text, ratio,
           oc > 0 ? (oc / o >= 2 ? "yes" : "no") : "-");
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
    if (sodium_init() < 0)
        return 1;
    if (argc > 1 && strcmp(argv[1], "cycles") == 0)
        return bench_cycles();
    if (argc > 1 && strcmp(argv[1], "profile") == 0)
        return profile_public(); /* `perf record bench_cycle profile` */
    int rc = bench_hex(mib ? mib : 16);
    if (rc)
        printf("ROW\t10\tparse Intel HEX into an image\tfailed (see the details)\t-\t-"
               "\t>= 2x objcopy\t-\n");
    printf("\n");
    rc |= bench_cycles();
    printf("\n");
    bench_crc();
    return rc;
}
