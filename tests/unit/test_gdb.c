/* The gdb target back end (targets/mf_gdb) against the scripted fake server of tests/support:
 * QEMU-like RAM flash with lazy erase, OpenOCD-like memory maps with vFlash* and qCRC, X refused,
 * small packets with run-length encoded and short replies, acks and retransmission, monitor
 * commands from the job settings, both start modes, the serial transport on a pseudo terminal,
 * and every fault a server can show mid-cycle: stall, disconnect, garbage, nonsense, bad
 * checksums, cancel. */
#include "mf_err.h"
#include "mf_fakegdb.h"
#include "mf_gdb.h"
#include "mf_target.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define FLASH_SIZE (64u << 10)
#define RAM_BASE   0x20000000u
#define UID_AT     0x2000FF00u

static const struct mf_profile profile = {
    .name = "TEST-64K",
    .description = "64 KiB at 0 in 1 KiB pages, UID at 0x2000FF00",
    .flash = {{.start = 0,
               .size = FLASH_SIZE,
               .groups = {{1024, 64}},
               .group_count = 1,
               .write_size = 4,
               .erased_value = 0xFF}},
    .flash_count = 1,
    .uid_address = UID_AT,
    .uid_length = 8,
};

static const uint8_t uid[8] = {0xDE, 0xAD, 0x23, 0x24, 0x7D, 0x2A, 0x00, 0x01};

/* QEMU's target description, as it serves it (trimmed). */
static const char qemu_target[] = "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM "
                                  "\"gdb-target.dtd\"><target><architecture>arm</architecture>"
                                  "<xi:include href=\"arm-m-profile.xml\"/></target>";
static const char qemu_mprofile[] =
    "<?xml version=\"1.0\"?><feature name=\"org.gnu.gdb.arm.m-profile\">"
    "<reg name=\"r0\" bitsize=\"32\"/><reg name=\"r1\" bitsize=\"32\"/>"
    "<reg name=\"r2\" bitsize=\"32\"/><reg name=\"r3\" bitsize=\"32\"/>"
    "<reg name=\"r4\" bitsize=\"32\"/><reg name=\"r5\" bitsize=\"32\"/>"
    "<reg name=\"r6\" bitsize=\"32\"/><reg name=\"r7\" bitsize=\"32\"/>"
    "<reg name=\"r8\" bitsize=\"32\"/><reg name=\"r9\" bitsize=\"32\"/>"
    "<reg name=\"r10\" bitsize=\"32\"/><reg name=\"r11\" bitsize=\"32\"/>"
    "<reg name=\"r12\" bitsize=\"32\"/><reg name=\"sp\" bitsize=\"32\" type=\"data_ptr\"/>"
    "<reg name=\"lr\" bitsize=\"32\"/><reg name=\"pc\" bitsize=\"32\" type=\"code_ptr\"/>"
    "<reg name=\"xpsr\" bitsize=\"32\" regnum=\"25\"/></feature>";

/* A QEMU-like server: flash is RAM-like memory (zeros at start), no map, no qCRC. */
static struct mf_fakegdb_config qemu_like(void)
{
    struct mf_fakegdb_config c = {
        .windows = {{.base = 0, .size = FLASH_SIZE, .flash = true, .initial = 0x00},
                    {.base = RAM_BASE, .size = 64u << 10, .initial = 0x00}},
        .packet_size = 0x1000,
        .offer_packet_size = true,
        .no_ack = true,
        .target_xml = qemu_target,
        .include_name = "arm-m-profile.xml",
        .include_xml = qemu_mprofile,
        .stop_on_connect = true,
    };
    return c;
}

/* An OpenOCD-like server: a memory map with flash blocks, vFlash*, qCRC, erased flash. */
static struct mf_fakegdb_config openocd_like(void)
{
    struct mf_fakegdb_config c = qemu_like();
    c.windows[0].initial = 0xFF;
    c.memory_map = true;
    c.flash_block = 1024;
    c.crc = true;
    c.packet_size = 0x3fff;
    return c;
}

struct rig {
    struct mf_fakegdb *fake;
    struct mf_target target;
};

static void rig_start(struct rig *r, const struct mf_fakegdb_config *c, bool pty,
                      const struct mf_rsp_options *options)
{
    memset(r, 0, sizeof *r);
    r->fake = mf_fakegdb_start(c, pty);
    assert_non_null(r->fake);
    assert_int_equal(mf_fakegdb_write(r->fake, UID_AT, uid, sizeof uid), 0);
    int err = mf_gdb_open(&r->target, mf_fakegdb_spec(r->fake), options);
    if (err)
        fail_msg("open: %s", r->target.error);
    r->target.profile = &profile;
}

static void rig_stop(struct rig *r)
{
    mf_gdb_close(&r->target);
    mf_fakegdb_stop(r->fake);
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        int err_ = (call);                                                                         \
        if (err_)                                                                                  \
            fail_msg("%s: %s (%s)", #call, mf_strerror(err_), r.target.error);                     \
    } while (0)

static void firmware(uint8_t *out, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        out[i] = (uint8_t)(seed >> 16);
    }
    /* Every byte that needs escaping, and runs for the run-length encoder. */
    const uint8_t special[] = {'#', '$', '}', '*', '}', '}', 0x03, '+', '-'};
    for (size_t i = 8; i + sizeof special <= len && i < 4096; i += 97)
        memcpy(out + i, special, sizeof special);
    if (len > 2000)
        memset(out + 1000, 0x2A, 300);
    /* A vector table: SP, then a reset handler with the Thumb bit. */
    const uint8_t vector[8] = {0x00, 0xFE, 0x00, 0x20, 0x41, 0x01, 0x00, 0x00};
    memcpy(out, vector, sizeof vector);
}

