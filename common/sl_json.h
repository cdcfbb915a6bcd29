/* A strict JSON (RFC 8259) reader into a small DOM, for the JSON that stemline
 * reads back: report.json (merge), index.json sidecars and the jsonl rows of
 * vector shards (search). Writing JSON is elsewhere (io/npy.h: sl_json_str).
 *
 * What it accepts, exactly:
 * - one value (any kind, not only an object) with optional white space
 *   (space, tab, LF, CR) around it; anything after it is an error, and so is
 *   an empty text or a byte-order mark;
 * - numbers in the RFC grammar only (no leading zeros, no "1.", ".5", "+1",
 *   hex, inf or nan), read as the nearest double; -0 stays -0.0; a number too
 *   large for a double is an error, one too small becomes 0 or a subnormal;
 * - strings without raw control characters (U+0000..U+001F must be escaped);
 *   every escape is decoded, \uD83D\uDE00 surrogate pairs to one code point,
 *   a lone surrogate to U+FFFD; \u0000 is an error, because the strings of the
 *   DOM are NUL-terminated and a NUL inside one would cut it short silently;
 *   other bytes are copied as they are: invalid UTF-8 is not rejected (neither
 *   reader this one replaced rejected it, and stemline's writers emit only
 *   valid UTF-8);
 * - arrays and objects nested at most SL_JSON_MAX_DEPTH deep; no trailing commas;
 * - duplicate object keys: every member is kept, in document order, and the
 *   lookups below return the LAST one (as Python's json, jq and JavaScript do).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <stddef.h>

/* Arrays and objects inside each other up to this depth (the top-level one
 * counts as 1); one more is an error, which also bounds the recursion. */
#define SL_JSON_MAX_DEPTH 64

typedef enum {
    SL_JSON_NULL,
    SL_JSON_BOOL,
    SL_JSON_NUMBER,
    SL_JSON_STRING,
    SL_JSON_ARRAY,
    SL_JSON_OBJECT
} sl_json_type;

typedef struct sl_json {
    sl_json_type type;
    int b;                 /* BOOL: 0 or 1 */
    double num;            /* NUMBER */
    char *s;               /* STRING: decoded, NUL-terminated */
    size_t len;            /* STRING: strlen(s) */
    size_t n;              /* ARRAY, OBJECT: number of items */
    char **keys;           /* OBJECT: n decoded keys, in document order */
    struct sl_json *items; /* ARRAY, OBJECT: n values (of keys[i] for an object) */
} sl_json;

/* Parses the len bytes at text (no NUL needed; a NUL byte is an error) into *out.
 * Returns 0, SL_EFORMAT with a message through sl_seterr naming what is wrong
 * and where ("... at line L, column C (byte offset B)", columns in bytes from 1,
 * the offset from 0), or SL_ENOMEM. On success the caller owns *out and frees it
 * with sl_json_free; on failure *out is left empty (freeing it is harmless). */
int sl_json_parse(const char *text, size_t len, sl_json *out);

/* Frees what v holds (not v itself) and empties it. NULL is fine. */
void sl_json_free(sl_json *v);

/* The value of key in obj (the last one when a key repeats); NULL when obj is
 * NULL or not an object, or has no such key. Points into obj. */
const sl_json *sl_json_get(const sl_json *obj, const char *key);

/* The member key of obj when it is of the named kind, else def (also when obj is
 * NULL or not an object). The string points into obj. */
double sl_json_get_num(const sl_json *obj, const char *key, double def);
const char *sl_json_get_str(const sl_json *obj, const char *key, const char *def);
int sl_json_get_bool(const sl_json *obj, const char *key, int def);

/* A malloc'd copy of the string member key (the caller frees it); NULL when it
 * is missing or not a string, or when memory runs out. */
char *sl_json_dup_str(const sl_json *obj, const char *key);

/* Items of an array or members of an object; 0 for anything else and NULL. */
size_t sl_json_len(const sl_json *v);
/* Item i of an array or value of member i of an object; NULL when out of range. */
const sl_json *sl_json_at(const sl_json *v, size_t i);

/* Writing: x as the shortest "%.Ng" (N 15..17) that reads back to the same double,
 * always with a '.' or an exponent so every reader sees a float (a locale's decimal
 * comma turned into '.'); "null" when not finite (JSON has no NaN). Into out[cap]. */
void sl_json_fmt_num(char *out, size_t cap, double x);

#endif
