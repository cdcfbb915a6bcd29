/* Shard index and count from the command line or the scheduler's environment.
 *
 * The danger here is not a refused start but a silently wrong partition: two
 * processes that believe they are different shards while they are the same, or
 * one process that believes it is "0 of 1" and runs the whole catalog next to 15
 * others. So every way of numbering tasks that is ambiguous is refused with a
 * message that says what to pass, and only unambiguous ones are accepted. The
 * classic trap is a resubmission of some indices of a Slurm array
 * (`sbatch --array=3,7`): Slurm then reports MIN=3, MAX=7, COUNT=2 and knows
 * nothing of the original 16, so TASK_ID - MIN is wrong; STEMLINE_SHARD_BASE
 * and --num-shards/STEMLINE_NUM_SHARDS pin the numbering for such runs. */
#include "shardenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"

/* Plain decimal digits only (no sign, space or suffix), at most 15 of them. */
static int parse_nonneg(const char *s, long long *v)
{
    if (!s || !*s)
        return -1;
    long long x = 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        if (*p < '0' || *p > '9' || n >= 15)
            return -1;
        x = x * 10 + (*p - '0');
    }
    *v = x;
    return 0;
}

/* An environment variable, NULL when unset or empty. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Reads an integer variable: 0 unset, 1 set (value in *v), SL_EUSAGE malformed. */
static int env_int(const char *name, long long *v)
{
    const char *s = env(name);
    if (!s)
        return 0;
    if (parse_nonneg(s, v))
        return sl_seterr(SL_EUSAGE, "%s='%s' is not a non-negative integer", name, s);
    return 1;
}

static int check_count(long long n, const char *what, const char *value)
{
    if (n < 1 || n > SL_SHARD_MAX_COUNT)
        return sl_seterr(SL_EUSAGE, "%s=%s: the number of shards must be between 1 and %d", what, value,
                         SL_SHARD_MAX_COUNT);
    return 0;
}

int sl_shard_parse(const char *s, int *index, int *count)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    char a[32], b[32];
    long long i, n;
    if (!slash || (size_t)(slash - s) >= sizeof a || strlen(slash + 1) >= sizeof b)
        return sl_seterr(SL_EUSAGE, "--shard '%s': expected I/N with 0 <= I < N, e.g. --shard 3/16",
                         s ? s : "");
    memcpy(a, s, (size_t)(slash - s));
    a[slash - s] = 0;
    snprintf(b, sizeof b, "%s", slash + 1);
    if (parse_nonneg(a, &i) || parse_nonneg(b, &n))
        return sl_seterr(SL_EUSAGE, "--shard '%s': expected I/N with 0 <= I < N, e.g. --shard 3/16", s);
    if (n < 1 || n > SL_SHARD_MAX_COUNT)
        return sl_seterr(SL_EUSAGE, "--shard '%s': the number of shards must be between 1 and %d", s,
                         SL_SHARD_MAX_COUNT);
    if (i >= n)
        return sl_seterr(SL_EUSAGE, "--shard '%s': the index must be below the count (shards are numbered 0 to %lld)",
                         s, n - 1);
    *index = (int)i;
    *count = (int)n;
    return 0;
}

int sl_shard_parse_count(const char *s, int *count)
{
    long long n;
    if (parse_nonneg(s, &n) || n < 1 || n > SL_SHARD_MAX_COUNT)
        return sl_seterr(SL_EUSAGE, "--num-shards '%s': expected a whole number between 1 and %d", s ? s : "",
                         SL_SHARD_MAX_COUNT);
    *count = (int)n;
    return 0;
}

void sl_shard_prefix(int index, int count, char *buf, size_t size)
{
    if (!buf || !size)
        return;
    if (count > 1)
        snprintf(buf, size, "s%04dof%04d-", index, count);
    else
        buf[0] = 0;
}