static void expect_error(const struct rig *r, int err, int code, const char *text)
{
    if (err != code)
        fail_msg("expected %s, got %s (%s)", mf_strerror(code), mf_strerror(err), r->target.error);
    if (!strstr(r->target.error, text))
        fail_msg("error text '%s' does not say '%s'", r->target.error, text);
}

/* A whole QEMU-style cycle: lazy erase, X writes, read-back, the vector start. */
static void cycle_plain(bool no_ack)
{
    struct mf_fakegdb_config c = qemu_like();
    c.no_ack = no_ack;
    struct rig r;
    rig_start(&r, &c, false, NULL);
    static uint8_t data[5000], back[5000];
    firmware(data, sizeof data, 7);
    uint8_t got[8];
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->read_uid(&r.target, got, 8));
    assert_memory_equal(got, uid, 8);
    OK(r.target.ops->unlock(&r.target));
    OK(r.target.ops->erase(&r.target, 0, 8192));
    OK(r.target.ops->program(&r.target, 0, data, 4096));
    OK(r.target.ops->program(&r.target, 4096, data + 4096, sizeof data - 4096));
    uint32_t crc;
    expect_error(&r, r.target.ops->crc(&r.target, 0, sizeof data, &crc), MF_ENOTSUP, "qCRC");
    OK(r.target.ops->read(&r.target, 0, back, sizeof back));
    assert_memory_equal(back, data, sizeof data);

    OK(r.target.ops->start(&r.target, MF_START_VECTOR));
    /* The erase reached the device (before the start) where no data went, and nothing beyond
     * the erase did. */
    static uint8_t mem[FLASH_SIZE];
    assert_int_equal(mf_fakegdb_read(r.fake, 0, mem, sizeof mem), 0);
    assert_memory_equal(mem, data, sizeof data);
    for (size_t i = sizeof data; i < 8192; i++)
        assert_int_equal(mem[i], 0xFF);
    for (size_t i = 8192; i < sizeof mem; i++)
        assert_int_equal(mem[i], 0x00);

    expect_error(&r, r.target.ops->read(&r.target, 0, back, 4), MF_EBUSY, "application runs");
    OK(r.target.ops->disconnect(&r.target));
    assert_int_equal(mf_fakegdb_wait_closed(r.fake, 1), 0);

    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.sp, 0x2000FE00u);
    assert_int_equal(s.pc, 0x140u);
    assert_int_equal(s.xpsr, 1u << 24); /* regnum 25 from the included description */
    assert_int_equal(s.continues, 1);
    assert_int_equal(s.detaches, 0); /* never: a detach would resume the device */
    assert_int_equal(s.oversize, 0);
    assert_int_equal(s.bad_checksums, 0);
    assert_int_equal(s.no_ack, no_ack ? 1 : 0);
    assert_true(no_ack ? s.acks <= 4 : s.acks > 10); /* up to the QStartNoAckMode reply */
    struct mf_gdb_stats g;
    mf_gdb_stats(&r.target, &g);
    assert_true(g.no_ack == no_ack);
    assert_int_equal(g.packet_size, 0x1000);
    assert_true(g.x_packets >= 2 && g.m_writes == 0);
    assert_int_equal(g.fill_bytes, 8192 - 5000);
    assert_int_equal(g.unsolicited, 1); /* the greeting stop reply was skipped */
    assert_true(g.largest <= 0x1000);
    rig_stop(&r);
}

static void test_plain_no_ack(void **state)
{
    (void)state;
    cycle_plain(true);
}

static void test_plain_with_acks(void **state)
{
    (void)state;
    cycle_plain(false);
}

/* Pending erased spans merge, split and are written only where nothing was programmed. */
static void test_lazy_erase_bookkeeping(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    struct rig r;
    rig_start(&r, &c, false, NULL);
    uint8_t data[1024];
    memset(data, 0x5A, sizeof data);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->erase(&r.target, 2048, 1024));
    OK(r.target.ops->erase(&r.target, 0, 2048)); /* merges with the span after it */
    OK(r.target.ops->erase(&r.target, 8192, 1024));
    OK(r.target.ops->program(&r.target, 1024, data, 512));  /* splits [0, 3072) */
    OK(r.target.ops->program(&r.target, 8192, data, 1024)); /* removes [8192, 9216) whole */
    /* Reading the UID does not flush: it overlaps nothing pending. */
    uint8_t got[8];
    OK(r.target.ops->read_uid(&r.target, got, 8));
    struct mf_gdb_stats g;
    mf_gdb_stats(&r.target, &g);
    assert_int_equal(g.fill_bytes, 0);
    OK(r.target.ops->disconnect(&r.target));
    mf_gdb_stats(&r.target, &g);
    assert_int_equal(g.fill_bytes, 3072 - 512);
    static uint8_t mem[10240];
    assert_int_equal(mf_fakegdb_read(r.fake, 0, mem, sizeof mem), 0);
    for (size_t i = 0; i < sizeof mem; i++) {
        uint8_t want = (i >= 1024 && i < 1536) || (i >= 8192 && i < 9216) ? 0x5A
                       : i < 3072                                         ? 0xFF
                                                                          : 0x00;
        if (mem[i] != want)
            fail_msg("byte 0x%zx is 0x%02x, expected 0x%02x", i, mem[i], want);
    }
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.detaches, 0);
    rig_stop(&r);
}

