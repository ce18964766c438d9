/* Decimal number files on a FAT volume (Cntdown.txt, Serial.txt): read, and update crash-safely.
 * An update never changes what the file says except by one atomic sector write: a file that must
 * grow is first padded with spaces (its number unchanged), then the new digits overwrite it in
 * place. So a power cut at any write leaves the old number or the new one, never a mix. The file
 * must fit in one sector (at most 512 bytes). */
#ifndef MF_NUMFILE_H
#define MF_NUMFILE_H

#include "mf_fat.h"

#include <stdint.h>

#define MF_NUMFILE_SIZE_MAX 512u

enum mf_numfile_syntax {
    /* Only digits, with optional whitespace (space, tab, CR, LF) around them and a UTF-8 BOM.
     * For Cntdown.txt: anything else is an error, never a guess. */
    MF_NUMFILE_STRICT,
    /* Leading digits; whatever follows the first non-digit is ignored (the reference product cuts
     * "123123-123" to 123123). For Serial.txt. */
    MF_NUMFILE_LEADING,
};

/* Reads the number in `path`. MF_ENOENT when the file is absent, MF_EFBIG when it is larger than
 * MF_NUMFILE_SIZE_MAX, MF_EFORMAT when it holds no number in `syntax` or one above `max`. */
int mf_numfile_read(struct mf_fat *fs, const char *path, enum mf_numfile_syntax syntax,
                    uint64_t max, uint64_t *value);

/* Replaces the number in `path` (which must exist) by `value`, keeping its line end, and syncs.
 * Errors as mf_numfile_read, plus the volume's. */
int mf_numfile_write(struct mf_fat *fs, const char *path, uint64_t value);

/* Parses a number file's bytes; the same rules as mf_numfile_read. */
int mf_numfile_parse(const char *text, uint32_t len, enum mf_numfile_syntax syntax, uint64_t max,
                     uint64_t *value);

#endif
