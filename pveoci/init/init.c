/*
 * pveoci's container init: PID 1 of every container pveoci makes, and the helper commands pveoci runs
 * in a container with `pct exec`. docs/init.md is the contract; this file follows it in its order.
 *
 * One static program for every container of an architecture, so everything a container needs (the
 * process spec) comes from its argument or from /.pveoci/run/spec, never from the binary. Built
 * against musl with a pinned `zig cc` by pveoci/init/build.py, reproducibly (same bytes every time).
 *
 * No threads, no stdio buffers: every write goes out whole (write_all) the moment it is made, so a
 * message is never lost or interleaved when the process ends or the container is torn down.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#ifndef PVEOCI_INIT_VERSION
#error "build with python -m pveoci.init.build (it defines PVEOCI_INIT_VERSION from pveoci/init/__init__.py)"
#endif

#define RUN_DIR "/.pveoci/run"
#define SPEC_FILE RUN_DIR "/spec"
#define STATE_FILE RUN_DIR "/state"
#define PID_FILE RUN_DIR "/pid"
#define STATUS_FILE RUN_DIR "/status"
#define LOG_FILE RUN_DIR "/log"
#define LOCK_FILE RUN_DIR "/follow.lock"
#define STDIN_FIFO RUN_DIR "/stdin"
#define RECEIVED_FILE RUN_DIR "/stdin.received"
#define ENDED_FILE RUN_DIR "/stdin.ended"
#define INPUT_MAX (64u << 10)       /* input held for the process, waiting for it to read */
#define SIZE_WAIT_MS 2000           /* how long a process with a pty of its own waits for its size */

#define START_SIGNAL 40
#define MAX_SIGNAL 64
#define SPEC_MAGIC "PVEOCI-SPEC 1\n"
#define SPEC_MAX (16u << 20)        /* far above what execve() accepts; bounds a hostile stdin */
#define NGROUPS_LIMIT 65536         /* the kernel's NGROUPS_MAX */
#define MOUNTS_MAX 256              /* mounts the init makes at the start */
#define ID_MAX 0xfffffffeu          /* (uid_t)-1 means "unchanged" to setresuid() */
#define CHUNK 65536                 /* one read of the process's output: one log record at most */
#define DRAIN_MAX (1u << 20)        /* what is still read per pipe once the process ended */
#define FOLLOWER_WAIT_MS 5000
#define FOLLOW_POLL_MS 50
#define FRAME_READY 0               /* logs --framed: the follower is attached (holds its lock) */
#define FRAME_STATUS 3              /* logs --framed: the process ended with this status (decimal) */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- small helpers ------------------------------------------------------------------------------ */

/* Writes everything (retrying after EINTR, short writes, and EAGAIN on a non-blocking fd); -1 on error. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                    return -1;
                continue;
            }
            return -1;
        }
        if (n == 0) { /* never for files and pipes; would otherwise loop for ever */
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* "pveoci-init: <message>\n" on stderr in one write, cut to fit a bounded buffer. */
static void vsay(int fd, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void vsay(int fd, const char *fmt, va_list ap)
{
    char buf[PATH_MAX + 512];
    static const char prefix[] = "pveoci-init: ";
    size_t n = sizeof prefix - 1;
    memcpy(buf, prefix, n);
    int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    if (m > 0)
        n += (size_t)m < sizeof buf - n - 1 ? (size_t)m : sizeof buf - n - 2;
    buf[n++] = '\n';
    (void)write_all(fd, buf, n);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(2, fmt, ap);
    va_end(ap);
}

/* A step of starting the process failed: "pveoci-init: <step>: <strerror>", then exit `code`. */
static _Noreturn void fail(int code, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void fail(int code, int err, const char *fmt, ...)
{
    char step[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(step, sizeof step, fmt, ap);
    va_end(ap);
    say("%s: %s", step, strerror(err));
    _exit(code);
}

static void nap(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads fd to its end into a new NUL-terminated buffer of at most `max` bytes; NULL and errno if not. */
static char *read_all(int fd, size_t max, size_t *lenp)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return NULL;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[len] = '\0';
    *lenp = len;
    return buf;
}

static char *read_path(const char *path, size_t max, size_t *lenp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = read_all(fd, max, lenp);
    int e = errno;
    close(fd);
    errno = e;
    return buf;
}

/* A short file of run/ (state, pid, status) as a string; -1 when it cannot be read. */
static int read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < size - 1) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (int)len;
}

/* Writes run/<name> whole or not at all: readers (pct exec, pveoci) never see a half-written file. */
static int put_file(const char *name, const void *data, size_t len, mode_t mode)
{
    char path[64], tmp[64];
    snprintf(path, sizeof path, RUN_DIR "/%s", name);
    snprintf(tmp, sizeof tmp, RUN_DIR "/.%s.%ld", name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (close(fd) < 0 && errno != EINTR) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static int put_text(const char *name, const char *text)
{
    return put_file(name, text, strlen(text), 0644);
}

static int put_number(const char *name, long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", value);
    return put_text(name, buf);
}

/* Digits of `base` at *pp (at least one), value at most max; advances *pp past them. */
static int parse_num(const char **pp, unsigned base, uint64_t max, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (*p < '0' || *p >= (char)('0' + base))
        return -1;
    for (; *p >= '0' && *p < (char)('0' + base); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > max || v > (max - d) / base)
            return -1;
        v = v * base + d;
    }
    *pp = p;
    *out = v;
    return 0;
}

/* The whole string is one number. */
static int parse_whole(const char *s, unsigned base, uint64_t max, uint64_t *out)
{
    return parse_num(&s, base, max, out) == 0 && *s == '\0' ? 0 : -1;
}

/* ---- the process spec --------------------------------------------------------------------------- */

struct rlim {
    int resource;
    rlim_t soft, hard;
};

/* A mount of the spec's (`mount` records): `lxc` re-stacks what LXC mounted there, in the spec's order; `new`
   mounts the filesystem; `mask` hides a path (linux.maskedPaths), `rdonly` makes it read-only (readonlyPaths). */
enum { M_NEW, M_LXC, M_MASK, M_RDONLY };
struct mnt {
    int kind;
    const char *type, *source, *dest, *data;
    unsigned long flags;
    char *copy;                 /* the fields point into it */
};

enum { CAP_B, CAP_E, CAP_P, CAP_I, CAP_A, CAP_SETS };

/* A device node of linux.devices, made at the start (`device` records). */
struct dev {
    mode_t type, mode;          /* S_IFCHR, S_IFBLK or S_IFIFO; permission bits */
    unsigned major, minor;
    uid_t uid;
    gid_t gid;
    const char *path;
};

struct spec {
    char *bytes;                /* the spec as read; the strings below point into it */
    size_t len;
    const char *path, *cwd;
    char **args, **env;         /* NULL-terminated */
    size_t nargs, nenv;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    size_t ngroups;
    mode_t umask;
    struct rlim *rlimits;
    size_t nrlimits;
    int nnp, has_oom, oom, terminal, stopsignal, input, pty;
    int has_caps;
    uint64_t caps[CAP_SETS];    /* bounding, effective, permitted, inheritable, ambient: bit N is capability N */
    struct mnt *mounts;
    size_t nmounts;
    struct dev *devices;
    size_t ndevices;
};

enum { K_PATH, K_ARG, K_ENV, K_CWD, K_UID, K_GID, K_GROUP, K_UMASK, K_RLIMIT, K_NNP, K_OOM, K_TERMINAL,
       K_STOPSIGNAL, K_STDIN, K_PTY, K_CAPS, K_MOUNT, K_DEVICE, K_COUNT };
static const char *const KEYS[K_COUNT] = {"path", "arg", "env", "cwd", "uid", "gid", "group", "umask",
                                          "rlimit", "nnp", "oom", "terminal", "stopsignal", "stdin", "pty",
                                          "caps", "mount", "device"};
/* How often each key may appear: at least, at most. */
static const size_t KEY_MIN[K_COUNT] = {1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const size_t KEY_MAX[K_COUNT] = {1, SIZE_MAX, SIZE_MAX, 1, 1, 1, NGROUPS_LIMIT, 1, SIZE_MAX, 1, 1, 1, 1, 1,
                                        1, 1, MOUNTS_MAX, MOUNTS_MAX};

static const char *const RLIMIT_NAMES[] = {"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
                                           "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO",
                                           "RTTIME"};

static int key_index(const char *key, size_t len)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strlen(KEYS[k]) == len && memcmp(KEYS[k], key, len) == 0)
            return k;
    return -1;
}

/* KIND LF TYPE LF SOURCE LF DESTINATION LF FLAGS LF DATA, split in a copy (the spec's bytes are written to
   run/spec as they came). */
static int parse_mount(struct mnt *m, const char *value)
{
    char *field[6], *v = strdup(value);
    if (!v)
        return -1;
    m->copy = v;
    for (int i = 0; i < 6; i++) {
        field[i] = v;
        char *lf = strchr(v, '\n');
        if ((lf == NULL) != (i == 5))
            return -1;
        if (lf) {
            *lf = '\0';
            v = lf + 1;
        }
    }
    uint64_t flags;
    static const char *const kinds[] = {"new", "lxc", "mask", "rdonly"};
    int kind = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(field[0], kinds[i]) == 0)
            kind = i;
    if (kind < 0 || field[3][0] != '/' || parse_whole(field[4], 10, ULONG_MAX, &flags) < 0)
        return -1;
    *m = (struct mnt){.kind = kind, .type = field[1], .source = field[2], .dest = field[3],
                      .data = field[5], .flags = (unsigned long)flags, .copy = m->copy};
    return 0;
}