/* Many erases: the span table fills and is written out, nothing is lost. */
static void test_lazy_erase_many_spans(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    struct rig r;
    rig_start(&r, &c, false, NULL);
    uint8_t word[4] = {1, 2, 3, 4};
    OK(r.target.ops->connect(&r.target));
    for (uint32_t s = 0; s < 64; s++) {
        OK(r.target.ops->erase(&r.target, s * 1024u, 1024));
        /* A write inside each sector keeps the spans apart. */
        OK(r.target.ops->program(&r.target, s * 1024u + 512u, word, 4));
    }
    uint8_t back[4];
    OK(r.target.ops->read(&r.target, 63u * 1024u, back, 4));
    static uint8_t mem[FLASH_SIZE];
    assert_int_equal(mf_fakegdb_read(r.fake, 0, mem, sizeof mem), 0);
    for (uint32_t i = 0; i < FLASH_SIZE; i++) {
        uint8_t want = (i % 1024u) >= 512u && (i % 1024u) < 516u ? word[i % 4u] : 0xFF;
        if (mem[i] != want)
            fail_msg("byte 0x%x is 0x%02x, expected 0x%02x", i, mem[i], want);
    }
    rig_stop(&r);
}

static void test_memory_map_flash(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = openocd_like();
    struct rig r;
    rig_start(&r, &c, false, NULL);
    static uint8_t data[20000];
    firmware(data, sizeof data, 3);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->erase(&r.target, 0, 20480));
    OK(r.target.ops->program(&r.target, 0, data, sizeof data));
    uint32_t crc = 0;
    OK(r.target.ops->crc(&r.target, 0, sizeof data, &crc));
    assert_int_equal(crc, mf_target_crc(MF_TARGET_CRC_INIT, data, sizeof data));
    OK(r.target.ops->crc(&r.target, 100, 0, &crc));
    assert_int_equal(crc, MF_TARGET_CRC_INIT);
    OK(r.target.ops->erase_chip(&r.target));
    OK(r.target.ops->crc(&r.target, 0, 4, &crc));
    const uint8_t erased[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(crc, mf_target_crc(MF_TARGET_CRC_INIT, erased, 4));
    OK(r.target.ops->disconnect(&r.target));

    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.flash_erases, 2); /* one range, then the whole region */
    assert_true(s.flash_writes >= 2);
    assert_int_equal(s.flash_done, 2);
    assert_int_equal(s.reads_in_flash_sequence, 0); /* vFlashDone came before every CRC */
    assert_int_equal(s.nor_violations, 0);
    assert_int_equal(s.x_writes, 0);
    assert_int_equal(s.crc, 2); /* an empty range needs no request */
    assert_int_equal(s.detaches, 0);
    struct mf_gdb_stats g;
    mf_gdb_stats(&r.target, &g);
    assert_true(g.memory_map);
    assert_int_equal(g.flash_regions, 1);
    assert_int_equal(g.packet_size, 0x3fff);
    rig_stop(&r);
}

static void test_memory_map_block_mismatch(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = openocd_like();
    c.flash_block = 4096; /* the profile says 1 KiB sectors */
    struct rig r;
    rig_start(&r, &c, false, NULL);
    OK(r.target.ops->connect(&r.target));
    expect_error(&r, r.target.ops->erase(&r.target, 1024, 1024), MF_EINVAL,
                 "erases blocks of 4096 bytes");
    OK(r.target.ops->erase(&r.target, 4096, 8192)); /* aligned to both: fine */
    expect_error(&r, r.target.ops->erase(&r.target, 0, 1u << 20), MF_EINVAL,
                 "not inside one flash region");
    rig_stop(&r);
}

static void test_x_refused_uses_m(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.refuse_x = true;
    struct rig r;
    rig_start(&r, &c, false, NULL);
    static uint8_t data[3000], back[3000];
    firmware(data, sizeof data, 11);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->program(&r.target, 0x400, data, sizeof data));
    OK(r.target.ops->read(&r.target, 0x400, back, sizeof back));
    assert_memory_equal(back, data, sizeof data);
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.x_writes, 0);
    assert_true(s.m_writes >= 2);
    rig_stop(&r);
}

