/* Decimal number files (see mf_numfile.h). */
#include "mf_numfile.h"

#include "mf_err.h"

#include <string.h>

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int mf_numfile_parse(const char *text, uint32_t len, enum mf_numfile_syntax syntax, uint64_t max,
                     uint64_t *value)
{
    uint32_t i = 0;
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        i = 3;
    while (i < len && is_blank(text[i]))
        i++;
    uint64_t v = 0;
    uint32_t digits = 0;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++, digits++) {
        unsigned d = (unsigned)(text[i] - '0');
        if (v > (max - d) / 10)
            return MF_EFORMAT; /* above max */
        v = v * 10 + d;
    }
    if (digits == 0)
        return MF_EFORMAT;
    if (syntax == MF_NUMFILE_STRICT) {
        for (; i < len; i++) {
            if (!is_blank(text[i]))
                return MF_EFORMAT;
        }
    }
    *value = v;
    return 0;
}

static int load(struct mf_fat *fs, struct mf_fat_file *file, char *buf, uint32_t *len)
{
    uint32_t size = mf_fat_size(file);
    if (size > MF_NUMFILE_SIZE_MAX)
        return MF_EFBIG;
    int n = mf_fat_read(fs, file, buf, size);
    if (n < 0)
        return n;
    if ((uint32_t)n != size)
        return MF_EIO;
    *len = size;
    return 0;
}

int mf_numfile_read(struct mf_fat *fs, const char *path, enum mf_numfile_syntax syntax,
                    uint64_t max, uint64_t *value)
{
    struct mf_fat_file file;
    char buf[MF_NUMFILE_SIZE_MAX];
    uint32_t len = 0;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_RDONLY);
    if (err)
        return err;
    err = load(fs, &file, buf, &len);
    mf_fat_close(fs, &file);
    if (err)
        return err;
    return mf_numfile_parse(buf, len, syntax, max, value);
}

int mf_numfile_write(struct mf_fat *fs, const char *path, uint64_t value)
{
    struct mf_fat_file file;
    char old[MF_NUMFILE_SIZE_MAX], text[MF_NUMFILE_SIZE_MAX];
    uint32_t size = 0;
    int err = mf_fat_open(fs, &file, path, MF_FAT_O_RDWR);
    if (err)
        return err;
    err = load(fs, &file, old, &size);
    if (err)
        goto out;

    /* The new text: the digits, then the old line end (if the old text ended in one). */
    char digits[24];
    uint32_t nd = 0;
    do {
        digits[nd++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    uint32_t len = 0;
    while (nd)
        text[len++] = digits[--nd];
    /* Keep the line end the owner's editor wrote after the number (padding may follow it):
     * CR LF, LF or CR alone, whichever comes first. */
    for (uint32_t i = 0; i < size; i++) {
        if (old[i] == '\r' || old[i] == '\n') {
            text[len++] = old[i];
            if (old[i] == '\r' && i + 1 < size && old[i + 1] == '\n')
                text[len++] = '\n';
            break;
        }
    }
    if (len > MF_NUMFILE_SIZE_MAX) {
        err = MF_EFBIG;
        goto out;
    }

    if (len > size) {
        /* Grow with spaces first: the number the file shows does not change. */
        char pad[MF_NUMFILE_SIZE_MAX];
        memset(pad, ' ', len - size);
        err = mf_fat_seek(fs, &file, size);
        if (!err) {
            int n = mf_fat_write(fs, &file, pad, len - size);
            err = n < 0 ? n : 0;
        }
        if (!err)
            err = mf_fat_file_sync(fs, &file);
        if (err)
            goto out;
        size = len;
    }
    /* One in-place write of the first sector switches to the new number. */
    memset(text + len, ' ', size - len);
    err = mf_fat_seek(fs, &file, 0);
    if (!err) {
        int n = mf_fat_write(fs, &file, text, size);
        err = n < 0 ? n : 0;
    }
out:;
    int cerr = mf_fat_close(fs, &file);
    return err ? err : cerr;
}
