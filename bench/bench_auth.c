/* Benchmarks of the authorization before programming (the count and the serial number taken
 * durably, before a device is touched), each next to a peer measured in the same run:
 *   1. the keystore trust anchor: the secure area's peek and take on an image file, the keystore
 *      a real file beside it, next to one fsync'd 512-byte write on the same file system; the
 *      syncs per cycle are counted (block-device syncs and anchor writes, one fdatasync each);
 *   2. the TPM trust anchor on swtpm with the daemon's reservation of 100 cycles per counter
 *      increment, amortized per cycle, next to one TPM2_NV_Increment through ESAPI on a counter
 *      index of our own on the same swtpm (skipped with a note when swtpm is not installed).
 * Lines "ROW\t..." are rows of `make bench`'s table (scripts/bench); the rest are details.
 * Prints; never fails on speed. Usage: bench_auth [cycles] */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_filebd.h"
#include "mf_keystore.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_swtpm.h"
#include "mf_testfat.h"
#include "mf_testutil.h"
#include "mf_tpm.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#define SECURE_IMAGE_SIZE (16u << 20)
#define PEER_NV_COUNTER   0x01800F00u /* the peer's own counter: not one of mf_tpm's handles */

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

static double mean(const double *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return n ? sum / (double)n : 0;
}

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    randombytes_buf(buffer, length);
}

/* ---- a block device that counts what reaches the one below ---- */

struct counted_bd {
    struct mf_bd bd;
    const struct mf_bd *inner;
    uint64_t progs, syncs;
};

static int counted_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    const struct counted_bd *c = bd->context;
    return mf_bd_read(c->inner, block, buffer, count);
}

static int counted_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    struct counted_bd *c = bd->context;
    c->progs++;
    return mf_bd_prog(c->inner, block, buffer, count);
}

static int counted_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    const struct counted_bd *c = bd->context;
    return mf_bd_erase(c->inner, block, count);
}

static int counted_sync(const struct mf_bd *bd)
{
    struct counted_bd *c = bd->context;
    c->syncs++;
    return mf_bd_sync(c->inner);
}

static void counted_init(struct counted_bd *c, const struct mf_bd *inner)
{
    *c = (struct counted_bd){.bd = {.context = c,
                                    .read = counted_read,
                                    .prog = counted_prog,
                                    .erase = counted_erase,
                                    .sync = counted_sync,
                                    .block_size = inner->block_size,
                                    .block_count = inner->block_count},
                             .inner = inner};
}

/* ---- an anchor whose counter calls are counted (one anchor at a time) ---- */

static struct {
    int (*read)(struct mf_anchor *anchor, uint64_t *value);
    int (*increment)(struct mf_anchor *anchor, uint64_t *value);
    int (*increment_note)(struct mf_anchor *anchor, const uint8_t *note, size_t size,
                          uint64_t *value);
    uint64_t reads, increments; /* increments: with a note or without */
} anchor_calls;

static int counted_counter_read(struct mf_anchor *anchor, uint64_t *value)
{
    anchor_calls.reads++;
    return anchor_calls.read(anchor, value);
}

static int counted_counter_increment(struct mf_anchor *anchor, uint64_t *value)
{
    anchor_calls.increments++;
    return anchor_calls.increment(anchor, value);
}

static int counted_counter_increment_note(struct mf_anchor *anchor, const uint8_t *note,
                                          size_t size, uint64_t *value)
{
    anchor_calls.increments++;
    return anchor_calls.increment_note(anchor, note, size, value);
}

static void count_anchor(struct mf_anchor *anchor)
{
    anchor_calls.read = anchor->counter_read;
    anchor_calls.increment = anchor->counter_increment;
    anchor_calls.increment_note = anchor->counter_increment_note;
    anchor_calls.reads = anchor_calls.increments = 0;
    anchor->counter_read = counted_counter_read;
    anchor->counter_increment = counted_counter_increment;
    if (anchor->counter_increment_note)
        anchor->counter_increment_note = counted_counter_increment_note;
}

