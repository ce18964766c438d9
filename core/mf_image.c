/* Sparse firmware image: loading (format detection, parser glue), the overlap rules, queries and
 * the raw binary writer. While loading, record bytes are appended to one arena and described by
 * "pieces" in load order (runs of records adjacent in both address and file merge into one);
 * mf_image_finish sorts the pieces once and builds the segments, so that unordered input costs
 * O(n log n) instead of an insertion per record. */
#include "mf_image.h"

#include "mf_crc32.h"
#include "mf_elf.h"
#include "mf_err.h"
#include "mf_ihex.h"
#include "mf_srec.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGE_LOAD_CHUNK     (64u * 1024u) /* read size while loading */
#define IMAGE_ARENA_INITIAL  (64u * 1024u)
#define IMAGE_PIECES_INITIAL 64u

struct mf_image_piece {
    uint64_t address;
    uint64_t length;
    uint64_t arena_offset;
    uint64_t first_where; /* line (text formats) or file offset of the first byte */
    uint64_t last_where;  /* line of the last record merged in (text formats) */
    uint32_t source;
};

const uint8_t mf_image_hex_value[256] = {
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
};

/* Error reports. */

void mf_image_error_clear(struct mf_image_error *err)
{
    if (!err)
        return;
    err->line = 0;
    err->offset = 0;
    err->text[0] = '\0';
}

static void image_error_vformat(struct mf_image_error *err, const char *prefix, const char *fmt,
                                va_list ap) __attribute__((format(printf, 3, 0)));

static void image_error_vformat(struct mf_image_error *err, const char *prefix, const char *fmt,
                                va_list ap)
{
    size_t used = (size_t)snprintf(err->text, sizeof err->text, "%s", prefix);
    if (used >= sizeof err->text)
        return;
    vsnprintf(err->text + used, sizeof err->text - used, fmt, ap);
}

void mf_image_error_set(struct mf_image_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    err->line = 0;
    err->offset = 0;
    image_error_vformat(err, "", fmt, ap);
    va_end(ap);
}

void mf_image_error_line(struct mf_image_error *err, uint64_t line, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[40];
    snprintf(prefix, sizeof prefix, "line %llu: ", (unsigned long long)line);
    va_list ap;
    va_start(ap, fmt);
    err->line = line;
    err->offset = 0;
    image_error_vformat(err, prefix, fmt, ap);
    va_end(ap);
}

void mf_image_error_offset(struct mf_image_error *err, uint64_t offset, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[40];
    snprintf(prefix, sizeof prefix, "offset 0x%llX: ", (unsigned long long)offset);
    va_list ap;
    va_start(ap, fmt);
    err->line = 0;
    err->offset = offset;
    image_error_vformat(err, prefix, fmt, ap);
    va_end(ap);
}

/* Puts `a` and `b` in front of the text, cutting the end when it gets too long. */
static void image_error_prefix(struct mf_image_error *err, const char *a, const char *b)
{
    size_t size = sizeof err->text;
    size_t la = strlen(a), lb = strlen(b);
    if (la > size - 1)
        la = size - 1;
    if (lb > size - 1 - la)
        lb = size - 1 - la;
    size_t keep = strlen(err->text);
    if (keep > size - 1 - la - lb)
        keep = size - 1 - la - lb;
    memmove(err->text + la + lb, err->text, keep);
    memcpy(err->text, a, la);
    memcpy(err->text + la, b, lb);
    err->text[la + lb + keep] = '\0';
}

int mf_image_error_sink(struct mf_image_error *err, uint64_t line, uint64_t offset, int code)
{
    if (!err)
        return code;
    if (!err->text[0])
        snprintf(err->text, sizeof err->text, "%s", mf_strerror(code));
    char prefix[40];
    if (line)
        snprintf(prefix, sizeof prefix, "line %llu", (unsigned long long)line);
    else
        snprintf(prefix, sizeof prefix, "offset 0x%llX", (unsigned long long)offset);
    err->line = line;
    err->offset = line ? 0 : offset;
    image_error_prefix(err, prefix, ": ");
    return code;
}

const char *mf_image_describe_byte(uint8_t byte, char buffer[8])
{
    if (byte > 0x20 && byte < 0x7F)
        snprintf(buffer, 8, "'%c'", (char)byte);
    else
        snprintf(buffer, 8, "0x%02X", (unsigned)byte);
    return buffer;
}

