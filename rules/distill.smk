# Stage 2 of UMR: knowledge-distilled retriever training. The student starts from the
# node's retriever and learns the reranker's distribution; the result is the next
# iteration's retriever, one directory deeper.
#
# Resumable: the trainer saves its complete state every umr.distill.checkpoint_every steps
# in `retriever.checkpoints/` next to the output (not declared, so Snakemake neither deletes
# it when the job fails nor takes it for the output) and resumes from it when rerun; the
# final weights equal an uninterrupted run's, bit for bit (tests/test_resume.py).
# On SLURM the job asks for SIGTERM stop_signal_seconds before its time limit
# (`--signal=TERM@N`, sent to the job step, where it reaches both the inner Snakemake,
# which then waits for its running job, and the trainer, which finishes its step, saves a
# checkpoint and exits 143), so a time limit costs at most one step; `retries` resubmits
# the job (with twice the runtime) and it resumes (checked on the SLURM test cluster of
# tests/slurm with a stand-in trainer). Not `B:USR1`: with `B:` only the batch
# shell is signalled (its death ends the job, the trainer gets only KillWait seconds), and
# USR1 would kill the inner Snakemake, ending the step before the checkpoint is written.
# `exec` makes the trainer the job's process itself (no bash in between to die of the
# signal). checkpoint_every reaches the trainer as UMR_CHECKPOINT_EVERY (rules/common.smk),
# not as a param: it does not change the result, so changing it must not trigger a rerun.


rule distill:
    input:
        student=retriever_model,
        questions=task_train_questions,
        reranked=distill_inputs,
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        directory("results/{dataset}/{task}/{node}/{rtag}/{dtag}/retriever"),
    params:
        options=distill_options,
        top_k=rerank_top_k,
        languages=LANGUAGES,
        max_length=config["retrieval"]["max_length"],
        grad_cache=grad_cache_options(config["umr"]["distill"]),
        # Not in distill_options (the kd- tag): a precision changes no directory name.
        precision=config["umr"]["distill"]["precision"],
    priority: PRIORITY_DISTILL
    log:
        "results/{dataset}/{task}/{node}/{rtag}/{dtag}/logs/distill.log",
    benchmark:
        "results/{dataset}/{task}/{node}/{rtag}/{dtag}/benchmarks/distill.tsv"
    threads: THREADS
    # An interrupted job (time limit, preemption, node failure) is resubmitted and resumes from
    # its checkpoint. Only by the main Snakemake: inside a SLURM job (remote mode) a retry would
    # rerun the command in the same allocation, moments before its time limit.
    retries: 3 if workflow.is_main_process else 0
    resources:
        gpu=GPUS,
        mem_mb=memory_mb("distill"),
        runtime=runtime_minutes("distill"),
        slurm_extra=f"--signal=TERM@{config['umr']['distill']['stop_signal_seconds']}",
    conda:
        "../envs/umr.yaml"
    shell:
        "exec python -m umr.distill --student {input.student} --questions {input.questions} "
        "--languages {params.languages} --reranked {input.reranked} --corpus {input.corpus} "
        "--offsets {input.offsets} --top-k {params.top_k} {params.options} "
        "--max-length {params.max_length} {params.grad_cache} --precision {params.precision} "
        "--threads {threads} --out {output} > {log} 2>&1"
