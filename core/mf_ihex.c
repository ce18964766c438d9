/* Intel HEX parser and writer.
 * The parser decodes a record straight from the caller's chunk when the whole record is in it
 * (the common case, one table lookup per digit) and falls back to a character-at-a-time state
 * machine across chunk boundaries or on anything unusual; both end in ihex_record(). */
#include "mf_ihex.h"

#include "mf_err.h"

#include <assert.h>
#include <string.h>

enum {
    IHEX_LINE,   /* between records */
    IHEX_RECORD, /* after ':', collecting digits */
    IHEX_DONE,   /* after the end-of-file record */
};

enum {
    IHEX_DATA = 0x00,
    IHEX_END_OF_FILE = 0x01,
    IHEX_EXTENDED_SEGMENT = 0x02,
    IHEX_START_SEGMENT = 0x03,
    IHEX_EXTENDED_LINEAR = 0x04,
    IHEX_START_LINEAR = 0x05,
};

#define IHEX_HEADER_BYTES  5u  /* length, address (2), type, checksum */
#define IHEX_MIN_CHARS     11u /* ':' and the digits of a record without data */
#define IHEX_SEGMENT_SIZE  0x10000u
#define IHEX_ADDRESS_LIMIT 0x100000000ull

void mf_ihex_init(struct mf_ihex_parser *parser, const struct mf_image_sink *sink)
{
    assert(parser && sink && sink->data);
    memset(parser, 0, sizeof *parser);
    parser->sink = *sink;
    parser->line = 1;
    parser->state = IHEX_LINE;
}

static int ihex_fail(struct mf_ihex_parser *p, int code)
{
    p->error = code;
    return code;
}

static int ihex_data(struct mf_ihex_parser *p, const uint8_t *record, struct mf_image_error *err)
{
    unsigned length = record[0];
    uint32_t offset = (uint32_t)record[1] << 8 | record[2];
    if (length == 0)
        return 0;
    /* objcopy adds the 02 and 04 bases, srec_cat (and the Intel specification) uses the one
     * given last; refuse the files on which the two readings differ rather than pick one. */
    if ((p->last_base_type == IHEX_EXTENDED_SEGMENT && p->linear_base != 0) ||
        (p->last_base_type == IHEX_EXTENDED_LINEAR && p->segment_base != 0)) {
        mf_image_error_line(err, p->line,
                            "data record with both an extended segment address (02) and an "
                            "extended linear address (04) in effect: its address is ambiguous");
        return ihex_fail(p, MF_EFORMAT);
    }
    /* In segment mode the specification wraps the offset within the 64 KiB segment, objcopy
     * does not; again refuse rather than guess. */
    if (p->last_base_type == IHEX_EXTENDED_SEGMENT && offset + length > IHEX_SEGMENT_SIZE) {
        mf_image_error_line(err, p->line,
                            "data record crosses the end of its 64 KiB segment (offset 0x%04X + "
                            "%u bytes); tools disagree on where the rest goes",
                            (unsigned)offset, length);
        return ihex_fail(p, MF_EFORMAT);
    }
    uint64_t address = (uint64_t)p->linear_base + p->segment_base + offset;
    if (address + length > IHEX_ADDRESS_LIMIT) {
        mf_image_error_line(err, p->line, "data at 0x%08llX (%u bytes) extends past 4 GiB",
                            (unsigned long long)address, length);
        return ihex_fail(p, MF_EFORMAT);
    }
    int rc = p->sink.data(p->sink.context, address, record + 4, length, p->line);
    if (rc)
        return ihex_fail(p, mf_image_error_sink(err, p->line, 0, rc));
    return 0;
}

