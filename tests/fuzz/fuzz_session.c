/* Fuzz target: the ASCII protocol's line handler with its session state, in the real daemon
 * (server, sessions, programmer, one simulated target slot), over the local socket, where every
 * command is allowed. Each input is what one client sends on one connection: any bytes, any
 * commands in any order (file commands with their open file, #SELMODULE, cycles, #SECUREAREA,
 * #REBOOT, ...). After it, a second connection must still get "#STATUS" answered: the daemon
 * neither crashed (ASan/UBSan watch it) nor hangs. State carries over from input to input, as it
 * would on a programmer in the field; the storage is a 16 MiB image in a temp folder.
 * Input: the bytes of one connection (at most 64 KiB are sent). */
#include "mf_programmer.h"
#include "mf_server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mf_programmer programmer;
static struct mf_server server;
static char socket_path[100];
static pthread_t server_thread;

static void *serve(void *arg)
{
    (void)arg;
    mf_server_run(&server);
    return NULL;
}

static char dir[] = "/tmp/mf-fuzz-session-XXXXXX";

/* At exit: the daemon stops as on SIGTERM and its folder goes. */
static void stop_daemon(void)
{
    mf_server_stop(&server);
    pthread_join(server_thread, NULL);
    mf_server_close(&server);
    mf_programmer_stop(&programmer);
    char command[160];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0)
        fprintf(stderr, "fuzz_session: cannot remove %s\n", dir);
}

static void start_daemon(void)
{
    static char storage[256], keystore[256], sim[256];
    if (!mkdtemp(dir))
        abort();
    snprintf(storage, sizeof storage, "%s/storage.img", dir);
    snprintf(keystore, sizeof keystore, "%s/keystore", dir);
    snprintf(sim, sizeof sim, "%s/sim", dir);
    snprintf(socket_path, sizeof socket_path, "%s/sock", dir);
    signal(SIGPIPE, SIG_IGN);
    struct mf_server_config sc = {.unix_socket = socket_path, .programmer = &programmer};
    char error[MF_SERVER_TEXT_MAX];
    if (mf_server_open(&server, &sc, error)) {
        fprintf(stderr, "fuzz_session: %s\n", error);
        abort();
    }
    struct mf_programmer_config pc = {.storage = storage,
                                      .storage_size = 16u << 20,
                                      .keystore = keystore,
                                      .slots = 1,
                                      .sim_dir = sim,
                                      .sim_speed = 0,
                                      .mode = MF_MODE_STANDALONE};
    struct mf_programmer_sink sink = mf_server_sink(&server);
    if (mf_programmer_start(&programmer, &pc, &sink, error)) {
        fprintf(stderr, "fuzz_session: %s\n", error);
        abort();
    }
    mf_server_boot(&server);
    if (pthread_create(&server_thread, NULL, serve, NULL))
        abort();
    atexit(stop_daemon);
}

static int connect_local(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_path);
    for (int tries = 0; tries < 200; tries++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        struct timespec t = {0, 10 * 1000000L};
        nanosleep(&t, NULL);
    }
    abort();
}

/* Reads until `want` appears, the peer closes, or `limit` tenths of a second pass. */
static bool read_until(int fd, const char *want, int limit)
{
    static char buf[1 << 16];
    size_t used = 0;
    for (int waited = 0; waited < limit;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 100);
        if (r == 0) {
            waited++;
            continue;
        }
        ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
        if (n <= 0)
            return false;
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, want))
            return true;
        if (used > sizeof buf / 2) { /* keep the tail */
            memmove(buf, buf + used - 64, 64);
            used = 64;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool started;
    if (!started) {
        start_daemon();
        started = true;
    }
    if (size > (64u << 10))
        size = 64u << 10;
    int fd = connect_local();
    size_t sent = 0;
    while (sent < size) {
        ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the daemon may drop a client that floods it */
        sent += (size_t)n;
    }
    /* Take the answers until the session falls quiet for 20 ms (at most 2 s), then hang up,
     * maybe in the middle of a command. */
    static char sink[1 << 16];
    for (int rounds = 0; rounds < 100; rounds++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0 || read(fd, sink, sizeof sink) <= 0)
            break;
    }
    close(fd);
    /* Another client is still served. */
    fd = connect_local();
    const char status[] = "#STATUS\r";
    if (send(fd, status, sizeof status - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof status - 1) ||
        !read_until(fd, "#STATUS:", 600)) {
        fprintf(stderr, "fuzz_session: the daemon no longer answers #STATUS\n");
        abort();
    }
    close(fd);
    return 0;
}
