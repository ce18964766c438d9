/* The per-device text files of a project: Patches.txt (one line of patches per device) and
 * SNList.txt (one serial number per device, as hex bytes), each line selected by the number in
 * Serial.txt, counting from 0. Parsers for hostile text: bounded, every error says what and where.
 */
#ifndef MF_PATCH_H
#define MF_PATCH_H

#include "mf_area.h"

#include <stdint.h>

#define MF_PATCHES_MAX     8u  /* patches per line (the reference allows 4) */
#define MF_PATCH_BYTES_MAX 64u /* bytes per patch (the reference allows 32) */
/* Characters of one line of Patches.txt or SNList.txt (without its line end). A full line of
 * ours, 8 patches of 64 bytes at 16-digit addresses, is 1193 characters; the reference's 4 of 32
 * about 300: what is left is room for spaces. The protocol's #AUTO PATCH line is bounded by
 * MF_PROTO_LINE_MAX (2048) as a whole, so a full line fits there too. */
#define MF_TEXT_LINE_MAX   2048u
#define MF_PATCH_ERROR_MAX 128u

struct mf_patch {
    uint64_t address;
    uint32_t length;
    uint8_t bytes[MF_PATCH_BYTES_MAX];
};

struct mf_patch_line {
    struct mf_patch patches[MF_PATCHES_MAX];
    unsigned count;
};

/* Reads line `index` (counting from 0, as Serial.txt selects it) of the text file `path`: its text
 * without the line end into `line` (MF_TEXT_LINE_MAX + 1 bytes, NUL-terminated). MF_ENOENT when
 * the file has fewer lines, MF_EFBIG when that line is longer than MF_TEXT_LINE_MAX characters
 * (other lines may be of any length). Lines end in LF, CR LF or CR. */
int mf_text_line(struct mf_area *area, const char *path, uint64_t index, char *line);

/* Parses "<NumPatches>,<Addr>,<NumBytes>:<Data>[,<Addr>,<NumBytes>:<Data>]..." (all hex, data two
 * hex digits per byte; spaces around items are allowed). MF_EFORMAT with `message` set. */
int mf_patch_parse(const char *line, struct mf_patch_line *out, char *message);

/* Parses an SNList.txt line of hex bytes into `length` bytes: a shorter line is filled with
 * zeros, a longer one is cut. MF_EFORMAT for anything but hex digit pairs (spaces allowed). */
int mf_snlist_parse(const char *line, uint8_t *out, unsigned length, char *message);

#endif