/* TYPE:MAJOR:MINOR:MODE:UID:GID:PATH; TYPE c, b or p; numbers decimal. */
static int parse_device(struct dev *d, const char *v)
{
    uint64_t n[6];
    const char *p = v + 2;
    if ((v[0] != 'c' && v[0] != 'b' && v[0] != 'p') || v[1] != ':')
        return -1;
    static const uint64_t max[6] = {UINT32_MAX, UINT32_MAX, 07777, ID_MAX, ID_MAX};
    for (int i = 0; i < 5; i++)
        if (parse_num(&p, 10, max[i], &n[i]) < 0 || *p++ != ':')
            return -1;
    if (*p != '/')
        return -1;
    *d = (struct dev){.type = v[0] == 'c' ? S_IFCHR : v[0] == 'b' ? S_IFBLK : S_IFIFO, .major = (unsigned)n[0],
                      .minor = (unsigned)n[1], .mode = (mode_t)n[2], .uid = (uid_t)n[3], .gid = (gid_t)n[4], .path = p};
    return 0;
}

static int parse_value(struct spec *s, int k, char *v)
{
    uint64_t n, soft, hard;
    const char *p = v;
    switch (k) {
    case K_PATH:
        s->path = v;
        return v[0] == '/' ? 0 : -1;
    case K_ARG:
        s->args[s->nargs++] = v;
        return 0;
    case K_ENV:
        s->env[s->nenv++] = v;
        return strchr(v, '=') && v[0] != '=' ? 0 : -1;
    case K_CWD:
        s->cwd = v;
        return v[0] == '/' ? 0 : -1;
    case K_UID:
    case K_GID:
    case K_GROUP:
        if (parse_whole(v, 10, ID_MAX, &n) < 0)
            return -1;
        if (k == K_UID)
            s->uid = (uid_t)n;
        else if (k == K_GID)
            s->gid = (gid_t)n;
        else
            s->groups[s->ngroups++] = (gid_t)n;
        return 0;
    case K_UMASK:
        if (parse_whole(v, 8, 0777, &n) < 0)
            return -1;
        s->umask = (mode_t)n;
        return 0;
    case K_RLIMIT:
        /* RESOURCE:SOFT:HARD. Only the syntax is checked: what the kernel refuses (soft above hard,
           an unknown resource) fails at the prlimit step with the kernel's own words. */
        if (parse_num(&p, 10, 63, &n) < 0 || *p++ != ':' || parse_num(&p, 10, UINT64_MAX, &soft) < 0 ||
            *p++ != ':' || parse_num(&p, 10, UINT64_MAX, &hard) < 0 || *p != '\0')
            return -1;
        s->rlimits[s->nrlimits++] = (struct rlim){(int)n, (rlim_t)soft, (rlim_t)hard};
        return 0;
    case K_NNP:
    case K_TERMINAL:
    case K_STDIN:
    case K_PTY:
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return -1;
        *(k == K_NNP ? &s->nnp : k == K_TERMINAL ? &s->terminal : k == K_STDIN ? &s->input : &s->pty) = v[0] == '1';
        return 0;
    case K_OOM:
        if (parse_whole(v + (v[0] == '-'), 10, 1000, &n) < 0)
            return -1;
        s->has_oom = 1;
        s->oom = v[0] == '-' ? -(int)n : (int)n;
        return 0;
    case K_STOPSIGNAL:
        if (parse_whole(v, 10, MAX_SIGNAL, &n) < 0 || n == 0)
            return -1;
        s->stopsignal = (int)n;
        return 0;
    case K_CAPS:
        /* BOUNDING:EFFECTIVE:PERMITTED:INHERITABLE:AMBIENT, decimal masks */
        for (int i = 0; i < CAP_SETS; i++)
            if (parse_num(&p, 10, UINT64_MAX, &s->caps[i]) < 0 || *p++ != (i == CAP_SETS - 1 ? '\0' : ':'))
                return -1;
        s->has_caps = 1;
        return 0;
    case K_MOUNT:
        return parse_mount(&s->mounts[s->nmounts++], v);
    case K_DEVICE:
        return parse_device(&s->devices[s->ndevices++], v);
    }
    return -1;
}

/* Checks and decodes a spec (docs/init.md); keeps `bytes`. 0, or -1 with a reason in err. Values are
   never quoted in a reason: an env value may be a secret. */
static int parse_spec(char *bytes, size_t len, struct spec *s, char *err, size_t errlen)
{
    static const char magic[] = SPEC_MAGIC;
    size_t count[K_COUNT] = {0};
    memset(s, 0, sizeof *s);
    s->bytes = bytes;
    s->len = len;
    s->umask = 022;
    s->stopsignal = SIGTERM;
    if (len < sizeof magic - 1 || memcmp(bytes, magic, sizeof magic - 1) != 0) {
        snprintf(err, errlen, "not a process spec (no \"PVEOCI-SPEC 1\" line)");
        return -1;
    }
    char *start = bytes + sizeof magic - 1, *end = bytes + len;
    if (start < end && end[-1] != '\0') {
        snprintf(err, errlen, "the last record is not ended by a NUL byte");
        return -1;
    }
    /* Pass 1: count the records of each key; every record is a NUL-terminated string from here on. */
    for (char *r = start; r < end; r += strlen(r) + 1) {
        char *eq = strchr(r, '=');
        if (!eq) {
            snprintf(err, errlen, "a record without '='");
            return -1;
        }
        int k = key_index(r, (size_t)(eq - r));
        if (k < 0) {
            snprintf(err, errlen, "unknown key \"%.*s\"", eq - r < 40 ? (int)(eq - r) : 40, r);
            return -1;
        }
        count[k]++;
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (count[k] < KEY_MIN[k] || count[k] > KEY_MAX[k]) {
            snprintf(err, errlen, "key %s appears %zu times", KEYS[k], count[k]);
            return -1;
        }
    }
    s->args = calloc(count[K_ARG] + 1, sizeof *s->args);
    s->env = calloc(count[K_ENV] + 1, sizeof *s->env);
    s->groups = calloc(count[K_GROUP] + 1, sizeof *s->groups);
    s->rlimits = calloc(count[K_RLIMIT] + 1, sizeof *s->rlimits);
    s->mounts = calloc(count[K_MOUNT] + 1, sizeof *s->mounts);
    s->devices = calloc(count[K_DEVICE] + 1, sizeof *s->devices);
    if (!s->args || !s->env || !s->groups || !s->rlimits || !s->mounts || !s->devices) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Pass 2: the values. */
    for (char *r = start; r < end; r += strlen(r) + 1) {
        char *eq = strchr(r, '=');
        int k = key_index(r, (size_t)(eq - r));
        if (parse_value(s, k, eq + 1) < 0) {
            snprintf(err, errlen, "bad value for key %s", KEYS[k]);
            return -1;
        }
    }
    if (s->pty && s->terminal) {
        snprintf(err, errlen, "pty and terminal: one or the other");
        return -1;
    }
    return 0;
}

static void free_spec(struct spec *s)
{
    free(s->args);
    free(s->env);
    free(s->groups);
    free(s->rlimits);
    for (size_t i = 0; s->mounts && i < s->nmounts; i++)
        free(s->mounts[i].copy);
    free(s->mounts);
    free(s->devices);
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

/* base64url without padding (trailing '=' tolerated) into a new buffer; NULL if not base64url. */
static char *b64url_decode(const char *in, size_t *outlen)
{
    size_t len = strlen(in);
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    char *out = malloc(len / 4 * 3 + 3 + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52 : c == '-' ? 62 : c == '_' ? 63 : -1;
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)(acc >> bits & 0xff);
        }
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

/* An exec spec's name (set-spec --exec NAME, exec --exec-spec=NAME): 1-32 of [A-Za-z0-9_-]. */
static int exec_spec_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 32 || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        return -1;
    return 0;
}

/* The spec from --spec (base64url) or, without one, from `path` (run/spec, or a stashed exec spec, which is
   removed once read: it is for one exec). 0, or -1 with a reason in err. */
static int load_spec(const char *b64, const char *path, struct spec *s, char *err, size_t errlen)
{
    size_t len;
    char *bytes;
    if (b64) {
        if (!(bytes = b64url_decode(b64, &len))) {
            snprintf(err, errlen, "--spec: not base64url");
            return -1;
        }
    } else if (!(bytes = read_path(path, SPEC_MAX, &len))) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!b64 && strcmp(path, SPEC_FILE) != 0)
        unlink(path);
    char why[256];
    if (parse_spec(bytes, len, s, why, sizeof why) < 0) {
        snprintf(err, errlen, "bad spec: %s", why);
        free_spec(s); /* frees bytes too */
        return -1;
    }
    return 0;
}

/* ---- becoming the process ----------------------------------------------------------------------- */

