/* Fuzz target: the commander's side of the protocol (programs/mintflash/remote.c) against a
 * hostile programmer: the input, after a first byte that picks the command, is everything the
 * programmer sends before it closes the connection. Every line the commander passes on
 * and the final line must be free of control characters and well-formed UTF-8 (the commander
 * prints them to a terminal), and each goes through every reply parser, whose results are
 * checked against their promises. */
#include "../../programs/mintflash/remote.c"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *line)
{
    size_t n = strlen(line);
    if (n > MF_REMOTE_REPLY_MAX || !mf_utf8_valid(line, n))
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned code;
        if (mf_utf8_control(line + i, n - i, &code))
            abort();
    }
    const char *text = NULL;
    int code = mf_remote_error_code(line, &text);
    if (code >= 0 && (code > 999 || !text || text < line || text > line + n))
        abort();
    int slot, count, single;
    char state[32];
    const char *result;
    if (mf_remote_parse_status(line, &slot, state, sizeof state) == 0 &&
        strnlen(state, sizeof state) == sizeof state)
        abort();
    if (mf_remote_parse_result(line, &slot, &result) == 0 && (result < line || result > line + n))
        abort();
    struct mf_remote_progress p;
    if (mf_remote_parse_progress(line, &p) == 0 &&
        strnlen(p.state, sizeof p.state) == sizeof p.state)
        abort();
    uint8_t buf[MF_REMOTE_CHUNK];
    size_t got = 0;
    if (mf_remote_parse_fread(line, buf, sizeof buf, &got) == 0 && got > sizeof buf)
        abort();
    uint64_t size;
    (void)mf_remote_parse_size(line, &size);
    bool is_dir;
    const char *name;
    if (mf_remote_parse_flist(line, &is_dir, &size, &name) == 0 && (name < line || name > line + n))
        abort();
    (void)mf_remote_parse_selected(line, &count, &single);
}

static void on_line(void *ctx, const char *line)
{
    ++*(unsigned *)ctx;
    check_line(line);
}

/* The programmer: once the first command line has arrived, everything it sends, then the end. */
struct peer {
    int fd;
    const uint8_t *data;
    size_t size;
};

static void *peer_run(void *arg)
{
    struct peer *p = arg;
    char c = 0;
    while (c != '\r' && read(p->fd, &c, 1) == 1)
        ;
    for (size_t off = 0; off < p->size;) {
        ssize_t w = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(p->fd, SHUT_WR);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const commands[] = {"#STATUS",         "#RESULT",     "#AUTO",
                                           "#FLIST Projects", "#INFO",       "#FSIZE",
                                           "#SELMODULE 1,2",  "#FREAD 0,200"};
    if (size == 0 || size > 65536)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    struct mf_remote *r = calloc(1, sizeof *r);
    struct mf_remote_reply *reply = calloc(1, sizeof *reply);
    struct peer peer = {sv[1], data + 1, size - 1};
    pthread_t thread;
    if (!r || !reply || pthread_create(&thread, NULL, peer_run, &peer) != 0) {
        free(r);
        free(reply);
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    /* Short: a reply that stops without the end of the connection waits this long. */
    mf_remote_attach(r, sv[0], MF_REMOTE_UNIX, "unix:fuzz", 200);
    unsigned lines = 0;
    int err = mf_remote_command(r, commands[data[0] % 8], on_line, &lines, 0, reply);
    if (err == 0)
        check_line(reply->final);
    mf_remote_close(r);
    pthread_join(thread, NULL);
    close(sv[1]);
    free(r);
    free(reply);
    return 0;
}
