/*
 * Optional C accelerator for OrderBook: applies one side's [price, size] levels.
 *
 * Why: in CPython the per-level loop (key lookup, size parse, dict set/pop, best compare)
 * costs more than orjson's parse of the same bytes. Here it is a few tens of ns. It has
 * exactly the semantics of OrderBook._apply_side_py (the pure-Python fallback, used when
 * this module is not built or BOOKENGINE_PURE=1), except that sizes are validated
 * strictly as plain decimals here; see bookengine/book.py for the key representation.
 *
 * apply_levels(side, levels, best, is_bid, decimals, price_parts) -> new best key
 *   side        dict int key -> float size (key = price * 10**decimals, exact)
 *   levels      list of [price, size]
 *   best        current best key (int) or -inf/+inf for an empty side
 *   price_parts Python fallback: text -> (mantissa, exp10) or raises LevelError; used
 *               for whatever this parser refuses, so errors read the same
 * Raises NeedsDecimals(n) if a price has more decimals than `decimals` (the caller
 * rescales and re-applies: applying a level twice is harmless, sizes are totals), and
 * ValueError/TypeError on a malformed level (the side may then be half updated).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static PyObject *NeedsDecimals;

/* Longer texts are not read here (the exponent is an int; no real price or size is near). */
#define MAX_DECIMAL_TEXT 4096

static const double POW10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * Split a plain decimal ("123", "123.45": the grammar of book._DECIMAL_RE) into
 * mantissa * 10**exp10 with at most 15 significant digits, counted as book._parts
 * counts them. Returns 0 on success, 1 if it is not a plain decimal, 2 if it has more
 * than 15 significant digits.
 */
static int
decimal_parts(const char *s, Py_ssize_t n, uint64_t *mantissa, int *exp10)
{
    Py_ssize_t i, dot = -1, first = -1, last = -1;
    if (n == 0 || n > MAX_DECIMAL_TEXT)
        return 1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (c != '0') {
                if (first < 0)
                    first = i;
                last = i;
            }
        }
        else if (c == '.' && dot < 0 && i > 0 && i < n - 1) {
            dot = i;
        }
        else {
            return 1;
        }
    }
    if (first < 0) { /* all zeros */
        *mantissa = 0;
        *exp10 = 0;
        return 0;
    }
    /* From the first non-zero digit to the last digit, or to the last non-zero digit
       when there is a fractional part (trailing zeros after a point say nothing). */
    Py_ssize_t end = dot >= 0 ? last : n - 1;
    Py_ssize_t count = end - first + 1 - (dot > first && dot < end ? 1 : 0);
    if (count > 15)
        return 2;
    uint64_t m = 0;
    for (i = first; i <= end; i++)
        if (i != dot)
            m = m * 10 + (uint64_t)(s[i] - '0');
    Py_ssize_t point = dot >= 0 ? dot : n; /* digits before `point` are integral */
    *mantissa = m;
    *exp10 = (int)(end < point ? point - end - 1 : -(end - point));
    return 0;
}

/*
 * A plain decimal (book._DECIMAL_RE's grammar) as the nearest double. Returns 0, or 1 if
 * `s` is not a plain decimal (no exception is set either way).
 */
static int
decimal_to_double(const char *s, Py_ssize_t n, double *out)
{
    uint64_t m;
    int e, rc;
    if (n == 1 && s[0] == '0') {
        *out = 0.0;
        return 0;
    }
    rc = decimal_parts(s, n, &m, &e);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        /* Clinger's fast path: exact mantissa, exact power of ten, one rounding. */
        if (e == 0) {
            *out = (double)m;
            return 0;
        }
        if (e < 0 && e >= -22) {
            *out = (double)m / POW10[-e];
            return 0;
        }
    }
    /* Long or large decimals: the correctly rounded slow path. The text is a plain
       decimal, so strtod stops exactly at its end; copy it out to NUL-terminate it. */
    char text[MAX_DECIMAL_TEXT + 1]; /* decimal_parts refused anything longer */
    memcpy(text, s, n);
    text[n] = '\0';
    char *stop = NULL;
    double v = PyOS_string_to_double(text, &stop, NULL);
    int ok = !(v == -1.0 && PyErr_Occurred()) && stop == text + n && isfinite(v);
    if (!ok) {
        PyErr_Clear();
        return 1;
    }
    if (v == 0.0) { /* a non-zero decimal below a double's range is not zero: refuse it */
        for (Py_ssize_t i = 0; i < n; i++)
            if (s[i] >= '1' && s[i] <= '9')
                return 1;
    }
    *out = v;
    return 0;
}

