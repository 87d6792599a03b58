"""The run store: records on disk (``files``), run folders (``runs``), the one rule for a run's
state (``state``) and `collect` into one tidy DataFrame (``collect``). Callers import the
package: ``from study import store; store.run_dir(...)``."""
from study.store.collect import COMPLEXITY_COLUMNS, collect, write_results
from study.store.files import (
    CorruptRecord,
    append_jsonl,
    file_mode,
    read_json,
    read_jsonl,
    truncate_jsonl,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from study.store.runs import (
    RESULTS_ENV,
    append_job_id,
    init_run,
    is_done,
    locked,
    mark_done,
    read_config,
    read_evals,
    read_index,
    read_status,
    results_root,
    run_dir,
    study_dir,
    update_status,
    variant_record,
    write_complexity,
    write_eval,
    write_index,
)
from study.store.state import (
    ACTIVE,
    FINAL,
    RunState,
    State,
    pid_alive,
    queued_slurm_jobs,
    run_state,
    run_states,
    sacct_states,
    slurm_end_state,
)

__all__ = ["ACTIVE", "COMPLEXITY_COLUMNS", "FINAL", "RESULTS_ENV", "CorruptRecord", "RunState", "State",
           "append_job_id", "append_jsonl", "collect", "file_mode", "init_run", "is_done", "locked",
           "mark_done", "pid_alive", "queued_slurm_jobs", "read_config", "read_evals", "read_index",
           "read_json", "read_jsonl", "read_status", "results_root", "run_dir", "run_state", "run_states",
           "sacct_states", "slurm_end_state", "study_dir", "truncate_jsonl", "update_status",
           "variant_record", "write_bytes_atomic", "write_complexity", "write_eval", "write_index",
           "write_json_atomic", "write_results", "write_text_atomic"]