/* Names. */

static const struct {
    enum mf_image_format format;
    const char *name;
    const char *title;
} image_formats[] = {
    {MF_IMAGE_FORMAT_AUTO, "auto", "detected format"},
    {MF_IMAGE_FORMAT_BIN, "bin", "raw binary"},
    {MF_IMAGE_FORMAT_IHEX, "ihex", "Intel HEX"},
    {MF_IMAGE_FORMAT_SREC, "srec", "Motorola S-record"},
    {MF_IMAGE_FORMAT_ELF, "elf", "ELF"},
};

static const struct {
    const char *alias;
    enum mf_image_format format;
} image_format_aliases[] = {
    {"binary", MF_IMAGE_FORMAT_BIN}, {"hex", MF_IMAGE_FORMAT_IHEX}, {"s19", MF_IMAGE_FORMAT_SREC},
    {"s28", MF_IMAGE_FORMAT_SREC},   {"s37", MF_IMAGE_FORMAT_SREC}, {"mot", MF_IMAGE_FORMAT_SREC},
};

#define IMAGE_COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *mf_image_format_name(enum mf_image_format format)
{
    for (size_t i = 0; i < IMAGE_COUNT(image_formats); i++) {
        if (image_formats[i].format == format)
            return image_formats[i].name;
    }
    return "unknown";
}

const char *mf_image_format_title(enum mf_image_format format)
{
    for (size_t i = 0; i < IMAGE_COUNT(image_formats); i++) {
        if (image_formats[i].format == format)
            return image_formats[i].title;
    }
    return "unknown format";
}

int mf_image_format_parse(const char *name, enum mf_image_format *format)
{
    if (!name)
        return MF_EINVAL;
    for (size_t i = 0; i < IMAGE_COUNT(image_formats); i++) {
        if (strcmp(name, image_formats[i].name) == 0) {
            *format = image_formats[i].format;
            return 0;
        }
    }
    for (size_t i = 0; i < IMAGE_COUNT(image_format_aliases); i++) {
        if (strcmp(name, image_format_aliases[i].alias) == 0) {
            *format = image_format_aliases[i].format;
            return 0;
        }
    }
    return MF_EINVAL;
}

/* Detection. */

static bool image_blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The rest of the first line from `p` holds at least `min` hex digits and nothing else (the
 * head may end inside the line). */
static bool image_hex_line(const uint8_t *p, size_t length, size_t min)
{
    size_t digits = 0;
    while (digits < length && !(mf_image_hex_value[p[digits]] & 0x10))
        digits++;
    if (digits < length && !image_blank(p[digits]))
        return false;
    return digits >= min || digits == length;
}

enum mf_image_format mf_image_detect(const void *head, size_t length)
{
    const uint8_t *p = head;
    if (length >= 4 && memcmp(p, "\177ELF", 4) == 0)
        return MF_IMAGE_FORMAT_ELF;
    for (size_t i = 0; i < length; i++) {
        if ((p[i] < 0x20 || p[i] > 0x7E) && !image_blank(p[i]))
            return MF_IMAGE_FORMAT_BIN;
    }
    size_t i = 0;
    while (i < length && image_blank(p[i]))
        i++;
    if (i + 1 < length && p[i] == ':' && image_hex_line(p + i + 1, length - i - 1, 10))
        return MF_IMAGE_FORMAT_IHEX;
    if (i + 2 < length && p[i] == 'S' && p[i + 1] >= '0' && p[i + 1] <= '9' &&
        image_hex_line(p + i + 2, length - i - 2, 6))
        return MF_IMAGE_FORMAT_SREC;
    return MF_IMAGE_FORMAT_BIN;
}

/* Life cycle. */

void mf_image_init(struct mf_image *image, const struct mf_image_config *config)
{
    assert(image);
    memset(image, 0, sizeof *image);
    if (config)
        image->config = *config;
    if (image->config.max_bytes == 0)
        image->config.max_bytes = MF_IMAGE_DEFAULT_MAX_BYTES;
    if (image->config.max_bytes > SIZE_MAX / 2)
        image->config.max_bytes = SIZE_MAX / 2;
    if (image->config.max_pieces == 0)
        image->config.max_pieces = MF_IMAGE_DEFAULT_MAX_PIECES;
    if (image->config.max_pieces > UINT32_MAX)
        image->config.max_pieces = UINT32_MAX;
    if (image->config.max_pieces > SIZE_MAX / sizeof(struct mf_image_piece))
        image->config.max_pieces = SIZE_MAX / sizeof(struct mf_image_piece);
}

