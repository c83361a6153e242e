"""The `liftlab` command for what people do outside the UI."""

from __future__ import annotations

import math

from liftlab.cli import main


def test_plan_from_stated_baseline(capsys):
    assert main(["plan", "onboarding_adaptive", "--baseline-mean", "0.13", "--sd", "0.336"]) == 0
    out = capsys.readouterr().out
    # Two-sided z-test sample size, alpha 0.05/2 arms, power 0.8 (independently computed).
    from scipy.stats import norm

    expected = 2 * (norm.ppf(1 - 0.025 / 2) + norm.ppf(0.8)) ** 2 * 0.336**2 / (0.10 * 0.13) ** 2
    assert f"{math.ceil(expected):,} units per arm" in out


def test_validate_reports_bad_specs(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("id: x\nhypothesis: h\nvariants: []\nbaseline: a\nprimary_metric: m\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "bad.yaml: variants" in capsys.readouterr().err


def test_validate_fails_on_a_missing_or_empty_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nonexistent")]) == 1
    assert "nonexistent: no such folder" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 1
    assert "no experiment specs" in capsys.readouterr().err


def test_scorecard_report_and_plan_on_real_results(built, monkeypatch, capsys, reports_dir, tmp_path):
    from liftlab import db

    monkeypatch.setenv("DATABASE_URL", built.info.url())
    assert main(["scorecard", "hillstrom"]) == 0
    out = capsys.readouterr().out
    assert "Mens E-Mail" in out and "shape:" not in out and "decimal" not in out and "nan" not in out
    header, rule, *rows = out.splitlines()
    assert header.split()[:6] == ["experiment_id", "metric", "role", "variant", "method", "decides"]
    assert len({len(line) for line in (header, rule)}) == 1  # aligned
    # exactly one estimate per metric and arm decides (3 metrics × 2 arms)
    assert sum(1 for r in rows if " ✓ " in r) == 6

    assert main(["report", "onboarding_adaptive"]) == 0
    assert (reports_dir / "onboarding_adaptive.html").exists()
    capsys.readouterr()
    for command in (["report", "no_such_test"], ["scorecard", "no_such_test"]):
        assert main(command) == 1
        assert "no experiment 'no_such_test'" in capsys.readouterr().err
    assert not (reports_dir / "no_such_test.html").exists()

    # plan: the spec's current MDE against the measured mean and SD, never a stale results.power
    with db.connect(built.info) as conn:
        mean, sd = conn.execute("select baseline_mean, sd_unit from results.power where experiment_id = 'aa_check' "
                                "and method = 'welch_t'").fetchone()
    from statsmodels.stats.power import NormalIndPower

    for mde in (0.02, 0.05):
        folder = tmp_path / f"mde{mde}"
        folder.mkdir()
        from liftlab.config import REPO_ROOT

        text = (REPO_ROOT / "experiments" / "aa_check.yaml").read_text().replace("mde: 0.02", f"mde: {mde}")
        (folder / "aa_check.yaml").write_text(text)
        monkeypatch.setenv("LIFTLAB_EXPERIMENTS_DIR", str(folder))
        assert main(["plan", "aa_check"]) == 0
        out = capsys.readouterr().out
        # statsmodels solves the same two-sided z power equation independently
        expected = NormalIndPower().solve_power(effect_size=mde * mean / sd, alpha=0.05, power=0.8, ratio=1.0)
        assert f"{math.ceil(expected):,}" in out, out
        assert "nan" not in out.lower() and "shape:" not in out
