/* Motorola S-record: a streaming parser (S0-S3 header and data, S5/S6 counts, S7-S9 start and
 * end) and a writer. The parser takes the file in chunks of any size (a boundary may fall
 * anywhere, even inside a record or a CR LF pair) and holds at most one record. */
#ifndef MF_SREC_H
#define MF_SREC_H

#include "mf_image.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the longest record: the count byte and the 255 bytes it can count. */
#define MF_SREC_RECORD_MAX 256u

/* Parser state; the caller owns it (about 300 bytes, no allocation). Fields are private. */
struct mf_srec_parser {
    struct mf_image_sink sink;
    uint64_t line;         /* current line, from 1 */
    uint64_t data_records; /* S1/S2/S3 records so far, for S5/S6 */
    uint8_t state;
    uint8_t type; /* digit after 'S' of the current record */
    uint8_t nibble;
    bool have_nibble;
    bool prev_cr;
    bool line_has_record;
    bool counted;   /* an S5/S6 count came after the last data record */
    uint16_t count; /* bytes of the current record decoded so far (count byte included) */
    uint16_t need;  /* bytes the record needs, 0 until its count byte is known */
    int error;      /* first error; sticky */
    uint8_t record[MF_SREC_RECORD_MAX];
};

/* Starts a parse. `sink` is copied; its data callback is required. */
void mf_srec_init(struct mf_srec_parser *parser, const struct mf_image_sink *sink);

/* Parses the next `length` bytes of the file. Returns 0, MF_EFORMAT for malformed input (the
 * report names the line and what is wrong), or the sink's error. After an error every further
 * call returns it again. `err` may be NULL. Accepted: 'S' records with upper- or lower-case
 * digits, line ends LF, CR LF or CR, blank lines, spaces and tabs after a record. S5/S6 counts
 * are checked against the data records before them. */
int mf_srec_feed(struct mf_srec_parser *parser, const void *chunk, size_t length,
                 struct mf_image_error *err);

/* Ends the parse: MF_EFORMAT when the file ends inside a record, or when no termination record
 * (S7-S9) or record count (S5/S6; srec_cat writes no termination without a start address)
 * follows the last data record, which is how a truncated file shows. */
int mf_srec_finish(struct mf_srec_parser *parser, struct mf_image_error *err);

/* Writes a finished image as S-records: an empty S0 header, data records of `record_size`
 * bytes (0 means 16; at most what the record type allows) with the shortest address field that
 * holds every address and the start address (S1/S9 up to 64 KiB, S2/S8 up to 16 MiB, else
 * S3/S7), an S5 or S6 count when the count fits, and the termination record carrying the start
 * address (0 without one); lines end with LF. MF_ERANGE (with a report) when data lies at or
 * above 4 GiB; the writer's error otherwise. */
int mf_srec_write(const struct mf_image *image, unsigned record_size, mf_image_write_fn write,
                  void *context, struct mf_image_error *err);

#endif
