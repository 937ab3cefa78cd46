rule evaluate_full:
    """Score the unpruned model (FM) on validation and test; keep its per-example predictions."""
    input:
        adapter=f"{SEED_DIR}/adapter",
        validation=data_file("validation"),
        test=data_file("test"),
    output:
        scores=f"{SEED_DIR}/scores/full.parquet",
        predictions=f"{SEED_DIR}/predictions/full.parquet",
    log:
        "logs/evaluate_full/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/evaluate_full/{model}/{task}/seed{seed}.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        spec=eval_params,
        code=code_hash("evaluate_full.py"),
    script:
        "../scripts/evaluate_full.py"
