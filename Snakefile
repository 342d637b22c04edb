# Emergent Misalignment: data -> fine-tune -> sample -> judge -> statistics -> figures -> paper.
# `snakemake --cores all` runs the embedded default (config/config.yaml); pass
# `--configfile config/paper.yaml` for the GPU replication.
from emergent_misalignment.config import check_config


configfile: "config/config.yaml"


check_config(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        PAPER_PDF,
