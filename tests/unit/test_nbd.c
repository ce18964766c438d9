/* The NBD protocol engine (mf_nbd) against scripted client byte streams: exact handshake and
 * reply bytes built here from the protocol document (NetworkBlockDevice/nbd doc/proto.md, with
 * our own constants, not the engine's), reads and unaligned writes against a model of the disk,
 * hostile requests (out of range, oversized, zero-length, unknown commands and flags, bad magic,
 * too many options), device errors from the fault-injecting device, durability of FLUSH and FUA,
 * the lock discipline, and split invariance (any chunking of the input gives the same bytes). */
#include "mf_bd.h"
#include "mf_err.h"
#include "mf_faultbd.h"
#include "mf_nbd.h"
#include "mf_rambd.h"
#include "mf_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Wire values from the protocol document, written out independently of core/mf_nbd.c. */
#define MAGIC_INIT         0x4e42444d41474943ull
#define MAGIC_OPT          0x49484156454f5054ull
#define MAGIC_OPT_REPLY    0x0003e889045565a9ull
#define MAGIC_REQUEST      0x25609513u
#define MAGIC_SIMPLE_REPLY 0x67446698u
#define OPT_EXPORT_NAME    1u
#define OPT_ABORT          2u
#define OPT_LIST           3u
#define OPT_STARTTLS       5u
#define OPT_INFO           6u
#define OPT_GO             7u
#define OPT_STRUCTURED     8u
#define OPT_SET_META       10u
#define REP_ACK            1u
#define REP_SERVER         2u
#define REP_INFO           3u
#define REP_ERR_UNSUP      0x80000001u
#define REP_ERR_INVALID    0x80000003u
#define REP_ERR_UNKNOWN    0x80000006u
#define REP_ERR_TOO_BIG    0x80000009u
#define INFO_EXPORT        0u
#define INFO_NAME          1u
#define INFO_DESCRIPTION   2u
#define INFO_BLOCK_SIZE    3u
#define CMD_READ           0u
#define CMD_WRITE          1u
#define CMD_DISC           2u
#define CMD_FLUSH          3u
#define CMD_TRIM           4u
#define CMD_CACHE          5u
#define CMD_WRITE_ZEROES   6u
#define CMD_BLOCK_STATUS   7u
#define FLAG_FUA           1u
#define FLAG_DF            4u
#define E_PERM             1u
#define E_IO               5u
#define E_INVAL            22u
#define E_NOSPC            28u
/* HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | CAN_MULTI_CONN */
#define TX_FLAGS_RW        0x012du
/* HAS_FLAGS | READ_ONLY | SEND_FLUSH | SEND_FUA | CAN_MULTI_CONN */
#define TX_FLAGS_RO        0x010fu

/* ---- byte strings ---- */

struct bytes {
    uint8_t *data;
    size_t size, cap;
};

static void bytes_add(struct bytes *b, const void *data, size_t size)
{
    if (b->size + size > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->size + size)
            cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    if (size)
        memcpy(b->data + b->size, data, size);
    b->size += size;
}

static void be(struct bytes *b, uint64_t v, unsigned width)
{
    uint8_t x[8];
    for (unsigned i = 0; i < width; i++)
        x[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
    bytes_add(b, x, width);
}

static uint64_t get_be(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v = v << 8 | p[i];
    return v;
}

/* Client messages. */
static void c_option(struct bytes *b, uint32_t option, const void *data, uint32_t size)
{
    be(b, MAGIC_OPT, 8);
    be(b, option, 4);
    be(b, size, 4);
    bytes_add(b, data, size);
}

static void c_info_go(struct bytes *b, uint32_t option, const char *name, const uint16_t *infos,
                      unsigned count)
{
    struct bytes d = {0};
    be(&d, strlen(name), 4);
    bytes_add(&d, name, strlen(name));
    be(&d, count, 2);
    for (unsigned i = 0; i < count; i++)
        be(&d, infos[i], 2);
    c_option(b, option, d.data, (uint32_t)d.size);
    free(d.data);
}

static void c_request(struct bytes *b, uint16_t flags, uint16_t type, uint64_t handle,
                      uint64_t offset, uint32_t length)
{
    be(b, MAGIC_REQUEST, 4);
    be(b, flags, 2);
    be(b, type, 2);
    be(b, handle, 8);
    be(b, offset, 8);
    be(b, length, 4);
}

/* Server messages, for expected transcripts. */
static void s_option_reply(struct bytes *b, uint32_t option, uint32_t type, const void *data,
                           uint32_t size)
{
    be(b, MAGIC_OPT_REPLY, 8);
    be(b, option, 4);
    be(b, type, 4);
    be(b, size, 4);
    bytes_add(b, data, size);
}

static void s_simple_reply(struct bytes *b, uint32_t error, uint64_t handle)
{
    be(b, MAGIC_SIMPLE_REPLY, 4);
    be(b, error, 4);
    be(b, handle, 8);
}

/* ---- the rig: a RAM disk, a fault device, partition slice, a lock-checking device ---- */

struct rig_options {
    uint32_t block_size; /* 0: 512 */
    mf_block_t blocks;   /* disk blocks; 0: 96 */
    mf_block_t first;    /* partition start; 0 with blocks 0: 16 */
    mf_block_t count;    /* partition blocks; 0: 64 */
    size_t buffer_size;  /* 0: MF_NBD_BUFFER_MIN */
    size_t cache_blocks; /* fault device cache; 0: write-through */
    bool read_only;
    const char *export_name;
    int fail_send_after; /* send calls that succeed before one fails; 0: never fails */
};

struct rig {
    struct rig_options o;
    uint8_t *disk;  /* the RAM medium (whole disk) */
    uint8_t *model; /* what the whole disk must hold */
    size_t disk_size;
    uint8_t *cache;
    uint8_t *buffer;
    struct mf_rambd ram;
    struct mf_faultbd fault;
    struct mf_bd_slice slice;
    struct mf_bd checked; /* the slice, asserting the lock is held */
    struct mf_lock lock;
    int lock_depth;
    uint64_t lock_takes;
    uint64_t unlocked_device_calls;
    uint64_t out_of_range_calls; /* the engine must check bounds itself, not rely on the device */
    uint64_t sends_under_lock;
    int sends;
    struct mf_nbd nbd;
    struct bytes out;
    size_t out_pos;
};

static void rig_lock(void *context)
{
    struct rig *r = context;
    r->lock_depth++;
    r->lock_takes++;
}

static void rig_unlock(void *context)
{
    struct rig *r = context;
    r->lock_depth--;
}

static void check_locked(const struct mf_bd *bd)
{
    struct rig *r = bd->context;
    if (r->lock_depth != 1)
        r->unlocked_device_calls++;
}

static void check_range(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    struct rig *r = bd->context;
    if (block > bd->block_count || count > bd->block_count - block)
        r->out_of_range_calls++;
}

static int checked_read(const struct mf_bd *bd, mf_block_t block, void *buffer, size_t count)
{
    check_locked(bd);
    check_range(bd, block, count);
    return mf_bd_read(&((struct rig *)bd->context)->slice.bd, block, buffer, count);
}

static int checked_prog(const struct mf_bd *bd, mf_block_t block, const void *buffer, size_t count)
{
    check_locked(bd);
    check_range(bd, block, count);
    return mf_bd_prog(&((struct rig *)bd->context)->slice.bd, block, buffer, count);
}

static int checked_erase(const struct mf_bd *bd, mf_block_t block, size_t count)
{
    check_locked(bd);
    check_range(bd, block, count);
    return mf_bd_erase(&((struct rig *)bd->context)->slice.bd, block, count);
}

static int checked_sync(const struct mf_bd *bd)
{
    check_locked(bd);
    return mf_bd_sync(&((struct rig *)bd->context)->slice.bd);
}

static int rig_send(void *context, const void *data, size_t size)
{
    struct rig *r = context;
    if (r->lock_depth != 0)
        r->sends_under_lock++;
    r->sends++;
    if (r->o.fail_send_after && r->sends > r->o.fail_send_after)
        return MF_EIO;
    bytes_add(&r->out, data, size);
    return 0;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 131u + (i >> 9) * 7u + 3u);
}

