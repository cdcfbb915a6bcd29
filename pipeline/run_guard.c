/* Job runner: what keeps an output folder one job's, written by one run at a
 * time, and its done tracks' outputs where the ledger says they are.
 *
 *  - the run lock (pipeline/runlock.h), taken before anything in the folder is
 *    touched, temporary-file sweeps included;
 *  - the job record: the ledger's output-affecting settings against this job's;
 *    a difference stops the run before any work unless --reset, which first
 *    removes what the old settings made;
 *  - before a done track is skipped, its recorded outputs are checked (sizes;
 *    --verify: content hashes); after a track is written, its outputs are
 *    recorded, and the ones an earlier run of it left under other names are
 *    removed. */
#include "run_internal.h"

#include "outputs.h"

int run_lock(runner *r)
{
    char m[1100];
    int rc = sl_mkdirs(r->cfg->output_dir);
    if (!rc)
        rc = sl_runlock_acquire(&r->lock, r->ledger_path);
    if (!rc) {
        /* fault injection for tests: a run that holds its lock and stays put
         * until SIGCONT (or is killed there) */
        const char *e = getenv("SL_FAULT_STOP_AFTER_LOCK");
        if (e && *e == '1')
            raise(SIGSTOP);
        return 0;
    }
    sl_log(SL_LOG_ERROR, NULL, "output", "%s", sl_errmsg(rc, m, sizeof m));
    /* another run holds it: a retry (later) works; an unwritable folder is as
     * permanent as everywhere else */
    return rc == -EWOULDBLOCK ? SL_EXIT_FATAL : sl_exit_status_for(rc);
}

/* Removes what rows of other settings made: their stems, this prefix's vector
 * shards and tags (rebuilt at the end from the rows that stay), then the rows. */
typedef struct {
    runner *r;
    long files, err;
} reset_ctx;

static int reset_row(void *arg, const sl_ledger_row *row)
{
    reset_ctx *c = arg;
    if (row->config_hash && !strcmp(row->config_hash, c->r->hash))
        return 0;
    /* both records: the files one is the outputs one with sizes, when present */
    int n = sl_outputs_remove(c->r->out_dir, row->files_json ? row->files_json : row->outputs_json, NULL);
    if (n < 0) {
        char m[600];
        sl_log(SL_LOG_WARN, row->id, "reset", "%s", sl_errmsg(n, m, sizeof m));
        c->err++;
    } else {
        c->files += n;
    }
    return 0;
}

static int reset_folder(runner *r, long n_tracks, const char *what)
{
    char m[1100];
    sl_log(SL_LOG_WARN, NULL, "reset",
           "removing from %s the outputs of the previous settings (%s): the stems of %ld done tracks, and "
           "the vector shards and tags of %s",
           r->out_dir, what, n_tracks, r->prefix[0] ? r->prefix : "this folder (unsharded)");
    reset_ctx c = {.r = r};
    int rc = sl_ledger_each(r->ledger, reset_row, &c);
    int ns = rc ? 0 : sl_outputs_remove_shards(r->out_dir, r->prefix);
    if (!rc && ns < 0)
        rc = ns;
    if (!rc && c.err)
        rc = sl_seterr(SL_EIO, "%ld outputs of the previous settings could not be removed (see above)", c.err);
    if (!rc)
        rc = sl_ledger_delete_other(r->ledger, r->hash);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "reset", "%s", sl_errmsg(rc, m, sizeof m));
        return SL_EXIT_FATAL;
    }
    sl_log(SL_LOG_INFO, NULL, "reset", "removed %ld stem files and %d vector shard and tag files", c.files, ns);
    return 0;
}

