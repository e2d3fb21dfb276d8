-- Dependents cancelled by their `cancel` policy (a parent dead, cleared or cancelled) are on
-- record in the audit log, as an operator's cancellations are: one row per failed parent, actor
-- 'system', action 'job.cancel_dependents', target the parent (job:<id>), details the children
-- cancelled. settle_parents is the one place this happens, inside the statement that finishes
-- the parent (a worker's completion, a lease expiry, a clear, an operator's cancellation), so the
-- row is written here, in the same transaction; the service layer never sees these
-- cancellations. Otherwise the function is 0016's.

CREATE OR REPLACE FUNCTION settle_parents(parent_ids bigint[], outcome text, result_ids bigint[], results jsonb[],
                               at timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    released bigint[];
    cancelled bigint[];
    failed bigint[] := parent_ids;
    total integer := 0;
    round integer := 0;
    cause bigint;
    edge_children bigint[];
    edge_parents bigint[];
BEGIN
    IF outcome IN ('succeeded', 'skipped') THEN
        failed := '{}';
        -- children first locked in id order: concurrent completions never deadlock on them
        PERFORM 1 FROM jobs_blocked b
          WHERE b.id IN (SELECT child_id FROM job_dependencies
                          WHERE parent_id = ANY(parent_ids) AND state IS NULL)
          ORDER BY b.id FOR UPDATE;
        WITH e AS (
            UPDATE job_dependencies SET state = outcome
             WHERE parent_id = ANY(parent_ids) AND state IS NULL
            RETURNING child_id
        ), c AS (
            SELECT child_id, count(*)::integer AS n FROM e GROUP BY child_id
        ), u AS (
            UPDATE jobs_blocked b SET pending = b.pending - c.n FROM c WHERE b.id = c.child_id
            RETURNING b.id, b.pending
        )
        SELECT array_agg(id) INTO released FROM u WHERE pending = 0;
    END IF;
    -- failures cascade through cancelled children, layer by layer
    WHILE cardinality(failed) > 0 LOOP
        round := round + 1;
        PERFORM 1 FROM jobs_blocked b
          WHERE b.id IN (SELECT child_id FROM job_dependencies
                          WHERE parent_id = ANY(failed) AND state IS NULL)
          ORDER BY b.id FOR UPDATE;
        -- cancel policy
        WITH e AS (
            UPDATE job_dependencies d SET state = 'failed'
              FROM jobs_blocked b
             WHERE d.parent_id = ANY(failed) AND d.state IS NULL AND b.id = d.child_id
               AND b.on_failure = 'cancel'
            RETURNING d.child_id, d.parent_id
        )
        SELECT array_agg(DISTINCT child_id), min(parent_id), array_agg(child_id), array_agg(parent_id)
          INTO cancelled, cause, edge_children, edge_parents FROM e;
        -- ignore policy
        WITH e AS (
            UPDATE job_dependencies d SET state = 'ignored'
              FROM jobs_blocked b
             WHERE d.parent_id = ANY(failed) AND d.state IS NULL AND b.id = d.child_id
               AND b.on_failure = 'ignore'
            RETURNING d.child_id
        ), c AS (
            SELECT child_id, count(*)::integer AS n FROM e GROUP BY child_id
        ), u AS (
            UPDATE jobs_blocked b SET pending = b.pending - c.n FROM c WHERE b.id = c.child_id
            RETURNING b.id, b.pending
        )
        SELECT coalesce(released, '{}') || coalesce(array_agg(id), '{}') INTO released FROM u WHERE pending = 0;
        failed := '{}';
        IF cancelled IS NOT NULL THEN
            failed := cancel_blocked(cancelled, 'a parent failed (job ' || cause || ')', cause, NULL, at);
            -- On record: one audit row per failed parent, naming the dependents it cancelled.
            INSERT INTO audit_log (at, actor, action, target, details)
            SELECT at, 'system', 'job.cancel_dependents', 'job:' || e.parent_id,
                   jsonb_build_object('cancelled', array_agg(DISTINCT e.child_id ORDER BY e.child_id),
                                      'policy', 'cancel',
                                      'reason', 'a parent failed (job ' || e.parent_id || ')')
              FROM unnest(edge_children, edge_parents) AS e(child_id, parent_id)
             WHERE e.child_id = ANY(failed)
             GROUP BY e.parent_id;
        END IF;
        IF round > 10000 THEN
            RAISE EXCEPTION 'settle_parents: the dependency chain does not end';
        END IF;
    END LOOP;
    IF released IS NULL OR cardinality(released) = 0 THEN
        RETURN 0;
    END IF;
    -- Set-based (joins, not a subquery per child): a fan-out releases thousands at once, and the
    -- plans here are generic, made before the tables had statistics.
    WITH moved AS (
        DELETE FROM jobs_blocked b WHERE b.id IN (SELECT unnest(released)) AND b.pending = 0 RETURNING b.*
    ), given AS (
        SELECT * FROM unnest(result_ids, results) AS p(job_id, result)
    ), mapped AS (
        SELECT d.child_id,
               jsonb_object_agg(coalesce(s.step, d.parent_id::text), coalesce(g.result, r.result, 'null'::jsonb))
                 AS parents
          FROM job_dependencies d
          JOIN moved m ON m.id = d.child_id
          LEFT JOIN job_results r ON r.job_id = d.parent_id
          LEFT JOIN workflow_steps s ON s.job_id = d.parent_id
          LEFT JOIN given g ON g.job_id = d.parent_id
         GROUP BY d.child_id
    ), ins AS (
        INSERT INTO jobs (id, queue, tier, priority, run_at, data, max_attempts, created_at, has_dependents,
                          parents)
        SELECT m.id, m.queue, m.tier, m.priority, greatest(m.run_at, at), m.data, m.max_attempts, m.created_at,
               m.has_dependents, p.parents
          FROM moved m LEFT JOIN mapped p ON p.child_id = m.id
        RETURNING 1
    )
    SELECT count(*) INTO total FROM ins;
    RETURN total;
END $$;