/* Handlers back to default (execve would keep none of ours anyway, but a signal that comes between
   fork and execve must act as it will on the program, not vanish in a no-op handler). musl refuses
   32-34, its own signals, which have no handler here. */
static void default_handlers(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig <= MAX_SIGNAL; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &sa, NULL);
}

/* The mask survives execve: the program must not start with every signal blocked. */
static void unblock_all(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void rlimit_text(char *buf, size_t size, rlim_t v)
{
    if (v == RLIM_INFINITY)
        snprintf(buf, size, "unlimited");
    else
        snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* The capabilities held now: effective, permitted, inheritable. */
static int caps_held(uint64_t held[3])
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return -1;
    held[0] = d[0].effective | (uint64_t)d[1].effective << 32;
    held[1] = d[0].permitted | (uint64_t)d[1].permitted << 32;
    held[2] = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
    return 0;
}

/* Every capability the kernel knows and `keep` does not name leaves the bounding set. */
static void drop_bounding(uint64_t keep)
{
    int in;
    for (int cap = 0; cap < 64 && (in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0)) >= 0; cap++)
        if (in && !(keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            fail(126, errno, "prctl PR_CAPBSET_DROP %d", cap);
}

/* The spec's effective, permitted, inheritable and ambient sets, within what the init held (`held`: LXC's set for
   the container; what it lacks cannot be granted, and pveoci's mapping says so); then no more keeping them across
   a change of user. */
static void set_caps(const struct spec *s, const uint64_t held[3])
{
    uint64_t perm = s->caps[CAP_P] & held[1];
    uint64_t inh = s->caps[CAP_I] & (held[2] | held[1]) & (held[2] | s->caps[CAP_B]);
    uint64_t eff = s->caps[CAP_E] & perm;
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2] = {
        {.effective = (uint32_t)eff, .permitted = (uint32_t)perm, .inheritable = (uint32_t)inh},
        {.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(perm >> 32), .inheritable = (uint32_t)(inh >> 32)},
    };
    if (syscall(SYS_capset, &h, d) < 0)
        fail(126, errno, "capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(126, errno, "prctl PR_CAP_AMBIENT_CLEAR_ALL");
    uint64_t ambient = s->caps[CAP_A] & perm & inh;
    for (int cap = 0; cap < 64; cap++)
        if (ambient >> cap & 1 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            fail(126, errno, "prctl PR_CAP_AMBIENT_RAISE %d", cap);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        fail(126, errno, "prctl PR_SET_KEEPCAPS");
}

/* The spec's steps between the standard streams and execve, in the documented order. A failure ends
   the calling process with 126 and the step's name on stderr. */
static void apply(const struct spec *s)
{
    if (s->has_oom) {
        char num[16];
        int len = snprintf(num, sizeof num, "%d", s->oom);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write_all(fd, num, (size_t)len) < 0)
            fail(126, errno, "oom_score_adj %d", s->oom);
        close(fd);
    }
    for (size_t i = 0; i < s->nrlimits; i++) {
        const struct rlim *r = &s->rlimits[i];
        struct rlimit lim = {.rlim_cur = r->soft, .rlim_max = r->hard};
        if (prlimit(0, r->resource, &lim, NULL) < 0) {
            int e = errno;
            char name[32], soft[24], hard[24];
            if ((size_t)r->resource < sizeof RLIMIT_NAMES / sizeof RLIMIT_NAMES[0])
                snprintf(name, sizeof name, "RLIMIT_%s", RLIMIT_NAMES[r->resource]);
            else
                snprintf(name, sizeof name, "resource %d", r->resource);
            rlimit_text(soft, sizeof soft, r->soft);
            rlimit_text(hard, sizeof hard, r->hard);
            fail(126, e, "prlimit %s %s:%s", name, soft, hard);
        }
    }
    umask(s->umask);
    uint64_t held[3] = {0, 0, 0};
    if (s->has_caps) {
        drop_bounding(s->caps[CAP_B]);
        if (caps_held(held) < 0)
            fail(126, errno, "capget");
        /* The permitted set survives the change of user; the effective one is set again below. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            fail(126, errno, "prctl PR_SET_KEEPCAPS");
    }
    /* Always: an empty list drops the groups the init itself has (root's). */
    if (setgroups(s->ngroups, s->groups) < 0)
        fail(126, errno, "setgroups");
    if (setresgid(s->gid, s->gid, s->gid) < 0)
        fail(126, errno, "setresgid %lu", (unsigned long)s->gid);
    if (setresuid(s->uid, s->uid, s->uid) < 0)
        fail(126, errno, "setresuid %lu", (unsigned long)s->uid);
    if (s->has_caps)
        set_caps(s, held);
    if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(126, errno, "prctl PR_SET_NO_NEW_PRIVS");
    if (chdir(s->cwd) < 0)
        fail(126, errno, "chdir %s", s->cwd);
}

static _Noreturn void exec_failed(const char *path, int err)
{
    fail(err == ENOENT ? 127 : 126, err, "execve %s", path);
}

/* execve, looking a name without a slash up in the PATH of envp (as execvp does, but with the
   program's environment, not ours). Runs after chdir and setresuid, so a relative PATH entry and the
   permission checks are those the program gets. */
static _Noreturn void exec_lookup(const char *file, char **argv, char **envp)
{
    if (file[0] == '\0') {
        errno = ENOENT;
        exec_failed(file, ENOENT);
    }
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        exec_failed(file, errno);
    }
    const char *path = DEFAULT_PATH;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    size_t flen = strlen(file);
    int denied = 0;
    for (const char *p = path;; p++) {
        const char *colon = strchrnul(p, ':');
        size_t dlen = (size_t)(colon - p);
        char buf[PATH_MAX];
        if (dlen + 1 + flen < sizeof buf) {
            if (dlen == 0) /* an empty entry is the working directory */
                memcpy(buf, file, flen + 1);
            else {
                memcpy(buf, p, dlen);
                buf[dlen] = '/';
                memcpy(buf + dlen + 1, file, flen + 1);
            }
            execve(buf, argv, envp);
            if (errno == EACCES) /* a later entry may still have it */
                denied = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG)
                exec_failed(buf, errno);
        }
        if (*colon == '\0')
            break;
        p = colon;
    }
    exec_failed(file, denied ? EACCES : ENOENT);
}

/* ---- PID 1 -------------------------------------------------------------------------------------- */

static int log_fd = -1;
static off_t log_size;          /* the log's length: a record cut short by ENOSPC is cut off again */
static int console_ok[3] = {0, 1, 1};

/* One record (stream, length, data) in one write; buf has 5 free bytes before the data. */
static void log_record(int stream, unsigned char *buf, size_t len)
{
    if (log_fd < 0)
        return;
    buf[0] = (unsigned char)stream;
    buf[1] = (unsigned char)(len >> 24);
    buf[2] = (unsigned char)(len >> 16);
    buf[3] = (unsigned char)(len >> 8);
    buf[4] = (unsigned char)len;
    if (write_all(log_fd, buf, len + 5) == 0)
        log_size += (off_t)(len + 5);
    else
        (void)ftruncate(log_fd, log_size); /* keep the framing: a half record would garble the rest */
}

/* A message of the init's own about starting the process: to its stderr and into the log. */
static void init_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void init_error(const char *fmt, ...)
{
    static unsigned char buf[5 + PATH_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf((char *)buf + 5, sizeof buf - 5, "pveoci-init: ");
    int m = vsnprintf((char *)buf + 5 + n, sizeof buf - 5 - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m < sizeof buf - 5 - (size_t)n - 1 ? (size_t)m
                                                 : sizeof buf - 5 - (size_t)n - 2);
    buf[5 + len++] = '\n';
    (void)write_all(2, buf + 5, len);
    log_record(2, buf, len);
}

/* Waits (at most FOLLOWER_WAIT_MS) until no `logs -f` holds its shared lock, so that followers print
   the end of the log before the container, and they with it, goes away. */
static void wait_for_followers(void)
{
    int fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    long deadline = now_ms() + FOLLOWER_WAIT_MS;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0 && (errno == EWOULDBLOCK || errno == EINTR) && now_ms() < deadline)
        nap(10);
}

/* The end: status, state, followers, exit. The order matters to readers: `status` before `stopped`,
   and both before a follower is let go. */
static _Noreturn void finish(int status)
{
    if (put_number("status", status) < 0)
        say("write %s: %s", STATUS_FILE, strerror(errno));
    if (put_text("state", "stopped") < 0)
        say("write %s: %s", STATE_FILE, strerror(errno));
    wait_for_followers();
    _exit(status);
}

/* 0, 1 and 2 are open, so that no pipe or file of ours ever lands on them (dup2 onto the same number
   would keep its close-on-exec flag). */
static void ensure_stdio(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            _exit(126);
}

/* A PID 1 in a PID namespace receives only the signals it has a handler for (pid_namespaces(7)).
   Signals are blocked first (no signal ever reaches a no-op handler and is lost) and read from a
   signalfd. The kernel queues a blocked signal whatever its handler, so the handlers are a second
   guard: nothing depends on that detail of kernel/signal.c. */
static void noop(int sig)
{
    (void)sig;
}

static int take_signals(void)
{
    sigset_t all;
    memset(&all, 0xff, sizeof all); /* sigfillset leaves out musl's 32-34: they are forwarded too */
    sigprocmask(SIG_SETMASK, &all, NULL);
    struct sigaction sa = {.sa_handler = noop};
    sigfillset(&sa.sa_mask);
    for (int sig = 1; sig <= MAX_SIGNAL; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &sa, NULL); /* musl refuses 32-34: kept blocked, no handler needed */
    /* musl unblocks 32-34 when the first handler is installed: block them again. */
    sigprocmask(SIG_SETMASK, &all, NULL);
    int fd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) {
        say("signalfd: %s", strerror(errno));
        _exit(126);
    }
    return fd;
}

