/* Catalog scan: ids, order, extension filter, hidden files, symlink loops,
 * manifests, shards and duplicate ids, on a temporary tree. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/catalog.h"
#include "sl_test.h"

static char root[512];

static void mkfile(const char *rel, const char *content)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    /* create parent folders */
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        exit(1);
    }
    fputs(content, f);
    fclose(f);
}

static void mklink(const char *target, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    if (symlink(target, p) != 0) {
        perror(p);
        exit(1);
    }
}

static const char *const exts[] = {"mp3", "flac", "wav", "m4a"};
#define NEXT (sizeof exts / sizeof exts[0])

static int has_id(const sl_catalog *c, const char *id)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->tracks[i].id, id))
            return 1;
    return 0;
}

static void test_folder(void)
{
    char lib[600];
    snprintf(lib, sizeof lib, "%s/lib", root);
    sl_catalog cat;
    const char *paths[] = {lib};
    int rc = sl_catalog_scan(&cat, paths, 1, NULL, exts, NEXT);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    static const char *const want[] = {
        "A/b/deep.Wav", "A/song.MP3", "Z.flac", "a.flac", "a.mp3", "linked/x.mp3", "x.mp3", "zz/é.m4a",
    };
    size_t nw = sizeof want / sizeof want[0];
    CHECK_MSG(cat.n == nw, "%zu tracks", cat.n);
    for (size_t i = 0; i < cat.n; i++)
        printf("  %s -> %s (%lld bytes)\n", cat.tracks[i].id, cat.tracks[i].path, (long long)cat.tracks[i].size);
    for (size_t i = 0; i < nw && i < cat.n; i++)
        CHECK_MSG(!strcmp(cat.tracks[i].id, want[i]), "track %zu: '%s', want '%s'", i, cat.tracks[i].id, want[i]);
    /* sorted in byte order */
    for (size_t i = 1; i < cat.n; i++)
        CHECK(strcmp(cat.tracks[i - 1].id, cat.tracks[i].id) < 0);
    /* path = root joined with id; size and mtime from stat */
    for (size_t i = 0; i < cat.n; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", lib, cat.tracks[i].id);
        CHECK_MSG(!strcmp(cat.tracks[i].path, p), "path '%s'", cat.tracks[i].path);
        CHECK(cat.tracks[i].size == 5);
        CHECK(cat.tracks[i].mtime_ns > 0);
    }
    /* hidden, non-audio, loop */
    CHECK(!has_id(&cat, ".hidden.mp3") && !has_id(&cat, ".git/x.mp3") && !has_id(&cat, "notes.txt"));
    CHECK(!has_id(&cat, "A/b/loop/deep.Wav"));
    sl_catalog_free(&cat);
    sl_catalog_free(&cat); /* idempotent */

    /* same folder with a trailing slash gives the same ids and clean paths */
    char lib2[700];
    snprintf(lib2, sizeof lib2, "%s/", lib);
    const char *paths2[] = {lib2};
    rc = sl_catalog_scan(&cat, paths2, 1, NULL, exts, NEXT);
    CHECK(rc == 0 && cat.n == nw);
    if (!rc && cat.n) {
        CHECK(!strcmp(cat.tracks[0].id, "A/b/deep.Wav"));
        CHECK(strstr(cat.tracks[0].path, "//") == NULL);
        sl_catalog_free(&cat);
    }
    /* extensions given with a dot and in upper case still match */
    const char *const e2[] = {".FLAC"};
    rc = sl_catalog_scan(&cat, paths, 1, NULL, e2, 1);
    CHECK(rc == 0 && cat.n == 2);
    if (!rc) {
        CHECK(has_id(&cat, "Z.flac") && has_id(&cat, "a.flac"));
        sl_catalog_free(&cat);
    }
}

