/* `mintflash sim`: the simulated devices of the `sim` target back end, offline: put a fresh blank
 * device into a slot (replace), show what a slot's device holds, list the built-in profiles. The
 * printed formats are documented in docs/targets.md; scripts rely on them. */
#include "cli.h"

#include "mf_devices.h"
#include "mf_err.h"
#include "mf_profile.h"
#include "mf_sim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char sim_usage_text[] =
    "usage: mintflash sim replace --sim-dir DIR [--slot N] [--profile NAME] [--uid HEX]\n"
    "                             [--devices FILE]\n"
    "       mintflash sim show --sim-dir DIR [--slot N] [--devices FILE]\n"
    "       mintflash sim profiles\n"
    "\n"
    "Simulated devices live in DIR/slot<N>/ (flash.bin: the raw flash; device.ini: profile,\n"
    "UID, protection, counters, fault knobs).\n"
    "\n"
    "  replace   put a fresh blank device with a new UID into the slot (every slot of DIR\n"
    "            without --slot); its profile is --profile, else the old device's\n"
    "  show      print each device: profile, UID, protection, state, counters, faults and\n"
    "            how many bytes are not erased (every slot of DIR without --slot)\n"
    "  profiles  list the built-in device profiles with their flash maps\n"
    "\n"
    "options:\n"
    "  --sim-dir DIR   the folder of the simulated devices\n"
    "  --slot N        one slot, 1..999\n"
    "  --profile NAME  profile of the new device (see 'mintflash sim profiles')\n"
    "  --uid HEX       UID of the new device (one slot only; default: random)\n"
    "  --devices FILE  a setup's DEVICES.INI: the parts it describes, besides the built-in\n"
    "                  profiles, for --profile and for the devices in the slots\n";

struct sim_args {
    const char *sim_dir;
    unsigned slot; /* 0: every slot */
    const struct mf_profile *profile;
    const char *profile_name;   /* --profile, resolved once --devices is read */
    struct mf_devices *devices; /* --devices FILE (a setup's DEVICES.INI), or NULL */
    uint8_t uid[MF_PROFILE_UID_MAX];
    size_t uid_length;
    bool has_uid;
};

static int sim_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sim_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mintflash: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (try 'mintflash sim --help')\n", stderr);
    va_end(ap);
    return 2;
}

static int sim_parse_uid(const char *text, struct sim_args *a)
{
    size_t n = strlen(text);
    if (n == 0 || n % 2 != 0 || n / 2 > MF_PROFILE_UID_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d == 16u)
            return -1;
        a->uid[i / 2] = (uint8_t)(i % 2 ? a->uid[i / 2] | d : d << 4);
    }
    a->uid_length = n / 2;
    a->has_uid = true;
    return 0;
}

/* Whether `option` is one of the space-separated words of `allowed`. */
static bool sim_option_allowed(const char *allowed, const char *option)
{
    size_t n = strlen(option);
    for (const char *p = allowed; (p = strstr(p, option)) != NULL; p += n) {
        if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* --devices FILE: a setup's DEVICES.INI, whose parts a slot may hold besides the built-in ones. */
static int sim_read_devices(const char *path, struct sim_args *a)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mf_cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    static char text[64 * 1024];
    size_t n = fread(text, 1, sizeof text, f);
    bool more = n == sizeof text && fgetc(f) != EOF;
    bool failed = ferror(f);
    fclose(f);
    if (failed || more) {
        mf_cli_error("%s: %s", path, failed ? "cannot read it" : "larger than 64 KiB");
        return 1;
    }
    static struct mf_devices devices;
    char message[MF_DEVICES_MESSAGE_MAX];
    if (mf_devices_parse(&devices, text, n, message) != 0) {
        /* "DEVICES.INI:7: why" names the file it was given: "PATH:7: why". */
        size_t skip = strncmp(message, MF_FILE_DEVICES_INI ":", strlen(MF_FILE_DEVICES_INI) + 1)
                          ? 0
                          : strlen(MF_FILE_DEVICES_INI);
        mf_cli_error("%s%s%s", path, skip ? "" : ": ", message + skip);
        return 1;
    }
    a->devices = &devices;
    return 0;
}

/* Parses argv[2..] against the options `allowed` (a string naming them); 0 or an exit status. */
static int sim_parse(int argc, char **argv, const char *allowed, struct sim_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!*opt || !sim_option_allowed(allowed, opt))
            return sim_usage_error("unexpected argument '%s' for 'sim %s'", opt, argv[1]);
        if (!value)
            return sim_usage_error("option '%s' needs a value", opt);
        i++;
        if (strcmp(opt, "--sim-dir") == 0) {
            if (!*value)
                return sim_usage_error("--sim-dir needs a folder");
            a->sim_dir = value;
        } else if (strcmp(opt, "--slot") == 0) {
            uint64_t n;
            if (mf_cli_parse_u64(value, &n) != 0 || n < 1 || n > MF_SIM_SLOT_MAX)
                return sim_usage_error("bad slot '%s' (1..%u)", value, MF_SIM_SLOT_MAX);
            a->slot = (unsigned)n;
        } else if (strcmp(opt, "--profile") == 0) {
            a->profile_name = value;
        } else if (strcmp(opt, "--devices") == 0) {
            int status = sim_read_devices(value, a);
            if (status)
                return status;
        } else if (strcmp(opt, "--uid") == 0) {
            if (sim_parse_uid(value, a) != 0)
                return sim_usage_error("bad UID '%s' (hex digits in pairs, at most %u bytes)",
                                       value, MF_PROFILE_UID_MAX);
        } else {
            return sim_usage_error("unexpected argument '%s' for 'sim %s'", opt, argv[1]);
        }
    }
    if (sim_option_allowed(allowed, "--sim-dir") && !a->sim_dir)
        return sim_usage_error("'sim %s' needs --sim-dir DIR", argv[1]);
    if (a->profile_name) {
        a->profile = mf_devices_find(a->devices, a->profile_name);
        if (!a->profile)
            return sim_usage_error("unknown profile '%s' (see 'mintflash sim profiles'%s)",
                                   a->profile_name, a->devices ? " and --devices" : "");
    }
    return 0;
}

