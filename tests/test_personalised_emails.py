"""Personalised emails end to end: Serper + LLM emulators, real anthropic SDK and httpx clients."""
import json
import os
import re
import sqlite3
import subprocess
import sys

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import kill_when, latest_run_artifacts, read_table, run_cli, server_texts
from flows.personalised_emails import personalised_emails
from tasks.apis.messaging import parse_email
from tasks.apis.research import company_key
from tasks.samples.tables import leads_frame

KEYS = {"anthropic": "sk-ant-test-Vq39Xp", "chat": "gsk-test-Lm47Rd", "serper": "serper-test-Hx81Kc"}
ENV = {"ANTHROPIC_API_KEY": KEYS["anthropic"], "OPENAI_API_KEY": KEYS["chat"], "SERPER_API_KEY": KEYS["serper"]}


@pytest.fixture
def llm(emulator, monkeypatch):
    """The emulator with keys on the search and both LLM APIs, and the keys in the environment."""
    for api, key in KEYS.items():
        emulator.configure(api, api_key=key)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return emulator


def run(workspace, emulator, leads, provider="anthropic", output="out.csv", **params):
    path = workspace / "leads.csv"
    leads.to_csv(path, index=False)
    base = emulator.url if provider == "anthropic" else emulator.url + "/openai/v1"
    model = "claude-sonnet-5" if provider == "anthropic" else "llama-3.3-70b-versatile"
    llm = {"base_url": base, "requests_per_minute": 6000, **params.pop("llm", {})}
    options = {"chunk_size": 50, **params}
    figures = personalised_emails(str(path), str(workspace / output), provider=provider, model=model, llm=llm,
                                  search={"base_url": emulator.url, "requests_per_minute": 12_000}, **options)
    return figures, read_table(workspace / output)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_every_lead_in_order_with_research_tokens_and_cost(workspace, llm, provider):
    llm.configure("anthropic" if provider == "anthropic" else "chat", latency=0.05, throttle_rate=0.05,
                  error_rate=0.05, retry_after=1, seed=5)
    leads = leads_frame(240, 40)
    figures, out = run(workspace, llm, leads, provider)
    assert out.email.tolist() == leads.email.tolist() and out.title.tolist() == leads.title.tolist()
    assert (out.status == "ok").all(), out.error.unique()
    for row in (0, 117, 239):  # the line was written for this lead's company, from its research
        assert leads.company[row] in out.research_summary[row]
        assert f"at {leads.company[row].rsplit(' ', 1)[0]} —" in out.email_line[row]
    assert out.input_tokens.astype(int).gt(50).all() and out.output_tokens.astype(int).gt(10).all()
    assert abs(out.cost_usd.astype(float).sum() - figures["cost_usd"]) < 1e-6 and figures["cost_usd"] > 0
    assert figures["retries"] > 0 and figures["http_429"] > 0  # faults happened and were retried away
    seen = llm.stats("anthropic" if provider == "anthropic" else "chat")
    assert seen["statuses"]["200"] == 240
    summary = latest_run_artifacts()["personalised-emails-summary"]
    assert "research cache hits" in summary and "cost per row" in summary


def test_one_search_per_company_and_none_on_rerun(workspace, llm):
    leads = leads_frame(300, 60)
    leads.loc[5, "domain"] = "https://www." + leads.domain[5].upper() + "/about"  # the same company, written otherwise
    figures, out = run(workspace, llm, leads)
    assert llm.stats("serper")["total"] == 60 == figures["research"]["looked_up"]
    assert (out.status == "ok").all()
    llm.reset()
    for api, key in KEYS.items():
        llm.configure(api, api_key=key)
    more = pd.concat([leads, leads_frame(20, 60, seed=99).assign(email=lambda f: "new." + f.email)])
    figures, out = run(workspace, llm, more)  # same companies, 20 new leads
    assert llm.stats("serper")["total"] == 0 and figures["research"]["cache_hits"] == 60
    assert llm.stats("anthropic")["total"] == 20  # finished leads are not written again
    assert len(out) == 320 and (out.status == "ok").all()


def test_several_leads_per_call_each_get_their_own_line(workspace, llm):
    llm.configure("anthropic", latency=0.2)
    leads = leads_frame(200, 40)
    figures, out = run(workspace, llm, leads, leads_per_request=10, concurrency=100, chunk_size=100)
    assert (out.status == "ok").all(), out.error.unique()
    for row in range(200):
        assert f"at {leads.company[row].rsplit(' ', 1)[0]} —" in out.email_line[row]
    calls = llm.stats("anthropic")["total"]
    assert 20 <= calls <= 30  # ~10 leads a call (a group may leave early after 50 ms)
    assert figures["requests"] == calls and figures["cost_usd"] > 0
    assert out.input_tokens.astype(int).between(20, 400).all()  # each lead carries its share of the call


