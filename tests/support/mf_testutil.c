/* Shared C test helpers (see mf_testutil.h): POSIX only, no test framework. */
#include "mf_testutil.h"

#include "mf_err.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int mf_test_errno(int error)
{
    switch (error) {
    case ENOENT:
        return MF_ENOENT;
    case EACCES:
    case EPERM:
        return MF_EACCES;
    case ENOMEM:
        return MF_ENOMEM;
    default:
        return MF_EIO;
    }
}

static void *mf_test_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "mf_testutil: out of memory (%zu bytes)\n", size);
        abort();
    }
    return p;
}

char *mf_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t size = strlen(base) + strlen(tag) + 16;
    char *path = mf_test_xmalloc(size);
    snprintf(path, size, "%s/mf-%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        fprintf(stderr, "mf_test_tmpdir: mkdtemp %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int mf_test_rmtree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        fprintf(stderr, "mf_test_rmtree: remove %s: %s\n", path, strerror(errno));
        return mf_test_errno(errno);
    }
    return 0;
}

int mf_test_rmtree(const char *path)
{
    if (!path || path[0] != '/' || strcmp(path, "/") == 0) {
        fprintf(stderr, "mf_test_rmtree: refusing to remove \"%s\"\n", path ? path : "(null)");
        return MF_EINVAL;
    }
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : mf_test_errno(errno);
    /* Unreadable folders would stop the walk: tests sometimes chmod 0 on purpose. */
    if (S_ISDIR(st.st_mode))
        chmod(path, 0700);
    int rc = nftw(path, mf_test_rmtree_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc > 0) {
        fprintf(stderr, "mf_test_rmtree: walking %s failed\n", path);
        return MF_EIO;
    }
    return rc;
}

char *mf_test_path(const char *dir, const char *name)
{
    size_t size = strlen(dir) + strlen(name) + 2;
    char *path = mf_test_xmalloc(size);
    snprintf(path, size, "%s/%s", dir, name);
    return path;
}

int mf_test_read_file(const char *path, char **data, size_t *size)
{
    *data = NULL;
    if (size)
        *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        fprintf(stderr, "mf_test_read_file: open %s: %s\n", path, strerror(err));
        return mf_test_errno(err);
    }
    size_t used = 0, capacity = 4096;
    char *buffer = mf_test_xmalloc(capacity + 1);
    for (;;) {
        used += fread(buffer + used, 1, capacity - used, f);
        if (used < capacity)
            break;
        capacity *= 2;
        char *bigger = realloc(buffer, capacity + 1);
        if (!bigger) {
            free(buffer);
            fclose(f);
            return MF_ENOMEM;
        }
        buffer = bigger;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "mf_test_read_file: read %s failed\n", path);
        free(buffer);
        return MF_EIO;
    }
    buffer[used] = '\0';
    *data = buffer;
    if (size)
        *size = used;
    return 0;
}

int mf_test_write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        fprintf(stderr, "mf_test_write_file: open %s: %s\n", path, strerror(err));
        return mf_test_errno(err);
    }
    const char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = errno;
            fprintf(stderr, "mf_test_write_file: write %s: %s\n", path, strerror(err));
            close(fd);
            return mf_test_errno(err);
        }
        p += n;
        size -= (size_t)n;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "mf_test_write_file: close %s: %s\n", path, strerror(errno));
        return MF_EIO;
    }
    return 0;
}

struct mf_test_buffer {
    char *data;
    size_t size, capacity;
};

static int mf_test_buffer_read(struct mf_test_buffer *b, int fd)
{
    if (b->capacity - b->size < 4096) {
        size_t capacity = b->capacity ? b->capacity * 2 : 8192;
        char *bigger = realloc(b->data, capacity + 1);
        if (!bigger)
            return MF_ENOMEM;
        b->data = bigger;
        b->capacity = capacity;
    }
    ssize_t n = read(fd, b->data + b->size, b->capacity - b->size);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : MF_EIO;
    b->size += (size_t)n;
    return n == 0 ? 0 : 1; /* 0 at end of file */
}

static void mf_test_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void mf_test_child(const char *command, int in_fd, int out_fd, int err_fd)
{
    if (in_fd < 0)
        in_fd = open("/dev/null", O_RDONLY);
    if (in_fd < 0 || dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
}

/* Feeds the input and drains both outputs until they close; bounded by the child's output,
 * and ctest's timeout guards a command that never ends. */
static int mf_test_pump(int *in_fd, int *out_fd, int *err_fd, const char *input, size_t input_size,
                        struct mf_test_buffer *out, struct mf_test_buffer *err)
{
    size_t written = 0;
    if (*in_fd >= 0 && input_size == 0)
        mf_test_close(in_fd);
    /* Poll only promises some room in the pipe: a blocking write of the rest could hang. */
    if (*in_fd >= 0)
        fcntl(*in_fd, F_SETFL, fcntl(*in_fd, F_GETFL) | O_NONBLOCK);
    while (*out_fd >= 0 || *err_fd >= 0) {
        struct pollfd fds[3] = {
            {.fd = *out_fd, .events = POLLIN},
            {.fd = *err_fd, .events = POLLIN},
            {.fd = *in_fd, .events = POLLOUT},
        };
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            return MF_EIO;
        }
        if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t n = write(*in_fd, input + written, input_size - written);
            if (n < 0 && errno != EINTR && errno != EAGAIN)
                written = input_size; /* the command stopped reading: fine */
            else if (n > 0)
                written += (size_t)n;
            if (written == input_size)
                mf_test_close(in_fd);
        }
        if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            int rc = mf_test_buffer_read(out, *out_fd);
            if (rc < 0)
                return rc;
            if (rc == 0)
                mf_test_close(out_fd);
        }
        if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
            int rc = mf_test_buffer_read(err, *err_fd);
            if (rc < 0)
                return rc;
            if (rc == 0)
                mf_test_close(err_fd);
        }
    }
    mf_test_close(in_fd);
    return 0;
}

