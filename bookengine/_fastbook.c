/*
 * Optional C accelerator for OrderBook: its sides, their level updates, depth, and the
 * delta scanner.
 *
 * Why: in CPython the per-level loop (key lookup, size parse, dict set/pop, best compare)
 * costs more than orjson's parse of the same bytes. Here it is a few tens of ns. It has
 * exactly the semantics of book._apply_levels_py on a dict (the pure-Python fallback,
 * used when this module is not built or BOOKENGINE_PURE=1), except that sizes are
 * validated strictly as plain decimals here; see bookengine/book.py for the key
 * representation.
 *
 * Side(is_bid): one side of a book, a sorted array of (key, size); see below.
 *
 * apply_levels(side, levels, best, is_bid, decimals, price_parts) -> new best key
 *   side        a Side (key = price * 10**decimals, exact)
 *   levels      list of [price, size]
 *   best        the side's current best key (the dict twin needs it; a Side knows it)
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

/*
 * Side: one side of a book, as C numbers.
 *
 * Why: a dict of int keys to float sizes costs two allocations and a hashed lookup
 * (~75 ns) per level update; a sorted array of (key, size) costs a binary search over
 * <= ~50 entries and a short memmove (~15 ns), the best level is simply the last entry
 * (no rescan when it is deleted), and depth comes out already ordered.
 *
 * Entries are kept by rank, ascending, so that the best level is last on both sides:
 * rank = key for bids, ~key (= -key - 1, order reversed, no overflow) for asks. Most
 * updates land near the top of the book, where an insert or delete moves few entries.
 *
 * To Python it is a small mutable mapping int key -> float size (get, [], in, len,
 * iteration over keys best first, items(), pop, setting and deleting), so the pure-Python
 * twins in book.py, which are written for dicts, work on it unchanged. Keys are int64;
 * a non-integer key is simply absent (a side's best is -inf/inf when it is empty).
 */
typedef struct {
    int64_t rank;
    double size;
} Level;

typedef struct {
    PyObject_HEAD
    Level *items; /* ascending rank: the best level last */
    Py_ssize_t count, capacity;
    int is_bid;
} Side;

static PyTypeObject SideType;

static inline int64_t
side_rank(const Side *s, int64_t key)
{
    return s->is_bid ? key : ~key;
}

