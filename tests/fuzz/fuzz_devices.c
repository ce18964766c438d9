/* Fuzz target: DEVICES.INI (a setup's own device profiles) on hostile text: every profile it
 * accepts is consistent (its sectors add up, the write size divides them, regions in order). */
#include "mf_devices.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mf_devices d;
    char message[MF_DEVICES_MESSAGE_MAX];
    if (mf_devices_parse(&d, (const char *)data, size, message) != 0) {
        if (!memchr(message, '\0', sizeof message) || message[0] == '\0')
            abort(); /* an error always says where and why */
        return 0;
    }
    for (unsigned i = 0; i < d.count; i++) {
        const struct mf_profile *p = &d.profiles[i];
        if (mf_devices_find(&d, p->name) != p || p->flash_count == 0 ||
            p->uid_length > MF_PROFILE_UID_MAX)
            abort();
        for (unsigned r = 0; r < p->flash_count; r++) {
            const struct mf_flash_region *f = &p->flash[r];
            uint64_t sum = 0;
            for (unsigned g = 0; g < f->group_count; g++) {
                if (f->groups[g].size % f->write_size != 0)
                    abort();
                sum += (uint64_t)f->groups[g].size * f->groups[g].count;
            }
            if (sum != f->size ||
                (r > 0 && f->start < p->flash[r - 1].start + p->flash[r - 1].size))
                abort();
        }
    }
    return 0;
}
