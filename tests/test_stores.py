"""The shared SQLite stores open and work under many threads and processes at once, and a store
that fails says so as our failure (`MachineryError`), never as a row's."""
import multiprocessing
import sqlite3
import threading

import pytest

from tasks.apis.batches import BatchStore
from tasks.engine.lookups import LookupCache
from tasks.engine.outcomes import MachineryError, RowError

PROCESSES, THREADS, ROUNDS = 3, 3, 200  # the old constructor failed 19 of 200 rounds (database is locked)


def use(kind: str, path: str, name: str) -> object:
    """Open the shared store on `path` (fresh in this round), write `name`, read it back."""
    if kind == "lookups":
        store = LookupCache.shared(path)
        store.put({name: {"by": name}}, {})
        assert store.get([name]) == {name: {"by": name}}
    else:
        store = BatchStore.shared(path)
        store.record(f"msgbatch_{name}", [name])
        assert store.batch_of(name) == f"msgbatch_{name}"
    return store


def hammer(folder: str, process: int, between: multiprocessing.Barrier, problems: multiprocessing.Queue) -> None:
    """Each round, every process and thread opens the same fresh store at the same moment."""
    found = []
    for round_ in range(ROUNDS):
        kind = ("lookups", "batches")[round_ % 2]
        path, go, stores = f"{folder}/{kind}-{round_}.sqlite", threading.Event(), []

        def one(thread: int) -> None:
            go.wait()
            try:
                stores.append(use(kind, path, f"p{process}-t{thread}"))
            except Exception as error:  # the outcome under test: any failure is reported, not raised
                found.append(f"round {round_}, process {process}, thread {thread}: {type(error).__name__}: {error}")

        threads = [threading.Thread(target=one, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        between.wait()  # every process ready: go together
        go.set()
        for thread in threads:
            thread.join()
        if len({id(store) for store in stores}) > 1:
            found.append(f"round {round_}, process {process}: {len(set(map(id, stores)))} instances for one path")
    problems.put(found)


def test_fresh_stores_open_safely_from_many_threads_and_processes_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    between, problems = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=hammer, args=(str(tmp_path), n, between, problems)) for n in range(PROCESSES)]
    for worker in workers:
        worker.start()
    found = [problem for _ in workers for problem in problems.get(timeout=600)]
    for worker in workers:
        worker.join(60)
    assert found == []
    for round_ in range(ROUNDS):  # nothing lost: every thread's write is in the file
        kind = ("lookups", "batches")[round_ % 2]
        with sqlite3.connect(tmp_path / f"{kind}-{round_}.sqlite") as db:
            table = "answers" if kind == "lookups" else "requests"
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == PROCESSES * THREADS


def test_a_broken_store_fails_as_our_machinery_not_as_a_row(tmp_path):
    (tmp_path / "broken.sqlite").write_bytes(b"not a database, " * 512)
    with pytest.raises(MachineryError, match="broken.sqlite: DatabaseError: file is not a database") as raised:
        LookupCache(tmp_path / "broken.sqlite")
    assert not isinstance(raised.value, RowError)
    store = LookupCache(tmp_path / "cache.sqlite")
    (tmp_path / "cache.sqlite").write_bytes(b"overwritten " * 1024)  # lost under a running store
    with pytest.raises(MachineryError):
        store.get(["a"])
