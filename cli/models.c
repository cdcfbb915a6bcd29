/* stemline models: lists the built-in models, describes a weights file
 * (models info) and downloads + converts official weights (models fetch, which
 * runs tools/fetch_models.py: downloading, checksums and the torch-based
 * conversion are Python's job, so the C program gains no dependency). */
#include "cli/commands.h"

#include "common/sl_error.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "pipeline/runner.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char models_help[] =
    "usage: stemline models [list]\n"
    "       stemline models info [--json] [--tensors] FILE\n"
    "       stemline models fetch NAME [--dir DIR] [--from SRC_DIR] [--force]\n"
    "\n"
    "list (the default)\n"
    "  the built-in models with their rates, sources and default hyper-parameters;\n"
    "  models with no weights need no download.\n"
    "\n"
    "info FILE\n"
    "  what a weights file (.safetensors) is: architecture, metadata, tensor and\n"
    "  parameter counts, dtypes, file size. The whole file is validated first.\n"
    "  --tensors  also list every tensor (name, dtype, shape)\n"
    "  --json     one JSON object instead (with --tensors: each tensor's sum too)\n"
    "\n"
    "fetch NAME\n"
    "  downloads the official weights of NAME from their canonical location,\n"
    "  checks their checksums, converts them (tools/convert_*.py; needs python3\n"
    "  with torch and numpy) and writes DIR/NAME.safetensors atomically.\n"
    "  NAME: umxhq   Open-Unmix UMX-HQ, 4 targets (Zenodo 3370489, 4 x 34 MB)\n"
    "        cnn14   PANNs Cnn14 + AudioSet head (Zenodo 3987831, 312 MB)\n"
    "        clap-music  LAION-CLAP music checkpoint + roberta-base tokenizer\n"
    "                (huggingface.co/lukewys/laion_clap, FacebookAI/roberta-base)\n"
    "        bs_roformer_musdb, bs_roformer_viperx, mel_band_roformer_viperx,\n"
    "        mel_band_roformer_kj   RoFormer checkpoint + YAML config (needs PyYAML\n"
    "                too; no published digests: checked by length and against the\n"
    "                config tensor by tensor; licences in `stemline models`)\n"
    "        htdemucs, htdemucs_6s, htdemucs_ft   HT-Demucs v4 (demucs's releases;\n"
    "                htdemucs_ft is a bag of 4 models)\n"
    "  --dir DIR       where to write (default $XDG_DATA_HOME/stemline/models,\n"
    "                  else ~/.local/share/stemline/models)\n"
    "  --from SRC_DIR  use official files already downloaded into SRC_DIR\n"
    "                  (checked the same way) instead of downloading\n"
    "  --force         replace an existing DIR/NAME.safetensors\n"
    "  Without internet it fails within seconds and says how to convert files you\n"
    "  already have. Environment: STEMLINE_PYTHON (the python3 to run),\n"
    "  STEMLINE_TOOLS_DIR (where fetch_models.py is), STEMLINE_MODELS_URL_BASE\n"
    "  (a mirror holding the official file names).\n"
    "\n"
    "exit status: 0 ok, 1 failed (message on stderr), 2 usage error.\n";

