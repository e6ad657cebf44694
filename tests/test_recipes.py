"""Training recipes (issue 12, sparsebound.recipes): ``train --objective certificate|pbb`` and
``reproduce --objectives``, end to end on small tasks.

Checked: the checkpoint records the rules and the zero-noise profile; the frozen layers equal
the prior bit for bit; ``certify CKPT`` uses the recorded profile (and the learned pbb
posterior), and every certificate lies above the held-out error's lower confidence bound; the
options are validated first; a study with the certificate objective writes its run, shows the
decomposition in the report, counts the robust prior in its union-bound level and resumes.
"""

from __future__ import annotations

import json

import pytest
import torch

from sparsebound.checkpoint import load_checkpoint
from sparsebound.cli import main
from sparsebound.errors import ConfigError
from sparsebound.network import torch_threads
from sparsebound.recipes import ObjectiveOptions, certificate_profile, default_prior_epochs

TRAIN = ["train", "--dataset", "digits", "--widths", "16", "16", "--max-epochs", "15", "--prior-fraction", "0.5",
         "--threads", "1", "--quiet"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def cert_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "cert"
    rc = main([*TRAIN, "--objective", "certificate", "--target-factor", "2", "--prior-epochs", "10", "--out",
               str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def pbb_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "pbb"
    rc = main([*TRAIN, "--objective", "pbb", "--out", str(out)])
    assert rc == 0
    return out


def test_options_and_rules():
    assert default_prior_epochs(2500) == 100 and default_prior_epochs(30000) == 10 and default_prior_epochs(10) == 100
    assert certificate_profile(ObjectiveOptions("certificate"), 3) == (0.0, 0.0, 1.0)
    assert certificate_profile(ObjectiveOptions("certificate", certificate_noise="all"), 3) is None
    assert certificate_profile(ObjectiveOptions("pbb"), 3) is None
    for bad in ({"objective": "sgd"}, {"objective": "certificate", "target_factor": 0.0},
                {"objective": "certificate", "prior_epochs": 0}, {"objective": "pbb", "pbb_sigma": -1.0},
                {"objective": "pbb", "pbb_sigma": 1e300}, {"objective": "pbb", "pbb_sigma": 1e-300}):
        with pytest.raises(ConfigError):
            ObjectiveOptions(**bad)


def test_train_objective_validated_first(tmp_path, capsys):
    out = tmp_path / "o"
    line = _one_line_error(capsys, ["train", "--dataset", "digits", "--widths", "8", "--objective", "certificate",
                                    "--out", str(out)])
    assert "--prior-fraction" in line
    line = _one_line_error(capsys, ["train", "--dataset", "digits", "--widths", "8", "--prior-epochs", "3",
                                    "--out", str(out)])
    assert "--objective" in line
    line = _one_line_error(capsys, ["train", "--dataset", "digits", "--widths", "8", "--prior-fraction", "0.5",
                                    "--objective", "pbb", "--posterior", "proximal", "--out", str(out)])
    assert "--posterior" in line
    assert not out.exists()


def test_certificate_checkpoint(cert_ckpt, tmp_path, capsys):
    ck = load_checkpoint(cert_ckpt)
    ob = ck.meta["objective"]
    rules = ob["rules"]
    assert ob["objective"] == "certificate" and ob["certificate_profile"] == [0.0, 0.0, 1.0]
    assert ob["frozen_layers"] == [1, 2] and ob["noise_layers"] == [3]
    assert rules["s0"] > 0 and rules["sigma_t"] == pytest.approx(2.0 * rules["s0"], rel=1e-15)
    assert rules["prior_epochs"] == 10 and ck.meta["training"]["config"]["frozen_layers"] == [1, 2]
    # the prior of the certificate (robust prior if accepted) saw only S_prior; hidden layers bit-identical
    rob = load_checkpoint(cert_ckpt / "robust-prior")
    assert rob.meta["bound_sample"] == ck.meta["bound_sample"]
    if rules["robust_prior_accepted"]:
        assert all(torch.equal(a, b) for a, b in zip(rob.network.weights, ck.prior.weights, strict=True))
        assert "those of the robust prior" in ob["certifies"]
    else:  # the record names the prior the hidden layers really come from
        assert "those of the erm prior" in ob["certifies"]
        assert all(torch.equal(a, b) for a, b in zip(load_checkpoint(cert_ckpt / "prior").network.weights,
                                                     ck.prior.weights, strict=True))
    assert torch.equal(ck.network.weights[0], ck.prior.weights[0])
    assert torch.equal(ck.network.weights[1], ck.prior.weights[1])
    assert not torch.equal(ck.network.weights[2], ck.prior.weights[2])
    # certify uses the recorded profile and is valid
    js = tmp_path / "c.json"
    assert main(["certify", str(cert_ckpt), "--methods", "sparse", "test-set", "--threads", "1", "--quiet",
                 "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "sigma profile (0.0, 0.0, 1.0) as recorded by training" in text
    rec = json.loads(js.read_text())
    s = rec["results"]["sparse"]
    assert s["profile"] == [0.0, 0.0, 1.0]
    lcb = rec["test_error_lower_confidence"]
    assert s["unclipped"] >= lcb
    # the zero-noise profile certifies most of the bound sample (the search's underflow floor
    # must not skip a profile with leading zero-noise layers)
    assert s["certified_fraction"] > 0.5 and s["unclipped"] < 1.0
    assert main(["info", str(cert_ckpt)]) == 0
    info = capsys.readouterr().out
    assert "objective   certificate" in info and "layers with noise [3]" in info and "s0 = " in info


def test_pbb_checkpoint(pbb_ckpt, tmp_path, capsys):
    ck = load_checkpoint(pbb_ckpt)
    assert ck.meta["has_posterior_std"] and ck.posterior_std is not None
    assert len(ck.posterior_std) == ck.network.depth
    for t, w in zip(ck.posterior_std, ck.network.weights, strict=True):
        assert t.shape == w.shape and t.dtype == torch.float64 and bool((t > 0).all())
    assert ck.meta["objective"]["options"]["pbb_sigma"] == 0.01
    js = tmp_path / "p.json"
    assert main(["certify", str(pbb_ckpt), "--threads", "1", "--quiet", "--pbb-passes", "2", "--pbb-seed", "3",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "not on the deployed network" in out and "derandomisation cost" in out
    rec = json.loads(js.read_text())
    p = rec["results"]["pbb"]
    assert p["posterior"] == "learned" and p["seed"] == 3 and "Gibbs" in p["label"]
    lcb = rec["test_error_lower_confidence"]
    for m in ("sparse", "uniform-sparse", "dense", "test-set"):
        assert rec["results"][m]["unclipped"] >= lcb
    # pbb bounds the Gibbs predictor: never below its own Monte-Carlo empirical estimate
    assert p["unclipped"] >= p["gibbs_error"]


def test_certify_pbb_on_any_checkpoint(cert_ckpt, tmp_path, capsys):
    js = tmp_path / "t.json"
    assert main(["certify", str(cert_ckpt), "--methods", "pbb", "--pbb-passes", "1", "--pbb-seed", "1",
                 "--sigma-profiles", "0,0,1", "--threads", "1", "--quiet", "--json", str(js)]) == 0
    rec = json.loads(js.read_text())
    assert rec["results"]["pbb"]["posterior"] == "tied"
    capsys.readouterr()
    line = _one_line_error(capsys, ["certify", str(cert_ckpt), "--sigma-profiles", "0,1", "--quiet"])
    assert "--sigma-profiles" in line


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    argv = ["reproduce", "--quick", "--widths", "20", "--objectives", "erm", "certificate", "--prior-epochs", "10",
            "--pbb-passes", "1", "--mc-seed", "5", "--out", str(out), "--quiet"]
    with torch_threads(1):
        rc = main(argv)
    assert rc == 0
    return out, argv


def test_study_objective_run(study, capsys):
    out, argv = study
    res = json.loads((out / "results.json").read_text())
    ids = [r["run"]["id"] for r in res["runs"]]
    assert ids == ["w20-s0/init", "w20-s0/ddp-standard", "w20-s0/ddp-certificate-a0.5"]
    run = res["runs"][2]
    assert run["noise_layers"] == [3] and run["objective"]["objective"] == "certificate"
    assert run["results"]["sparse"]["profile"] == [0.0, 0.0, 1.0]
    assert run["results"]["pbb"]["seed"] == run["run_config"]["pbb"]["seed"]
    for r in res["runs"]:
        for m, v in r["results"].items():
            if m != "pbb" and v.get("unclipped") is not None:
                assert v["unclipped"] >= r["test_error_lower_confidence"]
        assert set(r["decomposition"]["sparse"]) >= {"empirical", "kl_over_m", "confidence", "unclipped"}
        assert abs(sum(r["binding"]["kinds"].values()) - 1.0) < 1e-9
    assert "derandomisation" in run["decomposition"]
    # the robust prior (or the erm prior at another profile) is a new PAC-Bayes event: 3 priors
    lev = res["summary"]["levers"][0]
    assert lev["union"]["n_priors"] == 3 and lev["delta_union"] == pytest.approx(3 * 0.05)
    report = (out / "report.md").read_text()
    assert "## Decomposition of the certificates" in report and "## Certificate-aware training" in report
    assert "w20-s0/ddp-certificate-a0.5" in report
    # resume: everything loaded from disk; other objectives = another study (refused without --force)
    capsys.readouterr()
    with torch_threads(1):
        assert main(argv) == 0
    assert capsys.readouterr().out.count("loaded from disk") == 3
    other = [a if a != "certificate" else "pbb" for a in argv]
    assert main(other) == 2
    assert "objectives" in capsys.readouterr().err


def test_certificate_noise_all(tmp_path, capsys):
    """Variant E: every layer trained with the certificate objective (KL at kls) and noisy."""
    out = tmp_path / "e"
    assert main([*TRAIN, "--max-epochs", "10", "--objective", "certificate", "--certificate-noise", "all",
                 "--target-factor", "2", "--prior-epochs", "5", "--out", str(out)]) == 0
    ck = load_checkpoint(out)
    ob = ck.meta["objective"]
    assert ob["certificate_profile"] is None and ob["frozen_layers"] == [] and ob["noise_layers"] == [1, 2, 3]
    assert ob["rules"]["kls"] > 0
    cfg = ob["posterior_training"]["config"]
    assert cfg["objective"] == "certificate" and cfg["objective_kl_sigma"] == ob["rules"]["kls"]
    assert cfg["objective_m"] == ck.meta["bound_sample"]["n_bound"]
    js = tmp_path / "e.json"
    capsys.readouterr()
    assert main(["certify", str(out), "--methods", "sparse", "test-set", "--threads", "1", "--quiet", "--json",
                 str(js)]) == 0
    rec = json.loads(js.read_text())
    assert rec["results"]["sparse"]["profile"] == [1.0, 1.0, 1.0]
    assert rec["results"]["sparse"]["unclipped"] >= rec["test_error_lower_confidence"]
