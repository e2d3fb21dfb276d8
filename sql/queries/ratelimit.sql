-- name: insert_rate_events
-- Rate-limit waits and 429s, many in one statement (fleetbox.ratelimit.RateEventWriter).
-- params: $1 resource[], $2 at[] (seconds since the epoch), $3 event[] ('wait' | 'throttled'),
--         $4 wait_ms[], $5 retry_after_ms[]
INSERT INTO rate_limit_tracking (resource, at, event, wait_ms, retry_after_ms)
SELECT r, to_timestamp(a), e, w, ra
  FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[], $5::float8[]) AS u(r, a, e, w, ra)

-- name: save_graph_pause
-- Graph throttled a resource: it rests until $3 (a later pause already recorded wins).
-- params: $1 resource, $2 key ('' for the whole resource), $3 until (seconds since the epoch)
INSERT INTO graph_pauses (resource, key, until) VALUES ($1, $2, to_timestamp($3))
ON CONFLICT (resource, key) DO UPDATE SET until = greatest(graph_pauses.until, excluded.until);

-- name: live_graph_pauses
-- The pauses not over at $1 (seconds since the epoch): resource, key, until as epoch seconds.
SELECT resource, key, extract(epoch FROM until)::float8 AS until
  FROM graph_pauses WHERE until > to_timestamp($1);

-- name: delete_graph_pauses_before
-- Pauses over before $1 (seconds since the epoch) are of no use to anyone.
DELETE FROM graph_pauses WHERE until < to_timestamp($1);
