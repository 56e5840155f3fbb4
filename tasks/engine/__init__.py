"""The chunk engine: chunking, the chunk task, runners, storage, limiter, progress, run report."""
