/* The usage scan's per-response loop, compiled: an optional speed-up of scan.fold_chunk, never a second
 * definition of what a rollout line means.
 *
 * fold_records walks `"type":"t` markers exactly as scan.fold_chunk does and folds the lines it can
 * prove it understands: token_usage_record lines in the strict shape of scan_shapes.RecordLine, compact
 * JSON with plain ASCII strings and integers of at most 18 digits; and turn_context and
 * thread_settings_applied lines, any valid JSON within the same limits, for the model they switch to. At anything else (another marker
 * kind, a record it cannot prove plain, a bucket not cached yet, the next session_meta line) it stops
 * and returns the marker's position, and the Python walk handles that one line its own way. So every
 * line it does not fold is folded by the same Python code as without it, and a line it folds is one
 * msgspec and orjson would read to the same values.
 *
 * When the extension cannot be built (no compiler), scan.py runs without it; tests run both.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static const char T_MARK[] = "\"type\":\"t";                        /* 9 bytes */
static const char REC_MARK[] = "\"type\":\"token_usage_record\"";
static const char TC_MARK[] = "\"type\":\"token_count\"";
static const char CTX_MARK[] = "\"type\":\"turn_context\"";
static const char SET_MARK[] = "\"type\":\"thread_settings_applied\"";

/* The first `"type":"t` in h[0, n): SSE2 compares the first and last bytes of 16 places at once and
 * memcmp confirms (about 4x glibc's memmem on rollouts); memmem where SSE2 is not available. */
#if defined(__SSE2__)
static const char *find_mark(const char *h, size_t n) {
    const __m128i first = _mm_set1_epi8('"'), last = _mm_set1_epi8('t');
    size_t i = 0;
    for (; i + 24 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(h + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(h + i + 8));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, first), _mm_cmpeq_epi8(b, last)));
        while (mask) {
            int bit = __builtin_ctz(mask);
            if (memcmp(h + i + bit + 1, T_MARK + 1, 7) == 0)
                return h + i + bit;
            mask &= mask - 1;
        }
    }
    return i < n ? memmem(h + i, n - i, T_MARK, 9) : NULL;
}
#else
static const char *find_mark(const char *h, size_t n) { return memmem(h, n, T_MARK, 9); }
#endif

enum { K_NONE = -1, K_REC = 0, K_TC = 1, K_OTHER = 2, K_CTX = 3, K_SET = 4 };

typedef struct {
    const char *p;
    const char *end;
} cursor;

/* p moved 16 bytes at a time to the first quote, backslash, control byte or byte of 0x80..0xff (and DEL
 * with `del_too`), or to where fewer than 16 bytes are left: the caller reads on from there one byte at
 * a time. Without SSE2, p itself. */
static const char *skip_ordinary(const char *p, const char *end, int del_too) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20),
                  del = _mm_set1_epi8(del_too ? 0x7f : '"');
    while (p + 16 <= end) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed: below 0x20 is a control byte or, negative, one of 0x80..0xff */
        __m128i odd = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                   _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, del)));
        unsigned mask = (unsigned)_mm_movemask_epi8(odd);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#else
    (void)end, (void)del_too;
#endif
    return p;
}

/* A plain JSON string: ASCII 0x20..0x7e without a quote or backslash. Sets *s, *n; 0 when not plain. */
static int plain_string(cursor *c, const char **s, Py_ssize_t *n) {
    const char *p = c->p;
    if (p >= c->end || *p != '"')
        return 0;
    p++;
    const char *start = p;
    p = skip_ordinary(p, c->end, 1); /* ids and keys are 10 to 40 bytes */
    while (p < c->end) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *s = start;
            *n = p - start;
            c->p = p + 1;
            return 1;
        }
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return 0;
        p++;
    }
    return 0;
}

static int literal_null(cursor *c) {
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

/* A JSON integer of at most 18 digits (inside int64), or null (is_null set). 0 when anything else. */
static int plain_int(cursor *c, long long *value, int *is_null) {
    *is_null = 0;
    if (literal_null(c)) {
        *is_null = 1;
        return 1;
    }
    const char *p = c->p;
    int negative = 0;
    if (p < c->end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= c->end || *p < '0' || *p > '9')
        return 0;
    if (*p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9')
        return 0; /* a leading zero: not JSON */
    if (negative && *p == '0')
        return 0; /* -0: left to the generic readers */
    long long v = 0;
    int digits = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++digits > 18)
            return 0;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p < c->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return 0;
    *value = negative ? -v : v;
    c->p = p;
    return 1;
}

/* The next key of an object: `"name":`; the name must be plain. */
static int key(cursor *c, const char **s, Py_ssize_t *n) {
    if (!plain_string(c, s, n))
        return 0;
    if (c->p >= c->end || *c->p != ':')
        return 0;
    c->p++;
    return 1;
}

/* After a member: `,` (another follows, returns 1) or `}` (the object ends, returns 2); 0 otherwise. */
static int next_member(cursor *c) {
    if (c->p >= c->end)
        return 0;
    if (*c->p == ',') {
        c->p++;
        return 1;
    }
    if (*c->p == '}') {
        c->p++;
        return 2;
    }
    return 0;
}

/* An object's `{`: 1 when members follow, 2 for `{}` (both consumed), 0 when no object starts here. */
static int open_object(cursor *c) {
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 2;
    }
    return 1;
}

static int key_is(const char *s, Py_ssize_t n, const char *name) {
    return (Py_ssize_t)strlen(name) == n && memcmp(s, name, n) == 0;
}

