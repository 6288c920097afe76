"""Production mode: `mailmanager run` as one worker of a cluster on PostgreSQL (issue #15).

The scheduling, the locks and the recovery are procrastinate's (a task queue in PostgreSQL,
https://procrastinate.readthedocs.io), not ours:

- `tasks.build_app` declares the jobs on a procrastinate `App` over the configured
  database. They call the same functions as the embedded daemon (`daemon.sync_job`,
  `daemon.evaluate_job`...), so both modes do the same work.
- A periodic task per timer (`[sync] interval`, the `[notifications]` intervals, the daily
  retention): procrastinate defers each tick once across the cluster, whatever the number
  of workers. The sync tick defers one `sync_mailbox` job per enabled mailbox with a
  queueing lock (at most one waiting per mailbox) and a lock (at most one running per
  mailbox).
- A mailbox that can watch (IMAP with `idle = true`) gets a `watch_mailbox` job, a long one
  on its own queue (the watchers never take the syncs' slots) with a lock and a queueing
  lock per mailbox: one watcher per mailbox across the cluster, which queues a sync on each
  change (`sync.watch.Watcher`, as in the embedded daemon). The sync tick defers it again
  (a no-op while one waits), so a watcher that stopped is restarted within an interval.
- Each worker beats its heartbeat every `[workers] heartbeat` seconds (5);
  `retry_stalled_jobs` (every half of `stalled_after`) puts back the jobs of workers silent
  for `[workers] stalled_after` seconds (20: killed, host gone), so another worker runs
  them within a minute. The mailbox lease in the database stays as a fence: a stalled
  former holder stops at its next batch.
- Each worker writes its host, pid and start into `worker_hosts` (`hosts`), which `status`
  joins with procrastinate's heartbeats.
- `remove_old_jobs` (hourly) deletes the jobs that ended `[workers] keep_jobs_hours` ago
  (72), the failed ones after a week at least (`status` counts them); queued and running
  jobs are never touched.
- `runner.run_worker` applies procrastinate's schema when missing (under the schema
  advisory lock, so workers starting together do not race), queues a sync tick at once (the
  first syncs do not wait for the cron), then runs the worker until SIGTERM/SIGINT: the
  running jobs see the stop and get `GRACE` seconds to finish their batch.

`config.workers.engine_for` decides between this and the embedded daemon.
"""
