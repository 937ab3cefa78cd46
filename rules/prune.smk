if config["evaluation"]["mode"] == "per_state":

    rule prune_evaluate:
        """Prune one (scope, method, p) state with real zeros, save it, score it on validation and test.
        Many small jobs: the `prune_eval` group lets a cluster run them in a few submissions."""
        input:
            adapter=f"{SEED_DIR}/adapter",
            optimized=rules.tropical_solve.output.optimized,
            calibration=calibration_for,
            validation=data_file("validation"),
            test=data_file("test"),
        output:
            pruned=directory(f"{SEED_DIR}/pruned/{LAM}{{scope}}/{{method}}/p{{p}}"),
            scores=f"{SEED_DIR}/scores/{LAM}{{scope}}/{{method}}/p{{p}}.parquet",
            predictions=f"{SEED_DIR}/predictions/{LAM}{{scope}}/{{method}}/p{{p}}.parquet",
        log:
            f"logs/prune_evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}_p{{p}}.log",
        benchmark:
            f"logs/benchmarks/prune_evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}_p{{p}}.tsv"
        group:
            "prune_eval"
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            spec=prune_params,
            lam=lam_of,
            code=code_hash("prune_evaluate.py"),
        script:
            "../scripts/prune_evaluate.py"

else:

    rule prune_evaluate:
        """Prune, save and score every p of one (scope, method) in one job (evaluation.mode: per_sweep):
        the model and data are loaded once; the outputs are the per-state ones of per_state mode."""
        input:
            adapter=f"{SEED_DIR}/adapter",
            optimized=rules.tropical_solve.output.optimized,
            calibration=calibration_for,
            validation=data_file("validation"),
            test=data_file("test"),
        output:
            pruned=[directory(f"{SEED_DIR}/pruned/{LAM}{{scope}}/{{method}}/p{p}") for p in PCTS],
            scores=[f"{SEED_DIR}/scores/{LAM}{{scope}}/{{method}}/p{p}.parquet" for p in PCTS],
            predictions=[f"{SEED_DIR}/predictions/{LAM}{{scope}}/{{method}}/p{p}.parquet" for p in PCTS],
        log:
            f"logs/prune_evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}.log",
        benchmark:
            f"logs/benchmarks/prune_evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}.tsv"
        group:
            "prune_eval"
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=lambda wc: 30 + 5 * len(PCTS),
        params:
            percentages=PCTS,
            spec=prune_params,
            lam=lam_of,
            code=code_hash("prune_evaluate_sweep.py"),
        script:
            "../scripts/prune_evaluate_sweep.py"
