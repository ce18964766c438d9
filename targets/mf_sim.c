/* The simulated target back end `sim` (see mf_sim.h and docs/internals/sim.md): NOR-flash rules,
 * readout protection, a scaled timing model and fault knobs, over a slot folder holding flash.bin
 * (mapped shared, so other processes see every programmed byte at once) and device.ini. */
#include "mf_sim.h"

#include "mf_devices.h"

#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_ini.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SIM_FLASH_MAX     (1ull << 30)   /* largest flash.bin mapped; the profiles are far below */
#define SIM_FILL_CHUNK    16384u         /* bytes written per call when creating flash.bin */
#define SIM_SLEEP_STEP_NS 5000000l       /* longest sleep between two looks at target->cancel */
#define SIM_DELAY_MAX_NS  (3600.0 * 1e9) /* one delay never exceeds an hour, whatever the scale */
#define SIM_CLEAN_SECTORS 65536u         /* most sectors tracked as known erased (256 KiB) */
#define SIM_CLEAN_NONE    UINT32_MAX     /* clean_from of a sector not erased in this connection */
#define SIM_INI_TEXT_MAX  4096u          /* device.ini as written here fits (save_device checks) */

enum sim_knob { KNOB_CONNECT, KNOB_ERASE, KNOB_PROGRAM, KNOB_FLIP, KNOB_TIMEOUT, KNOB_COUNT };

static const char *const sim_knob_names[KNOB_COUNT] = {"connect", "erase", "program", "flip",
                                                       "timeout"};

static const char *const sim_phase_names[] = {
    [MF_SIM_PHASE_CONNECT] = "connect", [MF_SIM_PHASE_UID] = "uid",
    [MF_SIM_PHASE_UNLOCK] = "unlock",   [MF_SIM_PHASE_ERASE] = "erase",
    [MF_SIM_PHASE_PROGRAM] = "program", [MF_SIM_PHASE_READ] = "read",
    [MF_SIM_PHASE_CRC] = "crc",         [MF_SIM_PHASE_PROTECT] = "protect",
    [MF_SIM_PHASE_START] = "start",
};

/* What device.ini holds. */
struct sim_device {
    const struct mf_profile *profile; /* NULL when profile_name is not one we know */
    char profile_name[48];
    uint8_t uid[MF_PROFILE_UID_MAX];
    unsigned protection;
    bool running;
    enum mf_start_mode start_mode;
    struct mf_sim_counters counters;
    char last_program[MF_SIM_TIME_TEXT_MAX];
    char last_start[MF_SIM_TIME_TEXT_MAX];
    struct mf_sim_faults faults;
};

struct sim {
    char *slot_dir; /* "<sim_dir>/slot<N>", for opening and for messages */
    char *sim_dir;
    unsigned slot;
    struct mf_sim_options options;
    bool option_knob[KNOB_COUNT]; /* set by the options: device.ini's is masked */

    /* flash.bin stays mapped from the first connect to mf_sim_close (unless it is replaced by
     * another file meanwhile): mapping it anew per cycle would cost a write fault per page. */
    int flash_fd;
    uint8_t *flash;
    size_t flash_size;
    dev_t flash_dev;
    ino_t flash_ino;

    /* Between connect and disconnect: */
    bool connected;
    int dir_fd;        /* the slot folder, flock'ed: one programmer per slot */
    int ini_fd;        /* device.ini, rewritten in place */
    size_t ini_length; /* its bytes as last read or written through ini_fd (SIZE_MAX: unknown) */
    uint64_t region_offset[MF_PROFILE_FLASH_REGIONS]; /* of each region in flash.bin */
    struct sim_device device;
    uint64_t programmed_now; /* bytes programmed since connect */

    /* Kept from one connection to the next: device.ini's text as this programmer last wrote or
     * parsed it, which `device` holds (known_length 0: nothing known), so that a connect finding
     * the same text needs no parse; and the slot folder (dir_fd stays open, unlocked between
     * connections), opened again when the path no longer leads to it. */
    char known_text[SIM_INI_TEXT_MAX];
    size_t known_length;
    dev_t dir_dev;
    ino_t dir_ino;

    /* What this connection knows to be erased, so that a program there needs no NOR check: per
     * sector (the regions' sectors one after the other, region i's from region_first_sector[i]),
     * the offset in the sector from which every byte still holds the erased value since this
     * connection erased it; SIM_CLEAN_NONE where nothing is known. Forgotten at each connect:
     * flash.bin may be edited between cycles. Without tracking (a profile of more than
     * SIM_CLEAN_SECTORS sectors, or no memory) every program is checked. */
    bool clean_tracked;
    uint32_t *clean_from; /* allocated at the first connect, kept to mf_sim_close */
    uint32_t clean_capacity;
    uint32_t region_first_sector[MF_PROFILE_FLASH_REGIONS];
};

/* ---- small helpers ---- */

static void say(char *error, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *error, size_t size, const char *fmt, ...)
{
    if (!error || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, size, fmt, ap);
    va_end(ap);
}

#define TSAY(t, ...) say((t)->error, sizeof(t)->error, __VA_ARGS__)

static int errno_code(int error)
{
    switch (error) {
    case ENOENT:
        return MF_ENOENT;
    case EACCES:
    case EPERM:
        return MF_EACCES;
    case ENOMEM:
        return MF_ENOMEM;
    case ENOSPC:
        return MF_ENOSPC;
    case ENOTDIR:
        return MF_ENOTDIR;
    case EROFS:
        return MF_EROFS;
    case ENAMETOOLONG:
        return MF_ENAMETOOLONG;
    default:
        return MF_EIO;
    }
}

static struct mf_sim_fault *knob_of(struct mf_sim_faults *faults, enum sim_knob k)
{
    switch (k) {
    case KNOB_CONNECT:
        return &faults->connect;
    case KNOB_ERASE:
        return &faults->erase;
    case KNOB_PROGRAM:
        return &faults->program;
    case KNOB_FLIP:
        return &faults->flip;
    default:
        return &faults->timeout;
    }
}

static const struct mf_sim_fault *knob_of_const(const struct mf_sim_faults *faults, enum sim_knob k)
{
    switch (k) {
    case KNOB_CONNECT:
        return &faults->connect;
    case KNOB_ERASE:
        return &faults->erase;
    case KNOB_PROGRAM:
        return &faults->program;
    case KNOB_FLIP:
        return &faults->flip;
    default:
        return &faults->timeout;
    }
}

/* Decimal, or hex with 0x; no sign, no spaces. */
static int parse_u64(const char *text, uint64_t *value)
{
    uint64_t v = 0;
    const char *p = text;
    unsigned base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (*p == '\0')
        return -1;
    for (; *p; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned)(*p - 'A' + 10);
        else
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -1;
        v = v * base + d;
    }
    *value = v;
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void utc_now(char *text, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(text, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        say(text, size, "%lld", (long long)now);
}

static uint64_t flash_total(const struct mf_profile *profile)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < profile->flash_count; i++)
        total += profile->flash[i].size;
    return total;
}

/* A profile the simulator can hold: regions present and small enough to map, UID fits. */
static int profile_usable(const struct mf_profile *profile, char *error, size_t size)
{
    if (!profile) {
        say(error, size, "no device profile given");
        return MF_EINVAL;
    }
    if (profile->flash_count == 0 || profile->flash_count > MF_PROFILE_FLASH_REGIONS ||
        profile->uid_length > MF_PROFILE_UID_MAX) {
        say(error, size, "profile %s cannot be simulated", profile->name);
        return MF_EINVAL;
    }
    uint64_t total = 0;
    for (unsigned i = 0; i < profile->flash_count; i++) {
        if (profile->flash[i].size > SIM_FLASH_MAX || profile->flash[i].write_size == 0) {
            say(error, size, "profile %s cannot be simulated", profile->name);
            return MF_EINVAL;
        }
        total += profile->flash[i].size;
    }
    if (total > SIM_FLASH_MAX) {
        say(error, size, "profile %s: flash too large to simulate", profile->name);
        return MF_EINVAL;
    }
    return 0;
}

/* ---- fault knobs ---- */

const char *mf_sim_phase_name(unsigned phase)
{
    if (phase == 0 || phase >= sizeof sim_phase_names / sizeof sim_phase_names[0])
        return NULL;
    return sim_phase_names[phase];
}

static int knob_find(const char *key)
{
    for (int k = 0; k < KNOB_COUNT; k++) {
        if (mf_ini_name_is(key, sim_knob_names[k]))
            return k;
    }
    return -1;
}

