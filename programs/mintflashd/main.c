/* mintflashd: the programmer. Parses options (and an optional config file), starts the
 * programmer and its channels, and runs until SIGTERM/SIGINT; SIGHUP restarts it in stand-alone
 * mode as a power cycle would. Logs go to stderr (journald-friendly). */
#include "mf_err.h"
#include "mf_ini.h"
#include "mf_programmer.h"
#include "mf_server.h"
#include "remote.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct mf_server server;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        mf_server_request_reboot(&server);
    else
        mf_server_stop(&server);
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: mintflashd [options]\n"
        "\n"
        "The mintflash programmer: runs until SIGTERM or SIGINT; SIGHUP restarts it in\n"
        "stand-alone mode, as a power cycle would.\n"
        "\n"
        "  --storage IMG        storage image, created when missing\n"
        "                       (default: $XDG_DATA_HOME/mintflash/storage.img)\n"
        "  --size SIZE          size of a new storage image (default 128M)\n"
        "  --keystore PATH      trust anchor file (default: next to the storage image)\n"
        "  --tpm TCTI           use a TPM 2.0 as the trust anchor instead, e.g.\n"
        "                       device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321;\n"
        "                       its state file is the keystore path + .tpm\n"
        "  --tcp HOST:PORT      TCP channel (default 127.0.0.1:2323; 'off' disables)\n"
        "  --socket PATH        local UNIX socket, the stand-in for USB\n"
        "                       (default $XDG_RUNTIME_DIR/mintflash/mintflashd.sock; 'off')\n"
        "  --serial DEV[:BAUD[:FRAME]]\n"
        "                       serial channel (default off; 9600 8N1; FRAME 8N1, 8O1, 8E1)\n"
        "  --nbd HOST:PORT      NBD export of the public area in file access mode\n"
        "                       (default 127.0.0.1:10809)\n"
        "  --file-access        start in file access mode (the start button held at power-up)\n"
        "  --slots N            number of target slots (default 1)\n"
        "  --target SPEC        how the slots reach their targets: once for all, or once per\n"
        "                       slot; SPEC: sim (default), gdb:tcp:HOST:PORT or\n"
        "                       gdb:serial:DEV[:BAUD] (a GDB server: QEMU, OpenOCD, pyOCD, ...)\n"
        "  --sim-dir DIR        folder of the simulated devices\n"
        "                       (default: $XDG_DATA_HOME/mintflash/sim)\n"
        "  --sim-speed X        time scale of simulated devices: 0 none, 1 realistic (default)\n"
        "  --hold MIB           memory for data files of the public area's setup, kept between\n"
        "                       cycles (default 16; 0: read them from the storage every cycle,\n"
        "                       but for files whose records are out of order)\n"
        "  --config FILE        read options from FILE (lines: option = value)\n"
        "  -v, --verbose        log more (twice: every command)\n"
        "  --version            print the version\n"
        "  -h, --help           this text\n");
}

struct options {
    char storage[512], keystore[600], sim_dir[512], socket_path[512], tpm[256];
    const char *tcp, *socket, *serial, *nbd;
    uint64_t size;
    unsigned slots;
    const char *targets[MF_SLOTS_MAX];
    unsigned target_count;
    double sim_speed;
    uint64_t hold; /* bytes */
    bool file_access;
    int verbose;
    /* Strings from a config file live here. */
    char config_strings[64][512];
    unsigned config_count;
};

static int parse_size(const char *text, uint64_t *size)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *size = (uint64_t)v << shift;
    return 0;
}

