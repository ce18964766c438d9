/* A production setup's own device profiles (see mf_devices.h). */
#include "mf_devices.h"

#include "mf_err.h"
#include "mf_ini.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct parse {
    struct mf_devices *d;
    char *message;
    struct mf_profile *p; /* the device being filled, NULL before the first section */
    unsigned section;     /* its section_number */
    unsigned line;        /* its header's line (the line of its first key) */
    unsigned write_line, flash_lines[MF_PROFILE_FLASH_REGIONS];
    bool has_write, has_erased, has_uid, has_protect, has_description;
    uint32_t write_size;
    uint8_t erased;
};

static int fail(struct parse *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parse *ps, unsigned line, const char *fmt, ...)
{
    int n = snprintf(ps->message, MF_DEVICES_MESSAGE_MAX, "%s:%u: ", MF_FILE_DEVICES_INI, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < MF_DEVICES_MESSAGE_MAX)
        vsnprintf(ps->message + n, MF_DEVICES_MESSAGE_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return MF_EFORMAT;
}

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A decimal or 0x-hexadecimal number at `s`, up to the first character that is not a digit of
 * it; false when there is none or it passes `max`. */
static bool number(const char **s, uint64_t max, uint64_t *value)
{
    const char *p = *s;
    unsigned base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    uint64_t v = 0;
    const char *start = p;
    for (;; p++) {
        unsigned digit;
        if (*p >= '0' && *p <= '9')
            digit = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            digit = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            digit = (unsigned)(*p - 'A' + 10);
        else
            break;
        if (v > (max - digit) / base)
            return false;
        v = v * base + digit;
    }
    if (p == start)
        return false;
    *s = p;
    *value = v;
    return true;
}

/* A whole value that is one number. */
static bool whole_number(const char *s, uint64_t max, uint64_t *value)
{
    s = skip_blanks(s);
    return number(&s, max, value) && *skip_blanks(s) == '\0';
}

/* `flash = START COUNTxSIZE[,COUNTxSIZE...]` (SIZE with an optional K or M). */
static int flash_value(struct parse *ps, const struct mf_ini_item *item)
{
    struct mf_profile *p = ps->p;
    if (p->flash_count == MF_PROFILE_FLASH_REGIONS)
        return fail(ps, item->line, "[%s] has more than %u flash regions", p->name,
                    MF_PROFILE_FLASH_REGIONS);
    struct mf_flash_region *r = &p->flash[p->flash_count];
    memset(r, 0, sizeof *r);
    const char *s = skip_blanks(item->value);
    if (!number(&s, UINT64_MAX, &r->start) || (*s != ' ' && *s != '\t'))
        return fail(ps, item->line,
                    "flash: '%s' is not a start address and sectors (e.g. 0x08000000 64x2K)",
                    item->value);
    uint64_t total = 0;
    for (;;) {
        s = skip_blanks(s);
        uint64_t count, size;
        if (!number(&s, 1000000, &count) || count == 0 || (*s != 'x' && *s != 'X'))
            return fail(ps, item->line, "flash: sectors are COUNTxSIZE, e.g. 4x16K,1x64K (at '%s')",
                        s);
        s++;
        if (!number(&s, UINT32_MAX, &size))
            return fail(ps, item->line, "flash: a sector size is missing (at '%s')", s);
        if (*s == 'K' || *s == 'k' || *s == 'M' || *s == 'm') {
            uint64_t unit = (*s == 'K' || *s == 'k') ? 1024u : 1024u * 1024u;
            size = size > UINT32_MAX / unit ? 0 : size * unit;
            s++;
        }
        if (size == 0 || size > UINT32_MAX)
            return fail(ps, item->line, "flash: a sector size from 1 byte to 4 GiB - 1, please");
        if (r->group_count == MF_PROFILE_SECTOR_GROUPS)
            return fail(ps, item->line, "flash: at most %u runs of sectors per region",
                        MF_PROFILE_SECTOR_GROUPS);
        if (count > (UINT64_MAX - total) / size)
            return fail(ps, item->line, "flash: the region is too large");
        r->groups[r->group_count++] = (struct mf_sector_group){(uint32_t)size, (uint32_t)count};
        total += count * size;
        s = skip_blanks(s);
        if (*s == '\0')
            break;
        if (*s != ',')
            return fail(ps, item->line,
                        "flash: ',' or the end expected after a run of sectors "
                        "(at '%s')",
                        s);
        s++;
    }
    if (total > UINT64_MAX - r->start)
        return fail(ps, item->line, "flash: the region ends past the address space");
    r->size = total;
    ps->flash_lines[p->flash_count++] = item->line;
    return 0;
}

/* Checks the device just filled and fills in what it did not say. */
static int finish(struct parse *ps)
{
    struct mf_profile *p = ps->p;
    if (!p)
        return 0;
    if (p->flash_count == 0)
        return fail(ps, ps->line, "[%s] has no flash (flash = START SECTORS)", p->name);
    if (!ps->has_write)
        return fail(ps, ps->line, "[%s] write_size is missing", p->name);
    for (unsigned i = 0; i < p->flash_count; i++) {
        struct mf_flash_region *r = &p->flash[i];
        r->write_size = ps->write_size;
        r->erased_value = ps->has_erased ? ps->erased : 0xFF;
        for (unsigned g = 0; g < r->group_count; g++) {
            if (r->groups[g].size % ps->write_size != 0)
                return fail(ps, ps->flash_lines[i],
                            "flash: sectors of %u bytes are not a multiple of write_size (%u, "
                            "line %u)",
                            r->groups[g].size, ps->write_size, ps->write_line);
        }
        if (i > 0 && r->start < p->flash[i - 1].start + p->flash[i - 1].size)
            return fail(ps, ps->flash_lines[i],
                        "flash: the region overlaps the one before it, or comes before it "
                        "(regions in address order)");
    }
    return 0;
}

static int device_item(void *context, const struct mf_ini_item *item)
{
    struct parse *ps = context;
    if (item->section_number == 0)
        return fail(ps, item->line, "'%s' is outside a [DEVICE] section", item->key);
    if (item->section_number != ps->section) {
        int err = finish(ps);
        if (err)
            return err;
        struct mf_devices *d = ps->d;
        const char *name = item->section;
        size_t n = strlen(name);
        if (n == 0 || n >= MF_DEVICE_NAME_MAX)
            return fail(ps, item->line, "a device name of 1 to %u characters, please",
                        MF_DEVICE_NAME_MAX - 1);
        for (size_t i = 0; i < n; i++) {
            char c = name[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.' || c == '+'))
                return fail(ps, item->line,
                            "[%s]: a device name is letters, digits and _ - . + only", name);
        }
        if (mf_profile_find(name))
            return fail(ps, item->line, "[%s] is a built-in profile: give yours another name",
                        name);
        for (unsigned i = 0; i < d->count; i++) {
            if (mf_ini_name_is(d->names[i], name))
                return fail(ps, item->line, "[%s] is described twice", name);
        }
        if (d->count == MF_DEVICES_MAX)
            return fail(ps, item->line, "more than %u devices", MF_DEVICES_MAX);
        unsigned k = d->count++;
        memcpy(d->names[k], name, n + 1);
        d->descriptions[k][0] = '\0';
        struct mf_profile *p = &d->profiles[k];
        memset(p, 0, sizeof *p);
        p->name = d->names[k];
        p->description = d->descriptions[k];
        /* The simulator's timing for parts it has no data sheet for. */
        p->timing = (struct mf_profile_timing){.erase_us_per_kib = 10000,
                                               .program_us_per_kib = 10000,
                                               .link_kib_per_s = 1000,
                                               .connect_ms = 20};
        ps->p = p;
        ps->section = item->section_number;
        ps->line = item->line;
        ps->write_line = 0;
        ps->write_size = 0;
        ps->erased = 0xFF;
        ps->has_write = ps->has_erased = ps->has_uid = ps->has_protect = false;
        ps->has_description = false;
    }
    struct mf_profile *p = ps->p;
    const char *k = item->key, *v = item->value;
    uint64_t n;
    if (mf_ini_name_is(k, "flash"))
        return flash_value(ps, item);
    bool *seen = mf_ini_name_is(k, "write_size")       ? &ps->has_write
                 : mf_ini_name_is(k, "erased")         ? &ps->has_erased
                 : mf_ini_name_is(k, "uid")            ? &ps->has_uid
                 : mf_ini_name_is(k, "protect_levels") ? &ps->has_protect
                 : mf_ini_name_is(k, "description")    ? &ps->has_description
                                                       : NULL;
    if (!seen)
        return fail(ps, item->line,
                    "unknown key '%s' in [%s] (known: description, flash, write_size, erased, "
                    "uid, protect_levels)",
                    k, p->name);
    if (*seen)
        return fail(ps, item->line, "[%s] %s is given twice", p->name, k);
    *seen = true;
    if (mf_ini_name_is(k, "write_size")) {
        if (!whole_number(v, 4096, &n) || n == 0 || (n & (n - 1)) != 0)
            return fail(ps, item->line, "write_size: '%s' is not a power of two from 1 to 4096", v);
        ps->write_size = (uint32_t)n;
        ps->write_line = item->line;
    } else if (mf_ini_name_is(k, "erased")) {
        if (!whole_number(v, 0xFF, &n))
            return fail(ps, item->line, "erased: '%s' is not a byte value (0x00 to 0xFF)", v);
        ps->erased = (uint8_t)n;
    } else if (mf_ini_name_is(k, "uid")) {
        const char *s = skip_blanks(v);
        uint64_t address, length;
        if (!number(&s, UINT64_MAX, &address) || (*s != ' ' && *s != '\t') ||
            !whole_number(s, MF_PROFILE_UID_MAX, &length) || length == 0)
            return fail(ps, item->line,
                        "uid: '%s' is not an address and a length from 1 to %u bytes", v,
                        MF_PROFILE_UID_MAX);
        p->uid_address = address;
        p->uid_length = (uint32_t)length;
    } else if (mf_ini_name_is(k, "protect_levels")) {
        if (!whole_number(v, 9, &n))
            return fail(ps, item->line, "protect_levels: '%s' is not a number from 0 to 9", v);
        p->protect_levels = (unsigned)n;
    } else {
        size_t len = strlen(v);
        if (len >= MF_DEVICE_TEXT_MAX)
            return fail(ps, item->line, "description: at most %u characters",
                        MF_DEVICE_TEXT_MAX - 1);
        memcpy(ps->d->descriptions[p - ps->d->profiles], v, len + 1);
    }
    return 0;
}

int mf_devices_parse(struct mf_devices *devices, const char *text, size_t length, char *message)
{
    memset(devices, 0, sizeof *devices);
    message[0] = '\0';
    struct parse ps;
    memset(&ps, 0, sizeof ps);
    ps.d = devices;
    ps.message = message;
    struct mf_ini_error ierr;
    int err = mf_ini_parse(text, length, device_item, &ps, &ierr);
    if (!err)
        err = finish(&ps);
    if (err == MF_EFORMAT && !message[0])
        snprintf(message, MF_DEVICES_MESSAGE_MAX, "%s:%u: %s", MF_FILE_DEVICES_INI, ierr.line,
                 ierr.message);
    if (err)
        devices->count = 0;
    return err;
}

const struct mf_profile *mf_devices_find(const struct mf_devices *devices, const char *name)
{
    for (unsigned i = 0; devices && i < devices->count; i++) {
        if (mf_ini_name_is(name, devices->names[i]))
            return &devices->profiles[i];
    }
    return mf_profile_find(name);
}