static void test_files_and_errors(void)
{
    char f1[700], f2[700], missing[700], lib[700], other[700];
    snprintf(f1, sizeof f1, "%s/lib/notes.txt", root); /* named explicitly: kept whatever its extension */
    snprintf(f2, sizeof f2, "%s/other/solo.ogg", root);
    snprintf(missing, sizeof missing, "%s/nope", root);
    snprintf(lib, sizeof lib, "%s/lib", root);
    snprintf(other, sizeof other, "%s/other", root);
    sl_catalog cat;
    const char *p1[] = {f1, f2};
    int rc = sl_catalog_scan(&cat, p1, 2, NULL, exts, NEXT);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (!rc) {
        CHECK(cat.n == 2 && !strcmp(cat.tracks[0].id, "notes.txt") && !strcmp(cat.tracks[1].id, "solo.ogg"));
        CHECK(!strcmp(cat.tracks[1].path, f2));
        sl_catalog_free(&cat);
    }
    /* missing input */
    const char *p2[] = {lib, missing};
    rc = sl_catalog_scan(&cat, p2, 2, NULL, exts, NEXT);
    CHECK(rc == SL_ENOTFOUND);
    CHECK(strstr(sl_lasterr(), missing) != NULL);
    CHECK(cat.n == 0 && cat.tracks == NULL);
    /* missing manifest */
    rc = sl_catalog_scan(&cat, NULL, 0, missing, exts, NEXT);
    CHECK(rc == SL_ENOTFOUND && strstr(sl_lasterr(), missing) != NULL);
    /* the same id from two roots: an error naming both paths */
    const char *p3[] = {lib, other};
    rc = sl_catalog_scan(&cat, p3, 2, NULL, exts, NEXT);
    CHECK(rc == SL_ECONFIG);
    char pa[800], pb[800];
    snprintf(pa, sizeof pa, "'%s/a.mp3'", lib);
    snprintf(pb, sizeof pb, "'%s/a.mp3'", other);
    CHECK_MSG(strstr(sl_lasterr(), pa) && strstr(sl_lasterr(), pb) && strstr(sl_lasterr(), "'a.mp3'"), "%s",
              sl_lasterr());
    /* a file given twice is a duplicate too */
    const char *p4[] = {f2, f2};
    CHECK(sl_catalog_scan(&cat, p4, 2, NULL, exts, NEXT) == SL_ECONFIG);
    /* nothing at all is fine */
    CHECK(sl_catalog_scan(&cat, NULL, 0, NULL, exts, NEXT) == 0 && cat.n == 0);
    sl_catalog_free(&cat);
}

static void test_manifest(void)
{
    char man[700];
    snprintf(man, sizeof man, "%s/lists/m.txt", root);
    char abs_line[700];
    snprintf(abs_line, sizeof abs_line, "%s/other/solo.ogg", root);
    char content[4096];
    snprintf(content, sizeof content,
             "# a comment\n"
             "\n"
             "   \n"
             "sub//./t2.flac\n"
             "./local.wav\r\n"
             "  sub/t.flac  \n"
             "%s\n"
             "gone.mp3\n"
             "more\n",
             abs_line);
    mkfile("lists/m.txt", content);
    mkfile("lists/local.wav", "12345");
    mkfile("lists/sub/t.flac", "12345");
    mkfile("lists/sub/t2.flac", "12345");
    mkfile("lists/more/in.mp3", "12345");
    mkfile("lists/more/skip.txt", "12345");
    sl_catalog cat;
    int rc = sl_catalog_scan(&cat, NULL, 0, man, exts, NEXT);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    for (size_t i = 0; i < cat.n; i++)
        printf("  manifest: %s -> %s (%lld)\n", cat.tracks[i].id, cat.tracks[i].path, (long long)cat.tracks[i].size);
    CHECK(cat.n == 6);
    char want_path[800];
    for (size_t i = 0; i < cat.n; i++) {
        const sl_track *t = &cat.tracks[i];
        if (!strcmp(t->id, "sub/t2.flac")) {
            snprintf(want_path, sizeof want_path, "%s/lists/sub//./t2.flac", root);
            CHECK(!strcmp(t->path, want_path) && t->size == 5);
        } else if (!strcmp(t->id, "local.wav")) {
            snprintf(want_path, sizeof want_path, "%s/lists/./local.wav", root);
            CHECK(!strcmp(t->path, want_path) && t->size == 5);
        } else if (!strcmp(t->id, "sub/t.flac")) {
            CHECK(t->size == 5);
        } else if (!strcmp(t->id, abs_line + 1)) {
            CHECK(!strcmp(t->path, abs_line));
        } else if (!strcmp(t->id, "gone.mp3")) {
            /* kept, fails later with its own reason */
            CHECK(t->size == -1 && t->mtime_ns == 0);
        } else if (!strcmp(t->id, "more/in.mp3")) {
            CHECK(t->size == 5); /* a folder line is scanned (and filtered by extension) */
        } else {
            CHECK_MSG(0, "unexpected id '%s'", t->id);
        }
    }
    sl_catalog_free(&cat);

    /* ".." would let an id (and so a stem path) leave the output folder */
    snprintf(man, sizeof man, "%s/lists/m2.txt", root);
    mkfile("lists/m2.txt", "# ok\nsub/t.flac\n../lib/a.mp3\n");
    rc = sl_catalog_scan(&cat, NULL, 0, man, exts, NEXT);
    CHECK(rc == SL_ECONFIG);
    char want[800];
    snprintf(want, sizeof want, "%s:3: '../lib/a.mp3': '..' is not allowed", man);
    CHECK_MSG(!strncmp(sl_lasterr(), want, strlen(want)), "%s", sl_lasterr());
    /* a duplicate line is a duplicate id */
    mkfile("lists/m3.txt", "sub/t.flac\n./sub/t.flac\n");
    snprintf(man, sizeof man, "%s/lists/m3.txt", root);
    CHECK(sl_catalog_scan(&cat, NULL, 0, man, exts, NEXT) == SL_ECONFIG);
}

