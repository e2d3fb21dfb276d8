-- Retry experiments: the weights of a queue's retry variants over time. A job's variant is a pure
-- function of its id (or a payload key) and the weights in force when it was created (the latest
-- epoch started at or before its created_at), so nothing is written on the hot path and a report
-- recomputes every job's variant exactly as the worker chose it.
CREATE TABLE retry_experiments (
    queue      text NOT NULL,
    started_at timestamptz NOT NULL,
    -- {"label": weight, ...}; an empty object ends the experiment (every job follows the queue)
    weights    jsonb NOT NULL,
    -- config (the file), promote (an operator), guardrail (a variant stopped), bandit (re-weighted)
    source     text NOT NULL CHECK (source IN ('config', 'promote', 'guardrail', 'bandit')),
    reason     text,
    actor      text,
    PRIMARY KEY (queue, started_at)
);
