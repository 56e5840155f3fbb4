"""Book requests end to end: phones, Geocoding and messaging emulators, dedupe against a history."""
import sys

import pandas as pd

from conftest import BOOK_ENV as ENV
from conftest import BOOK_KEYS as KEYS
from conftest import kill_when, read_table, run_cli, server_texts
from flows.book_requests import book_requests
from flows.cli import main
from tasks.apis.geocoding import address_key


def run(workspace, emulator, geocoding_per_minute=3000, **params):
    return book_requests(str(workspace / "requests.csv"), str(workspace / "history.csv"), str(workspace / "out"),
                         geocoding={"base_url": emulator.url, "requests_per_minute": geocoding_per_minute},
                         messaging={"base_url": emulator.url + "/messaging"}, **params)


def outputs(workspace) -> dict[str, pd.DataFrame]:
    return {name: read_table(workspace / "out" / f"{name}.csv") for name in ("accepted", "rejected", "duplicates", "messages")}


def test_every_request_once_with_its_reasons_and_one_message_per_accepted(books, emulator):
    workspace, batch, history = books
    figures = run(workspace, emulator, send=True)
    out = outputs(workspace)
    accepted, rejected = out["accepted"], out["rejected"]
    assert len(accepted) + len(rejected) == 201 and figures["requests"] == 201
    assert not set(accepted.request_id) & set(rejected.request_id)
    reason = dict(zip(rejected.name.str[:20], rejected.reasons))
    assert "invalid phone: phone '555-CALL-NOW': has letters" in rejected.reasons[rejected.phone == "555-CALL-NOW"].iloc[0]
    assert "invalid address: address too long (5,199 characters, at most 500)" in " ".join(rejected.reasons)
    assert "invalid address: empty address" in " ".join(rejected.reasons)
    assert "address not found" in " ".join(rejected.reasons)
    assert any("row 201" in text and "column name: not UTF-8 (byte 0xe9" in text for text in reason.values())
    # duplicates: each flagged row's match is the same person (labels from the generator)
    entity_of_request = dict(zip(history.request_id, history.entity))
    flagged = out["duplicates"][out["duplicates"].best == "True"]
    of_row = dict(zip(batch.index + 1, batch.entity))
    for row, kind, matched in zip(flagged.row.astype(int), flagged.kind, flagged.matched_id):
        assert of_row[row] == (entity_of_request[matched] if kind == "history" else of_row[int(matched)])
    assert figures["reasons"]["duplicate of a past request"] >= 30 and figures["reasons"]["duplicate within the batch"] >= 5
    # messages: one per accepted request, delivered once
    messages = out["messages"]
    assert sorted(messages.request_id) == sorted(accepted.request_id) and set(messages.status) == {"sent"}
    seen = emulator.stats("messaging")
    assert seen["delivered"] == len(accepted) and seen["duplicates"] == 0
    geocoded = emulator.stats("geocoding")  # each distinct address once, none for rows rejected before
    assert geocoded["total"] == geocoded["distinct_keys"] == figures["geocoding"]["looked_up"]
    assert geocoded["total"] >= len({address_key(a)[0] for a in accepted.address}) + 1  # + the one not found
    # a rerun looks up and sends nothing again
    emulator.reset()
    for api, key in KEYS.items():
        emulator.configure(api, api_key=key)
    again = run(workspace, emulator, send=True)
    assert emulator.stats("geocoding")["total"] == 0 and emulator.stats("messaging")["total"] == 0
    assert again["accepted"] == figures["accepted"] and set(outputs(workspace)["messages"].status) == {"sent"}


