/* Loading and checking a production setup (see mf_setup.h). */
#include "mf_setup.h"

#include "mf_fat.h"
#include "mf_sha256.h"

#include "mf_datafile.h"
#include "mf_err.h"
#include "mf_flashlog.h"
#include "mf_ini.h"
#include "mf_owner.h"
#include "mf_reclog.h"
#include "mf_secure.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANGES_MAX (1u << 20) /* separate runs of data per file */

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_SETUP_ERROR_MAX, fmt, ap);
    va_end(ap);
}

/* out = dir "/" name (or name alone when dir is empty); `out` must not be one of the inputs. */
static int join(char *out, const char *dir, const char *name)
{
    size_t d = strlen(dir), n = strlen(name), sep = d ? 1 : 0;
    if (d + sep + n >= MF_SETUP_PATH_MAX)
        return MF_ENAMETOOLONG;
    memcpy(out, dir, d);
    memcpy(out + d, "/", sep);
    memcpy(out + d + sep, name, n + 1);
    return 0;
}

/* A name for messages and logs, cut to `size` - 1 bytes when longer (a folder name may have 255).
 */
static void copy_name(char *out, size_t size, const char *text)
{
    size_t n = 0;
    while (n + 1 < size && text[n])
        n++;
    memcpy(out, text, n);
    out[n] = '\0';
}

const char *mf_setup_display_name(const char *folder_name)
{
    const char *p = folder_name;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p != folder_name && *p == '_' && p[1])
        return p + 1;
    return folder_name;
}

enum mf_public_file mf_setup_public_file(const char *name)
{
    static const char token[] = ".mft";
    size_t n = strlen(name), t = sizeof token - 1;
    if (mf_ini_name_is(name, MF_FLASHLOG_NAME) || mf_ini_name_is(name, MF_FLASHLOG_OLD_NAME))
        return MF_PUBLIC_LOG;
    if (mf_reclog_is_name(name))
        return MF_PUBLIC_RECORDS;
    if (n > t && mf_ini_name_is(name + n - t, token))
        return MF_PUBLIC_TOKEN;
    return MF_PUBLIC_OTHER;
}

bool mf_setup_public_allowed(const char *name, bool is_dir)
{
    if (is_dir)
        return mf_ini_name_is(name, MF_SECURE_FOLDER);
    return mf_setup_public_file(name) != MF_PUBLIC_OTHER;
}

bool mf_setup_programmer_file(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (mf_ini_name_is(base, MF_FILE_CNTDOWN) || mf_ini_name_is(base, MF_FILE_SERIAL))
        return true;
    return !slash && (mf_ini_name_is(base, MF_FILE_FLASHER_INI) ||
                      mf_setup_public_file(base) == MF_PUBLIC_LOG);
}

bool mf_project_takes_serial(const struct mf_project *p)
{
    return p->has_serial;
}

const char *mf_erase_mode_name(enum mf_erase_mode mode)
{
    return mode == MF_ERASE_CHIP ? "chip" : mode == MF_ERASE_NONE ? "none" : "sectors";
}

const char *mf_verify_mode_name(enum mf_verify_mode mode)
{
    return mode == MF_VERIFY_READBACK ? "readback" : mode == MF_VERIFY_NONE ? "none" : "crc";
}

/* ---- values ---- */

/* [job] overlap: the words of `mintflash image --overlap`, in the order of enum mf_image_overlap.
 */
static const char *const overlap_names[] = {"error", "last", "first"};
_Static_assert(MF_IMAGE_OVERLAP_ERROR == 0 && MF_IMAGE_OVERLAP_LAST_WINS == 1 &&
                   MF_IMAGE_OVERLAP_FIRST_WINS == 2,
               "overlap_names follows enum mf_image_overlap");

static int parse_u64(const char *text, uint64_t *value)
{
    const char *p = text;
    unsigned base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!*p)
        return MF_EINVAL;
    uint64_t v = 0;
    for (; *p; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned)(*p - 'A' + 10);
        else if (*p == '_' && p != text)
            continue; /* 0x0800_0000 */
        else
            return MF_EINVAL;
        if (v > (UINT64_MAX - d) / base)
            return MF_ERANGE;
        v = v * base + d;
    }
    *value = v;
    return 0;
}

static int parse_bool(const char *text, bool *value)
{
    if (mf_ini_name_is(text, "yes") || mf_ini_name_is(text, "true") || mf_ini_name_is(text, "on") ||
        strcmp(text, "1") == 0)
        *value = true;
    else if (mf_ini_name_is(text, "no") || mf_ini_name_is(text, "false") ||
             mf_ini_name_is(text, "off") || strcmp(text, "0") == 0)
        *value = false;
    else
        return MF_EINVAL;
    return 0;
}

/* Picks `text` from a list of names; the index in `*value`. */
static int parse_choice(const char *text, const char *const *names, unsigned count, unsigned *value)
{
    for (unsigned i = 0; i < count; i++) {
        if (mf_ini_name_is(text, names[i])) {
            *value = i;
            return 0;
        }
    }
    return MF_EINVAL;
}

/* ---- reading small files ---- */

static int read_small(struct mf_area *area, const char *path, char *buf, size_t max, size_t *len)
{
    struct mf_area_entry e;
    int err = area->stat(area, path, &e);
    if (err)
        return err;
    if (e.is_dir)
        return MF_EISDIR;
    if (e.size > max)
        return MF_EFBIG;
    *len = (size_t)e.size;
    return area->read(area, path, 0, buf, *len);
}

/* ---- FLASHER.INI ---- */

/* Scratch space of one load, allocated once. */
struct loader {
    char text[MF_SETUP_INI_MAX];
    char projects[MF_SETUP_PROJECTS_MAX + 1][MF_AREA_NAME_MAX];
    char jobs[MF_PROJECT_JOBS_MAX + 1][MF_AREA_NAME_MAX];
    uint8_t *buffer;
    size_t buffer_size;
    uint64_t held; /* data bytes held in memory so far (hold_files) */
};

struct flasher_ini {
    struct mf_setup *setup;
    char *message;
};

static int flasher_ini_item(void *context, const struct mf_ini_item *item)
{
    struct flasher_ini *c = context;
    if (!mf_ini_name_is(item->section, "CONFIG")) {
        say(c->message, "%s:%u: unknown section [%s] (only [CONFIG] is known)", MF_FILE_FLASHER_INI,
            item->line, item->section);
        return MF_EFORMAT;
    }
    if (mf_ini_name_is(item->key, "Project")) {
        if (strlen(item->value) >= MF_SETUP_NAME_MAX) {
            say(c->message, "%s:%u: Project: name too long", MF_FILE_FLASHER_INI, item->line);
            return MF_EFORMAT;
        }
        strcpy(c->setup->selected_name, item->value);
        return 0;
    }
    if (mf_ini_name_is(item->key, "LogMaxKiB")) {
        uint64_t v;
        if (parse_u64(item->value, &v) || v < 4 || v > 1024 * 1024) {
            say(c->message, "%s:%u: LogMaxKiB: '%s' is not a number from 4 to 1048576",
                MF_FILE_FLASHER_INI, item->line, item->value);
            return MF_EFORMAT;
        }
        c->setup->log_max_bytes = (uint32_t)(v * 1024);
        return 0;
    }
    if (mf_ini_name_is(item->key, "Reservation")) {
        /* Read by the secure area when it installs the setup (mf_secure); checked here too. */
        uint64_t v;
        if (parse_u64(item->value, &v) || v < 1 || v > 1000000) {
            say(c->message, "%s:%u: Reservation: '%s' is not a number from 1 to 1000000",
                MF_FILE_FLASHER_INI, item->line, item->value);
            return MF_EFORMAT;
        }
        return 0;
    }
    /* Keys the reference writes or documents for functions this programmer has not (a power-off
     * timer, a CRC on a display): a FLASHER.INI brought from one runs, and the log says so. */
    static const char *const reference_keys[] = {"AutoPowerOffOnIdle",
                                                 "ShowDatCRCAfterProgramming"};
    for (size_t i = 0; i < sizeof reference_keys / sizeof reference_keys[0]; i++) {
        if (mf_ini_name_is(item->key, reference_keys[i])) {
            char *list = c->setup->ignored_keys;
            size_t used = strlen(list), size = sizeof c->setup->ignored_keys;
            snprintf(list + used, size - used, "%s%s:%u: %s", used ? ", " : "", MF_FILE_FLASHER_INI,
                     item->line, reference_keys[i]);
            return 0;
        }
    }
    say(c->message,
        "%s:%u: unknown key '%s' in [CONFIG] (known: Project, LogMaxKiB, Reservation; the "
        "reference's AutoPowerOffOnIdle and ShowDatCRCAfterProgramming are ignored)",
        MF_FILE_FLASHER_INI, item->line, item->key);
    return MF_EFORMAT;
}

