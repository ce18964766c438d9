/* The IP owner's offline tools: `keygen` (owner key pair), `pack` (sealed setup package),
 * `topup` (signed top-up token), `log verify|export` (production records), `sig verify|sign`
 * (per-device UID signatures). Formats: docs/internals/owner.md; walk-through:
 * docs/owner-guide.md. Exit status 0 done, 1 failed or refused, 2 usage error. */
#include "cli.h"

#include "mf_cp437.h"
#include "mf_err.h"
#include "mf_owner.h"
#include "mf_package.h"
#include "mf_proto.h"
#include "mf_record.h"
#include "mf_token.h"
#include "mf_uidsig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OWNER_DEPTH_MAX 32u /* folder depth of a setup folder we walk */

/* ---- shared helpers ---- */

static int owner_usage_error(const char *group, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int owner_usage_error(const char *group, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mintflash: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try 'mintflash %s --help')\n", group);
    va_end(ap);
    return 2;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

/* One option of a command: its names, whether it repeats, where its value(s) go. */
struct owner_option {
    const char *name;  /* "--owner-key" */
    const char *alias; /* "-o" or NULL */
    const char **value;
    const char **values; /* repeatable: up to `max` values, count in *count */
    unsigned *count, max;
    bool *flag; /* no value */
};

/* Parses argv[first..] against `options`; the rest goes to `operands` (at most `max_operands`,
 * counted in *operand_count). Returns 0 or 2 after printing the usage error. */
static int owner_parse(const char *group, int argc, char **argv, int first,
                       const struct owner_option *options, size_t option_count,
                       const char **operands, unsigned max_operands, unsigned *operand_count)
{
    *operand_count = 0;
    bool only_operands = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_operands && strcmp(arg, "--") == 0) {
            only_operands = true;
            continue;
        }
        if (only_operands || arg[0] != '-' || arg[1] == '\0') {
            if (*operand_count == max_operands)
                return owner_usage_error(group, "unexpected argument '%s'", arg);
            operands[(*operand_count)++] = arg;
            continue;
        }
        const struct owner_option *o = NULL;
        const char *value = NULL;
        for (size_t k = 0; k < option_count && !o; k++) {
            size_t n = strlen(options[k].name);
            if (strcmp(arg, options[k].name) == 0 ||
                (options[k].alias && strcmp(arg, options[k].alias) == 0))
                o = &options[k];
            else if (strncmp(arg, options[k].name, n) == 0 && arg[n] == '=') {
                o = &options[k];
                value = arg + n + 1;
            }
        }
        if (!o)
            return owner_usage_error(group, "unknown option '%s'", arg);
        if (o->flag) {
            if (value)
                return owner_usage_error(group, "option '%s' takes no value", o->name);
            *o->flag = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc)
                return owner_usage_error(group, "option '%s' needs a value", arg);
            value = argv[++i];
        }
        if (!*value)
            return owner_usage_error(group, "option '%s' needs a non-empty value", o->name);
        if (o->values) {
            if (*o->count == o->max)
                return owner_usage_error(group, "at most %u times '%s'", o->max, o->name);
            o->values[(*o->count)++] = value;
        } else {
            if (*o->value)
                return owner_usage_error(group, "option '%s' given twice", o->name);
            *o->value = value;
        }
    }
    return 0;
}

/* Reads a whole small file (at most `max` bytes) into a malloc'd buffer. 0 or 1 (printed). */
static int read_small(const char *path, size_t max, char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mf_cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        mf_cli_error("%s: cannot read it", path);
        free(buf);
        return 1;
    }
    if (n > max) {
        mf_cli_error("%s: larger than %zu bytes: not the expected file", path, max);
        free(buf);
        return 1;
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return 0;
}

static int load_programmer(const char *path, struct mf_owner_programmer *p)
{
    char *text, message[MF_OWNER_MESSAGE_MAX];
    size_t n;
    if (read_small(path, MF_OWNER_FILE_MAX, &text, &n))
        return 1;
    int err = mf_owner_parse_programmer(text, n, p, message);
    free(text);
    if (err) {
        mf_cli_error("%s: %s", path, message);
        return 1;
    }
    return 0;
}

static int load_owner_public(const char *path, struct mf_owner_key *key)
{
    char *text, message[MF_OWNER_MESSAGE_MAX];
    size_t n;
    if (read_small(path, MF_OWNER_FILE_MAX, &text, &n))
        return 1;
    int err = mf_owner_parse_public(text, n, key, message);
    free(text);
    if (err) {
        mf_cli_error("%s: %s", path, message);
        return 1;
    }
    return 0;
}

/* Reads an owner secret key file; refuses one that others may read. */
static int load_owner_secret(const char *path, uint8_t seed[32])
{
    struct stat st;
    if (stat(path, &st) != 0) {
        mf_cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        mf_cli_error("%s: not a regular file", path);
        return 1;
    }
    char *text, message[MF_OWNER_MESSAGE_MAX];
    size_t n;
    if (read_small(path, MF_OWNER_FILE_MAX, &text, &n))
        return 1;
    int err = mf_owner_parse_secret(text, n, seed, message);
    sodium_memzero(text, n);
    free(text);
    if (err) {
        mf_cli_error("%s: %s", path, message);
        return 1;
    }
    /* Checked after the format, so that a .pub given by mistake is named as such. */
    if (st.st_mode & 077) {
        mf_cli_error("%s: mode %04o lets others read the secret key: refused (chmod 600 %s)", path,
                     (unsigned)(st.st_mode & 07777), path);
        sodium_memzero(seed, 32);
        return 1;
    }
    return 0;
}