int mf_sim_fault_parse(const char *key, const char *value, struct mf_sim_faults *faults,
                       char *error, size_t error_size)
{
    int k = knob_find(key);
    if (k < 0) {
        say(error, error_size, "unknown fault '%s' (connect, erase, program, flip, timeout)", key);
        return MF_EINVAL;
    }
    /* At most two words: "[ARG] once|always", or "off". */
    char words[2][40];
    unsigned count = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t n = 0;
        while (p[n] && p[n] != ' ' && p[n] != '\t')
            n++;
        if (count == 2 || n >= sizeof words[0]) {
            say(error, error_size, "fault %s: expected '[ARG] once|always' or 'off'", key);
            return MF_EFORMAT;
        }
        memcpy(words[count], p, n);
        words[count][n] = '\0';
        count++;
        p += n;
    }
    struct mf_sim_fault fault = {0};
    if (count == 0 || (count == 1 && mf_ini_name_is(words[0], "off"))) {
        *knob_of(faults, (enum sim_knob)k) = fault;
        return 0;
    }
    const char *when = words[count - 1];
    if (mf_ini_name_is(when, "once"))
        fault.mode = MF_SIM_FAULT_ONCE;
    else if (mf_ini_name_is(when, "always"))
        fault.mode = MF_SIM_FAULT_ALWAYS;
    else {
        say(error, error_size, "fault %s: '%s' is not once, always or off", key, when);
        return MF_EFORMAT;
    }
    bool wants_arg = k == KNOB_PROGRAM || k == KNOB_FLIP || k == KNOB_TIMEOUT;
    if (wants_arg && count != 2) {
        say(error, error_size, "fault %s needs %s before once/always", key,
            k == KNOB_PROGRAM ? "a byte count"
            : k == KNOB_FLIP  ? "an address"
                              : "a phase");
        return MF_EFORMAT;
    }
    if (!wants_arg && count != 1) {
        say(error, error_size, "fault %s takes no argument, only once or always", key);
        return MF_EFORMAT;
    }
    if (k == KNOB_TIMEOUT) {
        unsigned phase = MF_SIM_PHASE_CONNECT;
        while (mf_sim_phase_name(phase) && !mf_ini_name_is(words[0], mf_sim_phase_name(phase)))
            phase++;
        if (!mf_sim_phase_name(phase)) {
            say(error, error_size,
                "fault timeout: unknown phase '%s' (connect, uid, unlock, erase, program, read, "
                "crc, protect, start)",
                words[0]);
            return MF_EFORMAT;
        }
        fault.arg = phase;
    } else if (wants_arg && parse_u64(words[0], &fault.arg) != 0) {
        say(error, error_size, "fault %s: '%s' is not a number (decimal, or hex with 0x)", key,
            words[0]);
        return MF_EFORMAT;
    }
    *knob_of(faults, (enum sim_knob)k) = fault;
    return 0;
}

void mf_sim_fault_format(const char *key, const struct mf_sim_fault *fault, char *text, size_t size)
{
    const char *when = fault->mode == MF_SIM_FAULT_ONCE     ? "once"
                       : fault->mode == MF_SIM_FAULT_ALWAYS ? "always"
                                                            : NULL;
    int k = knob_find(key);
    if (!when || k < 0)
        say(text, size, "off");
    else if (k == KNOB_PROGRAM)
        say(text, size, "%llu %s", (unsigned long long)fault->arg, when);
    else if (k == KNOB_FLIP)
        say(text, size, "0x%08llx %s", (unsigned long long)fault->arg, when);
    else if (k == KNOB_TIMEOUT)
        say(text, size, "%s %s",
            mf_sim_phase_name((unsigned)fault->arg) ? mf_sim_phase_name((unsigned)fault->arg) : "?",
            when);
    else
        say(text, size, "%s", when);
}

/* ---- device.ini ---- */

struct ini_state {
    struct sim_device *device;
    const struct mf_profile *expected; /* may be NULL */
    const struct mf_devices *devices;  /* a setup's parts besides the built-in ones; may be NULL */
    uint8_t uid[MF_PROFILE_UID_MAX];
    size_t uid_length;
    bool has_profile, has_uid, has_protection;
    uint64_t protection;
    char message[96];
};

static const struct {
    const char *name;
    size_t offset;
} sim_counter_keys[] = {
    {"connects", offsetof(struct mf_sim_counters, connects)},
    {"programs", offsetof(struct mf_sim_counters, programs)},
    {"programmed_bytes", offsetof(struct mf_sim_counters, programmed_bytes)},
    {"sector_erases", offsetof(struct mf_sim_counters, sector_erases)},
    {"chip_erases", offsetof(struct mf_sim_counters, chip_erases)},
    {"unlocks", offsetof(struct mf_sim_counters, unlocks)},
    {"protects", offsetof(struct mf_sim_counters, protects)},
    {"starts", offsetof(struct mf_sim_counters, starts)},
};

#define COUNTER_COUNT (sizeof sim_counter_keys / sizeof sim_counter_keys[0])

static uint64_t *counter_at(struct mf_sim_counters *counters, size_t i)
{
    return (uint64_t *)(void *)((char *)counters + sim_counter_keys[i].offset);
}

static uint64_t counter_value(const struct mf_sim_counters *counters, size_t i)
{
    uint64_t value;
    memcpy(&value, (const char *)counters + sim_counter_keys[i].offset, sizeof value);
    return value;
}

static int ini_time(struct ini_state *st, const char *key, const char *value, char *out)
{
    size_t n = strlen(value);
    if (n >= MF_SIM_TIME_TEXT_MAX) {
        say(st->message, sizeof st->message, "%s is too long", key);
        return MF_EFORMAT;
    }
    memcpy(out, value, n + 1);
    return 0;
}

static int ini_device_key(struct ini_state *st, const struct mf_ini_item *item)
{
    struct sim_device *d = st->device;
    const char *v = item->value;
    if (mf_ini_name_is(item->key, "profile")) {
        if (!*v || strlen(v) >= sizeof d->profile_name) {
            say(st->message, sizeof st->message, "profile name empty or too long");
            return MF_EFORMAT;
        }
        memcpy(d->profile_name, v, strlen(v) + 1);
        /* The caller's profile first: it need not be a built-in one. */
        if (st->expected && mf_ini_name_is(v, st->expected->name))
            d->profile = st->expected;
        else
            d->profile = mf_devices_find(st->devices, v); /* a built-in one without devices */
        st->has_profile = true;
    } else if (mf_ini_name_is(item->key, "uid")) {
        size_t n = strlen(v); /* empty: a part without a UID (DEVICES.INI may describe one) */
        if (n % 2 != 0 || n / 2 > MF_PROFILE_UID_MAX) {
            say(st->message, sizeof st->message,
                "uid must be 2 to %u hex digits, in pairs (empty: the part has none)",
                2 * MF_PROFILE_UID_MAX);
            return MF_EFORMAT;
        }
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                say(st->message, sizeof st->message, "uid is not hexadecimal");
                return MF_EFORMAT;
            }
            st->uid[i] = (uint8_t)(hi << 4 | lo);
        }
        st->uid_length = n / 2;
        st->has_uid = true;
    } else if (mf_ini_name_is(item->key, "protection")) {
        if (parse_u64(v, &st->protection) != 0 || st->protection > 255) {
            say(st->message, sizeof st->message, "protection '%s' is not a level", v);
            return MF_EFORMAT;
        }
        st->has_protection = true;
    } else if (mf_ini_name_is(item->key, "state")) {
        if (mf_ini_name_is(v, "running"))
            d->running = true;
        else if (mf_ini_name_is(v, "halted"))
            d->running = false;
        else {
            say(st->message, sizeof st->message, "state '%s' is not halted or running", v);
            return MF_EFORMAT;
        }
    } else if (mf_ini_name_is(item->key, "start_mode")) {
        if (mf_ini_name_is(v, "none"))
            d->start_mode = 0;
        else if (mf_ini_name_is(v, "reset"))
            d->start_mode = MF_START_RESET;
        else if (mf_ini_name_is(v, "vector"))
            d->start_mode = MF_START_VECTOR;
        else {
            say(st->message, sizeof st->message, "start_mode '%s' is not none, reset or vector", v);
            return MF_EFORMAT;
        }
    } else if (mf_ini_name_is(item->key, "last_program")) {
        return ini_time(st, "last_program", v, d->last_program);
    } else if (mf_ini_name_is(item->key, "last_start")) {
        return ini_time(st, "last_start", v, d->last_start);
    } else {
        say(st->message, sizeof st->message, "unknown key '%s' in [device]", item->key);
        return MF_EFORMAT;
    }
    return 0;
}

