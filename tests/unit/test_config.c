/* Job config: defaults, errors with file:line:column and key, --set overrides,
 * dump/load round trip, output hash. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "pipeline/config.h"
#include "sl_test.h"

/* Loads yaml (named "job.yaml") and expects failure with exactly msg. */
static void expect_err(const char *yaml, const char *const *ov, size_t n_ov, const char *msg)
{
    sl_config cfg;
    int rc = sl_cfg_load_string(&cfg, yaml, "job.yaml", ov, n_ov);
    CHECK_MSG(rc == SL_ECONFIG, "rc %d for:\n%s", rc, yaml);
    CHECK_MSG(!strcmp(sl_lasterr(), msg), "\n  got  '%s'\n  want '%s'", sl_lasterr(), msg);
    CHECK(cfg.output_dir == NULL); /* freed on error */
}

/* Expects failure whose message starts with prefix. */
static void expect_err_prefix(const char *yaml, const char *const *ov, size_t n_ov, const char *prefix)
{
    sl_config cfg;
    int rc = sl_cfg_load_string(&cfg, yaml, "job.yaml", ov, n_ov);
    CHECK_MSG(rc == SL_ECONFIG, "rc %d for:\n%s", rc, yaml);
    CHECK_MSG(!strncmp(sl_lasterr(), prefix, strlen(prefix)), "\n  got  '%s'\n  want '%s...'", sl_lasterr(),
              prefix);
}

static void test_defaults(void)
{
    sl_config cfg;
    CHECK(sl_cfg_load_string(&cfg, "", "empty.yaml", NULL, 0) == 0);
    CHECK(cfg.n_input_paths == 0);
    CHECK(cfg.input_manifest == NULL);
    CHECK(cfg.n_input_extensions >= 20);
    int has_flac = 0, has_opus = 0;
    for (size_t i = 0; i < cfg.n_input_extensions; i++) {
        has_flac |= !strcmp(cfg.input_extensions[i], "flac");
        has_opus |= !strcmp(cfg.input_extensions[i], "opus");
    }
    CHECK(has_flac && has_opus);
    CHECK(!strcmp(cfg.output_dir, "out"));
    CHECK(cfg.stems_enabled == 1);
    CHECK(!strcmp(cfg.stems_format, "wav"));
    CHECK(!strcmp(cfg.stems_sample_format, "s16"));
    CHECK(!strcmp(cfg.stems_template, "stems/{track}/{stem}.{ext}"));
    CHECK(!strcmp(cfg.stems_sample_rate, "model"));
    CHECK(!strcmp(cfg.emb_dtype, "float32"));
    CHECK(cfg.emb_shard_rows == 10000);
    CHECK(!strcmp(cfg.sep_model, "hpss"));
    CHECK(cfg.sep_weights == NULL && cfg.sep_options.n == 0);
    CHECK(!strcmp(cfg.emb_model, "melstats"));
    CHECK(cfg.emb_weights == NULL && cfg.emb_options.n == 0);
    CHECK(cfg.emb_normalize == 1);
    CHECK(!strcmp(cfg.backend, "auto"));
    CHECK(cfg.decode_threads == 2);
    CHECK(cfg.progress_interval == 10);
    CHECK(!strcmp(cfg.source_file, "empty.yaml"));
    sl_cfg_free(&cfg);
    sl_cfg_free(&cfg); /* idempotent */

    /* comments only, and an explicit null document */
    CHECK(sl_cfg_load_string(&cfg, "# nothing\n", "c.yaml", NULL, 0) == 0);
    sl_cfg_free(&cfg);
    CHECK(sl_cfg_load_string(&cfg, "~\n", "c.yaml", NULL, 0) == 0);
    sl_cfg_free(&cfg);
}

