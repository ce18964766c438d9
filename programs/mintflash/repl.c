/* How commands reach the commander: the interactive loop (line editing and history through
 * libedit when built with MF_HAVE_LIBEDIT, plain lines otherwise), `-c "cmd; cmd"` and
 * `-f script`. One line = commands separated by ';', words split as a shell would (quotes,
 * backslash); "# " starts a comment, "#WORD..." is a protocol line sent as is. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(MF_HAVE_LIBEDIT)
#include <histedit.h>
#endif

/* Words in one command: more is a usage error. */
#define WORDS_MAX    256
/* Entries kept in the interactive history. */
#define HISTORY_SIZE 1000

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* The end of the command starting at `p`: the first ';' outside quotes, or the line's end.
 * An unterminated quote runs to the end (the tokenizer then reports it). */
static const char *segment_end(const char *p)
{
    char quote = 0;
    for (; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
            else if (quote == '"' && *p == '\\' && p[1])
                p++;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == ';') {
            return p;
        }
    }
    return p;
}

/* Splits `text` into words in place (quotes and backslashes removed). Returns the count, or -1
 * with *why set. */
static int split_words(char *text, char **words, int max, const char **why)
{
    int count = 0;
    char *in = text, *out = text;
    for (;;) {
        while (is_blank(*in))
            in++;
        if (!*in)
            return count;
        if (count == max) {
            *why = "too many words";
            return -1;
        }
        words[count++] = out;
        char quote = 0;
        while (*in && (quote || !is_blank(*in))) {
            char c = *in++;
            if (quote) {
                if (c == quote) {
                    quote = 0;
                    continue;
                }
                if (quote == '"' && c == '\\' && (*in == '"' || *in == '\\')) {
                    *out++ = *in++;
                    continue;
                }
                *out++ = c;
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '\\' && *in) {
                *out++ = *in++;
            } else {
                *out++ = c;
            }
        }
        if (quote) {
            *why = "unterminated quote";
            return -1;
        }
        char *next = *in ? in + 1 : in;
        *out = '\0';
        out = next;
        in = next;
    }
}

static void line_error(struct mf_cli_session *s, const char *what)
{
    fputs("mintflash: ", stderr);
    if (s->where)
        fprintf(stderr, "%s: ", s->where);
    fprintf(stderr, "%s\n", what);
}

/* "#", "# ...", "#!..." and "##..." are comments; "#WORD" is a protocol line. */
static bool is_comment(const char *text)
{
    return text[0] == '#' &&
           (text[1] == '\0' || is_blank(text[1]) || text[1] == '!' || text[1] == '#');
}

/* Runs one command of a line (`text` is trimmed, non-empty, no ';' outside quotes). */
static int run_segment(struct mf_cli_session *s, char *text, bool *quit)
{
    if (is_comment(text))
        return 0;
    if (text[0] == '#')
        return mf_cli_raw(s, text);
    if (strncmp(text, "raw", 3) == 0 && is_blank(text[3])) {
        char *rest = text + 3;
        while (is_blank(*rest))
            rest++;
        char *args[2] = {"raw", rest};
        return mf_cli_command(s, 2, args);
    }
    char *words[WORDS_MAX];
    const char *why = NULL;
    int n = split_words(text, words, WORDS_MAX, &why);
    if (n < 0) {
        line_error(s, why);
        return 2;
    }
    if (n == 0)
        return 0;
    if (strcmp(words[0], "quit") == 0 || strcmp(words[0], "exit") == 0) {
        *quit = true;
        return 0;
    }
    return mf_cli_command(s, n, words);
}

int mf_cli_run_line(struct mf_cli_session *s, const char *line, bool *quit)
{
    char *copy = strdup(line);
    if (!copy) {
        line_error(s, "out of memory");
        return 1;
    }
    int first_failure = 0;
    char *p = copy;
    while (is_blank(*p))
        p++;
    if (is_comment(p))
        *p = '\0'; /* a comment runs to the end of the line, ';' included */
    while (*p && !*quit) {
        char *end = (char *)segment_end(p);
        bool last = *end == '\0';
        *end = '\0';
        while (is_blank(*p))
            p++;
        size_t len = strlen(p);
        while (len && is_blank(p[len - 1]))
            p[--len] = '\0';
        if (len) {
            int status = run_segment(s, p, quit);
            if (mf_cli_take_interrupt() && !status)
                status = 1;
            if (status && !first_failure)
                first_failure = status;
            if (status && !s->keep_going && !s->interactive)
                break;
        }
        if (last)
            break;
        p = end + 1;
    }
    free(copy);
    return first_failure;
}

