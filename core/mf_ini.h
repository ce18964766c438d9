/* INI parser for job.ini and FLASHER.INI: `[section]`, `key = value`, comments starting with ';' or
 * '#' (at the start of a line, or after whitespace inside a value). Section and key names are
 * case-insensitive for the caller to compare; values keep their case, surrounding whitespace and
 * one pair of double quotes are removed. Written for hostile input: bounded line length, no
 * allocation, no recursion; every error carries the line number. */
#ifndef MF_INI_H
#define MF_INI_H

#include <stddef.h>

#define MF_INI_LINE_MAX    512u /* bytes of one line, without the line end */
#define MF_INI_SECTION_MAX 64u  /* bytes of a section name */

struct mf_ini_item {
    const char *section;     /* "" before the first section header */
    unsigned section_number; /* 0 before the first header, then 1, 2, ... per header: tells a
                                repeated section (several [file]) from its predecessor */
    const char *key;
    const char *value;
    unsigned line; /* 1-based */
};

/* Called once per key; return 0 to go on, or a negative MF_E* code to stop (the parse then
 * returns that code, with `error->line` set to the item's line and `error->message` left to the
 * handler, who may fill it). */
typedef int (*mf_ini_handler)(void *context, const struct mf_ini_item *item);

struct mf_ini_error {
    unsigned line;
    char message[96];
};

/* Parses `len` bytes of `text` (need not be NUL-terminated; a UTF-8 BOM is skipped).
 * Returns 0, MF_EFORMAT with `error` filled for malformed text, or the handler's error. */
int mf_ini_parse(const char *text, size_t len, mf_ini_handler handler, void *context,
                 struct mf_ini_error *error);

/* ASCII case-insensitive equality, for section and key names. */
int mf_ini_name_is(const char *name, const char *expected);

#endif
