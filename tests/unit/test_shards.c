/* Vector shards written from the ledger: shard layout, stale shard removal,
 * byte-identical rewrites, full disk; numpy/json cross-check with SL_PYTHON. */
#include "common/sl_error.h"
#include "io/npy.h"
#include "pipeline/ledger.h"
#include "pipeline/shards.h"
#include "tests/unit/ledger_rows.h"
#include "tests/unit/sl_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static const char *python(void)
{
    const char *p = getenv("SL_PYTHON");
    return p && *p ? p : NULL;
}

static sl_ledger *shard_ledger(const char *name, int n, int dim)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    sl_ledger *l = NULL;
    if (sl_ledger_open(&l, path) != 0)
        return NULL;
    /* inserted in reverse to prove the shards follow id order, not insertion */
    for (int i = n - 1; i >= 0; i--) {
        char id[64], in[96];
        float *v = malloc((size_t)dim * sizeof *v);
        snprintf(id, sizeof id, "artist %02d/track \"%03d\".mp3", i % 7, i);
        snprintf(in, sizeof in, "/music/%s", id);
        vec_of(v, dim, i);
        sl_ledger_row r = done_row(id, in, v, dim, "melstats");
        r.duration = 60.0 + i * 0.1;
        sl_ledger_put(l, &r);
        free(v);
    }
    float w[4] = {1, 2, 3, 4};
    sl_ledger_row o = done_row("zz other model", "/x", w, 4, "other");
    sl_ledger_put(l, &o);
    sl_ledger_row f = done_row("aa failed", "/y", NULL, 0, NULL);
    f.status = SL_TRACK_FAILED;
    f.error = "no audio stream";
    sl_ledger_put(l, &f);
    return l;
}

static char *read_all_shards(const char *dir, const char *prefix, int n_shards, size_t *total)
{
    /* concatenation of every shard file, to compare whole folders */
    size_t cap = 0, len = 0;
    char *all = NULL;
    for (int i = 0; i < n_shards; i++)
        for (int k = 0; k < 2; k++) {
            char p[800];
            snprintf(p, sizeof p, "%s/%sshard-%05d.%s", dir, prefix, i, k ? "jsonl" : "npy");
            size_t l;
            char *b = sl_test_slurp(p, &l);
            if (!b)
                continue;
            if (len + l + 1 > cap) {
                cap = (len + l + 1) * 2;
                all = realloc(all, cap);
            }
            memcpy(all + len, b, l);
            len += l;
            free(b);
        }
    *total = len;
    return all;
}