static const char *USAGE_KEYS[6] = {"input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                                    "output_tokens", "reasoning_output_tokens", "total_tokens"};

/* A usage object (scan_shapes._Usage) or null. vals[6] get the counts, 0 for null or absent. */
static int usage_obj(cursor *c, long long vals[6], int *is_null) {
    for (int k = 0; k < 6; k++)
        vals[k] = 0;
    *is_null = 0;
    if (literal_null(c)) {
        *is_null = 1;
        return 1;
    }
    int opened = open_object(c);
    if (opened != 1)
        return opened == 2; /* {}: every count null */
    unsigned seen = 0;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        if (!key(c, &s, &n))
            return 0;
        int which = -1;
        for (int k = 0; k < 6; k++)
            if (key_is(s, n, USAGE_KEYS[k])) {
                which = k;
                break;
            }
        if (which < 0 || (seen & (1u << which)))
            return 0; /* unknown or repeated: left to msgspec */
        seen |= 1u << which;
        int null;
        long long v;
        if (!plain_int(c, &v, &null))
            return 0;
        vals[which] = null ? 0 : v;
        int more = next_member(c);
        if (more == 0)
            return 0;
        if (more == 2)
            return 1;
    }
}

typedef struct {
    const char *stamp;
    Py_ssize_t stamp_n; /* -1: null or absent */
    const char *rid;
    Py_ssize_t rid_n; /* -1: null or absent */
    long long usage[6];
    int has_usage;
    int type_ok;
    int has_payload;
} record;

static const char *PAYLOAD_STR_KEYS[5] = {"thread_id", "turn_id", "session_id", "root_turn_id", "response_id"};
static const char *PAYLOAD_USAGE_KEYS[3] = {"usage", "turn_token_usage", "thread_token_usage"};

static int payload_obj(cursor *c, record *r) {
    r->has_payload = 0;
    if (literal_null(c))
        return 1;
    int opened = open_object(c);
    if (opened == 0)
        return 0;
    r->has_payload = 1;
    if (opened == 2)
        return 1;
    unsigned seen = 0;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        if (!key(c, &s, &n))
            return 0;
        int which = -1;
        for (int k = 0; k < 5 && which < 0; k++)
            if (key_is(s, n, PAYLOAD_STR_KEYS[k]))
                which = k;
        for (int k = 0; k < 3 && which < 0; k++)
            if (key_is(s, n, PAYLOAD_USAGE_KEYS[k]))
                which = 5 + k;
        if (which < 0 || (seen & (1u << which)))
            return 0;
        seen |= 1u << which;
        if (which < 5) {
            const char *v;
            Py_ssize_t vn;
            if (literal_null(c)) {
                v = NULL;
                vn = -1;
            } else if (!plain_string(c, &v, &vn)) {
                return 0;
            }
            if (which == 4) {
                r->rid = v;
                r->rid_n = vn;
            }
        } else {
            long long vals[6];
            int null;
            if (!usage_obj(c, vals, &null))
                return 0;
            if (which == 5) {
                r->has_usage = !null;
                memcpy(r->usage, vals, sizeof(vals));
            }
        }
        int more = next_member(c);
        if (more == 0)
            return 0;
        if (more == 2)
            return 1;
    }
}

/* The whole line [p, end) as a strict RecordLine; 0 when it is not one this code can prove plain. */
static int record_line(const char *p, const char *end, record *r) {
    cursor c = {p, end};
    memset(r, 0, sizeof(*r));
    r->stamp_n = -1;
    r->rid_n = -1;
    if (open_object(&c) != 1)
        return 0; /* not an object, or {}: no record */
    unsigned seen = 0;
    for (;;) {
        const char *s;
        Py_ssize_t n;
        if (!key(&c, &s, &n))
            return 0;
        int which;
        if (key_is(s, n, "timestamp"))
            which = 0;
        else if (key_is(s, n, "ordinal"))
            which = 1;
        else if (key_is(s, n, "type"))
            which = 2;
        else if (key_is(s, n, "payload"))
            which = 3;
        else
            return 0;
        if (seen & (1u << which))
            return 0;
        seen |= 1u << which;
        if (which == 0) {
            if (!literal_null(&c) && !plain_string(&c, &r->stamp, &r->stamp_n))
                return 0;
        } else if (which == 1) {
            long long v;
            int null;
            if (!plain_int(&c, &v, &null))
                return 0;
        } else if (which == 2) {
            const char *v;
            Py_ssize_t vn;
            if (literal_null(&c))
                r->type_ok = 0;
            else if (!plain_string(&c, &v, &vn))
                return 0;
            else
                r->type_ok = key_is(v, vn, "token_usage_record");
        } else {
            if (!payload_obj(&c, r))
                return 0;
        }
        int more = next_member(&c);
        if (more == 0)
            return 0;
        if (more == 2)
            break;
    }
    return c.p == c.end; /* nothing after the object, not even a carriage return */
}

/* --- model switches: any valid JSON line, read for the model it switches to ------------------------ */

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
        c->p++; /* JSON's whitespace but the newline, which ends the line */
}

/* One UTF-8 sequence at p (its first byte >= 0x80) as orjson accepts it: no overlong form, no encoded
 * surrogate, nothing above U+10FFFF. Its length, or 0. */