/* The next signal from the signalfd, waiting for one; 0 when `block` is 0 and none is pending. */
static int next_signal(int sfd, int block, struct signalfd_siginfo *si)
{
    for (;;) {
        ssize_t n = read(sfd, si, sizeof *si);
        if (n == (ssize_t)sizeof *si)
            return (int)si->ssi_signo;
        if (n < 0 && errno == EINTR)
            continue;
        if (!block)
            return 0;
        struct pollfd pfd = {.fd = sfd, .events = POLLIN};
        (void)poll(&pfd, 1, -1);
    }
}

/* SIGPIPE and SIGXFSZ raised by the kernel for the init's own writes (to a closed console, past a
   file size limit) come as sent by the init itself: they are not for the process. */
static int own_signal(const struct signalfd_siginfo *si)
{
    return si->ssi_pid == (uint32_t)getpid();
}

/* Reaps every ended child (orphans of the process or of `pct exec` included); the process's own
   status, when it is among them, goes to *status. */
static void reap(pid_t child, int *status)
{
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno == EINTR)
            continue;
        if (p <= 0)
            return;
        if (p == child && child > 0)
            *status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : *status;
    }
}

/* /.pveoci/run, writable. The template always has the directory, so on a read-only rootfs mkdir says
   EEXIST; access(W_OK) is what tells EROFS, and a tmpfs then takes the directory's place. */
static void make_run_dir(void)
{
    if (mkdir(RUN_DIR, 0711) < 0 && errno != EEXIST && errno != EROFS) {
        say("mkdir %s: %s", RUN_DIR, strerror(errno));
        _exit(126);
    }
    if (access(RUN_DIR, W_OK) < 0) {
        if (errno != EROFS) {
            say("access %s: %s", RUN_DIR, strerror(errno));
            _exit(126);
        }
        if (mount("tmpfs", RUN_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0711") < 0) {
            say("mount tmpfs on %s (the rootfs is read-only): %s", RUN_DIR, strerror(errno));
            _exit(126);
        }
    } else {
        (void)chmod(RUN_DIR, 0711); /* as the template made it or not: others may only reach known names */
    }
}

/* The child of fork: setsid, standard streams, the spec's steps, execve. Never returns. */
static _Noreturn void become_process(const struct spec *s, int out_w, int err_w, int in_r, const char *pty)
{
    default_handlers();
    if (setsid() < 0)
        fail(126, errno, "setsid");
    if (s->pty) {
        /* A pty of its own: the slave is its controlling terminal and its standard streams. */
        int t = open(pty, O_RDWR | O_CLOEXEC);
        if (t < 0)
            fail(126, errno, "open pty");
        if (ioctl(t, TIOCSCTTY, 0) < 0)
            fail(126, errno, "ioctl TIOCSCTTY");
        if (dup2(t, 0) < 0 || dup2(t, 1) < 0 || dup2(t, 2) < 0)
            fail(126, errno, "dup2");
    } else if (s->terminal) {
        /* The console, as our own standard streams, is the process's controlling terminal, so that
           ^C and job control reach it; taken from our session if it was ours (arg 1). A console that is
           not a terminal (a pipe, in tests) is used as it is. */
        if (isatty(0))
            (void)ioctl(0, TIOCSCTTY, 1);
    } else {
        /* stdout/stderr first, so that even /dev/null missing is reported in the log. */
        if (dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
            fail(126, errno, "dup2");
        int null = in_r >= 0 ? in_r : open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0)
            fail(126, errno, "open /dev/null");
        if (dup2(null, 0) < 0)
            fail(126, errno, "dup2");
    }
    /* Nothing of the init's but the standard streams reaches the program (ours are all close-on-exec,
       this covers anything the init was started with). */
    (void)syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    apply(s);
    unblock_all();
    execve(s->path, s->args, s->env);
    exec_failed(s->path, errno);
}

struct pipe_in {
    int fd;
    int stream;                 /* 1 stdout, 2 stderr */
};

/* One read from a pipe of the process into the log and onto our own stream; the bytes moved, 0 for
   none now, -1 at the end (the pipe is then closed). */
static long pump(struct pipe_in *in)
{
    static unsigned char buf[5 + CHUNK];
    ssize_t n = read(in->fd, buf + 5, CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        close(in->fd);
        in->fd = -1;
        return -1;
    }
    log_record(in->stream, buf, (size_t)n);
    /* A console that fails once (closed, hung up) is not written again: the log still has it all. */
    if (console_ok[in->stream] && write_all(in->stream, buf + 5, (size_t)n) < 0)
        console_ok[in->stream] = 0;
    return n;
}

/* The process's input (spec `stdin` or `pty`): records that `init stdin` writes into the FIFO run/stdin, each in
   one write of at most PIPE_BUF bytes: 'D' + length (2 bytes, big-endian) + the offset of its data in the whole
   input (8 bytes) + the data; 'E' (the input ended); 'W' + rows and columns (2 bytes each): a new window size.
   Data below what was already received is dropped, so a writer that lost its connection sends again from
   what run/stdin.received says and nothing is doubled. */
struct input {
    int fifo, target, pty;      /* the FIFO (read), where data goes (the stdin pipe or the pty's master) */
    unsigned char rec[2 * PIPE_BUF];
    size_t rec_len;
    unsigned char buf[INPUT_MAX];
    size_t buf_len;
    uint64_t received;
    int ended, sized;
};

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void input_record(struct input *in, int type, const unsigned char *p, size_t len)
{
    if (type == 'D' && len >= 8) {
        uint64_t off = be(p, 8), n = len - 8;
        if (off > in->received)
            in->received = off; /* a gap cannot happen (a writer resends from what we said): go on */
        uint64_t skip = in->received - off;
        if (skip >= n)
            return;
        memcpy(in->buf + in->buf_len, p + 8 + skip, (size_t)(n - skip));
        in->buf_len += (size_t)(n - skip);
        in->received += n - skip;
    } else if (type == 'E') {
        if (!in->ended && put_text("stdin.ended", "1") < 0)
            say("write %s: %s", ENDED_FILE, strerror(errno));
        in->ended = 1;
    } else if (type == 'W' && len == 4 && in->pty) {
        struct winsize ws = {.ws_row = (unsigned short)be(p, 2), .ws_col = (unsigned short)be(p + 2, 2)};
        (void)ioctl(in->target, TIOCSWINSZ, &ws);
        in->sized = 1;
    }
}

/* Reads what the FIFO has (only when there is room for a whole record's data). */
static void input_read(struct input *in)
{
    uint64_t before = in->received;
    while (in->buf_len + PIPE_BUF <= INPUT_MAX) {
        ssize_t n = read(in->fifo, in->rec + in->rec_len, sizeof in->rec - in->rec_len);
        if (n <= 0)
            break;
        in->rec_len += (size_t)n;
        size_t at = 0;
        while (in->rec_len - at >= 3) {
            size_t len = (size_t)be(in->rec + at + 1, 2);
            if (len > PIPE_BUF - 3) { /* no writer of ours makes it: the rest cannot be framed */
                at = in->rec_len;
                break;
            }
            if (in->rec_len - at < 3 + len || in->buf_len + len > INPUT_MAX)
                break;
            input_record(in, in->rec[at], in->rec + at + 3, len);
            at += 3 + len;
        }
        memmove(in->rec, in->rec + at, in->rec_len - at);
        in->rec_len -= at;
    }
    if (in->received != before) {
        char text[32];
        snprintf(text, sizeof text, "%llu", (unsigned long long)in->received);
        if (put_text("stdin.received", text) < 0)
            say("write %s: %s", RECEIVED_FILE, strerror(errno));
    }
}

/* Gives the process what it can take now; closes its stdin (a pipe) once the input ended and all went. */
static void input_write(struct input *in)
{
    while (in->buf_len > 0 && in->target >= 0) {
        ssize_t n = write(in->target, in->buf, in->buf_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) { /* EPIPE: the process closed its stdin; what it did not read is dropped */
            in->buf_len = 0;
            break;
        }
        memmove(in->buf, in->buf + n, in->buf_len - (size_t)n);
        in->buf_len -= (size_t)n;
    }
    if (in->ended && in->buf_len == 0 && !in->pty && in->target >= 0) {
        close(in->target);
        in->target = -1;
    }
}

/* The stop signal of run/spec, for SIGPWR before the start; 15 without a readable spec. */
static int spec_stop_signal(void)
{
    struct spec s;
    char err[PATH_MAX + 64];
    if (load_spec(NULL, SPEC_FILE, &s, err, sizeof err) < 0)
        return SIGTERM;
    int sig = s.stopsignal;
    free_spec(&s);
    return sig;
}

static int input_fifo = -1;     /* run/stdin, made at the boot */

/* Step 4 on: start the process and stay with it until it ends. */
/* ---- the spec's mounts, made at the start ---------------------------------------------------------- */

#define STAGE RUN_DIR "/stage"
#define NEW_DEV STAGE "/dev"

static int make_parents(char *path);

/* Whether the spec mounts a filesystem of this type (any: NULL) at dest itself. */
static int spec_mounts(const struct spec *s, const char *dest, const char *type)
{
    for (size_t i = 0; i < s->nmounts; i++)
        if (s->mounts[i].kind == M_NEW && strcmp(s->mounts[i].dest, dest) == 0 && (!type || strcmp(s->mounts[i].type, type) == 0))
            return 1;
    return 0;
}

/* A node or directory of the old /dev bound at its place in the new one (made empty first). */
static void bind_into(const char *from, const char *to, int dir)
{
    if (dir) {
        if (mkdir(to, 0755) < 0 && errno != EEXIST) {
            init_error("mkdir %s: %s", to, strerror(errno));
            return;
        }
    } else {
        int fd = open(to, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            init_error("create %s: %s", to, strerror(errno));
            return;
        }
        close(fd);
    }
    if (mount(from, to, NULL, MS_BIND | (dir ? MS_REC : 0), NULL) < 0)
        init_error("bind %s into the new /dev: %s", from, strerror(errno));
}

/* What the old /dev holds, carried into the new one: directories (and what is in them), links, and device nodes
   made anew; a node that cannot be made (an unprivileged container) or that is a mount of its own (LXC's console,
   its devices in an unprivileged container) is bound instead. Regular files (LXC's .lxc-boot-id) stay behind,
   and so do what the spec mounts again (pts, shm, mqueue; ptmx with pts). */
static void carry(const struct spec *s, const char *from, const char *to, dev_t dev, int depth)
{
    DIR *dir = opendir(from);
    if (!dir) {
        init_error("opendir %s: %s", from, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.')
            continue;
        if (depth == 0 && ((spec_mounts(s, "/dev/pts", NULL) && (!strcmp(name, "pts") || !strcmp(name, "ptmx"))) ||
                           (!strcmp(name, "shm") && spec_mounts(s, "/dev/shm", NULL)) ||
                           (!strcmp(name, "mqueue") && spec_mounts(s, "/dev/mqueue", NULL))))
            continue;
        char a[PATH_MAX], b[PATH_MAX];
        struct stat st;
        if (snprintf(a, sizeof a, "%s/%s", from, name) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", to, name) >= (int)sizeof b || lstat(a, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != dev)
                bind_into(a, b, 1);
            else if (depth < 8 && (mkdir(b, st.st_mode & 07777) == 0 || errno == EEXIST)) {
                (void)lchown(b, st.st_uid, st.st_gid);
                (void)chmod(b, st.st_mode & 07777);
                carry(s, a, b, dev, depth + 1);
            }
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(a, target, sizeof target - 1);
            if (n > 0) {
                target[n] = '\0';
                if (symlink(target, b) == 0)
                    (void)lchown(b, st.st_uid, st.st_gid);
            }
        } else if (!S_ISREG(st.st_mode)) {
            if (st.st_dev == dev && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) &&
                mknod(b, st.st_mode, st.st_rdev) == 0) {
                (void)lchown(b, st.st_uid, st.st_gid);
                (void)chmod(b, st.st_mode & 07777);
            } else {
                unlink(b);
                bind_into(a, b, 0);
            }
        }
    }
    closedir(dir);
}

/* The spec's /dev: its tmpfs, made beside (under a private mount of its own: a mount under a shared one, as the
   rootfs is, cannot be moved), given what the container's /dev holds, then moved over it. */
static int new_dev(const struct spec *s, const struct mnt *m)
{
    struct stat old;
    if (stat("/dev", &old) < 0 || (mkdir(STAGE, 0700) < 0 && errno != EEXIST) ||
        mount("pveoci-stage", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0) {
        init_error("mount a tmpfs on %s: %s (the container's /dev kept)", STAGE, strerror(errno));
        return -1;
    }
    int made = mount(NULL, STAGE, NULL, MS_PRIVATE, NULL) == 0 && mkdir(NEW_DEV, 0755) == 0 &&
               mount(m->source, NEW_DEV, m->type, m->flags, m->data) == 0;
    if (!made)
        init_error("mount %s on /dev: %s (the container's /dev kept)", m->type, strerror(errno));
    else {
        carry(s, "/dev", NEW_DEV, old.st_dev, 0);
        static const char *const links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
                                               {"pts/ptmx", "ptmx"}};
        for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
            char at[PATH_MAX];
            snprintf(at, sizeof at, NEW_DEV "/%s", links[i][1]);
            if (symlink(links[i][0], at) < 0 && errno != EEXIST)
                init_error("symlink %s: %s", at, strerror(errno));
        }
        made = mount(NEW_DEV, "/dev", NULL, MS_MOVE, NULL) == 0;
        if (!made)
            init_error("move the new /dev into place: %s (the container's /dev kept)", strerror(errno));
    }
    (void)umount2(STAGE, MNT_DETACH);
    (void)rmdir(STAGE);
    return made ? 0 : -1;
}

