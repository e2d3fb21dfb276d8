-- name: insert_rate_events
-- Rate-limit waits and 429s, many in one statement (fleetbox.ratelimit.RateEventWriter).
-- params: $1 resource[], $2 at[] (seconds since the epoch), $3 event[] ('wait' | 'throttled'),
--         $4 wait_ms[], $5 retry_after_ms[]
INSERT INTO rate_limit_tracking (resource, at, event, wait_ms, retry_after_ms)
SELECT r, to_timestamp(a), e, w, ra
  FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[], $5::float8[]) AS u(r, a, e, w, ra)