def test_request_and_token_limits_hold(workspace, llm):
    llm.configure("anthropic", latency=0.2, rate_limit=40, token_limit=10_000, rate_window=4)
    figures, out = run(workspace, llm, leads_frame(120, 30), llm={
        "requests_per_minute": 600, "tokens_per_minute": 150_000, "limit_window": 4})
    assert (out.status == "ok").all()
    seen = llm.stats("anthropic", window=4)
    assert seen["statuses"] == {"200": 120} and figures["http_429"] == 0
    assert seen["max_window"] <= 40 and seen["max_tokens_window"] <= 10_000
    assert seen["max_tokens_window"] > 8_000  # the token limit was the one that bound


def test_empty_and_cut_completions_are_partial_rows(workspace, llm):
    llm.configure("anthropic", empty_rate=0.25, seed=2)
    figures, out = run(workspace, llm, leads_frame(100, 20))
    partial = out[out.status == "partial"]
    assert 10 < len(partial) < 45 and set(partial.error) == {"empty completion"}
    assert (partial.email_line == "").all() and (out[out.status == "ok"].email_line != "").all()
    assert figures["partial"] == len(partial) and figures["failed"] == 0
    llm.configure("anthropic", empty_rate=0)
    figures, out = run(workspace, llm, leads_frame(30, 5), max_tokens=8)
    assert set(out.status) == {"partial"}, out.error.unique() and set(out.error) == {"cut short at max_tokens"}


@pytest.mark.parametrize("leads_per_request", [1, 5])
def test_bad_leads_and_too_long_prompts_fail_alone(workspace, llm, leads_per_request):
    leads = leads_frame(60, 10)
    leads["notes"] = ""
    leads.loc[3, "email"] = "not-an-email"
    leads.loc[7, "email"] = leads.email[6]
    leads.loc[9, ["company", "domain", "email"]] = ["", "", "someone@gmail.com"]
    leads.loc[11, "notes"] = "x" * 600_000  # ~150 K tokens: over the model's context window
    prompt = workspace / "prompt.txt"
    prompt.write_text("Write to {first_name} at {company} ({domain}). Notes: {notes}. {research_summary}")
    figures, out = run(workspace, llm, leads, provider="openai", prompt_file=str(prompt),
                       leads_per_request=leads_per_request)
    errors = out.error
    assert "column email: 'not-an-email' is not an email address" in errors[3]
    assert "duplicate email" in errors[7] and "first seen at row 7" in errors[7]
    assert "nothing to research" in errors[9]
    assert "HTTP 400" in errors[11] and "maximum context length" in errors[11]
    assert out.status[[3, 7, 9, 11]].eq("failed").all() and (out.drop([3, 7, 9, 11]).status == "ok").all()


def test_unknown_placeholder_stops_before_any_request(workspace, llm, capsys):
    leads = workspace / "leads.csv"
    leads_frame(20, 4).to_csv(leads, index=False)
    prompt = workspace / "prompt.txt"
    prompt.write_text("Hi {first_name}, about {job_title} at {company}")
    from flows.cli import main

    code = main(["personalised-emails", str(leads), "-o", str(workspace / "out.csv"), "--prompt-file", str(prompt),
                 "--llm-base-url", llm.url, "--search-base-url", llm.url])
    error = capsys.readouterr().err
    assert code == 1 and "prompt.txt: placeholder(s) {job_title} not found in the columns of leads.csv" in error
    assert llm.stats("serper")["total"] == 0 and llm.stats("anthropic")["total"] == 0