static int mount_at(const struct mnt *m)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", m->dest) >= (int)sizeof path || make_parents(path) < 0 ||
        (mkdir(path, 0755) < 0 && errno != EEXIST)) {
        init_error("mkdir %s: %s (%s not mounted there)", m->dest, strerror(errno), m->type);
        return -1;
    }
    if (mount(m->source, m->dest, m->type, m->flags, m->data) < 0) {
        init_error("mount %s on %s: %s (not mounted)", m->type, m->dest, strerror(errno));
        return -1;
    }
    return 0;
}

/* A masked path: a directory gets an empty read-only tmpfs, anything else /dev/null bound over it (as runc). */
static void mask(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno != ENOENT)
            init_error("mask %s: %s", path, strerror(errno));
        return;
    }
    int bad = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0") < 0
                                  : mount("/dev/null", path, NULL, MS_BIND, NULL) < 0;
    if (bad)
        init_error("mask %s: %s", path, strerror(errno));
}

/* A read-only path: bound onto itself, then made read-only, keeping the flags it had (a mount an unprivileged
   container was given keeps its locked nosuid, nodev, noexec). */
static void read_only(const char *path)
{
    struct statvfs vfs;
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno != ENOENT)
            init_error("read-only %s: %s", path, strerror(errno));
        return;
    }
    unsigned long keep = 0;
    if (statvfs(path, &vfs) == 0)
        keep = vfs.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
    if (mount(path, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | keep, NULL) < 0)
        init_error("read-only %s: %s", path, strerror(errno));
}

/* linux.devices: each node made (in place of what is at its path, unless that is the same node), its owner and
   mode set. A container may make a node only where LXC lets it (a privileged one); using it is what the device
   cgroup allows. A failure is said, and the rest goes on. */
static void make_devices(const struct spec *s)
{
    for (size_t i = 0; i < s->ndevices; i++) {
        const struct dev *d = &s->devices[i];
        char path[PATH_MAX];
        struct stat st;
        dev_t rdev = d->type == S_IFIFO ? 0 : makedev(d->major, d->minor);
        if (snprintf(path, sizeof path, "%s", d->path) >= (int)sizeof path || make_parents(path) < 0) {
            init_error("device %s: %s", d->path, strerror(errno ? errno : ENAMETOOLONG));
            continue;
        }
        int same = lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == d->type && (d->type == S_IFIFO || st.st_rdev == rdev);
        if (!same && ((unlink(path) < 0 && errno != ENOENT) || mknod(path, d->type | 0600, rdev) < 0)) {
            init_error("mknod %s: %s", path, strerror(errno));
            continue;
        }
        if (chown(path, d->uid, d->gid) < 0 || chmod(path, d->mode) < 0)
            init_error("device %s: %s", path, strerror(errno));
    }
}

/* In the spec's order: a `new` mount is made (a failure is said, in the log too, and the rest goes on: the node's
   AppArmor profile may refuse one); an `lxc` one is LXC's, bound again at its place once a mount before it was
   made, so that it stays above them as the spec's order says (where it may be); then the masked and read-only
   paths, and the devices. In the
   container's mount namespace: an exec sees them too. */
static void setup_mounts(const struct spec *s)
{
    int made = 0;
    for (size_t i = 0; i < s->nmounts; i++) {
        const struct mnt *m = &s->mounts[i];
        if (m->kind == M_MASK)
            mask(m->dest);
        else if (m->kind == M_RDONLY)
            read_only(m->dest);
        else if (m->kind == M_LXC) {
            /* Where the node's AppArmor profile refuses the bind (it allows none of /proc or /sys), LXC's mount
               stays where it was: the same mount, earlier in the list; nothing to say. */
            if (made)
                (void)mount(m->dest, m->dest, NULL, MS_BIND | MS_REC, NULL);
        } else if (strcmp(m->dest, "/dev") == 0 && strcmp(m->type, "tmpfs") == 0)
            made |= new_dev(s, m) == 0;
        else
            made |= mount_at(m) == 0;
    }
    make_devices(s);
}

