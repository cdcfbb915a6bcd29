/* Byte-level BPE tokeniser (common/bpe.h). Symbols are vocabulary ids from the
 * start: each byte maps to the id of its byte-to-unicode character, and a merge
 * is a pair of ids with a rank and the id of the merged token, so the merge loop
 * never builds strings. */
#include "common/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_json.h"

int sl_bpe_class_of(uint32_t cp) {
    size_t lo = 0, hi = sl_bpe_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < sl_bpe_ranges[mid].lo)
            hi = mid;
        else if (cp > sl_bpe_ranges[mid].hi)
            lo = mid + 1;
        else
            return sl_bpe_ranges[mid].cls;
    }
    return SL_BPE_OTHER;
}

/* ---- open addressing hash tables ---- */

typedef struct {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty slot */
    int32_t rank, merged;
} pair_slot;

typedef struct {
    char *key; /* NULL = empty slot; points into the parsed vocabulary */
    int32_t id;
} str_slot;

struct sl_bpe {
    int32_t byte_id[256];
    pair_slot *pairs;
    size_t pair_mask;
    int32_t bos, eos, pad, unk, mask;
    size_t vocab_size;
};

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return mix64(h);
}

static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap <<= 1;
    return cap;
}

static int32_t str_find(const str_slot *tab, size_t mask, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        if (!tab[i].key) return -1;
        if (strlen(tab[i].key) == n && memcmp(tab[i].key, s, n) == 0) return tab[i].id;
    }
}

static const pair_slot *pair_find(const sl_bpe *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (size_t i = mix64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        if (t->pairs[i].key == key) return &t->pairs[i];
        if (!t->pairs[i].key) return NULL;
    }
}

/* GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes take the code points from U+0100 upwards in byte order. */
static uint32_t byte_char(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

static const char *const special_text[5] = {"<s>", "</s>", "<unk>", "<pad>", "<mask>"};

static int32_t special_id(const sl_bpe *t, int k) {
    const int32_t ids[5] = {t->bos, t->eos, t->unk, t->pad, t->mask};
    return ids[k];
}

static int build(sl_bpe *t, const sl_json *vocab, const char *merges, size_t merges_len, const char *what) {
    size_t nv = vocab->n, mask = table_size(nv) - 1;
    str_slot *tab = calloc(mask + 1, sizeof *tab);
    if (!tab) return SL_ENOMEM;
    int rc = 0;
    for (size_t v = 0; v < nv && !rc; v++) {
        const sl_json *val = &vocab->items[v];
        if (val->type != SL_JSON_NUMBER || val->num < 0 || val->num > 2147483647.0 || val->num != (double)(int32_t)val->num) {
            rc = sl_seterr(SL_EFORMAT, "%s: vocabulary entry \"%s\" is not a token id", what, vocab->keys[v]);
            break;
        }
        int32_t id = (int32_t)val->num;
        if ((size_t)id + 1 > t->vocab_size) t->vocab_size = (size_t)id + 1;
        const char *key = vocab->keys[v];
        size_t n = strlen(key), i = hash_bytes(key, n) & mask;
        while (tab[i].key && strcmp(tab[i].key, key) != 0) i = (i + 1) & mask;
        tab[i].key = vocab->keys[v]; /* a repeated key: the last one wins, as json.load */
        tab[i].id = id;
    }
    for (int b = 0; b < 256 && !rc; b++) {
        char u[4];
        size_t n = put_utf8(u, byte_char(b));
        t->byte_id[b] = str_find(tab, mask, u, n);
        if (t->byte_id[b] < 0) rc = sl_seterr(SL_EFORMAT, "%s: the vocabulary lacks the symbol of byte 0x%02X", what, b);
    }
    for (int k = 0; k < 5 && !rc; k++) {
        int32_t id = str_find(tab, mask, special_text[k], strlen(special_text[k]));
        if (id < 0) rc = sl_seterr(SL_EFORMAT, "%s: the vocabulary lacks the special token %s", what, special_text[k]);
        int32_t *dst[5] = {&t->bos, &t->eos, &t->unk, &t->pad, &t->mask};
        *dst[k] = id;
    }
    /* merges: skip the "#version" line as the tokenizers reader does */
    size_t n_lines = 0;
    for (size_t i = 0; i < merges_len; i++) n_lines += merges[i] == '\n';
    t->pair_mask = table_size(n_lines + 1) - 1;
    t->pairs = rc ? NULL : calloc(t->pair_mask + 1, sizeof *t->pairs);
    if (!rc && !t->pairs) rc = SL_ENOMEM;
    char *buf = NULL;
    size_t pos = 0, line = 0;
    int32_t rank = 0;
    while (!rc && pos < merges_len) {
        size_t end = pos;
        while (end < merges_len && merges[end] != '\n') end++;
        const char *s = merges + pos;
        size_t n = end - pos;
        pos = end + 1;
        line++;
        if (n && s[n - 1] == '\r') n--;
        if (n == 0 || (line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0)) continue;
        const char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
            rc = sl_seterr(SL_EFORMAT, "%s: merges line %zu is not two tokens separated by one space", what, line);
            break;
        }
        size_t la = (size_t)(sp - s), lb = n - la - 1;
        char *nb = realloc(buf, n + 1);
        if (!nb) {
            rc = SL_ENOMEM;
            break;
        }
        buf = nb;
        memcpy(buf, s, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t a = str_find(tab, mask, s, la), b = str_find(tab, mask, sp + 1, lb);
        int32_t m = str_find(tab, mask, buf, la + lb);
        if (a < 0 || b < 0 || m < 0) {
            rc = sl_seterr(SL_EFORMAT, "%s: merges line %zu: %s is not in the vocabulary", what, line,
                           a < 0 ? "the left token" : b < 0 ? "the right token" : "the merged token");
            break;
        }
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        size_t i = mix64(key) & t->pair_mask;
        while (t->pairs[i].key && t->pairs[i].key != key) i = (i + 1) & t->pair_mask;
        if (!t->pairs[i].key) { /* a repeated pair keeps its first (best) rank */
            t->pairs[i].key = key;
            t->pairs[i].rank = rank;
            t->pairs[i].merged = m;
        }
        rank++;
    }
    free(buf);
    free(tab);
    return rc;
}

int sl_bpe_open(sl_bpe **out, const char *vocab_json, size_t vocab_len, const char *merges_txt,
                size_t merges_len, const char *what) {
    *out = NULL;
    sl_json vocab;
    int rc = sl_json_parse(vocab_json, vocab_len, &vocab);
    if (rc) return rc == SL_ENOMEM ? rc : sl_seterr(rc, "%s: vocabulary: %s", what, sl_lasterr());
    if (vocab.type != SL_JSON_OBJECT || vocab.n == 0) {
        sl_json_free(&vocab);
        return sl_seterr(SL_EFORMAT, "%s: the vocabulary is not a non-empty JSON object", what);
    }
    sl_bpe *t = calloc(1, sizeof *t);
    if (!t) {
        sl_json_free(&vocab);
        return SL_ENOMEM;
    }
    rc = build(t, &vocab, merges_txt, merges_len, what);
    sl_json_free(&vocab);
    if (rc) {
        sl_bpe_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void sl_bpe_close(sl_bpe *t) {
    if (!t) return;
    free(t->pairs);
    free(t);
}

int32_t sl_bpe_bos(const sl_bpe *t) { return t->bos; }
int32_t sl_bpe_eos(const sl_bpe *t) { return t->eos; }
int32_t sl_bpe_pad(const sl_bpe *t) { return t->pad; }
size_t sl_bpe_vocab_size(const sl_bpe *t) { return t->vocab_size; }

/* ---- encoding ---- */

/* Decodes UTF-8 strictly (no overlongs, surrogates or values past U+10FFFF):
 * cps[i] is the code point starting at byte off[i]; off[n] = len. */
static int decode_utf8(const char *text, size_t len, uint32_t *cps, size_t *off, size_t *n_out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (k == 0 || i + k > len) return sl_seterr(SL_EINVAL, "text is not valid UTF-8 at byte %zu", i);
        if (k > 1) c &= 0x3Fu >> (k - 1);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return sl_seterr(SL_EINVAL, "text is not valid UTF-8 at byte %zu", i);
            c = (c << 6) | (s[i + j] & 0x3Fu);
        }
        static const uint32_t min_for[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min_for[k] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return sl_seterr(SL_EINVAL, "text is not valid UTF-8 at byte %zu", i);
        cps[n] = c;
        off[n++] = i;
        i += k;
    }
    off[n] = len;
    *n_out = n;
    return 0;
}

/* Rust's char::is_whitespace (the White_Space property), which the lstrip of an
 * added token uses. */
static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct {
    int32_t *ids;      /* output after <s> */
    size_t cap, n;     /* room for ids, ids written */
    int truncated;
    int32_t *sym;      /* scratch: symbols of one piece (a symbol keeps the index of its first byte) */
    int32_t *nx, *pv;  /* next / previous live symbol, -1 past the ends */
    int64_t *heap;     /* candidate pairs: rank << 32 | index of the left symbol (min-heap) */
} enc_state;

static void emit(enc_state *st, int32_t id) {
    if (st->n < st->cap)
        st->ids[st->n++] = id;
    else
        st->truncated = 1;
}

static int32_t pair_rank(const sl_bpe *t, int32_t a, int32_t b, int32_t *merged) {
    const pair_slot *p = pair_find(t, a, b);
    if (!p) return INT32_MAX;
    if (merged) *merged = p->merged;
    return p->rank;
}

static void heap_push(int64_t *h, size_t *n, int64_t v) {
    size_t i = (*n)++;
    while (i && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static int64_t heap_pop(int64_t *h, size_t *n) {
    int64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

static void push_pair(const sl_bpe *t, enc_state *st, size_t *hn, int32_t left) {
    int32_t right = left >= 0 ? st->nx[left] : -1;
    if (right < 0) return;
    int32_t r = pair_rank(t, st->sym[left], st->sym[right], NULL);
    if (r != INT32_MAX) heap_push(st->heap, hn, (int64_t)r << 32 | (uint32_t)left);
}

/* BPE of one pre-token (bytes s[0..n)): the best-ranked pair first, the leftmost of
 * equal ranks, until no pair merges. Candidates wait in a heap ordered by (rank, left
 * position) and are checked when popped (a merge may have changed either side), so a
 * long word costs n log n, not n^2. */
static void bpe_piece(const sl_bpe *t, enc_state *st, const unsigned char *s, size_t n) {
    int32_t *sym = st->sym, *nx = st->nx, *pv = st->pv;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        nx[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        pv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, st, &hn, (int32_t)i);
    while (hn) {
        int64_t top = heap_pop(st->heap, &hn);
        int32_t left = (int32_t)(uint32_t)(top & 0xffffffff), rank = (int32_t)(top >> 32), right = nx[left];
        int32_t merged = 0;
        /* stale: left was merged away (its sym is reused below only while live), or the pair changed */
        if (sym[left] < 0 || right < 0 || pair_rank(t, sym[left], sym[right], &merged) != rank) continue;
        sym[left] = merged;
        sym[right] = -1;
        nx[left] = nx[right];
        if (nx[left] >= 0) pv[nx[left]] = left;
        push_pair(t, st, &hn, pv[left]);
        push_pair(t, st, &hn, left);
    }
    for (int32_t i = 0; n && i >= 0; i = nx[i]) emit(st, sym[i]);
}

static size_t run_of(const uint32_t *cps, size_t i, size_t n, int cls) {
    while (i < n && sl_bpe_class_of(cps[i]) == cls) i++;
    return i;
}

/* End of the pre-token that starts at code point i of cps[0..n) (the GPT-2 pattern). */
static size_t piece_end(const uint32_t *cps, size_t i, size_t n) {
    if (cps[i] == '\'' && i + 1 < n) {
        uint32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    size_t j = i;
    if (cps[i] == ' ' && i + 1 < n && sl_bpe_class_of(cps[i + 1]) != SL_BPE_SPACE) j = i + 1;
    int cls = sl_bpe_class_of(cps[j]);
    if (cls != SL_BPE_SPACE) return run_of(cps, j, n, cls);
    size_t end = run_of(cps, i, n, SL_BPE_SPACE);
    if (end == n || end - i < 2) return end; /* \s+(?!\S) to the end, or the plain \s+ of one */
    return end - 1;                          /* \s+(?!\S): leave the last one to the next piece */
}

static void encode_span(const sl_bpe *t, enc_state *st, const char *text, const uint32_t *cps,
                        const size_t *off, size_t a, size_t b) {
    for (size_t i = a; i < b && !st->truncated;) {
        size_t e = piece_end(cps + a, i - a, b - a) + a;
        bpe_piece(t, st, (const unsigned char *)text + off[i], off[e] - off[i]);
        i = e;
    }
}

/* Special token written at code point i: its index (0..4) and end, or -1. */
static int special_at(const uint32_t *cps, size_t i, size_t n, size_t *end) {
    int best = -1;
    size_t best_len = 0;
    for (int k = 0; k < 5; k++) {
        size_t len = strlen(special_text[k]);
        if (len <= best_len || i + len > n) continue;
        size_t j = 0;
        while (j < len && cps[i + j] == (unsigned char)special_text[k][j]) j++;
        if (j == len) {
            best = k;
            best_len = len;
        }
    }
    *end = i + best_len;
    return best;
}

int sl_bpe_encode(const sl_bpe *t, const char *text, size_t len, int32_t *ids, size_t max_len,
                  size_t *n_tokens, int *truncated) {
    if (max_len < 2) return sl_seterr(SL_EINVAL, "tokeniser: max_len %zu < 2", max_len);
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    size_t *off = malloc((len + 1) * sizeof *off);
    int32_t *scratch = malloc((3 * len + 3) * sizeof *scratch);
    int64_t *heap = malloc((3 * len + 3) * sizeof *heap); /* n pairs + 2 per merge, at most 3n */
    int rc = 0;
    if (!cps || !off || !scratch || !heap) rc = SL_ENOMEM;
    size_t n = 0;
    if (!rc) rc = decode_utf8(text, len, cps, off, &n);
    if (!rc) {
        enc_state st = {ids + 1, max_len - 2, 0, 0, scratch, scratch + len + 1, scratch + 2 * len + 2, heap};
        size_t start = 0;
        for (size_t i = 0; i < n && !st.truncated;) {
            size_t end;
            int k = special_at(cps, i, n, &end);
            if (k < 0) {
                i++;
                continue;
            }
            size_t stop = i;
            if (k == 4) /* <mask>: lstrip */
                while (stop > start && is_white_space(cps[stop - 1])) stop--;
            encode_span(t, &st, text, cps, off, start, stop);
            if (!st.truncated) emit(&st, special_id(t, k));
            start = i = end;
        }
        if (!st.truncated) encode_span(t, &st, text, cps, off, start, n);
        ids[0] = t->bos;
        ids[1 + st.n] = t->eos;
        for (size_t i = st.n + 2; i < max_len; i++) ids[i] = t->pad;
        *n_tokens = st.n + 2;
        *truncated = st.truncated;
    }
    free(cps);
    free(off);
    free(scratch);
    free(heap);
    return rc;
}
