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

static PyObject *NeedsDecimals;

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
    if (n == 0)
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

static int
parse_size(PyObject *obj, double *out)
{
    if (PyUnicode_CheckExact(obj)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
        uint64_t m;
        int e, rc;
        if (s == NULL)
            return -1;
        if (n == 1 && s[0] == '0') {
            *out = 0.0;
            return 0;
        }
        rc = decimal_parts(s, n, &m, &e);
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
        if (rc != 1) { /* long or large decimals: the correctly rounded slow path */
            char *stop = NULL;
            double v = PyOS_string_to_double(s, &stop, NULL);
            if (v == -1.0 && PyErr_Occurred())
                return -1;
            if (stop == s + n && isfinite(v)) {
                *out = v;
                return 0;
            }
        }
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
    uint64_t k = m;
    for (int i = 0; i < shift; i++) {
        if (k > (uint64_t)INT64_MAX / 10) {
            PyErr_Format(PyExc_ValueError,
                         "price %R does not fit this book's precision (%d decimals)",
                         price, decimals);
            return -1;
        }
        k *= 10;
    }
    if (k > (uint64_t)INT64_MAX) {
        PyErr_Format(PyExc_ValueError, "price %R is too large", price);
        return -1;
    }
    *key = (int64_t)k;
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

static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "apply_levels takes 6 arguments");
        return NULL;
    }
    PyObject *side = args[0], *levels = args[1], *best_obj = args[2];
    PyObject *price_parts = args[5];
    int is_bid = PyObject_IsTrue(args[3]);
    long decimals = PyLong_AsLong(args[4]);
    if (is_bid < 0 || (decimals == -1 && PyErr_Occurred()))
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
    /* best as int64, with sentinels for an empty side (best_obj is then +-inf) */
    int64_t best;
    int empty = !PyLong_CheckExact(best_obj);
    if (empty) {
        best = is_bid ? INT64_MIN : INT64_MAX;
    }
    else {
        best = PyLong_AsLongLong(best_obj);
        if (best == -1 && PyErr_Occurred())
            return NULL;
    }
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
        PyObject *key = PyLong_FromLongLong(k);
        if (key == NULL)
            goto error;
        if (amount > 0.0) {
            PyObject *value = PyFloat_FromDouble(amount);
            if (value == NULL || PyDict_SetItem(side, key, value) < 0) {
                Py_XDECREF(value);
                Py_DECREF(key);
                goto error;
            }
            Py_DECREF(value);
            if (is_bid ? k > best : k < best)
                best = k;
        }
        else {
            int present = dict_pop(side, key);
            if (present < 0) {
                Py_DECREF(key);
                goto error;
            }
            if (present && k == best)
                lost_best = 1;
        }
        Py_DECREF(key);
    }
    Py_DECREF(levels);
    if (lost_best) {
        Py_ssize_t pos = 0;
        PyObject *kobj, *vobj;
        best = is_bid ? INT64_MIN : INT64_MAX;
        while (PyDict_Next(side, &pos, &kobj, &vobj)) {
            int64_t d = PyLong_AsLongLong(kobj);
            if (d == -1 && PyErr_Occurred())
                return NULL;
            if (is_bid ? d > best : d < best)
                best = d;
        }
    }
    if (best == (is_bid ? INT64_MIN : INT64_MAX))
        return PyFloat_FromDouble(is_bid ? -INFINITY : INFINITY);
    return PyLong_FromLongLong(best);

error:
    Py_DECREF(levels);
    return NULL;
}

static PyMethodDef methods[] = {
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
    if (NeedsDecimals == NULL || PyModule_AddObjectRef(m, "NeedsDecimals", NeedsDecimals) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