static _Noreturn void run(int sfd)
{
    log_fd = open(LOG_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (log_fd < 0)
        say("open %s: %s (the output is not kept)", LOG_FILE, strerror(errno));
    struct spec s;
    char err[PATH_MAX + 64];
    if (load_spec(NULL, SPEC_FILE, &s, err, sizeof err) < 0) {
        init_error("spec: %s", err);
        finish(126);
    }
    setup_mounts(&s);
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1}, master = -1;
    char pty[64] = "";
    if (!s.terminal && !s.pty && (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)) {
        init_error("pipe: %s", strerror(errno));
        finish(126);
    }
    if (s.input && !s.pty && pipe2(inp, O_CLOEXEC) < 0) {
        init_error("pipe: %s", strerror(errno));
        finish(126);
    }
    if (s.pty && ((master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 || grantpt(master) < 0 ||
                  unlockpt(master) < 0 || ptsname_r(master, pty, sizeof pty) != 0)) {
        init_error("pty: %s", strerror(errno));
        finish(126);
    }
    struct input in = {.fifo = -1, .target = s.pty ? master : inp[1], .pty = s.pty};
    if (s.input || s.pty) {
        if (input_fifo < 0) {
            init_error("%s: cannot be made: no input can be relayed", STDIN_FIFO);
            finish(126);
        }
        in.fifo = input_fifo;
        input_read(&in); /* what came before the start (the terminal's size) applies before the process runs */
        /* An engine sets the terminal's size around the start (podman before, ctr just after): a process that
           asks for it at once should get it, so wait a little for it. */
        for (long until = now_ms() + SIZE_WAIT_MS; s.pty && !in.sized && now_ms() < until;) {
            struct pollfd f = {.fd = in.fifo, .events = POLLIN, .revents = 0};
            if (poll(&f, 1, (int)(until - now_ms())) > 0)
                input_read(&in);
        }
    } else if (input_fifo >= 0) {
        close(input_fifo);
        unlink(STDIN_FIFO);
    }
    pid_t child = fork();
    if (child < 0) {
        init_error("fork: %s", strerror(errno));
        finish(126);
    }
    if (child == 0)
        become_process(&s, out[1], errp[1], inp[0], pty);
    struct pipe_in pipes[2] = {{out[0], 1}, {errp[0], 2}};
    if (s.pty)
        pipes[0].fd = fcntl(master, F_DUPFD_CLOEXEC, 3); /* the output's own: pump closes it at the end */
    if (!s.terminal && !s.pty) {
        close(out[1]);
        close(errp[1]);
    }
    if (inp[0] >= 0)
        close(inp[0]);
    for (int i = 0; i < 2; i++)
        if (pipes[i].fd >= 0)
            fcntl(pipes[i].fd, F_SETFL, O_NONBLOCK);
    if (in.target >= 0)
        fcntl(in.target, F_SETFL, O_NONBLOCK);
    if (put_number("pid", child) < 0)
        say("write %s: %s", PID_FILE, strerror(errno));
    if (put_text("state", "running") < 0)
        say("write %s: %s", STATE_FILE, strerror(errno));

    int status = -1;
    while (status < 0) {
        int room = in.fifo >= 0 && in.buf_len + PIPE_BUF <= INPUT_MAX;
        struct pollfd pfd[5] = {{.fd = sfd, .events = POLLIN},
                                {.fd = pipes[0].fd, .events = POLLIN},
                                {.fd = pipes[1].fd, .events = POLLIN},
                                {.fd = room ? in.fifo : -1, .events = POLLIN},
                                {.fd = in.buf_len > 0 ? in.target : -1, .events = POLLOUT}};
        if (poll(pfd, 5, -1) < 0) {
            if (errno != EINTR)
                nap(10); /* ENOMEM: try again rather than leave the process unattended */
            continue;
        }
        for (int i = 0; i < 2; i++)
            if (pipes[i].fd >= 0 && pfd[i + 1].revents)
                (void)pump(&pipes[i]);
        if (pfd[3].revents)
            input_read(&in);
        if (in.buf_len > 0 || in.ended)
            input_write(&in);
        struct signalfd_siginfo si;
        int sig;
        while ((sig = next_signal(sfd, 0, &si)) != 0) {
            if (sig == SIGCHLD)
                reap(child, &status);
            else if (sig == START_SIGNAL || own_signal(&si))
                continue;
            else if (status < 0) /* not reaped yet, so the pid cannot be another process's */
                kill(child, sig == SIGPWR ? s.stopsignal : sig);
        }
    }
    /* What the process wrote before it ended; not to EOF: a child it left behind may hold the pipes. */
    for (int i = 0; i < 2; i++) {
        long moved = 0, n;
        while (pipes[i].fd >= 0 && moved < (long)DRAIN_MAX && (n = pump(&pipes[i])) > 0)
            moved += n;
        if (pipes[i].fd >= 0)
            close(pipes[i].fd);
    }
    finish(status);
}

static int pid1(const char *spec_arg)
{
    /* Anywhere else (a stray `pct exec -- /.pveoci/init`) it would take over run/ of the real one. */
    if (getpid() != 1) {
        say("not PID 1: the container's init runs as PID 1; the commands are exec, logs, kill, set-spec, stdin, "
            "state, version");
        return 2;
    }
    umask(022);
    ensure_stdio();
    int sfd = take_signals();
    make_run_dir();
    /* What an earlier run of this container left would be taken for this run's. */
    unlink(PID_FILE);
    unlink(STATUS_FILE);
    unlink(LOG_FILE);
    unlink(STDIN_FIFO);
    unlink(RECEIVED_FILE);
    unlink(ENDED_FILE);
    /* The input's FIFO from the boot on: what a writer sends before the start (a window size) waits in it. */
    if (mkfifo(STDIN_FIFO, 0600) < 0 || (input_fifo = open(STDIN_FIFO, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
        say("%s: %s (no input can be relayed)", STDIN_FIFO, strerror(errno));
    if (spec_arg) {
        struct spec s;
        char err[PATH_MAX + 64];
        if (load_spec(spec_arg, SPEC_FILE, &s, err, sizeof err) < 0) {
            say("%s", err);
            finish(126);
        }
        if (put_file("spec", s.bytes, s.len, 0600) < 0) {
            say("write %s: %s", SPEC_FILE, strerror(errno));
            _exit(126);
        }
        free_spec(&s);
    }
    if (put_text("state", "created") < 0) {
        say("write %s: %s", STATE_FILE, strerror(errno));
        _exit(126);
    }
    for (;;) {
        struct signalfd_siginfo si;
        int sig = next_signal(sfd, 1, &si);
        if (own_signal(&si))
            continue;
        switch (sig) {
        case START_SIGNAL:
            run(sfd);
        case SIGCHLD: /* an orphan of a `pct exec` */
            reap(0, NULL);
            break;
        /* Signals whose default action ends no process do not end a created container either. */
        case SIGCONT:
        case SIGURG:
        case SIGWINCH:
        case SIGTSTP:
        case SIGTTIN:
        case SIGTTOU:
            break;
        case SIGPWR: /* LXC halts the container: as the stop signal would */
            finish(128 + spec_stop_signal());
        default:
            finish(128 + sig);
        }
    }
}

/* ---- commands ----------------------------------------------------------------------------------- */

static int usage(void)
{
    say("usage: init [--spec=B64] | exec [-d] [-e K=V]... [--cwd DIR] [--user UID[:GID]] "
        "[--spec=B64 | --exec-spec=NAME] -- ARGV... | logs [-f] [--framed] [--from OFFSET] | kill [-a] SIGNAL | "
        "set-spec [--exec NAME] | files | stdin | state | version");
    return 2;
}

/* `-x VALUE` or `--long VALUE` or `--long=VALUE` at argv[*i]; NULL if argv[*i] is not that option. */
static const char *option(char **argv, int argc, int *i, const char *s, const char *l)
{
    const char *a = argv[*i];
    size_t n = strlen(l);
    if (strncmp(a, l, n) == 0 && a[n] == '=')
        return a + n + 1;
    if ((s && strcmp(a, s) == 0) || strcmp(a, l) == 0) {
        if (*i + 1 >= argc) {
            say("exec: %s needs a value", a);
            _exit(126);
        }
        return argv[++*i];
    }
    return NULL;
}

/* exec -d: the program goes on in the background, in a session of its own with /dev/null for its stdio;
   the caller (pct exec) gets its PID, as the container sees it, on stdout and exit status 0. A failure
   to start it can then only be seen in its absence. */
static void detach_self(void)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        fail(126, errno, "exec: pipe");
    pid_t pid = fork();
    if (pid < 0)
        fail(126, errno, "exec: fork");
    if (pid > 0) {
        /* Wait for the child's session: once it has one, a hang-up of ours does not reach it. */
        char c;
        close(ready[1]);
        while (read(ready[0], &c, 1) < 0 && errno == EINTR)
            ;
        char text[32];
        int n = snprintf(text, sizeof text, "%ld\n", (long)pid);
        _exit(write_all(1, text, (size_t)n) < 0 ? 1 : 0);
    }
    close(ready[0]);
    if (setsid() < 0)
        fail(126, errno, "exec: setsid");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        fail(126, errno, "exec: /dev/null");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(null, fd) < 0)
            fail(126, errno, "exec: dup2");
    close(null);
    close(ready[1]);
}

static int cmd_exec(int argc, char **argv)
{
    const char *spec_arg = NULL, *exec_spec = NULL, *cwd = NULL, *user = NULL, *v;
    char **sets = calloc((size_t)argc, sizeof *sets);
    size_t nsets = 0;
    int i = 2, detach = 0;
    if (!sets)
        fail(126, ENOMEM, "exec");
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (argv[i][0] != '-')
            break;
        if ((v = option(argv, argc, &i, "-e", "--env"))) {
            if (!strchr(v, '=') || v[0] == '=') {
                say("exec: -e %s: not KEY=VALUE", v);
                return 126;
            }
            sets[nsets++] = (char *)v;
        } else if ((v = option(argv, argc, &i, NULL, "--cwd"))) {
            cwd = v;
        } else if ((v = option(argv, argc, &i, NULL, "--user"))) {
            user = v;
        } else if (strncmp(argv[i], "--spec=", 7) == 0) {
            spec_arg = argv[i] + 7;
        } else if (strncmp(argv[i], "--exec-spec=", 12) == 0) {
            exec_spec = argv[i] + 12;
        } else if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--detach") == 0) {
            detach = 1;
        } else {
            usage();
            return 126;
        }
    }
    if (i >= argc) {
        say("exec: no command");
        return 126;
    }
    struct spec s;
    char err[PATH_MAX + 64];
    char stashed[64];
    if (exec_spec) {
        if (exec_spec_name(exec_spec) < 0) {
            say("exec: --exec-spec: not a name of 1-32 letters, digits, _ or -");
            return 126;
        }
        snprintf(stashed, sizeof stashed, RUN_DIR "/exec.%s", exec_spec);
    }
    if (load_spec(spec_arg, exec_spec ? stashed : SPEC_FILE, &s, err, sizeof err) < 0) {
        say("exec: %s", err);
        return 126;
    }
    if (cwd) {
        if (cwd[0] != '/') {
            say("exec: --cwd %s: not an absolute path", cwd);
            return 126;
        }
        s.cwd = cwd;
    }
    if (user) {
        /* UID[:GID]; without GID the group is 0, as with runc and docker for a bare number. */
        const char *p = user;
        uint64_t uid, gid = 0;
        if (parse_num(&p, 10, ID_MAX, &uid) < 0 || (*p == ':' && (p++, parse_num(&p, 10, ID_MAX, &gid) < 0)) ||
            *p != '\0') {
            say("exec: --user %s: not UID[:GID]", user);
            return 126;
        }
        s.uid = (uid_t)uid;
        s.gid = (gid_t)gid;
        s.ngroups = 0;
    }
    char **env = calloc(s.nenv + nsets + 1, sizeof *env);
    if (!env)
        fail(126, ENOMEM, "exec");
    memcpy(env, s.env, s.nenv * sizeof *env);
    size_t nenv = s.nenv;
    for (size_t k = 0; k < nsets; k++) {
        size_t keylen = (size_t)(strchr(sets[k], '=') - sets[k]) + 1; /* with the '=' */
        int found = 0;
        for (size_t j = 0; j < nenv; j++)
            if (strncmp(env[j], sets[k], keylen) == 0) {
                env[j] = sets[k];
                found = 1;
            }
        if (!found)
            env[nenv++] = sets[k];
    }
    if (detach)
        detach_self();
    default_handlers();
    apply(&s);
    unblock_all();
    exec_lookup(argv[i], argv + i, env);
}