static void test_shards(void)
{
    const int N = 23, DIM = 8;
    sl_ledger *l = shard_ledger("shards.db", N, DIM);
    CHECK(l != NULL);
    if (!l)
        return;
    char dir[600], p[800];
    snprintf(dir, sizeof dir, "%s/embeddings/melstats/mix", tmp);
    CHECK(sl_mkdirs(dir) == 0);
    /* stale files of an earlier, bigger run, a leftover temp file, and files that are not ours */
    snprintf(p, sizeof p, "%s/shard-00007.npy", dir);
    sl_test_spew(p, "old", 3);
    snprintf(p, sizeof p, "%s/shard-00003.jsonl", dir);
    sl_test_spew(p, "old", 3);
    snprintf(p, sizeof p, "%s/shard-00001.npy.tmp-999999999-3", dir);
    sl_test_spew(p, "partial", 7);
    snprintf(p, sizeof p, "%s/s0001of0002-shard-00009.npy", dir);
    sl_test_spew(p, "other machine", 13);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    sl_test_spew(p, "mine", 4);

    sl_shards_spec spec = {.dir = dir, .prefix = "", .vector_model = "melstats", .model_name = "melstats",
                           .source = "mix", .dtype = "float32", .shard_rows = 10};
    char **list = NULL;
    size_t nlist = 0;
    int rc = sl_shards_write(&spec, l, &list, &nlist);
    CHECK_MSG(rc == 0, "shards: %s", sl_lasterr());
    CHECK(nlist == 6);
    for (size_t i = 0; i < nlist; i++) {
        snprintf(p, sizeof p, "%s/shard-%05zu.%s", dir, i / 2, (i & 1) ? "jsonl" : "npy");
        CHECK_MSG(list && !strcmp(list[i], p), "list[%zu] = %s", i, list ? list[i] : "");
    }
    sl_shards_free_list(list, nlist);
    snprintf(p, sizeof p, "%s/shard-00007.npy", dir);
    CHECK(!sl_test_exists(p));
    snprintf(p, sizeof p, "%s/shard-00003.jsonl", dir);
    CHECK(!sl_test_exists(p));
    CHECK(sl_test_count_names(dir, ".tmp-") == 0);
    snprintf(p, sizeof p, "%s/s0001of0002-shard-00009.npy", dir);
    CHECK(sl_test_exists(p));
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    CHECK(sl_test_exists(p));

    /* rows: npy rows == jsonl lines, ids in order across shards, vectors exact */
    int total = 0, order_ok = 1;
    char prev_id[128] = "";
    for (int s = 0; s < 3; s++) {
        float *m = NULL;
        size_t r = 0, c = 0;
        snprintf(p, sizeof p, "%s/shard-%05d.npy", dir, s);
        CHECK(sl_npy_read(p, &m, &r, &c) == 0);
        CHECK(r == (s < 2 ? 10u : 3u) && c == (size_t)DIM);
        snprintf(p, sizeof p, "%s/shard-%05d.jsonl", dir, s);
        size_t jl;
        char *j = sl_test_slurp(p, &jl);
        int lines = 0;
        for (char *q = j; q && *q; q = strchr(q, '\n') + 1) {
            char want[64];
            snprintf(want, sizeof want, "{\"row\": %d, \"id\": \"", lines);
            CHECK_MSG(strncmp(q, want, strlen(want)) == 0, "line %d: %.60s", lines, q);
            char *id0 = q + strlen(want);
            char id[128];
            snprintf(id, sizeof id, "%.*s", (int)(strstr(id0, "\", \"path\"") - id0), id0);
            if (strcmp(prev_id, id) >= 0)
                order_ok = 0;
            snprintf(prev_id, sizeof prev_id, "%s", id);
            /* the row's vector is the one of its track (seed = track number) */
            int tn = atoi(strstr(id, "track \\\"") + 8);
            float v[8];
            vec_of(v, DIM, tn);
            CHECK(m && memcmp(m + (size_t)lines * DIM, v, sizeof v) == 0);
            CHECK(strstr(q, "\"start\": 0.0, \"end\": ") && strstr(q, "\"model\": \"melstats\", \"source\": \"mix\"}"));
            lines++;
            if (!strchr(q, '\n'))
                break;
        }
        CHECK_MSG((size_t)lines == r, "shard %d: %d jsonl lines, %zu npy rows", s, lines, r);
        total += lines;
        free(j);
        free(m);
    }
    CHECK(total == N);
    CHECK(order_ok);
    snprintf(p, sizeof p, "%s/shard-00000.jsonl", dir);
    size_t jl;
    char *j = sl_test_slurp(p, &jl);
    CHECK(j && strstr(j, "\"end\": 60.0, \"duration\": 60.0,") && strstr(j, "\"duration\": 60.1,"));
    free(j);

    /* rewrite: byte-identical, and unchanged files are not even touched */
    size_t len1, len2;
    char *before = read_all_shards(dir, "", 3, &len1);
    struct stat st1, st2;
    snprintf(p, sizeof p, "%s/shard-00001.npy", dir);
    stat(p, &st1);
    usleep(20000);
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == 0);
    char *after = read_all_shards(dir, "", 3, &len2);
    CHECK(before && after && len1 == len2 && memcmp(before, after, len1) == 0);
    stat(p, &st2);
    CHECK(st1.st_mtim.tv_sec == st2.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st2.st_mtim.tv_nsec &&
          st1.st_ino == st2.st_ino);
    free(after);

    /* A full disk in the middle: error, no temp file, every file under a final name complete. */
    spec.dtype = "float16";
    sl_io_fault_enospc_after(700);
    rc = sl_shards_write(&spec, l, &list, &nlist);
    sl_io_fault_enospc_after(-1);
    CHECK_MSG(rc == -ENOSPC && list == NULL && nlist == 0, "rc %d", rc);
    CHECK(strstr(sl_lasterr(), dir) != NULL);
    CHECK(sl_test_count_names(dir, ".tmp-") == 0);
    for (int s = 0; s < 3; s++) {
        float *m = NULL;
        size_t r, c;
        snprintf(p, sizeof p, "%s/shard-%05d.npy", dir, s);
        CHECK(sl_npy_read(p, &m, &r, &c) == 0 && r == (s < 2 ? 10u : 3u));
        free(m);
    }
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == 0); /* float16 now */
    snprintf(p, sizeof p, "%s/shard-00002.npy", dir);
    size_t nl;
    char *b = sl_test_slurp(p, &nl);
    CHECK(b && nl > 10 && strstr(b + 10, "'<f2'") && nl == (size_t)(128 + 3 * DIM * 2));
    free(b);
    spec.dtype = "float32";
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == 0);
    after = read_all_shards(dir, "", 3, &len2);
    CHECK(before && after && len1 == len2 && memcmp(before, after, len1) == 0);
    free(after);
    free(before);

    /* a machine's prefix: its own files, others untouched */
    spec.prefix = "s0003of0016-";
    spec.shard_rows = 100;
    CHECK(sl_shards_write(&spec, l, &list, &nlist) == 0 && nlist == 2);
    snprintf(p, sizeof p, "%s/s0003of0016-shard-00000.npy", dir);
    CHECK(list && nlist == 2 && !strcmp(list[0], p));
    sl_shards_free_list(list, nlist);
    snprintf(p, sizeof p, "%s/shard-00002.npy", dir);
    CHECK(sl_test_exists(p));
    snprintf(p, sizeof p, "%s/s0001of0002-shard-00009.npy", dir);
    CHECK(sl_test_exists(p));

    /* fewer shards than before: the higher ones go */
    spec.prefix = "";
    spec.shard_rows = 30;
    CHECK(sl_shards_write(&spec, l, &list, &nlist) == 0 && nlist == 2);
    sl_shards_free_list(list, nlist);
    snprintf(p, sizeof p, "%s/shard-00001.npy", dir);
    CHECK(!sl_test_exists(p));
    snprintf(p, sizeof p, "%s/shard-00002.jsonl", dir);
    CHECK(!sl_test_exists(p));
    snprintf(p, sizeof p, "%s/shard-00000.npy", dir);
    CHECK(sl_test_exists(p));

    /* no vectors of that model: nothing written, this prefix's shards removed */
    spec.vector_model = "absent";
    CHECK(sl_shards_write(&spec, l, &list, &nlist) == 0 && nlist == 0 && list == NULL);
    CHECK(!sl_test_exists(p));
    snprintf(p, sizeof p, "%s/s0003of0016-shard-00000.npy", dir);
    CHECK(sl_test_exists(p));

    /* bad specs */
    spec.vector_model = NULL; /* every vector: melstats dim 8 and other dim 4 */
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == SL_EFORMAT);
    spec.vector_model = "melstats";
    spec.shard_rows = 0;
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == SL_EINVAL);
    spec.shard_rows = 10;
    spec.dtype = "float64";
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == SL_EINVAL);
    spec.dtype = "float32";
    spec.prefix = "a/b";
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == SL_EINVAL);
    spec.prefix = "";

    /* final state for the python check: 3 float32 shards of 10 */
    CHECK(sl_shards_write(&spec, l, NULL, NULL) == 0);
    sl_ledger_close(l);

    if (!python()) {
        printf("skipped: no numpy (SL_PYTHON empty): numpy/json check of the shard folder\n");
        return;
    }
    char script[700], cmd[2400];
    snprintf(script, sizeof script, "%s/check_shards.py", tmp);
    FILE *f = fopen(script, "w");
    fprintf(f, "import sys, glob, json, os, numpy as np\n"
               "d = sys.argv[1]; N = int(sys.argv[2]); D = int(sys.argv[3])\n"
               "npys = sorted(glob.glob(os.path.join(d, 'shard-*.npy')))\n"
               "assert [os.path.basename(p) for p in npys] == ['shard-%%05d.npy' %% i for i in range(3)], npys\n"
               "ids = []; total = 0\n"
               "for p in npys:\n"
               "    a = np.load(p, mmap_mode='r')\n"
               "    assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == D, (a.dtype, a.shape)\n"
               "    rows = [json.loads(l) for l in open(p[:-4] + '.jsonl', encoding='utf-8')]\n"
               "    assert len(rows) == a.shape[0], (p, len(rows), a.shape)\n"
               "    for r, row in enumerate(rows):\n"
               "        assert row['row'] == r and row['model'] == 'melstats' and row['source'] == 'mix'\n"
               "        assert row['start'] == 0.0 and row['end'] == row['duration'] > 0\n"
               "        assert row['path'] == '/music/' + row['id']\n"
               "        n = int(row['id'].split('\"')[1])\n"
               "        assert np.array_equal(a[r], n + np.arange(D, dtype=np.float32) / 64), (row, a[r])\n"
               "        ids.append(row['id'])\n"
               "    total += a.shape[0]\n"
               "assert total == N and len(set(ids)) == N\n"
               "assert [i.encode() for i in ids] == sorted(i.encode() for i in ids)\n"
               "print('shards ok:', total, 'rows')\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d %d", python(), script, dir, N, DIM);
    CHECK_MSG(system(cmd) == 0, "python shard check failed: %s", cmd);
}

int main(void)
{
    tmp = sl_test_tmpdir();
    test_shards();
    sl_test_rmdir(tmp);
    return sl_test_finish("shards");
}