/* The index of the first entry whose rank is >= r (count if none). */
static inline Py_ssize_t
side_find(const Side *s, int64_t r)
{
    Py_ssize_t lo = 0, hi = s->count;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (s->items[mid].rank < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Set (size > 0) or delete (otherwise; an absent key is a no-op) the level at `key`.
   0, or -1 with MemoryError. */
static int
side_set(Side *s, int64_t key, double size)
{
    int64_t r = side_rank(s, key);
    Py_ssize_t i = side_find(s, r);
    Level *at = s->items + i;
    if (i < s->count && at->rank == r) {
        if (size > 0.0) {
            at->size = size;
        }
        else {
            memmove(at, at + 1, (size_t)(s->count - i - 1) * sizeof(Level));
            s->count--;
        }
        return 0;
    }
    if (!(size > 0.0))
        return 0;
    if (s->count == s->capacity) {
        Py_ssize_t capacity = s->capacity ? 2 * s->capacity : 64;
        Level *items = PyMem_Realloc(s->items, (size_t)capacity * sizeof(Level));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->items = items;
        s->capacity = capacity;
        at = s->items + i;
    }
    memmove(at + 1, at, (size_t)(s->count - i) * sizeof(Level));
    at->rank = r;
    at->size = size;
    s->count++;
    return 0;
}

static inline int64_t
side_key(const Side *s, Py_ssize_t i)
{
    int64_t r = s->items[i].rank;
    return s->is_bid ? r : ~r;
}

/* The best key as book.py keeps it: an int, or -inf/+inf (a float) for an empty side. */
static PyObject *
side_best(const Side *s)
{
    if (s->count == 0)
        return PyFloat_FromDouble(s->is_bid ? -INFINITY : INFINITY);
    return PyLong_FromLongLong(side_key(s, s->count - 1));
}

/* The index of `key` (a Python object) in the side, or -1 if absent (or not an int64,
   which no side holds); -2 with an error set. */
static Py_ssize_t
side_index(const Side *s, PyObject *key)
{
    int64_t k;
    if (PyLong_Check(key)) {
        int overflow = 0;
        k = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (k == -1 && PyErr_Occurred())
            return -2;
        if (overflow)
            return -1;
    }
    else if (PyFloat_Check(key)) { /* as a dict: 5.0 finds the key 5 */
        double d = PyFloat_AS_DOUBLE(key);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
            return -1;
        k = (int64_t)d;
    }
    else {
        return -1;
    }
    int64_t r = side_rank(s, k);
    Py_ssize_t i = side_find(s, r);
    return i < s->count && s->items[i].rank == r ? i : -1;
}

static int
Side_init(Side *self, PyObject *args, PyObject *kwds)
{
    int is_bid;
    static char *names[] = {"is_bid", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "p:Side", names, &is_bid))
        return -1;
    self->is_bid = is_bid;
    self->count = 0;
    return 0;
}

static void
Side_dealloc(Side *self)
{
    PyMem_Free(self->items);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
Side_length(Side *self)
{
    return self->count;
}

static PyObject *
Side_subscript(Side *self, PyObject *key)
{
    Py_ssize_t i = side_index(self, key);
    if (i == -2)
        return NULL;
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return PyFloat_FromDouble(self->items[i].size);
}

static int
Side_ass_subscript(Side *self, PyObject *key, PyObject *value)
{
    if (value == NULL) { /* del side[key] */
        Py_ssize_t i = side_index(self, key);
        if (i == -2)
            return -1;
        if (i < 0) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        return side_set(self, side_key(self, i), 0.0);
    }
    int64_t k = PyLong_AsLongLong(key);
    if (k == -1 && PyErr_Occurred())
        return -1;
    double size = PyFloat_AsDouble(value);
    if (size == -1.0 && PyErr_Occurred())
        return -1;
    if (!(size > 0.0 && isfinite(size))) {
        PyErr_Format(PyExc_ValueError, "a level's size must be > 0 and finite, got %R", value);
        return -1;
    }
    return side_set(self, k, size);
}

static int
Side_contains(Side *self, PyObject *key)
{
    Py_ssize_t i = side_index(self, key);
    return i == -2 ? -1 : i >= 0;
}

/* Keys, best first, as a new list. */
/* A copy of the side's best `limit` levels (all if limit < 0), best first, with the
   keys themselves in `rank`, taken before anything allocates a Python object (an
   allocation may run a GC pass, and so Python code that changes the side). The caller
   frees it with PyMem_Free; NULL with MemoryError (never for 0 levels). */
static Level *
side_copy(const Side *self, Py_ssize_t limit, Py_ssize_t *count)
{
    Py_ssize_t n = limit < 0 || limit > self->count ? self->count : limit;
    *count = n;
    Level *copy = PyMem_Malloc(n ? (size_t)n * sizeof(Level) : 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        copy[i] = self->items[self->count - 1 - i];
        if (!self->is_bid)
            copy[i].rank = ~copy[i].rank; /* the key itself */
    }
    return copy;
}

/* Keys, best first, as a new list. */
static PyObject *
side_keys(Side *self)
{
    Py_ssize_t n;
    Level *levels = side_copy(self, -1, &n);
    if (levels == NULL)
        return NULL;
    PyObject *keys = PyList_New(n);
    for (Py_ssize_t i = 0; keys != NULL && i < n; i++) {
        PyObject *k = PyLong_FromLongLong(levels[i].rank);
        if (k == NULL)
            Py_CLEAR(keys);
        else
            PyList_SET_ITEM(keys, i, k);
    }
    PyMem_Free(levels);
    return keys;
}

static PyObject *
Side_iter(Side *self)
{
    PyObject *keys = side_keys(self);
    if (keys == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
Side_keys(Side *self, PyObject *unused)
{
    return side_keys(self);
}

static PyObject *
Side_items(Side *self, PyObject *unused)
{
    Py_ssize_t n;
    Level *levels = side_copy(self, -1, &n);
    if (levels == NULL)
        return NULL;
    PyObject *items = PyList_New(n);
    for (Py_ssize_t i = 0; items != NULL && i < n; i++) {
        PyObject *pair = Py_BuildValue("(Ld)", (long long)levels[i].rank, levels[i].size);
        if (pair == NULL)
            Py_CLEAR(items);
        else
            PyList_SET_ITEM(items, i, pair);
    }
    PyMem_Free(levels);
    return items;
}

static PyObject *
Side_get(Side *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    Py_ssize_t i = side_index(self, args[0]);
    if (i == -2)
        return NULL;
    if (i < 0)
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    return PyFloat_FromDouble(self->items[i].size);
}

static PyObject *
Side_pop(Side *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key[, default])");
        return NULL;
    }
    Py_ssize_t i = side_index(self, args[0]);
    if (i == -2)
        return NULL;
    if (i < 0) {
        if (nargs == 2)
            return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    PyObject *size = PyFloat_FromDouble(self->items[i].size);
    if (size != NULL)
        side_set(self, side_key(self, i), 0.0); /* a delete allocates nothing */
    return size;
}

/* Pickling and copy: (Side, (is_bid,), items) then __setstate__(items). */
static PyObject *
Side_reduce(Side *self, PyObject *unused)
{
    PyObject *items = Side_items(self, NULL);
    if (items == NULL)
        return NULL;
    return Py_BuildValue("(O(O)N)", (PyObject *)Py_TYPE(self),
                         self->is_bid ? Py_True : Py_False, items);
}

static PyObject *
Side_setstate(Side *self, PyObject *items)
{
    /* a tuple of our own: a key's __index__ cannot change it under the loop */
    PyObject *seq = PySequence_Tuple(items);
    if (seq == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        PyObject *pair = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "Side state must be a list of (key, size)");
            Py_DECREF(seq);
            return NULL;
        }
        if (Side_ass_subscript(self, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *
Side_repr(Side *self)
{
    return PyUnicode_FromFormat("<Side %s, %zd levels>", self->is_bid ? "bids" : "asks",
                                self->count);
}

static PyMappingMethods Side_mapping = {
    .mp_length = (lenfunc)Side_length,
    .mp_subscript = (binaryfunc)Side_subscript,
    .mp_ass_subscript = (objobjargproc)Side_ass_subscript,
};

static PySequenceMethods Side_sequence = {
    .sq_contains = (objobjproc)Side_contains,
};

static PyMethodDef Side_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Side_get, METH_FASTCALL,
     "get(key, default=None) -> size"},
    {"pop", (PyCFunction)(void (*)(void))Side_pop, METH_FASTCALL,
     "pop(key[, default]) -> size"},
    {"keys", (PyCFunction)Side_keys, METH_NOARGS, "keys() -> [key, ...] best first"},
    {"items", (PyCFunction)Side_items, METH_NOARGS, "items() -> [(key, size), ...] best first"},
    {"__reduce__", (PyCFunction)Side_reduce, METH_NOARGS, "pickling and copy.copy"},
    {"__setstate__", (PyCFunction)Side_setstate, METH_O, "the levels of a pickled Side"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bookengine._fastbook.Side",
    .tp_basicsize = sizeof(Side),
    .tp_dealloc = (destructor)Side_dealloc,
    .tp_repr = (reprfunc)Side_repr,
    .tp_as_mapping = &Side_mapping,
    .tp_as_sequence = &Side_sequence,
    .tp_iter = (getiterfunc)Side_iter,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Side(is_bid): one side of a book, int key -> size, best level last "
              "(see _fastbook.c).",
    .tp_methods = Side_methods,
    .tp_init = (initproc)Side_init,
    .tp_new = PyType_GenericNew,
};

static Side *
as_side(PyObject *obj)
{
    if (Py_TYPE(obj) != &SideType) {
        PyErr_Format(PyExc_TypeError, "side must be a Side, got %.50s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (Side *)obj;
}

static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "apply_levels takes 6 arguments");
        return NULL;
    }
    PyObject *levels = args[1];
    PyObject *price_parts = args[5];
    Side *side = as_side(args[0]);
    if (side == NULL)
        return NULL;
    int is_bid = PyObject_IsTrue(args[3]);
    if (is_bid < 0)
        return NULL;
    if (is_bid != side->is_bid) {
        PyErr_SetString(PyExc_ValueError, "is_bid does not match the side");
        return NULL;
    }
    long decimals = PyLong_AsLong(args[4]);
    if (decimals == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_Check(levels)) {
        PyErr_Format(PyExc_ValueError, "levels must be a list, got %.50s",
                     Py_TYPE(levels)->tp_name);
        return NULL;
    }
    /* price_parts runs Python code: hold what the loop reads */
    Py_INCREF(levels);
    Py_INCREF(side);
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
        /* price_parts (Python code, or a GC pass it triggers) may change the level list:
           hold the price and size themselves, not only the list */
        Py_INCREF(price);
        Py_INCREF(size);
        int64_t k;
        double amount;
        int bad = price_key(price, (int)decimals, price_parts, &k) < 0 ||
                  parse_size(size, &amount) < 0;
        Py_DECREF(price);
        Py_DECREF(size);
        if (bad)
            goto error;
        if (side_set(side, k, amount) < 0)
            goto error;
    }
    Py_DECREF(levels);
    PyObject *best = side_best(side);
    Py_DECREF(side);
    return best;

error:
    Py_DECREF(levels);
    Py_DECREF(side);
    return NULL;
}

/*
 * levels(side, descending, n, scale) -> [(price, size), ...] best first
 *
 * The depth query: the side is already ordered, so the top n are its last n entries.
 * price = key / scale: for keys and scale that are exact doubles (|key| < 2**53,
 * scale = 10**D with D <= 18) that is one IEEE division, correctly rounded, which is
 * exactly what Python's int / int gives; otherwise Python's division is called.
 * n < 0: every level. `descending` must be the side's own order (bids: True).
 */
static PyObject *
levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "levels takes 4 arguments");
        return NULL;
    }
    PyObject *scale_obj = args[3];
    Side *side = as_side(args[0]);
    if (side == NULL)
        return NULL;
    int descending = PyObject_IsTrue(args[1]);
    if (descending < 0)
        return NULL;
    if (descending != side->is_bid) {
        PyErr_SetString(PyExc_ValueError, "levels come best first: bids descending");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (!PyLong_CheckExact(scale_obj)) {
        PyErr_SetString(PyExc_TypeError, "levels(Side, bool, int, int)");
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
    Level *copy = side_copy(side, n, &n); /* the best n, a snapshot as items() takes */
    if (copy == NULL)
        return NULL;
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        int64_t key = copy[i].rank;
        PyObject *price;
        if (exact_scale && key < (1LL << 53) && key > -(1LL << 53)) {
            price = PyFloat_FromDouble((double)key / scale);
        }
        else {
            PyObject *kobj = PyLong_FromLongLong(key);
            price = kobj ? PyNumber_TrueDivide(kobj, scale_obj) : NULL;
            Py_XDECREF(kobj);
        }
        PyObject *size = price ? PyFloat_FromDouble(copy[i].size) : NULL;
        PyObject *pair = size ? PyTuple_New(2) : NULL;
        if (pair == NULL) {
            Py_XDECREF(price);
            Py_XDECREF(size);
            Py_CLEAR(result);
            break;
        }
        PyTuple_SET_ITEM(pair, 0, price);
        PyTuple_SET_ITEM(pair, 1, size);
        PyList_SET_ITEM(result, i, pair);
    }
    PyMem_Free(copy);
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
 * apply(bids, asks, decimals) -> None | (bid key, size, ask key, size)
 *     applies the levels of the last scanned frame to two Sides (bids first), as
 *     apply_levels would, and returns the new top as OrderBook.top_keys() gives it.
 *     None, with nothing changed, if the sides are dicts (a book built in pure-Python
 *     mode), if a price needs more decimals than `decimals` or does not fit a key at
 *     that scale: the general path then applies, rescales or reports.
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

/*
 * The common spelling of a level's price or size, read in the same pass as its string:
 * '"' digits ['.' digits] '"'. 1 with v (the digits from the first non-zero one), nd (how
 * many), frac (digits after the point), dot, and the cursor past the closing quote; 0,
 * consuming nothing, for anything else (more than 19 digits, a long text, another
 * character), which plain_string and decimal_parts then read exactly as before.
 */
typedef struct {
    uint64_t v;
    int nd, frac, dot;
} QuickDecimal;

static inline int
quick_decimal(Cursor *c, QuickDecimal *q)
{
    const char *s = c->s;
    Py_ssize_t i = c->i, n = c->n;
    if (i >= n || s[i] != '"')
        return 0;
    Py_ssize_t start = ++i;
    uint64_t v = 0;
    int nd = 0, frac = 0, dot = 0;
    for (; i < n; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            if (v != 0 || ch != '0') {
                if (++nd > 19)
                    return 0;
                v = v * 10 + (uint64_t)(ch - '0');
            }
            frac += dot;
        }
        else if (ch == '.' && !dot && i > start) {
            dot = 1;
        }
        else {
            break;
        }
    }
    if (i >= n || s[i] != '"' || i == start || s[i - 1] == '.' || i - start > 64)
        return 0;
    q->v = v;
    q->nd = nd;
    q->frac = frac;
    q->dot = dot;
    c->i = i + 1;
    return 1;
}