def test_killed_run_repeats_at_most_one_chunk_of_llm_calls(workspace, llm):
    leads = workspace / "leads.csv"
    leads_frame(400, 50).to_csv(leads, index=False)
    llm.configure("anthropic", latency=0.3)
    command = [sys.executable, "-m", "flows.cli", "personalised-emails", str(leads), "-o", str(workspace / "out.csv"),
               "--llm-base-url", llm.url, "--search-base-url", llm.url, "--model", "claude-sonnet-5",
               "--llm-requests-per-minute", "6000", "--search-requests-per-minute", "6000", "--chunk-size", "50",
               "--concurrency", "20"]
    kill_when(command, lambda: llm.stats("anthropic")["total"] >= 180, ENV)
    before = llm.stats("anthropic")["total"]
    assert 180 <= before < 400
    rerun = subprocess.run(command, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    out = read_table(workspace / "out.csv")
    assert len(out) == 400 and (out.status == "ok").all()
    assert 400 <= llm.stats("anthropic")["total"] <= 400 + 50  # repeated calls: at most one chunk
    assert llm.stats("serper")["total"] == 50  # research was not repeated


def test_keys_never_appear_in_logs_artifacts_outputs_or_work_files(workspace, llm):
    llm.configure("anthropic", throttle_rate=0.1, error_rate=0.1, retry_after=1)
    llm.configure("serper", error_rate=0.1)
    leads = workspace / "leads.csv"
    leads_frame(80, 20).to_csv(leads, index=False)
    result = run_cli("personalised-emails", str(leads), "-o", str(workspace / "out.csv"), "--llm-base-url", llm.url,
                     "--search-base-url", llm.url, "--model", "claude-sonnet-5", "--llm-requests-per-minute", "6000",
                     env={**ENV, "PREFECT_LOGGING_LEVEL": "DEBUG", "BATCHFLOWS_WORK_DIR": str(workspace / "work")})
    assert result.returncode == 0, result.stderr
    assert "Finished in state" in result.stdout + result.stderr
    texts = [result.stdout, result.stderr]
    texts += [p.read_bytes().decode(errors="replace") for p in workspace.rglob("*") if p.is_file()]
    texts += server_texts()
    assert not [text for text in texts for key in KEYS.values() if key in text]


def test_a_limited_run_projects_the_cost_of_the_whole_file(workspace, llm):
    leads = leads_frame(200, 100)
    figures, out = run(workspace, llm, leads, limit=40)
    assert len(out) == 40 and (out.status == "ok").all()
    assert llm.stats("serper")["total"] == leads.company[:40].nunique()  # only the companies of those leads
    assert figures["input_rows"] == 200
    assert figures["projected_cost_usd"] == pytest.approx(figures["cost_usd"] * 5, rel=1e-3)
    assert f"projected cost of all 200 rows | ${figures['projected_cost_usd']:,.2f}" in \
        latest_run_artifacts()["personalised-emails-summary"]


# Mail providers and ISPs, many of them regional: an address there says nothing about the company.
MAIL_PROVIDERS = [
    "yahoo.co.uk", "hotmail.co.uk", "msn.com", "ymail.com", "gmx.net", "mac.com", "comcast.net", "verizon.net",
    "att.net", "sbcglobal.net", "bellsouth.net", "cox.net", "charter.net", "earthlink.net", "btinternet.com",
    "sky.com", "virginmedia.com", "orange.fr", "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr", "t-online.de",
    "freenet.de", "libero.it", "virgilio.it", "tin.it", "yandex.ru", "qq.com", "163.com", "naver.com",
    "rediffmail.com", "shaw.ca", "rogers.com", "bigpond.com", "xtra.co.nz", "seznam.cz", "wp.pl", "telenet.be",
    "ziggo.nl", "aol.fr", "yahoo.com.vn",
]


def test_leads_at_mail_providers_get_their_own_companys_research(workspace, llm):
    leads = leads_frame(130, 60, seed=3)
    local = leads.email.str.split("@").str[0]
    leads["email"] = [f"{name}@{MAIL_PROVIDERS[n % len(MAIL_PROVIDERS)]}" for n, name in enumerate(local)]
    leads.loc[2:, "domain"] = ""  # rows 0-1: a website; 2-3: a company address; the rest: a mail provider's
    leads.loc[2:3, "email"] = [f"{name}@{leads.company[n].lower().replace(' ', '')}.com" for n, name in
                               zip((2, 3), local[2:4])]
    at_provider = leads.iloc[4:].assign(provider=leads.email.str.split("@").str[1])
    assert at_provider.groupby("provider").company.nunique().min() >= 2  # every provider: several companies
    figures, out = run(workspace, llm, leads)
    assert (out.status == "ok").all(), out.error.unique()
    for row in range(len(leads)):  # its own company's research, and a line about that company
        company = leads.company[row]
        assert re.search(rf"\b{company}\b", out.research_summary[row]), (row, company, out.research_summary[row])
        assert f"at {company.rsplit(' ', 1)[0]} —" in out.email_line[row]
    assert out.research_key_kind.tolist() == ["website"] * 2 + ["email domain"] * 2 + ["name"] * (len(leads) - 4)
    companies = {*leads.domain[:2], *leads.email[2:4].str.split("@").str[1], *at_provider.company}
    assert llm.stats("serper")["total"] == len(companies) == figures["research"]["looked_up"]
    with sqlite3.connect(workspace / "work" / "cache" / "company-research.sqlite") as db:
        research = dict(db.execute("SELECT key, answer FROM answers"))
    assert len(research) == len(companies)
    for provider in MAIL_PROVIDERS:  # searched by name alone, never as "<company> <provider>"
        assert not [key for key, answer in research.items() if provider in key or provider in answer]


def test_another_spelling_of_a_mailbox_is_a_duplicate_and_costs_no_call(workspace, llm):
    leads = leads_frame(40, 10)
    leads.loc[[3, 8], "email"] = ["dmitri.tanaka@cinderstudios.com", "dmitri.tanaka@CINDERSTUDIOS.COM"]
    leads.loc[[12, 20], "email"] = ["Ana.Lopez@gmail.com", "analopez+leads@googlemail.com"]  # Google's one mailbox
    leads.loc[25, "email"] = "dmitri.tanaka+sales@cinderstudios.com"  # a company's +tag: another mailbox
    figures, out = run(workspace, llm, leads)
    assert "duplicate email 'dmitri.tanaka@CINDERSTUDIOS.COM' (first seen at row 4" in out.error[8]
    assert "duplicate email 'analopez+leads@googlemail.com' (first seen at row 13" in out.error[20]
    assert out.status[[8, 20]].eq("failed").all() and (out.drop([8, 20]).status == "ok").all()
    assert llm.stats("anthropic")["total"] == 38 and figures["failed"] == 2  # one paid call per person
    assert out.input_tokens[[8, 20]].eq("").all()


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl", "xlsx"])
def test_token_columns_are_integers_in_every_output_format(workspace, llm, suffix):
    leads = leads_frame(30, 6)
    leads.loc[4, "email"] = "not-an-email"  # a failed row in the chunk: its tokens are empty, not NaN
    run(workspace, llm, leads, output=f"out.{suffix}")
    path, columns = workspace / f"out.{suffix}", ("input_tokens", "output_tokens")
    if suffix == "csv":
        cells = [pd.read_csv(path, dtype=str, keep_default_na=False)[c].tolist() for c in columns]
        values = [[int(v) if re.fullmatch(r"\d+", v) else v for v in column] for column in cells]
    elif suffix == "parquet":
        assert all(pq.read_schema(path).field(c).type == pa.int64() for c in columns)
        values = [pq.read_table(path).column(c).to_pylist() for c in columns]
    elif suffix == "jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        values = [[record[c] for record in records] for c in columns]
    else:
        sheet = openpyxl.load_workbook(path, read_only=True).active
        header, *rows = sheet.iter_rows(values_only=True)
        values = [[row[header.index(c)] for row in rows] for c in columns]
    empty = "" if suffix == "csv" else None
    for column in values:
        assert column[4] == empty and len(column) == 30
        assert all(type(v) is int and v > 0 for v in column[:4] + column[5:]), column


def test_company_key_and_mailbox_rules():
    def key(**row):
        found = company_key(row)
        return found and (found.key, str(found.kind), found.query)

    assert key(company="Acme", website="https://www.ACME.com/about", email="ann@gmail.com") == \
        ("acme.com", "website", "Acme acme.com")
    assert key(company="Acme", domain="gmail.com", email="ann@Acme.co.uk") == \
        ("acme.co.uk", "email domain", "Acme acme.co.uk")  # a provider in the domain column identifies nothing
    for provider in [*MAIL_PROVIDERS, "gmail.com", "mail.yahoo.co.uk", "hotmail.com.tr", "outlook.sa"]:
        assert key(company="Cobalt  Analytics", email=f"c@{provider}") == \
            ("company:cobalt analytics", "name", "Cobalt Analytics")
    assert key(company="", domain="", email="someone@gmx.net") is None
    assert company_key({"company": "M", "website": "münchen.de"}).key == \
        company_key({"company": "M", "email": "m@MÜNCHEN.de"}).key == "xn--mnchen-3ya.de"

    def mailbox(text):
        return parse_email(text).mailbox

    assert mailbox(" Dmitri.Tanaka@CINDERSTUDIOS.COM ") == mailbox("dmitri.tanaka@cinderstudios.com")
    assert mailbox("a.n.n+x@GoogleMail.com") == mailbox("ann@gmail.com") == "ann@gmail.com"
    assert mailbox("ann+x@acme.com") != mailbox("ann@acme.com") and mailbox("a.nn@acme.com") != mailbox("ann@acme.com")