/* DEVICES.INI: the setup's own device profiles, before any job names one. */
static int load_devices_ini(struct mf_setup *setup, struct loader *ld, char *message)
{
    size_t len;
    int err = read_small(setup->area, MF_FILE_DEVICES_INI, ld->text, sizeof ld->text, &len);
    if (err == MF_ENOENT)
        return 0;
    if (err) {
        say(message, "%s: %s", MF_FILE_DEVICES_INI,
            err == MF_EFBIG ? "larger than 16 KiB" : mf_strerror(err));
        return err;
    }
    setup->devices = malloc(sizeof *setup->devices);
    if (!setup->devices) {
        say(message, "out of memory");
        return MF_ENOMEM;
    }
    char why[MF_DEVICES_MESSAGE_MAX];
    err = mf_devices_parse(setup->devices, ld->text, len, why);
    if (err)
        say(message, "%s", why);
    return err;
}

static int load_flasher_ini(struct mf_setup *setup, struct loader *ld, char *message)
{
    size_t len;
    int err = read_small(setup->area, MF_FILE_FLASHER_INI, ld->text, sizeof ld->text, &len);
    if (err == MF_ENOENT)
        return 0;
    if (err) {
        say(message, "%s: %s", MF_FILE_FLASHER_INI,
            err == MF_EFBIG ? "larger than 16 KiB" : mf_strerror(err));
        return err;
    }
    struct flasher_ini c = {setup, message};
    struct mf_ini_error ierr;
    message[0] = '\0';
    err = mf_ini_parse(ld->text, len, flasher_ini_item, &c, &ierr);
    if (err == MF_EFORMAT && !message[0])
        say(message, "%s:%u: %s", MF_FILE_FLASHER_INI, ierr.line, ierr.message);
    return err;
}

/* ---- job.ini ---- */

struct job_ini {
    struct mf_job *job;
    char path[MF_SETUP_PATH_MAX];
    char *message;
    unsigned file_section; /* section_number of the [file] being filled, 0 = none */
    bool file_has_address[MF_JOB_FILES_MAX];
    bool file_format_set[MF_JOB_FILES_MAX];
    bool has_device, has_serial_address;
    uint64_t serial_increment;
    bool serial_increment_set;
    unsigned serial_line; /* line of [serial] address, for messages */
    /* [signature]: its section_number (0 = none yet), the line of its first key, and the lines
     * of its two keys (0 = not given). */
    unsigned signature_section, signature_line, signature_address_line, signature_key_line;
    char signature_key[MF_SETUP_NAME_MAX]; /* the key file as job.ini names it */
    unsigned gdb_line;                     /* line of the first [gdb] key, 0 = none */
    const struct mf_devices *devices;      /* the setup's own profiles, or NULL */
};

static int job_bad_value(struct job_ini *c, const struct mf_ini_item *item, const char *expected)
{
    say(c->message, "%s:%u: [%s] %s: '%s' is not %s", c->path, item->line, item->section, item->key,
        item->value, expected);
    return MF_EFORMAT;
}

/* One key of [signature]: a single section per job, each key once (a repeated key would leave
 * the owner unsure which address or key signs). */
static int signature_item(struct job_ini *c, const struct mf_ini_item *item)
{
    struct mf_job *job = c->job;
    const char *k = item->key, *v = item->value;
    if (c->signature_section && c->signature_section != item->section_number) {
        say(c->message, "%s:%u: a second [signature] section (a job has at most one)", c->path,
            item->line);
        return MF_EFORMAT;
    }
    if (!c->signature_section) {
        c->signature_section = item->section_number;
        c->signature_line = item->line;
    }
    job->signature = true;
    unsigned *line = mf_ini_name_is(k, "address") ? &c->signature_address_line
                     : mf_ini_name_is(k, "key")   ? &c->signature_key_line
                                                  : NULL;
    if (!line) {
        say(c->message, "%s:%u: unknown key '%s' in [signature] (known: address, key)", c->path,
            item->line, k);
        return MF_EFORMAT;
    }
    if (*line) {
        say(c->message, "%s:%u: [signature] %s: given twice (first on line %u)", c->path,
            item->line, k, *line);
        return MF_EFORMAT;
    }
    if (line == &c->signature_address_line) {
        if (parse_u64(v, &job->signature_address))
            return job_bad_value(c, item, "an address (decimal or 0x hex)");
    } else {
        if (!*v || strlen(v) >= sizeof c->signature_key)
            return job_bad_value(c, item, "a file name (1 to 63 bytes)");
        strcpy(c->signature_key, v);
    }
    *line = item->line;
    return 0;
}

static int job_ini_item(void *context, const struct mf_ini_item *item)
{
    struct job_ini *c = context;
    struct mf_job *job = c->job;
    const char *s = item->section, *k = item->key, *v = item->value;
    unsigned choice;
    uint64_t n;
    if (mf_ini_name_is(s, "job")) {
        if (mf_ini_name_is(k, "device")) {
            job->profile = mf_devices_find(c->devices, v);
            if (!job->profile)
                return job_bad_value(c, item,
                                     "a known device profile (see `mintflash sim profiles`, "
                                     "or describe it in DEVICES.INI)");
            c->has_device = true;
            return 0;
        }
        if (mf_ini_name_is(k, "erase")) {
            static const char *const names[] = {"sectors", "chip", "none"};
            if (parse_choice(v, names, 3, &choice))
                return job_bad_value(c, item, "sectors, chip or none");
            job->erase = (enum mf_erase_mode)choice;
            return 0;
        }
        if (mf_ini_name_is(k, "verify")) {
            static const char *const names[] = {"crc", "readback", "none"};
            if (parse_choice(v, names, 3, &choice))
                return job_bad_value(c, item, "crc, readback or none");
            job->verify = (enum mf_verify_mode)choice;
            return 0;
        }
        if (mf_ini_name_is(k, "protect")) {
            if (parse_u64(v, &n) || n > 255)
                return job_bad_value(c, item, "a protection level (0 = none)");
            job->protect = (unsigned)n;
            return 0;
        }
        if (mf_ini_name_is(k, "start")) {
            static const char *const names[] = {"none", "reset", "vector"};
            if (parse_choice(v, names, 3, &choice))
                return job_bad_value(c, item, "none, reset or vector");
            job->start = (enum mf_start_mode)choice; /* none=0, reset=1, vector=2 */
            return 0;
        }
        if (mf_ini_name_is(k, "patches")) {
            if (parse_bool(v, &job->patches))
                return job_bad_value(c, item, "yes or no");
            return 0;
        }
        if (mf_ini_name_is(k, "operator_patches")) {
            if (parse_bool(v, &job->operator_patches))
                return job_bad_value(c, item, "yes or no");
            return 0;
        }
        if (mf_ini_name_is(k, "overlap")) {
            if (parse_choice(v, overlap_names, 3, &choice))
                return job_bad_value(c, item, "error, first or last");
            job->overlap = (enum mf_image_overlap)choice;
            return 0;
        }
    } else if (mf_ini_name_is(s, "file")) {
        if (c->file_section != item->section_number) {
            if (job->file_count == MF_JOB_FILES_MAX) {
                say(c->message, "%s:%u: more than %u [file] sections", c->path, item->line,
                    MF_JOB_FILES_MAX);
                return MF_EFORMAT;
            }
            c->file_section = item->section_number;
            job->file_count++;
        }
        unsigned i = job->file_count - 1;
        struct mf_datafile *f = &job->files[i];
        if (mf_ini_name_is(k, "path")) {
            if (!*v || strlen(v) >= MF_SETUP_NAME_MAX)
                return job_bad_value(c, item, "a file name (1 to 63 bytes)");
            strcpy(f->name, v);
            f->line = item->line;
            return 0;
        }
        if (mf_ini_name_is(k, "format")) {
            enum mf_image_format fmt;
            if (mf_image_format_parse(v, &fmt))
                return job_bad_value(c, item, "auto, ihex, srec, elf or bin");
            f->format = fmt;
            c->file_format_set[i] = true;
            return 0;
        }
        if (mf_ini_name_is(k, "address")) {
            if (parse_u64(v, &f->base))
                return job_bad_value(c, item, "an address (decimal or 0x hex)");
            c->file_has_address[i] = true;
            return 0;
        }
    } else if (mf_ini_name_is(s, "serial")) {
        job->serial = true;
        if (mf_ini_name_is(k, "address")) {
            if (parse_u64(v, &job->serial_address))
                return job_bad_value(c, item, "an address (decimal or 0x hex)");
            c->has_serial_address = true;
            c->serial_line = item->line;
            return 0;
        }
        if (mf_ini_name_is(k, "length")) {
            if (parse_u64(v, &n) || n < 1 || n > MF_SERIAL_LENGTH_MAX)
                return job_bad_value(c, item, "a length from 1 to 8 bytes");
            job->serial_length = (unsigned)n;
            return 0;
        }
        if (mf_ini_name_is(k, "encoding")) {
            static const char *const names[] = {"le", "be", "ascii", "hex"};
            if (parse_choice(v, names, 4, &choice))
                return job_bad_value(c, item, "le, be, ascii or hex");
            job->serial_encoding = (enum mf_serial_encoding)choice;
            return 0;
        }
        if (mf_ini_name_is(k, "increment")) {
            if (parse_u64(v, &n) || n < 1 || n > UINT32_MAX)
                return job_bad_value(c, item, "an increment from 1 to 4294967295");
            c->serial_increment = n;
            c->serial_increment_set = true;
            return 0;
        }
    } else if (mf_ini_name_is(s, "signature")) {
        return signature_item(c, item);
    } else if (mf_ini_name_is(s, "gdb")) {
        /* How a GDB server reaches this device (docs/targets.md); other back ends ignore it. */
        char why[160];
        if (!c->gdb_line)
            c->gdb_line = item->line;
        int err = mf_rsp_options_set(&job->gdb, k, v, why, sizeof why);
        if (err == MF_EINVAL)
            say(c->message, "%s:%u: unknown key '%s' in [gdb]", c->path, item->line, k);
        else if (err)
            say(c->message, "%s:%u: [gdb] %s: %s", c->path, item->line, k, why);
        return err;
    } else {
        say(c->message,
            "%s:%u: unknown section [%s] (known: [job], [file], [serial], [signature], [gdb])",
            c->path, item->line, s);
        return MF_EFORMAT;
    }
    say(c->message, "%s:%u: unknown key '%s' in [%s]", c->path, item->line, k, s);
    return MF_EFORMAT;
}

