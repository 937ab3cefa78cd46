rule aggregate:
    """One row per evaluated state and split -> results/summary/results.parquet. Every saved
    pruned adapter is verified (checksum, zeros) against its prune.json and its score rows."""
    input:
        scores=all_scores(),
        pruned=all_pruned(),
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
        code=code_hash("aggregate.py"),
    script:
        "../scripts/aggregate.py"


rule report_tables:
    """Paper Table 1 (per task: retained % vs Standard / Tropical / Combined + FM) and Table 2
    (Table 2 task: S/T x CN/CU/CB), as Markdown, CSV and LaTeX."""
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
        spec=lambda wc: apc.canonical({k: config["report"][k] for k in ("table_scope", "table2_task")}),
        code=code_hash("report_tables.py"),
    script:
        "../scripts/report_tables.py"


rule report_figures:
    """Fig. 1 (objective vs iteration), Fig. 2 (zonotope before/after, 2-D projection) and
    score vs retained % per task; PNG and SVG."""
    input:
        results=rules.aggregate.output[0],
        traces=all_traces(),
        adapter=zonotope_run(rules.tropical_solve.input.adapter),
        optimized=zonotope_run(rules.tropical_solve.output.optimized),
    output:
        **{
            f"{name}_{ext}": report(
                f"{R}/summary/figures/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in ("objective", "zonotope", "score_vs_retained")
            for ext in ("png", "svg")
        },
    log:
        "logs/report_figures.log",
    benchmark:
        "logs/benchmarks/report_figures.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: apc.canonical({k: config["report"][k] for k in ("table_scope", "zonotope_layer")}),
        code=code_hash("report_figures.py"),
    script:
        "../scripts/report_figures.py"