static int
parse_size(PyObject *obj, double *out)
{
    if (PyUnicode_CheckExact(obj)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL)
            return -1;
        if (decimal_to_double(s, n, out) == 0)
            return 0;
        PyErr_Format(PyExc_ValueError,
                     "size must be a non-negative decimal number, got %R", obj);
        return -1;
    }
    if (PyFloat_CheckExact(obj) || (PyLong_Check(obj) && !PyBool_Check(obj))) {
        double v = PyFloat_AsDouble(obj);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        if (!(v >= 0.0 && isfinite(v))) {
            PyErr_Format(PyExc_ValueError,
                         "size must be a finite non-negative number, got %R", obj);
            return -1;
        }
        *out = v;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "size must be a string, got %.50s",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* mantissa * 10**shift as an int64 key: 0, or 1 if it does not fit. */
static int
scaled_key(uint64_t mantissa, int shift, int64_t *key)
{
    for (; shift > 0; shift--) {
        if (mantissa > (uint64_t)INT64_MAX / 10)
            return 1;
        mantissa *= 10;
    }
    if (mantissa > (uint64_t)INT64_MAX)
        return 1;
    *key = (int64_t)mantissa;
    return 0;
}

/* The integer key of a price at `decimals`; 0 on success, -1 with an error set. */
static int
price_key(PyObject *price, int decimals, PyObject *price_parts, int64_t *key)
{
    uint64_t m;
    int e;
    int parsed = 0;
    if (PyUnicode_CheckExact(price)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(price, &n);
        if (s == NULL)
            return -1;
        parsed = decimal_parts(s, n, &m, &e) == 0;
    }
    if (!parsed) { /* let Python parse it, or say why not */
        PyObject *parts = PyObject_CallOneArg(price_parts, price);
        if (parts == NULL)
            return -1;
        if (!PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != 2) {
            Py_DECREF(parts);
            PyErr_SetString(PyExc_TypeError, "price_parts must return (mantissa, exp10)");
            return -1;
        }
        m = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(parts, 0));
        e = (int)PyLong_AsLong(PyTuple_GET_ITEM(parts, 1));
        Py_DECREF(parts);
        if (PyErr_Occurred())
            return -1;
    }
    int shift = e + decimals;
    if (shift < 0) {
        PyObject *arg = PyLong_FromLong(-e);
        if (arg != NULL) {
            PyErr_SetObject(NeedsDecimals, arg);
            Py_DECREF(arg);
        }
        return -1;
    }
    if (scaled_key(m, shift, key)) {
        PyErr_Format(PyExc_ValueError,
                     "price %R does not fit this book's precision (%d decimals)", price,
                     decimals);
        return -1;
    }
    return 0;
}

/* Remove `key` from `side` if present: 1 removed, 0 absent, -1 error. One lookup
   (PyDict_Contains + PyDict_DelItem was two; deletions are ~40% of levels). */
static int
dict_pop(PyObject *side, PyObject *key)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyDict_Pop(side, key, NULL);
#else
    PyObject *old = _PyDict_Pop(side, key, Py_None);
    if (old == NULL)
        return -1;
    int removed = old != Py_None;
    Py_DECREF(old);
    return removed;
#endif
}

