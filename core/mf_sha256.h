/* SHA-256 (FIPS 180-4) for the bulk hashing of setups (the setup id over every file): the CPU's
 * SHA extensions where it has them (x86 SHA-NI, checked at run time), else libsodium's portable
 * implementation. The results are the same either way (tests/unit/test_sha256.c). */
#ifndef MF_SHA256_H
#define MF_SHA256_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mf_sha256 {
    bool native; /* the SHA extensions are used */
    crypto_hash_sha256_state portable;
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
};

void mf_sha256_init(struct mf_sha256 *sha);
void mf_sha256_update(struct mf_sha256 *sha, const void *data, size_t length);
void mf_sha256_final(struct mf_sha256 *sha, uint8_t digest[32]);

/* Whether the SHA extensions are used (for benchmarks), and a switch for tests: false forces the
 * portable code from then on. */
bool mf_sha256_native(void);
void mf_sha256_allow_native(bool allow);

#endif