size_t sl_shard_parse_prefix(const char *name, int *index, int *count)
{
    *index = 0;
    *count = 1;
    if (name[0] != 's' || name[1] < '0' || name[1] > '9')
        return 0;
    const char *p = name + 1;
    long long i = 0, n = 0;
    int d = 0;
    for (; *p >= '0' && *p <= '9' && d < 8; p++, d++)
        i = i * 10 + (*p - '0');
    if (strncmp(p, "of", 2))
        return 0;
    p += 2;
    d = 0;
    for (; *p >= '0' && *p <= '9' && d < 8; p++, d++)
        n = n * 10 + (*p - '0');
    if (!d || *p != '-' || n < 2 || n > SL_SHARD_MAX_COUNT || i >= n)
        return 0;
    char canon[64];
    sl_shard_prefix((int)i, (int)n, canon, sizeof canon);
    size_t cl = strlen(canon);
    if (strncmp(name, canon, cl))
        return 0;
    *index = (int)i;
    *count = (int)n;
    return cl;
}

int sl_shard_parse_ledger_name(const char *name, int *index, int *count)
{
    size_t pl = sl_shard_parse_prefix(name, index, count);
    return strcmp(name + pl, "ledger.sqlite") ? -1 : 0;
}

/* The explicit count: --num-shards, else STEMLINE_NUM_SHARDS. 0 when neither,
 * SL_EUSAGE when malformed; what names its source for messages. */
static int explicit_count(int cli_num_shards, long long *n, char *what, size_t what_size)
{
    *n = 0;
    if (cli_num_shards != 0) {
        char v[32];
        snprintf(v, sizeof v, "%d", cli_num_shards);
        int rc = check_count(cli_num_shards, "--num-shards", v);
        if (rc)
            return rc;
        *n = cli_num_shards;
        snprintf(what, what_size, "--num-shards %d", cli_num_shards);
        return 0;
    }
    int rc = env_int("STEMLINE_NUM_SHARDS", n);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if ((rc = check_count(*n, "STEMLINE_NUM_SHARDS", env("STEMLINE_NUM_SHARDS"))))
            return rc;
        snprintf(what, what_size, "STEMLINE_NUM_SHARDS=%lld", *n);
    }
    return 0;
}

