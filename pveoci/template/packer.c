/*
 * pveoci-packer: the per-entry work of packing a rootfs, in C (see pveoci/template/native.py).
 *
 *   packer scan ROOT                          > entries
 *   packer pack ROOT LEVEL THREADS [SKIP...]  < entries  > frames
 *
 * scan: the stat walk of the rootfs (links not followed), in tar order: depth first, each directory's
 * children sorted by their bytes; one 'F' record per entry, then 'S' u64 size u64 count (the bytes of
 * the regular files, each hard-linked file once). The records are what template/walk.py makes in
 * Python: they fingerprint the tree (template/manifest.py), and a pack takes them as they are.
 * pack: builds each entry's tar header (ustar, or PAX for long or non-ASCII names, xattrs and big
 * numbers, byte for byte as pveoci/template/pack.py writes them), reads the file, cuts the stream into
 * frames where pveoci/template/frames.py cuts it and compresses every frame alone with zstd, on
 * THREADS threads, writing the frames in order on stdout. Entries at or below a SKIP path are left out
 * (pveoci's own files replace them); sockets too (tar cannot hold them).
 *
 * Records, in the machine's byte order:
 *   'F' u32 crc u32 name_len u32 mode u32 uid u32 gid i64 mtime_ns i64 ctime_ns u64 size u64 dev u64 ino
 *       u64 nlink u64 rdev, then the relative path (name_len bytes; empty for the root). crc: CRC-32 of it.
 *   'R' u32 crc u64 data_size u32 parts, then per part u64 len and its bytes (an entry built by Python)
 *   'E' the end: the end-of-archive blocks, the last frame, exit 0
 * pack's stdout, per frame: u64 tar_size u64 size u64 read (file bytes read for it), then the zstd frame;
 * at the end u64 2^64-1, u64 the entries written, u64 0.
 * Errors: one line on stderr; exit 3 for the rootfs (a file vanished, grew, shrank, cannot be read),
 * 4 when stdout is closed, 2 for anything else.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY
#include "zstd.h"

#define BLOCK 512
#define READ_SIZE (1u << 20)
#define FRAME_MIN (512u << 10)
#define FRAME_MAX (2u << 20)
#define CUT_EVERY 16
#define OCTAL7 (1ull << 21)
#define OCTAL11 (1ull << 33)

static const char *root;
static size_t root_len;

/* ------------------------------------------------------------------ errors */

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
#include <stdarg.h>
static void die(int code, const char *fmt, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "%s\n", line);
    _exit(code);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die(2, "out of memory");
    return q;
}

/* ------------------------------------------------------------------ buffers */

