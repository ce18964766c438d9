/* `mintflash storage ...`: create and describe storage images (mf_storage over mf_filebd), and
 * work on the files of the public area offline (ls, put, get, cat, rm, mkdir, rmdir, mv).
 * Nothing here can reach the secure area. Exit status: 0 done, 1 failed, 2 usage error. */
#include "cli.h"

#include "mf_clock.h"
#include "mf_err.h"
#include "mf_fat.h"
#include "mf_filebd.h"
#include "mf_storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK (64u * 1024u)

/* ---- argument parsing ---- */

struct option_spec {
    const char *long_name; /* "--size" */
    char short_name;       /* 's', or 0 */
    const char **value;    /* options with a value */
    bool *flag;            /* options without */
};

struct command {
    const char *name;
    int (*run)(const char *name, int argc, char **argv);
    const char *usage;
    const char *help;
};

static const struct command *storage_command_find(const char *name);

/* Splits argv (argv[0] is the subcommand) into options and up to `max` positionals. Returns -1
 * when done (help printed), 2 on a usage error (printed), 0 otherwise. "--" ends options. */
static int parse_args(const char *name, int argc, char **argv, const struct option_spec *specs,
                      size_t nspecs, char **positional, int min, int max, int *count)
{
    *count = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            const struct command *c = storage_command_find(name);
            printf("usage: mintflash storage %s\n\n%s", c->usage, c->help);
            return -1;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            const struct option_spec *spec = NULL;
            const char *inline_value = NULL;
            for (size_t k = 0; k < nspecs && !spec; k++) {
                size_t n = strlen(specs[k].long_name);
                if (strncmp(arg, specs[k].long_name, n) == 0 &&
                    (arg[n] == '\0' || (arg[n] == '=' && specs[k].value))) {
                    spec = &specs[k];
                    inline_value = arg[n] == '=' ? arg + n + 1 : NULL;
                } else if (specs[k].short_name && arg[1] == specs[k].short_name && arg[2] == 0) {
                    spec = &specs[k];
                }
            }
            if (!spec) {
                mf_cli_error("storage %s: unknown option '%s' (try 'mintflash storage %s --help')",
                             name, arg, name);
                return 2;
            }
            if (spec->value) {
                if (!inline_value) {
                    if (i + 1 >= argc) {
                        mf_cli_error("storage %s: option '%s' needs a value (try 'mintflash "
                                     "storage %s --help')",
                                     name, arg, name);
                        return 2;
                    }
                    inline_value = argv[++i];
                }
                *spec->value = inline_value;
            } else {
                *spec->flag = true;
            }
            continue;
        }
        if (*count >= max) {
            mf_cli_error("storage %s: unexpected argument '%s' (try 'mintflash storage %s --help')",
                         name, arg, name);
            return 2;
        }
        positional[(*count)++] = arg;
    }
    if (*count < min) {
        const struct command *c = storage_command_find(name);
        mf_cli_error("storage %s: missing %s (usage: mintflash storage %s)", name,
                     *count == 0 ? "the image" : "an argument", c->usage);
        return 2;
    }
    return 0;
}

/* ---- opening an image ---- */

struct session {
    const char *image;
    struct mf_filebd file;
    struct mf_storage storage;
    struct mf_fat fs;
    bool file_open, mounted, writable;
};

/* One image at a time; the FAT volume struct is large, so it is not on the stack. */
static struct session storage_session;

static void size_text(uint64_t bytes, char *out, size_t size)
{
    if (bytes % (1u << 20) == 0)
        snprintf(out, size, "%" PRIu64 " MiB", bytes >> 20);
    else
        snprintf(out, size, "%.1f MiB", (double)bytes / (1u << 20));
}

static int session_open_storage(struct session *s, const char *name, const char *image,
                                bool writable)
{
    memset(s, 0, sizeof *s);
    s->image = image;
    s->writable = writable;
    int err = mf_filebd_open(&s->file, image, !writable);
    if (err) {
        mf_cli_error("storage %s: %s", name, mf_filebd_last_error(&s->file));
        return 1;
    }
    s->file_open = true;
    err = mf_storage_open(&s->storage, &s->file.bd);
    if (err) {
        mf_cli_error("storage %s: %s: not a usable storage image: %s", name, image,
                     s->storage.reason[0] ? s->storage.reason : mf_strerror(err));
        return 1;
    }
    return 0;
}

/* Completes an interrupted repartition when writing; refuses reading through one. */
static int session_recover(struct session *s, const char *name)
{
    if (!s->storage.interrupted)
        return 0;
    if (!s->writable) {
        mf_cli_error("storage %s: %s: a repartition was interrupted (power cut?); run "
                     "'mintflash storage recover %s' to complete it",
                     name, s->image, s->image);
        return 1;
    }
    fprintf(stderr,
            "mintflash: %s: completing an interrupted repartition (the public area is "
            "reformatted empty)\n",
            s->image);
    int err = mf_storage_recover(&s->storage);
    if (err) {
        mf_cli_error("storage %s: %s: recovery failed: %s", name, s->image,
                     s->storage.reason[0] ? s->storage.reason : mf_strerror(err));
        return 1;
    }
    return 0;
}

