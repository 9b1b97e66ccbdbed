"""The MLflow UI as a person sees it: `zoo ui` on a trained run's store, its pages rendered by a real headless
Chromium (the React app runs; the text is read from the rendered DOM). Skipped where Chromium is not installed
(`apt install chromium`)."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendered_text(url: str, folder) -> str:
    """The visible text of ``url`` after its scripts ran (up to 30 s of page time)."""
    page = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={folder}",
                           "--virtual-time-budget=30000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


@pytest.fixture(scope="module")
def ui(trained_run, tmp_path_factory):
    """`zoo ui` serving the trained run's store; yields (base URL, the run page link the run printed, zoo ui's
    output)."""
    assert trained_run.exit_code == 0, trained_run.output[-2000:]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "ui", "--port", str(port)], cwd=trained_run.root,
                              env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, log.read_text()[-3000:]
                time.sleep(0.25)
        (printed,) = re.findall(r"open it: +zoo ui +then +(\S+)", trained_run.output)
        yield base, printed.replace("http://127.0.0.1:5000", base), log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_printed_run_link_opens_a_model_training_run_page(ui, tmp_path):
    _, run_link, _ = ui
    text = rendered_text(run_link, tmp_path)
    assert "Model registry" in text and "Evaluation runs" not in text  # the model-training view, not GenAI's
    assert re.search(r"eca_resnet18-train-\d{8}-\d{6}-\w{4}", text)  # the readable run name
    assert re.search(r"Status Finished", text)
    assert re.search(r"Logged models \(1\).*eca_resnet18 Ready", text)  # the logged model is the run's output
    assert re.search(r"Datasets ImageClassificationData \([0-9a-f]{8}\) training", text)  # the data set as input
    assert re.search(r"val/acc 0\.\d+", text) and "test/acc" in text


def test_zoo_ui_links_the_experiment_as_model_training_with_its_runs(ui, tmp_path):
    base, _, output = ui
    (experiment_link,) = re.findall(rf"zoo: ({re.escape(base)}/#/experiments/\d+/runs\?\S+)", output)
    text = rendered_text(experiment_link, tmp_path)
    assert "Model registry" in text and "Token Usage" not in text
    assert "1 matching run" in text
    assert re.search(r"eca_resnet18-train-\d{8}-\d{6}-\w{4} .*ImageClassificationData \([0-9a-f]{8}\)", text)