def kill_mid_send_and_rerun(workspace, emulator, *options: str) -> dict:
    """A sending CLI run killed after 40 deliveries, then run again to the end; the messaging API's figures."""
    command = [sys.executable, "-m", "flows.cli", "book-requests", str(workspace / "requests.csv"), "--history",
               str(workspace / "history.csv"), "-o", str(workspace / "out"), "--send", "--geocoding-base-url",
               emulator.url, "--messaging-base-url", emulator.url + "/messaging", "--concurrency", "20", *options]
    kill_when(command, lambda: emulator.stats("messaging")["delivered"] >= 40, ENV)
    assert 40 <= emulator.stats("messaging")["delivered"] < 100
    rerun = run_cli(*command[3:], env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert set(read_table(workspace / "out" / "messages.csv").status) == {"sent"}
    return emulator.stats("messaging")


def test_killed_mid_send_then_rerun_delivers_each_message_once(books, emulator):
    workspace, _, _ = books
    emulator.configure("messaging", latency=0.3)
    seen = kill_mid_send_and_rerun(workspace, emulator)
    assert seen["delivered"] == len(read_table(workspace / "out" / "accepted.csv")) and seen["duplicates"] == 0


def test_lost_answers_are_looked_up_not_sent_again(books, emulator):
    workspace, _, _ = books
    emulator.configure("messaging", lose_answer_rate=0.3, error_statuses=[500, 503], seed=1)
    figures = run(workspace, emulator, send=True)
    seen = emulator.stats("messaging")
    assert seen["lost_answers"] > 10 and seen["lookups"] >= seen["lost_answers"]
    assert seen["delivered"] == figures["accepted"] and seen["duplicates"] == 0
    assert figures["messages"] == {"sent": figures["accepted"]}


def test_dry_run_renders_messages_and_sends_nothing(books, emulator):
    workspace, _, _ = books
    figures = run(workspace, emulator)
    messages = outputs(workspace)["messages"]
    assert set(messages.status) == {"dry-run"} and len(messages) == figures["accepted"] > 100
    assert messages.body.str.contains("we received your request for").all()
    assert emulator.stats("messaging")["total"] == 0


def test_email_channel_sends_to_the_email_column(books, emulator):
    workspace, batch, _ = books
    requests = pd.read_csv(workspace / "requests.csv", dtype=str, keep_default_na=False, encoding="latin-1")
    requests["email"] = [f"reader{n}@example.org" for n in range(len(requests))]
    requests.loc[10, "email"] = "not-an-email"
    requests.to_csv(workspace / "requests.csv", index=False)
    figures = run(workspace, emulator, send=True, channel="email")
    out = outputs(workspace)
    assert "invalid email: 'not-an-email'" in out["rejected"].set_index("email").reasons.get("not-an-email", "")
    assert out["messages"].to.str.endswith("@example.org").all() and set(out["messages"].status) == {"sent"}
    assert emulator.stats("messaging")["delivered"] == figures["accepted"]


def test_geocoding_over_query_limit_is_retried(books, emulator):
    workspace, _, _ = books
    emulator.configure("geocoding", rate_limit=20)
    figures = run(workspace, emulator, geocoding_per_minute=3600)
    seen = emulator.stats("geocoding")
    assert seen["OVER_QUERY_LIMIT"] > 0 and figures["geocoding"]["lookups_failed"] == 0
    assert figures["reasons"].get("address check failed", 0) == 0


def test_clear_errors_before_any_request(books, emulator, capsys):
    workspace, _, _ = books
    base = ["book-requests", str(workspace / "requests.csv"), "-o", str(workspace / "out"),
            "--geocoding-base-url", emulator.url, "--messaging-base-url", emulator.url + "/messaging", "--send"]
    odd = workspace / "odd-history.csv"
    pd.DataFrame({"id": ["1"], "customer": ["A"], "street": ["B"]}).to_csv(odd, index=False)
    assert main([*base, "--history", str(odd)]) == 1
    assert "history file lacks column(s) request_id, name, address; expected request_id, name, address" \
        in capsys.readouterr().err
    template = workspace / "template.txt"
    template.write_text("Hello {name}, your {title} is on its way")
    assert main([*base, "--history", str(workspace / "history.csv"), "--template-file", str(template)]) == 1
    assert "placeholder(s) {title} not found" in capsys.readouterr().err
    assert emulator.stats("geocoding")["total"] == 0
    emulator.configure("geocoding", api_key="another-key")
    assert main([*base, "--history", str(workspace / "history.csv")]) == 1
    assert "HTTP 403: The provided API key is invalid." in capsys.readouterr().err
    assert emulator.stats("geocoding")["total"] < 50 and emulator.stats("messaging")["total"] == 0


def test_keys_never_appear_in_logs_artifacts_outputs_or_work_files(books, emulator):
    workspace, _, _ = books
    emulator.configure("geocoding", error_rate=0.1)
    emulator.configure("messaging", lose_answer_rate=0.1, error_rate=0.1)
    result = run_cli("book-requests", str(workspace / "requests.csv"), "--history", str(workspace / "history.csv"),
                     "-o", str(workspace / "out"), "--send", "--geocoding-base-url", emulator.url,
                     "--messaging-base-url", emulator.url + "/messaging",
                     env={**ENV, "PREFECT_LOGGING_LEVEL": "DEBUG", "BATCHFLOWS_WORK_DIR": str(workspace / "work")})
    assert result.returncode == 0, result.stderr
    assert "Finished in state" in result.stdout + result.stderr
    texts = [result.stdout, result.stderr, *server_texts()]
    texts += [p.read_bytes().decode(errors="replace") for p in workspace.rglob("*") if p.is_file()]
    assert not [text for text in texts for key in KEYS.values() if key in text]