/* ---- scanning data files ---- */

struct scan {
    const struct mf_profile *profile;
    struct mf_image_error err; /* where a range outside the flash is said */
    struct mf_range *ranges;
    size_t count, capacity;
    uint64_t last_end, bytes;
    bool started, ordered;
    /* The file's data kept as it is scanned, while `bytes` stays within `capture_max` (NULL
     * once it does not, or memory ran out): then it need not be read again to be held. */
    struct mf_image *capture;
    uint32_t capture_source;
    uint64_t capture_max;
};

static void capture_drop(struct scan *s)
{
    if (s->capture) {
        mf_image_free(s->capture);
        free(s->capture);
        s->capture = NULL;
    }
}

static int scan_push(struct scan *s, uint64_t start, uint64_t end)
{
    if (s->count && s->ranges[s->count - 1].end == start) {
        s->ranges[s->count - 1].end = end;
        return 0;
    }
    if (s->count == s->capacity) {
        if (s->capacity >= RANGES_MAX)
            return MF_EFBIG;
        size_t capacity = s->capacity ? s->capacity * 2 : 16;
        struct mf_range *r = realloc(s->ranges, capacity * sizeof *r);
        if (!r)
            return MF_ENOMEM;
        s->ranges = r;
        s->capacity = capacity;
    }
    s->ranges[s->count++] = (struct mf_range){start, end};
    return 0;
}

/* Is [start, end) inside one flash region of the profile? */
static bool in_flash(const struct mf_profile *profile, uint64_t start, uint64_t end)
{
    const struct mf_flash_region *r = mf_profile_region(profile, start);
    return r && end - r->start <= r->size;
}

static int scan_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                     uint64_t where)
{
    (void)bytes;
    (void)where;
    struct scan *s = context;
    if (length == 0)
        return 0;
    uint64_t end = address + length;
    if (!in_flash(s->profile, address, end)) {
        mf_image_error_set(&s->err, "data at 0x%llX-0x%llX is outside the flash of %s",
                           (unsigned long long)address, (unsigned long long)(end - 1),
                           s->profile->name);
        return MF_ERANGE;
    }
    if (s->started && address < s->last_end)
        s->ordered = false;
    s->started = true;
    s->last_end = end;
    s->bytes += length;
    if (s->capture &&
        (s->bytes > s->capture_max ||
         mf_image_add(s->capture, s->capture_source, address, bytes, length, where, NULL) != 0))
        capture_drop(s);
    return s->ordered ? scan_push(s, address, end) : 0;
}

struct area_file {
    struct mf_area *area;
    const char *path;
};

static int area_file_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    struct area_file *f = context;
    return f->area->read(f->area, f->path, offset, buffer, length);
}

/* Scans one data file: its ranges (appended to `ranges`), whether it can be streamed, and that
 * it lies in flash. Unordered files are loaded and held. */
static int scan_file(struct mf_setup *setup, struct loader *ld, struct mf_job *job,
                     struct mf_datafile *f, uint8_t *buffer, size_t buffer_size, struct scan *s,
                     char *message)
{
    struct mf_image_error ierr;
    memset(s, 0, sizeof *s);
    s->profile = job->profile;
    s->ordered = true;
    struct mf_image_sink sink = {scan_data, NULL, s};
    struct mf_image_config config = {.overlap = job->overlap};
    struct mf_area *area = setup->area;
    bool unread = area->just_installed && area->just_installed(area);
    /* Kept as it is read when it may be held (hold_files): no second read then. */
    uint64_t max = area->hold_max;
    if (!unread && ld->held < max && (s->capture = malloc(sizeof *s->capture)) != NULL) {
        mf_image_init(s->capture, &config);
        s->capture_max = max - ld->held;
        if (mf_image_add_source(s->capture, f->path, f->format, &s->capture_source, NULL))
            capture_drop(s);
    }
    int err = (unread ? mf_datafile_scan : mf_datafile_stream)(
        area, f->path, f->format, f->base, f->size, &sink, buffer, buffer_size, &ierr);
    if (err) {
        capture_drop(s);
        const char *why = s->err.text[0] ? s->err.text
                          : ierr.text[0] ? ierr.text
                                         : mf_strerror(err);
        say(message, "%s: %s", f->path, why);
        return err;
    }
    f->bytes = s->bytes;
    if (s->capture && mf_image_finish(s->capture, NULL) == 0) {
        f->held = s->capture; /* sorted and merged, overlaps resolved as the job says */
        f->held_by_choice = s->ordered;
        s->capture = NULL;
        ld->held += f->bytes;
    }
    capture_drop(s);
    if (s->ordered)
        return 0;
    /* Records out of address order: hold the file sorted in memory, whatever the limit. */
    s->count = 0;
    if (!f->held) {
        f->held = malloc(sizeof *f->held);
        if (!f->held)
            return MF_ENOMEM;
        mf_image_init(f->held, &config); /* records of one file that overlap: as the job says */
        struct area_file af = {setup->area, f->path};
        err = mf_image_load(f->held, f->path, f->format,
                            f->format == MF_IMAGE_FORMAT_BIN ? f->base : 0, area_file_read, &af,
                            f->size, &ierr);
        if (!err)
            err = mf_image_finish(f->held, &ierr);
        if (err) {
            say(message, "%s", ierr.text[0] ? ierr.text : mf_strerror(err));
            mf_image_free(f->held); /* unfinished: nothing may look at it */
            free(f->held);
            f->held = NULL;
            return err;
        }
        ld->held += f->bytes;
    }
    size_t n;
    const struct mf_image_segment *seg = mf_image_segments(f->held, &n);
    for (size_t i = 0; i < n && !err; i++)
        err = scan_push(s, seg[i].address, seg[i].address + seg[i].size);
    return err;
}

/* The CRCs of a held file's bytes, block by block (see struct mf_held_crc). */
static int held_blocks(struct mf_datafile *f)
{
    size_t n, count = 0;
    const struct mf_image_segment *seg = mf_image_segments(f->held, &n);
    for (int fill = 0; fill < 2; fill++) {
        for (size_t i = 0; i < n; i++) {
            uint64_t a = seg[i].address, end = seg[i].address + seg[i].size;
            while (a < end) {
                uint64_t next = (a | (MF_SETUP_CRC_WINDOW - 1)) + 1; /* the next window's start */
                uint32_t len = (uint32_t)(next - a < end - a ? next - a : end - a);
                if (fill) {
                    const uint8_t *bytes = seg[i].data + (a - seg[i].address);
                    f->blocks[count] = (struct mf_held_crc){
                        a, bytes, len, mf_target_crc(MF_TARGET_CRC_INIT, bytes, len)};
                }
                count++;
                a += len;
            }
        }
        if (fill || count == 0)
            break;
        f->blocks = malloc(count * sizeof *f->blocks);
        if (!f->blocks)
            return MF_ENOMEM;
        f->block_count = count;
        count = 0;
    }
    return 0;
}