static struct rig *rig_new(const struct rig_options *options)
{
    struct rig *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->o = options ? *options : (struct rig_options){0};
    if (!r->o.block_size)
        r->o.block_size = 512;
    if (!r->o.blocks) {
        r->o.blocks = 96;
        r->o.first = 16;
    }
    if (!r->o.count)
        r->o.count = 64;
    if (!r->o.buffer_size)
        r->o.buffer_size = MF_NBD_BUFFER_MIN;
    r->disk_size = (size_t)(r->o.blocks * r->o.block_size);
    r->disk = malloc(r->disk_size);
    r->model = malloc(r->disk_size);
    r->buffer = malloc(r->o.buffer_size);
    assert_non_null(r->disk);
    assert_non_null(r->model);
    assert_non_null(r->buffer);
    for (size_t i = 0; i < r->disk_size; i++)
        r->disk[i] = r->model[i] = pattern(i);
    mf_rambd_init(&r->ram, r->disk, r->o.block_size, r->o.blocks);
    struct mf_faultbd_config fc = {.seed = 1};
    if (r->o.cache_blocks) {
        r->cache = malloc(r->o.cache_blocks * r->o.block_size);
        assert_non_null(r->cache);
        fc.cache = r->cache;
        fc.cache_size = r->o.cache_blocks * r->o.block_size;
    }
    mf_faultbd_init(&r->fault, &r->ram.bd, &fc);
    mf_bd_slice_init(&r->slice, &r->fault.bd, r->o.first, r->o.count);
    r->checked = (struct mf_bd){
        .context = r,
        .read = checked_read,
        .prog = checked_prog,
        .erase = checked_erase,
        .sync = checked_sync,
        .block_size = r->o.block_size,
        .block_count = r->o.count,
    };
    r->lock = (struct mf_lock){.lock = rig_lock, .unlock = rig_unlock, .context = r};
    struct mf_nbd_config config = {
        .bd = &r->checked,
        .lock = &r->lock,
        .export_name = r->o.export_name,
        .read_only = r->o.read_only,
        .send = rig_send,
        .send_context = r,
        .buffer = r->buffer,
        .buffer_size = r->o.buffer_size,
    };
    assert_int_equal(mf_nbd_init(&r->nbd, &config), 0);
    return r;
}

static void rig_free(struct rig *r)
{
    /* Every test ends with the lock released and never held while sending. */
    assert_int_equal(r->lock_depth, 0);
    assert_int_equal(r->unlocked_device_calls, 0);
    assert_int_equal(r->out_of_range_calls, 0);
    assert_int_equal(r->sends_under_lock, 0);
    free(r->disk);
    free(r->model);
    free(r->cache);
    free(r->buffer);
    free(r->out.data);
    free(r);
}

static uint64_t export_size(const struct rig *r)
{
    return (uint64_t)r->o.count * r->o.block_size;
}

static uint8_t *model_at(struct rig *r, uint64_t export_offset)
{
    return r->model + r->o.first * r->o.block_size + export_offset;
}

/* The whole disk (partition and everything around it) equals the model. */
static void check_disk(struct rig *r)
{
    for (size_t i = 0; i < r->disk_size; i++) {
        if (r->disk[i] != r->model[i])
            fail_msg("disk byte %zu (export byte %lld) is 0x%02X, expected 0x%02X", i,
                     (long long)i - (long long)(r->o.first * r->o.block_size), r->disk[i],
                     r->model[i]);
    }
}

static int feed_rc(struct rig *r, const struct bytes *b)
{
    return mf_nbd_input(&r->nbd, b->data, b->size);
}

static void feed(struct rig *r, struct bytes *b)
{
    int rc = feed_rc(r, b);
    if (rc)
        fail_msg("mf_nbd_input: %s (%s)", mf_strerror(rc), mf_nbd_reason(&r->nbd));
    b->size = 0;
}

/* Output checks. */
static size_t out_left(const struct rig *r)
{
    return r->out.size - r->out_pos;
}