static const char *full_job =
    "version: 1\n"
    "input:\n"
    "  paths: [/data/a, \"rel/b\"]\n"
    "  manifest: list.txt\n"
    "  extensions: [.MP3, flac]\n"
    "output:\n"
    "  dir: results\n"
    "  stems:\n"
    "    enabled: no\n"
    "    format: flac\n"
    "    sample_format: s24\n"
    "    template: \"{base}-{stem}.{ext}\"\n"
    "    sample_rate: source\n"
    "  embeddings:\n"
    "    dtype: float16\n"
    "    shard_rows: 500\n"
    "separation:\n"
    "  model: none\n"
    "  weights: w/sep.safetensors\n"
    "  options:\n"
    "    kernel_harmonic: 17\n"
    "    margin: 2.5\n"
    "    name: \"it's: \\\"quoted\\\"\"\n"
    "embedding:\n"
    "  model: melstats\n"
    "  normalize: off\n"
    "  options: {n_mels: 64}\n"
    "runtime:\n"
    "  backend: cpu\n"
    "  decode_threads: 8\n"
    "  progress_interval: 3600\n";

static void test_full(void)
{
    sl_config cfg;
    int rc = sl_cfg_load_string(&cfg, full_job, "full.yaml", NULL, 0);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    CHECK(cfg.n_input_paths == 2 && !strcmp(cfg.input_paths[0], "/data/a") && !strcmp(cfg.input_paths[1], "rel/b"));
    CHECK(!strcmp(cfg.input_manifest, "list.txt"));
    CHECK(cfg.n_input_extensions == 2 && !strcmp(cfg.input_extensions[0], "mp3") &&
          !strcmp(cfg.input_extensions[1], "flac"));
    CHECK(!strcmp(cfg.output_dir, "results"));
    CHECK(cfg.stems_enabled == 0);
    CHECK(!strcmp(cfg.stems_format, "flac") && !strcmp(cfg.stems_sample_format, "s24"));
    CHECK(!strcmp(cfg.stems_template, "{base}-{stem}.{ext}"));
    CHECK(!strcmp(cfg.stems_sample_rate, "source"));
    CHECK(!strcmp(cfg.emb_dtype, "float16") && cfg.emb_shard_rows == 500);
    CHECK(!strcmp(cfg.sep_model, "none") && !strcmp(cfg.sep_weights, "w/sep.safetensors"));
    CHECK(cfg.sep_options.n == 3);
    if (cfg.sep_options.n == 3) {
        sl_cfg_opt *o = &cfg.sep_options.items[0];
        CHECK(!strcmp(o->key, "kernel_harmonic") && !strcmp(o->value, "17"));
        CHECK(!strcmp(o->file, "full.yaml") && o->line == 21 && o->column == 22);
        CHECK(!strcmp(cfg.sep_options.items[1].value, "2.5"));
        CHECK(!strcmp(cfg.sep_options.items[2].value, "it's: \"quoted\""));
    }
    CHECK(cfg.emb_normalize == 0);
    CHECK(cfg.emb_options.n == 1 && !strcmp(cfg.emb_options.items[0].key, "n_mels"));
    CHECK(!strcmp(cfg.backend, "cpu") && cfg.decode_threads == 8 && cfg.progress_interval == 3600);
    sl_cfg_free(&cfg);

    /* a single string is a one-item list; bool spellings; dotted keys in the file */
    rc = sl_cfg_load_string(&cfg,
                            "input: {paths: music}\noutput.stems.enabled: Yes\nembedding:\n  normalize: FALSE\n",
                            "j.yaml", NULL, 0);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (!rc) {
        CHECK(cfg.n_input_paths == 1 && !strcmp(cfg.input_paths[0], "music"));
        CHECK(cfg.stems_enabled == 1 && cfg.emb_normalize == 0);
        sl_cfg_free(&cfg);
    }
    /* empty sections are fine */
    rc = sl_cfg_load_string(&cfg, "input:\noutput:\n  stems:\nruntime: {}\n", "j.yaml", NULL, 0);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    sl_cfg_free(&cfg);
}

