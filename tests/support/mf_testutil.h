/* Small helpers shared by the C tests: temporary folders, whole-file I/O, running a shell
 * command with its output captured, and the environment knobs (MF_SOAK, MF_SEED).
 * They use no test framework, so any test (cmocka, fuzz replay, bench) can link them.
 * Conventions: functions return 0 or a negative MF_E* code (MF_ENOENT, MF_EACCES, MF_ENOMEM,
 * else MF_EIO) and print what failed and where on stderr; strings and buffers they hand back are
 * malloc'd and the caller frees them. */
#ifndef MF_TESTUTIL_H
#define MF_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates a new, private (mode 0700) folder "$TMPDIR/mf-<tag>-XXXXXX" (TMPDIR defaults to
 * /tmp) and returns its malloc'd path, or NULL. Remove it with mf_test_rmtree() on every path
 * out of the test. */
char *mf_test_tmpdir(const char *tag);

/* Removes `path` and everything below it; symbolic links are removed, never followed. A missing
 * path is not an error. Refuses "", "/" and relative paths (MF_EINVAL), as a guard against
 * a test wiping the wrong tree. */
int mf_test_rmtree(const char *path);

/* Returns the malloc'd path "dir/name" (never NULL: aborts when out of memory). */
char *mf_test_path(const char *dir, const char *name);

/* Reads the whole file into a malloc'd buffer with a NUL after the last byte, so that text can be
 * used as a string; *size (may be NULL) gets the length without the NUL. */
int mf_test_read_file(const char *path, char **data, size_t *size);

/* Creates or truncates `path` (mode 0644) and writes `size` bytes of `data`. */
int mf_test_write_file(const char *path, const void *data, size_t size);

/* What a command did. `out` and `err` are always NUL-terminated (empty when silent). */
struct mf_test_output {
    int status; /* exit code; 128 + signal number when killed by a signal (as the shell says) */
    char *out;  /* standard output */
    size_t out_size;
    char *err; /* standard error */
    size_t err_size;
};

/* Runs `command` with /bin/sh -c, feeding `input` (input_size bytes; NULL: /dev/null) on its
 * standard input and capturing standard output and error separately. Returns 0 when the command
 * ran, whatever its exit status (that is in output->status); an error when it could not be
 * started. Free the output with mf_test_output_free(), also after an error. */
int mf_test_run(const char *command, const void *input, size_t input_size,
                struct mf_test_output *output);

/* mf_test_run() with a printf-formatted command and no input. Quote paths and other
 * arguments with mf_test_shell_quote(). */
int mf_test_runf(struct mf_test_output *output, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

void mf_test_output_free(struct mf_test_output *output);

/* Returns `text` single-quoted for /bin/sh (malloc'd, never NULL). */
char *mf_test_shell_quote(const char *text);

/* True when MF_SOAK=1: run the long versions of sweeps and loops (`make soak`). */
bool mf_test_soak(void);

/* The seed of a randomized test: MF_SEED from the environment (decimal or 0x-hex) when set,
 * else `fallback`. Prints "<name>: seed 0x..." on stderr so that a failure can be repeated. */
uint64_t mf_test_seed(const char *name, uint64_t fallback);

#endif
