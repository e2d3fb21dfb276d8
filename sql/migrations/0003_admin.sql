-- fleetbox admin API: the indexes behind its lists (sql/queries/admin.sql). Applied after
-- 0002_monitoring with search_path set to the fleetbox schema.
--
-- What each costs on the hot path, since 0001 keeps the jobs table lean on purpose:
-- jobs_waiting_queue gets an entry when a job starts or goes back to waiting (enqueue, retry,
-- release, reaped lease), but none at a claim: the claimed row is 'running' and the predicate
-- keeps it out. jobs_retrying_queue only for retries. The others hold only failures, which are
-- rare, or dead letters.

-- A queue's waiting jobs in id order: ready, scheduled, pending and the live list.
CREATE INDEX jobs_waiting_queue ON jobs (queue, id) WHERE state = 'waiting';
-- A queue's jobs waiting for a retry (status=retrying, /failed).
CREATE INDEX jobs_retrying_queue ON jobs (queue, id) WHERE state = 'waiting' AND attempt > 0;
-- A queue's dead and cleared jobs, last finished first (succeeded ones use
-- jobs_done_queue_finished; this index holds none of them).
CREATE INDEX jobs_done_unsucceeded ON jobs_done (queue, state, finished_at DESC, id DESC)
    WHERE state <> 'succeeded';
-- A queue's latest failed attempts (/failed).
CREATE INDEX job_attempts_failed ON job_attempts (queue, finished_at DESC) WHERE outcome <> 'succeeded';
-- The dead-letter list over every queue, newest first, with keyset paging on (failed_at, id).
CREATE INDEX dead_letters_failed ON dead_letters (failed_at DESC, id DESC);
