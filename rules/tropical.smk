rule tropical_solve:
    """Solve the tropical objective (paper Eq. 2) for all adapter layers at once; keep the optimized
    weights and the per-layer objective trace (paper Fig. 1). Runs on the CPU whatever `device`
    says: its small per-step tensors make it launch-bound (0.6 s for 12 RoBERTa-base layers x 1000
    steps on CPU and on an H100), and a CPU solve does not depend on the GPU model."""
    input:
        adapter=f"{SEED_DIR}/adapter",
    output:
        optimized=f"{SEED_DIR}/tropical/{LAM}optimized.safetensors",
        trace=f"{SEED_DIR}/tropical/{LAM}trace.parquet",
        info=f"{SEED_DIR}/tropical/{LAM}solve.json",
    log:
        f"logs/tropical_solve/{{model}}/{{task}}/seed{{seed}}/{LAM}solve.log",
    benchmark:
        f"logs/benchmarks/tropical_solve/{{model}}/{{task}}/seed{{seed}}/{LAM}solve.tsv"
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=tropical_params,
        code=code_hash("tropical_solve.py"),
    script:
        "../scripts/tropical_solve.py"
