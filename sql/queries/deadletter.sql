-- name: dead_letter_get
SELECT id, job_id, queue, priority, data, singleton_key, error_class, error, attempts, history,
       job_created_at, failed_at, status, reviewed_at, reviewed_by, resolution_notes,
       retried_job_id, retried_at, discarded_at
  FROM dead_letters WHERE id = $1

-- name: dead_letter_by_job
SELECT id FROM dead_letters WHERE job_id = $1

-- name: dead_letter_lock
SELECT id, status, retried_job_id FROM dead_letters WHERE id = $1 FOR UPDATE

-- name: dead_letter_list
-- Newest first, with optional filters; keyset paging on (failed_at, id), by dead_letters_failed
-- (or dead_letters_queue for one queue). The first page passes ('infinity', the largest bigint).
-- The text filter $8 (case-insensitive, anywhere in the error message) has no index: it narrows
-- the same ordered walk, which stops at the page's LIMIT.
-- params: $1 queue|null, $2 reviewed|null, $3 status|null, $4 error class|null,
--         $5 before failed_at, $6 before id, $7 limit, $8 text in the error|null
SELECT id, job_id, queue, priority, data, singleton_key, error_class, error, attempts, history,
       job_created_at, failed_at, status, reviewed_at, reviewed_by, resolution_notes,
       retried_job_id, retried_at, discarded_at
  FROM dead_letters
 WHERE ($1::text IS NULL OR queue = $1)
   AND ($2::boolean IS NULL OR (reviewed_at IS NOT NULL) = $2)
   AND ($3::text IS NULL OR status = $3)
   AND ($4::text IS NULL OR error_class = $4)
   AND ($8::text IS NULL OR strpos(lower(error), lower($8::text)) > 0)
   AND (failed_at, id) < ($5::timestamptz, $6::bigint)
 ORDER BY failed_at DESC, id DESC
 LIMIT $7

-- name: dead_letter_count
-- How many dead letters match the filters of dead_letter_list, counting at most $6 (the caller
-- asks for one more than it reports, to tell "exactly" from "at least"): bounded like a page.
-- params: $1 queue|null, $2 reviewed|null, $3 status|null, $4 error class|null,
--         $5 text in the error|null, $6 the most counted
SELECT count(*) FROM (
    SELECT 1 FROM dead_letters
     WHERE ($1::text IS NULL OR queue = $1)
       AND ($2::boolean IS NULL OR (reviewed_at IS NOT NULL) = $2)
       AND ($3::text IS NULL OR status = $3)
       AND ($4::text IS NULL OR error_class = $4)
       AND ($5::text IS NULL OR strpos(lower(error), lower($5::text)) > 0)
     LIMIT $6
) matching

-- name: dead_letter_requeue
-- A new job on the dead letter's original queue, linked back to it.
INSERT INTO jobs (queue, tier, priority, data, singleton_key, dead_letter_id, run_at)
SELECT d.queue, q.tier, d.priority, d.data, d.singleton_key, d.id, $2
  FROM dead_letters d JOIN queues q ON q.name = d.queue
 WHERE d.id = $1
ON CONFLICT (queue, singleton_key) WHERE singleton_key IS NOT NULL DO NOTHING
RETURNING id

-- name: dead_letter_mark_retried
UPDATE dead_letters SET status = 'retried', retried_job_id = $2, retried_at = $3 WHERE id = $1

-- name: dead_letter_review
UPDATE dead_letters SET reviewed_at = $4, reviewed_by = $2, resolution_notes = $3
 WHERE id = $1
RETURNING id

-- name: dead_letter_discard
UPDATE dead_letters SET status = 'discarded', discarded_at = $2
 WHERE id = $1 AND status = 'open'
RETURNING id

-- name: audit
INSERT INTO audit_log (actor, action, target, details) VALUES ($1, $2, $3, $4)

-- name: audit_for_target
SELECT id, at, actor, action, target, details FROM audit_log WHERE target = $1 ORDER BY at, id

-- name: dead_letter_groups
-- Dead letters matching the filters of dead_letter_list grouped by error class and message,
-- largest group first. The newest $6 matching dead letters are read (dead_letters_failed, cut by
-- the LIMIT), so the cost is bounded however many there are.
-- params: $1 queue|null, $2 reviewed|null, $3 status|null, $4 error class|null,
--         $5 text in the error|null, $6 the most read
SELECT error_class, error AS message, count(*) AS count,
       array_agg(DISTINCT queue ORDER BY queue) AS queues, max(failed_at) AS last_failed_at
  FROM (SELECT error_class, error, queue, failed_at FROM dead_letters
         WHERE ($1::text IS NULL OR queue = $1)
           AND ($2::boolean IS NULL OR (reviewed_at IS NOT NULL) = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::text IS NULL OR error_class = $4)
           AND ($5::text IS NULL OR strpos(lower(error), lower($5::text)) > 0)
         ORDER BY failed_at DESC, id DESC
         LIMIT $6) d
 GROUP BY error_class, error
 ORDER BY count(*) DESC, max(failed_at) DESC

-- name: dead_letters_review_many
-- Marks dead letters (already locked) reviewed.
-- params: $1 dead letter id[], $2 reviewed by, $3 notes|null, $4 now
UPDATE dead_letters SET reviewed_at = $4, reviewed_by = $2, resolution_notes = $3
 WHERE id = ANY($1::bigint[])
RETURNING id

-- name: dead_letters_discard_many
-- Discards open dead letters (already locked); they stay on record.
-- params: $1 dead letter id[], $2 now
UPDATE dead_letters SET status = 'discarded', discarded_at = $2
 WHERE id = ANY($1::bigint[]) AND status = 'open'
RETURNING id