/* The slots to work on: the one named, or every slot folder of the sim dir. */
static int sim_slot_list(const struct sim_args *a, unsigned *slots, size_t *count)
{
    if (a->slot) {
        slots[0] = a->slot;
        *count = 1;
        return 0;
    }
    char error[MF_TARGET_ERROR_MAX];
    if (mf_sim_slots(a->sim_dir, slots, MF_SIM_SLOT_MAX, count, error, sizeof error) != 0) {
        mf_cli_error("%s", error);
        return 1;
    }
    return 0;
}

static void sim_print_uid(const uint8_t *uid, uint32_t length)
{
    for (uint32_t i = 0; i < length; i++)
        printf("%02X", uid[i]);
}

static int sim_replace(const struct sim_args *a)
{
    unsigned slots[MF_SIM_SLOT_MAX];
    size_t count = 0;
    if (sim_slot_list(a, slots, &count) != 0)
        return 1;
    if (count == 0) {
        mf_cli_error("%s holds no slot folders: name one with --slot N --profile NAME", a->sim_dir);
        return 1;
    }
    if (a->has_uid && count != 1)
        return sim_usage_error("--uid needs --slot: every device has its own UID");
    int status = 0;
    for (size_t i = 0; i < count; i++) {
        char error[MF_TARGET_ERROR_MAX];
        const struct mf_profile *profile = a->profile;
        struct mf_sim_info info;
        if (!profile && mf_sim_inspect_in(a->devices, a->sim_dir, slots[i], &info, NULL, 0) == 0)
            profile = info.profile;
        if (a->has_uid && profile && a->uid_length != profile->uid_length) {
            mf_cli_error("slot %u: --uid has %zu bytes, a %s has %u", slots[i], a->uid_length,
                         profile->name, profile->uid_length);
            status = 1;
            continue;
        }
        int err = mf_sim_replace_in(a->devices, a->sim_dir, slots[i], profile,
                                    a->has_uid ? a->uid : NULL, NULL, error, sizeof error);
        if (err == 0)
            err = mf_sim_inspect_in(a->devices, a->sim_dir, slots[i], &info, error, sizeof error);
        if (err) {
            mf_cli_error("%s", error);
            status = 1;
            continue;
        }
        printf("slot %u: new %s, uid ", slots[i], info.profile->name);
        sim_print_uid(info.uid, info.profile->uid_length);
        putchar('\n');
    }
    return status;
}

static const char *sim_start_mode_name(enum mf_start_mode mode)
{
    return mode == MF_START_RESET ? "reset" : mode == MF_START_VECTOR ? "vector" : "none";
}

