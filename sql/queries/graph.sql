-- name: graph_effect_get
-- What an earlier attempt of this job already created in Graph for this step.
SELECT graph_id, detail FROM graph_effects WHERE job_id = $1 AND step = $2

-- name: graph_effect_put
-- Recorded as soon as Graph answered, before the job completes; a second write keeps the first.
INSERT INTO graph_effects (job_id, step, graph_id, detail) VALUES ($1, $2, $3, coalesce($4::jsonb, '{}'))
ON CONFLICT (job_id, step) DO NOTHING

-- name: graph_upload_get
SELECT upload_url, total_bytes, next_offset, expires_at FROM graph_uploads WHERE job_id = $1

-- name: graph_upload_put
INSERT INTO graph_uploads (job_id, upload_url, total_bytes, next_offset, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (job_id) DO UPDATE
   SET upload_url = excluded.upload_url, total_bytes = excluded.total_bytes,
       next_offset = excluded.next_offset, expires_at = excluded.expires_at, updated_at = now()

-- name: graph_upload_progress
UPDATE graph_uploads SET next_offset = $2, updated_at = now() WHERE job_id = $1

-- name: graph_upload_done
DELETE FROM graph_uploads WHERE job_id = $1

-- name: webhook_store
-- One delivered change notification, stored once: a replay with the same dedupe key returns no
-- row and is dropped. The caller enqueues its processing in the same transaction.
INSERT INTO webhook_events (source, dedupe_key, payload) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id

-- name: webhook_enqueue
-- The processing job of a stored notification, linked to it.
WITH queued AS (SELECT job_id FROM enqueue('webhooks', $2::jsonb))
UPDATE webhook_events SET job_id = queued.job_id FROM queued WHERE webhook_events.id = $1
RETURNING webhook_events.job_id

-- name: subscription_insert
-- A new subscription; none when another process already keeps one for the same resource alive.
INSERT INTO graph_subscriptions (id, source, resource, change_type, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (source, resource) WHERE removed_at IS NULL DO NOTHING
RETURNING id

-- name: subscription_lock
-- Held until the transaction ends: one process at a time checks, adopts or creates the
-- subscription of one resource, so two appliances starting together create it once in Graph.
SELECT pg_advisory_xact_lock(hashtextextended('fleetbox.subscription:' || current_schema() || ':' || $1 || ':' || lower($2), 0))

-- name: subscription_live_for
SELECT id FROM graph_subscriptions WHERE source = $1 AND resource = $2 AND removed_at IS NULL

-- name: subscription_renewed
UPDATE graph_subscriptions SET expires_at = $2, renewed_at = now() WHERE id = $1

-- name: subscription_remove
-- The subscription is gone in Graph (removed, expired, deleted): stop renewing it.
UPDATE graph_subscriptions SET removed_at = now(), last_event = $2 WHERE id = $1 AND removed_at IS NULL
RETURNING id, source, resource, change_type

-- name: subscription_event
UPDATE graph_subscriptions SET last_event = $2 WHERE id = $1
RETURNING id, source, resource, change_type, expires_at, removed_at

-- name: subscriptions_live
SELECT id, source, resource, change_type, expires_at, created_at, renewed_at, last_event
  FROM graph_subscriptions WHERE removed_at IS NULL ORDER BY expires_at

-- name: subscription_get
SELECT id, source, resource, change_type, expires_at, created_at, renewed_at, removed_at, last_event
  FROM graph_subscriptions WHERE id = $1

-- name: inbound_upsert
-- A message fetched from Graph; replays and later versions update the same row.
INSERT INTO inbound_messages (source, container, graph_id, data, deleted)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (source, container, graph_id) DO UPDATE
   SET data = CASE WHEN excluded.deleted THEN inbound_messages.data ELSE excluded.data END,
       deleted = excluded.deleted, updated_at = now()
RETURNING (xmax = 0) AS created

-- name: sync_started
INSERT INTO sync_history (resource, scope, started_at, full_sync) VALUES ($1, $2, now(), $3) RETURNING id

-- name: sync_finished
UPDATE sync_history SET finished_at = now(), delta_link = $2, items = $3, error = $4 WHERE id = $1

-- name: sync_last_delta_link
-- Where the last complete round of this resource and scope left off.
SELECT delta_link FROM sync_history
 WHERE resource = $1 AND scope = $2 AND delta_link IS NOT NULL AND finished_at IS NOT NULL
 ORDER BY started_at DESC LIMIT 1

-- name: graph_enqueue
-- A follow-up job a processor starts (a fetch after a notification, a sync after a lifecycle event).
SELECT job_id, created FROM enqueue($1, $2::jsonb, 5, NULL, $3)

-- name: inbound_mark_removed
-- A delta @removed entry names only the message id (a chat message's chat is not given).
UPDATE inbound_messages SET deleted = true, updated_at = now() WHERE source = $1 AND graph_id = $2