static int session_mount(struct session *s, const char *name)
{
    const struct mf_bd *pub = mf_storage_public_area(&s->storage);
    int err = mf_fat_mount(&s->fs, pub, mf_clock_local, NULL);
    if (err) {
        mf_cli_error("storage %s: %s: the public area (partition 1 at byte %" PRIu64
                     ") does not mount: %s",
                     name, s->image, (uint64_t)s->storage.layout.public_first * pub->block_size,
                     mf_strerror(err));
        return 1;
    }
    s->mounted = true;
    return 0;
}

/* Opens image, storage and public FAT. */
static int session_open(struct session *s, const char *name, const char *image, bool writable)
{
    int rc = session_open_storage(s, name, image, writable);
    if (!rc)
        rc = session_recover(s, name);
    if (!rc)
        rc = session_mount(s, name);
    return rc;
}

/* Unmounts (writing back), syncs and closes; returns rc, or 1 when closing failed. */
static int session_close(struct session *s, const char *name, int rc)
{
    if (s->mounted) {
        int err = mf_fat_unmount(&s->fs);
        if (err && !rc) {
            mf_cli_error("storage %s: %s: writing back the public area: %s", name, s->image,
                         mf_strerror(err));
            rc = 1;
        }
        s->mounted = false;
    }
    if (s->file_open) {
        int err = s->writable ? mf_bd_sync(&s->file.bd) : 0;
        if (!err)
            err = mf_filebd_close(&s->file);
        else
            mf_filebd_close(&s->file);
        if (err && !rc) {
            mf_cli_error("storage %s: %s", name, mf_filebd_last_error(&s->file));
            rc = 1;
        }
        s->file_open = false;
    }
    return rc;
}

static int fat_fail(const struct session *s, const char *name, const char *path, int err)
{
    const char *hint = "";
    if (err == MF_ENAME)
        hint = " (FAT names may not hold \" * / : < > ? \\ | or control characters)";
    mf_cli_error("storage %s: %s: %s: %s%s", name, s->image, path, mf_strerror(err), hint);
    return 1;
}

/* ---- paths ---- */

/* "dir" + "/" + "leaf" into out; false when too long. */
static bool path_join(char *out, size_t size, const char *dir, const char *leaf)
{
    size_t n = strlen(dir);
    while (n > 0 && dir[n - 1] == '/')
        n--;
    int w = snprintf(out, size, "%.*s/%s", (int)n, dir, leaf);
    return w > 0 && (size_t)w < size;
}

/* The last component of a path (after trailing slashes are dropped), into out. */
static void path_leaf(const char *path, char *out, size_t size)
{
    size_t end = strlen(path);
    while (end > 0 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(out, size, "%.*s", (int)(end - start), path + start);
}

static bool path_ends_with_slash(const char *path)
{
    size_t n = strlen(path);
    return n > 0 && path[n - 1] == '/';
}

/* A name read from the volume that is safe to create locally (a hostile volume could hold
 * "..", "/" or control characters in a long name). */
static bool local_name_ok(const char *name)
{
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++) {
        if (*p == '/' || (unsigned char)*p < 0x20)
            return false;
    }
    return true;
}

static bool remote_is_dir(struct session *s, const char *path)
{
    struct mf_fat_stat st;
    return mf_fat_stat(&s->fs, path, &st) == 0 && st.is_dir;
}

/* ---- init ---- */

