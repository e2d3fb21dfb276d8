-- Cron schedules live in the spec's scheduled_jobs table. Every appliance may fire them: a due
-- schedule is fired under its row lock (FOR UPDATE SKIP LOCKED) and its last tick moves on in the
-- same transaction, and schedule_runs keeps one row per (schedule, tick), so a tick is fired once
-- whatever the number of appliances or the skew between their clocks (a tick is an instant of the
-- schedule, not of anyone's clock).
ALTER TABLE scheduled_jobs
    ADD COLUMN timezone      text NOT NULL DEFAULT 'UTC',
    ADD COLUMN dst           text NOT NULL DEFAULT 'once' CHECK (dst IN ('once', 'both')),
    ADD COLUMN catch_up      text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('none', 'latest', 'all')),
    ADD COLUMN catch_up_max  integer NOT NULL DEFAULT 100 CHECK (catch_up_max >= 1),
    ADD COLUMN overlap       text NOT NULL DEFAULT 'allow'
        CHECK (overlap IN ('allow', 'skip', 'queue', 'cancel_previous')),
    ADD COLUMN alert_after_seconds double precision CHECK (alert_after_seconds > 0),
    ADD COLUMN source        text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
    -- the latest tick dealt with (fired, skipped or dropped); next_run_at is the first after it
    ADD COLUMN last_tick     timestamptz,
    ADD COLUMN last_job_id   bigint,
    ADD COLUMN created_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_by    text;
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (next_run_at) WHERE enabled;

-- One row per tick of a schedule: what happened to it. The primary key is what makes a tick fire
-- once; the history feeds `fleetbox schedule show` and the dead-man alert.
CREATE TABLE schedule_runs (
    schedule  text NOT NULL,
    tick      timestamptz NOT NULL,
    fired_at  timestamptz NOT NULL,
    -- enqueued; skipped (the overlap policy); missed (downtime, the catch_up policy)
    outcome   text NOT NULL CHECK (outcome IN ('enqueued', 'skipped', 'missed')),
    job_id    bigint,
    worker_id text,
    PRIMARY KEY (schedule, tick)
);
CREATE INDEX schedule_runs_fired ON schedule_runs USING brin (fired_at);
