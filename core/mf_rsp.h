/* The GDB remote serial protocol, the part that needs no socket: packet framing and checksums,
 * binary escaping, run-length decoding, a receive state machine, and the parsers for what a GDB
 * server sends (qSupported replies, memory maps, target descriptions). Also the job's settings
 * for a GDB server ([gdb] in job.ini). Portable and written for hostile input: the back end
 * targets/mf_gdb drives it, tests/fuzz/fuzz_rsp.c feeds it garbage. */
#ifndef MF_RSP_H
#define MF_RSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Framing characters. */
#define MF_RSP_START       '$'
#define MF_RSP_END         '#'
#define MF_RSP_NOTIFY      '%'  /* start of a notification (non-stop mode); ignored */
#define MF_RSP_ESCAPE      '}'  /* escape: the next byte is XORed with MF_RSP_ESCAPE_XOR */
#define MF_RSP_ESCAPE_XOR  0x20 /* */
#define MF_RSP_RUN         '*'  /* run-length: repeat the previous character */
#define MF_RSP_ACK         '+'
#define MF_RSP_NAK         '-'
#define MF_RSP_INTERRUPT   0x03 /* Ctrl-C: halt a running target */
#define MF_RSP_FRAME_EXTRA 4u   /* '$', '#' and two checksum digits around a payload */
#define MF_RSP_RUN_MIN     32   /* smallest repeat-count character (' ': 3 more copies) */
#define MF_RSP_RUN_MAX     126  /* largest ('~': 97 more copies) */
#define MF_RSP_RUN_BIAS    29   /* copies added = count character - MF_RSP_RUN_BIAS */

/* ---- framing ---- */

/* The modulo-256 sum of the payload bytes. */
uint8_t mf_rsp_checksum(const uint8_t *payload, size_t length);

/* Frames a payload in place: `buffer[1 .. 1 + length)` holds the payload (already escaped where it
 * carries binary data); writes '$' at buffer[0] and "#xx" after the payload. `buffer` must hold
 * length + MF_RSP_FRAME_EXTRA bytes. Returns that total. */
size_t mf_rsp_frame(uint8_t *buffer, size_t length);

/* ---- binary data ---- */

/* Does `byte` need escaping in binary data? '#', '$', '}' always; '*' too (required in replies,
 * harmless in requests, and it keeps a run-length decoder from seeing a run). */
bool mf_rsp_must_escape(uint8_t byte);

/* Escapes bytes of `in` into `out` (at most `out_size` bytes), stopping before the first input
 * byte whose escaped form no longer fits. Returns the bytes written; *consumed gets the input bytes
 * taken. */
size_t mf_rsp_escape(uint8_t *out, size_t out_size, const uint8_t *in, size_t in_length,
                     size_t *consumed);

/* Undoes the escaping in place. MF_EPROTO when the data ends in an escape character. */
int mf_rsp_unescape(uint8_t *data, size_t length, size_t *out_length);

/* Expands run-length encoding ("X*n": n - 29 more X) of a received payload into `out`.
 * MF_EPROTO for a run without a character before it or a count character outside ' '..'~',
 * MF_ENOSPC when the expansion exceeds out_size. `in` and `out` must not overlap. */
int mf_rsp_expand(const uint8_t *in, size_t length, uint8_t *out, size_t out_size,
                  size_t *out_length);

/* ---- receiving ---- */

enum mf_rsp_event {
    MF_RSP_EV_NONE = 0,     /* all input used, nothing complete yet */
    MF_RSP_EV_ACK,          /* '+' */
    MF_RSP_EV_NAK,          /* '-' */
    MF_RSP_EV_PACKET,       /* a packet with a good checksum: decoder->buffer, ->length */
    MF_RSP_EV_BAD_CHECKSUM, /* a packet whose checksum does not match (or is not hex) */
    MF_RSP_EV_OVERFLOW,     /* a packet longer than the buffer (dropped whole) */
    MF_RSP_EV_INTERRUPT,    /* 0x03 outside a packet */
};

/* A receive state machine: restarts on every '$', counts bytes outside packets as garbage,
 * drops notifications ('%...#xx'). The caller owns the buffer. */
struct mf_rsp_decoder {
    uint8_t *buffer; /* payload of the packet being received, raw (still run-length encoded) */
    size_t capacity;
    size_t length;
    uint64_t garbage;  /* bytes seen outside packets, other than acks and interrupts */
    uint64_t restarts; /* packets abandoned because a new '$' came before their end */
    /* Internal. */
    int state;
    uint8_t sum;
    uint8_t check;
    bool overflow;
    bool notification;
};

void mf_rsp_decoder_init(struct mf_rsp_decoder *decoder, uint8_t *buffer, size_t capacity);

