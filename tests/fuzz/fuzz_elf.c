/* Fuzz target: the ELF loader on arbitrary bytes read through the read-at callback. Aborts when
 * a delivered chunk is empty, larger than MF_ELF_CHUNK, or claims file bytes outside the input
 * (`where` + length past its end), or when an error comes without a message. The delivered data
 * must be the input's bytes at `where`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mf_elf.h"
#include "mf_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *data;
    size_t size;
};

static int read_at(void *context, uint64_t offset, void *buffer, size_t length)
{
    const struct input *in = context;
    if (offset > in->size || length > in->size - offset)
        return MF_EIO;
    memcpy(buffer, in->data + offset, length);
    return 0;
}

static int on_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                   uint64_t where)
{
    const struct input *in = context;
    if (length == 0 || length > MF_ELF_CHUNK || where > in->size || length > in->size - where)
        abort();
    if (address > UINT64_MAX - length)
        abort();
    if (memcmp(bytes, in->data + where, length) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct mf_image_sink sink = {on_data, NULL, &in};
    struct mf_image_error err;
    int rc = mf_elf_load(read_at, &in, size, &sink, &err);
    if (rc && err.text[0] == '\0')
        abort();
    return 0;
}
