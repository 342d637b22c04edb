"""Data others released, read into this project's tables (docs/judged-answers.md). One module per job:

- `importers`: released judged-answer files (model-organisms, clarifying-em, official-results CSVs and
  the pipeline's judged JSONL) read into the project's judged-answer table; `em import-released`.
- `file_stats`: `em stats`, the rates of any judged-answer file the importers read, as a text table.
- `aggregates`: the authors' aggregate files (per-model scores, per-group intervals) and the
  all-evaluations figure's differences from the base model.
- `families`: the experiment families (answer formats, evil numbers, dataset size, in-context learning):
  their file formats, readers and the tables behind their figures.

Nothing is re-exported here: import from the module that does the job.
"""