static int random_u32(uint32_t *value)
{
    uint8_t b[4];
    ssize_t n;
    do
        n = getrandom(b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof b)
        return -1;
    *value = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static void print_layout_line(const struct mf_storage_info *info)
{
    char total[32], pub[32], sec[32];
    size_text(info->disk_bytes, total, sizeof total);
    size_text(info->public_bytes, pub, sizeof pub);
    size_text(info->secure_bytes, sec, sizeof sec);
    const char *fat = info->fat_type == MF_FAT12   ? "FAT12"
                      : info->fat_type == MF_FAT16 ? "FAT16"
                      : info->fat_type == MF_FAT32 ? "FAT32"
                                                   : "no FAT";
    if (info->secure_area)
        printf("%s storage: public area %s (%s), secure area %s\n", total, pub, fat, sec);
    else
        printf("%s storage: public area %s (%s), no secure area\n", total, pub, fat);
}

static int cmd_init(const char *name, int argc, char **argv)
{
    const char *size_arg = NULL, *label = NULL;
    bool secure = false, force = false;
    const struct option_spec specs[] = {
        {"--size", 's', &size_arg, NULL},
        {"--secure-area", 0, NULL, &secure},
        {"--force", 'f', NULL, &force},
        {"--label", 0, &label, NULL},
    };
    char *pos[1];
    int count;
    int rc = parse_args(name, argc, argv, specs, sizeof specs / sizeof specs[0], pos, 1, 1, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *image = pos[0];

    uint64_t size = MF_STORAGE_DEFAULT_SIZE;
    if (size_arg) {
        if (mf_cli_parse_size(size_arg, &size) != 0) {
            mf_cli_error("storage init: --size '%s' is not a size (examples: 4M, 128M, 1G, "
                         "4194304)",
                         size_arg);
            return 2;
        }
        if (size < MF_STORAGE_MIN_SIZE) {
            mf_cli_error("storage init: --size %s is too small: a storage image needs at least "
                         "%llu MiB",
                         size_arg, (unsigned long long)(MF_STORAGE_MIN_SIZE >> 20));
            return 2;
        }
        if (size % MF_FILEBD_BLOCK_SIZE) {
            mf_cli_error("storage init: --size %s is not a multiple of %u bytes", size_arg,
                         MF_FILEBD_BLOCK_SIZE);
            return 2;
        }
        if (size / MF_FILEBD_BLOCK_SIZE > MF_STORAGE_MAX_BLOCKS) {
            mf_cli_error("storage init: --size %s is too large: an MBR describes at most %llu "
                         "bytes",
                         size_arg,
                         (unsigned long long)(MF_STORAGE_MAX_BLOCKS * MF_FILEBD_BLOCK_SIZE));
            return 2;
        }
    }
    if (label && (strlen(label) == 0 || strlen(label) > 11)) {
        mf_cli_error("storage init: --label '%s' must have 1 to 11 characters", label);
        return 2;
    }
    /* Checked before the image is touched: with --force, creating it wipes what it held. */
    if (label && !mf_storage_label_valid(label)) {
        mf_cli_error("storage init: --label '%s' may only hold printable ASCII characters "
                     "other than \"*+,./:;<=>?[\\]|",
                     label);
        return 2;
    }

    struct stat st;
    bool existed = stat(image, &st) == 0;
    bool block_device = existed && S_ISBLK(st.st_mode);
    if (block_device && !force) {
        mf_cli_error("storage init: %s is a block device: everything on it would be lost; add "
                     "--force to go ahead",
                     image);
        return 1;
    }
    if (existed && S_ISREG(st.st_mode) && st.st_size > 0 && !force) {
        mf_cli_error("storage init: %s already exists and is not empty; add --force to "
                     "overwrite it (everything on it is lost)",
                     image);
        return 1;
    }

    struct mf_storage_options options = {.secure_area = secure, .label = label};
    if (random_u32(&options.volume_id) || random_u32(&options.disk_signature)) {
        mf_cli_error("storage init: no random numbers from the system (getrandom: %s)",
                     strerror(errno));
        return 1;
    }

    struct session *s = &storage_session;
    memset(s, 0, sizeof *s);
    s->image = image;
    s->writable = true;
    int err = mf_filebd_create(&s->file, image, block_device && !size_arg ? 0 : size, force);
    if (err) {
        mf_cli_error("storage init: %s", mf_filebd_last_error(&s->file));
        return 1;
    }
    s->file_open = true;
    err = mf_storage_init(&s->storage, &s->file.bd, &options);
    if (err) {
        mf_cli_error("storage init: %s: %s", image,
                     s->storage.reason[0] ? s->storage.reason : mf_strerror(err));
        session_close(s, name, 1);
        if (!existed)
            unlink(image);
        return 1;
    }
    struct mf_storage_info info;
    err = mf_storage_info(&s->storage, &info);
    rc = session_close(s, name, 0);
    if (!rc && !err) {
        printf("%s: ", image);
        print_layout_line(&info);
    }
    return rc;
}

/* ---- info ---- */

static const char *fat_type_name(enum mf_fat_type type)
{
    switch (type) {
    case MF_FAT12:
        return "FAT12";
    case MF_FAT16:
        return "FAT16";
    case MF_FAT32:
        return "FAT32";
    default:
        return NULL;
    }
}

static const char *state_name(const struct mf_storage_info *info)
{
    if (!info->ours)
        return "foreign";
    return info->interrupted ? "formatting" : "ready";
}

static void json_string(const char *text)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static int cmd_info(const char *name, int argc, char **argv)
{
    bool json = false;
    const struct option_spec specs[] = {{"--json", 0, NULL, &json}};
    char *pos[1];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 1, 1, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open_storage(s, name, pos[0], false);
    if (rc)
        return session_close(s, name, rc);
    struct mf_storage_info info;
    int err = mf_storage_info(&s->storage, &info);
    if (err) {
        mf_cli_error("storage info: %s: %s", pos[0], s->storage.reason);
        return session_close(s, name, 1);
    }
    uint64_t free_bytes = 0, total_bytes = 0;
    int space_err = MF_EINVAL;
    if (info.fat_type != MF_FAT_AUTO && !info.interrupted &&
        mf_fat_mount(&s->fs, mf_storage_public_area(&s->storage), NULL, NULL) == 0) {
        s->mounted = true;
        space_err = mf_fat_space(&s->fs, &free_bytes, &total_bytes);
    }
    const char *fat = fat_type_name(info.fat_type);
    char volume_id[16];
    snprintf(volume_id, sizeof volume_id, "%04X-%04X", (unsigned)(info.volume_id >> 16),
             (unsigned)(info.volume_id & 0xFFFF));

    if (json) {
        printf("{\"image\": ");
        json_string(pos[0]);
        printf(", \"size\": %" PRIu64 ", \"block_size\": %u, \"disk_signature\": \"0x%08X\", "
               "\"state\": \"%s\",\n",
               info.disk_bytes, info.block_size, (unsigned)info.disk_signature, state_name(&info));
        printf(" \"public_area\": {\"partition\": 1, \"offset\": %" PRIu64 ", \"size\": %" PRIu64
               ", \"type\": %u, \"fat_type\": ",
               info.public_offset, info.public_bytes, info.public_type);
        if (fat) {
            printf("\"%s\", \"label\": ", fat);
            json_string(info.label);
            printf(", \"volume_id\": \"%s\"", volume_id);
        } else {
            printf("null");
        }
        if (!space_err)
            printf(", \"free\": %" PRIu64 ", \"total\": %" PRIu64, free_bytes, total_bytes);
        printf("},\n \"secure_area\": ");
        if (info.secure_area)
            printf("{\"partition\": 2, \"offset\": %" PRIu64 ", \"size\": %" PRIu64
                   ", \"type\": %u}}\n",
                   info.secure_offset, info.secure_bytes, info.secure_type);
        else
            printf("null}\n");
        return session_close(s, name, 0);
    }

    char a[32], b[32];
    size_text(info.disk_bytes, a, sizeof a);
    printf("image:           %s\n", pos[0]);
    printf("size:            %" PRIu64 " bytes (%s), %u-byte blocks\n", info.disk_bytes, a,
           info.block_size);
    printf("partition table: MBR, disk signature 0x%08X, %s\n", (unsigned)info.disk_signature,
           !info.ours         ? "not written by mintflash"
           : info.interrupted ? "repartition interrupted (run 'mintflash storage recover')"
                              : "ready");
    size_text(info.public_offset, a, sizeof a);
    size_text(info.public_bytes, b, sizeof b);
    printf("public area:     partition 1, offset %" PRIu64 " (%s), size %" PRIu64
           " bytes (%s), type 0x%02X (%s)\n",
           info.public_offset, a, info.public_bytes, b, info.public_type,
           mf_mbr_type_name(info.public_type));
    if (fat)
        printf("file system:     %s, label \"%s\", volume id %s\n", fat, info.label, volume_id);
    else
        printf("file system:     none (%s)\n",
               info.interrupted ? "not yet formatted" : "no valid FAT boot sector");
    if (!space_err) {
        size_text(free_bytes, a, sizeof a);
        size_text(total_bytes, b, sizeof b);
        printf("free space:      %" PRIu64 " bytes (%s) of %" PRIu64 " (%s)\n", free_bytes, a,
               total_bytes, b);
    }
    if (info.secure_area) {
        size_text(info.secure_offset, a, sizeof a);
        size_text(info.secure_bytes, b, sizeof b);
        printf("secure area:     partition 2, offset %" PRIu64 " (%s), size %" PRIu64
               " bytes (%s), type 0x%02X (%s)\n",
               info.secure_offset, a, info.secure_bytes, b, info.secure_type,
               mf_mbr_type_name(info.secure_type));
    } else {
        printf("secure area:     none\n");
    }
    return session_close(s, name, 0);
}

/* ---- recover ---- */

static int cmd_recover(const char *name, int argc, char **argv)
{
    char *pos[1];
    int count;
    int rc = parse_args(name, argc, argv, NULL, 0, pos, 1, 1, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open_storage(s, name, pos[0], true);
    if (!rc && !s->storage.interrupted)
        printf("%s: nothing to recover\n", pos[0]);
    else if (!rc)
        rc = session_recover(s, name);
    return session_close(s, name, rc);
}

/* ---- ls ---- */

static void print_entry(const struct mf_fat_stat *st, bool long_format)
{
    if (!long_format) {
        printf("%s%s\n", st->name, st->is_dir ? "/" : "");
        return;
    }
    char date[32] = "-";
    time_t t = (time_t)st->mtime;
    struct tm tm;
    /* FAT holds local time without a zone; the driver hands it over as if it were UTC. */
    if (st->mtime && gmtime_r(&t, &tm))
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    if (st->is_dir)
        printf("d %12s  %s  %s/\n", "-", date, st->name);
    else
        printf("- %12" PRIu32 "  %s  %s\n", st->size, date, st->name);
}

static int cmd_ls(const char *name, int argc, char **argv)
{
    bool long_format = false;
    const struct option_spec specs[] = {{"--long", 'l', NULL, &long_format}};
    char *pos[2];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 1, 2, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *path = count > 1 ? pos[1] : "/";
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], false);
    if (rc)
        return session_close(s, name, rc);
    struct mf_fat_stat st;
    int err = mf_fat_stat(&s->fs, path, &st);
    if (err)
        return session_close(s, name, fat_fail(s, name, path, err));
    if (!st.is_dir) {
        print_entry(&st, long_format);
        return session_close(s, name, 0);
    }
    struct mf_fat_dir dir;
    err = mf_fat_opendir(&s->fs, &dir, path);
    while (!err && (err = mf_fat_readdir(&s->fs, &dir, &st)) == 1) {
        print_entry(&st, long_format);
        err = 0;
    }
    if (err < 0)
        return session_close(s, name, fat_fail(s, name, path, err));
    return session_close(s, name, 0);
}

/* ---- put ---- */

static int put_file(struct session *s, const char *name, const char *local, const char *remote)
{
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > (off_t)MF_FAT_FILE_SIZE_MAX) {
        mf_cli_error("storage %s: %s: %lld bytes is more than a FAT file can hold (4 GiB - 1)",
                     name, local, (long long)st.st_size);
        close(fd);
        return 1;
    }
    struct mf_fat_file file;
    int err = mf_fat_open(&s->fs, &file, remote, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_TRUNC);
    if (err) {
        close(fd);
        return fat_fail(s, name, remote, err);
    }
    static uint8_t buffer[COPY_CHUNK];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
            rc = 1;
            break;
        }
        if (n == 0)
            break;
        int w = mf_fat_write(&s->fs, &file, buffer, (uint32_t)n);
        if (w < 0) {
            rc = fat_fail(s, name, remote, w);
            break;
        }
    }
    close(fd);
    err = mf_fat_close(&s->fs, &file);
    if (err && !rc)
        rc = fat_fail(s, name, remote, err);
    if (rc)
        mf_fat_remove(&s->fs, remote); /* no half-copied file left behind */
    return rc;
}

