/* The GDB remote protocol packet layer (core/mf_rsp): framing and checksums against packets GDB
 * itself sends, escaping round trips over every byte value, run-length decoding with the
 * protocol manual's example, the receive state machine fed in every split, the qSupported,
 * memory map and target description parsers on real servers' texts and on hostile ones, and the
 * [gdb] job settings. */
#include "mf_err.h"
#include "mf_rsp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static size_t frame_text(uint8_t *buffer, const char *payload)
{
    size_t n = strlen(payload);
    memcpy(buffer + 1, payload, n);
    return mf_rsp_frame(buffer, n);
}

/* Checksums of packets as GDB 13 sends them (captured with `set debug remote 1`). */
static void test_frame_known_packets(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = frame_text(b, "?");
    assert_int_equal(n, 5);
    assert_memory_equal(b, "$?#3f", 5);
    n = frame_text(b, "g");
    assert_memory_equal(b, "$g#67", n);
    n = frame_text(b, "QStartNoAckMode");
    assert_memory_equal(b, "$QStartNoAckMode#b0", n);
    n = frame_text(b, "vMustReplyEmpty");
    assert_memory_equal(b, "$vMustReplyEmpty#3a", n);
    n = frame_text(b, "");
    assert_memory_equal(b, "$#00", n);
    assert_int_equal(mf_rsp_checksum((const uint8_t *)"OK", 2), 0x9a);
}

static void test_escape_every_byte(void **state)
{
    (void)state;
    uint8_t in[256], out[512], back[512];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    size_t used, n = mf_rsp_escape(out, sizeof out, in, sizeof in, &used);
    assert_int_equal(used, 256);
    assert_int_equal(n, 256 + 4); /* # $ } * */
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] != '#' && out[i] != '$' && out[i] != '*');
    /* '}' only as the escape itself, followed by the XORed byte. */
    uint8_t expect_dollar[2] = {'}', '$' ^ 0x20};
    assert_memory_equal(out + '$' + 1, expect_dollar, 2); /* after the escaped '#' */
    memcpy(back, out, n);
    size_t m;
    assert_int_equal(mf_rsp_unescape(back, n, &m), 0);
    assert_int_equal(m, 256);
    assert_memory_equal(back, in, 256);
}

static void test_escape_stops_at_room(void **state)
{
    (void)state;
    const uint8_t in[] = {'a', '#', 'b'};
    uint8_t out[4];
    size_t used, n = mf_rsp_escape(out, 2, in, 3, &used);
    /* "a" fits, "}\x03" would need 2 more bytes. */
    assert_int_equal(n, 1);
    assert_int_equal(used, 1);
    n = mf_rsp_escape(out, 3, in, 3, &used);
    assert_int_equal(n, 3);
    assert_int_equal(used, 2);
    n = mf_rsp_escape(out, 0, in, 3, &used);
    assert_int_equal(n, 0);
    assert_int_equal(used, 0);
    uint8_t bad[] = {'x', '}'};
    size_t m;
    assert_int_equal(mf_rsp_unescape(bad, 2, &m), MF_EPROTO);
}

static void test_expand_runs(void **state)
{
    (void)state;
    uint8_t out[128];
    size_t n;
    /* The manual's example: "0* " is "0000" (' ' is 32: three more). */
    assert_int_equal(mf_rsp_expand((const uint8_t *)"0* ", 3, out, sizeof out, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "0000", 4);
    /* '~' (126): 97 more; a run right after a run repeats the same character. */
    assert_int_equal(mf_rsp_expand((const uint8_t *)"ab*~", 4, out, sizeof out, &n), 0);
    assert_int_equal(n, 99);
    assert_int_equal(out[98], 'b');
    assert_int_equal(mf_rsp_expand((const uint8_t *)"x*!*!", 5, out, sizeof out, &n), 0);
    assert_int_equal(n, 9);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"*!", 2, out, sizeof out, &n), MF_EPROTO);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"a*", 2, out, sizeof out, &n), MF_EPROTO);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"a*\x1f", 3, out, sizeof out, &n), MF_EPROTO);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"a*\x7f", 3, out, sizeof out, &n), MF_EPROTO);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"ab*~", 4, out, 50, &n), MF_ENOSPC);
    assert_int_equal(mf_rsp_expand((const uint8_t *)"abc", 3, out, 2, &n), MF_ENOSPC);
}