const struct mf_held_crc *mf_datafile_window_crc(const struct mf_datafile *f, uint64_t address,
                                                 const uint8_t *bytes)
{
    size_t lo = 0, hi = f->block_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->blocks[mid].address < address)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < f->block_count && f->blocks[lo].address == address && f->blocks[lo].bytes == bytes &&
        f->blocks[lo].length == MF_SETUP_CRC_WINDOW)
        return &f->blocks[lo];
    return NULL;
}

/* Loads the ordered data file `f` of `job` into memory (it was scanned: its bytes are known). */
static int hold_file(struct mf_setup *setup, const struct mf_job *job, struct mf_datafile *f)
{
    struct mf_image_config config = {.overlap = job->overlap};
    struct mf_image_error ierr;
    struct area_file af = {setup->area, f->path};
    struct mf_image *img = malloc(sizeof *img);
    if (!img)
        return MF_ENOMEM;
    mf_image_init(img, &config);
    int err = mf_image_load(img, f->path, f->format, f->format == MF_IMAGE_FORMAT_BIN ? f->base : 0,
                            area_file_read, &af, f->size, &ierr);
    if (!err)
        err = mf_image_finish(img, &ierr);
    if (!err && mf_image_size(img) != f->bytes)
        err = MF_ECONFLICT; /* not what the scan found: leave it to the cycle to say */
    if (err) {
        mf_image_free(img);
        free(img);
        return err;
    }
    f->held = img;
    return 0;
}

/* Releases a file held by choice (not one whose records are out of order). */
static void unhold(struct mf_datafile *f)
{
    if (f->held && f->held_by_choice) {
        mf_image_free(f->held);
        free(f->held);
        f->held = NULL;
        f->held_by_choice = false;
    }
}

uint64_t mf_project_unheld_bytes(const struct mf_project *p)
{
    uint64_t n = 0;
    for (unsigned j = 0; j < p->job_count; j++) {
        for (unsigned k = 0; k < p->jobs[j].file_count; k++)
            n += p->jobs[j].files[k].held ? 0 : p->jobs[j].files[k].bytes;
    }
    return n;
}

/* Reads into memory the files of project `p` that are not held and fit what is left. */
static void hold_project(struct mf_setup *setup, struct loader *ld, struct mf_project *p)
{
    uint64_t max = setup->area->hold_max;
    for (unsigned j = 0; j < p->job_count; j++) {
        for (unsigned k = 0; k < p->jobs[j].file_count; k++) {
            struct mf_datafile *f = &p->jobs[j].files[k];
            if (f->held || ld->held > max || f->bytes > max - ld->held)
                continue;
            if (hold_file(setup, &p->jobs[j], f) == 0) {
                f->held_by_choice = true;
                ld->held += f->bytes;
            }
        }
    }
}

/* The scan kept data files while they fit the area's hold_max, in the projects' order. Projects
 * that cannot run let theirs go. The selected project goes first: when its files did not all
 * fit and letting the others' go makes room, they are let go, the last loaded first, until its
 * files fit, and those are read again into memory; room left over goes to the others' files in
 * order. A file that cannot be held (no memory, a read error) is streamed by every cycle, which
 * reports its errors. Then the CRCs of every held file's blocks. */
static void hold_files(struct mf_setup *setup, struct loader *ld)
{
    uint64_t max = setup->area->hold_max, evictable = 0;
    struct mf_project *sel =
        setup->selected < setup->project_count ? &setup->projects[setup->selected] : NULL;
    /* A project that cannot run keeps nothing by choice; the others' count toward making room. */
    for (unsigned i = 0; i < setup->project_count; i++) {
        struct mf_project *p = &setup->projects[i];
        for (unsigned j = 0; j < p->job_count; j++) {
            for (unsigned k = 0; k < p->jobs[j].file_count; k++) {
                struct mf_datafile *f = &p->jobs[j].files[k];
                if (!f->held || !f->held_by_choice)
                    continue;
                if (p->error) {
                    ld->held -= f->bytes;
                    unhold(f);
                } else if (p != sel) {
                    evictable += f->bytes;
                }
            }
        }
    }
    uint64_t want = sel && !sel->error ? mf_project_unheld_bytes(sel) : 0;
    /* Only when letting the others go makes room: files out of order stay whatever happens. */
    if (want > 0 && want <= max && ld->held - evictable <= max - want) {
        for (unsigned i = setup->project_count; i-- > 0 && ld->held + want > max;) {
            struct mf_project *p = &setup->projects[i];
            for (unsigned j = 0; p != sel && j < p->job_count; j++) {
                for (unsigned k = 0; k < p->jobs[j].file_count; k++) {
                    struct mf_datafile *f = &p->jobs[j].files[k];
                    if (f->held && f->held_by_choice) {
                        ld->held -= f->bytes;
                        unhold(f);
                    }
                }
            }
        }
        hold_project(setup, ld, sel);
    }
    /* Room that projects which cannot run left: the others' files that fit now, in order. */
    for (unsigned i = 0; i < setup->project_count; i++) {
        if (!setup->projects[i].error)
            hold_project(setup, ld, &setup->projects[i]);
    }
    for (unsigned i = 0; i < setup->project_count; i++) {
        struct mf_project *p = &setup->projects[i];
        for (unsigned j = 0; j < p->job_count; j++) {
            for (unsigned k = 0; k < p->jobs[j].file_count; k++) {
                struct mf_datafile *f = &p->jobs[j].files[k];
                /* Without its CRCs a file is not held by choice: streamed, it cannot change
                 * in memory between cycles. */
                if (f->held && !f->blocks && held_blocks(f) == MF_ENOMEM)
                    unhold(f);
            }
        }
    }
}

/* A range and the index of the file it came from. */
struct owned_range {
    uint64_t start, end;
    unsigned owner;
};

/* One end of an owned range, for the sweep over all files' ranges. */
struct edge {
    uint64_t at;
    unsigned owner;
    bool opens;
};

static int edge_compare(const void *a, const void *b)
{
    const struct edge *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    if (x->opens != y->opens)
        return x->opens ? 1 : -1; /* a range that ends where another starts does not overlap it */
    return x->owner < y->owner ? -1 : x->owner > y->owner;
}

/* Finds the record of a data file that holds `address`, for messages. */
struct locate {
    uint64_t address;
    uint64_t record; /* address of that record's first byte */
    uint64_t where;  /* its line (HEX, S-record) or file offset (ELF, raw binary) */
    bool found;
};

static int locate_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                       uint64_t where)
{
    (void)bytes;
    struct locate *l = context;
    if (l->address < address || l->address - address >= length)
        return 0;
    l->record = address;
    l->where = where;
    l->found = true;
    return MF_ECANCELED; /* found: no need to read further */
}

/* "line 12" or "offset 0x1F0": where `address` comes from in file `f` (read again: this is only
 * for an error message). */
static void data_place(struct mf_setup *setup, struct loader *ld, const struct mf_datafile *f,
                       uint64_t address, char *out, size_t size)
{
    struct locate l = {.address = address};
    struct mf_image_sink sink = {locate_data, NULL, &l};
    struct mf_image_error ierr;
    mf_datafile_stream(setup->area, f->path, f->format, f->base, f->size, &sink, ld->buffer,
                       ld->buffer_size, &ierr);
    if (!l.found)
        snprintf(out, size, "place unknown");
    else if (f->format == MF_IMAGE_FORMAT_IHEX || f->format == MF_IMAGE_FORMAT_SREC)
        snprintf(out, size, "line %llu", (unsigned long long)l.where);
    else
        snprintf(out, size, "offset 0x%llX", (unsigned long long)(l.where + address - l.record));
}

/* Adds [start, end) to the ranges file `f` leaves out (they arrive in ascending order). */
static int exclude(struct mf_datafile *f, uint64_t start, uint64_t end)
{
    if (f->excluded_count && f->excluded[f->excluded_count - 1].end == start) {
        f->excluded[f->excluded_count - 1].end = end;
        return 0;
    }
    struct mf_range *r = realloc(f->excluded, (f->excluded_count + 1) * sizeof *r);
    if (!r)
        return MF_ENOMEM;
    f->excluded = r;
    f->excluded[f->excluded_count++] = (struct mf_range){start, end};
    return 0;
}

/* Merges the files' ranges into the job's. Where two files hold data for the same address, the
 * job's `overlap` decides: an error (naming both files, their job.ini lines and the places in
 * them), or the file listed first or last wins and the other leaves those bytes out. After that,
 * no write unit (the smallest programmable piece) may hold bytes of two files: flash cannot
 * program it twice. */