static int put_tree(struct session *s, const char *name, const char *local, const char *remote,
                    unsigned depth)
{
    if (depth > MF_FAT_DEPTH_MAX) {
        mf_cli_error("storage %s: %s: folders nested deeper than %u", name, local,
                     MF_FAT_DEPTH_MAX);
        return 1;
    }
    int err = mf_fat_mkdir(&s->fs, remote);
    if (err == MF_EEXIST && remote_is_dir(s, remote))
        err = 0;
    if (err)
        return fat_fail(s, name, remote, err);
    DIR *d = opendir(local);
    if (!d) {
        mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
        return 1;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char local_child[4096], remote_child[MF_FAT_PATH_MAX];
        if (!path_join(local_child, sizeof local_child, local, e->d_name) ||
            !path_join(remote_child, sizeof remote_child, remote, e->d_name)) {
            mf_cli_error("storage %s: %s/%s: path too long", name, local, e->d_name);
            rc = 1;
            break;
        }
        struct stat st;
        if (lstat(local_child, &st) < 0) {
            mf_cli_error("storage %s: %s: %s", name, local_child, strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = put_tree(s, name, local_child, remote_child, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = put_file(s, name, local_child, remote_child);
        } else {
            fprintf(stderr, "mintflash: storage %s: skipping %s (not a file or folder)\n", name,
                    local_child);
        }
    }
    closedir(d);
    return rc;
}

static int cmd_put(const char *name, int argc, char **argv)
{
    bool recursive = false;
    const struct option_spec specs[] = {{"--recursive", 'r', NULL, &recursive}};
    char *pos[3];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 2, 3, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *local = pos[1];
    struct stat st;
    if (stat(local, &st) < 0) {
        mf_cli_error("storage put: %s: %s", local, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode) && !recursive) {
        mf_cli_error("storage put: %s is a folder (add -r to copy it with its contents)", local);
        return 1;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        mf_cli_error("storage put: %s is not a regular file or folder", local);
        return 1;
    }
    char leaf[256];
    path_leaf(local, leaf, sizeof leaf);
    if (!*leaf || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0) {
        if (count < 3) {
            mf_cli_error("storage put: name the folder to create for %s (REMOTE)", local);
            return 2;
        }
    }
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], true);
    if (rc)
        return session_close(s, name, rc);
    char remote[MF_FAT_PATH_MAX];
    const char *given = count > 2 ? pos[2] : "/";
    bool into = count < 3 || path_ends_with_slash(given) || remote_is_dir(s, given);
    if (into ? !path_join(remote, sizeof remote, given, leaf)
             : snprintf(remote, sizeof remote, "%s", given) >= (int)sizeof remote) {
        mf_cli_error("storage put: remote path too long");
        return session_close(s, name, 1);
    }
    if (S_ISDIR(st.st_mode))
        rc = put_tree(s, name, local, remote, 0);
    else
        rc = put_file(s, name, local, remote);
    return session_close(s, name, rc);
}

