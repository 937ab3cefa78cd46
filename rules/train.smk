rule train_adapter:
    """Train a ReLU bottleneck adapter + classification head on a frozen backbone; keep the best
    validation checkpoint (AdapterHub format, safetensors, plus metrics.json)."""
    input:
        train=data_file("train"),
        validation=data_file("validation"),
    output:
        directory(f"{SEED_DIR}/adapter"),
    params:
        spec=train_params,
        code=code_hash("train_adapter.py"),
    log:
        "logs/train_adapter/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train_adapter/{model}/{task}/seed{seed}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/train_adapter.py"
