/* Fuzz target: a hostile secure partition (headers, state records, chunks, the file table) read
 * by mf_secure_open, then every file listed and read, the setup loaded from it and one cycle's
 * count peeked and taken.
 * The header is what an attacker cannot forge without the anchor's key, so to reach the code
 * behind it the harness plays the anchor: it knows the key, re-computes the HMAC of header slot 0
 * over whatever the input put there and records its digest, as if the input had been written by
 * a programmer holding that key. (Chunks and state records stay as the input has them: their
 * authentication is the property under test there.)
 * Properties checked: no crash, no leak, no read outside the partition (the RAM disk is exactly
 * the partition), and refusals are errors, never a setup with files that fail to read back.
 * Input: the first bytes of the partition (at most PART_BYTES; the rest reads as zeros). An empty
 * input builds a valid partition from a small setup, runs on it, and writes it to the file named
 * by $MF_FUZZ_SEED_OUT when set (that is how corpus/secure/ was made). */
#include "mf_area.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_rambd.h"
#include "mf_ramanchor.h"
#include "mf_secure.h"
#include "mf_setup.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PART_BYTES   (192u << 10)
#define PUBLIC_BYTES (512u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The setup key: what fixed_random() hands out, so the seed is installed under it. */
static uint8_t fixed_key[32];

static void fixed_random(void *context, void *buffer, size_t length)
{
    (void)context;
    memset(buffer, 0x5a, length); /* deterministic: the same setup gives the same image */
}

static uint8_t part[PART_BYTES];

static void anchor_with_key(struct mf_ramanchor *a)
{
    mf_ramanchor_init(a);
    memset(a->id, 0x11, sizeof a->id); /* a fixed binding */
    a->state.has_key = true;
    memcpy(a->state.key, fixed_key, sizeof fixed_key);
    a->counter = 5;
}

/* Lists every folder (breadth first, bounded) and reads every file whole, in pieces. */
struct walk_ctx {
    struct mf_area *area;
    char dir[256];
    char pending[32][256];
    unsigned pending_count;
    unsigned files;
};

static uint8_t piece[16u << 10];

static int walk_entry(void *context, const struct mf_area_entry *e)
{
    struct walk_ctx *w = context;
    char path[512];
    snprintf(path, sizeof path, "%s%s%s", w->dir, w->dir[0] ? "/" : "", e->name);
    if (strlen(path) >= 256)
        return 0;
    if (e->is_dir) {
        if (w->pending_count < 32)
            memcpy(w->pending[w->pending_count++], path, strlen(path) + 1); /* < 256, above */
        return 0;
    }
    if (++w->files > 64)
        return 0;
    for (uint64_t off = 0; off < e->size && off < (256u << 10); off += sizeof piece) {
        size_t n = e->size - off < sizeof piece ? (size_t)(e->size - off) : sizeof piece;
        if (w->area->read(w->area, path, off, piece, n) != 0)
            break;
    }
    return 0;
}

static void exercise(struct mf_secure *s)
{
    if (!s->present)
        return;
    static struct walk_ctx w;
    memset(&w, 0, sizeof w);
    w.area = &s->area;
    for (unsigned rounds = 0; rounds < 64; rounds++) {
        s->area.list(&s->area, w.dir, walk_entry, &w);
        if (!w.pending_count)
            break;
        memcpy(w.dir, w.pending[--w.pending_count], sizeof w.dir);
    }
    static uint8_t load[16u << 10];
    struct mf_setup setup;
    char message[MF_SETUP_ERROR_MAX];
    if (mf_setup_load(&setup, &s->area, load, sizeof load, message) == 0) {
        for (unsigned p = 0; p < setup.project_count; p++) {
            struct mf_tally t;
            enum mf_area_taken taken;
            char m[MF_AREA_MESSAGE_MAX];
            if (s->area.peek(&s->area, &setup, p, &t, m) == 0 &&
                (!t.project_limited || t.project_left > 0) && (!t.root_limited || t.root_left > 0))
                s->area.take(&s->area, &setup, p, &t, &taken, m);
        }
        mf_setup_free(&setup);
    }
}