static int utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned char b = p[0];
    int n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf)
        n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (end - p < n || p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* Any JSON string: valid UTF-8, no control byte, escapes of one character. A \u escape is refused: it
 * may spell a key this code compares, or a lone surrogate orjson rejects; the walk reads such a line.
 * Sets *s, *n to the raw bytes between the quotes, *plain when they are printable ASCII with no escape. */
static int any_string(cursor *c, const char **s, Py_ssize_t *n, int *plain) {
    const unsigned char *p = (const unsigned char *)c->p, *end = (const unsigned char *)c->end;
    if (p >= end || *p != '"')
        return 0;
    p++;
    const unsigned char *start = p;
    int simple = 1;
    for (;;) {
        p = (const unsigned char *)skip_ordinary((const char *)p, (const char *)end, 0);
        if (p >= end)
            return 0;
        unsigned char ch = *p;
        if (ch == '"')
            break;
        if (ch == '\\') {
            if (p + 1 >= end || !strchr("\"\\/bfnrt", p[1]) || p[1] == 0)
                return 0;
            simple = 0;
            p += 2;
        } else if (ch < 0x20) {
            return 0;
        } else if (ch >= 0x80) {
            int k = utf8_seq(p, end);
            if (k == 0)
                return 0;
            simple = 0;
            p += k;
        } else {
            if (ch == 0x7f)
                simple = 0;
            p++;
        }
    }
    *s = (const char *)start;
    *n = (const char *)p - (const char *)start;
    *plain = simple;
    c->p = (const char *)p + 1;
    return 1;
}

/* A JSON number as this code proves it: an integer of at most 18 digits, or -0. */
static int any_number(cursor *c) {
    long long v;
    int null;
    if (c->p < c->end && *c->p == 'n')
        return 0;
    if (plain_int(c, &v, &null))
        return 1;
    if (c->end - c->p >= 2 && c->p[0] == '-' && c->p[1] == '0') { /* plain_int leaves -0 to its callers */
        char next = c->end - c->p > 2 ? c->p[2] : ' ';
        if ((next >= '0' && next <= '9') || next == '.' || next == 'e' || next == 'E')
            return 0;
        c->p += 2;
        return 1;
    }
    return 0;
}

static int any_value(cursor *c, int depth);

/* After an object member or array item: 1 at the closing `close` (read), -1 at a `,` (read: another
 * follows), 0 at anything else. */
static int after_item(cursor *c, char close) {
    skip_ws(c);
    if (c->p >= c->end)
        return 0;
    if (*c->p == close) {
        c->p++;
        return 1;
    }
    if (*c->p != ',')
        return 0;
    c->p++;
    return -1;
}

/* What reads one member's value, given its key (raw bytes, and whether they are plain). */
typedef int (*member_fn)(cursor *c, const char *key, Py_ssize_t key_n, int key_plain, void *ctx, int depth);

/* After an object's `{`: each member to the `}`, its value read by `member`. */
static int each_member(cursor *c, member_fn member, void *ctx, int depth) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    for (;;) {
        const char *s;
        Py_ssize_t n;
        int plain;
        skip_ws(c);
        if (!any_string(c, &s, &n, &plain))
            return 0;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        if (!member(c, s, n, plain, ctx, depth))
            return 0;
        int after = after_item(c, '}');
        if (after >= 0)
            return after;
    }
}

static int any_member(cursor *c, const char *key, Py_ssize_t key_n, int key_plain, void *ctx, int depth) {
    (void)key, (void)key_n, (void)key_plain, (void)ctx;
    return any_value(c, depth);
}

/* Any JSON value, nested at most 64 deep (orjson allows more; deeper lines go to the walk). */
static int any_value(cursor *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end || depth > 64)
        return 0;
    const char *s;
    Py_ssize_t n;
    int plain;
    switch (*c->p) {
    case '{':
        c->p++;
        return each_member(c, any_member, NULL, depth + 1);
    case '[':
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return 1;
        }
        for (;;) {
            if (!any_value(c, depth + 1))
                return 0;
            int after = after_item(c, ']');
            if (after >= 0)
                return after;
        }
    case '"':
        return any_string(c, &s, &n, &plain);
    case 't':
        if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) {
            c->p += 4;
            return 1;
        }
        return 0;
    case 'f':
        if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) {
            c->p += 5;
            return 1;
        }
        return 0;
    case 'n':
        return literal_null(c);
    default:
        return any_number(c);
    }
}

/* A member's value, kept when it is a string: whether it is one, its raw bytes and their plainness. */
typedef struct {
    int is_str;
    const char *s;
    Py_ssize_t n;
    int plain;
} kept;

static int keep_string(cursor *c, int depth, kept *k) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '"') {
        k->is_str = 1;
        return any_string(c, &k->s, &k->n, &k->plain);
    }
    k->is_str = 0;
    return any_value(c, depth);
}

typedef struct {
    int settings;      /* a thread_settings_applied line: the model is payload.thread_settings.model */
    int is_obj;        /* the (last) payload is an object */
    kept ptype;        /* its (last) "type" */
    int holder_obj;    /* what holds "model" (the payload, or its last thread_settings) is an object */
    kept model;        /* its (last) "model" */
} switch_read;

/* The members of an object that holds a model (a turn_context's payload, or the thread_settings of
 * a thread_settings_applied): the last "model" goes to x. */
static int model_member(cursor *c, const char *key, Py_ssize_t key_n, int key_plain, void *ctx, int depth) {
    switch_read *x = ctx;
    if (key_plain && key_is(key, key_n, "model"))
        return keep_string(c, depth, &x->model);
    return any_value(c, depth);
}

static int model_holder(cursor *c, switch_read *x, int depth) {
    x->holder_obj = 1;
    x->model.is_str = 0;
    return each_member(c, model_member, x, depth);
}

/* The members of a thread_settings_applied payload: its last "type", and its last "thread_settings",
 * read by model_holder when it is an object. */
static int settings_member(cursor *c, const char *key, Py_ssize_t key_n, int key_plain, void *ctx, int depth) {
    switch_read *x = ctx;
    if (key_plain && key_is(key, key_n, "type"))
        return keep_string(c, depth, &x->ptype);
    if (!key_plain || !key_is(key, key_n, "thread_settings"))
        return any_value(c, depth);
    skip_ws(c);
    if (c->p < c->end && *c->p == '{') {
        c->p++;
        return model_holder(c, x, depth + 1);
    }
    x->holder_obj = 0;
    x->model.is_str = 0;
    return any_value(c, depth);
}