/* A price as decimal_parts() splits it: 1 on success, 0 if the text is not a plain
   decimal of <= 15 significant digits (the frame is then declined). */
static int
scan_price(Cursor *c, RawLevel *level)
{
    QuickDecimal q;
    skip_ws(c);
    if (quick_decimal(c, &q)) {
        uint64_t m = q.v;
        int e = -q.frac;
        if (m == 0) {
            e = 0;
        }
        else if (q.dot) { /* trailing zeros after a point say nothing */
            while (m % 10 == 0) {
                m /= 10;
                e++;
            }
        }
        if (m >= 1000000000000000ULL) /* more than 15 significant digits */
            return 0;
        level->mantissa = m;
        level->exp10 = e;
        return 1;
    }
    Py_ssize_t lo, hi;
    return plain_string(c, &lo, &hi) &&
           decimal_parts(c->s + lo, hi - lo, &level->mantissa, &level->exp10) == 0;
}

/* A size as decimal_to_double() reads it: 1 on success, 0 if it is not a plain decimal. */
static int
scan_size(Cursor *c, RawLevel *level)
{
    QuickDecimal q;
    skip_ws(c);
    Py_ssize_t at = c->i;
    if (quick_decimal(c, &q)) {
        if (q.nd <= 15 && q.frac <= 22) {
            /* Clinger's fast path: v < 10**15 < 2**53 is exact, so is 10**frac, and the
               division rounds once: the double nearest the decimal, as strtod gives. */
            level->size = q.frac ? (double)q.v / POW10[q.frac] : (double)q.v;
            return 1;
        }
        c->i = at; /* a long decimal: read again below, from its opening quote */
    }
    Py_ssize_t lo, hi;
    return plain_string(c, &lo, &hi) && decimal_to_double(c->s + lo, hi - lo, &level->size) == 0;
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
        if (!accept(c, '[') || !scan_price(c, level) || !accept(c, ',') ||
            !scan_size(c, level) || !accept(c, ']'))
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
        PyObject *seq = symbol ? PyLong_FromLongLong(head.seq) : NULL;
        PyObject *prev = seq ? PyLong_FromLongLong(head.prev) : NULL;
        PyObject *stamp = NULL;
        if (prev != NULL)
            stamp = head.seen & SEEN_TIMESTAMP ? PyLong_FromLongLong(head.timestamp)
                                               : Py_NewRef(Py_None);
        result = stamp ? PyTuple_New(5) : NULL;
        if (result != NULL) { /* the tuple takes the five references */
            PyTuple_SET_ITEM(result, 0, topic);
            PyTuple_SET_ITEM(result, 1, symbol);
            PyTuple_SET_ITEM(result, 2, seq);
            PyTuple_SET_ITEM(result, 3, prev);
            PyTuple_SET_ITEM(result, 4, stamp);
            self->ready = 1;
        }
        else {
            Py_XDECREF(topic);
            Py_XDECREF(symbol);
            Py_XDECREF(seq);
            Py_XDECREF(prev);
            Py_XDECREF(stamp);
        }
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
apply_raw_side(Side *side, RawLevels *levels)
{
    for (Py_ssize_t i = 0; i < levels->count; i++) {
        RawLevel *level = &levels->items[i];
        if (side_set(side, level->key, level->size) < 0)
            return -1;
    }
    return 0;
}

/* (key, size) of a side's best level for top_keys(): (-inf/inf, None) if empty. */
static int
best_pair(const Side *side, PyObject **key, PyObject **size)
{
    *key = side_best(side);
    if (*key == NULL)
        return -1;
    *size = side->count ? PyFloat_FromDouble(side->items[side->count - 1].size)
                        : Py_NewRef(Py_None);
    if (*size == NULL) {
        Py_CLEAR(*key);
        return -1;
    }
    return 0;
}

static PyObject *
Scanner_apply(Scanner *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply takes 3 arguments");
        return NULL;
    }
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "apply() without a frame from scan()");
        return NULL;
    }
    self->ready = 0;
    if (Py_TYPE(args[0]) != &SideType || Py_TYPE(args[1]) != &SideType)
        Py_RETURN_NONE; /* a book built under pure_python() (dicts): the general path's */
    Side *bids = (Side *)args[0], *asks = (Side *)args[1];
    if (!bids->is_bid || asks->is_bid) {
        PyErr_SetString(PyExc_ValueError, "apply(bids, asks, ...): sides swapped");
        return NULL;
    }
    long decimals = PyLong_AsLong(args[2]);
    if (decimals == -1 && PyErr_Occurred())
        return NULL;
    if (self->decimals > decimals || compute_keys(&self->bids, (int)decimals) ||
        compute_keys(&self->asks, (int)decimals))
        Py_RETURN_NONE;
    if (apply_raw_side(bids, &self->bids) < 0 || apply_raw_side(asks, &self->asks) < 0)
        return NULL;
    /* the new top as OrderBook.top_keys() gives it: (bid key, size, ask key, size) */
    PyObject *top = PyTuple_New(4);
    if (top == NULL)
        return NULL;
    PyObject *k, *s;
    if (best_pair(bids, &k, &s) < 0)
        goto error;
    PyTuple_SET_ITEM(top, 0, k);
    PyTuple_SET_ITEM(top, 1, s);
    if (best_pair(asks, &k, &s) < 0)
        goto error;
    PyTuple_SET_ITEM(top, 2, k);
    PyTuple_SET_ITEM(top, 3, s);
    return top;

