/*
 * budget.c owns what a batch may spend: the charges learned in a loop turn
 * (written to the state's ledger with the next commit), the spend they add,
 * what the jobs in work hold against max_cost (or the run's --max-cost), and
 * whether a job's worst case still fits.
 */
#include "engine_int.h"

/*
 * What the batch may have cost so far, and holds for the jobs in work: the spend
 * known, every submit that may have been billed unseen (its answer lost, a 5xx, a
 * 2xx without an id) counted as billed, and the worst case of the jobs in work.
 */
static double committed(const struct engine *e)
{
    return e->spent + e->flagged_cost + e->reserved;
}

/* What the run's manifests together may have cost: --max-cost bounds that. */
static double run_committed(const struct run *r)
{
    double sum = 0;
    for (int i = 0; i < r->n; i++)
        if (r->engines[i] && r->engines[i]->st)
            sum += committed(r->engines[i]);
    return sum;
}

/* Whether need more would pass the manifest's max_cost, or the run's --max-cost. */
int over_budget(const struct engine *e, double need)
{
    const struct run *r = e->run;
    if (r->max_cost >= 0)
        return run_committed(r) + need > r->max_cost + 1e-9;
    return e->m->limits.max_cost >= 0 && committed(e) + need > e->m->limits.max_cost + 1e-9;
}

/* Whether jobs in work hold part of the budget that binds (with --max-cost, the run's). */
int budget_held(const struct engine *e)
{
    const struct run *r = e->run;
    if (r->max_cost < 0)
        return e->reserved > 1e-9;
    for (int i = 0; i < r->n; i++)
        if (r->engines[i] && r->engines[i]->reserved > 1e-9)
            return 1;
    return 0;
}

/* The cap that binds: --max-cost for the run, else the manifest's max_cost. */
double budget(const struct engine *e)
{
    return e->run->max_cost >= 0 ? e->run->max_cost : e->m->limits.max_cost;
}

/*
 * Records a charge of the job's current version for the next commit: a prediction
 * (pred) that made images, or (flagged) a submit that reached the provider with no
 * id seen, counted as billed for the most images it asked for.
 */
void charge(struct engine *e, struct job *j, const char *pred, int images, int flagged, const char *note)
{
    struct pcharge *p = sb_calloc(1, sizeof *p);
    p->job_id = sb_strdup(j->row.id);
    p->fingerprint = sb_strdup(j->row.fingerprint);
    p->prediction_id = pred ? sb_strdup(pred) : NULL;
    p->c = (struct sb_charge){sb_now_ms(), p->job_id, p->fingerprint, p->prediction_id, images, price(e),
                              images * price(e), flagged, note};
    if (!e->charges_tail)
        e->charges_tail = &e->charges;
    *e->charges_tail = p;
    e->charges_tail = &p->next;
    if (flagged) {
        e->flagged++;
        e->flagged_cost += p->c.cost;
    } else {
        e->spent += p->c.cost;
    }
    save(e, j);
}

/*
 * The job's prediction is done with n outputs: it is charged (once, whatever
 * becomes of the downloads), and what was held for it against max_cost is let go.
 */
void charge_outputs(struct engine *e, struct job *j, int n)
{
    if (j->row.charged)
        return;
    j->row.charged = 1;
    j->row.cost += n * price(e);
    j->row.total_cost += n * price(e);
    charge(e, j, j->row.prediction_id, n, 0, "outputs made");
    e->reserved -= j->reserved;
    j->reserved = 0;
}

/* " (up to $Y if the N flagged submissions were billed)", or "" with none flagged. */
void upper_bound(char *buf, size_t len, double spent, double flagged_cost, long flagged)
{
    struct sb_spend sp = {.spent = spent, .flagged_cost = flagged_cost, .flagged = flagged};
    sb_spend_upper_bound(buf, len, &sp);
}

void cost_warning(const struct engine *e)
{
    char maybe[128];
    upper_bound(maybe, sizeof maybe, e->spent, e->flagged_cost, e->flagged);
    sb_warn("%s $%.2f reached (spent $%.2f%s, $%.2f held for the jobs in work): no new submissions",
            e->run->max_cost >= 0 ? "--max-cost" : "max_cost", budget(e), e->spent, maybe, e->reserved);
}
