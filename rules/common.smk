# Config validation, paths, input functions and wildcard constraints shared by all rule files.
import json
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the package, also inside conda envs and cluster jobs
from adapter_pruning import config as apc
from adapter_pruning import devices as apd
from adapter_pruning import methods as apm
from adapter_pruning.codehash import script_code_hash

# 1. Readable schema errors (every bad key with its value) before anything else happens.
apc.check_config(config)
# 2. Defaults from the schema (snakemake.utils.validate fills them in), then the solver defaults.
validate(config, "../config/config.schema.yaml")
apc.fill_tropical_defaults(config)
# 3. Checks across keys (mirror folder exists, scope keys name configured tasks, ...).
apc.check_semantics(config, workflow.basedir)
# 4. The device of training, calibration and scoring in this run, "cpu" or "cuda": planned once, by the
#    main Snakemake process, and handed to every job (adapter_pruning.devices.run_device). It is in the
#    params of those rules (switching it reruns them); with "cuda" each of their jobs asks for gpu=1.
USE_CONDA = "conda" in {m.name.lower() for m in workflow.deployment_settings.deployment_method}
DEVICE = apd.run_device(config["device"], main=workflow.is_main_process, check_torch=not USE_CONDA)
GPUS_PER_JOB = 1 if DEVICE == "cuda" else 0  # resource gpu of the torch rules
if workflow.is_main_process:
    from snakemake.logging import logger

    logger.info(apd.plan_message(config["device"], DEVICE))
    if DEVICE == "cuda" and config["evaluation"]["mode"] == "per_state":
        logger.warning(
            "evaluation.mode per_state on GPUs: the methods of one pruning state are scored by separate jobs; "
            "jobs that land on different GPU models make report_comparison's pairs invalid and aggregate "
            "refuses them (docs/cluster.md, 'Device policy'); per_sweep scores them in one job"
        )

R = config["results"]
MODEL = apc.model_label(config)
TASKS = list(config["tasks"])
SEEDS = [int(s) for s in config["seeds"]]
METHODS = list(config["pruning"]["methods"])
PCTS = [apc.fmt_p(p) for p in config["pruning"]["percentages"]]
# The unit scope (structured pruning: whole bottleneck units) for the tasks whose scopes list it, with
# its own methods and percentages (pruning.units; by default those above).
UNIT_SCOPE = apm.UNIT_SCOPE
UNIT_TASKS = apc.unit_tasks(config)
UNIT_METHODS = apc.scope_grid(config, UNIT_SCOPE)[0]
UNIT_PCTS = [apc.fmt_p(p) for p in apc.scope_grid(config, UNIT_SCOPE)[1]]


def methods_for(scope):
    """The methods run in `scope`: pruning.methods, or under UN those of pruning.units."""
    return UNIT_METHODS if scope == UNIT_SCOPE else METHODS


def pcts_for(scope):
    """The percentages (path text) run in `scope`."""
    return UNIT_PCTS if scope == UNIT_SCOPE else PCTS


# The calibration statistics the configured methods read in the scopes they run in (rule calibrate
# writes one file each).
CALIBRATION = [
    s
    for s in apm.CALIBRATION
    if s in apm.calibration_needed(METHODS) or (UNIT_TASKS and s in apm.calibration_needed(UNIT_METHODS, UNIT_SCOPE))
]
# Bottleneck widths of the dense small adapters trained from scratch (pruning.dense_small).
DENSE_SMALL = [int(w) for w in config["pruning"]["dense_small"]]
# The (target, reference) method pairs of comparison.*, comparison_verdicts.* and figures/delta/.
PAIRS = apc.comparison_pairs(config)
# The λ values ({path text: value}); with several, the tropical/, pruned/, scores/ and predictions/
# paths get a lam<λ>/ level (LAM); with one, they keep the one-λ layout and `lam` is not a wildcard.
LAMS = apc.lambdas(config)
LAM = "lam{lam}/" if len(LAMS) > 1 else ""
# The λ of Tables 1 and 2, Fig. 1, Fig. 2 and score_vs_retained (comparison.* shows every λ).
TABLE_LAM = apc.table_lam(config)
MIRROR = (
    str(apc.resolve_path(config["data"]["mirror"], workflow.basedir)) if config["data"]["mirror"] is not None else None
)
# Tasks whose adapter comes from `adapters` (imported by import_adapter, not trained by train_adapter),
# with absolute source folders. Such a task runs only the first seed (an imported adapter has no seed).
ADAPTERS = {task: str(apc.resolve_path(path, workflow.basedir)) for task, path in config["adapters"].items()}