/* Writes `data` to a new file `path` (mode `mode`; O_EXCL when `exclusive`), synced. */
static int write_new(const char *path, const void *data, size_t size, mode_t mode, bool exclusive)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC), mode);
    if (fd < 0) {
        mf_cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    const uint8_t *p = data;
    size_t done = 0;
    int failed = fchmod(fd, mode) != 0;
    while (!failed && done < size) {
        ssize_t n = write(fd, p + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            failed = 1;
        else
            done += (size_t)n;
    }
    if (!failed && fsync(fd) != 0)
        failed = 1;
    if (close(fd) != 0)
        failed = 1;
    if (failed) {
        mf_cli_error("%s: cannot write it: %s", path, strerror(errno));
        unlink(path);
        return 1;
    }
    return 0;
}

/* A setup id: 64 hex digits, or a .mfp package whose header names it. */
static int parse_setup(const char *group, const char *text, uint8_t id[32]);

static int hex_arg(const char *text, uint8_t *out, size_t max, size_t *length)
{
    if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
        text += 2;
    size_t n = strlen(text);
    if (n == 0 || n % 2 || n / 2 > max || mf_owner_hex_decode(text, n, out, n / 2))
        return -1;
    *length = n / 2;
    return 0;
}

static void print_time(const char *label, int64_t t)
{
    char text[MF_OWNER_TIME_SIZE];
    mf_owner_time_format(t, text);
    printf("%s: %s\n", label, text);
}

/* ---- keygen ---- */

static const char keygen_usage_text[] =
    "usage: mintflash keygen -o PREFIX\n"
    "\n"
    "Makes an owner signing key pair (Ed25519):\n"
    "  PREFIX.key  the secret key (mode 0600). Keep it safe and never share it: whoever has it\n"
    "              can sign setup packages and top-ups as you.\n"
    "  PREFIX.pub  the public key: pin it on programmers (securearea create --owner), build it\n"
    "              into firmware that checks UID signatures.\n"
    "Existing files are never overwritten. Prints the key's fingerprint.\n";

int mf_cli_keygen(int argc, char **argv)
{
    if (argc >= 2 && is_help(argv[1])) {
        fputs(keygen_usage_text, stdout);
        return 0;
    }
    const char *prefix = NULL, *operands[1];
    unsigned n;
    struct owner_option options[] = {{.name = "--output", .alias = "-o", .value = &prefix}};
    int rc = owner_parse("keygen", argc, argv, 1, options, 1, operands, 0, &n);
    if (rc)
        return rc;
    if (!prefix)
        return owner_usage_error("keygen", "keygen needs -o PREFIX");
    size_t len = strlen(prefix);
    if (len > PATH_MAX - 8)
        return owner_usage_error("keygen", "PREFIX is too long");
    /* "keys/" would make the hidden keys/.key and keys/.pub; "keys/." and "keys/.." name folders
     * too (keys/..key, keys/...pub). */
    const char *base = strrchr(prefix, '/');
    base = base ? base + 1 : prefix;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return owner_usage_error("keygen", "PREFIX names the files, not a folder: give e.g. "
                                           "keys/owner for keys/owner.key and keys/owner.pub");
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    snprintf(key_path, sizeof key_path, "%s.key", prefix);
    snprintf(pub_path, sizeof pub_path, "%s.pub", prefix);
    struct stat st;
    for (int i = 0; i < 2; i++) {
        const char *path = i ? pub_path : key_path;
        if (lstat(path, &st) == 0) {
            mf_cli_error("%s exists: refusing to overwrite a key (remove it first, or choose "
                         "another PREFIX)",
                         path);
            return 1;
        }
    }
    uint8_t seed[32], pk[32], sk[64];
    randombytes_buf(seed, sizeof seed);
    mf_owner_keypair_from_seed(seed, pk, sk);
    sodium_memzero(sk, sizeof sk);
    struct mf_owner_key key;
    mf_owner_key_from_public(pk, &key);
    char secret_text[MF_OWNER_FILE_MAX], public_text[MF_OWNER_FILE_MAX];
    mf_owner_format_secret(seed, secret_text, sizeof secret_text);
    sodium_memzero(seed, sizeof seed);
    mf_owner_format_public(&key, public_text, sizeof public_text);
    rc = write_new(key_path, secret_text, strlen(secret_text), 0600, true);
    sodium_memzero(secret_text, sizeof secret_text);
    if (rc)
        return 1;
    if (write_new(pub_path, public_text, strlen(public_text), 0644, true)) {
        unlink(key_path);
        return 1;
    }
    printf("fingerprint: %s\nsecret key: %s\npublic key: %s\n", key.fingerprint, key_path,
           pub_path);
    return 0;
}

/* ---- pack ---- */

static const char pack_usage_text[] =
    "usage: mintflash pack --owner-key OWNER.key --to PROGRAMMER.pub [--to PROGRAMMER.pub ...]\n"
    "                      [--not-before DATE] [--not-after DATE] -o SETUP.mfp DIR\n"
    "\n"
    "Packs the production setup in DIR (what you would copy into _SECURE: FLASHER.INI,\n"
    "Cntdown.txt, Projects/...) into one file, encrypted so that only the named programmers can\n"
    "read it and signed with your key. Every file under DIR goes in. Prints the setup id (64 hex\n"
    "digits) on standard output, a summary on standard error.\n"
    "\n"
    "options:\n"
    "  --owner-key FILE    your secret key (mintflash keygen)\n"
    "  --to FILE           a programmer's public file (mintflash identity); up to 64\n"
    "  --not-before DATE   the programmers refuse it before DATE (default: an hour ago);\n"
    "                      a programmer installs only a package whose not-before time is\n"
    "                      later than that of the last package it installed\n"
    "  --not-after DATE    ... and after DATE\n"
    "  -o, --output FILE   the package to write\n"
    "DATE is YYYY-MM-DD (UTC; --not-before: the start of that day, --not-after: its end) or\n"
    "YYYY-MM-DDThh:mm:ssZ.\n";

struct pack_files {
    struct mf_package_input *files;
    char **paths; /* full paths on this machine */
    uint32_t count, capacity;
    int fd;
    uint32_t fd_index;
};

static int pack_add(struct pack_files *pf, const char *full, const char *relative, uint64_t size)
{
    if (pf->count == MF_PACKAGE_FILES_MAX) {
        mf_cli_error("the setup has more than %u files: a package holds at most %u",
                     MF_PACKAGE_FILES_MAX, MF_PACKAGE_FILES_MAX);
        return 1;
    }
    if (pf->count == pf->capacity) {
        uint32_t cap = pf->capacity ? pf->capacity * 2 : 64;
        void *a = realloc(pf->files, cap * sizeof *pf->files);
        if (a)
            pf->files = a;
        void *b = a ? realloc(pf->paths, cap * sizeof *pf->paths) : NULL;
        if (!b) {
            mf_cli_error("out of memory");
            return 1;
        }
        pf->paths = b;
        pf->capacity = cap;
    }
    char *f = strdup(full), *r = strdup(relative);
    if (!f || !r) {
        free(f);
        free(r);
        mf_cli_error("out of memory");
        return 1;
    }
    pf->paths[pf->count] = f;
    pf->files[pf->count].path = r; /* freed by pack_free */
    pf->files[pf->count].size = size;
    pf->count++;
    return 0;
}

static void pack_free(struct pack_files *pf)
{
    for (uint32_t i = 0; i < pf->count; i++) {
        free(pf->paths[i]);
        free((char *)pf->files[i].path);
    }
    free(pf->paths);
    free(pf->files);
    if (pf->fd >= 0)
        close(pf->fd);
}

/* Collects every file under `root`, without recursion on the folder depth. */
static int pack_walk(struct pack_files *pf, const char *root)
{
    struct pending {
        char relative[MF_PACKAGE_PATH_MAX + 1];
        unsigned depth;
    } *stack = NULL;
    size_t top = 0, capacity = 0;
    int rc = 0;
    char relative[MF_PACKAGE_PATH_MAX + 1] = "";
    unsigned depth = 0;
    for (;;) {
        char dir_path[PATH_MAX];
        int len =
            snprintf(dir_path, sizeof dir_path, "%s%s%s", root, relative[0] ? "/" : "", relative);
        if (len < 0 || (size_t)len >= sizeof dir_path) {
            mf_cli_error("%s/%s: path too long", root, relative);
            rc = 1;
            break;
        }
        DIR *d = opendir(dir_path);
        if (!d) {
            mf_cli_error("%s: %s", dir_path, strerror(errno));
            rc = 1;
            break;
        }
        struct dirent *e;
        while (!rc && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char rel[PATH_MAX], full[PATH_MAX];
            int n =
                snprintf(rel, sizeof rel, "%s%s%s", relative, relative[0] ? "/" : "", e->d_name);
            if (n < 0 || (size_t)n > MF_PACKAGE_PATH_MAX) {
                mf_cli_error("%s/%s%s%s: the path inside the setup is longer than %u bytes", root,
                             relative, relative[0] ? "/" : "", e->d_name, MF_PACKAGE_PATH_MAX);
                rc = 1;
                break;
            }
            if (snprintf(full, sizeof full, "%s/%s", root, rel) >= (int)sizeof full) {
                mf_cli_error("%s/%s: path too long", root, rel);
                rc = 1;
                break;
            }
            struct stat st;
            if (stat(full, &st) != 0) {
                mf_cli_error("%s: %s", full, strerror(errno));
                rc = 1;
            } else if (S_ISDIR(st.st_mode)) {
                if (depth + 1 >= OWNER_DEPTH_MAX) {
                    mf_cli_error("%s: folders nested deeper than %u", full, OWNER_DEPTH_MAX);
                    rc = 1;
                } else if (top == capacity) {
                    size_t cap = capacity ? capacity * 2 : 16;
                    void *p =
                        cap <= MF_PACKAGE_FILES_MAX ? realloc(stack, cap * sizeof *stack) : NULL;
                    if (!p) {
                        mf_cli_error("%s: too many folders", root);
                        rc = 1;
                    } else {
                        stack = p;
                        capacity = cap;
                    }
                }
                if (!rc) {
                    memcpy(stack[top].relative, rel, strlen(rel) + 1);
                    stack[top++].depth = depth + 1;
                }
            } else if (S_ISREG(st.st_mode)) {
                rc = pack_add(pf, full, rel, (uint64_t)st.st_size);
            } else {
                mf_cli_error("%s: neither a file nor a folder", full);
                rc = 1;
            }
        }
        closedir(d);
        if (rc || top == 0)
            break;
        top--;
        memcpy(relative, stack[top].relative, sizeof relative);
        depth = stack[top].depth;
    }
    free(stack);
    return rc;
}

static int pack_read(void *context, uint32_t index, uint64_t offset, void *buffer, size_t length)
{
    struct pack_files *pf = context;
    if (pf->fd < 0 || pf->fd_index != index) {
        if (pf->fd >= 0)
            close(pf->fd);
        pf->fd = open(pf->paths[index], O_RDONLY | O_CLOEXEC);
        pf->fd_index = index;
        if (pf->fd < 0)
            return errno == ENOENT ? MF_ENOENT : errno == EACCES ? MF_EACCES : MF_EIO;
    }
    uint8_t *p = buffer;
    for (size_t done = 0; done < length;) {
        ssize_t n = pread(pf->fd, p + done, length - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MF_EIO; /* shorter than it was when listed, or unreadable */
        done += (size_t)n;
    }
    return 0;
}

struct pack_out {
    FILE *f;
    uint64_t bytes;
};

static int pack_write(void *context, const void *data, size_t length)
{
    struct pack_out *o = context;
    if (fwrite(data, 1, length, o->f) != length)
        return MF_EIO;
    o->bytes += length;
    return 0;
}

/* Is `out` (a file to create) inside the folder `dir`? Then packing would read it. */
static bool inside(const char *out, const char *dir)
{
    char parent[PATH_MAX], real_parent[PATH_MAX], real_dir[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash)
        *(slash == parent ? slash + 1 : slash) = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    if (!realpath(parent, real_parent) || !realpath(dir, real_dir))
        return false;
    size_t n = strlen(real_dir);
    return strncmp(real_parent, real_dir, n) == 0 &&
           (real_parent[n] == '\0' || real_parent[n] == '/' || strcmp(real_dir, "/") == 0);
}

static int parse_date(const char *group, const char *option, const char *text, bool end_of_day,
                      int64_t *t)
{
    size_t n = strlen(text);
    if (mf_owner_time_parse(text, n, true, t))
        return owner_usage_error(group, "%s: bad date '%s' (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)",
                                 option, text);
    if (n == 10 && end_of_day)
        *t += 86399;
    if (*t <= 0)
        return owner_usage_error(group, "%s: a date after 1970 please", option);
    return 0;
}

int mf_cli_pack(int argc, char **argv)
{
    if (argc >= 2 && is_help(argv[1])) {
        fputs(pack_usage_text, stdout);
        return 0;
    }
    const char *owner_key = NULL, *output = NULL, *not_before = NULL, *not_after = NULL;
    const char *to[MF_PACKAGE_RECIPIENTS_MAX + 1], *operands[1];
    unsigned to_count = 0, n;
    struct owner_option options[] = {
        {.name = "--owner-key", .value = &owner_key},
        {.name = "--to", .values = to, .count = &to_count, .max = MF_PACKAGE_RECIPIENTS_MAX},
        {.name = "--not-before", .value = &not_before},
        {.name = "--not-after", .value = &not_after},
        {.name = "--output", .alias = "-o", .value = &output},
    };
    int rc = owner_parse("pack", argc, argv, 1, options, 5, operands, 1, &n);
    if (rc)
        return rc;
    if (!owner_key || !to_count || !output || n != 1)
        return owner_usage_error("pack", "pack needs --owner-key, at least one --to, -o and DIR");
    int64_t nb = 0, na = 0;
    if (not_before && (rc = parse_date("pack", "--not-before", not_before, false, &nb)) != 0)
        return rc;
    /* Programmers install only packages newer than the last one they installed, by this time
     * (a replayed package is refused): without --not-before it is the packing time, an hour
     * early for programmers whose clocks lag. */
    if (!not_before)
        nb = (int64_t)time(NULL) - 3600;
    if (not_after && (rc = parse_date("pack", "--not-after", not_after, true, &na)) != 0)
        return rc;
    if (nb && na && na < nb)
        return owner_usage_error("pack", not_before ? "--not-after is before --not-before"
                                                    : "--not-after is in the past");
    const char *dir = operands[0];
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        mf_cli_error("%s: not a folder", dir);
        return 1;
    }
    if (inside(output, dir)) {
        mf_cli_error("%s: the package would be inside the folder it packs", output);
        return 1;
    }

    uint8_t(*recipients)[32] = calloc(to_count, 32);
    if (!recipients) {
        mf_cli_error("out of memory");
        return 1;
    }
    for (unsigned i = 0; i < to_count && !rc; i++) {
        struct mf_owner_programmer p;
        rc = load_programmer(to[i], &p);
        if (!rc)
            memcpy(recipients[i], p.x25519, 32);
    }
    uint8_t seed[32];
    if (!rc)
        rc = load_owner_secret(owner_key, seed);
    struct pack_files pf = {.fd = -1};
    if (!rc)
        rc = pack_walk(&pf, dir);
    if (!rc && pf.count == 0) {
        mf_cli_error("%s: no files to pack", dir);
        rc = 1;
    }
    char part[PATH_MAX];
    struct pack_out out = {NULL, 0};
    if (!rc) {
        int len = snprintf(part, sizeof part, "%s.part", output);
        int fd = len > 0 && (size_t)len < sizeof part
                     ? open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                     : (errno = ENAMETOOLONG, -1);
        out.f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!out.f) {
            mf_cli_error("%s: %s", part, strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = 1;
        }
    }
    uint8_t setup_id[32];
    if (!rc) {
        struct mf_package_spec spec = {
            .files = pf.files,
            .file_count = pf.count,
            .read = pack_read,
            .read_context = &pf,
            .recipients = (const uint8_t(*)[32])recipients,
            .recipient_count = to_count,
            .not_before = nb,
            .not_after = na,
            .owner_seed = seed,
            .write = pack_write,
            .write_context = &out,
        };
        char message[MF_PACKAGE_MESSAGE_MAX];
        int err = mf_package_write(&spec, setup_id, message);
        if (err)
            mf_cli_error("%s: %s", dir, message);
        const char *failed = NULL;
        if (!err && (fflush(out.f) != 0 || fsync(fileno(out.f)) != 0))
            failed = part;
        if (fclose(out.f) != 0 && !err && !failed)
            failed = part;
        if (!err && !failed && rename(part, output) != 0)
            failed = output;
        if (failed)
            mf_cli_error("%s: %s", failed, strerror(errno));
        if (err || failed) {
            unlink(part);
            rc = 1;
        }
    }
    sodium_memzero(seed, sizeof seed);
    if (!rc) {
        char hex[65];
        mf_owner_hex_encode(setup_id, 32, hex);
        uint64_t total = 0;
        for (uint32_t i = 0; i < pf.count; i++)
            total += pf.files[i].size;
        printf("%s\n", hex);
        fprintf(stderr, "packed %u files (%llu bytes) for %u programmer%s into %s (%llu bytes)\n",
                pf.count, (unsigned long long)total, to_count, to_count == 1 ? "" : "s", output,
                (unsigned long long)out.bytes);
    }
    pack_free(&pf);
    free(recipients);
    return rc;
}

/* ---- topup ---- */

static const char topup_usage_text[] =
    "usage: mintflash topup --owner-key OWNER.key --programmer PROGRAMMER.pub\n"
    "                       (--package SETUP.mfp | --setup ID --package-time TIME)\n"
    "                       [--project NAME] --limit N -o TOPUP.mft\n"
    "\n"
    "Makes a signed top-up token: on that programmer, for the installation of that package, the\n"
    "project NAME (its folder name, with or without the NN_ prefix; without --project: the root\n"
    "Cntdown.txt) may make N devices in total. N is absolute: a token used twice adds nothing,\n"
    "and one with a lower N than the programmer's current limit is refused as stale. The token\n"
    "applies only while that very package is installed: a later package of the same setup needs\n"
    "a token of its own.\n"
    "\n"
    "options:\n"
    "  --owner-key FILE     your secret key (the one that signed the package)\n"
    "  --programmer FILE    the programmer's public file\n"
    "  --package FILE       the installed package (.mfp): its setup id and not-before time are\n"
    "                       read from its header (no key needed)\n"
    "  --setup ID           without the package: its setup id (64 hex digits, as pack prints it)\n"
    "  --package-time TIME  and its not-before time, to the second: YYYY-MM-DDThh:mm:ssZ, or\n"
    "                       YYYY-MM-DD for the start of that day (as pack --not-before takes it)\n"
    "  --project NAME       the project (default: the root count)\n"
    "  --limit N            the new total limit, 0..4294967295\n"
    "  -o, --output FILE    the token to write\n";

static int fd_read_at(void *context, uint64_t offset, void *buffer, size_t length)
{
    int fd = *(int *)context;
    uint8_t *p = buffer;
    for (size_t done = 0; done < length;) {
        ssize_t n = pread(fd, p + done, length - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MF_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int parse_setup(const char *group, const char *text, uint8_t id[32])
{
    if (strlen(text) == 64 && mf_owner_hex_decode(text, 64, id, 32) == 0)
        return 0;
    int fd = open(text, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return owner_usage_error(group, "--setup: '%s' is neither 64 hex digits nor a package",
                                 text);
    }
    struct mf_package_header h;
    char message[MF_PACKAGE_MESSAGE_MAX];
    int err = mf_package_read_header(fd_read_at, &fd, (uint64_t)st.st_size, &h, NULL, 0, message);
    close(fd);
    if (err) {
        mf_cli_error("--setup: %s: %s", text, message);
        return 1;
    }
    memcpy(id, h.setup_id, 32);
    return 0;
}

/* The installation a token is for, from the package's header: its setup id and not-before time.
 * The package must be addressed to the programmer and signed by the owner's key, or no token for
 * it could ever apply. */
static int topup_package(const char *path, const struct mf_owner_programmer *programmer,
                         const uint8_t owner[32], struct mf_token *token)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        mf_cli_error("--package: %s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return 1;
    }
    uint8_t recipients[MF_PACKAGE_RECIPIENTS_MAX][32];
    struct mf_package_header h;
    char message[MF_PACKAGE_MESSAGE_MAX];
    int err = mf_package_read_header(fd_read_at, &fd, (uint64_t)st.st_size, &h, recipients,
                                     MF_PACKAGE_RECIPIENTS_MAX, message);
    close(fd);
    if (err) {
        mf_cli_error("--package: %s: %s", path, message);
        return 1;
    }
    if (h.not_before <= 0) {
        mf_cli_error("--package: %s has no not-before time: no programmer installs it", path);
        return 1;
    }
    bool addressed = false;
    for (uint32_t i = 0; i < h.recipient_count && i < MF_PACKAGE_RECIPIENTS_MAX; i++)
        addressed |= sodium_memcmp(recipients[i], programmer->x25519, 32) == 0;
    if (!addressed) {
        mf_cli_error("--package: %s is not addressed to programmer %s: it cannot be installed "
                     "there, so no token for it applies",
                     path, programmer->fingerprint);
        return 1;
    }
    if (sodium_memcmp(h.owner, owner, 32) != 0) {
        struct mf_owner_key signer, yours;
        mf_owner_key_from_public(h.owner, &signer);
        mf_owner_key_from_public(owner, &yours);
        mf_cli_error("--package: %s is signed by owner %s, but --owner-key is owner %s: only "
                     "the package's owner can top it up",
                     path, signer.fingerprint, yours.fingerprint);
        return 1;
    }
    memcpy(token->setup_id, h.setup_id, 32);
    token->package_time = h.not_before;
    return 0;
}

int mf_cli_topup(int argc, char **argv)
{
    if (argc >= 2 && is_help(argv[1])) {
        fputs(topup_usage_text, stdout);
        return 0;
    }
    const char *owner_key = NULL, *programmer = NULL, *package = NULL, *setup = NULL,
               *package_time = NULL, *project = NULL, *limit = NULL, *output = NULL, *operands[1];
    unsigned n;
    struct owner_option options[] = {
        {.name = "--owner-key", .value = &owner_key},
        {.name = "--programmer", .value = &programmer},
        {.name = "--package", .value = &package},
        {.name = "--setup", .value = &setup},
        {.name = "--package-time", .value = &package_time},
        {.name = "--project", .value = &project},
        {.name = "--limit", .value = &limit},
        {.name = "--output", .alias = "-o", .value = &output},
    };
    int rc = owner_parse("topup", argc, argv, 1, options, 8, operands, 0, &n);
    if (rc)
        return rc;
    if (!owner_key || !programmer || !(package || setup) || !limit || !output)
        return owner_usage_error("topup", "topup needs --owner-key, --programmer, --package (or "
                                          "--setup and --package-time), --limit and -o");
    if (package && (setup || package_time))
        return owner_usage_error("topup", "--package names the setup and its time: no --setup "
                                          "or --package-time with it");
    if (setup && !package_time)
        return owner_usage_error("topup",
                                 "--setup needs --package-time, the not-before time of the "
                                 "installed package (a token tops up one installation), or "
                                 "give the package with --package");
    struct mf_token token;
    memset(&token, 0, sizeof token);
    if (setup && (strlen(setup) != 64 || mf_owner_hex_decode(setup, 64, token.setup_id, 32) != 0))
        return owner_usage_error("topup",
                                 "--setup: '%s' is not 64 hex digits (a package goes with "
                                 "--package)",
                                 setup);
    if (setup &&
        (rc = parse_date("topup", "--package-time", package_time, false, &token.package_time)) != 0)
        return rc;
    uint64_t value;
    if (mf_cli_parse_u64(limit, &value) || value > UINT32_MAX)
        return owner_usage_error("topup", "--limit: '%s' is not a number from 0 to 4294967295",
                                 limit);
    token.limit = value;
    if (project) {
        size_t len = strlen(project);
        if (len > MF_TOKEN_NAME_MAX || strchr(project, '/') || !mf_owner_text_ok(project, len))
            return owner_usage_error("topup",
                                     "--project: '%s' is not a project folder name (no '/', at "
                                     "most %u bytes)",
                                     project, MF_TOKEN_NAME_MAX);
        memcpy(token.project, project, len + 1);
    }
    struct mf_owner_programmer p;
    if (load_programmer(programmer, &p))
        return 1;
    memcpy(token.programmer_id, p.id, 32);
    token.issued = (int64_t)time(NULL);
    uint8_t seed[32], pk[32], sk[64], data[MF_TOKEN_SIZE_MAX];
    if (load_owner_secret(owner_key, seed))
        return 1;
    mf_owner_keypair_from_seed(seed, pk, sk);
    sodium_memzero(sk, sizeof sk);
    if (package && topup_package(package, &p, pk, &token) != 0) {
        sodium_memzero(seed, sizeof seed);
        return 1;
    }
    size_t size;
    int err = mf_token_encode(&token, seed, data, sizeof data, &size);
    sodium_memzero(seed, sizeof seed);
    if (err) {
        mf_cli_error("cannot make the token: %s", mf_strerror(err));
        return 1;
    }
    if (write_new(output, data, size, 0644, false))
        return 1;
    char hex[65], when[MF_OWNER_TIME_SIZE];
    mf_owner_hex_encode(token.setup_id, 32, hex);
    mf_owner_time_format(token.package_time, when);
    printf("top-up for programmer %s, setup %.16s... (package of %s), %s%s: limit %llu -> %s\n",
           p.fingerprint, hex, when, project ? "project " : "the root count",
           project ? project : "", (unsigned long long)token.limit, output);
    return 0;
}

/* ---- log ---- */

static const char log_usage_text[] =
    "usage: mintflash log verify --programmer PROGRAMMER.pub [--head HEAD [--nonce HEX]] "
    "RECORDS...\n"
    "       mintflash log export --csv|--json RECORDS...\n"
    "\n"
    "Production records: the RECORDS.000, RECORDS.001, ... files a programmer writes into its\n"
    "public area, one signed and hash-chained line per cycle. Give the files in their order.\n"
    "\n"
    "  verify   checks every signature and the chain: any edited, forged, deleted or reordered\n"
    "           record is reported with its file and line, and so are the programmer's gap\n"
    "           records (it found its newest records deleted), a second chain, and counts of\n"
    "           its trust anchor's counter that no record accounts for. --head takes the head\n"
    "           statement `mintflash records` fetched (DIR/HEAD; given among the files it is\n"
    "           taken the same): the records must then end at the programmer's newest\n"
    "           record; --nonce (64 hex digits) is the nonce you gave `records --nonce`, which\n"
    "           proves the head fresh. Prints the proven totals per project. Exit status 0\n"
    "           when everything is intact, 1 when not.\n"
    "  export   prints every record as CSV or JSON (no checks: run verify for those; a head\n"
    "           statement among the files is skipped). Bytes of a name that are not UTF-8\n"
    "           become U+FFFD; JSON escapes control characters, CSV turns them into U+FFFD\n"
    "           and puts an apostrophe before a field that starts with = + - or @.\n";

typedef int (*line_fn)(void *context, const char *file, uint64_t line, const char *text,
                       size_t length);

/* Feeds every line of `path` to `each`, bounded: a longer line is handed over cut at
 * MF_RECORD_LINE_MAX + 1 bytes (so the parser refuses it). 0, 1 (printed), or each's value. */
static int each_line(const char *path, line_fn each, void *context)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mf_cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    char buf[MF_RECORD_LINE_MAX + 2];
    uint64_t line = 0;
    int rc = 0;
    for (;;) {
        size_t n = 0;
        int c = EOF;
        bool any = false;
        while ((c = getc(f)) != EOF) {
            any = true;
            if (n < sizeof buf)
                buf[n++] = (char)c;
            if (c == '\n')
                break;
        }
        if (!any)
            break;
        line++;
        rc = each(context, path, line, buf, n);
        if (rc || c == EOF)
            break;
    }
    if (!rc && ferror(f)) {
        mf_cli_error("%s: cannot read it", path);
        rc = 1;
    }
    fclose(f);
    return rc;
}

static const char *const problem_names[MF_RECORD_PROBLEM_KINDS] = {
    "malformed",  "bad signature", "foreign record", "chain break",
    "gap record", "counter",       "head",           "note: torn line"};

/* A file's name as given (a control character in it, C1 written as UTF-8 too, shown as <hh>: a
 * name is printed to a terminal). */
static void verify_report(void *context, enum mf_record_problem problem, const char *where,
                          uint64_t line, const char *message)
{
    (void)context;
    char shown[MF_PROTO_ESCAPED_SIZE(PATH_MAX)];
    mf_proto_escape(where, false, shown, sizeof shown);
    printf("%s:%llu: %s: %s\n", shown, (unsigned long long)line, problem_names[problem], message);
}

/* A head statement among the files (`records` writes DIR/HEAD beside them, and a glob of DIR takes
 * it in) is taken as if given with --head: a line is a head or a record by its first word. */
struct verify_context {
    struct mf_record_verifier *v;
    const uint8_t *nonce; /* NULL: not compared */
};

static bool is_head_line(const char *text, size_t length)
{
    return length >= 5 && memcmp(text, "MFH1 ", 5) == 0;
}

static int verify_line(void *context, const char *file, uint64_t line, const char *text,
                       size_t length)
{
    struct verify_context *c = context;
    if (is_head_line(text, length)) {
        mf_record_verifier_head(c->v, file, line, text, length, c->nonce);
        return 0;
    }
    int err = mf_record_verifier_line(c->v, file, line, text, length);
    if (err) {
        mf_cli_error("%s:%llu: %s (more than %u projects?)", file, (unsigned long long)line,
                     mf_strerror(err), MF_RECORD_TOTALS_MAX);
        return 1;
    }
    return 0;
}

/* The setups the proven records name (the totals are per setup and project). */
static size_t count_setups(const struct mf_record_verifier *v)
{
    size_t n = 0;
    for (size_t i = 0; i < v->total_count; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = memcmp(v->totals[k].setup, v->totals[i].setup, 32) == 0;
        n += seen ? 0 : 1;
    }
    return n;
}

/* What the head statement proves about the end of the records. */
static void print_head(const struct mf_record_verifier *v, bool given, bool nonce_given)
{
    if (!given) {
        printf("head: none given: records deleted after the last one cannot show (give the HEAD "
               "that `mintflash records` fetches with them)\n");
        return;
    }
    if (!v->has_head) {
        printf("head: not valid (see above)\n");
        return;
    }
    const struct mf_record_head *h = &v->head;
    char when[MF_OWNER_TIME_SIZE];
    mf_owner_time_format(h->time, when);
    printf("head: seq %llu, counter %llu, pending %llu, at %s, nonce %s",
           (unsigned long long)h->seq, (unsigned long long)h->counter,
           (unsigned long long)h->pending, when,
           nonce_given ? "matches" : "not compared (give --nonce to prove the head fresh)");
    if (v->missing_after)
        printf(": %llu record(s) missing after the last one", (unsigned long long)v->missing_after);
    putchar('\n');
}

static int log_verify(int argc, char **argv)
{
    const char *programmer = NULL, *head = NULL, *nonce_text = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) {
        mf_cli_error("out of memory");
        return 1;
    }
    unsigned n;
    struct owner_option options[] = {{.name = "--programmer", .value = &programmer},
                                     {.name = "--head", .value = &head},
                                     {.name = "--nonce", .value = &nonce_text}};
    int rc = owner_parse("log", argc, argv, 2, options, 3, files, (unsigned)argc, &n);
    if (!rc && (!programmer || n == 0))
        rc = owner_usage_error("log", "log verify needs --programmer and RECORDS files");
    uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE];
    if (!rc && nonce_text &&
        (strlen(nonce_text) != 2 * sizeof nonce ||
         mf_owner_hex_decode(nonce_text, strlen(nonce_text), nonce, sizeof nonce) != 0))
        rc = owner_usage_error("log", "--nonce takes 64 hex digits");
    struct mf_owner_programmer p;
    if (!rc && load_programmer(programmer, &p))
        rc = 1;
    char *head_text = NULL;
    size_t head_size = 0;
    if (!rc && head && read_small(head, MF_RECORD_LINE_MAX + 2, &head_text, &head_size))
        rc = 1;
    if (rc) {
        free(files);
        return rc;
    }
    struct mf_record_verifier v;
    mf_record_verifier_init(&v, &p, verify_report, NULL);
    struct verify_context context = {&v, nonce_text ? nonce : NULL};
    if (head_text)
        mf_record_verifier_head(&v, head, 1, head_text, head_size, context.nonce);
    free(head_text);
    for (unsigned i = 0; i < n && !rc; i++)
        rc = each_line(files[i], verify_line, &context);
    free(files);
    if (rc) {
        mf_record_verifier_free(&v);
        return 1;
    }
    /* A nonce asks for a fresh head: none at all is not a fresh one. */
    bool no_head = nonce_text && !v.has_head && v.head_problems == 0;
    if (no_head)
        printf("--nonce: head: no head statement was given (--head HEAD, or HEAD among the "
               "files): the records' end is not proven fresh\n");
    mf_record_verifier_end(&v);
    printf("programmer: %s\n", p.fingerprint);
    printf("lines: %llu\nrecords: %llu\nverified: %llu\n", (unsigned long long)v.lines,
           (unsigned long long)v.records, (unsigned long long)v.verified);
    printf("malformed: %llu\nbad signatures: %llu\nforeign records: %llu\n",
           (unsigned long long)v.malformed, (unsigned long long)v.bad_signatures,
           (unsigned long long)v.foreign);
    if (v.torn_lines) /* only when there are any: the output stays as it was without */
        printf("torn lines (no record missing): %llu\n", (unsigned long long)v.torn_lines);
    printf("chain breaks: %llu\ngap records: %llu\ncounter problems: %llu\nsetups: %zu\n",
           (unsigned long long)v.chain_breaks, (unsigned long long)v.gaps,
           (unsigned long long)v.counter_problems, count_setups(&v));
    if (v.has_time) {
        print_time("first", v.first_time);
        print_time("last", v.last_time);
    }
    if (v.unaccounted)
        printf("unaccounted counts: %llu\n", (unsigned long long)v.unaccounted);
    print_head(&v, head != NULL || v.has_head || v.head_problems, nonce_text != NULL);
    for (size_t i = 0; i < v.total_count; i++) {
        const struct mf_record_total *t = &v.totals[i];
        char hex[65];
        mf_owner_hex_encode(t->setup, 32, hex);
        char project[3 * MF_RECORD_PROJECT_MAX + 4];
        mf_record_encode_text(t->project, project, sizeof project);
        printf("total: setup=%s project=%s ok=%llu failed=%llu", hex, project,
               (unsigned long long)t->ok, (unsigned long long)t->failed);
        /* Only when there are any: the line stays as it was for setups without. */
        if (t->unrecorded)
            printf(" unrecorded=%llu", (unsigned long long)t->unrecorded);
        if (t->unknown)
            printf(" unknown=%llu", (unsigned long long)t->unknown);
        printf(" serials=%llu", (unsigned long long)t->serials);
        if (t->serials)
            printf(" serial_min=%llu serial_max=%llu", (unsigned long long)t->serial_min,
                   (unsigned long long)t->serial_max);
        putchar('\n');
    }
    bool intact = mf_record_verifier_intact(&v) && !no_head;
    if (intact)
        printf("verdict: intact\n");
    else if (v.records == 0)
        printf("verdict: NOT INTACT: no records\n");
    else
        printf("verdict: NOT INTACT: records were altered, forged, deleted or reordered (see "
               "above)\n");
    mf_record_verifier_free(&v);
    return intact ? 0 : 1;
}

