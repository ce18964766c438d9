/* CRC-32 in both bit orders, three ways: carry-less multiplication (x86-64 PCLMULQDQ when the CPU
 * has it, 64 bytes folded per step; VPCLMULQDQ with AVX-512, 256 bytes; then 16 bytes handed to
 * the tables), slicing by 16 bytes through 16 tables, and one table step per byte (short inputs
 * and the tail).
 * The first table is a constant; the other 15 per bit order are built by the first caller that
 * needs them, without a lock: a caller that finds them being built by another thread meanwhile
 * goes byte by byte, so concurrent first callers (gang slots) never wait and never race.
 * The folding constants are x^n mod P for the distances folded (see the folding code); the tests
 * compare every path with a bit-by-bit CRC, for every length to 1024 at every alignment. */
#include "mf_crc32.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* MF_CRC32_PORTABLE builds the tables alone, to check them where the CPU would multiply. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MF_CRC32_PORTABLE)
#include <immintrin.h>
#define MF_CRC32_CLMUL 1
#endif

#define CRC_MSB_POLY  0x04C11DB7u
#define CRC_SLICE     16u  /* bytes per slicing step */
#define CRC_CLMUL_MIN 128u /* shorter inputs go through the tables */

static const uint32_t mf_crc32_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu, 0xE963A535u,
    0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u, 0x09B64C2Bu, 0x7EB17CBDu,
    0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u, 0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du,
    0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u, 0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu,
    0x14015C4Fu, 0x63066CD9u, 0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u,
    0xA2677172u, 0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u, 0x26D930ACu,
    0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u, 0xCFBA9599u, 0xB8BDA50Fu,
    0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u, 0x2F6F7C87u, 0x58684C11u, 0xC1611DABu,
    0xB6662D3Du, 0x76DC4190u, 0x01DB7106u, 0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu,
    0x9FBFE4A5u, 0xE8B8D433u, 0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu,
    0x086D3D2Du, 0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u, 0x8BBEB8EAu,
    0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u, 0x4DB26158u, 0x3AB551CEu,
    0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u, 0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au,
    0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u, 0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u,
    0x5005713Cu, 0x270241AAu, 0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u,
    0xCE61E49Fu, 0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au, 0xEAD54739u,
    0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u, 0x0D6D6A3Eu, 0x7A6A5AA8u,
    0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u, 0xF00F9344u, 0x8708A3D2u, 0x1E01F268u,
    0x6906C2FEu, 0xF762575Du, 0x806567CBu, 0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u,
    0x10DA7A5Au, 0x67DD4ACCu, 0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u,
    0xA1D1937Eu, 0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u, 0x316E8EEFu,
    0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u, 0xCC0C7795u, 0xBB0B4703u,
    0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u, 0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u,
    0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du, 0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au,
    0x9C0906A9u, 0xEB0E363Fu, 0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu,
    0x0CB61B38u, 0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u, 0x88085AE6u,
    0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u, 0x616BFFD3u, 0x166CCF45u,
    0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u, 0xA7672661u, 0xD06016F7u, 0x4969474Du,
    0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu, 0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u,
    0x47B2CF7Fu, 0x30B5FFE9u, 0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u,
    0xCDD70693u, 0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du,
};

/* tables[k][b]: the register after byte b followed by k zero bytes, starting from zero. */
struct crc_slices {
    uint32_t reflected[CRC_SLICE][256];
    uint32_t msb[CRC_SLICE][256];
};

static struct crc_slices crc_slices;
static atomic_int crc_slices_state; /* 0: not built, 1: being built, 2: ready */
static atomic_int crc_path;         /* enum mf_crc32_path */

enum mf_crc32_path mf_crc32_set_path(enum mf_crc32_path path)
{
    return (enum mf_crc32_path)atomic_exchange(&crc_path, (int)path);
}

