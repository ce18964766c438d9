/* Motorola S-record parser and writer.
 * Same shape as mf_ihex.c: a whole record in the chunk is decoded in place with one table
 * lookup per digit; across chunk boundaries a character-at-a-time state machine collects it;
 * both end in srec_record(). */
#include "mf_srec.h"

#include "mf_err.h"

#include <assert.h>
#include <string.h>

enum {
    SREC_LINE,   /* between records */
    SREC_TYPE,   /* after 'S', expecting the type digit */
    SREC_RECORD, /* collecting digits */
    SREC_DONE,   /* after the termination record */
};

#define SREC_ADDRESS_LIMIT 0x100000000ull
#define SREC_MIN_CHARS     4u /* 'S', type, count digits */

/* Address bytes per record type; 0 marks the reserved S4. */
static const uint8_t srec_address_bytes[10] = {2, 2, 3, 4, 0, 2, 3, 4, 3, 2};

void mf_srec_init(struct mf_srec_parser *parser, const struct mf_image_sink *sink)
{
    assert(parser && sink && sink->data);
    memset(parser, 0, sizeof *parser);
    parser->sink = *sink;
    parser->line = 1;
    parser->state = SREC_LINE;
}

static int srec_fail(struct mf_srec_parser *p, int code)
{
    p->error = code;
    return code;
}

/* A complete record: type p->type, record[0] the count, record[1..count] the rest. */
static int srec_record(struct mf_srec_parser *p, const uint8_t *record, uint8_t sum,
                       struct mf_image_error *err)
{
    unsigned type = p->type;
    unsigned count = record[0];
    unsigned address_bytes = srec_address_bytes[type];
    uint8_t checksum = record[count];
    if (sum != 0xFF) {
        mf_image_error_line(err, p->line, "checksum mismatch (expected 0x%02X, got 0x%02X)",
                            (unsigned)(uint8_t)(checksum + (uint8_t)(0xFFu - sum)),
                            (unsigned)checksum);
        return srec_fail(p, MF_EFORMAT);
    }
    if (count < address_bytes + 1) {
        mf_image_error_line(err, p->line, "record too short for S%u (count %u, at least %u needed)",
                            type, count, address_bytes + 1);
        return srec_fail(p, MF_EFORMAT);
    }
    uint64_t address = 0;
    for (unsigned i = 0; i < address_bytes; i++)
        address = address << 8 | record[1 + i];
    const uint8_t *data = record + 1 + address_bytes;
    unsigned length = count - address_bytes - 1;
    int rc = 0;
    switch (type) {
    case 0: /* header: free text, nothing to load */
        return 0;
    case 1:
    case 2:
    case 3:
        p->data_records++;
        p->counted = false;
        if (length == 0)
            return 0;
        if (address + length > SREC_ADDRESS_LIMIT) {
            mf_image_error_line(err, p->line, "data at 0x%08llX (%u bytes) extends past 4 GiB",
                                (unsigned long long)address, length);
            return srec_fail(p, MF_EFORMAT);
        }
        rc = p->sink.data(p->sink.context, address, data, length, p->line);
        break;
    case 5:
    case 6:
        if (length != 0) {
            mf_image_error_line(err, p->line, "S%u count record holds %u unexpected data bytes",
                                type, length);
            return srec_fail(p, MF_EFORMAT);
        }
        if (address != p->data_records) {
            mf_image_error_line(err, p->line,
                                "record count mismatch (S%u says %llu, the file has %llu data "
                                "records before it)",
                                type, (unsigned long long)address,
                                (unsigned long long)p->data_records);
            return srec_fail(p, MF_EFORMAT);
        }
        p->counted = true;
        return 0;
    default: /* 7, 8, 9: termination with the start address */
        if (length != 0) {
            mf_image_error_line(err, p->line,
                                "S%u termination record holds %u unexpected data bytes", type,
                                length);
            return srec_fail(p, MF_EFORMAT);
        }
        p->state = SREC_DONE;
        if (p->sink.start)
            rc = p->sink.start(p->sink.context, address);
        break;
    }
    if (rc)
        return srec_fail(p, mf_image_error_sink(err, p->line, 0, rc));
    return 0;
}