static void test_small_packets_rle_short_reads(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.packet_size = 100;
    c.rle = true;
    c.short_reads = 16;
    c.no_ack = false;
    struct rig r;
    rig_start(&r, &c, false, NULL);
    static uint8_t data[3000], back[3000];
    firmware(data, sizeof data, 5);
    memset(data + 2000, 0, 500); /* long runs in the replies */
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->program(&r.target, 0, data, sizeof data));
    OK(r.target.ops->read(&r.target, 0, back, sizeof back));
    assert_memory_equal(back, data, sizeof data);
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.oversize, 0);
    assert_true(s.largest <= 100);
    assert_true(s.m_reads >= sizeof data / 16);
    rig_stop(&r);

    /* No PacketSize offered: GDB's 400 bytes. */
    c = qemu_like();
    c.offer_packet_size = false;
    rig_start(&r, &c, false, NULL);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->program(&r.target, 0, data, sizeof data));
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.oversize, 0);
    assert_true(s.largest <= 400 && s.largest > 300);
    rig_stop(&r);

    /* Too small to take our requests at all. */
    c = qemu_like();
    c.packet_size = 40;
    rig_start(&r, &c, false, NULL);
    expect_error(&r, r.target.ops->connect(&r.target), MF_EPROTO, "packet size 40 is below 64");
    rig_stop(&r);
}

static void test_acks_and_retransmission(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.no_ack = false;
    c.nak_at = 4;     /* rejects a request: we resend it */
    c.corrupt_at = 6; /* a reply with a bad checksum: we say '-', it comes again */
    c.garbage_at = 7; /* noise before a reply: skipped */
    struct rig r;
    rig_start(&r, &c, false, NULL);
    uint8_t data[64], back[64];
    firmware(data, sizeof data, 9);
    OK(r.target.ops->connect(&r.target));
    for (int i = 0; i < 4; i++) {
        OK(r.target.ops->program(&r.target, 0, data, sizeof data));
        OK(r.target.ops->read(&r.target, 0, back, sizeof back));
        assert_memory_equal(back, data, sizeof data);
    }
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.requests_resent, 1);
    assert_int_equal(s.naks, 1);
    assert_int_equal(s.resent, 1);
    struct mf_gdb_stats g;
    mf_gdb_stats(&r.target, &g);
    assert_int_equal(g.resends, 1);
    assert_int_equal(g.naks, 1);
    rig_stop(&r);
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the fault at packet `at` during a read after connect; checks code and text, that the
 * next operation fails fast, that disconnect works and that a new connection works. Returns how
 * long the reads took until the fault ended them (ms). */
static uint64_t fault_case(struct mf_fakegdb_config c, int code, const char *text)
{
    struct mf_rsp_options o;
    mf_rsp_options_init(&o);
    o.timeout_ms = 200;
    struct rig r;
    rig_start(&r, &c, false, &o);
    uint8_t back[16];
    OK(r.target.ops->connect(&r.target));
    int err = 0;
    uint64_t started = ms_now();
    /* The fault is set at packet 6: a few reads reach it. */
    for (int i = 0; i < 6 && !err; i++)
        err = r.target.ops->read(&r.target, 0, back, sizeof back);
    uint64_t took = ms_now() - started;
    expect_error(&r, err, code, text);
    expect_error(&r, r.target.ops->read(&r.target, 0, back, sizeof back), MF_EIO, "lost earlier");
    assert_int_equal(r.target.ops->disconnect(&r.target), 0);
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    unsigned connections = s.connections;
    /* The server comes back healthy. */
    mf_fakegdb_faults(r.fake, 0, 0);
    c.stall_at = c.close_at = 0;
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->read(&r.target, 0, back, sizeof back));
    OK(r.target.ops->disconnect(&r.target));
    mf_fakegdb_stats(r.fake, &s);
    assert_true(s.connections > connections);
    rig_stop(&r);
    return took;
}

static void test_fault_stall(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.stall_at = 6;
    fault_case(c, MF_ETIMEOUT, "no reply from the GDB server within 200 ms to 'm0,10'");
}

static void test_fault_disconnect(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.close_at = 6;
    fault_case(c, MF_EIO, "the GDB server closed the connection");
}

static void test_fault_flood(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.flood_at = 6;
    fault_case(c, MF_EPROTO, "answered garbage");
}

static void test_fault_nonsense(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.nonsense_at = 6;
    fault_case(c, MF_EPROTO, "answered 'Zzz?' to 'm0,10'");
}

/* Bytes that keep coming are no reply: a server that streams acks without end is timed out like
 * a silent one (it streams for 10 s; the timeout is 200 ms). */
static void test_fault_endless_acks(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.ack_flood_at = 6;
    uint64_t took = fault_case(c, MF_ETIMEOUT, "no reply from the GDB server within 200 ms");
    if (took > 3000)
        fail_msg("the reads took %llu ms: the timeout did not hold", (unsigned long long)took);
}

static void test_fault_bad_checksum_no_ack(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.corrupt_at = 6;
    fault_case(c, MF_EPROTO, "bad checksum");
}