static const uint8_t *pop(struct rig *r, size_t n)
{
    if (out_left(r) < n)
        fail_msg("expected %zu more bytes from the server, have %zu", n, out_left(r));
    const uint8_t *p = r->out.data + r->out_pos;
    r->out_pos += n;
    return p;
}

static void expect_bytes(struct rig *r, const struct bytes *expected)
{
    const uint8_t *got = pop(r, expected->size);
    for (size_t i = 0; i < expected->size; i++) {
        if (got[i] != expected->data[i])
            fail_msg("server byte %zu of %zu is 0x%02X, expected 0x%02X", i, expected->size, got[i],
                     expected->data[i]);
    }
}

static void expect_nothing(const struct rig *r)
{
    if (out_left(r))
        fail_msg("%zu unexpected bytes from the server", out_left(r));
}

/* Pops one option reply header; returns its data length. */
static uint32_t pop_option_reply(struct rig *r, uint32_t option, uint32_t type)
{
    const uint8_t *h = pop(r, 20);
    assert_true(get_be(h, 8) == MAGIC_OPT_REPLY);
    assert_int_equal(get_be(h + 8, 4), option);
    if (get_be(h + 12, 4) != type)
        fail_msg("option %u: reply type 0x%08llX, expected 0x%08X", option,
                 (unsigned long long)get_be(h + 12, 4), type);
    return (uint32_t)get_be(h + 16, 4);
}

static void expect_simple_reply(struct rig *r, uint32_t error, uint64_t handle)
{
    const uint8_t *h = pop(r, 16);
    assert_int_equal(get_be(h, 4), MAGIC_SIMPLE_REPLY);
    if (get_be(h + 4, 4) != error)
        fail_msg("reply error %llu, expected %u", (unsigned long long)get_be(h + 4, 4), error);
    assert_true(get_be(h + 8, 8) == handle);
}

static void expect_greeting(struct rig *r)
{
    struct bytes e = {0};
    be(&e, MAGIC_INIT, 8);
    be(&e, MAGIC_OPT, 8);
    be(&e, 3, 2); /* FIXED_NEWSTYLE | NO_ZEROES */
    expect_bytes(r, &e);
    free(e.data);
}

/* Greeting, client flags, NBD_OPT_GO for "": into transmission. */
static void handshake(struct rig *r)
{
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes b = {0};
    be(&b, 3, 4);
    c_info_go(&b, OPT_GO, "", NULL, 0);
    feed(r, &b);
    free(b.data);
    uint32_t n = pop_option_reply(r, OPT_GO, REP_INFO);
    assert_int_equal(n, 12);
    const uint8_t *p = pop(r, n);
    assert_int_equal(get_be(p, 2), INFO_EXPORT);
    assert_true(get_be(p + 2, 8) == export_size(r));
    n = pop_option_reply(r, OPT_GO, REP_INFO);
    assert_int_equal(n, 14);
    pop(r, n);
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_ACK), 0);
    expect_nothing(r);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_TRANSMISSION);
}

static uint64_t rng_next(uint64_t *state)
{
    return mf_faultbd_random(state);
}

/* ---- handshake ---- */

static void test_go_transcript(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_NEW);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_HANDSHAKE);

    struct bytes c = {0}, e = {0};
    be(&c, 1, 4); /* FIXED_NEWSTYLE only: zeroes would follow an EXPORT_NAME */
    static const uint16_t infos[] = {INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION, 0x7777};
    c_info_go(&c, OPT_GO, "public", infos, 4);
    feed(r, &c);

    be(&e, MAGIC_INIT, 8);
    be(&e, MAGIC_OPT, 8);
    be(&e, 3, 2);
    struct bytes d = {0};
    be(&d, INFO_EXPORT, 2);
    be(&d, 64 * 512, 8);
    be(&d, TX_FLAGS_RW, 2);
    s_option_reply(&e, OPT_GO, REP_INFO, d.data, (uint32_t)d.size);
    d.size = 0;
    be(&d, INFO_BLOCK_SIZE, 2);
    be(&d, 1, 4);
    be(&d, 4096, 4);
    be(&d, 32u << 20, 4);
    s_option_reply(&e, OPT_GO, REP_INFO, d.data, (uint32_t)d.size);
    d.size = 0;
    be(&d, INFO_NAME, 2);
    bytes_add(&d, "public", 6);
    s_option_reply(&e, OPT_GO, REP_INFO, d.data, (uint32_t)d.size);
    d.size = 0;
    be(&d, INFO_DESCRIPTION, 2);
    bytes_add(&d, MF_NBD_DESCRIPTION, strlen(MF_NBD_DESCRIPTION));
    s_option_reply(&e, OPT_GO, REP_INFO, d.data, (uint32_t)d.size);
    s_option_reply(&e, OPT_GO, REP_ACK, NULL, 0);
    expect_bytes(r, &e);
    expect_nothing(r);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_TRANSMISSION);
    assert_int_equal(mf_nbd_transmission_flags(&r->nbd), TX_FLAGS_RW);
    assert_true(mf_nbd_export_size(&r->nbd) == 64 * 512);
    assert_string_equal(mf_nbd_reason(&r->nbd), "");
    free(c.data);
    free(d.data);
    free(e.data);
    rig_free(r);
}