/* ---- get, cat ---- */

static int get_to_fd(struct session *s, const char *name, const char *remote, int fd,
                     const char *local)
{
    struct mf_fat_file file;
    int err = mf_fat_open(&s->fs, &file, remote, MF_FAT_O_RDONLY);
    if (err)
        return fat_fail(s, name, remote, err);
    static uint8_t buffer[COPY_CHUNK];
    int rc = 0;
    for (;;) {
        int n = mf_fat_read(&s->fs, &file, buffer, sizeof buffer);
        if (n < 0) {
            rc = fat_fail(s, name, remote, n);
            break;
        }
        if (n == 0)
            break;
        size_t done = 0;
        while (done < (size_t)n) {
            ssize_t w = write(fd, buffer + done, (size_t)n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
                rc = 1;
                break;
            }
            done += (size_t)w;
        }
        if (rc)
            break;
    }
    mf_fat_close(&s->fs, &file);
    return rc;
}

/* In a tree copy (`in_tree`) a symbolic link in the way is never followed: names come from the
 * volume, which may be hostile. A LOCAL the user named is followed, as cp does. */
static int get_file(struct session *s, const char *name, const char *remote, const char *local,
                    bool in_tree)
{
    int fd =
        open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (in_tree ? O_NOFOLLOW : 0), 0644);
    if (fd < 0) {
        mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
        return 1;
    }
    int rc = get_to_fd(s, name, remote, fd, local);
    if (close(fd) < 0 && !rc) {
        mf_cli_error("storage %s: %s: %s", name, local, strerror(errno));
        rc = 1;
    }
    if (rc)
        unlink(local);
    return rc;
}

