/* Fuzz target: the Intel HEX parser on arbitrary bytes. Besides "never crash", it checks two
 * properties and aborts when they fail: every data record lies below 4 GiB and holds 1-255
 * bytes, and parsing in chunks (size chosen by the first input byte) gives exactly what the
 * one-shot parse gives (records, start address, result and message). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mf_ihex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct digest {
    uint64_t hash;
    uint64_t records;
};

static void mix(struct digest *d, uint64_t v)
{
    d->hash = (d->hash ^ v) * 0x100000001B3ull;
}

static int on_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                   uint64_t where)
{
    struct digest *d = context;
    if (length == 0 || length > 255 || address + length > 0x100000000ull || where == 0)
        abort();
    mix(d, address);
    mix(d, where);
    for (size_t i = 0; i < length; i++)
        mix(d, bytes[i]);
    d->records++;
    return 0;
}

static int on_start(void *context, uint64_t address)
{
    mix(context, address ^ 0x5A5A5A5Aull);
    return 0;
}

static int parse(const uint8_t *data, size_t size, size_t chunk, struct digest *d,
                 struct mf_image_error *err)
{
    struct mf_image_sink sink = {on_data, on_start, d};
    struct mf_ihex_parser p;
    mf_ihex_init(&p, &sink);
    memset(d, 0, sizeof *d);
    int rc = 0;
    for (size_t at = 0; at < size && !rc; at += chunk)
        rc = mf_ihex_feed(&p, data + at, size - at < chunk ? size - at : chunk, err);
    if (!rc)
        rc = mf_ihex_finish(&p, err);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk = size ? (size_t)data[0] % 23u + 1u : 1u;
    struct digest one, split;
    struct mf_image_error err_one, err_split;
    int rc_one = parse(data, size, size ? size : 1, &one, &err_one);
    int rc_split = parse(data, size, chunk, &split, &err_split);
    if (rc_one != rc_split || one.hash != split.hash || one.records != split.records)
        abort();
    if (rc_one && (strcmp(err_one.text, err_split.text) != 0 || err_one.line == 0))
        abort();
    return 0;
}
