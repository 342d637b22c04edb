# Emergent Misalignment: data -> fine-tune -> sample -> judge -> statistics -> figures -> paper.
# `snakemake --cores all` runs the embedded default (config/config.yaml); pass
# `--configfile config/paper.yaml` for the GPU replication.
import os
import sys

from emergent_misalignment.config import check_api_keys, check_config
from emergent_misalignment.manifest import set_aside_altered_outputs


# The embedded default, unless config files are given (they are then the whole config, merged in order).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"



config.update(check_config(config))  # checked, with `realignment` and `directions` written out as jobs


onstart:
    check_api_keys(config, os.environ)  # not on a dry run: `snakemake -n` lists an API run's jobs without keys


include: "workflow/rules/common.smk"

# a sample or judged file unlike its manifest (cut short by a full disk, edited) is never read as complete:
# set aside, rebuilt
for line in set_aside_altered_outputs([f"{RESULTS}/samples", f"{RESULTS}/judged"]):
    print(f"emergent_misalignment: {line}", file=sys.stderr)
include: "workflow/rules/data.smk"


# A released run (config/released.yaml) imports judged answers instead of training and judging.
if PLAN.released:

    include: "workflow/rules/released.smk"

else:

    include: "workflow/rules/train.smk"
    include: "workflow/rules/sample.smk"
    include: "workflow/rules/judge.smk"
    include: "workflow/rules/evals.smk"


include: "workflow/rules/analysis.smk"
include: "workflow/rules/directions.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        PAPER_PDF,
        run_targets(),
        report_targets(),
