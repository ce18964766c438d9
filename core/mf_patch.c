/* Patches.txt and SNList.txt lines (see mf_patch.h). */
#include "mf_patch.h"

#include "mf_err.h"

#include <stdio.h>
#include <string.h>

int mf_text_line(struct mf_area *area, const char *path, uint64_t index, char *line)
{
    struct mf_area_entry e;
    int err = area->stat(area, path, &e);
    if (err)
        return err;
    uint8_t buf[512];
    uint64_t current = 0;
    size_t len = 0;
    bool prev_cr = false;
    for (uint64_t off = 0; off < e.size;) {
        size_t n = e.size - off < sizeof buf ? (size_t)(e.size - off) : sizeof buf;
        err = area->read(area, path, off, buf, n);
        if (err)
            return err;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = buf[i];
            if (c == '\n' && prev_cr) {
                prev_cr = false;
                continue; /* the LF of a CR LF */
            }
            prev_cr = c == '\r';
            if (c == '\n' || c == '\r') {
                if (current == index) {
                    line[len] = '\0';
                    return 0;
                }
                current++;
                continue;
            }
            if (current == index) {
                if (len == MF_TEXT_LINE_MAX)
                    return MF_EFBIG;
                line[len++] = (char)c;
            }
        }
        off += n;
    }
    if (current == index && len > 0) { /* last line without a line end */
        line[len] = '\0';
        return 0;
    }
    return MF_ENOENT;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A hex number of at most 16 digits. */
static const char *hex_number(const char *p, uint64_t *value)
{
    p = skip_spaces(p);
    uint64_t v = 0;
    int digits = 0;
    for (int d; (d = hex_digit(*p)) >= 0; p++) {
        if (++digits > 16)
            return NULL;
        v = v << 4 | (uint64_t)d;
    }
    if (!digits)
        return NULL;
    *value = v;
    return skip_spaces(p);
}

int mf_patch_parse(const char *line, struct mf_patch_line *out, char *message)
{
    uint64_t count;
    const char *p = hex_number(line, &count);
    memset(out, 0, sizeof *out);
    if (!p) {
        snprintf(message, MF_PATCH_ERROR_MAX, "expected the number of patches (hex) first");
        return MF_EFORMAT;
    }
    if (count < 1 || count > MF_PATCHES_MAX) {
        snprintf(message, MF_PATCH_ERROR_MAX,
                 "NumPatches is 0x%llX: a line holds from 1 to %u patches",
                 (unsigned long long)count, MF_PATCHES_MAX);
        return MF_EFORMAT;
    }
    for (unsigned i = 0; i < count; i++) {
        struct mf_patch *patch = &out->patches[i];
        uint64_t length;
        if (*p != ',' || !(p = hex_number(p + 1, &patch->address)) || *p != ',' ||
            !(p = hex_number(p + 1, &length)) || *p != ':') {
            snprintf(message, MF_PATCH_ERROR_MAX,
                     "patch %u: expected ',<Addr>,<NumBytes>:<Data>' (hex)", i + 1);
            return MF_EFORMAT;
        }
        if (length < 1 || length > MF_PATCH_BYTES_MAX) {
            snprintf(message, MF_PATCH_ERROR_MAX,
                     "patch %u: NumBytes is 0x%llX (%llu): a patch holds from 1 to %u (0x%X) bytes",
                     i + 1, (unsigned long long)length, (unsigned long long)length,
                     MF_PATCH_BYTES_MAX, MF_PATCH_BYTES_MAX);
            return MF_EFORMAT;
        }
        if (patch->address + length < patch->address) {
            snprintf(message, MF_PATCH_ERROR_MAX, "patch %u: address range wraps", i + 1);
            return MF_EFORMAT;
        }
        p = skip_spaces(p + 1);
        for (uint64_t k = 0; k < length; k++) {
            int hi = hex_digit(p[0]), lo = hi >= 0 ? hex_digit(p[1]) : -1;
            if (lo < 0) {
                snprintf(message, MF_PATCH_ERROR_MAX,
                         "patch %u: %llu data bytes expected (two hex digits each), found %llu",
                         i + 1, (unsigned long long)length, (unsigned long long)k);
                return MF_EFORMAT;
            }
            patch->bytes[k] = (uint8_t)(hi << 4 | lo);
            p += 2;
        }
        patch->length = (uint32_t)length;
        p = skip_spaces(p);
        out->count++;
    }
    if (*p) {
        snprintf(message, MF_PATCH_ERROR_MAX, "unexpected text after %u patches: '%.16s'",
                 out->count, p);
        return MF_EFORMAT;
    }
    return 0;
}

int mf_snlist_parse(const char *line, uint8_t *out, unsigned length, char *message)
{
    memset(out, 0, length);
    unsigned n = 0;
    for (const char *p = skip_spaces(line); *p; p = skip_spaces(p)) {
        int hi = hex_digit(p[0]), lo = hi >= 0 ? hex_digit(p[1]) : -1;
        if (lo < 0) {
            snprintf(message, MF_PATCH_ERROR_MAX, "expected hex digit pairs, found '%.8s'", p);
            return MF_EFORMAT;
        }
        if (n < length)
            out[n] = (uint8_t)(hi << 4 | lo);
        n++;
        p += 2;
    }
    if (n == 0) {
        snprintf(message, MF_PATCH_ERROR_MAX, "empty line");
        return MF_EFORMAT;
    }
    return 0;
}