static int apply(struct options *o, const char *name, const char *value)
{
    char *end;
    if (strcmp(name, "storage") == 0)
        snprintf(o->storage, sizeof o->storage, "%s", value);
    else if (strcmp(name, "size") == 0) {
        if (parse_size(value, &o->size) || o->size == 0) {
            fprintf(stderr, "mintflashd: --size %s: expected a size such as 128M\n", value);
            return -1;
        }
    } else if (strcmp(name, "keystore") == 0)
        snprintf(o->keystore, sizeof o->keystore, "%s", value);
    else if (strcmp(name, "tpm") == 0)
        snprintf(o->tpm, sizeof o->tpm, "%s", value);
    else if (strcmp(name, "tcp") == 0)
        o->tcp = strcmp(value, "off") ? value : NULL;
    else if (strcmp(name, "socket") == 0)
        o->socket = strcmp(value, "off") ? value : NULL;
    else if (strcmp(name, "serial") == 0)
        o->serial = strcmp(value, "off") ? value : NULL;
    else if (strcmp(name, "nbd") == 0)
        o->nbd = strcmp(value, "off") ? value : NULL;
    else if (strcmp(name, "slots") == 0) {
        unsigned long v = strtoul(value, &end, 10);
        if (*end || v < 1 || v > MF_SLOTS_MAX) {
            fprintf(stderr, "mintflashd: --slots %s: from 1 to %u\n", value, MF_SLOTS_MAX);
            return -1;
        }
        o->slots = (unsigned)v;
    } else if (strcmp(name, "target") == 0) {
        if (o->target_count == MF_SLOTS_MAX) {
            fprintf(stderr, "mintflashd: --target given more than %u times\n", MF_SLOTS_MAX);
            return -1;
        }
        o->targets[o->target_count++] = value;
    } else if (strcmp(name, "sim-dir") == 0)
        snprintf(o->sim_dir, sizeof o->sim_dir, "%s", value);
    else if (strcmp(name, "sim-speed") == 0) {
        double v = strtod(value, &end);
        if (*end || end == value || v < 0 || v > 1000) {
            fprintf(stderr, "mintflashd: --sim-speed %s: a number from 0 to 1000\n", value);
            return -1;
        }
        o->sim_speed = v;
    } else if (strcmp(name, "hold") == 0) {
        unsigned long v = strtoul(value, &end, 10);
        if (*end || end == value || v > 4096) {
            fprintf(stderr, "mintflashd: --hold %s: MiB from 0 to 4096\n", value);
            return -1;
        }
        o->hold = (uint64_t)v << 20;
    } else if (strcmp(name, "file-access") == 0)
        o->file_access = strcmp(value, "no") != 0 && strcmp(value, "0") != 0;
    else if (strcmp(name, "verbose") == 0)
        o->verbose = atoi(value);
    else {
        fprintf(stderr, "mintflashd: unknown option '%s'\n", name);
        return -1;
    }
    return 0;
}

struct config_file {
    struct options *o;
    const char *path;
};

static int config_item(void *context, const struct mf_ini_item *item)
{
    struct config_file *c = context;
    struct options *o = c->o;
    if (item->section[0] && !mf_ini_name_is(item->section, "mintflashd")) {
        fprintf(stderr, "mintflashd: %s:%u: unknown section [%s]\n", c->path, item->line,
                item->section);
        return MF_EFORMAT;
    }
    if (o->config_count == 64) {
        fprintf(stderr, "mintflashd: %s: too many settings\n", c->path);
        return MF_EFORMAT;
    }
    char *value = o->config_strings[o->config_count++];
    snprintf(value, 512, "%s", item->value);
    /* Keys in any case, as in FLASHER.INI: `Slots = 2` is `slots = 2`. */
    char key[64];
    size_t n = 0;
    for (; item->key[n] && n + 1 < sizeof key; n++)
        key[n] = (char)tolower((unsigned char)item->key[n]);
    key[n] = '\0';
    if (apply(o, key, value)) {
        fprintf(stderr, "mintflashd: %s:%u: in the setting above\n", c->path, item->line);
        return MF_EFORMAT;
    }
    return 0;
}

static int read_config(struct options *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mintflashd: --config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char text[16384];
    size_t n = fread(text, 1, sizeof text, f);
    int read_error = ferror(f) ? errno : 0; /* a folder opens, and fails here (EISDIR) */
    bool too_big = !read_error && !feof(f);
    fclose(f);
    if (read_error) {
        fprintf(stderr, "mintflashd: --config %s: %s\n", path, strerror(read_error));
        return -1;
    }
    if (too_big) {
        fprintf(stderr, "mintflashd: --config %s: larger than 16 KiB\n", path);
        return -1;
    }
    struct config_file c = {o, path};
    struct mf_ini_error ierr;
    int err = mf_ini_parse(text, n, config_item, &c, &ierr);
    if (err == MF_EFORMAT && ierr.message[0])
        fprintf(stderr, "mintflashd: %s:%u: %s\n", path, ierr.line, ierr.message);
    return err ? -1 : 0;
}