/* Checks the digit after 'S'. */
static int srec_type(struct mf_srec_parser *p, uint8_t c, struct mf_image_error *err)
{
    char what[8];
    if (c < '0' || c > '9') {
        mf_image_error_line(err, p->line, "bad record type %s after 'S' (S0-S9 expected)",
                            mf_image_describe_byte(c, what));
        return srec_fail(p, MF_EFORMAT);
    }
    if (c == '4') {
        mf_image_error_line(err, p->line, "record type S4 is reserved");
        return srec_fail(p, MF_EFORMAT);
    }
    p->type = (uint8_t)(c - '0');
    return 0;
}

/* A character ended the digits of an unfinished record. */
static int srec_record_cut(struct mf_srec_parser *p, uint8_t c, struct mf_image_error *err)
{
    char what[8];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
        mf_image_error_line(err, p->line, "bad hex digit %s", mf_image_describe_byte(c, what));
    else if (p->have_nibble)
        mf_image_error_line(err, p->line, "odd number of hex digits");
    else if (p->count == 0)
        mf_image_error_line(err, p->line, "record too short (no count byte)");
    else
        mf_image_error_line(err, p->line,
                            "short record (count field says %u bytes, the line holds %u)",
                            (unsigned)(p->need - 1), (unsigned)(p->count - 1));
    return srec_fail(p, MF_EFORMAT);
}

/* Characters outside records: line ends, blanks; anything else is an error. */
static int srec_between(struct mf_srec_parser *p, uint8_t c, struct mf_image_error *err)
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
    if (c == 'S' && p->state == SREC_DONE)
        mf_image_error_line(err, p->line, "record after the termination record (S%u)",
                            (unsigned)p->type);
    else if (p->line_has_record && !(mf_image_hex_value[c] & 0x10))
        mf_image_error_line(err, p->line, "record longer than its count field (%u bytes)",
                            (unsigned)p->record[0]);
    else if (c == 'S')
        mf_image_error_line(err, p->line, "second record on one line");
    else
        mf_image_error_line(
            err, p->line, "unexpected character %s %s", mf_image_describe_byte(c, what),
            p->state == SREC_DONE ? "after the termination record" : "outside a record");
    return srec_fail(p, MF_EFORMAT);
}

/* Decodes a whole record from `s` (at its 'S') when all of it is in the chunk and it is well
 * formed up to the checksum. Returns the characters used, or 0 to leave it to the slow path. */
static size_t srec_try_fast(struct mf_srec_parser *p, const uint8_t *s, size_t avail,
                            uint8_t *sum_out)
{
    if (avail < SREC_MIN_CHARS || s[1] < '0' || s[1] > '9' || s[1] == '4')
        return 0;
    const uint8_t *hex = mf_image_hex_value;
    uint8_t hi = hex[s[2]], lo = hex[s[3]];
    if ((hi | lo) & 0x10)
        return 0;
    unsigned bytes = ((unsigned)hi << 4 | lo) + 1u;
    size_t chars = 2 + 2 * (size_t)bytes;
    if (avail < chars)
        return 0;
    const uint8_t *d = s + 2;
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
    p->type = (uint8_t)(s[1] - '0');
    *sum_out = sum;
    return chars;
}

int mf_srec_feed(struct mf_srec_parser *parser, const void *chunk, size_t length,
                 struct mf_image_error *err)
{
    struct mf_srec_parser *p = parser;
    if (p->error)
        return p->error;
    mf_image_error_clear(err);
    const uint8_t *s = chunk;
    const uint8_t *end = s + length;
    while (s < end) {
        uint8_t c = *s;
        if (p->state == SREC_RECORD) {
            uint8_t v = mf_image_hex_value[c];
            if (v & 0x10)
                return srec_record_cut(p, c, err);
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
                p->need = (uint16_t)(b + 1u);
            if (p->count == p->need) {
                uint8_t sum = 0;
                for (unsigned i = 0; i < p->count; i++)
                    sum = (uint8_t)(sum + p->record[i]);
                p->state = SREC_LINE;
                p->line_has_record = true;
                int rc = srec_record(p, p->record, sum, err);
                if (rc)
                    return rc;
            }
            continue;
        }
        if (p->state == SREC_TYPE) {
            s++;
            int rc = srec_type(p, c, err);
            if (rc)
                return rc;
            p->state = SREC_RECORD;
            p->count = 0;
            p->need = 0;
            p->have_nibble = false;
            continue;
        }
        if (c == 'S' && p->state == SREC_LINE && !p->line_has_record) {
            uint8_t sum;
            size_t used = srec_try_fast(p, s, (size_t)(end - s), &sum);
            p->prev_cr = false;
            if (used) {
                s += used;
                p->line_has_record = true;
                int rc = srec_record(p, p->record, sum, err);
                if (rc)
                    return rc;
                continue;
            }
            s++;
            p->state = SREC_TYPE;
            continue;
        }
        s++;
        int rc = srec_between(p, c, err);
        if (rc)
            return rc;
    }
    return 0;
}

