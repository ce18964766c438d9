/* SHA-256 with the CPU's SHA extensions, or libsodium's (see mf_sha256.h). */
#include "mf_sha256.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MF_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static int native_state; /* 0: not yet known, 1: available, -1: not (or not allowed) */

#ifdef MF_SHA256_X86
static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static bool cpu_has_sha(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 29)))
        return false; /* SHA */
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c & (1u << 19)) && (c & (1u << 9)); /* SSE4.1, SSSE3 */
}

/* Unaligned 16-byte load and store. The intrinsics take a pointer to an unaligned vector type;
 * going through `void *` says so without a cast that claims 16-byte alignment. */
static inline __m128i load_16(const void *p)
{
    return _mm_loadu_si128(p);
}

static inline void store_16(void *p, __m128i v)
{
    _mm_storeu_si128(p, v);
}

/* Compresses `blocks` 64-byte blocks into h[]. The state is held as the instructions want it:
 * one register with A, B, E, F and one with C, D, G, H. Each group of four rounds takes four
 * message words: the first four groups from the block, later ones from the schedule
 * (sha256msg1/msg2 over the four groups before). */
__attribute__((target("sha,sse4.1,ssse3"))) static void
compress_native(uint32_t h[8], const uint8_t *data, size_t blocks)
{
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = load_16(&h[0]);
    __m128i hgfe = load_16(&h[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
    for (; blocks > 0; blocks--, data += 64) {
        __m128i abef_saved = abef, cdgh_saved = cdgh;
        __m128i w[4];
        for (unsigned g = 0; g < 16; g++) {
            __m128i m;
            if (g < 4) {
                m = _mm_shuffle_epi8(load_16(data + 16 * g), byte_swap);
            } else {
                __m128i t = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
                t = _mm_add_epi32(t, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4));
                m = _mm_sha256msg2_epu32(t, w[(g + 3) & 3]);
            }
            w[g & 3] = m;
            __m128i k = load_16(&round_constants[4 * g]);
            __m128i wk = _mm_add_epi32(m, k);
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            wk = _mm_shuffle_epi32(wk, 0x0E);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
        }
        abef = _mm_add_epi32(abef, abef_saved);
        cdgh = _mm_add_epi32(cdgh, cdgh_saved);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    hgfe = _mm_alignr_epi8(dchg, feba, 8);
    store_16(&h[0], dcba);
    store_16(&h[4], hgfe);
}
#endif

bool mf_sha256_native(void)
{
    if (native_state == 0) {
#ifdef MF_SHA256_X86
        native_state = cpu_has_sha() ? 1 : -1;
#else
        native_state = -1;
#endif
    }
    return native_state > 0;
}

void mf_sha256_allow_native(bool allow)
{
    native_state = allow ? 0 : -1;
}

void mf_sha256_init(struct mf_sha256 *sha)
{
    memset(sha, 0, sizeof *sha);
    sha->native = mf_sha256_native();
    if (!sha->native) {
        crypto_hash_sha256_init(&sha->portable);
        return;
    }
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(sha->h, initial, sizeof initial);
}

void mf_sha256_update(struct mf_sha256 *sha, const void *data, size_t length)
{
    if (!sha->native) {
        crypto_hash_sha256_update(&sha->portable, data, length);
        return;
    }
#ifdef MF_SHA256_X86
    const uint8_t *p = data;
    sha->bytes += length;
    if (sha->used) {
        size_t n = 64 - sha->used < length ? 64 - sha->used : length;
        memcpy(sha->block + sha->used, p, n);
        sha->used += n;
        p += n;
        length -= n;
        if (sha->used < 64)
            return;
        compress_native(sha->h, sha->block, 1);
        sha->used = 0;
    }
    if (length >= 64) {
        compress_native(sha->h, p, length / 64);
        p += length / 64 * 64;
        length %= 64;
    }
    memcpy(sha->block, p, length);
    sha->used = length;
#endif
}

void mf_sha256_final(struct mf_sha256 *sha, uint8_t digest[32])
{
    if (!sha->native) {
        crypto_hash_sha256_final(&sha->portable, digest);
        sodium_memzero(sha, sizeof *sha);
        return;
    }
#ifdef MF_SHA256_X86
    uint64_t bits = sha->bytes * 8;
    sha->block[sha->used++] = 0x80;
    if (sha->used > 56) {
        memset(sha->block + sha->used, 0, 64 - sha->used);
        compress_native(sha->h, sha->block, 1);
        sha->used = 0;
    }
    memset(sha->block + sha->used, 0, 56 - sha->used);
    for (int i = 0; i < 8; i++)
        sha->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress_native(sha->h, sha->block, 1);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(sha->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(sha->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(sha->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)sha->h[i];
    }
#endif
    sodium_memzero(sha, sizeof *sha);
}