static int ini_handler(void *context, const struct mf_ini_item *item)
{
    struct ini_state *st = context;
    if (mf_ini_name_is(item->section, "device"))
        return ini_device_key(st, item);
    if (mf_ini_name_is(item->section, "counters")) {
        for (size_t i = 0; i < COUNTER_COUNT; i++) {
            if (mf_ini_name_is(item->key, sim_counter_keys[i].name)) {
                if (parse_u64(item->value, counter_at(&st->device->counters, i)) != 0) {
                    say(st->message, sizeof st->message, "%s '%s' is not a number", item->key,
                        item->value);
                    return MF_EFORMAT;
                }
                return 0;
            }
        }
        say(st->message, sizeof st->message, "unknown key '%s' in [counters]", item->key);
        return MF_EFORMAT;
    }
    if (mf_ini_name_is(item->section, "faults")) {
        int err = mf_sim_fault_parse(item->key, item->value, &st->device->faults, st->message,
                                     sizeof st->message);
        return err ? MF_EFORMAT : 0;
    }
    if (item->section[0])
        say(st->message, sizeof st->message, "unknown section [%s]", item->section);
    else
        say(st->message, sizeof st->message, "key '%s' before the first section", item->key);
    return MF_EFORMAT;
}

/* Parses device.ini text into `device`. MF_EFORMAT with "<path>:<line>: <why>" in `error`;
 * MF_ECONFLICT (device->profile_name set, no text) when the device is not of the `expected` profile
 * (may be NULL). Profiles: as load_device. */
static int ini_parse_device(const char *text, size_t length, const char *path,
                            const struct mf_profile *expected, const struct mf_devices *devices,
                            struct sim_device *device, char *error, size_t error_size)
{
    memset(device, 0, sizeof *device);
    struct ini_state st = {.device = device, .expected = expected, .devices = devices};
    struct mf_ini_error ie;
    int err = mf_ini_parse(text, length, ini_handler, &st, &ie);
    if (err) {
        say(error, error_size, "%s:%u: %s", path, ie.line, st.message[0] ? st.message : ie.message);
        return MF_EFORMAT;
    }
    const char *missing = !st.has_profile      ? "profile"
                          : !st.has_uid        ? "uid"
                          : !st.has_protection ? "protection"
                                               : NULL;
    if (missing) {
        say(error, error_size, "%s: [device] has no %s", path, missing);
        return MF_EFORMAT;
    }
    if (expected && device->profile != expected)
        return MF_ECONFLICT;
    if (!device->profile) {
        say(error, error_size, "%s: unknown profile '%s'", path, device->profile_name);
        return MF_EFORMAT;
    }
    if (st.uid_length != device->profile->uid_length) {
        say(error, error_size, "%s: uid has %zu bytes, a %s has %u", path, st.uid_length,
            device->profile->name, device->profile->uid_length);
        return MF_EFORMAT;
    }
    memcpy(device->uid, st.uid, st.uid_length);
    if (st.protection > device->profile->protect_levels) {
        say(error, error_size, "%s: protection %llu, a %s has levels 0..%u", path,
            (unsigned long long)st.protection, device->profile->name,
            device->profile->protect_levels);
        return MF_EFORMAT;
    }
    device->protection = (unsigned)st.protection;
    return 0;
}

/* Reads `name` in the folder `dir_fd` (at most `size` - 1 bytes) into `buffer`; with `keep_fd`,
 * the file is opened for writing too and stays open there. */
static int read_small_file(int dir_fd, const char *name, char *buffer, size_t size, size_t *length,
                           int *keep_fd)
{
    int fd = openat(dir_fd, name, (keep_fd ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno_code(errno);
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + used, size - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno_code(errno);
            close(fd);
            return err;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used == size) {
            close(fd);
            return MF_EFBIG;
        }
    }
    if (keep_fd)
        *keep_fd = fd;
    else
        close(fd);
    *length = used;
    return 0;
}

/* Loads <slot>/device.ini. MF_ENOENT when it does not exist (no device in the slot); MF_ECONFLICT
 * (without a text) when it holds a device of another profile than `expected` (may be NULL). Its
 * profile is `expected`, one of `devices` (may be NULL) or a built-in one. With `ini_fd`,
 * device.ini is left open for writing there on success and `ini_length` gets its size. With
 * `known` (SIM_INI_TEXT_MAX bytes; may be NULL): a text equal to its first `*known_length` bytes
 * is not parsed, `device` holding it already; a text parsed without error becomes the new known
 * one, and `*known_length` is 0 after any error. */
static int load_device(int dir_fd, const char *slot_dir, const struct mf_profile *expected,
                       const struct mf_devices *devices, struct sim_device *device, int *ini_fd,
                       size_t *ini_length, char *known, size_t *known_length, char *error,
                       size_t error_size)
{
    char text[MF_SIM_INI_MAX];
    size_t length = 0;
    int fd = -1;
    int err =
        read_small_file(dir_fd, "device.ini", text, sizeof text, &length, ini_fd ? &fd : NULL);
    if (err == MF_EFBIG) {
        say(error, error_size, "%s/device.ini: larger than %u bytes", slot_dir, MF_SIM_INI_MAX);
        return MF_EFORMAT;
    }
    if (err) {
        say(error, error_size, "%s/device.ini: %s", slot_dir,
            err == MF_ENOENT ? "missing" : mf_strerror(err));
        return err;
    }
    if (known && *known_length == length && length && memcmp(known, text, length) == 0) {
        if (fd >= 0) {
            *ini_fd = fd;
            *ini_length = length;
        }
        return 0;
    }
    char path[320];
    say(path, sizeof path, "%s/device.ini", slot_dir);
    err = ini_parse_device(text, length, path, expected, devices, device, error, error_size);
    if (known) {
        *known_length = !err && length <= SIM_INI_TEXT_MAX ? length : 0;
        if (*known_length)
            memcpy(known, text, length);
    }
    if (fd >= 0 && err) {
        close(fd);
    } else if (fd >= 0) {
        *ini_fd = fd;
        *ini_length = length;
    }
    return err;
}

/* Appends to a bounded text; `*used` stops growing at the end (the caller checks). */
static void put(char *text, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *text, size_t size, size_t *used, const char *fmt, ...)
{
    if (*used >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + *used, size - *used, fmt, ap);
    va_end(ap);
    *used = n < 0 ? size : *used + (size_t)n;
}

