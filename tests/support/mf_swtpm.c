/* swtpm for tests (see mf_swtpm.h). The control channel's listening socket is bound here and
 * handed to swtpm, so a control answer proves that this very process is up; the command port is
 * the next one (the swtpm TCTI's rule) and swtpm binds it itself: when someone else took it
 * meanwhile, swtpm exits and the start is retried on other ports. */
#include "mf_swtpm.h"

#include "mf_err.h"
#include "mf_testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SWTPM_ATTEMPTS           8
/* swtpm starts in milliseconds; the margin is for a loaded machine. */
#define SWTPM_READY_MS           15000
#define SWTPM_TERM_MS            5000
#define SWTPM_REGISTRY_MAX       16
#define SWTPM_CTRL_FD            3 /* where the child finds the control socket */
#define SWTPM_CMD_GET_CAPABILITY 1u

/* What the exit handler must clean when a test did not: copies, not pointers, because the
 * struct of a failed test may be gone by then. */
static struct {
    pid_t pid;
    char dir[256];
} swtpm_registry[SWTPM_REGISTRY_MAX];
static bool swtpm_atexit_done;

static void swtpm_fail(struct mf_swtpm *tpm, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void swtpm_fail(struct mf_swtpm *tpm, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tpm->message, sizeof tpm->message, fmt, ap);
    va_end(ap);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ends `pid`: SIGTERM and a grace period (or SIGKILL at once with `hard`), then SIGKILL. */
static void swtpm_reap(pid_t pid, bool hard)
{
    if (pid <= 0)
        return;
    kill(pid, hard ? SIGKILL : SIGTERM);
    long deadline = now_ms() + SWTPM_TERM_MS;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        if (now_ms() > deadline)
            break;
        sleep_ms(5);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static void swtpm_at_exit(void)
{
    for (unsigned i = 0; i < SWTPM_REGISTRY_MAX; i++) {
        if (swtpm_registry[i].pid > 0) {
            fprintf(stderr, "mf_swtpm: stopping swtpm %d left running by a test\n",
                    (int)swtpm_registry[i].pid);
            swtpm_reap(swtpm_registry[i].pid, true);
        }
        if (swtpm_registry[i].dir[0])
            mf_test_rmtree(swtpm_registry[i].dir);
        swtpm_registry[i].pid = 0;
        swtpm_registry[i].dir[0] = '\0';
    }
}

static void registry_set(const char *dir, pid_t pid)
{
    if (!swtpm_atexit_done) {
        atexit(swtpm_at_exit);
        swtpm_atexit_done = true;
    }
    unsigned free_slot = SWTPM_REGISTRY_MAX;
    for (unsigned i = 0; i < SWTPM_REGISTRY_MAX; i++) {
        if (strcmp(swtpm_registry[i].dir, dir) == 0) {
            swtpm_registry[i].pid = pid;
            return;
        }
        if (!swtpm_registry[i].dir[0] && free_slot == SWTPM_REGISTRY_MAX)
            free_slot = i;
    }
    if (free_slot < SWTPM_REGISTRY_MAX) {
        snprintf(swtpm_registry[free_slot].dir, sizeof swtpm_registry[free_slot].dir, "%s", dir);
        swtpm_registry[free_slot].pid = pid;
    }
}

static void registry_drop(const char *dir)
{
    for (unsigned i = 0; i < SWTPM_REGISTRY_MAX; i++) {
        if (dir[0] && strcmp(swtpm_registry[i].dir, dir) == 0) {
            swtpm_registry[i].pid = 0;
            swtpm_registry[i].dir[0] = '\0';
        }
    }
}

/* The program: $MF_SWTPM, else "swtpm" on PATH. Returns a malloc'd path or NULL. */
static char *swtpm_program(void)
{
    const char *env = getenv("MF_SWTPM");
    if (env && *env)
        return access(env, X_OK) == 0 ? strdup(env) : NULL;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, ":");
        if (n > 0) {
            char candidate[4096];
            if (n + sizeof "/swtpm" < sizeof candidate) {
                memcpy(candidate, p, n);
                memcpy(candidate + n, "/swtpm", sizeof "/swtpm");
                if (access(candidate, X_OK) == 0)
                    return strdup(candidate);
            }
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return NULL;
}

bool mf_swtpm_available(void)
{
    char *program = swtpm_program();
    free(program);
    return program != NULL;
}

/* Binds a listening control socket on port P + 1 where P was free a moment ago. */
static int bind_ports(uint16_t *port, int *ctrl_fd)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -1;
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        if (bind(probe, (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(probe, (struct sockaddr *)&sa, &len) != 0) {
            close(probe);
            return -1;
        }
        uint16_t p = ntohs(sa.sin_port);
        if (p >= 65535) {
            close(probe);
            continue;
        }
        int ctrl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ctrl < 0) {
            close(probe);
            return -1;
        }
        sa.sin_port = htons((uint16_t)(p + 1));
        if (bind(ctrl, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ctrl, 8) == 0) {
            close(probe); /* swtpm binds the command port itself, right away */
            *port = p;
            *ctrl_fd = ctrl;
            return 0;
        }
        close(ctrl);
        close(probe);
    }
    errno = EADDRINUSE;
    return -1;
}

static void swtpm_child(const char *program, const char *dir, uint16_t port, int ctrl_fd,
                        pid_t parent)
{
    /* Die with the test, even when it dies without running exit handlers. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    if (ctrl_fd == SWTPM_CTRL_FD ? fcntl(ctrl_fd, F_SETFD, 0) != 0
                                 : dup2(ctrl_fd, SWTPM_CTRL_FD) < 0)
        _exit(126);
    char log[512], server[96], ctrl[64], state[320];
    snprintf(log, sizeof log, "%s/swtpm.out", dir);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(126);
    snprintf(server, sizeof server, "type=tcp,port=%u,bindaddr=127.0.0.1", (unsigned)port);
    snprintf(ctrl, sizeof ctrl, "type=tcp,fd=%d", SWTPM_CTRL_FD);
    snprintf(state, sizeof state, "dir=%s", dir);
    execl(program, "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl, "--tpmstate",
          state, "--flags", "not-need-init,startup-clear", (char *)NULL);
    fprintf(stderr, "mf_swtpm: cannot run %s: %s\n", program, strerror(errno));
    _exit(127);
}

/* Asks the control channel for its capabilities: an answer means swtpm runs, owns both ports
 * (it binds the command port before it serves anything) and is ready. */
static int swtpm_ping(uint16_t port, pid_t pid, long deadline)
{
    while (now_ms() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return MF_EIO; /* it exited: typically the command port was taken */
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return MF_EIO;
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)(port + 1));
        uint8_t cmd[4] = {0, 0, 0, SWTPM_CMD_GET_CAPABILITY};
        uint8_t answer[16];
        ssize_t got = -1;
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            send(s, cmd, sizeof cmd, MSG_NOSIGNAL) == (ssize_t)sizeof cmd) {
            struct pollfd pfd = {s, POLLIN, 0};
            long left = deadline - now_ms();
            if (left > 0 && poll(&pfd, 1, (int)left) == 1)
                got = recv(s, answer, sizeof answer, 0);
        }
        close(s);
        if (got >= 4 && answer[0] == 0 && answer[1] == 0 && answer[2] == 0 && answer[3] == 0)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return MF_EIO;
        sleep_ms(10);
    }
    return MF_ETIMEOUT;
}

