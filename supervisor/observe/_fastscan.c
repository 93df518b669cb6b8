/* The usage scan's per-response loop, compiled: an optional speed-up of scan.fold_chunk, never a second
 * definition of what a rollout line means.
 *
 * fold_records walks `"type":"t` markers exactly as scan.fold_chunk does and folds the lines it can
 * prove it understands: token_usage_record lines in the strict shape of scan_shapes.RecordLine, compact
 * JSON with plain ASCII strings and integers of at most 18 digits. At anything else (another marker
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
#include <string.h>

static const char T_MARK[] = "\"type\":\"t";                        /* 9 bytes */
static const char REC_MARK[] = "\"type\":\"token_usage_record\"";
static const char TC_MARK[] = "\"type\":\"token_count\"";
static const char CTX_MARK[] = "\"type\":\"turn_context\"";
static const char SET_MARK[] = "\"type\":\"thread_settings_applied\"";

/* The first `"type":"t` in h[0, n): SSE2 compares the first and last bytes of 16 places at once and
 * memcmp confirms (about 4x glibc's memmem on rollouts); memmem where SSE2 is not available. */
#if defined(__SSE2__)
#include <emmintrin.h>
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

enum { K_NONE = -1, K_REC = 0, K_TC = 1, K_OTHER = 2 };

typedef struct {
    const char *p;
    const char *end;
} cursor;

/* A plain JSON string: ASCII 0x20..0x7e without a quote or backslash. Sets *s, *n; 0 when not plain. */
static int plain_string(cursor *c, const char **s, Py_ssize_t *n) {
    const char *p = c->p;
    if (p >= c->end || *p != '"')
        return 0;
    p++;
    const char *start = p;
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
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
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
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    r->has_payload = 1;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
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
    if (c.p >= c.end || *c.p != '{')
        return 0;
    c.p++;
    unsigned seen = 0;
    if (c.p < c.end && *c.p == '}')
        return 0; /* an empty object is no record */
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
 *   -> (pos, has_records, duplicates)
 *
 * Folds from marker search position `pos` (scan.fold_chunk's `pos` before its `find`) while markers lie
 * before `bound` (the next session_meta line's start) and end by `last_nl`. Returns the position of the
 * marker the Python walk must handle next, or -1 when none is left.
 */
static PyObject *fold_records(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, bound, last_nl;
    int has_records;
    PyObject *model, *buckets, *seen, *ids, *sums;
    if (!PyArg_ParseTuple(args, "y*nnnpOO!O!O!O!", &view, &pos, &bound, &last_nl, &has_records, &model,
                          &PyDict_Type, &buckets, &PySet_Type, &seen, &PyList_Type, &ids, &PyDict_Type, &sums))
        return NULL;
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
            kind = starts(buf, len, at, CTX_MARK) ? K_OTHER : K_NONE;
        else if (ch == 'h')
            kind = starts(buf, len, at, SET_MARK) ? K_OTHER : K_NONE;
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
    return Py_BuildValue("nin", stop, has_records, duplicates);
error:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fold_records", fold_records, METH_VARARGS,
     "fold_records(chunk, pos, bound, last_nl, has_records, model, buckets, seen, ids, sums)"
     " -> (pos, has_records, duplicates)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastscan(void) { return PyModule_Create(&module); }
