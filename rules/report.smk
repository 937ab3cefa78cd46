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
    """Tropical vs Standard with statistics: per task, scope, λ and p, every method's mean ± std over
    seeds and the paired difference Tropical − Standard with a 95 % paired-bootstrap CI over seeds and
    test examples; win counts beside the paper's claims. Markdown, CSV and LaTeX."""
    input:
        results=rules.aggregate.output[0],
        predictions=all_predictions(),
    output:
        **{
            ext: report(f"{R}/summary/comparison.{ext}", caption="../report/comparison.rst", category="Tables")
            for ext in ("md", "csv", "tex")
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
        spec=lambda wc: apc.canonical({k: config["report"][k] for k in ("bootstrap_resamples", "bootstrap_seed")}),
        code=code_hash("report_comparison.py"),
    script:
        "../scripts/report_comparison.py"


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


rule figure_delta:
    """One task: Tropical − Standard (test, points) vs retained share with its paired-bootstrap 95 % CI,
    one line per λ."""
    input:
        comparison=rules.report_comparison.output.csv,
    output:
        **figure_files("delta/{task}", subcategory="Tropical - Standard per task"),
    log:
        "logs/figures/delta_{task}.log",
    benchmark:
        "logs/benchmarks/figures/delta_{task}.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        code=code_hash("figure_delta.py"),
    script:
        "../scripts/figure_delta.py"