void mf_image_free(struct mf_image *image)
{
    if (!image)
        return;
    for (uint32_t i = 0; i < image->source_count; i++)
        free(image->source_names[i]);
    free(image->source_names);
    free(image->source_formats);
    free(image->pieces);
    free(image->arena);
    free(image->segments);
    free(image->data);
    struct mf_image_config config = image->config;
    memset(image, 0, sizeof *image);
    image->config = config;
}

int mf_image_add_source(struct mf_image *image, const char *name, enum mf_image_format format,
                        uint32_t *source, struct mf_image_error *err)
{
    if (image->finished || format == MF_IMAGE_FORMAT_AUTO) {
        mf_image_error_set(err, "cannot add a file to this image");
        return MF_EINVAL;
    }
    if (image->source_count >= MF_IMAGE_MAX_SOURCES) {
        mf_image_error_set(err, "more than %u files in one image", MF_IMAGE_MAX_SOURCES);
        return MF_EINVAL;
    }
    if (image->source_count == image->source_capacity) {
        uint32_t capacity = image->source_capacity ? image->source_capacity * 2 : 4;
        char **names = realloc(image->source_names, capacity * sizeof *names);
        if (!names)
            goto nomem;
        image->source_names = names;
        enum mf_image_format *formats = realloc(image->source_formats, capacity * sizeof *formats);
        if (!formats)
            goto nomem;
        image->source_formats = formats;
        image->source_capacity = capacity;
    }
    if (!name)
        name = "(unnamed)";
    size_t length = strlen(name);
    if (length > MF_IMAGE_SOURCE_NAME_MAX)
        length = MF_IMAGE_SOURCE_NAME_MAX;
    char *copy = malloc(length + 1);
    if (!copy)
        goto nomem;
    memcpy(copy, name, length);
    copy[length] = '\0';
    image->source_names[image->source_count] = copy;
    image->source_formats[image->source_count] = format;
    *source = image->source_count++;
    return 0;
nomem:
    mf_image_error_set(err, "out of memory");
    return MF_ENOMEM;
}

static bool image_source_has_lines(const struct mf_image *image, uint32_t source)
{
    enum mf_image_format f = image->source_formats[source];
    return f == MF_IMAGE_FORMAT_IHEX || f == MF_IMAGE_FORMAT_SREC;
}

static int image_grow_arena(struct mf_image *image, size_t need, struct mf_image_error *err)
{
    size_t capacity = image->arena_capacity ? image->arena_capacity : IMAGE_ARENA_INITIAL;
    while (capacity < need)
        capacity *= 2;
    if (capacity > image->config.max_bytes)
        capacity = (size_t)image->config.max_bytes;
    uint8_t *arena = realloc(image->arena, capacity);
    if (!arena) {
        mf_image_error_set(err, "out of memory (%zu bytes of data)", need);
        return MF_ENOMEM;
    }
    image->arena = arena;
    image->arena_capacity = capacity;
    return 0;
}