int main(int argc, char **argv)
{
    static struct options o;
    mf_programmer_default_paths(o.storage, NULL, o.sim_dir, sizeof o.storage);
    mf_remote_default_socket(o.socket_path, sizeof o.socket_path); /* the commander's rule */
    o.tcp = "127.0.0.1:2323";
    o.socket = o.socket_path;
    o.nbd = "127.0.0.1:10809";
    o.slots = 1;
    o.sim_speed = 1.0;
    o.hold = MF_AREA_HOLD_DEFAULT;

    static const struct option longopts[] = {
        {"storage", required_argument, NULL, 0},
        {"size", required_argument, NULL, 0},
        {"keystore", required_argument, NULL, 0},
        {"tpm", required_argument, NULL, 0},
        {"tcp", required_argument, NULL, 0},
        {"socket", required_argument, NULL, 0},
        {"serial", required_argument, NULL, 0},
        {"nbd", required_argument, NULL, 0},
        {"file-access", no_argument, NULL, 0},
        {"slots", required_argument, NULL, 0},
        {"target", required_argument, NULL, 0},
        {"sim-dir", required_argument, NULL, 0},
        {"sim-speed", required_argument, NULL, 0},
        {"config", required_argument, NULL, 0},
        {"hold", required_argument, NULL, 0},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool keystore_set = false;
    for (;;) {
        int index = 0;
        int c = getopt_long(argc, argv, "vh", longopts, &index);
        if (c == -1)
            break;
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == 'V') {
            printf("mintflashd %s\n", MF_VERSION);
            return 0;
        }
        if (c == 'v') {
            o.verbose++;
            continue;
        }
        if (c != 0) {
            usage(stderr);
            return 2;
        }
        const char *name = longopts[index].name;
        if (strcmp(name, "config") == 0) {
            if (read_config(&o, optarg))
                return 2;
            continue;
        }
        if (strcmp(name, "keystore") == 0)
            keystore_set = true;
        if (apply(&o, name, longopts[index].has_arg ? optarg : "yes"))
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "mintflashd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!keystore_set && !o.keystore[0]) {
        /* The trust anchor lives beside the image by default, outside it. */
        snprintf(o.keystore, sizeof o.keystore, "%s.keystore", o.storage);
    }

    struct mf_programmer_config pc = {
        .storage = o.storage,
        .storage_size = o.size,
        .keystore = o.keystore,
        .tpm = o.tpm[0] ? o.tpm : NULL,
        .slots = o.slots,
        .target_count = o.target_count,
        .sim_dir = o.sim_dir,
        .sim_speed = o.sim_speed,
        .hold = o.hold,
        .hold_set = true,
        .mode = o.file_access ? MF_MODE_FILEACCESS : MF_MODE_STANDALONE,
        .nbd_listen = o.nbd,
        .verbose = o.verbose,
    };
    memcpy(pc.targets, o.targets, sizeof o.targets);

    signal(SIGPIPE, SIG_IGN);
    /* A write past a file size limit (ulimit -f) fails with EFBIG, named, instead of killing us. */
    signal(SIGXFSZ, SIG_IGN);
    static struct mf_programmer programmer;
    char error[MF_PROGRAMMER_TEXT_MAX];
    struct mf_server_config sc = {.tcp = o.tcp,
                                  .unix_socket = o.socket,
                                  .serial = o.serial,
                                  .programmer = &programmer,
                                  .verbose = o.verbose};
    /* The channels open first so that a busy port fails before the storage is touched. */
    if (mf_server_open(&server, &sc, error)) {
        fprintf(stderr, "mintflashd: %s\n", error);
        return 1;
    }
    struct mf_programmer_sink sink = mf_server_sink(&server);
    if (pc.tpm) /* tpm2-tss logs to stderr unless told; setenv only before threads start */
        setenv("TSS2_LOG", "all+NONE", 0);
    if (mf_programmer_start(&programmer, &pc, &sink, error)) {
        fprintf(stderr, "mintflashd: %s\n", error);
        mf_server_close(&server);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fprintf(stderr, "mintflashd %s: %u slot(s), storage %s\n", MF_VERSION, pc.slots, o.storage);
    mf_server_boot(&server);
    int rc = mf_server_run(&server);
    fprintf(stderr, "mintflashd: stopping\n");
    /* Running cycles are cancelled safely: a count they took stays taken, the log says so. */
    mf_server_close(&server);
    mf_programmer_stop(&programmer);
    fprintf(stderr, "mintflashd: stopped\n");
    return rc ? 1 : 0;
}
