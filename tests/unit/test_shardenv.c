/* Shard index and count from --shard, --num-shards, Slurm arrays and
 * Kubernetes Indexed Jobs: every path of sl_shard_resolve and every error. */
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "pipeline/shardenv.h"
#include "sl_test.h"

static const char *const vars[] = {
    "SLURM_ARRAY_TASK_ID",  "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX",  "STEMLINE_NUM_SHARDS",  "STEMLINE_SHARD_BASE",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* Expects success with index/count and a source containing want_src. */
static void ok_case(int line, const char *shard, int nshards, int want_i, int want_n, const char *want_src)
{
    int i = -7, n = -7;
    char src[256] = "untouched";
    int rc = sl_shard_resolve(shard, nshards, &i, &n, src, sizeof src);
    CHECK_MSG(rc == 0, "line %d: rc %d: %s", line, rc, sl_lasterr());
    CHECK_MSG(i == want_i && n == want_n, "line %d: got %d/%d, want %d/%d", line, i, n, want_i, want_n);
    CHECK_MSG(strstr(src, want_src) != NULL, "line %d: source '%s' lacks '%s'", line, src, want_src);
}

/* Expects SL_EUSAGE with a message containing each of the given strings; index
 * and count must be left at 0 and 1. */
static void err_case(int line, const char *shard, int nshards, const char *m1, const char *m2)
{
    int i = -7, n = -7;
    char src[256] = "untouched";
    int rc = sl_shard_resolve(shard, nshards, &i, &n, src, sizeof src);
    CHECK_MSG(rc == SL_EUSAGE, "line %d: rc %d (%d/%d, '%s')", line, rc, i, n, src);
    CHECK_MSG(i == 0 && n == 1, "line %d: on error got %d/%d", line, i, n);
    const char *m = sl_lasterr();
    CHECK_MSG(strstr(m, m1) != NULL, "line %d: message '%s' lacks '%s'", line, m, m1);
    if (m2)
        CHECK_MSG(strstr(m, m2) != NULL, "line %d: message '%s' lacks '%s'", line, m, m2);
}

#define OK(shard, ns, i, n, src) ok_case(__LINE__, shard, ns, i, n, src)
#define ERR(shard, ns, m1, m2) err_case(__LINE__, shard, ns, m1, m2)

static void test_cli(void)
{
    clear_env();
    OK(NULL, 0, 0, 1, "no sharding");
    OK("3/16", 0, 3, 16, "--shard 3/16");
    OK("0/1", 0, 0, 1, "--shard 0/1");
    OK("3/16", 16, 3, 16, "--shard 3/16");
    OK("999999/1000000", 0, 999999, 1000000, "--shard");
    ERR("3/16", 8, "--shard 3/16 and --num-shards 8", NULL);
    ERR("16/16", 0, "--shard '16/16'", "below the count");
    ERR("3/0", 0, "--shard '3/0'", "between 1 and");
    ERR("0/1000001", 0, "--shard '0/1000001'", NULL);
    ERR("-1/4", 0, "--shard '-1/4'", NULL);
    ERR("1/4x", 0, "--shard '1/4x'", NULL);
    ERR("1", 0, "--shard '1'", "I/N");
    ERR("", 0, "--shard ''", NULL);
    ERR(" 1/4", 0, "--shard ' 1/4'", NULL);
    /* --shard wins over the environment */
    setenv("SLURM_ARRAY_TASK_ID", "5", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "8", 1);
    setenv("JOB_COMPLETION_INDEX", "6", 1);
    OK("2/4", 0, 2, 4, "--shard 2/4");
    clear_env();
    /* a count alone is refused: every process would run the whole catalog */
    ERR(NULL, 16, "--num-shards 16 gives the number of shards", "SLURM_ARRAY_TASK_ID");
    setenv("STEMLINE_NUM_SHARDS", "16", 1);
    ERR(NULL, 0, "STEMLINE_NUM_SHARDS=16 gives the number", "--shard I/N");
    clear_env();
    ERR(NULL, -3, "--num-shards=-3", "between 1 and");
    ERR(NULL, 2000000, "--num-shards=2000000", NULL);

    int i, n;
    CHECK(sl_shard_parse("7/9", &i, &n) == 0 && i == 7 && n == 9);
    CHECK(sl_shard_parse("9/9", &i, &n) == SL_EUSAGE);
    CHECK(sl_shard_parse(NULL, &i, &n) == SL_EUSAGE);
    CHECK(sl_shard_parse_count("16", &n) == 0 && n == 16);
    CHECK(sl_shard_parse_count("0", &n) == SL_EUSAGE && strstr(sl_lasterr(), "--num-shards '0'"));
    CHECK(sl_shard_parse_count("16x", &n) == SL_EUSAGE);
    CHECK(sl_shard_parse_count("", &n) == SL_EUSAGE);
    CHECK(sl_shard_parse_count("1000001", &n) == SL_EUSAGE);
    char p[32];
    sl_shard_prefix(3, 16, p, sizeof p);
    CHECK(!strcmp(p, "s0003of0016-"));
    sl_shard_prefix(0, 1, p, sizeof p);
    CHECK(!strcmp(p, ""));
    sl_shard_prefix(12345, 100000, p, sizeof p);
    CHECK(!strcmp(p, "s12345of100000-"));
}

static void test_slurm(void)
{
    /* --array=0-15: what sbatch sets */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    OK(NULL, 0, 3, 16, "SLURM_ARRAY_TASK_ID=3 of SLURM_ARRAY_TASK_COUNT=16");
    setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "15", 1);
    setenv("SLURM_ARRAY_TASK_STEP", "1", 1);
    OK(NULL, 0, 3, 16, "SLURM_ARRAY_TASK_ID=3 of SLURM_ARRAY_TASK_COUNT=16");
    OK(NULL, 16, 3, 16, "SLURM_ARRAY_TASK_ID=3 of --num-shards 16");
    setenv("STEMLINE_NUM_SHARDS", "16", 1);
    OK(NULL, 0, 3, 16, "of STEMLINE_NUM_SHARDS=16");
    OK(NULL, 16, 3, 16, "of --num-shards 16"); /* the option wins over the variable */
    unsetenv("STEMLINE_NUM_SHARDS");
    setenv("SLURM_ARRAY_TASK_ID", "15", 1);
    OK(NULL, 0, 15, 16, "SLURM_ARRAY_TASK_ID=15");

    /* --array=1-16: numbered from MIN */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "1", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "1", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "16", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    OK(NULL, 0, 0, 16, "SLURM_ARRAY_TASK_ID=1 - SLURM_ARRAY_TASK_MIN=1 of SLURM_ARRAY_TASK_COUNT=16");
    setenv("SLURM_ARRAY_TASK_ID", "16", 1);
    OK(NULL, 0, 15, 16, "SLURM_ARRAY_TASK_MIN=1");
    OK(NULL, 16, 15, 16, "of --num-shards 16"); /* --num-shards agrees with the array */
    /* COUNT missing: MAX-MIN+1 */
    unsetenv("SLURM_ARRAY_TASK_COUNT");
    setenv("SLURM_ARRAY_TASK_ID", "5", 1);
    OK(NULL, 0, 4, 16, "SLURM_ARRAY_TASK_MAX=16-MIN=1+1");
    /* no count at all */
    unsetenv("SLURM_ARRAY_TASK_MAX");
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID=5 is set but the size of the array is not", "--num-shards");
    OK(NULL, 8, 4, 8, "SLURM_ARRAY_TASK_ID=5 - SLURM_ARRAY_TASK_MIN=1 of --num-shards 8");

    /* only the task id, count from --num-shards */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "7", 1);
    OK(NULL, 8, 7, 8, "SLURM_ARRAY_TASK_ID=7 of --num-shards 8");
    ERR(NULL, 7, "SLURM_ARRAY_TASK_ID=7 is not below the number of shards (--num-shards 7)", NULL);

    /* stepped range --array=0-30:2 */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "6", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "30", 1);
    setenv("SLURM_ARRAY_TASK_STEP", "2", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    OK(NULL, 0, 3, 16, "SLURM_ARRAY_TASK_STEP");
    OK(NULL, 16, 3, 16, "of --num-shards 16");

    /* a resubmission of failed indices: --array=3,7 of an original 0-15 */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "7", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "3", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "7", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "2", 1);
    ERR(NULL, 0, "not a contiguous range", "--num-shards N");
    ERR(NULL, 16, "not the whole range of 16 shards", "STEMLINE_SHARD_BASE");
    setenv("STEMLINE_SHARD_BASE", "0", 1);
    OK(NULL, 16, 7, 16, "SLURM_ARRAY_TASK_ID=7 - STEMLINE_SHARD_BASE=0 of --num-shards 16");
    setenv("STEMLINE_NUM_SHARDS", "16", 1);
    OK(NULL, 0, 7, 16, "of STEMLINE_NUM_SHARDS=16");
    unsetenv("STEMLINE_NUM_SHARDS");
    ERR(NULL, 0, "STEMLINE_SHARD_BASE=0 is set, but the number of shards is not", NULL);
    setenv("STEMLINE_SHARD_BASE", "8", 1);
    ERR(NULL, 16, "SLURM_ARRAY_TASK_ID=7 is outside the shards STEMLINE_SHARD_BASE=8 .. 23", NULL);
    setenv("STEMLINE_SHARD_BASE", "x", 1);
    ERR(NULL, 16, "STEMLINE_SHARD_BASE='x'", NULL);
    /* the same from an original array 0-15 that contains task 0: TASK_ID is the shard */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "5", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "5", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "2", 1);
    OK(NULL, 16, 5, 16, "SLURM_ARRAY_TASK_ID=5 of --num-shards 16");
    /* a contiguous part (--array=4-6) with an explicit count: ambiguous */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "5", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "4", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "6", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
    ERR(NULL, 16, "STEMLINE_SHARD_BASE", NULL);
    /* a one-task array numbered other than 0: a resubmission, not "0 of 1" */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "3", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "3", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "1", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID=3 is the only task of its array", "--num-shards");
    OK(NULL, 1, 0, 1, "of --num-shards 1");
    setenv("SLURM_ARRAY_TASK_ID", "0", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "0", 1);
    OK(NULL, 0, 0, 1, "SLURM_ARRAY_TASK_ID=0 of SLURM_ARRAY_TASK_COUNT=1");

    /* malformed values name the variable and its value */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "3a", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID='3a'", NULL);
    setenv("SLURM_ARRAY_TASK_ID", "-1", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID='-1'", NULL);
    setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "sixteen", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_COUNT='sixteen'", NULL);
    setenv("SLURM_ARRAY_TASK_COUNT", "0", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_COUNT=0", "between 1 and");
    setenv("SLURM_ARRAY_TASK_COUNT", "2000000", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_COUNT=2000000", NULL);
    setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID=3 gives shard 3", "SLURM_ARRAY_TASK_COUNT=3");
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    setenv("SLURM_ARRAY_TASK_MIN", "4", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_ID=3 is not in the array", "SLURM_ARRAY_TASK_MIN=4");
    unsetenv("SLURM_ARRAY_TASK_MIN");
    setenv("SLURM_ARRAY_TASK_STEP", "0", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_STEP=0", NULL);
    setenv("SLURM_ARRAY_TASK_STEP", "1", 1);
    setenv("SLURM_ARRAY_TASK_MAX", "1.5", 1);
    ERR(NULL, 0, "SLURM_ARRAY_TASK_MAX='1.5'", NULL);
    unsetenv("SLURM_ARRAY_TASK_MAX");
    setenv("STEMLINE_NUM_SHARDS", "0", 1);
    ERR(NULL, 0, "STEMLINE_NUM_SHARDS=0", "between 1 and");
    setenv("STEMLINE_NUM_SHARDS", "lots", 1);
    ERR(NULL, 0, "STEMLINE_NUM_SHARDS='lots'", NULL);
    /* an empty variable is unset */
    clear_env();
    setenv("SLURM_ARRAY_TASK_ID", "", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "16", 1);
    OK(NULL, 0, 0, 1, "no sharding");
    /* Slurm wins over Kubernetes */
    setenv("SLURM_ARRAY_TASK_ID", "2", 1);
    setenv("JOB_COMPLETION_INDEX", "9", 1);
    OK(NULL, 0, 2, 16, "SLURM_ARRAY_TASK_ID=2");
}

static void test_k8s(void)
{
    clear_env();
    setenv("JOB_COMPLETION_INDEX", "3", 1);
    ERR(NULL, 0, "JOB_COMPLETION_INDEX=3 is set (Kubernetes Indexed Job)", "pass --num-shards N");
    OK(NULL, 16, 3, 16, "JOB_COMPLETION_INDEX=3 of --num-shards 16");
    setenv("STEMLINE_NUM_SHARDS", "4", 1);
    OK(NULL, 0, 3, 4, "JOB_COMPLETION_INDEX=3 of STEMLINE_NUM_SHARDS=4");
    OK(NULL, 16, 3, 16, "of --num-shards 16");
    setenv("STEMLINE_NUM_SHARDS", "3", 1);
    ERR(NULL, 0, "JOB_COMPLETION_INDEX=3 is not below the number of shards (STEMLINE_NUM_SHARDS=3)", NULL);
    unsetenv("STEMLINE_NUM_SHARDS");
    ERR(NULL, 2, "JOB_COMPLETION_INDEX=3 is not below", "--num-shards 2");
    setenv("JOB_COMPLETION_INDEX", "three", 1);
    ERR(NULL, 16, "JOB_COMPLETION_INDEX='three'", NULL);
    setenv("JOB_COMPLETION_INDEX", "0", 1);
    OK(NULL, 1, 0, 1, "JOB_COMPLETION_INDEX=0 of --num-shards 1");
    /* STEMLINE_SHARD_BASE is a Slurm matter: Kubernetes indexes start at 0 */
    setenv("STEMLINE_SHARD_BASE", "5", 1);
    setenv("JOB_COMPLETION_INDEX", "2", 1);
    OK(NULL, 4, 2, 4, "JOB_COMPLETION_INDEX=2");
    clear_env();
}

int main(void)
{
    test_cli();
    test_slurm();
    test_k8s();
    return sl_test_finish("shardenv");
}
