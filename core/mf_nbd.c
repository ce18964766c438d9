/* NBD server protocol engine (see mf_nbd.h): fixed newstyle handshake, simple replies, READ,
 * WRITE, FLUSH, TRIM, DISC over one block device, as the NBD protocol document
 * (NetworkBlockDevice/nbd, doc/proto.md) specifies them. A push state machine: every byte the
 * client sends is taken in once, whatever the split, and nothing but one device block and the
 * staging area is ever buffered. */
#include "mf_nbd.h"

#include "mf_err.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Magic numbers (big-endian on the wire). */
#define NBD_MAGIC_INIT         0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_MAGIC_OPTION       0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_MAGIC_OPTION_REPLY 0x0003e889045565a9ull
#define NBD_MAGIC_REQUEST      0x25609513u
#define NBD_MAGIC_SIMPLE_REPLY 0x67446698u

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS      (1u << 0)
#define NBD_FLAG_READ_ONLY      (1u << 1)
#define NBD_FLAG_SEND_FLUSH     (1u << 2)
#define NBD_FLAG_SEND_FUA       (1u << 3)
#define NBD_FLAG_SEND_TRIM      (1u << 5)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

/* Options. */
#define NBD_OPT_EXPORT_NAME      1u
#define NBD_OPT_ABORT            2u
#define NBD_OPT_LIST             3u
#define NBD_OPT_STARTTLS         5u
#define NBD_OPT_INFO             6u
#define NBD_OPT_GO               7u
#define NBD_OPT_STRUCTURED_REPLY 8u

/* Option replies. */
#define NBD_REP_ACK         1u
#define NBD_REP_SERVER      2u
#define NBD_REP_INFO        3u
#define NBD_REP_ERR_UNSUP   0x80000001u
#define NBD_REP_ERR_INVALID 0x80000003u
#define NBD_REP_ERR_UNKNOWN 0x80000006u
#define NBD_REP_ERR_TOO_BIG 0x80000009u

/* Information types of NBD_OPT_INFO / NBD_OPT_GO. */
#define NBD_INFO_EXPORT      0u
#define NBD_INFO_NAME        1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE  3u

/* Commands and command flags. */
#define NBD_CMD_READ     0u
#define NBD_CMD_WRITE    1u
#define NBD_CMD_DISC     2u
#define NBD_CMD_FLUSH    3u
#define NBD_CMD_TRIM     4u
#define NBD_CMD_FLAG_FUA (1u << 0)

/* Error values of replies. */
#define NBD_EPERM  1u
#define NBD_EIO    5u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u

/* Sizes of the fixed parts of messages. */
#define GREETING_SIZE       18u /* NBDMAGIC, IHAVEOPT, handshake flags */
#define CLIENT_FLAGS_SIZE   4u
#define OPTION_HEADER_SIZE  16u /* magic, option, length */
#define OPTION_REPLY_HEADER 20u /* magic, option, type, length */
#define REQUEST_SIZE        28u /* magic, flags, type, handle, offset, length */
#define SIMPLE_REPLY_SIZE   16u /* magic, error, handle */
#define EXPORT_NAME_ZEROES  124u

/* Largest trim handed to the device in one call (and one hold of the lock), in bytes. */
#define TRIM_CHUNK (64u << 20)

enum nbd_state {
    ST_NEW,
    ST_CLIENT_FLAGS,
    ST_OPTION_HEADER,
    ST_OPTION_DATA,
    ST_REQUEST,
    ST_WRITE_DATA,
    ST_CLOSED,
};

/* ---- byte order ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- session end ---- */

static int nbd_fail(struct mf_nbd *nbd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the session: err 0 is a clean end, anything else a dropped connection. */
static int nbd_fail(struct mf_nbd *nbd, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nbd->reason, sizeof nbd->reason, fmt, ap);
    va_end(ap);
    nbd->error = err;
    nbd->state = ST_CLOSED;
    nbd->phase = MF_NBD_PHASE_CLOSED;
    return err;
}

