/* Code page 437 and UTF-8 (see mf_cp437.h). */
#include "mf_cp437.h"

/* Bytes 0x80-0xFF. */
static const uint16_t high[128] = {
    0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7, 0x00EA, 0x00EB, 0x00E8, 0x00EF,
    0x00EE, 0x00EC, 0x00C4, 0x00C5, 0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9,
    0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192, 0x00E1, 0x00ED, 0x00F3, 0x00FA,
    0x00F1, 0x00D1, 0x00AA, 0x00BA, 0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557,
    0x255D, 0x255C, 0x255B, 0x2510, 0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,
    0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
    0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
    0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4, 0x03A6, 0x0398, 0x03A9, 0x03B4,
    0x221E, 0x03C6, 0x03B5, 0x2229, 0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248,
    0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,
};

uint16_t mf_cp437_decode(uint8_t byte)
{
    return byte < 0x80 ? byte : high[byte - 0x80];
}

size_t mf_utf8_decode(const char *text, size_t length, uint32_t *character)
{
    const uint8_t *p = (const uint8_t *)text;
    if (length == 0)
        return 0;
    uint32_t c = p[0], min;
    size_t need;
    if (c < 0x80) {
        *character = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        c &= 0x1F, need = 1, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        c &= 0x0F, need = 2, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        c &= 0x07, need = 3, min = 0x10000;
    } else {
        return 0;
    }
    if (length - 1 < need)
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[k] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *character = c;
    return need + 1;
}

size_t mf_utf8_control(const char *text, size_t length, unsigned *code)
{
    const unsigned char *p = (const unsigned char *)text;
    if (length == 0)
        return 0;
    if (p[0] < 0x20 || p[0] == 0x7F) {
        *code = p[0];
        return 1;
    }
    if (p[0] == 0xC2 && length > 1 && p[1] >= 0x80 && p[1] <= 0x9F) {
        *code = p[1];
        return 2;
    }
    return 0;
}

bool mf_utf8_valid(const char *text, size_t length)
{
    uint32_t c;
    for (size_t i = 0, n; i < length; i += n) {
        n = mf_utf8_decode(text + i, length - i, &c);
        if (!n)
            return false;
    }
    return true;
}

size_t mf_cp437_to_utf8(const char *in, size_t length, char *out, size_t size)
{
    size_t n = 0;
    if (size == 0)
        return SIZE_MAX;
    for (size_t i = 0; i < length; i++) {
        uint16_t c = mf_cp437_decode((uint8_t)in[i]);
        size_t bytes = c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
        if (size - n <= bytes)
            return SIZE_MAX;
        if (bytes == 1) {
            out[n++] = (char)c;
        } else if (bytes == 2) {
            out[n++] = (char)(0xC0 | c >> 6);
            out[n++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[n++] = (char)(0xE0 | c >> 12);
            out[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[n] = '\0';
    return n;
}