static int write_all(int fd, const void *data, size_t size)
{
    const char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno_code(errno) : MF_EIO;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Writes device.ini as a whole: in place through `ini_fd` when it is open (during a connection:
 * one write, no new inode; a rename per cycle costs milliseconds on ext4), cut to the new text only
 * when `*ini_length` (its length as last read or written) is longer, else as a new file renamed
 * over the old one (`ini_length` may then be NULL). Not fsync'ed: a simulated device needs to
 * survive its programmer's crash, not the host's power loss. With `known` (may be NULL), the text
 * written goes there too (load_device), `*known_length` 0 when writing failed. */
static int save_device(int dir_fd, int ini_fd, size_t *ini_length, const char *slot_dir,
                       const struct sim_device *d, char *known, size_t *known_length, char *error,
                       size_t error_size)
{
    if (known)
        *known_length = 0;
    char text[SIM_INI_TEXT_MAX];
    size_t used = 0;
    const struct mf_profile *p = d->profile;
    put(text, sizeof text, &used,
        "; mintflash simulated device (docs/targets.md). Rewritten by every connection:\n"
        "; edit it between cycles only.\n"
        "[device]\nprofile = %s\nuid = ",
        p->name);
    for (uint32_t i = 0; i < p->uid_length; i++)
        put(text, sizeof text, &used, "%02X", d->uid[i]);
    put(text, sizeof text, &used, "\nprotection = %u\nstate = %s\nstart_mode = %s\n", d->protection,
        d->running ? "running" : "halted",
        d->start_mode == MF_START_RESET    ? "reset"
        : d->start_mode == MF_START_VECTOR ? "vector"
                                           : "none");
    put(text, sizeof text, &used, "last_program = %s\nlast_start = %s\n\n[counters]\n",
        d->last_program, d->last_start);
    for (size_t i = 0; i < COUNTER_COUNT; i++)
        put(text, sizeof text, &used, "%s = %llu\n", sim_counter_keys[i].name,
            (unsigned long long)counter_value(&d->counters, i));
    put(text, sizeof text, &used,
        "\n[faults]\n; knob = [ARG] once|always, or off. Knobs: connect, erase, program BYTES,\n"
        "; flip ADDRESS, timeout PHASE (connect uid unlock erase program read crc protect "
        "start)\n");
    for (int k = 0; k < KNOB_COUNT; k++) {
        char value[64];
        mf_sim_fault_format(sim_knob_names[k], knob_of_const(&d->faults, (enum sim_knob)k), value,
                            sizeof value);
        put(text, sizeof text, &used, "%s = %s\n", sim_knob_names[k], value);
    }
    if (used >= sizeof text) {
        say(error, error_size, "%s/device.ini: text too long", slot_dir);
        return MF_ENOMEM;
    }
    if (ini_fd >= 0) {
        int err = 0;
        for (size_t done = 0; done < used && !err;) {
            ssize_t n = pwrite(ini_fd, text + done, used - done, (off_t)done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                err = n < 0 ? errno_code(errno) : MF_EIO;
            else
                done += (size_t)n;
        }
        if (!err && *ini_length > used && ftruncate(ini_fd, (off_t)used) != 0)
            err = errno_code(errno);
        /* After a failure the length is unknown: the next rewrite cuts. */
        *ini_length = err ? SIZE_MAX : used;
        if (err)
            say(error, error_size, "%s/device.ini: writing failed (%s)", slot_dir,
                mf_strerror(err));
        else if (known) {
            memcpy(known, text, used);
            *known_length = used;
        }
        return err;
    }
    int fd = openat(dir_fd, "device.ini.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno_code(errno);
        say(error, error_size, "%s/device.ini.tmp: %m", slot_dir);
        return err;
    }
    int err = write_all(fd, text, used);
    if (close(fd) != 0 && !err)
        err = MF_EIO;
    if (!err && renameat(dir_fd, "device.ini.tmp", dir_fd, "device.ini") != 0)
        err = errno_code(errno);
    if (err) {
        say(error, error_size, "%s/device.ini: writing failed (%s)", slot_dir, mf_strerror(err));
        unlinkat(dir_fd, "device.ini.tmp", 0);
    }
    return err;
}

/* ---- slot folders ---- */

static char *slot_path(const char *sim_dir, unsigned slot)
{
    size_t size = strlen(sim_dir) + 16;
    char *path = malloc(size);
    if (path)
        snprintf(path, size, "%s/slot%u", sim_dir, slot);
    return path;
}

/* Opens (creating it and the sim folder when `create`) the slot folder and locks it for this
 * programmer. */
static int slot_lock(const char *sim_dir, const char *slot_dir, unsigned slot, bool create,
                     int *dir_fd, char *error, size_t error_size)
{
    /* The folders exist at every connect but a slot's first: no mkdir then. When the open fails,
     * creating both and opening again gives the errors (and texts) of a mkdir before the open. */
    int fd = open(slot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && create) {
        if (mkdir(sim_dir, 0755) != 0 && errno != EEXIST) {
            int err = errno_code(errno);
            say(error, error_size, "%s: cannot create the folder (%m)", sim_dir);
            return err;
        }
        if (mkdir(slot_dir, 0755) != 0 && errno != EEXIST) {
            int err = errno_code(errno);
            say(error, error_size, "%s: cannot create the folder (%m)", slot_dir);
            return err;
        }
        fd = open(slot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) {
        int err = errno_code(errno);
        if (err == MF_ENOENT && !create)
            say(error, error_size, "slot %u holds no device (no folder %s)", slot, slot_dir);
        else
            say(error, error_size, "%s: %m", slot_dir);
        return err;
    }
    /* flock is per open file description: two threads of one process also exclude each other. */
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        int busy = errno == EWOULDBLOCK;
        int err = busy ? MF_EBUSY : errno_code(errno);
        if (busy)
            say(error, error_size, "slot %u is in use by another programmer (%s is locked)", slot,
                slot_dir);
        else
            say(error, error_size, "%s: cannot lock (%m)", slot_dir);
        close(fd);
        return err;
    }
    *dir_fd = fd;
    return 0;
}

/* Creates flash.bin (all erased) and device.ini of a new device; device.ini last, so that a slot
 * with a device.ini always has a complete flash.bin. */
static int create_device(int dir_fd, const char *slot_dir, const struct mf_profile *profile,
                         const uint8_t *uid, struct sim_device *device, char *error,
                         size_t error_size)
{
    int fd = openat(dir_fd, "flash.bin.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno_code(errno);
        say(error, error_size, "%s/flash.bin.tmp: %m", slot_dir);
        return err;
    }
    uint8_t fill[SIM_FILL_CHUNK];
    int err = 0;
    for (unsigned r = 0; r < profile->flash_count && !err; r++) {
        memset(fill, profile->flash[r].erased_value, sizeof fill);
        for (uint64_t left = profile->flash[r].size; left && !err;) {
            size_t n = left < sizeof fill ? (size_t)left : sizeof fill;
            err = write_all(fd, fill, n);
            left -= n;
        }
    }
    if (close(fd) != 0 && !err)
        err = MF_EIO;
    if (!err && renameat(dir_fd, "flash.bin.tmp", dir_fd, "flash.bin") != 0)
        err = errno_code(errno);
    if (err) {
        say(error, error_size, "%s/flash.bin: creating failed (%s)", slot_dir, mf_strerror(err));
        unlinkat(dir_fd, "flash.bin.tmp", 0);
        return err;
    }
    memset(device, 0, sizeof *device);
    device->profile = profile;
    say(device->profile_name, sizeof device->profile_name, "%s", profile->name);
    memcpy(device->uid, uid, profile->uid_length);
    return save_device(dir_fd, -1, NULL, slot_dir, device, NULL, NULL, error, error_size);
}

/* Opens flash.bin and checks its size against the profile; `st` gets its status. */
static int open_flash(int dir_fd, const char *slot_dir, const struct mf_profile *profile, int flags,
                      int *fd_out, struct stat *st_out, char *error, size_t error_size)
{
    int fd = openat(dir_fd, "flash.bin", flags | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int err = errno_code(errno);
        if (errno == ENOENT)
            say(error, error_size, "%s/flash.bin: missing (device.ini exists)", slot_dir);
        else
            say(error, error_size, "%s/flash.bin: %m", slot_dir);
        return err == MF_ENOENT ? MF_ECORRUPT : err;
    }
    struct stat st;
    uint64_t want = flash_total(profile);
    if (fstat(fd, &st) != 0) {
        int err = errno_code(errno);
        say(error, error_size, "%s/flash.bin: %m", slot_dir);
        close(fd);
        return err;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != want) {
        say(error, error_size, "%s/flash.bin is %lld bytes, a %s has %llu", slot_dir,
            (long long)st.st_size, profile->name, (unsigned long long)want);
        close(fd);
        return MF_ECORRUPT;
    }
    *fd_out = fd;
    if (st_out)
        *st_out = st;
    return 0;
}

static int new_uid(const struct mf_sim_options *options, unsigned slot,
                   const struct mf_profile *profile, uint8_t *uid, char *error, size_t error_size)
{
    mf_sim_uid_fn source = options && options->uid_source ? options->uid_source : mf_sim_uid_random;
    int err = source(options ? options->uid_context : NULL, slot, uid, profile->uid_length);
    if (err)
        say(error, error_size, "slot %u: no UID for the new device (%s)", slot, mf_strerror(err));
    return err;
}

int mf_sim_uid_random(void *context, unsigned slot, uint8_t *uid, uint32_t length)
{
    (void)context;
    (void)slot;
    size_t done = 0;
    while (done < length) {
        ssize_t n = getrandom(uid + done, length - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    return 0;
}

/* ---- the target operations ---- */

static int not_connected(struct mf_target *t, const char *op)
{
    TSAY(t, "%s: not connected", op);
    return MF_EBADF;
}

static int cancelled(struct mf_target *t, const char *op)
{
    TSAY(t, "%s: cancelled", op);
    return MF_ECANCELED;
}

static bool cancel_requested(struct mf_target *t)
{
    return atomic_load_explicit(&t->cancel, memory_order_relaxed) != 0;
}

/* The knob in effect (the options' when they set it, else device.ini's), or NULL when off. */
static struct mf_sim_fault *fault_armed(struct sim *s, enum sim_knob k)
{
    struct mf_sim_fault *f = knob_of(s->option_knob[k] ? &s->options.faults : &s->device.faults, k);
    return f->mode == MF_SIM_FAULT_OFF ? NULL : f;
}

/* Records that the knob fired: a "once" knob goes off, in device.ini at once when it came from
 * there. Returns 0 or the error of rewriting device.ini. */
static int fault_fired(struct sim *s, struct mf_target *t, enum sim_knob k)
{
    struct mf_sim_fault *f = fault_armed(s, k);
    if (!f || f->mode != MF_SIM_FAULT_ONCE)
        return 0;
    f->mode = MF_SIM_FAULT_OFF;
    f->arg = 0;
    if (s->option_knob[k])
        return 0;
    return save_device(s->dir_fd, s->ini_fd, &s->ini_length, s->slot_dir, &s->device, s->known_text,
                       &s->known_length, t->error, sizeof t->error);
}

/* Sleeps `us` microseconds times the scale, looking at target->cancel every few milliseconds. */
static int sim_wait(struct sim *s, struct mf_target *t, double us, const char *op)
{
    if (!(s->options.time_scale > 0.0))
        return 0;
    double ns = us * s->options.time_scale * 1000.0;
    if (!(ns >= 1.0))
        return 0;
    if (ns > SIM_DELAY_MAX_NS)
        ns = SIM_DELAY_MAX_NS;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t total = (uint64_t)ns;
    deadline.tv_sec += (time_t)(total / 1000000000u);
    deadline.tv_nsec += (long)(total % 1000000000u);
    if (deadline.tv_nsec >= 1000000000l) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000l;
    }
    /* Bounded by the monotonic deadline. */
    for (;;) {
        if (cancel_requested(t))
            return cancelled(t, op);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec ||
            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return 0;
        struct timespec step = now;
        step.tv_nsec += SIM_SLEEP_STEP_NS;
        if (step.tv_nsec >= 1000000000l) {
            step.tv_sec++;
            step.tv_nsec -= 1000000000l;
        }
        if (step.tv_sec > deadline.tv_sec ||
            (step.tv_sec == deadline.tv_sec && step.tv_nsec > deadline.tv_nsec))
            step = deadline;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &step, NULL);
    }
}

/* Microseconds the debug link needs for `bytes`. */
static double link_us(const struct mf_profile *p, uint64_t bytes)
{
    if (p->timing.link_kib_per_s == 0)
        return 0.0;
    return (double)bytes * 1e6 / ((double)p->timing.link_kib_per_s * 1024.0);
}

/* Common entry of every operation but connect/disconnect: connected, not cancelled, no timeout
 * fault for this phase. */
static int sim_enter(struct sim *s, struct mf_target *t, const char *op, enum mf_sim_phase phase)
{
    t->error[0] = '\0';
    if (!s || !s->connected)
        return not_connected(t, op);
    if (cancel_requested(t))
        return cancelled(t, op);
    struct mf_sim_fault *f = fault_armed(s, KNOB_TIMEOUT);
    if (f && f->arg == (uint64_t)phase) {
        int err = fault_fired(s, t, KNOB_TIMEOUT);
        if (err)
            return err;
        TSAY(t, "%s: timed out (fault injected)", op);
        return MF_ETIMEOUT;
    }
    return 0;
}

/* Finds [address, address + length) (length > 0) inside one flash region. */
static int flash_span(struct sim *s, struct mf_target *t, const char *op, uint64_t address,
                      uint64_t length, unsigned *region_index, uint8_t **bytes)
{
    const struct mf_profile *p = s->device.profile;
    for (unsigned i = 0; i < p->flash_count; i++) {
        const struct mf_flash_region *r = &p->flash[i];
        if (address < r->start || address - r->start >= r->size)
            continue;
        if (length > r->size - (address - r->start)) {
            TSAY(t, "%s at 0x%08llx: %llu bytes run past the end of flash at 0x%08llx", op,
                 (unsigned long long)address, (unsigned long long)length,
                 (unsigned long long)(r->start + r->size));
            return MF_EINVAL;
        }
        *region_index = i;
        *bytes = s->flash + s->region_offset[i] + (address - r->start);
        return 0;
    }
    TSAY(t, "%s at 0x%08llx: outside the flash of the %s", op, (unsigned long long)address,
         p->name);
    return MF_EINVAL;
}

static int protected_access(struct sim *s, struct mf_target *t, const char *op, uint64_t address)
{
    TSAY(t, "%s at 0x%08llx: readout protection level %u is set (unlock first)", op,
         (unsigned long long)address, s->device.protection);
    return MF_EACCES;
}

/* Ends a connection: closes device.ini and unlocks the slot. The mapping of flash.bin stays. */
/* Ends a connection (or a connect that failed): device.ini closed, the slot folder unlocked but
 * kept open for the next connect (slot_relock). */
static void sim_release(struct sim *s)
{
    if (s->ini_fd >= 0)
        close(s->ini_fd);
    if (s->dir_fd >= 0)
        flock(s->dir_fd, LOCK_UN);
    s->ini_fd = -1;
    s->connected = false;
    s->clean_tracked = false;
}

/* Locks the slot folder for a connection: the one kept open since the last while the path still
 * leads to it (one stat instead of an open and a close per cycle), else opened (and made) anew. */
static int slot_relock(struct sim *s, struct mf_target *t)
{
    struct stat st;
    if (s->dir_fd >= 0) {
        if (stat(s->slot_dir, &st) == 0 && st.st_dev == s->dir_dev && st.st_ino == s->dir_ino) {
            while (flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0) {
                if (errno == EINTR)
                    continue;
                int busy = errno == EWOULDBLOCK;
                int err = busy ? MF_EBUSY : errno_code(errno);
                if (busy)
                    TSAY(t, "slot %u is in use by another programmer (%s is locked)", s->slot,
                         s->slot_dir);
                else
                    TSAY(t, "%s: cannot lock (%m)", s->slot_dir);
                return err;
            }
            return 0;
        }
        close(s->dir_fd);
        s->dir_fd = -1;
        s->known_length = 0; /* another folder: its device.ini is another device's */
    }
    int err =
        slot_lock(s->sim_dir, s->slot_dir, s->slot, true, &s->dir_fd, t->error, sizeof t->error);
    if (!err && fstat(s->dir_fd, &st) != 0) {
        err = errno_code(errno);
        TSAY(t, "%s: %m", s->slot_dir);
        close(s->dir_fd);
        s->dir_fd = -1;
    }
    if (!err) {
        s->dir_dev = st.st_dev;
        s->dir_ino = st.st_ino;
    }
    return err;
}

static void sim_unmap(struct sim *s)
{
    if (s->flash)
        munmap(s->flash, s->flash_size);
    if (s->flash_fd >= 0)
        close(s->flash_fd);
    s->flash = NULL;
    s->flash_fd = -1;
}

/* Maps the slot's flash.bin, reusing the mapping of the last connection when the file is still
 * the same (another process may have replaced the device meanwhile). */
static int map_flash(struct sim *s, struct mf_target *t, const struct mf_profile *profile)
{
    struct stat st;
    size_t size = (size_t)flash_total(profile);
    if (s->flash && fstatat(s->dir_fd, "flash.bin", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode) && st.st_dev == s->flash_dev && st.st_ino == s->flash_ino &&
        (uint64_t)st.st_size == size && s->flash_size == size)
        return 0;
    sim_unmap(s);
    int err = open_flash(s->dir_fd, s->slot_dir, profile, O_RDWR, &s->flash_fd, &st, t->error,
                         sizeof t->error);
    if (err)
        return err;
    /* Populated at once: one call instead of a read fault per page. */
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, s->flash_fd, 0);
    if (map == MAP_FAILED) {
        err = errno_code(errno);
        TSAY(t, "%s/flash.bin: cannot map (%m)", s->slot_dir);
        close(s->flash_fd);
        s->flash_fd = -1;
        return err;
    }
    s->flash = map;
    s->flash_size = size;
    s->flash_dev = st.st_dev;
    s->flash_ino = st.st_ino;
    return 0;
}

/* Forgets what was known erased (a new connection: flash.bin may have been edited or replaced
 * since) and sizes the table for `profile`; without memory, or for a profile of too many sectors,
 * there is no tracking and every program is checked. */
static void clean_reset(struct sim *s, const struct mf_profile *profile)
{
    s->clean_tracked = false;
    uint32_t total = 0;
    for (unsigned i = 0; i < profile->flash_count; i++) {
        uint32_t count = mf_region_sector_count(&profile->flash[i]);
        if (count > SIM_CLEAN_SECTORS - total)
            return;
        s->region_first_sector[i] = total;
        total += count;
    }
    if (total == 0)
        return;
    if (total > s->clean_capacity) {
        free(s->clean_from);
        s->clean_capacity = 0;
        s->clean_from = malloc((size_t)total * sizeof *s->clean_from);
        if (!s->clean_from)
            return;
        s->clean_capacity = total;
    }
    /* Every byte 0xFF: SIM_CLEAN_NONE. */
    memset(s->clean_from, 0xFF, (size_t)total * sizeof *s->clean_from);
    s->clean_tracked = true;
}

/* The sector of region `ri` that holds `address` (its start and size), and its clean_from, or
 * NULL without tracking. */
static uint32_t *sector_at(struct sim *s, unsigned ri, uint64_t address, uint64_t *start,
                           uint32_t *size)
{
    uint32_t index = mf_region_sector_index(&s->device.profile->flash[ri], address, start, size);
    return s->clean_tracked ? &s->clean_from[s->region_first_sector[ri] + index] : NULL;
}

static int sim_disconnect(struct mf_target *t)
{
    struct sim *s = t->context;
    if (!s || !s->connected)
        return 0;
    struct sim_device *d = &s->device;
    if (s->programmed_now) {
        d->counters.programs++;
        utc_now(d->last_program, sizeof d->last_program);
    }
    char error[MF_TARGET_ERROR_MAX];
    int err = save_device(s->dir_fd, s->ini_fd, &s->ini_length, s->slot_dir, d, s->known_text,
                          &s->known_length, error, sizeof error);
    sim_release(s);
    if (err)
        memcpy(t->error, error, sizeof error);
    return err;
}

static int sim_connect(struct mf_target *t)
{
    struct sim *s = t->context;
    if (!s)
        return MF_EBADF;
    sim_disconnect(t);
    t->error[0] = '\0';
    const struct mf_profile *profile = t->profile;
    int err = profile_usable(profile, t->error, sizeof t->error);
    if (err)
        return err;
    if (cancel_requested(t))
        return cancelled(t, "connect");
    err = slot_relock(s, t);
    if (err)
        return err;

    struct sim_device *d = &s->device;
    /* The device as the last connection left it needs no parse (if of the job's profile). */
    if (d->profile != profile)
        s->known_length = 0;
    err = load_device(s->dir_fd, s->slot_dir, profile, NULL, d, &s->ini_fd, &s->ini_length,
                      s->known_text, &s->known_length, t->error, sizeof t->error);
    if (err == MF_ENOENT) {
        uint8_t uid[MF_PROFILE_UID_MAX];
        err = new_uid(&s->options, s->slot, profile, uid, t->error, sizeof t->error);
        if (!err)
            err = create_device(s->dir_fd, s->slot_dir, profile, uid, d, t->error, sizeof t->error);
        if (!err)
            err = load_device(s->dir_fd, s->slot_dir, profile, NULL, d, &s->ini_fd, &s->ini_length,
                              s->known_text, &s->known_length, t->error, sizeof t->error);
    }
    if (err == MF_ECONFLICT)
        TSAY(t, "slot %u holds a %s, the job needs %s", s->slot, d->profile_name, profile->name);
    if (!err)
        err = map_flash(s, t, profile);
    if (err) {
        sim_release(s);
        return err;
    }
    uint64_t offset = 0;
    for (unsigned i = 0; i < profile->flash_count; i++) {
        s->region_offset[i] = offset;
        offset += profile->flash[i].size;
    }
    clean_reset(s, profile);
    s->connected = true;
    s->programmed_now = 0;

    if (fault_armed(s, KNOB_CONNECT)) {
        err = fault_fired(s, t, KNOB_CONNECT);
        if (!err) {
            TSAY(t, "slot %u: the device does not answer (fault injected)", s->slot);
            err = MF_EIO;
        }
    } else {
        struct mf_sim_fault *f = fault_armed(s, KNOB_TIMEOUT);
        if (f && f->arg == MF_SIM_PHASE_CONNECT) {
            err = fault_fired(s, t, KNOB_TIMEOUT);
            if (!err) {
                TSAY(t, "connect: timed out (fault injected)");
                err = MF_ETIMEOUT;
            }
        }
    }
    if (!err)
        err = sim_wait(s, t, (double)profile->timing.connect_ms * 1000.0, "connect");
    if (err) {
        sim_release(s);
        return err;
    }
    d->counters.connects++;
    d->running = false;
    t->error[0] = '\0'; /* a new device was made on the way: not an error */
    return 0;
}

static int sim_read_uid(struct mf_target *t, uint8_t *uid, uint32_t length)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "read UID", MF_SIM_PHASE_UID);
    if (err)
        return err;
    const struct mf_profile *p = s->device.profile;
    if (length > p->uid_length) {
        TSAY(t, "read UID: %u bytes asked, a %s has %u", length, p->name, p->uid_length);
        return MF_EINVAL;
    }
    memcpy(uid, s->device.uid, length);
    return 0;
}