static void test_info_then_list_then_go(void **state)
{
    (void)state;
    struct rig *r = rig_new(&(struct rig_options){.read_only = true, .export_name = "area1"});
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 3, 4);
    c_info_go(&c, OPT_INFO, "area1", NULL, 0);
    c_option(&c, OPT_LIST, NULL, 0);
    feed(r, &c);

    assert_int_equal(pop_option_reply(r, OPT_INFO, REP_INFO), 12);
    const uint8_t *p = pop(r, 12);
    assert_int_equal(get_be(p + 10, 2), TX_FLAGS_RO);
    assert_int_equal(pop_option_reply(r, OPT_INFO, REP_INFO), 14);
    pop(r, 14);
    assert_int_equal(pop_option_reply(r, OPT_INFO, REP_ACK), 0);
    /* Still haggling after INFO. */
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_HANDSHAKE);

    uint32_t n = pop_option_reply(r, OPT_LIST, REP_SERVER);
    p = pop(r, n);
    assert_int_equal(get_be(p, 4), 5);
    assert_memory_equal(p + 4, "area1", 5);
    assert_int_equal(n, 4 + 5 + strlen(MF_NBD_DESCRIPTION));
    assert_memory_equal(p + 9, MF_NBD_DESCRIPTION, strlen(MF_NBD_DESCRIPTION));
    assert_int_equal(pop_option_reply(r, OPT_LIST, REP_ACK), 0);

    /* The default name "public" is not this export's name; "" is. */
    c_info_go(&c, OPT_GO, "public", NULL, 0);
    feed(r, &c);
    n = pop_option_reply(r, OPT_GO, REP_ERR_UNKNOWN);
    pop(r, n);
    assert_true(n > 0); /* a message for the user */
    c_info_go(&c, OPT_GO, "", NULL, 0);
    feed(r, &c);
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_INFO), 12);
    p = pop(r, 12);
    assert_int_equal(get_be(p + 10, 2), TX_FLAGS_RO);
    pop(r, pop_option_reply(r, OPT_GO, REP_INFO));
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_ACK), 0);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_TRANSMISSION);
    free(c.data);
    rig_free(r);
}

static void test_unsupported_and_malformed_options(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 1, 4);
    c_option(&c, OPT_STRUCTURED, NULL, 0);
    c_option(&c, OPT_STARTTLS, NULL, 0);
    c_option(&c, OPT_SET_META, "\0\0\0\0\0\0\0\0", 8);
    c_option(&c, 0x12345678u, "skip me, I am unknown", 21);
    c_option(&c, OPT_LIST, "x", 1);
    c_option(&c, OPT_GO, "\0\0", 2);                   /* shorter than 6 */
    c_option(&c, OPT_GO, "\0\0\0\x09public", 10);      /* name longer than the data */
    c_option(&c, OPT_INFO, "\0\0\0\0\0\x02\0\x03", 8); /* 2 requests announced, 1 sent */
    c_option(&c, OPT_INFO, "\xff\xff\xff\xff\0\0", 6); /* name length near 2^32 */
    feed(r, &c);
    static const uint32_t expected[][2] = {
        {OPT_STRUCTURED, REP_ERR_UNSUP}, {OPT_STARTTLS, REP_ERR_UNSUP},
        {OPT_SET_META, REP_ERR_UNSUP},   {0x12345678u, REP_ERR_UNSUP},
        {OPT_LIST, REP_ERR_INVALID},     {OPT_GO, REP_ERR_INVALID},
        {OPT_GO, REP_ERR_INVALID},       {OPT_INFO, REP_ERR_INVALID},
        {OPT_INFO, REP_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        pop(r, pop_option_reply(r, expected[i][0], expected[i][1]));
    expect_nothing(r);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_HANDSHAKE);

    /* An option longer than what is kept: its data is skipped, the answer is TOO_BIG. */
    size_t big = 3 * MF_NBD_OPTION_MAX;
    uint8_t *data = calloc(1, big);
    assert_non_null(data);
    c_option(&c, OPT_GO, data, (uint32_t)big);
    c_option(&c, 0x99u, data, (uint32_t)big); /* unknown and long: skipped the same way */
    feed(r, &c);
    free(data);
    pop(r, pop_option_reply(r, OPT_GO, REP_ERR_TOO_BIG));
    pop(r, pop_option_reply(r, 0x99u, REP_ERR_UNSUP));
    expect_nothing(r);
    c_info_go(&c, OPT_GO, "public", NULL, 0);
    feed(r, &c);
    pop(r, pop_option_reply(r, OPT_GO, REP_INFO));
    pop(r, pop_option_reply(r, OPT_GO, REP_INFO));
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_ACK), 0);
    assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_TRANSMISSION);
    free(c.data);
    rig_free(r);
}

static void test_abort(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 3, 4);
    c_option(&c, OPT_ABORT, "ignored", 7);
    c_option(&c, OPT_LIST, NULL, 0); /* after the end: ignored */
    assert_int_equal(feed_rc(r, &c), 0);
    assert_int_equal(pop_option_reply(r, OPT_ABORT, REP_ACK), 0);
    expect_nothing(r);
    assert_true(mf_nbd_closed(&r->nbd));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "NBD_OPT_ABORT"));
    assert_int_equal(feed_rc(r, &c), 0);
    expect_nothing(r);
    free(c.data);
    rig_free(r);
}

static void test_export_name(void **state)
{
    (void)state;
    for (int zeroes = 0; zeroes < 2; zeroes++) {
        struct rig *r = rig_new(NULL);
        assert_int_equal(mf_nbd_start(&r->nbd), 0);
        expect_greeting(r);
        struct bytes c = {0}, e = {0};
        be(&c, zeroes ? 1 : 3, 4);
        c_option(&c, OPT_EXPORT_NAME, "public", 6);
        feed(r, &c);
        be(&e, 64 * 512, 8);
        be(&e, TX_FLAGS_RW, 2);
        if (zeroes) {
            uint8_t z[124] = {0};
            bytes_add(&e, z, sizeof z);
        }
        expect_bytes(r, &e);
        expect_nothing(r);
        assert_int_equal(mf_nbd_phase(&r->nbd), MF_NBD_PHASE_TRANSMISSION);
        free(c.data);
        free(e.data);
        rig_free(r);
    }

    /* An unknown name cannot be answered with an error: the session ends. */
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 3, 4);
    c_option(&c, OPT_EXPORT_NAME, "secure", 6);
    assert_int_equal(feed_rc(r, &c), MF_ENOENT);
    expect_nothing(r);
    assert_true(mf_nbd_closed(&r->nbd));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "NBD_OPT_EXPORT_NAME"));
    assert_int_equal(feed_rc(r, &c), MF_ENOENT); /* sticky */
    free(c.data);
    rig_free(r);
}