static int get_tree(struct session *s, const char *name, const char *remote, const char *local,
                    unsigned depth)
{
    if (depth > MF_FAT_DEPTH_MAX) {
        mf_cli_error("storage %s: %s: folders nested deeper than %u", name, remote,
                     MF_FAT_DEPTH_MAX);
        return 1;
    }
    if (mkdir(local, 0755) < 0) {
        struct stat st;
        if (errno != EEXIST || lstat(local, &st) < 0 || !S_ISDIR(st.st_mode)) {
            mf_cli_error("storage %s: %s: %s", name, local,
                         errno == EEXIST ? "exists and is not a folder" : strerror(errno));
            return 1;
        }
    }
    struct mf_fat_dir dir;
    int err = mf_fat_opendir(&s->fs, &dir, remote);
    if (err)
        return fat_fail(s, name, remote, err);
    struct mf_fat_stat st;
    int rc = 0;
    while (!rc && (err = mf_fat_readdir(&s->fs, &dir, &st)) == 1) {
        if (!local_name_ok(st.name)) {
            fprintf(stderr,
                    "mintflash: storage %s: skipping an entry of %s with an unusable "
                    "name\n",
                    name, remote);
            continue;
        }
        char remote_child[MF_FAT_PATH_MAX], local_child[4096];
        if (!path_join(remote_child, sizeof remote_child, remote, st.name) ||
            !path_join(local_child, sizeof local_child, local, st.name)) {
            mf_cli_error("storage %s: %s/%s: path too long", name, remote, st.name);
            return 1;
        }
        rc = st.is_dir ? get_tree(s, name, remote_child, local_child, depth + 1)
                       : get_file(s, name, remote_child, local_child, true);
    }
    if (!rc && err < 0)
        rc = fat_fail(s, name, remote, err);
    return rc;
}

static int cmd_get(const char *name, int argc, char **argv)
{
    bool recursive = false;
    const struct option_spec specs[] = {{"--recursive", 'r', NULL, &recursive}};
    char *pos[3];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 2, 3, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *remote = pos[1];
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], false);
    if (rc)
        return session_close(s, name, rc);
    struct mf_fat_stat st;
    int err = mf_fat_stat(&s->fs, remote, &st);
    if (err)
        return session_close(s, name, fat_fail(s, name, remote, err));
    if (st.is_dir && !recursive) {
        mf_cli_error("storage get: %s is a folder (add -r to copy it with its contents)", remote);
        return session_close(s, name, 1);
    }
    char leaf[MF_FAT_NAME_UTF8_MAX];
    path_leaf(remote, leaf, sizeof leaf);
    char local[4096];
    const char *given = count > 2 ? pos[2] : NULL;
    struct stat lst;
    if (!given || (stat(given, &lst) == 0 && S_ISDIR(lst.st_mode))) {
        if (!local_name_ok(leaf)) {
            mf_cli_error("storage get: name the local %s for %s (LOCAL)",
                         st.is_dir ? "folder" : "file", remote);
            return session_close(s, name, 2);
        }
        if (!path_join(local, sizeof local, given ? given : ".", leaf)) {
            mf_cli_error("storage get: local path too long");
            return session_close(s, name, 1);
        }
    } else {
        snprintf(local, sizeof local, "%s", given);
    }
    rc = st.is_dir ? get_tree(s, name, remote, local, 0) : get_file(s, name, remote, local, false);
    return session_close(s, name, rc);
}

