-- Job dependencies and workflows (0016_dependencies.sql explains the design: blocked jobs wait in
-- jobs_blocked, the edges are job_dependencies, settle_parents() releases and fails dependents).

-- name: deps_enqueue_after
-- One job after its parents, through the SQL function (it finds and locks each parent).
-- params: $1 queue, $2 data, $3 parent id[], $4 on_failure, $5 priority, $6 run_at, $7 max_attempts,
--         $8 workflow id|null
SELECT enqueue_after($1, $2, $3, $4, $5, $6, $7, $8)

-- name: deps_reserve_ids
-- Ids for the jobs of a workflow, taken before they are written (edges name them).
SELECT array_agg(nextval((SELECT pg_get_serial_sequence('jobs', 'id')::regclass)))
  FROM generate_series(1, $1::integer)

-- name: deps_insert_ready
-- A workflow's first steps (no parents): ready at once, flagged when a later step depends on them.
-- params: $1 id[], $2 queue[], $3 priority[], $4 run_at[], $5 data[], $6 max_attempts[], $7 has_dependents[]
INSERT INTO jobs (id, queue, tier, priority, run_at, data, max_attempts, has_dependents)
SELECT r.id, r.queue, q.tier, r.priority, r.run_at, r.data, r.max_attempts, r.has_dependents
  FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::timestamptz[], $5::jsonb[], $6::integer[],
              $7::boolean[]) AS r(id, queue, priority, run_at, data, max_attempts, has_dependents)
  JOIN queues q ON q.name = r.queue

-- name: deps_insert_blocked
-- A workflow's later steps: blocked until their parents (all in the same workflow) resolve.
-- params: $1 id[], $2 queue[], $3 priority[], $4 run_at[], $5 data[], $6 max_attempts[], $7 has_dependents[],
--         $8 pending[], $9 on_failure[], $10 workflow id
INSERT INTO jobs_blocked (id, queue, tier, priority, run_at, data, max_attempts, has_dependents, pending,
                          on_failure, workflow_id)
SELECT r.id, r.queue, q.tier, r.priority, r.run_at, r.data, r.max_attempts, r.has_dependents, r.pending,
       r.on_failure, $10
  FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::timestamptz[], $5::jsonb[], $6::integer[],
              $7::boolean[], $8::integer[], $9::text[])
    AS r(id, queue, priority, run_at, data, max_attempts, has_dependents, pending, on_failure)
  JOIN queues q ON q.name = r.queue

-- name: deps_insert_edges
-- params: $1 parent id[], $2 child id[]
INSERT INTO job_dependencies (parent_id, child_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[])

-- name: deps_workflow_create
INSERT INTO workflows (name, created_at) VALUES ($1, $2) RETURNING id

-- name: deps_workflow_steps
-- params: $1 workflow id, $2 step[], $3 job id[]
INSERT INTO workflow_steps (workflow_id, step, job_id)
SELECT $1, * FROM unnest($2::text[], $3::bigint[])

-- name: deps_workflow_get
SELECT id, name, created_at, cancelled_at, cancelled_by FROM workflows WHERE id = $1

-- name: deps_workflow_lock
SELECT id, name, created_at, cancelled_at, cancelled_by FROM workflows WHERE id = $1 FOR UPDATE

-- name: deps_workflow_mark_cancelled
UPDATE workflows SET cancelled_at = $2, cancelled_by = $3 WHERE id = $1

-- name: deps_workflow_step_states
-- Each step of a workflow with its job and where the job is now.
-- params: $1 workflow id, $2 now
SELECT s.step, s.job_id,
       coalesce(
         (SELECT 'blocked' FROM jobs_blocked b WHERE b.id = s.job_id),
         (SELECT CASE WHEN j.state = 'running' THEN 'running' WHEN j.attempt > 0 THEN 'retrying'
                      WHEN j.run_at > $2 THEN 'scheduled' ELSE 'waiting' END FROM jobs j WHERE j.id = s.job_id),
         (SELECT d.state FROM jobs_done d WHERE d.id = s.job_id),
         (SELECT a.state FROM jobs_archive a WHERE a.id = s.job_id)) AS state
  FROM workflow_steps s WHERE s.workflow_id = $1
 ORDER BY s.job_id

