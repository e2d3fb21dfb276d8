-- Alert webhooks (fleetbox.store.alerting): the outbox of alert notifications and its batches.

-- name: alert_notification_add
-- params: $1 webhook, $2 alert id, $3 transition, $4 now
INSERT INTO alert_notifications (webhook, alert_id, transition, created_at) VALUES ($1, $2, $3, $4)

-- name: alert_notification_last
-- When each of these alerts was last notified to this webhook (alerts never notified are absent).
-- params: $1 webhook, $2 alert ids
SELECT alert_id, max(created_at) AS at FROM alert_notifications
 WHERE webhook = $1 AND alert_id = ANY($2::bigint[])
 GROUP BY alert_id

-- name: alert_delivery_waiting
-- A delivery job of this webhook that has not started yet (it will take what is waiting).
-- params: $1 queue, $2 webhook
SELECT EXISTS (
    SELECT 1 FROM jobs
     WHERE queue = $1 AND state = 'waiting' AND data->>'webhook' = $2
       AND NOT EXISTS (SELECT 1 FROM alert_notifications n WHERE n.job_id = jobs.id)
)

-- name: alert_batch_adopt
-- A delivery retried from the dead letters takes over the batch of the job that was dead-lettered.
-- params: $1 job id, $2 dead letter id
UPDATE alert_notifications SET job_id = $1
 WHERE job_id = (SELECT job_id FROM dead_letters WHERE id = $2)

-- name: alert_batch_take
-- The waiting notifications of a webhook become this job's batch, once: a job that has a batch
-- (an earlier attempt took it) takes nothing more, so every attempt sends the same batch.
-- params: $1 webhook, $2 job id
UPDATE alert_notifications SET job_id = $2
 WHERE webhook = $1 AND job_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM alert_notifications WHERE job_id = $2)

-- name: alert_batch
-- A job's batch, with its alerts.
-- params: $1 job id
SELECT n.id AS notification_id, n.transition, n.created_at AS notified_at, a.id, a.queue, a.subject, a.kind,
       a.message, a.value, a.threshold, a.opened_at, a.resolved_at
  FROM alert_notifications n JOIN queue_alerts a ON a.id = n.alert_id
 WHERE n.job_id = $1
 ORDER BY n.id