static int cmd_cat(const char *name, int argc, char **argv)
{
    char *pos[2];
    int count;
    int rc = parse_args(name, argc, argv, NULL, 0, pos, 2, 2, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], false);
    if (rc)
        return session_close(s, name, rc);
    fflush(stdout);
    rc = get_to_fd(s, name, pos[1], STDOUT_FILENO, "standard output");
    return session_close(s, name, rc);
}

/* ---- rm, mkdir, rmdir, mv ---- */

/* Removes a folder and everything below it, one entry at a time: the listing is restarted after
 * every removal, since removing changes the folder being read. */
static int remove_tree(struct session *s, const char *name, const char *path, unsigned depth)
{
    if (depth > MF_FAT_DEPTH_MAX) {
        mf_cli_error("storage %s: %s: folders nested deeper than %u", name, path, MF_FAT_DEPTH_MAX);
        return 1;
    }
    for (;;) {
        struct mf_fat_dir dir;
        struct mf_fat_stat st;
        int err = mf_fat_opendir(&s->fs, &dir, path);
        if (!err)
            err = mf_fat_readdir(&s->fs, &dir, &st);
        if (err < 0)
            return fat_fail(s, name, path, err);
        if (err == 0)
            break;
        char child[MF_FAT_PATH_MAX];
        if (!path_join(child, sizeof child, path, st.name)) {
            mf_cli_error("storage %s: %s/%s: path too long", name, path, st.name);
            return 1;
        }
        if (st.is_dir) {
            int rc = remove_tree(s, name, child, depth + 1);
            if (rc)
                return rc;
        } else {
            err = mf_fat_remove(&s->fs, child);
            if (err)
                return fat_fail(s, name, child, err);
        }
    }
    int err = mf_fat_rmdir(&s->fs, path);
    return err ? fat_fail(s, name, path, err) : 0;
}

static int cmd_rm(const char *name, int argc, char **argv)
{
    bool recursive = false;
    const struct option_spec specs[] = {{"--recursive", 'r', NULL, &recursive}};
    char *pos[2];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 2, 2, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], true);
    if (rc)
        return session_close(s, name, rc);
    struct mf_fat_stat st;
    int err = mf_fat_stat(&s->fs, pos[1], &st);
    if (err)
        return session_close(s, name, fat_fail(s, name, pos[1], err));
    if (st.is_dir && strcmp(st.name, "/") == 0) {
        mf_cli_error("storage rm: refusing to remove the root folder");
        return session_close(s, name, 1);
    }
    if (st.is_dir && !recursive) {
        mf_cli_error("storage rm: %s is a folder (use rmdir, or rm -r to remove it with its "
                     "contents)",
                     pos[1]);
        return session_close(s, name, 1);
    }
    if (st.is_dir)
        rc = remove_tree(s, name, pos[1], 0);
    else if ((err = mf_fat_remove(&s->fs, pos[1])) != 0)
        rc = fat_fail(s, name, pos[1], err);
    return session_close(s, name, rc);
}

static int cmd_mkdir(const char *name, int argc, char **argv)
{
    bool parents = false;
    const struct option_spec specs[] = {{"--parents", 'p', NULL, &parents}};
    char *pos[2];
    int count;
    int rc = parse_args(name, argc, argv, specs, 1, pos, 2, 2, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *path = pos[1];
    if (strlen(path) >= MF_FAT_PATH_MAX) {
        mf_cli_error("storage mkdir: path too long (at most %u bytes)", MF_FAT_PATH_MAX - 1);
        return 2;
    }
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], true);
    if (rc)
        return session_close(s, name, rc);
    if (!parents) {
        int err = mf_fat_mkdir(&s->fs, path);
        return session_close(s, name, err ? fat_fail(s, name, path, err) : 0);
    }
    /* Each prefix ending before a '/' (and the whole path), created when missing. */
    char prefix[MF_FAT_PATH_MAX];
    size_t n = strlen(path);
    for (size_t i = 1; i <= n && !rc; i++) {
        if (i < n && path[i] != '/')
            continue;
        if (path[i - 1] == '/')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        int err = mf_fat_mkdir(&s->fs, prefix);
        if (err == MF_EEXIST && remote_is_dir(s, prefix))
            err = 0;
        if (err)
            rc = fat_fail(s, name, prefix, err);
    }
    return session_close(s, name, rc);
}

static int cmd_rmdir(const char *name, int argc, char **argv)
{
    char *pos[2];
    int count;
    int rc = parse_args(name, argc, argv, NULL, 0, pos, 2, 2, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], true);
    if (rc)
        return session_close(s, name, rc);
    int err = mf_fat_rmdir(&s->fs, pos[1]);
    return session_close(s, name, err ? fat_fail(s, name, pos[1], err) : 0);
}

