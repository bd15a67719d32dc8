/* The planes loops of planes_loops.py (numba) as a small C extension, built at install time when a C
 * compiler is there (setup.py: optional; without it numpy, or numba when asked, does the work).
 *
 * Why C as well as numba: numba costs ~1-2 s and ~135 MB of resident memory per process to load (LLVM),
 * which is why its loops are opt-in; these cost nothing to load, so they are the default. Same streams,
 * words and return codes as planes_loops.py (tests/test_planes_jit.py checks both against numpy).
 * Every loop runs with the GIL released, so the chunks of a tensor join and split on all cores.
 * Words are little-endian (the storage dtypes of nncodec/dtypes.py): byte k of a word is its bits 8k..8k+7.
 * Every buffer length is checked before a loop runs: the inputs come from files.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* x86-64: the loops are also compiled for AVX2 and picked at load time (the baseline has SSE2 only: the
 * byte-to-word widening takes twice as long there) */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef MULTIVERSION
#define MULTIVERSION
#endif

#define GIL_FREE_BYTES 16384 /* shorter loops keep the GIL (releasing it costs more than they take) */

static int size_error(const char *fn, const char *what) {
    PyErr_Format(PyExc_ValueError, "%s: %s", fn, what);
    return -1;
}

static void release(Py_buffer *b, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&b[i]);
}

MULTIVERSION static void join32_loop(const uint8_t *restrict e, const uint8_t *restrict l0, const uint8_t *restrict l1,
                                     const uint8_t *restrict t, uint8_t *restrict o, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) { /* (byte stores: vectorised as unpacks, faster than widening to words) */
        o[4 * i] = l0[i];
        o[4 * i + 1] = l1[i];
        o[4 * i + 2] = (uint8_t)((t[i] & 0x7F) | (e[i] << 7));
        o[4 * i + 3] = (uint8_t)((t[i] & 0x80) | (e[i] >> 1));
    }
}

MULTIVERSION static void join16_loop(const uint8_t *restrict e, const uint8_t *restrict t, uint8_t *restrict o,
                                     Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        o[2 * i] = (uint8_t)((t[i] & 0x7F) | (e[i] << 7));
        o[2 * i + 1] = (uint8_t)((t[i] & 0x80) | (e[i] >> 1));
    }
}

MULTIVERSION static void split32_loop(const uint8_t *restrict w, uint8_t *restrict e, uint8_t *restrict l0,
                                      uint8_t *restrict l1, uint8_t *restrict t, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *x = w + 4 * i;
        l0[i] = x[0];
        l1[i] = x[1];
        e[i] = (uint8_t)((x[3] << 1) | (x[2] >> 7));
        t[i] = (uint8_t)((x[2] & 0x7F) | (x[3] & 0x80));
    }
}

MULTIVERSION static void split16_loop(const uint8_t *restrict w, uint8_t *restrict e, uint8_t *restrict t,
                                      Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        e[i] = (uint8_t)((w[2 * i + 1] << 1) | (w[2 * i] >> 7));
        t[i] = (uint8_t)((w[2 * i] & 0x7F) | (w[2 * i + 1] & 0x80));
    }
}

/* join32(exp, l0, l1, top, out): float32 words from their four fast-split streams. */
static PyObject *join32(PyObject *self, PyObject *args) {
    Py_buffer b[5];
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &b[0], &b[1], &b[2], &b[3], &b[4])) return NULL;
    Py_ssize_t n = b[0].len;
    if (b[1].len != n || b[2].len != n || b[3].len != n || b[4].len != 4 * n) {
        release(b, 5);
        size_error("join32", "streams of n bytes and an output of 4n bytes expected");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    join32_loop(b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, n);
    Py_END_ALLOW_THREADS
    release(b, 5);
    Py_RETURN_NONE;
}

