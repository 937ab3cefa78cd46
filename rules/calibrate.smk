rule calibrate:
    """Input norms of every adapter layer on `pruning.calibration_examples` training examples (the
    activation baseline's calibration set, seeded by the run's seed): the RMS over tokens of each
    feature entering adapter_down and adapter_up. Only in the DAG when methods lists activation."""
    input:
        adapter=f"{SEED_DIR}/adapter",
        train=data_file("train"),
    output:
        f"{SEED_DIR}/calibration/input_rms.safetensors",
    log:
        "logs/calibrate/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/calibrate/{model}/{task}/seed{seed}.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=4000,
        runtime=30,
    params:
        spec=calibrate_params,
        code=code_hash("calibrate.py"),
    script:
        "../scripts/calibrate.py"
