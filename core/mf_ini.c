/* INI parser (see mf_ini.h). One pass over the text, one line buffer on the stack. */
#include "mf_ini.h"

#include "mf_err.h"

#include <stdio.h>
#include <string.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

int mf_ini_name_is(const char *name, const char *expected)
{
    for (; *name && *expected; name++, expected++) {
        if (lower(*name) != lower(*expected))
            return 0;
    }
    return *name == *expected;
}

static int fail(struct mf_ini_error *error, unsigned line, const char *message)
{
    error->line = line;
    snprintf(error->message, sizeof error->message, "%s", message);
    return MF_EFORMAT;
}

/* Trims whitespace at both ends in place; returns the new start. */
static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

int mf_ini_parse(const char *text, size_t len, mf_ini_handler handler, void *context,
                 struct mf_ini_error *error)
{
    char section[MF_INI_SECTION_MAX + 1] = "";
    char buf[MF_INI_LINE_MAX + 1];
    unsigned line = 0, section_number = 0;
    size_t i = 0;
    error->line = 0;
    error->message[0] = '\0';
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        i = 3;
    while (i < len) {
        line++;
        size_t n = 0;
        while (i < len && text[i] != '\n' && text[i] != '\r') {
            char c = text[i++];
            if (c == '\0' || ((unsigned char)c < 0x20 && c != '\t'))
                return fail(error, line, "control character in line");
            if (n == MF_INI_LINE_MAX)
                return fail(error, line, "line too long");
            buf[n++] = c;
        }
        /* One line end: LF, CR or CRLF. */
        if (i < len && text[i] == '\r') {
            i++;
            if (i < len && text[i] == '\n')
                i++;
        } else if (i < len && text[i] == '\n') {
            i++;
        }
        buf[n] = '\0';
        char *s = trim(buf);
        if (*s == '\0' || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end)
                return fail(error, line, "section header without ']'");
            char *rest = trim(end + 1);
            if (*rest && *rest != ';' && *rest != '#')
                return fail(error, line, "text after section header");
            *end = '\0';
            char *name = trim(s + 1);
            if (*name == '\0')
                return fail(error, line, "empty section name");
            if (strlen(name) > MF_INI_SECTION_MAX)
                return fail(error, line, "section name too long");
            memcpy(section, name, strlen(name) + 1);
            section_number++;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            return fail(error, line, "expected 'key = value'");
        *eq = '\0';
        char *key = trim(s);
        if (*key == '\0')
            return fail(error, line, "empty key");
        char *value = eq + 1;
        /* An inline comment starts at ';' or '#' preceded by whitespace. */
        for (char *p = value; *p; p++) {
            if ((*p == ';' || *p == '#') && p > value && is_space(p[-1])) {
                *p = '\0';
                break;
            }
        }
        value = trim(value);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        struct mf_ini_item item = {section, section_number, key, value, line};
        int err = handler(context, &item);
        if (err) {
            error->line = line;
            return err;
        }
    }
    return 0;
}