/* The payload's value: an object read member by member, or any other value. */
static int switch_payload(cursor *c, switch_read *x) {
    x->is_obj = 0;
    x->ptype.is_str = 0;
    x->holder_obj = 0;
    x->model.is_str = 0;
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return any_value(c, 1);
    x->is_obj = 1;
    c->p++;
    return x->settings ? each_member(c, settings_member, x, 2) : model_holder(c, x, 2);
}

/* The whole line [p, end) as orjson and FileFold.feed read a model switch (cf.model_of): valid JSON, a
 * top-level object whose last "type" is "turn_context" (`settings` 0), or "event_msg" with a payload whose
 * last "type" is "thread_settings_applied" (`settings` 1). *model is then the model it switches to when
 * that is a non-empty string (payload.model, or payload.thread_settings.model), else NULL. 0 when the
 * line is not one this code can prove so. */
typedef struct {
    switch_read x;
    kept type;
} switch_top;

/* A top-level member: the last "type" is kept, the last "payload" read by switch_payload. */
static int top_member(cursor *c, const char *key, Py_ssize_t key_n, int key_plain, void *ctx, int depth) {
    switch_top *t = ctx;
    if (key_plain && key_is(key, key_n, "type"))
        return keep_string(c, depth, &t->type);
    if (key_plain && key_is(key, key_n, "payload"))
        return switch_payload(c, &t->x);
    return any_value(c, depth);
}

static int switch_line(const char *p, const char *end, int settings, const char **model, Py_ssize_t *model_n) {
    cursor c = {p, end};
    switch_top top;
    memset(&top, 0, sizeof(top));
    top.x.settings = settings;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return 0;
    c.p++;
    if (!each_member(&c, top_member, &top, 1))
        return 0;
    switch_read *x = &top.x;
    kept *type = &top.type;
    skip_ws(&c);
    if (c.p != c.end || !type->is_str || !type->plain)
        return 0;
    if (!key_is(type->s, type->n, settings ? "event_msg" : "turn_context"))
        return 0;
    if (settings && !(x->is_obj && x->ptype.is_str && x->ptype.plain &&
                      key_is(x->ptype.s, x->ptype.n, "thread_settings_applied")))
        return 0; /* another event: what it means is the walk's to say */
    *model = NULL;
    *model_n = 0;
    if (x->is_obj && x->holder_obj && x->model.is_str && x->model.n > 0) {
        if (!x->model.plain)
            return 0; /* escaped or not ASCII: the walk decodes it */
        *model = x->model.s;
        *model_n = x->model.n;
    }
    return 1;
}

static int starts(const char *buf, Py_ssize_t len, Py_ssize_t pos, const char *mark) {
    Py_ssize_t n = (Py_ssize_t)strlen(mark);
    return pos + n <= len && memcmp(buf + pos, mark, n) == 0;
}

static int add_to(PyObject *list, Py_ssize_t i, long long v) {
    PyObject *old = PyList_GET_ITEM(list, i);
    PyObject *add = PyLong_FromLongLong(v);
    if (add == NULL)
        return -1;
    PyObject *sum = PyNumber_Add(old, add);
    Py_DECREF(add);
    if (sum == NULL)
        return -1;
    PyList_SetItem(list, i, sum); /* steals sum, drops old */
    return 0;
}

/* fold_records(chunk, pos, bound, last_nl, has_records, model, buckets, seen, ids, sums)
 *   -> (pos, has_records, duplicates, model)
 *
 * Folds from marker search position `pos` (scan.fold_chunk's `pos` before its `find`) while markers lie
 * before `bound` (the next session_meta line's start) and end by `last_nl`. Returns the position of the
 * marker the Python walk must handle next, or -1 when none is left; and the model in force after the
 * turn_context lines it read (`model` itself when none switched it).
 */
