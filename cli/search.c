/* stemline search: exact cosine nearest neighbours over the vector shards of a
 * job's output (pipeline/search.h). */
#include "cli/commands.h"

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "kernels/ops.h"
#include "pipeline/runner.h"
#include "pipeline/search.h"
#include "pipeline/search_text.h"
#include "pipeline/search_dot.h"
#include "common/sl_pool.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char search_help[] =
    "usage: stemline search OUT_DIR (--audio FILE | --id TRACK_ID | --text QUERY... | --queries FILE)\n"
    "                      [options]\n"
    "\n"
    "Exact cosine nearest neighbours over every vector shard of a job's output\n"
    "folder (OUT_DIR/embeddings/MODEL/SOURCE/*shard-NNNNN.npy, the shards of\n"
    "every --shard I/N run included). Shards are streamed in blocks of rows, so\n"
    "memory does not grow with the catalog: on the CPU one BLAS call per block\n"
    "plus a partial selection; on a GPU each block is uploaded, scored by one\n"
    "GEMM and merged by a top-k kernel into a running top k kept on the device.\n"
    "\n"
    "query (one of):\n"
    "  --id TRACK_ID     the vector of a track already in the shards (its id is\n"
    "                    its path relative to the input folder, as in the jsonl)\n"
    "  --audio FILE      decode and embed FILE now, with exactly the model,\n"
    "                    options and windowing that made the shards (read from\n"
    "                    their index.json)\n"
    "  --text QUERY      embed QUERY with the text tower of the CLAP weights file\n"
    "                    that made the shards (their index.json names it; shards\n"
    "                    of `embedding.model: clap`); repeat --text for several\n"
    "                    queries in one scan. Over-long queries are cut to 77\n"
    "                    tokens as the reference does, with a warning; an empty\n"
    "                    one is embedded as <s></s> with a warning\n"
    "  --queries FILE    a query session for text queries (FILE - = stdin): the\n"
    "                    shards, their float16 copy and the text tower are opened\n"
    "                    once (on the CPU backend the scanned files stay mapped,\n"
    "                    pages read in), then each line of FILE is one query,\n"
    "                    answered by one JSON line, flushed at once, so a program\n"
    "                    can drive it through a pipe: {line, query, tokens,\n"
    "                    truncated, hits: [...] as --json, ms, cpu_ms} (ms: wall\n"
    "                    time of the query; cpu_ms: CPU time of the process over\n"
    "                    it, every thread). A line is the\n"
    "                    query text itself, or, when it starts with '{', a JSON\n"
    "                    object {\"text\": QUERY, \"k\": N} (k optional, default -k).\n"
    "                    A bad line (not JSON, bad k, not UTF-8) is answered by\n"
    "                    {line, error} and the session goes on; a shard that\n"
    "                    changes under it, or a device failure, ends it (exit 1).\n"
    "                    End of input ends it with status 0. Results are those of\n"
    "                    --text for the same query; an empty line is the empty\n"
    "                    query\n"
    "\n"
    "options:\n"
    "  --model NAME      embedding model folder (default: the only one there is)\n"
    "  --source NAME     mix (default) or a stem name\n"
    "  -k N              number of neighbours (default 10)\n"
    "  --json            print one JSON array of {rank, score, id, path, start,\n"
    "                    end, shard, row} instead of a table; with --text, one\n"
    "                    array of {query, tokens, truncated, hits: [...]}\n"
    "  --block-rows N    rows scored per block (default 16384): one BLAS call on\n"
    "                    the CPU, one upload + GEMM + top-k on a GPU; results do\n"
    "                    not depend on it, memory does\n"
    "  --backend B       auto (default: the GPU when a CUDA device answers, else\n"
    "                    the CPU), cpu, cuda, or cuda-emu (the CUDA kernels\n"
    "                    emulated on the CPU: slow, for checking the GPU path\n"
    "                    without a GPU). Also embeds the --audio query. Every\n"
    "                    backend gives the same neighbours and scores\n"
    "  --threads N       CPU threads for the scan and the query's embedding\n"
    "                    (default: every CPU this process may use); results do\n"
    "                    not depend on it\n"
    "  --build-f16       write (or refresh) the float16 scan copy of the shards\n"
    "                    (DIR/.scan-f16/, half their size): later searches scan\n"
    "                    it and rescore the rows that may rank in the top k from\n"
    "                    the float32 shards, so results are exactly those of the\n"
    "                    float32 scan with half the bytes read. Only copies of\n"
    "                    new or changed shards are rewritten. Without a query,\n"
    "                    builds and exits. A shard changed since its copy was\n"
    "                    made is scanned in float32, with a warning\n"
    "  --no-f16          scan the float32 shards even where the copy is valid\n"
    "  --build-i8        write (or refresh) the int8 scan copy (DIR/.scan-i8/, a\n"
    "                    quarter of the float32 bytes plus 16 per row), the same\n"
    "                    way: exact results, every row whose score may reach the\n"
    "                    top k rescored from the float32 shards. Scanned in\n"
    "                    preference to the float16 copy where both are valid\n"
    "  --no-i8           do not scan the int8 copy (the float16 copy, if any, is\n"
    "                    scanned instead)\n"
    "  -v, --verbose     also print info lines (which backend was taken and why;\n"
    "                    with --text, the time of each stage)\n"
    "  -h, --help        this help\n"
    "\n"
    "Scores are cosine similarities (1 = same direction); ties are ranked in\n"
    "shard and row order. The query track itself, when it is in the catalog,\n"
    "comes first with score 1.\n"
    "\n"
    "exit status: 0 ok, 1 fatal (no shards, unreadable shards, track not found,\n"
    "query file not decodable), 2 usage error, --backend cuda without a GPU,\n"
    "--text on shards of a model without a text tower, a missing or malformed\n"
    "CLAP weights file or a query that is not UTF-8 (permanent).\n";