static void uncount_anchor(struct mf_anchor *anchor)
{
    anchor->counter_read = anchor_calls.read;
    anchor->counter_increment = anchor_calls.increment;
    anchor->counter_increment_note = anchor_calls.increment_note;
}

/* ---- a secure area holding a one-project setup with a count-down and serial numbers ---- */

struct bench_secure {
    struct mf_testfat public_vol;
    struct mf_area_fat public_area;
    struct mf_filebd file;
    struct counted_bd counted;
    struct mf_secure secure;
    struct mf_setup setup;
    uint8_t buffer[16384];
    char message[MF_SETUP_ERROR_MAX];
};

/* Installs the setup into a secure area on the image file `image` with `anchor`, `reservation`
 * cycles per counter increment. */
static int secure_make(struct bench_secure *b, const char *image, struct mf_anchor *anchor,
                       uint32_t reservation)
{
    enum { PUBLIC_BLOCKS = 8192 };
    static const char job[] = "[job]\ndevice = SIM-F4-1M\n[file]\npath = app.bin\n"
                              "address = 0x08000000\n[serial]\naddress = 0x08040000\nlength = 4\n";
    uint8_t app[4096];
    memset(app, 0x5A, sizeof app);
    struct mf_fat *fs = &b->public_vol.fs;
    struct mf_fat_format_options o = {.volume_id = 1};
    int err = mf_testfat_init(&b->public_vol, 512, PUBLIC_BLOCKS, &o);
    if (!err)
        err = mf_testfat_put(fs, "_SECURE/Projects/01_P/01_J/app.bin", app, sizeof app);
    if (!err)
        err = mf_testfat_put(fs, "_SECURE/Projects/01_P/01_J/job.ini", job, sizeof job - 1);
    if (!err)
        err = mf_testfat_put(fs, "_SECURE/Projects/01_P/Cntdown.txt", "100000000\r\n", 11);
    if (!err)
        err = mf_testfat_put(fs, "_SECURE/Projects/01_P/Serial.txt", "1000\r\n", 6);
    mf_area_fat_init(&b->public_area, fs, NULL);
    if (!err)
        err = mf_filebd_create(&b->file, image, SECURE_IMAGE_SIZE, true);
    if (err) {
        snprintf(b->message, sizeof b->message, "%s", mf_filebd_last_error(&b->file));
        return err;
    }
    counted_init(&b->counted, &b->file.bd);
    /* A new setup on a fresh image: the anchor forgets the last one first (securearea create). */
    err = mf_secure_erase(anchor, b->message);
    if (err)
        return err;
    struct mf_secure_config c = {
        .bd = &b->counted.bd, .anchor = anchor, .random = entropy, .reservation = reservation};
    err = mf_secure_open(&b->secure, &c, b->message);
    if (!err)
        err = mf_secure_install(&b->secure, &b->public_area.area, MF_SECURE_FOLDER, NULL, NULL,
                                b->message);
    if (!err)
        err = mf_setup_load(&b->setup, &b->secure.area, b->buffer, sizeof b->buffer, b->message);
    return err;
}

static void secure_free(struct bench_secure *b)
{
    mf_setup_free(&b->setup);
    mf_secure_close(&b->secure);
    mf_bd_sync(&b->file.bd);
    mf_filebd_close(&b->file);
    mf_testfat_free(&b->public_vol);
}

/* One authorization as the job engine makes it (peek, then take), timed into *t. */
static int authorize_one(struct bench_secure *b, double *t)
{
    struct mf_area *area = &b->secure.area;
    char message[MF_AREA_MESSAGE_MAX];
    struct mf_tally tally;
    enum mf_area_taken taken;
    double t0 = now_s();
    int err = area->peek(area, &b->setup, 0, &tally, message);
    if (!err)
        err = area->take(area, &b->setup, 0, &tally, &taken, message);
    *t = now_s() - t0;
    if (err)
        fprintf(stderr, "bench: authorization failed: %s\n", message);
    return err;
}

