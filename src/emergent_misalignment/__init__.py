"""Emergent Misalignment, reproducible: fine-tune -> sample -> judge -> statistics -> paper.

One module per stage of the DAG; the Snakemake rules call the `em` command line (cli.py).
"""

__version__ = "0.1.0"