typedef struct {
    unsigned char *data;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : (4u << 20);
    while (cap < b->len + more) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_zero(buf_t *b, size_t n) {
    buf_reserve(b, n);
    memset(b->data + b->len, 0, n);
    b->len += n;
}

/* ------------------------------------------------------------------ frames and the pool */

enum { EMPTY, FILLED, TAKEN, DONE };

typedef struct {
    buf_t in;
    unsigned char *out;
    size_t out_len, out_cap;
    int state;
    uint64_t seq;
    uint64_t read;       /* file bytes read since the frame before */
} slot_t;

static slot_t *slots;
static unsigned nslots;
static uint64_t next_fill, next_compress, next_write;
static int finished;
static int level;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

static buf_t *current;   /* the frame being built: the `in` buffer of slot next_fill */
static uint64_t data_read, data_reported;
static uint64_t entries_written;
static int big;          /* the entry being written is big: it has frames of its own */

static slot_t *slot_of(uint64_t seq) { return &slots[seq % nslots]; }

static void take_slot(void) {
    pthread_mutex_lock(&lock);
    slot_t *s = slot_of(next_fill);
    while (s->state != EMPTY) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    s->in.len = 0;
    current = &s->in;
}

static void cut(void) {
    pthread_mutex_lock(&lock);
    slot_t *s = slot_of(next_fill);
    s->seq = next_fill++;
    s->read = data_read - data_reported;
    data_reported = data_read;
    s->state = FILLED;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    take_slot();
}

static void *compressor(void *unused) {
    (void)unused;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!cctx) die(2, "out of memory");
    /* As python-zstandard's ZstdCompressor(level, write_checksum=True, write_content_size=True).compress():
       the same calls, so the same bytes. */
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 1);
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!(next_compress < next_fill && slot_of(next_compress)->state == FILLED) &&
               !(finished && next_compress == next_fill))
            pthread_cond_wait(&changed, &lock);
        if (next_compress == next_fill) {
            pthread_mutex_unlock(&lock);
            break;
        }
        slot_t *s = slot_of(next_compress++);
        s->state = TAKEN;
        pthread_mutex_unlock(&lock);

        size_t bound = ZSTD_compressBound(s->in.len);
        if (s->out_cap < bound) {
            s->out = xrealloc(s->out, bound);
            s->out_cap = bound;
        }
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        size_t r = ZSTD_CCtx_setPledgedSrcSize(cctx, s->in.len);
        if (ZSTD_isError(r)) die(2, "zstd: %s", ZSTD_getErrorName(r));
        ZSTD_inBuffer in = {s->in.data, s->in.len, 0};
        ZSTD_outBuffer out = {s->out, bound, 0};
        r = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        if (ZSTD_isError(r)) die(2, "zstd: %s", ZSTD_getErrorName(r));
        if (r != 0) die(2, "zstd: a partial frame");
        s->out_len = out.pos;

        pthread_mutex_lock(&lock);
        s->state = DONE;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
    ZSTD_freeCCtx(cctx);
    return NULL;
}

static void write_all(const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(1, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die(errno == EPIPE ? 4 : 2, "cannot write the frames: %s", strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
}

static void *writer(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!(next_write < next_fill && slot_of(next_write)->state == DONE) &&
               !(finished && next_write == next_fill))
            pthread_cond_wait(&changed, &lock);
        if (next_write == next_fill) {
            pthread_mutex_unlock(&lock);
            uint64_t trailer[3] = {UINT64_MAX, entries_written, 0};
            write_all(trailer, sizeof trailer);
            break;
        }
        slot_t *s = slot_of(next_write);
        pthread_mutex_unlock(&lock);

        uint64_t head[3] = {s->in.len, s->out_len, s->read};
        write_all(head, sizeof head);
        write_all(s->out, s->out_len);

        pthread_mutex_lock(&lock);
        s->state = EMPTY;
        next_write++;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

/* The stream, as frames.Framer takes it: begin(size), write(...)..., end(crc). */

static void f_begin(uint64_t data_size) {
    big = data_size >= FRAME_MAX;
    if (big && current->len) cut();
}

static void f_write(const void *p, size_t n) {
    buf_add(current, p, n);
    if (big && current->len >= FRAME_MAX) cut();
}

static void f_end(uint32_t crc) {
    size_t size = current->len;
    if (size && (big || size >= FRAME_MAX || (size >= FRAME_MIN && crc % CUT_EVERY == 0))) cut();
    big = 0;
}

/* ------------------------------------------------------------------ tar headers */

static int is_ascii(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] & 0x80) return 0;
    return 1;
}

/* Python's strict UTF-8: the characters of s, or -1 when it is not valid UTF-8. With `ascii`, writes s as
   Python's str.encode("ascii", "replace") would after a surrogateescape decode: '?' per character not
   ASCII (an invalid byte is a character of its own). */
static size_t utf8_chars(const unsigned char *s, size_t n, int *valid, unsigned char *ascii) {
    size_t chars = 0, i = 0;
    *valid = 1;
    while (i < n) {
        unsigned c = s[i];
        size_t len = 0;
        unsigned cp = 0, min = 0;
        if (c < 0x80) len = 1, cp = c;
        else if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) ok = 0;
            else cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = 0;
        if (!ok) {
            *valid = 0;
            len = 1;   /* surrogateescape: the byte is a character of its own */
        }
        if (ascii) ascii[chars] = (ok && len == 1) ? (unsigned char)c : '?';
        chars++;
        i += len;
    }
    return chars;
}

