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


def test_scorecard_report_and_plan_on_real_results(built, monkeypatch, capsys, reports_dir):
    monkeypatch.setenv("DATABASE_URL", built.info.url())
    assert main(["scorecard", "hillstrom"]) == 0
    assert "Mens E-Mail" in capsys.readouterr().out
    assert main(["report", "onboarding_adaptive"]) == 0
    assert (reports_dir / "onboarding_adaptive.html").exists()
    assert main(["plan", "aa_check"]) == 0
    assert "n_required_per_arm" in capsys.readouterr().out
