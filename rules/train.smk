rule train_adapter:
    """Train a ReLU bottleneck adapter + classification head on a frozen backbone; keep the best
    validation checkpoint (AdapterHub format, safetensors, plus metrics.json). Tasks given an
    adapter under `adapters` are not trained: import_adapter writes their adapter folder."""
    input:
        train=data_file("train"),
        validation=data_file("validation"),
    output:
        directory(f"{SEED_DIR}/adapter"),
    log:
        "logs/train_adapter/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train_adapter/{model}/{task}/seed{seed}.tsv"
    wildcard_constraints:
        task=TRAINED_TASKS,
    conda:
        "../envs/pipeline.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=8000,
        runtime=120,
    params:
        spec=train_params,
        code=code_hash("train_adapter.py"),
    script:
        "../scripts/train_adapter.py"


rule import_adapter:
    """Take the adapter a task names under `adapters` (saved elsewhere with the adapters library's
    save_adapter(..., with_head=True)) into the folder train_adapter would write: checked as
    adapter_pruning.stages.import_adapter.check_adapter says, weights as safetensors, plus a
    metrics.json recording the source folder and the sha256 of each source file."""
    input:
        imported_adapter_files,
    output:
        directory(f"{SEED_DIR}/adapter"),
    log:
        "logs/import_adapter/{model}/{task}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/import_adapter/{model}/{task}/seed{seed}.tsv"
    wildcard_constraints:
        task=IMPORTED_TASKS,
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        spec=import_params,
        code=code_hash("import_adapter.py"),
    script:
        "../scripts/import_adapter.py"


rule train_dense_small:
    """A dense small adapter trained from scratch at bottleneck width r' (pruning.dense_small: the
    `width` wildcard, reduction_factor = d / r'), with the same data, steps, seed and settings as
    train_adapter; its folder is scored like any state (method dense_small, at its exact retained
    share of the full adapter's parameters, dense_small.json)."""
    input:
        train=data_file("train"),
        validation=data_file("validation"),
    output:
        directory(f"{SEED_DIR}/dense_small/r{{width}}"),
    log:
        "logs/train_dense_small/{model}/{task}/seed{seed}/r{width}.log",
    benchmark:
        "logs/benchmarks/train_dense_small/{model}/{task}/seed{seed}/r{width}.tsv"
    wildcard_constraints:
        task=TRAINED_TASKS,
    conda:
        "../envs/pipeline.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=GPUS_PER_JOB,
        mem_mb=8000,
        runtime=120,
    params:
        spec=dense_small_params,
        code=code_hash("train_dense_small.py"),
    script:
        "../scripts/train_dense_small.py"