static const unsigned char MAGIC[8] = {'u', 's', 't', 'a', 'r', 0, '0', '0'};

/* A ustar header as tarfile writes it: name and link at most 100 bytes (cut), numbers in octal. */
static void ustar(unsigned char h[BLOCK], const unsigned char *name, size_t name_len, unsigned mode, uint64_t uid,
                  uint64_t gid, uint64_t size, uint64_t mtime, char type, const unsigned char *link,
                  size_t link_len, int device, unsigned major_, unsigned minor_) {
    memset(h, 0, BLOCK);
    memcpy(h, name, name_len > 100 ? 100 : name_len);
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07llo", (unsigned long long)uid);
    snprintf((char *)h + 116, 8, "%07llo", (unsigned long long)gid);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011llo", (unsigned long long)mtime);
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    memcpy(h + 157, link, link_len > 100 ? 100 : link_len);
    memcpy(h + 257, MAGIC, 8);
    if (device) {
        snprintf((char *)h + 329, 8, "%07o", major_);
        snprintf((char *)h + 337, 8, "%07o", minor_);
    }
    unsigned sum = 0;
    for (int i = 0; i < BLOCK; i++) sum += h[i];
    snprintf((char *)h + 148, 7, "%06o", sum);   /* then NUL, and the field's last space stays */
}

typedef struct {
    buf_t b;
    int binary;
} pax_t;

static void pax_add(pax_t *p, const char *key, const unsigned char *value, size_t value_len) {
    int valid;
    utf8_chars(value, value_len, &valid, NULL);
    if (!valid) p->binary = 1;
    size_t l = strlen(key) + value_len + 3, n, q = 0;
    char digits[32];
    for (;;) {   /* the record's length counts its own digits: as tarfile finds it */
        n = l + (size_t)snprintf(digits, sizeof digits, "%zu", q);
        if (n == q) break;
        q = n;
    }
    int d = snprintf(digits, sizeof digits, "%zu ", q);
    buf_add(&p->b, digits, (size_t)d);
    buf_add(&p->b, key, strlen(key));
    buf_add(&p->b, "=", 1);
    buf_add(&p->b, value, value_len);
    buf_add(&p->b, "\n", 1);
}

static void pax_number(pax_t *p, const char *key, long long value) {
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", value);
    pax_add(p, key, (const unsigned char *)text, (size_t)n);
}

/* ------------------------------------------------------------------ hard links */

typedef struct {
    uint64_t dev, ino;
    unsigned char *name;
    size_t len;
} link_t;

static link_t *links;
static size_t links_cap, links_used;

static link_t *link_slot(uint64_t dev, uint64_t ino) {
    if ((links_used + 1) * 2 > links_cap) {
        size_t cap = links_cap ? links_cap * 2 : 1024;
        link_t *grown = calloc(cap, sizeof *grown);
        if (!grown) die(2, "out of memory");
        for (size_t i = 0; i < links_cap; i++) {
            if (!links[i].name) continue;
            size_t j = (links[i].ino * 0x9E3779B97F4A7C15ull ^ links[i].dev) & (cap - 1);
            while (grown[j].name) j = (j + 1) & (cap - 1);
            grown[j] = links[i];
        }
        free(links);
        links = grown;
        links_cap = cap;
    }
    size_t j = (ino * 0x9E3779B97F4A7C15ull ^ dev) & (links_cap - 1);
    while (links[j].name && !(links[j].dev == dev && links[j].ino == ino)) j = (j + 1) & (links_cap - 1);
    return &links[j];
}

/* ------------------------------------------------------------------ entries */

