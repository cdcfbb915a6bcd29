/* Catalog scan: turns input paths, folders and a manifest into a sorted list of
 * tracks with stable ids. */
#ifndef SL_CATALOG_H
#define SL_CATALOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *id;    /* path relative to its input root, '/'-separated, e.g. "album/01 song.mp3" */
    char *path;  /* path to open (as given, joined with the root) */
    int64_t size;     /* bytes, -1 when stat failed */
    int64_t mtime_ns; /* modification time, ns since epoch, 0 when stat failed */
} sl_track;

typedef struct {
    sl_track *tracks; /* sorted by id (byte order) */
    size_t n;
} sl_catalog;

/* Scans inputs: each path is a file (id = its base name) or a folder (recursive;
 * files kept when their lower-cased extension is in exts; id = path relative to the
 * folder); manifest (may be NULL) lists one path per line (blank lines and lines
 * starting with '#' ignored; relative paths are relative to the manifest's folder;
 * id = the line as written, without leading "./" or "/", with "." and empty
 * components dropped; a line with a ".." component is SL_ECONFIG naming
 * manifest:line, because ids become output paths; a line naming a folder is
 * scanned like a folder input with ids prefixed by the line; a line naming a
 * missing file is kept with size -1 so that only that track fails). Files named explicitly
 * (a file input or a manifest line) are kept whatever their extension.
 * Hidden files and folders (starting with '.') inside folders are skipped.
 * Inside a folder input, an unreadable subfolder or entry, a broken link, a
 * symbolic link loop and a FIFO/device named like audio are skipped with a
 * warning naming them; an unreadable input folder itself is an error. A FIFO,
 * socket or device named explicitly is kept: its track fails when opened.
 * Errors: a missing input path or manifest -> SL_ENOTFOUND; two tracks with the
 * same id -> SL_ECONFIG naming both paths; message in sl_lasterr().
 * The caller owns cat and frees it with sl_catalog_free. */
int sl_catalog_scan(sl_catalog *cat, const char *const *paths, size_t n_paths,
                    const char *manifest, const char *const *exts, size_t n_exts);

/* Keeps only tracks whose position i in the sorted catalog has i % n == index.
 * Deterministic and disjoint across index = 0..n-1. Returns 0 or SL_EINVAL. */
int sl_catalog_shard(sl_catalog *cat, int index, int n);

void sl_catalog_free(sl_catalog *cat);

#endif
