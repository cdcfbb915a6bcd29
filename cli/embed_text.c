/* stemline embed-text: text vectors of the LAION-CLAP text tower
 * (models/clap_text.h), as JSON lines or one .npy matrix. */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "kernels/ops.h"
#include "models/clap_text.h"
#include "pipeline/runner.h"

static const char embed_text_help[] =
    "usage: stemline embed-text --model CLAP.safetensors [options] QUERY...\n"
    "\n"
    "Embeds each QUERY with the text tower of a LAION-CLAP weights file\n"
    "(tools/convert_clap.py or `stemline models fetch clap-music`): the RoBERTa\n"
    "tokenizer and encoder, the text projection and L2 normalisation, as the\n"
    "laion-clap package's get_text_embedding. The vectors live in the space of the\n"
    "audio vectors of `embedding.model: clap`, so their dot products with the\n"
    "vector shards are cosine similarities (for faiss and the like).\n"
    "\n"
    "options:\n"
    "  --model FILE     the CLAP weights file (required)\n"
    "  --out FILE.npy   write the vectors as one [queries, dim] float32 .npy\n"
    "                   instead of printing them\n"
    "  --backend B      auto (default), cpu, cuda or cuda-emu\n"
    "  -v, --verbose    also print info lines\n"
    "  -h, --help       this help\n"
    "\n"
    "Output: one JSON object per query and line, {\"text\", \"tokens\" (with <s> and\n"
    "</s>), \"truncated\", \"vector\"}. Queries are UTF-8 (invalid UTF-8 is refused).\n"
    "A query longer than 75 tokens is cut to its first 75 (77 with <s> and </s>),\n"
    "as the reference tokenizer does, and a warning says so. An empty query is\n"
    "embedded as the reference embeds it (<s></s> only), with a warning: its\n"
    "vector says nothing about music.\n"
    "\n"
    "exit status: 0 ok, 1 fatal (memory, I/O), 2 usage error, unreadable or\n"
    "malformed weights, invalid UTF-8, or --backend cuda without a GPU.\n";

static int usage(const char *fmt, const char *arg) {
    fputs("stemline embed-text: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see stemline embed-text --help)\n", stderr);
    return SL_EXIT_USAGE;
}

/* Warnings about queries that the reference embeds but that deserve a word. */
void sl_text_query_warnings(const char *cmd, const char *text, size_t i, size_t tokens, int truncated, int context) {
    if (truncated)
        fprintf(stderr, "%s: warning: query %zu is longer than %d tokens: only its first %d are embedded (as the "
                        "reference tokenizer truncates)\n", cmd, i + 1, context, context - 2);
    if (!*text || tokens == 2)
        fprintf(stderr, "%s: warning: query %zu is %s: it is embedded as <s></s>, which says nothing about music\n",
                cmd, i + 1, *text ? "nothing but special tokens" : "empty");
}

int sl_cmd_embed_text(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *backend = "auto";
    int verbose = 0;
    const char **queries = calloc((size_t)argc + 1, sizeof *queries);
    size_t nq = 0;
    if (!queries) return SL_EXIT_FATAL;
    int only_args = 0, status = SL_EXIT_FATAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (only_args || a[0] != '-' || !a[1]) {
            queries[nq++] = a;
        } else if (!strcmp(a, "--")) {
            only_args = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(embed_text_help, stdout);
            free(queries);
            return 0;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--out") || !strcmp(a, "--backend")) {
            if (!v) {
                free(queries);
                return usage("%s needs a value", a);
            }
            i++;
            *(!strcmp(a, "--model") ? &model : !strcmp(a, "--out") ? &out : &backend) = v;
        } else {
            free(queries);
            return usage("unknown option '%s' (a query that starts with '-' goes after --)", a);
        }
    }
    if (!model || !nq) {
        free(queries);
        return usage("%s", !model ? "missing --model CLAP.safetensors" : "missing the queries");
    }
    if (!verbose && sl_log_get_level() == SL_LOG_INFO) sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    sl_clap_text *m = NULL;
    float *vec = NULL;
    size_t *ntok = calloc(nq, sizeof *ntok);
    int *trunc = calloc(nq, sizeof *trunc);
    char msg[1024];
    int rc = ntok && trunc ? sl_op_ctx_open(&ctx, backend) : SL_ENOMEM;
    if (!rc) rc = sl_clap_text_open(&m, ctx, model);
    if (!rc) {
        vec = malloc(nq * (size_t)sl_clap_text_dim(m) * sizeof *vec);
        rc = vec ? sl_clap_text_embed(m, queries, nq, vec, ntok, trunc) : SL_ENOMEM;
    }
    if (rc) {
        fprintf(stderr, "stemline embed-text: %s\n", sl_errmsg(rc, msg, sizeof msg));
        status = rc == SL_EINVAL ? SL_EXIT_USAGE : sl_exit_status_for(rc);
        goto done;
    }
    const size_t dim = (size_t)sl_clap_text_dim(m);
    for (size_t i = 0; i < nq; i++)
        sl_text_query_warnings("stemline embed-text", queries[i], i, ntok[i], trunc[i], sl_clap_text_context(m));
    if (out) {
        rc = sl_npy_write(out, vec, nq, dim, "float32");
        if (rc) {
            fprintf(stderr, "stemline embed-text: %s\n", sl_errmsg(rc, msg, sizeof msg));
            status = sl_exit_status_for(rc);
            goto done;
        }
    } else {
        for (size_t i = 0; i < nq; i++) {
            fputs("{\"text\": ", stdout);
            sl_json_str(stdout, queries[i]);
            printf(", \"tokens\": %zu, \"truncated\": %s, \"vector\": [", ntok[i], trunc[i] ? "true" : "false");
            for (size_t j = 0; j < dim; j++) printf("%s%.9g", j ? ", " : "", vec[i * dim + j]);
            fputs("]}\n", stdout);
        }
    }
    status = fflush(stdout) == 0 ? 0 : SL_EXIT_FATAL;
done:
    sl_clap_text_close(m);
    sl_op_ctx_close(ctx);
    free(vec);
    free(ntok);
    free(trunc);
    free(queries);
    return status;
}