static void sim_print_info(const struct mf_sim_info *info)
{
    const struct mf_sim_counters *c = &info->counters;
    printf("slot: %u\n", info->slot);
    printf("profile: %s\n", info->profile->name);
    printf("uid: ");
    sim_print_uid(info->uid, info->profile->uid_length);
    printf("\nprotection: %u\n", info->protection);
    printf("state: %s\n", info->running ? "running" : "halted");
    printf("start_mode: %s\n", sim_start_mode_name(info->start_mode));
    printf("connects: %llu\n", (unsigned long long)c->connects);
    printf("programs: %llu\n", (unsigned long long)c->programs);
    printf("programmed_bytes: %llu\n", (unsigned long long)c->programmed_bytes);
    printf("sector_erases: %llu\n", (unsigned long long)c->sector_erases);
    printf("chip_erases: %llu\n", (unsigned long long)c->chip_erases);
    printf("unlocks: %llu\n", (unsigned long long)c->unlocks);
    printf("protects: %llu\n", (unsigned long long)c->protects);
    printf("starts: %llu\n", (unsigned long long)c->starts);
    printf("last_program: %s\n", info->last_program[0] ? info->last_program : "never");
    printf("last_start: %s\n", info->last_start[0] ? info->last_start : "never");
    printf("flash_size: %llu\n", (unsigned long long)info->flash_size);
    printf("not_erased: %llu\n", (unsigned long long)info->not_erased);
    static const char *const knobs[] = {"connect", "erase", "program", "flip", "timeout"};
    const struct mf_sim_fault *faults[] = {&info->faults.connect, &info->faults.erase,
                                           &info->faults.program, &info->faults.flip,
                                           &info->faults.timeout};
    printf("faults:");
    bool any = false;
    for (size_t k = 0; k < sizeof knobs / sizeof knobs[0]; k++) {
        if (faults[k]->mode == MF_SIM_FAULT_OFF)
            continue;
        char text[64];
        mf_sim_fault_format(knobs[k], faults[k], text, sizeof text);
        printf("%s %s=%s", any ? "," : "", knobs[k], text);
        any = true;
    }
    printf("%s\n", any ? "" : " none");
}

static int sim_show(const struct sim_args *a)
{
    unsigned slots[MF_SIM_SLOT_MAX];
    size_t count = 0;
    if (sim_slot_list(a, slots, &count) != 0)
        return 1;
    if (count == 0) {
        printf("no devices in %s\n", a->sim_dir);
        return 0;
    }
    int status = 0;
    for (size_t i = 0; i < count; i++) {
        char error[MF_TARGET_ERROR_MAX];
        struct mf_sim_info info;
        if (mf_sim_inspect_in(a->devices, a->sim_dir, slots[i], &info, error, sizeof error) != 0) {
            mf_cli_error("%s", error);
            status = 1;
            continue;
        }
        if (i > 0)
            putchar('\n');
        sim_print_info(&info);
    }
    return status;
}

static void sim_print_size(uint64_t bytes)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        printf("%llu MiB", (unsigned long long)(bytes >> 20));
    else if (bytes >= 1024 && bytes % 1024 == 0)
        printf("%llu KiB", (unsigned long long)(bytes >> 10));
    else
        printf("%llu bytes", (unsigned long long)bytes);
}

static int sim_profiles(void)
{
    const struct mf_profile *p;
    for (size_t i = 0; (p = mf_profile_at(i)) != NULL; i++) {
        if (i > 0)
            putchar('\n');
        printf("%s\n  %s\n", p->name, p->description);
        for (unsigned r = 0; r < p->flash_count; r++) {
            const struct mf_flash_region *fr = &p->flash[r];
            printf("  flash 0x%08llx..0x%08llx (", (unsigned long long)fr->start,
                   (unsigned long long)(fr->start + fr->size - 1));
            sim_print_size(fr->size);
            printf("), write size %u, erased 0x%02X, sectors", fr->write_size, fr->erased_value);
            for (unsigned g = 0; g < fr->group_count; g++) {
                printf("%s %ux", g ? "," : "", fr->groups[g].count);
                sim_print_size(fr->groups[g].size);
            }
            putchar('\n');
        }
        printf("  uid %u bytes at 0x%08llx\n", p->uid_length, (unsigned long long)p->uid_address);
        if (p->protect_levels)
            printf("  protection levels 0..%u\n", p->protect_levels);
        else
            printf("  no readout protection\n");
        printf("  timing connect %u ms, erase %u us/KiB, program %u us/KiB, link %u KiB/s\n",
               p->timing.connect_ms, p->timing.erase_us_per_kib, p->timing.program_us_per_kib,
               p->timing.link_kib_per_s);
    }
    return 0;
}

int mf_cli_sim(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(sim_usage_text, stdout);
            return 0;
        }
    }
    if (argc < 2)
        return sim_usage_error("'sim' needs a subcommand: replace, show or profiles");
    struct sim_args a;
    int status;
    if (strcmp(argv[1], "replace") == 0) {
        status = sim_parse(argc, argv, "--sim-dir --slot --profile --uid --devices", &a);
        return status ? status : sim_replace(&a);
    }
    if (strcmp(argv[1], "show") == 0) {
        status = sim_parse(argc, argv, "--sim-dir --slot --devices", &a);
        return status ? status : sim_show(&a);
    }
    if (strcmp(argv[1], "profiles") == 0) {
        status = sim_parse(argc, argv, "", &a);
        return status ? status : sim_profiles();
    }
    return sim_usage_error("unknown subcommand 'sim %s' (replace, show, profiles)", argv[1]);
}