static void append_output(struct mf_swtpm *tpm)
{
    char *log = mf_test_path(tpm->dir, "swtpm.out");
    char *text = NULL;
    size_t size = 0;
    if (mf_test_read_file(log, &text, &size) == 0 && size > 0) {
        size_t used = strlen(tpm->message);
        const char *tail = size > 200 ? text + size - 200 : text;
        snprintf(tpm->message + used, sizeof tpm->message - used, "; swtpm said: %s", tail);
    }
    free(text);
    free(log);
}

/* Runs swtpm on the existing state folder tpm->dir. */
static int swtpm_launch(struct mf_swtpm *tpm, char *tcti, size_t tcti_size)
{
    char *program = swtpm_program();
    if (!program) {
        swtpm_fail(tpm, "swtpm is not installed (Debian package swtpm; or set MF_SWTPM)");
        return MF_ENOTSUP;
    }
    int err = MF_EIO;
    for (int attempt = 0; attempt < SWTPM_ATTEMPTS; attempt++) {
        uint16_t port = 0;
        int ctrl_fd = -1;
        if (bind_ports(&port, &ctrl_fd) != 0) {
            swtpm_fail(tpm, "no free loopback ports: %s", strerror(errno));
            err = MF_EIO;
            break;
        }
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            swtpm_fail(tpm, "fork: %s", strerror(errno));
            close(ctrl_fd);
            err = MF_EIO;
            break;
        }
        if (pid == 0)
            swtpm_child(program, tpm->dir, port, ctrl_fd, parent);
        close(ctrl_fd); /* only swtpm holds it now: when it exits, the port refuses */
        registry_set(tpm->dir, pid);
        err = swtpm_ping(port, pid, now_ms() + SWTPM_READY_MS);
        if (err == 0) {
            tpm->pid = pid;
            tpm->port = port;
            int n = snprintf(tcti, tcti_size, "swtpm:host=127.0.0.1,port=%u", (unsigned)port);
            if (n < 0 || (size_t)n >= tcti_size) {
                swtpm_fail(tpm, "TCTI buffer of %zu bytes is too small", tcti_size);
                err = MF_ERANGE;
                break;
            }
            break;
        }
        swtpm_reap(pid, true);
        registry_set(tpm->dir, 0);
        swtpm_fail(tpm, "swtpm on port %u did not become ready (%s)", (unsigned)port,
                   err == MF_ETIMEOUT ? "timed out" : "it exited");
        append_output(tpm);
    }
    free(program);
    return err;
}

