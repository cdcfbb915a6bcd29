/* Byte-level BPE tokeniser (common/bpe.c) against the Hugging Face RoBERTa
 * tokenizer: tests/golden/clap_text/tokens.json (tools/gen_golden_clap_text.py
 * tokenizer) holds the ids RobertaTokenizer gives for a corpus of strings with a
 * small vocabulary trained by the tokenizers package; plus malformed inputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bpe.h"
#include "common/sl_error.h"
#include "common/sl_json.h"
#include "sl_golden.h"
#include "sl_test.h"

static char *slurp(const char *name, size_t *len) {
    const char *path = slg_file_in("clap_text", name);
    char *buf = sl_test_slurp(path, len);
    if (!buf) fprintf(stderr, "cannot open %s\n", path);
    return buf;
}

static void test_classes(void) {
    CHECK(sl_bpe_class_of('a') == SL_BPE_LETTER);
    CHECK(sl_bpe_class_of('Z') == SL_BPE_LETTER);
    CHECK(sl_bpe_class_of(0x94A2) == SL_BPE_LETTER); /* CJK */
    CHECK(sl_bpe_class_of('7') == SL_BPE_NUMBER);
    CHECK(sl_bpe_class_of(0xBD) == SL_BPE_NUMBER); /* vulgar fraction one half */
    CHECK(sl_bpe_class_of(' ') == SL_BPE_SPACE);
    CHECK(sl_bpe_class_of('\t') == SL_BPE_SPACE);
    CHECK(sl_bpe_class_of(0x3000) == SL_BPE_SPACE);
    CHECK(sl_bpe_class_of(0x200B) == SL_BPE_OTHER); /* zero width space is not White_Space */
    CHECK(sl_bpe_class_of('!') == SL_BPE_OTHER);
    CHECK(sl_bpe_class_of(0x301) == SL_BPE_OTHER);   /* combining acute */
    CHECK(sl_bpe_class_of(0x1F3B9) == SL_BPE_OTHER); /* emoji */
    CHECK(sl_bpe_class_of(0x10FFFF) == SL_BPE_OTHER);
    for (size_t i = 1; i < sl_bpe_n_ranges; i++) CHECK(sl_bpe_ranges[i - 1].hi < sl_bpe_ranges[i].lo);
}

static void test_corpus(const sl_bpe *t) {
    size_t len = 0;
    char *text = slurp("tokens.json", &len);
    CHECK(text != NULL);
    if (!text) return;
    sl_json doc;
    CHECK(sl_json_parse(text, len, &doc) == 0);
    size_t max_len = (size_t)sl_json_get_num(&doc, "max_length", 0);
    const sl_json *cases = sl_json_get(&doc, "cases");
    CHECK(max_len == 77);
    CHECK(sl_json_len(cases) > 300);
    int32_t ids[77];
    size_t bad = 0, n_trunc = 0;
    for (size_t c = 0; c < sl_json_len(cases) && max_len == 77; c++) {
        const sl_json *cs = sl_json_at(cases, c), *want = sl_json_get(cs, "ids");
        const char *s = sl_json_get_str(cs, "text", NULL);
        size_t n = 0;
        int trunc = -1;
        int rc = sl_bpe_encode(t, s, strlen(s), ids, max_len, &n, &trunc);
        int ok = rc == 0 && n == sl_json_len(want) && trunc == sl_json_get_bool(cs, "truncated", -1);
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == (int32_t)sl_json_at(want, i)->num;
        for (size_t i = n; ok && i < max_len; i++) ok = ids[i] == sl_bpe_pad(t);
        n_trunc += trunc == 1;
        if (!ok && bad++ < 10) {
            fprintf(stderr, "case %zu (%.40s): rc %d n %zu (want %zu) truncated %d; got", c, s, rc, n,
                    sl_json_len(want), trunc);
            for (size_t i = 0; i < n && i < 20; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
    }
    CHECK_MSG(bad == 0, "%zu of %zu cases differ from RobertaTokenizer", bad, sl_json_len(cases));
    CHECK(n_trunc >= 5);
    sl_json_free(&doc);
    free(text);
}

static void test_errors(const sl_bpe *t, const char *vocab, size_t vlen, const char *merges, size_t mlen) {
    int32_t ids[8];
    size_t n = 0;
    int trunc = 0;
    static const char *const bad_utf8[] = {"\xC3", "a\xFF", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        CHECK(sl_bpe_encode(t, bad_utf8[i], strlen(bad_utf8[i]), ids, 8, &n, &trunc) == SL_EINVAL);
        CHECK(strstr(sl_lasterr(), "not valid UTF-8") != NULL);
    }
    CHECK(sl_bpe_encode(t, "a", 1, ids, 1, &n, &trunc) == SL_EINVAL);
    /* two ids: only <s></s> fits, anything else is cut */
    CHECK(sl_bpe_encode(t, "a", 1, ids, 2, &n, &trunc) == 0 && n == 2 && trunc == 1);
    CHECK(sl_bpe_encode(t, "", 0, ids, 2, &n, &trunc) == 0 && n == 2 && trunc == 0);
    CHECK(ids[0] == sl_bpe_bos(t) && ids[1] == sl_bpe_eos(t));

    sl_bpe *u = NULL;
    CHECK(sl_bpe_open(&u, "[1]", 3, merges, mlen, "x.json") == SL_EFORMAT && !u);
    CHECK(sl_bpe_open(&u, "{\"a\": 1}", 8, merges, mlen, "x.json") == SL_EFORMAT);
    CHECK(strstr(sl_lasterr(), "x.json") && strstr(sl_lasterr(), "byte"));
    CHECK(sl_bpe_open(&u, "{\"a\": ", 6, merges, mlen, "x.json") == SL_EFORMAT);
    CHECK(sl_bpe_open(&u, vocab, vlen, "#version: 0.2\nzzzq qqqz\n", 24, "m.txt") == SL_EFORMAT);
    CHECK(strstr(sl_lasterr(), "m.txt: merges line 2") != NULL);
    CHECK(sl_bpe_open(&u, vocab, vlen, "#version: 0.2\nab\n", 17, "m.txt") == SL_EFORMAT);
    /* no merges at all: one id per byte symbol */
    CHECK(sl_bpe_open(&u, vocab, vlen, "", 0, "m.txt") == 0 && u);
    if (u) {
        CHECK(sl_bpe_encode(u, "ab", 2, ids, 8, &n, &trunc) == 0 && n == 4);
        sl_bpe_close(u);
    }
}

int main(void) {
    test_classes();
    size_t vlen = 0, mlen = 0;
    char *vocab = slurp("vocab.json", &vlen), *merges = slurp("merges.txt", &mlen);
    CHECK(vocab && merges);
    sl_bpe *t = NULL;
    if (vocab && merges) CHECK(sl_bpe_open(&t, vocab, vlen, merges, mlen, "vocab.json") == 0);
    if (t) {
        CHECK(sl_bpe_bos(t) == 0 && sl_bpe_pad(t) == 1 && sl_bpe_eos(t) == 2);
        test_corpus(t);
        test_errors(t, vocab, vlen, merges, mlen);
        sl_bpe_close(t);
    }
    free(vocab);
    free(merges);
    return sl_test_finish("bpe");
}