/* The current best key of a side: an int, or -inf/+inf (a float) for an empty side. */
static int
best_from_object(PyObject *best_obj, int is_bid, int64_t *best)
{
    if (!PyLong_CheckExact(best_obj)) {
        *best = is_bid ? INT64_MIN : INT64_MAX;
        return 0;
    }
    *best = PyLong_AsLongLong(best_obj);
    return *best == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
best_to_object(int64_t best, int is_bid)
{
    if (best == (is_bid ? INT64_MIN : INT64_MAX))
        return PyFloat_FromDouble(is_bid ? -INFINITY : INFINITY);
    return PyLong_FromLongLong(best);
}

/* Set (amount > 0) or delete (amount == 0) the level at key `k` of `side`, keeping
   *best; sets *lost_best when the best level itself is deleted. 0, or -1 on error. */
static int
side_update(PyObject *side, int64_t k, double amount, int is_bid, int64_t *best,
            int *lost_best)
{
    PyObject *key = PyLong_FromLongLong(k);
    if (key == NULL)
        return -1;
    if (amount > 0.0) {
        PyObject *value = PyFloat_FromDouble(amount);
        if (value == NULL || PyDict_SetItem(side, key, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(value);
        if (is_bid ? k > *best : k < *best)
            *best = k;
    }
    else {
        int present = dict_pop(side, key);
        if (present < 0) {
            Py_DECREF(key);
            return -1;
        }
        if (present && k == *best)
            *lost_best = 1;
    }
    Py_DECREF(key);
    return 0;
}

/* The best key of a side whose best level was deleted: one pass over <= ~50 keys. */
static int
side_rescan(PyObject *side, int is_bid, int64_t *best)
{
    Py_ssize_t pos = 0;
    PyObject *kobj, *vobj;
    *best = is_bid ? INT64_MIN : INT64_MAX;
    while (PyDict_Next(side, &pos, &kobj, &vobj)) {
        int64_t d = PyLong_AsLongLong(kobj);
        if (d == -1 && PyErr_Occurred())
            return -1;
        if (is_bid ? d > *best : d < *best)
            *best = d;
    }
    return 0;
}

static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "apply_levels takes 6 arguments");
        return NULL;
    }
    PyObject *side = args[0], *levels = args[1];
    PyObject *price_parts = args[5];
    int is_bid = PyObject_IsTrue(args[3]);
    if (is_bid < 0)
        return NULL;
    long decimals = PyLong_AsLong(args[4]);
    if (decimals == -1 && PyErr_Occurred())
        return NULL;
    if (!PyDict_CheckExact(side)) {
        PyErr_SetString(PyExc_TypeError, "side must be a dict");
        return NULL;
    }
    if (!PyList_Check(levels)) {
        PyErr_Format(PyExc_ValueError, "levels must be a list, got %.50s",
                     Py_TYPE(levels)->tp_name);
        return NULL;
    }
    int64_t best;
    if (best_from_object(args[2], is_bid, &best) < 0)
        return NULL;
    int lost_best = 0;
    Py_INCREF(levels); /* price_parts runs Python code */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(levels); i++) {
        PyObject *level = PyList_GET_ITEM(levels, i);
        PyObject *price, *size;
        if (PyList_CheckExact(level) && PyList_GET_SIZE(level) == 2) {
            price = PyList_GET_ITEM(level, 0);
            size = PyList_GET_ITEM(level, 1);
        }
        else if (PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2) {
            price = PyTuple_GET_ITEM(level, 0);
            size = PyTuple_GET_ITEM(level, 1);
        }
        else {
            PyErr_Format(PyExc_ValueError, "each level must be a [price, size] pair, got %R",
                         level);
            goto error;
        }
        Py_INCREF(level);
        int64_t k;
        double amount;
        if (price_key(price, (int)decimals, price_parts, &k) < 0 ||
            parse_size(size, &amount) < 0) {
            Py_DECREF(level);
            goto error;
        }
        Py_DECREF(level);
        if (side_update(side, k, amount, is_bid, &best, &lost_best) < 0)
            goto error;
    }
    Py_DECREF(levels);
    if (lost_best && side_rescan(side, is_bid, &best) < 0)
        return NULL;
    return best_to_object(best, is_bid);

error:
    Py_DECREF(levels);
    return NULL;
}