struct export_state {
    bool json;
    uint64_t count;
    uint64_t bad;
};

/* The length of the well-formed UTF-8 sequence at `s` (`n` bytes left) with its code point in
 * *cp, or 0 when none starts there (mf_utf8_decode). */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp)
{
    return mf_utf8_decode((const char *)s, n, cp);
}

/* C0, DEL and C1: what a terminal or a spreadsheet may act on. */
static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD in UTF-8 */

/* A CSV field: UTF-8 throughout, without a control character (each one, and each byte that is
 * not UTF-8, becomes U+FFFD), quoted when it holds a comma or a quote; one that starts with
 * = + - or @ gets an apostrophe first, so that a spreadsheet shows it as text rather than running
 * it as a formula (names come from setups and files the factory may make). */
static void csv_text(const char *s)
{
    bool quote = strpbrk(s, ",\"") != NULL;
    if (quote)
        putchar('"');
    if (s[0] && strchr("=+-@", s[0]))
        putchar('\'');
    const unsigned char *c = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_sequence(c + i, n - i, &cp);
        if (k == 0 || is_control(cp))
            fputs(REPLACEMENT, stdout);
        else if (cp == '"')
            fputs("\"\"", stdout);
        else
            fwrite(c + i, 1, k, stdout);
        i += k ? k : 1;
    }
    if (quote)
        putchar('"');
}

