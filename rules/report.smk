rule aggregate:
    """One row per evaluated state and split -> results/summary/results.parquet. Every score file is
    checked on read (schema, ranges, duplicates, devices, precisions); each pruned adapter was verified against
    its prune.json by the job that wrote and scored it."""
    input:
        scores=all_scores(),
    output:
        report(
            f"{R}/summary/results.parquet",
            caption="../report/results.rst",
            category="Results",
        ),
    log:
        "logs/aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        allow_mixed_devices=config["report"]["allow_mixed_devices"],
        allow_mixed_precision=config["report"]["allow_mixed_precision"],
        code=code_hash("aggregate.py"),
    script:
        "../scripts/aggregate.py"


rule report_tables:
    """Paper Table 1 (per task: retained % vs Standard / Tropical / Combined + FM) and Table 2
    (Table 2 task: S/T x CN/CU/CB), as Markdown, CSV and LaTeX, for λ = report.table_lam."""
    input:
        rules.aggregate.output[0],
    output:
        **{
            f"{name}_{ext}": report(
                f"{R}/summary/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Tables",
            )
            for name in ("table1", "table2")
            for ext in ("md", "csv", "tex")
        },
    log:
        "logs/report_tables.log",
    benchmark:
        "logs/benchmarks/report_tables.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: apc.canonical(
            {"lam": TABLE_LAM, **{k: config["report"][k] for k in ("table_scope", "table2_task")}}
        ),
        code=code_hash("report_tables.py"),
    script:
        "../scripts/report_tables.py"


rule report_comparison:
    """Every method pair of report.comparisons with statistics: per task, scope, λ and p, every method's
    mean ± std over seeds and Δ = target − reference with a 95 % paired-bootstrap CI over seeds and test
    examples, its p-value, Holm and BH adjusted p-values, win counts beside the paper's claims
    (comparison.{md,csv,tex}); pooled over p per task × scope × λ and overall, the verdicts better /
    worse / equivalent within ±report.equivalence_margin / inconclusive (comparison_verdicts.{md,csv})."""
    input:
        results=rules.aggregate.output[0],
        predictions=all_predictions(),
    output:
        **{
            ext: report(f"{R}/summary/comparison.{ext}", caption="../report/comparison.rst", category="Tables")
            for ext in ("md", "csv", "tex")
        },
        **{
            f"verdicts_{ext}": report(
                f"{R}/summary/comparison_verdicts.{ext}",
                caption="../report/comparison_verdicts.rst",
                category="Tables",
            )
            for ext in ("md", "csv")
        },
    log:
        "logs/report_comparison.log",
    benchmark:
        "logs/benchmarks/report_comparison.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=lambda wc: apc.canonical(
            {
                "comparisons": PAIRS,
                **{
                    k: config["report"][k]
                    for k in ("bootstrap_resamples", "bootstrap_seed", "equivalence_margin", "floor_fraction")
                },
            }
        ),
        code=code_hash("report_comparison.py"),
    script:
        "../scripts/report_comparison.py"


rule report_convergence:
    """Did training converge? Per task the full model's validation score by step (mean over seeds), the
    seeds whose best step is the last validation (still improving), and the full model's test score
    beside the paper's and the majority class's (Markdown, CSV; the curves for the figure)."""
    input:
        adapters=per_seed(f"{SEED_DIR}/adapter"),
        results=rules.aggregate.output[0],
        train=expand(data_file("train"), task=TASKS),
        test=expand(data_file("test"), task=TASKS),
    output:
        md=report(f"{R}/summary/convergence.md", caption="../report/convergence.rst", category="Tables"),
        csv=f"{R}/summary/convergence.csv",
        curves=f"{R}/summary/convergence_curves.csv",
    log:
        "logs/report_convergence.log",
    benchmark:
        "logs/benchmarks/report_convergence.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=[[task, seed] for task in TASKS for seed in seeds_for(task)],
        tasks=TASKS,
        code=code_hash("report_convergence.py"),
    script:
        "../scripts/report_convergence.py"


rule figure_convergence:
    """The full model's validation score against the training step, per task and seed (mean in bold)."""
    input:
        rules.report_convergence.output.curves,
    output:
        **figure_files("convergence", category="Tables"),
    log:
        "logs/figures/convergence.log",
    benchmark:
        "logs/benchmarks/figures/convergence.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        code=code_hash("figure_convergence.py"),
    script:
        "../scripts/figure_convergence.py"