/* Erased value everywhere, with the erase time of each sector (so a cancel stops between sectors),
 * each sector then known erased for the rest of the connection. `sectors` counts the erased
 * sectors. Eager: other processes see flash.bin change at once (docs/targets.md). */
static int erase_span(struct sim *s, struct mf_target *t, const char *op, unsigned region_index,
                      uint64_t address, uint64_t length, uint64_t *sectors)
{
    const struct mf_flash_region *r = &s->device.profile->flash[region_index];
    uint8_t *base = s->flash + s->region_offset[region_index];
    uint64_t end = address + length;
    uint32_t erase_us = s->device.profile->timing.erase_us_per_kib;
    uint32_t sector_count = mf_region_sector_count(r);
    /* Bounded by the region's sector count. */
    for (uint32_t i = 0; i < sector_count && address < end; i++) {
        uint64_t start;
        uint32_t size;
        uint32_t *clean = sector_at(s, region_index, address, &start, &size);
        int err = sim_wait(s, t, (double)erase_us * (double)size / 1024.0, op);
        if (err)
            return err;
        memset(base + (start - r->start), r->erased_value, size);
        if (clean)
            *clean = 0;
        ++*sectors;
        address = start + size;
    }
    return 0;
}

static int sim_erase(struct mf_target *t, uint64_t address, uint64_t length)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "erase", MF_SIM_PHASE_ERASE);
    if (err || length == 0)
        return err;
    unsigned ri;
    uint8_t *bytes;
    err = flash_span(s, t, "erase", address, length, &ri, &bytes);
    if (err)
        return err;
    const struct mf_flash_region *r = &s->device.profile->flash[ri];
    uint64_t start, end = address + length;
    uint32_t size;
    mf_region_sector(r, address, &start, &size);
    if (start != address) {
        TSAY(t, "erase at 0x%08llx: not the start of a sector (that sector: 0x%08llx, %u bytes)",
             (unsigned long long)address, (unsigned long long)start, size);
        return MF_EINVAL;
    }
    if (end < r->start + r->size) {
        mf_region_sector(r, end, &start, &size);
        if (start != end) {
            TSAY(t,
                 "erase to 0x%08llx: not the end of a sector (the sector at 0x%08llx ends at "
                 "0x%08llx)",
                 (unsigned long long)end, (unsigned long long)start,
                 (unsigned long long)(start + size));
            return MF_EINVAL;
        }
    }
    if (s->device.protection)
        return protected_access(s, t, "erase", address);
    if (fault_armed(s, KNOB_ERASE)) {
        err = fault_fired(s, t, KNOB_ERASE);
        if (err)
            return err;
        TSAY(t, "erase at 0x%08llx: flash controller error (fault injected)",
             (unsigned long long)address);
        return MF_EIO;
    }
    return erase_span(s, t, "erase", ri, address, length, &s->device.counters.sector_erases);
}