/* Feeds `stream` in pieces of `step` bytes; records the events with the packets' texts. */
static void decode_all(const char *stream, size_t step, char *log, size_t log_size)
{
    uint8_t buffer[16];
    struct mf_rsp_decoder d;
    mf_rsp_decoder_init(&d, buffer, sizeof buffer);
    size_t len = strlen(stream), at = 0;
    log[0] = '\0';
    while (at < len) {
        size_t n = len - at < step ? len - at : step, used = 0;
        while (used < n) {
            size_t u;
            enum mf_rsp_event ev =
                mf_rsp_decode(&d, (const uint8_t *)stream + at + used, n - used, &u);
            used += u;
            char item[40];
            switch (ev) {
            case MF_RSP_EV_NONE:
                item[0] = '\0';
                break;
            case MF_RSP_EV_ACK:
                snprintf(item, sizeof item, "+ ");
                break;
            case MF_RSP_EV_NAK:
                snprintf(item, sizeof item, "- ");
                break;
            case MF_RSP_EV_PACKET:
                snprintf(item, sizeof item, "[%.*s] ", (int)d.length, (const char *)d.buffer);
                break;
            case MF_RSP_EV_BAD_CHECKSUM:
                snprintf(item, sizeof item, "bad ");
                break;
            case MF_RSP_EV_OVERFLOW:
                snprintf(item, sizeof item, "overflow ");
                break;
            case MF_RSP_EV_INTERRUPT:
                snprintf(item, sizeof item, "^C ");
                break;
            }
            strncat(log, item, log_size - strlen(log) - 1);
        }
        at += n;
    }
}

static void test_decoder_stream(void **state)
{
    (void)state;
    /* acks, a packet, noise, a notification (dropped), a bad checksum, a packet cut by a new
     * '$' (restart), an interrupt, an overflow, a packet right after it. */
    const char *stream = "+-$OK#9anoise%Stop:T05#00$OK#00$abc$g#67\x03"
                         "$0123456789abcdefXYZ#00$OK#9a";
    const char *expect = "+ - [OK] bad [g] ^C overflow [OK] ";
    for (size_t step = 1; step <= strlen(stream); step++) {
        char log[256];
        decode_all(stream, step, log, sizeof log);
        assert_string_equal(log, expect);
    }
    uint8_t buffer[8];
    struct mf_rsp_decoder d;
    mf_rsp_decoder_init(&d, buffer, sizeof buffer);
    size_t used;
    assert_int_equal(mf_rsp_decode(&d, (const uint8_t *)"xyz$", 4, &used), MF_RSP_EV_NONE);
    assert_int_equal(d.garbage, 3);
    /* A checksum that is not hex is a bad checksum; a '$' there starts the next packet. */
    assert_int_equal(mf_rsp_decode(&d, (const uint8_t *)"a#4$", 4, &used), MF_RSP_EV_BAD_CHECKSUM);
    assert_int_equal(used, 3);
    assert_int_equal(mf_rsp_decode(&d, (const uint8_t *)"$OK#9A", 6, &used), MF_RSP_EV_PACKET);
    assert_int_equal(d.length, 2);
}

