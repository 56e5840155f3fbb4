"""Deployments for real, on the session's `prefect server start`: prefect.yaml deployed by
deployments/deploy.sh, a process worker (deployments/worker.sh), runs through deployments/run.sh
(`prefect deployment run --watch`) against emulators started by the sample runs, the progress
artifact moving during a run, and the Prefect UI in headless Chromium (screenshots in test-artifacts/)."""
import os
import re
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import latest_run_artifacts, read_table
from test_card_flow import expected_top_card

from flows.personalised_emails import personalised_emails
from tasks.engine.server import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "test-artifacts"


def deployment_script(name: str, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(ROOT / "deployments" / name), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def worker(prefect_server, tmp_path_factory):
    """prefect.yaml deployed and a worker of the `local` pool running; yields (folder, env)."""
    home = tmp_path_factory.mktemp("deployments")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "BATCHFLOWS_WORK_DIR": str(home / "work"), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    deployed = deployment_script("deploy.sh", env=env)
    output = deployed.communicate(timeout=180)[0]
    assert deployed.returncode == 0, output
    assert "Deployment 'card-recommendations/sample' successfully created" in output
    with open(home / "worker.log", "w") as log:
        process = subprocess.Popen(["bash", str(ROOT / "deployments" / "worker.sh")], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    yield home, env
    stop_process_group(process, 15)


def flow_run_id(text: str) -> str | None:
    found = re.search(r"UUID: ([0-9a-f-]{36})", text)
    return found and found.group(1)


def run_deployment(env: dict, name: str, *params: str, while_running=None) -> tuple[int, str, str | None]:
    """deployments/run.sh on the session's server; calls `while_running(run_id)` until it exits.
    Returns the exit code, its output and the flow run's id."""
    process = deployment_script("run.sh", env["PREFECT_API_URL"], name,
                                *(arg for param in params for arg in ("--param", param)), env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True)
    reader.start()
    run_id, deadline = None, time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        run_id = run_id or flow_run_id("".join(lines))
        if run_id and while_running:
            while_running(run_id)
        time.sleep(0.25)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reader.join(10)
    return process.returncode, "".join(lines), flow_run_id("".join(lines))


@pytest.fixture(scope="module")
def card_run(worker):
    """card-recommendations/sample run to its end, with the progress artifact's values seen meanwhile."""
    home, env = worker
    users, out = home / "users.csv", home / "recommendations.csv"
    progress: list[float] = []
    code, output, run_id = run_deployment(
        env, "card-recommendations/sample", f"input_path={users}", f"output_path={out}", "limit=400",
        while_running=lambda run_id: progress.append(latest_run_artifacts(run_id).get("card-recommendations-progress")))
    return {"code": code, "output": output, "run_id": run_id, "progress": progress, "users": users, "out": out}


def test_card_recommendations_deployment_runs_to_the_right_output_with_moving_progress(card_run):
    assert card_run["code"] == 0, card_run["output"]
    assert "Flow run finished successfully in 'Completed'" in card_run["output"]
    out, users = read_table(card_run["out"]), pd.read_csv(card_run["users"], dtype=str).head(400)
    assert out.user_id.tolist() == users.user_id.tolist() and (out.status == "ok").all()
    for index in (0, 199, 399):  # the sample run generated the users and answered from the emulator
        assert out.recommended_card[index] == expected_top_card(users.iloc[index].to_dict())
    moving = {value for value in card_run["progress"] if value is not None and 0 < value < 100}
    assert len(moving) >= 2, card_run["progress"]  # the artifact moved while the run went on
    artifacts = latest_run_artifacts(card_run["run_id"])
    assert artifacts["card-recommendations-progress"] == 100.0
    summary = artifacts["card-recommendations-summary"]
    for line in ("| ok | 400 |", "| failed | 0 |", f"`{card_run['out']}`", "| 429 answers | 0 |"):
        assert line in summary
    assert re.search(r"\| retries \| \d+ \|", summary) and re.search(r"\| throughput \| [\d,.]+ rows/s \|", summary)


def test_the_prefect_ui_shows_the_progress_and_the_summary(card_run, prefect_server):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{prefect_server.removesuffix('/api')}/runs/flow-run/{card_run['run_id']}")
            page.get_by_text("Artifacts", exact=True).click()
            expect(page.get_by_text("card-recommendations: 400 of 400 rows finished")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("card-recommendations-summary")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "flow-run-artifacts.png", full_page=True)
            page.locator("a", has_text="card-recommendations-summary").last.click()
            table = page.locator("table").first
            expect(table).to_contain_text("requests sent", timeout=30_000)
            for cell in ("ok", "400", "throughput", "retries", str(card_run["out"])):
                expect(table).to_contain_text(cell)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=SCREENSHOTS / "run-summary.png", full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {SCREENSHOTS / 'flow-run-artifacts.png'}, {SCREENSHOTS / 'run-summary.png'}")


def deployment_id(name: str) -> str:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return (await client.read_deployment_by_name(name)).id

    return str(asyncio.run(read()))


def test_the_prefect_ui_offers_a_typed_form_for_a_deployment_run(worker, prefect_server):
    from playwright.sync_api import expect, sync_playwright

    form = f"{prefect_server.removesuffix('/api')}/deployments/deployment/" \
           f"{deployment_id('personalised-emails/production')}/run"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(form)
            expect(page.get_by_text("requests in flight for the whole run")).to_be_visible(timeout=30_000)
            for description in ("an opening line or an email body", "process only the first N rows (a test-size run)",
                                "environment variable holding the API key (empty: ANTHROPIC_API_KEY or "
                                "OPENAI_API_KEY, by provider)"):
                expect(page.get_by_text(description, exact=True)).to_be_visible()
            expect(page.locator("input[type=number]").first).to_be_visible()  # numbers get number inputs
            page.wait_for_load_state("networkidle")
            page.screenshot(path=SCREENSHOTS / "deployment-run-form.png", full_page=True)
        finally:
            browser.close()


def test_book_requests_deployment_sends_one_message_per_accepted_request(worker):
    home, env = worker
    out = home / "books"
    code, output, _ = run_deployment(env, "book-requests/sample", f"input_path={home / 'requests.csv'}",
                                     f"history_path={home / 'history.csv'}", f"output_dir={out}")
    assert code == 0, output
    accepted, rejected, messages = (read_table(out / f"{name}.csv") for name in ("accepted", "rejected", "messages"))
    requests = pd.read_csv(home / "requests.csv", dtype=str)
    assert len(accepted) + len(rejected) == len(requests) == 200 and len(accepted) > 100
    assert (rejected.reasons != "").all()
    assert messages.request_id.tolist() == accepted.request_id.tolist()
    assert (messages.status == "sent").all() and messages.provider_id.str.startswith("msg_").all()


def test_a_failed_run_makes_the_ci_script_exit_non_zero_with_the_reason(worker):
    home, env = worker
    code, output, _ = run_deployment(env, "card-recommendations/sample", "config_path=/nonexistent/config.json")
    assert code == 1
    assert "Flow run finished in state 'Failed'" in output and "No such file or directory" in output


def test_a_sample_run_refuses_a_real_api_url(workspace):
    with pytest.raises(ValueError, match="do not also give llm.base_url"):
        personalised_emails(str(workspace / "leads.csv"), str(workspace / "out.csv"), emulate=True,
                            llm={"base_url": "https://api.groq.com/openai/v1"})


def test_serve_builds_every_deployment_of_prefect_yaml():
    deployments = runpy.run_path(str(ROOT / "deployments" / "serve.py"))["runner_deployments"]()  # checks parameters
    names = {f"{d.flow_name}/{d.name}" for d in deployments}
    flows = ("card-recommendations", "personalised-emails", "book-requests", "prescription-extraction", "file-metadata")
    assert names == {f"{flow}/{kind}" for flow in flows for kind in ("sample", "production")}
    schedules = {f"{d.flow_name}/{d.name}": [(s.schedule.cron, s.active) for s in d.schedules] for d in deployments}
    assert schedules["card-recommendations/production"] == [("0 5 * * 1", False)]
    assert schedules["book-requests/production"] == [("0 6 * * *", False)]
