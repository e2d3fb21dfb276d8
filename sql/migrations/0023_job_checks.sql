-- One check of a new job for both SQL entry points. enqueue_after (0016) had a copy of
-- enqueue's checks with its own numbers, and it drifted: it took any max_attempts above 0 and
-- payloads of any size or depth. Neither function checked run_at, so 'infinity' or the year
-- 294276 went in and every reader of that job (the API's lists, the CLI) failed: Python's
-- datetime ends at year 9999. check_new_job holds every check, in the order of the Python path
-- (fleetbox.rules), with its numbers from the limits table (written by `fleetbox migrate` and
-- every appliance start from fleetbox.rules, like the others).

ALTER TABLE limits ADD COLUMN run_at_min timestamptz, ADD COLUMN run_at_max timestamptz;

-- The tier of the job's queue, or an invalid_parameter_value error naming the first field that
-- is wrong ("field: reason"). max_attempts and singleton_key may be NULL.
CREATE FUNCTION check_new_job(
    queue_name    text,
    payload       jsonb,
    priority      integer,
    run_at        timestamptz,
    singleton_key text,
    max_attempts  integer
) RETURNS smallint
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    lim    limits%ROWTYPE;
    q_tier smallint;
    body   text;
    deep   boolean;
BEGIN
    SELECT * INTO lim FROM limits WHERE id;
    IF NOT FOUND OR lim.run_at_min IS NULL OR lim.run_at_max IS NULL THEN
        RAISE EXCEPTION 'the fleetbox limits are not written: run `fleetbox migrate`'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue: must be a queue name (a string)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT q.tier INTO q_tier FROM queues q WHERE q.name = queue_name;
    IF q_tier IS NULL THEN
        RAISE EXCEPTION 'queue: unknown queue % (known queues: %)', quote_literal(queue_name),
            (SELECT string_agg(q.name, ', ' ORDER BY q.name COLLATE "C") FROM queues q)
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF q_tier = 0 THEN
        RAISE EXCEPTION 'queue: % holds dead letters and takes no new jobs', quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF check_new_job.priority IS NULL OR check_new_job.priority NOT BETWEEN lim.priority_min AND lim.priority_max THEN
        RAISE EXCEPTION 'priority: must be an integer from % to %, got %', lim.priority_min, lim.priority_max,
            coalesce(check_new_job.priority::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF check_new_job.run_at IS NOT NULL
       AND NOT (check_new_job.run_at BETWEEN lim.run_at_min AND lim.run_at_max) THEN
        RAISE EXCEPTION 'run_at: must be from % to % (UTC)', to_char(lim.run_at_min AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
            to_char(lim.run_at_max AT TIME ZONE 'UTC', 'YYYY-MM-DD') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF check_new_job.singleton_key IS NOT NULL
       AND length(check_new_job.singleton_key) NOT BETWEEN 1 AND lim.singleton_key_max THEN
        RAISE EXCEPTION 'singleton_key: must be a string of 1 to % characters', lim.singleton_key_max
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF check_new_job.max_attempts IS NOT NULL AND check_new_job.max_attempts NOT BETWEEN 1 AND lim.max_attempts_max THEN
        RAISE EXCEPTION 'max_attempts: must be an integer from 1 to %, got %', lim.max_attempts_max,
            check_new_job.max_attempts USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'data: must be a JSON object, got %', coalesce(jsonb_typeof(payload), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    body := payload::text;
    -- Fewer brackets than the limit cannot nest deeper than it, so only a payload with many
    -- containers pays for the walk (as in fleetbox.rules.encode_payload).
    IF length(body) - length(translate(body, '{[', '')) > lim.max_payload_depth THEN
        BEGIN
            deep := jsonb_path_exists(payload, format(
                'strict $.**{%s to last} ? (@.type() == "array" || @.type() == "object")',
                lim.max_payload_depth)::jsonpath);
        EXCEPTION WHEN statement_too_complex OR program_limit_exceeded THEN
            deep := true;  -- deeper than the server's own stack allows: far past any limit
        END;
        IF deep THEN
            RAISE EXCEPTION 'data: is nested more than % levels deep', lim.max_payload_depth
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF octet_length(body) > lim.max_payload_bytes THEN
        RAISE EXCEPTION 'data: is larger than the limit of % bytes of JSON text', lim.max_payload_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN q_tier;
END $$;

CREATE OR REPLACE FUNCTION enqueue(
    queue_name    text,
    payload       jsonb,
    priority      integer DEFAULT 5,
    run_at        timestamptz DEFAULT NULL,
    singleton_key text DEFAULT NULL,
    max_attempts  integer DEFAULT NULL
) RETURNS TABLE (job_id bigint, created boolean)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    q_tier smallint;
    new_id bigint;
BEGIN
    q_tier := check_new_job(queue_name, payload, enqueue.priority, enqueue.run_at, enqueue.singleton_key,
                            enqueue.max_attempts);
    LOOP
        INSERT INTO jobs AS j (queue, tier, priority, run_at, data, singleton_key, max_attempts)
        VALUES (queue_name, q_tier, enqueue.priority, coalesce(enqueue.run_at, now()), payload,
                enqueue.singleton_key, enqueue.max_attempts)
        ON CONFLICT (queue, singleton_key) WHERE singleton_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            RETURN QUERY SELECT new_id, true;
            RETURN;
        END IF;
        -- A job with this key exists; it may finish before we read it, so loop until one of
        -- the two statements sees a row.
        SELECT j.id INTO new_id FROM jobs j
         WHERE j.queue = queue_name AND j.singleton_key = enqueue.singleton_key;
        IF new_id IS NOT NULL THEN
            RETURN QUERY SELECT new_id, false;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- enqueue_after (0016) with its own checks replaced by check_new_job; the rest is unchanged.
CREATE OR REPLACE FUNCTION enqueue_after(
    queue_name   text,
    payload      jsonb,
    parent_ids   bigint[],
    on_failure   text DEFAULT 'cancel',
    priority     integer DEFAULT 5,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    workflow     bigint DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    q_tier smallint;
    new_id bigint;
    parents bigint[];
    rest bigint[];
    found bigint[];
    resolved bigint[] := '{}';
    states text[] := '{}';
    waiting integer := 0;
    p record;
BEGIN
    q_tier := check_new_job(queue_name, payload, enqueue_after.priority, enqueue_after.run_at, NULL,
                            enqueue_after.max_attempts);
    IF on_failure IS NULL OR on_failure NOT IN ('cancel', 'ignore', 'hold') THEN
        RAISE EXCEPTION 'on_failure: must be cancel, ignore or hold' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(DISTINCT x ORDER BY x) INTO parents FROM unnest(parent_ids) x WHERE x IS NOT NULL;
    IF parents IS NULL THEN
        RAISE EXCEPTION 'depends_on: must name at least one job' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Find each parent where it is now, in the order jobs move (blocked, then the hot table, then
    -- finished), so a parent moving on between two looks is found by the next one. The first two
    -- take the parent's row lock and flag it: a completion of that parent then waits for this
    -- transaction and settles this child (see settle_parents).
    found := ARRAY(SELECT id FROM jobs_blocked WHERE id = ANY(parents) ORDER BY id FOR UPDATE);
    UPDATE jobs_blocked SET has_dependents = true WHERE id = ANY(found) AND NOT has_dependents;
    waiting := cardinality(found);
    rest := ARRAY(SELECT x FROM unnest(parents) x WHERE NOT x = ANY(found));
    IF cardinality(rest) > 0 THEN
        found := ARRAY(SELECT id FROM jobs WHERE id = ANY(rest) ORDER BY id FOR UPDATE);
        UPDATE jobs SET has_dependents = true WHERE id = ANY(found) AND NOT has_dependents;
        waiting := waiting + cardinality(found);
        rest := ARRAY(SELECT x FROM unnest(rest) x WHERE NOT x = ANY(found));
    END IF;
    new_id := nextval(pg_get_serial_sequence('jobs', 'id')::regclass);
    -- the parents already finished: succeeded ones are resolved; a failed one per the policy (its
    -- dead letter locked: a retry of it waits, then moves this child's edge on)
    PERFORM 1 FROM dead_letters WHERE job_id = ANY(rest) ORDER BY id FOR UPDATE;
    FOR p IN SELECT x AS id, d.state, l.status, l.retried_job_id
               FROM unnest(rest) x
               LEFT JOIN (SELECT id, state FROM jobs_done WHERE id = ANY(rest)
                          UNION ALL SELECT id, state FROM jobs_archive WHERE id = ANY(rest)) d ON d.id = x
               LEFT JOIN dead_letters l ON l.job_id = x
              ORDER BY x
    LOOP
        IF p.state IS NULL THEN
            RAISE EXCEPTION 'depends_on: no job %', p.id USING ERRCODE = 'invalid_parameter_value';
        ELSIF p.state = 'succeeded' THEN
            resolved := resolved || p.id;
            states := states || 'succeeded'::text;
        ELSIF on_failure = 'ignore' THEN
            resolved := resolved || p.id;
            states := states || 'ignored'::text;
        ELSIF on_failure = 'hold' AND p.state = 'dead' AND p.status = 'open' THEN
            waiting := waiting + 1;  -- held on the dead letter; its retry moves the edge on
        ELSIF p.status = 'retried' THEN
            RAISE EXCEPTION 'depends_on: job % failed and was retried as job %; depend on that one',
                p.id, p.retried_job_id USING ERRCODE = 'invalid_parameter_value';
        ELSE
            RAISE EXCEPTION 'depends_on: job % has already failed (%), and on_failure is %', p.id, p.state,
                on_failure USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    INSERT INTO job_dependencies (parent_id, child_id, state)
    SELECT x, new_id, r.state
      FROM (SELECT DISTINCT y AS x FROM unnest(parent_ids) y WHERE y IS NOT NULL) a
      LEFT JOIN unnest(resolved, states) AS r(id, state) ON r.id = a.x;
    IF waiting > 0 THEN
        INSERT INTO jobs_blocked (id, queue, tier, priority, run_at, data, max_attempts, pending, on_failure,
                                  workflow_id)
        VALUES (new_id, queue_name, q_tier, enqueue_after.priority, coalesce(enqueue_after.run_at, now()), payload,
                enqueue_after.max_attempts, waiting, on_failure, workflow);
    ELSE
        INSERT INTO jobs (id, queue, tier, priority, run_at, data, max_attempts, parents)
        VALUES (new_id, queue_name, q_tier, enqueue_after.priority, coalesce(enqueue_after.run_at, now()), payload,
                enqueue_after.max_attempts,
                (SELECT jsonb_object_agg(coalesce(s.step, d.parent_id::text), coalesce(r.result, 'null'::jsonb))
                   FROM job_dependencies d
                   LEFT JOIN job_results r ON r.job_id = d.parent_id
                   LEFT JOIN workflow_steps s ON s.job_id = d.parent_id
                  WHERE d.child_id = new_id));
    END IF;
    RETURN new_id;
END $$;

-- Jobs that got in before this check: a due time no reader can hold is moved to the nearest one
-- that every reader can (the bounds of fleetbox.rules.RUN_AT_MIN/MAX, which the limits table
-- gets after this migration). 'infinity' stays as good as never; '-infinity' stays due.
UPDATE jobs SET run_at = greatest(least(run_at, '9999-12-30 00:00:00+00'), '0001-01-02 00:00:00+00')
 WHERE run_at NOT BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00';
UPDATE jobs_blocked SET run_at = greatest(least(run_at, '9999-12-30 00:00:00+00'), '0001-01-02 00:00:00+00')
 WHERE run_at NOT BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00';
UPDATE jobs_done SET run_at = greatest(least(run_at, '9999-12-30 00:00:00+00'), '0001-01-02 00:00:00+00')
 WHERE run_at NOT BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00';
UPDATE jobs_archive SET run_at = greatest(least(run_at, '9999-12-30 00:00:00+00'), '0001-01-02 00:00:00+00')
 WHERE run_at NOT BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00';