/* Every region erased, as a mass erase does (unlock and erase_chip). */
static int erase_all(struct sim *s, struct mf_target *t, const char *op)
{
    uint64_t sectors = 0;
    for (unsigned i = 0; i < s->device.profile->flash_count; i++) {
        const struct mf_flash_region *r = &s->device.profile->flash[i];
        int err = erase_span(s, t, op, i, r->start, r->size, &sectors);
        if (err)
            return err;
    }
    return 0;
}

static int sim_erase_chip(struct mf_target *t)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "erase chip", MF_SIM_PHASE_ERASE);
    if (err)
        return err;
    if (s->device.protection)
        return protected_access(s, t, "erase chip", s->device.profile->flash[0].start);
    if (fault_armed(s, KNOB_ERASE)) {
        err = fault_fired(s, t, KNOB_ERASE);
        if (err)
            return err;
        TSAY(t, "erase chip: flash controller error (fault injected)");
        return MF_EIO;
    }
    err = erase_all(s, t, "erase chip");
    if (!err)
        s->device.counters.chip_erases++;
    return err;
}

static int sim_unlock(struct mf_target *t)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "unlock", MF_SIM_PHASE_UNLOCK);
    if (err || s->device.protection == 0)
        return err;
    err = erase_all(s, t, "unlock");
    if (err)
        return err;
    s->device.protection = 0;
    s->device.counters.unlocks++;
    return save_device(s->dir_fd, s->ini_fd, &s->ini_length, s->slot_dir, &s->device, s->known_text,
                       &s->known_length, t->error, sizeof t->error);
}

/* The NOR check, byte by byte from `i`: offset of the first byte of `data` that `flash` cannot
 * take, or `length`. Programming only moves bits away from their erased state (clears them when
 * erased is 0xFF): a bit that is already programmed (differs from `erased`) must keep its value. */
static size_t first_not_erased_from(const uint8_t *flash, const uint8_t *data, size_t i,
                                    size_t length, uint8_t erased)
{
    for (; i < length; i++) {
        if ((flash[i] ^ erased) & (flash[i] ^ data[i]))
            return i;
    }
    return length;
}