static void test_fault_refusals(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.scripts[0] = (struct mf_fakegdb_script){"m2000ff00", "E0E"};
    c.scripts[1] = (struct mf_fakegdb_script){"X100", "E01"};
    c.scripts[2] = (struct mf_fakegdb_script){"qSupported", "PacketSize=zz"};
    struct rig r;
    rig_start(&r, &c, false, NULL);
    expect_error(&r, r.target.ops->connect(&r.target), MF_EPROTO, "qSupported reply");
    rig_stop(&r);
    c.scripts[2] = (struct mf_fakegdb_script){NULL, NULL};
    rig_start(&r, &c, false, NULL);
    OK(r.target.ops->connect(&r.target));
    uint8_t got[8];
    expect_error(&r, r.target.ops->read_uid(&r.target, got, 8), MF_EIO,
                 "the GDB server refused 'm2000ff00,8' (E0E)");
    uint8_t data[8] = {0};
    expect_error(&r, r.target.ops->program(&r.target, 0x100, data, 8), MF_EIO,
                 "the GDB server refused 'X100,8:");
    OK(r.target.ops->program(&r.target, 0x200, data, 8)); /* an error reply breaks nothing */
    expect_error(&r, r.target.ops->program(&r.target, 0x202, data, 8), MF_EINVAL, "not aligned");
    expect_error(&r, r.target.ops->program(&r.target, FLASH_SIZE - 4, data, 8), MF_EINVAL,
                 "not inside one flash region");
    expect_error(&r, r.target.ops->protect(&r.target, 1), MF_ENOTSUP, "no [gdb] protect");
    rig_stop(&r);
}

struct canceller {
    struct mf_target *target;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&c->target->cancel, 1);
    return NULL;
}

static void test_cancel_while_waiting(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.stall_at = 6;
    struct mf_rsp_options o;
    mf_rsp_options_init(&o);
    o.timeout_ms = 600000; /* only the cancel can end the wait */
    struct rig r;
    rig_start(&r, &c, false, &o);
    OK(r.target.ops->connect(&r.target));
    uint8_t back[16];
    int err = 0;
    struct canceller k = {&r.target};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, cancel_later, &k), 0);
    /* The third read stalls; nothing but the cancel ends it. */
    for (int i = 0; i < 6 && !err; i++)
        err = r.target.ops->read(&r.target, 0, back, sizeof back);
    pthread_join(thread, NULL);
    expect_error(&r, err, MF_ECANCELED, "cancelled while waiting");
    expect_error(&r, r.target.ops->erase(&r.target, 0, 1024), MF_EIO, "lost earlier");
    assert_int_equal(r.target.ops->disconnect(&r.target), 0);
    /* A cancel before an operation stops it before it sends anything. */
    atomic_store(&r.target.cancel, 0);
    mf_fakegdb_faults(r.fake, 0, 0);
    OK(r.target.ops->connect(&r.target));
    atomic_store(&r.target.cancel, 1);
    expect_error(&r, r.target.ops->read(&r.target, 0, back, 4), MF_ECANCELED, "cancelled");
    assert_int_equal(r.target.ops->disconnect(&r.target), 0);
    rig_stop(&r);
}

static void test_monitor_commands(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = openocd_like();
    c.monitor = true;
    struct mf_rsp_options o;
    char why[160];
    mf_rsp_options_init(&o);
    assert_int_equal(
        mf_rsp_options_set(&o, "connect", "monitor hello && attach 1", why, sizeof why), 0);
    assert_int_equal(mf_rsp_options_set(&o, "halt", "monitor halt", why, sizeof why), 0);
    assert_int_equal(mf_rsp_options_set(&o, "reset", "monitor reset halt", why, sizeof why), 0);
    assert_int_equal(mf_rsp_options_set(&o, "unlock", "monitor unlock 0", why, sizeof why), 0);
    assert_int_equal(mf_rsp_options_set(&o, "mass_erase", "monitor flash erase_sector 0 0 last",
                                        why, sizeof why),
                     0);
    assert_int_equal(mf_rsp_options_set(&o, "protect", "monitor lock {level} && monitor reset halt",
                                        why, sizeof why),
                     0);
    assert_int_equal(mf_rsp_options_set(&o, "run", "monitor reset run", why, sizeof why), 0);
    struct rig r;
    rig_start(&r, &c, false, &o);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->unlock(&r.target));
    OK(r.target.ops->erase_chip(&r.target));
    OK(r.target.ops->protect(&r.target, 2));
    OK(r.target.ops->start(&r.target, MF_START_RESET));
    OK(r.target.ops->disconnect(&r.target));
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_string_equal(s.monitor_log, "hello\nhalt\nreset halt\nunlock 0\n"
                                       "flash erase_sector 0 0 last\nlock 2\nreset halt\n"
                                       "reset run\n");
    assert_int_equal(s.attaches, 1);
    assert_int_equal(s.continues, 0);    /* `run` had no continue step */
    assert_int_equal(s.flash_erases, 0); /* the mass erase command replaced vFlashErase */
    assert_int_equal(s.registers_written, 0);
    assert_int_equal(s.detaches, 0);
    rig_stop(&r);

    /* A failing command: its output is in the error. */
    mf_rsp_options_init(&o);
    assert_int_equal(mf_rsp_options_set(&o, "unlock", "monitor fail to unlock", why, sizeof why),
                     0);
    assert_int_equal(
        mf_rsp_options_set(&o, "run", "monitor system_reset && continue", why, sizeof why), 0);
    rig_start(&r, &c, false, &o);
    OK(r.target.ops->connect(&r.target));
    expect_error(&r, r.target.ops->unlock(&r.target), MF_EIO,
                 "'monitor fail to unlock' failed (E01): boom: fail to unlock");
    OK(r.target.ops->start(&r.target, MF_START_RESET));
    OK(r.target.ops->disconnect(&r.target));
    assert_int_equal(mf_fakegdb_wait_closed(r.fake, 1), 0);
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.continues, 1);
    rig_stop(&r);

    /* A server without monitor commands says so. */
    c.monitor = false;
    mf_gdb_set_options(&r.target, NULL);
    rig_start(&r, &c, false, &o);
    OK(r.target.ops->connect(&r.target));
    expect_error(&r, r.target.ops->unlock(&r.target), MF_ENOTSUP, "has no monitor commands");
    /* Settings changed between cycles take effect at the next connect. */
    mf_gdb_set_options(&r.target, NULL);
    OK(r.target.ops->disconnect(&r.target));
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->unlock(&r.target));
    rig_stop(&r);
}

