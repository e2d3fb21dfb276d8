-- The job tables under churn (docs/performance.md, "Sustained throughput"). Every job is one
-- insert, one non-HOT update (the claim) and one delete in `jobs`, then one insert each in
-- `jobs_done` and `job_attempts`, which retention later moves or deletes in batches. The default
-- autovacuum settings wait for 20 % of a table to be dead and then vacuum at a throttled pace
-- (2 ms sleep per 200 pages of cost); a draining backlog of 1M jobs left 2.0M dead tuples in
-- `jobs` and every claim stepped over them. These tables get vacuumed often and at full speed.

-- The hot table: vacuumed once 2,000 rows died, whatever its size (scale factor 0: a 1M backlog
-- must not raise the trigger to 10k+ dead rows), unthrottled, and its indexes cleaned each time
-- (the claim walks the front of jobs_claim, exactly where the dead entries are). Inserts count
-- too, so a freshly enqueued backlog gets its visibility map and statistics early.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0, vacuum_index_cleanup = on
);

-- Append-mostly history, emptied by retention in batches: vacuum after each retention batch's worth
-- of deletes (so the space is reused rather than the file growing), unthrottled; inserts trigger a
-- vacuum early so index-only scans and freezing stay cheap. Pages are filled (no updates: fillfactor
-- 100 is the default and stays).
ALTER TABLE jobs_done SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE job_attempts SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE jobs_archive SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0
);