static int cmd_mv(const char *name, int argc, char **argv)
{
    char *pos[3];
    int count;
    int rc = parse_args(name, argc, argv, NULL, 0, pos, 3, 3, &count);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct session *s = &storage_session;
    rc = session_open(s, name, pos[0], true);
    if (rc)
        return session_close(s, name, rc);
    const char *from = pos[1];
    char to[MF_FAT_PATH_MAX];
    if (remote_is_dir(s, pos[2])) {
        char leaf[MF_FAT_NAME_UTF8_MAX];
        path_leaf(from, leaf, sizeof leaf);
        if (!path_join(to, sizeof to, pos[2], leaf)) {
            mf_cli_error("storage mv: path too long");
            return session_close(s, name, 1);
        }
    } else {
        snprintf(to, sizeof to, "%s", pos[2]);
    }
    int err = mf_fat_rename(&s->fs, from, to);
    if (err == MF_EEXIST) {
        mf_cli_error("storage mv: %s: %s already exists", pos[0], to);
        return session_close(s, name, 1);
    }
    return session_close(s, name, err ? fat_fail(s, name, from, err) : 0);
}

/* ---- dispatch ---- */

static const struct command storage_commands[] = {
    {"init", cmd_init, "init IMG [--size SIZE] [--secure-area] [--label LABEL] [--force]",
     "Creates a storage image: an MBR partition table, partition 1 the public area (FAT,\n"
     "formatted), partition 2 the secure area when --secure-area is given (half the storage,\n"
     "wiped). IMG is a file (created sparse) or a block device.\n\n"
     "  --size SIZE      image size: bytes or 64K, 4M, 128M, 1G ... (default 128M, at least 4M)\n"
     "  --secure-area    reserve half of the storage for a secure area\n"
     "  --label LABEL    volume label of the public area (default MINTFLASH)\n"
     "  -f, --force      overwrite an existing image or a block device (everything is lost)\n"},
    {"info", cmd_info, "info IMG [--json]",
     "Prints the layout: each area's offset and size, the partition types, the public area's\n"
     "FAT type, label, volume id and free space, and whether a secure area exists.\n\n"
     "  --json           the same as one JSON object\n"},
    {"recover", cmd_recover, "recover IMG",
     "Completes a repartition that was interrupted (power cut during init): wipes and formats\n"
     "the areas again. Commands that write do this by themselves.\n"},
    {"ls", cmd_ls, "ls IMG [PATH] [-l]",
     "Lists a folder of the public area (default: the root), or one file.\n\n"
     "  -l, --long       type, size in bytes and modification time of each entry\n"},
    {"put", cmd_put, "put IMG LOCAL [REMOTE] [-r]",
     "Copies a local file into the public area, to REMOTE (default: the root under its own\n"
     "name; into REMOTE when it is a folder or ends with '/'). An existing file is replaced.\n\n"
     "  -r, --recursive  copy a folder with everything in it\n"},
    {"get", cmd_get, "get IMG REMOTE [LOCAL] [-r]",
     "Copies a file of the public area to LOCAL (default: the current folder under its own\n"
     "name; into LOCAL when it is a folder). An existing local file is replaced.\n\n"
     "  -r, --recursive  copy a folder with everything in it\n"},
    {"cat", cmd_cat, "cat IMG REMOTE", "Writes a file of the public area to standard output.\n"},
    {"rm", cmd_rm, "rm IMG PATH [-r]",
     "Removes a file of the public area.\n\n"
     "  -r, --recursive  remove a folder with everything in it\n"},
    {"mkdir", cmd_mkdir, "mkdir IMG PATH [-p]",
     "Creates a folder in the public area.\n\n"
     "  -p, --parents    create missing parent folders too; no error when it exists\n"},
    {"rmdir", cmd_rmdir, "rmdir IMG PATH", "Removes an empty folder of the public area.\n"},
    {"mv", cmd_mv, "mv IMG FROM TO",
     "Renames or moves a file or folder of the public area (into TO when TO is a folder).\n"},
};

#define STORAGE_COMMAND_COUNT (sizeof storage_commands / sizeof storage_commands[0])

static const struct command *storage_command_find(const char *name)
{
    for (size_t i = 0; i < STORAGE_COMMAND_COUNT; i++) {
        if (strcmp(storage_commands[i].name, name) == 0)
            return &storage_commands[i];
    }
    return NULL;
}

static void storage_usage(FILE *out)
{
    fprintf(out,
            "usage: mintflash storage <command> IMG [arguments]\n\n"
            "Storage images: an MBR partition table with the public area (FAT) as partition 1\n"
            "and, when one exists, the secure area as partition 2. The file commands work on\n"
            "the public area only. Paths in the image use '/'.\n\ncommands:\n");
    for (size_t i = 0; i < STORAGE_COMMAND_COUNT; i++)
        fprintf(out, "  %s\n", storage_commands[i].usage);
    fprintf(out, "\n`mintflash storage <command> --help` describes each command.\n");
}

int mf_cli_storage(int argc, char **argv)
{
    if (argc < 2) {
        storage_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        storage_usage(stdout);
        return 0;
    }
    const struct command *c = storage_command_find(argv[1]);
    if (!c) {
        mf_cli_error("storage: unknown command '%s' (try 'mintflash storage --help')", argv[1]);
        return 2;
    }
    return c->run(c->name, argc - 1, argv + 1);
}