static int merge_ranges(struct mf_setup *setup, struct loader *ld, struct mf_job *job,
                        const struct job_ini *c, const struct owned_range *all, size_t count,
                        char *message)
{
    _Static_assert(MF_JOB_FILES_MAX <= 32, "the files of a job fit a mask");
    job->ranges = malloc((count ? count : 1) * sizeof *job->ranges);
    struct edge *edges = count ? malloc(2 * count * sizeof *edges) : NULL;
    int err = 0;
    if (!job->ranges || (count && !edges)) {
        err = MF_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        edges[2 * i] = (struct edge){all[i].start, all[i].owner, true};
        edges[2 * i + 1] = (struct edge){all[i].end, all[i].owner, false};
    }
    if (count) /* a job of per-device bytes alone has no data */
        qsort(edges, 2 * count, sizeof *edges, edge_compare);
    job->range_count = 0;
    job->data_bytes = 0;
    uint32_t active = 0;                 /* the files holding data from here on */
    struct owned_range last = {0, 0, 0}; /* the run the previous winner wrote */
    bool has_last = false, resolved = false;
    char where_a[40], where_b[40];
    for (size_t i = 0; i < 2 * count;) {
        uint64_t at = edges[i].at;
        for (; i < 2 * count && edges[i].at == at; i++) {
            if (edges[i].opens)
                active |= 1u << edges[i].owner;
            else
                active &= ~(1u << edges[i].owner);
        }
        if (!active || i == 2 * count)
            continue;
        uint64_t next = edges[i].at; /* [at, next): the files in `active` hold data */
        unsigned first = (unsigned)__builtin_ctz(active);
        unsigned winner = first;
        if (active & (active - 1)) {
            unsigned second = (unsigned)__builtin_ctz(active & (active - 1));
            if (job->overlap == MF_IMAGE_OVERLAP_ERROR) {
                const struct mf_datafile *a = &job->files[first], *b = &job->files[second];
                data_place(setup, ld, a, at, where_a, sizeof where_a);
                data_place(setup, ld, b, at, where_b, sizeof where_b);
                say(message,
                    "%s: overlapping data at 0x%llX-0x%llX: %s %s (job.ini line %u) and %s %s "
                    "(job.ini line %u); [job] overlap = first or last says which wins",
                    c->path, (unsigned long long)at, (unsigned long long)(next - 1), a->name,
                    where_a, a->line, b->name, where_b, b->line);
                err = MF_ECONFLICT;
                goto out;
            }
            winner = job->overlap == MF_IMAGE_OVERLAP_FIRST_WINS
                         ? first
                         : 31u - (unsigned)__builtin_clz(active);
            for (unsigned k = 0; k < job->file_count && !err; k++) {
                if (k != winner && (active >> k & 1))
                    err = exclude(&job->files[k], at, next);
            }
            resolved = true;
            if (err)
                goto out;
        }
        if (job->range_count && job->ranges[job->range_count - 1].end == at)
            job->ranges[job->range_count - 1].end = next;
        else
            job->ranges[job->range_count++] = (struct mf_range){at, next};
        job->data_bytes += next - at;
        if (has_last && last.owner == winner && last.end == at) {
            last.end = next;
            continue;
        }
        if (has_last && last.owner != winner) {
            const struct mf_flash_region *r = mf_profile_region(job->profile, at);
            uint64_t unit = r ? r->write_size : 1;
            if (at / unit == (last.end - 1) / unit) {
                const struct mf_datafile *a = &job->files[last.owner], *b = &job->files[winner];
                data_place(setup, ld, a, last.end - 1, where_a, sizeof where_a);
                data_place(setup, ld, b, at, where_b, sizeof where_b);
                say(message,
                    "%s: %s %s (job.ini line %u) and %s %s (job.ini line %u) share the "
                    "%llu-byte write unit at 0x%llX%s%s; flash programs it once: put that data "
                    "in one file",
                    c->path, a->name, where_a, a->line, b->name, where_b, b->line,
                    (unsigned long long)unit, (unsigned long long)(at / unit * unit),
                    resolved ? " after overlap = " : "",
                    resolved ? overlap_names[job->overlap] : "");
                err = MF_ECONFLICT;
                goto out;
            }
        }
        last = (struct owned_range){at, next, winner};
        has_last = true;
    }
out:
    free(edges);
    return err;
}

/* ---- projects and jobs ---- */

struct name_list {
    char (*names)[MF_AREA_NAME_MAX];
    size_t count, capacity;
    bool dirs; /* collect folders (else files) */
};

static int collect(void *context, const struct mf_area_entry *entry)
{
    struct name_list *l = context;
    if (entry->is_dir != l->dirs)
        return 0;
    if (l->count == l->capacity)
        return MF_ENOMEM; /* more than the caller's limit */
    memcpy(l->names[l->count++], entry->name, MF_AREA_NAME_MAX);
    return 0;
}