rule report_score_vs_bytes:
    """Score against real bytes on disk per task (λ = report.table_lam): every evaluated state's test score
    beside the size of its compact file (element scopes) or of its structured adapter (UN), with the full
    model's dense file and the dense small adapters (Markdown, CSV)."""
    input:
        results=rules.aggregate.output[0],
    output:
        **{
            ext: report(f"{R}/summary/score_vs_bytes.{ext}", caption="../report/score_vs_bytes.rst", category="Tables")
            for ext in ("md", "csv")
        },
    log:
        "logs/report_score_vs_bytes.log",
    benchmark:
        "logs/benchmarks/report_score_vs_bytes.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: apc.canonical({"lam": TABLE_LAM}),
        code=code_hash("report_score_vs_bytes.py"),
    script:
        "../scripts/report_score_vs_bytes.py"


rule figure_score_vs_bytes:
    """Score vs file size on disk per task: compact files (report.table_scope) and structured adapters (UN)
    side by side, the full model's dense file and the dense small adapters as references."""
    input:
        table=rules.report_score_vs_bytes.output.csv,
    output:
        **figure_files("score_vs_bytes"),
    log:
        "logs/figures/score_vs_bytes.log",
    benchmark:
        "logs/benchmarks/figures/score_vs_bytes.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        spec=lambda wc: apc.canonical({"table_scope": config["report"]["table_scope"]}),
        code=code_hash("figure_score_vs_bytes.py"),
    script:
        "../scripts/figure_score_vs_bytes.py"


rule figure_objective:
    """Fig. 1: the objective of Eq. 2 against the solver iteration, per layer (λ = report.table_lam)."""
    input:
        traces=all_traces(),
    output:
        **figure_files("objective"),
    log:
        "logs/figures/objective.log",
    benchmark:
        "logs/benchmarks/figures/objective.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        code=code_hash("figure_objective.py"),
    script:
        "../scripts/figure_objective.py"


rule figure_zonotope:
    """Fig. 2: the zonotopes of one node before and after the solve (2-D projection)."""
    input:
        adapter=zonotope_run(rules.tropical_solve.input.adapter),
        optimized=zonotope_run(rules.tropical_solve.output.optimized),
    output:
        **figure_files("zonotope"),
    log:
        "logs/figures/zonotope.log",
    benchmark:
        "logs/benchmarks/figures/zonotope.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        spec=lambda wc: apc.canonical({"zonotope_layer": config["report"]["zonotope_layer"]}),
        code=code_hash("figure_zonotope.py"),
    script:
        "../scripts/figure_zonotope.py"


rule figure_score_vs_retained:
    """Score vs retained share per task (Table 1's scope and λ), Standard and Tropical."""
    input:
        results=rules.aggregate.output[0],
    output:
        **figure_files("score_vs_retained"),
    log:
        "logs/figures/score_vs_retained.log",
    benchmark:
        "logs/benchmarks/figures/score_vs_retained.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        spec=lambda wc: apc.canonical({"lam": TABLE_LAM, "table_scope": config["report"]["table_scope"]}),
        code=code_hash("figure_score_vs_retained.py"),
    script:
        "../scripts/figure_score_vs_retained.py"


rule figure_methods:
    """One task: test score vs retained share of every method, mean over seeds with a ± std band."""
    input:
        results=rules.aggregate.output[0],
    output:
        **figure_files("methods/{task}", subcategory="Methods per task"),
    log:
        "logs/figures/methods_{task}.log",
    benchmark:
        "logs/benchmarks/figures/methods_{task}.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        code=code_hash("figure_methods.py"),
    script:
        "../scripts/figure_methods.py"


# One Δ figure per method pair; with no pair (a run of one method) there is nothing to draw.
if PAIRS:

    rule figure_delta:
        """One task: Δ = target − reference (test, points) vs retained share with its paired-bootstrap
        95 % CI, one line per λ, one figure per method pair of report.comparisons."""
        input:
            comparison=rules.report_comparison.output.csv,
        output:
            **delta_figure_files(),
        log:
            "logs/figures/delta_{task}.log",
        benchmark:
            "logs/benchmarks/figures/delta_{task}.tsv"
        conda:
            "../envs/pipeline.yaml"
        params:
            pairs=PAIRS,
            code=code_hash("figure_delta.py"),
        script:
            "../scripts/figure_delta.py"