/*
 * levels(side, descending, n, scale) -> [(price, size), ...] best first
 *
 * The depth query: sort the int64 keys of one side (<= ~50) and build the top n
 * (price, size) tuples, price = key / scale. For keys and scale that are exact doubles
 * (|key| < 2**53, scale = 10**D with D <= 18) that is one IEEE division, correctly
 * rounded, which is exactly what Python's int / int gives; otherwise Python's division
 * is called. n < 0: every level. A key beyond int64 raises OverflowError.
 */
typedef struct {
    int64_t key;
    PyObject *kobj, *size; /* borrowed from the dict */
} SideEntry;

static PyObject *
levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "levels takes 4 arguments");
        return NULL;
    }
    PyObject *side = args[0], *scale_obj = args[3];
    int descending = PyObject_IsTrue(args[1]);
    if (descending < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (!PyDict_CheckExact(side) || !PyLong_CheckExact(scale_obj)) {
        PyErr_SetString(PyExc_TypeError, "levels(dict, bool, int, int)");
        return NULL;
    }
    int overflow = 0;
    long long scale_ll = PyLong_AsLongLongAndOverflow(scale_obj, &overflow);
    if (scale_ll == -1 && PyErr_Occurred())
        return NULL;
    /* The division below is Python's only if the scale is an exact double (10**D is,
       up to 10**18, the largest that fits int64). */
    double scale = (double)scale_ll;
    int exact_scale = !overflow && scale_ll > 0 && scale_ll <= 1000000000000000000LL &&
                      (long long)scale == scale_ll;

    Py_ssize_t count = PyDict_GET_SIZE(side);
    if (n < 0 || n > count)
        n = count;
    SideEntry small[128];
    SideEntry *entries = n <= 128 ? small : PyMem_Malloc(n * sizeof(SideEntry));
    if (entries == NULL)
        return PyErr_NoMemory();
    Py_ssize_t pos = 0, i = 0, held = 0;
    PyObject *kobj, *vobj;
    PyObject *result = NULL;
    /* Keep the best n seen so far, sorted, by insertion: a side holds ~50 levels and
       most keys lose to the current n-th at once (qsort's callbacks cost more). */
    Py_ssize_t filled = 0;
    while (n > 0 && PyDict_Next(side, &pos, &kobj, &vobj)) {
        /* Keys are int64 (OrderBook keeps them so): anything else raises. */
        int64_t key = PyLong_AsLongLong(kobj);
        if (key == -1 && PyErr_Occurred())
            goto done;
        if (filled == n) {
            if (descending ? key <= entries[n - 1].key : key >= entries[n - 1].key)
                continue;
            filled--; /* the n-th drops out */
        }
        for (i = filled; i > 0 && (descending ? key > entries[i - 1].key
                                              : key < entries[i - 1].key); i--)
            entries[i] = entries[i - 1];
        entries[i].key = key;
        entries[i].kobj = kobj;
        entries[i].size = vobj;
        filled++;
    }
    /* Nothing above ran Python code; the allocations below may (a GC pass), so hold
       the selected keys and sizes. */
    for (i = 0; i < filled; i++) {
        Py_INCREF(entries[i].kobj);
        Py_INCREF(entries[i].size);
    }
    held = filled;
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        SideEntry *e = &entries[i];
        PyObject *price;
        if (exact_scale && e->key < (1LL << 53) && e->key > -(1LL << 53))
            price = PyFloat_FromDouble((double)e->key / scale);
        else
            price = PyNumber_TrueDivide(e->kobj, scale_obj);
        if (price == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyObject *pair = PyTuple_Pack(2, price, e->size);
        Py_DECREF(price);
        if (pair == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, pair);
    }
done:
    for (i = 0; i < held; i++) {
        Py_DECREF(entries[i].kobj);
        Py_DECREF(entries[i].size);
    }
    if (entries != small)
        PyMem_Free(entries);
    return result;
}