/* A valid partition from a small setup (the seed). */
static size_t build_seed(void)
{
    uint8_t *pub = calloc(1, PUBLIC_BYTES);
    struct mf_rambd pram, sram;
    mf_rambd_init(&pram, pub, 512, PUBLIC_BYTES / 512);
    memset(part, 0, sizeof part);
    mf_rambd_init(&sram, part, 512, PART_BYTES / 512);
    struct mf_fat_format_options o = {.volume_id = 7};
    static struct mf_fat fs;
    if (mf_fat_format(&pram.bd, &o) || mf_fat_mount(&fs, &pram.bd, NULL, NULL))
        abort();
    static const char *const files[][2] = {
        {"_SECURE/FLASHER.INI", "[CONFIG]\nProject = 01_W\n"},
        {"_SECURE/Cntdown.txt", "9\n"},
        {"_SECURE/Projects/01_W/Cntdown.txt", "3\n"},
        {"_SECURE/Projects/01_W/Serial.txt", "77\n"},
        {"_SECURE/Projects/01_W/01_App/job.ini",
         "[job]\ndevice = SIM-F1-64K\n[file]\npath = app.hex\n[serial]\naddress = 0x0800F000\n"},
        {"_SECURE/Projects/01_W/01_App/app.hex",
         ":10000000000102030405060708090A0B0C0D0E0F78\n:00000001FF\n"},
    };
    mf_fat_mkdir(&fs, "_SECURE");
    mf_fat_mkdir(&fs, "_SECURE/Projects");
    mf_fat_mkdir(&fs, "_SECURE/Projects/01_W");
    mf_fat_mkdir(&fs, "_SECURE/Projects/01_W/01_App");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct mf_fat_file f;
        if (mf_fat_open(&fs, &f, files[i][0], MF_FAT_O_WRONLY | MF_FAT_O_CREAT))
            abort();
        mf_fat_write(&fs, &f, files[i][1], (uint32_t)strlen(files[i][1]));
        mf_fat_close(&fs, &f);
    }
    struct mf_area_fat area;
    mf_area_fat_init(&area, &fs, NULL);
    struct mf_ramanchor a;
    anchor_with_key(&a);
    a.state.has_key = false;
    struct mf_secure_config c = {
        .bd = &sram.bd, .anchor = &a.anchor, .random = fixed_random, .reservation = 1};
    static struct mf_secure s;
    char message[MF_SECURE_MESSAGE_MAX];
    if (mf_secure_open(&s, &c, message))
        abort();
    /* Install under the fixed key: the anchor hands it out as the new key. */
    int err = mf_secure_install(&s, &area.area, MF_SECURE_FOLDER, NULL, NULL, message);
    if (err) {
        fprintf(stderr, "seed: %s\n", message);
        abort();
    }
    mf_secure_close(&s);
    mf_fat_unmount(&fs);
    free(pub);
    size_t used = PART_BYTES;
    while (used > 0 && part[used - 1] == 0)
        used--;
    return used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    memset(fixed_key, 0x5a, sizeof fixed_key);
    size_t used;
    if (size == 0) {
        used = build_seed();
        const char *out = getenv("MF_FUZZ_SEED_OUT");
        if (out) {
            FILE *f = fopen(out, "wb");
            if (!f || fwrite(part, 1, used, f) != used || fclose(f) != 0)
                abort();
        }
    } else {
        memset(part, 0, sizeof part);
        used = size < PART_BYTES ? size : PART_BYTES;
        memcpy(part, data, used);
    }
    struct mf_rambd sram;
    mf_rambd_init(&sram, part, 512, PART_BYTES / 512);
    struct mf_ramanchor a;
    anchor_with_key(&a);
    /* Play the anchor: vouch for header slot 0 as it is (see the top of this file). */
    uint8_t mac_key[32];
    crypto_kdf_derive_from_key(mac_key, sizeof mac_key, 1, "MFSECURE", fixed_key);
    crypto_auth_hmacsha256(part + 480, part, 480, mac_key);
    a.state.has_digest = true;
    crypto_hash_sha256(a.state.digest, part, 512);
    struct mf_secure_config c = {
        .bd = &sram.bd, .anchor = &a.anchor, .random = fixed_random, .reservation = 1};
    static struct mf_secure s;
    char message[MF_SECURE_MESSAGE_MAX];
    int err = mf_secure_open(&s, &c, message);
    if (size == 0 && (err || !s.present)) {
        /* The seed must open: else this harness tests nothing behind the header. */
        fprintf(stderr, "fuzz_secure: the seed does not open: %s\n", message);
        abort();
    }
    if (!err)
        exercise(&s);
    mf_secure_close(&s);
    return 0;
}