/* Writes the log's records to stdout and stderr by stream, as bytes arrive (a record may be split
   across reads). */
struct demux {
    unsigned char head[5];
    size_t have;                /* bytes of head read */
    uint32_t left;              /* bytes of the current record still to come */
};

static int demux(struct demux *d, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (d->left == 0 && d->have < 5) {
            d->head[d->have++] = *p++;
            n--;
            if (d->have == 5) {
                if (d->head[0] != 1 && d->head[0] != 2) {
                    say("logs: %s is not a pveoci log (stream %d)", LOG_FILE, d->head[0]);
                    return -1;
                }
                d->left = (uint32_t)d->head[1] << 24 | (uint32_t)d->head[2] << 16 | (uint32_t)d->head[3] << 8 |
                          d->head[4];
                if (d->left == 0)
                    d->have = 0;
            }
            continue;
        }
        size_t k = n < d->left ? n : d->left;
        if (write_all(d->head[0], p, k) < 0)
            return -1;
        p += k;
        n -= k;
        d->left -= (uint32_t)k;
        if (d->left == 0)
            d->have = 0;
    }
    return 0;
}

/* One framed record on stdout: stream, 4-byte big-endian length, data (as in the log). */
static int frame(int stream, const void *data, size_t len)
{
    unsigned char head[5] = {(unsigned char)stream, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len};
    return write_all(1, head, sizeof head) < 0 || write_all(1, data, len) < 0 ? -1 : 0;
}

static int cmd_logs(int argc, char **argv)
{
    int follow = 0, framed = 0;
    uint64_t from = 0;
    for (int a = 2; a < argc; a++) {
        if (strcmp(argv[a], "-f") == 0)
            follow = 1;
        else if (strcmp(argv[a], "--framed") == 0)
            framed = 1;
        else if (strcmp(argv[a], "--from") == 0 && a + 1 < argc &&
                 parse_whole(argv[a + 1], 10, INT64_MAX, &from) == 0)
            a++;
        else
            return usage();
    }
    if (follow) {
        /* Held until we exit: the init waits for it before it goes (and the container with it). */
        int lock = open(LOCK_FILE, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0) {
            say("logs: %s: %s", LOCK_FILE, strerror(errno));
            return 1;
        }
        while (flock(lock, LOCK_SH) < 0)
            if (errno != EINTR) {
                say("logs: flock %s: %s", LOCK_FILE, strerror(errno));
                return 1;
            }
    }
    /* --framed: the log's own records go out as they are, after a "ready" record (stream 0: the follower
       holds its lock, so the process may start) and before a "status" record (stream 3) at the end. */
    if (framed && frame(FRAME_READY, "ready", 5) < 0)
        return 1;
    struct demux d = {{0}, 0, 0};
    static unsigned char buf[CHUNK];
    int fd = -1;
    for (;;) {
        /* status first: the init writes it after the last record, so the log read next is whole. */
        int ended = access(STATUS_FILE, F_OK) == 0;
        if (fd < 0 && (fd = open(LOG_FILE, O_RDONLY | O_CLOEXEC)) < 0 && errno != ENOENT) {
            say("logs: %s: %s", LOG_FILE, strerror(errno));
            return 1;
        }
        /* --from: resume where an earlier reader stopped (a byte offset at a record's start). */
        if (fd >= 0 && from > 0 && lseek(fd, (off_t)from, SEEK_SET) < 0) {
            say("logs: %s: %s", LOG_FILE, strerror(errno));
            return 1;
        }
        if (fd >= 0)
            from = 0;
        while (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                say("logs: %s: %s", LOG_FILE, strerror(errno));
                return 1;
            }
            if (n == 0)
                break;
            if (framed ? write_all(1, buf, (size_t)n) < 0 : demux(&d, buf, (size_t)n) < 0)
                return 1;
        }
        if (!follow || ended)
            break;
        /* A reader gone (its SSH connection dropped) ends a follower at once: it would hold its lock till the
           process ends, and the init waits for its followers. A pipe says so by POLLERR, a socket by POLLHUP. */
        struct pollfd out = {.fd = 1, .events = 0, .revents = 0};
        if (poll(&out, 1, FOLLOW_POLL_MS) > 0 && (out.revents & (POLLERR | POLLHUP)))
            return 1;
    }
    if (!follow)
        return 0;
    char text[32];
    uint64_t status;
    if (read_small(STATUS_FILE, text, sizeof text) < 0 || parse_whole(text, 10, 255, &status) < 0) {
        say("logs: %s: not a status", STATUS_FILE);
        return 1;
    }
    if (framed && frame(FRAME_STATUS, text, strlen(text)) < 0)
        return 1;
    return (int)status;
}

/* Says `received N` on stdout (N: how much of the input the init has, run/stdin.received), `received N end` once
   the init had the input's end too (run/stdin.ended), when that differs from what it said last (`*said`). */
static int say_received(uint64_t *said)
{
    char text[64];
    uint64_t got = 0;
    if (read_small(RECEIVED_FILE, text, sizeof text) >= 0)
        (void)parse_whole(text, 10, UINT64_MAX, &got);
    int end = access(ENDED_FILE, F_OK) == 0;
    if (got * 2 + (uint64_t)end == *said)
        return 0;
    *said = got * 2 + (uint64_t)end;
    int n = snprintf(text, sizeof text, "received %llu%s\n", (unsigned long long)got, end ? " end" : "");
    return write_all(1, text, (size_t)n);
}

/* `stdin`: the process's input, from a writer on the other side of a connection (the stand-in). Waits for the
   process to start (run/stdin appears), says `received N` (how much of the input the init has: the writer sends
   again from there, and forgets what came before), then passes the records on its stdin to the FIFO, each in
   one write (atomic: a writer that lost its connection and the one that took over never interleave), saying
   `received N` again as N grows. Exits 0 at the end of its input or when the process has ended; 2 for a
   record no writer of ours makes. */