static void test_errors(void)
{
    /* unknown key with suggestion, pointing at the key */
    expect_err("runtime:\n  decode_thread: 4\n", NULL, 0,
               "job.yaml:2:3: key 'runtime.decode_thread': unknown key (did you mean 'runtime.decode_threads'?)");
    expect_err("outptu:\n  dir: x\n", NULL, 0, "job.yaml:1:1: key 'outptu': unknown key (did you mean 'output'?)");
    expect_err("input:\n  dir: x\n", NULL, 0,
               "job.yaml:2:3: key 'input.dir': unknown key (did you mean 'output.dir'?)");
    expect_err("zzzzzzzzzzzz: 1\n", NULL, 0,
               "job.yaml:1:1: key 'zzzzzzzzzzzz': unknown key (see configs/README.md for the list of keys)");
    /* wrong types, pointing at the value */
    expect_err("runtime:\n  decode_threads: abc\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': expected an integer, got 'abc'");
    expect_err("runtime:\n  decode_threads: 4.5\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': expected an integer, got '4.5'");
    expect_err("runtime:\n  decode_threads: [1]\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': expected an integer, got a list");
    expect_err("output:\n  stems:\n    enabled: maybe\n", NULL, 0,
               "job.yaml:3:14: key 'output.stems.enabled': expected a boolean (true/false, yes/no, on/off), got "
               "'maybe'");
    expect_err("input:\n  paths: {a: 1}\n", NULL, 0,
               "job.yaml:2:10: key 'input.paths': expected a list of strings, got a mapping");
    expect_err("input:\n  paths:\n    - a\n    - [b]\n", NULL, 0,
               "job.yaml:4:7: key 'input.paths': list items must be strings, got a list");
    expect_err("output: 3\n", NULL, 0, "job.yaml:1:9: key 'output': expected a mapping (a section of keys), got a scalar");
    expect_err("output:\n  dir: null\n", NULL, 0, "job.yaml:2:8: key 'output.dir': expected a string, got null");
    expect_err("separation:\n  options:\n    k: [1, 2]\n", NULL, 0,
               "job.yaml:3:8: key 'separation.options.k': option values must be scalars (numbers, strings, "
               "booleans), got a list");
    expect_err("- a\n- b\n", NULL, 0,
               "job.yaml:1:1: the job file must be a mapping of sections (input, output, separation, embedding, "
               "runtime), got a list");
    /* ranges */
    expect_err("runtime:\n  decode_threads: 0\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': must be between 1 and 256, got '0'");
    expect_err("runtime:\n  decode_threads: 257\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': must be between 1 and 256, got '257'");
    expect_err("runtime:\n  decode_threads: 99999999999999999999999\n", NULL, 0,
               "job.yaml:2:19: key 'runtime.decode_threads': must be between 1 and 256, got "
               "'99999999999999999999999'");
    expect_err("output:\n  embeddings:\n    shard_rows: 10000001\n", NULL, 0,
               "job.yaml:3:17: key 'output.embeddings.shard_rows': must be between 1 and 10000000, got '10000001'");
    expect_err("version: 2\n", NULL, 0,
               "job.yaml:1:10: key 'version': must be 1 (the only job file version this stemline reads), got '2'");
    /* enums */
    expect_err("output:\n  stems:\n    format: wma\n", NULL, 0,
               "job.yaml:3:13: key 'output.stems.format': must be one of wav, flac, opus, mp3, aac, ogg, got 'wma' (did you mean 'wav'?)");
    expect_err("output:\n  stems:\n    format: wav\n    bitrate: 96\n", NULL, 0,
               "job.yaml:4:5: key 'output.stems.bitrate': output.stems.bitrate applies to lossy formats (opus, mp3, "
               "aac, ogg), not wav");
    expect_err("runtime:\n  backend: cdua\n", NULL, 0,
               "job.yaml:2:12: key 'runtime.backend': must be one of auto, cpu, cuda, cuda-emu, got 'cdua' (did you mean "
               "'cuda'?)");
    /* f32 in flac: blames the key given last */
    expect_err("output:\n  stems:\n    format: flac\n    sample_format: f32\n", NULL, 0,
               "job.yaml:4:5: key 'output.stems.sample_format': f32 samples cannot be stored in FLAC (use "
               "output.stems.sample_format s16 or s24, or output.stems.format wav)");
    expect_err("output:\n  stems:\n    sample_format: f32\n    format: flac\n", NULL, 0,
               "job.yaml:4:5: key 'output.stems.format': f32 samples cannot be stored in FLAC (use "
               "output.stems.sample_format s16 or s24, or output.stems.format wav)");
    /* template */
    expect_err("output:\n  stems:\n    template: \"{track}/{stme}.{ext}\"\n", NULL, 0,
               "job.yaml:3:15: key 'output.stems.template': unknown placeholder '{stme}' (allowed: {track} {stem} "
               "{ext} {base})");
    expect_err("output:\n  stems:\n    template: \"{track}.wav\"\n", NULL, 0,
               "job.yaml:3:15: key 'output.stems.template': must contain {stem}, or every stem of a track would go "
               "to the same file");
    expect_err("output:\n  stems:\n    template: \"{stem}.wav\"\n", NULL, 0,
               "job.yaml:3:15: key 'output.stems.template': must contain {track} or {base}, or every track would "
               "write the same files");
    expect_err_prefix("output:\n  stems:\n    template: \"{track}/{stem\"\n", NULL, 0,
                      "job.yaml:3:15: key 'output.stems.template': '{' without a matching '}'");
    expect_err_prefix("output:\n  stems:\n    template: \"../{track}/{stem}\"\n", NULL, 0,
                      "job.yaml:3:15: key 'output.stems.template': must not contain '..'");
    expect_err_prefix("output:\n  stems:\n    template: \"/abs/{track}/{stem}\"\n", NULL, 0,
                      "job.yaml:3:15: key 'output.stems.template': must be a relative path");
    /* extensions */
    expect_err("input:\n  extensions: []\n", NULL, 0,
               "job.yaml:2:15: key 'input.extensions': must list at least one entry");
    /* duplicates */
    expect_err("runtime:\n  backend: cpu\n  backend: cuda\n", NULL, 0,
               "job.yaml:3:3: key 'runtime.backend': duplicate key (first given at line 2, column 3)");
    expect_err("runtime:\n  backend: cpu\nruntime:\n  decode_threads: 3\n", NULL, 0,
               "job.yaml:3:1: key 'runtime': duplicate key (first given at line 1, column 1)");
    expect_err("output:\n  dir: a\noutput.dir: b\n", NULL, 0,
               "job.yaml:3:1: key 'output.dir': duplicate key (first given at line 2, column 3)");
    expect_err("separation:\n  options:\n    a: 1\n    a: 2\n", NULL, 0,
               "job.yaml:4:5: key 'separation.options.a': duplicate key (first given at line 3, column 5)");
    /* syntax errors */
    expect_err("input:\n  paths: [a, b\nruntime:\n  backend: cpu\n", NULL, 0,
               "job.yaml:3:8: YAML syntax error: did not find expected ',' or ']'");
    expect_err_prefix("output:\n  dir: a\n   bad: x\n", NULL, 0, "job.yaml:3:");
    expect_err_prefix("output:\n\tdir: a\n", NULL, 0, "job.yaml:2:1: YAML syntax error: ");
    expect_err_prefix("a: 1\n---\nb: 2\n", NULL, 0, "job.yaml:");
}