int mf_image_add(struct mf_image *image, uint32_t source, uint64_t address, const uint8_t *bytes,
                 size_t length, uint64_t where, struct mf_image_error *err)
{
    if (image->finished || source >= image->source_count) {
        mf_image_error_set(err, "cannot add data to this image");
        return MF_EINVAL;
    }
    if (length == 0)
        return 0;
    if (address > UINT64_MAX - length) {
        mf_image_error_set(err,
                           "data at 0x%llX (%zu bytes) passes the end of the 64-bit address "
                           "space",
                           (unsigned long long)address, length);
        return MF_ERANGE;
    }
    if (length > image->config.max_bytes - image->arena_size) {
        mf_image_error_set(err, "image larger than the limit of %llu bytes",
                           (unsigned long long)image->config.max_bytes);
        return MF_EFBIG;
    }
    if (image->arena_size + length > image->arena_capacity) {
        int rc = image_grow_arena(image, image->arena_size + length, err);
        if (rc)
            return rc;
    }
    struct mf_image_piece *last =
        image->piece_count ? &image->pieces[image->piece_count - 1] : NULL;
    if (last && last->source == source && last->address + last->length == address &&
        (image_source_has_lines(image, source) ? where >= last->last_where
                                               : where == last->first_where + last->length)) {
        last->length += length;
        last->last_where = where;
    } else {
        if (image->piece_count >= image->config.max_pieces) {
            mf_image_error_set(err,
                               "more than %llu separate runs of data (records not adjacent to "
                               "the one before them)",
                               (unsigned long long)image->config.max_pieces);
            return MF_EFBIG;
        }
        if (image->piece_count == image->piece_capacity) {
            size_t capacity =
                image->piece_capacity ? image->piece_capacity * 2 : IMAGE_PIECES_INITIAL;
            if (capacity > image->config.max_pieces)
                capacity = (size_t)image->config.max_pieces;
            struct mf_image_piece *pieces = realloc(image->pieces, capacity * sizeof *pieces);
            if (!pieces) {
                mf_image_error_set(err, "out of memory");
                return MF_ENOMEM;
            }
            image->pieces = pieces;
            image->piece_capacity = capacity;
        }
        last = &image->pieces[image->piece_count++];
        last->address = address;
        last->length = length;
        last->arena_offset = image->arena_size;
        last->first_where = where;
        last->last_where = where;
        last->source = source;
    }
    memcpy(image->arena + image->arena_size, bytes, length);
    image->arena_size += length;
    return 0;
}

void mf_image_set_start(struct mf_image *image, uint64_t address)
{
    if (image->has_start)
        return;
    image->has_start = true;
    image->start = address;
}

/* Loading whole files. */

struct image_load {
    struct mf_image *image;
    uint32_t source;
    struct mf_image_error *err;
};

static int image_load_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                           uint64_t where)
{
    struct image_load *l = context;
    return mf_image_add(l->image, l->source, address, bytes, length, where, l->err);
}

static int image_load_start(void *context, uint64_t address)
{
    struct image_load *l = context;
    mf_image_set_start(l->image, address);
    return 0;
}

static int image_load_text(struct image_load *l, enum mf_image_format format, mf_image_read_fn read,
                           void *context, uint64_t size, uint8_t *buffer)
{
    struct mf_image_sink sink = {image_load_data, image_load_start, l};
    struct mf_ihex_parser ihex;
    struct mf_srec_parser srec;
    if (format == MF_IMAGE_FORMAT_IHEX)
        mf_ihex_init(&ihex, &sink);
    else
        mf_srec_init(&srec, &sink);
    for (uint64_t offset = 0; offset < size;) {
        size_t n = size - offset < IMAGE_LOAD_CHUNK ? (size_t)(size - offset) : IMAGE_LOAD_CHUNK;
        int rc = read(context, offset, buffer, n);
        if (rc) {
            mf_image_error_offset(l->err, offset, "cannot read: %s", mf_strerror(rc));
            return rc;
        }
        rc = format == MF_IMAGE_FORMAT_IHEX ? mf_ihex_feed(&ihex, buffer, n, l->err)
                                            : mf_srec_feed(&srec, buffer, n, l->err);
        if (rc)
            return rc;
        offset += n;
    }
    return format == MF_IMAGE_FORMAT_IHEX ? mf_ihex_finish(&ihex, l->err)
                                          : mf_srec_finish(&srec, l->err);
}

static int image_load_bin(struct image_load *l, uint64_t base, mf_image_read_fn read, void *context,
                          uint64_t size, uint8_t *buffer)
{
    if (size && base > UINT64_MAX - size) {
        mf_image_error_set(l->err, "%llu bytes at 0x%llX pass the end of the 64-bit address space",
                           (unsigned long long)size, (unsigned long long)base);
        return MF_ERANGE;
    }
    for (uint64_t offset = 0; offset < size;) {
        size_t n = size - offset < IMAGE_LOAD_CHUNK ? (size_t)(size - offset) : IMAGE_LOAD_CHUNK;
        int rc = read(context, offset, buffer, n);
        if (rc) {
            mf_image_error_offset(l->err, offset, "cannot read: %s", mf_strerror(rc));
            return rc;
        }
        rc = mf_image_add(l->image, l->source, base + offset, buffer, n, offset, l->err);
        if (rc)
            return mf_image_error_sink(l->err, 0, offset, rc);
        offset += n;
    }
    return 0;
}

