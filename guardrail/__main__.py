"""`python -m guardrail`: the same command line as `guardrail`."""

from guardrail.cli import main

main()
