/* Firmware images: the sparse memory contents that data files (Intel HEX, S-record, ELF, raw
 * binary) describe, kept as address-ordered segments, and the types the format parsers share
 * (record sink, read-at callback, error report). Built once when a job is loaded; allocates. */
#ifndef MF_IMAGE_H
#define MF_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mf_image_format {
    MF_IMAGE_FORMAT_AUTO = 0, /* detect from the content (mf_image_detect) */
    MF_IMAGE_FORMAT_BIN,      /* raw bytes placed at a base address */
    MF_IMAGE_FORMAT_IHEX,     /* Intel HEX */
    MF_IMAGE_FORMAT_SREC,     /* Motorola S-record */
    MF_IMAGE_FORMAT_ELF,      /* ELF32/ELF64, PT_LOAD file bytes at p_paddr */
};

/* What to do when two records (of one file or of several) hold data for the same address. */
enum mf_image_overlap {
    MF_IMAGE_OVERLAP_ERROR = 0, /* refuse, naming both sources (the default) */
    MF_IMAGE_OVERLAP_LAST_WINS, /* the record loaded later wins */
    MF_IMAGE_OVERLAP_FIRST_WINS /* the record loaded earlier wins */
};

#define MF_IMAGE_ERROR_TEXT_MAX 256u

/* Where and why a load, parse or write failed. `text` is ready to print and already holds the
 * position: "line 12: checksum mismatch (expected 0x3C, got 0x3D)"; mf_image_load prefixes the
 * source name ("fw.hex: line 12: ..."). */
struct mf_image_error {
    uint64_t line;   /* 1-based line of a text format; 0 when the error is not about a line */
    uint64_t offset; /* byte offset in the file (ELF, raw binary); meaningful when line is 0 */
    char text[MF_IMAGE_ERROR_TEXT_MAX];
};

/* Where parsers deliver what they decode. `where` locates the record in its file: the line
 * number for HEX and S-record, the byte offset of the first byte for ELF and raw binary.
 * `bytes` is valid only during the call. A callback returns 0 to go on or a negative MF_E* code
 * to stop the parse; the parser then returns that code, and its error report holds the position
 * ("line N: " or "offset 0xX: ") followed by the text the callback wrote into that same report
 * (reachable through `context`), or by mf_strerror(code) when it wrote none. */
struct mf_image_sink {
    int (*data)(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                uint64_t where);
    int (*start)(void *context, uint64_t address); /* start (entry) address; may be NULL */
    void *context;
};

/* Random access to a file: read exactly `length` bytes at `offset` into `buffer`. Returns 0 or
 * a negative MF_E* code (MF_EIO when the file ends early). */
typedef int (*mf_image_read_fn)(void *context, uint64_t offset, void *buffer, size_t length);

/* Output of the writers: takes `length` bytes; returns 0 or a negative MF_E* code. */
typedef int (*mf_image_write_fn)(void *context, const void *bytes, size_t length);

/* Bounds. Addresses are 64-bit; every loaded byte lies in [0, 2^64 - 1) (a record whose end
 * would pass 2^64 - 1 is refused), and HEX / S-record data in [0, 4 GiB). */
#define MF_IMAGE_DEFAULT_MAX_BYTES  (256ull << 20) /* loaded bytes, overlaps counted twice */
#define MF_IMAGE_DEFAULT_MAX_PIECES (1ull << 20)   /* runs of records not adjacent in a file */
#define MF_IMAGE_MAX_SOURCES        1024u          /* files per image */
#define MF_IMAGE_SOURCE_NAME_MAX    255u           /* longer names are cut */

struct mf_image_config {
    enum mf_image_overlap overlap;
    uint64_t max_bytes;  /* 0: MF_IMAGE_DEFAULT_MAX_BYTES */
    uint64_t max_pieces; /* 0: MF_IMAGE_DEFAULT_MAX_PIECES */
};

/* A run of loaded bytes at consecutive addresses, [address, address + size). Segments of a
 * finished image are sorted, non-empty, and neither overlap nor touch (touching runs merge). */
struct mf_image_segment {
    uint64_t address;
    uint64_t size;
    const uint8_t *data;
};

struct mf_image_piece; /* private to mf_image.c */

/* The image. Zero-initialising is not enough: use mf_image_init. Fields are private. */
struct mf_image {
    struct mf_image_config config;
    /* Loading: record data appended to one arena, described by pieces in load order. */
    struct mf_image_piece *pieces;
    size_t piece_count, piece_capacity;
    uint8_t *arena;
    size_t arena_size, arena_capacity;
    char **source_names;
    enum mf_image_format *source_formats;
    uint32_t source_count, source_capacity;
    /* Finished: segments pointing into `data`. */
    bool finished;
    struct mf_image_segment *segments;
    size_t segment_count;
    uint8_t *data;
    uint64_t size;
    bool has_start;
    uint64_t start;
};

/* Prepares an empty image; `config` may be NULL for the defaults (overlap is an error). */
void mf_image_init(struct mf_image *image, const struct mf_image_config *config);

/* Releases everything the image allocated; the image can be initialised again afterwards.
 * Segment data pointers become invalid. Safe on an initialised image in any state. */
void mf_image_free(struct mf_image *image);

/* Registers a file (its `name` is copied; only used in messages) of a format other than AUTO and
 * gives its id for mf_image_add. MF_ENOMEM; MF_EINVAL after mf_image_finish or beyond
 * MF_IMAGE_MAX_SOURCES. */