static PyObject *fold_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, bound, last_nl;
    int has_records;
    PyObject *model, *buckets, *seen, *ids, *sums;
    if (!PyArg_ParseTuple(args, "y*nnnpOO!O!O!O!", &view, &pos, &bound, &last_nl, &has_records, &model,
                          &PyDict_Type, &buckets, &PySet_Type, &seen, &PyList_Type, &ids, &PyDict_Type, &sums))
        return NULL;
    Py_INCREF(model); /* this call's own reference: a turn_context line may replace it */
    const char *buf = (const char *)view.buf;
    Py_ssize_t len = view.len;
    Py_ssize_t duplicates = 0;
    Py_ssize_t stop = -1;
    if (last_nl >= len)
        last_nl = len - 1; /* the index of a newline: a marker must end by it */
    while (pos >= 0 && pos < last_nl) {
        const char *hit = find_mark(buf + pos, (size_t)(last_nl - pos));
        if (hit == NULL) {
            stop = -1;
            break;
        }
        Py_ssize_t at = hit - buf;
        if (at >= bound) {
            stop = at;
            break;
        }
        char ch = buf[at + 9];
        int kind = K_NONE;
        if (ch == 'o')
            kind = starts(buf, len, at, REC_MARK) ? K_REC : starts(buf, len, at, TC_MARK) ? K_TC : K_NONE;
        else if (ch == 'u')
            kind = starts(buf, len, at, CTX_MARK) ? K_CTX : K_NONE;
        else if (ch == 'h')
            kind = starts(buf, len, at, SET_MARK) ? K_SET : K_NONE;
        if (kind == K_NONE) {
            pos = at + 9;
            continue;
        }
        if (kind == K_OTHER || (kind == K_TC && !has_records)) {
            stop = at;
            break;
        }
        const char *nl = memchr(buf + at, '\n', (size_t)(len - at));
        Py_ssize_t end = nl ? nl - buf : -1;
        if (end < 0) {  /* cannot happen below last_nl; leave it to the walk */
            stop = at;
            break;
        }
        if (kind == K_TC) { /* skipped unread once the file has records */
            pos = end;
            continue;
        }
        Py_ssize_t start = at;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (kind == K_CTX || kind == K_SET) {
            /* scan.fold_chunk's other(): with records, a line naming a token_count is skipped whole */
            if (has_records && memmem(buf + start, (size_t)(end - start), TC_MARK, sizeof(TC_MARK) - 1)) {
                pos = end;
                continue;
            }
            const char *m;
            Py_ssize_t mn;
            if (!switch_line(buf + start, buf + end, kind == K_SET, &m, &mn)) {
                stop = at;
                break;
            }
            if (m != NULL) {
                PyObject *switched = PyUnicode_FromStringAndSize(m, mn);
                if (switched == NULL)
                    goto error;
                Py_SETREF(model, switched);
            }
            pos = end;
            continue;
        }
        record r;
        if (!record_line(buf + start, buf + end, &r) || !r.type_ok || !r.has_payload || !r.has_usage ||
            r.stamp_n < 16 || r.stamp[r.stamp_n - 1] != 'Z') {
            stop = at;
            break;
        }
        PyObject *prefix = PyUnicode_FromStringAndSize(r.stamp, 16);
        if (prefix == NULL)
            goto error;
        PyObject *bucket = PyDict_GetItemWithError(buckets, prefix); /* borrowed */
        Py_DECREF(prefix);
        if (bucket == NULL) {
            if (PyErr_Occurred())
                goto error;
            stop = at; /* not cached yet: the walk's bucket_of computes and caches it */
            break;
        }
        has_records = 1;
        if (r.rid_n > 0) {
            PyObject *rid = PyUnicode_FromStringAndSize(r.rid, r.rid_n);
            if (rid == NULL)
                goto error;
            int known = PySet_Contains(seen, rid);
            if (known < 0) {
                Py_DECREF(rid);
                goto error;
            }
            if (known) {
                Py_DECREF(rid);
                duplicates++;
                pos = end;
                continue;
            }
            if (PySet_Add(seen, rid) < 0 || PyList_Append(ids, rid) < 0) {
                Py_DECREF(rid);
                goto error;
            }
            Py_DECREF(rid);
        }
        PyObject *k = PyTuple_Pack(2, model, bucket);
        if (k == NULL)
            goto error;
        PyObject *s = PyDict_GetItemWithError(sums, k); /* borrowed */
        if (s == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(k);
                goto error;
            }
            s = Py_BuildValue("[iiiii]", 0, 0, 0, 0, 0);
            if (s == NULL || PyDict_SetItem(sums, k, s) < 0) {
                Py_XDECREF(s);
                Py_DECREF(k);
                goto error;
            }
            Py_DECREF(s); /* the dict holds it */
        }
        Py_DECREF(k);
        if (!PyList_CheckExact(s) || PyList_GET_SIZE(s) != 5) {
            PyErr_SetString(PyExc_TypeError, "sums values must be lists of five counts");
            goto error;
        }
        /* input, cached input, output, reasoning: a negative count is 0, as in the fold */
        long long add[4] = {r.usage[0], r.usage[1], r.usage[3], r.usage[4]};
        for (int i = 0; i < 4; i++)
            if (add_to(s, i, add[i] > 0 ? add[i] : 0) < 0)
                goto error;
        if (add_to(s, 4, 1) < 0)
            goto error;
        pos = end;
    }
    PyBuffer_Release(&view);
    PyObject *out = Py_BuildValue("ninO", stop, has_records, duplicates, model);
    Py_DECREF(model);
    return out;
error:
    PyBuffer_Release(&view);
    Py_DECREF(model);
    return NULL;
}


/* --- tree_stats: the stat vector of every rollout under some folders (answer_cache.tree_stats) ---- */

typedef struct {
    char *path;
    size_t len;
    int64_t n[6]; /* dev, inode, size, mtime_ns, ctime_ns, mode; or -1, errno, 0, 0, 0, 0 */
} stat_rec;

typedef struct {
    char *path;
    size_t len;
    int top;
} folder_item;

/* Folders are shared by a few threads (the stats are name lookups in the kernel, which run in
 * parallel); each thread keeps its own records, merged and sorted at the end. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t more;
    folder_item *todo;
    size_t todo_n, todo_cap;
    int busy; /* threads walking a folder now: none, and nothing queued, is the end */
    int failed;
    const char *prefix;
    Py_ssize_t prefix_n;
    const char **suffix;
    Py_ssize_t *suffix_n;
    Py_ssize_t suffixes;
} walk;

/* One folder's rollouts: recs[start, start + n) of walker `owner`, already in byte order of name. */
typedef struct {
    const char *folder; /* the first record's path, of which the first `fn` bytes are the folder */
    size_t fn, start, n;
    int owner;
} folder_group;

typedef struct {
    walk *w;
    int id;
    stat_rec *recs;
    size_t count, cap;
    folder_group *groups;
    size_t group_n, group_cap;
} walker;

static void walk_fail(walk *w) {
    pthread_mutex_lock(&w->lock);
    w->failed = 1;
    pthread_mutex_unlock(&w->lock);
}

/* `arr` with room for one more element past `used` (doubling from `first`), or NULL when out of
 * memory, in which case `arr` is still valid and *cap unchanged. */
static void *grow(void *arr, size_t *cap, size_t used, size_t elem, size_t first) {
    if (used < *cap)
        return arr;
    size_t n = *cap ? *cap * 2 : first;
    void *grown = realloc(arr, n * elem);
    if (grown != NULL)
        *cap = n;
    return grown;
}