/* join16(exp, top, out): bfloat16 words from their two streams. */
static PyObject *join16(PyObject *self, PyObject *args) {
    Py_buffer b[3];
    if (!PyArg_ParseTuple(args, "y*y*w*", &b[0], &b[1], &b[2])) return NULL;
    Py_ssize_t n = b[0].len;
    if (b[1].len != n || b[2].len != 2 * n) {
        release(b, 3);
        size_error("join16", "streams of n bytes and an output of 2n bytes expected");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    join16_loop(b[0].buf, b[1].buf, b[2].buf, n);
    Py_END_ALLOW_THREADS
    release(b, 3);
    Py_RETURN_NONE;
}

/* split32(w, exp, l0, l1, top): the four streams of float32 words. */
static PyObject *split32(PyObject *self, PyObject *args) {
    Py_buffer b[5];
    if (!PyArg_ParseTuple(args, "y*w*w*w*w*", &b[0], &b[1], &b[2], &b[3], &b[4])) return NULL;
    Py_ssize_t n = b[1].len;
    if (b[0].len != 4 * n || b[2].len != n || b[3].len != n || b[4].len != n) {
        release(b, 5);
        size_error("split32", "4n bytes of words and streams of n bytes expected");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    split32_loop(b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, n);
    Py_END_ALLOW_THREADS
    release(b, 5);
    Py_RETURN_NONE;
}

/* split16(w, exp, top): the two streams of bfloat16 words. */
static PyObject *split16(PyObject *self, PyObject *args) {
    Py_buffer b[3];
    if (!PyArg_ParseTuple(args, "y*w*w*", &b[0], &b[1], &b[2])) return NULL;
    Py_ssize_t n = b[1].len;
    if (b[0].len != 2 * n || b[2].len != n) {
        release(b, 3);
        size_error("split16", "2n bytes of words and streams of n bytes expected");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    split16_loop(b[0].buf, b[1].buf, b[2].buf, n);
    Py_END_ALLOW_THREADS
    release(b, 3);
    Py_RETURN_NONE;
}

/* One symbol of code c (the slow path: an escape, or a code outside the table); -1 / -2 as unpairs returns. */
static inline int unpair_one(int c, Py_ssize_t k, const uint8_t *symbols, const uint8_t *escapes, Py_ssize_t ne,
                             Py_ssize_t *e, uint8_t *out) {
    if (c < k) {
        *out = symbols[c];
        return 0;
    }
    if (c != 15) return -1;
    if (*e >= ne) return -2;
    *out = escapes[(*e)++];
    return 0;
}

/* Symbols j0 .. of the plain loop below, from packed byte j0 on (the scalar tail, and any block of 16 bytes
 * that holds an escape or a code outside the table). */
static Py_ssize_t unpairs_scalar(const uint8_t *packed, const uint8_t *symbols, Py_ssize_t k, const uint8_t *escapes,
                                 Py_ssize_t ne, Py_ssize_t *e, uint8_t *out, Py_ssize_t j0, Py_ssize_t j1) {
    for (Py_ssize_t j = j0; j < j1; j++) {
        uint8_t b = packed[j];
        int r = unpair_one(b >> 4, k, symbols, escapes, ne, e, out + 2 * j);
        if (!r) r = unpair_one(b & 15, k, symbols, escapes, ne, e, out + 2 * j + 1);
        if (r) return r;
    }
    return 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_SSSE3_UNPAIRS 1
/* 16 packed bytes (32 symbols) per step: the two nibbles of each byte interleaved, then a 16-entry table lookup
 * (pshufb); a block holding a code >= k (an escape or a code outside the table) is done by the scalar loop. */
__attribute__((target("ssse3"))) static Py_ssize_t unpairs_ssse3(const uint8_t *packed, const uint8_t *symbols,
                                                                Py_ssize_t k, const uint8_t *escapes, Py_ssize_t ne,
                                                                uint8_t *out, Py_ssize_t half) {
    uint8_t table[16] = {0};
    memcpy(table, symbols, (size_t)k);
    const __m128i tab = _mm_loadu_si128((const __m128i *)table), low = _mm_set1_epi8(15),
                  last = _mm_set1_epi8((char)(k - 1));
    Py_ssize_t e = 0, j = 0;
    for (; j + 16 <= half; j += 16) {
        __m128i p = _mm_loadu_si128((const __m128i *)(packed + j));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), low), lo = _mm_and_si128(p, low);
        __m128i c0 = _mm_unpacklo_epi8(hi, lo), c1 = _mm_unpackhi_epi8(hi, lo);
        __m128i bad = _mm_or_si128(_mm_cmpgt_epi8(c0, last), _mm_cmpgt_epi8(c1, last));
        if (_mm_movemask_epi8(bad)) {
            Py_ssize_t r = unpairs_scalar(packed, symbols, k, escapes, ne, &e, out, j, j + 16);
            if (r) return r;
            continue;
        }
        _mm_storeu_si128((__m128i *)(out + 2 * j), _mm_shuffle_epi8(tab, c0));
        _mm_storeu_si128((__m128i *)(out + 2 * j + 16), _mm_shuffle_epi8(tab, c1));
    }
    Py_ssize_t r = unpairs_scalar(packed, symbols, k, escapes, ne, &e, out, j, half);
    return r ? r : e;
}
#endif

/* The symbols of n codes, two per packed byte, in order, so the result (and which error comes first) is the
 * plain symbol-by-symbol loop's: escapes used, -1 for a code in k..14, -2 when the escapes run out. */
static Py_ssize_t unpairs_loop(const uint8_t *packed, const uint8_t *symbols, Py_ssize_t k, const uint8_t *escapes,
                               Py_ssize_t ne, uint8_t *out, Py_ssize_t n) {
    Py_ssize_t e = 0, half = n / 2, r;
#ifdef HAVE_SSSE3_UNPAIRS
    if (k >= 1 && __builtin_cpu_supports("ssse3")) {
        r = unpairs_ssse3(packed, symbols, k, escapes, ne, out, half);
        if (r < 0) return r;
        e = r;
    } else
#endif
    {
        r = unpairs_scalar(packed, symbols, k, escapes, ne, &e, out, 0, half);
        if (r) return r;
    }
    if (n & 1) {
        r = unpair_one(packed[half] >> 4, k, symbols, escapes, ne, &e, out + n - 1);
        if (r) return r;
    }
    return e;
}

/* unpairs(packed, symbols, k, escapes, out) -> escapes used, -1 for a code in k..14, -2 when the escapes
 * run out (the caller's numpy path then raises its exact error). */
static PyObject *unpairs(PyObject *self, PyObject *args) {
    Py_buffer b[4];
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "y*y*ny*w*", &b[0], &b[1], &k, &b[2], &b[3])) return NULL;
    Py_ssize_t n = b[3].len, ne = b[2].len, result;
    if (k < 0 || k > 15 || b[1].len < k || b[0].len < (n + 1) / 2) {
        release(b, 4);
        size_error("unpairs", "a table of k <= 15 symbols and (n + 1) // 2 packed bytes expected");
        return NULL;
    }
    PyThreadState *ts = n >= GIL_FREE_BYTES ? PyEval_SaveThread() : NULL;
    result = unpairs_loop(b[0].buf, b[1].buf, k, b[2].buf, ne, b[3].buf, n);
    if (ts) PyEval_RestoreThread(ts);
    release(b, 4);
    return PyLong_FromSsize_t(result);
}