int mf_image_load(struct mf_image *image, const char *name, enum mf_image_format format,
                  uint64_t base, mf_image_read_fn read, void *context, uint64_t size,
                  struct mf_image_error *err)
{
    struct mf_image_error local;
    if (!err)
        err = &local;
    mf_image_error_clear(err);
    if (!name)
        name = "(unnamed)";
    int rc = 0;
    uint8_t *buffer = malloc(IMAGE_LOAD_CHUNK);
    if (!buffer) {
        mf_image_error_set(err, "out of memory");
        rc = MF_ENOMEM;
        goto out;
    }
    if (format == MF_IMAGE_FORMAT_AUTO) {
        size_t n = size < MF_IMAGE_DETECT_BYTES ? (size_t)size : MF_IMAGE_DETECT_BYTES;
        rc = n ? read(context, 0, buffer, n) : 0;
        if (rc) {
            mf_image_error_offset(err, 0, "cannot read: %s", mf_strerror(rc));
            goto out;
        }
        format = mf_image_detect(buffer, n);
    }
    if (base != 0 && format != MF_IMAGE_FORMAT_BIN) {
        mf_image_error_set(err, "a base address applies to raw binary input only (this is %s)",
                           mf_image_format_title(format));
        rc = MF_EINVAL;
        goto out;
    }
    struct image_load l = {image, 0, err};
    rc = mf_image_add_source(image, name, format, &l.source, err);
    if (rc)
        goto out;
    switch (format) {
    case MF_IMAGE_FORMAT_BIN:
        rc = image_load_bin(&l, base, read, context, size, buffer);
        break;
    case MF_IMAGE_FORMAT_IHEX:
    case MF_IMAGE_FORMAT_SREC:
        rc = image_load_text(&l, format, read, context, size, buffer);
        break;
    case MF_IMAGE_FORMAT_ELF: {
        struct mf_image_sink sink = {image_load_data, image_load_start, &l};
        rc = mf_elf_load(read, context, size, &sink, err);
        break;
    }
    default:
        mf_image_error_set(err, "unknown format");
        rc = MF_EINVAL;
        break;
    }
out:
    free(buffer);
    if (rc) {
        if (!err->text[0])
            mf_image_error_set(err, "%s", mf_strerror(rc));
        image_error_prefix(err, name, ": ");
    }
    return rc;
}

/* Finishing: sort, overlaps, segments. */

static bool piece_before(const struct mf_image_piece *pieces, uint32_t a, uint32_t b)
{
    if (pieces[a].address != pieces[b].address)
        return pieces[a].address < pieces[b].address;
    return a < b; /* same address: load order */
}

/* Heapsort of piece indices by (address, load order): O(n log n), no recursion. */
static void image_sort(const struct mf_image_piece *pieces, uint32_t *order, size_t n)
{
    for (size_t start = n / 2; start-- > 0;) {
        size_t root = start;
        while (2 * root + 1 < n) {
            size_t child = 2 * root + 1;
            if (child + 1 < n && piece_before(pieces, order[child], order[child + 1]))
                child++;
            if (!piece_before(pieces, order[root], order[child]))
                break;
            uint32_t t = order[root];
            order[root] = order[child];
            order[child] = t;
            root = child;
        }
    }
    for (size_t end = n; end > 1;) {
        end--;
        uint32_t t = order[0];
        order[0] = order[end];
        order[end] = t;
        size_t root = 0;
        while (2 * root + 1 < end) {
            size_t child = 2 * root + 1;
            if (child + 1 < end && piece_before(pieces, order[child], order[child + 1]))
                child++;
            if (!piece_before(pieces, order[root], order[child]))
                break;
            t = order[root];
            order[root] = order[child];
            order[child] = t;
            root = child;
        }
    }
}

/* "fw.hex line 7", "fw.hex lines 3-40" or "fw.elf offset 0x1F0", for the byte at `address`. */
static void image_describe_piece(const struct mf_image *image, const struct mf_image_piece *p,
                                 uint64_t address, char *out, size_t size)
{
    const char *name = image->source_names[p->source];
    if (!image_source_has_lines(image, p->source))
        snprintf(out, size, "%s offset 0x%llX", name,
                 (unsigned long long)(p->first_where + (address - p->address)));
    else if (p->first_where == p->last_where)
        snprintf(out, size, "%s line %llu", name, (unsigned long long)p->first_where);
    else
        snprintf(out, size, "%s lines %llu-%llu", name, (unsigned long long)p->first_where,
                 (unsigned long long)p->last_where);
}

