/* Writing the effective configuration back as YAML (sl_cfg_dump). */
#include "config.h"
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/sl_error.h"

/* ------------------------------------------------------------------ */
/* dump */

static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\x%02x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Plain when it cannot be misread (the loader keeps option text whatever its style). */
static void put_scalar(FILE *f, const char *s)
{
    int plain = isalnum((unsigned char)s[0]) != 0;
    for (const char *p = s; plain && *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.+-", *p))
            plain = 0;
    if (plain && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")))
        plain = 0;
    if (plain)
        fputs(s, f);
    else
        put_quoted(f, s);
}

int sl_cfg_dump(const sl_config *cfg, FILE *f)
{
    char section[128] = "";
    fputs("# stemline job, fully resolved (defaults filled in)\n", f);
    if (cfg->source_file) {
        fputs("# from: ", f);
        for (const char *p = cfg->source_file; *p; p++)
            fputc((unsigned char)*p < 0x20 ? '?' : *p, f);
        fputc('\n', f);
    }
    for (size_t i = 0; i < sl_cfg_nkeys; i++) {
        const keydef *k = &sl_cfg_keys[i];
        /* open the sections that change between this key and the previous one */
        const char *lf = sl_cfg_leaf(k->name);
        size_t plen = (size_t)(lf - k->name);
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%.*s", (int)plen, k->name);
        if (strcmp(prefix, section)) {
            /* common prefix at a dot boundary */
            size_t common = 0;
            for (size_t j = 0; prefix[j] && section[j] == prefix[j]; j++)
                if (prefix[j] == '.')
                    common = j + 1;
            int depth = 0;
            for (size_t j = 0; j < common; j++)
                depth += prefix[j] == '.';
            for (size_t j = common; j < plen;) {
                const char *e = strchr(prefix + j, '.');
                fprintf(f, "%*s%.*s:\n", depth * 2, "", (int)(e - (prefix + j)), prefix + j);
                depth++;
                j = (size_t)(e - prefix) + 1;
            }
            snprintf(section, sizeof section, "%s", prefix);
        }
        int depth = 0;
        for (size_t j = 0; j < plen; j++)
            depth += prefix[j] == '.';
        fprintf(f, "%*s%s:%s", depth * 2, "", lf,
                k->type == K_OPTS && ((const sl_cfg_opts *)((const char *)cfg + k->off))->n ? "" : " ");
        switch (k->type) {
        case K_VERSION:
            fputs("1", f);
            break;
        case K_STR:
            put_quoted(f, *cfld_str(cfg, k));
            break;
        case K_ENUM:
            put_scalar(f, *cfld_str(cfg, k));
            break;
        case K_STRNULL: {
            const char *s = *cfld_str(cfg, k);
            if (s)
                put_quoted(f, s);
            else
                fputs("null", f);
            break;
        }
        case K_INT:
            fprintf(f, "%d", cfld_int(cfg, k));
            break;
        case K_NUM:
            fprintf(f, "%.17g", cfld_num(cfg, k));
            break;
        case K_BOOL:
            fputs(cfld_int(cfg, k) ? "true" : "false", f);
            break;
        case K_LIST: {
            char *const *l = *(char *const *const *)((const char *)cfg + k->off);
            size_t n = *(const size_t *)((const char *)cfg + k->cnt_off);
            fputc('[', f);
            for (size_t j = 0; j < n; j++) {
                if (j)
                    fputs(", ", f);
                put_quoted(f, l[j]);
            }
            fputc(']', f);
            break;
        }
        case K_OPTS: {
            const sl_cfg_opts *o = (const sl_cfg_opts *)((const char *)cfg + k->off);
            if (!o->n)
                fputs("{}", f);
            for (size_t j = 0; j < o->n; j++) {
                fprintf(f, "\n%*s", (depth + 1) * 2, "");
                put_quoted(f, o->items[j].key);
                fputs(": ", f);
                put_scalar(f, o->items[j].value);
            }
            break;
        }
        }
        fputc('\n', f);
    }
    if (fflush(f) || ferror(f))
        return -(errno ? errno : EIO);
    return 0;
}