/* One fsync'd 512-byte write at the start of `fd`, timed into *t. */
static int fsync_write_one(int fd, unsigned round, double *t)
{
    uint8_t block[512];
    memset(block, (int)(round & 0xFFu), sizeof block);
    double t0 = now_s();
    int err = pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fsync(fd) != 0;
    *t = now_s() - t0;
    return err ? MF_EIO : 0;
}

/* `n` authorizations, each followed by the peer's write when `peer_fd` >= 0 (interleaved, so
 * that both see the disk in the same mood); the counts of syncs and anchor calls over them are
 * in b->counted and anchor_calls. */
static int authorize(struct bench_secure *b, double *t, int n, int peer_fd, double *peer)
{
    b->counted.syncs = b->counted.progs = 0;
    anchor_calls.reads = anchor_calls.increments = 0;
    int err = 0;
    for (int i = 0; i < n && !err; i++) {
        err = authorize_one(b, &t[i]);
        if (!err && peer_fd >= 0)
            err = fsync_write_one(peer_fd, (unsigned)i, &peer[i]);
    }
    return err;
}

/* 1. Keystore. */
static int bench_keystore(int n)
{
    char *dir = mf_test_tmpdir("benchauth");
    if (!dir)
        return 1;
    char *image = mf_test_path(dir, "secure.img"), *keystore = mf_test_path(dir, "keystore");
    double *t = calloc((size_t)n, sizeof *t), *peer = calloc((size_t)n, sizeof *peer);
    static struct bench_secure b;
    struct mf_keystore ks;
    struct mf_anchor anchor;
    memset(&b, 0, sizeof b);
    int err = mf_keystore_open(&ks, keystore, true, &anchor);
    if (err)
        fprintf(stderr, "bench: keystore: %s\n", anchor.error);
    double ours[2] = {0, 0}, syncs[2] = {0, 0}, per_increment = 0;
    /* The peer's file, in the same folder as the image and the keystore. */
    char *peer_path = mf_test_path(dir, "peer.bin");
    int peer_fd = open(peer_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    free(peer_path);
    if (peer_fd < 0)
        err = MF_EIO;
    static const uint32_t reservations[2] = {1, 100};
    for (int k = 0; k < 2 && !err; k++) {
        memset(&b, 0, sizeof b);
        err = secure_make(&b, image, &anchor, reservations[k]);
        if (err) {
            fprintf(stderr, "bench: secure area: %s: %s\n", mf_strerror(err), b.message);
            break;
        }
        count_anchor(&anchor);
        err = authorize(&b, t, n, k == 0 ? peer_fd : -1, peer);
        /* The keystore makes each counter increment (with its note, the new state record)
         * durable with one fdatasync. */
        syncs[k] = (double)(b.counted.syncs + anchor_calls.increments) / n;
        per_increment = (double)anchor_calls.increments / n;
        ours[k] = median(t, (size_t)n);
        if (k == 0)
            printf("keystore, reservation 1 (the daemon's default): %.3f ms per authorization "
                   "(median of %d, mean %.3f), %.2f syncs per cycle (%.2f state-record syncs of "
                   "the image file, %.2f keystore fdatasyncs), %.2f counter reads\n",
                   ours[k] * 1e3, n, mean(t, (size_t)n) * 1e3, syncs[k],
                   (double)b.counted.syncs / n, per_increment, (double)anchor_calls.reads / n);
        else
            printf("keystore, reservation 100 (FLASHER.INI [CONFIG] Reservation = 100): %.3f ms "
                   "(median), %.3f ms mean, %.2f syncs per cycle\n",
                   ours[k] * 1e3, mean(t, (size_t)n) * 1e3, syncs[k]);
        uncount_anchor(&anchor);
        secure_free(&b);
    }
    if (peer_fd >= 0)
        close(peer_fd);
    if (!err) {
        double p = median(peer, (size_t)n);
        printf("peer: one 512-byte pwrite + fsync in the same folder: %.3f ms (median of %d, each "
               "right after one of ours)\n",
               p * 1e3, n);
        printf("ROW\t50\tauthorization before programming, keystore (reservation 1)"
               "\t%.2f ms, %.1f syncs/cycle\tone fsync'd 512-byte write: %.2f ms\t%.1fx"
               "\t<= 1.5x\t%s\n",
               ours[0] * 1e3, syncs[0], p * 1e3, ours[0] / p, ours[0] / p <= 1.5 ? "yes" : "no");
    }
    if (err)
        printf("ROW\t50\tauthorization before programming, keystore (reservation 1)"
               "\tfailed: %s (see the details)\t-\t-\t<= 1.5x\t-\n",
               mf_strerror(err));
    if (anchor.close)
        anchor.close(&anchor);
    mf_test_rmtree(dir);
    free(dir);
    free(image);
    free(keystore);
    free(t);
    free(peer);
    return err ? 1 : 0;
}

/* The peer: NV_Increment on a counter index of our own, through a plain ESAPI context (password
 * session); `read` gets the median of as many NV_Reads of it, for the details. */
static int tpm_peer(const char *tcti, double *t, int n, double *read)
{
    TSS2_TCTI_CONTEXT *tctx = NULL;
    ESYS_CONTEXT *ctx = NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &tctx);
    if (!rc)
        rc = Esys_Initialize(&ctx, tctx, NULL);
    ESYS_TR index = ESYS_TR_NONE;
    if (!rc) {
        TPM2B_AUTH auth = {.size = 0};
        TPM2B_NV_PUBLIC pub = {.nvPublic = {
                                   .nvIndex = PEER_NV_COUNTER,
                                   .nameAlg = TPM2_ALG_SHA256,
                                   .attributes = TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE |
                                                 TPMA_NV_NO_DA |
                                                 (TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT),
                                   .dataSize = 8,
                               }};
        rc = Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                 ESYS_TR_NONE, &auth, &pub, &index);
    }
    for (int i = 0; i < n && !rc; i++) {
        double t0 = now_s();
        rc = Esys_NV_Increment(ctx, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
        t[i] = now_s() - t0;
    }
    double *r = calloc((size_t)n, sizeof *r);
    for (int i = 0; i < n && !rc && r; i++) {
        TPM2B_MAX_NV_BUFFER *data = NULL;
        double t0 = now_s();
        rc = Esys_NV_Read(ctx, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0,
                          &data);
        r[i] = now_s() - t0;
        Esys_Free(data);
    }
    *read = r && !rc ? median(r, (size_t)n) : 0;
    free(r);
    if (rc)
        fprintf(stderr, "bench: ESAPI: %s\n", Tss2_RC_Decode(rc));
    if (index != ESYS_TR_NONE)
        Esys_NV_UndefineSpace(ctx, ESYS_TR_RH_OWNER, index, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                              ESYS_TR_NONE);
    if (ctx)
        Esys_Finalize(&ctx);
    if (tctx)
        Tss2_TctiLdr_Finalize(&tctx);
    return rc ? MF_EIO : 0;
}