/* A complete record of record[0] + 5 bytes whose bytes add up to `sum`. */
static int ihex_record(struct mf_ihex_parser *p, const uint8_t *record, uint8_t sum,
                       struct mf_image_error *err)
{
    unsigned length = record[0];
    uint8_t checksum = record[length + 4];
    if (sum != 0) {
        mf_image_error_line(err, p->line, "checksum mismatch (expected 0x%02X, got 0x%02X)",
                            (unsigned)(uint8_t)(checksum - sum), (unsigned)checksum);
        return ihex_fail(p, MF_EFORMAT);
    }
    unsigned type = record[3];
    static const uint8_t fixed_length[] = {0, 0, 2, 4, 2, 4};
    static const char *const names[] = {"data",
                                        "end-of-file",
                                        "extended segment address",
                                        "start segment address",
                                        "extended linear address",
                                        "start linear address"};
    if (type > IHEX_START_LINEAR) {
        mf_image_error_line(err, p->line, "record type 0x%02X out of range (00-05)", type);
        return ihex_fail(p, MF_EFORMAT);
    }
    if (type != IHEX_DATA && length != fixed_length[type]) {
        mf_image_error_line(err, p->line, "%s record (%02X) must hold %u data bytes, not %u",
                            names[type], type, (unsigned)fixed_length[type], length);
        return ihex_fail(p, MF_EFORMAT);
    }
    const uint8_t *d = record + 4;
    int rc = 0;
    switch (type) {
    case IHEX_DATA:
        return ihex_data(p, record, err);
    case IHEX_END_OF_FILE:
        p->state = IHEX_DONE;
        return 0;
    case IHEX_EXTENDED_SEGMENT:
        p->segment_base = ((uint32_t)d[0] << 8 | d[1]) << 4;
        p->last_base_type = IHEX_EXTENDED_SEGMENT;
        return 0;
    case IHEX_EXTENDED_LINEAR:
        p->linear_base = ((uint32_t)d[0] << 8 | d[1]) << 16;
        p->last_base_type = IHEX_EXTENDED_LINEAR;
        return 0;
    case IHEX_START_SEGMENT:
        if (p->sink.start) {
            uint32_t cs = (uint32_t)d[0] << 8 | d[1], ip = (uint32_t)d[2] << 8 | d[3];
            rc = p->sink.start(p->sink.context, (uint64_t)cs * 16u + ip);
        }
        break;
    default: /* IHEX_START_LINEAR */
        if (p->sink.start) {
            uint32_t eip = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
            rc = p->sink.start(p->sink.context, eip);
        }
        break;
    }
    if (rc)
        return ihex_fail(p, mf_image_error_sink(err, p->line, 0, rc));
    return 0;
}

/* A character ended the digits of an unfinished record. */
static int ihex_record_cut(struct mf_ihex_parser *p, uint8_t c, struct mf_image_error *err)
{
    char what[8];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
        mf_image_error_line(err, p->line, "bad hex digit %s", mf_image_describe_byte(c, what));
    else if (p->have_nibble)
        mf_image_error_line(err, p->line, "odd number of hex digits");
    else if (p->count < IHEX_HEADER_BYTES)
        mf_image_error_line(err, p->line, "record too short (%u bytes, at least 5 needed)",
                            (unsigned)p->count);
    else
        mf_image_error_line(
            err, p->line, "short record (length field says %u data bytes, the line holds %u)",
            (unsigned)(p->need - IHEX_HEADER_BYTES), (unsigned)(p->count - IHEX_HEADER_BYTES));
    return ihex_fail(p, MF_EFORMAT);
}

/* Characters outside records: line ends, blanks; anything else is an error. */
static int ihex_between(struct mf_ihex_parser *p, uint8_t c, struct mf_image_error *err)
{
    char what[8];
    if (c == '\n') {
        if (!p->prev_cr)
            p->line++;
        p->prev_cr = false;
        p->line_has_record = false;
        return 0;
    }
    if (c == '\r') {
        p->line++;
        p->prev_cr = true;
        p->line_has_record = false;
        return 0;
    }
    p->prev_cr = false;
    if (c == ' ' || c == '\t')
        return 0;
    if (c == ':' && p->state == IHEX_DONE)
        mf_image_error_line(err, p->line, "record after the end-of-file record");
    else if (p->line_has_record && !(mf_image_hex_value[c] & 0x10))
        mf_image_error_line(err, p->line, "record longer than its length field (%u data bytes)",
                            (unsigned)p->record[0]);
    else if (c == ':')
        mf_image_error_line(err, p->line, "second record on one line");
    else
        mf_image_error_line(
            err, p->line, "unexpected character %s %s", mf_image_describe_byte(c, what),
            p->state == IHEX_DONE ? "after the end-of-file record" : "outside a record");
    return ihex_fail(p, MF_EFORMAT);
}