static int rollout_name(walk *w, const char *name, size_t n) {
    if ((Py_ssize_t)n < w->prefix_n || memcmp(name, w->prefix, w->prefix_n) != 0)
        return 0;
    for (Py_ssize_t i = 0; i < w->suffixes; i++)
        if ((Py_ssize_t)n >= w->suffix_n[i] && memcmp(name + n - w->suffix_n[i], w->suffix[i], w->suffix_n[i]) == 0)
            return 1;
    return 0;
}

static char *joined(const char *folder, size_t fn, const char *name, size_t nn, size_t *out) {
    char *p = malloc(fn + 1 + nn + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, folder, fn);
    p[fn] = '/';
    memcpy(p + fn + 1, name, nn);
    p[fn + 1 + nn] = 0;
    *out = fn + 1 + nn;
    return p;
}

/* Under the lock. */
static int push_folder(walk *w, char *path, size_t len, int top) {
    folder_item *todo = grow(w->todo, &w->todo_cap, w->todo_n, sizeof(folder_item), 256);
    if (todo == NULL)
        return -1;
    w->todo = todo;
    w->todo[w->todo_n].path = path;
    w->todo[w->todo_n].len = len;
    w->todo[w->todo_n].top = top;
    w->todo_n++;
    pthread_cond_signal(&w->more);
    return 0;
}

/* One folder: rollouts get a record, subfolders (not links to them) are queued. As tree_stats' Python
 * twin: the top folder may be a link, a subfolder is opened O_NOFOLLOW, an unreadable one is skipped. */
static int by_path(const void *a, const void *b);

static void walk_folder(walker *t, const char *folder, size_t fn, int top) {
    walk *w = t->w;
    size_t start = t->count;
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (top ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        const char *name = e->d_name;
        size_t nn = strlen(name);
        if (name[0] == '.' && (nn == 1 || (nn == 2 && name[1] == '.')))
            continue;
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir) {
            size_t sub_n;
            char *sub = joined(folder, fn, name, nn, &sub_n);
            pthread_mutex_lock(&w->lock);
            if (sub == NULL || push_folder(w, sub, sub_n, 0) < 0) {
                free(sub);
                w->failed = 1;
            }
            pthread_mutex_unlock(&w->lock);
            continue;
        }
        if (!rollout_name(w, name, nn))
            continue;
        stat_rec *recs = grow(t->recs, &t->cap, t->count, sizeof(stat_rec), 1024);
        if (recs == NULL) {
            walk_fail(w);
            break;
        }
        t->recs = recs;
        stat_rec *r = &t->recs[t->count];
        r->path = joined(folder, fn, name, nn, &r->len);
        if (r->path == NULL) {
            walk_fail(w);
            break;
        }
        struct stat st;
        if (fstatat(fd, name, &st, 0) == 0) { /* following links, as os.stat does */
            r->n[0] = (int64_t)st.st_dev;
            r->n[1] = (int64_t)st.st_ino;
            r->n[2] = (int64_t)st.st_size;
            r->n[3] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            r->n[4] = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
            r->n[5] = (int64_t)st.st_mode;
        } else {
            r->n[0] = -1;
            r->n[1] = errno;
            r->n[2] = r->n[3] = r->n[4] = r->n[5] = 0;
        }
        t->count++;
    }
    closedir(dir);
    if (t->count == start)
        return;
    /* sorted here, in parallel, and only among the folder's own names: one sort of every path at the
     * end, comparing long shared prefixes on one thread, was a sixth of the walk's time at 50,000 */
    qsort(t->recs + start, t->count - start, sizeof(stat_rec), by_path);
    folder_group *groups = grow(t->groups, &t->group_cap, t->group_n, sizeof(folder_group), 64);
    if (groups == NULL) {
        walk_fail(w);
        return;
    }
    t->groups = groups;
    folder_group *g = &t->groups[t->group_n++];
    g->folder = t->recs[start].path;
    g->fn = fn;
    g->start = start;
    g->n = t->count - start;
    g->owner = t->id;
}

static void *walker_main(void *arg) {
    walker *t = arg;
    walk *w = t->w;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->todo_n == 0 && w->busy > 0 && !w->failed)
            pthread_cond_wait(&w->more, &w->lock);
        if (w->todo_n == 0 || w->failed)
            break;
        folder_item item = w->todo[--w->todo_n];
        w->busy++;
        pthread_mutex_unlock(&w->lock);
        walk_folder(t, item.path, item.len, item.top);
        free(item.path);
        pthread_mutex_lock(&w->lock);
        w->busy--;
    }
    pthread_cond_broadcast(&w->more); /* the end (or a failure): the waiting ones leave too */
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static int by_path(const void *a, const void *b) {
    const stat_rec *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->path, y->path, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* A record as the vector holds it: the path, a NUL, six little-endian int64. */
static size_t rec_size(const stat_rec *r) {
    return r->len + 1 + 48;
}

static void put_numbers(char *out, const stat_rec *r) {
    for (int k = 0; k < 6; k++) {
        uint64_t v = (uint64_t)r->n[k];
        for (int b = 0; b < 8; b++)
            *out++ = (char)((v >> (8 * b)) & 0xff);
    }
}

/* Whether the records, as a vector, are exactly the bytes of `prev`. */
static int same_vector(const stat_rec *recs, size_t count, const char *prev, size_t prev_n) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += rec_size(&recs[i]);
    if (total != prev_n)
        return 0;
    char numbers[48];
    for (size_t i = 0; i < count; i++) {
        const stat_rec *r = &recs[i];
        put_numbers(numbers, r);
        if (memcmp(prev, r->path, r->len) != 0 || prev[r->len] != 0 || memcmp(prev + r->len + 1, numbers, 48) != 0)
            return 0;
        prev += rec_size(r);
    }
    return 1;
}