/* 2. TPM on swtpm. */
static int bench_tpm(int n)
{
    enum { RESERVATION = 100 };
    if (!mf_swtpm_available()) {
        printf("ROW\t60\tauthorization before programming, TPM on swtpm, reservation 100"
               "\tskipped: swtpm is not installed\t-\t-\t<= 0.5x\n");
        return 0;
    }
    struct mf_swtpm swtpm;
    char tcti[MF_SWTPM_TCTI_MAX];
    if (mf_swtpm_start(&swtpm, tcti, sizeof tcti) != 0) {
        printf("ROW\t60\tauthorization before programming, TPM on swtpm, reservation 100"
               "\tskipped: swtpm did not start\t-\t-\t<= 0.5x\n");
        fprintf(stderr, "bench: swtpm: %s\n", swtpm.message);
        return 0;
    }
    char *dir = mf_test_tmpdir("benchtpm");
    char *image = mf_test_path(dir, "secure.img"), *state = mf_test_path(dir, "keystore.tpm");
    int cycles = n < 3 * RESERVATION ? 3 * RESERVATION : n, peer_n = 50;
    double *t = calloc((size_t)cycles, sizeof *t), *peer = calloc((size_t)peer_n, sizeof *peer);
    static struct bench_secure b;
    memset(&b, 0, sizeof b);
    struct mf_tpm tpm;
    struct mf_anchor anchor;
    memset(&anchor, 0, sizeof anchor);
    int err = mf_tpm_open(&tpm, tcti, state, true, &anchor);
    if (err)
        fprintf(stderr, "bench: mf_tpm_open: %s\n", anchor.error);
    if (!err) {
        err = secure_make(&b, image, &anchor, RESERVATION);
        if (err)
            fprintf(stderr, "bench: secure area: %s: %s\n", mf_strerror(err), b.message);
    }
    if (!err) {
        count_anchor(&anchor);
        err = authorize(&b, t, cycles, -1, NULL);
    }
    double amortized = mean(t, (size_t)cycles), typical = median(t, (size_t)cycles);
    uint64_t syncs = b.counted.syncs, increments = anchor_calls.increments,
             reads = anchor_calls.reads;
    double increment = 0, read = 0;
    if (!err) {
        /* The anchor's own calls, to split the cycle's time. */
        uint64_t v;
        double t0 = now_s();
        for (int i = 0; i < 20 && !err; i++)
            err = anchor_calls.increment(&anchor, &v);
        increment = (now_s() - t0) / 20;
        t0 = now_s();
        for (int i = 0; i < 20 && !err; i++)
            err = anchor_calls.read(&anchor, &v);
        read = (now_s() - t0) / 20;
        uncount_anchor(&anchor);
    }
    if (b.public_vol.memory)
        secure_free(&b);
    if (anchor.close)
        anchor.close(&anchor);
    double peer_read = 0;
    if (!err)
        err = tpm_peer(tcti, peer, peer_n, &peer_read);
    mf_swtpm_stop(&swtpm);
    if (!err) {
        double p = median(peer, (size_t)peer_n);
        printf("tpm (swtpm), reservation %d: %.3f ms per authorization amortized over %d cycles "
               "(median %.3f ms); per cycle %.2f counter reads, %.3f increments, %.2f "
               "state-record syncs\n",
               RESERVATION, amortized * 1e3, cycles, typical * 1e3, (double)reads / cycles,
               (double)increments / cycles, (double)syncs / cycles);
        printf("tpm (swtpm): mf_tpm counter increment %.3f ms (NV_Increment + NV_Read, HMAC "
               "session), counter read %.3f ms\n",
               increment * 1e3, read * 1e3);
        printf("peer: Esys_NV_Increment, password session: %.3f ms (median of %d); Esys_NV_Read of "
               "it: %.3f ms\n",
               p * 1e3, peer_n, peer_read * 1e3);
        printf("ROW\t60\tauthorization before programming, TPM on swtpm, reservation 100"
               "\t%.2f ms/cycle amortized\tone TPM2_NV_Increment via ESAPI: %.2f ms\t%.2fx"
               "\t<= 0.5x\t%s\n",
               amortized * 1e3, p * 1e3, amortized / p, amortized / p <= 0.5 ? "yes" : "no");
    }
    if (err)
        printf("ROW\t60\tauthorization before programming, TPM on swtpm, reservation 100"
               "\tfailed: %s (see the details)\t-\t-\t<= 0.5x\t-\n",
               mf_strerror(err));
    mf_test_rmtree(dir);
    free(dir);
    free(image);
    free(state);
    free(t);
    free(peer);
    return err ? 1 : 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n < 1)
        n = 100;
    if (sodium_init() < 0)
        return 1;
    int rc = bench_keystore(n);
    printf("\n");
    rc |= bench_tpm(n);
    return rc;
}