static int from_slurm(const char *id_s, int cli_num_shards, long long *index, long long *count, char *src,
                      size_t src_size)
{
    long long id, mn = 0, mx = 0, cnt = 0, step = 1, base = 0, n = 0;
    int rc;
    if (parse_nonneg(id_s, &id))
        return sl_seterr(SL_EUSAGE, "SLURM_ARRAY_TASK_ID='%s' is not a non-negative integer", id_s);
    int has_min, has_max, has_cnt, has_step, has_base;
    if ((has_min = env_int("SLURM_ARRAY_TASK_MIN", &mn)) < 0)
        return has_min;
    if ((has_max = env_int("SLURM_ARRAY_TASK_MAX", &mx)) < 0)
        return has_max;
    if ((has_cnt = env_int("SLURM_ARRAY_TASK_COUNT", &cnt)) < 0)
        return has_cnt;
    if ((has_step = env_int("SLURM_ARRAY_TASK_STEP", &step)) < 0)
        return has_step;
    if ((has_base = env_int("STEMLINE_SHARD_BASE", &base)) < 0)
        return has_base;
    if (!has_step)
        step = 1;
    if (has_cnt && (rc = check_count(cnt, "SLURM_ARRAY_TASK_COUNT", env("SLURM_ARRAY_TASK_COUNT"))))
        return rc;
    if (step < 1)
        return sl_seterr(SL_EUSAGE, "SLURM_ARRAY_TASK_STEP=%lld: must be at least 1", step);
    char what[64] = "";
    if ((rc = explicit_count(cli_num_shards, &n, what, sizeof what)) < 0)
        return rc;

    if (has_base) {
        /* Pinned numbering: the shard is TASK_ID - base whatever part of the
         * array this submission holds. */
        if (!n)
            return sl_seterr(SL_EUSAGE,
                             "STEMLINE_SHARD_BASE=%lld is set, but the number of shards is not: pass --num-shards N "
                             "or set STEMLINE_NUM_SHARDS (the size of the whole array)",
                             base);
        if (id < base || id - base >= n)
            return sl_seterr(SL_EUSAGE,
                             "SLURM_ARRAY_TASK_ID=%lld is outside the shards STEMLINE_SHARD_BASE=%lld .. %lld "
                             "(%s)",
                             id, base, base + n - 1, what);
        *index = id - base;
        *count = n;
        snprintf(src, src_size, "SLURM_ARRAY_TASK_ID=%lld - STEMLINE_SHARD_BASE=%lld of %s", id, base, what);
        return 0;
    }

    if (has_min)
        base = mn;
    /* Does Slurm describe a regular range? MIN/MAX/COUNT disagree for a list
     * such as --array=3,7 (a typical resubmission of failed indices). */
    int regular = 1;
    long long array_n = 0;
    if (has_min && has_max) {
        if (mx < mn || (mx - mn) % step != 0)
            regular = 0;
        else
            array_n = (mx - mn) / step + 1;
        if (has_cnt && cnt != array_n)
            regular = 0;
    }
    if (has_cnt)
        array_n = cnt;

    if (n) {
        if (base == 0 && step == 1) {
            /* An array that contains task 0 numbers shards from 0 whatever
             * subset of it this submission is: TASK_ID is the shard. */
            if (id >= n)
                return sl_seterr(SL_EUSAGE, "SLURM_ARRAY_TASK_ID=%lld is not below the number of shards (%s)", id,
                                 what);
            *index = id;
            *count = n;
            snprintf(src, src_size, "SLURM_ARRAY_TASK_ID=%lld of %s", id, what);
            return 0;
        }
        if (!regular || (array_n && array_n != n))
            return sl_seterr(
                SL_EUSAGE,
                "SLURM_ARRAY_TASK_ID=%lld: this array (SLURM_ARRAY_TASK_MIN=%lld, SLURM_ARRAY_TASK_MAX=%lld, "
                "SLURM_ARRAY_TASK_COUNT=%lld) is not the whole range of %lld shards (%s), so its task ids "
                "cannot be numbered from SLURM_ARRAY_TASK_MIN; set STEMLINE_SHARD_BASE to the first index of "
                "the full array (e.g. 0 for --array=0-%lld) or pass --shard I/N",
                id, mn, mx, has_cnt ? cnt : array_n, n, what, n - 1);
    } else {
        if (!regular)
            return sl_seterr(
                SL_EUSAGE,
                "SLURM_ARRAY_TASK_ID=%lld: this array (SLURM_ARRAY_TASK_MIN=%lld, SLURM_ARRAY_TASK_MAX=%lld, "
                "SLURM_ARRAY_TASK_COUNT=%lld) is not a contiguous range (a resubmission of some indices?), so "
                "the number of shards is unknown; pass --num-shards N (or set STEMLINE_NUM_SHARDS), with "
                "STEMLINE_SHARD_BASE=FIRST when the original array did not start at 0",
                id, mn, mx, cnt);
        if (!array_n)
            return sl_seterr(SL_EUSAGE,
                             "SLURM_ARRAY_TASK_ID=%lld is set but the size of the array is not "
                             "(no SLURM_ARRAY_TASK_COUNT, nor SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX): "
                             "pass --num-shards N or set STEMLINE_NUM_SHARDS",
                             id);
        if (array_n == 1 && id != 0)
            /* A one-task array numbered other than 0 is almost surely a
             * resubmission of one index; "0 of 1" would run the whole catalog. */
            return sl_seterr(SL_EUSAGE,
                             "SLURM_ARRAY_TASK_ID=%lld is the only task of its array: if this resubmits one "
                             "shard of a larger array, pass --num-shards N (or set STEMLINE_NUM_SHARDS) and "
                             "STEMLINE_SHARD_BASE; for an unsharded run pass --num-shards 1",
                             id);
        char v[32];
        snprintf(v, sizeof v, "%lld", array_n);
        if ((rc = check_count(array_n, has_cnt ? "SLURM_ARRAY_TASK_COUNT" : "SLURM_ARRAY_TASK_MAX-MIN+1", v)))
            return rc;
        n = array_n;
        if (has_cnt)
            snprintf(what, sizeof what, "SLURM_ARRAY_TASK_COUNT=%lld", cnt);
        else
            snprintf(what, sizeof what, "SLURM_ARRAY_TASK_MAX=%lld-MIN=%lld+1", mx, mn);
    }
    if (id < base || (id - base) % step != 0)
        return sl_seterr(SL_EUSAGE,
                         "SLURM_ARRAY_TASK_ID=%lld is not in the array that SLURM_ARRAY_TASK_MIN=%lld and "
                         "SLURM_ARRAY_TASK_STEP=%lld describe",
                         id, base, step);
    long long i = (id - base) / step;
    if (i >= n)
        return sl_seterr(SL_EUSAGE, "SLURM_ARRAY_TASK_ID=%lld gives shard %lld, which is not below the number of "
                         "shards (%s)", id, i, what);
    *index = i;
    *count = n;
    if (has_min && base)
        snprintf(src, src_size, "SLURM_ARRAY_TASK_ID=%lld - SLURM_ARRAY_TASK_MIN=%lld%s of %s", id, base,
                 step > 1 ? " / SLURM_ARRAY_TASK_STEP" : "", what);
    else
        snprintf(src, src_size, "SLURM_ARRAY_TASK_ID=%lld%s of %s", id, step > 1 ? " / SLURM_ARRAY_TASK_STEP" : "",
                 what);
    return 0;
}

