rule evaluate_full:
    """Score the unpruned model (FM) on validation and test."""
    input:
        adapter=f"{SEED_DIR}/adapter",
        validation=data_file("validation"),
        test=data_file("test"),
    output:
        f"{SEED_DIR}/scores/full.parquet",
    params:
        spec=eval_params,
        code=code_hash("evaluate_full.py"),
    log:
        "logs/evaluate_full/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/evaluate_full/{model}/{task}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/evaluate_full.py"