static void crc_slices_build(struct crc_slices *t)
{
    for (unsigned b = 0; b < 256; b++) {
        uint32_t c = (uint32_t)b << 24;
        for (unsigned i = 0; i < 8; i++)
            c = (c & 0x80000000u) ? (c << 1) ^ CRC_MSB_POLY : c << 1;
        t->msb[0][b] = c;
        t->reflected[0][b] = mf_crc32_table[b];
    }
    for (unsigned k = 1; k < CRC_SLICE; k++) {
        for (unsigned b = 0; b < 256; b++) {
            uint32_t r = t->reflected[k - 1][b], m = t->msb[k - 1][b];
            t->reflected[k][b] = (r >> 8) ^ t->reflected[0][r & 0xFFu];
            t->msb[k][b] = (m << 8) ^ t->msb[0][m >> 24];
        }
    }
}

/* The slicing tables, or NULL while another thread builds them. */
static const struct crc_slices *crc_slices_get(void)
{
    if (atomic_load_explicit(&crc_path, memory_order_relaxed) == MF_CRC32_PATH_BYTES)
        return NULL;
    int state = atomic_load_explicit(&crc_slices_state, memory_order_acquire);
    if (state == 2)
        return &crc_slices;
    int expected = 0;
    if (state == 0 && atomic_compare_exchange_strong(&crc_slices_state, &expected, 1)) {
        crc_slices_build(&crc_slices);
        atomic_store_explicit(&crc_slices_state, 2, memory_order_release);
        return &crc_slices;
    }
    return NULL;
}

/* ---- reflected (zlib); `c` is the register, inverted by the callers ---- */

static uint32_t reflected_bytes(uint32_t c, const uint8_t *p, size_t length)
{
    for (size_t i = 0; i < length; i++)
        c = mf_crc32_table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c;
}

static uint32_t reflected_tables(uint32_t c, const uint8_t *p, size_t length)
{
    const struct crc_slices *s = length >= CRC_SLICE ? crc_slices_get() : NULL;
    if (s) {
        const uint32_t(*t)[256] = s->reflected;
        for (; length >= CRC_SLICE; p += CRC_SLICE, length -= CRC_SLICE) {
            c ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            c = t[15][c & 0xFFu] ^ t[14][(c >> 8) & 0xFFu] ^ t[13][(c >> 16) & 0xFFu] ^
                t[12][c >> 24] ^ t[11][p[4]] ^ t[10][p[5]] ^ t[9][p[6]] ^ t[8][p[7]] ^ t[7][p[8]] ^
                t[6][p[9]] ^ t[5][p[10]] ^ t[4][p[11]] ^ t[3][p[12]] ^ t[2][p[13]] ^ t[1][p[14]] ^
                t[0][p[15]];
        }
    }
    return reflected_bytes(c, p, length);
}

/* ---- most significant bit first (GDB qCRC) ---- */

static uint32_t msb_bytes(uint32_t c, const uint8_t *p, size_t length)
{
    const struct crc_slices *s = crc_slices_get();
    for (size_t i = 0; i < length; i++) {
        uint32_t step;
        if (s) {
            step = s->msb[0][(c >> 24) ^ p[i]];
        } else {
            /* The first table is not a constant in this bit order: eight shifts per byte while
             * another thread builds the tables. */
            step = (((c >> 24) ^ p[i]) & 0xFFu) << 24;
            for (unsigned k = 0; k < 8; k++)
                step = (step & 0x80000000u) ? (step << 1) ^ CRC_MSB_POLY : step << 1;
        }
        c = (c << 8) ^ step;
    }
    return c;
}

