rule calibrate:
    """The calibration statistics the configured methods read (adapter_pruning.methods: input RMS for
    activation, second moments X̃ᵀX̃/N for sparsegpt, gradients of the mean task loss for taylor, and
    under the unit scope UN the mean unit activations for activation), on
    `pruning.calibration_examples` training examples seeded by the run's seed, all in one pass over
    them: one file per statistic. Only in the DAG when a configured method needs one."""
    input:
        adapter=f"{SEED_DIR}/adapter",
        train=data_file("train"),
    output:
        **{s: f"{SEED_DIR}/calibration/{s}.safetensors" for s in CALIBRATION or apm.CALIBRATION},
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
