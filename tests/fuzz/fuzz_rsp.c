/* Fuzz target: the GDB remote protocol layer (core/mf_rsp) on a hostile byte stream: the receive
 * state machine fed in pieces whose sizes come from the input, every packet run-length expanded
 * and unescaped, the qSupported parser on each, and the memory map, target description and
 * command list parsers on the whole input. */
#include "mf_rsp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buffer[512], expanded[2048];
    struct mf_rsp_decoder d;
    mf_rsp_decoder_init(&d, buffer, sizeof buffer);
    size_t off = 0, step = size ? (size_t)(data[0] % 13) + 1 : 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step, used = 0;
        while (used < n) {
            size_t u = 0;
            enum mf_rsp_event ev = mf_rsp_decode(&d, data + off + used, n - used, &u);
            if (u > n - used || (u == 0 && ev == MF_RSP_EV_NONE))
                abort();
            used += u;
            if (ev != MF_RSP_EV_PACKET)
                continue;
            if (d.length > d.capacity)
                abort();
            size_t e = 0;
            if (mf_rsp_expand(d.buffer, d.length, expanded, sizeof expanded, &e) == 0) {
                if (e > sizeof expanded)
                    abort();
                struct mf_rsp_features f;
                mf_rsp_parse_supported(expanded, e, &f);
                mf_rsp_is_error(expanded, e);
                size_t u2;
                if (mf_rsp_unescape(expanded, e, &u2) == 0 && u2 > e)
                    abort();
            }
        }
        off += n;
    }

    struct mf_rsp_memory_map map;
    char error[96];
    if (mf_rsp_parse_memory_map((const char *)data, size, &map, error, sizeof error) == 0) {
        if (map.count > MF_RSP_MAP_MAX)
            abort();
        for (unsigned i = 0; i < map.count; i++)
            mf_rsp_map_find(&map, map.regions[i].start + map.regions[i].length - 1);
    }
    size_t pos = 0;
    unsigned next = 0, regnum, bits;
    char include[32];
    for (int i = 0; i < 64; i++) {
        size_t before = pos;
        int r = mf_rsp_tdesc_find((const char *)data, size, &pos, "xpsr", &next, &regnum, &bits,
                                  include, sizeof include);
        if (r != 0 || !include[0] || pos <= before || pos > size)
            break;
    }

    char list[MF_RSP_COMMANDS_MAX];
    size_t n = size < sizeof list - 1 ? size : sizeof list - 1;
    memcpy(list, data, n);
    list[n] = '\0';
    struct mf_rsp_options o;
    mf_rsp_options_init(&o);
    mf_rsp_options_set(&o, "run", list, error, sizeof error);
    mf_rsp_options_set(&o, "timeout", list, error, sizeof error);
    struct mf_rsp_step s;
    pos = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t before = pos;
        if (mf_rsp_step_next(list, &pos, &s) != 1)
            break;
        if (pos <= before || pos > n)
            abort();
    }
    return 0;
}
