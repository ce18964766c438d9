/* Code page 437: the characters of FAT short names written by other systems, and of the
 * reference product's file names (docs/protocol.md, "Names beyond ASCII"). Conversions to UTF-8,
 * which the programmer uses everywhere else. */
#ifndef MF_CP437_H
#define MF_CP437_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Unicode character of a CP437 byte (below 0x80: ASCII; control bytes are their own). */
uint16_t mf_cp437_decode(uint8_t byte);

/* Decodes the first character of `text` (length bytes) into `*character`: its length in bytes
 * (1 to 4), or 0 when the text is empty or does not start with well-formed UTF-8 (an overlong
 * form, a surrogate, a value beyond U+10FFFF, a cut or stray byte). */
size_t mf_utf8_decode(const char *text, size_t length, uint32_t *character);

/* Is `text` (length bytes) well-formed UTF-8 (no overlong forms, surrogates or values beyond
 * U+10FFFF)? */
bool mf_utf8_valid(const char *text, size_t length);

/* The control character `text` starts with (`length` bytes there): C0, DEL, or a C1 control
 * written as UTF-8 (C2 80 to C2 9F, U+0080 to U+009F; NEL ends a line for some viewers, CSI
 * starts an escape sequence for some terminals). Its length in bytes (1 or 2) with *code (its
 * value), or 0 when the text starts with none. */
size_t mf_utf8_control(const char *text, size_t length, unsigned *code);

/* Writes the UTF-8 form of the CP437 bytes `in` to `out` (`size` bytes, NUL-terminated); the
 * length written, or SIZE_MAX when it does not fit (nothing useful is left in `out` then). */
size_t mf_cp437_to_utf8(const char *in, size_t length, char *out, size_t size);

#endif
