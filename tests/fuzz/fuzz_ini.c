/* Fuzz target: the INI parser (job.ini, FLASHER.INI) on hostile text. */
#include "mf_ini.h"

#include <stdint.h>
#include <string.h>

static int count_item(void *context, const struct mf_ini_item *item)
{
    size_t *n = context;
    /* Every string handed out is NUL-terminated and bounded. */
    *n += strlen(item->section) + strlen(item->key) + strlen(item->value);
    return *n > (1u << 20) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    struct mf_ini_error err;
    mf_ini_parse((const char *)data, size, count_item, &n, &err);
    return 0;
}