int mf_cli_run_script(struct mf_cli_session *s, const char *path)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fprintf(stderr, "mintflash: cannot open script %s: %s\n", path, strerror(errno));
        return 1;
    }
    const char *name = in == stdin ? "<stdin>" : path;
    char *line = NULL;
    size_t cap = 0;
    int first_failure = 0;
    bool quit = false;
    char where[1100];
    for (unsigned long number = 1; !quit; number++) {
        errno = 0;
        ssize_t len = getline(&line, &cap, in);
        if (len < 0) {
            if (errno && errno != EINTR) {
                fprintf(stderr, "mintflash: cannot read script %s: %s\n", name, strerror(errno));
                first_failure = first_failure ? first_failure : 1;
            }
            break;
        }
        snprintf(where, sizeof where, "%s:%lu", name, number);
        s->where = where;
        int status = mf_cli_run_line(s, line, &quit);
        s->where = NULL;
        if (status && !first_failure)
            first_failure = status;
        if (status && !s->keep_going)
            break;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return first_failure;
}

/* Lines from a pipe or a file given as standard input: a script. At a terminal without
 * libedit: a prompt and plain lines. */
static int repl_plain(struct mf_cli_session *s)
{
    if (!isatty(STDIN_FILENO))
        return mf_cli_run_script(s, "-");
    char *line = NULL;
    size_t cap = 0;
    int any_failure = 0;
    bool quit = false;
    while (!quit) {
        fputs("mintflash> ", stdout);
        fflush(stdout);
        errno = 0;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            if (errno == EINTR && mf_cli_take_interrupt()) {
                clearerr(stdin);
                fputc('\n', stdout);
                continue;
            }
            fputc('\n', stdout);
            break;
        }
        int status = mf_cli_run_line(s, line, &quit);
        if (status)
            any_failure = status;
    }
    free(line);
    return any_failure;
}

#if defined(MF_HAVE_LIBEDIT)

static char *repl_prompt(EditLine *el)
{
    (void)el;
    return "mintflash> ";
}

/* The history file: $MINTFLASH_HISTORY, else ~/.mintflash_history; NULL for none. */
static char *history_path(void)
{
    const char *env = getenv("MINTFLASH_HISTORY");
    if (env)
        return *env ? strdup(env) : NULL;
    const char *home = getenv("HOME");
    if (!home || !*home)
        return NULL;
    size_t n = strlen(home) + sizeof "/.mintflash_history";
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/.mintflash_history", home);
    return path;
}

static int repl_edit(struct mf_cli_session *s)
{
    EditLine *el = el_init("mintflash", stdin, stdout, stderr);
    History *hist = history_init();
    if (!el || !hist) {
        if (el)
            el_end(el);
        if (hist)
            history_end(hist);
        return repl_plain(s);
    }
    HistEvent ev;
    history(hist, &ev, H_SETSIZE, HISTORY_SIZE);
    history(hist, &ev, H_SETUNIQUE, 1);
    char *path = history_path();
    if (path)
        history(hist, &ev, H_LOAD, path);
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_PROMPT, repl_prompt);
    el_set(el, EL_HIST, history, hist);
    el_source(el, NULL); /* ~/.editrc */

    int any_failure = 0;
    bool quit = false;
    while (!quit) {
        int count = 0;
        const char *line = el_gets(el, &count);
        if (!line || count <= 0) {
            if (mf_cli_take_interrupt()) {
                fputc('\n', stdout);
                el_reset(el);
                continue;
            }
            fputc('\n', stdout);
            break;
        }
        const char *p = line;
        while (is_blank(*p))
            p++;
        if (*p)
            history(hist, &ev, H_ENTER, line);
        int status = mf_cli_run_line(s, line, &quit);
        if (status)
            any_failure = status;
    }
    if (path)
        history(hist, &ev, H_SAVE, path);
    free(path);
    history_end(hist);
    el_end(el);
    return any_failure;
}

#endif

int mf_cli_repl(struct mf_cli_session *s)
{
    if (!isatty(STDIN_FILENO))
        return mf_cli_run_script(s, "-");
    s->interactive = true;
    printf("mintflash %s: commander of %s ('help' lists the commands)\n", MF_VERSION, s->url);
#if defined(MF_HAVE_LIBEDIT)
    return repl_edit(s);
#else
    return repl_plain(s);
#endif
}