SEED_DIR = f"{R}/{{model}}/{{task}}/seed{{seed}}"
# Every registered mask method (adapter_pruning.methods), longest names first for the regex.
METHOD_PATTERN = "|".join(sorted(apm.names(), key=len, reverse=True))
# An evaluated state: `full` (the trained adapter), a dense small adapter `dense_small/r<width>` (its
# folder below the seed's), or a pruned one, `<LAM><scope>/<method>/p<p>` (the path of its pruned
# adapter folder below pruned/, and of its score and predictions files).
PRUNED_STATE = (r"lam\d+(\.\d+)?/" if len(LAMS) > 1 else "") + rf"(CU|CB|CN|UN)/({METHOD_PATTERN})/p\d+(\.\d+)?"
DENSE_STATE = r"dense_small/r\d+"
STATE = f"full|{DENSE_STATE}|{PRUNED_STATE}"
# The states that `evaluate` scores: every state, or in per_sweep mode `full` and the dense small
# adapters only (evaluate_sweep scores the pruned ones), so that each state has exactly one rule that
# scores it.
EVALUATED_STATES = f"full|{DENSE_STATE}" if config["evaluation"]["mode"] == "per_sweep" else STATE


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    task="|".join(TASKS),
    seed=r"\d+",
    scope="CU|CB|CN|UN",
    method=METHOD_PATTERN,
    width=r"\d+",
    lam=r"\d+(\.\d+)?",
    p=r"\d+(\.\d+)?",
    state=STATE,


def task_pattern(tasks):
    """Wildcard constraint matching exactly `tasks` (a pattern that matches nothing when empty)."""
    return "|".join(re.escape(t) for t in tasks) or "(?!)"


TRAINED_TASKS = task_pattern([t for t in TASKS if t not in ADAPTERS])
IMPORTED_TASKS = task_pattern([t for t in TASKS if t in ADAPTERS])


def dense_small_states(task):
    """The dense small adapters' states of `task`, `dense_small/r<width>` (none for an imported adapter,
    which the workflow does not train)."""
    return [] if task in ADAPTERS else [f"dense_small/r{w}" for w in DENSE_SMALL]


def seeds_for(task):
    """The seeds run for `task`: all of `seeds`, or the first one for an imported adapter."""
    return SEEDS[:1] if task in ADAPTERS else SEEDS


def imported_adapter_files(wildcards):
    """The files of the task's external adapter, so that a changed file reruns import_adapter."""
    from adapter_pruning.stages.import_adapter import source_files

    return [str(f) for f in source_files(ADAPTERS[wildcards.task])]


def scopes_for(task):
    scopes = config["pruning"]["scopes"]
    return list(scopes.get(task, scopes["default"]))


def max_length(task):
    ml = config["max_length"]
    return int(ml.get(task, ml["default"]))


def mirror_files(wildcards):
    """The mirror files of one task, so a changed or missing mirror file is seen by Snakemake."""
    if MIRROR is None:
        return []
    files = sorted(str(f) for f in Path(MIRROR, wildcards.task).glob("*.parquet"))
    sums = Path(MIRROR, "SHA256SUMS")
    return files + ([str(sums)] if sums.is_file() else [])


def data_file(split):
    return f"{R}/data/{{task}}/{split}.parquet"


