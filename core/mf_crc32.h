/* CRC-32 as zlib, PNG, Ethernet and the `crc32` tool compute it (IEEE 802.3, reflected,
 * polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF), usable in pieces so that
 * streamed data can be checked without holding it whole. */
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

#endif