static int from_k8s(const char *idx_s, int cli_num_shards, long long *index, long long *count, char *src,
                    size_t src_size)
{
    long long i, n;
    char what[64] = "";
    if (parse_nonneg(idx_s, &i))
        return sl_seterr(SL_EUSAGE, "JOB_COMPLETION_INDEX='%s' is not a non-negative integer", idx_s);
    int rc = explicit_count(cli_num_shards, &n, what, sizeof what);
    if (rc < 0)
        return rc;
    if (!n)
        return sl_seterr(SL_EUSAGE,
                         "JOB_COMPLETION_INDEX=%lld is set (Kubernetes Indexed Job) but the number of shards is "
                         "not: pass --num-shards N (the Job's spec.completions) or set STEMLINE_NUM_SHARDS",
                         i);
    if (i >= n)
        return sl_seterr(SL_EUSAGE, "JOB_COMPLETION_INDEX=%lld is not below the number of shards (%s)", i, what);
    *index = i;
    *count = n;
    snprintf(src, src_size, "JOB_COMPLETION_INDEX=%lld of %s", i, what);
    return 0;
}

int sl_shard_resolve(const char *cli_shard, int cli_num_shards, int *index, int *count, char *source,
                     size_t source_size)
{
    char src[256] = "";
    long long i = 0, n = 1;
    int rc = 0;
    *index = 0;
    *count = 1;
    if (cli_shard) {
        int ci, cn;
        if ((rc = sl_shard_parse(cli_shard, &ci, &cn)))
            return rc;
        if (cli_num_shards && cli_num_shards != cn)
            return sl_seterr(SL_EUSAGE, "--shard %s and --num-shards %d disagree on the number of shards",
                             cli_shard, cli_num_shards);
        i = ci;
        n = cn;
        snprintf(src, sizeof src, "--shard %d/%d", ci, cn);
    } else if (env("SLURM_ARRAY_TASK_ID")) {
        rc = from_slurm(env("SLURM_ARRAY_TASK_ID"), cli_num_shards, &i, &n, src, sizeof src);
    } else if (env("JOB_COMPLETION_INDEX")) {
        rc = from_k8s(env("JOB_COMPLETION_INDEX"), cli_num_shards, &i, &n, src, sizeof src);
    } else {
        char what[64] = "";
        long long en;
        if ((rc = explicit_count(cli_num_shards, &en, what, sizeof what)) < 0)
            return rc;
        if (en)
            return sl_seterr(SL_EUSAGE,
                             "%s gives the number of shards but nothing gives this process's index: pass "
                             "--shard I/N, or run it as a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes "
                             "Indexed Job pod (JOB_COMPLETION_INDEX)",
                             what);
        snprintf(src, sizeof src, "no sharding");
    }
    if (rc)
        return rc;
    if (n < 1 || n > SL_SHARD_MAX_COUNT || i < 0 || i >= n) /* guarded above; kept as the invariant */
        return sl_seterr(SL_EUSAGE, "shard %lld of %lld is out of range (%s)", i, n, src);
    *index = (int)i;
    *count = (int)n;
    if (source && source_size)
        snprintf(source, source_size, "%s", src);
    return 0;
}
