"""constraint=monotonic: the parametrisations, the guarantee record and the verifier."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from monolm.constraints import build_constraint
from monolm.constraints.activations import MonotoneGELU, is_monotone
from monolm.constraints.parametrizations import Softplus, inverse_softplus
from monolm.constraints.verify import FFNFunction, VerifySettings, verify_ffn_monotonicity
from monolm.data.datamodule import TextDataModule
from monolm.errors import UserError
from monolm.models.ffn import find_ffn_sublayers
from monolm.training.run import prepare
from tests.helpers import FAST, build_model, compose_train

PARAMETRIZATIONS = ("softplus", "exp", "square", "project")


def constrained(*overrides: str):
    """(cfg, tokenizer, model, constraint): a tiny model with constraint=monotonic applied."""
    cfg, tokenizer, model = build_model("constraint=monotonic", *overrides)
    constraint = build_constraint(cfg.constraint)
    constraint.apply(model, cfg.model)
    return cfg, tokenizer, model.eval(), constraint


def validation_batches(cfg, tokenizer) -> list[dict[str, torch.Tensor]]:
    cfg.dataset.max_validation_examples = 16
    datamodule = TextDataModule(cfg.dataset, cfg.data, tokenizer, cfg.seed)
    datamodule.build()
    return list(datamodule.val_dataloader())


def levels(report: dict) -> set[str]:
    return {sub["level"] for sub in report["sublayers"]}


def trained(tmp_path: Path, *overrides: str, steps: int = 6):
    """A short real training run through train.py's build path; returns the module."""
    cfg = compose_train(
        "constraint=monotonic", *FAST, f"trainer.max_steps={steps}", "logger=[]",
        "trainer.val_check_interval=null", "optim.warmup_ratio=0", f"paths.output_dir={tmp_path}",
        *overrides,
    )  # fmt: skip
    setup = prepare(cfg)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    return setup.module


# --- the parametrisations --------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_inverse_softplus_round_trips_to_fp32_precision(beta: float) -> None:
    w = torch.logspace(-6, 2, 20001, dtype=torch.float32)
    back = F.softplus(inverse_softplus(w, beta), beta=beta)
    assert float(((back - w).abs() / w).max()) < 1e-6
    # The earlier pipeline's inverse, log(exp(w) - 1 + eps), is far off for small weights.
    naive = F.softplus(torch.log(torch.exp(w) - 1 + 1e-8))
    assert float(((naive - w).abs() / w).max()) > 1e-2


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_init_keeps_pretrained_magnitudes_in_fp32(parametrization: str) -> None:
    _, _, plain = build_model("model=tiny_pythia")
    cfg, _, _model, constraint = constrained(
        "model=tiny_pythia", f"constraint.parametrization={parametrization}"
    )
    assert len(constraint.layers) == 8  # 4 blocks x (W1, W2) under the default scope mlp_both
    before = dict(plain.named_modules())
    for name, layer in constraint.layers.items():
        expected = before[name].weight.abs() + cfg.constraint.init_eps
        torch.testing.assert_close(layer.weight, expected, rtol=2e-6, atol=0)
        assert parametrize.is_parametrized(layer) == (parametrization != "project")
    assert all(p.dtype == torch.float32 for p in constraint.raw_parameters())


