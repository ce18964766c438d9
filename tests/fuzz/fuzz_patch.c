/* Fuzz target: the per-device text parsers: a Patches.txt line, an SNList.txt line and a number
 * file (Cntdown.txt, Serial.txt). The input is split at its first byte's value. */
#include "mf_numfile.h"
#include "mf_patch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char message[MF_PATCH_ERROR_MAX];
    struct mf_patch_line line;
    if (mf_patch_parse(text, &line, message) == 0) {
        for (unsigned i = 0; i < line.count; i++) {
            if (line.patches[i].length < 1 || line.patches[i].length > MF_PATCH_BYTES_MAX)
                abort();
        }
    }
    uint8_t serial[8];
    mf_snlist_parse(text, serial, (unsigned)(size % 9), message);
    uint64_t v;
    mf_numfile_parse(text, (uint32_t)size, MF_NUMFILE_STRICT, UINT32_MAX, &v);
    mf_numfile_parse(text, (uint32_t)size, MF_NUMFILE_LEADING, UINT64_MAX, &v);
    free(text);
    return 0;
}