/* pairs(stream, code, packed, escapes) -> escapes written: packed[j] = code[s[2j]] << 4 | code[s[2j+1]]
 * (0 for the missing second symbol of an odd stream); symbols whose code is 15 go to escapes in order. */
static PyObject *pairs(PyObject *self, PyObject *args) {
    Py_buffer b[4];
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &b[0], &b[1], &b[2], &b[3])) return NULL;
    Py_ssize_t n = b[0].len, np_ = b[2].len, ne = b[3].len, e = 0;
    if (b[1].len != 256 || np_ != (n + 1) / 2 || ne < n) {
        release(b, 4);
        size_error("pairs", "a 256-entry code, (n + 1) // 2 packed bytes and room for n escapes expected");
        return NULL;
    }
    const uint8_t *s = b[0].buf, *code = b[1].buf;
    uint8_t *packed = b[2].buf, *esc = b[3].buf;
    PyThreadState *ts = n >= GIL_FREE_BYTES ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t j = 0; j < np_; j++) {
        uint8_t s0 = s[2 * j], c0 = code[s0], c1 = 0;
        if (c0 == 15) esc[e++] = s0;
        if (2 * j + 1 < n) {
            uint8_t s1 = s[2 * j + 1];
            c1 = code[s1];
            if (c1 == 15) esc[e++] = s1;
        }
        packed[j] = (uint8_t)((c0 << 4) | c1);
    }
    if (ts) PyEval_RestoreThread(ts);
    release(b, 4);
    return PyLong_FromSsize_t(e);
}

