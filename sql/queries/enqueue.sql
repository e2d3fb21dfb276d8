-- name: enqueue_one
-- The SQL function validates again and resolves singleton keys under concurrency.
SELECT job_id, created FROM enqueue($1, $2, $3, $4, $5, $6)

-- name: enqueue_plain
-- One job without a singleton key, checked by the client already. The tier is read from queues
-- (a primary-key lookup), so a queue moved to another tier since the client looked is followed.
-- params: $1 queue, $2 priority, $3 run_at, $4 data, $5 max_attempts
INSERT INTO jobs (queue, tier, priority, run_at, data, max_attempts)
SELECT q.name, q.tier, $2, $3, $4, $5 FROM queues q WHERE q.name = $1
RETURNING id

-- name: enqueue_many
-- Bulk insert of jobs without singleton keys: one statement, one NOTIFY.
-- params: $1 queue[], $2 tier[], $3 priority[], $4 run_at[], $5 data[], $6 max_attempts[]
INSERT INTO jobs (queue, tier, priority, run_at, data, max_attempts)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::smallint[], $4::timestamptz[], $5::jsonb[],
                     $6::integer[])
RETURNING id

-- name: reserve_job_ids
-- Ids for a bulk load by COPY (COPY returns nothing, so the ids are taken first), as one array.
-- The sequence is looked up once (an InitPlan), not once per id.
SELECT array_agg(nextval((SELECT pg_get_serial_sequence('jobs', 'id')::regclass)))
  FROM generate_series(1, $1::integer)