int mf_srec_finish(struct mf_srec_parser *parser, struct mf_image_error *err)
{
    struct mf_srec_parser *p = parser;
    if (p->error)
        return p->error;
    mf_image_error_clear(err);
    if (p->state == SREC_TYPE || p->state == SREC_RECORD) {
        mf_image_error_line(err, p->line, "file ends inside a record");
        return srec_fail(p, MF_EFORMAT);
    }
    if (p->state != SREC_DONE && !p->counted) {
        mf_image_error_line(err, p->line,
                            "no termination record (S7-S9) or record count (S5/S6) after the last "
                            "data record: the file may be truncated");
        return srec_fail(p, MF_EFORMAT);
    }
    return 0;
}

/* Writer. */

static const char srec_digits[] = "0123456789ABCDEF";

static char *srec_put_byte(char *o, uint8_t b, uint8_t *sum)
{
    o[0] = srec_digits[b >> 4];
    o[1] = srec_digits[b & 0x0F];
    *sum = (uint8_t)(*sum + b);
    return o + 2;
}

static int srec_write_record(mf_image_write_fn write, void *context, unsigned type,
                             uint64_t address, const uint8_t *data, unsigned length)
{
    char line[2 + 2 * MF_SREC_RECORD_MAX + 1];
    unsigned address_bytes = srec_address_bytes[type];
    char *o = line;
    uint8_t sum = 0;
    *o++ = 'S';
    *o++ = (char)('0' + type);
    o = srec_put_byte(o, (uint8_t)(address_bytes + length + 1), &sum);
    for (unsigned i = address_bytes; i-- > 0;)
        o = srec_put_byte(o, (uint8_t)(address >> (8 * i)), &sum);
    for (unsigned i = 0; i < length; i++)
        o = srec_put_byte(o, data[i], &sum);
    uint8_t unused = 0;
    o = srec_put_byte(o, (uint8_t)~sum, &unused);
    *o++ = '\n';
    return write(context, line, (size_t)(o - line));
}

int mf_srec_write(const struct mf_image *image, unsigned record_size, mf_image_write_fn write,
                  void *context, struct mf_image_error *err)
{
    mf_image_error_clear(err);
    size_t count;
    const struct mf_image_segment *segments = mf_image_segments(image, &count);
    uint64_t highest = 0;
    if (count)
        highest = segments[count - 1].address + segments[count - 1].size - 1;
    if (highest >= SREC_ADDRESS_LIMIT) {
        mf_image_error_set(err, "data up to 0x%llX lies beyond 4 GiB: S-records cannot hold it",
                           (unsigned long long)highest);
        return MF_ERANGE;
    }
    uint64_t start = 0;
    if (!mf_image_start(image, &start) || start > 0xFFFFFFFFu)
        start = 0; /* an ELF64 entry beyond 4 GiB has no place in an S-record */
    uint64_t widest = start > highest ? start : highest;
    unsigned data_type = widest <= 0xFFFFu ? 1 : widest <= 0xFFFFFFu ? 2 : 3;
    unsigned max_data = 255u - srec_address_bytes[data_type] - 1u;
    if (record_size == 0)
        record_size = 16;
    if (record_size > max_data)
        record_size = max_data;

    int rc = srec_write_record(write, context, 0, 0, NULL, 0);
    uint64_t records = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        uint64_t address = segments[i].address;
        const uint8_t *data = segments[i].data;
        uint64_t left = segments[i].size;
        while (left && !rc) {
            unsigned n = left < record_size ? (unsigned)left : record_size;
            rc = srec_write_record(write, context, data_type, address, data, n);
            records++;
            address += n;
            data += n;
            left -= n;
        }
    }
    if (!rc && records <= 0xFFFFu)
        rc = srec_write_record(write, context, 5, records, NULL, 0);
    else if (!rc && records <= 0xFFFFFFu)
        rc = srec_write_record(write, context, 6, records, NULL, 0);
    if (!rc)
        rc = srec_write_record(write, context, 10 - data_type, start, NULL, 0);
    return rc;
}