static void test_overrides(void)
{
    sl_config cfg;
    const char *ov[] = {
        "input.paths=[/data/a, /data/b]",
        "runtime.decode_threads=4",
        "separation.options.kernel_harmonic=17",
        "output.stems={format: flac, sample_format: s24}",
        "separation.weights=",
        "embedding.options={hop: 512}",
        "embedding.options.n_mels=96",
        " runtime.backend = cpu",
    };
    int rc = sl_cfg_load_string(&cfg, "separation:\n  weights: x.safetensors\n  options: {margin: 2}\n", "j.yaml",
                                ov, sizeof ov / sizeof ov[0]);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (!rc) {
        CHECK(cfg.n_input_paths == 2 && !strcmp(cfg.input_paths[0], "/data/a") &&
              !strcmp(cfg.input_paths[1], "/data/b"));
        CHECK(cfg.decode_threads == 4);
        CHECK(cfg.sep_options.n == 2);
        CHECK(!strcmp(cfg.sep_options.items[0].key, "margin") && cfg.sep_options.items[0].line == 3);
        CHECK(!strcmp(cfg.sep_options.items[1].key, "kernel_harmonic") &&
              !strcmp(cfg.sep_options.items[1].value, "17") && !strcmp(cfg.sep_options.items[1].file, "--set") &&
              cfg.sep_options.items[1].line == 0);
        CHECK(!strcmp(cfg.stems_format, "flac") && !strcmp(cfg.stems_sample_format, "s24"));
        CHECK(cfg.sep_weights == NULL);
        CHECK(cfg.emb_options.n == 2 && !strcmp(cfg.emb_options.items[1].value, "96"));
        CHECK(!strcmp(cfg.backend, "cpu"));
        sl_cfg_free(&cfg);
    }
    /* an override replaces an option given in the file */
    const char *ov2[] = {"separation.options.margin=3", "input.paths=single"};
    rc = sl_cfg_load_string(&cfg, "separation:\n  options: {margin: 2}\n", "j.yaml", ov2, 2);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (!rc) {
        CHECK(cfg.sep_options.n == 1 && !strcmp(cfg.sep_options.items[0].value, "3"));
        CHECK(cfg.n_input_paths == 1 && !strcmp(cfg.input_paths[0], "single"));
        sl_cfg_free(&cfg);
    }

    const char *bad1[] = {"runtime.decode_thread=4"};
    expect_err("", bad1, 1,
               "--set 'runtime.decode_thread=4': key 'runtime.decode_thread': unknown key (did you mean "
               "'runtime.decode_threads'?)");
    const char *bad2[] = {"runtime.decode_threads=0"};
    expect_err("", bad2, 1, "--set 'runtime.decode_threads=0': key 'runtime.decode_threads': must be between 1 and 256, got '0'");
    const char *bad3[] = {"runtime.decode_threads"};
    expect_err_prefix("", bad3, 1, "--set 'runtime.decode_threads': expected KEY=VALUE");
    const char *bad4[] = {"input.paths=[a, b"};
    expect_err_prefix("", bad4, 1, "--set 'input.paths=[a, b': YAML syntax error: ");
    const char *bad5[] = {"output.stems.format=flac", "output.stems.sample_format=f32"};
    expect_err("", bad5, 2,
               "--set 'output.stems.sample_format=f32': key 'output.stems.sample_format': f32 samples cannot be "
               "stored in FLAC (use output.stems.sample_format s16 or s24, or output.stems.format wav)");
    /* file says f32, override says flac: the override is to blame */
    const char *bad6[] = {"output.stems.format=flac"};
    expect_err("output:\n  stems:\n    sample_format: f32\n", bad6, 1,
               "--set 'output.stems.format=flac': key 'output.stems.format': f32 samples cannot be stored in FLAC "
               "(use output.stems.sample_format s16 or s24, or output.stems.format wav)");
    const char *bad7[] = {"output={dri: x}"};
    expect_err("", bad7, 1, "--set 'output={dri: x}': key 'output.dri': unknown key (did you mean 'output.dir'?)");
    const char *bad8[] = {"separation.options.a.b=1"};
    expect_err("", bad8, 1,
               "--set 'separation.options.a.b=1': key 'separation.options.a.b': model options are a flat mapping: "
               "use separation.options.NAME");
    const char *bad9[] = {"=4"};
    expect_err_prefix("", bad9, 1, "--set '=4': expected KEY=VALUE");
    /* an override error is reported even when the file is fine, and nothing else is touched */
    const char *bad10[] = {"output.stems.enabled=perhaps"};
    expect_err("output:\n  dir: x\n", bad10, 1,
               "--set 'output.stems.enabled=perhaps': key 'output.stems.enabled': expected a boolean (true/false, "
               "yes/no, on/off), got 'perhaps'");
}

