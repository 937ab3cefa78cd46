if config["evaluation"]["mode"] == "per_state":

    rule prune:
        """Prune one (λ, scope, method, p) state of an adapter with real zeros and save it (tensor work
        on the adapter's file, no backbone): the adapter folder with the pruned weights, plus prune.json
        (under the unit scope UN also structured/, the smaller adapter without the removed units). Its
        inputs are what the method reads (adapter_pruning.methods): Â, B̂ and calibration statistics."""
        input:
            adapter=f"{SEED_DIR}/adapter",
            optimized=optimized_for,
            calibration=calibration_for,
        output:
            pruned=directory(f"{SEED_DIR}/pruned/{LAM}{{scope}}/{{method}}/p{{p}}"),
        log:
            f"logs/prune/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}_p{{p}}.log",
        benchmark:
            f"logs/benchmarks/prune/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_{{method}}_p{{p}}.tsv"
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=5,
        params:
            percentages=percentages_of,
            lam=lam_of,
            code=code_hash("prune.py"),
        script:
            "../scripts/prune.py"

else:

    rule prune:
        """Prune every method and p of one (λ, scope) in one job (evaluation.mode: per_sweep): the same
        pruned adapter folders as per_state mode writes, one job per sweep. Element scopes (CU, CB, CN);
        prune_units does the unit scope."""
        input:
            adapter=f"{SEED_DIR}/adapter",
            optimized=optimized_for,
            calibration=calibration_for,
        output:
            pruned=[directory(f"{SEED_DIR}/pruned/{LAM}{{scope}}/{m}/p{p}") for m in METHODS for p in PCTS],
        log:
            f"logs/prune/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_sweep.log",
        benchmark:
            f"logs/benchmarks/prune/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_sweep.tsv"
        wildcard_constraints:
            scope="CU|CB|CN",
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=15,
        params:
            percentages=percentages_of,
            methods=METHODS,
            lam=lam_of,
            code=code_hash("prune.py"),
        script:
            "../scripts/prune.py"

    if UNIT_TASKS:

        use rule prune as prune_units with:
            output:
                pruned=[
                    directory(f"{SEED_DIR}/pruned/{LAM}{{scope}}/{m}/p{p}") for m in UNIT_METHODS for p in UNIT_PCTS
                ],
            wildcard_constraints:
                scope=UNIT_SCOPE,
            params:
                percentages=percentages_of,
                methods=UNIT_METHODS,
                lam=lam_of,
                code=code_hash("prune.py"),