static int nbd_send(struct mf_nbd *nbd, const void *data, size_t size)
{
    int err = nbd->send(nbd->send_context, data, size);
    if (err)
        return nbd_fail(nbd, err < 0 ? err : MF_EIO, "sending to the client failed: %s",
                        mf_strerror(err < 0 ? err : MF_EIO));
    return 0;
}

/* ---- setup ---- */

bool mf_nbd_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t n = 0;
    for (; name[n]; n++) {
        if (n >= MF_NBD_NAME_MAX || (unsigned char)name[n] < 0x20 || (unsigned char)name[n] > 0x7e)
            return false;
    }
    return true;
}

int mf_nbd_init(struct mf_nbd *nbd, const struct mf_nbd_config *config)
{
    assert(nbd && config && config->bd && config->send && config->buffer);
    const struct mf_bd *bd = config->bd;
    assert(bd->block_size >= 512 && (bd->block_size & (bd->block_size - 1)) == 0);
    assert(bd->block_count > 0);
    const char *name = config->export_name ? config->export_name : MF_NBD_EXPORT_DEFAULT;
    if (!mf_nbd_name_valid(name))
        return MF_EINVAL;
    if (config->buffer_size < MF_NBD_BUFFER_MIN || config->buffer_size / bd->block_size < 2)
        return MF_EINVAL;
    /* The export must be addressable with 64-bit offsets. */
    if (bd->block_count > UINT64_MAX / bd->block_size)
        return MF_EINVAL;

    memset(nbd, 0, sizeof *nbd);
    nbd->bd = bd;
    if (config->lock)
        nbd->lock = *config->lock;
    nbd->read_only = config->read_only;
    memcpy(nbd->export_name, name, strlen(name) + 1);
    nbd->send = config->send;
    nbd->send_context = config->send_context;
    nbd->scratch = config->buffer;
    nbd->stage = nbd->scratch + bd->block_size;
    nbd->stage_size = (config->buffer_size / bd->block_size - 1) * bd->block_size;
    nbd->export_size = mf_bd_size(bd);
    /* The device is shared and has no cache of its own per connection, and FLUSH syncs all of
     * it: what the spec asks of a server that offers CAN_MULTI_CONN. */
    uint16_t flags =
        NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;
    if (nbd->read_only)
        flags |= NBD_FLAG_READ_ONLY;
    else
        flags |= NBD_FLAG_SEND_TRIM;
    nbd->transmission_flags = flags;
    nbd->phase = MF_NBD_PHASE_NEW;
    nbd->state = ST_NEW;
    return 0;
}