int run_check_job(runner *r)
{
    char *old_hash = NULL, *old_json = NULL, *json = sl_cfg_output_json(r->cfg);
    char key[256] = "", ov[512] = "", nv[512] = "", m[1100], other[17] = "";
    int status = 0, differ = 0;
    long n_other = 0;
    int rc = json ? sl_ledger_get_job(r->ledger, &old_hash, &old_json) : sl_seterr(SL_ENOMEM, "out of memory");
    if (!rc && (!old_hash || strcmp(old_hash, r->hash))) {
        /* rows of other settings: what --reset removes (an old ledger has only those) */
        n_other = sl_ledger_count_other(r->ledger, r->hash, other);
        if (n_other < 0)
            rc = (int)n_other;
    }
    if (!rc && old_hash && strcmp(old_hash, r->hash)) {
        differ = 1;
        if (!old_json || sl_cfg_output_diff(old_json, json, key, sizeof key, ov, nv, sizeof ov) != 1) {
            snprintf(key, sizeof key, "the output settings' hash");
            snprintf(ov, sizeof ov, "%s", old_hash);
            snprintf(nv, sizeof nv, "%s", r->hash);
        }
    } else if (!rc && !old_hash && n_other > 0) {
        /* a ledger of a version that kept only the hash, per row */
        differ = 1;
        snprintf(key, sizeof key, "the output settings' hash (this ledger was written by an older stemline, "
                                  "which did not record the settings themselves)");
        snprintf(ov, sizeof ov, "%s", other);
        snprintf(nv, sizeof nv, "%s", r->hash);
    }
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "ledger", "%s", sl_errmsg(rc, m, sizeof m));
        status = SL_EXIT_FATAL;
    } else if (differ && !r->opts->reset) {
        sl_log(SL_LOG_ERROR, NULL, "output",
               "%s: this output folder holds the outputs of another job: %s is '%s' there and '%s' in this job "
               "(config hash %s there, %s here; %ld done tracks); nothing was changed. Use another output.dir, or "
               "run again with --reset to remove the outputs of the old settings from %s",
               r->out_dir, key, ov, nv, old_hash ? old_hash : other, r->hash, n_other, r->out_dir);
        status = SL_EXIT_USAGE;
    } else {
        if (differ) {
            char what[1400];
            snprintf(what, sizeof what, "%s was '%s', now '%s'", key, ov, nv);
            status = reset_folder(r, n_other, what);
        }
        if (!status && (!old_hash || strcmp(old_hash, r->hash) || !old_json || strcmp(old_json, json))) {
            rc = sl_ledger_set_job(r->ledger, r->hash, json);
            if (rc) {
                sl_log(SL_LOG_ERROR, NULL, "ledger", "%s", sl_errmsg(rc, m, sizeof m));
                status = SL_EXIT_FATAL;
            }
        }
    }
    free(old_hash);
    free(old_json);
    free(json);
    return status;
}

int run_skip_done(runner *r, const sl_track *t)
{
    char *outs = NULL, *files = NULL, why[900], m[600];
    int rc = sl_ledger_get_outputs(r->ledger, t->id, &outs, &files);
    if (rc) {
        /* cannot tell: doing the track again is the safe side */
        sl_log(SL_LOG_WARN, t->id, "ledger", "%s: redoing the track", sl_errmsg(rc, m, sizeof m));
        return 0;
    }
    int v = sl_outputs_verify(r->out_dir, outs, files, r->opts->verify, why, sizeof why);
    free(outs);
    free(files);
    if (v == 0)
        return 1;
    sl_log(SL_LOG_WARN, t->id, NULL, "done before, but %s: redoing the track", why);
    return 0;
}

int run_record_outputs(runner *r, trk *t, char **files_json)
{
    *files_json = NULL;
    if (!t->outputs || r->scratch)
        return 0;
    int rc;
    *files_json = sl_outputs_files_json(r->out_dir, t->outputs, &rc);
    if (rc) {
        char m[600];
        trk_fail(t, "write: the outputs written cannot be read back: %s", sl_errmsg(rc, m, sizeof m));
        return rc;
    }
    /* the outputs an earlier run of this track left under other names (another
     * format or template): removed now that the new ones are in place, before
     * the ledger forgets them */
    char *old = NULL, *old_files = NULL;
    if (sl_ledger_get_outputs(r->ledger, t->tr->id, &old, &old_files) == 0 && (old || old_files)) {
        int n = sl_outputs_remove(r->out_dir, old_files ? old_files : old, t->outputs);
        if (n > 0)
            sl_log(SL_LOG_INFO, t->tr->id, NULL, "removed %d outputs of its previous run that this run did not "
                   "write again", n);
        else if (n < 0)
            sl_log(SL_LOG_WARN, t->tr->id, NULL, "%s", sl_lasterr());
    }
    free(old);
    free(old_files);
    return 0;
}
