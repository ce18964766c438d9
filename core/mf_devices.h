/* A production setup's own device profiles: `DEVICES.INI` at the setup's root describes parts
 * the built-in table (mf_profile.h) does not have, so that a job can name them without a new
 * programmer. It travels with the setup (into the secure area, into sealed packages, into the
 * setup id) like every other file of it. The format is in docs/jobs.md:
 *
 *   [STM32G071xB]                      ; the name a job's `device =` takes
 *   description = STM32G071, 128 KiB   ; optional
 *   flash = 0x08000000 64x2K           ; start and sectors (COUNTxSIZE, K/M suffixes), once per
 *                                      ; region, in address order
 *   write_size = 8                     ; bytes, a power of two (required)
 *   erased = 0xFF                      ; optional, 0xFF when not given
 *   uid = 0x1FFF7590 12                ; optional: address and length of the unique ID
 *   protect_levels = 2                 ; optional, 0 when not given
 *
 * Every value is checked; an error names the file, the line and why. A name may not be a
 * built-in profile's (ignoring case) or appear twice. */
#ifndef MF_DEVICES_H
#define MF_DEVICES_H

#include "mf_profile.h"

#include <stddef.h>

#define MF_FILE_DEVICES_INI    "DEVICES.INI"
#define MF_DEVICES_MAX         32u /* devices of one setup */
#define MF_DEVICE_NAME_MAX     32u /* bytes of a name, with the NUL */
#define MF_DEVICE_TEXT_MAX     96u /* bytes of a description, with the NUL */
#define MF_DEVICES_MESSAGE_MAX 160u

struct mf_devices {
    struct mf_profile profiles[MF_DEVICES_MAX]; /* their name/description point below */
    char names[MF_DEVICES_MAX][MF_DEVICE_NAME_MAX];
    char descriptions[MF_DEVICES_MAX][MF_DEVICE_TEXT_MAX];
    unsigned count;
};

/* Parses the text of DEVICES.INI into `devices` (cleared first). 0, or MF_EFORMAT with `message`
 * (MF_DEVICES_MESSAGE_MAX bytes) saying "DEVICES.INI:LINE: why". */
int mf_devices_parse(struct mf_devices *devices, const char *text, size_t length, char *message);

/* The profile named `name` (case-insensitive): the setup's own (`devices` may be NULL), else a
 * built-in one; NULL when there is none. */
const struct mf_profile *mf_devices_find(const struct mf_devices *devices, const char *name);

#endif