typedef struct __attribute__((packed)) {
    uint32_t crc, name_len, mode, uid, gid;
    int64_t mtime_ns, ctime_ns;
    uint64_t size, dev, ino, nlink, rdev;
} entry_t;

static char **skips;
static size_t *skip_lens;
static int nskips;

static int skipped(const unsigned char *rel, size_t len) {
    for (int i = 0; i < nskips; i++) {
        size_t n = skip_lens[i];
        if (len >= n && memcmp(rel, skips[i], n) == 0 && (len == n || rel[n] == '/')) return 1;
    }
    return 0;
}

static void read_in(void *p, size_t n) {
    if (n && fread(p, 1, n, stdin) != n) die(2, "the entry list ended early");
}

static void fail_path(const char *what, const char *full, int err) {
    if (err == ENOENT) die(3, "%s vanished while it was being packed", full);
    die(3, "cannot %s %s: %s", what, full, strerror(err));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entry's xattrs as PAX records, sorted by name (as pack._xattrs); 0 when it has none. */
static int xattrs(const char *full, pax_t *pax) {
    static char *names;
    static size_t cap;
    ssize_t n = llistxattr(full, NULL, 0);
    if (n <= 0) return 0;
    if ((size_t)n > cap) names = xrealloc(names, cap = (size_t)n + 1);
    n = llistxattr(full, names, cap);
    if (n <= 0) return 0;
    char *list[4096];
    size_t count = 0;
    for (char *p = names; p < names + n && count < 4096; p += strlen(p) + 1)
        if (*p) list[count++] = p;
    qsort(list, count, sizeof *list, by_name);
    int found = 0;
    static unsigned char value[65536];
    char key[512];
    for (size_t i = 0; i < count; i++) {
        ssize_t v = lgetxattr(full, list[i], value, sizeof value);
        if (v < 0) continue;
        snprintf(key, sizeof key, "SCHILY.xattr.%s", list[i]);
        pax_add(pax, key, value, (size_t)v);
        found = 1;
    }
    return found;
}

static char *full_path(const unsigned char *rel, size_t rel_len) {
    static char *full;
    static size_t cap;
    if (root_len + rel_len + 2 > cap) full = xrealloc(full, cap = root_len + rel_len + 256);
    memcpy(full, root, root_len);
    if (rel_len) {
        full[root_len] = '/';
        memcpy(full + root_len + 1, rel, rel_len);
        full[root_len + 1 + rel_len] = 0;
    } else {
        full[root_len] = 0;
    }
    return full;
}

/* openat2 (Linux 5.6): the file is opened beneath the rootfs with no symbolic link anywhere on its path, so a
   directory swapped for a link after the walk is not followed out of the tree. Older kernels: open(2). */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct open_how_v0 {
    uint64_t flags, mode, resolve;
};
#define RESOLVE_NO_SYMLINKS_ 0x04
#define RESOLVE_BENEATH_ 0x08
static int root_fd = -1;
static int have_openat2 = 1;

static int open_file(const unsigned char *rel, const char *full) {
    if (have_openat2 && root_fd >= 0) {
        struct open_how_v0 how = {O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH_ | RESOLVE_NO_SYMLINKS_};
        long fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno == ELOOP || errno == EXDEV)
            die(3, "%s: a directory on its path became a symbolic link while it was being packed", full);
        if (errno != ENOSYS && errno != EPERM) return -1;
        have_openat2 = 0;   /* not on this kernel (or a filter refuses it) */
    }
    return open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

static void copy_data(const unsigned char *rel, const char *full, uint64_t size) {
    int fd = open_file(rel, full);
    if (fd < 0) fail_path("read", full, errno);
    uint64_t left = size;
    while (left > 0) {
        size_t want = left < READ_SIZE ? (size_t)left : READ_SIZE;
        /* Read straight into the frame; a chunk is written (and a big entry cut) as pack.py does. */
        buf_reserve(current, want);
        size_t got = 0;
        while (got < want) {
            ssize_t r = read(fd, current->data + current->len + got, want - got);
            if (r < 0) {
                if (errno == EINTR) continue;
                fail_path("read", full, errno);
            }
            if (r == 0) die(3, "%s shrank while it was being packed", full);
            got += (size_t)r;
        }
        current->len += got;
        left -= got;
        data_read += got;
        if (big && current->len >= FRAME_MAX) cut();
    }
    char extra;
    ssize_t r;
    while ((r = read(fd, &extra, 1)) < 0 && errno == EINTR) {}
    if (r > 0) die(3, "%s grew while it was being packed", full);
    close(fd);
    size_t pad = (size_t)(-size % BLOCK);
    if (pad) {
        buf_zero(current, pad);
        if (big && current->len >= FRAME_MAX) cut();
    }
}

static void rootfs_entry(void) {
    static unsigned char *rel;
    static size_t rel_cap;
    static unsigned char *name;
    static size_t name_cap;
    static unsigned char linkbuf[65536];
    entry_t e;
    read_in(&e, sizeof e);
    if (e.name_len + 4 > rel_cap) rel = xrealloc(rel, rel_cap = e.name_len + 256);
    read_in(rel, e.name_len);
    rel[e.name_len] = 0;
    if (skipped(rel, e.name_len)) return;
    char *full = full_path(rel, e.name_len);

    char type;
    switch (e.mode & S_IFMT) {
    case S_IFREG: type = '0'; break;
    case S_IFDIR: type = '5'; break;
    case S_IFLNK: type = '2'; break;
    case S_IFCHR: type = '3'; break;
    case S_IFBLK: type = '4'; break;
    case S_IFIFO: type = '6'; break;
    default: return;   /* a socket: Python leaves them out */
    }
    /* the name: "./rel" ("." for the root), with "/" after a directory's */
    size_t name_len = e.name_len ? e.name_len + 2 : 1;
    if (name_len + 2 > name_cap) name = xrealloc(name, name_cap = name_len + 256);
    if (e.name_len) {
        name[0] = '.', name[1] = '/';
        memcpy(name + 2, rel, e.name_len);
    } else {
        name[0] = '.';
    }
    uint64_t size = 0;
    const unsigned char *link = (const unsigned char *)"";
    size_t link_len = 0;
    if (type == '0') {
        size = e.size;
        if (e.nlink > 1) {
            link_t *l = link_slot(e.dev, e.ino);
            if (l->name) {
                type = '1', link = l->name, link_len = l->len, size = 0;
            } else {
                l->dev = e.dev, l->ino = e.ino, l->len = name_len;
                l->name = xrealloc(NULL, name_len);
                memcpy(l->name, name, name_len);
                links_used++;
            }
        }
    } else if (type == '2') {
        ssize_t n = readlink(full, (char *)linkbuf, sizeof linkbuf);
        if (n < 0) fail_path("read", full, errno);
        link = linkbuf, link_len = (size_t)n;
    }
    if (type == '5') name[name_len++] = '/';
    unsigned major_ = 0, minor_ = 0;
    int device = type == '3' || type == '4';
    if (device) major_ = major(e.rdev), minor_ = minor(e.rdev);
    unsigned mode = e.mode & 07777;

    static pax_t pax;
    pax.b.len = 0, pax.binary = 0;
    int has_xattrs = xattrs(full, &pax);
    int name_ok = name_len <= 100 && is_ascii(name, name_len);
    int link_ok = link_len <= 100 && is_ascii(link, link_len);
    uint64_t uid = e.uid, gid = e.gid, hsize = size;
    int64_t mtime = e.mtime_ns / 1000000000;   /* whole seconds, toward zero (as pack.py) */
    unsigned char h[BLOCK];
    static buf_t head;
    head.len = 0;
    if (!has_xattrs && name_ok && link_ok && uid < OCTAL7 && gid < OCTAL7 && size < OCTAL11 && mtime >= 0 &&
        (uint64_t)mtime < OCTAL11) {
        ustar(h, name, name_len, mode, uid, gid, size, (uint64_t)mtime, type, link, link_len, device, major_,
              minor_);
        buf_add(&head, h, BLOCK);
    } else {
        /* tarfile's PAX: xattrs first, then path, linkpath, uid, gid, size, mtime as needed. */
        static unsigned char ascii_name[65536], ascii_link[65536];
        int valid;
        size_t nchars = utf8_chars(name, name_len, &valid, ascii_name);
        if (!name_ok) pax_add(&pax, "path", name, name_len);
        size_t lchars = utf8_chars(link, link_len, &valid, ascii_link);
        if (!link_ok) pax_add(&pax, "linkpath", link, link_len);
        if (uid >= OCTAL7) pax_number(&pax, "uid", (long long)uid), uid = 0;
        if (gid >= OCTAL7) pax_number(&pax, "gid", (long long)gid), gid = 0;
        if (size >= OCTAL11) pax_number(&pax, "size", (long long)size), hsize = 0;
        if (mtime < 0 || (uint64_t)mtime >= OCTAL11) pax_number(&pax, "mtime", (long long)mtime), mtime = 0;
        buf_t records = {0};
        if (pax.binary) buf_add(&records, "21 hdrcharset=BINARY\n", 21);
        buf_add(&records, pax.b.data, pax.b.len);
        ustar(h, (const unsigned char *)"././@PaxHeader", 14, 0, 0, 0, records.len, 0, 'x',
              (const unsigned char *)"", 0, 0, 0, 0);
        buf_add(&head, h, BLOCK);
        buf_add(&head, records.data, records.len);
        buf_zero(&head, (size_t)(-records.len % BLOCK));
        free(records.data);
        ustar(h, ascii_name, nchars, mode, uid, gid, hsize, (uint64_t)mtime, type, ascii_link, lchars, device,
              major_, minor_);
        buf_add(&head, h, BLOCK);
    }
    f_begin(size);
    f_write(head.data, head.len);
    if (size) copy_data(rel, full, size);
    f_end(e.crc);
    entries_written++;
}

static void raw_entry(void) {
    static buf_t part;
    uint32_t crc, parts;
    uint64_t data_size;
    read_in(&crc, 4);
    read_in(&data_size, 8);
    read_in(&parts, 4);
    f_begin(data_size);
    for (uint32_t i = 0; i < parts; i++) {
        uint64_t len;
        read_in(&len, 8);
        part.len = 0;
        buf_reserve(&part, len);
        read_in(part.data, len);
        f_write(part.data, len);
    }
    f_end(crc);
    entries_written++;
}

/* ------------------------------------------------------------------ scan */

static uint32_t crc_table[256];

static uint32_t crc32(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static FILE *out_file;
static uint64_t scan_size, scan_count;

static void emit(const struct stat *st, const char *rel, size_t rel_len) {
    entry_t e = {
        .crc = crc32((const unsigned char *)rel, rel_len), .name_len = (uint32_t)rel_len, .mode = st->st_mode,
        .uid = st->st_uid, .gid = st->st_gid,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
        .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
        .size = (uint64_t)st->st_size, .dev = st->st_dev, .ino = st->st_ino, .nlink = st->st_nlink,
        .rdev = st->st_rdev,
    };
    putc('F', out_file);
    fwrite(&e, sizeof e, 1, out_file);
    fwrite(rel, 1, rel_len, out_file);
    scan_count++;
    if (S_ISREG(st->st_mode)) {
        if (st->st_nlink > 1) {
            link_t *l = link_slot(st->st_dev, st->st_ino);
            if (l->name) return;
            l->dev = st->st_dev, l->ino = st->st_ino, l->name = (unsigned char *)"", l->len = 0;
            links_used++;
        }
        scan_size += (uint64_t)st->st_size;
    }
}

static void walk(int parent, const char *name, char *rel, size_t rel_len, size_t rel_cap) {
    struct stat st;
    const char *shown = rel_len ? rel : ".";
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) die(3, "%s/%s vanished while it was being read", root, shown);
        die(3, "cannot read %s/%s: %s", root, shown, strerror(errno));
    }
    emit(&st, rel, rel_len);
    if (!S_ISDIR(st.st_mode)) return;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) die(3, "cannot read directory %s/%s: %s", root, shown, strerror(errno));
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *d;
    errno = 0;
    while ((d = readdir(dir)) != NULL) {
        if (d->d_name[0] == '.' && (!d->d_name[1] || (d->d_name[1] == '.' && !d->d_name[2]))) continue;
        if (count == cap) names = xrealloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
        names[count] = strdup(d->d_name);
        if (!names[count++]) die(2, "out of memory");
    }
    if (errno) die(3, "cannot read directory %s/%s: %s", root, shown, strerror(errno));
    qsort(names, count, sizeof *names, by_name);
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(names[i]), len = rel_len ? rel_len + 1 + n : n;
        if (len + 1 > rel_cap) die(3, "%s/%s/%s: the path is too long", root, shown, names[i]);
        if (rel_len) rel[rel_len] = '/';
        memcpy(rel + (rel_len ? rel_len + 1 : 0), names[i], n + 1);
        walk(dirfd(dir), names[i], rel, len, rel_cap);
        rel[rel_len] = 0;
        free(names[i]);
    }
    free(names);
    closedir(dir);
}