/* Feeds up to `length` bytes and stops after the first event; *used gets the bytes consumed (all of
 * them when the result is MF_RSP_EV_NONE). The packet of MF_RSP_EV_PACKET stays in the buffer until
 * the next call. */
enum mf_rsp_event mf_rsp_decode(struct mf_rsp_decoder *decoder, const uint8_t *in, size_t length,
                                size_t *used);

/* ---- numbers ---- */

/* Writes `length` bytes as lower-case hex (2 * length characters, no NUL). */
void mf_rsp_hex_encode(char *out, const uint8_t *in, size_t length);

/* Reads exactly 2 * length hex digits. MF_EPROTO for a non-hex digit. */
int mf_rsp_hex_decode(const char *in, uint8_t *out, size_t length);

/* Reads an unsigned hex number of 1..16 digits from text[0..length), stopping at the first
 * non-hex character; *end gets the digits read. MF_EPROTO when there are none or too many. */
int mf_rsp_hex_u64(const char *text, size_t length, uint64_t *value, size_t *end);

/* Is the reply an error ("Enn", or "E." followed by a text)? */
bool mf_rsp_is_error(const uint8_t *reply, size_t length);

/* ---- qSupported ---- */

#define MF_RSP_PACKET_SIZE_DEFAULT 400u /* what GDB assumes when the server says nothing */

struct mf_rsp_features {
    uint32_t packet_size; /* PacketSize (whole packets, framing included), or the default */
    bool no_ack;          /* QStartNoAckMode+ */
    bool memory_map;      /* qXfer:memory-map:read+ */
    bool features;        /* qXfer:features:read+ (target description) */
    bool vcont;           /* vContSupported+ */
};

/* Parses a qSupported reply ("PacketSize=4000;QStartNoAckMode+;..."): unknown features are
 * skipped. MF_EPROTO for a PacketSize that is not hex or is 0 (a size above 4 GiB saturates). */
int mf_rsp_parse_supported(const uint8_t *reply, size_t length, struct mf_rsp_features *features);

/* ---- XML (memory maps, target descriptions) ---- */

/* One element tag of an XML document, as mf_rsp_xml_next finds them: names and attributes point
 * into the document. */
struct mf_rsp_xml_tag {
    const char *name;
    size_t name_length;
    const char *attributes; /* the text between the name and '>' */
    size_t attributes_length;
    bool closing;      /* </name> */
    bool self_closing; /* <name .../> */
    const char *text;  /* the character data after the tag, up to the next '<' */
    size_t text_length;
};

/* Finds the next element tag from *pos (skipping comments, <?...?> and <!...>). Returns 1 and
 * advances *pos past the tag, 0 at the end, MF_EFORMAT for an unterminated tag. */
int mf_rsp_xml_next(const char *xml, size_t length, size_t *pos, struct mf_rsp_xml_tag *tag);

/* Does the tag have this name? */
bool mf_rsp_xml_is(const struct mf_rsp_xml_tag *tag, const char *name);

/* Finds attribute `name` of a tag (quoted with " or '); 1 with *value and *value_length set, or 0.
 */
int mf_rsp_xml_attr(const struct mf_rsp_xml_tag *tag, const char *name, const char **value,
                    size_t *value_length);

/* A memory map (qXfer:memory-map:read). */
#define MF_RSP_MAP_MAX 32u

enum mf_rsp_memory_type { MF_RSP_MEM_RAM, MF_RSP_MEM_ROM, MF_RSP_MEM_FLASH };

struct mf_rsp_memory {
    enum mf_rsp_memory_type type;
    uint64_t start;
    uint64_t length;
    uint64_t blocksize; /* flash: the erase block (property "blocksize"); 0 for the others */
};

struct mf_rsp_memory_map {
    struct mf_rsp_memory regions[MF_RSP_MAP_MAX];
    unsigned count;
};

/* Parses a memory map: every <memory type= start= length=> (with, for flash, a <property
 * name="blocksize">). MF_EFORMAT with `error` saying what and where (the byte offset) for a
 * malformed map, a flash region without a block size, a block size of 0, a region that wraps or
 * more than MF_RSP_MAP_MAX regions. */
int mf_rsp_parse_memory_map(const char *xml, size_t length, struct mf_rsp_memory_map *map,
                            char *error, size_t error_size);

/* The region of the map holding `address`, or NULL. */
const struct mf_rsp_memory *mf_rsp_map_find(const struct mf_rsp_memory_map *map, uint64_t address);

/* Called for each <reg> of a target description: its name (not NUL-terminated, "" when it has
 * none), its number and size in bits. Returning true stops the walk. */
typedef bool (*mf_rsp_reg_fn)(void *context, const char *name, size_t name_length, unsigned regnum,
                              unsigned bitsize);