static int by_folder(const void *a, const void *b) {
    const folder_group *x = a, *y = b;
    size_t n = x->fn < y->fn ? x->fn : y->fn;
    int c = memcmp(x->folder, y->folder, n);
    return c ? c : (x->fn > y->fn) - (x->fn < y->fn);
}

/* tree_stats(roots, prefix, suffixes, horizon_ns, previous=None) -> (count, blob, racy)
 *
 * blob: for every rollout, folder by folder in byte order of the folder's path and within a folder in
 * byte order of name, the path, a NUL and six little-endian int64 (dev, inode, size, mtime_ns,
 * ctime_ns, mode; -1, errno and zeros when its stat failed). racy: the paths whose mtime or ctime is
 * at or after horizon_ns, in the same order. blob is None when it would equal `previous` (a vector
 * an earlier call returned): comparing in place costs a few ms where making and hashing a new blob of
 * 7.7 MB at 50,000 rollouts cost ~15 ms, most of it the page faults of fresh memory.
 */
static PyObject *tree_stats(PyObject *self, PyObject *args) {
    PyObject *roots, *suffixes;
    const char *prefix;
    Py_ssize_t prefix_n;
    long long horizon;
    PyObject *previous = Py_None;
    if (!PyArg_ParseTuple(args, "O!y#O!L|O", &PyList_Type, &roots, &prefix, &prefix_n, &PyTuple_Type, &suffixes,
                          &horizon, &previous))
        return NULL;
    Py_ssize_t ns = PyTuple_GET_SIZE(suffixes);
    if (ns > 8) {
        PyErr_SetString(PyExc_ValueError, "at most 8 suffixes");
        return NULL;
    }
    const char *suffix[8];
    Py_ssize_t suffix_n[8];
    for (Py_ssize_t i = 0; i < ns; i++) {
        PyObject *suf = PyTuple_GET_ITEM(suffixes, i);
        if (!PyBytes_Check(suf)) {
            PyErr_SetString(PyExc_TypeError, "suffixes must be bytes");
            return NULL;
        }
        suffix[i] = PyBytes_AS_STRING(suf);
        suffix_n[i] = PyBytes_GET_SIZE(suf);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(roots); i++)
        if (!PyBytes_Check(PyList_GET_ITEM(roots, i))) {
            PyErr_SetString(PyExc_TypeError, "roots must be bytes");
            return NULL;
        }
    Py_buffer prev = {0};
    if (previous != Py_None && PyObject_GetBuffer(previous, &prev, PyBUF_SIMPLE) < 0)
        return NULL;
    int same = 0;
    walk w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.more, NULL);
    w.prefix = prefix;
    w.prefix_n = prefix_n;
    w.suffix = suffix;
    w.suffix_n = suffix_n;
    w.suffixes = ns;
    for (Py_ssize_t i = PyList_GET_SIZE(roots) - 1; i >= 0 && !w.failed; i--) {
        PyObject *root = PyList_GET_ITEM(roots, i);
        size_t n = (size_t)PyBytes_GET_SIZE(root);
        char *copy = malloc(n + 1);
        if (copy != NULL)
            memcpy(copy, PyBytes_AS_STRING(root), n + 1);
        if (copy == NULL || push_folder(&w, copy, n, 1) < 0) {
            free(copy);
            w.failed = 1;
        }
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = cpus < 1 ? 1 : cpus > 4 ? 4 : (int)cpus;
    walker t[4];
    pthread_t ids[4];
    int started = 0;
    size_t count = 0;
    stat_rec *recs = NULL;
    size_t group_n = 0;
    folder_group *groups = NULL;
    for (int i = 0; i < 4; i++) {
        memset(&t[i], 0, sizeof(walker));
        t[i].w = &w;
        t[i].id = i;
    }
    Py_BEGIN_ALLOW_THREADS
    for (int i = 1; i < n_threads; i++) { /* this thread is the first walker */
        if (pthread_create(&ids[i], NULL, walker_main, &t[i]) != 0)
            break;
        started = i;
    }
    walker_main(&t[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(ids[i], NULL);
    for (int i = 0; i < 4; i++) {
        count += t[i].count;
        group_n += t[i].group_n;
    }
    if (!w.failed) {
        recs = malloc((count ? count : 1) * sizeof(stat_rec));
        groups = malloc((group_n ? group_n : 1) * sizeof(folder_group));
    }
    if (recs != NULL && groups != NULL) {
        size_t at = 0;
        for (int i = 0; i < 4; i++) {
            if (t[i].group_n)
                memcpy(groups + at, t[i].groups, t[i].group_n * sizeof(folder_group));
            at += t[i].group_n;
        }
        qsort(groups, group_n, sizeof(folder_group), by_folder);
        at = 0;
        for (size_t g = 0; g < group_n; g++) {
            memcpy(recs + at, t[groups[g].owner].recs + groups[g].start, groups[g].n * sizeof(stat_rec));
            at += groups[g].n;
        }
    } else {
        free(recs);
        recs = NULL;
    }
    free(groups);
    if (recs != NULL && prev.buf != NULL)
        same = same_vector(recs, count, prev.buf, (size_t)prev.len);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL, *blob = NULL, *racy = NULL;
    if (recs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0;
    if (!same)
        for (size_t i = 0; i < count; i++)
            total += rec_size(&recs[i]);
    blob = same ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    racy = PyList_New(0);
    if (blob == NULL || racy == NULL)
        goto done;
    char *out = same ? NULL : PyBytes_AS_STRING(blob);
    for (size_t i = 0; i < count; i++) {
        stat_rec *r = &recs[i];
        if (out != NULL) {
            memcpy(out, r->path, r->len);
            out[r->len] = 0;
            put_numbers(out + r->len + 1, r);
            out += rec_size(r);
        }
        if (r->n[0] != -1 && (r->n[3] >= horizon || r->n[4] >= horizon)) {
            PyObject *p = PyUnicode_DecodeFSDefaultAndSize(r->path, (Py_ssize_t)r->len);
            if (p == NULL || PyList_Append(racy, p) < 0) {
                Py_XDECREF(p);
                goto done;
            }
            Py_DECREF(p);
        }
    }
    result = Py_BuildValue("nOO", (Py_ssize_t)count, blob, racy);
done:
    Py_XDECREF(blob);
    Py_XDECREF(racy);
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < t[i].count; k++)
            free(t[i].recs[k].path);
        free(t[i].recs);
        free(t[i].groups);
    }
    free(recs);
    for (size_t k = 0; k < w.todo_n; k++)
        free(w.todo[k].path);
    free(w.todo);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.more);
    if (prev.buf != NULL)
        PyBuffer_Release(&prev);
    return result;
}

