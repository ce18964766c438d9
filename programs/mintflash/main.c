/* The commander `mintflash`: entry point and dispatch to the subcommand groups. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
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
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || end == text || *end)
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
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: break;
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
    fprintf(out, "usage: mintflash <command> [arguments]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof mf_cli_groups / sizeof mf_cli_groups[0]; i++)
        fprintf(out, "  %-10s %s\n", mf_cli_groups[i].name, mf_cli_groups[i].summary);
    fprintf(out, "\n`mintflash <command> --help` describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        mf_cli_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
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
    mf_cli_error("unknown command '%s' (try 'mintflash --help')", argv[1]);
    return 2;
}