/* One deadline for the whole monitor command: output that keeps coming, each packet well inside
 * the timeout, does not extend it. */
static void test_monitor_output_does_not_extend_the_deadline(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = openocd_like();
    c.monitor = true;
    c.monitor_drip_ms = 100;
    c.monitor_drips = 30; /* 3 s of output before the result */
    struct mf_rsp_options o;
    char why[160];
    mf_rsp_options_init(&o);
    o.long_timeout_ms = 400;
    assert_int_equal(mf_rsp_options_set(&o, "unlock", "monitor slow unlock", why, sizeof why), 0);
    struct rig r;
    rig_start(&r, &c, false, &o);
    OK(r.target.ops->connect(&r.target));
    uint64_t started = ms_now();
    int err = r.target.ops->unlock(&r.target);
    uint64_t took = ms_now() - started;
    expect_error(&r, err, MF_ETIMEOUT, "'monitor slow unlock' did not finish within 400 ms");
    assert_non_null(strstr(r.target.error, "slow unlock: still busy (1)"));
    if (took > 1500)
        fail_msg("the command took %llu ms with a timeout of 400 ms", (unsigned long long)took);
    expect_error(&r, r.target.ops->erase(&r.target, 0, 1024), MF_EIO, "lost earlier");
    OK(r.target.ops->disconnect(&r.target));
    rig_stop(&r);
}

/* Programs a vector table and starts the application on a server that refuses P (so g/G), with
 * `description` as its target.xml (NULL: none); returns the start's result, the server's view in
 * `s`. */
static int start_with_g(const char *description, enum mf_start_mode mode,
                        struct mf_fakegdb_stats *s, char *error, size_t error_size)
{
    struct mf_fakegdb_config c = qemu_like();
    c.refuse_p = true;
    c.target_xml = description;
    struct rig r;
    rig_start(&r, &c, false, NULL);
    uint8_t data[16];
    firmware(data, sizeof data, 1);
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->erase(&r.target, 0, 1024));
    OK(r.target.ops->program(&r.target, 0, data, sizeof data));
    int err = r.target.ops->start(&r.target, mode);
    snprintf(error, error_size, "%s", r.target.error);
    OK(r.target.ops->disconnect(&r.target));
    assert_int_equal(mf_fakegdb_wait_closed(r.fake, 1), 0);
    mf_fakegdb_stats(r.fake, s);
    rig_stop(&r);
    return err;
}

static void test_start_without_p(void **state)
{
    (void)state;
    struct mf_fakegdb_stats s;
    char error[MF_TARGET_ERROR_MAX];
    /* No run command: the reset start is the vector start. No description: xPSR is unknown and
     * left as it was. */
    assert_int_equal(start_with_g(NULL, MF_START_RESET, &s, error, sizeof error), 0);
    assert_int_equal(s.g_writes, 1);
    assert_int_equal(s.sp, 0x2000FE00u);
    assert_int_equal(s.pc, 0x140u);
    assert_int_equal(s.xpsr, 0);
    assert_int_equal(s.continues, 1);

    /* A description that names xPSR: the Thumb bit goes in with G, at xPSR's place in the 'g'
     * registers (after r0..r15: QEMU numbers it 25, and 16..24 take no room). */
    assert_int_equal(start_with_g(qemu_target, MF_START_VECTOR, &s, error, sizeof error), 0);
    assert_int_equal(s.registers_written, 0);
    assert_int_equal(s.g_writes, 1);
    assert_int_equal(s.sp, 0x2000FE00u);
    assert_int_equal(s.pc, 0x140u);
    assert_int_equal(s.xpsr, 1u << 24);
    assert_int_equal(s.continues, 1);
}

/* A description that puts xPSR past the 'g' registers the server sends (a 64-bit register
 * before it): no G with the Thumb bit in the wrong place, no start, a clear error. */
