"""benchmarks/device_check.py, the script a GPU machine runs, works: its dry mode (CPU, tiny inputs) measures every
variant of a family (eager fp32, bf16 autocast, compiled, the reference in fp32 and bf16) and writes the table."""

import pytest

from benchmarks.device_check import FAMILIES, main


def _rows(path):
    return [line.split(" | ") for line in path.read_text().splitlines() if line.startswith("| ") and " ms" in line]


def test_dry_run_measures_every_variant_and_writes_the_table(tmp_path):
    output = tmp_path / "device_check.md"
    assert main(["--dry", "--families", "tlob", "dea_net_deploy", "--output", str(output)]) == 0
    rows = _rows(output)
    assert [(r[0].strip("| "), r[1]) for r in rows] == [
        ("tlob", "training step"), ("tlob", "inference"), ("dea_net_deploy", "inference")]
    tlob_step = rows[0]
    assert all(cell.endswith(" ms") for cell in tlob_step[3:8])  # fp32, bf16, compiled, reference fp32 and bf16
    assert tlob_step[8] == "nn.TransformerEncoder" and tlob_step[9].endswith("x")
    assert rows[2][5] == "not asked for"  # only the families asked for are compiled in a dry run


@pytest.mark.slow
def test_dry_run_of_every_family(tmp_path):
    output = tmp_path / "device_check.md"
    assert main(["--dry", "--output", str(output), "--budget", "3600"]) == 0
    assert len(_rows(output)) == sum(1 if f.inference_only else 2 for f in FAMILIES.values())
