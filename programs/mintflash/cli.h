/* The commander `mintflash`: one file per group of subcommands, dispatched from main.c.
 * Each group takes (argc, argv) with argv[0] the group name and returns the exit status:
 * 0 on success, 1 on a failed operation, 2 on a usage error. The commands to a running
 * programmer (cmd_remote.c, run by repl.c) share one session. */
#ifndef MF_CLI_H
#define MF_CLI_H

#include "remote.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

int mf_cli_storage(int argc, char **argv);
int mf_cli_image(int argc, char **argv);
int mf_cli_sim(int argc, char **argv);
/* The IP owner's offline tools (cmd_owner.c). */
int mf_cli_keygen(int argc, char **argv);
int mf_cli_pack(int argc, char **argv);
int mf_cli_topup(int argc, char **argv);
int mf_cli_log(int argc, char **argv);
int mf_cli_sig(int argc, char **argv);

/* Prints "mintflash: <message>" to stderr. */
void mf_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a size such as "4096", "64K", "128M", "4G" (binary units, optional "iB"/"B").
 * Returns 0 or -1 when malformed or out of range. */
int mf_cli_parse_size(const char *text, uint64_t *size);

/* Parses an unsigned number: decimal, or hex with 0x. Returns 0 or -1. */
int mf_cli_parse_u64(const char *text, uint64_t *value);

/* ---- the commander proper: commands to a programmer (cmd_remote.c, repl.c) ---- */

/* What the commands of one invocation share: the connection (opened at the first command that
 * needs it) and the global options. */
struct mf_cli_session {
    char url[1024];       /* -d / MINTFLASH_DEVICE / the default socket */
    int timeout_ms;       /* -t: silence allowed while waiting for a reply */
    bool json;            /* --json: machine-readable status, result, flist, info */
    bool keep_going;      /* -k: a script goes on after a failed command */
    bool tty;             /* stdout is a terminal: progress bars */
    bool interactive;     /* the REPL at a terminal: failures do not end the session */
    bool connected;       /* remote was opened */
    unsigned progress_on; /* remote.connects when #PROGRESS ON was accepted, else 0 */
    const char *where;    /* "FILE:LINE" of the script line running, or NULL */
    struct mf_remote remote;
};

/* Sets up a session for `url` (not connected yet) and the SIGINT handling that turns the first
 * Ctrl-C during a cycle into #CANCEL. */
void mf_cli_session_init(struct mf_cli_session *s, const char *url, int timeout_ms);

/* Closes the connection, if any. */
void mf_cli_session_close(struct mf_cli_session *s);

/* Runs one command (argv[0] its name, e.g. "fwrite"). Returns 0 done, 1 failed (the message is
 * printed), 2 usage error. */
int mf_cli_command(struct mf_cli_session *s, int argc, char **argv);

/* Sends one protocol line as the `raw` command does and prints every reply line. 0 or 1. */
int mf_cli_raw(struct mf_cli_session *s, const char *line);

/* True when `name` is a command of mf_cli_command(). */
bool mf_cli_is_command(const char *name);

/* Prints the command list, or the help of one command (1 when it does not exist). */
int mf_cli_help(FILE *out, const char *name);

/* True (and cleared) when Ctrl-C was pressed since the last call. */
bool mf_cli_take_interrupt(void);

/* Runs a line of commands separated by ';' (see docs/commander.md: quoting, '#' comments and
 * protocol lines). *quit is set by `quit` / `exit`. Returns the first non-zero status, or 0. */
int mf_cli_run_line(struct mf_cli_session *s, const char *line, bool *quit);

/* Runs a script, one line after the other ("-" = standard input). 0, 1 or 2 (first failure;
 * later lines run only with keep_going). */
int mf_cli_run_script(struct mf_cli_session *s, const char *path);

/* The interactive loop: line editing and history at a terminal, plain lines otherwise. */
int mf_cli_repl(struct mf_cli_session *s);

#endif