static const char wide_target[] =
    "<target><feature name=\"org.gnu.gdb.arm.m-profile\"><reg name=\"r0\" bitsize=\"32\"/>"
    "<reg name=\"r1\" bitsize=\"32\"/><reg name=\"r2\" bitsize=\"32\"/>"
    "<reg name=\"r3\" bitsize=\"32\"/><reg name=\"r4\" bitsize=\"32\"/>"
    "<reg name=\"r5\" bitsize=\"32\"/><reg name=\"r6\" bitsize=\"32\"/>"
    "<reg name=\"r7\" bitsize=\"32\"/><reg name=\"r8\" bitsize=\"32\"/>"
    "<reg name=\"r9\" bitsize=\"32\"/><reg name=\"r10\" bitsize=\"32\"/>"
    "<reg name=\"r11\" bitsize=\"32\"/><reg name=\"r12\" bitsize=\"32\"/>"
    "<reg name=\"sp\" bitsize=\"32\"/><reg name=\"lr\" bitsize=\"32\"/>"
    "<reg name=\"pc\" bitsize=\"32\"/><reg name=\"d0\" bitsize=\"64\"/>"
    "<reg name=\"xPSR\" bitsize=\"32\"/></feature></target>";

static void test_start_without_p_xpsr_out_of_reach(void **state)
{
    (void)state;
    struct mf_fakegdb_stats s;
    char error[MF_TARGET_ERROR_MAX];
    assert_int_equal(start_with_g(wide_target, MF_START_VECTOR, &s, error, sizeof error),
                     MF_EPROTO);
    if (!strstr(error, "cannot place xPSR (register 17, 32 bits) in the server's 68 bytes"))
        fail_msg("error: %s", error);
    assert_int_equal(s.g_writes, 0);
    assert_int_equal(s.continues, 0);
}

static void test_serial_transport(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.no_ack = false;
    struct rig r;
    rig_start(&r, &c, true, NULL);
    uint8_t data[2048], back[2048], got[8];
    firmware(data, sizeof data, 21);
    for (int round = 0; round < 2; round++) {
        OK(r.target.ops->connect(&r.target));
        OK(r.target.ops->read_uid(&r.target, got, 8));
        assert_memory_equal(got, uid, 8);
        OK(r.target.ops->erase(&r.target, 0, 2048));
        OK(r.target.ops->program(&r.target, 0, data, sizeof data));
        OK(r.target.ops->read(&r.target, 0, back, sizeof back));
        assert_memory_equal(back, data, sizeof data);
        /* The first session leaves the application running: the probe then ignores packets
         * until the next session's interrupt stops it. */
        if (round == 0)
            OK(r.target.ops->start(&r.target, MF_START_VECTOR));
        OK(r.target.ops->disconnect(&r.target));
        data[8] ^= 0xFF;
    }
    struct mf_fakegdb_stats s;
    mf_fakegdb_stats(r.fake, &s);
    assert_int_equal(s.continues, 1);
    assert_int_equal(s.interrupts, 2);
    rig_stop(&r);
}