static int usage(const char *fmt, const char *arg)
{
    fputs("stemline search: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see stemline search --help)\n", stderr);
    return SL_EXIT_USAGE;
}

static int parse_count(const char *s, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Names of the sub-folders of dir, sorted; NULL-terminated, NULL when unreadable. */
static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **subdirs(const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t cap = 8;
    char **v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (!is_dir(p))
            continue;
        if (*n + 1 >= cap) {
            char **nv = realloc(v, 2 * cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
            cap *= 2;
        }
        v[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (v) {
        qsort(v, *n, sizeof *v, name_cmp);
        v[*n] = NULL;
    }
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void print_names(FILE *f, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? ", " : "", v[i]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the process, every thread */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_num(double x)
{
    if (isfinite(x))
        printf("%.9g", x);
    else
        fputs("null", stdout);
}

/* indent NULL: all on one line (a --queries answer) */
static void print_hits_json(const sl_vindex *ix, const sl_search_hit *hits, size_t n_hits, const char *indent)
{
    putchar('[');
    for (size_t i = 0; i < n_hits; i++) {
        const sl_search_hit *h = &hits[i];
        if (indent)
            printf("%s\n%s  ", i ? "," : "", indent);
        else if (i)
            fputs(", ", stdout);
        printf("{\"rank\": %zu, \"score\": ", i + 1);
        print_num(h->score);
        fputs(", \"id\": ", stdout);
        sl_json_str(stdout, h->id);
        fputs(", \"path\": ", stdout);
        sl_json_str(stdout, h->path);
        fputs(", \"start\": ", stdout);
        print_num(h->start);
        fputs(", \"end\": ", stdout);
        print_num(h->end);
        fputs(", \"shard\": ", stdout);
        sl_json_str(stdout, sl_vindex_shard_path(ix, h->shard));
        printf(", \"row\": %zu}", h->row);
    }
    if (n_hits && indent)
        printf("\n%s", indent);
    putchar(']');
}

static void print_hits_table(const sl_search_hit *hits, size_t n_hits)
{
    printf("%4s  %9s  %-40s  %s\n", "rank", "score", "id", "start-end (s)  path");
    for (size_t i = 0; i < n_hits; i++) {
        const sl_search_hit *h = &hits[i];
        printf("%4zu  %9.6f  %-40s  %.2f-%.2f  %s\n", i + 1, h->score, h->id ? h->id : "?", h->start, h->end,
               h->path ? h->path : "?");
    }
}

/* Two sets of shards of one job in one folder hold every track twice: the
 * results would list it twice too. Said on stderr; the search goes on. */
static void warn_duplicates(const sl_vindex *ix, const char *out_dir)
{
    sl_vindex_dups d;
    char m[1024];
    if (!sl_vindex_may_hold_duplicates(ix)) /* one set of shards: reading every jsonl would find nothing */
        return;
    int rc = sl_vindex_duplicates(ix, &d);
    if (rc) {
        fprintf(stderr, "stemline search: warning: could not check the shards for duplicated tracks: %s\n",
                sl_errmsg(rc, m, sizeof m));
        return;
    }
    if (!d.duplicated)
        return;
    fprintf(stderr,
            "stemline search: warning: the shards hold %zu track%s more than once (%zu extra rows of %zu), e.g. "
            "'%s' in %s and %s: %s holds two sets of shards of a job (runs with different shard counts), so "
            "results may list a track twice; `stemline merge %s --fix` keeps one set\n",
            d.duplicated, d.duplicated == 1 ? "" : "s", d.extra_rows, d.rows, d.example, d.where[0], d.where[1],
            out_dir, out_dir);
}

/* A text query is never centred: said once when the audio vectors are. */
static void note_centred(const sl_vindex *ix)
{
    const sl_index_meta *im = sl_vindex_meta(ix);
    if (im && im->center)
        fprintf(stderr, "stemline search: note: these audio vectors are centred on the catalog's mean "
                        "(embedding.center: catalog); a text query is not (there is no text mean): its scores "
                        "rank the tracks but are not comparable with uncentred ones\n");
}

/* After a CPU scan: which scan copies it read, for -v. */
static void scan_copies(const sl_vindex *ix, char *buf, size_t cap)
{
    size_t v16, stale16, v8, stale8, f32;
    sl_vindex_f16_status(ix, &v16, &stale16, &f32);
    sl_vindex_i8_status(ix, &v8, &stale8, &f32);
    if (v8)
        snprintf(buf, cap, "int8 copy (%s) of %zu, float16 copy valid for %zu of %zu float32 shards",
                 sl_search_dot_i8_name(sl_search_dot_isa()), v8, v16, f32);
    else
        snprintf(buf, cap, "float16 copy of %zu of %zu float32 shards", v16, f32);
}

/* --text: the queries through the text tower of the shards' CLAP checkpoint, one
 * scan for all of them. Returns the exit status. */
static int search_texts(sl_vindex *ix, sl_op_ctx *ctx, const char **texts, size_t nq, size_t k, size_t block_rows,
                        int json, const char *model, const char *source)
{
    char m[1024];
    sl_clap_text *tm = NULL;
    const size_t dim = (size_t)sl_vindex_dim(ix);
    float *q = malloc(nq * dim * sizeof *q);
    size_t *ntok = calloc(nq, sizeof *ntok), n_hits = 0;
    int *trunc = calloc(nq, sizeof *trunc);
    sl_search_hit *hits = calloc(nq * k, sizeof *hits);
    const double t0 = now_s();
    int rc = q && ntok && trunc && hits ? sl_vindex_open_text(ix, ctx, &tm) : SL_ENOMEM;
    const double t1 = now_s();
    if (!rc)
        rc = sl_clap_text_embed(tm, texts, nq, q, ntok, trunc);
    const double t2 = now_s();
    int rcp = sl_vindex_prefetch_wait(ix);
    if (!rc)
        rc = rcp;
    if (!rc)
        note_centred(ix);
    if (!rc)
        rc = sl_vindex_search_on(ix, strcmp(sl_op_ctx_backend(ctx), "cpu") ? ctx : NULL, q, nq, k, block_rows, hits,
                                 &n_hits);
    const double t3 = now_s();
    /* every query's hits in one pass per shard when they lie end to end */
    for (size_t i = 0; i < nq && !rc; i += n_hits == k ? nq : 1)
        rc = sl_vindex_describe(ix, hits + i * k, n_hits == k ? nq * k : n_hits);
    char copies[160];
    scan_copies(ix, copies, sizeof copies);
    if (!rc)
        SL_INFO("search: %zu text quer%s: text tower %.3f s to load, %.3f s to embed; scan of %zu rows %.3f s "
                "(%s, %s); describe %.3f s", nq, nq == 1 ? "y" : "ies", t1 - t0, t2 - t1, sl_vindex_rows(ix), t3 - t2,
                strcmp(sl_op_ctx_backend(ctx), "cpu") ? sl_op_ctx_backend(ctx) : sl_search_dot_isa_name(sl_search_dot_isa()),
                copies, now_s() - t3);
    int status = 0;
    if (rc) {
        fprintf(stderr, "stemline search: %s\n", sl_errmsg(rc, m, sizeof m));
        status = rc == SL_EINVAL || rc == SL_EUNSUPPORTED ? SL_EXIT_USAGE : sl_exit_status_for(rc);
        goto out;
    }
    for (size_t i = 0; i < nq; i++)
        sl_text_query_warnings("stemline search", texts[i], i, ntok[i], trunc[i], sl_clap_text_context(tm));
    if (json)
        putchar('[');
    for (size_t i = 0; i < nq; i++) {
        if (json) {
            fputs(i ? ",\n  {\"query\": " : "\n  {\"query\": ", stdout);
            sl_json_str(stdout, texts[i]);
            printf(", \"tokens\": %zu, \"truncated\": %s, \"hits\": ", ntok[i], trunc[i] ? "true" : "false");
            print_hits_json(ix, hits + i * k, n_hits, "  ");
            putchar('}');
        } else {
            printf("%s# %zu vectors of %s/%s (dim %zu), query --text ", i ? "\n" : "", sl_vindex_rows(ix), model,
                   source, dim);
            sl_json_str(stdout, texts[i]);
            printf(" (%zu tokens%s), backend %s\n", ntok[i], trunc[i] ? ", truncated" : "", sl_op_ctx_backend(ctx));
            print_hits_table(hits + i * k, n_hits);
        }
    }
    if (json)
        fputs("\n]\n", stdout);
    status = fflush(stdout) == 0 ? 0 : SL_EXIT_FATAL;
out:
    for (size_t i = 0; hits && i < nq; i++)
        sl_search_hits_free(hits + i * k, n_hits);
    free(hits);
    sl_clap_text_close(tm);
    free(q);
    free(ntok);
    free(trunc);
    return status;
}

/* One --queries line: the query text and its k (a JSON object line may set
 * them); returns 0, or SL_EINVAL with the reason in err. *doc holds the JSON. */
static int session_parse(char *line, size_t len, size_t k_default, sl_json *doc, const char **text, size_t *k,
                         char *err, size_t cap)
{
    *text = line;
    *k = k_default;
    if (strlen(line) != len) {
        snprintf(err, cap, "the line holds a NUL byte");
        return SL_EINVAL;
    }
    if (line[0] != '{')
        return 0;
    if (sl_json_parse(line, len, doc)) {
        sl_errmsg(SL_EFORMAT, err, cap);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < doc->n; i++)
        if (strcmp(doc->keys[i], "text") && strcmp(doc->keys[i], "k")) {
            snprintf(err, cap, "unknown key '%.100s' (a query object has \"text\" and optionally \"k\")", doc->keys[i]);
            return SL_EINVAL;
        }
    const sl_json *t = sl_json_get(doc, "text"), *kv = sl_json_get(doc, "k");
    if (!t || t->type != SL_JSON_STRING || strlen(t->s) != t->len) {
        snprintf(err, cap, "a query object needs \"text\": a string without NUL");
        return SL_EINVAL;
    }
    *text = t->s;
    if (kv) {
        if (kv->type != SL_JSON_NUMBER || !(kv->num >= 1 && kv->num <= 1000000) || kv->num != floor(kv->num)) {
            snprintf(err, cap, "\"k\" needs a whole number from 1 to 1000000");
            return SL_EINVAL;
        }
        *k = (size_t)kv->num;
    }
    return 0;
}

static void session_error(size_t line, const char *msg)
{
    printf("{\"line\": %zu, \"error\": ", line);
    sl_json_str(stdout, msg);
    fputs("}\n", stdout);
}

/* --queries: the shards (kept mapped on the CPU backend) and the text tower are
 * opened once, then each line of in is answered with one JSON line, flushed.
 * A bad line gets an error line and the session goes on; a failure of the
 * shards or the device ends it. Returns the exit status. */
static int search_session(sl_vindex *ix, sl_op_ctx *ctx, FILE *in, size_t k_default, size_t block_rows)
{
    char m[1024];
    sl_clap_text *tm = NULL;
    const int cpu = !strcmp(sl_op_ctx_backend(ctx), "cpu");
    const size_t dim = (size_t)sl_vindex_dim(ix);
    float *q = malloc(dim * sizeof *q);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    const double t0 = now_s();
    int rc = q ? 0 : SL_ENOMEM;
    if (!rc && cpu)
        rc = sl_vindex_keep_mapped(ix);
    const double t1 = now_s();
    if (!rc)
        rc = sl_vindex_open_text(ix, ctx, &tm);
    if (rc) {
        fprintf(stderr, "stemline search: %s\n", sl_errmsg(rc, m, sizeof m));
        free(q);
        return rc == SL_EINVAL || rc == SL_EUNSUPPORTED ? SL_EXIT_USAGE : sl_exit_status_for(rc);
    }
    SL_INFO("search: session ready: %zu rows mapped in %.3f s, text tower loaded in %.3f s", sl_vindex_rows(ix),
            t1 - t0, now_s() - t1);
    note_centred(ix);
    int status = 0;
    ssize_t len;
    while (!status && (len = getline(&line, &cap, in)) >= 0) {
        const double ts = now_s(), cs = cpu_s();
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        sl_json doc = {0};
        const char *text;
        size_t k, n_hits = 0, ntok = 0;
        int trunc = 0;
        sl_search_hit *hits = NULL;
        rc = session_parse(line, (size_t)len, k_default, &doc, &text, &k, m, sizeof m);
        if (!rc) {
            hits = calloc(k, sizeof *hits);
            rc = hits ? sl_clap_text_embed(tm, &text, 1, q, &ntok, &trunc) : SL_ENOMEM;
            if (rc)
                sl_errmsg(rc, m, sizeof m);
        }
        if (!rc) {
            rc = sl_vindex_search_on(ix, cpu ? NULL : ctx, q, 1, k, block_rows, hits, &n_hits);
            if (!rc)
                rc = sl_vindex_describe(ix, hits, n_hits);
            if (rc) {
                sl_errmsg(rc, m, sizeof m);
                status = rc == SL_ENODEVICE ? SL_EXIT_USAGE : SL_EXIT_FATAL; /* restarting may do */
            }
        }
        if (rc) {
            session_error(lineno, m);
        } else {
            sl_text_query_warnings("stemline search", text, lineno - 1, ntok, trunc, sl_clap_text_context(tm));
            printf("{\"line\": %zu, \"query\": ", lineno);
            sl_json_str(stdout, text);
            printf(", \"tokens\": %zu, \"truncated\": %s, \"hits\": ", ntok, trunc ? "true" : "false");
            print_hits_json(ix, hits, n_hits, NULL);
            printf(", \"ms\": %.3f, \"cpu_ms\": %.3f}\n", (now_s() - ts) * 1e3, (cpu_s() - cs) * 1e3);
        }
        if (hits)
            sl_search_hits_free(hits, n_hits);
        free(hits);
        sl_json_free(&doc);
        if (fflush(stdout) != 0 && !status)
            status = SL_EXIT_FATAL;
    }
    if (!status && ferror(in)) {
        fprintf(stderr, "stemline search: --queries: read error: %s\n", strerror(errno));
        status = SL_EXIT_FATAL;
    }
    free(line);
    free(q);
    sl_clap_text_close(tm);
    return status;
}

/* texts: room for argc queries (the --text values). */
static int search_main(int argc, char **argv, const char **texts)
{
    const char *out_dir = NULL, *audio = NULL, *id = NULL, *model = NULL, *source = "mix", *backend = "auto";
    const char *queries = NULL;
    size_t k = 10, block_rows = 0, threads = 0;
    int json = 0, verbose = 0, build16 = 0, no16 = 0, build8 = 0, no8 = 0;
    size_t n_texts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(search_help, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--build-f16")) {
            build16 = 1;
        } else if (!strcmp(a, "--no-f16")) {
            no16 = 1;
        } else if (!strcmp(a, "--build-i8")) {
            build8 = 1;
        } else if (!strcmp(a, "--no-i8")) {
            no8 = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (!strncmp(a, "--backend=", 10)) {
            backend = a + 10;
        } else if (!strcmp(a, "--text")) {
            if (!v)
                return usage("%s needs a value", a);
            texts[n_texts++] = argv[++i];
        } else if (!strcmp(a, "--queries")) {
            if (!v)
                return usage("%s needs a value", a);
            queries = argv[++i];
        } else if (!strcmp(a, "--audio") || !strcmp(a, "--id") || !strcmp(a, "--model") || !strcmp(a, "--source") ||
                   !strcmp(a, "-k") || !strcmp(a, "--block-rows") || !strcmp(a, "--backend") ||
                   !strcmp(a, "--threads")) {
            if (!v)
                return usage("%s needs a value", a);
            i++;
            if (!strcmp(a, "--audio"))
                audio = v;
            else if (!strcmp(a, "--id"))
                id = v;
            else if (!strcmp(a, "--model"))
                model = v;
            else if (!strcmp(a, "--source"))
                source = v;
            else if (!strcmp(a, "--backend"))
                backend = v;
            else if (!strcmp(a, "-k")) {
                if (parse_count(v, 1, 1000000, &k))
                    return usage("-k needs a number from 1 to 1000000, got '%s'", v);
            } else if (!strcmp(a, "--threads")) {
                if (parse_count(v, 1, 1024, &threads))
                    return usage("--threads needs a number from 1 to 1024, got '%s'", v);
            } else if (parse_count(v, 1, 1 << 24, &block_rows)) {
                return usage("--block-rows needs a number from 1 to 16777216, got '%s'", v);
            }
        } else if (a[0] == '-' && a[1]) {
            return usage("unknown option '%s'", a);
        } else if (!out_dir) {
            out_dir = a;
        } else {
            return usage("one output folder only (extra argument '%s')", a);
        }
    }
    if (!out_dir)
        return usage("%s", "missing OUT_DIR");
    /* the answer is the output; how the backend was chosen only with -v */
    if (!verbose && sl_log_get_level() == SL_LOG_INFO)
        sl_log_set_level(SL_LOG_WARN);
    const int n_kinds = (audio != NULL) + (id != NULL) + (n_texts > 0) + (queries != NULL);
    if (n_kinds != 1 && !((build16 || build8) && !n_kinds))
        return usage("%s", n_kinds ? "give one kind of query: --audio, --id, --text or --queries"
                                   : "missing the query: --audio FILE, --id TRACK_ID, --text QUERY or --queries FILE");
    if (!*source || strchr(source, '/') || (model && (!*model || strchr(model, '/'))))
        return usage("%s", "--model and --source take a folder name");
    if (strcmp(backend, "auto") && strcmp(backend, "cpu") && strcmp(backend, "cuda") && strcmp(backend, "cuda-emu") &&
        strncmp(backend, "cuda:", 5))
        return usage("--backend needs auto, cpu, cuda or cuda-emu, got '%s'", backend);

    if (!is_dir(out_dir)) {
        fprintf(stderr, "stemline search: %s: no such output folder\n", out_dir);
        return SL_EXIT_FATAL;
    }
    size_t plen = strlen(out_dir) + 32 + (model ? strlen(model) : 0) + strlen(source) + 256;
    char *emb = malloc(plen), *dir = malloc(plen);
    if (!emb || !dir) {
        free(emb);
        free(dir);
        return SL_EXIT_FATAL;
    }
    int status = SL_EXIT_FATAL;
    char **names = NULL;
    size_t n_names = 0;
    sl_vindex *ix = NULL;
    float *q = NULL;
    sl_search_hit *hits = NULL;
    size_t n_hits = 0;
    sl_op_ctx *ctx = NULL;
    sl_emb_model *em = NULL;
    char m[1024];
    snprintf(emb, plen, "%s/embeddings", out_dir);
    names = subdirs(emb, &n_names);
    if (!model) {
        if (n_names == 0) {
            fprintf(stderr, "stemline search: %s has no vector shards (no %s/MODEL folder): run a job with an "
                            "embedding model first\n", out_dir, emb);
            goto out;
        }
        if (n_names > 1) {
            fprintf(stderr, "stemline search: %s holds vectors of several models (", out_dir);
            print_names(stderr, names, n_names);
            fprintf(stderr, "): choose one with --model\n");
            status = SL_EXIT_USAGE;
            goto out;
        }
        model = names[0];
    }
    snprintf(dir, plen, "%s/%s", emb, model);
    if (!is_dir(dir)) {
        fprintf(stderr, "stemline search: %s has no vectors of model '%s'", out_dir, model);
        if (n_names) {
            fputs(" (there are: ", stderr);
            print_names(stderr, names, n_names);
            fputc(')', stderr);
        }
        fputc('\n', stderr);
        goto out;
    }
    snprintf(dir, plen, "%s/%s/%s", emb, model, source);
    if (!is_dir(dir)) {
        char md[4096];
        size_t n_src = 0;
        snprintf(md, sizeof md, "%s/%s", emb, model);
        char **src = subdirs(md, &n_src);
        fprintf(stderr, "stemline search: %s has no '%s' vectors of model %s", out_dir, source, model);
        if (n_src) {
            fputs(" (sources: ", stderr);
            print_names(stderr, src, n_src);
            fputc(')', stderr);
        }
        fputc('\n', stderr);
        free_names(src, n_src);
        goto out;
    }
    int rc = sl_vindex_open(&ix, dir);
    if (rc) {
        fprintf(stderr, "stemline search: %s\n", sl_errmsg(rc, m, sizeof m));
        goto out;
    }
    for (int b = 0; b < 2; b++) {
        if (!(b ? build8 : build16))
            continue;
        size_t written = 0, kept = 0;
        const double tb = now_s();
        rc = b ? sl_vindex_build_i8(ix, &written, &kept) : sl_vindex_build_f16(ix, &written, &kept);
        if (rc) {
            fprintf(stderr, "stemline search: %s: %s\n", b ? "--build-i8" : "--build-f16", sl_errmsg(rc, m, sizeof m));
            goto out;
        }
        fprintf(stderr, "stemline search: %s scan copy of %s: %zu shard%s written, %zu up to date (%.1f s)\n",
                b ? "int8" : "float16", dir, written, written == 1 ? "" : "s", kept, now_s() - tb);
    }
    if ((build8 || build16) && !n_kinds) {
        status = 0;
        goto out;
    }
    sl_vindex_set_f16(ix, !no16);
    sl_vindex_set_i8(ix, !no8);
    warn_duplicates(ix, out_dir);
    if (!threads)
        threads = (size_t)sl_cpu_count();
    sl_vindex_set_threads(ix, (int)threads);
    int dim = sl_vindex_dim(ix);
    q = malloc((size_t)dim * sizeof *q);
    hits = calloc(k, sizeof *hits);
    if (!q || !hits) {
        fprintf(stderr, "stemline search: out of memory\n");
        goto out;
    }
    /* one context for the query's embedding and the scan; on the CPU backend the
     * scan takes the BLAS path (no copies), elsewhere gemm + topk on the device */
    rc = sl_op_ctx_open(&ctx, backend);
    if (!rc)
        rc = sl_op_ctx_set_threads(ctx, (int)threads);
    if (!rc && queries) {
        FILE *in = strcmp(queries, "-") ? fopen(queries, "r") : stdin;
        if (!in) {
            fprintf(stderr, "stemline search: --queries %s: %s\n", queries, strerror(errno));
            goto out;
        }
        status = search_session(ix, ctx, in, k, block_rows);
        if (in != stdin)
            fclose(in);
        goto out;
    }
    if (!rc && n_texts) {
        /* with CPUs to spare, the scanned files' pages are mapped while the text tower embeds */
        if (threads > 1 && !strcmp(sl_op_ctx_backend(ctx), "cpu"))
            sl_vindex_prefetch_start(ix);
        status = search_texts(ix, ctx, texts, n_texts, k, block_rows, json, model, source);
        goto out;
    }
    if (!rc && id)
        rc = sl_vindex_find_id(ix, id, q, NULL, NULL);
    if (!rc && !id) {
        rc = sl_vindex_open_model(ix, ctx, &em);
        if (!rc)
            rc = sl_vindex_embed_file(ix, em, audio, q, NULL);
    }
    if (!rc)
        rc = sl_vindex_search_on(ix, strcmp(sl_op_ctx_backend(ctx), "cpu") ? ctx : NULL, q, 1, k, block_rows, hits,
                                 &n_hits);
    if (!rc) {
        char copies[160];
        scan_copies(ix, copies, sizeof copies);
        SL_INFO("search: scan of %zu rows (%s)", sl_vindex_rows(ix), copies);
        rc = sl_vindex_describe(ix, hits, n_hits);
    }
    if (rc) {
        fprintf(stderr, "stemline search: %s\n", sl_errmsg(rc, m, sizeof m));
        if (rc == SL_ENODEVICE) /* permanent, as for run */
            status = SL_EXIT_USAGE;
        goto out;
    }
    if (json) {
        print_hits_json(ix, hits, n_hits, "");
        putchar('\n');
    } else {
        printf("# %zu vectors of %s/%s (dim %d), query %s%s, backend %s\n", sl_vindex_rows(ix), model, source, dim,
               id ? "--id " : "--audio ", id ? id : audio, sl_op_ctx_backend(ctx));
        print_hits_table(hits, n_hits);
    }
    status = fflush(stdout) == 0 ? 0 : SL_EXIT_FATAL;
out:
    if (hits)
        sl_search_hits_free(hits, n_hits);
    free(hits);
    free(q);
    if (em)
        sl_emb_close(em);
    if (ctx)
        sl_op_ctx_close(ctx);
    sl_vindex_close(ix);
    free_names(names, n_names);
    free(emb);
    free(dir);
    return status;
}

int sl_cmd_search(int argc, char **argv)
{
    const char **texts = calloc((size_t)argc + 1, sizeof *texts);
    if (!texts)
        return SL_EXIT_FATAL;
    int status = search_main(argc, argv, texts);
    free(texts);
    return status;
}
