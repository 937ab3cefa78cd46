rule prepare_data:
    """Normalise one task's splits (id, text, text_pair, label) from the local mirror or the hub."""
    input:
        mirror_files,
    output:
        train=f"{R}/data/{{task}}/train.parquet",
        validation=f"{R}/data/{{task}}/validation.parquet",
        test=f"{R}/data/{{task}}/test.parquet",
    log:
        "logs/prepare_data/{task}.log",
    benchmark:
        "logs/benchmarks/prepare_data/{task}.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=data_params,
        code=code_hash("prepare_data.py"),
    script:
        "../scripts/prepare_data.py"