static uint32_t msb_tables(uint32_t c, const uint8_t *p, size_t length)
{
    const struct crc_slices *s = length >= CRC_SLICE ? crc_slices_get() : NULL;
    if (s) {
        const uint32_t(*t)[256] = s->msb;
        for (; length >= CRC_SLICE; p += CRC_SLICE, length -= CRC_SLICE) {
            c ^= (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
            c = t[15][c >> 24] ^ t[14][(c >> 16) & 0xFFu] ^ t[13][(c >> 8) & 0xFFu] ^
                t[12][c & 0xFFu] ^ t[11][p[4]] ^ t[10][p[5]] ^ t[9][p[6]] ^ t[8][p[7]] ^
                t[7][p[8]] ^ t[6][p[9]] ^ t[5][p[10]] ^ t[4][p[11]] ^ t[3][p[12]] ^ t[2][p[13]] ^
                t[1][p[14]] ^ t[0][p[15]];
        }
    }
    return msb_bytes(c, p, length);
}

/* ---- carry-less multiplication ----
 * The data is a polynomial over GF(2); a 128-bit accumulator A stands for everything folded so
 * far. Moving A forward over D bits of data is A * x^D mod P; with A = hi * x^64 + lo that is
 * hi * (x^(64+D) mod P) + lo * (x^D mod P): two 64 x 32-bit carry-less products, each under
 * 96 bits, so the sum is again 128 bits and is added to the data D bits further on. At the end
 * the accumulator's 16 bytes, as data, have the same CRC as everything folded into them: the
 * tables finish from there with a zero register. Several accumulators run side by side (the
 * multiplier's latency is hidden) and are folded into one at the end. With AVX-512 one
 * instruction folds four 128-bit lanes. */
#ifdef MF_CRC32_CLMUL

#define CLMUL_TARGET  __attribute__((target("pclmul,ssse3")))
#define CLMUL4_TARGET __attribute__((target("pclmul,ssse3,vpclmulqdq,avx512f,avx512bw")))
#define CLMUL_INLINE  static inline __attribute__((always_inline))
#define CLMUL4_MIN    512u /* inputs from this length use the AVX-512 loop when there is one */

/* The multipliers, as {lane 1, lane 0}: lane 0 of the accumulator is multiplied by lane 0 of the
 * constant, lane 1 by lane 1. Reflected: lane 0 holds the high powers and a product comes out
 * one bit low, so lane 0's constant is x^(64+D-1) mod P and lane 1's x^(D-1) mod P, both
 * bit-reversed to 64 bits. MSB first (each 16 bytes byte-reversed on loading): lane 1 holds the
 * high powers, x^(64+D) mod P, and lane 0 x^D mod P. */
#define REFLECTED_FOLD_128  0x9BA54C6F00000000ull, 0x65673B4600000000ull
#define REFLECTED_FOLD_512  0xCAD38E8F00000000ull, 0x653D982200000000ull
#define REFLECTED_FOLD_2048 0x03F9F86300000000ull, 0x7CC8E1E700000000ull
#define MSB_FOLD_128        0x00000000C5B9CD4Cull, 0x00000000E8A45605ull
#define MSB_FOLD_512        0x000000008833794Cull, 0x00000000E6228B11ull
#define MSB_FOLD_2048       0x00000000CBCF3BCBull, 0x0000000088FE2237ull

enum { CLMUL_NONE, CLMUL_128, CLMUL_512 };

static int clmul_available(void)
{
    int path = atomic_load_explicit(&crc_path, memory_order_relaxed);
    if (path != MF_CRC32_PATH_FASTEST && path != MF_CRC32_PATH_CLMUL)
        return CLMUL_NONE;
    if (!__builtin_cpu_supports("pclmul") || !__builtin_cpu_supports("ssse3"))
        return CLMUL_NONE;
    if (path == MF_CRC32_PATH_FASTEST && __builtin_cpu_supports("vpclmulqdq") &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        return CLMUL_512;
    return CLMUL_128;
}

CLMUL_INLINE CLMUL_TARGET __m128i constant(uint64_t lane1, uint64_t lane0)
{
    return _mm_set_epi64x((long long)lane1, (long long)lane0);
}

CLMUL_INLINE CLMUL_TARGET __m128i byte_reversal(void)
{
    return _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

CLMUL_INLINE CLMUL_TARGET __m128i load(const uint8_t *p, bool msb)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    return msb ? _mm_shuffle_epi8(x, byte_reversal()) : x;
}

/* The register as an addition to the first four bytes of loaded data. */
CLMUL_INLINE CLMUL_TARGET __m128i register_lanes(uint32_t c, bool msb)
{
    return msb ? _mm_set_epi32((int)c, 0, 0, 0) : _mm_cvtsi32_si128((int)c);
}

CLMUL_INLINE CLMUL_TARGET __m128i fold(__m128i a, __m128i k, __m128i data)
{
    __m128i low = _mm_clmulepi64_si128(a, k, 0x00), high = _mm_clmulepi64_si128(a, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), data);
}

/* Folds 16 bytes at a time from p + done to the last whole 16 bytes into `a`, then writes the
 * accumulator to `out` as data; returns the bytes consumed. */
CLMUL_INLINE CLMUL_TARGET size_t fold_finish(__m128i a, const uint8_t *p, size_t done,
                                             size_t length, bool msb, uint8_t out[16])
{
    const __m128i k128 = msb ? constant(MSB_FOLD_128) : constant(REFLECTED_FOLD_128);
    for (; length - done >= 16; done += 16)
        a = fold(a, k128, load(p + done, msb));
    if (msb)
        a = _mm_shuffle_epi8(a, byte_reversal());
    _mm_storeu_si128((__m128i *)(void *)out, a);
    return done;
}

/* Four 128-bit accumulators, 64 bytes per step; `length` at least 64. */
CLMUL_INLINE CLMUL_TARGET size_t fold_128(uint32_t c, const uint8_t *p, size_t length, bool msb,
                                          uint8_t out[16])
{
    const __m128i k128 = msb ? constant(MSB_FOLD_128) : constant(REFLECTED_FOLD_128);
    const __m128i k512 = msb ? constant(MSB_FOLD_512) : constant(REFLECTED_FOLD_512);
    __m128i x0 = _mm_xor_si128(load(p, msb), register_lanes(c, msb));
    __m128i x1 = load(p + 16, msb), x2 = load(p + 32, msb), x3 = load(p + 48, msb);
    size_t done = 64;
    for (; length - done >= 64; done += 64) {
        x0 = fold(x0, k512, load(p + done, msb));
        x1 = fold(x1, k512, load(p + done + 16, msb));
        x2 = fold(x2, k512, load(p + done + 32, msb));
        x3 = fold(x3, k512, load(p + done + 48, msb));
    }
    x1 = fold(x0, k128, x1);
    x2 = fold(x1, k128, x2);
    x3 = fold(x2, k128, x3);
    return fold_finish(x3, p, done, length, msb, out);
}

static CLMUL_TARGET size_t fold_128_reflected(uint32_t c, const uint8_t *p, size_t length,
                                              uint8_t out[16])
{
    return fold_128(c, p, length, false, out);
}

static CLMUL_TARGET size_t fold_128_msb(uint32_t c, const uint8_t *p, size_t length,
                                        uint8_t out[16])
{
    return fold_128(c, p, length, true, out);
}

CLMUL_INLINE CLMUL4_TARGET __m512i load4(const uint8_t *p, bool msb)
{
    __m512i x = _mm512_loadu_si512((const void *)p);
    return msb ? _mm512_shuffle_epi8(x, _mm512_broadcast_i32x4(byte_reversal())) : x;
}

CLMUL_INLINE CLMUL4_TARGET __m512i fold4(__m512i a, __m512i k, __m512i data)
{
    __m512i low = _mm512_clmulepi64_epi128(a, k, 0x00);
    __m512i high = _mm512_clmulepi64_epi128(a, k, 0x11);
    return _mm512_ternarylogic_epi64(low, high, data, 0x96); /* low ^ high ^ data */
}

/* Sixteen 128-bit lanes in four AVX-512 registers, 256 bytes per step; `length` at least 256. */
CLMUL_INLINE CLMUL4_TARGET size_t fold_512(uint32_t c, const uint8_t *p, size_t length, bool msb,
                                           uint8_t out[16])
{
    const __m128i k128 = msb ? constant(MSB_FOLD_128) : constant(REFLECTED_FOLD_128);
    const __m512i k512 =
        _mm512_broadcast_i32x4(msb ? constant(MSB_FOLD_512) : constant(REFLECTED_FOLD_512));
    const __m512i k2048 =
        _mm512_broadcast_i32x4(msb ? constant(MSB_FOLD_2048) : constant(REFLECTED_FOLD_2048));
    __m512i first = _mm512_inserti32x4(_mm512_setzero_si512(), register_lanes(c, msb), 0);
    __m512i x0 = _mm512_xor_si512(load4(p, msb), first);
    __m512i x1 = load4(p + 64, msb), x2 = load4(p + 128, msb), x3 = load4(p + 192, msb);
    size_t done = 256;
    for (; length - done >= 256; done += 256) {
        x0 = fold4(x0, k2048, load4(p + done, msb));
        x1 = fold4(x1, k2048, load4(p + done + 64, msb));
        x2 = fold4(x2, k2048, load4(p + done + 128, msb));
        x3 = fold4(x3, k2048, load4(p + done + 192, msb));
    }
    x1 = fold4(x0, k512, x1);
    x2 = fold4(x1, k512, x2);
    x3 = fold4(x2, k512, x3);
    __m128i a = _mm512_extracti32x4_epi32(x3, 0);
    a = fold(a, k128, _mm512_extracti32x4_epi32(x3, 1));
    a = fold(a, k128, _mm512_extracti32x4_epi32(x3, 2));
    a = fold(a, k128, _mm512_extracti32x4_epi32(x3, 3));
    return fold_finish(a, p, done, length, msb, out);
}

static CLMUL4_TARGET size_t fold_512_reflected(uint32_t c, const uint8_t *p, size_t length,
                                               uint8_t out[16])
{
    return fold_512(c, p, length, false, out);
}

static CLMUL4_TARGET size_t fold_512_msb(uint32_t c, const uint8_t *p, size_t length,
                                         uint8_t out[16])
{
    return fold_512(c, p, length, true, out);
}

/* Folds what it can of [p, p + length) (from CRC_CLMUL_MIN bytes on, when the CPU multiplies
 * without carries) into 16 bytes of `out`; returns the bytes consumed, 0 when nothing was. */
static size_t clmul(uint32_t c, const uint8_t *p, size_t length, bool msb, uint8_t out[16])
{
    int kind = length >= CRC_CLMUL_MIN ? clmul_available() : CLMUL_NONE;
    if (kind == CLMUL_512 && length >= CLMUL4_MIN)
        return msb ? fold_512_msb(c, p, length, out) : fold_512_reflected(c, p, length, out);
    if (kind != CLMUL_NONE)
        return msb ? fold_128_msb(c, p, length, out) : fold_128_reflected(c, p, length, out);
    return 0;
}

#else

static size_t clmul(uint32_t c, const uint8_t *p, size_t length, bool msb, uint8_t out[16])
{
    (void)c, (void)p, (void)length, (void)msb, (void)out;
    return 0;
}

#endif

static uint32_t reflected_register(uint32_t c, const uint8_t *p, size_t length)
{
    uint8_t folded[16];
    size_t done = clmul(c, p, length, false, folded);
    if (done)
        c = reflected_tables(0, folded, sizeof folded);
    return reflected_tables(c, p + done, length - done);
}

uint32_t mf_crc32_update(uint32_t crc, const void *data, size_t length)
{
    if (length == 0)
        return crc;
    return ~reflected_register(~crc, data, length);
}

uint32_t mf_crc32_fill(uint32_t crc, uint8_t byte, uint64_t count)
{
    uint8_t block[4096];
    size_t n = count < sizeof block ? (size_t)count : sizeof block;
    memset(block, byte, n);
    uint32_t c = ~crc;
    /* Bounded by count / 4096 steps. */
    while (count) {
        size_t step = count < sizeof block ? (size_t)count : sizeof block;
        c = reflected_register(c, block, step);
        count -= step;
    }
    return ~c;
}

uint32_t mf_crc32_msb_update(uint32_t crc, const void *data, size_t length)
{
    const uint8_t *p = data;
    if (length == 0)
        return crc;
    uint8_t folded[16];
    size_t done = clmul(crc, p, length, true, folded);
    if (done)
        crc = msb_tables(0, folded, sizeof folded);
    return msb_tables(crc, p + done, length - done);
}