static int image_overlap_error(const struct mf_image *image, uint32_t a, uint32_t b, uint64_t start,
                               uint64_t end, struct mf_image_error *err)
{
    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    char first[MF_IMAGE_SOURCE_NAME_MAX + 48], second[MF_IMAGE_SOURCE_NAME_MAX + 48];
    image_describe_piece(image, &image->pieces[a], start, first, sizeof first);
    image_describe_piece(image, &image->pieces[b], start, second, sizeof second);
    mf_image_error_set(err, "overlapping data at 0x%08llX-0x%08llX: %s and %s",
                       (unsigned long long)start, (unsigned long long)(end - 1), first, second);
    return MF_ECONFLICT;
}

/* Segment holding `address` (which a segment is known to hold). */
static size_t image_find_segment(const struct mf_image *image, uint64_t address)
{
    size_t lo = 0, hi = image->segment_count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (image->segments[mid].address <= address)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int mf_image_finish(struct mf_image *image, struct mf_image_error *err)
{
    assert(!image->finished);
    mf_image_error_clear(err);
    size_t n = image->piece_count;
    const struct mf_image_piece *pieces = image->pieces;
    uint32_t *order = NULL;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = pieces[i].address >= pieces[i - 1].address;
    if (!sorted) {
        order = malloc(n * sizeof *order);
        if (!order)
            goto nomem;
        for (size_t i = 0; i < n; i++)
            order[i] = (uint32_t)i;
        image_sort(pieces, order, n);
    }

    /* Pass 1: count the segments (maximal runs of touching or overlapping pieces) and find
     * overlaps; `cover` is the piece that reaches furthest so far. */
    size_t segment_count = 0;
    bool overlap = false;
    uint64_t end = 0;
    uint32_t cover = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = order ? order[k] : (uint32_t)k;
        const struct mf_image_piece *p = &pieces[i];
        uint64_t p_end = p->address + p->length;
        if (k == 0 || p->address > end) {
            segment_count++;
            end = p_end;
            cover = i;
            continue;
        }
        if (p->address < end) {
            overlap = true;
            if (image->config.overlap == MF_IMAGE_OVERLAP_ERROR) {
                int rc = image_overlap_error(image, cover, i, p->address, p_end < end ? p_end : end,
                                             err);
                free(order);
                return rc;
            }
        }
        if (p_end > end) {
            end = p_end;
            cover = i;
        }
    }

    if (sorted && !overlap && image->arena_capacity > image->arena_size && image->arena_size) {
        /* The arena becomes the image's data: give back what doubling left unused. */
        uint8_t *shrunk = realloc(image->arena, image->arena_size);
        if (shrunk) {
            image->arena = shrunk;
            image->arena_capacity = image->arena_size;
        }
    }
    struct mf_image_segment *segments = NULL;
    if (segment_count) {
        segments = malloc(segment_count * sizeof *segments);
        if (!segments)
            goto nomem;
    }
    /* Pass 2: segment bounds. */
    size_t s = 0;
    uint64_t total = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = order ? order[k] : (uint32_t)k;
        const struct mf_image_piece *p = &pieces[i];
        uint64_t p_end = p->address + p->length;
        if (k == 0 || p->address > segments[s - 1].address + segments[s - 1].size) {
            segments[s].address = p->address;
            segments[s].size = p->length;
            /* In the sorted, overlap-free case the arena already holds the bytes in address
             * order, so segments can point into it. */
            segments[s].data = image->arena + p->arena_offset;
            s++;
        } else if (p_end > segments[s - 1].address + segments[s - 1].size) {
            segments[s - 1].size = p_end - segments[s - 1].address;
        }
    }
    for (size_t i = 0; i < segment_count; i++)
        total += segments[i].size;

    if (sorted && !overlap) {
        image->data = image->arena;
    } else {
        uint8_t *data = total ? malloc((size_t)total) : NULL;
        if (total && !data) {
            free(segments);
            goto nomem;
        }
        uint64_t at = 0;
        for (size_t i = 0; i < segment_count; i++) {
            segments[i].data = data + at;
            at += segments[i].size;
        }
        image->segments = segments;
        image->segment_count = segment_count;
        /* Copy in load order, so that later data lands on top (last wins), or in reverse. */
        bool reverse = image->config.overlap == MF_IMAGE_OVERLAP_FIRST_WINS;
        for (size_t k = 0; k < n; k++) {
            const struct mf_image_piece *p = &pieces[reverse ? n - 1 - k : k];
            const struct mf_image_segment *seg = &segments[image_find_segment(image, p->address)];
            memcpy(data + (seg->data - data) + (p->address - seg->address),
                   image->arena + p->arena_offset, (size_t)p->length);
        }
        image->data = data;
        free(image->arena);
    }
    image->arena = NULL;
    image->arena_size = image->arena_capacity = 0;
    image->segments = segments;
    image->segment_count = segment_count;
    image->size = total;
    free(order);
    free(image->pieces);
    image->pieces = NULL;
    image->piece_count = image->piece_capacity = 0;
    image->finished = true;
    return 0;