/* Walks the <reg> elements of a target description from *pos, numbered as GDB numbers them:
 * each takes *next (or its regnum attribute) and *next becomes that + 1, carried across
 * documents. Returns 2 when `each` stopped the walk, 1 at an <xi:include href=...> (copied into
 * `include`, NUL-terminated; *pos is left after it, so that the caller can walk the included
 * document with the same *next and come back), 0 at the end ("" in `include`), MF_EFORMAT for
 * malformed XML or an href longer than include_size - 1. */
int mf_rsp_tdesc_walk(const char *xml, size_t length, size_t *pos, unsigned *next,
                      mf_rsp_reg_fn each, void *context, char *include, size_t include_size);

/* Walks a target description for the number of register `name` (case-insensitive), carrying the
 * register numbering in *next across documents: each <reg> takes *next (or its regnum attribute)
 * and *next becomes that + 1. Returns 1 with *regnum and *bitsize when found; 0 when not, with the
 * first <xi:include href=...> met copied into `include` (NUL-terminated, "" when none) and *pos
 * left after it, so that the caller can walk the included document with the same *next and then
 * come back; MF_EFORMAT for malformed XML or an href longer than include_size - 1. */
int mf_rsp_tdesc_find(const char *xml, size_t length, size_t *pos, const char *name, unsigned *next,
                      unsigned *regnum, unsigned *bitsize, char *include, size_t include_size);

/* ---- the job's settings for a GDB server ---- */

#define MF_RSP_COMMANDS_MAX      256u    /* bytes of one command list, with the NUL */
#define MF_RSP_TIMEOUT_DEFAULT   5000u   /* ms to wait for an ordinary reply */
#define MF_RSP_LONG_TIMEOUT      120000u /* ms for flash erase/done, qCRC, monitor commands */
#define MF_RSP_TIMEOUT_MAX       3600000u
#define MF_RSP_COMMAND_SEPARATOR "&&"

/* Command lists say what the server is to do at a step. A list is steps separated by "&&"; a step
 * is `monitor TEXT` (a qRcmd, as typed into GDB), `attach N` (vAttach;N, e.g. Black Magic Probe's
 * first target) or `continue` (resume without waiting; only as the last step of `run`).
 * An empty list means the default written at each field. */
struct mf_rsp_options {
    char connect[MF_RSP_COMMANDS_MAX];    /* after the connection is set up (probe scan, attach) */
    char halt[MF_RSP_COMMANDS_MAX];       /* halt the device (default: the protocol's ? and ^C) */
    char reset[MF_RSP_COMMANDS_MAX];      /* reset and halt it before programming (default: none) */
    char unlock[MF_RSP_COMMANDS_MAX];     /* remove readout protection (default: nothing to do) */
    char mass_erase[MF_RSP_COMMANDS_MAX]; /* erase the chip (default: erase every flash region) */
    char protect[MF_RSP_COMMANDS_MAX];    /* set protection; "{level}" becomes the level number
                                             (default: not supported) */
    char run[MF_RSP_COMMANDS_MAX];        /* start = reset: reset and run (default: the vector
                                             start, SP and PC from the vector table) */
    uint32_t timeout_ms;                  /* ordinary replies; 0: MF_RSP_TIMEOUT_DEFAULT */
    uint32_t long_timeout_ms; /* erase, flash done, qCRC, monitor; 0: MF_RSP_LONG_TIMEOUT */
};

/* Clears every field: all defaults. */
void mf_rsp_options_init(struct mf_rsp_options *options);

/* Do both say the same (every command list and both timeouts)? */
bool mf_rsp_options_equal(const struct mf_rsp_options *a, const struct mf_rsp_options *b);

/* Sets one job.ini key of the [gdb] section: connect, halt, reset, unlock, mass_erase, protect,
 * run (command lists), timeout, long_timeout (milliseconds, 1..MF_RSP_TIMEOUT_MAX). MF_EINVAL for
 * an unknown key, MF_EFORMAT for a bad value; `error` (may be NULL) then says why in a phrase
 * that fits after "key: " ("'foo' is not a command: steps are ..."). */
int mf_rsp_options_set(struct mf_rsp_options *options, const char *key, const char *value,
                       char *error, size_t error_size);

/* One step of a command list. */
enum mf_rsp_step_kind { MF_RSP_STEP_MONITOR = 1, MF_RSP_STEP_ATTACH, MF_RSP_STEP_CONTINUE };

struct mf_rsp_step {
    enum mf_rsp_step_kind kind;
    const char *text; /* monitor: the command; attach: the id (hex digits); points into the list */
    size_t text_length;
};

/* Takes the next step of a command list from *pos (blanks around steps are skipped). Returns 1
 * with the step, 0 at the end, MF_EFORMAT for a step that is none of the three. */
int mf_rsp_step_next(const char *list, size_t *pos, struct mf_rsp_step *step);

#endif