static int models_list(void)
{
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, "cpu");
    if (rc)
        return SL_EXIT_FATAL;
    sl_cfg_opts none = {0};
    printf("separation models:\n");
    for (int i = 0; sl_sep_model_names[i]; i++) {
        sl_sep_model *m = NULL;
        if (sl_sep_open(&m, sl_sep_model_names[i], NULL, &none, ctx)) {
            printf("  %-10s (needs weights)\n", sl_sep_model_names[i]);
            continue;
        }
        const sl_sep_info *in = sl_sep_get_info(m);
        printf("  %-10s %d Hz, %d ch, sources:", in->name, in->sample_rate, in->channels);
        for (int s = 0; s < in->n_sources; s++)
            printf(" %s", in->sources[s]);
        printf("\n             %s\n", in->params);
        sl_sep_close(m);
    }
    printf("embedding models:\n");
    for (int i = 0; sl_emb_model_names[i]; i++) {
        sl_emb_model *m = NULL;
        if (sl_emb_open(&m, sl_emb_model_names[i], NULL, &none, ctx)) {
            printf("  %-10s (needs weights)\n", sl_emb_model_names[i]);
            continue;
        }
        const sl_emb_info *in = sl_emb_get_info(m);
        printf("  %-10s %d Hz, %d ch, dim %d\n             %s\n", in->name, in->sample_rate, in->channels,
               in->dim, in->params);
        sl_emb_close(m);
    }
    sl_op_ctx_close(ctx);
    printf("weights to download (stemline models fetch NAME):\n"
           "  umxhq      Open-Unmix UMX-HQ (vocals, drums, bass, other), MIT\n"
           "  cnn14      PANNs Cnn14 with the AudioSet head (527 tags), MIT\n"
           "  clap-music LAION-CLAP music (audio + text towers, tokenizer), CC0 + MIT\n"
           "  bs_roformer_musdb         BS-RoFormer 4 stems (ZFTurbo), MUSDB18-HQ only: research, non-commercial\n"
           "  bs_roformer_viperx        BS-RoFormer vocals (viperx), no licence stated, data not disclosed\n"
           "  mel_band_roformer_viperx  Mel-Band RoFormer vocals (viperx), no licence stated, data not disclosed\n"
           "  mel_band_roformer_kj      Mel-Band RoFormer vocals (KimberleyJensen), see its model page\n"
           "  (RoFormers: no published digests; checked by length and tensor by tensor, README.md)\n"
           "  htdemucs, htdemucs_6s, htdemucs_ft  HT-Demucs v4 (demucs's releases), MIT\n"
           "checkpoints to convert yourself (tools/convert_roformer.py CHECKPOINT --config YAML):\n"
           "  bs_roformer, mel_band_roformer: ZFTurbo's Music-Source-Separation-Training releases and\n"
           "             the community models python-audio-separator lists; check each one's licence.\n"
           "             Weights trained on MUSDB18 (e.g. ZFTurbo's 4-stem BS-RoFormer) inherit its\n"
           "             research-only, non-commercial terms.\n");
    return 0;
}

/* ---- info ---- */

/* Sum of a tensor's values as doubles: lets a test compare what the C reader
 * sees with what Python wrote, element offsets included. */
static double tensor_sum(const sl_st_tensor *t)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)sl_st_numel(t), esz = sl_st_dtype_size(t->dtype);
    double s = 0;
    for (size_t i = 0; i < n; i++, p += esz) {
        switch (t->dtype) {
        case SL_ST_F32: {
            float v;
            memcpy(&v, p, 4);
            s += v;
            break;
        }
        case SL_ST_F64: {
            double v;
            memcpy(&v, p, 8);
            s += v;
            break;
        }
        case SL_ST_F16: {
            unsigned short h;
            memcpy(&h, p, 2);
            s += sl_f16_to_f32(h);
            break;
        }
        case SL_ST_BF16: {
            unsigned short h;
            memcpy(&h, p, 2);
            uint32_t b = (uint32_t)h << 16;
            float v;
            memcpy(&v, &b, 4);
            s += v;
            break;
        }
        case SL_ST_I64: {
            int64_t v;
            memcpy(&v, p, 8);
            s += (double)v;
            break;
        }
        case SL_ST_I32: {
            int32_t v;
            memcpy(&v, p, 4);
            s += v;
            break;
        }
        case SL_ST_U8:
        case SL_ST_BOOL:
            s += *p;
            break;
        }
    }
    return s;
}

