/* native._bpe: the byte-level BPE fast path (pre-tokenizer split + merges), in C.
 *
 * One type, Core, built from the vocabulary as raw bytes, the merges as (left, right, merged) ids
 * in rank order, and a pre-tokenizer id. `encode(bytes)` returns token ids and `count(bytes)`
 * their number; both release the GIL. Special tokens are split off by the Python layer
 * (native/tokenizer.py) before text reaches this module.
 *
 * The pre-tokenizers are hand-written scanners equivalent to the split regexes llama.cpp uses
 * (see native/twin.py, the readable Python twin that mirrors this file function by function);
 * the Unicode categories come from _unicode_table.h, generated at build time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_unicode_table.h"

enum { F_LETTER = 1, F_NUMBER = 2, F_PUNCT = 4, F_SPACE = 8 };
enum { PRE_QWEN2 = 0, PRE_LLAMA3 = 1, PRE_GPT2 = 2, PRE_DEEPSEEK_CODER = 3 };

static inline unsigned cpt_flags(uint32_t c) {
    return c > 0x10FFFF ? 0 : ucd_stage2[ucd_stage1[c >> 8]][c & 255];
}

/* ---------------------------------------------------------------------------------------------
 * Hash tables: open addressing, power-of-two sizes, linear probing. */

typedef struct {
    uint64_t *keys; /* 0 = empty; stored keys are key + 1 */
    uint64_t *values;
    size_t mask;
} U64Map;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int u64map_init(U64Map *m, size_t n) {
    size_t size = 16;
    while (size < n * 2) size <<= 1;
    m->keys = calloc(size, sizeof(uint64_t));
    m->values = calloc(size, sizeof(uint64_t));
    m->mask = size - 1;
    return m->keys && m->values ? 0 : -1;
}

static void u64map_free(U64Map *m) {
    free(m->keys);
    free(m->values);
    m->keys = m->values = NULL;
}

static void u64map_put(U64Map *m, uint64_t key, uint64_t value) {
    size_t i = mix64(key) & m->mask;
    while (m->keys[i] && m->keys[i] != key + 1) i = (i + 1) & m->mask;
    if (!m->keys[i]) { /* the first merge of a pair wins, as in llama.cpp */
        m->keys[i] = key + 1;
        m->values[i] = value;
    }
}