static void test_bad_client_flags_and_option_magic(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 0x7, 4);
    assert_int_equal(feed_rc(r, &c), MF_EPROTO);
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "client flags at byte 0"));
    expect_nothing(r);
    rig_free(r);

    r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    c.size = 0;
    be(&c, 3, 4);
    c_option(&c, OPT_LIST, NULL, 0);
    be(&c, 0x4948415645aaaaaaull, 8); /* not IHAVEOPT */
    be(&c, OPT_LIST, 4);
    be(&c, 0, 4);
    assert_int_equal(feed_rc(r, &c), MF_EPROTO);
    pop(r, pop_option_reply(r, OPT_LIST, REP_SERVER));
    assert_int_equal(pop_option_reply(r, OPT_LIST, REP_ACK), 0);
    expect_nothing(r);
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "option at byte 20: bad magic"));
    free(c.data);
    rig_free(r);
}

static void test_too_many_options(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 3, 4);
    for (unsigned i = 0; i < MF_NBD_OPTIONS_MAX; i++)
        c_option(&c, 0x4242u, NULL, 0);
    feed(r, &c);
    for (unsigned i = 0; i < MF_NBD_OPTIONS_MAX; i++)
        pop(r, pop_option_reply(r, 0x4242u, REP_ERR_UNSUP));
    c_option(&c, 0x4242u, NULL, 0);
    assert_int_equal(feed_rc(r, &c), MF_EPROTO);
    expect_nothing(r);
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "more than"));
    free(c.data);
    rig_free(r);
}

static void test_init_refuses(void **state)
{
    (void)state;
    uint8_t memory[4 * 512];
    static uint8_t buffer[MF_NBD_BUFFER_MIN];
    struct mf_rambd ram;
    mf_rambd_init(&ram, memory, 512, 4);
    struct mf_nbd nbd;
    struct mf_nbd_config config = {
        .bd = &ram.bd, .send = rig_send, .buffer = buffer, .buffer_size = sizeof buffer};
    assert_int_equal(mf_nbd_init(&nbd, &config), 0);
    config.export_name = "tab\there";
    assert_int_equal(mf_nbd_init(&nbd, &config), MF_EINVAL);
    char long_name[MF_NBD_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    config.export_name = long_name;
    assert_int_equal(mf_nbd_init(&nbd, &config), MF_EINVAL);
    long_name[MF_NBD_NAME_MAX] = '\0';
    assert_int_equal(mf_nbd_init(&nbd, &config), 0);
    config.export_name = "";
    assert_int_equal(mf_nbd_init(&nbd, &config), 0);
    config.buffer_size = MF_NBD_BUFFER_MIN - 1;
    assert_int_equal(mf_nbd_init(&nbd, &config), MF_EINVAL);
    assert_false(mf_nbd_name_valid(NULL));
    assert_true(mf_nbd_name_valid("public"));
}

/* ---- transmission ---- */

static void test_read_aligned_and_unaligned(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    handshake(r);
    struct bytes c = {0};
    static const struct {
        uint64_t offset;
        uint32_t length;
    } cases[] = {
        {0, 512},
        {0, 64 * 512},
        {1, 1},
        {511, 2},
        {700, 5000},
        {64 * 512 - 1, 1},
        {100, 20000}, /* more than the staging area */
        {3 * 512, 17 * 512},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c_request(&c, 0, CMD_READ, 0x1000 + i, cases[i].offset, cases[i].length);
        feed(r, &c);
        expect_simple_reply(r, 0, 0x1000 + i);
        const uint8_t *got = pop(r, cases[i].length);
        assert_memory_equal(got, model_at(r, cases[i].offset), cases[i].length);
    }
    /* FUA is accepted on a read (the spec says a server must take it on any command). */
    c_request(&c, FLAG_FUA, CMD_READ, 77, 5, 10);
    feed(r, &c);
    expect_simple_reply(r, 0, 77);
    assert_memory_equal(pop(r, 10), model_at(r, 5), 10);
    expect_nothing(r);
    assert_int_equal(mf_nbd_stats(&r->nbd)->reads, 9);
    free(c.data);
    rig_free(r);
}

/* One write of `length` bytes at `offset`, mirrored in the model. */
static void write_through(struct rig *r, uint64_t offset, uint32_t length, uint16_t flags,
                          uint64_t *seed)
{
    struct bytes c = {0};
    c_request(&c, flags, CMD_WRITE, offset ^ 0xabcdef, offset, length);
    uint8_t *data = malloc(length);
    assert_non_null(data);
    for (uint32_t i = 0; i < length; i++)
        data[i] = (uint8_t)rng_next(seed);
    bytes_add(&c, data, length);
    memcpy(model_at(r, offset), data, length);
    feed(r, &c);
    expect_simple_reply(r, 0, offset ^ 0xabcdef);
    free(data);
    free(c.data);
}

static void test_write_unaligned(void **state)
{
    (void)state;
    uint64_t seed = mf_test_seed("nbd write", 0x5eed);
    struct rig *r = rig_new(NULL);
    handshake(r);
    static const struct {
        uint64_t offset;
        uint32_t length;
    } cases[] = {
        {0, 512},    {1, 1},        {511, 1},    {511, 2},   {100, 300}, /* inside one block */
        {300, 1000}, {512, 513},    {1023, 514}, {0, 32768},             /* whole export */
        {7, 20000}, /* crosses the staging area boundary unaligned */
        {32767, 1},  {31000, 1768},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_through(r, cases[i].offset, cases[i].length, 0, &seed);
        check_disk(r);
    }
    /* Random writes, each checked against the model, also the bytes around the partition. */
    for (int i = 0; i < 200; i++) {
        uint64_t offset = rng_next(&seed) % export_size(r);
        uint32_t max = (uint32_t)(export_size(r) - offset);
        uint32_t length = 1 + (uint32_t)(rng_next(&seed) % (max < 3000 ? max : 3000));
        write_through(r, offset, length, (i & 1) ? FLAG_FUA : 0, &seed);
    }
    check_disk(r);
    expect_nothing(r);
    rig_free(r);
}

static void test_block_size_4096(void **state)
{
    (void)state;
    uint64_t seed = mf_test_seed("nbd 4k", 0x4096);
    struct rig *r = rig_new(&(struct rig_options){
        .block_size = 4096, .blocks = 12, .first = 2, .count = 8, .buffer_size = 32768});
    assert_int_equal(mf_nbd_start(&r->nbd), 0);
    expect_greeting(r);
    struct bytes c = {0};
    be(&c, 3, 4);
    c_info_go(&c, OPT_GO, "", NULL, 0);
    feed(r, &c);
    pop(r, pop_option_reply(r, OPT_GO, REP_INFO));
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_INFO), 14);
    const uint8_t *p = pop(r, 14);
    assert_int_equal(get_be(p + 2, 4), 1);
    assert_int_equal(get_be(p + 6, 4), 4096);
    assert_int_equal(get_be(p + 10, 4), 32u << 20);
    assert_int_equal(pop_option_reply(r, OPT_GO, REP_ACK), 0);
    for (int i = 0; i < 100; i++) {
        uint64_t offset = rng_next(&seed) % export_size(r);
        uint32_t max = (uint32_t)(export_size(r) - offset);
        uint32_t length = 1 + (uint32_t)(rng_next(&seed) % (max < 9000 ? max : 9000));
        write_through(r, offset, length, 0, &seed);
    }
    check_disk(r);
    c.size = 0;
    c_request(&c, 0, CMD_READ, 1, 4095, 4098);
    feed(r, &c);
    expect_simple_reply(r, 0, 1);
    assert_memory_equal(pop(r, 4098), model_at(r, 4095), 4098);
    free(c.data);
    rig_free(r);
}

