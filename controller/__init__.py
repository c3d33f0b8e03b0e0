"""specbed's controller: target and verifier, experiments, results, CLI."""
