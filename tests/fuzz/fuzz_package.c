/* Fuzz target: the sealed-package reader (mf_package_open and the package's area) on hostile
 * bytes. The first byte is a mode. Mode bit 0 clear: the rest is a package, opened by the fixed
 * programmer below. Bit 0 set: the rest is u32 file count || u64 total bytes || a manifest in
 * plaintext, which this target seals and signs as a real owner would, so that the fuzzer reaches
 * the manifest parser behind the encryption (files of size 0 only: no chunks follow).
 * Properties: a package that opens has an area whose every listed file reads back whole, and
 * whose walk gives the setup id the package claims. */
#include "mf_err.h"
#include "mf_owner.h"
#include "mf_package.h"
#include "mf_setup.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The programmer: identity secret 00 01 .. 3f; the owner: seed 40 41 .. 5f (as the unit tests). */
static struct mf_owner_identity programmer;
static uint8_t owner_seed[32], owner_pk[32], owner_sk[64];

static void init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    if (sodium_init() < 0)
        abort();
    uint8_t secret[64];
    for (int i = 0; i < 64; i++)
        secret[i] = (uint8_t)i;
    mf_owner_identity_derive(secret, &programmer);
    for (int i = 0; i < 32; i++)
        owner_seed[i] = (uint8_t)(0x40 + i);
    mf_owner_keypair_from_seed(owner_seed, owner_pk, owner_sk);
}

struct memory {
    const uint8_t *data;
    size_t size;
};

static int memory_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    const struct memory *m = context;
    if (offset > m->size || length > m->size - offset)
        return MF_EIO;
    memcpy(buffer, m->data + offset, length);
    return 0;
}

static void put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Seals `manifest` into a complete package (caller frees), or NULL. */
static uint8_t *seal(const uint8_t *data, size_t size, size_t *out_size)
{
    if (size < 12 || size - 12 > 1u << 20)
        return NULL;
    const uint8_t *manifest = data + 12;
    size_t m = size - 12;
    const size_t h = MF_PACKAGE_FIXED + MF_PACKAGE_RECIPIENT;
    size_t total = h + 4 + m + 16 + 64;
    uint8_t *p = calloc(1, total), key[32], hash[32], nonce[24];
    if (!p)
        return NULL;
    memset(key, 0x5A, sizeof key);
    memcpy(p, "MFPKG\0\1\0", 8);
    put(p + 8, h, 4);
    memcpy(p + 12, owner_pk, 32);
    memcpy(p + 108, data, 12); /* file count, total bytes */
    put(p + 120, 1, 4);
    memcpy(p + 124, programmer.pub.x25519, 32);
    crypto_box_seal(p + 156, key, 32, programmer.pub.x25519);
    crypto_hash_sha256(hash, p, h);
    put(p + h, m + 16, 4);
    memset(nonce, 0, 16);
    put(nonce + 16, UINT64_MAX, 8);
    crypto_aead_xchacha20poly1305_ietf_encrypt(p + h + 4, NULL, manifest, m, hash, 32, NULL, nonce,
                                               key);
    crypto_sign_state st;
    crypto_sign_init(&st);
    crypto_sign_update(&st, p, total - 64);
    crypto_sign_final_create(&st, p + total - 64, NULL, owner_sk);
    *out_size = total;
    return p;
}

struct walk {
    struct mf_area *area;
    uint8_t *buffer;
};

static int each(void *context, const struct mf_area_entry *e)
{
    (void)context;
    if (strlen(e->name) >= MF_AREA_NAME_MAX)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    uint8_t *sealed = NULL;
    struct memory mem = {data + 1, size - 1};
    if (mode & 1) {
        sealed = seal(data + 1, size - 1, &mem.size);
        if (!sealed)
            return 0;
        mem.data = sealed;
    }
    char message[MF_PACKAGE_MESSAGE_MAX];
    struct mf_package_header h;
    uint8_t keys[4][32];
    mf_package_read_header(memory_read, &mem, mem.size, &h, keys, 4, message);
    struct mf_package p;
    int err =
        mf_package_open(&p, memory_read, &mem, mem.size, programmer.x25519_secret,
                        programmer.pub.x25519, (mode & 2) ? owner_pk : NULL, 1767225600, message);
    if (!memchr(message, '\0', sizeof message) || (err && !message[0]))
        abort();
    if (!err) {
        struct mf_area *a = &p.area;
        if (a->list(a, "", each, NULL) != 0)
            abort();
        uint8_t *buffer = malloc(MF_PACKAGE_CHUNK);
        uint8_t id[32];
        if (!buffer || mf_setup_fingerprint(a, buffer, MF_PACKAGE_CHUNK, id) != 0 ||
            memcmp(id, p.setup_id, 32) != 0)
            abort();
        free(buffer);
        mf_package_close(&p);
    }
    free(sealed);
    return 0;
}
