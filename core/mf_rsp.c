/* The GDB remote serial protocol without sockets (see mf_rsp.h and docs/internals/gdb.md):
 * framing, escaping, run-length decoding, the receive state machine and the parsers of what a
 * server sends. Every loop is bounded by its input; nothing recurses. */
#include "mf_rsp.h"

#include "mf_err.h"
#include "mf_ini.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { DEC_IDLE, DEC_DATA, DEC_CHECK1, DEC_CHECK2 };

static const char hex_digits[] = "0123456789abcdef";

static void say(char *error, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *error, size_t size, const char *fmt, ...)
{
    if (!error || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, size, fmt, ap);
    va_end(ap);
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- framing ---- */

uint8_t mf_rsp_checksum(const uint8_t *payload, size_t length)
{
    unsigned sum = 0;
    for (size_t i = 0; i < length; i++)
        sum += payload[i];
    return (uint8_t)sum;
}

size_t mf_rsp_frame(uint8_t *buffer, size_t length)
{
    uint8_t sum = mf_rsp_checksum(buffer + 1, length);
    buffer[0] = MF_RSP_START;
    buffer[1 + length] = MF_RSP_END;
    buffer[2 + length] = (uint8_t)hex_digits[sum >> 4];
    buffer[3 + length] = (uint8_t)hex_digits[sum & 15u];
    return length + MF_RSP_FRAME_EXTRA;
}

/* ---- binary data ---- */

bool mf_rsp_must_escape(uint8_t byte)
{
    return byte == MF_RSP_END || byte == MF_RSP_START || byte == MF_RSP_ESCAPE ||
           byte == MF_RSP_RUN;
}

size_t mf_rsp_escape(uint8_t *out, size_t out_size, const uint8_t *in, size_t in_length,
                     size_t *consumed)
{
    size_t o = 0, i = 0;
    for (; i < in_length; i++) {
        if (mf_rsp_must_escape(in[i])) {
            if (out_size - o < 2)
                break;
            out[o++] = MF_RSP_ESCAPE;
            out[o++] = (uint8_t)(in[i] ^ MF_RSP_ESCAPE_XOR);
        } else {
            if (out_size - o < 1)
                break;
            out[o++] = in[i];
        }
    }
    *consumed = i;
    return o;
}

int mf_rsp_unescape(uint8_t *data, size_t length, size_t *out_length)
{
    size_t o = 0;
    for (size_t i = 0; i < length; i++) {
        if (data[i] == MF_RSP_ESCAPE) {
            if (++i == length)
                return MF_EPROTO;
            data[o++] = (uint8_t)(data[i] ^ MF_RSP_ESCAPE_XOR);
        } else {
            data[o++] = data[i];
        }
    }
    *out_length = o;
    return 0;
}

int mf_rsp_expand(const uint8_t *in, size_t length, uint8_t *out, size_t out_size,
                  size_t *out_length)
{
    size_t o = 0;
    for (size_t i = 0; i < length; i++) {
        if (in[i] != MF_RSP_RUN) {
            if (o == out_size)
                return MF_ENOSPC;
            out[o++] = in[i];
            continue;
        }
        /* A run repeats the last character written (as GDB expands it). */
        if (o == 0 || i + 1 == length)
            return MF_EPROTO;
        int count = in[++i];
        if (count < MF_RSP_RUN_MIN || count > MF_RSP_RUN_MAX)
            return MF_EPROTO;
        size_t more = (size_t)(count - MF_RSP_RUN_BIAS);
        if (out_size - o < more)
            return MF_ENOSPC;
        memset(out + o, out[o - 1], more);
        o += more;
    }
    *out_length = o;
    return 0;
}

/* ---- receiving ---- */

void mf_rsp_decoder_init(struct mf_rsp_decoder *d, uint8_t *buffer, size_t capacity)
{
    memset(d, 0, sizeof *d);
    d->buffer = buffer;
    d->capacity = capacity;
    d->state = DEC_IDLE;
}

static void packet_begin(struct mf_rsp_decoder *d, bool notification)
{
    d->state = DEC_DATA;
    d->length = 0;
    d->sum = 0;
    d->overflow = false;
    d->notification = notification;
}

enum mf_rsp_event mf_rsp_decode(struct mf_rsp_decoder *d, const uint8_t *in, size_t length,
                                size_t *used)
{
    for (size_t i = 0; i < length; i++) {
        uint8_t c = in[i];
        switch (d->state) {
        case DEC_IDLE:
            if (c == MF_RSP_START || c == MF_RSP_NOTIFY) {
                packet_begin(d, c == MF_RSP_NOTIFY);
                break;
            }
            *used = i + 1;
            if (c == MF_RSP_ACK)
                return MF_RSP_EV_ACK;
            if (c == MF_RSP_NAK)
                return MF_RSP_EV_NAK;
            if (c == MF_RSP_INTERRUPT)
                return MF_RSP_EV_INTERRUPT;
            d->garbage++;
            break;
        case DEC_DATA:
            if (c == MF_RSP_START) {
                d->restarts++;
                packet_begin(d, false);
            } else if (c == MF_RSP_END) {
                d->state = DEC_CHECK1;
            } else {
                d->sum = (uint8_t)(d->sum + c);
                if (d->length < d->capacity)
                    d->buffer[d->length++] = c;
                else
                    d->overflow = true;
            }
            break;
        case DEC_CHECK1:
            if (hex_value(c) < 0) {
                d->state = DEC_IDLE;
                if (d->notification) {
                    if (c == MF_RSP_START)
                        packet_begin(d, false);
                    break;
                }
                /* A '$' is not consumed: it starts the next packet. */
                *used = i + (c == MF_RSP_START ? 0 : 1);
                return MF_RSP_EV_BAD_CHECKSUM;
            }
            d->check = (uint8_t)(hex_value(c) << 4);
            d->state = DEC_CHECK2;
            break;
        default: /* DEC_CHECK2 */
            d->state = DEC_IDLE;
            if (hex_value(c) < 0) {
                if (d->notification) {
                    if (c == MF_RSP_START)
                        packet_begin(d, false);
                    break;
                }
                *used = i + (c == MF_RSP_START ? 0 : 1);
                return MF_RSP_EV_BAD_CHECKSUM;
            }
            if (d->notification)
                break;
            *used = i + 1;
            d->check = (uint8_t)(d->check | hex_value(c));
            if (d->overflow)
                return MF_RSP_EV_OVERFLOW;
            return d->check == d->sum ? MF_RSP_EV_PACKET : MF_RSP_EV_BAD_CHECKSUM;
        }
    }
    *used = length;
    return MF_RSP_EV_NONE;
}

/* ---- numbers ---- */

void mf_rsp_hex_encode(char *out, const uint8_t *in, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 15u];
    }
}