static int cmd_stdin(int argc)
{
    if (argc != 2)
        return usage();
    while (access(STDIN_FIFO, F_OK) < 0) {
        if (access(STATUS_FILE, F_OK) == 0)
            return 0;
        nap(FOLLOW_POLL_MS);
    }
    int fifo = open(STDIN_FIFO, O_WRONLY | O_CLOEXEC);
    if (fifo < 0) {
        say("stdin: %s: %s", STDIN_FIFO, strerror(errno));
        return 1;
    }
    uint64_t said = UINT64_MAX;
    if (say_received(&said) < 0)
        return 1;
    static unsigned char buf[2 * PIPE_BUF];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(0, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        len += (size_t)r;
        size_t at = 0;
        while (len - at >= 3) {
            size_t rlen = (size_t)be(buf + at + 1, 2);
            if (rlen > PIPE_BUF - 3) {
                say("stdin: a record of %zu bytes (at most %d)", rlen, PIPE_BUF - 3);
                return 2;
            }
            if (len - at < 3 + rlen)
                break;
            if (write_all(fifo, buf + at, 3 + rlen) < 0)
                return access(STATUS_FILE, F_OK) == 0 ? 0 : 1;
            at += 3 + rlen;
        }
        memmove(buf, buf + at, len - at);
        len -= at;
        if (say_received(&said) < 0)
            return 1;
    }
}

static int cmd_kill(int argc, char **argv)
{
    int i = 2, all = 0;
    uint64_t sig;
    if (i < argc && strcmp(argv[i], "-a") == 0) {
        all = 1;
        i++;
    }
    if (i + 1 != argc)
        return usage();
    if (parse_whole(argv[i], 10, MAX_SIGNAL, &sig) < 0) {
        say("kill: %s: not a signal number (0-%d)", argv[i], MAX_SIGNAL);
        return 1;
    }
    if (all) {
        /* Every process we may signal but PID 1 and ourselves; none left is not an error. */
        if (kill(-1, (int)sig) < 0 && errno != ESRCH) {
            say("kill -a %d: %s", (int)sig, strerror(errno));
            return 1;
        }
        return 0;
    }
    char text[32];
    uint64_t pid;
    if (access(STATUS_FILE, F_OK) == 0) {
        say("kill: the process has ended");
        return 1;
    }
    if (read_small(PID_FILE, text, sizeof text) < 0 || parse_whole(text, 10, INT_MAX, &pid) < 0 || pid < 2) {
        say("kill: the process has not started");
        return 1;
    }
    if (kill((pid_t)pid, (int)sig) < 0) {
        say("kill %d %llu: %s", (int)sig, (unsigned long long)pid, strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_set_spec(int argc, char **argv)
{
    /* set-spec --exec NAME: a spec for one `exec --exec-spec=NAME` (its env may hold secrets: never in argv). */
    const char *exec_name = NULL;
    if (argc == 4 && strcmp(argv[2], "--exec") == 0 && exec_spec_name(argv[3]) == 0)
        exec_name = argv[3];
    else if (argc != 2)
        return usage();
    size_t len;
    char *bytes = read_all(0, SPEC_MAX, &len);
    if (!bytes) {
        int e = errno;
        say("set-spec: stdin: %s", strerror(e));
        return e == EFBIG ? 2 : 1;
    }
    struct spec s;
    char err[256];
    if (parse_spec(bytes, len, &s, err, sizeof err) < 0) {
        say("set-spec: bad spec: %s", err);
        return 2;
    }
    if (exec_name) {
        char name[64];
        snprintf(name, sizeof name, "exec.%s", exec_name);
        if (mkdir(RUN_DIR, 0711) < 0 && errno != EEXIST) {
            say("set-spec: %s: %s", RUN_DIR, strerror(errno));
            return 1;
        }
        if (put_file(name, s.bytes, s.len, 0600) < 0) {
            say("set-spec: write %s/%s: %s", RUN_DIR, name, strerror(errno));
            return 1;
        }
        return 0;
    }
    /* Once started, run/spec is what the process runs with (and exec's defaults): it stays. */
    char state[32];
    if (read_small(STATE_FILE, state, sizeof state) >= 0 && strcmp(state, "created") != 0) {
        say("set-spec: the container is %s, not created", state);
        return 1;
    }
    if (put_file("spec", s.bytes, s.len, 0600) < 0) {
        say("set-spec: write %s: %s", SPEC_FILE, strerror(errno));
        return 1;
    }
    return 0;
}

/* mkdir -p of the directories above an absolute path (0755, as runc makes a bind mount's target's parents). */
static int make_parents(char *path)
{
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        int bad = mkdir(path, 0755) < 0 && errno != EEXIST;
        *slash = '/';
        if (bad)
            return -1;
    }
    return 0;
}

/* One file of `files`: written beside its place, then renamed over it (a link there is replaced, not followed). */
static int write_one(char *path, const char *data, size_t len, mode_t mode, uid_t uid, gid_t gid)
{
    char tmp[PATH_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "%s.pveoci-%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (make_parents(path) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    int bad = write_all(fd, data, len) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0;
    int e = errno;
    if (close(fd) < 0 && !bad && errno != EINTR) {
        bad = 1;
        e = errno;
    }
    if (!bad && rename(tmp, path) < 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

/* files: the records on stdin (PATH NUL MODE NUL UID NUL GID NUL LENGTH NUL, then LENGTH bytes) become files in
 * the container: what an engine binds from its own machine (/etc/hosts, /etc/resolv.conf, secrets), copied. */
static int cmd_files(int argc)
{
    if (argc != 2)
        return usage();
    size_t len;
    char *bytes = read_all(0, SPEC_MAX, &len);
    if (!bytes) {
        int e = errno;
        say("files: stdin: %s", strerror(e));
        return e == EFBIG ? 2 : 1;
    }
    size_t at = 0;
    while (at < len) {
        const char *field[5];
        for (int i = 0; i < 5; i++) {
            const char *end = memchr(bytes + at, '\0', len - at);
            if (!end) {
                say("files: a record cut short");
                return 2;
            }
            field[i] = bytes + at;
            at = (size_t)(end - bytes) + 1;
        }
        uint64_t mode, uid, gid, size;
        if (field[0][0] != '/' || strstr(field[0], "/../") || strlen(field[0]) >= PATH_MAX ||
            parse_whole(field[1], 8, 07777, &mode) < 0 || parse_whole(field[2], 10, UINT32_MAX - 1, &uid) < 0 ||
            parse_whole(field[3], 10, UINT32_MAX - 1, &gid) < 0 ||
            parse_whole(field[4], 10, SPEC_MAX, &size) < 0 || size > len - at) {
            say("files: a bad record");
            return 2;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", field[0]);
        if (write_one(path, bytes + at, (size_t)size, (mode_t)mode, (uid_t)uid, (gid_t)gid) < 0) {
            say("files: %s: %s", path, strerror(errno));
            return 1;
        }
        at += (size_t)size;
    }
    return 0;
}

/* A number file of run/ as JSON: the number, or null when there is none. */
static void json_number(char *out, size_t size, const char *path)
{
    char text[32];
    uint64_t n;
    if (read_small(path, text, sizeof text) >= 0 && parse_whole(text, 10, INT_MAX, &n) == 0)
        snprintf(out, size, "%llu", (unsigned long long)n);
    else
        snprintf(out, size, "null");
}

static int cmd_state(int argc)
{
    if (argc != 2)
        return usage();
    char state[32], pid[32], status[32], out[160];
    if (read_small(STATE_FILE, state, sizeof state) < 0 ||
        (strcmp(state, "created") != 0 && strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0))
        snprintf(state, sizeof state, "unknown");
    json_number(pid, sizeof pid, PID_FILE);
    json_number(status, sizeof status, STATUS_FILE);
    int n = snprintf(out, sizeof out, "{\"state\": \"%s\", \"pid\": %s, \"status\": %s}\n", state, pid, status);
    return write_all(1, out, (size_t)n) < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return pid1(NULL); /* also as /sbin/init (PVE 9.0): the spec comes with set-spec */
    const char *cmd = argv[1];
    if (strncmp(cmd, "--spec=", 7) == 0 && argc == 2)
        return pid1(cmd + 7);
    if (strcmp(cmd, "exec") == 0)
        return cmd_exec(argc, argv);
    if (strcmp(cmd, "logs") == 0)
        return cmd_logs(argc, argv);
    if (strcmp(cmd, "stdin") == 0)
        return cmd_stdin(argc);
    if (strcmp(cmd, "kill") == 0)
        return cmd_kill(argc, argv);
    if (strcmp(cmd, "set-spec") == 0)
        return cmd_set_spec(argc, argv);
    if (strcmp(cmd, "files") == 0)
        return cmd_files(argc);
    if (strcmp(cmd, "state") == 0)
        return cmd_state(argc);
    if (strcmp(cmd, "version") == 0 && argc == 2) {
        static const char v[] = PVEOCI_INIT_VERSION "\n";
        return write_all(1, v, sizeof v - 1) < 0 ? 1 : 0;
    }
    return usage();
}