static void test_numbers(void **state)
{
    (void)state;
    uint64_t v;
    size_t end;
    assert_int_equal(mf_rsp_hex_u64("2000ff00,8", 10, &v, &end), 0);
    assert_int_equal(v, 0x2000ff00u);
    assert_int_equal(end, 8);
    assert_int_equal(mf_rsp_hex_u64("FFFFFFFFFFFFFFFF", 16, &v, &end), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(mf_rsp_hex_u64("10000000000000000", 17, &v, &end), MF_EPROTO);
    assert_int_equal(mf_rsp_hex_u64(",", 1, &v, &end), MF_EPROTO);
    uint8_t b[3];
    assert_int_equal(mf_rsp_hex_decode("0aFf7e", b, 3), 0);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(mf_rsp_hex_decode("0g", b, 1), MF_EPROTO);
    char text[7];
    mf_rsp_hex_encode(text, b, 3);
    assert_memory_equal(text, "0aff7e", 6);
    assert_true(mf_rsp_is_error((const uint8_t *)"E01", 3));
    assert_true(mf_rsp_is_error((const uint8_t *)"E.memtype", 9));
    assert_false(mf_rsp_is_error((const uint8_t *)"E0", 2));
    assert_false(mf_rsp_is_error((const uint8_t *)"ef01", 4));
    assert_false(mf_rsp_is_error((const uint8_t *)"E0123", 5)); /* m data, not an error */
}

static void parse_supported(const char *text, struct mf_rsp_features *f, int expect)
{
    assert_int_equal(mf_rsp_parse_supported((const uint8_t *)text, strlen(text), f), expect);
}

static void test_supported(void **state)
{
    (void)state;
    struct mf_rsp_features f;
    /* QEMU 7.2 and OpenOCD 0.12 as they answer. */
    parse_supported("PacketSize=1000;qXfer:features:read+;ReverseStep+;ReverseContinue+;"
                    "QStartNoAckMode+",
                    &f, 0);
    assert_int_equal(f.packet_size, 0x1000);
    assert_true(f.no_ack && f.features && !f.memory_map);
    parse_supported("PacketSize=3fff;qXfer:memory-map:read+;qXfer:features:read+;"
                    "qXfer:threads:read+;QStartNoAckMode+;vContSupported+",
                    &f, 0);
    assert_int_equal(f.packet_size, 0x3fff);
    assert_true(f.no_ack && f.features && f.memory_map && f.vcont);
    parse_supported("", &f, 0);
    assert_int_equal(f.packet_size, MF_RSP_PACKET_SIZE_DEFAULT);
    assert_false(f.no_ack);
    parse_supported("QStartNoAckMode-;qXfer:memory-map:read?", &f, 0);
    assert_false(f.no_ack || f.memory_map);
    parse_supported("PacketSize=123456789abc", &f, 0);
    assert_int_equal(f.packet_size, UINT32_MAX);
    parse_supported("PacketSize=;x+", &f, MF_EPROTO);
    parse_supported("PacketSize=0", &f, MF_EPROTO);
    parse_supported("PacketSize=40g", &f, MF_EPROTO);
}

/* OpenOCD's map of an STM32F4 (three flash regions with different blocks). */
static const char openocd_map[] =
    "<?xml version=\"1.0\"?>\n"
    "<!DOCTYPE memory-map PUBLIC \"+//IDN gnu.org//DTD GDB Memory Map V1.0//EN\" "
    "\"http://sourceware.org/gdb/gdb-memory-map.dtd\">\n"
    "<memory-map>\n"
    "<!-- a comment with <memory> in it -->\n"
    "<memory type=\"ram\" start=\"0x0\" length=\"0x8000000\"/>\n"
    "<memory type=\"flash\" start=\"0x8000000\" length=\"0x10000\">\n"
    "<property name=\"blocksize\">0x4000</property>\n"
    "</memory>\n"
    "<memory type=\"flash\" start=\"0x8010000\" length=\"0x10000\">\n"
    "<property name=\"blocksize\">0x10000</property>\n"
    "</memory>\n"
    "<memory type='flash' start='0x8020000' length='917504'>\n"
    "<property name='blocksize'> 131072 </property>\n"
    "</memory>\n"
    "<memory type=\"ram\" start=\"0x8100000\" length=\"0xf7f00000\"/>\n"
    "</memory-map>\n";

static void test_memory_map(void **state)
{
    (void)state;
    struct mf_rsp_memory_map map;
    char error[128];
    assert_int_equal(
        mf_rsp_parse_memory_map(openocd_map, strlen(openocd_map), &map, error, sizeof error), 0);
    assert_int_equal(map.count, 5);
    assert_int_equal(map.regions[1].type, MF_RSP_MEM_FLASH);
    assert_int_equal(map.regions[1].start, 0x8000000);
    assert_int_equal(map.regions[1].blocksize, 0x4000);
    assert_int_equal(map.regions[3].length, 917504);
    assert_int_equal(map.regions[3].blocksize, 131072);
    assert_int_equal(map.regions[4].type, MF_RSP_MEM_RAM);
    const struct mf_rsp_memory *m = mf_rsp_map_find(&map, 0x8012345);
    assert_non_null(m);
    assert_int_equal(m->blocksize, 0x10000);
    assert_null(mf_rsp_map_find(&map, 0xFFFFFFFFFull + 1));
}

static void map_fails(const char *xml, const char *why)
{
    struct mf_rsp_memory_map map;
    char error[128] = "";
    assert_int_equal(mf_rsp_parse_memory_map(xml, strlen(xml), &map, error, sizeof error),
                     MF_EFORMAT);
    if (!strstr(error, why))
        fail_msg("'%s' does not say '%s'", error, why);
}

static void test_memory_map_hostile(void **state)
{
    (void)state;
    map_fails("<memory-map><memory type=\"flash\" start=\"0\" length=\"0x100\"/></memory-map>",
              "has no blocksize");
    map_fails("<memory-map><memory type=\"eeprom\" start=\"0\" length=\"1\"/>", "unknown memory");
    map_fails("<memory-map><memory type=\"ram\" start=\"0x\" length=\"1\"/>", "valid start");
    map_fails("<memory-map><memory type=\"ram\" start=\"0xffffffffffffffff\" length=\"2\"/>",
              "wraps");
    map_fails("<memory-map><memory type=\"ram\" start=\"0\" length=\"0\"/>", "empty");
    map_fails("<memory-map><memory type=\"ram\" start=\"0\" length=\"1\"", "unterminated");
    map_fails("<memory type=\"ram\" start=\"0\" length=\"1\"/>", "no <memory-map>");
    map_fails("<memory-map><memory type=\"flash\" start=\"0\" length=\"1\"><property "
              "name=\"blocksize\">0</property></memory></memory-map>",
              "bad blocksize");
    map_fails("<memory-map><!-- never closed", "unterminated");
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "<memory-map>");
    for (unsigned i = 0; i <= MF_RSP_MAP_MAX; i++)
        n += (size_t)snprintf(big + n, sizeof big - n,
                              "<memory type=\"ram\" start=\"0x%x\" length=\"0x10\"/>", i * 16);
    map_fails(big, "more than");
}

