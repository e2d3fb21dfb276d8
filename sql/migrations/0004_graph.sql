-- fleetbox Microsoft Graph delivery: what processors created, resumable uploads, webhook
-- subscriptions and the messages fetched from Graph. Applied after 0003_admin with search_path
-- set to the fleetbox schema.

-- What a job created in Graph, written as soon as Graph answered and before the job completes,
-- so an attempt after a crash sees the work was done and does not send it twice. One row per
-- step of a job (a draft, its upload, its send; a chat message).
CREATE TABLE graph_effects (
    job_id     bigint NOT NULL,
    step       text NOT NULL,
    graph_id   text,
    detail     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
);
CREATE INDEX graph_effects_created ON graph_effects (created_at);

-- A large upload in progress: the session Graph opened and how far it got, so the next attempt
-- resumes from Graph's nextExpectedRanges instead of starting over. upload_url is
-- pre-authenticated: treat it as a secret (never logged).
CREATE TABLE graph_uploads (
    job_id      bigint PRIMARY KEY,
    upload_url  text NOT NULL,
    total_bytes bigint NOT NULL CHECK (total_bytes > 0),
    next_offset bigint NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Change-notification subscriptions this appliance keeps alive in Graph.
CREATE TABLE graph_subscriptions (
    id          text PRIMARY KEY,
    source      text NOT NULL CHECK (source IN ('teams', 'outlook')),
    resource    text NOT NULL,
    change_type text NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz,
    removed_at  timestamptz,
    last_event  text
);
CREATE UNIQUE INDEX graph_subscriptions_live ON graph_subscriptions (source, resource) WHERE removed_at IS NULL;

-- Messages fetched from Graph (teams-inbound, outlook-inbound, sync), one row per message,
-- written idempotently: a replayed notification or delta page updates the same row.
CREATE TABLE inbound_messages (
    source      text NOT NULL CHECK (source IN ('teams', 'outlook')),
    container   text NOT NULL,
    graph_id    text NOT NULL,
    data        jsonb NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    received_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, container, graph_id)
);

-- Webhook deliveries that were refused (a clientState mismatch) are kept for the operator too.
ALTER TABLE webhook_events
    ADD COLUMN status text NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'rejected')),
    ADD COLUMN reason text;
CREATE INDEX webhook_events_received ON webhook_events (received_at);