/* count_bytes(stream, step, counts): counts[v] += the number of values v in stream[::step] (int64 counts). */
static PyObject *count_bytes(PyObject *self, PyObject *args) {
    Py_buffer b[2];
    Py_ssize_t step;
    if (!PyArg_ParseTuple(args, "y*nw*", &b[0], &step, &b[1])) return NULL;
    if (step < 1 || b[1].len != 256 * (Py_ssize_t)sizeof(int64_t)) {
        release(b, 2);
        size_error("count_bytes", "a step >= 1 and 256 int64 counts expected");
        return NULL;
    }
    const uint8_t *s = b[0].buf;
    int64_t counts[256];
    memcpy(counts, b[1].buf, sizeof counts);
    Py_ssize_t n = b[0].len, i = 0;
    if (n / step >= 4096 && n / step <= ((Py_ssize_t)1 << 32)) {
        /* four histograms, one per sample in a group of four: a run of one symbol does not wait on its own
         * increments (uint32 counts: each histogram sees at most a quarter of <= 2**32 samples) */
        uint32_t part[4][256];
        memset(part, 0, sizeof part);
        for (; i + 3 * step < n; i += 4 * step) {
            part[0][s[i]]++;
            part[1][s[i + step]]++;
            part[2][s[i + 2 * step]]++;
            part[3][s[i + 3 * step]]++;
        }
        for (int v = 0; v < 256; v++) counts[v] += (int64_t)part[0][v] + part[1][v] + part[2][v] + part[3][v];
    }
    for (; i < n; i += step) counts[s[i]]++;
    memcpy(b[1].buf, counts, sizeof counts);
    release(b, 2);
    Py_RETURN_NONE;
}

/* distinct_bytes(stream) -> how many different byte values the stream holds (the encoder's cheap statistic for
 * short streams: it decides whether their entropy is needed at all, raw.py). */
static PyObject *distinct_bytes(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    const uint8_t *s = b.buf;
    uint8_t seen[256] = {0};
    for (Py_ssize_t i = 0; i < b.len; i++) seen[s[i]] = 1;
    PyBuffer_Release(&b);
    int k = 0;
    for (int v = 0; v < 256; v++) k += seen[v];
    return PyLong_FromLong(k);
}

static PyMethodDef methods[] = {
    {"join32", join32, METH_VARARGS, "float32 words from their four streams"},
    {"join16", join16, METH_VARARGS, "bfloat16 words from their two streams"},
    {"split32", split32, METH_VARARGS, "the four streams of float32 words"},
    {"split16", split16, METH_VARARGS, "the two streams of bfloat16 words"},
    {"unpairs", unpairs, METH_VARARGS, "pairs codes to symbols"},
    {"pairs", pairs, METH_VARARGS, "symbols to pairs codes"},
    {"count_bytes", count_bytes, METH_VARARGS, "histogram of every step-th byte"},
    {"distinct_bytes", distinct_bytes, METH_VARARGS, "how many different byte values"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_planes_c", "nncodec's compiled planes loops", -1, methods};

PyMODINIT_FUNC PyInit__planes_c(void) { return PyModule_Create(&module); }