/* QEMU's description: registers numbered in an included document, xpsr given regnum 25. */
static const char qemu_target[] = "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM "
                                  "\"gdb-target.dtd\"><target><architecture>arm</architecture>"
                                  "<xi:include href=\"arm-m-profile.xml\"/>"
                                  "<xi:include href=\"arm-vfp-regs.xml\"/></target>";
static const char qemu_mprofile[] =
    "<feature name=\"org.gnu.gdb.arm.m-profile\"><reg name=\"r0\" bitsize=\"32\"/>"
    "<reg name=\"r1\" bitsize=\"32\"/><reg name=\"sp\" bitsize=\"32\" type=\"data_ptr\"/>"
    "<reg name=\"pc\" bitsize=\"32\" type=\"code_ptr\"/>"
    "<reg name=\"xpsr\" bitsize=\"32\" regnum=\"25\"/></feature>";

static void test_tdesc(void **state)
{
    (void)state;
    size_t pos = 0;
    unsigned next = 0, regnum = 0, bits = 0;
    char include[64];
    int r = mf_rsp_tdesc_find(qemu_target, strlen(qemu_target), &pos, "xpsr", &next, &regnum, &bits,
                              include, sizeof include);
    assert_int_equal(r, 0);
    assert_string_equal(include, "arm-m-profile.xml");
    size_t sub = 0;
    r = mf_rsp_tdesc_find(qemu_mprofile, strlen(qemu_mprofile), &sub, "xPSR", &next, &regnum, &bits,
                          include, sizeof include);
    assert_int_equal(r, 1);
    assert_int_equal(regnum, 25);
    assert_int_equal(bits, 32);
    /* Numbered by position: OpenOCD's style, one flat document. */
    const char *flat = "<target><feature><reg name=\"r0\" bitsize=\"32\" regnum=\"0\"/>"
                       "<reg name=\"r1\" bitsize=\"32\"/><reg name=\"xPSR\" bitsize=\"32\"/>"
                       "</feature></target>";
    pos = 0;
    next = 0;
    r = mf_rsp_tdesc_find(flat, strlen(flat), &pos, "xpsr", &next, &regnum, &bits, include,
                          sizeof include);
    assert_int_equal(r, 1);
    assert_int_equal(regnum, 2);
    pos = 0;
    next = 0;
    r = mf_rsp_tdesc_find(flat, strlen(flat), &pos, "cpsr", &next, &regnum, &bits, include,
                          sizeof include);
    assert_int_equal(r, 0);
    assert_string_equal(include, "");
    const char *bad = "<target><reg name=\"x\" regnum=\"99999999\"/></target>";
    pos = 0;
    assert_int_equal(mf_rsp_tdesc_find(bad, strlen(bad), &pos, "x", &next, &regnum, &bits, include,
                                       sizeof include),
                     MF_EFORMAT);
    const char *long_href = "<xi:include href=\"0123456789012345678901234567890123456789\"/>";
    pos = 0;
    assert_int_equal(mf_rsp_tdesc_find(long_href, strlen(long_href), &pos, "x", &next, &regnum,
                                       &bits, include, 16),
                     MF_EFORMAT);
}

