-- Job dependencies, second part (after 0016 was released): a retried step keeps its parents, and
-- the spec's job_tracking view shows the blocked jobs.

-- A dead letter retried as a new job takes the failed job's place: the children held on it wait on
-- the new one (the hold policy), a workflow step follows its job, and the new job has the failed
-- one's parents (edges and results), so it runs with the inputs the first attempt had. Called in
-- the retry's transaction.
CREATE OR REPLACE FUNCTION follow_retries(dead_letter_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    moved integer;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS retried_jobs (old_id bigint, new_id bigint) ON COMMIT DROP;
    INSERT INTO retried_jobs
    SELECT job_id, retried_job_id FROM dead_letters
     WHERE id = ANY(dead_letter_ids) AND retried_job_id IS NOT NULL;
    WITH edges AS (
        UPDATE job_dependencies d SET parent_id = m.new_id FROM retried_jobs m
         WHERE d.parent_id = m.old_id AND d.state IS NULL
        RETURNING m.new_id
    )
    UPDATE jobs j SET has_dependents = true WHERE j.id IN (SELECT new_id FROM edges);
    GET DIAGNOSTICS moved = ROW_COUNT;
    UPDATE workflow_steps s SET job_id = m.new_id FROM retried_jobs m WHERE s.job_id = m.old_id;
    INSERT INTO job_dependencies (parent_id, child_id, state)
    SELECT d.parent_id, m.new_id, d.state FROM job_dependencies d JOIN retried_jobs m ON d.child_id = m.old_id;
    UPDATE jobs j SET parents = p.parents
      FROM (SELECT m.new_id,
                   jsonb_object_agg(coalesce(s.step, d.parent_id::text), coalesce(r.result, 'null'::jsonb))
                     AS parents
              FROM retried_jobs m
              JOIN job_dependencies d ON d.child_id = m.old_id
              LEFT JOIN job_results r ON r.job_id = d.parent_id
              LEFT JOIN workflow_steps s ON s.job_id = d.parent_id
             GROUP BY m.new_id) p
     WHERE j.id = p.new_id;
    DROP TABLE retried_jobs;
    RETURN moved;
END $$;

-- job_tracking (0010) with the blocked jobs: the spec's words have none for them, so status and
-- state both say 'blocked'. Same columns, in the same order.
CREATE OR REPLACE VIEW job_tracking AS
SELECT j.id AS job_id, j.queue AS queue_name,
       CASE WHEN j.state = 'running' THEN 'active'
            WHEN j.attempt > 0 THEN 'retry'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'pending' END AS status,
       CASE WHEN j.state = 'running' THEN 'running'
            WHEN j.attempt > 0 THEN 'retrying'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'waiting' END AS state,
       j.priority, j.data, j.singleton_key, j.attempt AS attempts, j.max_attempts,
       j.last_error_class AS error_type, j.last_error AS error_message,
       j.created_at, j.run_at AS scheduled_for, j.claimed_at AS started_at, NULL::timestamptz AS completed_at,
       NULL::double precision AS duration_ms, j.worker_id, j.dead_letter_id AS retry_of_dead_letter_id
  FROM jobs j
UNION ALL
SELECT b.id, b.queue, 'blocked', 'blocked', b.priority, b.data, NULL::text, 0, b.max_attempts, NULL::text,
       NULL::text, b.created_at, b.run_at, NULL::timestamptz, NULL::timestamptz, NULL::double precision,
       NULL::text, NULL::bigint
  FROM jobs_blocked b
UNION ALL
SELECT d.id, d.queue,
       CASE d.state WHEN 'succeeded' THEN 'completed' WHEN 'dead' THEN 'failed' ELSE 'cancelled' END,
       d.state, d.priority, d.data, d.singleton_key, d.attempts, NULL::integer,
       a.error_class, a.error, d.created_at, d.run_at, a.started_at, d.finished_at, d.duration_ms,
       a.worker_id, d.dead_letter_id
  FROM jobs_done d
  LEFT JOIN LATERAL (SELECT error_class, error, started_at, worker_id FROM job_attempts
                      WHERE job_id = d.id AND attempt = d.attempts) a ON true
UNION ALL
SELECT r.id, r.queue, CASE r.state WHEN 'succeeded' THEN 'completed' ELSE 'cancelled' END, r.state,
       r.priority, r.data, r.singleton_key, r.attempts, NULL::integer, NULL::text, NULL::text, r.created_at,
       r.run_at, NULL::timestamptz, r.finished_at, r.duration_ms, NULL::text, r.dead_letter_id
  FROM jobs_archive r;