static void test_out_of_range_and_refusals(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    handshake(r);
    const uint64_t size = export_size(r);
    struct bytes c = {0};
    uint8_t payload[600];
    memset(payload, 0xEE, sizeof payload);

    static const struct {
        uint16_t flags, type;
        uint64_t offset;
        uint32_t length;
        bool payload;
        uint32_t error;
    } cases[] = {
        {0, CMD_READ, 64 * 512, 1, false, E_INVAL},          /* just past the end */
        {0, CMD_READ, 64 * 512 - 1, 2, false, E_INVAL},      /* straddles the end */
        {0, CMD_READ, UINT64_MAX, 1, false, E_INVAL},        /* would wrap */
        {0, CMD_READ, UINT64_MAX - 10, 600, false, E_INVAL}, /* would wrap */
        {0, CMD_READ, 0, 0, false, E_INVAL},                 /* zero length */
        {0, CMD_READ, 0, (32u << 20) + 1, false, E_INVAL},   /* over the maximum */
        {FLAG_DF, CMD_READ, 0, 1, false, E_INVAL},           /* flag not offered */
        {0x8000, CMD_READ, 0, 1, false, E_INVAL},            /* unknown flag */
        {0, CMD_WRITE, 64 * 512 - 100, 600, true, E_NOSPC},  /* straddles the end */
        {0, CMD_WRITE, 64 * 512 - 599, 600, true, E_NOSPC},  /* by one byte */
        {0, CMD_WRITE, 64 * 512, 1, true, E_NOSPC},
        {0, CMD_WRITE, UINT64_MAX - 100, 600, true, E_NOSPC},
        {0, CMD_WRITE, 0, 0, false, E_INVAL},
        {FLAG_DF, CMD_WRITE, 0, 600, true, E_INVAL},
        {0, CMD_TRIM, 64 * 512, 512, false, E_INVAL},
        {0, CMD_TRIM, UINT64_MAX - 511, 1024, false, E_INVAL},
        {0, CMD_TRIM, 0, 0, false, E_INVAL},
        {0x0002, CMD_TRIM, 0, 512, false, E_INVAL}, /* NO_HOLE: not for TRIM */
        {0x0010, CMD_FLUSH, 0, 0, false, E_INVAL},
        {0, CMD_CACHE, 0, 512, false, E_INVAL},
        {0, CMD_WRITE_ZEROES, 0, 512, false, E_INVAL},
        {0, CMD_BLOCK_STATUS, 0, 512, false, E_INVAL},
        {0, 0xffff, 0, 0, false, E_INVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c_request(&c, cases[i].flags, cases[i].type, 500 + i, cases[i].offset, cases[i].length);
        if (cases[i].payload)
            bytes_add(&c, payload, cases[i].length);
        feed(r, &c);
        expect_simple_reply(r, cases[i].error, 500 + i);
        expect_nothing(r); /* no data after an error */
    }
    assert_true(mf_nbd_stats(&r->nbd)->error_replies == sizeof cases / sizeof cases[0]);

    /* A write longer than the maximum: its payload is taken in and refused as a whole. */
    uint32_t too_long = (32u << 20) + 512;
    c_request(&c, 0, CMD_WRITE, 9, 0, too_long);
    feed(r, &c);
    uint8_t *zeros = calloc(1, 1u << 20);
    assert_non_null(zeros);
    for (uint32_t sent = 0; sent < too_long;) {
        uint32_t n = too_long - sent < (1u << 20) ? too_long - sent : (1u << 20);
        assert_int_equal(mf_nbd_input(&r->nbd, zeros, n), 0);
        sent += n;
        if (sent < too_long)
            expect_nothing(r);
    }
    free(zeros);
    expect_simple_reply(r, E_INVAL, 9);

    /* The session still works, and nothing changed anywhere. */
    c_request(&c, 0, CMD_READ, 10, size - 4, 4);
    feed(r, &c);
    expect_simple_reply(r, 0, 10);
    assert_memory_equal(pop(r, 4), model_at(r, size - 4), 4);
    check_disk(r);
    free(c.data);
    rig_free(r);
}

static void test_read_only(void **state)
{
    (void)state;
    struct rig *r = rig_new(&(struct rig_options){.read_only = true});
    handshake(r);
    assert_int_equal(mf_nbd_transmission_flags(&r->nbd), TX_FLAGS_RO);
    struct bytes c = {0};
    uint8_t payload[100] = {1, 2, 3};
    c_request(&c, 0, CMD_WRITE, 1, 0, sizeof payload);
    bytes_add(&c, payload, sizeof payload);
    c_request(&c, 0, CMD_TRIM, 2, 0, 4096);
    c_request(&c, 0, CMD_FLUSH, 3, 0, 0);
    c_request(&c, 0, CMD_READ, 4, 0, 8);
    feed(r, &c);
    expect_simple_reply(r, E_PERM, 1);
    expect_simple_reply(r, E_PERM, 2);
    expect_simple_reply(r, 0, 3);
    expect_simple_reply(r, 0, 4);
    assert_memory_equal(pop(r, 8), model_at(r, 0), 8);
    check_disk(r);
    free(c.data);
    rig_free(r);
}

static void test_trim_whole_blocks_only(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    handshake(r);
    struct bytes c = {0};
    /* Bytes 700 .. 700+3000: blocks 2..6 are inside (1024..3584), 512..1023 and 3584.. not. */
    c_request(&c, 0, CMD_TRIM, 1, 700, 3000);
    /* Inside one block: nothing to discard. */
    c_request(&c, FLAG_FUA, CMD_TRIM, 2, 5000, 100);
    /* The last whole blocks up to the end. */
    c_request(&c, 0, CMD_TRIM, 3, 60 * 512, 4 * 512);
    feed(r, &c);
    struct bytes e = {0};
    s_simple_reply(&e, 0, 1);
    s_simple_reply(&e, 0, 2);
    s_simple_reply(&e, 0, 3);
    expect_bytes(r, &e);
    expect_nothing(r);
    free(e.data);
    memset(model_at(r, 1024), 0, 3584 - 1024);
    memset(model_at(r, 60 * 512), 0, 4 * 512);
    check_disk(r);
    assert_true(mf_nbd_stats(&r->nbd)->bytes_trimmed == 2560 + 2048);
    free(c.data);
    rig_free(r);
}

static void test_flush_and_fua_durability(void **state)
{
    (void)state;
    uint64_t seed = 7;
    struct rig *r = rig_new(&(struct rig_options){.cache_blocks = 64});
    handshake(r);
    write_through(r, 1000, 3000, 0, &seed);
    assert_true(mf_faultbd_pending(&r->fault) > 0); /* not yet durable */
    struct bytes c = {0};
    c_request(&c, 0, CMD_FLUSH, 5, 0, 0);
    feed(r, &c);
    expect_simple_reply(r, 0, 5);
    assert_int_equal(mf_faultbd_pending(&r->fault), 0);
    check_disk(r); /* the medium has it */

    write_through(r, 9000, 700, FLAG_FUA, &seed);
    assert_int_equal(mf_faultbd_pending(&r->fault), 0);
    check_disk(r);

    write_through(r, 20000, 10, 0, &seed);
    assert_true(mf_faultbd_pending(&r->fault) > 0);
    /* A flush with (reserved) non-zero offset and length still flushes. */
    c_request(&c, 0, CMD_FLUSH, 6, 123, 456);
    c_request(&c, FLAG_FUA, CMD_TRIM, 7, 512, 512);
    feed(r, &c);
    expect_simple_reply(r, 0, 6);
    expect_simple_reply(r, 0, 7);
    assert_int_equal(mf_faultbd_pending(&r->fault), 0);
    memset(model_at(r, 512), 0, 512);
    check_disk(r);
    assert_int_equal(mf_nbd_stats(&r->nbd)->flushes, 2);
    free(c.data);
    rig_free(r);
}

static void test_device_errors(void **state)
{
    (void)state;
    uint64_t seed = 11;
    struct rig *r = rig_new(NULL);
    handshake(r);
    struct bytes c = {0};

    /* The first read fails: an error reply without data, and the session goes on. */
    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_READ, 1, false);
    c_request(&c, 0, CMD_READ, 1, 0, 512);
    feed(r, &c);
    expect_simple_reply(r, E_IO, 1);
    expect_nothing(r);

    /* A write whose read-modify-write read fails, one whose prog fails: EIO, payload taken in,
     * nothing written. */
    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_READ, 1, false);
    uint8_t payload[1500];
    memset(payload, 0x5A, sizeof payload);
    c_request(&c, 0, CMD_WRITE, 2, 100, sizeof payload);
    bytes_add(&c, payload, sizeof payload);
    feed(r, &c);
    expect_simple_reply(r, E_IO, 2);
    check_disk(r);
    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_PROG, 1, true);
    c_request(&c, 0, CMD_WRITE, 3, 1024, 1024);
    bytes_add(&c, payload, 1024);
    c_request(&c, 0, CMD_TRIM, 4, 0, 4096);
    feed(r, &c);
    expect_simple_reply(r, E_IO, 3);
    expect_simple_reply(r, 0, 4); /* erase still works */
    memset(model_at(r, 0), 0, 4096);
    check_disk(r);
    mf_faultbd_fail_io_off(&r->fault);

    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_SYNC, 1, false);
    c_request(&c, 0, CMD_FLUSH, 5, 0, 0);
    feed(r, &c);
    expect_simple_reply(r, E_IO, 5);
    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_SYNC, 1, false);
    write_through(r, 0, 10, 0, &seed); /* no FUA: no sync, so the armed failure waits */
    c_request(&c, FLAG_FUA, CMD_WRITE, 6, 0, 10);
    bytes_add(&c, payload, 10);
    feed(r, &c);
    expect_simple_reply(r, E_IO, 6); /* written, but not durable: the client must know */
    memcpy(model_at(r, 0), payload, 10);

    /* A read error after the reply began leaves only hanging up. The staging area holds
     * 31 blocks of 512 bytes, so a 40-block read needs two device reads. */
    mf_faultbd_fail_io(&r->fault, MF_FAULTBD_OP_READ, 2, false);
    c_request(&c, 0, CMD_READ, 7, 0, 40 * 512);
    assert_int_equal(feed_rc(r, &c), MF_EIO);
    expect_simple_reply(r, 0, 7);
    assert_int_equal(out_left(r), 31 * 512);
    pop(r, 31 * 512);
    assert_true(mf_nbd_closed(&r->nbd));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "after the reply began"));
    check_disk(r);
    free(c.data);
    rig_free(r);
}