static void test_roundtrip(void)
{
    const char *dir = sl_test_tmpdir();
    char path[600], path2[600];
    snprintf(path, sizeof path, "%s/dump.yaml", dir);
    snprintf(path2, sizeof path2, "%s/dump2.yaml", dir);
    sl_config a, b;
    const char *ov[] = {"input.paths=[\"we\\\"ird\\\\ name\\tx\", \"ü/ñ\", \"#hash: colon\"]",
                        "separation.options={a: \"null\", b: '', c: -3, d: \"x y\", \"k:e\": yes}"};
    int rc = sl_cfg_load_string(&a, full_job, "full.yaml", ov, 2);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    FILE *f = fopen(path, "w");
    CHECK(f && sl_cfg_dump(&a, f) == 0);
    fclose(f);
    rc = sl_cfg_load(&b, path, NULL, 0);
    CHECK_MSG(rc == 0, "reload: %s", sl_lasterr());
    if (rc) {
        sl_cfg_free(&a);
        return;
    }
    char ha[17], hb[17];
    sl_cfg_output_hash(&a, ha);
    sl_cfg_output_hash(&b, hb);
    CHECK(!strcmp(ha, hb));
    CHECK(b.n_input_paths == 3 && !strcmp(b.input_paths[0], "we\"ird\\ name\tx") &&
          !strcmp(b.input_paths[1], "ü/ñ") && !strcmp(b.input_paths[2], "#hash: colon"));
    CHECK(!strcmp(b.input_manifest, a.input_manifest));
    CHECK(b.n_input_extensions == a.n_input_extensions);
    CHECK(!strcmp(b.output_dir, a.output_dir) && b.stems_enabled == a.stems_enabled);
    CHECK(!strcmp(b.stems_template, a.stems_template));
    CHECK(b.emb_shard_rows == a.emb_shard_rows && b.decode_threads == a.decode_threads &&
          b.progress_interval == a.progress_interval && !strcmp(b.backend, a.backend));
    CHECK(b.sep_options.n == a.sep_options.n);
    for (size_t i = 0; i < a.sep_options.n && i < b.sep_options.n; i++)
        CHECK_MSG(!strcmp(a.sep_options.items[i].key, b.sep_options.items[i].key) &&
                      !strcmp(a.sep_options.items[i].value, b.sep_options.items[i].value),
                  "option %zu: %s=%s vs %s=%s", i, a.sep_options.items[i].key, a.sep_options.items[i].value,
                  b.sep_options.items[i].key, b.sep_options.items[i].value);
    /* dumping the reloaded config gives the same text (except the "from" line) */
    f = fopen(path2, "w");
    CHECK(f && sl_cfg_dump(&b, f) == 0);
    fclose(f);
    char buf1[8192] = "", buf2[8192] = "";
    f = fopen(path, "r");
    size_t n1 = fread(buf1, 1, sizeof buf1 - 1, f);
    fclose(f);
    f = fopen(path2, "r");
    size_t n2 = fread(buf2, 1, sizeof buf2 - 1, f);
    fclose(f);
    buf1[n1] = buf2[n2] = 0;
    const char *body1 = strstr(buf1, "\nversion:"), *body2 = strstr(buf2, "\nversion:");
    CHECK(body1 && body2 && !strcmp(body1, body2));
    sl_cfg_free(&a);
    sl_cfg_free(&b);

    /* defaults round trip too */
    CHECK(sl_cfg_defaults(&a) == 0);
    f = fopen(path, "w");
    CHECK(f && sl_cfg_dump(&a, f) == 0);
    fclose(f);
    rc = sl_cfg_load(&b, path, NULL, 0);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (!rc) {
        sl_cfg_output_hash(&a, ha);
        sl_cfg_output_hash(&b, hb);
        CHECK(!strcmp(ha, hb));
        sl_cfg_free(&b);
    }
    sl_cfg_free(&a);

    /* a missing file is SL_EIO naming it */
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    CHECK(sl_cfg_load(&a, path, NULL, 0) == SL_EIO);
    CHECK(strstr(sl_lasterr(), "missing.yaml") != NULL);
    /* errors in a real file name the file */
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    f = fopen(path, "w");
    fputs("# a comment\nruntime:\n  backend: metal\n", f);
    fclose(f);
    CHECK(sl_cfg_load(&a, path, NULL, 0) == SL_ECONFIG);
    char want[700];
    snprintf(want, sizeof want, "%s:3:12: key 'runtime.backend': must be one of auto, cpu, cuda, cuda-emu, got 'metal'", path);
    CHECK_MSG(!strcmp(sl_lasterr(), want), "got '%s'", sl_lasterr());
}

