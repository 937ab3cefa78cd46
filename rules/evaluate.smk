rule evaluate_full:
    """Score the unpruned model (FM) on validation and test."""
    input:
        adapter=f"{SEED_DIR}/adapter",
        validation=data_file("validation"),
        test=data_file("test"),
    output:
        f"{SEED_DIR}/scores/full.parquet",
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