static void test_bad_request_magic_and_disc(void **state)
{
    (void)state;
    struct rig *r = rig_new(NULL);
    handshake(r);
    struct bytes c = {0};
    c_request(&c, 0, CMD_READ, 1, 0, 4);
    be(&c, 0x25609514u, 4); /* the transaction-log magic, never valid on the wire */
    uint8_t rest[24] = {0};
    bytes_add(&c, rest, sizeof rest);
    assert_int_equal(feed_rc(r, &c), MF_EPROTO);
    expect_simple_reply(r, 0, 1);
    pop(r, 4);
    expect_nothing(r);
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "request at byte"));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "bad magic 0x25609514"));
    assert_int_equal(feed_rc(r, &c), MF_EPROTO);
    rig_free(r);

    r = rig_new(NULL);
    handshake(r);
    c.size = 0;
    c_request(&c, 0, CMD_DISC, 1, 0, 0);
    c_request(&c, 0, CMD_WRITE, 2, 0, 4); /* after DISC: never looked at */
    bytes_add(&c, "abcd", 4);
    assert_int_equal(feed_rc(r, &c), 0);
    expect_nothing(r);
    assert_true(mf_nbd_closed(&r->nbd));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "NBD_CMD_DISC"));
    check_disk(r);
    free(c.data);
    rig_free(r);
}