static int u64map_get(const U64Map *m, uint64_t key, uint64_t *value) {
    size_t i = mix64(key) & m->mask;
    while (m->keys[i]) {
        if (m->keys[i] == key + 1) {
            *value = m->values[i];
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

/* Token bytes → id, for whole-word lookups (llama3's ignore_merges). */
typedef struct {
    int32_t *slots; /* -1 = empty, else a token id */
    size_t mask;
} BytesMap;

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* ---------------------------------------------------------------------------------------------
 * The Core object. */

typedef struct {
    PyObject_HEAD
    int pre;
    uint32_t n_vocab;
    uint8_t *blob;     /* every token's bytes, back to back */
    size_t *offsets;   /* token i is blob[offsets[i] .. offsets[i + 1]) */
    int32_t byte_ids[256];
    U64Map merges;     /* (left << 32 | right) → (rank << 32 | merged) */
    BytesMap words;
} Core;

static int32_t words_get(const Core *c, const uint8_t *p, size_t n) {
    size_t i = fnv1a(p, n) & c->words.mask;
    while (c->words.slots[i] >= 0) {
        int32_t id = c->words.slots[i];
        size_t len = c->offsets[id + 1] - c->offsets[id];
        if (len == n && memcmp(c->blob + c->offsets[id], p, n) == 0) return id;
        i = (i + 1) & c->words.mask;
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Output buffer of ids. */

typedef struct {
    uint32_t *ids;
    size_t len, cap;
    int failed;
} Ids;

static void ids_push(Ids *out, uint32_t id) {
    if (out->failed) return;
    if (out->len == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 256;
        uint32_t *grown = realloc(out->ids, cap * sizeof(uint32_t));
        if (!grown) {
            out->failed = 1;
            return;
        }
        out->ids = grown;
        out->cap = cap;
    }
    out->ids[out->len++] = id;
}

/* ---------------------------------------------------------------------------------------------
 * BPE merges of one pre-token: a min-heap of candidate pairs ordered by (rank, position) over a
 * linked list of symbols, as llama.cpp's llm_tokenizer_bpe. */

typedef struct {
    uint32_t rank, pos, left, right, merged;
} Pair;

static int pair_less(const Pair *a, const Pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Pair *heap, size_t *n, Pair p) {
    size_t i = (*n)++;
    heap[i] = p;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_less(&heap[i], &heap[parent])) break;
        Pair t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}

static Pair heap_pop(Pair *heap, size_t *n) {
    Pair top = heap[0];
    heap[0] = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && pair_less(&heap[l], &heap[m])) m = l;
        if (r < *n && pair_less(&heap[r], &heap[m])) m = r;
        if (m == i) break;
        Pair t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
    return top;
}

static void try_pair(const Core *c, Pair *heap, size_t *n, const uint32_t *ids, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    uint64_t v;
    if (u64map_get(&c->merges, ((uint64_t)ids[left] << 32) | ids[right], &v)) {
        Pair p = {(uint32_t)(v >> 32), (uint32_t)left, ids[left], ids[right], (uint32_t)v};
        heap_push(heap, n, p);
    }
}

#define SMALL 64

static void bpe_word(const Core *c, const uint8_t *p, size_t n, Ids *out) {
    if (n == 1) {
        ids_push(out, (uint32_t)c->byte_ids[p[0]]);
        return;
    }
    if (c->pre == PRE_LLAMA3) { /* llama3 vocabularies take a whole word that is a token as is */
        int32_t id = words_get(c, p, n);
        if (id >= 0) {
            ids_push(out, (uint32_t)id);
            return;
        }
    }
    uint32_t ids_small[SMALL];
    int32_t next_small[SMALL], prev_small[SMALL];
    Pair heap_small[3 * SMALL];
    uint32_t *ids = ids_small;
    int32_t *next = next_small, *prev = prev_small;
    Pair *heap = heap_small;
    if (n > SMALL) {
        ids = malloc(n * sizeof(uint32_t));
        next = malloc(n * sizeof(int32_t));
        prev = malloc(n * sizeof(int32_t));
        heap = malloc(3 * n * sizeof(Pair));
        if (!ids || !next || !prev || !heap) {
            free(ids); free(next); free(prev); free(heap);
            out->failed = 1;
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = (uint32_t)c->byte_ids[p[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    size_t heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(c, heap, &heap_n, ids, (int32_t)i, (int32_t)(i + 1));
    while (heap_n) {
        Pair top = heap_pop(heap, &heap_n);
        int32_t left = (int32_t)top.pos, right = next[left];
        /* stale: the left symbol was merged away or changed, or its neighbour did */
        if (right < 0 || ids[left] != top.left || ids[right] != top.right || prev[left] == -2) continue;
        ids[left] = top.merged;
        next[left] = next[right];
        if (next[right] >= 0) prev[next[right]] = left;
        prev[right] = -2; /* removed */
        try_pair(c, heap, &heap_n, ids, prev[left], left);
        try_pair(c, heap, &heap_n, ids, left, next[left]);
    }
    for (int32_t i = 0; i >= 0; i = next[i]) ids_push(out, ids[i]);
    if (n > SMALL) {
        free(ids); free(next); free(prev); free(heap);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Pre-tokenizers. Each `match_*` returns where the piece starting at code point i ends. */

typedef struct {
    const uint32_t *cp; /* code points */
    const uint8_t *fl;  /* their flags */
    size_t n;
} Text;

static inline int is_nl(uint32_t c) { return c == '\r' || c == '\n'; }
static inline int is_other(uint8_t f) { return !(f & (F_SPACE | F_LETTER | F_NUMBER)); }
static inline uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static size_t run(const Text *t, size_t j, uint8_t flag) {
    while (j < t->n && (t->fl[j] & flag)) j++;
    return j;
}

/* 's 't 're 've 'm 'll 'd → end of the contraction, or 0. */
static size_t contraction(const Text *t, size_t i, int fold) {
    if (t->cp[i] != '\'' || i + 1 >= t->n) return 0;
    uint32_t a = fold ? ascii_lower(t->cp[i + 1]) : t->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < t->n) {
        uint32_t b = fold ? ascii_lower(t->cp[i + 2]) : t->cp[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    return 0;
}

/* \s+(?!\S)|\s+ (and, for llama3/qwen2, \s*[\r\n]+ before them) from a whitespace at i. */
static size_t whitespace(const Text *t, size_t i, int newline_first) {
    size_t j = i, last_nl = (size_t)-1;
    while (j < t->n && (t->fl[j] & F_SPACE)) {
        if (is_nl(t->cp[j])) last_nl = j;
        j++;
    }
    if (newline_first && last_nl != (size_t)-1) return last_nl + 1;
    if (j == t->n || j - i == 1) return j;
    return j - 1; /* leave the last space to the word after it */
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+      — llama3 (k = 3) and qwen2 (k = 1) */
static size_t match_llama3(const Text *t, size_t i, size_t digits) {
    size_t e = contraction(t, i, 1);
    if (e) return e;
    uint8_t f = t->fl[i];
    if (!(f & (F_LETTER | F_NUMBER)) && !is_nl(t->cp[i]) && i + 1 < t->n && (t->fl[i + 1] & F_LETTER))
        return run(t, i + 2, F_LETTER);
    if (f & F_LETTER) return run(t, i + 1, F_LETTER);
    if (f & F_NUMBER) {
        size_t j = i + 1;
        while (j < t->n && j - i < digits && (t->fl[j] & F_NUMBER)) j++;
        return j;
    }
    size_t s = (t->cp[i] == ' ' && i + 1 < t->n && is_other(t->fl[i + 1])) ? i + 1 : i;
    if (is_other(t->fl[s])) {
        size_t j = s + 1;
        while (j < t->n && is_other(t->fl[j])) j++;
        while (j < t->n && is_nl(t->cp[j])) j++;
        return j;
    }
    return whitespace(t, i, 1);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+      — gpt2 */
static size_t match_gpt2(const Text *t, size_t i) {
    size_t e = contraction(t, i, 0);
    if (e) return e;
    size_t s = (t->cp[i] == ' ' && i + 1 < t->n) ? i + 1 : i;
    /* The optional space is ' ' itself, never a letter, number or "other": when what follows it
     * is none of those, neither is it, and the whitespace rules take over. */
    if (t->fl[s] & F_LETTER) return run(t, s + 1, F_LETTER);
    if (t->fl[s] & F_NUMBER) return run(t, s + 1, F_NUMBER);
    if (is_other(t->fl[s])) {
        size_t j = s + 1;
        while (j < t->n && is_other(t->fl[j])) j++;
        return j;
    }
    return whitespace(t, i, 0);
}

/* deepseek-coder: five regexes, each splitting the pieces the one before left (matches and the
 * text between them both stay pieces): [\r\n] · \s?\p{L}+ · \s?\p{P}+ ·
 * [一-龥ࠀ-一가-퟿]+ · \p{N}. `end` bounds the piece; 0 means no match at i. */
static int in_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) || (c >= 0xAC00 && c <= 0xD7FF);
}

static size_t match_deepseek(const Text *t, int which, size_t i, size_t end) {
    switch (which) {
    case 0:
        return is_nl(t->cp[i]) ? i + 1 : 0;
    case 1:
    case 2: {
        uint8_t flag = which == 1 ? F_LETTER : F_PUNCT;
        size_t s = i;
        if ((t->fl[i] & F_SPACE) && i + 1 < end && (t->fl[i + 1] & flag)) s = i + 1;
        if (!(t->fl[s] & flag)) return 0;
        size_t j = s + 1;
        while (j < end && (t->fl[j] & flag)) j++;
        return j;
    }
    case 3: {
        size_t j = i;
        while (j < end && in_cjk(t->cp[j])) j++;
        return j > i ? j : 0;
    }
    default:
        return (t->fl[i] & F_NUMBER) ? i + 1 : 0;
    }
}

/* Piece boundaries as code point offsets: starts[k] .. starts[k + 1]. */
typedef struct {
    size_t *at;
    size_t len, cap;
} Cuts;

static int cuts_push(Cuts *c, size_t v) {
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        size_t *grown = realloc(c->at, cap * sizeof(size_t));
        if (!grown) return -1;
        c->at = grown;
        c->cap = cap;
    }
    c->at[c->len++] = v;
    return 0;
}

static int split_deepseek(const Text *t, Cuts *cuts) {
    Cuts cur = {0}, nxt = {0};
    if (cuts_push(&cur, 0) || cuts_push(&cur, t->n)) goto fail;
    for (int which = 0; which < 5; which++) {
        nxt.len = 0;
        if (cuts_push(&nxt, 0)) goto fail;
        for (size_t k = 0; k + 1 < cur.len; k++) {
            size_t a = cur.at[k], b = cur.at[k + 1], i = a;
            while (i < b) {
                size_t e = match_deepseek(t, which, i, b);
                if (e) {
                    if (i > nxt.at[nxt.len - 1] && cuts_push(&nxt, i)) goto fail;
                    if (cuts_push(&nxt, e)) goto fail;
                    i = e;
                } else {
                    i++;
                }
            }
            if (b > nxt.at[nxt.len - 1] && cuts_push(&nxt, b)) goto fail;
        }
        Cuts swap = cur;
        cur = nxt;
        nxt = swap;
    }
    free(nxt.at);
    *cuts = cur;
    return 0;
fail:
    free(cur.at);
    free(nxt.at);
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Source code repeats its pieces (indentation, `self`, ` = `): within one call, a piece seen
 * before copies the ids it got then from the output instead of merging again. A direct-mapped
 * table: a collision just forgets the older piece. */

#define CACHE_SLOTS 4096
#define CACHE_MAX_BYTES 64
#define CACHE_MIN_TEXT 2048

typedef struct {
    uint64_t hash; /* 0 = empty */
    size_t at, len;     /* the piece: input bytes [at, at + len) */
    size_t first, n;    /* its ids: out->ids[first .. first + n) */
} CacheSlot;

typedef struct {
    CacheSlot slots[CACHE_SLOTS];
} PieceCache;

static void cached_word(const Core *c, PieceCache *cache, const uint8_t *s, size_t at, size_t len, Ids *out) {
    if (len < 2 || len > CACHE_MAX_BYTES) {
        bpe_word(c, s + at, len, out);
        return;
    }
    uint64_t h = fnv1a(s + at, len) | 1;
    CacheSlot *slot = &cache->slots[h & (CACHE_SLOTS - 1)];
    if (slot->hash == h && slot->len == len && memcmp(s + slot->at, s + at, len) == 0) {
        for (size_t k = 0; k < slot->n; k++) ids_push(out, out->ids[slot->first + k]);
        return;
    }
    size_t first = out->len;
    bpe_word(c, s + at, len, out);
    if (out->failed) return;
    slot->hash = h;
    slot->at = at;
    slot->len = len;
    slot->first = first;
    slot->n = out->len - first;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding: UTF-8 → code points and flags → pieces → BPE. Runs without the GIL. */

static int encode_bytes(const Core *c, const uint8_t *s, size_t len, Ids *out) {
    uint32_t *cp = malloc((len + 1) * sizeof(uint32_t));
    uint8_t *fl = malloc(len + 1);
    size_t *byte_at = malloc((len + 1) * sizeof(size_t));
    if (!cp || !fl || !byte_at) {
        free(cp); free(fl); free(byte_at);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = s[i];
        uint32_t v;
        size_t k;
        if (b < 0x80) { v = b; k = 1; }
        else if ((b & 0xE0) == 0xC0 && i + 1 < len) { v = ((b & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); k = 2; }
        else if ((b & 0xF0) == 0xE0 && i + 2 < len) {
            v = ((b & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu); k = 3;
        } else if ((b & 0xF8) == 0xF0 && i + 3 < len) {
            v = ((b & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
            k = 4;
        } else { v = 0xFFFD; k = 1; } /* not UTF-8: the Python layer never sends this */
        cp[n] = v;
        fl[n] = (uint8_t)cpt_flags(v);
        byte_at[n++] = i;
        i += k;
    }
    byte_at[n] = len;
    Text t = {cp, fl, n};
    int status = 0;
    if (c->pre == PRE_DEEPSEEK_CODER) {
        Cuts cuts = {0};
        if (split_deepseek(&t, &cuts)) {
            status = -1;
        } else {
            for (size_t k = 0; k + 1 < cuts.len; k++) {
                size_t a = byte_at[cuts.at[k]], b = byte_at[cuts.at[k + 1]];
                bpe_word(c, s + a, b - a, out);
            }
            free(cuts.at);
        }
    } else {
        /* Short texts (the engine counts line by line) don't repeat enough to pay for a cache. */
        PieceCache *cache = len >= CACHE_MIN_TEXT ? calloc(1, sizeof(PieceCache)) : NULL;
        for (size_t i = 0; i < n;) {
            size_t e = c->pre == PRE_GPT2 ? match_gpt2(&t, i) : match_llama3(&t, i, c->pre == PRE_LLAMA3 ? 3 : 1);
            if (cache)
                cached_word(c, cache, s, byte_at[i], byte_at[e] - byte_at[i], out);
            else
                bpe_word(c, s + byte_at[i], byte_at[e] - byte_at[i], out);
            i = e;
        }
        free(cache);
    }
    free(cp);
    free(fl);
    free(byte_at);
    return status || out->failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Python glue. */

static void Core_dealloc(Core *self) {
    free(self->blob);
    free(self->offsets);
    u64map_free(&self->merges);
    free(self->words.slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Core(tokens: list[bytes], merges: list[tuple[int, int, int]], byte_ids: list[int], pre: int) */
static int Core_init(Core *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"tokens", "merges", "byte_ids", "pre", NULL};
    PyObject *tokens, *merges, *byte_ids;
    int pre;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!i", kwlist, &PyList_Type, &tokens, &PyList_Type, &merges,
                                     &PyList_Type, &byte_ids, &pre))
        return -1;
    if (pre < PRE_QWEN2 || pre > PRE_DEEPSEEK_CODER) {
        PyErr_Format(PyExc_ValueError, "unknown pre-tokenizer %d", pre);
        return -1;
    }
    if (PyList_GET_SIZE(byte_ids) != 256) {
        PyErr_SetString(PyExc_ValueError, "byte_ids must hold 256 ids");
        return -1;
    }
    Py_ssize_t n_vocab = PyList_GET_SIZE(tokens);
    if (n_vocab <= 0 || n_vocab >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "the vocabulary is empty or too large");
        return -1;
    }
    if (self->blob) {
        PyErr_SetString(PyExc_RuntimeError, "Core is already initialised");
        return -1;
    }
    self->pre = pre;
    self->n_vocab = (uint32_t)n_vocab;
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n_vocab; i++) {
        PyObject *tok = PyList_GET_ITEM(tokens, i);
        if (!PyBytes_Check(tok)) {
            PyErr_SetString(PyExc_TypeError, "tokens must be bytes");
            return -1;
        }
        total += (size_t)PyBytes_GET_SIZE(tok);
    }
    self->blob = malloc(total ? total : 1);
    self->offsets = malloc(((size_t)n_vocab + 1) * sizeof(size_t));
    if (!self->blob || !self->offsets) {
        PyErr_NoMemory();
        return -1;
    }
    size_t words_size = 16;
    while (words_size < (size_t)n_vocab * 2) words_size <<= 1;
    self->words.slots = malloc(words_size * sizeof(int32_t));
    if (!self->words.slots) {
        PyErr_NoMemory();
        return -1;
    }
    memset(self->words.slots, 0xff, words_size * sizeof(int32_t));
    self->words.mask = words_size - 1;
    size_t at = 0;
    for (Py_ssize_t i = 0; i < n_vocab; i++) {
        PyObject *tok = PyList_GET_ITEM(tokens, i);
        size_t len = (size_t)PyBytes_GET_SIZE(tok);
        memcpy(self->blob + at, PyBytes_AS_STRING(tok), len);
        self->offsets[i] = at;
        at += len;
    }
    self->offsets[n_vocab] = at;
    for (Py_ssize_t i = 0; i < n_vocab; i++) { /* the first token with given bytes wins */
        const uint8_t *p = self->blob + self->offsets[i];
        size_t len = self->offsets[i + 1] - self->offsets[i];
        if (words_get(self, p, len) >= 0) continue;
        size_t slot = fnv1a(p, len) & self->words.mask;
        while (self->words.slots[slot] >= 0) slot = (slot + 1) & self->words.mask;
        self->words.slots[slot] = (int32_t)i;
    }
    for (int b = 0; b < 256; b++) {
        long id = PyLong_AsLong(PyList_GET_ITEM(byte_ids, b));
        if (id == -1 && PyErr_Occurred()) return -1;
        if (id < 0 || id >= n_vocab) {
            PyErr_Format(PyExc_ValueError, "byte %d has no token", b);
            return -1;
        }
        self->byte_ids[b] = (int32_t)id;
    }
    Py_ssize_t n_merges = PyList_GET_SIZE(merges);
    if (u64map_init(&self->merges, (size_t)n_merges + 1)) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t rank = 0; rank < n_merges; rank++) {
        unsigned long left, right, merged;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(merges, rank), "kkk", &left, &right, &merged)) return -1;
        if (left >= (unsigned long)n_vocab || right >= (unsigned long)n_vocab || merged >= (unsigned long)n_vocab) {
            PyErr_Format(PyExc_ValueError, "merge %zd names a token outside the vocabulary", rank);
            return -1;
        }
        u64map_put(&self->merges, ((uint64_t)left << 32) | right, ((uint64_t)rank << 32) | merged);
    }
    return 0;
}

static int run_encode(Core *self, PyObject *arg, Ids *out) {
    if (!self->blob || !self->merges.keys) {
        PyErr_SetString(PyExc_RuntimeError, "Core was not initialised");
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return -1;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = encode_bytes(self, view.buf, (size_t)view.len, out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status) {
        free(out->ids);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *Core_encode(Core *self, PyObject *arg) {
    Ids out = {0};
    if (run_encode(self, arg, &out)) return NULL;
    PyObject *list = PyList_New((Py_ssize_t)out.len);
    if (!list) {
        free(out.ids);
        return NULL;
    }
    for (size_t i = 0; i < out.len; i++) {
        PyObject *id = PyLong_FromUnsignedLong(out.ids[i]);
        if (!id) {
            Py_DECREF(list);
            free(out.ids);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, id);
    }
    free(out.ids);
    return list;
}

static PyObject *Core_count(Core *self, PyObject *arg) {
    Ids out = {0};
    if (run_encode(self, arg, &out)) return NULL;
    free(out.ids);
    return PyLong_FromSize_t(out.len);
}

static PyMethodDef Core_methods[] = {
    {"encode", (PyCFunction)Core_encode, METH_O, "encode(data: bytes) -> list[int]: ids of UTF-8 text"},
    {"count", (PyCFunction)Core_count, METH_O, "count(data: bytes) -> int: how many ids encode() returns"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native._bpe.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Byte-level BPE: pre-tokenizer split and merges.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_bpe", .m_doc = "The byte-level BPE fast path.", .m_size = -1,
};

PyMODINIT_FUNC PyInit__bpe(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