static void test_options(void **state)
{
    (void)state;
    struct mf_rsp_options o;
    char error[200];
    mf_rsp_options_init(&o);
    assert_int_equal(mf_rsp_options_set(&o, "reset", "monitor reset halt", error, sizeof error), 0);
    assert_string_equal(o.reset, "monitor reset halt");
    assert_int_equal(
        mf_rsp_options_set(&o, "RUN", "monitor system_reset && continue", error, sizeof error), 0);
    assert_int_equal(
        mf_rsp_options_set(&o, "connect", "monitor swdp_scan && attach 1", error, sizeof error), 0);
    assert_int_equal(mf_rsp_options_set(&o, "timeout", "250", error, sizeof error), 0);
    assert_int_equal(o.timeout_ms, 250);
    assert_int_equal(mf_rsp_options_set(&o, "long_timeout", "0x1000", error, sizeof error), 0);
    assert_int_equal(o.long_timeout_ms, 4096);

    assert_int_equal(mf_rsp_options_set(&o, "rest", "monitor x", error, sizeof error), MF_EINVAL);
    assert_non_null(strstr(error, "unknown key"));
    assert_int_equal(mf_rsp_options_set(&o, "reset", "reset halt", error, sizeof error),
                     MF_EFORMAT);
    assert_non_null(strstr(error, "'reset halt' is not a step"));
    assert_int_equal(mf_rsp_options_set(&o, "halt", "continue", error, sizeof error), MF_EFORMAT);
    assert_non_null(strstr(error, "only in run"));
    assert_int_equal(mf_rsp_options_set(&o, "run", "continue && monitor go", error, sizeof error),
                     MF_EFORMAT);
    assert_non_null(strstr(error, "last step"));
    assert_int_equal(mf_rsp_options_set(&o, "connect", "attach x", error, sizeof error),
                     MF_EFORMAT);
    assert_int_equal(mf_rsp_options_set(&o, "timeout", "0", error, sizeof error), MF_EFORMAT);
    assert_int_equal(mf_rsp_options_set(&o, "timeout", "soon", error, sizeof error), MF_EFORMAT);
    char longer[MF_RSP_COMMANDS_MAX + 8];
    memset(longer, 'x', sizeof longer - 1);
    memcpy(longer, "monitor ", 8);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(mf_rsp_options_set(&o, "unlock", longer, error, sizeof error), MF_EFORMAT);
    /* A failed set leaves the field as it was. */
    assert_string_equal(o.reset, "monitor reset halt");
    assert_int_equal(o.timeout_ms, 250);

    size_t pos = 0;
    struct mf_rsp_step step;
    const char *list = "  monitor  flash protect 0 0 last on &&attach 1&& continue ";
    assert_int_equal(mf_rsp_step_next(list, &pos, &step), 1);
    assert_int_equal(step.kind, MF_RSP_STEP_MONITOR);
    assert_int_equal(step.text_length, strlen("flash protect 0 0 last on"));
    assert_memory_equal(step.text, "flash protect 0 0 last on", step.text_length);
    assert_int_equal(mf_rsp_step_next(list, &pos, &step), 1);
    assert_int_equal(step.kind, MF_RSP_STEP_ATTACH);
    assert_memory_equal(step.text, "1", 1);
    assert_int_equal(mf_rsp_step_next(list, &pos, &step), 1);
    assert_int_equal(step.kind, MF_RSP_STEP_CONTINUE);
    assert_int_equal(mf_rsp_step_next(list, &pos, &step), 0);
    assert_int_equal(mf_rsp_step_next(list, &pos, &step), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_known_packets),
        cmocka_unit_test(test_escape_every_byte),
        cmocka_unit_test(test_escape_stops_at_room),
        cmocka_unit_test(test_expand_runs),
        cmocka_unit_test(test_decoder_stream),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_supported),
        cmocka_unit_test(test_memory_map),
        cmocka_unit_test(test_memory_map_hostile),
        cmocka_unit_test(test_tdesc),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