/* Blocks of 256 bytes are checked without a branch inside (the compiler vectorises the loop,
 * inlined into a caller built for wider vectors where the CPU has them), then the failing block
 * byte by byte: a hot loop of a cycle. */
#define NOR_BLOCK 256u

static inline __attribute__((always_inline)) size_t
first_not_erased_blocks(const uint8_t *flash, const uint8_t *data, size_t length, uint8_t erased)
{
    const uint64_t erased8 = erased * 0x0101010101010101ull;
    size_t i = 0;
    for (; i + NOR_BLOCK <= length; i += NOR_BLOCK) {
        uint64_t bad = 0;
        for (size_t k = 0; k < NOR_BLOCK; k += 8) {
            uint64_t old, new;
            memcpy(&old, flash + i + k, 8);
            memcpy(&new, data + i + k, 8);
            bad |= (old ^ erased8) & (old ^ new);
        }
        if (bad)
            break;
    }
    return first_not_erased_from(flash, data, i, length, erased);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static size_t
first_not_erased_avx2(const uint8_t *flash, const uint8_t *data, size_t length, uint8_t erased)
{
    return first_not_erased_blocks(flash, data, length, erased);
}
#endif

static size_t first_not_erased(const uint8_t *flash, const uint8_t *data, size_t length,
                               uint8_t erased)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2"))
        return first_not_erased_avx2(flash, data, length, erased);
#endif
    return first_not_erased_blocks(flash, data, length, erased);
}

/* Programs `length` bytes at `address` of region `ri` (at `flash` in the mapping) after the NOR
 * check; the flash is unchanged when the check fails. Bytes at or past their sector's clean_from
 * are known erased and not checked. Each sector's clean_from moves past the request's bytes in it
 * as the check goes, so a refused request may leave some moved: too high only costs a check. */
static int program_bytes(struct sim *s, struct mf_target *t, unsigned ri, uint64_t address,
                         uint8_t *flash, const uint8_t *data, size_t length)
{
    uint8_t erased = s->device.profile->flash[ri].erased_value;
    /* Bounded: each step takes the rest of the request, with tracking up to a sector's end. */
    for (size_t done = 0; done < length;) {
        uint64_t start;
        uint32_t size;
        uint32_t *clean = sector_at(s, ri, address + done, &start, &size);
        uint64_t from = address + done - start; /* offset in the sector */
        size_t n = length - done;
        if (clean && size - from < n)
            n = (size_t)(size - from);
        if (!clean || from < *clean) {
            size_t bad = done + first_not_erased(flash + done, data + done, n, erased);
            if (bad < done + n) {
                TSAY(t, "program at 0x%08llx: byte not erased (0x%02X -> 0x%02X)",
                     (unsigned long long)(address + bad), flash[bad], data[bad]);
                return MF_EVERIFY;
            }
        }
        if (clean && *clean != SIM_CLEAN_NONE && from + n > *clean)
            *clean = (uint32_t)(from + n);
        done += n;
    }
    memcpy(flash, data, length);
    return 0;
}

static int sim_program(struct mf_target *t, uint64_t address, const void *data, uint32_t length)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "program", MF_SIM_PHASE_PROGRAM);
    if (err || length == 0)
        return err;
    unsigned ri;
    uint8_t *bytes;
    err = flash_span(s, t, "program", address, length, &ri, &bytes);
    if (err)
        return err;
    const struct mf_flash_region *r = &s->device.profile->flash[ri];
    if ((address - r->start) % r->write_size != 0 || length % r->write_size != 0) {
        TSAY(t, "program at 0x%08llx: %u bytes not aligned to the write size of %u",
             (unsigned long long)address, length, r->write_size);
        return MF_EINVAL;
    }
    if (s->device.protection)
        return protected_access(s, t, "program", address);
    const struct mf_profile_timing *timing = &s->device.profile->timing;
    err = sim_wait(s, t,
                   (double)timing->program_us_per_kib * length / 1024.0 +
                       link_us(s->device.profile, length),
                   "program");
    if (err)
        return err;

    struct mf_sim_fault *f = fault_armed(s, KNOB_PROGRAM);
    if (f && s->programmed_now + length > f->arg) {
        uint64_t room = f->arg > s->programmed_now ? f->arg - s->programmed_now : 0;
        size_t n = (size_t)(room - room % r->write_size);
        err = program_bytes(s, t, ri, address, bytes, data, n);
        if (err)
            return err;
        s->programmed_now += n;
        s->device.counters.programmed_bytes += n;
        err = fault_fired(s, t, KNOB_PROGRAM);
        if (err)
            return err;
        TSAY(t, "program at 0x%08llx: I/O error after %llu bytes (fault injected)",
             (unsigned long long)(address + n), (unsigned long long)s->programmed_now);
        return MF_EIO;
    }
    err = program_bytes(s, t, ri, address, bytes, data, length);
    if (err)
        return err;
    s->programmed_now += length;
    s->device.counters.programmed_bytes += length;

    f = fault_armed(s, KNOB_FLIP);
    if (f && f->arg >= address && f->arg - address < length) {
        bytes[f->arg - address] ^= 0x01u;
        err = fault_fired(s, t, KNOB_FLIP);
    }
    return err;
}

/* The bytes of [address, address + length) for reading: the UID range or one flash region. */
static int readable_span(struct sim *s, struct mf_target *t, const char *op, uint64_t address,
                         uint64_t length, const uint8_t **bytes)
{
    const struct mf_profile *p = s->device.profile;
    if (address >= p->uid_address && address - p->uid_address < p->uid_length) {
        if (length > p->uid_length - (address - p->uid_address)) {
            TSAY(t, "%s at 0x%08llx: %llu bytes run past the UID", op, (unsigned long long)address,
                 (unsigned long long)length);
            return MF_EINVAL;
        }
        *bytes = s->device.uid + (address - p->uid_address);
        return 0;
    }
    unsigned ri;
    uint8_t *flash;
    int err = flash_span(s, t, op, address, length, &ri, &flash);
    if (err)
        return err;
    if (s->device.protection)
        return protected_access(s, t, op, address);
    *bytes = flash;
    return 0;
}

static int sim_read(struct mf_target *t, uint64_t address, void *buffer, uint32_t length)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "read", MF_SIM_PHASE_READ);
    if (err || length == 0)
        return err;
    const uint8_t *bytes;
    err = readable_span(s, t, "read", address, length, &bytes);
    if (!err)
        err = sim_wait(s, t, link_us(s->device.profile, length), "read");
    if (!err)
        memcpy(buffer, bytes, length);
    return err;
}

static int sim_crc(struct mf_target *t, uint64_t address, uint64_t length, uint32_t *crc)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "crc", MF_SIM_PHASE_CRC);
    if (err)
        return err;
    if (length == 0) {
        *crc = MF_TARGET_CRC_INIT;
        return 0;
    }
    const uint8_t *bytes;
    err = readable_span(s, t, "crc", address, length, &bytes);
    /* mf_target_crc's result, at memory speed: the CRC is most of a fast device's cycle. */
    if (!err)
        *crc = mf_crc32_msb_update(MF_TARGET_CRC_INIT, bytes, (size_t)length);
    return err;
}

static int sim_protect(struct mf_target *t, unsigned level)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "protect", MF_SIM_PHASE_PROTECT);
    if (err)
        return err;
    const struct mf_profile *p = s->device.profile;
    if (p->protect_levels == 0) {
        TSAY(t, "protect: a %s has no readout protection", p->name);
        return MF_ENOTSUP;
    }
    if (level < 1 || level > p->protect_levels) {
        TSAY(t, "protect: level %u, a %s has levels 1..%u", level, p->name, p->protect_levels);
        return MF_EINVAL;
    }
    s->device.protection = level;
    s->device.counters.protects++;
    return save_device(s->dir_fd, s->ini_fd, &s->ini_length, s->slot_dir, &s->device, s->known_text,
                       &s->known_length, t->error, sizeof t->error);
}

static int sim_start(struct mf_target *t, enum mf_start_mode mode)
{
    struct sim *s = t->context;
    int err = sim_enter(s, t, "start", MF_SIM_PHASE_START);
    if (err)
        return err;
    if (mode != MF_START_RESET && mode != MF_START_VECTOR) {
        TSAY(t, "start: unknown mode %d", (int)mode);
        return MF_EINVAL;
    }
    s->device.running = true;
    s->device.start_mode = mode;
    s->device.counters.starts++;
    utc_now(s->device.last_start, sizeof s->device.last_start);
    return 0;
}

static const struct mf_target_ops sim_ops = {
    .name = "sim",
    .connect = sim_connect,
    .read_uid = sim_read_uid,
    .unlock = sim_unlock,
    .erase = sim_erase,
    .erase_chip = sim_erase_chip,
    .program = sim_program,
    .read = sim_read,
    .crc = sim_crc,
    .protect = sim_protect,
    .start = sim_start,
    .disconnect = sim_disconnect,
};

