"""The MLflow UI as a person sees it: `zoo ui` on a trained run's store, its pages rendered by a real headless
Chromium (the React app runs; the text is read from the rendered DOM). Skipped where Chromium is not installed
(`apt install chromium`)."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import subprocess
import sys

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")


def chromium(url: str, folder, *flags: str, budget_s: int = 60) -> str:
    """Run headless Chromium on ``url`` for ``budget_s`` of page time (it fast-forwards timers: a few real
    seconds)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={folder}",
                           "--window-size=1400,1000", f"--virtual-time-budget={budget_s * 1000}", *flags, url],
                          capture_output=True, text=True, timeout=120 + budget_s).stdout


def rendered(url: str, folder, screenshot=None, wait_for: str = "") -> tuple[str, str]:
    """The DOM of ``url`` after its scripts ran, and its visible text; a screenshot too when a path is given.
    ``wait_for``: render again with more page time (as a person waits) until the DOM holds this string."""
    for budget_s in (60, 120, 240):
        page = chromium(url, folder, "--dump-dom", budget_s=budget_s)
        if wait_for in page:
            break
    if screenshot is not None:
        chromium(url, folder, f"--screenshot={screenshot}", budget_s=budget_s)
        assert screenshot.stat().st_size > 20_000, f"{screenshot} is nearly blank"
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page, flags=re.S)
    return page, html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui-screenshots")
    yield folder
    print(f"MLflow UI screenshots: {folder}")


@contextlib.contextmanager
def zoo_ui(store_folder, log, loopback):
    """`zoo ui` on the store in ``store_folder`` (its output in ``log``) while the block runs; yields its URL."""
    port = loopback.free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = loopback.start([sys.executable, "-m", "zoo.cli", "ui", "--port", str(port)], port, log,
                            cwd=store_folder, env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loopback.stop(server)


@pytest.fixture(scope="module")
def ui(trained_run, tmp_path_factory, loopback):
    """`zoo ui` serving the trained run's store; yields (base URL, the run page link the run printed, zoo ui's
    output)."""
    assert trained_run.exit_code == 0, trained_run.output[-2000:]
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    with zoo_ui(trained_run.root, log, loopback) as base:
        (printed,) = re.findall(r"open it: +zoo ui +then +(\S+)", trained_run.output)
        yield base, printed.replace("http://127.0.0.1:5000", base), log.read_text()


def test_the_printed_run_link_opens_a_model_training_run_page(ui, tmp_path, screenshots):
    _, run_link, _ = ui
    _, text = rendered(run_link, tmp_path, screenshots / "run.png")
    assert "Model registry" in text and "Evaluation runs" not in text  # the model-training view, not GenAI's
    assert re.search(r"eca_resnet18-train-\d{8}-\d{6}-\w{4}", text)  # the readable run name
    assert re.search(r"Status Finished", text)
    assert re.search(r"Logged models \(1\).*eca_resnet18 Ready", text)  # the logged model is the run's output
    assert re.search(r"Datasets ImageClassificationData \([0-9a-f]{8}\) training", text)  # the data set as input
    assert re.search(r"val/acc 0\.\d+", text) and "test/acc" in text
    assert re.search(r"Parameters \(\d+\)", text) and "model/model vision/eca_resnet18" in text


def test_the_run_shows_metric_charts_and_the_confusion_matrix(ui, tmp_path, screenshots):
    _, run_link, _ = ui
    page_url, query = run_link.split("?")
    page, text = rendered(f"{page_url}/model-metrics?{query}", tmp_path, screenshots / "metrics.png",
                          wait_for='class="plot-container')
    assert page.count('class="plot-container') >= 4  # plotly drew the first section's charts
    # charts per metric group (test/val: acc, loss, macro F1 and the majority-class baselines)
    assert re.search(r"test \(\d+\).* acc .*Step", text) and re.search(r"val \(\d+\)", text)
    page, _ = rendered(f"{page_url}/artifacts/plots/val_confusion_matrix.png?{query}", tmp_path,
                       screenshots / "confusion_matrix.png", wait_for='src="blob:')
    assert re.search(r'<img alt="plots/val_confusion_matrix.png" src="blob:', page)  # the image was fetched


def test_zoo_ui_links_the_experiment_as_model_training_with_its_runs(ui, tmp_path, screenshots):
    base, _, output = ui
    (experiment_link,) = re.findall(rf"zoo: ({re.escape(base)}/#/experiments/\d+/runs\?\S+)", output)
    _, text = rendered(experiment_link, tmp_path, screenshots / "runs.png")
    assert "Model registry" in text and "Token Usage" not in text
    assert "1 matching run" in text
    assert re.search(r"eca_resnet18-train-\d{8}-\d{6}-\w{4} .*ImageClassificationData \([0-9a-f]{8}\)", text)


@pytest.fixture(scope="module")
def group_ui(trained_group, tmp_path_factory, loopback):
    """`zoo ui` serving the store of a `--data.folds 3` group; yields (base URL, the parent's printed link)."""
    assert trained_group.exit_code == 0, trained_group.output[-2000:]
    with zoo_ui(trained_group.root, tmp_path_factory.mktemp("group-ui") / "ui.log", loopback) as base:
        printed = re.findall(r"open it: +zoo ui +then +(\S+)", trained_group.output)[-1]  # the parent's, printed last
        yield base, printed.replace("http://127.0.0.1:5000", base)


def test_the_group_parent_lists_its_children_folded_under_it(group_ui, trained_group, tmp_path, screenshots):
    _, parent_link = group_ui
    runs_link = re.sub(r"/runs/\w+\?", "/runs?", parent_link)
    parent = trained_group.parent.info.run_id
    page, text = rendered(runs_link, tmp_path, screenshots / "group.png", wait_for=parent)
    assert "4 matching runs" in text  # the parent and its three folds
    top_rows = re.findall(r'ag-row-level-0[^>]*row-id="(\w+)"', page)
    assert set(top_rows) == {parent}  # the children are not top-level rows: they are nested under the parent
    row = page[page.index(f'row-id="{parent}"'):]
    assert re.search(r"runnamecellrenderer[^>]*>\s*<span[^>]*><svg[^>]*><path[^>]*d=\"M7\.25 7\.25V4\.5", row[:3000])
    assert not any(c.data.tags["mlflow.runName"] in text for c in trained_group.children)  # folded until opened
    _, text = rendered(parent_link, tmp_path)
    assert re.search(r"test/c_index_mean 0\.\d+", text) and "test/c_index_sd" in text