/* A JSON string: well-formed UTF-8 as it is but for the quote, the backslash, control
 * characters (C0, DEL, C1) and U+2028/U+2029, which are escaped (\uXXXX); each byte that is not
 * UTF-8 becomes \ufffd. */
static void json_text(const char *s)
{
    putchar('"');
    const unsigned char *c = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_sequence(c + i, n - i, &cp);
        if (k == 0)
            fputs("\\ufffd", stdout);
        else if (cp == '"' || cp == '\\')
            printf("\\%c", (char)cp);
        else if (is_control(cp) || cp == 0x2028 || cp == 0x2029)
            printf("\\u%04x", (unsigned)cp);
        else
            fwrite(c + i, 1, k, stdout);
        i += k ? k : 1;
    }
    putchar('"');
}

static int export_line(void *context, const char *file, uint64_t line, const char *text,
                       size_t length)
{
    struct export_state *x = context;
    struct mf_record r;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX];
    if (is_head_line(text, length))
        return 0; /* a head statement (DIR/HEAD) is no record */
    if (mf_record_parse(text, length, &r, &body, message)) {
        mf_cli_error("%s:%llu: skipped: %s", file, (unsigned long long)line, message);
        x->bad++;
        return 0;
    }
    uint8_t hash[32];
    mf_record_hash(text, body, hash);
    char time_text[MF_OWNER_TIME_SIZE], setup[65], hash_hex[65], uid[2 * MF_RECORD_UID_MAX + 1],
        serial[24];
    mf_owner_time_format(r.time, time_text);
    mf_owner_hex_encode(r.setup, 32, setup);
    mf_owner_hex_encode(hash, 32, hash_hex);
    mf_owner_hex_encode(r.uid, r.uid_length, uid);
    snprintf(serial, sizeof serial, "%llu", (unsigned long long)r.serial);
    const char *result = mf_record_result_name(r.result);
    if (x->json) {
        printf("%s\n  {\"file\": ", x->count ? "," : "[");
        json_text(file);
        printf(", \"line\": %llu, \"seq\": %llu, \"time\": \"%s\", \"programmer\": \"%s\", "
               "\"setup\": \"%s\", \"project\": ",
               (unsigned long long)line, (unsigned long long)r.seq, time_text, r.programmer, setup);
        json_text(r.project);
        printf(", \"slot\": %u, \"uid\": ", (unsigned)r.slot);
        if (r.uid_length)
            printf("\"%s\"", uid);
        else
            printf("null");
        printf(", \"serial\": %s, \"result\": \"%s\", \"counter\": %llu, \"note\": ",
               r.has_serial ? serial : "null", result, (unsigned long long)r.counter);
        json_text(r.note);
        printf(", \"hash\": \"%s\"}", hash_hex);
    } else {
        if (!x->count)
            printf("file,line,seq,time,programmer,setup,project,slot,uid,serial,result,counter,"
                   "note,hash\n");
        csv_text(file);
        printf(",%llu,%llu,%s,%s,%s,", (unsigned long long)line, (unsigned long long)r.seq,
               time_text, r.programmer, setup);
        csv_text(r.project);
        printf(",%u,%s,%s,%s,%llu,", (unsigned)r.slot, uid, r.has_serial ? serial : "", result,
               (unsigned long long)r.counter);
        csv_text(r.note);
        printf(",%s\n", hash_hex);
    }
    x->count++;
    return 0;
}

