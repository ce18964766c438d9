/* The ASCII command protocol's edge (docs/protocol.md): a framer that cuts a byte stream into
 * command lines (an explicit state machine: restart on '#', bounded line, reset on overflow), the
 * command table, argument helpers and the table of error numbers. No I/O: the daemon's sessions
 * feed bytes in and send what the dispatcher produces. */
#ifndef MF_PROTO_H
#define MF_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_PROTO_LINE_MAX   2048u  /* bytes of a command line, without its line end */
#define MF_PROTO_FILE_CHUNK 0x200u /* bytes per #FWRITE / #FREAD */

/* What the framer found. */
enum mf_proto_event {
    MF_PROTO_NEED_MORE,      /* no complete line yet */
    MF_PROTO_LINE,           /* framer->line holds a command, from its '#' */
    MF_PROTO_TOO_LONG,       /* a line longer than MF_PROTO_LINE_MAX was dropped */
    MF_PROTO_TOO_LONG_CP437, /* a line of code page 437 bytes was dropped: it fits, but its
                              * UTF-8 form is longer than MF_PROTO_LINE_MAX */
    MF_PROTO_BAD_CHAR,       /* a line with a control or non-ASCII byte after its '#' was dropped */
    MF_PROTO_NO_COMMAND,     /* a non-empty line without '#' was dropped */
};

struct mf_proto_framer {
    char line[MF_PROTO_LINE_MAX + 1];
    size_t len;
    bool started; /* a '#' was seen on this line */
    bool noise;   /* bytes other than blanks were seen before any '#' */
    bool too_long;
    bool bad_char;
    bool after_cr; /* the last byte was CR: an LF now ends no new line */
    bool has_line; /* `line` holds the line returned last; dropped at the next feed */
};

void mf_proto_framer_init(struct mf_proto_framer *framer);

/* Consumes bytes from `data` up to the end of the first complete line (or all of them). Returns
 * the number consumed and sets *event; call again with the rest. */
size_t mf_proto_framer_feed(struct mf_proto_framer *framer, const uint8_t *data, size_t length,
                            enum mf_proto_event *event);

enum mf_proto_command {
    MF_CMD_UNKNOWN = 0,
    MF_CMD_AUTO,
    MF_CMD_ERASE,
    MF_CMD_PROGRAM,
    MF_CMD_VERIFY,
    MF_CMD_START,
    MF_CMD_CANCEL,
    MF_CMD_STATUS,
    MF_CMD_RESULT,
    MF_CMD_SELECT,
    MF_CMD_SELMODULE,
    MF_CMD_INFO,
    MF_CMD_BAUDRATE,
    MF_CMD_PROGRESS,
    MF_CMD_FOPEN,
    MF_CMD_FOPENREAD,
    MF_CMD_FWRITE,
    MF_CMD_FREAD,
    MF_CMD_FSIZE,
    MF_CMD_FCLOSE,
    MF_CMD_FDELETE,
    MF_CMD_FLIST,
    MF_CMD_MKDIR,
    MF_CMD_RMDIR,
    MF_CMD_SECUREAREA,
    MF_CMD_REBOOT,
    MF_CMD_IDENTITY,
    MF_CMD_TOPUP,
    MF_CMD_RECORDHEAD,
};

/* Splits a command line ("#AUTO NOPATCH") into its command and its arguments (the text after the
 * keyword, blanks trimmed; "" when none). Returns MF_CMD_UNKNOWN for a keyword not in the table. */
enum mf_proto_command mf_proto_parse(const char *line, const char **args);

/* The keyword of a command, upper case ("AUTO"). */
const char *mf_proto_command_name(enum mf_proto_command command);

/* Parses a hex number (no 0x, 1-16 digits) at *text, skipping blanks before it; advances *text.
 * Returns 0 or -1. */
int mf_proto_hex(const char **text, uint64_t *value);

/* Decodes `count` bytes of hex at `text` into `out`; exactly 2 * count digits must follow and
 * nothing else. Returns 0 or -1. */
int mf_proto_hex_bytes(const char *text, uint8_t *out, size_t count);

/* Appends `count` bytes as lower-case hex to `out` (2 * count chars and a NUL). */
void mf_proto_hex_encode(const uint8_t *data, size_t count, char *out);

/* Reply text with every control character (C0, DEL, and C1 written as UTF-8) shown as "<hh>",
 * its code in two lower-case hex digits, so that no reply line can be cut or forged by what it
 * quotes (a name read from the storage). With `name` (a listed file name), also '<' and the
 * characters no FAT long name may hold ("*\/:>?| and '"'): the shown name is then never a real
 * one and never a path. Writes at most `size` - 1 bytes and a NUL (never half an escape) and
 * returns the length written. */
size_t mf_proto_escape(const char *text, bool name, char *out, size_t size);

/* The longest mf_proto_escape output for `length` bytes of text, its NUL included. */
#define MF_PROTO_ESCAPED_SIZE(length) (4u * (length) + 1u)

/* Protocol error numbers (docs/protocol.md). */
enum mf_proto_error {
    MF_PERR_CANCELED = 7,
    MF_PERR_BUSY = 8,
    MF_PERR_MEMORY = 9,
    MF_PERR_FILE_OPEN = 10,
    MF_PERR_FILE_READ = 11,
    MF_PERR_FILE_WRITE = 12,
    MF_PERR_FILE_DELETE = 13,
    MF_PERR_DATA_FILE = 102,
    MF_PERR_EXHAUSTED = 201,
    MF_PERR_CONFLICT = 202,
    MF_PERR_NO_SETUP = 203,
    MF_PERR_BAD_SETUP = 204,
    MF_PERR_VERIFY = 205,
    MF_PERR_CONNECT = 206,
    MF_PERR_TARGET = 207,
    MF_PERR_FILE_ACCESS_MODE = 208,
    MF_PERR_LOCAL_ONLY = 209,
    MF_PERR_ARGUMENT = 210,
    MF_PERR_STORAGE = 211,
    MF_PERR_DEVICE_DATA = 212,
    MF_PERR_TIMEOUT = 213,
    MF_PERR_PROTECTED = 214,
    MF_PERR_CHANNEL = 215,
    MF_PERR_SECURE = 216,
    MF_PERR_OTHER = 255,
};

#endif
