/* Intel HEX: a streaming parser for record types 00-05 and a writer.
 * The parser takes the file in chunks of any size (a boundary may fall anywhere, even inside a
 * record or a CR LF pair) and hands each data record to a sink; it holds at most one record. */
#ifndef MF_IHEX_H
#define MF_IHEX_H

#include "mf_image.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the longest record: length, address (2), type, 255 data bytes, checksum. */
#define MF_IHEX_RECORD_MAX 260u

/* Parser state; the caller owns it (about 300 bytes, no allocation). Fields are private. */
struct mf_ihex_parser {
    struct mf_image_sink sink;
    uint64_t line;          /* current line, from 1 */
    uint32_t linear_base;   /* from the last 04 record, already shifted */
    uint32_t segment_base;  /* from the last 02 record, already shifted */
    uint8_t last_base_type; /* 0 (none yet), 2 or 4: which of the two came last */
    uint8_t state;
    uint8_t nibble; /* high digit of a byte split across chunks */
    bool have_nibble;
    bool prev_cr;         /* the last character was CR: a following LF ends no new line */
    bool line_has_record; /* a record ended on this line: only blanks may follow */
    uint16_t count;       /* bytes of the current record decoded so far */
    uint16_t need;        /* bytes the record needs (from its length), 0 until known */
    int error;            /* first error; sticky */
    uint8_t record[MF_IHEX_RECORD_MAX];
};

/* Starts a parse. `sink` is copied; its data callback is required. */
void mf_ihex_init(struct mf_ihex_parser *parser, const struct mf_image_sink *sink);

/* Parses the next `length` bytes of the file. Returns 0, MF_EFORMAT for malformed input (the
 * report names the line and what is wrong), or the sink's error. After an error every further
 * call returns it again. `err` may be NULL. Accepted: ':' records with upper- or lower-case
 * digits, line ends LF, CR LF or CR, blank lines, spaces and tabs after a record. */
int mf_ihex_feed(struct mf_ihex_parser *parser, const void *chunk, size_t length,
                 struct mf_image_error *err);

/* Ends the parse: MF_EFORMAT when the file ends inside a record or has no end-of-file record
 * (01), which is how a truncated file shows. */
int mf_ihex_finish(struct mf_ihex_parser *parser, struct mf_image_error *err);

/* Writes a finished image as Intel HEX: data records of `record_size` bytes (1-255; 0 means
 * 16) that never cross a 64 KiB boundary, an extended linear address record (04) wherever the
 * upper 16 address bits change, a start linear address record (05) when the image has a start
 * address below 4 GiB, and the end-of-file record; lines end with LF. MF_ERANGE (with a report)
 * when data lies at or above 4 GiB; the writer's error otherwise. */
int mf_ihex_write(const struct mf_image *image, unsigned record_size, mf_image_write_fn write,
                  void *context, struct mf_image_error *err);

#endif
