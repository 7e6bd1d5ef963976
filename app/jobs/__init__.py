"""Durable background work, one mechanism for every kind: rows with a run time, a status, a
lease and attempts (`models.JobColumns`), the queue's SQL (`queue.JobQueue`), wake-ups
(`wakeups`) and one worker loop (`worker.Worker`). Each kind of work lives in its own domain
and registers a handler where the app is assembled (`app/background.py`)."""
