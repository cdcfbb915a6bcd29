/* common/sl_sha256.c against the FIPS 180-4 example digests (empty, "abc", the
 * two-block 448-bit message, a million 'a' fed in uneven pieces) and a file. */
#include <stdio.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_sha256.h"
#include "sl_test.h"

static void digest(const char *msg, const char *want)
{
    sl_sha256_ctx c;
    char hex[65];
    sl_sha256_init(&c);
    sl_sha256_update(&c, msg, strlen(msg));
    sl_sha256_hex(&c, hex);
    CHECK_MSG(!strcmp(hex, want), "sha256(\"%s\") = %s, want %s", msg, hex, want);
}

int main(void)
{
    digest("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
           "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static char a[1000000];
    memset(a, 'a', sizeof a);
    sl_sha256_ctx c;
    char hex[65];
    sl_sha256_init(&c);
    for (size_t at = 0, step = 1; at < sizeof a; at += step, step = step * 3 % 1009 + 1)
        sl_sha256_update(&c, a + at, at + step > sizeof a ? sizeof a - at : step);
    sl_sha256_hex(&c, hex);
    CHECK_MSG(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "million a: %s", hex);
    char path[1100];
    snprintf(path, sizeof path, "%s/a.bin", sl_test_tmpdir());
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(a, 1, sizeof a, f) == sizeof a && fclose(f) == 0);
    CHECK(sl_sha256_file(path, hex) == 0 &&
          !strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    CHECK(sl_sha256_file("/nonexistent/w.safetensors", hex) < 0 && strstr(sl_lasterr(), "/nonexistent/w.safetensors"));
    return sl_test_finish("sha256");
}