int mf_test_run(const char *command, const void *input, size_t input_size,
                struct mf_test_output *output)
{
    memset(output, 0, sizeof *output);
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    int rc = 0;
    struct mf_test_buffer out = {0}, err = {0};
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old_pipe;
    sigemptyset(&ignore.sa_mask);
    /* A command that does not read all its input must not kill the test with SIGPIPE. */
    sigaction(SIGPIPE, &ignore, &old_pipe);

    if ((input && pipe2(in_pipe, O_CLOEXEC) != 0) || pipe2(out_pipe, O_CLOEXEC) != 0 ||
        pipe2(err_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "mf_test_run: pipe: %s\n", strerror(errno));
        rc = MF_EIO;
        goto cleanup;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mf_test_run: fork: %s\n", strerror(errno));
        rc = MF_EIO;
        goto cleanup;
    }
    if (pid == 0)
        mf_test_child(command, in_pipe[0], out_pipe[1], err_pipe[1]);
    mf_test_close(&in_pipe[0]);
    mf_test_close(&out_pipe[1]);
    mf_test_close(&err_pipe[1]);
    rc = mf_test_pump(&in_pipe[1], &out_pipe[0], &err_pipe[0], input, input_size, &out, &err);
    /* On an error the pipes still open are closed below, so the child sees EOF/EPIPE. */
    for (int i = 0; rc && i < 2; i++) {
        mf_test_close(&in_pipe[i]);
        mf_test_close(&out_pipe[i]);
        mf_test_close(&err_pipe[i]);
    }

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "mf_test_run: waitpid: %s\n", strerror(errno));
            rc = rc ? rc : MF_EIO;
            goto cleanup;
        }
    }
    if (WIFEXITED(status))
        output->status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        output->status = 128 + WTERMSIG(status);
    if (rc)
        fprintf(stderr, "mf_test_run: collecting the output of \"%s\" failed\n", command);

cleanup:
    for (int i = 0; i < 2; i++) {
        mf_test_close(&in_pipe[i]);
        mf_test_close(&out_pipe[i]);
        mf_test_close(&err_pipe[i]);
    }
    sigaction(SIGPIPE, &old_pipe, NULL);
    output->out = out.data ? out.data : mf_test_xmalloc(1);
    output->out[out.size] = '\0';
    output->out_size = out.size;
    output->err = err.data ? err.data : mf_test_xmalloc(1);
    output->err[err.size] = '\0';
    output->err_size = err.size;
    return rc;
}

int mf_test_runf(struct mf_test_output *output, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    char *command = NULL;
    int n = vasprintf(&command, format, ap);
    va_end(ap);
    if (n < 0) {
        memset(output, 0, sizeof *output);
        return MF_ENOMEM;
    }
    int rc = mf_test_run(command, NULL, 0, output);
    free(command);
    return rc;
}

void mf_test_output_free(struct mf_test_output *output)
{
    free(output->out);
    free(output->err);
    memset(output, 0, sizeof *output);
}

char *mf_test_shell_quote(const char *text)
{
    size_t size = 3;
    for (const char *p = text; *p; p++)
        size += *p == '\'' ? 4 : 1;
    char *quoted = mf_test_xmalloc(size);
    char *q = quoted;
    *q++ = '\'';
    for (const char *p = text; *p; p++) {
        if (*p == '\'') {
            memcpy(q, "'\\''", 4);
            q += 4;
        } else {
            *q++ = *p;
        }
    }
    *q++ = '\'';
    *q = '\0';
    return quoted;
}

bool mf_test_soak(void)
{
    const char *soak = getenv("MF_SOAK");
    return soak && strcmp(soak, "1") == 0;
}

uint64_t mf_test_seed(const char *name, uint64_t fallback)
{
    uint64_t seed = fallback;
    const char *text = getenv("MF_SEED");
    if (text && *text) {
        char *end;
        errno = 0;
        unsigned long long value = strtoull(text, &end, 0);
        if (errno || *end)
            fprintf(stderr, "%s: ignoring MF_SEED=\"%s\" (not a number)\n", name, text);
        else
            seed = value;
    }
    fprintf(stderr, "%s: seed 0x%llx (set MF_SEED to repeat)\n", name, (unsigned long long)seed);
    return seed;
}