static void test_shard(void)
{
    char lib[600], lists[600];
    snprintf(lib, sizeof lib, "%s/lib", root);
    snprintf(lists, sizeof lists, "%s/lists", root);
    const char *paths[] = {lib};
    sl_catalog all;
    CHECK(sl_catalog_scan(&all, paths, 1, NULL, exts, NEXT) == 0);
    for (int n = 1; n <= 5; n++) {
        size_t seen = 0;
        int *count = calloc(all.n, sizeof *count);
        for (int k = 0; k < n; k++) {
            sl_catalog part;
            CHECK(sl_catalog_scan(&part, paths, 1, NULL, exts, NEXT) == 0);
            CHECK(sl_catalog_shard(&part, k, n) == 0);
            seen += part.n;
            for (size_t i = 0; i < part.n; i++) {
                size_t j = 0;
                while (j < all.n && strcmp(all.tracks[j].id, part.tracks[i].id))
                    j++;
                CHECK(j < all.n);
                if (j < all.n) {
                    count[j]++;
                    CHECK(j % (size_t)n == (size_t)k);
                }
                if (i)
                    CHECK(strcmp(part.tracks[i - 1].id, part.tracks[i].id) < 0);
            }
            sl_catalog_free(&part);
        }
        CHECK(seen == all.n);
        for (size_t j = 0; j < all.n; j++)
            CHECK_MSG(count[j] == 1, "n=%d: track %zu seen %d times", n, j, count[j]);
        free(count);
    }
    CHECK(sl_catalog_shard(&all, 2, 2) == SL_EINVAL);
    CHECK(sl_catalog_shard(&all, -1, 2) == SL_EINVAL);
    CHECK(sl_catalog_shard(&all, 0, 0) == SL_EINVAL);
    sl_catalog_free(&all);
    /* more shards than tracks: some are empty, none fails */
    sl_catalog part;
    const char *p2[] = {lists};
    CHECK(sl_catalog_scan(&part, p2, 1, NULL, exts, NEXT) == 0);
    CHECK(sl_catalog_shard(&part, 7, 8) == 0 && part.n == 0);
    sl_catalog_free(&part);
}

/* Runs scan(arg) with warnings captured into log (NUL-terminated, at most
 * size bytes); returns what scan returned. */
static int with_log(int (*scan)(void *), void *arg, char *log, size_t size)
{
    FILE *f = tmpfile();
    if (!f)
        return -1;
    sl_log_level old = sl_log_get_level();
    sl_log_set_level(SL_LOG_WARN);
    sl_log_set_file(f);
    int rc = scan(arg);
    sl_log_set_file(NULL);
    sl_log_set_level(old);
    rewind(f);
    size_t n = fread(log, 1, size - 1, f);
    log[n] = 0;
    fclose(f);
    return rc;
}

static int scan_hostile(void *arg)
{
    sl_catalog *cat = arg;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/hostile", root);
    const char *paths[] = {dir};
    return sl_catalog_scan(cat, paths, 1, NULL, exts, NEXT);
}

/* Inside a folder: a link loop is a loop (not "broken"), a FIFO named like
 * audio is skipped (opening it would block), an unreadable subfolder is a
 * warning and the rest is scanned; an unreadable input folder is an error. */