int mf_rsp_hex_decode(const char *in, uint8_t *out, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        int hi = hex_value((unsigned char)in[2 * i]), lo = hex_value((unsigned char)in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return MF_EPROTO;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int mf_rsp_hex_u64(const char *text, size_t length, uint64_t *value, size_t *end)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < length && hex_value((unsigned char)text[i]) >= 0; i++) {
        if (i == 16)
            return MF_EPROTO;
        v = v << 4 | (uint64_t)hex_value((unsigned char)text[i]);
    }
    if (i == 0)
        return MF_EPROTO;
    *value = v;
    *end = i;
    return 0;
}

bool mf_rsp_is_error(const uint8_t *reply, size_t length)
{
    if (length < 2 || reply[0] != 'E')
        return false;
    if (reply[1] == '.')
        return true;
    return length == 3 && hex_value(reply[1]) >= 0 && hex_value(reply[2]) >= 0;
}

/* ---- qSupported ---- */

static bool feature_is(const uint8_t *p, size_t n, const char *name)
{
    size_t len = strlen(name);
    return n == len && memcmp(p, name, len) == 0;
}

int mf_rsp_parse_supported(const uint8_t *reply, size_t length, struct mf_rsp_features *f)
{
    memset(f, 0, sizeof *f);
    f->packet_size = MF_RSP_PACKET_SIZE_DEFAULT;
    size_t at = 0;
    while (at < length) {
        size_t end = at;
        while (end < length && reply[end] != ';')
            end++;
        const uint8_t *item = reply + at;
        size_t n = end - at;
        at = end + 1;
        if (n >= 11 && memcmp(item, "PacketSize=", 11) == 0) {
            uint64_t v = 0;
            size_t i = 11;
            for (; i < n && hex_value(item[i]) >= 0; i++) {
                v = v << 4 | (uint64_t)hex_value(item[i]);
                if (v > UINT32_MAX)
                    v = UINT32_MAX; /* saturate; further digits keep it there */
            }
            if (i != n || v == 0)
                return MF_EPROTO;
            f->packet_size = (uint32_t)v;
            continue;
        }
        if (n < 1 || item[n - 1] != '+')
            continue;
        n--;
        if (feature_is(item, n, "QStartNoAckMode"))
            f->no_ack = true;
        else if (feature_is(item, n, "qXfer:memory-map:read"))
            f->memory_map = true;
        else if (feature_is(item, n, "qXfer:features:read"))
            f->features = true;
        else if (feature_is(item, n, "vContSupported"))
            f->vcont = true;
    }
    return 0;
}

