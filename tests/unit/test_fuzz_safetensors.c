/* Runs the safetensors fuzz target's entry function over its fixed set of
 * malformed inputs (tests/fuzz/fuzz_safetensors.c) without libFuzzer, so every
 * commit exercises the parser on truncations, bit flips, random bytes and
 * adversarial headers. Each input is copied into a buffer of exactly its size,
 * so a read past the end is caught under ASan (make SANITIZE=address). Cases
 * with a known answer also check that the reader accepts or rejects them and
 * that a rejection names the input and says why. */
#include "common/sl_error.h"
#include "tests/fuzz/fuzz_safetensors.c"
#include "tests/unit/sl_test.h"

#include <string.h>

typedef struct {
    size_t ok, failed, total;
} tally;

static void run_case(const uint8_t *buf, size_t len, const char *label, int expect, void *ctx)
{
    tally *t = ctx;
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, buf, len);
    LLVMFuzzerTestOneInput(len ? copy : NULL, len);
    sl_st_file *f = NULL;
    sl_clearerr();
    int rc = sl_st_open_buffer(&f, len ? copy : NULL, len, "fuzz");
    t->total++;
    if (rc == 0)
        t->ok++;
    else
        t->failed++;
    if (expect == FZ_OK)
        CHECK_MSG(rc == 0, "%s: rejected: %s", label, sl_lasterr());
    if (expect == FZ_FAIL)
        CHECK_MSG(rc == SL_EFORMAT, "%s (%zu bytes): accepted or wrong code %d", label, len, rc);
    if (rc) {
        CHECK_MSG(f == NULL, "%s: *out set on failure", label);
        CHECK_MSG(!strncmp(sl_lasterr(), "fuzz: ", 6) && strlen(sl_lasterr()) > 10, "%s: message '%s'", label,
                  sl_lasterr());
    }
    sl_st_close(f);
    free(copy);
}

int main(void)
{
    tally t = {0};
    size_t n = sl_fuzz_st_cases(run_case, &t);
    CHECK(n == t.total);
    CHECK(t.total > 4000);
    CHECK(t.ok >= 8);
    printf("%zu inputs: %zu accepted, %zu rejected\n", t.total, t.ok, t.failed);

    /* a few messages users will see, spelled out */
    static const struct {
        const char *json;
        size_t dlen;
        const char *want;
    } msg[] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "hold 4 bytes but dtype F32 and its shape need 8"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2, "reach past the end of the data"},
        {"{\"t\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype \"Q4\""},
        {"{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ value of \"a\" is not a string"},
        {"{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "__metadata__ key 'a' appears twice"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5, "trailing bytes"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "header ends where"},
        {"{\"t\":{{{{", 0, "expected"},
    };
    for (size_t i = 0; i < sizeof msg / sizeof msg[0]; i++) {
        size_t len;
        uint8_t *b = fz_build(msg[i].json, strlen(msg[i].json), strlen(msg[i].json), msg[i].dlen, &len);
        sl_st_file *f = NULL;
        int rc = sl_st_open_buffer(&f, b, len, "m.safetensors");
        CHECK(rc == SL_EFORMAT);
        CHECK_MSG(strstr(sl_lasterr(), msg[i].want) && !strncmp(sl_lasterr(), "m.safetensors: ", 15),
                  "message '%s' lacks '%s'", sl_lasterr(), msg[i].want);
        free(b);
    }
    {
        size_t len;
        uint8_t *b = fz_build("{}", 2, 200000000ULL, 0, &len);
        sl_st_file *f = NULL;
        CHECK(sl_st_open_buffer(&f, b, len, "h") == SL_EFORMAT);
        CHECK_MSG(strstr(sl_lasterr(), "over the limit of 100 MB"), "%s", sl_lasterr());
        free(b);
        b = fz_build("{}", 2, 50, 0, &len);
        CHECK(sl_st_open_buffer(&f, b, len, "h") == SL_EFORMAT);
        CHECK_MSG(strstr(sl_lasterr(), "header length 50 but only 2 bytes follow"), "%s", sl_lasterr());
        free(b);
    }
    return sl_test_finish("fuzz_safetensors");
}