/* Decodes a whole record from `s` (at its ':') when all of it is in the chunk and every digit is
 * valid. Returns the characters used, or 0 to leave the record to the slow path. */
static size_t ihex_try_fast(struct mf_ihex_parser *p, const uint8_t *s, size_t avail,
                            uint8_t *sum_out)
{
    if (avail < IHEX_MIN_CHARS)
        return 0;
    const uint8_t *hex = mf_image_hex_value;
    uint8_t hi = hex[s[1]], lo = hex[s[2]];
    if ((hi | lo) & 0x10)
        return 0;
    unsigned bytes = ((unsigned)hi << 4 | lo) + IHEX_HEADER_BYTES;
    size_t chars = 1 + 2 * (size_t)bytes;
    if (avail < chars)
        return 0;
    const uint8_t *d = s + 1;
    uint8_t *out = p->record;
    uint8_t bad = 0, sum = 0;
    for (unsigned i = 0; i < bytes; i++) {
        hi = hex[d[2 * i]];
        lo = hex[d[2 * i + 1]];
        bad |= (uint8_t)(hi | lo);
        uint8_t b = (uint8_t)(hi << 4 | lo);
        out[i] = b;
        sum = (uint8_t)(sum + b);
    }
    if (bad & 0x10)
        return 0;
    *sum_out = sum;
    return chars;
}

int mf_ihex_feed(struct mf_ihex_parser *parser, const void *chunk, size_t length,
                 struct mf_image_error *err)
{
    struct mf_ihex_parser *p = parser;
    if (p->error)
        return p->error;
    mf_image_error_clear(err);
    const uint8_t *s = chunk;
    const uint8_t *end = s + length;
    while (s < end) {
        uint8_t c = *s;
        if (p->state == IHEX_RECORD) {
            uint8_t v = mf_image_hex_value[c];
            if (v & 0x10)
                return ihex_record_cut(p, c, err);
            s++;
            if (!p->have_nibble) {
                p->nibble = v;
                p->have_nibble = true;
                continue;
            }
            p->have_nibble = false;
            uint8_t b = (uint8_t)(p->nibble << 4 | v);
            p->record[p->count++] = b;
            if (p->count == 1)
                p->need = (uint16_t)(b + IHEX_HEADER_BYTES);
            if (p->count == p->need) {
                uint8_t sum = 0;
                for (unsigned i = 0; i < p->count; i++)
                    sum = (uint8_t)(sum + p->record[i]);
                p->state = IHEX_LINE;
                p->line_has_record = true;
                int rc = ihex_record(p, p->record, sum, err);
                if (rc)
                    return rc;
            }
            continue;
        }
        if (c == ':' && p->state == IHEX_LINE && !p->line_has_record) {
            uint8_t sum;
            size_t used = ihex_try_fast(p, s, (size_t)(end - s), &sum);
            p->prev_cr = false;
            if (used) {
                s += used;
                p->line_has_record = true;
                int rc = ihex_record(p, p->record, sum, err);
                if (rc)
                    return rc;
                continue;
            }
            s++;
            p->state = IHEX_RECORD;
            p->count = 0;
            p->need = 0;
            p->have_nibble = false;
            continue;
        }
        s++;
        int rc = ihex_between(p, c, err);
        if (rc)
            return rc;
    }
    return 0;
}

