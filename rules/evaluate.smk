rule evaluate:
    """Score one adapter state on validation and test and keep its per-example predictions: the full
    model (state `full`, the trained adapter) or a pruned state `[lam<λ>/]<scope>/<method>/p<p>` (its
    pruned adapter folder). With evaluation.mode: per_sweep only `full`; evaluate_sweep scores the rest."""
    input:
        states=state_dir,
        validation=data_file("validation"),
        test=data_file("test"),
    output:
        scores=f"{SEED_DIR}/scores/{{state}}.parquet",
        predictions=f"{SEED_DIR}/predictions/{{state}}.parquet",
    log:
        "logs/evaluate/{model}/{task}/seed{seed}/{state}.log",
    benchmark:
        "logs/benchmarks/evaluate/{model}/{task}/seed{seed}/{state}.tsv"
    wildcard_constraints:
        state=EVALUATED_STATES,
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=6000,
        runtime=60,
    params:
        spec=eval_params,
        code=code_hash("evaluate.py"),
    script:
        "../scripts/evaluate.py"


if config["evaluation"]["mode"] == "per_sweep":

    rule evaluate_sweep:
        """Score every method and p of one (λ, scope) in one job (evaluation.mode: per_sweep): the
        backbone and data are loaded once; the outputs are those rule evaluate writes for each pruned
        state."""
        input:
            states=rules.prune.output.pruned,
            validation=data_file("validation"),
            test=data_file("test"),
        output:
            scores=sweep_files(rules.evaluate.output.scores),
            predictions=sweep_files(rules.evaluate.output.predictions),
        log:
            f"logs/evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_sweep.log",
        benchmark:
            f"logs/benchmarks/evaluate/{{model}}/{{task}}/seed{{seed}}/{LAM}{{scope}}_sweep.tsv"
        wildcard_constraints:
            scope="CU|CB|CN",
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            gpu=GPUS_PER_JOB,
            mem_mb=6000,
            runtime=30 + 5 * len(METHODS) * len(PCTS),
        params:
            spec=eval_params,
            code=code_hash("evaluate.py"),
        script:
            "../scripts/evaluate.py"

    if UNIT_TASKS:

        use rule evaluate_sweep as evaluate_units_sweep with:
            input:
                states=rules.prune_units.output.pruned,
                validation=data_file("validation"),
                test=data_file("test"),
            output:
                scores=sweep_files(rules.evaluate.output.scores, UNIT_SCOPE),
                predictions=sweep_files(rules.evaluate.output.predictions, UNIT_SCOPE),
            wildcard_constraints:
                scope=UNIT_SCOPE,
            resources:  # replaces evaluate_sweep's resources as a whole (use rule ... with)
                gpu=GPUS_PER_JOB,
                mem_mb=6000,
                runtime=30 + 5 * len(UNIT_METHODS) * len(UNIT_PCTS),
