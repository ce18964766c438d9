/* The commander `mintflash`: entry point and dispatch to the subcommand groups. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} mf_cli_groups[] = {
    {"storage", mf_cli_storage, "create and inspect storage images (public area files offline)"},
    {"image", mf_cli_image, "inspect and convert firmware images (HEX, S-record, ELF, binary)"},
    {"sim", mf_cli_sim, "simulated devices: replace, show, list profiles"},
    {"keygen", mf_cli_keygen, "make the IP owner's signing key pair"},
    {"pack", mf_cli_pack, "pack a production setup into a sealed package for programmers"},
    {"topup", mf_cli_topup, "make a signed top-up token (more cycles for a project)"},
    {"log", mf_cli_log, "verify or export a programmer's production records"},
    {"sig", mf_cli_sig, "check (or make) a per-device UID signature"},
};

void mf_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mintflash: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int mf_cli_parse_u64(const char *text, uint64_t *value)
{
    if (!text || !*text || *text == '-' || isspace((unsigned char)*text))
        return -1;
    /* Decimal, or hex with 0x; a leading zero is decimal, never octal ("0100" is 100). */
    int base = (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) ? 16 : 10;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, base);
    if (errno || end == text || *end || (base == 16 && end == text + 2))
        return -1;
    *value = v;
    return 0;
}

int mf_cli_parse_size(const char *text, uint64_t *size)
{
    if (!text || !*text || !isdigit((unsigned char)*text))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        shift = 10;
        end++;
        break;
    case 'M':
        shift = 20;
        end++;
        break;
    case 'G':
        shift = 30;
        end++;
        break;
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    else if (!shift && strcmp(end, "B") == 0)
        end++;
    if (*end)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *size = (uint64_t)v << shift;
    return 0;
}

static void mf_cli_usage(FILE *out)
{
    fprintf(out, "usage: mintflash [OPTIONS] [COMMAND [ARGUMENTS]]   commands to a programmer\n"
                 "       mintflash [OPTIONS] -c \"COMMAND; COMMAND\" | -f SCRIPT\n"
                 "       mintflash [OPTIONS]                       interactive\n"
                 "       mintflash GROUP ...                       offline tools\n\n"
                 "options:\n"
                 "  -d, --device URL     unix:PATH, tcp:HOST:PORT or serial:DEVICE[:BAUD]\n"
                 "                       (else $MINTFLASH_DEVICE, else the daemon's socket)\n"
                 "  -c COMMANDS          run these commands (separated by ';') and exit\n"
                 "  -f SCRIPT            run a script, one command per line ('-' = stdin)\n"
                 "  -k, --keep-going     go on after a failed command (the exit status is 1)\n"
                 "  -t, --timeout SEC    a silent programmer is an error after SEC seconds "
                 "(60)\n"
                 "      --json           JSON output for status, result, flist and info\n"
                 "  -h, --help           this text;  --version  the version\n\n"
                 "offline groups:\n");
    for (size_t i = 0; i < sizeof mf_cli_groups / sizeof mf_cli_groups[0]; i++)
        fprintf(out, "  %-10s %s\n", mf_cli_groups[i].name, mf_cli_groups[i].summary);
    fprintf(out, "\n`mintflash GROUP --help` describes each group.\n\n");
    mf_cli_help(out, NULL);
}

/* The URL of the daemon's default socket, as "unix:PATH". */
static void default_url(char *out, size_t size)
{
    char path[900];
    if (mf_remote_default_socket(path, sizeof path))
        snprintf(out, size, "unix:");
    else
        snprintf(out, size, "unix:%s", path);
}

/* "-t 2.5": seconds as milliseconds, 1 ms .. 1 day. Returns 0 or -1. */
static int parse_timeout(const char *text, int *ms)
{
    char *end;
    errno = 0;
    double seconds = strtod(text, &end);
    if (errno || end == text || *end || !(seconds >= 0.001 && seconds <= 86400.0))
        return -1;
    *ms = (int)(seconds * 1000.0 + 0.5);
    return 0;
}

/* Options before the command: "-d URL", "--device URL" and "--device=URL" alike. Returns the
 * index of the first command word, -1 after a usage error (printed), -2 when done (--help). */