static int name_compare(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* A per-device field every cycle of a job programs: its serial number or its signature. */
struct device_field {
    uint64_t start, end;
    const char *section; /* "serial" or "signature" */
    const char *what;    /* for messages */
    unsigned line;       /* of its address in job.ini (when `c` was given) */
};

static unsigned job_fields(const struct mf_job *job, const struct job_ini *c,
                           struct device_field out[2])
{
    unsigned n = 0;
    if (job->serial)
        out[n++] =
            (struct device_field){job->serial_address, job->serial_address + job->serial_length,
                                  "serial", "serial number", c ? c->serial_line : 0};
    if (job->signature)
        out[n++] = (struct device_field){job->signature_address,
                                         job->signature_address + MF_SIGNATURE_SIZE, "signature",
                                         "signature", c ? c->signature_address_line : 0};
    return n;
}

/* The job's fields claim no byte that another field of it or of an earlier job claims: a cycle
 * could program only one of them (the cycle checks patches, which only it knows, the same way). */
static int check_device_fields(const struct mf_project *p, const struct mf_job *job,
                               const struct job_ini *c, char *message)
{
    struct device_field mine[2], theirs[2];
    unsigned n = job_fields(job, c, mine);
    for (unsigned i = 0; i < n; i++) {
        const struct device_field *a = &mine[i];
        for (const struct mf_job *other = p->jobs; other <= job; other++) {
            unsigned m = job_fields(other, NULL, theirs);
            /* Within the job itself, each pair once: against the fields before it. */
            for (unsigned k = 0; k < m && (other != job || k < i); k++) {
                const struct device_field *b = &theirs[k];
                if (a->start >= b->end || b->start >= a->end)
                    continue;
                say(message,
                    "%s:%u: [%s] address: per-device data overlaps at 0x%llX: the %s at "
                    "0x%llX+%llu and the %s at 0x%llX+%llu%s%s",
                    c->path, a->line, a->section,
                    (unsigned long long)(a->start > b->start ? a->start : b->start), a->what,
                    (unsigned long long)a->start, (unsigned long long)(a->end - a->start), b->what,
                    (unsigned long long)b->start, (unsigned long long)(b->end - b->start),
                    other != job ? " of job " : "", other != job ? other->name : "");
                return MF_ECONFLICT;
            }
        }
    }
    return 0;
}

/* Checks [signature] and reads its key file. The key file is part of the setup like a data file
 * (its bytes are in the setup's fingerprint); the seed is kept in the job for the cycles. */
static int load_signature(struct mf_setup *setup, struct loader *ld, struct mf_job *job,
                          const struct job_ini *c, char *message)
{
    const struct mf_profile *profile = job->profile;
    if (!c->signature_address_line || !c->signature_key_line) {
        say(message, "%s:%u: [signature] %s is missing (the section needs address and key)",
            c->path, c->signature_line, c->signature_address_line ? "key" : "address");
        return MF_EFORMAT;
    }
    if (!profile->uid_length) {
        say(message, "%s:%u: [signature] needs a device with a unique ID; %s has none", c->path,
            c->signature_line, profile->name);
        return MF_EFORMAT;
    }
    if (!in_flash(profile, job->signature_address, job->signature_address + MF_SIGNATURE_SIZE)) {
        say(message, "%s:%u: [signature] address: 0x%llX+%u is outside the flash of %s", c->path,
            c->signature_address_line, (unsigned long long)job->signature_address,
            MF_SIGNATURE_SIZE, profile->name);
        return MF_EFORMAT;
    }
    char path[MF_SETUP_PATH_MAX], problem[MF_OWNER_MESSAGE_MAX];
    size_t len = 0;
    int err = join(path, job->folder, c->signature_key);
    if (!err)
        err = read_small(setup->area, path, ld->text, MF_OWNER_FILE_MAX, &len);
    if (err) {
        say(message, "%s:%u: [signature] key: %s: %s", c->path, c->signature_key_line,
            c->signature_key,
            err == MF_EFBIG ? "larger than 4096 bytes: not a key file" : mf_strerror(err));
        sodium_memzero(ld->text, MF_OWNER_FILE_MAX);
        return err;
    }
    err = mf_owner_parse_secret(ld->text, len, job->signature_seed, problem);
    sodium_memzero(ld->text, len);
    if (err) {
        sodium_memzero(job->signature_seed, sizeof job->signature_seed);
        say(message, "%s:%u: [signature] key: %s: %s", c->path, c->signature_key_line,
            c->signature_key, problem);
        return err;
    }
    return 0;
}

static int load_job(struct mf_setup *setup, struct loader *ld, struct mf_project *p,
                    struct mf_job *job, const char *folder_name, char *message)
{
    struct job_ini c;
    memset(&c, 0, sizeof c);
    c.job = job;
    c.devices = setup->devices;
    c.message = message;
    job->patches = true;
    job->serial_length = 4;
    int err = join(job->folder, p->folder, folder_name);
    if (!err)
        err = join(c.path, job->folder, MF_FILE_JOB_INI);
    if (err) {
        say(message, "%s/%s: path too long", p->folder, folder_name);
        return err;
    }
    copy_name(job->name, sizeof job->name, mf_setup_display_name(folder_name));
    size_t len;
    err = read_small(setup->area, c.path, ld->text, sizeof ld->text, &len);
    if (err) {
        say(message, "%s: %s", c.path,
            err == MF_ENOENT  ? "missing (every job folder needs one)"
            : err == MF_EFBIG ? "larger than 16 KiB"
                              : mf_strerror(err));
        return err;
    }
    struct mf_ini_error ierr;
    message[0] = '\0';
    err = mf_ini_parse(ld->text, len, job_ini_item, &c, &ierr);
    if (err) {
        if (!message[0])
            say(message, "%s:%u: %s", c.path, ierr.line, ierr.message);
        return err;
    }
    if (!c.has_device) {
        say(message, "%s: [job] device is missing", c.path);
        return MF_EFORMAT;
    }
    /* One connection serves the whole cycle, set up by the first job's [gdb]: a later job's that
     * says otherwise would be silently ignored. */
    if (job != &p->jobs[0] && c.gdb_line && !mf_rsp_options_equal(&job->gdb, &p->jobs[0].gdb)) {
        say(message,
            "%s:%u: [gdb] differs from the first job's (%s): one connection serves the cycle, "
            "set up by the first job's [gdb]",
            c.path, c.gdb_line, p->jobs[0].folder);
        return MF_EFORMAT;
    }
    if (job->protect > job->profile->protect_levels) {
        say(message, "%s: [job] protect = %u, but %s has levels up to %u", c.path, job->protect,
            job->profile->name, job->profile->protect_levels);
        return MF_EFORMAT;
    }
    if (job->serial) {
        if (!c.has_serial_address) {
            say(message, "%s: [serial] address is missing", c.path);
            return MF_EFORMAT;
        }
        if (!in_flash(job->profile, job->serial_address,
                      job->serial_address + job->serial_length)) {
            say(message, "%s: [serial] 0x%llX+%u is outside the flash of %s", c.path,
                (unsigned long long)job->serial_address, job->serial_length, job->profile->name);
            return MF_EFORMAT;
        }
        uint64_t inc = c.serial_increment_set ? c.serial_increment : 1;
        if (p->uses_serial && p->serial_increment != inc) {
            say(message, "%s: [serial] increment %llu differs from another job's %llu", c.path,
                (unsigned long long)inc, (unsigned long long)p->serial_increment);
            return MF_EFORMAT;
        }
        p->uses_serial = true;
        p->serial_increment = inc;
    }
    if (job->signature) {
        err = load_signature(setup, ld, job, &c, message);
        if (err)
            return err;
    }
    err = check_device_fields(p, job, &c, message);
    if (err)
        return err;

    /* The data files. */
    struct owned_range *all = NULL;
    size_t count = 0;
    for (unsigned i = 0; i < job->file_count && !err; i++) {
        struct mf_datafile *f = &job->files[i];
        if (!f->name[0]) {
            say(message, "%s: [file] number %u has no path", c.path, i + 1);
            err = MF_EFORMAT;
            break;
        }
        struct mf_area_entry e;
        err = join(f->path, job->folder, f->name);
        if (!err)
            err = setup->area->stat(setup->area, f->path, &e);
        if (!err && e.is_dir)
            err = MF_EISDIR;
        if (err) {
            say(message, "%s: [file] %s: %s", c.path, f->name, mf_strerror(err));
            p->data_file_error = err != MF_ENAMETOOLONG;
            break;
        }
        f->size = e.size;
        if (!c.file_format_set[i] || f->format == MF_IMAGE_FORMAT_AUTO) {
            err = mf_datafile_detect(setup->area, f->path, f->size, &f->format);
            if (err) {
                say(message, "%s: %s", f->path, mf_strerror(err));
                p->data_file_error = true;
                break;
            }
        }
        if (f->format == MF_IMAGE_FORMAT_BIN && !c.file_has_address[i]) {
            say(message, "%s: [file] %s is raw binary: it needs an address", c.path, f->name);
            err = MF_EFORMAT;
            break;
        }
        if (f->format != MF_IMAGE_FORMAT_BIN && c.file_has_address[i]) {
            say(message, "%s: [file] %s: address only applies to raw binary (this is %s)", c.path,
                f->name, mf_image_format_title(f->format));
            err = MF_EFORMAT;
            break;
        }
        struct scan s;
        err = scan_file(setup, ld, job, f, ld->buffer, ld->buffer_size, &s, message);
        if (!err && s.count) {
            struct owned_range *a = realloc(all, (count + s.count) * sizeof *a);
            if (!a) {
                err = MF_ENOMEM;
            } else {
                all = a;
                for (size_t k = 0; k < s.count; k++)
                    all[count + k] = (struct owned_range){s.ranges[k].start, s.ranges[k].end, i};
                count += s.count;
            }
        }
        free(s.ranges);
    }
    if (!err)
        err = merge_ranges(setup, ld, job, &c, all, count, message);
    free(all);
    return err;
}

/* Sectors of `profile` touched by [start, end): calls back per sector start/size. */
static bool sectors_meet(const struct mf_profile *profile, const struct mf_range *a, size_t na,
                         const struct mf_range *b, size_t nb, uint64_t *where)
{
    /* Two range lists meet in a sector when some sector holds bytes of both. */
    for (size_t i = 0; i < na; i++) {
        for (size_t j = 0; j < nb; j++) {
            uint64_t s0, s1;
            uint32_t z0, z1;
            const struct mf_flash_region *ra = mf_profile_region(profile, a[i].start);
            const struct mf_flash_region *rb = mf_profile_region(profile, b[j].start);
            if (!ra || ra != rb)
                continue;
            /* First and last sectors of each range. */
            mf_region_sector(ra, a[i].start, &s0, &z0);
            mf_region_sector(ra, a[i].end - 1, &s1, &z1);
            uint64_t a_lo = s0, a_hi = s1 + z1;
            mf_region_sector(rb, b[j].start, &s0, &z0);
            mf_region_sector(rb, b[j].end - 1, &s1, &z1);
            uint64_t b_lo = s0, b_hi = s1 + z1;
            if (a_lo < b_hi && b_lo < a_hi) {
                *where = a_lo > b_lo ? a_lo : b_lo;
                return true;
            }
        }
    }
    return false;
}

/* Do two jobs meet in a sector, by their data or by the per-device fields every cycle of them
 * programs (a job erasing by sectors erases the sectors of its fields too)? */
static bool jobs_meet(const struct mf_job *a, const struct mf_job *b, uint64_t *where)
{
    struct device_field fa[2], fb[2];
    struct mf_range ra[2], rb[2];
    unsigned na = job_fields(a, NULL, fa), nb = job_fields(b, NULL, fb);
    for (unsigned i = 0; i < na; i++)
        ra[i] = (struct mf_range){fa[i].start, fa[i].end};
    for (unsigned i = 0; i < nb; i++)
        rb[i] = (struct mf_range){fb[i].start, fb[i].end};
    const struct mf_profile *profile = b->profile;
    return sectors_meet(profile, a->ranges, a->range_count, b->ranges, b->range_count, where) ||
           sectors_meet(profile, a->ranges, a->range_count, rb, nb, where) ||
           sectors_meet(profile, ra, na, b->ranges, b->range_count, where) ||
           sectors_meet(profile, ra, na, rb, nb, where);
}

static int check_project(struct mf_project *p, char *message)
{
    if (p->job_count == 0) {
        say(message, "%s: no job folders", p->folder);
        return MF_EFORMAT;
    }
    for (unsigned i = 0; i < p->job_count; i++) {
        struct mf_job *job = &p->jobs[i];
        if (job->profile != p->jobs[0].profile) {
            say(message,
                "%s: device %s differs from the first job's %s (one cycle programs one "
                "device)",
                job->folder, job->profile->name, p->jobs[0].profile->name);
            return MF_EFORMAT;
        }
        if (i > 0 && job->erase == MF_ERASE_CHIP) {
            say(message,
                "%s: erase = chip would erase what the jobs before it programmed; only "
                "the first job may erase the chip",
                job->folder);
            return MF_EFORMAT;
        }
        for (unsigned k = 0; k < i && job->erase == MF_ERASE_SECTORS; k++) {
            uint64_t where;
            if (jobs_meet(&p->jobs[k], job, &where)) {
                say(message,
                    "%s: its sector at 0x%llX also holds data or per-device bytes of job %s, "
                    "which its erase would remove",
                    job->folder, (unsigned long long)where, p->jobs[k].name);
                return MF_ECONFLICT;
            }
        }
    }
    if (p->uses_serial && !p->has_serial) {
        say(message, "%s: a job programs a serial number, but %s is missing", p->folder,
            MF_FILE_SERIAL);
        return MF_EFORMAT;
    }
    if ((p->has_snlist || p->has_patches) && !p->has_serial) {
        say(message, "%s: %s selects the line of %s: it is missing", p->folder, MF_FILE_SERIAL,
            p->has_snlist ? MF_FILE_SNLIST : MF_FILE_PATCHES);
        return MF_EFORMAT;
    }
    return 0;
}

static int load_project(struct mf_setup *setup, struct loader *ld, struct mf_project *p,
                        const char *folder_name)
{
    char *message = p->message;
    int err = join(p->folder, MF_DIR_PROJECTS, folder_name);
    if (err) {
        say(message, "%s/%s: path too long", MF_DIR_PROJECTS, folder_name);
        return err;
    }
    copy_name(p->name, sizeof p->name, mf_setup_display_name(folder_name));
    p->serial_increment = 1;

    char(*names)[MF_AREA_NAME_MAX] = ld->jobs;
    struct name_list dirs = {names, 0, MF_PROJECT_JOBS_MAX + 1, true};
    err = setup->area->list(setup->area, p->folder, collect, &dirs);
    if (err == MF_ENOMEM || dirs.count > MF_PROJECT_JOBS_MAX) {
        say(message, "%s: more than %u job folders", p->folder, MF_PROJECT_JOBS_MAX);
        return MF_EFBIG;
    }
    if (err) {
        say(message, "%s: %s", p->folder, mf_strerror(err));
        return err;
    }
    qsort(names, dirs.count, sizeof names[0], name_compare);

    /* The per-project files. */
    static const char *const files[] = {MF_FILE_CNTDOWN, MF_FILE_SERIAL, MF_FILE_SNLIST,
                                        MF_FILE_PATCHES};
    bool *flags[] = {&p->has_cntdown, &p->has_serial, &p->has_snlist, &p->has_patches};
    for (unsigned i = 0; i < 4; i++) {
        char path[MF_SETUP_PATH_MAX];
        struct mf_area_entry e;
        if (join(path, p->folder, files[i]))
            continue;
        err = setup->area->stat(setup->area, path, &e);
        if (err == MF_ENOENT)
            continue;
        if (!err && e.is_dir)
            err = MF_EISDIR;
        if (err) {
            say(message, "%s: %s", path, mf_strerror(err));
            return err;
        }
        *flags[i] = true;
    }
    char path[MF_SETUP_PATH_MAX];
    uint64_t v;
    if (p->has_cntdown && !join(path, p->folder, MF_FILE_CNTDOWN)) {
        err = setup->area->read_number(setup->area, path, MF_NUMFILE_STRICT, UINT32_MAX, &v);
        if (err) {
            say(message, "%s: %s", path,
                err == MF_EFORMAT ? "not a decimal number from 0 to 4294967295" : mf_strerror(err));
            return err;
        }
    }
    if (p->has_serial && !join(path, p->folder, MF_FILE_SERIAL)) {
        err = setup->area->read_number(setup->area, path, MF_NUMFILE_LEADING, UINT64_MAX, &v);
        if (err) {
            say(message, "%s: %s", path,
                err == MF_EFORMAT ? "does not start with a decimal number" : mf_strerror(err));
            return err;
        }
    }

    for (size_t i = 0; i < dirs.count; i++) {
        err = load_job(setup, ld, p, &p->jobs[p->job_count++], names[i], message);
        if (err)
            return err;
    }
    return check_project(p, message);
}

static void free_job(struct mf_job *job)
{
    sodium_memzero(job->signature_seed, sizeof job->signature_seed);
    for (unsigned i = 0; i < MF_JOB_FILES_MAX; i++) {
        if (job->files[i].held) {
            mf_image_free(job->files[i].held);
            free(job->files[i].held);
        }
        free(job->files[i].blocks);
        free(job->files[i].excluded);
    }
    free(job->ranges);
}

void mf_setup_free(struct mf_setup *setup)
{
    for (unsigned i = 0; i < setup->project_count; i++) {
        for (unsigned j = 0; j < MF_PROJECT_JOBS_MAX; j++)
            free_job(&setup->projects[i].jobs[j]);
    }
    free(setup->projects);
    setup->projects = NULL;
    setup->project_count = 0;
    free(setup->devices);
    setup->devices = NULL;
}

int mf_setup_find(const struct mf_setup *setup, const char *name, unsigned *index)
{
    for (unsigned i = 0; i < setup->project_count; i++) {
        const struct mf_project *p = &setup->projects[i];
        const char *folder = p->folder + strlen(MF_DIR_PROJECTS) + 1;
        /* As the FAT volume matches the folder's name: without regard to case, beyond ASCII
         * too. */
        if (mf_fat_names_match(name, folder) || mf_fat_names_match(name, p->name)) {
            *index = i;
            return 0;
        }
    }
    return MF_ENOENT;
}

const struct mf_project *mf_setup_project(const struct mf_setup *setup)
{
    return setup->selected < setup->project_count ? &setup->projects[setup->selected] : NULL;
}

/* ---- the fingerprint ---- */

#define FINGERPRINT_FILES_MAX 65536u

struct walk {
    char (*paths)[MF_SETUP_PATH_MAX];
    uint64_t *sizes;
    size_t count, capacity;
    /* Folders still to list (a stack: no recursion on the volume's depth). */
    char (*pending)[MF_SETUP_PATH_MAX];
    unsigned *depth;
    size_t pending_count, pending_capacity;
    const char *dir;
    unsigned dir_depth;
    int error;
};

static void upper_path(const char *in, char *out)
{
    size_t i = 0;
    for (; in[i]; i++)
        out[i] = (in[i] >= 'a' && in[i] <= 'z') ? (char)(in[i] - 32) : in[i];
    out[i] = '\0';
}

static int walk_entry(void *context, const struct mf_area_entry *entry)
{
    struct walk *w = context;
    char path[MF_SETUP_PATH_MAX];
    if (join(path, w->dir, entry->name))
        return MF_ENAMETOOLONG;
    if (entry->is_dir) {
        if (w->dir_depth + 1 >= MF_FAT_DEPTH_MAX)
            return MF_ENAMETOOLONG;
        if (w->pending_count == w->pending_capacity) {
            size_t cap = w->pending_capacity ? w->pending_capacity * 2 : 16;
            void *p = realloc(w->pending, cap * sizeof *w->pending);
            void *d = p ? realloc(w->depth, cap * sizeof *w->depth) : NULL;
            if (p)
                w->pending = p;
            if (!d)
                return MF_ENOMEM;
            w->depth = d;
            w->pending_capacity = cap;
        }
        strcpy(w->pending[w->pending_count], path);
        w->depth[w->pending_count++] = w->dir_depth + 1;
        return 0;
    }
    if (mf_setup_programmer_file(path)) /* not part of what the owner installed */
        return 0;
    if (w->count == FINGERPRINT_FILES_MAX)
        return MF_EFBIG;
    if (w->count == w->capacity) {
        size_t cap = w->capacity ? w->capacity * 2 : 64;
        void *p = realloc(w->paths, cap * sizeof *w->paths);
        void *z = p ? realloc(w->sizes, cap * sizeof *w->sizes) : NULL;
        if (p)
            w->paths = p;
        if (!z)
            return MF_ENOMEM;
        w->sizes = z;
        w->capacity = cap;
    }
    strcpy(w->paths[w->count], path);
    w->sizes[w->count++] = entry->size;
    return 0;
}

static int upper_compare(const void *a, const void *b)
{
    char x[MF_SETUP_PATH_MAX], y[MF_SETUP_PATH_MAX];
    upper_path(a, x);
    upper_path(b, y);
    return strcmp(x, y);
}

/* A raw binary a setup holds whole (one segment of the whole file at its load address): its
 * upper-cased path, size and bytes. */
struct kept_file {
    char path[MF_SETUP_PATH_MAX];
    uint64_t size;
    const uint8_t *data;
};

static int kept_compare(const void *a, const void *b)
{
    return strcmp(((const struct kept_file *)a)->path, ((const struct kept_file *)b)->path);
}

/* The raw binaries `setup` (may be NULL) holds whole, sorted by path; NULL (and *count 0) when
 * there are none, or no memory: then every file is read. */
static struct kept_file *kept_files(const struct mf_setup *setup, size_t *count)
{
    struct kept_file *list = NULL;
    *count = 0;
    for (int fill = 0; fill < 2 && setup; fill++) {
        size_t n = 0;
        for (unsigned i = 0; i < setup->project_count; i++) {
            const struct mf_project *p = &setup->projects[i];
            for (unsigned j = 0; j < p->job_count; j++) {
                for (unsigned k = 0; k < p->jobs[j].file_count; k++) {
                    const struct mf_datafile *f = &p->jobs[j].files[k];
                    size_t segs = 0;
                    const struct mf_image_segment *seg =
                        f->held && f->format == MF_IMAGE_FORMAT_BIN && f->size
                            ? mf_image_segments(f->held, &segs)
                            : NULL;
                    if (segs != 1 || seg[0].address != f->base || seg[0].size != f->size)
                        continue;
                    if (fill) {
                        upper_path(f->path, list[n].path);
                        list[n].size = f->size;
                        list[n].data = seg[0].data;
                    }
                    n++;
                }
            }
        }
        if (fill) {
            qsort(list, n, sizeof *list, kept_compare);
            *count = n;
        } else if (n == 0 || (list = malloc(n * sizeof *list)) == NULL) {
            break;
        }
    }
    return list;
}

/* The bytes of the file at `path` (`size` bytes) among `kept`, or NULL. */
static const uint8_t *kept_bytes(const struct kept_file *kept, size_t count, const char *path,
                                 uint64_t size)
{
    struct kept_file key;
    upper_path(path, key.path);
    const struct kept_file *k =
        count ? bsearch(&key, kept, count, sizeof *kept, kept_compare) : NULL;
    return k && k->size == size ? k->data : NULL;
}

/* mf_setup_fingerprint; the raw binaries `held` (may be NULL) keeps are hashed from memory
 * instead of being read again. */
static int fingerprint_of(struct mf_area *area, const struct mf_setup *held, uint8_t *buffer,
                          size_t buffer_size, uint8_t fingerprint[32])
{
    struct walk w;
    memset(&w, 0, sizeof w);
    char dir[MF_SETUP_PATH_MAX] = "";
    int err = 0;
    for (;;) {
        w.dir = dir;
        err = area->list(area, dir, walk_entry, &w);
        if (err || w.pending_count == 0)
            break;
        w.pending_count--;
        strcpy(dir, w.pending[w.pending_count]);
        w.dir_depth = w.depth[w.pending_count];
    }
    /* Sizes travel with their paths through the sort. */
    struct entry {
        char path[MF_SETUP_PATH_MAX];
        uint64_t size;
    } *list = NULL;
    if (!err && w.count) {
        list = malloc(w.count * sizeof *list);
        if (!list)
            err = MF_ENOMEM;
    }
    if (!err) {
        for (size_t i = 0; i < w.count; i++) {
            strcpy(list[i].path, w.paths[i]);
            list[i].size = w.sizes[i];
        }
        if (w.count)
            qsort(list, w.count, sizeof *list, upper_compare);
        size_t keep_count;
        struct kept_file *keep = kept_files(held, &keep_count);
        struct mf_sha256 st;
        mf_sha256_init(&st);
        for (size_t i = 0; i < w.count && !err; i++) {
            char up[MF_SETUP_PATH_MAX];
            uint8_t size[8];
            upper_path(list[i].path, up);
            for (int k = 0; k < 8; k++)
                size[k] = (uint8_t)(list[i].size >> (8 * k));
            mf_sha256_update(&st, (const uint8_t *)up, strlen(up) + 1);
            mf_sha256_update(&st, size, sizeof size);
            const uint8_t *kept = kept_bytes(keep, keep_count, list[i].path, list[i].size);
            if (kept) {
                mf_sha256_update(&st, kept, (size_t)list[i].size);
                continue;
            }
            for (uint64_t off = 0; off < list[i].size && !err;) {
                size_t n =
                    list[i].size - off < buffer_size ? (size_t)(list[i].size - off) : buffer_size;
                err = area->read(area, list[i].path, off, buffer, n);
                if (!err)
                    mf_sha256_update(&st, buffer, n);
                off += n;
            }
        }
        mf_sha256_final(&st, fingerprint);
        free(keep);
    }
    free(list);
    free(w.paths);
    free(w.sizes);
    free(w.pending);
    free(w.depth);
    return err;
}

int mf_setup_fingerprint(struct mf_area *area, uint8_t *buffer, size_t buffer_size,
                         uint8_t fingerprint[32])
{
    return fingerprint_of(area, NULL, buffer, buffer_size, fingerprint);
}

static int load(struct mf_setup *setup, struct loader *ld, char *message)
{
    struct mf_area *area = setup->area;
    int err = load_flasher_ini(setup, ld, message);
    if (!err)
        err = load_devices_ini(setup, ld, message);
    if (err)
        return err;

    struct mf_area_entry e;
    err = area->stat(area, MF_FILE_CNTDOWN, &e);
    if (!err && !e.is_dir) {
        uint64_t v;
        setup->has_root_cntdown = true;
        err = area->read_number(area, MF_FILE_CNTDOWN, MF_NUMFILE_STRICT, UINT32_MAX, &v);
        if (err) {
            say(message, "%s: %s", MF_FILE_CNTDOWN,
                err == MF_EFORMAT ? "not a decimal number from 0 to 4294967295" : mf_strerror(err));
            return err;
        }
    } else if (err && err != MF_ENOENT) {
        say(message, "%s: %s", MF_FILE_CNTDOWN, mf_strerror(err));
        return err;
    }

    char(*names)[MF_AREA_NAME_MAX] = ld->projects;
    struct name_list dirs = {names, 0, MF_SETUP_PROJECTS_MAX + 1, true};
    err = area->list(area, MF_DIR_PROJECTS, collect, &dirs);
    if (err == MF_ENOENT || err == MF_ENOTDIR) {
        say(message, "no %s folder: there is no production setup", MF_DIR_PROJECTS);
        return MF_ENOENT;
    }
    if (err == MF_ENOMEM || dirs.count > MF_SETUP_PROJECTS_MAX) {
        say(message, "%s: more than %u projects", MF_DIR_PROJECTS, MF_SETUP_PROJECTS_MAX);
        return MF_EFBIG;
    }
    if (err) {
        say(message, "%s: %s", MF_DIR_PROJECTS, mf_strerror(err));
        return err;
    }
    if (dirs.count == 0) {
        say(message, "%s: no project folders", MF_DIR_PROJECTS);
        return MF_ENOENT;
    }
    qsort(names, dirs.count, sizeof names[0], name_compare);
    setup->projects = calloc(dirs.count, sizeof *setup->projects);
    if (!setup->projects)
        return MF_ENOMEM;
    for (size_t i = 0; i < dirs.count; i++) {
        struct mf_project *p = &setup->projects[setup->project_count++];
        p->error = load_project(setup, ld, p, names[i]);
        if (p->error == MF_ENOMEM) {
            say(message, "out of memory loading %s", p->folder);
            return MF_ENOMEM;
        }
    }
    if (!area->fingerprint || area->fingerprint(area, setup->fingerprint) != 0)
        err = fingerprint_of(area, setup, ld->buffer, ld->buffer_size, setup->fingerprint);
    if (err) {
        say(message, "cannot read the setup's files: %s", mf_strerror(err));
        return err;
    }
    setup->selected = 0;
    if (setup->selected_name[0] && mf_setup_find(setup, setup->selected_name, &setup->selected)) {
        say(message, "%s: Project = %s: no such project in %s", MF_FILE_FLASHER_INI,
            setup->selected_name, MF_DIR_PROJECTS);
        return MF_ENOENT;
    }
    hold_files(setup, ld);
    return 0;
}

int mf_setup_load(struct mf_setup *setup, struct mf_area *area, uint8_t *buffer, size_t buffer_size,
                  char *message)
{
    memset(setup, 0, sizeof *setup);
    setup->area = area;
    setup->log_max_bytes = 1024u * 1024u;
    message[0] = '\0';
    struct loader *ld = malloc(sizeof *ld);
    if (!ld) {
        say(message, "out of memory");
        return MF_ENOMEM;
    }
    ld->buffer = buffer;
    ld->buffer_size = buffer_size;
    ld->held = 0;
    int err = load(setup, ld, message);
    free(ld);
    if (err)
        mf_setup_free(setup);
    return err;
}