# Targets are built from the rules' own output templates (rules.<name>.output), so each path is
# written once, in its rule. These functions run when report.smk defines aggregate and the report
# rules, after every rule they name is defined.
def pruned_states(task):
    """The pruned states of one task, `<LAM><scope>/<method>/p<p>`: the λ values, its scopes, and each
    scope's methods and percentages."""
    states = [
        state
        for scope in scopes_for(task)
        for state in expand(
            f"{LAM}{{scope}}/{{method}}/p{{p}}",
            lam=list(LAMS),
            scope=scope,
            method=methods_for(scope),
            p=pcts_for(scope),
        )
    ]
    return list(dict.fromkeys(states))


def states(template, task, seed):
    """`template` (with a {state} wildcard) expanded over one task's and seed's pruned states."""
    return expand(template, model=MODEL, task=task, seed=seed, state=pruned_states(task))


def per_seed(template, **wildcards):
    """`template` expanded over every configured (task, seed) (and the λ values, if it has {lam});
    `wildcards` fill further ones or replace these (e.g. state="full", lam=one λ)."""
    files = [
        f
        for task in TASKS
        for seed in seeds_for(task)
        for f in expand(template, **{"model": MODEL, "task": task, "seed": seed, "lam": list(LAMS), **wildcards})
    ]
    return list(dict.fromkeys(files))


def all_scores():
    """The score file of every evaluated state: the full model, the dense small adapters and every
    pruned state."""
    files = per_seed(rules.evaluate.output.scores, state="full")
    for task in TASKS:
        for seed in seeds_for(task):
            files += expand(
                rules.evaluate.output.scores, model=MODEL, task=task, seed=seed, state=dense_small_states(task)
            )
            files += states(rules.evaluate.output.scores, task, seed)
    return files


def all_predictions():
    """The predictions file of every pruned state (the comparison pairs them)."""
    return [
        f for task in TASKS for seed in seeds_for(task) for f in states(rules.evaluate.output.predictions, task, seed)
    ]


def state_dir(wildcards):
    """The adapter folder `evaluate` scores: the trained adapter for state `full`, a dense small
    adapter's folder (dense_small/r<width>, written by rule train_dense_small), else the state's pruned
    adapter folder (pruned/<state>, written by rule prune)."""
    seed_dir = SEED_DIR.format(model=wildcards.model, task=wildcards.task, seed=wildcards.seed)
    if wildcards.state == "full":
        return f"{seed_dir}/adapter"
    if wildcards.state.startswith("dense_small/"):
        return f"{seed_dir}/{wildcards.state}"
    return f"{seed_dir}/pruned/{wildcards.state}"


def sweep_files(template, scope=None):
    """`template` (with a {state} wildcard) for every method and p of one (λ, scope), method-major
    (the order of the prune outputs), the other wildcards left in place; the outputs of a per_sweep
    job of an element scope (`scope` None) or of the unit scope (`scope` UN)."""
    states = [f"{LAM}{{scope}}/{m}/p{p}" for m in methods_for(scope) for p in pcts_for(scope)]
    return expand(template, state=states, allow_missing=True)


def percentages_of(wildcards):
    """The p values of a prune job: its `p` wildcard (per_state), or every percentage of its scope
    (per_sweep)."""
    return [wildcards.p] if "p" in wildcards.keys() else pcts_for(wildcards.scope)


def all_traces():
    """The solver traces of report.table_lam (Fig. 1)."""
    return per_seed(rules.tropical_solve.output.trace, lam=fmt_table_lam())


def fmt_table_lam():
    return apc.fmt_lam(TABLE_LAM)


def lam_of(wildcards):
    """The λ value of a job: its `lam` wildcard, or the one λ of the run."""
    return LAMS[wildcards.lam] if len(LAMS) > 1 else next(iter(LAMS.values()))


def job_methods(wildcards):
    """The methods of a prune job: its `method` wildcard (per_state), or every method of its scope
    (per_sweep)."""
    method = wildcards.get("method")
    return [method] if method else methods_for(wildcards.scope)


def calibration_for(wildcards):
    """The calibration statistics the job's methods read in its scope (adapter_pruning.methods; none
    for most)."""
    stats = apm.calibration_needed(job_methods(wildcards), wildcards.scope)
    return [expand(getattr(rules.calibrate.output, s), **wildcards)[0] for s in stats]