static void test_send_failure_ends_session(void **state)
{
    (void)state;
    struct rig *r = rig_new(&(struct rig_options){.fail_send_after = 3});
    assert_int_equal(mf_nbd_start(&r->nbd), 0); /* send 1 */
    struct bytes c = {0};
    be(&c, 3, 4);
    c_option(&c, OPT_LIST, NULL, 0); /* sends 2, 3 (header, data), then the ACK fails */
    c_option(&c, OPT_LIST, NULL, 0);
    assert_int_equal(feed_rc(r, &c), MF_EIO);
    assert_true(mf_nbd_closed(&r->nbd));
    assert_non_null(strstr(mf_nbd_reason(&r->nbd), "sending"));
    free(c.data);
    rig_free(r);
}

/* A full session script: handshake, writes, reads, trims, flush, disc. */
static void build_session_script(struct bytes *c, uint64_t seed)
{
    be(c, 3, 4);
    c_option(c, OPT_LIST, NULL, 0);
    static const uint16_t infos[] = {INFO_NAME};
    c_info_go(c, OPT_INFO, "public", infos, 1);
    c_info_go(c, OPT_GO, "", NULL, 0);
    uint8_t data[3000];
    for (int i = 0; i < 40; i++) {
        uint64_t offset = rng_next(&seed) % (64 * 512);
        uint32_t max = (uint32_t)(64 * 512 - offset);
        uint32_t length = 1 + (uint32_t)(rng_next(&seed) % (max < sizeof data ? max : 3000));
        switch (rng_next(&seed) % 4) {
        case 0:
        case 1:
            for (uint32_t k = 0; k < length; k++)
                data[k] = (uint8_t)rng_next(&seed);
            c_request(c, 0, CMD_WRITE, (uint64_t)i, offset, length);
            bytes_add(c, data, length);
            break;
        case 2:
            c_request(c, 0, CMD_READ, (uint64_t)i, offset, length);
            break;
        default:
            c_request(c, 0, CMD_TRIM, (uint64_t)i, offset, length);
            break;
        }
    }
    c_request(c, 0, CMD_FLUSH, 99, 0, 0);
    c_request(c, 0, CMD_DISC, 100, 0, 0);
}

static void test_split_invariance(void **state)
{
    (void)state;
    uint64_t seed = mf_test_seed("nbd split", 0xC0FFEE);
    struct bytes script = {0};
    build_session_script(&script, seed);

    struct rig *whole = rig_new(NULL);
    assert_int_equal(mf_nbd_start(&whole->nbd), 0);
    assert_int_equal(feed_rc(whole, &script), 0);
    assert_true(mf_nbd_closed(&whole->nbd));

    for (int mode = 0; mode < 3; mode++) {
        struct rig *split = rig_new(NULL);
        assert_int_equal(mf_nbd_start(&split->nbd), 0);
        uint64_t cut_seed = seed + (uint64_t)mode;
        for (size_t at = 0; at < script.size;) {
            size_t n = mode == 0   ? 1
                       : mode == 1 ? 1 + rng_next(&cut_seed) % 37
                                   : 1 + rng_next(&cut_seed) % 5000;
            if (n > script.size - at)
                n = script.size - at;
            assert_int_equal(mf_nbd_input(&split->nbd, script.data + at, n), 0);
            at += n;
        }
        assert_true(mf_nbd_closed(&split->nbd));
        assert_int_equal(split->out.size, whole->out.size);
        assert_memory_equal(split->out.data, whole->out.data, whole->out.size);
        assert_memory_equal(split->disk, whole->disk, whole->disk_size);
        rig_free(split);
    }
    /* Outside the partition nothing changed. */
    size_t start = 16 * 512, end = start + 64 * 512;
    assert_memory_equal(whole->disk, whole->model, start);
    assert_memory_equal(whole->disk + end, whole->model + end, whole->disk_size - end);
    assert_true(whole->lock_takes > 0);
    free(script.data);
    rig_free(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_transcript),
        cmocka_unit_test(test_info_then_list_then_go),
        cmocka_unit_test(test_unsupported_and_malformed_options),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_export_name),
        cmocka_unit_test(test_bad_client_flags_and_option_magic),
        cmocka_unit_test(test_too_many_options),
        cmocka_unit_test(test_init_refuses),
        cmocka_unit_test(test_read_aligned_and_unaligned),
        cmocka_unit_test(test_write_unaligned),
        cmocka_unit_test(test_block_size_4096),
        cmocka_unit_test(test_out_of_range_and_refusals),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_trim_whole_blocks_only),
        cmocka_unit_test(test_flush_and_fua_durability),
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_bad_request_magic_and_disc),
        cmocka_unit_test(test_send_failure_ends_session),
        cmocka_unit_test(test_split_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