int mf_image_add_source(struct mf_image *image, const char *name, enum mf_image_format format,
                        uint32_t *source, struct mf_image_error *err);

/* Adds `length` bytes for `address` from `source` (`where` as in struct mf_image_sink). Bytes
 * are copied. Overlaps are only resolved by mf_image_finish. MF_ERANGE when the end passes
 * 2^64 - 1; MF_EFBIG beyond the configured bounds; MF_ENOMEM; MF_EINVAL after finish or for an
 * unknown source. `err` may be NULL. */
int mf_image_add(struct mf_image *image, uint32_t source, uint64_t address, const uint8_t *bytes,
                 size_t length, uint64_t where, struct mf_image_error *err);

/* Records the start (entry) address. The first one given wins: later files do not move it. */
void mf_image_set_start(struct mf_image *image, uint64_t address);

/* Loads a whole file through `read` (size `size`): detects the format when `format` is AUTO,
 * registers the source as `name`, and parses it into the image. `base` places raw binary
 * input; it must be 0 for other formats (MF_EINVAL). Errors are the parser's (MF_EFORMAT for
 * malformed content, with line or offset), the reader's, or mf_image_add's; `err->text` starts
 * with the name. Allocates a read buffer for the duration of the call. */
int mf_image_load(struct mf_image *image, const char *name, enum mf_image_format format,
                  uint64_t base, mf_image_read_fn read, void *context, uint64_t size,
                  struct mf_image_error *err);

/* Ends loading: sorts the data, resolves overlaps by the configured policy (MF_ECONFLICT naming
 * both sources and the address range under MF_IMAGE_OVERLAP_ERROR) and builds the segments.
 * MF_ENOMEM. On error the image stays unfinished and can only be freed. Needed before any of the
 * queries and writers below (calling them earlier is a contract mistake, asserted). */
int mf_image_finish(struct mf_image *image, struct mf_image_error *err);

/* Segments of a finished image, sorted by address (the array belongs to the image). */
const struct mf_image_segment *mf_image_segments(const struct mf_image *image, size_t *count);

/* Number of loaded bytes (gaps not counted). */
uint64_t mf_image_size(const struct mf_image *image);

/* Lowest loaded address and one past the highest; both 0 for an empty image. */
void mf_image_span(const struct mf_image *image, uint64_t *low, uint64_t *end);

/* The start address, when a file gave one. */
bool mf_image_start(const struct mf_image *image, uint64_t *address);

/* CRC-32 (mf_crc32) of the loaded bytes in address order, gaps left out. */
uint32_t mf_image_crc32(const struct mf_image *image);

/* Copies [address, address + length) into `buffer`, gaps filled with `fill`. MF_ERANGE when the
 * range passes 2^64 - 1. */
int mf_image_read(const struct mf_image *image, uint64_t address, void *buffer, size_t length,
                  uint8_t fill);

/* Writes the bytes from the lowest loaded address to the highest, gaps filled with `fill`
 * (0xFF: erased flash), in pieces of at most 64 KiB. Returns the writer's error, if any. */
int mf_image_write_bin(const struct mf_image *image, uint8_t fill, mf_image_write_fn write,
                       void *context);

/* Guesses a format from the first bytes of a file (pass at least MF_IMAGE_DETECT_BYTES when
 * the file has them): ELF by its magic; Intel HEX or S-record when the text's first line looks
 * like a record (':' or 'S<digit>' followed by hex digits) and the head is printable text;
 * otherwise raw binary. Never returns AUTO. */
#define MF_IMAGE_DETECT_BYTES 512u
enum mf_image_format mf_image_detect(const void *head, size_t length);

/* Helpers the format modules (mf_ihex, mf_srec, mf_elf) share. */

/* Value of an ASCII hex digit (either case), or 0x10 for any other byte: OR-ing the values of
 * a whole record and testing 0x10 once checks every digit without a branch per byte. */
extern const uint8_t mf_image_hex_value[256];

/* Empties an error report (no-op for NULL). */
void mf_image_error_clear(struct mf_image_error *err);

/* Fills an error report (no-op for NULL) with "line <line>: <message>" or
 * "offset 0x<offset>: <message>". */
void mf_image_error_line(struct mf_image_error *err, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mf_image_error_offset(struct mf_image_error *err, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills an error report (no-op for NULL) with a message about no particular position. */
void mf_image_error_set(struct mf_image_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For a parser whose sink callback failed with `code`: puts the position in front of the text
 * the callback wrote, or writes the position and mf_strerror(code). Returns `code`. `line` 0
 * means use `offset`. */
int mf_image_error_sink(struct mf_image_error *err, uint64_t line, uint64_t offset, int code);

/* Describes a byte for a message: 'x' when printable, else 0xNN. Returns `buffer`. */
const char *mf_image_describe_byte(uint8_t byte, char buffer[8]);

/* "auto", "bin", "ihex", "srec", "elf". */
const char *mf_image_format_name(enum mf_image_format format);

/* Long name for messages: "raw binary", "Intel HEX", "Motorola S-record", "ELF". */
const char *mf_image_format_title(enum mf_image_format format);

/* Parses a format name: those of mf_image_format_name, plus "binary", "hex", "s19", "s28",
 * "s37", "mot". Returns 0 or MF_EINVAL. */
int mf_image_format_parse(const char *name, enum mf_image_format *format);

#endif