int mf_sim_open(struct mf_target *target, const char *sim_dir, unsigned slot,
                const struct mf_sim_options *options)
{
    target->ops = NULL;
    target->context = NULL;
    target->error[0] = '\0';
    if (!sim_dir || !*sim_dir || strlen(sim_dir) > 255) {
        TSAY(target, "sim: the sim folder must be a path of 1 to 255 characters");
        return MF_EINVAL;
    }
    if (slot < 1 || slot > MF_SIM_SLOT_MAX) {
        TSAY(target, "sim: slot %u is not in 1..%u", slot, MF_SIM_SLOT_MAX);
        return MF_EINVAL;
    }
    if (options && !(options->time_scale >= 0.0 && options->time_scale <= MF_SIM_SCALE_MAX)) {
        TSAY(target, "sim: time scale %g is not in 0..%g", options->time_scale, MF_SIM_SCALE_MAX);
        return MF_EINVAL;
    }
    struct sim *s = calloc(1, sizeof *s);
    if (s) {
        s->sim_dir = strdup(sim_dir);
        s->slot_dir = slot_path(sim_dir, slot);
    }
    if (!s || !s->sim_dir || !s->slot_dir) {
        if (s) {
            free(s->sim_dir);
            free(s->slot_dir);
        }
        free(s);
        TSAY(target, "sim: out of memory");
        return MF_ENOMEM;
    }
    s->slot = slot;
    if (options)
        s->options = *options;
    for (int k = 0; k < KNOB_COUNT; k++)
        s->option_knob[k] = knob_of(&s->options.faults, (enum sim_knob)k)->mode != MF_SIM_FAULT_OFF;
    s->dir_fd = -1;
    s->ini_fd = -1;
    s->flash_fd = -1;
    target->ops = &sim_ops;
    target->context = s;
    return 0;
}

void mf_sim_close(struct mf_target *target)
{
    struct sim *s = target->context;
    if (target->ops == &sim_ops && s) {
        sim_disconnect(target);
        sim_unmap(s);
        if (s->dir_fd >= 0)
            close(s->dir_fd);
        free(s->clean_from);
        free(s->sim_dir);
        free(s->slot_dir);
        free(s);
    }
    target->ops = NULL;
    target->context = NULL;
}

/* ---- offline tools: replace, inspect, slots ---- */

int mf_sim_replace(const char *sim_dir, unsigned slot, const struct mf_profile *profile,
                   const uint8_t *uid, const struct mf_sim_options *options, char *error,
                   size_t error_size)
{
    return mf_sim_replace_in(NULL, sim_dir, slot, profile, uid, options, error, error_size);
}

int mf_sim_replace_in(const struct mf_devices *devices, const char *sim_dir, unsigned slot,
                      const struct mf_profile *profile, const uint8_t *uid,
                      const struct mf_sim_options *options, char *error, size_t error_size)
{
    if (slot < 1 || slot > MF_SIM_SLOT_MAX) {
        say(error, error_size, "slot %u is not in 1..%u", slot, MF_SIM_SLOT_MAX);
        return MF_EINVAL;
    }
    char *slot_dir = slot_path(sim_dir, slot);
    if (!slot_dir) {
        say(error, error_size, "out of memory");
        return MF_ENOMEM;
    }
    int dir_fd = -1;
    int err = slot_lock(sim_dir, slot_dir, slot, profile != NULL, &dir_fd, error, error_size);
    struct sim_device device = {0};
    if (!err && !profile) {
        err = load_device(dir_fd, slot_dir, NULL, devices, &device, NULL, NULL, NULL, NULL, error,
                          error_size);
        if (err == MF_ENOENT)
            say(error, error_size, "slot %u holds no device: name the profile of the new one",
                slot);
        profile = device.profile;
    }
    if (!err)
        err = profile_usable(profile, error, error_size);
    uint8_t fresh[MF_PROFILE_UID_MAX];
    if (!err && !uid) {
        err = new_uid(options, slot, profile, fresh, error, error_size);
        uid = fresh;
    }
    if (!err)
        err = create_device(dir_fd, slot_dir, profile, uid, &device, error, error_size);
    if (dir_fd >= 0)
        close(dir_fd);
    free(slot_dir);
    return err;
}

int mf_sim_inspect(const char *sim_dir, unsigned slot, struct mf_sim_info *info, char *error,
                   size_t error_size)
{
    return mf_sim_inspect_in(NULL, sim_dir, slot, info, error, error_size);
}

int mf_sim_inspect_in(const struct mf_devices *devices, const char *sim_dir, unsigned slot,
                      struct mf_sim_info *info, char *error, size_t error_size)
{
    memset(info, 0, sizeof *info);
    if (slot < 1 || slot > MF_SIM_SLOT_MAX) {
        say(error, error_size, "slot %u is not in 1..%u", slot, MF_SIM_SLOT_MAX);
        return MF_EINVAL;
    }
    char *slot_dir = slot_path(sim_dir, slot);
    if (!slot_dir) {
        say(error, error_size, "out of memory");
        return MF_ENOMEM;
    }
    int err = 0, flash_fd = -1;
    int dir_fd = open(slot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        err = errno_code(errno);
        if (err == MF_ENOENT)
            say(error, error_size, "slot %u holds no device (no folder %s)", slot, slot_dir);
        else
            say(error, error_size, "%s: %m", slot_dir);
        goto done;
    }
    struct sim_device d = {0};
    err =
        load_device(dir_fd, slot_dir, NULL, devices, &d, NULL, NULL, NULL, NULL, error, error_size);
    if (err == MF_ENOENT)
        say(error, error_size, "slot %u holds no device (%s has no device.ini)", slot, slot_dir);
    if (!err)
        err = open_flash(dir_fd, slot_dir, d.profile, O_RDONLY, &flash_fd, NULL, error, error_size);
    if (err)
        goto done;
    info->slot = slot;
    info->profile = d.profile;
    memcpy(info->uid, d.uid, sizeof info->uid);
    info->protection = d.protection;
    info->running = d.running;
    info->start_mode = d.start_mode;
    info->counters = d.counters;
    memcpy(info->last_program, d.last_program, sizeof info->last_program);
    memcpy(info->last_start, d.last_start, sizeof info->last_start);
    info->faults = d.faults;
    info->flash_size = flash_total(d.profile);
    uint8_t *map = mmap(NULL, (size_t)info->flash_size, PROT_READ, MAP_SHARED, flash_fd, 0);
    if (map == MAP_FAILED) {
        err = errno_code(errno);
        say(error, error_size, "%s/flash.bin: cannot map (%m)", slot_dir);
        goto done;
    }
    const uint8_t *p = map;
    for (unsigned r = 0; r < d.profile->flash_count; r++) {
        uint8_t erased = d.profile->flash[r].erased_value;
        for (uint64_t i = 0; i < d.profile->flash[r].size; i++)
            info->not_erased += p[i] != erased;
        p += d.profile->flash[r].size;
    }
    munmap(map, (size_t)info->flash_size);
done:
    if (flash_fd >= 0)
        close(flash_fd);
    if (dir_fd >= 0)
        close(dir_fd);
    free(slot_dir);
    return err;
}

/* The slot number of a folder name "slot<N>" (N in 1..MF_SIM_SLOT_MAX, no leading zero), or 0. */
static unsigned slot_of_name(const char *name)
{
    if (strncmp(name, "slot", 4) != 0 || name[4] < '1' || name[4] > '9')
        return 0;
    unsigned n = 0;
    for (const char *p = name + 4; *p; p++) {
        if (*p < '0' || *p > '9' || p - name >= 7)
            return 0;
        n = n * 10 + (unsigned)(*p - '0');
    }
    return n <= MF_SIM_SLOT_MAX ? n : 0;
}

int mf_sim_slots(const char *sim_dir, unsigned *slots, size_t max, size_t *count, char *error,
                 size_t error_size)
{
    *count = 0;
    DIR *dir = opendir(sim_dir);
    if (!dir) {
        int err = errno_code(errno);
        say(error, error_size, "%s: %m", sim_dir);
        return err;
    }
    bool present[MF_SIM_SLOT_MAX + 1] = {false};
    struct dirent *entry;
    /* Bounded by the folder's entries. */
    while ((entry = readdir(dir)) != NULL) {
        unsigned n = slot_of_name(entry->d_name);
        struct stat st;
        if (n && fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(st.st_mode))
            present[n] = true;
    }
    closedir(dir);
    for (unsigned n = 1; n <= MF_SIM_SLOT_MAX; n++) {
        if (!present[n])
            continue;
        if (*count < max)
            slots[*count] = n;
        ++*count;
    }
    return 0;
}