static int log_export(int argc, char **argv)
{
    bool csv = false, json = false;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) {
        mf_cli_error("out of memory");
        return 1;
    }
    unsigned n;
    struct owner_option options[] = {{.name = "--csv", .flag = &csv},
                                     {.name = "--json", .flag = &json}};
    int rc = owner_parse("log", argc, argv, 2, options, 2, files, (unsigned)argc, &n);
    if (!rc && (csv == json || n == 0))
        rc =
            owner_usage_error("log", "log export needs one of --csv and --json, and RECORDS files");
    struct export_state x = {json, 0, 0};
    for (unsigned i = 0; i < n && !rc; i++)
        rc = each_line(files[i], export_line, &x);
    free(files);
    if (rc)
        return rc;
    if (json)
        printf(x.count ? "\n]\n" : "[]\n");
    else if (!x.count)
        printf("file,line,seq,time,programmer,setup,project,slot,uid,serial,result,counter,note,"
               "hash\n");
    return x.bad ? 1 : 0;
}

int mf_cli_log(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        fputs(log_usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(log_usage_text, stdout);
            return 0;
        }
    }
    if (strcmp(argv[1], "verify") == 0)
        return log_verify(argc, argv);
    if (strcmp(argv[1], "export") == 0)
        return log_export(argc, argv);
    return owner_usage_error("log", "unknown log command '%s' (verify or export)", argv[1]);
}