static int models_info(int argc, char **argv)
{
    int json = 0, list = 0, end_opts = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!end_opts && !strcmp(a, "--json")) {
            json = 1;
        } else if (!end_opts && !strcmp(a, "--tensors")) {
            list = 1;
        } else if (!end_opts && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            fputs(models_help, stdout);
            return 0;
        } else if (!end_opts && !strcmp(a, "--")) {
            end_opts = 1;
        } else if (!end_opts && a[0] == '-' && a[1]) {
            fprintf(stderr, "stemline models info: unknown option '%s' (see stemline models --help)\n", a);
            return SL_EXIT_USAGE;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "stemline models info: one file at a time ('%s' and '%s')\n", path, a);
            return SL_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "stemline models info: missing FILE (a .safetensors weights file)\n");
        return SL_EXIT_USAGE;
    }
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, path);
    if (rc) {
        char m[1100];
        fprintf(stderr, "stemline models info: error: %s\n", sl_errmsg(rc, m, sizeof m));
        return SL_EXIT_FATAL;
    }
    struct stat st;
    long long fsize = stat(path, &st) ? -1 : (long long)st.st_size;
    size_t n = sl_st_count(f);
    uint64_t params = 0;
    size_t dt_count[SL_ST_BOOL + 1] = {0};
    uint64_t dt_bytes[SL_ST_BOOL + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        const sl_st_tensor *t = sl_st_at(f, i);
        params += sl_st_numel(t);
        dt_count[t->dtype]++;
        dt_bytes[t->dtype] += t->nbytes;
    }
    const char *arch = sl_st_meta(f, "stemline.arch");
    if (json) {
        printf("{\"file\": ");
        sl_json_str(stdout, path);
        printf(", \"size\": %lld, \"arch\": ", fsize);
        sl_json_str(stdout, arch);
        printf(", \"tensors\": %zu, \"parameters\": %llu, \"dtypes\": {", n, (unsigned long long)params);
        int first = 1;
        for (int d = 0; d <= SL_ST_BOOL; d++) {
            if (!dt_count[d])
                continue;
            printf("%s\"%s\": {\"tensors\": %zu, \"bytes\": %llu}", first ? "" : ", ",
                   sl_st_dtype_name((sl_st_dtype)d), dt_count[d], (unsigned long long)dt_bytes[d]);
            first = 0;
        }
        printf("}, \"metadata\": {");
        for (size_t i = 0; i < sl_st_meta_count(f); i++) {
            printf("%s", i ? ", " : "");
            sl_json_str(stdout, sl_st_meta_key(f, i));
            printf(": ");
            sl_json_str(stdout, sl_st_meta_value(f, i));
        }
        printf("}");
        if (list) {
            printf(", \"tensor_list\": [");
            for (size_t i = 0; i < n; i++) {
                const sl_st_tensor *t = sl_st_at(f, i);
                printf("%s{\"name\": ", i ? ", " : "");
                sl_json_str(stdout, t->name);
                printf(", \"dtype\": \"%s\", \"shape\": [", sl_st_dtype_name(t->dtype));
                for (int d = 0; d < t->ndim; d++)
                    printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
                double s = tensor_sum(t);
                if (s == s && s - s == 0) /* finite: JSON has no inf/nan */
                    printf("], \"sum\": %.17g}", s);
                else
                    printf("], \"sum\": null}");
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("file:        %s\n", path);
        printf("size:        %lld bytes (%.1f MB)\n", fsize, fsize / 1e6);
        if (arch)
            printf("arch:        %s\n", arch);
        else
            printf("arch:        unknown (no stemline.arch in __metadata__: not made by a stemline converter)\n");
        printf("tensors:     %zu\n", n);
        printf("parameters:  %llu (%.2f M)\n", (unsigned long long)params, (double)params / 1e6);
        printf("dtypes:     ");
        for (int d = 0; d <= SL_ST_BOOL; d++)
            if (dt_count[d])
                printf(" %s: %zu tensors, %llu bytes;", sl_st_dtype_name((sl_st_dtype)d), dt_count[d],
                       (unsigned long long)dt_bytes[d]);
        printf("%s\n", n ? "" : " none");
        printf("metadata:%s\n", sl_st_meta_count(f) ? "" : "    none");
        for (size_t i = 0; i < sl_st_meta_count(f); i++)
            printf("  %-20s %s\n", sl_st_meta_key(f, i), sl_st_meta_value(f, i));
        if (list) {
            printf("tensor list (data order):\n");
            for (size_t i = 0; i < n; i++) {
                const sl_st_tensor *t = sl_st_at(f, i);
                char shape[200];
                sl_st_format_shape(t, shape, sizeof shape);
                printf("  %-48s %-5s %s\n", t->name, sl_st_dtype_name(t->dtype), shape);
            }
        }
    }
    sl_st_close(f);
    return 0;
}

/* ---- fetch ---- */

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

/* tools/fetch_models.py: $STEMLINE_TOOLS_DIR, else next to the executable's
 * folder (build/stemline -> tools/, a build folder one deeper, or an install's
 * share/stemline/tools). */
static int find_fetch_tool(char *out, size_t size)
{
    const char *env = getenv("STEMLINE_TOOLS_DIR");
    if (env && *env) {
        snprintf(out, size, "%s/fetch_models.py", env);
        return is_file(out) ? 0 : -1;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = 0;
    static const char *const rel[] = {"/../tools", "/../../tools", "/../share/stemline/tools", "/tools"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, size, "%s%s/fetch_models.py", exe, rel[i]);
        if (is_file(out))
            return 0;
    }
#ifdef SL_SOURCE_DIR
    /* a build folder outside the source tree */
    snprintf(out, size, "%s/tools/fetch_models.py", SL_SOURCE_DIR);
    if (is_file(out))
        return 0;
#endif
    return -1;
}

static int models_fetch(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(models_help, stdout);
            return 0;
        }
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "stemline models fetch: missing NAME (see stemline models)\n");
        return SL_EXIT_USAGE;
    }
    char tool[PATH_MAX + 32];
    if (find_fetch_tool(tool, sizeof tool)) {
        fprintf(stderr,
                "stemline models fetch: error: tools/fetch_models.py not found next to this executable; set "
                "STEMLINE_TOOLS_DIR to the tools/ folder of the stemline source\n");
        return SL_EXIT_FATAL;
    }
    const char *py = getenv("STEMLINE_PYTHON");
    if (!py || !*py)
        py = "python3";
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args)
        return SL_EXIT_FATAL;
    args[0] = (char *)py;
    args[1] = tool;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    fflush(stdout);
    pid_t pid;
    int err = posix_spawnp(&pid, py, NULL, NULL, args, environ);
    free(args);
    if (err) {
        fprintf(stderr, "stemline models fetch: error: cannot run %s: %s (set STEMLINE_PYTHON to a python3 with "
                        "torch and numpy)\n", py, strerror(err));
        return SL_EXIT_FATAL;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "stemline models fetch: error: waitpid: %s\n", strerror(errno));
            return SL_EXIT_FATAL;
        }
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        return code == 0 ? 0 : code == 2 ? SL_EXIT_USAGE : SL_EXIT_FATAL;
    }
    fprintf(stderr, "stemline models fetch: error: %s stopped by signal %d\n", tool, WTERMSIG(status));
    return SL_EXIT_FATAL;
}

int sl_cmd_models(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "list"))
        return argc > 2 ? (fprintf(stderr, "stemline models list: takes no arguments\n"), SL_EXIT_USAGE)
                        : models_list();
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(models_help, stdout);
        return 0;
    }
    if (!strcmp(sub, "info"))
        return models_info(argc - 1, argv + 1);
    if (!strcmp(sub, "fetch"))
        return models_fetch(argc - 1, argv + 1);
    fprintf(stderr, "stemline models: unknown subcommand '%s' (list, info, fetch; see stemline models --help)\n", sub);
    return SL_EXIT_USAGE;
}
