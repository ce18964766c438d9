/* The protocol's framing and command table (see mf_proto.h). */
#include "mf_proto.h"

#include "mf_cp437.h"

#include <string.h>

void mf_proto_framer_init(struct mf_proto_framer *framer)
{
    memset(framer, 0, sizeof *framer);
}

static void framer_reset_line(struct mf_proto_framer *f)
{
    f->len = 0;
    f->started = false;
    f->noise = false;
    f->too_long = false;
    f->bad_char = false;
}

size_t mf_proto_framer_feed(struct mf_proto_framer *f, const uint8_t *data, size_t length,
                            enum mf_proto_event *event)
{
    *event = MF_PROTO_NEED_MORE;
    if (f->has_line) {
        framer_reset_line(f); /* the caller has taken the previous line */
        f->has_line = false;
    }
    for (size_t i = 0; i < length; i++) {
        uint8_t c = data[i];
        if (c == '\r' || c == '\n') {
            bool lf_of_crlf = c == '\n' && f->after_cr;
            f->after_cr = c == '\r';
            if (lf_of_crlf)
                continue;
            enum mf_proto_event ev;
            if (f->too_long)
                ev = MF_PROTO_TOO_LONG;
            else if (f->started && f->bad_char)
                ev = MF_PROTO_BAD_CHAR;
            else if (f->started)
                ev = MF_PROTO_LINE;
            else if (f->noise)
                ev = MF_PROTO_NO_COMMAND;
            else
                continue; /* an empty line */
            if (ev == MF_PROTO_LINE && !mf_utf8_valid(f->line, f->len)) {
                /* Bytes beyond ASCII that are not UTF-8 are the reference's code page 437. */
                char utf8[MF_PROTO_LINE_MAX + 1];
                size_t n = mf_cp437_to_utf8(f->line, f->len, utf8, sizeof utf8);
                if (n == SIZE_MAX) {
                    ev = MF_PROTO_TOO_LONG_CP437;
                } else {
                    memcpy(f->line, utf8, n);
                    f->len = n;
                }
            }
            if (ev == MF_PROTO_LINE) {
                f->line[f->len] = '\0';
                f->has_line = true;
            } else {
                framer_reset_line(f);
            }
            *event = ev;
            return i + 1;
        }
        f->after_cr = false;
        if (c == '#' && !f->started) {
            /* Restart on the start marker: noise before it is dropped. */
            framer_reset_line(f);
            f->started = true;
        } else if (!f->started) {
            if (c != ' ' && c != '\t')
                f->noise = true;
            continue;
        } else if ((c < 0x20 && c != '\t') || c == 0x7F) {
            f->bad_char = true;
        }
        if (f->len == MF_PROTO_LINE_MAX) {
            f->too_long = true;
            continue;
        }
        if (!f->too_long)
            f->line[f->len++] = (char)c;
    }
    return length;
}

static const struct {
    enum mf_proto_command command;
    const char *name;
} mf_proto_commands[] = {
    {MF_CMD_AUTO, "AUTO"},
    {MF_CMD_ERASE, "ERASE"},
    {MF_CMD_PROGRAM, "PROGRAM"},
    {MF_CMD_VERIFY, "VERIFY"},
    {MF_CMD_START, "START"},
    {MF_CMD_CANCEL, "CANCEL"},
    {MF_CMD_STATUS, "STATUS"},
    {MF_CMD_RESULT, "RESULT"},
    {MF_CMD_SELECT, "SELECT"},
    {MF_CMD_SELMODULE, "SELMODULE"},
    {MF_CMD_INFO, "INFO"},
    {MF_CMD_BAUDRATE, "BAUDRATE"},
    {MF_CMD_PROGRESS, "PROGRESS"},
    {MF_CMD_FOPEN, "FOPEN"},
    {MF_CMD_FWRITE, "FWRITE"},
    {MF_CMD_FREAD, "FREAD"},
    {MF_CMD_FSIZE, "FSIZE"},
    {MF_CMD_FCLOSE, "FCLOSE"},
    {MF_CMD_FDELETE, "FDELETE"},
    {MF_CMD_FLIST, "FLIST"},
    {MF_CMD_MKDIR, "MKDIR"},
    {MF_CMD_RMDIR, "RMDIR"},
    {MF_CMD_SECUREAREA, "SECUREAREA"},
    {MF_CMD_REBOOT, "REBOOT"},
    {MF_CMD_IDENTITY, "IDENTITY"},
    {MF_CMD_TOPUP, "TOPUP"},
    {MF_CMD_FOPENREAD, "FOPENREAD"},
    {MF_CMD_RECORDHEAD, "RECORDHEAD"},
};

static char upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

enum mf_proto_command mf_proto_parse(const char *line, const char **args)
{
    const char *p = line;
    *args = "";
    if (*p == '#')
        p++;
    const char *kw = p;
    while (*p && !blank(*p))
        p++;
    size_t kw_len = (size_t)(p - kw);
    while (blank(*p))
        p++;
    *args = p;
    for (size_t i = 0; i < sizeof mf_proto_commands / sizeof mf_proto_commands[0]; i++) {
        const char *name = mf_proto_commands[i].name;
        if (strlen(name) != kw_len)
            continue;
        size_t k = 0;
        while (k < kw_len && upper(kw[k]) == name[k])
            k++;
        if (k == kw_len)
            return mf_proto_commands[i].command;
    }
    return MF_CMD_UNKNOWN;
}

const char *mf_proto_command_name(enum mf_proto_command command)
{
    for (size_t i = 0; i < sizeof mf_proto_commands / sizeof mf_proto_commands[0]; i++) {
        if (mf_proto_commands[i].command == command)
            return mf_proto_commands[i].name;
    }
    return "?";
}

size_t mf_proto_escape(const char *text, bool name, char *out, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)text;
    size_t n = 0;
    if (!size)
        return 0;
    while (*p) {
        unsigned code = *p;
        size_t used = mf_utf8_control((const char *)p, p[1] ? 2 : 1, &code);
        bool escape = used != 0;
        if (!used)
            used = 1;
        if (name && code < 0x80 && strchr("<\"*/:>?\\|", (int)code))
            escape = true;
        size_t need = escape ? 4 : used;
        if (n + need >= size)
            break;
        if (escape) {
            out[n++] = '<';
            out[n++] = digits[code >> 4];
            out[n++] = digits[code & 15];
            out[n++] = '>';
        } else {
            memcpy(out + n, p, used);
            n += used;
        }
        p += used;
    }
    out[n] = '\0';
    return n;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mf_proto_hex(const char **text, uint64_t *value)
{
    const char *p = *text;
    while (blank(*p))
        p++;
    uint64_t v = 0;
    int digits = 0;
    for (int d; (d = hex_value(*p)) >= 0; p++) {
        if (++digits > 16)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    if (!digits)
        return -1;
    while (blank(*p))
        p++;
    *value = v;
    *text = p;
    return 0;
}

int mf_proto_hex_bytes(const char *text, uint8_t *out, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int hi = hex_value(text[2 * i]);
        int lo = hi >= 0 ? hex_value(text[2 * i + 1]) : -1;
        if (lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    const char *rest = text + 2 * count;
    while (blank(*rest))
        rest++;
    return *rest ? -1 : 0;
}

void mf_proto_hex_encode(const uint8_t *data, size_t count, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < count; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * count] = '\0';
}