/* ---- sig ---- */

static const char sig_usage_text[] =
    "usage: mintflash sig verify --pubkey KEY.pub --setup ID --uid HEX --serial N SIGFILE\n"
    "       mintflash sig sign --key KEY.key --setup ID --uid HEX --serial N [-o SIGFILE]\n"
    "\n"
    "Per-device UID signatures (clone protection). The signed message is\n"
    "  \"MFSIG1\" || setup id (32 bytes) || UID length (1 byte) || UID || serial (8 bytes, LE)\n"
    "signed with Ed25519 by the job's key ([signature] key = in job.ini, made with\n"
    "mintflash keygen); its .pub is what your firmware checks against.\n"
    "\n"
    "  verify   prints 'valid' (exit status 0) or 'INVALID' (exit status 1). SIGFILE holds the\n"
    "           64 signature bytes, raw or as 128 hex digits.\n"
    "  sign     makes a signature, as the programmer does (for testing firmware): raw bytes\n"
    "           into SIGFILE, or 128 hex digits on standard output.\n"
    "\n"
    "  --setup ID   64 hex digits (or the .mfp package)\n"
    "  --uid HEX    the device's unique ID as hex digits, e.g. 0102030405060708090A0B0C\n"
    "  --serial N   the device's serial number; 0 when the project has none\n";