static int scan(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    static char outbuf[1 << 20];
    out_file = stdout;
    setvbuf(out_file, outbuf, _IOFBF, sizeof outbuf);
    static char rel[1 << 16];
    rel[0] = 0;
    walk(AT_FDCWD, root, rel, 0, sizeof rel);
    putc('S', out_file);
    fwrite(&scan_size, 8, 1, out_file);
    fwrite(&scan_count, 8, 1, out_file);
    if (fflush(out_file) != 0) die(errno == EPIPE ? 4 : 2, "cannot write the entries: %s", strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------ main */

static int pack(int argc, char **argv) {
    root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) die(3, "cannot read directory %s: %s", root, strerror(errno));
    level = atoi(argv[0]);
    int threads = atoi(argv[1]);
    if (threads < 1 || threads > 64) die(2, "THREADS: 1 to 64");
    nskips = argc - 2;
    skips = argv + 2;
    skip_lens = calloc((size_t)nskips + 1, sizeof *skip_lens);
    if (!skip_lens) die(2, "out of memory");
    for (int i = 0; i < nskips; i++) skip_lens[i] = strlen(skips[i]);
    nslots = 2 * (unsigned)threads + 2;
    slots = calloc(nslots, sizeof *slots);
    if (!slots) die(2, "out of memory");
    static char inbuf[1 << 20];
    setvbuf(stdin, inbuf, _IOFBF, sizeof inbuf);
    take_slot();
    pthread_t pool[64], out;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&pool[i], NULL, compressor, NULL)) die(2, "cannot start a thread");
    if (pthread_create(&out, NULL, writer, NULL)) die(2, "cannot start a thread");
    for (;;) {
        int kind = getc(stdin);
        if (kind == 'F') rootfs_entry();
        else if (kind == 'R') raw_entry();
        else if (kind == 'E') break;
        else die(2, "the entry list ended early");
    }
    static const unsigned char zeros[2 * BLOCK];
    big = 0;
    f_write(zeros, sizeof zeros);
    if (current->len) cut();
    pthread_mutex_lock(&lock);
    finished = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < threads; i++) pthread_join(pool[i], NULL);
    pthread_join(out, NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "scan") == 0) {
        root = argv[2];
        root_len = strlen(root);
        return scan();
    }
    if (argc >= 5 && strcmp(argv[1], "pack") == 0) {
        root = argv[2];
        root_len = strlen(root);
        return pack(argc - 3, argv + 3);
    }
    die(2, "usage: packer scan ROOT | packer pack ROOT LEVEL THREADS [SKIP...]");
}
