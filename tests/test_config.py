"""Config validation: every bad key is named with its value, before any job runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from adapter_pruning import config as apc

REPO = Path(__file__).resolve().parents[1]


def _default():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "study.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name):
    apc.check_config(yaml.safe_load((REPO / "config" / name).read_text()))


def test_the_study_runs_every_registered_method():
    from adapter_pruning import methods

    study = yaml.safe_load((REPO / "config" / "study.yaml").read_text())
    assert sorted(study["pruning"]["methods"]) == sorted(methods.names())
    assert study["pruning"]["dense_small"] == [1, 2, 4, 8]


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda c: c.update(tasks=["rotten_tomatoes", "sst2"]), 'tasks[1] = "sst2"'),
        (lambda c: c["pruning"].update(percentages=[98, 100]), "pruning.percentages[1] = 100"),
        (lambda c: c["pruning"].update(percentages=[0]), "pruning.percentages[0] = 0"),
        (lambda c: c.update(tropical={"lam1": -0.5}), "tropical.lam1 = -0.5"),
        (lambda c: c["training"].update(steps=0), "training.steps = 0"),
        (lambda c: c["training"].update(batch_size=-32), "training.batch_size = -32"),
        (lambda c: c["training"].update(non_linearity="gelu"), 'training.non_linearity = "gelu"'),
        (lambda c: c["pruning"]["scopes"].update(default=["CX"]), 'pruning.scopes.default[0] = "CX"'),
        (
            lambda c: c["pruning"].update(methods=["wanda"]),
            'pruning.methods[0] = "wanda": unknown method (known: standard,',
        ),
        (lambda c: c["pruning"].update(methods=["tropical", 3]), "pruning.methods[1] = 3"),
        (
            lambda c: c["pruning"].update(values="optimized"),
            "pruning.values: removed; Tropical's mask with the optimized",
        ),
        (lambda c: c["pruning"].update(dense_small=[0]), "pruning.dense_small[0] = 0"),
        (lambda c: c["pruning"].update(dense_small=[2, 2]), "pruning.dense_small = [2, 2]"),
        (lambda c: c.update(seeds=[0.5]), "seeds[0] = 0.5"),
        (lambda c: c.update(lerning_rate=1), "lerning_rate: unknown key"),
        (lambda c: c["training"].update(lr_schedule="cos"), "training.lr_schedule: unknown key"),
        (lambda c: c.pop("tasks"), "'tasks' is a required property"),
        (lambda c: c["data"]["caps"].update(test=0), "data.caps.test = 0"),
        (lambda c: c["evaluation"].update(batch_tokens="many"), 'evaluation.batch_tokens = "many"'),
        (lambda c: c["evaluation"].update(batch_tokens=0), "evaluation.batch_tokens = 0"),
        (lambda c: c["report"].update(comparisons=[["tropical", "standard", "random"]]), "is too long"),
        (lambda c: c["report"].update(comparisons=[]), "report.comparisons = []: [] is not of type"),
        (lambda c: c["report"].update(equivalence_margin=0), "report.equivalence_margin = 0"),
        (lambda c: c["report"].update(floor_fraction=1.5), "report.floor_fraction = 1.5"),
    ],
)
def test_bad_values_are_named(mutate, fragment):
    cfg = copy.deepcopy(_default())
    mutate(cfg)
    with pytest.raises(apc.ConfigError) as err:
        apc.check_config(cfg)
    assert fragment in str(err.value)


def test_all_problems_reported_at_once():
    cfg = _default()
    cfg["training"]["steps"] = 0
    cfg["tropical"] = {"lam2": -1}
    with pytest.raises(apc.ConfigError) as err:
        apc.check_config(cfg)
    assert "training.steps" in str(err.value) and "tropical.lam2" in str(err.value)


def test_semantic_checks(tmp_path):
    cfg = _default()
    cfg["data"]["mirror"] = str(tmp_path / "nowhere")
    with pytest.raises(apc.ConfigError) as err:
        apc.check_semantics(cfg, REPO)
    assert "data.mirror" in str(err.value) and "nowhere" in str(err.value)


def test_dense_small_widths_are_checked_before_any_job():
    cfg = _default()
    cfg["pruning"]["dense_small"] = [2, 5, 24]
    with pytest.raises(apc.ConfigError) as err:
        apc.check_semantics(cfg, REPO)
    msg = str(err.value)
    assert "pruning.dense_small: width 5 does not divide the model's hidden size 384" in msg
    assert "width 24 is not below the full adapter's width 24" in msg and "width 2 " not in msg
    cfg["pruning"]["dense_small"] = [1, 2, 4, 8]
    apc.check_semantics(cfg, REPO)


def test_tf32_needs_a_gpu_device():
    cfg = _default()
    cfg["device"] = "cpu"
    cfg["evaluation"]["precision"] = "tf32"
    with pytest.raises(apc.ConfigError, match=r"evaluation.precision = 'tf32': a CUDA precision, but device = 'cpu'"):
        apc.check_semantics(cfg, REPO)
    cfg["device"] = "auto"  # may land on a GPU: decided by the job
    apc.check_semantics(cfg, REPO)
    cfg["training"]["precision"] = "fp16"
    with pytest.raises(apc.ConfigError, match=r"training.precision = \"fp16\""):
        apc.check_config(cfg)


def test_local_model_folder_must_hold_a_model(tmp_path):
    cfg = _default()
    cfg["model"] = str(tmp_path)
    with pytest.raises(apc.ConfigError, match="no config.json"):
        apc.check_semantics(cfg, REPO)


def test_default_comparisons():
    methods = ["standard", "tropical", "random", "activation"]
    assert apc.default_comparisons(methods) == [
        ("tropical", "standard"),
        ("random", "standard"),
        ("activation", "standard"),
        ("tropical", "random"),
        ("tropical", "activation"),
    ]
    assert apc.default_comparisons(["tropical", "standard"]) == [("tropical", "standard")]
    assert apc.default_comparisons(["tropical", "random"]) == [("tropical", "random")]
    assert apc.default_comparisons(["tropical"]) == []
    # method names are plain strings: a method added to pruning.methods joins the defaults
    assert ("taylor", "standard") in apc.default_comparisons(["standard", "tropical", "taylor"])
    # P_T alone is compared with P_S alone (both prune ⌊p n/100⌋), not with the count-matched methods
    from adapter_pruning import methods as registry

    assert apc.default_comparisons(registry.names()) == [
        ("tropical", "standard"),
        ("tropical_opt", "standard"),
        ("random", "standard"),
        ("activation", "standard"),
        ("taylor", "standard"),
        ("sparsegpt", "standard"),
        ("tropical_pt", "standard_ps"),
        ("tropical", "tropical_opt"),
        ("tropical", "random"),
        ("tropical", "activation"),
        ("tropical", "taylor"),
        ("tropical", "sparsegpt"),
    ]
    assert apc.default_comparisons(["standard", "tropical", "tropical_pt"]) == [("tropical", "standard")]


def test_comparison_pairs_name_configured_methods():
    cfg = _default()
    cfg["pruning"]["methods"] = ["standard", "tropical", "random"]
    assert apc.comparison_pairs(cfg) == apc.default_comparisons(cfg["pruning"]["methods"])
    cfg["report"] = {"comparisons": [["random", "standard"], ["tropical", "random"]]}
    assert apc.comparison_pairs(cfg) == [("random", "standard"), ("tropical", "random")]
    apc.check_semantics(cfg, REPO)
    cfg["report"]["comparisons"] = [["random", "standard"], ["tropical", "activation"], ["random", "random"]]
    cfg["report"]["comparisons"].append(["random", "standard"])
    with pytest.raises(apc.ConfigError) as err:
        apc.check_semantics(cfg, REPO)
    msg = str(err.value)
    assert "report.comparisons[1] = ['tropical', 'activation']: 'activation' not in pruning.methods" in msg
    assert "report.comparisons[2] = ['random', 'random']: target and reference are the same method" in msg
    assert "report.comparisons[3] = ['random', 'standard']: listed twice" in msg


def test_canonical_params_ignore_key_order():
    assert apc.canonical({"b": 1, "a": {"y": 2, "x": 1}}) == apc.canonical({"a": {"x": 1, "y": 2}, "b": 1})
    assert apc.canonical({"a": 1}) != apc.canonical({"a": 1.5})


def test_fmt_p_and_model_label():
    assert apc.fmt_p(98) == "98" and apc.fmt_p(98.0) == "98" and apc.fmt_p(2.5) == "2.5"
    assert apc.model_label({"model": "minilm"}) == "minilm"
    assert apc.model_label({"model": "FacebookAI/roberta-base"}) == "roberta-base"
    assert apc.model_label({"model": "/x/y/my model/"}) == "my-model"
    assert apc.model_label({"model": "roberta-base", "model_label": "rb"}) == "rb"


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda c: c.update(tropical={"lam1": float("nan")}), "tropical.lam1 = NaN: must be a finite number"),
        (lambda c: c.update(tropical={"tol": float("inf")}), "tropical.tol = Infinity: must be a finite number"),
        (lambda c: c["training"].update(lr=float("-inf")), "training.lr = -Infinity: must be a finite number"),
        (
            lambda c: c["pruning"].update(percentages=[98, 90, float("nan")]),
            "pruning.percentages[2] = NaN: must be a finite number",
        ),
        (
            lambda c: c["pruning"].update(percentages=[98, float("inf")]),
            "pruning.percentages[1] = Infinity: must be a finite number",
        ),
    ],
)
def test_non_finite_numbers_are_named(mutate, fragment):
    cfg = copy.deepcopy(_default())
    mutate(cfg)
    with pytest.raises(apc.ConfigError) as err:
        apc.check_config(cfg)
    assert fragment in str(err.value)
    assert str(err.value).count(fragment.split(" = ")[0] + " ") == 1  # one message per key, not also a range error


def test_non_finite_numbers_from_yaml_reported_with_schema_errors():
    cfg = _default()
    cfg.update(yaml.safe_load("tropical: {lam1: .nan, lam2: -.inf, steps: 0}"))
    cfg["pruning"]["percentages"] = yaml.safe_load("[98, .inf, 120]")
    with pytest.raises(apc.ConfigError) as err:
        apc.check_config(cfg)
    msg = str(err.value)
    for fragment in (
        "tropical.lam1 = NaN: must be a finite number",
        "tropical.lam2 = -Infinity: must be a finite number",
        "tropical.steps = 0",
        "pruning.percentages[1] = Infinity: must be a finite number",
        "pruning.percentages[2] = 120",
    ):
        assert fragment in msg


@pytest.mark.parametrize(
    "model", ["my model", "a/b/c", "-x", "x--y", "x..y", "roberta-base/", "org/", "/", "x.git", "a" * 97, "bert_ü"]
)
def test_bad_model_ids_are_named(model):
    cfg = _default()
    cfg["model"] = model
    with pytest.raises(apc.ConfigError) as err:
        apc.check_semantics(cfg, REPO)
    assert f"model = {model!r}:" in str(err.value)


@pytest.mark.parametrize(
    "model", ["minilm", "roberta-base", "FacebookAI/roberta-base", "bert-base-uncased", "org_1/m.v2", "a" * 96]
)
def test_good_model_ids_pass(model):
    cfg = _default()
    cfg["model"] = model
    apc.check_semantics(cfg, REPO)


def test_local_model_folder_passes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg = _default()
    cfg["model"] = str(tmp_path)
    apc.check_semantics(cfg, REPO)


def test_missing_local_model_folder_is_named(tmp_path):
    cfg = _default()
    cfg["model"] = str(tmp_path / "nowhere")
    with pytest.raises(apc.ConfigError, match="does not exist") as err:
        apc.check_semantics(cfg, REPO)
    assert "model = " in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "roberta-base",
        "FacebookAI/roberta-base",
        "a/b/c",
        "-x",
        "x-",
        ".x",
        "x.",
        "x--y",
        "x..y",
        "x.git",
        "_x_",
        "my model",
        "org/",
        "/x",
        "a" * 96,
        "a" * 97,
        "o-o/n_n.1",
        "x/-y",
        "x-/y",
        "1",
        "a.b-c_d",
    ],
)
def test_hf_model_id_rule_matches_huggingface_hub(name):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
        hub_ok = True
    except HFValidationError:
        hub_ok = False
    assert (apc.hf_model_id_problem(name) is None) == hub_ok


def test_model_aliases_match_models_module():
    from adapter_pruning.models import MODEL_ALIASES

    assert apc.model_aliases() == set(MODEL_ALIASES)


# --------------------------------------------------------------------------- adapters: (workflow mode)


@pytest.fixture(scope="module")
def saved_adapters(tmp_path_factory, tiny_model_dir):
    """Adapters saved by the plain adapters library on the tiny BERT (d = 32): a usable one (ReLU, 2-label
    head), the same without its head, a swish one, and a folder holding only adapter_config.json."""
    import shutil

    from adapters import AutoAdapterModel, SeqBnConfig

    root = tmp_path_factory.mktemp("adapters")
    model = AutoAdapterModel.from_pretrained(str(tiny_model_dir))
    model.add_adapter("good", config=SeqBnConfig(reduction_factor=16, non_linearity="relu"))
    model.add_classification_head("good", num_labels=2)
    model.add_adapter("swish", config=SeqBnConfig(reduction_factor=16, non_linearity="swish"))
    model.add_classification_head("swish", num_labels=2)
    dirs = {name: root / name for name in ("good", "headless", "swish", "no_weights")}
    for d in dirs.values():
        d.mkdir()
    model.save_adapter(str(dirs["good"]), "good", with_head=True, use_safetensors=True)
    model.save_adapter(str(dirs["headless"]), "good", with_head=False, use_safetensors=True)
    model.save_adapter(str(dirs["swish"]), "swish", with_head=True, use_safetensors=True)
    shutil.copy(dirs["good"] / "adapter_config.json", dirs["no_weights"])
    return dirs


def _with_adapters(model, **adapters):
    cfg = _default()
    cfg.update(model=str(model), tasks=["rotten_tomatoes", "trec"], adapters={k: str(v) for k, v in adapters.items()})
    cfg["data"]["mirror"] = None
    return cfg


def test_usable_adapter_passes(saved_adapters, tiny_model_dir):
    apc.check_semantics(_with_adapters(tiny_model_dir, rotten_tomatoes=saved_adapters["good"]), REPO)


@pytest.mark.parametrize(
    "task, which, fragments",
    [
        ("rotten_tomatoes", "missing", ["no such adapter directory"]),
        ("rotten_tomatoes", "empty", ["missing adapter_config.json"]),
        ("rotten_tomatoes", "no_weights", ["missing adapter weights", "adapter.safetensors"]),
        ("rotten_tomatoes", "swish", ["adapter_config.json", "non_linearity=swish", "only relu"]),
        ("rotten_tomatoes", "headless", ["needs the adapter's prediction head", "with_head=True"]),
        ("trec", "good", ["head_config.json", "num_labels=2 but task 'trec' has 6 labels"]),
        ("rotten_tomatoes", "minilm", ["adapter.safetensors", "adapter width d=32", "hidden_size=384", "config.json"]),
    ],
)
def test_unusable_adapters_are_named(saved_adapters, tiny_model_dir, tmp_path, task, which, fragments):
    model = tiny_model_dir
    if which == "missing":
        path = tmp_path / "nowhere"
    elif which == "empty":
        path = tmp_path
    elif which == "minilm":
        path, model = saved_adapters["good"], "minilm"
    else:
        path = saved_adapters[which]
    with pytest.raises(apc.ConfigError) as err:
        apc.check_semantics(_with_adapters(model, **{task: path}), REPO)
    msg = str(err.value)
    assert f"adapters.{task} = '{path}': {path}" in msg  # the key, then the culprit file or folder
    for fragment in fragments:
        assert fragment in msg


def test_adapter_of_an_unconfigured_task_is_named(saved_adapters, tiny_model_dir):
    with pytest.raises(apc.ConfigError, match=r"adapters\.imdb = .*: task 'imdb' is not in tasks"):
        apc.check_semantics(_with_adapters(tiny_model_dir, imdb=saved_adapters["good"]), REPO)


def test_adapters_schema_takes_task_names_and_paths():
    cfg = _default()
    cfg["adapters"] = {"rotten_tomatoes": "ok/path", "sst2": "x", "trec": 3}
    with pytest.raises(apc.ConfigError) as err:
        apc.check_config(cfg)
    assert "adapters.sst2: unknown key" in str(err.value)
    assert "adapters.trec = 3" in str(err.value)
