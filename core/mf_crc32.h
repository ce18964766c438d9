/* CRC-32 as zlib, PNG, Ethernet and the `crc32` tool compute it (IEEE 802.3, reflected,
 * polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF), usable in pieces so that
 * streamed data can be checked without holding it whole. Also the same polynomial most
 * significant bit first, the CRC that GDB's qCRC packet and the targets report.
 * Both run at memory speed where the CPU multiplies without carries (x86-64 PCLMULQDQ, and
 * VPCLMULQDQ with AVX-512, chosen at run time), 16 bytes per step elsewhere; the results are the
 * same everywhere. */
#ifndef MF_CRC32_H
#define MF_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32 over `length` more bytes: start with crc = 0, then pass each result back
 * in with the next piece (zlib's crc32() contract). Splitting the data anywhere gives the same
 * result as one call. `data` may be NULL when `length` is 0. */
uint32_t mf_crc32_update(uint32_t crc, const void *data, size_t length);

/* Feeds `count` copies of `byte` (for example a gap filled with 0xFF), as if they were data. */
uint32_t mf_crc32_fill(uint32_t crc, uint8_t byte, uint64_t count);

/* Continues the most-significant-bit-first CRC-32 (polynomial 0x04C11DB7, no reflection, no
 * inversion: the register itself goes in and comes out, as in mf_target_crc; GDB's qCRC starts
 * it at 0xFFFFFFFF, CRC-32/MPEG-2 too). Splitting the data anywhere gives the same result. */
uint32_t mf_crc32_msb_update(uint32_t crc, const void *data, size_t length);

/* Which way the functions above compute, for tests and benchmarks (the results never differ):
 * the fastest the CPU offers (the default), 128-bit carry-less multiplication only (where the
 * CPU has it, else the tables), the portable tables, or one table step per byte. */
enum mf_crc32_path {
    MF_CRC32_PATH_FASTEST = 0,
    MF_CRC32_PATH_CLMUL,
    MF_CRC32_PATH_TABLES,
    MF_CRC32_PATH_BYTES,
};

/* Sets the path for every thread; returns the previous one. */
enum mf_crc32_path mf_crc32_set_path(enum mf_crc32_path path);

#endif