/* ---- XML ---- */

/* Index of `needle` in text[from..length), or length. */
static size_t find(const char *text, size_t length, size_t from, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = from; i + n <= length; i++) {
        if (memcmp(text + i, needle, n) == 0)
            return i;
    }
    return length;
}

int mf_rsp_xml_next(const char *xml, size_t length, size_t *pos, struct mf_rsp_xml_tag *tag)
{
    size_t i = *pos;
    /* Each round consumes at least one byte. */
    while (i < length) {
        if (xml[i] != '<') {
            i++;
            continue;
        }
        if (length - i >= 4 && memcmp(xml + i, "<!--", 4) == 0) {
            size_t e = find(xml, length, i + 4, "-->");
            if (e == length)
                return MF_EFORMAT;
            i = e + 3;
            continue;
        }
        if (length - i >= 2 && (xml[i + 1] == '?' || xml[i + 1] == '!')) {
            size_t e = i + 2;
            while (e < length && xml[e] != '>')
                e++;
            if (e == length)
                return MF_EFORMAT;
            i = e + 1;
            continue;
        }
        size_t e = i + 1;
        /* Attribute values may hold '>' only when quoted. */
        char quote = 0;
        for (; e < length; e++) {
            if (quote) {
                if (xml[e] == quote)
                    quote = 0;
            } else if (xml[e] == '"' || xml[e] == '\'') {
                quote = xml[e];
            } else if (xml[e] == '>') {
                break;
            }
        }
        if (e == length)
            return MF_EFORMAT;
        memset(tag, 0, sizeof *tag);
        size_t s = i + 1, stop = e;
        if (s < stop && xml[s] == '/') {
            tag->closing = true;
            s++;
        }
        if (stop > s && xml[stop - 1] == '/') {
            tag->self_closing = true;
            stop--;
        }
        size_t n = s;
        while (n < stop && !is_blank(xml[n]))
            n++;
        if (n == s)
            return MF_EFORMAT;
        tag->name = xml + s;
        tag->name_length = n - s;
        tag->attributes = xml + n;
        tag->attributes_length = stop - n;
        size_t t = e + 1;
        while (t < length && xml[t] != '<')
            t++;
        tag->text = xml + e + 1;
        tag->text_length = t - (e + 1);
        *pos = e + 1;
        return 1;
    }
    *pos = length;
    return 0;
}

bool mf_rsp_xml_is(const struct mf_rsp_xml_tag *tag, const char *name)
{
    size_t n = strlen(name);
    return tag->name_length == n && memcmp(tag->name, name, n) == 0;
}

int mf_rsp_xml_attr(const struct mf_rsp_xml_tag *tag, const char *name, const char **value,
                    size_t *value_length)
{
    const char *a = tag->attributes;
    size_t n = tag->attributes_length, i = 0, name_len = strlen(name);
    while (i < n) {
        while (i < n && is_blank(a[i]))
            i++;
        size_t k = i;
        while (k < n && a[k] != '=' && !is_blank(a[k]))
            k++;
        size_t key_end = k;
        while (k < n && is_blank(a[k]))
            k++;
        if (k >= n || a[k] != '=')
            return 0; /* a bare word: nothing we read follows reliably */
        k++;
        while (k < n && is_blank(a[k]))
            k++;
        if (k >= n || (a[k] != '"' && a[k] != '\''))
            return 0;
        char quote = a[k++];
        size_t v = k;
        while (k < n && a[k] != quote)
            k++;
        if (k >= n)
            return 0;
        if (key_end - i == name_len && memcmp(a + i, name, name_len) == 0) {
            *value = a + v;
            *value_length = k - v;
            return 1;
        }
        i = k + 1;
    }
    return 0;
}

