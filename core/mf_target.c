/* Helpers shared by target back ends and the job engine. */
#include "mf_target.h"

#include "mf_crc32.h"

/* The GDB protocol's qCRC: polynomial 0x04C11DB7, most significant bit first, no reflection and
 * no final XOR. mf_crc32 computes it (carry-less multiplication where the CPU has it, else
 * slicing tables; tests/unit/test_crc32.c checks every way against a bit-by-bit reference). */
uint32_t mf_target_crc(uint32_t crc, const void *data, size_t length)
{
    return mf_crc32_msb_update(crc, data, length);
}