nomem:
    free(order);
    mf_image_error_set(err, "out of memory");
    return MF_ENOMEM;
}

/* Queries. */

const struct mf_image_segment *mf_image_segments(const struct mf_image *image, size_t *count)
{
    assert(image->finished);
    *count = image->segment_count;
    return image->segments;
}

uint64_t mf_image_size(const struct mf_image *image)
{
    assert(image->finished);
    return image->size;
}

void mf_image_span(const struct mf_image *image, uint64_t *low, uint64_t *end)
{
    assert(image->finished);
    if (image->segment_count == 0) {
        *low = *end = 0;
        return;
    }
    const struct mf_image_segment *last = &image->segments[image->segment_count - 1];
    *low = image->segments[0].address;
    *end = last->address + last->size;
}

bool mf_image_start(const struct mf_image *image, uint64_t *address)
{
    if (image->has_start)
        *address = image->start;
    return image->has_start;
}

uint32_t mf_image_crc32(const struct mf_image *image)
{
    assert(image->finished);
    uint32_t crc = 0;
    for (size_t i = 0; i < image->segment_count; i++)
        crc = mf_crc32_update(crc, image->segments[i].data, (size_t)image->segments[i].size);
    return crc;
}

int mf_image_read(const struct mf_image *image, uint64_t address, void *buffer, size_t length,
                  uint8_t fill)
{
    assert(image->finished);
    if (length == 0)
        return 0;
    if (address > UINT64_MAX - length)
        return MF_ERANGE;
    uint8_t *out = buffer;
    uint64_t end = address + length;
    memset(out, fill, length);
    if (image->segment_count == 0)
        return 0;
    size_t i = image_find_segment(image, address);
    for (; i < image->segment_count; i++) {
        const struct mf_image_segment *seg = &image->segments[i];
        if (seg->address >= end)
            break;
        uint64_t seg_end = seg->address + seg->size;
        if (seg_end <= address)
            continue;
        uint64_t from = seg->address > address ? seg->address : address;
        uint64_t to = seg_end < end ? seg_end : end;
        memcpy(out + (from - address), seg->data + (from - seg->address), (size_t)(to - from));
    }
    return 0;
}

int mf_image_write_bin(const struct mf_image *image, uint8_t fill, mf_image_write_fn write,
                       void *context)
{
    assert(image->finished);
    uint8_t gap[4096];
    memset(gap, fill, sizeof gap);
    for (size_t i = 0; i < image->segment_count; i++) {
        const struct mf_image_segment *seg = &image->segments[i];
        if (i > 0) {
            const struct mf_image_segment *prev = &image->segments[i - 1];
            for (uint64_t left = seg->address - (prev->address + prev->size); left;) {
                size_t n = left < sizeof gap ? (size_t)left : sizeof gap;
                int rc = write(context, gap, n);
                if (rc)
                    return rc;
                left -= n;
            }
        }
        for (uint64_t done = 0; done < seg->size;) {
            uint64_t left = seg->size - done;
            size_t n = left < 65536u ? (size_t)left : 65536u;
            int rc = write(context, seg->data + done, n);
            if (rc)
                return rc;
            done += n;
        }
    }
    return 0;
}
