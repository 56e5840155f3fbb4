"""Fail fast and loud on the card flow: the brake on systematic failure, a run with too many failed rows,
URLs that cannot work, redirects and attempt counts, asserted on exit code / flow state, the one-line
message and the requests the emulator received."""
import socket
import threading

import pandas as pd
from conftest import read_table, run_cli, write_config

from flows.card_recommendations import card_recommendations
from tasks.samples.tables import write_users

PAGE_ERROR = "unexpected answer from the API (HTTP 200): '<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>'"
HINT = " — the answers are web pages, not the API's: check the base URL"


def cards_cli(workspace, base_url: str, users, **processing):
    config = write_config(workspace / "config.json", base_url, **processing)
    return run_cli("card-recommendations", str(users), "-o", str(workspace / "out.csv"), "--config", str(config))


def flow_state(workspace, base_url: str, users, runner: str = "thread", **processing):
    config = write_config(workspace / "config.json", base_url, **processing)
    return card_recommendations(str(users), str(workspace / "out.csv"), str(config), runner=runner, return_state=True)


def test_web_pages_for_every_row_stop_the_run_after_100_rows_and_a_rerun_sends_them_again(workspace, emulator):
    users = write_users(workspace / "users.csv", 2000)
    emulator.configure("cards", html_rate=1.0)
    run = cards_cli(workspace, emulator.url, users)
    verdict = f"stopped after the first 100 rows sent all failed: {PAGE_ERROR}{HINT}"
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"batchflows: error: {verdict}"
    assert emulator.stats("cards")["total"] == 100  # not 2 000
    out = read_table(workspace / "out.csv")
    assert len(out) == 2000 and (out.status == "failed").all()
    assert (out.error[:100] == PAGE_ERROR).all()
    assert (out.error[100:] == f"not processed: {verdict}").all()

    emulator.reset()  # the API is fixed: a rerun sends every row, the 100 that failed under the brake too
    rerun = cards_cli(workspace, emulator.url, users)
    assert rerun.returncode == 0, rerun.stderr
    assert emulator.stats("cards")["ok_keys"] == emulator.stats("cards")["total"] == 2000
    assert (read_table(workspace / "out.csv").status == "ok").all()


def test_the_brake_works_on_dask(workspace, emulator):
    users = write_users(workspace / "users.csv", 2000)
    emulator.configure("cards", html_rate=1.0)
    state = flow_state(workspace, emulator.url, users, runner="dask")
    assert state.is_failed()
    assert state.message.endswith(f"stopped after the first 100 rows sent all failed: {PAGE_ERROR}{HINT}")
    assert emulator.stats("cards")["total"] == 100
    assert len(read_table(workspace / "out.csv")) == 2000


def test_a_failure_that_begins_in_the_middle_of_a_run_stops_it_within_a_few_chunks(workspace, emulator):
    users = write_users(workspace / "users.csv", 6000)
    emulator.configure("cards", latency=0.01)

    def break_the_api():  # after 1 000 good answers, the API answers web pages
        while emulator.stats("cards")["ok_keys"] < 1000:
            threading.Event().wait(0.05)
        emulator.configure("cards", html_rate=1.0)

    breaker = threading.Thread(target=break_the_api, daemon=True)
    breaker.start()
    state = flow_state(workspace, emulator.url, users, chunk_size=100)
    breaker.join(5)
    assert state.is_failed()
    assert "stopped after all 100 rows sent of a chunk (rows " in state.message
    assert state.message.endswith(f") failed the same way: {PAGE_ERROR}{HINT}")
    stats = emulator.stats("cards")
    out = read_table(workspace / "out.csv")
    assert len(out) == 6000 and (out.status == "ok").sum() == stats["ok_keys"] >= 1000
    assert stats["total"] - stats["ok_keys"] <= 1500  # measured 640-750: the chunks in flight, not the 5 000 rows left
    assert out.error.str.startswith("not processed: stopped after all 100 rows sent of a chunk").sum() >= 6000 - stats["total"]


def test_bad_rows_do_not_pull_the_brake_but_a_mostly_failed_run_exits_1_after_its_whole_output(workspace, emulator):
    users = write_users(workspace / "users.csv", 2000)
    frame = pd.read_csv(users, dtype=str, keep_default_na=False)
    frame.loc[:1399, "monthly_spend"] = "lots"  # the first 1 400 rows are bad: the user's data, not the API
    frame.to_csv(users, index=False)
    run = cards_cli(workspace, emulator.url, users)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "batchflows: error: 1,400 of 2,000 rows failed (70%, more than the 50% a run accepts); most common problem "
        f"(1,400 rows): users.csv row 1, column monthly_spend: 'lots' is not a number; output written to "
        f"{workspace / 'out.csv'}")
    assert emulator.stats("cards")["ok_keys"] == emulator.stats("cards")["total"] == 600  # every good row was sent
    out = read_table(workspace / "out.csv")
    assert len(out) == 2000 and (out.status[1400:] == "ok").all()
    assert out.error[0] == "users.csv row 1, column monthly_spend: 'lots' is not a number"


def test_the_attempts_in_a_message_are_the_requests_the_server_received_over_both_passes(workspace, emulator):
    users = write_users(workspace / "users.csv", 10)
    emulator.configure("cards", cut_rate=1.0)  # every answer stops in the middle: the connection closes
    state = flow_state(workspace, emulator.url, users, max_attempts=3)
    out = read_table(workspace / "out.csv")
    assert out.error.str.startswith("gave up after 6 attempts over 2 passes: connection error: "
                                    "ClientPayloadError: Response payload is not completed").all()
    assert emulator.stats("cards")["total"] == 10 * 6
    assert state.is_failed() and "10 of 10 rows failed (100%, more than the 50% a run accepts)" in state.message


def test_an_api_refusing_connections_from_the_start_stops_the_run_at_once(workspace, emulator):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    users = write_users(workspace / "users.csv", 300)
    state = flow_state(workspace, url, users)
    verdict = (f"the cards API at {url} cannot be reached (connection refused) on the first calls of the run: "
               f"check the URL and that the server is up")
    assert state.is_failed() and state.message.endswith(verdict)
    out = read_table(workspace / "out.csv")
    assert len(out) == 300 and (out.error == f"not processed: {verdict}").all()


def test_an_api_that_moved_fails_rows_with_the_status_and_the_location(workspace, emulator):
    users = write_users(workspace / "users.csv", 30)
    emulator.configure("cards", moved_to="https://cards.example.com/v2/recommendations?key=abc")
    state = flow_state(workspace, emulator.url, users)
    error = "HTTP 301 to https://cards.example.com/v2/recommendations: the API moved; update the base URL"
    assert state.is_failed() and state.message.endswith(f"stopped after the first 30 rows sent all failed: {error}")
    assert emulator.stats("cards")["total"] == 30  # a POST is not followed
    assert (read_table(workspace / "out.csv").error == error).all()