def optimized_for(wildcards):
    """The tropical solve's Â, B̂ of the job's λ, if one of the job's methods reads them in its scope
    (every method whose count is Tropical's does; under UN only tropical and tropical_opt)."""
    if "optimized" not in apm.needs_of(job_methods(wildcards), wildcards.scope):
        return []
    return expand(rules.tropical_solve.output.optimized, **wildcards)


def zonotope_task():
    """report.zonotope_task if it is among the configured tasks, else the first task."""
    task = config["report"]["zonotope_task"]
    return task if task in TASKS else TASKS[0]


def zonotope_run(template):
    """`template` for the run Fig. 2 draws: zonotope_task(), its first seed and report.table_lam."""
    task = zonotope_task()
    return expand(template, model=MODEL, task=task, seed=seeds_for(task)[0], lam=fmt_table_lam())[0]


def delta_figure_files():
    """The outputs of figure_delta for one task: PNG and SVG of every pair, named
    `<target>_vs_<reference>_{png,svg}`."""
    return {
        f"{target}_vs_{reference}_{ext}": path
        for target, reference in PAIRS
        for ext, path in figure_files(
            f"delta/{{task}}/{target}_vs_{reference}", subcategory="Δ per task and method pair"
        ).items()
    }


def figure_files(name, category="Figures", subcategory=None):
    """The PNG and SVG outputs of figure `name` (a path template), with its report caption."""
    caption = name.split("/")[0]
    return {
        ext: report(
            f"{R}/summary/figures/{name}.{ext}",
            caption=f"../report/{caption}.rst",
            category=category,
            subcategory=subcategory,
        )
        for ext in ("png", "svg")
    }


# Canonical params: what defines a job, as sorted JSON, so that --rerun-triggers params reruns
# exactly the jobs whose definition changed (and nothing when YAML keys are merely reordered).
def data_params(wildcards):
    d = config["data"]
    return apc.canonical(
        {
            "task": wildcards.task,
            "mirror": MIRROR,
            "verify_checksums": d["verify_checksums"],
            "caps": d["caps"],
            "seed": d["seed"],
            "imdb_validation_size": d["imdb_validation_size"],
        }
    )


def train_params(wildcards):
    return apc.canonical(
        {
            "model": config["model"],
            "device": DEVICE,
            "seed": int(wildcards.seed),
            "max_length": max_length(wildcards.task),
            **{k: v for k, v in config["training"].items() if k != "eval_batch_size"},
        }
    )


def import_params(wildcards):
    return apc.canonical({"model": config["model"], "source": ADAPTERS[wildcards.task]})


def eval_params(wildcards):
    return apc.canonical(
        {
            "model": config["model"],
            "device": DEVICE,
            "max_length": max_length(wildcards.task),
            "precision": config["evaluation"]["precision"],
        }
    )


def tropical_params(wildcards):
    return apc.canonical(apc.solve_spec(config, lam_of(wildcards)))


def calibrate_params(wildcards):
    return apc.canonical(
        {
            "model": config["model"],
            "device": DEVICE,
            "max_length": max_length(wildcards.task),
            "examples": config["pruning"]["calibration_examples"],
            "statistics": CALIBRATION,
            "precision": config["evaluation"]["precision"],
        }
    )


def dense_small_params(wildcards):
    """train_params, plus the dense small adapter's bottleneck width."""
    return apc.canonical({**json.loads(train_params(wildcards)), "width": int(wildcards.width)})


def code_hash(script):
    """Hash of the package modules `scripts/<script>` can import (its import closure, found with
    ast): editing any of them reruns the rule; editing anything else reruns nothing."""
    return script_code_hash(Path(workflow.basedir, "scripts", script))


# Cheap summary rules run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    aggregate,
    report_tables,
    report_comparison,
    report_convergence,
    figure_convergence,
    report_score_vs_bytes,
    figure_score_vs_bytes,
    figure_objective,
    figure_zonotope,
    figure_score_vs_retained,
    figure_methods,
    figure_delta,