def test_clamp_init_drops_negative_weights() -> None:
    _, _, plain = build_model("model=tiny_pythia")
    cfg, _, _, constraint = constrained("model=tiny_pythia", "constraint.init=clamp")
    before = dict(plain.named_modules())
    for name, layer in constraint.layers.items():
        expected = before[name].weight.clamp_min(0) + cfg.constraint.init_eps
        torch.testing.assert_close(layer.weight, expected, rtol=2e-6, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_no_constrained_weight_is_negative_after_training(
    tmp_path: Path, parametrization: str
) -> None:
    module = trained(
        tmp_path, "model=tiny_pythia", f"constraint.parametrization={parametrization}",
        "optim.lr=0.05",  # large steps: without the constraint many weights would turn negative
    )  # fmt: skip
    weights = [layer.weight.detach() for layer in module.constraint.layers.values()]
    assert min(float(w.min()) for w in weights) >= 0
    if parametrization == "project":
        # The projection was active: the optimizer pushed weights below 0 and they were clamped.
        assert sum(int((w == 0).sum()) for w in weights) > 0
    report = module.constraint.report(module.model)
    assert all(
        p["negative_count"] == 0 for sub in report["sublayers"] for p in sub["projections"].values()
    )


def test_parameters_change_after_one_step_under_bf16_mixed_on_cpu(tmp_path: Path) -> None:
    cfg = compose_train(
        "constraint=monotonic", *FAST, "trainer.precision=bf16-mixed", "trainer.max_steps=1",
        "logger=[]", "trainer.val_check_interval=null", "optim.warmup_ratio=0",
        f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    setup = prepare(cfg)
    raw = setup.module.constraint.raw_parameters()
    before = [p.detach().clone() for p in raw]
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    assert setup.trainer.global_step == 1
    for old, new in zip(before, raw, strict=True):
        assert new.dtype == torch.float32
        assert not torch.equal(old, new.detach())


# --- optimizer groups --------------------------------------------------------------------------


def test_constrained_raw_parameters_get_no_weight_decay_by_default(tmp_path: Path) -> None:
    cfg = compose_train("constraint=monotonic", "optim.weight_decay=0.1", *FAST,
                        f"paths.output_dir={tmp_path}")  # fmt: skip
    module = prepare(cfg).module
    groups = {g["name"]: g for g in module.configure_optimizers()["optimizer"].param_groups}
    raw = {id(p) for p in module.constraint.raw_parameters()}
    assert {id(p) for p in groups["constrained"]["params"]} == raw
    assert groups["constrained"]["weight_decay"] == 0.0
    assert groups["decay"]["weight_decay"] == 0.1
    assert not raw & {id(p) for p in groups["decay"]["params"] + groups["no_decay"]["params"]}


def test_decay_and_learning_rate_of_constrained_parameters_are_options(tmp_path: Path) -> None:
    cfg = compose_train(
        "constraint=monotonic", "optim.weight_decay=0.1", "constraint.lr=5e-3",
        "constraint.weight_decay_on_constrained=true", *FAST, f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    module = prepare(cfg).module
    groups = {g["name"]: g for g in module.configure_optimizers()["optimizer"].param_groups}
    assert groups["constrained"]["weight_decay"] == 0.1
    assert groups["constrained"]["initial_lr"] == 5e-3
    assert groups["decay"]["initial_lr"] == cfg.optim.lr
    assert module.constraint.report(module.model)["constraint"]["weight_decay_target"] == (
        "raw parameter V"
    )


# --- scopes, activations, guarantee levels -----------------------------------------------------


def test_scopes_map_to_the_family_layers() -> None:
    _, _, _, mlp_in = constrained("model=tiny_pythia", "constraint.scope=mlp_in")
    assert {n.rsplit(".", 1)[1] for n in mlp_in.layers} == {"dense_h_to_4h"}
    _, _, _, both = constrained("model=tiny_t5", "constraint.scope=mlp_both")
    assert {n.rsplit(".", 1)[1] for n in both.layers} == {"wi", "wo"}
    _, _, _, attn = constrained("model=tiny_pythia", "constraint.scope=mlp_both_attn_out")
    assert {n.rsplit(".", 1)[1] for n in attn.layers} == {
        "dense_h_to_4h", "dense_4h_to_h", "dense"
    }  # fmt: skip
    _, _, _, gated = constrained("model=tiny_flan_t5")
    assert {n.rsplit(".", 1)[1] for n in gated.layers} == {"wi_0", "wi_1", "wo"}
    _, _, _, llama = constrained("model=tiny_llama")
    assert {n.rsplit(".", 1)[1] for n in llama.layers} == {"gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize(
    ("overrides", "level", "reason"),
    [
        (("model=tiny_t5",), "proven", "non-gated"),
        (("model=tiny_pythia", "constraint.activation=relu"), "proven", "non-gated"),
        (("model=tiny_pythia", "constraint.activation=monotone_gelu"), "proven", "non-gated"),
        (("model=tiny_pythia",), "nonneg_only", "activation is not monotone"),
        (("model=tiny_flan_t5",), "nonneg_only", "gated"),
        (("model=tiny_flan_t5", "constraint.activation=relu"), "nonneg_only", "gated"),
        (("model=tiny_llama",), "nonneg_only", "gated"),  # SwiGLU
        (("model=tiny_llama", "constraint.activation=relu"), "nonneg_only", "gated"),
        (("model=tiny_t5", "constraint.scope=mlp_in"), "none", "unconstrained projections: wo"),
    ],
)
def test_the_record_states_each_sublayers_level(
    overrides: tuple[str, ...], level: str, reason: str
) -> None:
    _, _, model, constraint = constrained(*overrides)
    report = constraint.report(model)
    assert levels(report) == {level}
    assert all(reason in sub["reason"] for sub in report["sublayers"])
    assert report["summary"][level] == report["summary"]["sublayers"] == 4
    assert report["summary"]["end_to_end"] == "none"
    assert "not monotone" in report["summary"]["statement"]


def test_a_negative_weight_is_measured_on_the_actual_tensors() -> None:
    _, _, model, constraint = constrained("model=tiny_t5", "constraint.parametrization=project")
    name, layer = next(iter(constraint.layers.items()))
    with torch.no_grad():
        layer.weight[0, 0] = -1e-3
    report = constraint.report(model)
    broken = next(s for s in report["sublayers"] if name.startswith(s["name"]))
    assert broken["level"] == "none" and "negative weights" in broken["reason"]
    assert broken["projections"][name.rsplit(".", 1)[1]]["min_weight"] == pytest.approx(-1e-3)


def test_activation_monotonicity_is_decided_by_type() -> None:
    from transformers.activations import ACT2FN

    assert is_monotone(MonotoneGELU()) and is_monotone(ACT2FN["relu"])
    assert not is_monotone(ACT2FN["gelu"]) and not is_monotone(ACT2FN["silu"])
    x = torch.linspace(-6, 6, 100001)
    assert bool((MonotoneGELU()(x).diff() >= 0).all())
    assert bool((ACT2FN["gelu"](x).diff() < 0).any())


# --- the property the record claims ------------------------------------------------------------


def ordered_pairs(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x <= x' coordinatewise, at the scale of normalised hidden states."""
    generator = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, dim, generator=generator)
    step = torch.rand(n, dim, generator=generator) * (torch.rand(n, 1, generator=generator) < 0.5)
    return x, x + step * torch.rand(n, 1, generator=generator)


def assert_ffn_monotone(model, layout, n: int = 2000) -> None:
    for sub in find_ffn_sublayers(model, layout):
        dim = next(iter(sub.input_projections.values())).in_features
        low, high = ordered_pairs(n, dim, seed=len(sub.name))
        with torch.no_grad():
            difference = sub.block(high) - sub.block(low)
        assert float(difference.min()) >= -1e-5 * float(difference.abs().max()), sub.name


@pytest.mark.parametrize(
    "overrides",
    [("model=tiny_t5",), ("model=tiny_pythia", "constraint.activation=relu")],
    ids=["tiny_t5-relu", "tiny_pythia-activation-relu"],
)
def test_a_proven_sublayer_is_monotone_before_and_after_training(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    cfg, _, model, constraint = constrained(*overrides)
    assert levels(constraint.report(model)) == {"proven"}
    assert_ffn_monotone(model, cfg.model.ffn)
    module = trained(tmp_path, *overrides, "optim.lr=0.01")
    module.model.eval()
    assert levels(module.constraint.report(module.model)) == {"proven"}
    assert_ffn_monotone(module.model, cfg.model.ffn)


def test_the_property_check_catches_a_non_monotone_ffn() -> None:
    cfg, _, model, _ = constrained("model=tiny_pythia")  # GELU: nonneg_only
    for sub in find_ffn_sublayers(model, cfg.model.ffn):
        with torch.no_grad():
            sub.input_projections["dense_h_to_4h"].bias.fill_(-1.5)  # GELU's decreasing branch
    with pytest.raises(AssertionError):
        assert_ffn_monotone(model, cfg.model.ffn)


# --- the verifier ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["tiny_pythia", "tiny_flan_t5", "tiny_llama"])
def test_the_closed_form_jacobian_is_the_blocks_own(model_name: str) -> None:
    cfg, _, model, _ = constrained(f"model={model_name}")
    sub = find_ffn_sublayers(model, cfg.model.ffn)[0]
    activation = getattr(sub.block, cfg.model.ffn.activation)
    ffn = FFNFunction(sub, activation, gated=model_name != "tiny_pythia")
    x = torch.randn(3, next(iter(sub.input_projections.values())).in_features)
    closed = ffn.jacobian(x)
    for i in range(3):
        autograd = torch.autograd.functional.jacobian(sub.block, x[i : i + 1])[0, :, 0, :]
        torch.testing.assert_close(closed[i], autograd, rtol=1e-4, atol=1e-5)
    out, inp = torch.tensor([0, 5, 7]), torch.tensor([1, 2, 3])
    torch.testing.assert_close(ffn.entries(x, out, inp), closed[torch.arange(3), out, inp])


def fast_verify(**changes) -> VerifySettings:
    return VerifySettings(**{"batches": 1, "samples": 32, "search_starts": 8,
                             "search_steps": 30, **changes})  # fmt: skip


def test_a_proven_model_shows_no_violation_anywhere() -> None:
    cfg, tokenizer, model, constraint = constrained("model=tiny_t5")
    record = constraint.report(model)
    result = verify_ffn_monotonicity(
        model, cfg.model.ffn, validation_batches(cfg, tokenizer), fast_verify(), record["sublayers"]
    )
    assert result["summary"]["with_violations"] == 0
    for sub in result["sublayers"]:
        assert sub["level"] == "proven" and sub["consistent_with_level"]
        assert sub["sampled"]["min_entry"] >= 0 and sub["search"]["min_entry"] >= 0


def test_gelu_with_non_negative_weights_shows_violations() -> None:
    """Constructed case: FFN biases put real pre-activations on GELU's decreasing branch."""
    cfg, tokenizer, model, constraint = constrained("model=tiny_pythia")
    for sub in find_ffn_sublayers(model, cfg.model.ffn):
        with torch.no_grad():
            sub.input_projections["dense_h_to_4h"].bias.fill_(-3.0)
    record = constraint.report(model, validation_batches(cfg, tokenizer))
    assert levels(record) == {"nonneg_only"}
    found = record["verification"]
    assert found["summary"]["with_violations"] == 4
    assert found["summary"]["proven_with_violations"] == 0
    for sub in found["sublayers"]:
        assert sub["sampled"]["negative_fraction"] > 0 and sub["sampled"]["min_entry"] < 0


def test_the_search_finds_violations_that_sampling_misses() -> None:
    cfg, tokenizer, model, _ = constrained("model=tiny_pythia")
    batches = validation_batches(cfg, tokenizer)
    result = verify_ffn_monotonicity(model, cfg.model.ffn, batches, fast_verify(search_steps=50))
    sampled_clean = [s for s in result["sublayers"] if s["sampled"]["points_with_violation"] == 0]
    assert sampled_clean, "expected real hidden states to sit where GELU is increasing"
    assert any(s["search"]["points_with_violation"] for s in sampled_clean)


def test_gated_ffn_applies_and_is_not_monotone() -> None:
    cfg, tokenizer, model, constraint = constrained("model=tiny_flan_t5")
    record = constraint.report(model, validation_batches(cfg, tokenizer))
    assert levels(record) == {"nonneg_only"}
    assert all(sub["gated"] for sub in record["sublayers"])
    assert record["verification"]["summary"]["with_violations"] > 0


# --- caching -----------------------------------------------------------------------------------


def test_inference_context_computes_each_weight_once() -> None:
    cfg, tokenizer, model, constraint = constrained("model=tiny_pythia")
    calls: list[str] = []
    for name, layer in constraint.layers.items():
        parametrization = layer.parametrizations.weight[0]
        assert isinstance(parametrization, Softplus)
        parametrization.register_forward_hook(lambda *_, name=name: calls.append(name))
    batch = validation_batches(cfg, tokenizer)[0]
    with torch.inference_mode():
        uncached = [model(**batch).logits for _ in range(3)]
        assert len(calls) == 3 * len(constraint.layers)
        calls.clear()
        with constraint.cached_weights():
            cached = [model(**batch).logits for _ in range(3)]
        assert sorted(calls) == sorted(constraint.layers)
    for a, b in zip(uncached, cached, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("constraint.parametrization=softmax", "constraint.parametrization='softmax'"),
        ("constraint.scope=mlp", "did you mean"),
        ("constraint.activation=gelu", "valid: keep, monotone_gelu, relu"),
        ("constraint.beta=0", "constraint.beta=0"),
        ("+constraint.betta=2", "did you mean 'beta'"),
        ("constraint.verify.samples=0", "constraint.verify.samples=0"),
    ],
)
def test_bad_settings_name_the_value(override: str, message: str) -> None:
    cfg = compose_train(
        "constraint=monotonic", override, f"paths.output_dir={tempfile.gettempdir()}"
    )
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        build_constraint(cfg.constraint)