/*
 * Scanner: the in-sequence delta without orjson.
 *
 * Why: orjson.loads builds a dict, two lists, a list and two strings per level (~55
 * objects for a typical delta) that the book then converts and drops; that allocation
 * is most of its cost. A delta has a fixed shape, so the scanner reads the bytes once,
 * validates them, and keeps the levels as C numbers until they are applied: no object
 * per level but the dict's own key and size.
 *
 * It accepts a strict subset of JSON: exactly the keys of a BTSE book delta
 * ({"topic", "data": {"bids", "asks", "seqNum", "prevSeqNum", "type": "delta",
 * "symbol"[, "timestamp"]}}, any order, any JSON whitespace), strings without escapes or
 * non-ASCII bytes, integers of up to 18 digits, levels as ["price", "size"] plain
 * decimals (prices of <= 15 significant digits). Anything else (an unknown key, a
 * duplicate key, a snapshot, bad JSON, a malformed level) makes scan() return None and
 * the caller takes the general path (orjson and the checks that explain what is wrong),
 * so the scanner never decides that a frame is bad.
 *
 * scan(raw) -> None | (topic, symbol, seqNum, prevSeqNum, timestamp or None)
 * apply(bids, asks, best_bid, best_ask, decimals) -> None | (best_bid, best_ask)
 *     applies the levels of the last scanned frame (bids first), as apply_levels would.
 *     None, with nothing changed, if a price needs more decimals than `decimals` or
 *     does not fit a key at that scale: the general path then rescales or reports.
 */

typedef struct {
    uint64_t mantissa; /* price = mantissa * 10**exp10, exactly */
    int exp10;
    double size;
    int64_t key;
} RawLevel;

typedef struct {
    RawLevel *items;
    Py_ssize_t count, capacity;
} RawLevels;

#define STRING_CACHE 64 /* direct-mapped: topic and symbol strings repeat */
#define CACHED_STRING_MAX 80 /* longer topic/symbol texts are decoded, never cached */

typedef struct {
    PyObject_HEAD
    RawLevels bids, asks;
    int decimals; /* the most decimals among the scanned prices */
    int ready;    /* a scanned frame waits to be applied */
    PyObject *strings[2][STRING_CACHE]; /* topics, symbols */
} Scanner;

typedef struct {
    const char *s;
    Py_ssize_t i, n;
} Cursor;

static inline void
skip_ws(Cursor *c)
{
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t')
            break;
        c->i++;
    }
}