/* A number as GDB writes them in XML: 0x-hex or decimal, blanks around it allowed. */
static int xml_number(const char *text, size_t length, uint64_t *value)
{
    size_t i = 0;
    while (i < length && is_blank(text[i]))
        i++;
    while (length > i && is_blank(text[length - 1]))
        length--;
    if (i == length)
        return MF_EFORMAT;
    uint64_t v = 0;
    if (length - i > 2 && text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
        size_t end;
        if (mf_rsp_hex_u64(text + i + 2, length - i - 2, &v, &end) || end != length - i - 2)
            return MF_EFORMAT;
    } else {
        for (; i < length; i++) {
            if (text[i] < '0' || text[i] > '9' || v > (UINT64_MAX - 9) / 10)
                return MF_EFORMAT;
            v = v * 10 + (uint64_t)(text[i] - '0');
        }
    }
    *value = v;
    return 0;
}

static int map_attr_number(const struct mf_rsp_xml_tag *tag, const char *name, uint64_t *value)
{
    const char *v;
    size_t n;
    if (mf_rsp_xml_attr(tag, name, &v, &n) != 1)
        return MF_EFORMAT;
    return xml_number(v, n, value);
}

int mf_rsp_parse_memory_map(const char *xml, size_t length, struct mf_rsp_memory_map *map,
                            char *error, size_t error_size)
{
    memset(map, 0, sizeof *map);
    size_t pos = 0;
    struct mf_rsp_xml_tag tag;
    struct mf_rsp_memory *open = NULL; /* the <memory> whose properties we are in */
    bool seen_root = false;
    for (;;) {
        size_t at = pos;
        int r = mf_rsp_xml_next(xml, length, &pos, &tag);
        if (r < 0) {
            say(error, error_size, "memory map: unterminated tag at byte %zu", at);
            return MF_EFORMAT;
        }
        if (r == 0)
            break;
        if (mf_rsp_xml_is(&tag, "memory-map")) {
            seen_root = true;
            continue;
        }
        if (mf_rsp_xml_is(&tag, "memory")) {
            if (tag.closing) {
                open = NULL;
                continue;
            }
            if (map->count == MF_RSP_MAP_MAX) {
                say(error, error_size, "memory map: more than %u regions", MF_RSP_MAP_MAX);
                return MF_EFORMAT;
            }
            struct mf_rsp_memory *m = &map->regions[map->count];
            const char *type;
            size_t type_len;
            if (mf_rsp_xml_attr(&tag, "type", &type, &type_len) != 1) {
                say(error, error_size, "memory map: <memory> without a type at byte %zu", at);
                return MF_EFORMAT;
            }
            if (type_len == 3 && memcmp(type, "ram", 3) == 0)
                m->type = MF_RSP_MEM_RAM;
            else if (type_len == 3 && memcmp(type, "rom", 3) == 0)
                m->type = MF_RSP_MEM_ROM;
            else if (type_len == 5 && memcmp(type, "flash", 5) == 0)
                m->type = MF_RSP_MEM_FLASH;
            else {
                say(error, error_size, "memory map: unknown memory type '%.*s' at byte %zu",
                    (int)(type_len > 16 ? 16 : type_len), type, at);
                return MF_EFORMAT;
            }
            if (map_attr_number(&tag, "start", &m->start) ||
                map_attr_number(&tag, "length", &m->length)) {
                say(error, error_size,
                    "memory map: <memory> without a valid start and length at "
                    "byte %zu",
                    at);
                return MF_EFORMAT;
            }
            if (m->length == 0 || m->start + m->length - 1 < m->start) {
                say(error, error_size,
                    "memory map: region 0x%llx+0x%llx at byte %zu is empty or "
                    "wraps",
                    (unsigned long long)m->start, (unsigned long long)m->length, at);
                return MF_EFORMAT;
            }
            map->count++;
            open = tag.self_closing ? NULL : m;
            continue;
        }
        if (mf_rsp_xml_is(&tag, "property") && !tag.closing) {
            const char *name;
            size_t name_len;
            if (!open || mf_rsp_xml_attr(&tag, "name", &name, &name_len) != 1)
                continue;
            if (name_len == 9 && memcmp(name, "blocksize", 9) == 0) {
                if (xml_number(tag.text, tag.text_length, &open->blocksize) ||
                    open->blocksize == 0) {
                    say(error, error_size, "memory map: bad blocksize at byte %zu", at);
                    return MF_EFORMAT;
                }
            }
        }
    }
    if (!seen_root) {
        say(error, error_size, "memory map: no <memory-map> element");
        return MF_EFORMAT;
    }
    for (unsigned i = 0; i < map->count; i++) {
        const struct mf_rsp_memory *m = &map->regions[i];
        if (m->type == MF_RSP_MEM_FLASH && m->blocksize == 0) {
            say(error, error_size, "memory map: flash region 0x%llx+0x%llx has no blocksize",
                (unsigned long long)m->start, (unsigned long long)m->length);
            return MF_EFORMAT;
        }
    }
    return 0;
}