static void test_hostile(void)
{
    mkfile("hostile/ok.mp3", "12345");
    mkfile("hostile/locked/inside.mp3", "12345");
    mkfile("hostile/later/z.mp3", "12345");
    mklink("self.mp3", "hostile/self.mp3");
    char p[900];
    snprintf(p, sizeof p, "%s/hostile/pipe.mp3", root);
    CHECK(mkfifo(p, 0644) == 0);
    snprintf(p, sizeof p, "%s/hostile/locked", root);
    CHECK(chmod(p, 0) == 0);

    /* root reads any folder: the unreadable-folder part runs as nobody */
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0) {
            char rp[600];
            snprintf(rp, sizeof rp, "%s", root);
            chmod(rp, 0755);
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(3);
        }
        sl_catalog cat;
        char log[8192];
        int rc = with_log(scan_hostile, &cat, log, sizeof log);
        int bad = 0;
        if (rc != 0) {
            fprintf(stderr, "scan failed: %s\n", sl_lasterr());
            _exit(1);
        }
        bad |= !(cat.n == 2 && has_id(&cat, "ok.mp3") && has_id(&cat, "later/z.mp3"));
        bad |= !strstr(log, "hostile/locked'");                 /* the warning names the folder */
        bad |= !strstr(log, "self.mp3': symbolic link loop");
        bad |= strstr(log, "broken") != NULL;
        bad |= !strstr(log, "pipe.mp3': not a regular file");
        if (bad)
            fprintf(stderr, "%zu tracks; log:\n%s", cat.n, log);
        sl_catalog_free(&cat);
        /* the unreadable folder given as the input itself: an error */
        char lk[700];
        snprintf(lk, sizeof lk, "%s/hostile/locked", root);
        const char *pl[] = {lk};
        rc = sl_catalog_scan(&cat, pl, 1, NULL, exts, NEXT);
        if (rc == 0 || !strstr(sl_lasterr(), "hostile/locked")) {
            fprintf(stderr, "unreadable input folder: rc %d, '%s'\n", rc, sl_lasterr());
            bad = 1;
        }
        _exit(bad ? 2 : 0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hostile folder scan: status %d", st);
    chmod(p, 0755);

    /* named explicitly, a FIFO is kept: its track fails when it is opened */
    snprintf(p, sizeof p, "%s/hostile/pipe.mp3", root);
    const char *pf[] = {p};
    sl_catalog cat;
    CHECK(sl_catalog_scan(&cat, pf, 1, NULL, exts, NEXT) == 0 && cat.n == 1);
    sl_catalog_free(&cat);
    /* a loop given as the input: reported as a loop */
    snprintf(p, sizeof p, "%s/hostile/self.mp3", root);
    CHECK(sl_catalog_scan(&cat, pf, 1, NULL, exts, NEXT) != 0);
    CHECK_MSG(strstr(sl_lasterr(), "symbolic link loop") != NULL, "%s", sl_lasterr());
}

int main(void)
{
    snprintf(root, sizeof root, "%s", sl_test_tmpdir());
    sl_log_set_level(SL_LOG_ERROR); /* the loop and broken-link warnings are expected */
    mkfile("lib/a.mp3", "12345");
    mkfile("lib/a.flac", "12345"); /* side by side with a.mp3: distinct ids */
    mkfile("lib/Z.flac", "12345");
    mkfile("lib/x.mp3", "12345");
    mkfile("lib/notes.txt", "hello");
    mkfile("lib/cover.JPG", "12345");
    mkfile("lib/noext", "12345");
    mkfile("lib/.hidden.mp3", "12345");
    mkfile("lib/.git/x.mp3", "12345");
    mkfile("lib/A/song.MP3", "12345");
    mkfile("lib/A/b/deep.Wav", "12345");
    mkfile("lib/zz/é.m4a", "12345");
    mkfile("other/a.mp3", "12345");
    mkfile("other/solo.ogg", "12345");
    mkfile("elsewhere/x.mp3", "12345");
    mklink("../..", "lib/A/b/loop");           /* loops back to lib/A */
    mklink("../elsewhere", "lib/linked");      /* folder link: followed */
    mklink("nowhere.mp3", "lib/broken.mp3");   /* broken link: skipped */
    test_folder();
    test_files_and_errors();
    test_manifest();
    test_shard();
    test_hostile();
    return sl_test_finish("catalog");
}