int mf_swtpm_start(struct mf_swtpm *tpm, char *tcti, size_t tcti_size)
{
    memset(tpm, 0, sizeof *tpm);
    if (tcti_size > 0)
        tcti[0] = '\0';
    if (!mf_swtpm_available()) {
        swtpm_fail(tpm, "swtpm is not installed (Debian package swtpm; or set MF_SWTPM)");
        return MF_ENOTSUP;
    }
    char *dir = mf_test_tmpdir("swtpm");
    if (!dir) {
        swtpm_fail(tpm, "cannot make a state folder: %s", strerror(errno));
        return MF_EIO;
    }
    if (strlen(dir) >= sizeof tpm->dir) {
        swtpm_fail(tpm, "state folder path too long: %s", dir);
        mf_test_rmtree(dir);
        free(dir);
        return MF_ENAMETOOLONG;
    }
    snprintf(tpm->dir, sizeof tpm->dir, "%s", dir);
    free(dir);
    registry_set(tpm->dir, 0);
    int err = swtpm_launch(tpm, tcti, tcti_size);
    if (err) {
        char message[sizeof tpm->message];
        memcpy(message, tpm->message, sizeof message);
        mf_swtpm_stop(tpm);
        memcpy(tpm->message, message, sizeof message);
    }
    return err;
}

int mf_swtpm_restart(struct mf_swtpm *tpm, char *tcti, size_t tcti_size)
{
    if (!tpm->dir[0]) {
        swtpm_fail(tpm, "restart of a TPM that was never started");
        return MF_EINVAL;
    }
    swtpm_reap(tpm->pid, true);
    tpm->pid = 0;
    tpm->port = 0;
    registry_set(tpm->dir, 0);
    return swtpm_launch(tpm, tcti, tcti_size);
}

int mf_swtpm_stop(struct mf_swtpm *tpm)
{
    if (tpm->pid > 0)
        swtpm_reap(tpm->pid, false);
    tpm->pid = 0;
    tpm->port = 0;
    int err = 0;
    if (tpm->dir[0]) {
        registry_drop(tpm->dir);
        if (mf_test_rmtree(tpm->dir) != 0) {
            swtpm_fail(tpm, "cannot remove %s", tpm->dir);
            err = MF_EIO;
        }
        tpm->dir[0] = '\0';
    }
    return err;
}
