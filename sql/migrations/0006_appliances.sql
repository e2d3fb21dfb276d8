-- Appliances on this database: each one writes its row every few seconds (presence), naming the
-- queues it can run and the background tasks that are failing in it. Health counts the live
-- consumers of every queue from here; the monitor raises an alert for a queue with waiting jobs
-- and no live consumer, and for a task that keeps failing in any appliance.
CREATE TABLE appliances (
    worker_id  text PRIMARY KEY,
    name       text NOT NULL,
    version    text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    -- the queues it has a handler for (it claims only these)
    queues     text[] NOT NULL DEFAULT '{}',
    -- task name -> {"since": epoch seconds, "error": text} for each task failing now
    failing    jsonb NOT NULL DEFAULT '{}',
    stopped_at timestamptz
);
CREATE INDEX appliances_seen ON appliances (seen_at);

-- An alert can concern something other than a queue (an appliance's task): its subject. One open
-- alert per (kind, queue, subject).
ALTER TABLE queue_alerts ADD COLUMN subject text;
DROP INDEX queue_alerts_open;
CREATE UNIQUE INDEX queue_alerts_open ON queue_alerts (kind, coalesce(queue, ''), coalesce(subject, ''))
    WHERE resolved_at IS NULL;