error:
    Py_DECREF(top);
    return NULL;
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
     "apply(bids, asks, decimals) -> None | (bid key, size, ask key, size)"},
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


/*
 * top_event(cls, arrival_ns, timestamp, symbol, grouping, seq, top, scale) -> cls(...)
 *
 * BookSync's TopOfBook for `top` = (bid key, bid size, ask key, ask size), built in one
 * allocation: the (price, size) of each side, price = key / scale (None on an empty
 * side), by the same division as levels(). `cls` is a tuple subclass (a NamedTuple) of
 * nine fields: (arrival_ns, timestamp, symbol, grouping, seq, bid price, bid size, ask
 * price, ask size). sync._top_of_book is the specification.
 */
static PyObject *
price_of(PyObject *key, PyObject *size, PyObject *scale_obj)
{
    if (size == Py_None)
        return Py_NewRef(Py_None);
    int overflow = 0;
    long long k = PyLong_Check(key) ? PyLong_AsLongLongAndOverflow(key, &overflow) : 0;
    if (k == -1 && PyErr_Occurred())
        return NULL;
    int key_overflow = overflow || !PyLong_Check(key);
    long long scale = PyLong_AsLongLongAndOverflow(scale_obj, &overflow);
    if (scale == -1 && PyErr_Occurred())
        return NULL;
    double d = (double)scale;
    if (!key_overflow && !overflow && scale > 0 && scale <= 1000000000000000000LL &&
        (long long)d == scale && k < (1LL << 53) && k > -(1LL << 53))
        return PyFloat_FromDouble((double)k / d); /* exactly Python's int / int here */
    return PyNumber_TrueDivide(key, scale_obj);
}