-- name: deps_cancel_waiting
-- Cancels jobs waiting in the hot table (never running ones: they finish, and their dependents
-- are cancelled by then): each moves to jobs_done as 'cancelled' with a job_cancellations row.
-- params: $1 job id[], $2 reason, $3 actor, $4 now
WITH moved AS (
    DELETE FROM jobs j WHERE j.id = ANY($1::bigint[]) AND j.state = 'waiting'
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id, j.created_at,
              j.run_at, j.has_dependents
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at)
    SELECT id, queue, priority, 'cancelled', data, singleton_key, attempt, dead_letter_id, created_at, run_at, $4
      FROM moved
), rec AS (
    INSERT INTO job_cancellations (job_id, cancelled_at, reason, actor)
    SELECT id, $4, $2, $3 FROM moved
)
SELECT id, has_dependents FROM moved ORDER BY id

-- name: deps_cancel_blocked
-- params: $1 job id[], $2 reason, $3 actor, $4 now
SELECT cancel_blocked($1::bigint[], $2, NULL, $3, $4)

-- name: deps_settle
-- Settles the dependents of finished parents (see settle_parents); how many were released (now waiting).
-- params: $1 parent id[], $2 outcome, $3 result job id[], $4 results, $5 now
SELECT settle_parents($1::bigint[], $2, $3::bigint[], $4::jsonb[], $5)

-- name: deps_follow_retries
SELECT follow_retries($1::bigint[])

-- name: deps_store_result
-- An operator's stand-in for a job's result (skipping it).
-- params: $1 job id, $2 result, $3 actor, $4 now
INSERT INTO job_results (job_id, result, stored_at, skipped_by) VALUES ($1, $2, $4, $3)
ON CONFLICT (job_id) DO UPDATE SET result = EXCLUDED.result, stored_at = EXCLUDED.stored_at,
                                   skipped_by = EXCLUDED.skipped_by

-- name: deps_result
SELECT result FROM job_results WHERE job_id = $1

-- name: deps_parents
-- A job's parents: each edge's state and where the parent is now (its step name in a workflow).
SELECT d.parent_id AS job_id, d.state AS edge, s.step,
       coalesce(
         (SELECT 'blocked' FROM jobs_blocked b WHERE b.id = d.parent_id),
         (SELECT CASE WHEN j.state = 'running' THEN 'running' WHEN j.attempt > 0 THEN 'retrying'
                      WHEN j.run_at > $2 THEN 'scheduled' ELSE 'waiting' END FROM jobs j WHERE j.id = d.parent_id),
         (SELECT x.state FROM jobs_done x WHERE x.id = d.parent_id),
         (SELECT a.state FROM jobs_archive a WHERE a.id = d.parent_id)) AS state
  FROM job_dependencies d LEFT JOIN workflow_steps s ON s.job_id = d.parent_id
 WHERE d.child_id = $1
 ORDER BY d.parent_id

-- name: deps_children
-- A job's children: each edge's state and where the child is now.
SELECT d.child_id AS job_id, d.state AS edge, s.step,
       coalesce(
         (SELECT 'blocked' FROM jobs_blocked b WHERE b.id = d.child_id),
         (SELECT CASE WHEN j.state = 'running' THEN 'running' WHEN j.attempt > 0 THEN 'retrying'
                      WHEN j.run_at > $2 THEN 'scheduled' ELSE 'waiting' END FROM jobs j WHERE j.id = d.child_id),
         (SELECT x.state FROM jobs_done x WHERE x.id = d.child_id),
         (SELECT a.state FROM jobs_archive a WHERE a.id = d.child_id)) AS state
  FROM job_dependencies d LEFT JOIN workflow_steps s ON s.job_id = d.child_id
 WHERE d.parent_id = $1
 ORDER BY d.child_id

-- name: deps_held_by
-- The blocked jobs still waiting on a job (a failed parent's held dependents).
SELECT d.child_id FROM job_dependencies d JOIN jobs_blocked b ON b.id = d.child_id
 WHERE d.parent_id = $1 AND d.state IS NULL
 ORDER BY d.child_id

-- name: deps_descendants_blocked
-- Every blocked job below these (children, their children, ...), for cancelling a subtree.
WITH RECURSIVE down(id) AS (
    SELECT d.child_id FROM job_dependencies d WHERE d.parent_id = ANY($1::bigint[])
    UNION
    SELECT d.child_id FROM job_dependencies d JOIN down ON d.parent_id = down.id
)
SELECT b.id FROM jobs_blocked b WHERE b.id IN (SELECT id FROM down) ORDER BY b.id

-- name: deps_cancellation
SELECT job_id, cancelled_at, reason, parent_id, actor FROM job_cancellations WHERE job_id = $1

-- name: deps_blocked_count
SELECT count(*) FROM jobs_blocked