int mf_ihex_finish(struct mf_ihex_parser *parser, struct mf_image_error *err)
{
    struct mf_ihex_parser *p = parser;
    if (p->error)
        return p->error;
    mf_image_error_clear(err);
    if (p->state == IHEX_RECORD) {
        mf_image_error_line(err, p->line, "file ends inside a record");
        return ihex_fail(p, MF_EFORMAT);
    }
    if (p->state != IHEX_DONE) {
        mf_image_error_line(err, p->line,
                            "no end-of-file record (type 01): the file may be truncated");
        return ihex_fail(p, MF_EFORMAT);
    }
    return 0;
}

/* Writer. */

static const char ihex_digits[] = "0123456789ABCDEF";

static char *ihex_put_byte(char *o, uint8_t b, uint8_t *sum)
{
    o[0] = ihex_digits[b >> 4];
    o[1] = ihex_digits[b & 0x0F];
    *sum = (uint8_t)(*sum + b);
    return o + 2;
}

static int ihex_write_record(mf_image_write_fn write, void *context, unsigned type,
                             uint32_t address16, const uint8_t *data, unsigned length)
{
    char line[1 + 2 * MF_IHEX_RECORD_MAX + 1];
    char *o = line;
    uint8_t sum = 0;
    *o++ = ':';
    o = ihex_put_byte(o, (uint8_t)length, &sum);
    o = ihex_put_byte(o, (uint8_t)(address16 >> 8), &sum);
    o = ihex_put_byte(o, (uint8_t)address16, &sum);
    o = ihex_put_byte(o, (uint8_t)type, &sum);
    for (unsigned i = 0; i < length; i++)
        o = ihex_put_byte(o, data[i], &sum);
    uint8_t unused = 0;
    o = ihex_put_byte(o, (uint8_t)(0u - sum), &unused);
    *o++ = '\n';
    return write(context, line, (size_t)(o - line));
}

int mf_ihex_write(const struct mf_image *image, unsigned record_size, mf_image_write_fn write,
                  void *context, struct mf_image_error *err)
{
    mf_image_error_clear(err);
    if (record_size == 0)
        record_size = 16;
    if (record_size > 255)
        record_size = 255;
    size_t count;
    const struct mf_image_segment *segments = mf_image_segments(image, &count);
    if (count && segments[count - 1].address + segments[count - 1].size > IHEX_ADDRESS_LIMIT) {
        mf_image_error_set(
            err, "data up to 0x%llX lies beyond 4 GiB: Intel HEX cannot hold it",
            (unsigned long long)(segments[count - 1].address + segments[count - 1].size - 1));
        return MF_ERANGE;
    }
    uint32_t upper = 0; /* the implicit linear base at the start of a file */
    for (size_t i = 0; i < count; i++) {
        uint64_t address = segments[i].address;
        const uint8_t *data = segments[i].data;
        uint64_t left = segments[i].size;
        while (left) {
            uint32_t high = (uint32_t)(address >> 16);
            if (high != upper) {
                uint8_t base[2] = {(uint8_t)(high >> 8), (uint8_t)high};
                int rc = ihex_write_record(write, context, IHEX_EXTENDED_LINEAR, 0, base, 2);
                if (rc)
                    return rc;
                upper = high;
            }
            uint32_t low = (uint32_t)(address & 0xFFFFu);
            uint64_t n = record_size;
            if (n > left)
                n = left;
            if (n > IHEX_SEGMENT_SIZE - low)
                n = IHEX_SEGMENT_SIZE - low;
            int rc = ihex_write_record(write, context, IHEX_DATA, low, data, (unsigned)n);
            if (rc)
                return rc;
            address += n;
            data += n;
            left -= n;
        }
    }
    uint64_t start;
    if (mf_image_start(image, &start) && start <= 0xFFFFFFFFu) {
        uint8_t eip[4] = {(uint8_t)(start >> 24), (uint8_t)(start >> 16), (uint8_t)(start >> 8),
                          (uint8_t)start};
        int rc = ihex_write_record(write, context, IHEX_START_LINEAR, 0, eip, 4);
        if (rc)
            return rc;
    }
    return ihex_write_record(write, context, IHEX_END_OF_FILE, 0, NULL, 0);
}
