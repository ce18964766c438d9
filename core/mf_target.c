/* Helpers shared by target back ends and the job engine. */
#include "mf_target.h"

/* Table for polynomial 0x04C11DB7, most significant bit first, built at compile time so that
 * the function needs no initialisation and no lock. */
#define CRC_STEP(c) (((c)&0x80000000u) ? (((c) << 1) ^ 0x04C11DB7u) : ((c) << 1))
#define CRC_8(c)                                                                                   \
    CRC_STEP(                                                                                      \
        CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP((uint32_t)(c) << 24))))))))
#define CRC_ROW(i)                                                                                 \
    CRC_8((i) + 0), CRC_8((i) + 1), CRC_8((i) + 2), CRC_8((i) + 3), CRC_8((i) + 4),                \
        CRC_8((i) + 5), CRC_8((i) + 6), CRC_8((i) + 7)
#define CRC_64(i)                                                                                  \
    CRC_ROW((i) + 0), CRC_ROW((i) + 8), CRC_ROW((i) + 16), CRC_ROW((i) + 24), CRC_ROW((i) + 32),   \
        CRC_ROW((i) + 40), CRC_ROW((i) + 48), CRC_ROW((i) + 56)

static const uint32_t crc_table[256] = {CRC_64(0), CRC_64(64), CRC_64(128), CRC_64(192)};

uint32_t mf_target_crc(uint32_t crc, const void *data, size_t length)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < length; i++)
        crc = (crc << 8) ^ crc_table[((crc >> 24) ^ p[i]) & 0xFFu];
    return crc;
}
