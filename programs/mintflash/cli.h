/* The commander `mintflash`: one file per group of subcommands, dispatched from main.c.
 * Each group takes (argc, argv) with argv[0] the group name and returns the exit status:
 * 0 on success, 1 on a failed operation, 2 on a usage error. */
#ifndef MF_CLI_H
#define MF_CLI_H

#include <stdint.h>

int mf_cli_storage(int argc, char **argv);
int mf_cli_image(int argc, char **argv);
int mf_cli_sim(int argc, char **argv);

/* Prints "mintflash: <message>" to stderr. */
void mf_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a size such as "4096", "64K", "128M", "4G" (binary units, optional "iB"/"B").
 * Returns 0 or -1 when malformed or out of range. */
int mf_cli_parse_size(const char *text, uint64_t *size);

/* Parses an unsigned number: decimal, or hex with 0x. Returns 0 or -1. */
int mf_cli_parse_u64(const char *text, uint64_t *value);

#endif