static void hash_of(const char *yaml, const char *ov, char out[17])
{
    sl_config cfg;
    const char *o[1] = {ov};
    int rc = sl_cfg_load_string(&cfg, yaml, "h.yaml", o, ov ? 1 : 0);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc) {
        strcpy(out, "error");
        return;
    }
    sl_cfg_output_hash(&cfg, out);
    sl_cfg_free(&cfg);
}

static void test_hash(void)
{
    char base[17], h[17];
    hash_of("", NULL, base);
    CHECK(strlen(base) == 16);
    for (int i = 0; i < 16; i++)
        CHECK(strchr("0123456789abcdef", base[i]) != NULL);
    hash_of("", NULL, h);
    CHECK(!strcmp(base, h)); /* stable */
    /* not output-affecting */
    const char *same[] = {"runtime.decode_threads=7", "runtime.backend=cpu", "input.paths=[x, y]",
                          "runtime.progress_interval=60", "input.extensions=[mp3]", "output.dir=elsewhere"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        hash_of("", same[i], h);
        CHECK_MSG(!strcmp(base, h), "%s changed the hash", same[i]);
    }
    /* output-affecting */
    const char *diff[] = {"output.stems.format=flac",       "output.stems.sample_format=s24",
                          "output.stems.template='{base}/{stem}.{ext}'", "output.stems.sample_rate=source",
                          "output.stems.enabled=false",     "output.embeddings.dtype=float16",
                          "separation.model=none",          "separation.weights=w.safetensors",
                          "separation.options.k=3",         "embedding.model=none",
                          "embedding.weights=e.safetensors", "embedding.normalize=false",
                          "embedding.options.n_mels=64"};
    for (size_t i = 0; i < sizeof diff / sizeof diff[0]; i++) {
        hash_of("", diff[i], h);
        CHECK_MSG(strcmp(base, h) != 0, "%s did not change the hash", diff[i]);
    }
    /* option order does not matter, option values do */
    char h1[17], h2[17], h3[17];
    hash_of("separation: {options: {a: 1, b: 2}}", NULL, h1);
    hash_of("separation: {options: {b: 2, a: 1}}", NULL, h2);
    hash_of("separation: {options: {a: 1, b: 3}}", NULL, h3);
    CHECK(!strcmp(h1, h2));
    CHECK(strcmp(h1, h3) != 0);
    /* a fixed value: a change to the hash function re-does every catalog, so do it on purpose */
    printf("default output hash: %s\n", base);
}