static inline int
accept(Cursor *c, char ch)
{
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

/* A string with no escapes and only printable ASCII: its content is s[*lo:*hi]. */
static int
plain_string(Cursor *c, Py_ssize_t *lo, Py_ssize_t *hi)
{
    if (!accept(c, '"'))
        return 0;
    Py_ssize_t j = c->i;
    const unsigned char *s = (const unsigned char *)c->s;
    while (j < c->n && s[j] != '"') {
        if (s[j] < 0x20 || s[j] >= 0x80 || s[j] == '\\')
            return 0;
        j++;
    }
    if (j >= c->n)
        return 0;
    *lo = c->i;
    *hi = j;
    c->i = j + 1;
    return 1;
}

/* A JSON integer of at most 18 digits (so it fits int64), with no fraction or exponent. */
static int
plain_int(Cursor *c, int64_t *out)
{
    skip_ws(c);
    Py_ssize_t j = c->i;
    int negative = j < c->n && c->s[j] == '-';
    j += negative;
    Py_ssize_t first = j;
    uint64_t v = 0;
    while (j < c->n && c->s[j] >= '0' && c->s[j] <= '9') {
        if (j - first >= 18)
            return 0;
        v = v * 10 + (uint64_t)(c->s[j] - '0');
        j++;
    }
    if (j == first || (c->s[first] == '0' && j - first > 1))
        return 0; /* no digits, or a leading zero (not JSON) */
    if (j < c->n && (c->s[j] == '.' || c->s[j] == 'e' || c->s[j] == 'E'))
        return 0;
    *out = negative ? -(int64_t)v : (int64_t)v;
    c->i = j;
    return 1;
}

static int
key_is(Cursor *c, Py_ssize_t lo, Py_ssize_t hi, const char *name, Py_ssize_t len)
{
    return hi - lo == len && memcmp(c->s + lo, name, len) == 0;
}

/* [["price", "size"], ...] into `out`. 1 if it conforms, 0 if not, -1 on MemoryError. */
static int
scan_levels(Scanner *self, Cursor *c, RawLevels *out)
{
    out->count = 0;
    if (!accept(c, '['))
        return 0;
    if (accept(c, ']'))
        return 1;
    do {
        Py_ssize_t plo, phi, slo, shi;
        if (!accept(c, '[') || !plain_string(c, &plo, &phi) || !accept(c, ',') ||
            !plain_string(c, &slo, &shi) || !accept(c, ']'))
            return 0;
        if (out->count == out->capacity) {
            Py_ssize_t capacity = out->capacity ? 2 * out->capacity : 64;
            RawLevel *items = PyMem_Realloc(out->items, capacity * sizeof(RawLevel));
            if (items == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            out->items = items;
            out->capacity = capacity;
        }
        RawLevel *level = &out->items[out->count];
        if (decimal_parts(c->s + plo, phi - plo, &level->mantissa, &level->exp10) != 0 ||
            decimal_to_double(c->s + slo, shi - slo, &level->size) != 0)
            return 0;
        if (-level->exp10 > self->decimals)
            self->decimals = -level->exp10;
        out->count++;
    } while (accept(c, ','));
    return accept(c, ']');
}

/* The str for s[lo:hi] (ASCII), reused from cache `table` while the text repeats. */
static PyObject *
cached_string(Scanner *self, int table, const char *s, Py_ssize_t lo, Py_ssize_t hi)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = lo; i < hi; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    h ^= h >> 16; /* FNV's low bits alone mix poorly */
    PyObject **slot = &self->strings[table][h % STRING_CACHE];
    if (*slot != NULL && PyUnicode_GET_LENGTH(*slot) == hi - lo &&
        memcmp(PyUnicode_DATA(*slot), s + lo, hi - lo) == 0)
        return Py_NewRef(*slot);
    PyObject *text = PyUnicode_DecodeASCII(s + lo, hi - lo, NULL);
    if (text != NULL && hi - lo <= CACHED_STRING_MAX) /* a hostile megabyte is not kept */
        Py_XSETREF(*slot, Py_NewRef(text));
    return text;
}

enum {
    SEEN_TOPIC = 1, SEEN_DATA = 2, SEEN_BIDS = 4, SEEN_ASKS = 8, SEEN_SEQ = 16,
    SEEN_PREV = 32, SEEN_TYPE = 64, SEEN_SYMBOL = 128, SEEN_TIMESTAMP = 256,
};
#define SEEN_REQUIRED 255 /* all but the timestamp */

typedef struct {
    Py_ssize_t topic_lo, topic_hi, symbol_lo, symbol_hi;
    int64_t seq, prev, timestamp;
    int seen;
} Head;

#define ONCE(flag)                   \
    if (head->seen & (flag))         \
        return 0;                    \
    head->seen |= (flag)

/* The members of "data". 1 if they conform, 0 if not, -1 on MemoryError. */
static int
scan_data(Scanner *self, Cursor *c, Head *head)
{
    if (!accept(c, '{'))
        return 0;
    do {
        Py_ssize_t lo, hi, vlo, vhi;
        if (!plain_string(c, &lo, &hi) || !accept(c, ':'))
            return 0;
        int ok;
        if (key_is(c, lo, hi, "bids", 4)) {
            ONCE(SEEN_BIDS);
            ok = scan_levels(self, c, &self->bids);
        }
        else if (key_is(c, lo, hi, "asks", 4)) {
            ONCE(SEEN_ASKS);
            ok = scan_levels(self, c, &self->asks);
        }
        else if (key_is(c, lo, hi, "seqNum", 6)) {
            ONCE(SEEN_SEQ);
            ok = plain_int(c, &head->seq);
        }
        else if (key_is(c, lo, hi, "prevSeqNum", 10)) {
            ONCE(SEEN_PREV);
            ok = plain_int(c, &head->prev);
        }
        else if (key_is(c, lo, hi, "timestamp", 9)) {
            ONCE(SEEN_TIMESTAMP);
            ok = plain_int(c, &head->timestamp);
        }
        else if (key_is(c, lo, hi, "type", 4)) {
            ONCE(SEEN_TYPE);
            ok = plain_string(c, &vlo, &vhi) && key_is(c, vlo, vhi, "delta", 5);
        }
        else if (key_is(c, lo, hi, "symbol", 6)) {
            ONCE(SEEN_SYMBOL);
            ok = plain_string(c, &head->symbol_lo, &head->symbol_hi);
        }
        else {
            return 0;
        }
        if (ok != 1)
            return ok;
    } while (accept(c, ','));
    return accept(c, '}');
}

static PyObject *
Scanner_scan(Scanner *self, PyObject *raw)
{
    Py_buffer view = {NULL};
    Cursor c = {NULL, 0, 0};
    self->ready = 0;
    if (PyBytes_CheckExact(raw)) {
        c.s = PyBytes_AS_STRING(raw);
        c.n = PyBytes_GET_SIZE(raw);
    }
    else if (PyUnicode_CheckExact(raw)) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(raw) < 0)
            return NULL;
#endif
        if (!PyUnicode_IS_ASCII(raw))
            Py_RETURN_NONE;
        c.s = (const char *)PyUnicode_DATA(raw);
        c.n = PyUnicode_GET_LENGTH(raw);
    }
    else if (PyByteArray_CheckExact(raw) || PyMemoryView_Check(raw)) { /* as orjson */
        if (PyObject_GetBuffer(raw, &view, PyBUF_CONTIG_RO) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        c.s = view.buf;
        c.n = view.len;
    }
    else {
        Py_RETURN_NONE;
    }
    Head head = {0};
    self->decimals = 0;
    self->bids.count = self->asks.count = 0;
    int ok = accept(&c, '{');
    while (ok == 1) {
        Py_ssize_t lo, hi;
        if (!plain_string(&c, &lo, &hi) || !accept(&c, ':')) {
            ok = 0;
        }
        else if (key_is(&c, lo, hi, "topic", 5) && !(head.seen & SEEN_TOPIC)) {
            head.seen |= SEEN_TOPIC;
            ok = plain_string(&c, &head.topic_lo, &head.topic_hi);
        }
        else if (key_is(&c, lo, hi, "data", 4) && !(head.seen & SEEN_DATA)) {
            head.seen |= SEEN_DATA;
            ok = scan_data(self, &c, &head);
        }
        else {
            ok = 0;
        }
        if (ok == 1 && !accept(&c, ','))
            break;
    }
    if (ok == 1) {
        ok = accept(&c, '}');
        skip_ws(&c);
        ok = ok && c.i == c.n && (head.seen & SEEN_REQUIRED) == SEEN_REQUIRED;
    }
    PyObject *result = NULL;
    if (ok == 1) {
        PyObject *topic = cached_string(self, 0, c.s, head.topic_lo, head.topic_hi);
        PyObject *symbol = topic ? cached_string(self, 1, c.s, head.symbol_lo, head.symbol_hi)
                                 : NULL;
        if (symbol != NULL) {
            if (head.seen & SEEN_TIMESTAMP)
                result = Py_BuildValue("(NNLLL)", topic, symbol, (long long)head.seq,
                                       (long long)head.prev, (long long)head.timestamp);
            else
                result = Py_BuildValue("(NNLLO)", topic, symbol, (long long)head.seq,
                                       (long long)head.prev, Py_None);
            topic = symbol = NULL; /* "N" stole them, even on failure */
            self->ready = result != NULL;
        }
        Py_XDECREF(topic);
    }
    else if (ok == 0) {
        result = Py_NewRef(Py_None);
    }
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* Keys of every scanned level at `decimals`: 0, or 1 if one does not fit. */
static int
compute_keys(RawLevels *levels, int decimals)
{
    for (Py_ssize_t i = 0; i < levels->count; i++) {
        RawLevel *level = &levels->items[i];
        if (scaled_key(level->mantissa, level->exp10 + decimals, &level->key))
            return 1;
    }
    return 0;
}

static int
apply_raw_side(PyObject *side, RawLevels *levels, int is_bid, int64_t *best)
{
    int lost_best = 0;
    for (Py_ssize_t i = 0; i < levels->count; i++) {
        RawLevel *level = &levels->items[i];
        if (side_update(side, level->key, level->size, is_bid, best, &lost_best) < 0)
            return -1;
    }
    return lost_best ? side_rescan(side, is_bid, best) : 0;
}

static PyObject *
Scanner_apply(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "apply takes 5 arguments");
        return NULL;
    }
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "apply() without a frame from scan()");
        return NULL;
    }
    self->ready = 0;
    PyObject *bids = args[0], *asks = args[1];
    if (!PyDict_CheckExact(bids) || !PyDict_CheckExact(asks)) {
        PyErr_SetString(PyExc_TypeError, "bids and asks must be dicts");
        return NULL;
    }
    long decimals = PyLong_AsLong(args[4]);
    if (decimals == -1 && PyErr_Occurred())
        return NULL;
    if (self->decimals > decimals || compute_keys(&self->bids, (int)decimals) ||
        compute_keys(&self->asks, (int)decimals))
        Py_RETURN_NONE;
    int64_t best_bid, best_ask;
    if (best_from_object(args[2], 1, &best_bid) < 0 ||
        best_from_object(args[3], 0, &best_ask) < 0)
        return NULL;
    if (apply_raw_side(bids, &self->bids, 1, &best_bid) < 0 ||
        apply_raw_side(asks, &self->asks, 0, &best_ask) < 0)
        return NULL;
    PyObject *bid = best_to_object(best_bid, 1);
    PyObject *ask = bid ? best_to_object(best_ask, 0) : NULL;
    if (ask == NULL) {
        Py_XDECREF(bid);
        return NULL;
    }
    /* the new top as OrderBook.top_keys() gives it: (bid key, size, ask key, size),
       a size None on an empty side (the dicts' own size objects, borrowed) */
    PyObject *bid_size = PyDict_GetItemWithError(bids, bid);
    PyObject *ask_size = NULL;
    if (!PyErr_Occurred())
        ask_size = PyDict_GetItemWithError(asks, ask);
    if (PyErr_Occurred()) {
        Py_DECREF(bid);
        Py_DECREF(ask);
        return NULL;
    }
    PyObject *top = PyTuple_Pack(4, bid, bid_size ? bid_size : Py_None, ask,
                                 ask_size ? ask_size : Py_None);
    Py_DECREF(bid);
    Py_DECREF(ask);
    return top;
}