/* The event class top_event builds, once checked: a direct tuple subclass with nine
   `_fields` (a NamedTuple). Anything else, a struct sequence say, has another layout. */
static PyObject *top_event_class = NULL;

static int
check_event_class(PyObject *cls)
{
    PyObject *fields = NULL;
    int ok = PyType_Check(cls) && ((PyTypeObject *)cls)->tp_base == &PyTuple_Type &&
             ((PyTypeObject *)cls)->tp_itemsize == sizeof(PyObject *);
    if (ok) {
        fields = PyObject_GetAttrString(cls, "_fields");
        ok = fields != NULL && PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == 9;
        Py_XDECREF(fields);
        PyErr_Clear();
    }
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "top_event needs a NamedTuple class of 9 fields");
        return -1;
    }
    Py_XSETREF(top_event_class, Py_NewRef(cls));
    return 0;
}

static PyObject *
top_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "top_event takes 8 arguments");
        return NULL;
    }
    PyObject *top = args[6], *scale = args[7];
    if (args[0] != top_event_class && check_event_class(args[0]) < 0)
        return NULL;
    if (!PyTuple_CheckExact(top) || PyTuple_GET_SIZE(top) != 4 || !PyLong_CheckExact(scale)) {
        PyErr_SetString(PyExc_TypeError, "top_event(..., top: a 4-tuple, scale: an int)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *bid_size = PyTuple_GET_ITEM(top, 1), *ask_size = PyTuple_GET_ITEM(top, 3);
    PyObject *bid = price_of(PyTuple_GET_ITEM(top, 0), bid_size, scale);
    PyObject *ask = bid ? price_of(PyTuple_GET_ITEM(top, 2), ask_size, scale) : NULL;
    PyObject *event = ask ? cls->tp_alloc(cls, 9) : NULL;
    if (event == NULL) {
        Py_XDECREF(bid);
        Py_XDECREF(ask);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030E0000
    ((PyTupleObject *)event)->ob_hash = -1; /* 3.14+ caches a tuple's hash: "not yet" */
#endif
    PyObject *items[9] = {args[1], args[2], args[3], args[4], args[5],
                          bid, bid_size, ask, ask_size};
    for (int i = 0; i < 9; i++) {
        if (i != 5 && i != 7)
            Py_INCREF(items[i]); /* the prices are new references already */
        PyTuple_SET_ITEM(event, i, items[i]);
    }
    return event;
}

static PyMethodDef methods[] = {
    {"levels", (PyCFunction)(void (*)(void))levels, METH_FASTCALL,
     "levels(side, descending, n, scale) -> [(price, size), ...] best first"},
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL,
     "apply_levels(side, levels, best, is_bid, decimals, price_parts) -> new best key"},
    {"top_event", (PyCFunction)(void (*)(void))top_event, METH_FASTCALL,
     "top_event(cls, arrival_ns, timestamp, symbol, grouping, seq, top, scale) -> cls"},
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
        PyType_Ready(&ScannerType) < 0 || PyType_Ready(&SideType) < 0 ||
        PyModule_AddObjectRef(m, "Side", (PyObject *)&SideType) < 0 ||
        PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