static void test_key_table(void)
{
    sl_cfg_keyinfo ki;
    size_t n = 0;
    while (sl_cfg_key_info(n, &ki) == 0) {
        CHECK(ki.name && ki.type && ki.doc && *ki.doc);
        n++;
    }
    CHECK(n >= 20);
    /* every key is documented in configs/README.md */
    const char *src = getenv("SL_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/README.md", src && *src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s (set SL_SRC)", path);
    if (!f)
        return;
    static char doc[65536];
    size_t len = fread(doc, 1, sizeof doc - 1, f);
    doc[len] = 0;
    fclose(f);
    /* the annotated example (the last yaml block) is a valid job that spells out the defaults */
    const char *last = NULL;
    for (const char *p = strstr(doc, "```yaml\n"); p; p = strstr(p + 1, "```yaml\n"))
        last = p + 8;
    CHECK(last != NULL);
    if (last) {
        const char *end = strstr(last, "```");
        static char ex[16384];
        size_t n_ex = end ? (size_t)(end - last) : 0;
        CHECK(end && n_ex < sizeof ex);
        if (end && n_ex < sizeof ex) {
            memcpy(ex, last, n_ex);
            ex[n_ex] = 0;
            sl_config a, b;
            const char *ov[] = {"input.paths=[]"};
            int rc = sl_cfg_load_string(&a, ex, "README example", ov, 1);
            CHECK_MSG(rc == 0, "%s", sl_lasterr());
            CHECK(sl_cfg_defaults(&b) == 0);
            if (!rc) {
                char ha[17], hb[17];
                sl_cfg_output_hash(&a, ha);
                sl_cfg_output_hash(&b, hb);
                CHECK(!strcmp(ha, hb));
                CHECK(a.n_input_extensions == b.n_input_extensions && a.decode_threads == b.decode_threads &&
                      a.progress_interval == b.progress_interval && a.emb_shard_rows == b.emb_shard_rows &&
                      !strcmp(a.output_dir, b.output_dir) && !strcmp(a.backend, b.backend));
                sl_cfg_free(&a);
            }
            sl_cfg_free(&b);
        }
    }
    for (size_t i = 0; sl_cfg_key_info(i, &ki) == 0; i++) {
        char needle[128];
        snprintf(needle, sizeof needle, "`%s`", ki.name);
        CHECK_MSG(strstr(doc, needle) != NULL, "%s does not document %s", path, needle);
    }
}

/* The recorded settings name the key that differs, with both values. */
static void test_output_json(void)
{
    sl_config a, b;
    const char *ov[2] = {"output.stems.format=flac", "separation.options.kernel_harmonic=17"};
    CHECK(sl_cfg_load_string(&a, "", "a.yaml", NULL, 0) == 0);
    CHECK(sl_cfg_load_string(&b, "", "b.yaml", ov, 2) == 0);
    char *ja = sl_cfg_output_json(&a), *jb = sl_cfg_output_json(&b);
    CHECK(ja && jb);
    if (ja && jb) {
        CHECK(strstr(ja, "\"output.stems.format\": \"wav\"") != NULL);
        CHECK(strstr(jb, "\"separation.options.kernel_harmonic\": \"17\"") != NULL);
        CHECK(strstr(ja, "\"embedding.sources\": \"[mix]\"") != NULL);
        char key[128], o[128], n[128];
        CHECK(sl_cfg_output_diff(ja, ja, key, sizeof key, o, n, sizeof o) == 0);
        CHECK(sl_cfg_output_diff(ja, jb, key, sizeof key, o, n, sizeof o) == 1);
        CHECK_MSG(!strcmp(key, "output.stems.format") && !strcmp(o, "wav") && !strcmp(n, "flac"), "%s %s %s", key,
                  o, n);
        /* an option only the new job has, and one only the old job had */
        CHECK(sl_cfg_output_diff("{\"x\": \"1\"}", "{\"x\": \"1\", \"y\": \"2\"}", key, sizeof key, o, n,
                                 sizeof o) == 1);
        CHECK(!strcmp(key, "y") && !strcmp(o, "(not recorded)") && !strcmp(n, "2"));
        CHECK(sl_cfg_output_diff("{\"x\": \"1\", \"z\": null}", "{\"x\": \"1\"}", key, sizeof key, o, n,
                                 sizeof o) == 1);
        CHECK(!strcmp(key, "z") && !strcmp(o, "null") && !strcmp(n, "(not recorded)"));
        CHECK(sl_cfg_output_diff("[1]", ja, key, sizeof key, o, n, sizeof o) == SL_EFORMAT);
    }
    /* the JSON is the hash's fields: equal JSON, equal hash */
    char ha[17], hb[17];
    sl_cfg_output_hash(&a, ha);
    sl_cfg_output_hash(&b, hb);
    /* the hash never changes from version to version: done tracks depend on it
     * (values from the version that introduced the JSON record) */
    CHECK_MSG(!strcmp(ha, "22975a200803a870"), "default config hash %s", ha);
    CHECK_MSG(!strcmp(hb, "421cc3af625c5890"), "flac + option config hash %s", hb);
    free(ja);
    free(jb);
    sl_cfg_free(&a);
    sl_cfg_free(&b);
}

int main(void)
{
    test_output_json();
    test_defaults();
    test_full();
    test_errors();
    test_overrides();
    test_roundtrip();
    test_hash();
    test_key_table();
    return sl_test_finish("config");
}