static int parse_global(int argc, char **argv, const char **device, const char **commands,
                        const char **script, bool *json, bool *keep_going, int *timeout_ms)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            break;
        if (strcmp(arg, "--") == 0)
            return i + 1;
        static const struct {
            const char *short_name, *long_name;
        } valued[] = {
            {"-d", "--device"}, {"-c", "--command"}, {"-f", "--file"}, {"-t", "--timeout"}};
        const char *value = NULL;
        int which = -1;
        for (int k = 0; k < 4 && which < 0; k++) {
            size_t n = strlen(valued[k].long_name);
            if (strcmp(arg, valued[k].short_name) == 0 || strcmp(arg, valued[k].long_name) == 0) {
                which = k;
                if (i + 1 >= argc) {
                    mf_cli_error("option '%s' needs a value (try 'mintflash --help')", arg);
                    return -1;
                }
                value = argv[++i];
            } else if (strncmp(arg, valued[k].long_name, n) == 0 && arg[n] == '=') {
                which = k;
                value = arg + n + 1;
            }
        }
        switch (which) {
        case 0:
            *device = value;
            continue;
        case 1:
            *commands = value;
            continue;
        case 2:
            *script = value;
            continue;
        case 3:
            if (parse_timeout(value, timeout_ms)) {
                mf_cli_error("bad timeout '%s' (seconds, e.g. 60 or 0.5)", value);
                return -1;
            }
            continue;
        default:
            break;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            mf_cli_usage(stdout);
            return -2;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("mintflash %s\n", MF_VERSION);
            return -2;
        }
        if (strcmp(arg, "--json") == 0) {
            *json = true;
        } else if (strcmp(arg, "-k") == 0 || strcmp(arg, "--keep-going") == 0) {
            *keep_going = true;
        } else {
            mf_cli_error("unknown option '%s' (try 'mintflash --help')", arg);
            return -1;
        }
    }
    return i;
}

int main(int argc, char **argv)
{
    /* A write past a file size limit (ulimit -f) fails with EFBIG, named, instead of killing us. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc >= 2) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            (strcmp(argv[1], "help") == 0 && argc == 2)) {
            mf_cli_usage(stdout);
            return 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
            printf("mintflash %s\n", MF_VERSION);
            return 0;
        }
        for (size_t i = 0; i < sizeof mf_cli_groups / sizeof mf_cli_groups[0]; i++) {
            if (strcmp(argv[1], mf_cli_groups[i].name) == 0)
                return mf_cli_groups[i].run(argc - 1, argv + 1);
        }
    }

    const char *device = NULL, *commands = NULL, *script = NULL;
    bool json = false, keep_going = false;
    int timeout_ms = MF_REMOTE_DEFAULT_TIMEOUT_MS;
    int first =
        parse_global(argc, argv, &device, &commands, &script, &json, &keep_going, &timeout_ms);
    if (first < 0)
        return first == -2 ? 0 : 2;
    if (commands && script) {
        mf_cli_error("use either -c or -f, not both");
        return 2;
    }
    if (first < argc) {
        for (size_t i = 0; i < sizeof mf_cli_groups / sizeof mf_cli_groups[0]; i++) {
            if (strcmp(argv[first], mf_cli_groups[i].name) == 0) {
                mf_cli_error("'%s' takes no commander options: mintflash %s ...", argv[first],
                             argv[first]);
                return 2;
            }
        }
        if (!mf_cli_is_command(argv[first])) {
            mf_cli_error("unknown command '%s' (try 'mintflash --help')", argv[first]);
            return 2;
        }
        if (commands || script) {
            mf_cli_error("a command after -c or -f: put it into the commands instead");
            return 2;
        }
    }
    if (!device || !*device) {
        device = getenv("MINTFLASH_DEVICE");
    }
    char url[1024];
    if (device && *device)
        snprintf(url, sizeof url, "%s", device);
    else
        default_url(url, sizeof url);

    if (strncmp(url, "unix:", 5) != 0 && strncmp(url, "tcp:", 4) != 0 &&
        strncmp(url, "serial:", 7) != 0) {
        mf_cli_error("bad device URL '%s' (unix:PATH, tcp:HOST:PORT or serial:DEVICE[:BAUD])", url);
        return 2;
    }
    struct mf_cli_session *session = malloc(sizeof *session);
    if (!session) {
        mf_cli_error("out of memory");
        return 1;
    }
    mf_cli_session_init(session, url, timeout_ms);
    session->json = json;
    session->keep_going = keep_going;
    int status;
    if (first < argc) {
        status = mf_cli_command(session, argc - first, argv + first);
        if (mf_cli_take_interrupt() && !status)
            status = 1;
    } else if (commands) {
        bool quit = false;
        status = mf_cli_run_line(session, commands, &quit);
    } else if (script) {
        status = mf_cli_run_script(session, script);
    } else {
        status = mf_cli_repl(session);
    }
    mf_cli_session_close(session);
    free(session);
    return status;
}