static void test_specs(void **state)
{
    (void)state;
    struct mf_target t = {0};
    static const char *const bad[] = {"gdb:",
                                      "gdb:tcp:",
                                      "gdb:tcp:host",
                                      "gdb:tcp:host:",
                                      "gdb:tcp:h:3x3",
                                      "gdb:serial:",
                                      "gdb:serial:/dev/x:300",
                                      "gdb:serial::115200",
                                      "gdb:udp:x:1",
                                      "gdb:serial:/d:96x",
                                      NULL};
    for (int i = 0; bad[i]; i++) {
        if (mf_gdb_open(&t, bad[i], NULL) != MF_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(strstr(t.error, "gdb:") == t.error);
        assert_false(mf_gdb_is(&t));
        mf_gdb_close(&t);
    }
    static const char *const good[] = {"gdb:tcp:localhost:3333",
                                       "gdb:tcp::1234",
                                       "gdb:tcp:[::1]:2331",
                                       "gdb:serial:/dev/ttyACM0",
                                       "gdb:serial:/dev/ttyUSB0:921600",
                                       NULL};
    for (int i = 0; good[i]; i++) {
        if (mf_gdb_open(&t, good[i], NULL))
            fail_msg("'%s': %s", good[i], t.error);
        assert_true(mf_gdb_is(&t));
        mf_gdb_close(&t);
        assert_false(mf_gdb_is(&t));
        mf_gdb_close(&t); /* twice is fine */
    }
    /* Nobody listening, and a device that does not exist. */
    struct mf_fakegdb_config c = qemu_like();
    struct mf_fakegdb *fake = mf_fakegdb_start(&c, false);
    char spec[64];
    snprintf(spec, sizeof spec, "%s", mf_fakegdb_spec(fake));
    mf_fakegdb_stop(fake); /* the port is free now */
    assert_int_equal(mf_gdb_open(&t, spec, NULL), 0);
    t.profile = &profile;
    int err = t.ops->connect(&t);
    assert_int_equal(err, MF_EIO);
    assert_non_null(strstr(t.error, "no GDB server at 127.0.0.1:"));
    assert_int_equal(t.ops->disconnect(&t), 0);
    uint8_t b[4];
    assert_int_equal(t.ops->read(&t, 0, b, 4), MF_EBADF);
    mf_gdb_close(&t);
    assert_int_equal(mf_gdb_open(&t, "gdb:serial:/nonexistent/ttyX", NULL), 0);
    t.profile = &profile;
    assert_int_equal(t.ops->connect(&t), MF_ENOENT);
    assert_non_null(strstr(t.error, "cannot open /nonexistent/ttyX"));
    mf_gdb_close(&t);
}

/* An IPv6 address and a host name (looked up, as no address) both reach the server. */
static void test_tcp_hosts(void **state)
{
    (void)state;
    struct mf_fakegdb_config c = qemu_like();
    c.ipv6 = true;
    struct rig r;
    rig_start(&r, &c, false, NULL);
    assert_non_null(strstr(mf_fakegdb_spec(r.fake), "gdb:tcp:[::1]:"));
    uint8_t got[8];
    OK(r.target.ops->connect(&r.target));
    OK(r.target.ops->read_uid(&r.target, got, 8));
    assert_memory_equal(got, uid, 8);
    OK(r.target.ops->disconnect(&r.target));
    rig_stop(&r);

    c.ipv6 = false;
    struct mf_fakegdb *fake = mf_fakegdb_start(&c, false);
    assert_non_null(fake);
    char spec[64];
    const char *port = strrchr(mf_fakegdb_spec(fake), ':') + 1;
    snprintf(spec, sizeof spec, "gdb:tcp:localhost:%s", port);
    struct mf_target t = {0};
    assert_int_equal(mf_gdb_open(&t, spec, NULL), 0);
    t.profile = &profile;
    if (t.ops->connect(&t))
        fail_msg("%s: %s", spec, t.error);
    assert_int_equal(t.ops->disconnect(&t), 0);
    mf_gdb_close(&t);
    snprintf(spec, sizeof spec, "gdb:tcp:no-such-host.invalid:%s", port);
    assert_int_equal(mf_gdb_open(&t, spec, NULL), 0);
    t.profile = &profile;
    assert_int_equal(t.ops->connect(&t), MF_EINVAL);
    assert_non_null(strstr(t.error, "no-such-host.invalid"));
    mf_gdb_close(&t);
    mf_fakegdb_stop(fake);
}

/* Frames `payload` as the server would. */
static size_t frame(char *out, size_t size, const char *payload)
{
    unsigned sum = 0;
    for (const char *p = payload; *p; p++)
        sum += (unsigned char)*p;
    return (size_t)snprintf(out, size, "$%s#%02x", payload, sum & 0xFFu);
}

/* A connection handed in (one end of a socketpair, the server's replies written beforehand):
 * it serves one connect, and is closed by disconnect or by close when never used. */
static void test_handed_connection(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char script[256];
    size_t n = 0;
    n += frame(script + n, sizeof script - n, "PacketSize=400");
    n += frame(script + n, sizeof script - n, "S05");
    n += frame(script + n, sizeof script - n, "dead23247d2a0001");
    assert_int_equal(write(sv[1], script, n), (ssize_t)n);
    struct mf_target t = {0};
    assert_int_equal(mf_gdb_open_fd(&t, sv[0], NULL), 0);
    t.profile = &profile;
    uint8_t got[8];
    if (t.ops->connect(&t) || t.ops->read_uid(&t, got, 8))
        fail_msg("%s", t.error);
    assert_memory_equal(got, uid, 8);
    assert_int_equal(t.ops->disconnect(&t), 0);
    char sent[256] = "";
    ssize_t k = read(sv[1], sent, sizeof sent - 1);
    assert_true(k > 0);
    assert_non_null(strstr(sent, "$qSupported:"));
    assert_non_null(strstr(sent, "$m2000ff00,8#"));
    assert_int_equal(t.ops->connect(&t), MF_EBADF);
    assert_non_null(strstr(t.error, "used up"));
    mf_gdb_close(&t);
    close(sv[1]);

    /* Never connected: close closes it. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mf_gdb_open_fd(&t, sv[0], NULL), 0);
    mf_gdb_close(&t);
    char byte;
    assert_int_equal(read(sv[1], &byte, 1), 0); /* the other end is gone */
    close(sv[1]);
    assert_int_equal(mf_gdb_open_fd(&t, -1, NULL), MF_EINVAL);
    assert_false(mf_gdb_is(&t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_no_ack),
        cmocka_unit_test(test_plain_with_acks),
        cmocka_unit_test(test_lazy_erase_bookkeeping),
        cmocka_unit_test(test_lazy_erase_many_spans),
        cmocka_unit_test(test_memory_map_flash),
        cmocka_unit_test(test_memory_map_block_mismatch),
        cmocka_unit_test(test_x_refused_uses_m),
        cmocka_unit_test(test_small_packets_rle_short_reads),
        cmocka_unit_test(test_acks_and_retransmission),
        cmocka_unit_test(test_fault_stall),
        cmocka_unit_test(test_fault_disconnect),
        cmocka_unit_test(test_fault_flood),
        cmocka_unit_test(test_fault_nonsense),
        cmocka_unit_test(test_fault_endless_acks),
        cmocka_unit_test(test_fault_bad_checksum_no_ack),
        cmocka_unit_test(test_fault_refusals),
        cmocka_unit_test(test_cancel_while_waiting),
        cmocka_unit_test(test_monitor_commands),
        cmocka_unit_test(test_monitor_output_does_not_extend_the_deadline),
        cmocka_unit_test(test_start_without_p),
        cmocka_unit_test(test_start_without_p_xpsr_out_of_reach),
        cmocka_unit_test(test_serial_transport),
        cmocka_unit_test(test_specs),
        cmocka_unit_test(test_tcp_hosts),
        cmocka_unit_test(test_handed_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
