-- One definition of every enqueue rule. The numbers live in fleetbox/rules.py (and the configurable
-- ones in the settings); `fleetbox migrate` and every appliance start write them here, and the SQL
-- function enqueue() reads them, so the SQL path and the Python path refuse the same values with
-- the same "field: reason" text. The CHECK constraints that repeated those numbers go: a second
-- copy of a rule is how the two paths drifted apart.

CREATE TABLE limits (
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),  -- one row
    priority_min      integer NOT NULL,
    priority_max      integer NOT NULL,
    max_attempts_max  integer NOT NULL,
    singleton_key_max integer NOT NULL,
    max_payload_bytes bigint NOT NULL,
    max_payload_depth integer NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_priority_check;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_max_attempts_check;
ALTER TABLE queues DROP CONSTRAINT IF EXISTS queues_name_check;

-- Enqueue one job with one statement, from any language:
--   SELECT * FROM fleetbox.enqueue('teams-outbound', '{"chatId": "c1", "content": "hi"}');
-- Returns the job id and whether it was created (false: a waiting or running job with the same
-- queue and singleton key already exists, and its id is returned). The checks run in the order
-- of the Python path (fleetbox.rules), with the same messages.
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
    lim    limits%ROWTYPE;
    q_tier smallint;
    body   text;
    deep   boolean;
    new_id bigint;
BEGIN
    SELECT * INTO lim FROM limits WHERE id;
    IF NOT FOUND THEN
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
    IF enqueue.priority IS NULL OR enqueue.priority NOT BETWEEN lim.priority_min AND lim.priority_max THEN
        RAISE EXCEPTION 'priority: must be an integer from % to %, got %', lim.priority_min, lim.priority_max,
            coalesce(enqueue.priority::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.singleton_key IS NOT NULL
       AND length(enqueue.singleton_key) NOT BETWEEN 1 AND lim.singleton_key_max THEN
        RAISE EXCEPTION 'singleton_key: must be a string of 1 to % characters', lim.singleton_key_max
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.max_attempts IS NOT NULL AND enqueue.max_attempts NOT BETWEEN 1 AND lim.max_attempts_max THEN
        RAISE EXCEPTION 'max_attempts: must be an integer from 1 to %, got %', lim.max_attempts_max,
            enqueue.max_attempts USING ERRCODE = 'invalid_parameter_value';
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