static int64_t get_i64(const unsigned char *p) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = (v << 8) | p[b];
    return (int64_t)v;
}

static long long floor_div(long long a, long long b) {
    long long q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* os.stat's float time: seconds plus nanoseconds, as CPython's fill_time computes it */
static PyObject *float_time(long long ns) {
    long long sec = floor_div(ns, 1000000000LL);
    return PyFloat_FromDouble((double)sec + (double)(ns - sec * 1000000000LL) * 1e-9);
}

/* vector_stats(vector) -> {path: os.stat_result or None}
 *
 * A tree_stats vector read back: each path with an os.stat_result of its numbers (mode, inode, dev,
 * size, and the mtime and ctime, whose values also stand for the atime; nlink, uid and gid are 0 and
 * the rest None), None where the stat failed. Stops at the first record that is not whole. */
static PyObject *vector_stats(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    PyObject *out = NULL, *stat_type = NULL, *posix = PyImport_ImportModule("posix");
    if (posix != NULL) {
        stat_type = PyObject_GetAttrString(posix, "stat_result");
        Py_DECREF(posix);
    }
    PyObject *n_obj = stat_type == NULL ? NULL : PyObject_GetAttrString(stat_type, "n_fields");
    Py_ssize_t n_fields = n_obj == NULL ? -1 : PyLong_AsSsize_t(n_obj);
    Py_XDECREF(n_obj);
    if (n_fields < 16 || !PyType_Check(stat_type)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "os.stat_result is not a stat result of 16 fields or more");
        goto error;
    }
    out = PyDict_New();
    if (out == NULL)
        goto error;
    const unsigned char *p = view.buf, *end = p + view.len;
    while (p < end) {
        const unsigned char *nul = memchr(p, 0, (size_t)(end - p));
        if (nul == NULL || end - nul < 49)
            break;
        int64_t n[6];
        for (int k = 0; k < 6; k++)
            n[k] = get_i64(nul + 1 + 8 * k);
        PyObject *path = PyUnicode_DecodeFSDefaultAndSize((const char *)p, (Py_ssize_t)(nul - p));
        if (path == NULL)
            goto error;
        PyObject *st;
        if (n[0] == -1) {
            st = Py_NewRef(Py_None);
        } else {
            st = PyStructSequence_New((PyTypeObject *)stat_type);
            if (st != NULL) {
                long long mtime = n[3], ctime = n[4];
                PyObject *v[16] = {
                    PyLong_FromLongLong(n[5]), PyLong_FromUnsignedLongLong((uint64_t)n[1]),
                    PyLong_FromUnsignedLongLong((uint64_t)n[0]), PyLong_FromLong(0), PyLong_FromLong(0),
                    PyLong_FromLong(0), PyLong_FromLongLong(n[2]), PyLong_FromLongLong(floor_div(mtime, 1000000000LL)),
                    PyLong_FromLongLong(floor_div(mtime, 1000000000LL)), PyLong_FromLongLong(floor_div(ctime, 1000000000LL)),
                    float_time(mtime), float_time(mtime), float_time(ctime),
                    PyLong_FromLongLong(mtime), PyLong_FromLongLong(mtime), PyLong_FromLongLong(ctime)};
                int ok = 1;
                for (int k = 0; k < 16; k++) {
                    if (v[k] == NULL) {
                        ok = 0;
                        v[k] = Py_NewRef(Py_None);
                    }
                    PyStructSequence_SetItem(st, k, v[k]); /* steals */
                }
                for (Py_ssize_t k = 16; k < n_fields; k++)
                    PyStructSequence_SetItem(st, k, Py_NewRef(Py_None));
                if (!ok)
                    Py_CLEAR(st);
            }
        }
        if (st == NULL || PyDict_SetItem(out, path, st) < 0) {
            Py_DECREF(path);
            Py_XDECREF(st);
            goto error;
        }
        Py_DECREF(path);
        Py_DECREF(st);
        p = nul + 49;
    }
    PyBuffer_Release(&view);
    Py_DECREF(stat_type);
    return out;
error:
    PyBuffer_Release(&view);
    Py_XDECREF(stat_type);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fold_records", fold_records, METH_VARARGS,
     "fold_records(chunk, pos, bound, last_nl, has_records, model, buckets, seen, ids, sums)"
     " -> (pos, has_records, duplicates)"},
    {"vector_stats", vector_stats, METH_VARARGS, "vector_stats(vector) -> {path: os.stat_result or None}"},
    {"tree_stats", tree_stats, METH_VARARGS, "tree_stats(roots, prefix, suffixes, horizon_ns, previous=None) -> (count, blob or None, racy)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastscan(void) { return PyModule_Create(&module); }