static int read_signature(const char *path, uint8_t sig[64])
{
    char *data;
    size_t n;
    if (read_small(path, 4096, &data, &n))
        return 1;
    int rc = 0;
    if (n == 64) {
        memcpy(sig, data, 64);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')
                continue;
            data[k++] = data[i];
        }
        if (k != 128 || mf_owner_hex_decode(data, 128, sig, 64)) {
            mf_cli_error("%s: neither 64 bytes nor 128 hex digits", path);
            rc = 1;
        }
    }
    free(data);
    return rc;
}

int mf_cli_sig(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        fputs(sig_usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(sig_usage_text, stdout);
            return 0;
        }
    }
    bool sign = strcmp(argv[1], "sign") == 0;
    if (!sign && strcmp(argv[1], "verify") != 0)
        return owner_usage_error("sig", "unknown sig command '%s' (verify or sign)", argv[1]);
    const char *key = NULL, *setup = NULL, *uid_text = NULL, *serial_text = NULL, *output = NULL,
               *operands[1];
    unsigned n;
    struct owner_option options[] = {
        {.name = sign ? "--key" : "--pubkey", .value = &key},
        {.name = "--setup", .value = &setup},
        {.name = "--uid", .value = &uid_text},
        {.name = "--serial", .value = &serial_text},
        {.name = "--output", .alias = "-o", .value = &output},
    };
    int rc = owner_parse("sig", argc, argv, 2, options, sign ? 5 : 4, operands, sign ? 0 : 1, &n);
    if (rc)
        return rc;
    if (!key || !setup || !uid_text || !serial_text || (!sign && n != 1))
        return owner_usage_error("sig", sign ? "sig sign needs --key, --setup, --uid and --serial"
                                             : "sig verify needs --pubkey, --setup, --uid, "
                                               "--serial and SIGFILE");
    uint8_t setup_id[32], uid[MF_UIDSIG_UID_MAX], sig[64];
    size_t uid_length;
    uint64_t serial;
    if ((rc = parse_setup("sig", setup, setup_id)) != 0)
        return rc;
    if (hex_arg(uid_text, uid, sizeof uid, &uid_length))
        return owner_usage_error("sig", "--uid: '%s' is not hex digits in pairs (at most %u bytes)",
                                 uid_text, MF_UIDSIG_UID_MAX);
    if (mf_cli_parse_u64(serial_text, &serial))
        return owner_usage_error("sig", "--serial: '%s' is not a number", serial_text);
    if (sign) {
        uint8_t seed[32];
        if (load_owner_secret(key, seed))
            return 1;
        mf_uidsig_sign(setup_id, uid, uid_length, serial, seed, sig);
        sodium_memzero(seed, sizeof seed);
        if (output)
            return write_new(output, sig, sizeof sig, 0644, false);
        char hex[129];
        mf_owner_hex_encode(sig, 64, hex);
        printf("%s\n", hex);
        return 0;
    }
    struct mf_owner_key pub;
    if (load_owner_public(key, &pub) || read_signature(operands[0], sig))
        return 1;
    if (mf_uidsig_verify(setup_id, uid, uid_length, serial, pub.ed25519, sig) == 0) {
        printf("valid\n");
        return 0;
    }
    printf("INVALID\n");
    return 1;
}