const struct mf_rsp_memory *mf_rsp_map_find(const struct mf_rsp_memory_map *map, uint64_t address)
{
    for (unsigned i = 0; i < map->count && i < MF_RSP_MAP_MAX; i++) {
        const struct mf_rsp_memory *m = &map->regions[i];
        if (address >= m->start && address - m->start < m->length)
            return m;
    }
    return NULL;
}

static bool name_equal(const char *a, size_t a_len, const char *b)
{
    size_t n = strlen(b);
    if (a_len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

int mf_rsp_tdesc_walk(const char *xml, size_t length, size_t *pos, unsigned *next,
                      mf_rsp_reg_fn each, void *context, char *include, size_t include_size)
{
    if (include_size)
        include[0] = '\0';
    struct mf_rsp_xml_tag tag;
    for (;;) {
        int r = mf_rsp_xml_next(xml, length, pos, &tag);
        if (r <= 0)
            return r;
        if (tag.closing)
            continue;
        const char *v;
        size_t n;
        if (mf_rsp_xml_is(&tag, "xi:include")) {
            if (mf_rsp_xml_attr(&tag, "href", &v, &n) != 1 || n == 0 || n >= include_size)
                return MF_EFORMAT;
            memcpy(include, v, n);
            include[n] = '\0';
            return 1;
        }
        if (!mf_rsp_xml_is(&tag, "reg"))
            continue;
        uint64_t number = *next, bits = 0;
        if (mf_rsp_xml_attr(&tag, "regnum", &v, &n) == 1 &&
            (xml_number(v, n, &number) || number > 0xFFFFu))
            return MF_EFORMAT;
        if (mf_rsp_xml_attr(&tag, "bitsize", &v, &n) == 1 &&
            (xml_number(v, n, &bits) || bits > 4096u))
            return MF_EFORMAT;
        *next = (unsigned)number + 1;
        if (mf_rsp_xml_attr(&tag, "name", &v, &n) != 1) {
            v = "";
            n = 0;
        }
        if (each(context, v, n, (unsigned)number, (unsigned)bits))
            return 2;
    }
}

struct find_reg {
    const char *name;
    unsigned *regnum, *bitsize;
};

static bool find_reg_each(void *context, const char *name, size_t name_length, unsigned regnum,
                          unsigned bitsize)
{
    struct find_reg *f = context;
    if (!name_equal(name, name_length, f->name))
        return false;
    *f->regnum = regnum;
    *f->bitsize = bitsize;
    return true;
}

int mf_rsp_tdesc_find(const char *xml, size_t length, size_t *pos, const char *name, unsigned *next,
                      unsigned *regnum, unsigned *bitsize, char *include, size_t include_size)
{
    struct find_reg f = {name, regnum, bitsize};
    int r = mf_rsp_tdesc_walk(xml, length, pos, next, find_reg_each, &f, include, include_size);
    return r == 2 ? 1 : r == 1 ? 0 : r;
}

/* ---- options ---- */

void mf_rsp_options_init(struct mf_rsp_options *options)
{
    memset(options, 0, sizeof *options);
}

bool mf_rsp_options_equal(const struct mf_rsp_options *a, const struct mf_rsp_options *b)
{
    return strcmp(a->connect, b->connect) == 0 && strcmp(a->halt, b->halt) == 0 &&
           strcmp(a->reset, b->reset) == 0 && strcmp(a->unlock, b->unlock) == 0 &&
           strcmp(a->mass_erase, b->mass_erase) == 0 && strcmp(a->protect, b->protect) == 0 &&
           strcmp(a->run, b->run) == 0 && a->timeout_ms == b->timeout_ms &&
           a->long_timeout_ms == b->long_timeout_ms;
}

int mf_rsp_step_next(const char *list, size_t *pos, struct mf_rsp_step *step)
{
    size_t i = *pos, len = strlen(list);
    if (i > len)
        return 0;
    while (i < len && is_blank(list[i]))
        i++;
    if (i == len) {
        *pos = len;
        return 0;
    }
    size_t e = find(list, len, i, MF_RSP_COMMAND_SEPARATOR);
    size_t after = e == len ? len : e + strlen(MF_RSP_COMMAND_SEPARATOR);
    while (e > i && is_blank(list[e - 1]))
        e--;
    const char *s = list + i;
    size_t n = e - i;
    memset(step, 0, sizeof *step);
    if (n > 8 && memcmp(s, "monitor", 7) == 0 && is_blank(s[7])) {
        size_t k = 8;
        while (k < n && is_blank(s[k]))
            k++;
        step->kind = MF_RSP_STEP_MONITOR;
        step->text = s + k;
        step->text_length = n - k;
    } else if (n > 7 && memcmp(s, "attach", 6) == 0 && is_blank(s[6])) {
        size_t k = 7;
        while (k < n && is_blank(s[k]))
            k++;
        uint64_t id;
        size_t end;
        if (k == n || mf_rsp_hex_u64(s + k, n - k, &id, &end) || end != n - k)
            return MF_EFORMAT;
        step->kind = MF_RSP_STEP_ATTACH;
        step->text = s + k;
        step->text_length = n - k;
    } else if (n == 8 && memcmp(s, "continue", 8) == 0) {
        step->kind = MF_RSP_STEP_CONTINUE;
        step->text = s;
        step->text_length = n;
    } else {
        return MF_EFORMAT;
    }
    *pos = after;
    return 1;
}

/* Checks a whole command list; `continue` only at the end and only where allowed. */
static int check_commands(const char *list, bool may_continue, char *error, size_t error_size)
{
    size_t pos = 0, len = strlen(list);
    struct mf_rsp_step step;
    bool continued = false;
    /* Each step consumes at least one character. */
    for (unsigned steps = 0; steps <= len; steps++) {
        size_t at = pos;
        int r = mf_rsp_step_next(list, &pos, &step);
        if (r == 0)
            return 0;
        if (r < 0) {
            size_t end = find(list, len, at, MF_RSP_COMMAND_SEPARATOR);
            while (at < end && is_blank(list[at]))
                at++;
            say(error, error_size,
                "'%.*s' is not a step (steps: 'monitor TEXT', 'attach N', 'continue', "
                "separated by '%s')",
                (int)(end - at > 40 ? 40 : end - at), list + at, MF_RSP_COMMAND_SEPARATOR);
            return MF_EFORMAT;
        }
        if (continued) {
            say(error, error_size, "'continue' must be the last step");
            return MF_EFORMAT;
        }
        if (step.kind == MF_RSP_STEP_CONTINUE) {
            if (!may_continue) {
                say(error, error_size, "'continue' is allowed only in run");
                return MF_EFORMAT;
            }
            continued = true;
        }
        if (step.kind == MF_RSP_STEP_MONITOR) {
            for (size_t k = 0; k < step.text_length; k++) {
                unsigned char c = (unsigned char)step.text[k];
                if (c < 0x20 || c > 0x7e) {
                    say(error, error_size, "a monitor command must be printable ASCII");
                    return MF_EFORMAT;
                }
            }
        }
    }
    return 0;
}

int mf_rsp_options_set(struct mf_rsp_options *options, const char *key, const char *value,
                       char *error, size_t error_size)
{
    static const char *const names[] = {"connect",    "halt",    "reset", "unlock",
                                        "mass_erase", "protect", "run"};
    char *fields[] = {options->connect,    options->halt,    options->reset, options->unlock,
                      options->mass_erase, options->protect, options->run};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!mf_ini_name_is(key, names[i]))
            continue;
        size_t n = strlen(value);
        if (n >= MF_RSP_COMMANDS_MAX) {
            say(error, error_size, "longer than %u characters", MF_RSP_COMMANDS_MAX - 1);
            return MF_EFORMAT;
        }
        int err = check_commands(value, mf_ini_name_is(key, "run") != 0, error, error_size);
        if (err)
            return err;
        memcpy(fields[i], value, n + 1);
        return 0;
    }
    uint32_t *ms = mf_ini_name_is(key, "timeout")        ? &options->timeout_ms
                   : mf_ini_name_is(key, "long_timeout") ? &options->long_timeout_ms
                                                         : NULL;
    if (!ms) {
        say(error, error_size,
            "unknown key (known: connect, halt, reset, unlock, mass_erase, protect, run, "
            "timeout, long_timeout)");
        return MF_EINVAL;
    }
    uint64_t v;
    if (xml_number(value, strlen(value), &v) || v < 1 || v > MF_RSP_TIMEOUT_MAX) {
        say(error, error_size, "'%.40s' is not a time in milliseconds (1..%u)", value,
            MF_RSP_TIMEOUT_MAX);
        return MF_EFORMAT;
    }
    *ms = (uint32_t)v;
    return 0;
}