static void
Scanner_dealloc(Scanner *self)
{
    PyMem_Free(self->bids.items);
    PyMem_Free(self->asks.items);
    for (int i = 0; i < STRING_CACHE; i++) {
        Py_CLEAR(self->strings[0][i]);
        Py_CLEAR(self->strings[1][i]);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_O,
     "scan(raw) -> None | (topic, symbol, seqNum, prevSeqNum, timestamp)"},
    {"apply", (PyCFunction)(void (*)(void))Scanner_apply, METH_FASTCALL,
     "apply(bids, asks, best_bid, best_ask, decimals) -> None | (best_bid, best_ask)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bookengine._fastbook.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reads BTSE book deltas straight from the received bytes (see _fastbook.c).",
    .tp_methods = Scanner_methods,
    .tp_new = PyType_GenericNew,
};


static PyMethodDef methods[] = {
    {"levels", (PyCFunction)(void (*)(void))levels, METH_FASTCALL,
     "levels(side, descending, n, scale) -> [(price, size), ...] best first"},
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL,
     "apply_levels(side, levels, best, is_bid, decimals, price_parts) -> new best key"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bookengine._fastbook",
    "C accelerator for OrderBook level updates (optional).", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastbook(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    NeedsDecimals = PyErr_NewException("bookengine._fastbook.NeedsDecimals", NULL, NULL);
    if (NeedsDecimals == NULL || PyModule_AddObjectRef(m, "NeedsDecimals", NeedsDecimals) < 0 ||
        PyType_Ready(&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