int mf_nbd_start(struct mf_nbd *nbd)
{
    assert(nbd->state == ST_NEW);
    uint8_t greeting[GREETING_SIZE];
    put64(greeting, NBD_MAGIC_INIT);
    put64(greeting + 8, NBD_MAGIC_OPTION);
    put16(greeting + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    nbd->state = ST_CLIENT_FLAGS;
    nbd->phase = MF_NBD_PHASE_HANDSHAKE;
    return nbd_send(nbd, greeting, sizeof greeting);
}

/* ---- device access (always under the lock, never while sending) ---- */

static uint32_t nbd_error_of(int err)
{
    switch (err) {
    case 0:
        return 0;
    case MF_EPERM:
    case MF_EACCES:
    case MF_EROFS:
        return NBD_EPERM;
    case MF_ENOSPC:
    case MF_EFBIG:
        return NBD_ENOSPC;
    case MF_EINVAL:
    case MF_ERANGE:
        return NBD_EINVAL;
    default:
        return NBD_EIO;
    }
}

static int locked_read(struct mf_nbd *nbd, mf_block_t block, void *buffer, size_t count)
{
    mf_lock_take(&nbd->lock);
    int err = mf_bd_read(nbd->bd, block, buffer, count);
    mf_lock_give(&nbd->lock);
    return err;
}

static int locked_sync(struct mf_nbd *nbd)
{
    mf_lock_take(&nbd->lock);
    int err = mf_bd_sync(nbd->bd);
    mf_lock_give(&nbd->lock);
    return err;
}

/* True when [offset, offset + length) lies inside the export (overflow-safe). */
static bool in_export(const struct mf_nbd *nbd, uint64_t offset, uint64_t length)
{
    return offset <= nbd->export_size && length <= nbd->export_size - offset;
}

/* ---- handshake ---- */

static int send_option_reply(struct mf_nbd *nbd, uint32_t type, const void *data, uint32_t size)
{
    uint8_t header[OPTION_REPLY_HEADER];
    put64(header, NBD_MAGIC_OPTION_REPLY);
    put32(header + 8, nbd->option);
    put32(header + 12, type);
    put32(header + 16, size);
    int err = nbd_send(nbd, header, sizeof header);
    if (!err && size)
        err = nbd_send(nbd, data, size);
    return err;
}

/* An error reply carrying a message for the user, as the spec allows. */
static int send_option_error(struct mf_nbd *nbd, uint32_t type, const char *message)
{
    return send_option_reply(nbd, type, message, (uint32_t)strlen(message));
}

/* True when `name` (`size` bytes, from the client) names our export: "" or the configured
 * name, compared byte for byte. */
static bool export_matches(const struct mf_nbd *nbd, const uint8_t *name, uint64_t size)
{
    if (size == 0)
        return true;
    size_t ours = strlen(nbd->export_name);
    return size == ours && memcmp(name, nbd->export_name, ours) == 0;
}

static void enter_transmission(struct mf_nbd *nbd)
{
    nbd->phase = MF_NBD_PHASE_TRANSMISSION;
    nbd->state = ST_REQUEST;
}

static int opt_export_name(struct mf_nbd *nbd, bool truncated)
{
    if (truncated || !export_matches(nbd, nbd->stage, nbd->option_length))
        return nbd_fail(nbd, MF_ENOENT,
                        "option at byte %llu: NBD_OPT_EXPORT_NAME asks for an export that does "
                        "not exist (this server has \"%s\"); the protocol requires hanging up",
                        (unsigned long long)nbd->message_start, nbd->export_name);
    uint8_t reply[8 + 2 + EXPORT_NAME_ZEROES] = {0};
    put64(reply, nbd->export_size);
    put16(reply + 8, nbd->transmission_flags);
    size_t size = nbd->no_zeroes ? 10u : sizeof reply;
    int err = nbd_send(nbd, reply, size);
    if (!err)
        enter_transmission(nbd);
    return err;
}

static int opt_list(struct mf_nbd *nbd)
{
    if (nbd->option_length != 0)
        return send_option_error(nbd, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    uint8_t reply[4 + MF_NBD_NAME_MAX + sizeof MF_NBD_DESCRIPTION];
    size_t name = strlen(nbd->export_name);
    put32(reply, (uint32_t)name);
    memcpy(reply + 4, nbd->export_name, name);
    memcpy(reply + 4 + name, MF_NBD_DESCRIPTION, sizeof MF_NBD_DESCRIPTION - 1);
    int err = send_option_reply(nbd, NBD_REP_SERVER, reply,
                                (uint32_t)(4 + name + sizeof MF_NBD_DESCRIPTION - 1));
    if (!err)
        err = send_option_reply(nbd, NBD_REP_ACK, NULL, 0);
    return err;
}

static int send_info(struct mf_nbd *nbd, uint16_t type, const void *payload, size_t size)
{
    uint8_t info[2 + MF_NBD_NAME_MAX + sizeof MF_NBD_DESCRIPTION];
    assert(size <= sizeof info - 2);
    put16(info, type);
    memcpy(info + 2, payload, size);
    return send_option_reply(nbd, NBD_REP_INFO, info, (uint32_t)(2 + size));
}

/* NBD_OPT_INFO and NBD_OPT_GO: name length, name, count of information requests, requests. */
static int opt_info_go(struct mf_nbd *nbd, bool truncated)
{
    const uint8_t *data = nbd->stage;
    uint32_t length = nbd->option_length;
    if (truncated)
        return send_option_error(nbd, NBD_REP_ERR_TOO_BIG, "option data too long");
    if (length < 6)
        return send_option_error(nbd, NBD_REP_ERR_INVALID, "option data shorter than 6 bytes");
    uint32_t name_length = get32(data);
    if (name_length > length - 6)
        return send_option_error(nbd, NBD_REP_ERR_INVALID,
                                 "export name longer than the option data");
    uint32_t count = get16(data + 4 + name_length);
    if ((uint64_t)length != 4u + name_length + 2u + 2u * (uint64_t)count)
        return send_option_error(nbd, NBD_REP_ERR_INVALID,
                                 "option length does not match the information requests");
    if (!export_matches(nbd, data + 4, name_length))
        return send_option_error(nbd, NBD_REP_ERR_UNKNOWN,
                                 "no such export (this server has one export, see NBD_OPT_LIST)");
    bool want_name = false, want_description = false;
    for (uint32_t i = 0; i < count; i++) {
        uint16_t type = get16(data + 4 + name_length + 2 + 2 * i);
        if (type == NBD_INFO_NAME)
            want_name = true;
        else if (type == NBD_INFO_DESCRIPTION)
            want_description = true;
    }

    uint8_t payload[12];
    put64(payload, nbd->export_size);
    put16(payload + 8, nbd->transmission_flags);
    int err = send_info(nbd, NBD_INFO_EXPORT, payload, 10);
    /* Sent whether asked for or not: the maximum differs from the protocol's default. */
    uint32_t preferred =
        nbd->bd->block_size > MF_NBD_BLOCK_PREFERRED ? nbd->bd->block_size : MF_NBD_BLOCK_PREFERRED;
    put32(payload, MF_NBD_BLOCK_MINIMUM);
    put32(payload + 4, preferred);
    put32(payload + 8, MF_NBD_REQUEST_MAX);
    if (!err)
        err = send_info(nbd, NBD_INFO_BLOCK_SIZE, payload, 12);
    if (!err && want_name)
        err = send_info(nbd, NBD_INFO_NAME, nbd->export_name, strlen(nbd->export_name));
    if (!err && want_description)
        err =
            send_info(nbd, NBD_INFO_DESCRIPTION, MF_NBD_DESCRIPTION, sizeof MF_NBD_DESCRIPTION - 1);
    if (!err)
        err = send_option_reply(nbd, NBD_REP_ACK, NULL, 0);
    if (!err && nbd->option == NBD_OPT_GO)
        enter_transmission(nbd);
    return err;
}

/* Bytes of option data kept in the staging area; the rest of a longer option is skipped. */
static size_t option_room(const struct mf_nbd *nbd)
{
    return nbd->stage_size < MF_NBD_OPTION_MAX ? nbd->stage_size : MF_NBD_OPTION_MAX;
}

/* The whole option is in (its first option_room() bytes in the staging area). */
static int handle_option(struct mf_nbd *nbd)
{
    bool truncated = nbd->option_length > option_room(nbd);
    nbd->state = ST_OPTION_HEADER;
    switch (nbd->option) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(nbd, truncated);
    case NBD_OPT_ABORT:
        /* The client may already be gone: a failed ACK still ends the session cleanly. */
        (void)send_option_reply(nbd, NBD_REP_ACK, NULL, 0);
        return nbd_fail(nbd, 0, "client ended the handshake (NBD_OPT_ABORT)");
    case NBD_OPT_LIST:
        return opt_list(nbd);
    case NBD_OPT_STARTTLS:
        return send_option_error(nbd, NBD_REP_ERR_UNSUP, "TLS is not supported");
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(nbd, truncated);
    case NBD_OPT_STRUCTURED_REPLY:
        return send_option_error(nbd, NBD_REP_ERR_UNSUP, "only simple replies are supported");
    default:
        return send_option_error(nbd, NBD_REP_ERR_UNSUP, "option not supported");
    }
}

static int on_client_flags(struct mf_nbd *nbd)
{
    uint32_t flags = get32(nbd->header);
    uint32_t unknown = flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (unknown)
        return nbd_fail(
            nbd, MF_EPROTO, "client flags at byte %llu: 0x%08lX has unknown bits 0x%08lX",
            (unsigned long long)nbd->message_start, (unsigned long)flags, (unsigned long)unknown);
    nbd->no_zeroes = (flags & NBD_FLAG_C_NO_ZEROES) != 0;
    nbd->state = ST_OPTION_HEADER;
    return 0;
}

static int on_option_header(struct mf_nbd *nbd)
{
    uint64_t magic = get64(nbd->header);
    if (magic != NBD_MAGIC_OPTION)
        return nbd_fail(nbd, MF_EPROTO,
                        "option at byte %llu: bad magic 0x%016llX (expected \"IHAVEOPT\")",
                        (unsigned long long)nbd->message_start, (unsigned long long)magic);
    if (nbd->stats.options >= MF_NBD_OPTIONS_MAX)
        return nbd_fail(nbd, MF_EPROTO, "option at byte %llu: more than %u options",
                        (unsigned long long)nbd->message_start, MF_NBD_OPTIONS_MAX);
    nbd->stats.options++;
    nbd->option = get32(nbd->header + 8);
    nbd->option_length = get32(nbd->header + 12);
    nbd->option_fill = 0;
    if (nbd->option_length == 0)
        return handle_option(nbd);
    nbd->state = ST_OPTION_DATA;
    return 0;
}

/* Option data: the first bytes are kept, the rest (of an option too long to matter) skipped. */
static size_t take_option_data(struct mf_nbd *nbd, const uint8_t *data, size_t size, int *err)
{
    size_t kept = option_room(nbd);
    uint32_t left = nbd->option_length - nbd->option_fill;
    size_t take = size < left ? size : left;
    if (nbd->option_fill < kept) {
        size_t room = kept - nbd->option_fill;
        memcpy(nbd->stage + nbd->option_fill, data, take < room ? take : room);
    }
    nbd->option_fill += (uint32_t)take;
    if (nbd->option_fill == nbd->option_length)
        *err = handle_option(nbd);
    return take;
}

/* ---- transmission ---- */

static int send_simple_reply(struct mf_nbd *nbd, uint32_t error)
{
    uint8_t reply[SIMPLE_REPLY_SIZE];
    put32(reply, NBD_MAGIC_SIMPLE_REPLY);
    put32(reply + 4, error);
    put64(reply + 8, nbd->handle);
    if (error)
        nbd->stats.error_replies++;
    return nbd_send(nbd, reply, sizeof reply);
}

/* Command flags: only FUA is defined for the commands we offer (and valid on all of them). */
static bool flags_ok(const struct mf_nbd *nbd)
{
    return (nbd->command_flags & ~(uint32_t)NBD_CMD_FLAG_FUA) == 0;
}

/* Reads in stage-sized pieces, so that the lock is never held while the client receives. The
 * reply header goes out only once the first piece is read, so errors found up to then are
 * reported; a device error after that leaves hanging up as the only honest answer. */
static int do_read(struct mf_nbd *nbd)
{
    const uint32_t bs = nbd->bd->block_size;
    uint64_t pos = nbd->offset;
    const uint64_t end = nbd->offset + nbd->length;
    bool replied = false;
    while (pos < end) {
        mf_block_t block = pos / bs;
        size_t skip = (size_t)(pos % bs);
        uint64_t span = end - block * bs; /* bytes from the block start to the end */
        uint64_t blocks = (span + bs - 1) / bs;
        size_t max_blocks = nbd->stage_size / bs;
        size_t count = blocks < max_blocks ? (size_t)blocks : max_blocks;
        int err = locked_read(nbd, block, nbd->stage, count);
        if (err) {
            if (!replied)
                return send_simple_reply(nbd, nbd_error_of(err));
            return nbd_fail(nbd, MF_EIO,
                            "read at export byte %llu failed after the reply began (%s); "
                            "hanging up as the protocol requires",
                            (unsigned long long)pos, mf_strerror(err));
        }
        if (!replied) {
            err = send_simple_reply(nbd, 0);
            if (err)
                return err;
            replied = true;
        }
        size_t n = count * bs - skip;
        if (n > end - pos)
            n = (size_t)(end - pos);
        err = nbd_send(nbd, nbd->stage + skip, n);
        if (err)
            return err;
        pos += n;
    }
    nbd->stats.bytes_read += nbd->length;
    return 0;
}

/* Writes the staged bytes [max(offset, stage_base), write_pos) to the device. The staging area
 * starts on a block boundary; a partial first or last block is completed from the device
 * (read-modify-write) under the same hold of the lock as the write, so concurrent clients
 * writing different bytes of one block do not undo each other. */
static int flush_stage(struct mf_nbd *nbd)
{
    const uint32_t bs = nbd->bd->block_size;
    const uint64_t base = nbd->stage_base;
    const uint64_t from = nbd->offset > base ? nbd->offset : base;
    const uint64_t to = nbd->write_pos;
    const size_t head = (size_t)(from - base);    /* bytes before the data, < bs */
    const uint64_t end = (to + bs - 1) / bs * bs; /* end of the last block touched */
    const size_t count = (size_t)((end - base) / bs);
    const size_t tail_at = (size_t)(to - base); /* first byte after the data */
    const size_t tail = (size_t)(end - to);     /* bytes after the data, < bs */
    assert(head < bs && tail < bs && end - base <= nbd->stage_size && from < to);

    mf_lock_take(&nbd->lock);
    int err = 0;
    bool have_first = false;
    if (head) {
        err = mf_bd_read(nbd->bd, base / bs, nbd->scratch, 1);
        if (!err)
            memcpy(nbd->stage, nbd->scratch, head);
        have_first = true;
    }
    if (!err && tail) {
        mf_block_t last = end / bs - 1;
        if (!(have_first && last == base / bs))
            err = mf_bd_read(nbd->bd, last, nbd->scratch, 1);
        if (!err)
            memcpy(nbd->stage + tail_at, nbd->scratch + (tail_at % bs), tail);
    }
    if (!err)
        err = mf_bd_prog(nbd->bd, base / bs, nbd->stage, count);
    mf_lock_give(&nbd->lock);
    nbd->stage_base = end;
    return err;
}

static int finish_write(struct mf_nbd *nbd)
{
    nbd->state = ST_REQUEST;
    if (!nbd->write_error && (nbd->command_flags & NBD_CMD_FLAG_FUA))
        nbd->write_error = nbd_error_of(locked_sync(nbd));
    if (!nbd->write_error)
        nbd->stats.bytes_written += nbd->length;
    return send_simple_reply(nbd, nbd->write_error);
}

/* WRITE payload: staged and written as the staging area fills, or skipped after a refusal or a
 * device error (the reply then carries the error). */
static size_t take_write_data(struct mf_nbd *nbd, const uint8_t *data, size_t size, int *err)
{
    size_t take = size < nbd->remaining ? size : nbd->remaining;
    if (!nbd->write_error) {
        uint64_t stage_end = nbd->stage_base + nbd->stage_size;
        uint64_t room = stage_end - nbd->write_pos;
        if (take > room)
            take = (size_t)room;
        memcpy(nbd->stage + (nbd->write_pos - nbd->stage_base), data, take);
        nbd->write_pos += take;
        if (nbd->write_pos == stage_end || nbd->write_pos == nbd->write_end) {
            int werr = flush_stage(nbd);
            if (werr)
                nbd->write_error = nbd_error_of(werr);
        }
    }
    nbd->remaining -= (uint32_t)take;
    if (nbd->remaining == 0)
        *err = finish_write(nbd);
    return take;
}

static int cmd_write(struct mf_nbd *nbd)
{
    nbd->stats.writes++;
    uint32_t error = 0;
    if (!flags_ok(nbd))
        error = NBD_EINVAL;
    else if (nbd->read_only)
        error = NBD_EPERM;
    else if (nbd->length == 0 || nbd->length > MF_NBD_REQUEST_MAX)
        error = NBD_EINVAL;
    else if (!in_export(nbd, nbd->offset, nbd->length))
        error = NBD_ENOSPC;
    if (nbd->length == 0)
        return send_simple_reply(nbd, error);
    /* The payload follows in any case and is taken in (skipped when refused). */
    nbd->write_error = error;
    nbd->remaining = nbd->length;
    if (!error) {
        nbd->write_pos = nbd->offset;
        nbd->write_end = nbd->offset + nbd->length;
        nbd->stage_base = nbd->offset / nbd->bd->block_size * nbd->bd->block_size;
    }
    nbd->state = ST_WRITE_DATA;
    return 0;
}

static int cmd_read(struct mf_nbd *nbd)
{
    nbd->stats.reads++;
    if (!flags_ok(nbd) || nbd->length == 0 || nbd->length > MF_NBD_REQUEST_MAX ||
        !in_export(nbd, nbd->offset, nbd->length))
        return send_simple_reply(nbd, NBD_EINVAL);
    return do_read(nbd);
}

/* Discards the whole device blocks inside the range; partial blocks at either end keep their
 * bytes (TRIM is a hint, and the spec lets a server round inward). */
static int cmd_trim(struct mf_nbd *nbd)
{
    nbd->stats.trims++;
    if (!flags_ok(nbd) || nbd->length == 0 || !in_export(nbd, nbd->offset, nbd->length))
        return send_simple_reply(nbd, NBD_EINVAL);
    if (nbd->read_only)
        return send_simple_reply(nbd, NBD_EPERM);
    const uint32_t bs = nbd->bd->block_size;
    mf_block_t first = (nbd->offset + bs - 1) / bs;
    mf_block_t end = (nbd->offset + nbd->length) / bs;
    int err = 0;
    while (!err && first < end) {
        mf_block_t chunk = TRIM_CHUNK / bs;
        mf_block_t count = end - first < chunk ? end - first : chunk;
        mf_lock_take(&nbd->lock);
        err = mf_bd_erase(nbd->bd, first, (size_t)count);
        mf_lock_give(&nbd->lock);
        if (!err)
            nbd->stats.bytes_trimmed += count * bs;
        first += count;
    }
    if (!err && (nbd->command_flags & NBD_CMD_FLAG_FUA))
        err = locked_sync(nbd);
    return send_simple_reply(nbd, nbd_error_of(err));
}

static int cmd_flush(struct mf_nbd *nbd)
{
    nbd->stats.flushes++;
    /* Offset and length are reserved (zero); a client that sets them still gets its flush. */
    if (!flags_ok(nbd))
        return send_simple_reply(nbd, NBD_EINVAL);
    return send_simple_reply(nbd, nbd_error_of(locked_sync(nbd)));
}

static int on_request(struct mf_nbd *nbd)
{
    const uint8_t *h = nbd->header;
    uint32_t magic = get32(h);
    if (magic != NBD_MAGIC_REQUEST)
        return nbd_fail(nbd, MF_EPROTO,
                        "request at byte %llu: bad magic 0x%08lX (expected 0x%08lX)",
                        (unsigned long long)nbd->message_start, (unsigned long)magic,
                        (unsigned long)NBD_MAGIC_REQUEST);
    nbd->command_flags = get16(h + 4);
    nbd->command = get16(h + 6);
    nbd->handle = get64(h + 8);
    nbd->offset = get64(h + 16);
    nbd->length = get32(h + 24);
    nbd->stats.requests++;
    switch (nbd->command) {
    case NBD_CMD_READ:
        return cmd_read(nbd);
    case NBD_CMD_WRITE:
        return cmd_write(nbd);
    case NBD_CMD_DISC:
        return nbd_fail(nbd, 0, "client disconnected (NBD_CMD_DISC)");
    case NBD_CMD_FLUSH:
        return cmd_flush(nbd);
    case NBD_CMD_TRIM:
        return cmd_trim(nbd);
    default:
        /* Unknown command: the spec's answer. Any payload it had fails the next magic. */
        return send_simple_reply(nbd, NBD_EINVAL);
    }
}

/* ---- input ---- */

/* Collects up to `need` bytes of a fixed-size message into nbd->header. */
static size_t collect(struct mf_nbd *nbd, const uint8_t *data, size_t size, size_t need)
{
    if (nbd->header_fill == 0)
        nbd->message_start = nbd->consumed;
    size_t take = need - nbd->header_fill;
    if (take > size)
        take = size;
    memcpy(nbd->header + nbd->header_fill, data, take);
    nbd->header_fill += take;
    return take;
}

/* When the fixed-size message is complete: reset the collector and hand it on. */
static bool collected(struct mf_nbd *nbd, size_t need)
{
    if (nbd->header_fill < need)
        return false;
    nbd->header_fill = 0;
    return true;
}

int mf_nbd_input(struct mf_nbd *nbd, const void *data, size_t size)
{
    assert(nbd->state != ST_NEW); /* mf_nbd_start first */
    const uint8_t *p = data;
    /* Every pass takes at least one byte, so the loop ends within `size` passes. */
    while (size > 0 && nbd->state != ST_CLOSED) {
        size_t used = 0;
        int err = 0;
        switch (nbd->state) {
        case ST_CLIENT_FLAGS:
            used = collect(nbd, p, size, CLIENT_FLAGS_SIZE);
            if (collected(nbd, CLIENT_FLAGS_SIZE))
                err = on_client_flags(nbd);
            break;
        case ST_OPTION_HEADER:
            used = collect(nbd, p, size, OPTION_HEADER_SIZE);
            if (collected(nbd, OPTION_HEADER_SIZE))
                err = on_option_header(nbd);
            break;
        case ST_OPTION_DATA:
            used = take_option_data(nbd, p, size, &err);
            break;
        case ST_REQUEST:
            used = collect(nbd, p, size, REQUEST_SIZE);
            if (collected(nbd, REQUEST_SIZE))
                err = on_request(nbd);
            break;
        case ST_WRITE_DATA:
            used = take_write_data(nbd, p, size, &err);
            break;
        default:
            assert(0);
            return MF_EINVAL;
        }
        assert(used > 0 && used <= size);
        p += used;
        size -= used;
        nbd->consumed += used;
        if (err)
            return err;
    }
    return nbd->state == ST_CLOSED ? nbd->error : 0;
}

enum mf_nbd_phase mf_nbd_phase(const struct mf_nbd *nbd)
{
    return nbd->phase;
}

bool mf_nbd_closed(const struct mf_nbd *nbd)
{
    return nbd->phase == MF_NBD_PHASE_CLOSED;
}

const char *mf_nbd_reason(const struct mf_nbd *nbd)
{
    return nbd->reason;
}

uint64_t mf_nbd_export_size(const struct mf_nbd *nbd)
{
    return nbd->export_size;
}

uint16_t mf_nbd_transmission_flags(const struct mf_nbd *nbd)
{
    return nbd->transmission_flags;
}

const struct mf_nbd_stats *mf_nbd_stats(const struct mf_nbd *nbd)
{
    return &nbd->stats;
}
